use std::collections::BTreeMap;

use k8s_pb::api::apps::v1 as apps_v1;
use k8s_pb::api::core::v1 as core_v1;
use k8s_pb::apimachinery::pkg::api::resource::Quantity;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_pb::apimachinery::pkg::runtime::{TypeMeta, Unknown};
use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;
use prost::Message;
use serde_json::{Value, json};

use super::*;

/// Wraps an object's protobuf bytes the way client-go does.
pub(super) fn envelope(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
    let unknown = Unknown {
        type_meta: Some(TypeMeta { api_version: Some(api_version.to_owned()), kind: Some(kind.to_owned()) }),
        raw: Some(raw.to_vec()),
        content_encoding: Some(String::new()),
        content_type: Some(String::new()),
    };
    let mut body = MAGIC.to_vec();
    body.extend(unknown.encode_to_vec());
    body
}

fn decode(api_version: &str, kind: &str, message: &impl Message) -> Value {
    decode_request(&envelope(api_version, kind, &message.encode_to_vec()))
        .unwrap_or_else(|e| panic!("{kind}: {e}"))
        .object
}

fn s(value: &str) -> Option<String> {
    Some(value.to_owned())
}

fn string_map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

fn quantities(pairs: &[(&str, &str)]) -> BTreeMap<String, Quantity> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), Quantity { string: s(v) })).collect()
}

fn int_port(port: i32) -> Option<IntOrString> {
    Some(IntOrString { r#type: Some(0), int_val: Some(port), str_val: Some(String::new()) })
}

fn named_port(name: &str) -> Option<IntOrString> {
    Some(IntOrString { r#type: Some(1), int_val: Some(0), str_val: s(name) })
}

/// ObjectMeta as client-go encodes it for a new object: every non-pointer field is on the wire, zero or not.
fn go_meta(name: &str, namespace: &str) -> meta::ObjectMeta {
    meta::ObjectMeta {
        name: s(name),
        generate_name: s(""),
        namespace: s(namespace),
        self_link: s(""),
        uid: s(""),
        resource_version: s(""),
        generation: Some(0),
        creation_timestamp: Some(meta::Time::default()),
        ..Default::default()
    }
}

#[test]
fn is_protobuf_envelope_checks_the_magic_bytes() {
    assert!(is_protobuf_envelope(b"k8s\0\x0a\x00"));
    assert!(!is_protobuf_envelope(b"k8s"));
    assert!(!is_protobuf_envelope(b"{\"kind\":\"Secret\"}"));
    assert!(!is_protobuf_envelope(b""));
}

#[test]
fn helm_release_secret_keeps_labels_type_and_binary_data_as_base64() {
    let release: Vec<u8> = vec![0x1f, 0x8b, 0x08, 0x00, 0xff, 0xfe, 0x00, 0x41];
    let secret = core_v1::Secret {
        metadata: Some(meta::ObjectMeta {
            labels: string_map(&[("name", "web"), ("owner", "helm"), ("status", "deployed"), ("version", "1")]),
            ..go_meta("sh.helm.release.v1.web.v1", "default")
        }),
        immutable: None,
        data: BTreeMap::from([("release".to_owned(), release)]),
        string_data: BTreeMap::new(),
        r#type: s("helm.sh/release.v1"),
    };
    assert_eq!(
        decode("v1", "Secret", &secret),
        json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": "sh.helm.release.v1.web.v1",
                "namespace": "default",
                "labels": {"name": "web", "owner": "helm", "status": "deployed", "version": "1"},
            },
            "data": {"release": "H4sIAP/+AEE="},
            "type": "helm.sh/release.v1",
        })
    );
}

#[test]
fn secret_data_with_an_empty_value_keeps_the_key() {
    let secret = core_v1::Secret {
        metadata: Some(go_meta("s", "")),
        data: BTreeMap::from([("empty".to_owned(), Vec::new())]),
        immutable: Some(false),
        ..Default::default()
    };
    let object = decode("v1", "Secret", &secret);
    assert_eq!(object["data"], json!({"empty": ""}));
    // immutable is a *bool: an explicit false is kept.
    assert_eq!(object["immutable"], json!(false));
}

#[test]
fn configmap_keeps_data_and_base64_encodes_binary_data() {
    let config_map = core_v1::ConfigMap {
        metadata: Some(go_meta("app-config", "prod")),
        immutable: None,
        data: string_map(&[("app.properties", "a=1\nb=2\n"), ("empty", "")]),
        binary_data: BTreeMap::from([("blob".to_owned(), b"\x00\x01\x02".to_vec())]),
    };
    assert_eq!(
        decode("v1", "ConfigMap", &config_map),
        json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "app-config", "namespace": "prod"},
            "data": {"app.properties": "a=1\nb=2\n", "empty": ""},
            "binaryData": {"blob": "AAEC"},
        })
    );
}

#[test]
fn namespace_from_kubectl_create_has_empty_spec_and_status() {
    let namespace = core_v1::Namespace {
        metadata: Some(go_meta("team-a", "")),
        spec: Some(core_v1::NamespaceSpec::default()),
        status: Some(core_v1::NamespaceStatus { phase: s(""), conditions: Vec::new() }),
    };
    assert_eq!(
        decode("v1", "Namespace", &namespace),
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a"}, "spec": {}, "status": {}})
    );
}

fn web_container() -> core_v1::Container {
    core_v1::Container {
        name: s("web"),
        image: s("nginx:1.27"),
        command: vec!["nginx".to_owned()],
        args: vec!["-g".to_owned(), "daemon off;".to_owned()],
        working_dir: s(""),
        ports: vec![core_v1::ContainerPort {
            name: s("http"),
            host_port: Some(0),
            container_port: Some(80),
            protocol: s("TCP"),
            host_ip: s(""),
        }],
        env: vec![
            core_v1::EnvVar { name: s("MODE"), value: s("production"), value_from: None },
            core_v1::EnvVar { name: s("EMPTY"), value: s(""), value_from: None },
            core_v1::EnvVar {
                name: s("PASSWORD"),
                value: s(""),
                value_from: Some(core_v1::EnvVarSource {
                    secret_key_ref: Some(core_v1::SecretKeySelector {
                        local_object_reference: Some(core_v1::LocalObjectReference { name: s("db") }),
                        key: s("password"),
                        optional: Some(false),
                    }),
                    ..Default::default()
                }),
            },
        ],
        resources: Some(core_v1::ResourceRequirements {
            limits: quantities(&[("cpu", "500m"), ("memory", "128Mi")]),
            requests: quantities(&[("cpu", "250m"), ("memory", "64Mi")]),
            claims: Vec::new(),
        }),
        liveness_probe: Some(core_v1::Probe {
            handler: Some(core_v1::ProbeHandler {
                http_get: Some(core_v1::HttpGetAction {
                    path: s("/healthz"),
                    port: int_port(8080),
                    host: s(""),
                    scheme: s("HTTP"),
                    http_headers: Vec::new(),
                }),
                ..Default::default()
            }),
            initial_delay_seconds: Some(3),
            timeout_seconds: Some(0),
            period_seconds: Some(10),
            success_threshold: Some(0),
            failure_threshold: Some(0),
            termination_grace_period_seconds: None,
        }),
        readiness_probe: Some(core_v1::Probe {
            handler: Some(core_v1::ProbeHandler {
                tcp_socket: Some(core_v1::TcpSocketAction { port: named_port("http"), host: s("") }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        termination_message_path: s(""),
        termination_message_policy: s(""),
        image_pull_policy: s("IfNotPresent"),
        stdin: Some(false),
        stdin_once: Some(false),
        tty: Some(false),
        ..Default::default()
    }
}

#[test]
fn deployment_decodes_its_pod_template_with_ports_resources_env_and_probes() {
    let labels = string_map(&[("app", "web")]);
    let deployment = apps_v1::Deployment {
        metadata: Some(meta::ObjectMeta { labels: labels.clone(), ..go_meta("web", "default") }),
        spec: Some(apps_v1::DeploymentSpec {
            replicas: Some(3),
            selector: Some(meta::LabelSelector { match_labels: labels.clone(), match_expressions: Vec::new() }),
            template: Some(core_v1::PodTemplateSpec {
                metadata: Some(meta::ObjectMeta { labels: labels.clone(), ..go_meta("", "") }),
                spec: Some(core_v1::PodSpec {
                    containers: vec![web_container()],
                    restart_policy: s(""),
                    dns_policy: s(""),
                    service_account_name: s(""),
                    service_account: s(""),
                    node_name: s(""),
                    host_network: Some(false),
                    host_pid: Some(false),
                    host_ipc: Some(false),
                    hostname: s(""),
                    subdomain: s(""),
                    scheduler_name: s(""),
                    priority_class_name: s(""),
                    ..Default::default()
                }),
            }),
            strategy: Some(apps_v1::DeploymentStrategy { r#type: s(""), rolling_update: None }),
            min_ready_seconds: Some(0),
            revision_history_limit: None,
            paused: Some(false),
            progress_deadline_seconds: None,
        }),
        status: Some(apps_v1::DeploymentStatus {
            observed_generation: Some(0),
            replicas: Some(0),
            updated_replicas: Some(0),
            ready_replicas: Some(0),
            available_replicas: Some(0),
            unavailable_replicas: Some(0),
            ..Default::default()
        }),
    };
    assert_eq!(
        decode("apps/v1", "Deployment", &deployment),
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {
                        "containers": [{
                            "name": "web",
                            "image": "nginx:1.27",
                            "command": ["nginx"],
                            "args": ["-g", "daemon off;"],
                            "ports": [{"name": "http", "containerPort": 80, "protocol": "TCP"}],
                            "env": [
                                {"name": "MODE", "value": "production"},
                                {"name": "EMPTY"},
                                {"name": "PASSWORD", "valueFrom": {
                                    "secretKeyRef": {"name": "db", "key": "password", "optional": false},
                                }},
                            ],
                            "resources": {
                                "limits": {"cpu": "500m", "memory": "128Mi"},
                                "requests": {"cpu": "250m", "memory": "64Mi"},
                            },
                            "livenessProbe": {
                                "httpGet": {"path": "/healthz", "port": 8080, "scheme": "HTTP"},
                                "initialDelaySeconds": 3,
                                "periodSeconds": 10,
                            },
                            "readinessProbe": {"tcpSocket": {"port": "http"}},
                            "imagePullPolicy": "IfNotPresent",
                        }],
                    },
                },
                "strategy": {},
            },
            "status": {},
        })
    );
}

#[test]
fn replicas_zero_is_kept_because_go_makes_it_a_pointer() {
    let deployment = apps_v1::Deployment {
        metadata: Some(go_meta("idle", "default")),
        spec: Some(apps_v1::DeploymentSpec {
            replicas: Some(0),
            revision_history_limit: Some(0),
            min_ready_seconds: Some(0),
            ..Default::default()
        }),
        status: None,
    };
    let object = decode("apps/v1", "Deployment", &deployment);
    assert_eq!(object["spec"], json!({"replicas": 0, "revisionHistoryLimit": 0}));
}

#[test]
fn pod_security_context_keeps_run_as_user_zero() {
    let pod = core_v1::Pod {
        metadata: Some(go_meta("root", "default")),
        spec: Some(core_v1::PodSpec {
            containers: vec![core_v1::Container {
                name: s("c"),
                security_context: Some(core_v1::SecurityContext {
                    run_as_user: Some(0),
                    privileged: Some(false),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            automount_service_account_token: Some(false),
            termination_grace_period_seconds: Some(0),
            host_network: Some(false),
            ..Default::default()
        }),
        status: None,
    };
    let object = decode("v1", "Pod", &pod);
    assert_eq!(
        object["spec"],
        json!({
            "containers": [{"name": "c", "securityContext": {"runAsUser": 0, "privileged": false}}],
            "automountServiceAccountToken": false,
            "terminationGracePeriodSeconds": 0,
        })
    );
}

#[test]
fn fields_without_omitempty_are_written_even_at_zero() {
    let priority_class = k8s_pb::api::scheduling::v1::PriorityClass {
        metadata: Some(go_meta("zero", "")),
        value: Some(0),
        global_default: Some(false),
        description: s(""),
        preemption_policy: None,
    };
    assert_eq!(
        decode("scheduling.k8s.io/v1", "PriorityClass", &priority_class),
        json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": "zero"}, "value": 0})
    );
}

#[test]
fn service_target_ports_keep_their_int_or_string_form() {
    let service = core_v1::Service {
        metadata: Some(go_meta("web", "default")),
        spec: Some(core_v1::ServiceSpec {
            ports: vec![
                core_v1::ServicePort {
                    name: s("http"),
                    protocol: s("TCP"),
                    port: Some(80),
                    target_port: int_port(8080),
                    node_port: Some(0),
                    app_protocol: None,
                },
                core_v1::ServicePort {
                    name: s("metrics"),
                    protocol: s("TCP"),
                    port: Some(9090),
                    target_port: named_port("metrics"),
                    node_port: Some(0),
                    app_protocol: s("http"),
                },
            ],
            selector: string_map(&[("app", "web")]),
            cluster_ip: s(""),
            r#type: s("ClusterIP"),
            session_affinity: s(""),
            load_balancer_ip: s(""),
            external_name: s(""),
            external_traffic_policy: s(""),
            health_check_node_port: Some(0),
            publish_not_ready_addresses: Some(false),
            ..Default::default()
        }),
        status: Some(core_v1::ServiceStatus {
            load_balancer: Some(core_v1::LoadBalancerStatus::default()),
            conditions: Vec::new(),
        }),
    };
    assert_eq!(
        decode("v1", "Service", &service),
        json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {
                "ports": [
                    {"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080},
                    {"name": "metrics", "protocol": "TCP", "port": 9090, "targetPort": "metrics", "appProtocol": "http"},
                ],
                "selector": {"app": "web"},
                "type": "ClusterIP",
            },
            "status": {"loadBalancer": {}},
        })
    );
}

#[test]
fn delete_options_keep_propagation_policy_and_a_zero_grace_period() {
    let options = meta::DeleteOptions {
        grace_period_seconds: Some(0),
        propagation_policy: s("Foreground"),
        preconditions: Some(meta::Preconditions { uid: s("1234"), resource_version: None }),
        dry_run: vec!["All".to_owned()],
        ..Default::default()
    };
    assert_eq!(
        decode("v1", "DeleteOptions", &options),
        json!({
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "gracePeriodSeconds": 0,
            "propagationPolicy": "Foreground",
            "preconditions": {"uid": "1234"},
            "dryRun": ["All"],
        })
    );
}

#[test]
fn delete_options_with_an_empty_raw_decode_to_their_type_meta_only() {
    // Helm's `uninstall` deletes its release Secrets with this body.
    for api_version in ["v1", "apps/v1", "meta.k8s.io/v1"] {
        let decoded = decode_request(&envelope(api_version, "DeleteOptions", &[])).expect("empty DeleteOptions");
        assert_eq!(decoded.object, json!({"apiVersion": api_version, "kind": "DeleteOptions"}));
        assert_eq!((decoded.api_version.as_str(), decoded.kind.as_str()), (api_version, "DeleteOptions"));
    }
}

#[test]
fn an_envelope_without_raw_is_the_zero_object() {
    let unknown =
        Unknown { type_meta: Some(TypeMeta { api_version: s("v1"), kind: s("DeleteOptions") }), ..Default::default() };
    let body = [MAGIC.as_slice(), &unknown.encode_to_vec()].concat();
    let decoded = decode_request(&body).expect("DeleteOptions without raw");
    assert_eq!(decoded.object, json!({"apiVersion": "v1", "kind": "DeleteOptions"}));
}

#[test]
fn object_meta_keeps_owner_references_finalizers_managed_fields_and_generate_name() {
    let config_map = core_v1::ConfigMap {
        metadata: Some(meta::ObjectMeta {
            generate_name: s("cfg-"),
            annotations: string_map(&[("note", "")]),
            finalizers: vec!["example.com/cleanup".to_owned()],
            deletion_timestamp: Some(meta::Time { seconds: Some(1_700_000_000), nanos: Some(500) }),
            deletion_grace_period_seconds: Some(0),
            owner_references: vec![meta::OwnerReference {
                api_version: s("apps/v1"),
                kind: s("ReplicaSet"),
                name: s("web-5d4f"),
                uid: s("6b1c"),
                controller: Some(true),
                block_owner_deletion: Some(false),
            }],
            managed_fields: vec![meta::ManagedFieldsEntry {
                manager: s("kubectl-create"),
                operation: s("Update"),
                api_version: s("v1"),
                time: Some(meta::Time { seconds: Some(1_700_000_001), nanos: None }),
                fields_type: s("FieldsV1"),
                fields_v1: Some(meta::FieldsV1 { raw: Some(br#"{"f:data":{".":{}}}"#.to_vec()) }),
                subresource: s(""),
            }],
            ..go_meta("", "default")
        }),
        ..Default::default()
    };
    assert_eq!(
        decode("v1", "ConfigMap", &config_map)["metadata"],
        json!({
            "generateName": "cfg-",
            "namespace": "default",
            "annotations": {"note": ""},
            "finalizers": ["example.com/cleanup"],
            "deletionTimestamp": "2023-11-14T22:13:20Z",
            "deletionGracePeriodSeconds": 0,
            "ownerReferences": [{
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "name": "web-5d4f",
                "uid": "6b1c",
                "controller": true,
                "blockOwnerDeletion": false,
            }],
            "managedFields": [{
                "manager": "kubectl-create",
                "operation": "Update",
                "apiVersion": "v1",
                "time": "2023-11-14T22:13:21Z",
                "fieldsType": "FieldsV1",
                "fieldsV1": {"f:data": {".": {}}},
            }],
        })
    );
}

#[test]
fn micro_times_have_six_fractional_digits() {
    let event = k8s_pb::api::events::v1::Event {
        metadata: Some(go_meta("e", "default")),
        event_time: Some(meta::MicroTime { seconds: Some(1_700_000_000), nanos: Some(123_456_789) }),
        reporting_controller: s("gantry"),
        ..Default::default()
    };
    let object = decode("events.k8s.io/v1", "Event", &event);
    assert_eq!(object["eventTime"], json!("2023-11-14T22:13:20.123456Z"));
    assert_eq!(object["reportingController"], json!("gantry"));
}

#[test]
fn self_subject_access_review_from_kubectl_auth_can_i_decodes() {
    use k8s_pb::api::authorization::v1 as authz;
    let review = authz::SelfSubjectAccessReview {
        metadata: Some(go_meta("", "")),
        spec: Some(authz::SelfSubjectAccessReviewSpec {
            resource_attributes: Some(authz::ResourceAttributes {
                namespace: s("default"),
                verb: s("create"),
                group: s(""),
                version: s(""),
                resource: s("pods"),
                subresource: s(""),
                name: s(""),
                field_selector: None,
                label_selector: None,
            }),
            non_resource_attributes: None,
        }),
        status: Some(authz::SubjectAccessReviewStatus {
            allowed: Some(false),
            denied: Some(false),
            reason: s(""),
            evaluation_error: s(""),
        }),
    };
    assert_eq!(
        decode("authorization.k8s.io/v1", "SelfSubjectAccessReview", &review),
        json!({
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectAccessReview",
            "metadata": {},
            "spec": {"resourceAttributes": {"namespace": "default", "verb": "create", "resource": "pods"}},
            "status": {"allowed": false},
        })
    );
}

#[test]
fn eviction_from_kubectl_drain_carries_its_delete_options() {
    let eviction = k8s_pb::api::policy::v1::Eviction {
        metadata: Some(go_meta("web-0", "default")),
        delete_options: Some(meta::DeleteOptions { grace_period_seconds: Some(30), ..Default::default() }),
    };
    assert_eq!(
        decode("policy/v1", "Eviction", &eviction),
        json!({
            "apiVersion": "policy/v1",
            "kind": "Eviction",
            "metadata": {"name": "web-0", "namespace": "default"},
            "deleteOptions": {"gracePeriodSeconds": 30},
        })
    );
}

#[test]
fn token_request_keeps_its_audiences_and_expiration() {
    use k8s_pb::api::authentication::v1 as authn;
    let request = authn::TokenRequest {
        metadata: Some(go_meta("default", "default")),
        spec: Some(authn::TokenRequestSpec {
            audiences: vec!["https://kubernetes.default.svc".to_owned()],
            expiration_seconds: Some(3600),
            bound_object_ref: None,
        }),
        status: Some(authn::TokenRequestStatus { token: s(""), expiration_timestamp: Some(meta::Time::default()) }),
    };
    assert_eq!(
        decode("authentication.k8s.io/v1", "TokenRequest", &request),
        json!({
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "metadata": {"name": "default", "namespace": "default"},
            "spec": {"audiences": ["https://kubernetes.default.svc"], "expirationSeconds": 3600},
            "status": {"token": ""},
        })
    );
}

#[test]
fn unknown_kind_is_unsupported_and_named_in_the_error() {
    let error = decode_request(&envelope("example.com/v1", "Widget", b"\x0a\x00")).expect_err("unknown kind");
    assert!(matches!(&error, ProtobufError::UnsupportedKind { api_version, kind }
        if api_version == "example.com/v1" && kind == "Widget"));
    assert_eq!(error.status_code(), 415);
    assert!(error.to_string().contains("Widget"), "{error}");
}

#[test]
fn a_known_kind_under_another_version_is_unsupported() {
    let error = decode_request(&envelope("apps/v1beta1", "Deployment", &[])).expect_err("old version");
    assert!(matches!(error, ProtobufError::UnsupportedKind { .. }));
}

#[test]
fn body_without_magic_is_not_protobuf() {
    let error = decode_request(b"{\"apiVersion\":\"v1\"}").expect_err("JSON body");
    assert!(matches!(error, ProtobufError::NotProtobuf));
    assert_eq!(error.status_code(), 400);
}

#[test]
fn truncated_envelope_is_malformed() {
    let mut body = envelope("v1", "Secret", &core_v1::Secret::default().encode_to_vec());
    body.truncate(body.len() - 3);
    assert!(matches!(decode_request(&body), Err(ProtobufError::MalformedEnvelope(_))));
    // A length prefix that runs past the end.
    assert!(matches!(decode_request(b"k8s\0\x0a\x7f"), Err(ProtobufError::MalformedEnvelope(_))));
}

#[test]
fn envelope_without_a_kind_is_rejected() {
    let error = decode_request(&envelope("v1", "", &[])).expect_err("no kind");
    assert!(matches!(error, ProtobufError::MissingKind));
    assert_eq!(error.status_code(), 400);
}

#[test]
fn malformed_object_bytes_are_reported_with_their_kind() {
    // Field 1 (metadata) claims 16 bytes but only 2 follow.
    let error = decode_request(&envelope("v1", "ConfigMap", b"\x0a\x10\x0a\x00")).expect_err("truncated object");
    assert!(matches!(&error, ProtobufError::MalformedObject { kind, .. } if kind == "ConfigMap"));
    assert_eq!(error.status_code(), 400);
    // A string field that is not UTF-8.
    let error = decode_request(&envelope("v1", "Secret", b"\x1a\x02\xff\xfe")).expect_err("bad UTF-8");
    assert!(matches!(error, ProtobufError::MalformedObject { .. }));
}

#[test]
fn compressed_or_non_protobuf_content_is_rejected() {
    let mut unknown = Unknown {
        type_meta: Some(TypeMeta { api_version: s("v1"), kind: s("Secret") }),
        raw: Some(Vec::new()),
        content_encoding: s("gzip"),
        content_type: None,
    };
    let body = [MAGIC.as_slice(), &unknown.encode_to_vec()].concat();
    assert!(
        matches!(decode_request(&body), Err(ProtobufError::UnsupportedContentEncoding { encoding }) if encoding == "gzip")
    );
    unknown.content_encoding = None;
    unknown.content_type = s("application/json");
    let body = [MAGIC.as_slice(), &unknown.encode_to_vec()].concat();
    assert!(matches!(decode_request(&body), Err(ProtobufError::UnsupportedContentType { .. })));
    unknown.content_type = s(CONTENT_TYPE);
    let body = [MAGIC.as_slice(), &unknown.encode_to_vec()].concat();
    assert!(decode_request(&body).is_ok());
}

#[test]
fn invalid_fields_v1_json_names_the_field_path() {
    let config_map = core_v1::ConfigMap {
        metadata: Some(meta::ObjectMeta {
            managed_fields: vec![meta::ManagedFieldsEntry {
                fields_v1: Some(meta::FieldsV1 { raw: Some(b"{not json".to_vec()) }),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    };
    let error = decode_request(&envelope("v1", "ConfigMap", &config_map.encode_to_vec())).expect_err("bad fieldsV1");
    match &error {
        ProtobufError::EmbeddedJson { path, kind, .. } => {
            assert_eq!(path, "metadata.managedFields[0].fieldsV1");
            assert_eq!(kind, "ConfigMap");
        }
        other => panic!("unexpected error {other}"),
    }
    assert_eq!(error.status_code(), 400);
}

#[test]
fn time_out_of_range_is_an_error() {
    let config_map = core_v1::ConfigMap {
        metadata: Some(meta::ObjectMeta {
            creation_timestamp: Some(meta::Time { seconds: Some(i64::MAX), nanos: None }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let error = decode_request(&envelope("v1", "ConfigMap", &config_map.encode_to_vec())).expect_err("far future");
    assert!(matches!(&error, ProtobufError::TimeOutOfRange { path, .. } if path == "metadata.creationTimestamp"));
}

#[test]
fn every_built_in_kind_can_be_decoded() {
    // CustomResourceDefinitions reach the server as JSON: kubectl and helm send manifests through the dynamic
    // client, and JSONSchemaProps carries raw JSON fields the schema-driven decoder does not model.
    for resource in crate::registry::BUILT_IN.iter().filter(|r| r.kind != "CustomResourceDefinition") {
        let api_version = if resource.group.is_empty() {
            resource.version.to_owned()
        } else {
            format!("{}/{}", resource.group, resource.version)
        };
        let decoded = decode_request(&envelope(&api_version, resource.kind, &[]))
            .unwrap_or_else(|e| panic!("{api_version} {}: {e}", resource.kind));
        assert_eq!(decoded.object["kind"], json!(resource.kind));
    }
}

#[test]
fn every_kind_round_trips_through_k8s_openapi() {
    // Every field of every message is set to a distinct value; a JSON name or shape that k8s-openapi does not
    // know would be dropped or refused, and the round trip would differ.
    let mut checked = 0;
    for_each_kind_sample(|api_version, kind, object, round_trip| {
        let round_trip = round_trip.unwrap_or_else(|e| panic!("{api_version} {kind}: k8s-openapi refused: {e}"));
        let mut differences = Vec::new();
        json_differences("", object, &round_trip, &mut differences);
        assert!(
            differences.is_empty(),
            "{api_version} {kind}: JSON differs after a k8s-openapi round trip: {differences:?}"
        );
        checked += 1;
    });
    assert_eq!(checked, 45);
}

#[test]
fn delete_options_round_trip_through_k8s_openapi() {
    let options = <meta::DeleteOptions as json::Sample>::sample();
    let object = decode("v1", "DeleteOptions", &options);
    let typed: k8s_openapi::apimachinery::pkg::apis::meta::v1::DeleteOptions =
        serde_json::from_value(object.clone()).expect("k8s-openapi DeleteOptions");
    assert_eq!(serde_json::to_value(&typed).expect("serialize"), object);
}

#[test]
fn json_names_are_the_camel_case_of_rust_names() {
    assert_eq!(json::json_name("working_dir"), "workingDir");
    assert_eq!(json::json_name("r#type"), "type");
    assert_eq!(json::json_name("termination_grace_period_seconds"), "terminationGracePeriodSeconds");
    assert_eq!(json::json_name("metadata"), "metadata");
}

/// The paths where two JSON values differ, with both sides.
fn json_differences(path: &str, ours: &Value, theirs: &Value, out: &mut Vec<String>) {
    match (ours, theirs) {
        (Value::Object(a), Value::Object(b)) => {
            for key in a.keys().chain(b.keys().filter(|k| !a.contains_key(*k))) {
                // k8s-openapi writes apiVersion and kind for embedded objects too (a StatefulSet's
                // volumeClaimTemplates); Go leaves their empty TypeMeta out.
                if !path.is_empty() && !a.contains_key(key) && (key == "apiVersion" || key == "kind") {
                    continue;
                }
                let (x, y) = (a.get(key).unwrap_or(&Value::Null), b.get(key).unwrap_or(&Value::Null));
                json_differences(&format!("{path}.{key}"), x, y, out);
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                json_differences(&format!("{path}[{i}]"), x, y, out);
            }
        }
        _ if ours != theirs => out.push(format!("{path}: ours {ours}, k8s-openapi {theirs}")),
        _ => {}
    }
}

#[test]
fn an_empty_local_object_reference_name_is_left_out_like_go_omitempty() {
    let pod = core_v1::Pod {
        metadata: Some(go_meta("p", "default")),
        spec: Some(core_v1::PodSpec {
            image_pull_secrets: vec![
                core_v1::LocalObjectReference { name: s("") },
                core_v1::LocalObjectReference { name: s("regcred") },
            ],
            ..Default::default()
        }),
        status: None,
    };
    assert_eq!(decode("v1", "Pod", &pod)["spec"], json!({"imagePullSecrets": [{}, {"name": "regcred"}]}));
}
