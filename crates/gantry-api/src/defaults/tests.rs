use serde_json::{Value, json};

use super::*;

fn defaulted(group: &'static str, kind: &'static str, mut obj: Value) -> Value {
    apply_defaults(GroupKind { group, kind }, &mut obj);
    obj
}

#[test]
fn pods_get_kubes_spec_and_container_defaults() {
    let pod = defaulted(
        "",
        "Pod",
        json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a", "image": "nginx", "ports": [{"containerPort": 80}]}]}}),
    );
    let spec = &pod["spec"];
    assert_eq!(spec["restartPolicy"], "Always");
    assert_eq!(spec["dnsPolicy"], "ClusterFirst");
    assert_eq!(spec["schedulerName"], "default-scheduler");
    assert_eq!(spec["terminationGracePeriodSeconds"], 30);
    assert_eq!(spec["securityContext"], json!({}));
    assert_eq!(spec["enableServiceLinks"], true);
    assert_eq!(spec["priority"], 0);
    assert_eq!(spec["preemptionPolicy"], "PreemptLowerPriority");
    let c = &spec["containers"][0];
    assert_eq!(c["imagePullPolicy"], "Always");
    assert_eq!(c["terminationMessagePath"], "/dev/termination-log");
    assert_eq!(c["terminationMessagePolicy"], "File");
    assert_eq!(c["ports"][0]["protocol"], "TCP");
    assert_eq!(
        spec["tolerations"],
        json!([
            {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
            {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}
        ])
    );
}

#[test]
fn defaulting_twice_changes_nothing() {
    let once = defaulted(
        "",
        "Pod",
        json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a", "image": "nginx"}]}}),
    );
    let twice = defaulted("", "Pod", once.clone());
    assert_eq!(once, twice);
    let d = json!({"spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {"spec": {"containers": [{"name": "a", "image": "x"}]}}}});
    let once = defaulted("apps", "Deployment", d);
    assert_eq!(once, defaulted("apps", "Deployment", once.clone()));
}

#[test]
fn image_pull_policy_depends_on_the_tag() {
    assert_eq!(image_pull_policy_for("nginx"), "Always");
    assert_eq!(image_pull_policy_for("nginx:latest"), "Always");
    assert_eq!(image_pull_policy_for("nginx:1.27"), "IfNotPresent");
    assert_eq!(image_pull_policy_for("registry.local:5000/team/app"), "Always");
    assert_eq!(image_pull_policy_for("registry.local:5000/team/app:v2"), "IfNotPresent");
    assert_eq!(image_pull_policy_for("nginx@sha256:abcdef"), "IfNotPresent");
    assert_eq!(image_pull_policy_for("Nginx"), "IfNotPresent");
    assert_eq!(image_pull_policy_for(""), "IfNotPresent");
}

#[test]
fn explicit_values_are_kept() {
    let pod = defaulted(
        "",
        "Pod",
        json!({"spec": {"restartPolicy": "Never", "terminationGracePeriodSeconds": 0, "tolerations": [{"operator": "Exists"}],
            "containers": [{"name": "a", "image": "nginx", "imagePullPolicy": "Never"}]}}),
    );
    assert_eq!(pod["spec"]["restartPolicy"], "Never");
    assert_eq!(pod["spec"]["terminationGracePeriodSeconds"], 0);
    assert_eq!(pod["spec"]["containers"][0]["imagePullPolicy"], "Never");
    assert_eq!(
        pod["spec"]["tolerations"],
        json!([{"operator": "Exists"}]),
        "a wildcard toleration already covers both"
    );
}

#[test]
fn probes_get_thresholds_and_http_defaults() {
    let pod = defaulted(
        "",
        "Pod",
        json!({"spec": {"containers": [{"name": "a", "image": "x", "readinessProbe": {"httpGet": {"port": 80}, "timeoutSeconds": 0}}]}}),
    );
    let probe = &pod["spec"]["containers"][0]["readinessProbe"];
    assert_eq!(probe["timeoutSeconds"], 1);
    assert_eq!(probe["periodSeconds"], 10);
    assert_eq!(probe["successThreshold"], 1);
    assert_eq!(probe["failureThreshold"], 3);
    assert_eq!(probe["httpGet"], json!({"port": 80, "path": "/", "scheme": "HTTP"}));
}

#[test]
fn pod_requests_default_to_limits_and_quantities_become_canonical() {
    let pod = defaulted(
        "",
        "Pod",
        json!({"spec": {"containers": [{"name": "a", "image": "x", "resources": {"limits": {"cpu": "0.5", "memory": "1024Mi"}, "requests": {"cpu": 0.1}}}]}}),
    );
    let res = &pod["spec"]["containers"][0]["resources"];
    assert_eq!(res["limits"], json!({"cpu": "500m", "memory": "1Gi"}));
    assert_eq!(res["requests"], json!({"cpu": "100m", "memory": "1Gi"}));
}

#[test]
fn templates_do_not_get_pod_only_defaults() {
    let d = defaulted(
        "apps",
        "Deployment",
        json!({"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "x", "resources": {"limits": {"cpu": "1"}}}]}}}}),
    );
    let spec = &d["spec"]["template"]["spec"];
    assert_eq!(spec["restartPolicy"], "Always");
    assert!(spec.get("enableServiceLinks").is_none());
    assert!(spec.get("priority").is_none());
    assert!(spec.get("tolerations").is_none());
    assert!(spec["containers"][0]["resources"].get("requests").is_none());
}

#[test]
fn volumes_get_sources_and_modes() {
    let pod = defaulted(
        "",
        "Pod",
        json!({"spec": {"volumes": [{"name": "scratch"}, {"name": "cfg", "configMap": {"name": "c"}}, {"name": "h", "hostPath": {"path": "/x"}}],
            "containers": [{"name": "a", "image": "x"}]}}),
    );
    let vols = &pod["spec"]["volumes"];
    assert_eq!(vols[0]["emptyDir"], json!({}));
    assert_eq!(vols[1]["configMap"]["defaultMode"], 420);
    assert_eq!(vols[2]["hostPath"]["type"], "");
}

#[test]
fn deployments_get_replicas_strategy_and_limits() {
    let d = defaulted("apps", "Deployment", json!({"spec": {}}));
    assert_eq!(d["spec"]["replicas"], 1);
    assert_eq!(
        d["spec"]["strategy"],
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}})
    );
    assert_eq!(d["spec"]["revisionHistoryLimit"], 10);
    assert_eq!(d["spec"]["progressDeadlineSeconds"], 600);
    let recreate = defaulted("apps", "Deployment", json!({"spec": {"strategy": {"type": "Recreate"}}}));
    assert_eq!(recreate["spec"]["strategy"], json!({"type": "Recreate"}));
}

#[test]
fn statefulsets_get_policies_and_claim_template_defaults() {
    let s = defaulted(
        "apps",
        "StatefulSet",
        json!({"spec": {"volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"]}}]}}),
    );
    let spec = &s["spec"];
    assert_eq!(spec["podManagementPolicy"], "OrderedReady");
    assert_eq!(spec["updateStrategy"], json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}));
    assert_eq!(spec["persistentVolumeClaimRetentionPolicy"], json!({"whenDeleted": "Retain", "whenScaled": "Retain"}));
    assert_eq!(spec["replicas"], 1);
    assert_eq!(spec["revisionHistoryLimit"], 10);
    assert_eq!(spec["volumeClaimTemplates"][0]["spec"]["volumeMode"], "Filesystem");
    assert_eq!(spec["volumeClaimTemplates"][0]["status"], json!({"phase": "Pending"}));
}

#[test]
fn daemonsets_roll_one_at_a_time() {
    let ds = defaulted("apps", "DaemonSet", json!({"spec": {}}));
    assert_eq!(
        ds["spec"]["updateStrategy"],
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}})
    );
    assert_eq!(ds["spec"]["revisionHistoryLimit"], 10);
}

#[test]
fn jobs_get_counts_policies_and_labels_from_the_template() {
    let job = defaulted(
        "batch",
        "Job",
        json!({"metadata": {"name": "j"}, "spec": {"template": {"metadata": {"labels": {"app": "j"}}, "spec": {"containers": []}}}}),
    );
    let spec = &job["spec"];
    assert_eq!(spec["completions"], 1);
    assert_eq!(spec["parallelism"], 1);
    assert_eq!(spec["backoffLimit"], 6);
    assert_eq!(spec["completionMode"], "NonIndexed");
    assert_eq!(spec["suspend"], false);
    assert_eq!(spec["podReplacementPolicy"], "TerminatingOrFailed");
    assert_eq!(spec["manualSelector"], false);
    assert_eq!(job["metadata"]["labels"], json!({"app": "j"}));
    let parallel = defaulted(
        "batch",
        "Job",
        json!({"spec": {"parallelism": 3, "backoffLimitPerIndex": 1, "podFailurePolicy": {"rules": []}}}),
    );
    assert!(parallel["spec"].get("completions").is_none());
    assert_eq!(parallel["spec"]["backoffLimit"], i64::from(i32::MAX));
    assert_eq!(parallel["spec"]["podReplacementPolicy"], "Failed");
}

#[test]
fn cronjobs_get_policies_but_their_job_template_is_not_a_job() {
    let cj = defaulted(
        "batch",
        "CronJob",
        json!({"spec": {"schedule": "@daily", "jobTemplate": {"spec": {"template": {"spec": {"containers": []}}}}}}),
    );
    let spec = &cj["spec"];
    assert_eq!(spec["concurrencyPolicy"], "Allow");
    assert_eq!(spec["suspend"], false);
    assert_eq!(spec["successfulJobsHistoryLimit"], 3);
    assert_eq!(spec["failedJobsHistoryLimit"], 1);
    assert!(spec["jobTemplate"]["spec"].get("backoffLimit").is_none());
    assert_eq!(spec["jobTemplate"]["spec"]["template"]["spec"]["restartPolicy"], "Always");
}

#[test]
fn services_get_type_affinity_target_ports_and_families() {
    let svc =
        defaulted("", "Service", json!({"spec": {"ports": [{"port": 80}, {"port": 443, "targetPort": "https"}]}}));
    let spec = &svc["spec"];
    assert_eq!(spec["type"], "ClusterIP");
    assert_eq!(spec["sessionAffinity"], "None");
    assert_eq!(spec["ports"][0], json!({"port": 80, "protocol": "TCP", "targetPort": 80}));
    assert_eq!(spec["ports"][1]["targetPort"], "https");
    assert_eq!(spec["internalTrafficPolicy"], "Cluster");
    assert_eq!(spec["ipFamilyPolicy"], "SingleStack");
    assert_eq!(spec["ipFamilies"], json!(["IPv4"]));
    assert!(spec.get("externalTrafficPolicy").is_none());
    let lb = defaulted("", "Service", json!({"spec": {"type": "LoadBalancer", "sessionAffinity": "ClientIP"}}));
    assert_eq!(lb["spec"]["externalTrafficPolicy"], "Cluster");
    assert_eq!(lb["spec"]["allocateLoadBalancerNodePorts"], true);
    assert_eq!(lb["spec"]["sessionAffinityConfig"], json!({"clientIP": {"timeoutSeconds": 10800}}));
    let ext = defaulted("", "Service", json!({"spec": {"type": "ExternalName", "externalName": "example.com"}}));
    assert!(ext["spec"].get("ipFamilyPolicy").is_none());
    assert!(ext["spec"].get("internalTrafficPolicy").is_none());
}

#[test]
fn secrets_are_opaque_and_string_data_is_merged_into_data() {
    let s = defaulted("", "Secret", json!({"data": {"a": "YQ=="}, "stringData": {"b": "hi!", "a": "xyz"}}));
    assert_eq!(s["type"], "Opaque");
    assert!(s.get("stringData").is_none());
    assert_eq!(s["data"], json!({"a": "eHl6", "b": "aGkh"}));
    assert_eq!(base64_encode(b""), "");
    assert_eq!(base64_encode(b"f"), "Zg==");
    assert_eq!(base64_encode(b"fo"), "Zm8=");
    assert_eq!(base64_encode(b"foo"), "Zm9v");
}

#[test]
fn namespaces_get_their_name_label_finalizer_and_phase() {
    let ns = defaulted("", "Namespace", json!({"metadata": {"name": "team"}}));
    assert_eq!(ns["metadata"]["labels"]["kubernetes.io/metadata.name"], "team");
    assert_eq!(ns["spec"]["finalizers"], json!(["kubernetes"]));
    assert_eq!(ns["status"]["phase"], "Active");
}

#[test]
fn nodes_get_allocatable_from_capacity() {
    let n = defaulted("", "Node", json!({"status": {"capacity": {"cpu": "4", "memory": "8192Mi"}}}));
    assert_eq!(n["status"]["allocatable"], json!({"cpu": "4", "memory": "8Gi"}));
}

#[test]
fn claims_and_volumes_get_modes_and_phases() {
    let pvc =
        defaulted("", "PersistentVolumeClaim", json!({"spec": {"resources": {"requests": {"storage": "1024Mi"}}}}));
    assert_eq!(pvc["spec"]["volumeMode"], "Filesystem");
    assert_eq!(pvc["spec"]["resources"]["requests"]["storage"], "1Gi");
    assert_eq!(pvc["status"]["phase"], "Pending");
    let pv = defaulted("", "PersistentVolume", json!({"spec": {}}));
    assert_eq!(pv["spec"]["persistentVolumeReclaimPolicy"], "Retain");
    assert_eq!(pv["status"]["phase"], "Pending");
}

#[test]
fn hpas_default_to_cpu_utilization() {
    let hpa = defaulted(
        "autoscaling",
        "HorizontalPodAutoscaler",
        json!({"apiVersion": "autoscaling/v2", "spec": {"maxReplicas": 3}}),
    );
    assert_eq!(hpa["spec"]["minReplicas"], 1);
    assert_eq!(hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"], 80);
    let v1 = defaulted(
        "autoscaling",
        "HorizontalPodAutoscaler",
        json!({"apiVersion": "autoscaling/v1", "spec": {"maxReplicas": 3}}),
    );
    assert!(v1["spec"].get("metrics").is_none());
    let behaving = defaulted(
        "autoscaling",
        "HorizontalPodAutoscaler",
        json!({"apiVersion": "autoscaling/v2", "spec": {"behavior": {"scaleDown": {"stabilizationWindowSeconds": 60}}}}),
    );
    assert_eq!(behaving["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"], 60);
    assert_eq!(behaving["spec"]["behavior"]["scaleDown"]["selectPolicy"], "Max");
    assert_eq!(behaving["spec"]["behavior"]["scaleUp"]["policies"][0]["value"], 4);
}

#[test]
fn role_bindings_get_api_groups() {
    let rb = defaulted(
        "rbac.authorization.k8s.io",
        "RoleBinding",
        json!({"roleRef": {"kind": "Role", "name": "r"}, "subjects": [{"kind": "User", "name": "u"}, {"kind": "ServiceAccount", "name": "sa"}]}),
    );
    assert_eq!(rb["roleRef"]["apiGroup"], "rbac.authorization.k8s.io");
    assert_eq!(rb["subjects"][0]["apiGroup"], "rbac.authorization.k8s.io");
    assert!(rb["subjects"][1].get("apiGroup").is_none());
}

#[test]
fn network_policies_imply_ingress_and_tcp() {
    let np = defaulted("networking.k8s.io", "NetworkPolicy", json!({"spec": {"egress": [{"ports": [{"port": 53}]}]}}));
    assert_eq!(np["spec"]["policyTypes"], json!(["Ingress", "Egress"]));
    assert_eq!(np["spec"]["egress"][0]["ports"][0]["protocol"], "TCP");
}

#[test]
fn non_objects_and_unknown_kinds_are_left_alone() {
    let mut v = json!("text");
    apply_defaults(GroupKind { group: "", kind: "Pod" }, &mut v);
    assert_eq!(v, json!("text"));
    let obj = json!({"spec": {"x": 1}});
    assert_eq!(defaulted("example.com", "Widget", obj.clone()), obj);
    let wrong = json!({"spec": "not an object"});
    assert_eq!(defaulted("apps", "Deployment", wrong.clone()), wrong);
}

#[test]
fn job_selectors_are_generated_from_the_uid() {
    let mut job = json!({"metadata": {"name": "once", "uid": "u-1"}, "spec": {"template": {"metadata": {"labels": {"app": "x"}}}}});
    generate_job_selector(&mut job);
    assert_eq!(job["spec"]["selector"], json!({"matchLabels": {"batch.kubernetes.io/controller-uid": "u-1"}}));
    assert_eq!(
        job["spec"]["template"]["metadata"]["labels"],
        json!({"app": "x", "batch.kubernetes.io/controller-uid": "u-1", "batch.kubernetes.io/job-name": "once",
            "controller-uid": "u-1", "job-name": "once"})
    );
    let gk = GroupKind { group: "batch", kind: "Job" };
    let mut valid = job.clone();
    valid["metadata"]["namespace"] = json!("default");
    valid["spec"]["template"]["spec"] = json!({"restartPolicy": "Never", "containers": [{"name": "a", "image": "x"}]});
    apply_defaults(gk, &mut valid);
    assert!(crate::validation::validate_create(gk, &valid).is_empty());
    let mut manual = json!({"metadata": {"uid": "u"}, "spec": {"manualSelector": true}});
    generate_job_selector(&mut manual);
    assert!(manual["spec"].get("selector").is_none());
}
