use serde_json::{Value, json};

use super::*;
use crate::defaults::apply_defaults;

const POD: GroupKind = GroupKind { group: "", kind: "Pod" };
const SERVICE: GroupKind = GroupKind { group: "", kind: "Service" };
const CONFIG_MAP: GroupKind = GroupKind { group: "", kind: "ConfigMap" };
const SECRET: GroupKind = GroupKind { group: "", kind: "Secret" };
const NAMESPACE: GroupKind = GroupKind { group: "", kind: "Namespace" };
const PVC: GroupKind = GroupKind { group: "", kind: "PersistentVolumeClaim" };
const EVENT: GroupKind = GroupKind { group: "", kind: "Event" };
const NODE: GroupKind = GroupKind { group: "", kind: "Node" };
const DEPLOYMENT: GroupKind = GroupKind { group: "apps", kind: "Deployment" };
const REPLICA_SET: GroupKind = GroupKind { group: "apps", kind: "ReplicaSet" };
const STATEFUL_SET: GroupKind = GroupKind { group: "apps", kind: "StatefulSet" };
const DAEMON_SET: GroupKind = GroupKind { group: "apps", kind: "DaemonSet" };
const JOB: GroupKind = GroupKind { group: "batch", kind: "Job" };
const CRON_JOB: GroupKind = GroupKind { group: "batch", kind: "CronJob" };
const LEASE: GroupKind = GroupKind { group: "coordination.k8s.io", kind: "Lease" };
const PDB: GroupKind = GroupKind { group: "policy", kind: "PodDisruptionBudget" };
const PRIORITY_CLASS: GroupKind = GroupKind { group: "scheduling.k8s.io", kind: "PriorityClass" };
const INGRESS: GroupKind = GroupKind { group: "networking.k8s.io", kind: "Ingress" };
const HPA: GroupKind = GroupKind { group: "autoscaling", kind: "HorizontalPodAutoscaler" };
const ROLE: GroupKind = GroupKind { group: "rbac.authorization.k8s.io", kind: "Role" };
const ROLE_BINDING: GroupKind = GroupKind { group: "rbac.authorization.k8s.io", kind: "RoleBinding" };
const CLUSTER_ROLE_BINDING: GroupKind = GroupKind { group: "rbac.authorization.k8s.io", kind: "ClusterRoleBinding" };

/// Defaults then validates a new object, returning the messages.
fn create(gk: GroupKind, mut obj: Value) -> Vec<String> {
    apply_defaults(gk, &mut obj);
    validate_create(gk, &obj).iter().map(FieldError::message).collect()
}

/// Defaults both objects, then validates the update, returning the messages.
fn update(gk: GroupKind, mut new: Value, mut old: Value) -> Vec<String> {
    apply_defaults(gk, &mut new);
    apply_defaults(gk, &mut old);
    validate_update(gk, &new, &old).iter().map(FieldError::message).collect()
}

fn pod(spec: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "namespace": "default"}, "spec": spec})
}

fn container() -> Value {
    json!({"name": "app", "image": "nginx:1.27"})
}

fn deployment(spec: Value) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "default"}, "spec": spec})
}

fn template(labels: Value) -> Value {
    json!({"metadata": {"labels": labels}, "spec": {"containers": [container()]}})
}

fn stored(mut obj: Value) -> Value {
    obj["metadata"]["resourceVersion"] = json!("7");
    obj["metadata"]["uid"] = json!("0b7c8f5e-6d1c-4c39-9d1a-2f4a1b0c9e11");
    obj
}

fn assert_has(errs: &[String], expected: &str) {
    assert!(errs.iter().any(|e| e == expected), "expected {expected:?} in {errs:#?}");
}

// Message formats.

#[test]
fn invalid_integer_message_prints_the_number_bare() {
    let e = FieldError::invalid(&Path::root("spec").child("replicas"), -1, "must be greater than or equal to 0");
    assert_eq!(e.message(), "spec.replicas: Invalid value: -1: must be greater than or equal to 0");
    assert_eq!(e.body(), "Invalid value: -1: must be greater than or equal to 0");
    assert_eq!(e.kind.reason(), "FieldValueInvalid");
}

#[test]
fn invalid_name_message_matches_kube_exactly() {
    let errs = create(
        POD,
        json!({"metadata": {"name": "Web_1", "namespace": "default"}, "spec": {"containers": [container()]}}),
    );
    assert_eq!(
        errs,
        vec![
            "metadata.name: Invalid value: \"Web_1\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
        ]
    );
}

#[test]
fn required_value_message_has_no_value() {
    let errs = create(POD, pod(json!({"containers": [{"image": "nginx"}]})));
    assert_eq!(errs, vec!["spec.containers[0].name: Required value"]);
    let e = FieldError::required(&Path::root("spec").child("selector"), "");
    assert_eq!(e.kind.reason(), "FieldValueRequired");
    assert_eq!(e.body(), "Required value");
}

#[test]
fn every_kind_has_kubes_reason_and_label() {
    let cases = [
        (FieldErrorKind::FieldValueNotFound, "FieldValueNotFound", "Not found"),
        (FieldErrorKind::FieldValueDuplicate, "FieldValueDuplicate", "Duplicate value"),
        (FieldErrorKind::FieldValueNotSupported, "FieldValueNotSupported", "Unsupported value"),
        (FieldErrorKind::FieldValueForbidden, "FieldValueForbidden", "Forbidden"),
        (FieldErrorKind::FieldValueTooLong, "FieldValueTooLong", "Too long"),
        (FieldErrorKind::FieldValueTooMany, "FieldValueTooMany", "Too many"),
        (FieldErrorKind::FieldValueTypeInvalid, "FieldValueTypeInvalid", "Invalid value"),
        (FieldErrorKind::InternalError, "InternalError", "Internal error"),
    ];
    for (kind, reason, label) in cases {
        assert_eq!(kind.reason(), reason);
        assert_eq!(kind.label(), label);
    }
}

#[test]
fn not_supported_lists_quoted_values() {
    let e = FieldError::not_supported(
        &Path::root("spec").child("restartPolicy"),
        "Sometimes",
        &["Always", "OnFailure", "Never"],
    );
    assert_eq!(
        e.message(),
        "spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\""
    );
}

#[test]
fn structured_values_print_as_compact_json_with_sorted_keys() {
    let e = FieldError::invalid(
        &Path::root("spec").child("selector"),
        json!({"matchLabels": {"b": "2", "a": "<1>"}}),
        "field is immutable",
    );
    assert_eq!(
        e.message(),
        "spec.selector: Invalid value: {\"matchLabels\":{\"a\":\"\\u003c1\\u003e\",\"b\":\"2\"}}: field is immutable"
    );
}

#[test]
fn paths_render_like_kubes_field_paths() {
    let p = Path::root("spec").child("containers").index(0).child("resources").child("limits").key("cpu");
    assert_eq!(p.to_string(), "spec.containers[0].resources.limits[cpu]");
    assert_eq!(Path::root("").child("data").to_string(), "data");
    assert_eq!(Path::whole_object().to_string(), "[]");
}

#[test]
fn strings_are_quoted_go_style() {
    assert_eq!(go_quote("a\"b\\c\nd\u{1}é"), "\"a\\\"b\\\\c\\nd\\x01é\"");
}

#[test]
fn too_long_and_too_many_messages() {
    assert_eq!(
        FieldError::too_long(&Path::root("data"), 1048576).message(),
        "data: Too long: may not be more than 1048576 bytes"
    );
    assert_eq!(
        FieldError::too_many(&Path::root("spec").child("rules"), 21, 20).message(),
        "spec.rules: Too many: 21: must have at most 20 items"
    );
}

#[test]
fn invalid_message_lists_several_errors_in_brackets() {
    let errs = vec![
        FieldError::invalid(&Path::root("spec").child("replicas"), -1, "must be greater than or equal to 0"),
        FieldError::required(&Path::root("spec").child("selector"), ""),
    ];
    assert_eq!(
        invalid_message(DEPLOYMENT, "web", &errs),
        "Deployment.apps \"web\" is invalid: [spec.replicas: Invalid value: -1: must be greater than or equal to 0, spec.selector: Required value]"
    );
}

#[test]
fn invalid_message_of_one_error_or_duplicates_has_no_brackets() {
    let one = vec![FieldError::required(&Path::root("spec").child("selector"), "")];
    assert_eq!(
        invalid_message(DEPLOYMENT, "web", &one),
        "Deployment.apps \"web\" is invalid: spec.selector: Required value"
    );
    let twice = vec![one[0].clone(), one[0].clone()];
    assert_eq!(invalid_message(POD, "p", &twice), "Pod \"p\" is invalid: spec.selector: Required value");
    assert_eq!(invalid_message(POD, "p", &[]), "Pod \"p\" is invalid");
}

#[test]
fn wrong_json_types_are_reported_not_panicked_on() {
    let errs = create(
        DEPLOYMENT,
        deployment(
            json!({"replicas": "3", "selector": {"matchLabels": {"app": "web"}}, "template": template(json!({"app": "web"}))}),
        ),
    );
    assert_has(&errs, "spec.replicas: Invalid value: \"string\": spec.replicas in body must be of type integer");
    let errs = validate_create(POD, &json!("nope"));
    assert_eq!(errs[0].kind, FieldErrorKind::FieldValueTypeInvalid);
}

// Metadata.

#[test]
fn name_is_required_unless_generate_name_is_given() {
    let errs = create(CONFIG_MAP, json!({"metadata": {"namespace": "default"}}));
    assert_eq!(errs, vec!["metadata.name: Required value: name or generateName is required"]);
    assert!(create(CONFIG_MAP, json!({"metadata": {"generateName": "cfg-", "namespace": "default"}})).is_empty());
}

#[test]
fn generate_name_prefix_is_checked_with_a_trailing_hyphen_allowed() {
    let errs = create(CONFIG_MAP, json!({"metadata": {"generateName": "Cfg-", "namespace": "default"}}));
    assert_eq!(errs.len(), 1);
    assert!(errs[0].starts_with("metadata.generateName: Invalid value: \"Cfg-\": a lowercase RFC 1123 subdomain"));
}

#[test]
fn namespaces_and_services_use_label_name_rules() {
    let errs = create(NAMESPACE, json!({"metadata": {"name": "a.b"}}));
    assert_eq!(errs, vec!["metadata.name: Invalid value: \"a.b\": must not contain dots"]);
    let errs = create(
        SERVICE,
        json!({"metadata": {"name": "1web", "namespace": "default"}, "spec": {"ports": [{"port": 80}]}}),
    );
    assert_eq!(errs.len(), 1);
    assert!(errs[0].starts_with("metadata.name: Invalid value: \"1web\": a DNS-1035 label must consist"), "{errs:?}");
}

#[test]
fn rbac_names_only_need_to_be_path_segments() {
    let role = json!({"metadata": {"name": "system:controller:foo", "namespace": "default"}, "rules": [{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}]});
    assert!(create(ROLE, role).is_empty());
    let errs = create(ROLE, json!({"metadata": {"name": "a/b", "namespace": "default"}}));
    assert_eq!(errs, vec!["metadata.name: Invalid value: \"a/b\": may not contain '/'"]);
}

#[test]
fn namespaced_kinds_need_a_namespace() {
    let errs = create(CONFIG_MAP, json!({"metadata": {"name": "cfg"}}));
    assert_eq!(errs, vec!["metadata.namespace: Required value"]);
}

#[test]
fn bad_label_keys_and_values_point_at_the_labels_map() {
    let errs = create(
        CONFIG_MAP,
        json!({"metadata": {"name": "cfg", "namespace": "default", "labels": {"bad key": "ok", "ok": "bad value"}}}),
    );
    assert_eq!(errs.len(), 2, "{errs:?}");
    assert!(errs[0].starts_with("metadata.labels: Invalid value: \"bad key\": name part must consist of alphanumeric"));
    assert!(
        errs[1].starts_with("metadata.labels: Invalid value: \"bad value\": a valid label must be an empty string")
    );
}

#[test]
fn annotations_may_not_exceed_256_kib_in_total() {
    let big = "x".repeat(256 * 1024);
    let errs =
        create(CONFIG_MAP, json!({"metadata": {"name": "cfg", "namespace": "default", "annotations": {"a": big}}}));
    assert_eq!(errs, vec!["metadata.annotations: Too long: may not be more than 262144 bytes"]);
}

#[test]
fn unqualified_custom_finalizers_are_rejected() {
    let errs = create(
        CONFIG_MAP,
        json!({"metadata": {"name": "cfg", "namespace": "default", "finalizers": ["mine", "example.com/mine", "kubernetes"]}}),
    );
    assert_eq!(
        errs,
        vec![
            "metadata.finalizers[0]: Invalid value: \"mine\": name is neither a standard finalizer name nor is it fully qualified"
        ]
    );
}

#[test]
fn only_one_owner_reference_may_be_the_controller() {
    let owner = |name: &str| json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": name, "uid": "u", "controller": true});
    let errs = create(
        CONFIG_MAP,
        json!({"metadata": {"name": "cfg", "namespace": "default", "ownerReferences": [owner("a"), owner("b")]}}),
    );
    assert_eq!(errs.len(), 1);
    assert!(errs[0].ends_with("Only one reference can have Controller set to true. Found \"true\" in references for ReplicaSet/a and ReplicaSet/b"));
}

#[test]
fn identity_fields_are_immutable_on_update() {
    let old = stored(
        json!({"metadata": {"name": "cfg", "namespace": "default", "creationTimestamp": "2026-01-01T00:00:00Z"}}),
    );
    let mut new = old.clone();
    new["metadata"]["name"] = json!("other");
    new["metadata"]["uid"] = json!("different");
    new["metadata"]["creationTimestamp"] = json!("2026-02-01T00:00:00Z");
    let errs = update(CONFIG_MAP, new, old);
    assert_has(&errs, "metadata.name: Invalid value: \"other\": field is immutable");
    assert_has(&errs, "metadata.uid: Invalid value: \"different\": field is immutable");
    assert_has(&errs, "metadata.creationTimestamp: Invalid value: \"2026-02-01T00:00:00Z\": field is immutable");
}

#[test]
fn update_without_resource_version_is_invalid() {
    let old = stored(json!({"metadata": {"name": "cfg", "namespace": "default"}}));
    let mut new = old.clone();
    new["metadata"].as_object_mut().map(|m| m.remove("resourceVersion"));
    assert_eq!(
        update(CONFIG_MAP, new, old),
        vec!["metadata.resourceVersion: Invalid value: \"\": must be specified for an update"]
    );
}

#[test]
fn finalizers_cannot_be_added_while_deleting() {
    let old = stored(
        json!({"metadata": {"name": "cfg", "namespace": "default", "deletionTimestamp": "2026-01-01T00:00:00Z", "finalizers": ["a.io/x"]}}),
    );
    let mut new = old.clone();
    new["metadata"]["finalizers"] = json!(["a.io/x", "b.io/y"]);
    assert_eq!(
        update(CONFIG_MAP, new, old),
        vec![
            "metadata.finalizers: Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers []string{\"b.io/y\"}"
        ]
    );
}

// Pods.

#[test]
fn a_minimal_pod_is_valid_after_defaulting() {
    assert!(create(POD, pod(json!({"containers": [container()]}))).is_empty());
}

#[test]
fn pods_need_containers() {
    assert_eq!(create(POD, pod(json!({}))), vec!["spec.containers: Required value"]);
}

#[test]
fn container_names_are_unique_across_init_and_regular_containers() {
    let errs = create(
        POD,
        pod(json!({"containers": [container(), container()], "initContainers": [{"name": "app", "image": "busybox"}]})),
    );
    assert_eq!(
        errs,
        vec![
            "spec.containers[1].name: Duplicate value: \"app\"",
            "spec.initContainers[0].name: Duplicate value: \"app\""
        ]
    );
}

#[test]
fn container_image_is_required_and_trimmed_on_pods() {
    let errs = create(POD, pod(json!({"containers": [{"name": "a"}, {"name": "b", "image": " nginx"}]})));
    assert_eq!(
        errs,
        vec![
            "spec.containers[0].image: Required value",
            "spec.containers[1].image: Invalid value: \" nginx\": must not have leading or trailing whitespace"
        ]
    );
}

#[test]
fn container_ports_are_checked_like_kube() {
    let errs = create(
        POD,
        pod(json!({"containers": [{"name": "a", "image": "x", "ports": [
            {"containerPort": 70000},
            {"name": "http", "containerPort": 80, "protocol": "ICMP"},
            {"name": "http", "containerPort": 81}
        ]}]})),
    );
    assert_eq!(
        errs,
        vec![
            "spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
            "spec.containers[0].ports[1].protocol: Unsupported value: \"ICMP\": supported values: \"SCTP\", \"TCP\", \"UDP\"",
            "spec.containers[0].ports[2].name: Duplicate value: \"http\""
        ]
    );
}

#[test]
fn host_ports_may_not_collide_across_containers() {
    let c = |name: &str| json!({"name": name, "image": "x", "ports": [{"containerPort": 80, "hostPort": 8080}]});
    let errs = create(POD, pod(json!({"containers": [c("a"), c("b")]})));
    assert_eq!(errs, vec!["spec.containers[1].ports[0].hostPort: Duplicate value: \"TCP//8080\""]);
}

#[test]
fn env_names_must_be_printable_and_value_from_needs_one_source() {
    let errs = create(
        POD,
        pod(json!({"containers": [{"name": "a", "image": "x", "env": [
            {"name": "A=B"}, {"name": ""}, {"name": "C", "valueFrom": {}}
        ]}]})),
    );
    assert_eq!(
        errs,
        vec![
            "spec.containers[0].env[0].name: Invalid value: \"A=B\": a valid environment variable name must consist only of printable ASCII characters other than '='",
            "spec.containers[0].env[1].name: Required value",
            "spec.containers[0].env[2].valueFrom: Invalid value: \"\": must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`"
        ]
    );
}

#[test]
fn volume_mounts_must_reference_declared_volumes() {
    let errs = create(
        POD,
        pod(json!({
            "volumes": [{"name": "data"}, {"name": "data", "emptyDir": {}}],
            "containers": [{"name": "a", "image": "x", "volumeMounts": [
                {"name": "data", "mountPath": "/d"}, {"name": "missing", "mountPath": "/d"}
            ]}]
        })),
    );
    assert_eq!(
        errs,
        vec![
            "spec.volumes[1].name: Duplicate value: \"data\"",
            "spec.containers[0].volumeMounts[1].name: Not found: \"missing\"",
            "spec.containers[0].volumeMounts[1].mountPath: Invalid value: \"/d\": must be unique"
        ]
    );
}

#[test]
fn a_volume_may_have_only_one_source() {
    let errs = create(
        POD,
        pod(
            json!({"volumes": [{"name": "v", "emptyDir": {}, "configMap": {"name": "c"}}], "containers": [container()]}),
        ),
    );
    assert_eq!(errs, vec!["spec.volumes[0].configMap: Forbidden: may not specify more than 1 volume type"]);
}

#[test]
fn requests_may_not_exceed_limits() {
    let errs = create(
        POD,
        pod(
            json!({"containers": [{"name": "a", "image": "x", "resources": {"requests": {"cpu": "2", "memory": "2Gi"}, "limits": {"cpu": "1500m", "memory": "1024Mi"}}}]}),
        ),
    );
    assert_eq!(
        errs,
        vec![
            "spec.containers[0].resources.requests: Invalid value: \"2\": must be less than or equal to cpu limit of 1500m",
            "spec.containers[0].resources.requests: Invalid value: \"2Gi\": must be less than or equal to memory limit of 1Gi"
        ]
    );
}

#[test]
fn bad_quantities_and_resource_names_are_reported() {
    // On a Pod, requests are copied from limits first; only limits are kept here so each problem shows once.
    let mut p = pod(
        json!({"containers": [{"name": "a", "image": "x", "resources": {"limits": {"cpu": "lots", "foo": "1", "memory": "-1"}}}]}),
    );
    apply_defaults(POD, &mut p);
    p["spec"]["containers"][0]["resources"].as_object_mut().map(|r| r.remove("requests"));
    let errs: Vec<String> = validate_create(POD, &p).iter().map(FieldError::message).collect();
    assert_eq!(
        errs,
        vec![
            "spec.containers[0].resources.limits[cpu]: Invalid value: \"lots\": quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
            "spec.containers[0].resources.limits[foo]: Invalid value: \"foo\": must be a standard resource type or fully qualified",
            "spec.containers[0].resources.limits[foo]: Invalid value: \"foo\": must be a standard resource for containers",
            "spec.containers[0].resources.limits[memory]: Invalid value: \"-1\": must be greater than or equal to 0"
        ]
    );
}

#[test]
fn extended_resources_need_equal_whole_requests_and_limits() {
    let errs = create(
        POD,
        pod(
            json!({"containers": [{"name": "a", "image": "x", "resources": {"requests": {"example.com/gpu": "1"}, "limits": {"example.com/gpu": "2"}}}]}),
        ),
    );
    assert_eq!(
        errs,
        vec![
            "spec.containers[0].resources.requests: Invalid value: \"1\": must be equal to example.com/gpu limit of 2"
        ]
    );
}

#[test]
fn restart_and_dns_policies_are_enumerations() {
    let errs =
        create(POD, pod(json!({"containers": [container()], "restartPolicy": "Sometimes", "dnsPolicy": "Mine"})));
    assert_eq!(
        errs,
        vec![
            "spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\"",
            "spec.dnsPolicy: Unsupported value: \"Mine\": supported values: \"ClusterFirstWithHostNet\", \"ClusterFirst\", \"Default\", \"None\""
        ]
    );
}

#[test]
fn probes_need_exactly_one_handler() {
    let errs = create(
        POD,
        pod(json!({"containers": [{"name": "a", "image": "x",
            "livenessProbe": {"exec": {"command": ["true"]}, "tcpSocket": {"port": 80}},
            "readinessProbe": {"periodSeconds": 5}}]})),
    );
    assert_eq!(
        errs,
        vec![
            "spec.containers[0].livenessProbe.tcpSocket: Forbidden: may not specify more than 1 handler type",
            "spec.containers[0].readinessProbe: Required value: must specify a handler type"
        ]
    );
}

#[test]
fn ephemeral_containers_cannot_be_set_on_create() {
    let errs = create(
        POD,
        pod(json!({"containers": [container()], "ephemeralContainers": [{"name": "debug", "image": "busybox"}]})),
    );
    assert_eq!(errs, vec!["spec.ephemeralContainers: Forbidden: cannot be set on create"]);
}

#[test]
fn pod_image_and_active_deadline_may_change_on_update() {
    let old = stored(pod(json!({"containers": [container()], "activeDeadlineSeconds": 100})));
    let mut new = old.clone();
    new["spec"]["containers"][0]["image"] = json!("nginx:1.28");
    new["spec"]["activeDeadlineSeconds"] = json!(50);
    assert!(update(POD, new, old).is_empty());
}

#[test]
fn pod_updates_may_not_change_other_fields() {
    let old = stored(pod(json!({"containers": [{"name": "app", "image": "nginx", "ports": [{"containerPort": 80}]}]})));
    let mut new = old.clone();
    new["spec"]["containers"][0]["ports"][0]["containerPort"] = json!(81);
    let errs = update(POD, new, old);
    assert_eq!(errs.len(), 1);
    assert!(errs[0].starts_with(
        "spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)\n"
    ));
    assert!(errs[0].contains("spec.containers[0].ports[0].containerPort"), "{}", errs[0]);
}

#[test]
fn pod_updates_may_add_tolerations_but_not_remove_them() {
    let tol = json!({"key": "k", "operator": "Exists", "effect": "NoSchedule"});
    let old = stored(pod(json!({"containers": [container()], "tolerations": [tol.clone()]})));
    let mut added = old.clone();
    if let Some(t) = added["spec"]["tolerations"].as_array_mut() {
        t.push(json!({"key": "k2", "operator": "Exists"}));
    }
    assert!(update(POD, added, old.clone()).is_empty());
    let mut removed = old.clone();
    removed["spec"]["tolerations"] = json!([]);
    assert_has(
        &update(POD, removed, old),
        "spec.tolerations: Forbidden: existing toleration can not be modified except its tolerationSeconds",
    );
}

#[test]
fn pod_updates_may_not_add_containers() {
    let old = stored(pod(json!({"containers": [container()]})));
    let mut new = old.clone();
    if let Some(c) = new["spec"]["containers"].as_array_mut() {
        c.push(json!({"name": "b", "image": "x"}));
    }
    assert_has(&update(POD, new, old), "spec.containers: Forbidden: pod updates may not add or remove containers");
}

#[test]
fn active_deadline_may_only_decrease() {
    let old = stored(pod(json!({"containers": [container()], "activeDeadlineSeconds": 100})));
    let mut new = old.clone();
    new["spec"]["activeDeadlineSeconds"] = json!(200);
    assert_eq!(
        update(POD, new, old),
        vec!["spec.activeDeadlineSeconds: Invalid value: 200: must be less than or equal to previous value"]
    );
}

// Deployments and other workloads.

#[test]
fn a_minimal_deployment_is_valid() {
    let d =
        deployment(json!({"selector": {"matchLabels": {"app": "web"}}, "template": template(json!({"app": "web"}))}));
    assert!(create(DEPLOYMENT, d).is_empty());
}

#[test]
fn deployment_selector_is_required() {
    let errs = create(DEPLOYMENT, deployment(json!({"template": template(json!({"app": "web"}))})));
    assert_eq!(errs, vec!["spec.selector: Required value"]);
}

#[test]
fn deployment_selector_must_match_template_labels() {
    let errs = create(
        DEPLOYMENT,
        deployment(json!({"selector": {"matchLabels": {"app": "api"}}, "template": template(json!({"app": "web"}))})),
    );
    assert_eq!(
        errs,
        vec![
            "spec.template.metadata.labels: Invalid value: {\"app\":\"web\"}: `selector` does not match template `labels`"
        ]
    );
}

#[test]
fn deployment_selector_may_not_be_empty() {
    let errs = create(DEPLOYMENT, deployment(json!({"selector": {}, "template": template(json!({"app": "web"}))})));
    assert_eq!(errs, vec!["spec.selector: Invalid value: {}: empty selector is invalid for deployment"]);
}

#[test]
fn deployment_replicas_and_strategy_are_checked() {
    let errs = create(
        DEPLOYMENT,
        deployment(json!({
            "replicas": -1,
            "selector": {"matchLabels": {"app": "web"}},
            "template": template(json!({"app": "web"})),
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": "0%"}},
            "minReadySeconds": 700
        })),
    );
    assert_eq!(
        errs,
        vec![
            "spec.replicas: Invalid value: -1: must be greater than or equal to 0",
            "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: \"0%\": may not be 0 when `maxSurge` is 0",
            "spec.progressDeadlineSeconds: Invalid value: 600: must be greater than minReadySeconds"
        ]
    );
}

#[test]
fn deployment_templates_must_restart_always() {
    let mut t = template(json!({"app": "web"}));
    t["spec"]["restartPolicy"] = json!("Never");
    let errs = create(DEPLOYMENT, deployment(json!({"selector": {"matchLabels": {"app": "web"}}, "template": t})));
    assert_eq!(
        errs,
        vec!["spec.template.spec.restartPolicy: Unsupported value: \"Never\": supported values: \"Always\""]
    );
}

#[test]
fn deployment_template_containers_are_validated() {
    let t = json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web"}]}});
    let errs = create(DEPLOYMENT, deployment(json!({"selector": {"matchLabels": {"app": "web"}}, "template": t})));
    assert_eq!(errs, vec!["spec.template.spec.containers[0].image: Required value"]);
}

#[test]
fn deployment_selector_is_immutable() {
    let old = stored(deployment(
        json!({"selector": {"matchLabels": {"app": "web"}}, "template": template(json!({"app": "web", "v": "1"}))}),
    ));
    let mut new = old.clone();
    new["spec"]["selector"] = json!({"matchLabels": {"app": "web", "v": "1"}});
    assert_eq!(
        update(DEPLOYMENT, new, old),
        vec!["spec.selector: Invalid value: {\"matchLabels\":{\"app\":\"web\",\"v\":\"1\"}}: field is immutable"]
    );
}

#[test]
fn replica_sets_share_the_deployment_rules() {
    let rs = json!({"metadata": {"name": "web-1", "namespace": "default"}, "spec": {"selector": {"matchLabels": {}}, "template": template(json!({"app": "web"}))}});
    assert_eq!(
        create(REPLICA_SET, rs),
        vec!["spec.selector: Invalid value: {\"matchLabels\":{}}: empty selector is invalid for deployment"]
    );
}

#[test]
fn statefulset_names_are_labels_and_most_of_the_spec_is_frozen() {
    let sts = |service: &str| {
        json!({"metadata": {"name": "db", "namespace": "default"}, "spec": {
            "serviceName": service, "selector": {"matchLabels": {"app": "db"}}, "template": template(json!({"app": "db"}))}})
    };
    assert!(create(STATEFUL_SET, sts("db")).is_empty());
    let mut dotted = sts("db");
    dotted["metadata"]["name"] = json!("db.v1");
    assert_eq!(create(STATEFUL_SET, dotted), vec!["metadata.name: Invalid value: \"db.v1\": must not contain dots"]);
    let errs = update(STATEFUL_SET, stored(sts("other")), stored(sts("db")));
    assert_eq!(
        errs,
        vec![
            "spec: Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"
        ]
    );
    let mut scaled = stored(sts("db"));
    scaled["spec"]["replicas"] = json!(5);
    assert!(update(STATEFUL_SET, scaled, stored(sts("db"))).is_empty());
}

#[test]
fn daemonset_rolling_update_needs_surge_or_unavailable() {
    let ds = json!({"metadata": {"name": "agent", "namespace": "default"}, "spec": {
        "selector": {"matchLabels": {"app": "agent"}}, "template": template(json!({"app": "agent"})),
        "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 0}}}});
    assert_eq!(
        create(DAEMON_SET, ds),
        vec!["spec.updateStrategy.rollingUpdate.maxUnavailable: Required value: cannot be 0 when maxSurge is 0"]
    );
}

#[test]
fn jobs_must_not_restart_always() {
    let job = json!({"metadata": {"name": "once", "namespace": "default"}, "spec": {"template": {"spec": {"containers": [container()]}}}});
    assert_eq!(
        create(JOB, job.clone()),
        vec!["spec.template.spec.restartPolicy: Required value: valid values: \"OnFailure\", \"Never\""]
    );
    let mut ok = job;
    ok["spec"]["template"]["spec"]["restartPolicy"] = json!("Never");
    assert!(create(JOB, ok).is_empty());
}

#[test]
fn job_templates_are_immutable_unless_suspended() {
    let job = stored(json!({"metadata": {"name": "once", "namespace": "default"}, "spec": {
        "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "u"}},
        "template": {"metadata": {"labels": {"batch.kubernetes.io/controller-uid": "u"}}, "spec": {"restartPolicy": "Never", "containers": [container()]}}}}));
    let mut new = job.clone();
    new["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:2");
    let errs = update(JOB, new, job.clone());
    assert_eq!(errs.len(), 1);
    assert!(
        errs[0].starts_with("spec.template: Invalid value: {") && errs[0].ends_with(": field is immutable"),
        "{errs:?}"
    );
    let mut suspended_old = job.clone();
    suspended_old["spec"]["suspend"] = json!(true);
    let mut suspended_new = suspended_old.clone();
    suspended_new["spec"]["template"]["spec"]["nodeSelector"] = json!({"zone": "a"});
    assert!(update(JOB, suspended_new, suspended_old).is_empty());
}

#[test]
fn cron_job_schedule_must_parse() {
    let cj = |schedule: &str| {
        json!({"metadata": {"name": "nightly", "namespace": "default"}, "spec": {"schedule": schedule, "jobTemplate": {"spec": {
            "template": {"spec": {"restartPolicy": "OnFailure", "containers": [container()]}}}}}})
    };
    assert!(create(CRON_JOB, cj("0 3 * * *")).is_empty());
    assert_eq!(
        create(CRON_JOB, cj("0 25 * * *")),
        vec!["spec.schedule: Invalid value: \"0 25 * * *\": end of range (25) above maximum (23): 25"]
    );
    assert_eq!(
        create(CRON_JOB, cj("TZ=UTC 0 3 * * *")),
        vec![
            "spec.schedule: Invalid value: \"TZ=UTC 0 3 * * *\": cannot use TZ or CRON_TZ in schedule, use timeZone field instead"
        ]
    );
}

#[test]
fn cron_job_names_are_limited_to_52_characters() {
    let name = "a".repeat(53);
    let cj = json!({"metadata": {"name": name, "namespace": "default"}, "spec": {"schedule": "@daily", "jobTemplate": {"spec": {
        "template": {"spec": {"restartPolicy": "OnFailure", "containers": [container()]}}}}}});
    assert_eq!(
        create(CRON_JOB, cj),
        vec![format!("metadata.name: Invalid value: \"{name}\": must be no more than 52 characters")]
    );
}

// Services.

fn service(spec: Value) -> Value {
    json!({"metadata": {"name": "web", "namespace": "default"}, "spec": spec})
}

#[test]
fn a_minimal_service_is_valid() {
    assert!(create(SERVICE, service(json!({"selector": {"app": "web"}, "ports": [{"port": 80}]}))).is_empty());
}

#[test]
fn services_need_ports_unless_headless_or_external_name() {
    assert_eq!(create(SERVICE, service(json!({}))), vec!["spec.ports: Required value"]);
    assert!(create(SERVICE, service(json!({"clusterIP": "None"}))).is_empty());
    assert!(create(SERVICE, service(json!({"type": "ExternalName", "externalName": "example.com"}))).is_empty());
    assert_eq!(create(SERVICE, service(json!({"type": "ExternalName"}))), vec!["spec.externalName: Required value"]);
}

#[test]
fn multiple_service_ports_need_unique_names() {
    let errs = create(
        SERVICE,
        service(json!({"ports": [{"port": 80}, {"name": "a", "port": 81}, {"name": "a", "port": 82}]})),
    );
    assert_eq!(errs, vec!["spec.ports[0].name: Required value", "spec.ports[2].name: Duplicate value: \"a\""]);
}

#[test]
fn service_ports_are_range_checked() {
    let errs = create(
        SERVICE,
        service(json!({"type": "NodePort", "ports": [{"port": 0, "targetPort": 8080, "nodePort": 70000}]})),
    );
    assert_eq!(
        errs,
        vec![
            "spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive",
            "spec.ports[0].nodePort: Invalid value: 70000: must be between 1 and 65535, inclusive"
        ]
    );
    // The node port range is configured in the API server, which checks it when it allocates.
    assert!(create(SERVICE, service(json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 80}]}))).is_empty());
    let errs = create(SERVICE, service(json!({"ports": [{"port": 80, "nodePort": 30080}]})));
    assert_eq!(errs, vec!["spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"]);
}

#[test]
fn service_type_is_an_enumeration() {
    let errs = create(SERVICE, service(json!({"type": "Internal", "ports": [{"port": 80}]})));
    assert_has(
        &errs,
        "spec.type: Unsupported value: \"Internal\": supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\"",
    );
}

#[test]
fn service_cluster_ip_may_not_change_once_set() {
    let old =
        stored(service(json!({"clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"], "ports": [{"port": 80}]})));
    let mut new = old.clone();
    new["spec"]["clusterIP"] = json!("10.96.0.11");
    new["spec"]["clusterIPs"] = json!(["10.96.0.11"]);
    assert_eq!(
        update(SERVICE, new, old),
        vec!["spec.clusterIPs[0]: Invalid value: [\"10.96.0.11\"]: may not change once set"]
    );
}

// ConfigMaps and Secrets.

#[test]
fn config_map_keys_must_be_config_keys() {
    let errs = create(
        CONFIG_MAP,
        json!({"metadata": {"name": "c", "namespace": "default"}, "data": {"a/b": "x", "ok.key": "y"}}),
    );
    assert_eq!(
        errs,
        vec![
            "data[a/b]: Invalid value: \"a/b\": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"
        ]
    );
}

#[test]
fn config_maps_are_limited_to_one_mebibyte() {
    let big = "x".repeat(1024 * 1024 + 1);
    let errs = create(CONFIG_MAP, json!({"metadata": {"name": "c", "namespace": "default"}, "data": {"big": big}}));
    assert_eq!(errs, vec!["[]: Too long: may not be more than 1048576 bytes"]);
}

#[test]
fn immutable_config_maps_keep_their_data() {
    let old = stored(json!({"metadata": {"name": "c", "namespace": "default"}, "immutable": true, "data": {"a": "1"}}));
    let mut new = old.clone();
    new["data"]["a"] = json!("2");
    assert_eq!(
        update(CONFIG_MAP, new, old.clone()),
        vec!["data: Forbidden: field is immutable when `immutable` is set"]
    );
    let mut unlocked = old.clone();
    unlocked["immutable"] = json!(false);
    assert_eq!(
        update(CONFIG_MAP, unlocked, old),
        vec!["immutable: Forbidden: field is immutable when `immutable` is set"]
    );
}

#[test]
fn secret_type_is_immutable_and_tls_secrets_need_both_keys() {
    let tls = json!({"metadata": {"name": "s", "namespace": "default"}, "type": "kubernetes.io/tls", "data": {"tls.crt": "YQ=="}});
    assert_eq!(create(SECRET, tls), vec!["data[tls.key]: Required value"]);
    let old = stored(json!({"metadata": {"name": "s", "namespace": "default"}, "data": {"a": "YQ=="}}));
    let mut new = old.clone();
    new["type"] = json!("kubernetes.io/basic-auth");
    new["data"] = json!({"username": "YQ=="});
    assert_eq!(update(SECRET, new, old), vec!["type: Invalid value: \"kubernetes.io/basic-auth\": field is immutable"]);
}

#[test]
fn secret_data_must_be_base64() {
    let errs = create(SECRET, json!({"metadata": {"name": "s", "namespace": "default"}, "data": {"a": "not base64!"}}));
    assert_eq!(errs, vec!["data[a]: Invalid value: \"<secret contents redacted>\": must be base64-encoded"]);
}

// Other kinds.

#[test]
fn pvcs_need_access_modes_and_storage() {
    let errs = create(PVC, json!({"metadata": {"name": "data", "namespace": "default"}, "spec": {}}));
    assert_eq!(
        errs,
        vec![
            "spec.accessModes: Required value: at least 1 access mode is required",
            "spec.resources[storage]: Required value"
        ]
    );
}

#[test]
fn bound_pvcs_may_only_grow() {
    let old = stored(
        json!({"metadata": {"name": "data", "namespace": "default"}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}, "status": {"phase": "Bound", "capacity": {"storage": "1Gi"}}}),
    );
    let mut grown = old.clone();
    grown["spec"]["resources"]["requests"]["storage"] = json!("2Gi");
    assert!(update(PVC, grown, old.clone()).is_empty());
    let mut shrunk = old.clone();
    shrunk["spec"]["resources"]["requests"]["storage"] = json!("512Mi");
    assert_eq!(
        update(PVC, shrunk, old.clone()),
        vec!["spec.resources.requests.storage: Forbidden: field can not be less than status.capacity"]
    );
    let mut modes = old.clone();
    modes["spec"]["accessModes"] = json!(["ReadWriteMany"]);
    let errs = update(PVC, modes, old);
    assert!(
        errs[0].starts_with("spec: Forbidden: spec is immutable after creation except resources.requests"),
        "{errs:?}"
    );
}

#[test]
fn legacy_events_must_match_their_involved_object_namespace() {
    let ev = json!({"metadata": {"name": "e", "namespace": "team"}, "involvedObject": {"kind": "Pod", "name": "p", "namespace": "other"}});
    assert_eq!(
        create(EVENT, ev),
        vec!["involvedObject.namespace: Invalid value: \"other\": does not match event.namespace"]
    );
}

#[test]
fn node_taints_are_unique_by_key_and_effect() {
    let taint = json!({"key": "k", "effect": "NoSchedule"});
    let errs = create(NODE, json!({"metadata": {"name": "n1"}, "spec": {"taints": [taint.clone(), taint]}}));
    assert_eq!(
        errs,
        vec![
            "spec.taints[1]: Duplicate value: {\"effect\":\"NoSchedule\",\"key\":\"k\"}: taints must be unique by key and effect pair"
        ]
    );
}

#[test]
fn lease_duration_must_be_positive() {
    let errs =
        create(LEASE, json!({"metadata": {"name": "l", "namespace": "default"}, "spec": {"leaseDurationSeconds": 0}}));
    assert_eq!(errs, vec!["spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0"]);
}

#[test]
fn pdbs_take_min_available_or_max_unavailable_not_both() {
    let errs = create(
        PDB,
        json!({"metadata": {"name": "p", "namespace": "default"}, "spec": {"minAvailable": 1, "maxUnavailable": "150%"}}),
    );
    assert_eq!(errs.len(), 2, "{errs:?}");
    assert!(
        errs[0].starts_with("spec: Invalid value: {")
            && errs[0].ends_with("minAvailable and maxUnavailable cannot be both set")
    );
    assert_eq!(errs[1], "spec.maxUnavailable: Invalid value: \"150%\": must not be greater than 100%");
}

#[test]
fn priority_classes_reserve_the_system_prefix_and_freeze_the_value() {
    let pc = |name: &str, value: i64| json!({"metadata": {"name": name}, "value": value});
    assert!(create(PRIORITY_CLASS, pc("high", 1000)).is_empty());
    assert_eq!(
        create(PRIORITY_CLASS, pc("system-mine", 1)),
        vec![
            "metadata.name: Forbidden: priority class names with 'system-' prefix are reserved for system use only. error: system-mine is not a known system priority class"
        ]
    );
    assert_eq!(
        create(PRIORITY_CLASS, pc("huge", 2_000_000_000)),
        vec!["value: Forbidden: maximum allowed value of a user defined priority is 1000000000"]
    );
    assert_eq!(
        update(PRIORITY_CLASS, stored(pc("high", 2000)), stored(pc("high", 1000))),
        vec!["value: Forbidden: may not be changed in an update."]
    );
}

#[test]
fn ingress_paths_need_a_type_and_a_backend() {
    let ing = json!({"metadata": {"name": "i", "namespace": "default"}, "spec": {"rules": [{"host": "example.com", "http": {"paths": [
        {"path": "/", "backend": {"service": {"name": "web", "port": {"number": 80}}}},
        {"path": "api", "pathType": "Prefix", "backend": {"service": {"name": "web", "port": {"name": "http", "number": 80}}}}
    ]}}]}});
    assert_eq!(
        create(INGRESS, ing),
        vec![
            "spec.rules[0].http.paths[0].pathType: Required value: pathType must be specified",
            "spec.rules[0].http.paths[1].path: Invalid value: \"api\": must be an absolute path",
            "spec.rules[0].http.paths[1].backend.service.port: Invalid value: \"\": cannot set both port name & port number"
        ]
    );
    let empty = json!({"metadata": {"name": "i", "namespace": "default"}, "spec": {}});
    assert_eq!(
        create(INGRESS, empty),
        vec!["spec: Invalid value: []: either `defaultBackend` or `rules` must be specified"]
    );
}

#[test]
fn hpa_replica_bounds_are_checked() {
    let hpa = json!({"apiVersion": "autoscaling/v2", "metadata": {"name": "h", "namespace": "default"}, "spec": {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}, "minReplicas": 5, "maxReplicas": 2}});
    assert_eq!(
        create(HPA, hpa),
        vec!["spec.maxReplicas: Invalid value: 2: must be greater than or equal to `minReplicas`"]
    );
}

#[test]
fn rbac_rules_need_verbs() {
    let role = json!({"metadata": {"name": "r", "namespace": "default"}, "rules": [{"apiGroups": [""], "resources": ["pods"]}]});
    assert_eq!(create(ROLE, role), vec!["rules[0].verbs: Required value: verbs must contain at least one value"]);
}

#[test]
fn role_binding_role_ref_is_checked_and_frozen() {
    let rb = |role: &str| {
        json!({"metadata": {"name": "rb", "namespace": "default"}, "roleRef": {"kind": "Role", "name": role},
            "subjects": [{"kind": "User", "name": "alice"}, {"kind": "ServiceAccount", "name": "default"}]})
    };
    assert!(create(ROLE_BINDING, rb("reader")).is_empty());
    let errs = update(ROLE_BINDING, stored(rb("writer")), stored(rb("reader")));
    assert_eq!(errs.len(), 1);
    assert!(
        errs[0].starts_with("roleRef: Invalid value: {") && errs[0].ends_with(": cannot change roleRef"),
        "{errs:?}"
    );
    let crb = json!({"metadata": {"name": "crb"}, "roleRef": {"kind": "Role", "name": "r"}, "subjects": [{"kind": "ServiceAccount", "name": "sa"}]});
    assert_eq!(
        create(CLUSTER_ROLE_BINDING, crb),
        vec![
            "roleRef.kind: Unsupported value: \"Role\": supported values: \"ClusterRole\"",
            "subjects[0].namespace: Required value"
        ]
    );
}

#[test]
fn a_job_selector_written_by_the_client_needs_manual_selector() {
    let job = json!({"metadata": {"name": "once", "namespace": "default", "uid": "u-1"}, "spec": {
        "selector": {"matchLabels": {"app": "x"}},
        "template": {"metadata": {"labels": {"app": "x"}}, "spec": {"restartPolicy": "Never", "containers": [container()]}}}});
    assert_eq!(
        create(JOB, job.clone()),
        vec!["spec.selector: Invalid value: {\"matchLabels\":{\"app\":\"x\"}}: `selector` not auto-generated"]
    );
    let mut manual = job;
    manual["spec"]["manualSelector"] = json!(true);
    assert!(create(JOB, manual).is_empty());
}
