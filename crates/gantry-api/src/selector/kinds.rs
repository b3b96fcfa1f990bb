//! Which fields each kind lets a field selector name, and the values those fields take on an object.
//!
//! Two separate lists, as in kube-apiserver:
//! - the labels a request may name (kube-apiserver's field label conversion functions), checked before anything
//!   is listed: [`validate_field_selector`] and [`convert_field_selector`];
//! - the fields an object exposes for matching (kube-apiserver's `ToSelectableFields`): [`field_set`].
//!
//! Kinds without their own list accept only `metadata.name` and `metadata.namespace`.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde_json::Value;

use super::SelectorError;
use super::field::{FieldSelector, FieldTerm, Fields};
use crate::registry::GroupKind;

/// How a kind reacts to a field label it does not know.
#[derive(Clone, Copy)]
enum Rejection {
    /// `field label not supported: <label>`.
    Listed,
    /// `field label "<label>" not supported for <Kind>`.
    ForKind(&'static str),
    /// `"<label>" is not a known field selector: only "metadata.name", "metadata.namespace"`.
    Default,
}

/// The labels a request may name for a kind, each with the field it selects.
struct LabelRules {
    accepted: &'static [(&'static str, &'static str)],
    rejection: Rejection,
}

const fn same(label: &'static str) -> (&'static str, &'static str) {
    (label, label)
}

const POD_LABELS: &[(&str, &str)] = &[
    same("metadata.name"),
    same("metadata.namespace"),
    same("spec.nodeName"),
    same("spec.restartPolicy"),
    same("spec.schedulerName"),
    same("spec.serviceAccountName"),
    same("spec.hostNetwork"),
    same("status.phase"),
    same("status.podIP"),
    // Accepted, but pods expose no such field, so it only ever equals the empty string (as in kube-apiserver).
    same("status.podIPs"),
    same("status.nominatedNodeName"),
    // Old clients send `spec.host`.
    ("spec.host", "spec.nodeName"),
];

const NODE_LABELS: &[(&str, &str)] = &[same("metadata.name"), same("spec.unschedulable")];

const EVENT_LABELS: &[(&str, &str)] = &[
    same("involvedObject.kind"),
    same("involvedObject.namespace"),
    same("involvedObject.name"),
    same("involvedObject.uid"),
    same("involvedObject.apiVersion"),
    same("involvedObject.resourceVersion"),
    same("involvedObject.fieldPath"),
    same("reason"),
    same("reportingComponent"),
    same("source"),
    same("type"),
    same("metadata.namespace"),
    same("metadata.name"),
];

/// `events.k8s.io` names its fields differently; they select the same fields as the core ones.
const EVENTS_V1_LABELS: &[(&str, &str)] = &[
    same("reason"),
    ("regarding.kind", "involvedObject.kind"),
    ("regarding.namespace", "involvedObject.namespace"),
    ("regarding.name", "involvedObject.name"),
    ("regarding.uid", "involvedObject.uid"),
    ("regarding.apiVersion", "involvedObject.apiVersion"),
    ("regarding.resourceVersion", "involvedObject.resourceVersion"),
    ("regarding.fieldPath", "involvedObject.fieldPath"),
    ("reportingController", "reportingComponent"),
    same("source"),
    same("type"),
    same("metadata.namespace"),
    same("metadata.name"),
];

const NAMESPACE_LABELS: &[(&str, &str)] = &[same("status.phase"), same("metadata.name")];

const SECRET_LABELS: &[(&str, &str)] = &[same("type"), same("metadata.namespace"), same("metadata.name")];

const SERVICE_LABELS: &[(&str, &str)] =
    &[same("metadata.namespace"), same("metadata.name"), same("spec.clusterIP"), same("spec.type")];

const JOB_LABELS: &[(&str, &str)] = &[same("metadata.name"), same("metadata.namespace"), same("status.successful")];

const DEFAULT_LABELS: &[(&str, &str)] = &[same("metadata.name"), same("metadata.namespace")];

fn label_rules(gk: GroupKind) -> LabelRules {
    let listed = |accepted| LabelRules { accepted, rejection: Rejection::Listed };
    match (gk.group, gk.kind) {
        ("", "Pod") => listed(POD_LABELS),
        ("", "Node") => listed(NODE_LABELS),
        ("", "Event") => listed(EVENT_LABELS),
        ("events.k8s.io", "Event") => listed(EVENTS_V1_LABELS),
        ("", "Namespace") => listed(NAMESPACE_LABELS),
        ("", "Secret") => listed(SECRET_LABELS),
        ("", "Service") => listed(SERVICE_LABELS),
        ("batch", "Job") => LabelRules { accepted: JOB_LABELS, rejection: Rejection::ForKind("Job") },
        _ => LabelRules { accepted: DEFAULT_LABELS, rejection: Rejection::Default },
    }
}

/// Checks every term of `selector` names a field kind `gk` supports and rewrites alias labels (`spec.host`,
/// the `events.k8s.io` names) to the fields [`field_set`] exposes. Terms are checked in order and the first
/// unsupported label is the error, with kube-apiserver's message for that kind.
pub fn convert_field_selector(gk: GroupKind, selector: &FieldSelector) -> Result<FieldSelector, SelectorError> {
    let rules = label_rules(gk);
    let mut terms = Vec::with_capacity(selector.terms().len());
    for term in selector.terms() {
        let Some(&(_, field)) = rules.accepted.iter().find(|(label, _)| *label == term.field) else {
            let label = term.field.clone();
            return Err(match rules.rejection {
                Rejection::Listed => SelectorError::UnsupportedFieldLabel { label },
                Rejection::ForKind(kind) => SelectorError::UnsupportedFieldLabelForKind { label, kind },
                Rejection::Default => SelectorError::UnknownFieldLabel { label },
            });
        };
        terms.push(FieldTerm { field: field.to_string(), op: term.op, value: term.value.clone() });
    }
    Ok(FieldSelector::from_terms(terms))
}

/// Checks every term of `selector` names a field kind `gk` supports; see [`convert_field_selector`], which the
/// API server should use so that alias labels select the right field.
pub fn validate_field_selector(gk: GroupKind, selector: &FieldSelector) -> Result<(), SelectorError> {
    convert_field_selector(gk, selector).map(|_| ())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FieldKind {
    Pod,
    Event,
    Node,
    Namespace,
    Secret,
    Service,
    Job,
    ReplicaSet,
    Other,
}

const POD_FIELDS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "spec.nodeName",
    "spec.restartPolicy",
    "spec.schedulerName",
    "spec.serviceAccountName",
    "spec.hostNetwork",
    "status.phase",
    "status.podIP",
    "status.nominatedNodeName",
];
const EVENT_FIELDS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
];
const NODE_FIELDS: &[&str] = &["metadata.name", "spec.unschedulable"];
const NAMESPACE_FIELDS: &[&str] = &["metadata.name", "status.phase"];
const SECRET_FIELDS: &[&str] = &["metadata.name", "metadata.namespace", "type"];
const SERVICE_FIELDS: &[&str] = &["metadata.name", "metadata.namespace", "spec.clusterIP", "spec.type"];
const JOB_FIELDS: &[&str] = &["metadata.name", "metadata.namespace", "status.successful"];
const REPLICA_SET_FIELDS: &[&str] = &["metadata.name", "metadata.namespace", "status.replicas"];
const OTHER_FIELDS: &[&str] = &["metadata.name", "metadata.namespace"];

/// The selectable fields of one object, read from its JSON on demand.
///
/// Building one costs nothing; each [`FieldSet::get`] walks the object for that one field, so matching a
/// selector reads only the fields it names. Values are borrowed from the object except where kube-apiserver
/// renders them (booleans as `true`/`false`, counts as decimals).
#[derive(Clone, Copy, Debug)]
pub struct FieldSet<'a> {
    kind: FieldKind,
    obj: &'a Value,
}

/// The selectable fields of `obj`, an object of kind `gk` as stored (core `v1` shape for events of either group;
/// an `events.k8s.io` shaped event is read too).
pub fn field_set(gk: GroupKind, obj: &Value) -> FieldSet<'_> {
    let kind = match (gk.group, gk.kind) {
        ("", "Pod") => FieldKind::Pod,
        ("", "Event") | ("events.k8s.io", "Event") => FieldKind::Event,
        ("", "Node") => FieldKind::Node,
        ("", "Namespace") => FieldKind::Namespace,
        ("", "Secret") => FieldKind::Secret,
        ("", "Service") => FieldKind::Service,
        ("batch", "Job") => FieldKind::Job,
        ("apps", "ReplicaSet") => FieldKind::ReplicaSet,
        _ => FieldKind::Other,
    };
    FieldSet { kind, obj }
}

fn at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, key| v.get(key))
}

fn text<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    at(v, path).and_then(Value::as_str).unwrap_or("")
}

fn flag(v: &Value, path: &[&str]) -> Cow<'static, str> {
    Cow::Borrowed(if at(v, path).and_then(Value::as_bool).unwrap_or(false) { "true" } else { "false" })
}

fn count(v: &Value, path: &[&str]) -> Cow<'static, str> {
    Cow::Owned(at(v, path).and_then(Value::as_i64).unwrap_or(0).to_string())
}

fn first_non_empty<'a>(a: &'a str, b: &'a str) -> &'a str {
    if a.is_empty() { b } else { a }
}

impl<'a> FieldSet<'a> {
    /// The field labels this object exposes.
    pub fn labels(&self) -> &'static [&'static str] {
        match self.kind {
            FieldKind::Pod => POD_FIELDS,
            FieldKind::Event => EVENT_FIELDS,
            FieldKind::Node => NODE_FIELDS,
            FieldKind::Namespace => NAMESPACE_FIELDS,
            FieldKind::Secret => SECRET_FIELDS,
            FieldKind::Service => SERVICE_FIELDS,
            FieldKind::Job => JOB_FIELDS,
            FieldKind::ReplicaSet => REPLICA_SET_FIELDS,
            FieldKind::Other => OTHER_FIELDS,
        }
    }

    /// The value of field `label`, or `None` if the kind exposes no such field (which matches as empty).
    pub fn get(&self, label: &str) -> Option<Cow<'a, str>> {
        let o = self.obj;
        let borrowed = |s: &'a str| Some(Cow::Borrowed(s));
        match (self.kind, label) {
            (_, "metadata.name") => borrowed(text(o, &["metadata", "name"])),
            (kind, "metadata.namespace") if !matches!(kind, FieldKind::Node | FieldKind::Namespace) => {
                borrowed(text(o, &["metadata", "namespace"]))
            }
            (FieldKind::Pod, "spec.nodeName") => borrowed(text(o, &["spec", "nodeName"])),
            (FieldKind::Pod, "spec.restartPolicy") => borrowed(text(o, &["spec", "restartPolicy"])),
            (FieldKind::Pod, "spec.schedulerName") => borrowed(text(o, &["spec", "schedulerName"])),
            // The deprecated `serviceAccount` stands in when `serviceAccountName` is empty.
            (FieldKind::Pod, "spec.serviceAccountName") => borrowed(first_non_empty(
                text(o, &["spec", "serviceAccountName"]),
                text(o, &["spec", "serviceAccount"]),
            )),
            (FieldKind::Pod, "spec.hostNetwork") => Some(flag(o, &["spec", "hostNetwork"])),
            (FieldKind::Pod, "status.phase") => borrowed(text(o, &["status", "phase"])),
            // `podIP` wins over `podIPs[0]` when both are set, as in the conversion to the internal type.
            (FieldKind::Pod, "status.podIP") => {
                let first =
                    at(o, &["status", "podIPs"]).and_then(|ips| ips.get(0)).map(|ip| text(ip, &["ip"])).unwrap_or("");
                borrowed(first_non_empty(text(o, &["status", "podIP"]), first))
            }
            (FieldKind::Pod, "status.nominatedNodeName") => borrowed(text(o, &["status", "nominatedNodeName"])),
            (FieldKind::Event, label) => self.event_field(label),
            (FieldKind::Node, "spec.unschedulable") => Some(flag(o, &["spec", "unschedulable"])),
            (FieldKind::Namespace, "status.phase") => borrowed(text(o, &["status", "phase"])),
            (FieldKind::Secret, "type") => borrowed(text(o, &["type"])),
            (FieldKind::Service, "spec.clusterIP") => borrowed(text(o, &["spec", "clusterIP"])),
            (FieldKind::Service, "spec.type") => borrowed(text(o, &["spec", "type"])),
            (FieldKind::Job, "status.successful") => Some(count(o, &["status", "succeeded"])),
            (FieldKind::ReplicaSet, "status.replicas") => Some(count(o, &["status", "replicas"])),
            _ => None,
        }
    }

    /// Event fields, read from a core event or, failing that, from the `events.k8s.io` names.
    fn event_field(&self, label: &str) -> Option<Cow<'a, str>> {
        let o = self.obj;
        let involved = |field: &str| {
            let from = |root: &str| text(o, &[root, field]);
            if o.get("involvedObject").is_some() { from("involvedObject") } else { from("regarding") }
        };
        let reporting = first_non_empty(text(o, &["reportingComponent"]), text(o, &["reportingController"]));
        let value = match label {
            "involvedObject.kind" => involved("kind"),
            "involvedObject.namespace" => involved("namespace"),
            "involvedObject.name" => involved("name"),
            "involvedObject.uid" => involved("uid"),
            "involvedObject.apiVersion" => involved("apiVersion"),
            "involvedObject.resourceVersion" => involved("resourceVersion"),
            "involvedObject.fieldPath" => involved("fieldPath"),
            "reason" => text(o, &["reason"]),
            "reportingComponent" => reporting,
            "source" => {
                let component =
                    first_non_empty(text(o, &["source", "component"]), text(o, &["deprecatedSource", "component"]));
                first_non_empty(component, reporting)
            }
            "type" => text(o, &["type"]),
            _ => return None,
        };
        Some(Cow::Borrowed(value))
    }

    /// Every exposed field with its value, for diagnostics and tests.
    pub fn to_map(&self) -> BTreeMap<&'static str, String> {
        self.labels().iter().map(|l| (*l, self.get(l).unwrap_or_default().into_owned())).collect()
    }
}

impl FieldSelector {
    /// Whether `obj`, an object of kind `gk`, satisfies every term; a shorthand for matching its [`field_set`].
    /// The selector should have gone through [`convert_field_selector`] for the same kind.
    pub fn matches_object(&self, gk: GroupKind, obj: &Value) -> bool {
        self.matches(&field_set(gk, obj))
    }
}

impl Fields for FieldSet<'_> {
    fn field(&self, label: &str) -> Option<Cow<'_, str>> {
        self.get(label)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const POD: GroupKind = GroupKind { group: "", kind: "Pod" };
    const EVENT: GroupKind = GroupKind { group: "", kind: "Event" };
    const EVENT_V1: GroupKind = GroupKind { group: "events.k8s.io", kind: "Event" };
    const NODE: GroupKind = GroupKind { group: "", kind: "Node" };
    const JOB: GroupKind = GroupKind { group: "batch", kind: "Job" };
    const DEPLOYMENT: GroupKind = GroupKind { group: "apps", kind: "Deployment" };
    const REPLICA_SET: GroupKind = GroupKind { group: "apps", kind: "ReplicaSet" };

    fn sel(s: &str) -> FieldSelector {
        FieldSelector::parse(s).expect("valid selector")
    }

    fn pod() -> Value {
        json!({
            "metadata": {"name": "web-1", "namespace": "default"},
            "spec": {"nodeName": "n1", "restartPolicy": "Always", "schedulerName": "default-scheduler",
                     "serviceAccount": "builder", "hostNetwork": true},
            "status": {"phase": "Running", "podIPs": [{"ip": "10.0.0.7"}, {"ip": "fd00::7"}]}
        })
    }

    #[test]
    fn pod_fields_are_read_as_kube_apiserver_renders_them() {
        let p = pod();
        let fields = field_set(POD, &p).to_map();
        assert_eq!(fields["metadata.name"], "web-1");
        assert_eq!(fields["metadata.namespace"], "default");
        assert_eq!(fields["spec.nodeName"], "n1");
        assert_eq!(fields["spec.serviceAccountName"], "builder");
        assert_eq!(fields["spec.hostNetwork"], "true");
        assert_eq!(fields["status.podIP"], "10.0.0.7");
        assert_eq!(fields["status.nominatedNodeName"], "");
        assert_eq!(fields.len(), 10);
    }

    #[test]
    fn drain_and_describe_node_selectors_match_pods() {
        let p = pod();
        let fs = field_set(POD, &p);
        assert!(sel("spec.nodeName=n1").matches(&fs));
        assert!(sel("spec.nodeName=n1,status.phase!=Succeeded,status.phase!=Failed").matches(&fs));
        assert!(!sel("spec.nodeName=n2").matches(&fs));
        assert!(sel("spec.hostNetwork=true").matches(&fs));
        let pending = json!({"metadata": {"name": "p"}, "status": {"phase": "Pending"}});
        assert!(sel("spec.nodeName=").matches(&field_set(POD, &pending)));
        assert!(sel("spec.hostNetwork=false").matches(&field_set(POD, &pending)));
    }

    #[test]
    fn objects_match_through_their_kinds_field_set() {
        let p = pod();
        assert!(sel("metadata.name=web-1,spec.nodeName=n1").matches_object(POD, &p));
        assert!(!sel("metadata.namespace=kube-system").matches_object(POD, &p));
        // A kind with no extra fields still matches on metadata.
        let d = json!({"metadata": {"name": "web", "namespace": "default"}});
        assert!(sel("metadata.name=web").matches_object(DEPLOYMENT, &d));
        assert!(!sel("metadata.name=api").matches_object(DEPLOYMENT, &d));
    }

    #[test]
    fn pod_ip_field_prefers_pod_ip_over_the_list() {
        let p = json!({"status": {"podIP": "10.0.0.9", "podIPs": [{"ip": "10.0.0.1"}]}});
        assert_eq!(field_set(POD, &p).get("status.podIP").as_deref(), Some("10.0.0.9"));
    }

    #[test]
    fn event_fields_match_describe_queries_in_both_groups() {
        let core = json!({
            "metadata": {"name": "e1", "namespace": "default"},
            "involvedObject": {"kind": "Pod", "name": "web-1", "namespace": "default", "uid": "u-1"},
            "reason": "Scheduled", "type": "Normal", "reportingComponent": "default-scheduler",
            "source": {}
        });
        let s = sel(
            "involvedObject.name=web-1,involvedObject.namespace=default,involvedObject.kind=Pod,involvedObject.uid=u-1",
        );
        assert!(s.matches(&field_set(EVENT, &core)));
        assert_eq!(field_set(EVENT, &core).get("source").as_deref(), Some("default-scheduler"));

        let converted =
            convert_field_selector(EVENT_V1, &sel("regarding.name=web-1,reportingController=default-scheduler"))
                .expect("events.k8s.io labels are accepted");
        assert_eq!(converted.to_string(), "involvedObject.name=web-1,reportingComponent=default-scheduler");
        assert!(converted.matches(&field_set(EVENT_V1, &core)));
        let v1_shaped = json!({"regarding": {"name": "web-1"}, "reportingController": "default-scheduler"});
        assert!(converted.matches(&field_set(EVENT_V1, &v1_shaped)));
    }

    #[test]
    fn job_successful_count_is_a_decimal() {
        let job = json!({"metadata": {"name": "j"}, "status": {"succeeded": 3}});
        assert!(sel("status.successful=3").matches(&field_set(JOB, &job)));
        let fresh = json!({"metadata": {"name": "j"}});
        assert!(sel("status.successful=0").matches(&field_set(JOB, &fresh)));
    }

    #[test]
    fn unsupported_labels_fail_with_each_kinds_message() {
        let err = |gk, s: &str| validate_field_selector(gk, &sel(s)).expect_err("unsupported").to_string();
        assert_eq!(err(POD, "spec.containers=x"), "field label not supported: spec.containers");
        assert_eq!(err(NODE, "metadata.namespace=x"), "field label not supported: metadata.namespace");
        assert_eq!(err(JOB, "spec.parallelism=1"), "field label \"spec.parallelism\" not supported for Job");
        assert_eq!(
            err(DEPLOYMENT, "status.replicas=1"),
            "\"status.replicas\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\""
        );
        assert_eq!(
            err(REPLICA_SET, "status.replicas=1"),
            "\"status.replicas\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\""
        );
        assert_eq!(err(EVENT_V1, "involvedObject.name=x"), "field label not supported: involvedObject.name");
    }

    #[test]
    fn supported_labels_validate_for_every_kind() {
        let ok = |gk, s: &str| validate_field_selector(gk, &sel(s)).expect("supported");
        ok(POD, "metadata.name=a,metadata.namespace=b,spec.nodeName=n,status.phase!=Running,status.podIPs=");
        ok(NODE, "metadata.name=n1,spec.unschedulable=true");
        ok(EVENT, "involvedObject.fieldPath=x,reason=y,source=z,type=Normal,reportingComponent=c");
        ok(GroupKind { group: "", kind: "Namespace" }, "status.phase=Active");
        ok(GroupKind { group: "", kind: "Secret" }, "type=kubernetes.io/tls");
        ok(GroupKind { group: "", kind: "Service" }, "spec.type=ClusterIP,spec.clusterIP=None");
        ok(JOB, "status.successful=1");
        ok(DEPLOYMENT, "metadata.name=web");
        ok(GroupKind { group: "", kind: "ConfigMap" }, "metadata.namespace=default");
    }

    #[test]
    fn spec_host_is_an_alias_of_node_name() {
        let converted = convert_field_selector(POD, &sel("spec.host=n1")).expect("alias accepted");
        assert_eq!(converted.to_string(), "spec.nodeName=n1");
        assert!(converted.matches(&field_set(POD, &pod())));
    }

    #[test]
    fn node_fields_have_no_namespace() {
        let node = json!({"metadata": {"name": "n1"}, "spec": {"unschedulable": true}});
        let fs = field_set(NODE, &node);
        assert_eq!(fs.get("metadata.namespace"), None);
        assert!(sel("spec.unschedulable=true").matches(&fs));
        assert!(sel("metadata.name=n1").matches(&fs));
    }
}
