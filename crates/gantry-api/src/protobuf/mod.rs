//! Decoding of Kubernetes protobuf request bodies into the JSON objects the rest of Gantry works with.
//!
//! client-go's typed clients send every write as `Content-Type: application/vnd.kubernetes.protobuf` with no JSON
//! fallback: Helm's release Secrets, `kubectl create <generator>`, `kubectl auth can-i`, evictions, and the
//! `DeleteOptions` body of a DELETE. A body is the 4 bytes `k8s\0` followed by a `runtime.Unknown` message
//! (`typeMeta{apiVersion, kind}`, `raw`, `contentEncoding`, `contentType`) whose `raw` is the object's own protobuf
//! encoding, with the field numbers of k8s.io/api's `generated.proto`.
//!
//! [`decode_request`] turns such a body into the object kube-apiserver would serve as JSON for it: camelCase names,
//! fields Go's `omitempty` leaves out left out, `[]byte` as base64, quantities as strings, `IntOrString` as a number
//! or a string, times in RFC 3339, and `apiVersion`/`kind` from the envelope. The messages are decoded with the
//! prost types of `k8s-pb`, and turned into JSON by a table of their fields (`schema.rs`, see `json.rs` for the rules).
//!
//! Supported are the kinds of Gantry's registry, plus the request-only kinds clients send: Binding, Eviction,
//! DeleteOptions (under any group version, as clients send it for the resource's own group), TokenRequest,
//! TokenReview, SelfSubjectReview, SubjectAccessReview, LocalSubjectAccessReview, SelfSubjectAccessReview,
//! SelfSubjectRulesReview and autoscaling/v1 Scale. Any other kind is [`ProtobufError::UnsupportedKind`].
//!
//! Fields a newer client knows and `k8s-pb` does not are dropped, as kube-apiserver drops unknown protobuf fields.

mod json;
mod schema;
#[cfg(test)]
mod tests;

use k8s_pb::api::apps::v1 as apps_v1;
use k8s_pb::api::authentication::v1 as authentication_v1;
use k8s_pb::api::authorization::v1 as authorization_v1;
use k8s_pb::api::autoscaling::v1 as autoscaling_v1;
use k8s_pb::api::autoscaling::v2 as autoscaling_v2;
use k8s_pb::api::batch::v1 as batch_v1;
use k8s_pb::api::coordination::v1 as coordination_v1;
use k8s_pb::api::core::v1 as core_v1;
use k8s_pb::api::discovery::v1 as discovery_v1;
use k8s_pb::api::events::v1 as events_v1;
use k8s_pb::api::networking::v1 as networking_v1;
use k8s_pb::api::policy::v1 as policy_v1;
use k8s_pb::api::rbac::v1 as rbac_v1;
use k8s_pb::api::scheduling::v1 as scheduling_v1;
use k8s_pb::api::storage::v1 as storage_v1;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_pb::apimachinery::pkg::runtime::Unknown;
use prost::Message;
use serde_json::Value;

use json::{ToJson, ValueError, ValueProblem};

/// The 4 bytes that open every Kubernetes protobuf body.
pub const MAGIC: &[u8; 4] = b"k8s\0";

/// The media type of Kubernetes protobuf bodies.
pub const CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// A protobuf request body decoded into JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedBody {
    /// The `apiVersion` the envelope names, as `v1` or `apps/v1`.
    pub api_version: String,
    /// The `kind` the envelope names.
    pub kind: String,
    /// The object in the JSON form kube-apiserver uses, with `apiVersion` and `kind` set from the envelope.
    pub object: Value,
}

/// Why a protobuf body could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum ProtobufError {
    /// The body does not start with `k8s\0`.
    #[error("the request body is not a Kubernetes protobuf message: it does not start with \"k8s\\x00\"")]
    NotProtobuf,
    /// The `runtime.Unknown` envelope after the magic bytes is malformed.
    #[error("the protobuf envelope is malformed: {0}")]
    MalformedEnvelope(#[source] prost::DecodeError),
    /// The envelope has no `kind`.
    #[error("the protobuf envelope does not name the kind of its object")]
    MissingKind,
    /// The envelope says its object is compressed or otherwise encoded.
    #[error("the protobuf envelope's content encoding {encoding:?} is not supported")]
    UnsupportedContentEncoding {
        /// The `contentEncoding` of the envelope.
        encoding: String,
    },
    /// The envelope says its object is not protobuf.
    #[error("the protobuf envelope's content type {content_type:?} is not supported")]
    UnsupportedContentType {
        /// The `contentType` of the envelope.
        content_type: String,
    },
    /// Gantry has no protobuf schema for this kind; the client should send JSON.
    #[error("the protobuf encoding of {kind} ({api_version}) is not supported; send it as application/json")]
    UnsupportedKind {
        /// The `apiVersion` the envelope names.
        api_version: String,
        /// The `kind` the envelope names.
        kind: String,
    },
    /// The object bytes are not a valid protobuf encoding of the kind.
    #[error("malformed protobuf {kind} ({api_version}): {source}")]
    MalformedObject {
        /// The `apiVersion` the envelope names.
        api_version: String,
        /// The `kind` the envelope names.
        kind: String,
        /// What prost found wrong.
        #[source]
        source: prost::DecodeError,
    },
    /// A field that embeds JSON (`managedFields[].fieldsV1`, a `RawExtension`) does not hold valid JSON.
    #[error("{kind} ({api_version}) field {path} does not hold valid JSON: {source}")]
    EmbeddedJson {
        /// The `apiVersion` the envelope names.
        api_version: String,
        /// The `kind` the envelope names.
        kind: String,
        /// The JSON path of the field.
        path: String,
        /// The JSON parser's complaint.
        #[source]
        source: serde_json::Error,
    },
    /// A timestamp cannot be written as an RFC 3339 date.
    #[error("{kind} ({api_version}) field {path}: time {seconds}s {nanos}ns is out of range")]
    TimeOutOfRange {
        /// The `apiVersion` the envelope names.
        api_version: String,
        /// The `kind` the envelope names.
        kind: String,
        /// The JSON path of the field.
        path: String,
        /// Seconds since the Unix epoch.
        seconds: i64,
        /// Nanoseconds within the second.
        nanos: i32,
    },
}

impl ProtobufError {
    /// The HTTP status kube-apiserver answers with: 415 Unsupported Media Type for a kind it cannot decode from
    /// protobuf, 400 Bad Request for everything malformed.
    pub fn status_code(&self) -> u16 {
        match self {
            ProtobufError::UnsupportedKind { .. }
            | ProtobufError::UnsupportedContentEncoding { .. }
            | ProtobufError::UnsupportedContentType { .. } => 415,
            _ => 400,
        }
    }
}

/// Whether `body` is a Kubernetes protobuf message (starts with `k8s\0`).
pub fn is_protobuf_envelope(body: &[u8]) -> bool {
    body.starts_with(MAGIC)
}

/// Decodes a Kubernetes protobuf request body into its JSON object.
///
/// An envelope whose `raw` is empty is the kind's zero value: Helm's DELETE sends a `DeleteOptions` like that, and
/// it decodes to `{"apiVersion": .., "kind": "DeleteOptions"}`.
pub fn decode_request(body: &[u8]) -> Result<DecodedBody, ProtobufError> {
    let payload = body.strip_prefix(MAGIC.as_slice()).ok_or(ProtobufError::NotProtobuf)?;
    let envelope = Unknown::decode(payload).map_err(ProtobufError::MalformedEnvelope)?;
    let type_meta = envelope.type_meta.unwrap_or_default();
    let api_version = type_meta.api_version.unwrap_or_default();
    let kind = type_meta.kind.unwrap_or_default();
    if kind.is_empty() {
        return Err(ProtobufError::MissingKind);
    }
    if let Some(encoding) = envelope.content_encoding.filter(|e| !e.is_empty()) {
        return Err(ProtobufError::UnsupportedContentEncoding { encoding });
    }
    if let Some(content_type) = envelope.content_type.filter(|t| !t.is_empty() && t != CONTENT_TYPE) {
        return Err(ProtobufError::UnsupportedContentType { content_type });
    }
    let raw = envelope.raw.unwrap_or_default();
    let mut object = match decode_object(&api_version, &kind, &raw) {
        None => return Err(ProtobufError::UnsupportedKind { api_version, kind }),
        Some(Err(ObjectError::Decode(source))) => {
            return Err(ProtobufError::MalformedObject { api_version, kind, source });
        }
        Some(Err(ObjectError::Value(error))) => return Err(value_error(api_version, kind, error)),
        Some(Ok(object)) => object,
    };
    if let Value::Object(fields) = &mut object {
        fields.insert("apiVersion".to_owned(), Value::String(api_version.clone()));
        fields.insert("kind".to_owned(), Value::String(kind.clone()));
    }
    Ok(DecodedBody { api_version, kind, object })
}

fn value_error(api_version: String, kind: String, error: ValueError) -> ProtobufError {
    let path = error.path();
    match error.problem {
        ValueProblem::EmbeddedJson(source) => ProtobufError::EmbeddedJson { api_version, kind, path, source },
        ValueProblem::TimeOutOfRange { seconds, nanos } => {
            ProtobufError::TimeOutOfRange { api_version, kind, path, seconds, nanos }
        }
    }
}

enum ObjectError {
    Decode(prost::DecodeError),
    Value(ValueError),
}

fn convert<T: Message + Default + ToJson>(raw: &[u8]) -> Result<Value, ObjectError> {
    T::decode(raw).map_err(ObjectError::Decode)?.to_json().map_err(ObjectError::Value)
}

/// The kinds with a protobuf schema: `apiVersion`, `kind`, the `k8s-pb` type, and (for the tests) the `k8s-openapi`
/// type the JSON must round-trip through.
macro_rules! kinds {
    ($( $api_version:literal $kind:literal => $pb:ty, $openapi:ty; )*) => {
        fn decode_object(api_version: &str, kind: &str, raw: &[u8]) -> Option<Result<Value, ObjectError>> {
            // Clients send DeleteOptions under the group version of the resource they delete.
            if kind == "DeleteOptions" {
                return Some(convert::<meta::DeleteOptions>(raw));
            }
            match (api_version, kind) {
                $( ($api_version, $kind) => Some(convert::<$pb>(raw)), )*
                _ => None,
            }
        }

        /// Encodes a fully populated sample of every kind, decodes it, and hands the JSON with the k8s-openapi
        /// round trip of it to `check`.
        #[cfg(test)]
        fn for_each_kind_sample(mut check: impl FnMut(&str, &str, &Value, Result<Value, String>)) {
            $(
                let raw = <$pb as json::Sample>::sample().encode_to_vec();
                let decoded = decode_request(&tests::envelope($api_version, $kind, &raw))
                    .unwrap_or_else(|e| panic!("{} {}: {e}", $api_version, $kind));
                let round_trip = serde_json::from_value::<$openapi>(decoded.object.clone())
                    .map_err(|e| e.to_string())
                    .and_then(|typed| serde_json::to_value(&typed).map_err(|e| e.to_string()));
                check($api_version, $kind, &decoded.object, round_trip);
            )*
        }
    };
}

kinds! {
    "v1" "Binding" => core_v1::Binding, k8s_openapi::api::core::v1::Binding;
    "v1" "ConfigMap" => core_v1::ConfigMap, k8s_openapi::api::core::v1::ConfigMap;
    "v1" "Endpoints" => core_v1::Endpoints, k8s_openapi::api::core::v1::Endpoints;
    "v1" "Event" => core_v1::Event, k8s_openapi::api::core::v1::Event;
    "v1" "LimitRange" => core_v1::LimitRange, k8s_openapi::api::core::v1::LimitRange;
    "v1" "Namespace" => core_v1::Namespace, k8s_openapi::api::core::v1::Namespace;
    "v1" "Node" => core_v1::Node, k8s_openapi::api::core::v1::Node;
    "v1" "PersistentVolume" => core_v1::PersistentVolume, k8s_openapi::api::core::v1::PersistentVolume;
    "v1" "PersistentVolumeClaim" => core_v1::PersistentVolumeClaim, k8s_openapi::api::core::v1::PersistentVolumeClaim;
    "v1" "Pod" => core_v1::Pod, k8s_openapi::api::core::v1::Pod;
    "v1" "ResourceQuota" => core_v1::ResourceQuota, k8s_openapi::api::core::v1::ResourceQuota;
    "v1" "Secret" => core_v1::Secret, k8s_openapi::api::core::v1::Secret;
    "v1" "Service" => core_v1::Service, k8s_openapi::api::core::v1::Service;
    "v1" "ServiceAccount" => core_v1::ServiceAccount, k8s_openapi::api::core::v1::ServiceAccount;
    "apps/v1" "ControllerRevision" => apps_v1::ControllerRevision, k8s_openapi::api::apps::v1::ControllerRevision;
    "apps/v1" "DaemonSet" => apps_v1::DaemonSet, k8s_openapi::api::apps::v1::DaemonSet;
    "apps/v1" "Deployment" => apps_v1::Deployment, k8s_openapi::api::apps::v1::Deployment;
    "apps/v1" "ReplicaSet" => apps_v1::ReplicaSet, k8s_openapi::api::apps::v1::ReplicaSet;
    "apps/v1" "StatefulSet" => apps_v1::StatefulSet, k8s_openapi::api::apps::v1::StatefulSet;
    "authentication.k8s.io/v1" "SelfSubjectReview" =>
        authentication_v1::SelfSubjectReview, k8s_openapi::api::authentication::v1::SelfSubjectReview;
    "authentication.k8s.io/v1" "TokenRequest" =>
        authentication_v1::TokenRequest, k8s_openapi::api::authentication::v1::TokenRequest;
    "authentication.k8s.io/v1" "TokenReview" =>
        authentication_v1::TokenReview, k8s_openapi::api::authentication::v1::TokenReview;
    "authorization.k8s.io/v1" "LocalSubjectAccessReview" =>
        authorization_v1::LocalSubjectAccessReview, k8s_openapi::api::authorization::v1::LocalSubjectAccessReview;
    "authorization.k8s.io/v1" "SelfSubjectAccessReview" =>
        authorization_v1::SelfSubjectAccessReview, k8s_openapi::api::authorization::v1::SelfSubjectAccessReview;
    "authorization.k8s.io/v1" "SelfSubjectRulesReview" =>
        authorization_v1::SelfSubjectRulesReview, k8s_openapi::api::authorization::v1::SelfSubjectRulesReview;
    "authorization.k8s.io/v1" "SubjectAccessReview" =>
        authorization_v1::SubjectAccessReview, k8s_openapi::api::authorization::v1::SubjectAccessReview;
    "autoscaling/v1" "HorizontalPodAutoscaler" =>
        autoscaling_v1::HorizontalPodAutoscaler, k8s_openapi::api::autoscaling::v1::HorizontalPodAutoscaler;
    "autoscaling/v1" "Scale" => autoscaling_v1::Scale, k8s_openapi::api::autoscaling::v1::Scale;
    "autoscaling/v2" "HorizontalPodAutoscaler" =>
        autoscaling_v2::HorizontalPodAutoscaler, k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
    "batch/v1" "CronJob" => batch_v1::CronJob, k8s_openapi::api::batch::v1::CronJob;
    "batch/v1" "Job" => batch_v1::Job, k8s_openapi::api::batch::v1::Job;
    "coordination.k8s.io/v1" "Lease" => coordination_v1::Lease, k8s_openapi::api::coordination::v1::Lease;
    "discovery.k8s.io/v1" "EndpointSlice" =>
        discovery_v1::EndpointSlice, k8s_openapi::api::discovery::v1::EndpointSlice;
    "events.k8s.io/v1" "Event" => events_v1::Event, k8s_openapi::api::events::v1::Event;
    "networking.k8s.io/v1" "Ingress" => networking_v1::Ingress, k8s_openapi::api::networking::v1::Ingress;
    "networking.k8s.io/v1" "IngressClass" =>
        networking_v1::IngressClass, k8s_openapi::api::networking::v1::IngressClass;
    "networking.k8s.io/v1" "NetworkPolicy" =>
        networking_v1::NetworkPolicy, k8s_openapi::api::networking::v1::NetworkPolicy;
    "policy/v1" "Eviction" => policy_v1::Eviction, k8s_openapi::api::policy::v1::Eviction;
    "policy/v1" "PodDisruptionBudget" =>
        policy_v1::PodDisruptionBudget, k8s_openapi::api::policy::v1::PodDisruptionBudget;
    "rbac.authorization.k8s.io/v1" "ClusterRole" => rbac_v1::ClusterRole, k8s_openapi::api::rbac::v1::ClusterRole;
    "rbac.authorization.k8s.io/v1" "ClusterRoleBinding" =>
        rbac_v1::ClusterRoleBinding, k8s_openapi::api::rbac::v1::ClusterRoleBinding;
    "rbac.authorization.k8s.io/v1" "Role" => rbac_v1::Role, k8s_openapi::api::rbac::v1::Role;
    "rbac.authorization.k8s.io/v1" "RoleBinding" => rbac_v1::RoleBinding, k8s_openapi::api::rbac::v1::RoleBinding;
    "scheduling.k8s.io/v1" "PriorityClass" =>
        scheduling_v1::PriorityClass, k8s_openapi::api::scheduling::v1::PriorityClass;
    "storage.k8s.io/v1" "StorageClass" => storage_v1::StorageClass, k8s_openapi::api::storage::v1::StorageClass;
}
