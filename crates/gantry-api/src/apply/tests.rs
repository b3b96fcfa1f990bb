use std::sync::Arc;

use serde_json::{Value, json};

use super::*;

fn deployments() -> Arc<Schema> {
    Schema::builtin("apps", "v1", "Deployment")
}

fn writer<'a>(manager: &'a str, now: &'a str) -> Writer<'a> {
    Writer { manager, api_version: "apps/v1", subresource: None, scope: Scope::Main, now }
}

fn deployment(replicas: i64, image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": image}]}}},
    })
}

fn entry<'a>(obj: &'a Value, manager: &str) -> &'a Value {
    obj["metadata"]["managedFields"]
        .as_array()
        .and_then(|l| l.iter().find(|e| e["manager"] == manager))
        .unwrap_or_else(|| panic!("no entry for {manager} in {obj}"))
}

fn managers(obj: &Value) -> Vec<String> {
    obj["metadata"]["managedFields"]
        .as_array()
        .map(|l| l.iter().map(|e| e["manager"].as_str().unwrap_or_default().to_string()).collect())
        .unwrap_or_default()
}

fn owns(obj: &Value, manager: &str, path: &[&str]) -> bool {
    let set = Set::from_fields_v1(&entry(obj, manager)["fieldsV1"]).unwrap();
    set.has(&Path::fields(path).0)
}

#[test]
fn creating_by_apply_records_the_applied_fields_as_kube_apiserver_does() {
    let created = apply(&deployments(), None, &deployment(2, "nginx"), &writer("kubectl", "T1"), false).unwrap();
    assert_eq!(created["spec"]["replicas"], 2);
    let e = entry(&created, "kubectl");
    assert_eq!(e["operation"], "Apply");
    assert_eq!(e["apiVersion"], "apps/v1");
    assert_eq!(e["time"], "T1");
    assert_eq!(e["fieldsType"], "FieldsV1");
    let set = Set::from_fields_v1(&e["fieldsV1"]).unwrap();
    assert_eq!(
        set.to_fields_v1_string(),
        r#"{"f:spec":{"f:replicas":{},"f:selector":{},"f:template":{"f:metadata":{"f:labels":{"f:app":{}}},"f:spec":{"f:containers":{"k:{\"name\":\"web\"}":{".":{},"f:image":{},"f:name":{}}}}}}}"#
    );
}

#[test]
fn reapplying_the_same_configuration_changes_nothing() {
    let schema = deployments();
    let created = apply(&schema, None, &deployment(2, "nginx"), &writer("kubectl", "T1"), false).unwrap();
    let again = apply(&schema, Some(&created), &deployment(2, "nginx"), &writer("kubectl", "T2"), false).unwrap();
    assert_eq!(again, created);
}

#[test]
fn changing_a_field_an_updater_owns_is_a_conflict_worded_as_kube_apiserver_words_it() {
    let schema = deployments();
    let mut live = deployment(2, "nginx");
    update(&schema, None, &mut live, &writer("kubectl-client-side-apply", "T0"));
    let err = apply(&schema, Some(&live), &deployment(3, "nginx"), &writer("other", "T1"), false).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Apply failed with 1 conflict: conflict with \"kubectl-client-side-apply\" using apps/v1: .spec.replicas"
    );
    let ApplyError::Conflicts(conflicts) = err else { panic!() };
    assert_eq!(conflicts[0].cause_message(), "conflict with \"kubectl-client-side-apply\" using apps/v1");
    assert_eq!(conflicts[0].field, ".spec.replicas");
}

#[test]
fn several_conflicts_are_listed_by_manager() {
    let schema = deployments();
    let live = apply(&schema, None, &deployment(2, "nginx"), &writer("x", "T0"), false).unwrap();
    let err = apply(&schema, Some(&live), &deployment(3, "httpd"), &writer("y", "T1"), false).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Apply failed with 2 conflicts: conflicts with \"x\":\n- .spec.replicas\n- \
         .spec.template.spec.containers[name=\"web\"].image"
    );
}

#[test]
fn applying_the_value_a_field_already_has_shares_it_without_conflict() {
    let schema = deployments();
    let live = apply(&schema, None, &deployment(2, "nginx"), &writer("x", "T0"), false).unwrap();
    let shared = apply(&schema, Some(&live), &deployment(2, "nginx"), &writer("y", "T1"), false).unwrap();
    assert!(owns(&shared, "x", &["spec", "replicas"]));
    assert!(owns(&shared, "y", &["spec", "replicas"]));
}

#[test]
fn force_takes_the_fields_from_their_owner() {
    let schema = deployments();
    let live = apply(&schema, None, &deployment(2, "nginx"), &writer("x", "T0"), false).unwrap();
    let forced = apply(&schema, Some(&live), &deployment(5, "nginx"), &writer("y", "T1"), true).unwrap();
    assert_eq!(forced["spec"]["replicas"], 5);
    assert!(owns(&forced, "y", &["spec", "replicas"]));
    assert!(!owns(&forced, "x", &["spec", "replicas"]));
    assert!(owns(&forced, "x", &["spec", "template", "metadata", "labels", "app"]));
}

#[test]
fn a_field_no_longer_applied_is_removed_unless_someone_else_owns_it() {
    let schema = deployments();
    let mut config = deployment(2, "nginx");
    config["spec"]["paused"] = json!(true);
    config["spec"]["minReadySeconds"] = json!(5);
    let live = apply(&schema, None, &config, &writer("x", "T0"), false).unwrap();
    // Another manager applies minReadySeconds with the same value: it shares it.
    let other = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
                       "spec": {"minReadySeconds": 5}});
    let live = apply(&schema, Some(&live), &other, &writer("y", "T1"), false).unwrap();
    let after = apply(&schema, Some(&live), &deployment(2, "nginx"), &writer("x", "T2"), false).unwrap();
    assert!(after["spec"].get("paused").is_none(), "{after}");
    assert_eq!(after["spec"]["minReadySeconds"], 5);
    assert!(!owns(&after, "x", &["spec", "paused"]));
}

#[test]
fn two_managers_share_a_map_list_element_by_element() {
    let schema = deployments();
    let live = apply(&schema, None, &deployment(1, "web:1"), &writer("a", "T0"), false).unwrap();
    let sidecar = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"template": {"spec": {"containers": [{"name": "log", "image": "log:1"}]}}}});
    let live = apply(&schema, Some(&live), &sidecar, &writer("b", "T1"), false).unwrap();
    let containers = &live["spec"]["template"]["spec"]["containers"];
    assert_eq!(containers.as_array().map(Vec::len), Some(2));
    // b gives its container up: only b's element goes.
    let nothing = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}});
    let live = apply(&schema, Some(&live), &nothing, &writer("b", "T2"), false).unwrap();
    assert_eq!(live["spec"]["template"]["spec"]["containers"], json!([{"name": "web", "image": "web:1"}]));
    assert_eq!(managers(&live), vec!["a"]);
}

#[test]
fn an_update_takes_the_fields_it_changes_from_an_applier() {
    let schema = deployments();
    let live = apply(&schema, None, &deployment(2, "nginx"), &writer("kubectl", "T0"), false).unwrap();
    let mut scaled = live.clone();
    scaled["spec"]["replicas"] = json!(4);
    update(&schema, Some(&live), &mut scaled, &writer("kubectl-scale", "T1"));
    assert!(owns(&scaled, "kubectl-scale", &["spec", "replicas"]));
    assert!(!owns(&scaled, "kubectl", &["spec", "replicas"]));
    assert_eq!(entry(&scaled, "kubectl-scale")["operation"], "Update");
    // The applier then conflicts on it, naming the updater.
    let err = apply(&schema, Some(&scaled), &deployment(2, "nginx"), &writer("kubectl", "T2"), false).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Apply failed with 1 conflict: conflict with \"kubectl-scale\" using apps/v1: .spec.replicas"
    );
}

#[test]
fn an_update_that_removes_a_field_takes_it_from_every_owner() {
    let schema = deployments();
    let mut config = deployment(2, "nginx");
    config["spec"]["paused"] = json!(true);
    let live = apply(&schema, None, &config, &writer("a", "T0"), false).unwrap();
    let mut edited = live.clone();
    edited["spec"].as_object_mut().unwrap().remove("paused");
    update(&schema, Some(&live), &mut edited, &writer("editor", "T1"));
    assert!(!owns(&edited, "a", &["spec", "paused"]));
    assert_eq!(managers(&edited), vec!["a"], "a removal alone gives the editor nothing");
}

#[test]
fn an_update_that_changes_nothing_keeps_the_record_byte_for_byte() {
    let schema = deployments();
    let mut live = deployment(2, "nginx");
    update(&schema, None, &mut live, &writer("creator", "T0"));
    let mut same = live.clone();
    update(&schema, Some(&live), &mut same, &writer("someone", "T1"));
    assert_eq!(same, live);
}

#[test]
fn a_create_owns_declared_objects_and_maps_as_kube_apiserver_records_them() {
    let schema = Schema::builtin("", "v1", "ConfigMap");
    let mut obj = json!({"apiVersion": "v1", "kind": "ConfigMap",
                         "metadata": {"name": "a", "labels": {"x": "1"}}, "data": {"k": "v"}});
    let w = Writer { manager: "kubectl-create", api_version: "v1", subresource: None, scope: Scope::Whole, now: "T" };
    update(&schema, None, &mut obj, &w);
    let fields = Set::from_fields_v1(&obj["metadata"]["managedFields"][0]["fieldsV1"]).unwrap();
    assert_eq!(
        fields.to_fields_v1_string(),
        r#"{"f:data":{".":{},"f:k":{}},"f:metadata":{"f:labels":{".":{},"f:x":{}}}}"#
    );
}

#[test]
fn a_created_deployment_owns_its_fields_as_kube_apiserver_records_them() {
    let mut obj = deployment(2, "nginx");
    obj["metadata"]["labels"] = json!({"app": "web"});
    obj["spec"]["strategy"] = json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%"}});
    update(&deployments(), None, &mut obj, &writer("kubectl-create", "T"));
    let fields = Set::from_fields_v1(&obj["metadata"]["managedFields"][0]["fieldsV1"]).unwrap();
    assert_eq!(
        fields.to_fields_v1_string(),
        r#"{"f:metadata":{"f:labels":{".":{},"f:app":{}}},"f:spec":{"f:replicas":{},"f:selector":{},"f:strategy":{"f:rollingUpdate":{".":{},"f:maxSurge":{}},"f:type":{}},"f:template":{"f:metadata":{"f:labels":{".":{},"f:app":{}}},"f:spec":{"f:containers":{"k:{\"name\":\"web\"}":{".":{},"f:image":{},"f:name":{}}}}}}}"#
    );
}

#[test]
fn managed_fields_sent_by_a_client_replace_the_record_and_an_empty_list_resets_it() {
    let schema = deployments();
    let live = apply(&schema, None, &deployment(2, "nginx"), &writer("kubectl", "T0"), false).unwrap();
    // Rewritten by the client (kubectl's upgrade to server-side apply does this).
    let mut rewritten = live.clone();
    rewritten["metadata"]["managedFields"][0]["manager"] = json!("renamed");
    update(&schema, Some(&live), &mut rewritten, &writer("kubectl-patch", "T1"));
    assert_eq!(managers(&rewritten), vec!["renamed"]);
    // Reset with [] while changing replicas: only the write's own fields remain.
    for reset in [json!([]), json!([{}])] {
        let mut cleared = live.clone();
        cleared["metadata"]["managedFields"] = reset;
        cleared["spec"]["replicas"] = json!(7);
        update(&schema, Some(&live), &mut cleared, &writer("kubectl-patch", "T1"));
        assert_eq!(managers(&cleared), vec!["kubectl-patch"]);
        assert_eq!(entry(&cleared, "kubectl-patch")["fieldsV1"], json!({"f:spec": {"f:replicas": {}}}));
    }
    // A body without managedFields keeps the record.
    let mut plain = live.clone();
    plain["metadata"].as_object_mut().unwrap().remove("managedFields");
    update(&schema, Some(&live), &mut plain, &writer("kubectl-patch", "T1"));
    assert_eq!(plain["metadata"]["managedFields"], live["metadata"]["managedFields"]);
}

#[test]
fn status_writes_are_owned_with_their_subresource_and_cover_only_status() {
    let schema = deployments();
    let live = apply(&schema, None, &deployment(2, "nginx"), &writer("kubectl", "T0"), false).unwrap();
    let mut new = live.clone();
    new["status"] = json!({"replicas": 2, "conditions": [{"type": "Available", "status": "True"}]});
    let w = Writer { subresource: Some("status"), scope: Scope::Status, ..writer("controller", "T1") };
    update(&schema, Some(&live), &mut new, &w);
    let e = entry(&new, "controller");
    assert_eq!(e["subresource"], "status");
    assert_eq!(
        e["fieldsV1"],
        json!({"f:status": {".": {}, "f:conditions": {".": {}, "k:{\"type\":\"Available\"}":
            {".": {}, "f:status": {}, "f:type": {}}}, "f:replicas": {}}})
    );
    // Applying status through the subresource owns only status.
    let config = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
                        "spec": {"replicas": 9}, "status": {"observedGeneration": 3}});
    let w = Writer { subresource: Some("status"), scope: Scope::Status, ..writer("status-applier", "T2") };
    let applied = apply(&schema, Some(&new), &config, &w, false).unwrap();
    assert_eq!(applied["spec"]["replicas"], 2);
    assert_eq!(applied["status"]["observedGeneration"], 3);
    assert_eq!(entry(&applied, "status-applier")["fieldsV1"], json!({"f:status": {"f:observedGeneration": {}}}));
}

#[test]
fn applied_status_is_ignored_on_the_main_resource() {
    let schema = deployments();
    let mut config = deployment(1, "nginx");
    config["status"] = json!({"replicas": 10});
    let created = apply(&schema, None, &config, &writer("kubectl", "T0"), false).unwrap();
    assert!(created.get("status").is_none());
    assert!(!owns(&created, "kubectl", &["status", "replicas"]));
}

#[test]
fn kubectl_takes_over_fields_that_still_match_its_client_side_last_applied_configuration() {
    let schema = deployments();
    let mut live = deployment(2, "nginx");
    let last = deployment(2, "nginx");
    live["metadata"]["annotations"] = json!({LAST_APPLIED_ANNOTATION: last.to_string()});
    update(&schema, None, &mut live, &writer("kubectl-client-side-apply", "T0"));
    // replicas still matches the last applied configuration: kubectl may change it without conflict.
    let applied = apply(&schema, Some(&live), &deployment(3, "nginx"), &writer("kubectl", "T1"), false).unwrap();
    assert_eq!(applied["spec"]["replicas"], 3);
    assert!(!owns(&applied, "kubectl-client-side-apply", &["spec", "replicas"]));
    let recorded: Value =
        serde_json::from_str(applied["metadata"]["annotations"][LAST_APPLIED_ANNOTATION].as_str().unwrap()).unwrap();
    assert_eq!(recorded["spec"]["replicas"], 3);
    // Another manager name gets the conflict.
    let err = apply(&schema, Some(&live), &deployment(3, "nginx"), &writer("helm", "T1"), false).unwrap_err();
    assert!(matches!(err, ApplyError::Conflicts(_)));
    // A field changed since the last client-side apply still conflicts for kubectl.
    let mut drifted = live.clone();
    drifted["spec"]["replicas"] = json!(5);
    let err = apply(&schema, Some(&drifted), &deployment(3, "nginx"), &writer("kubectl", "T1"), false).unwrap_err();
    assert!(matches!(err, ApplyError::Conflicts(_)));
}

#[test]
fn atomic_lists_are_owned_whole_and_sets_element_by_element() {
    let schema = deployments();
    let mut config = deployment(1, "nginx");
    config["spec"]["template"]["spec"]["containers"][0]["args"] = json!(["a", "b"]);
    config["metadata"]["finalizers"] = json!(["example.com/x"]);
    let created = apply(&schema, None, &config, &writer("m", "T0"), false).unwrap();
    let fields = Set::from_fields_v1(&entry(&created, "m")["fieldsV1"]).unwrap();
    let text = fields.to_fields_v1_string();
    assert!(text.contains(r#""f:args":{}"#), "{text}");
    assert!(text.contains(r#""f:finalizers":{"v:\"example.com/x\"":{}}"#), "{text}");
}

#[test]
fn configurations_with_managed_fields_or_duplicate_keys_are_refused() {
    let schema = deployments();
    let mut config = deployment(1, "nginx");
    config["metadata"]["managedFields"] = json!([]);
    assert_eq!(apply(&schema, None, &config, &writer("m", "T"), false).unwrap_err(), ApplyError::ManagedFieldsInConfig);
    let mut config = deployment(1, "nginx");
    config["spec"]["template"]["spec"]["containers"] = json!([{"name": "a"}, {"name": "a"}]);
    assert!(matches!(apply(&schema, None, &config, &writer("m", "T"), false), Err(ApplyError::Invalid { .. })));
}

#[test]
fn entries_are_sorted_apply_first_then_by_time() {
    let schema = deployments();
    let live = apply(&schema, None, &deployment(2, "nginx"), &writer("zeta", "T5"), false).unwrap();
    let mut edited = live.clone();
    edited["spec"]["paused"] = json!(true);
    update(&schema, Some(&live), &mut edited, &writer("alpha", "T1"));
    let other = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
                       "spec": {"minReadySeconds": 1}});
    let edited = apply(&schema, Some(&edited), &other, &writer("beta", "T9"), false).unwrap();
    assert_eq!(managers(&edited), vec!["zeta", "beta", "alpha"]);
}

#[test]
fn custom_resources_merge_as_their_schema_says_and_default_to_atomic_lists() {
    let schema = Schema::from_crd_schema(&json!({"type": "object", "properties": {"spec": {"type": "object",
    "properties": {
        "routes": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
                   "items": {"type": "object", "properties": {"name": {"type": "string"},
                                                              "port": {"type": "integer"}}}},
        "hosts": {"type": "array", "items": {"type": "string"}},
    }}}}));
    let w = |m| Writer { manager: m, api_version: "example.com/v1", subresource: None, scope: Scope::Whole, now: "T" };
    let cr = |routes: Value, hosts: Value| {
        json!({"apiVersion": "example.com/v1", "kind": "Gate", "metadata": {"name": "g"},
               "spec": {"routes": routes, "hosts": hosts}})
    };
    let live = apply(&schema, None, &cr(json!([{"name": "a", "port": 1}]), json!(["x"])), &w("one"), false).unwrap();
    let live =
        apply(&schema, Some(&live), &cr(json!([{"name": "b", "port": 2}]), json!(["x"])), &w("two"), false).unwrap();
    assert_eq!(live["spec"]["routes"], json!([{"name": "a", "port": 1}, {"name": "b", "port": 2}]));
    // An atomic list with a different value is a conflict, and forced it is replaced whole.
    let other_hosts = cr(json!([{"name": "b", "port": 2}]), json!(["y"]));
    assert!(matches!(apply(&schema, Some(&live), &other_hosts, &w("two"), false), Err(ApplyError::Conflicts(_))));
    let forced = apply(&schema, Some(&live), &other_hosts, &w("two"), true).unwrap();
    assert_eq!(forced["spec"]["hosts"], json!(["y"]));
}

#[test]
fn the_deduced_schema_merges_objects_and_replaces_lists() {
    let schema = Schema::deduced();
    let w = Writer { manager: "m", api_version: "x/v1", subresource: None, scope: Scope::Whole, now: "T" };
    let live = json!({"apiVersion": "x/v1", "kind": "K", "metadata": {"name": "a"},
                      "spec": {"keep": 1, "list": [1, 2]}});
    let config = json!({"apiVersion": "x/v1", "kind": "K", "metadata": {"name": "a"}, "spec": {"list": [3]}});
    let merged = apply(&schema, Some(&live), &config, &w, false).unwrap();
    assert_eq!(merged["spec"], json!({"keep": 1, "list": [3]}));
    let fields = Set::from_fields_v1(&merged["metadata"]["managedFields"][0]["fieldsV1"]).unwrap();
    assert_eq!(fields.to_fields_v1_string(), r#"{"f:spec":{".":{},"f:list":{}}}"#);
}

#[test]
fn unreadable_managed_fields_fail_an_apply_but_not_an_update() {
    let schema = deployments();
    let mut live = deployment(1, "nginx");
    live["metadata"]["managedFields"] = json!([{"manager": "x", "operation": "Bogus"}]);
    assert!(matches!(
        apply(&schema, Some(&live), &deployment(2, "nginx"), &writer("m", "T"), false),
        Err(ApplyError::ManagedFields(ManagedFieldsError::Operation { index: 0 }))
    ));
    let mut new = live.clone();
    new["spec"]["replicas"] = json!(2);
    new["metadata"].as_object_mut().unwrap().remove("managedFields");
    update(&schema, Some(&live), &mut new, &writer("editor", "T"));
    assert_eq!(managers(&new), vec!["editor"]);
}

#[test]
fn more_than_ten_updaters_fold_the_oldest_into_ancient_changes() {
    let schema = deployments();
    let mut live = deployment(1, "web:1");
    update(&schema, None, &mut live, &writer("creator", "T00"));
    // Twelve more managers, each adding a label of its own, at increasing times.
    for i in 1..=12 {
        let mut next = live.clone();
        next["metadata"]["labels"][format!("owner{i:02}")] = json!("x");
        let now = format!("T{i:02}");
        let manager = format!("m{i:02}");
        update(&schema, Some(&live), &mut next, &writer(&manager, &now));
        live = next;
    }
    let names = managers(&live);
    assert_eq!(names.len(), MAX_UPDATE_MANAGERS, "{names:?}");
    assert!(names.contains(&ANCIENT_CHANGES.to_string()), "{names:?}");
    assert!(!names.contains(&"creator".to_string()) && !names.contains(&"m01".to_string()), "{names:?}");
    assert!(names.contains(&"m12".to_string()), "the newest stays: {names:?}");
    // What the folded managers owned is still owned: the creator's spec now belongs to the bucket.
    assert!(owns(&live, ANCIENT_CHANGES, &["spec", "replicas"]));
}
