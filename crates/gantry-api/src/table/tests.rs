use serde_json::{Value, json};

use super::*;
use crate::registry::BUILT_IN;

const POD: GroupKind = GroupKind { group: "", kind: "Pod" };

fn now() -> Timestamp {
    "2024-05-01T12:00:00Z".parse().expect("valid timestamp")
}

/// A timestamp `secs` seconds before [`now`].
fn ago(secs: i64) -> String {
    (now() - jiff::SignedDuration::from_secs(secs)).to_string()
}

fn gk(group: &'static str, kind: &'static str) -> GroupKind {
    GroupKind { group, kind }
}

fn cells(gk: GroupKind, obj: &Value) -> Vec<Value> {
    let cells = row_cells(gk, obj, now());
    assert_eq!(cells.len(), columns(gk).len(), "{gk}: one cell per column");
    cells
}

fn strings(cells: &[Value]) -> Vec<String> {
    cells.iter().map(|c| c.as_str().map_or_else(|| c.to_string(), str::to_string)).collect()
}

fn pod_status(obj: &Value) -> String {
    strings(&cells(POD, obj))[2].clone()
}

fn pod(status: Value) -> Value {
    json!({
        "metadata": {"name": "web-1", "namespace": "default", "creationTimestamp": ago(300)},
        "spec": {"containers": [{"name": "app", "image": "nginx"}, {"name": "log", "image": "busybox"}]},
        "status": status,
    })
}

fn running(name: &str) -> Value {
    json!({"name": name, "ready": true, "restartCount": 0, "state": {"running": {"startedAt": ago(200)}}})
}

#[test]
fn every_built_in_kind_has_one_cell_per_column_even_for_an_empty_object() {
    for r in BUILT_IN {
        let gk = r.group_kind();
        let columns = columns(gk);
        assert_eq!(columns[0].name, if gk.kind == "Event" { "Last Seen" } else { "Name" }, "{gk}");
        let cells = row_cells(gk, &json!({}), now());
        assert_eq!(cells.len(), columns.len(), "{gk}");
        assert!(columns.iter().all(|c| !c.description.is_empty()), "{gk} has undocumented columns");
        assert!(columns.iter().all(|c| c.priority == 0 || c.priority == 1), "{gk}");
    }
}

#[test]
fn kinds_without_a_printer_get_name_and_created_at() {
    for (group, kind) in [
        ("rbac.authorization.k8s.io", "Role"),
        ("rbac.authorization.k8s.io", "ClusterRole"),
        ("", "LimitRange"),
        ("example.com", "Widget"),
    ] {
        let gk = gk(group, kind);
        assert!(!has_printer(gk));
        let names: Vec<String> = columns(gk).into_iter().map(|c| format!("{}:{}", c.name, c.type_)).collect();
        assert_eq!(names, ["Name:string", "Created At:date"]);
    }
    let obj = json!({"metadata": {"name": "reader", "creationTimestamp": "2024-04-30T08:15:00.123Z"}});
    assert_eq!(strings(&cells(gk("rbac.authorization.k8s.io", "Role"), &obj)), ["reader", "2024-04-30T08:15:00Z"]);
    assert_eq!(
        strings(&cells(gk("", "LimitRange"), &json!({"metadata": {"name": "x"}}))),
        ["x", "0001-01-01T00:00:00Z"]
    );
}

#[test]
fn pod_columns_match_kubectl_get_pods() {
    let cols = columns(POD);
    let names: Vec<(&str, i32)> = cols.iter().map(|c| (c.name.as_str(), c.priority)).collect();
    assert_eq!(
        names,
        [
            ("Name", 0),
            ("Ready", 0),
            ("Status", 0),
            ("Restarts", 0),
            ("Age", 0),
            ("IP", 1),
            ("Node", 1),
            ("Nominated Node", 1),
            ("Readiness Gates", 1)
        ]
    );
    assert_eq!(cols[0].format, "name");
    assert_eq!(cols[3].type_, "string");
}

#[test]
fn pending_pod_shows_pending_and_no_ip() {
    let p = pod(json!({"phase": "Pending"}));
    assert_eq!(
        strings(&cells(POD, &p)),
        ["web-1", "0/2", "Pending", "0", "5m", "<none>", "<none>", "<none>", "<none>"]
    );
}

#[test]
fn running_pod_counts_ready_containers_and_shows_wide_fields() {
    let mut p = pod(json!({
        "phase": "Running", "podIP": "10.1.0.5",
        "conditions": [{"type": "Ready", "status": "True"}, {"type": "example.com/gate", "status": "True"}],
        "containerStatuses": [running("app"), {"name": "log", "ready": false, "restartCount": 0, "state": {"running": {}}}],
    }));
    p["spec"]["nodeName"] = json!("node-a");
    p["spec"]["readinessGates"] =
        json!([{"conditionType": "example.com/gate"}, {"conditionType": "example.com/other"}]);
    assert_eq!(strings(&cells(POD, &p)), ["web-1", "1/2", "Running", "0", "5m", "10.1.0.5", "node-a", "<none>", "1/2"]);
}

#[test]
fn crash_looping_pod_shows_the_waiting_reason_and_last_restart() {
    let p = pod(json!({
        "phase": "Running",
        "containerStatuses": [
            {"name": "app", "ready": false, "restartCount": 5,
             "state": {"waiting": {"reason": "CrashLoopBackOff"}},
             "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": ago(300)}}},
            running("log"),
        ],
    }));
    let c = strings(&cells(POD, &p));
    assert_eq!(c[1], "1/2");
    assert_eq!(c[2], "CrashLoopBackOff");
    assert_eq!(c[3], "5 (5m ago)");
}

#[test]
fn first_container_with_a_reason_wins() {
    let p = pod(json!({
        "phase": "Running",
        "containerStatuses": [
            {"name": "app", "state": {"waiting": {"reason": "ImagePullBackOff"}}},
            {"name": "log", "state": {"waiting": {"reason": "ContainerCreating"}}},
        ],
    }));
    assert_eq!(pod_status(&p), "ImagePullBackOff");
}

#[test]
fn terminated_containers_without_reason_show_exit_code_or_signal() {
    let exit = pod(
        json!({"phase": "Failed", "containerStatuses": [{"name": "app", "state": {"terminated": {"exitCode": 3}}}]}),
    );
    assert_eq!(pod_status(&exit), "ExitCode:3");
    let signal = pod(
        json!({"phase": "Failed", "containerStatuses": [{"name": "app", "state": {"terminated": {"exitCode": 137, "signal": 9}}}]}),
    );
    assert_eq!(pod_status(&signal), "Signal:9");
}

#[test]
fn completed_pod_shows_completed_and_a_row_condition() {
    let p = pod(json!({
        "phase": "Succeeded",
        "containerStatuses": [{"name": "app", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}],
    }));
    assert_eq!(pod_status(&p), "Completed");
    let row = table_row(POD, &p, now());
    assert_eq!(row.conditions.len(), 1);
    assert_eq!(row.conditions[0].type_, "Completed");
    assert_eq!(row.conditions[0].reason, "Succeeded");
    let failed = pod(json!({"phase": "Failed"}));
    assert_eq!(row_conditions(POD, &failed)[0].message, "The pod failed.");
    assert!(row_conditions(POD, &pod(json!({"phase": "Running"}))).is_empty());
}

#[test]
fn completed_container_next_to_a_running_one_reads_running_or_not_ready() {
    let status = |ready: &str| {
        json!({
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": ready}],
            "containerStatuses": [
                {"name": "app", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
                running("log"),
            ],
        })
    };
    assert_eq!(pod_status(&pod(status("True"))), "Running");
    assert_eq!(pod_status(&pod(status("False"))), "NotReady");
}

#[test]
fn init_containers_report_progress_and_failures() {
    let with_init = |init_statuses: Value| {
        let mut p = pod(json!({"phase": "Pending", "initContainerStatuses": init_statuses}));
        p["spec"]["initContainers"] = json!([{"name": "migrate"}, {"name": "seed"}]);
        p
    };
    let progress = with_init(json!([
        {"name": "migrate", "state": {"terminated": {"exitCode": 0}}},
        {"name": "seed", "state": {"running": {}}},
    ]));
    assert_eq!(pod_status(&progress), "Init:1/2");
    let crash = with_init(
        json!([{"name": "migrate", "restartCount": 2, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]),
    );
    let c = strings(&cells(POD, &crash));
    assert_eq!(c[2], "Init:CrashLoopBackOff");
    assert_eq!(c[3], "2");
    let failed = with_init(json!([{"name": "migrate", "state": {"terminated": {"exitCode": 2, "reason": "Error"}}}]));
    assert_eq!(pod_status(&failed), "Init:Error");
    let coded = with_init(json!([{"name": "migrate", "state": {"terminated": {"exitCode": 2}}}]));
    assert_eq!(pod_status(&coded), "Init:ExitCode:2");
    let initializing = with_init(json!([{"name": "migrate", "state": {"waiting": {"reason": "PodInitializing"}}}]));
    assert_eq!(pod_status(&initializing), "Init:0/2");
}

#[test]
fn sidecar_init_containers_count_as_containers() {
    let mut p = pod(json!({
        "phase": "Running",
        "conditions": [{"type": "Initialized", "status": "True"}, {"type": "Ready", "status": "True"}],
        "initContainerStatuses": [{"name": "proxy", "started": true, "ready": true, "restartCount": 1,
            "lastState": {"terminated": {"finishedAt": ago(60)}}, "state": {"running": {}}}],
        "containerStatuses": [running("app"), running("log")],
    }));
    p["spec"]["initContainers"] = json!([{"name": "proxy", "restartPolicy": "Always"}]);
    let c = strings(&cells(POD, &p));
    assert_eq!(c[1], "3/3");
    assert_eq!(c[2], "Running");
    assert_eq!(c[3], "1 (60s ago)");
}

#[test]
fn deleting_pod_is_terminating_unless_finished_or_node_lost() {
    let mut p = pod(json!({"phase": "Running", "containerStatuses": [running("app"), running("log")]}));
    p["metadata"]["deletionTimestamp"] = json!(ago(1));
    assert_eq!(pod_status(&p), "Terminating");
    let mut lost = p.clone();
    lost["status"]["reason"] = json!("NodeLost");
    assert_eq!(pod_status(&lost), "Unknown");
    let mut done = p.clone();
    done["status"]["phase"] = json!("Succeeded");
    assert_eq!(pod_status(&done), "Succeeded");
    lost["metadata"].as_object_mut().expect("metadata").remove("deletionTimestamp");
    assert_eq!(pod_status(&lost), "NodeLost");
}

#[test]
fn scheduling_gated_pod_says_so() {
    let p = pod(
        json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]}),
    );
    assert_eq!(pod_status(&p), "SchedulingGated");
}

#[test]
fn pod_age_is_unknown_without_creation_time() {
    let p = json!({"metadata": {"name": "x"}, "status": {"phase": "Pending"}});
    assert_eq!(strings(&cells(POD, &p))[4], "<unknown>");
}

#[test]
fn deployment_row_shows_ready_up_to_date_available_and_selector() {
    let d = json!({
        "metadata": {"name": "web", "creationTimestamp": ago(3 * 86400 + 4 * 3600)},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"spec": {"containers": [{"name": "nginx", "image": "nginx:1.27"}, {"name": "sidecar", "image": "envoy"}]}}},
        "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2},
    });
    let dep = gk("apps", "Deployment");
    let header: Vec<String> = columns(dep).into_iter().map(|c| c.name).collect();
    assert_eq!(header, ["Name", "Ready", "Up-to-date", "Available", "Age", "Containers", "Images", "Selector"]);
    let c = cells(dep, &d);
    assert_eq!(c[1], json!("2/3"));
    assert_eq!(c[2], json!(3));
    assert_eq!(c[3], json!(2));
    assert_eq!(strings(&c)[4..], ["3d4h", "nginx,sidecar", "nginx:1.27,envoy", "app=web"]);
    let bad = json!({"metadata": {"name": "x"}, "spec": {"selector": {"matchExpressions": [{"key": "a", "operator": "Nope"}]}}});
    assert_eq!(strings(&cells(dep, &bad))[7], "<invalid>");
}

#[test]
fn service_rows_cover_each_type() {
    let svc = gk("", "Service");
    let service = |spec: Value, status: Value| json!({"metadata": {"name": "s", "creationTimestamp": ago(45)}, "spec": spec, "status": status});
    let cluster = service(
        json!({"type": "ClusterIP", "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"],
               "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}], "selector": {"k8s-app": "dns"}}),
        json!({}),
    );
    assert_eq!(
        strings(&cells(svc, &cluster)),
        ["s", "ClusterIP", "10.96.0.10", "<none>", "53/UDP,53/TCP", "45s", "k8s-app=dns"]
    );
    let node_port = service(
        json!({"type": "NodePort", "clusterIP": "10.0.0.1", "externalIPs": ["1.2.3.4"], "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}]}),
        json!({}),
    );
    assert_eq!(strings(&cells(svc, &node_port))[2..5], ["10.0.0.1", "1.2.3.4", "80:30080/TCP"]);
    let pending = service(json!({"type": "LoadBalancer", "clusterIPs": ["10.0.0.2"]}), json!({"loadBalancer": {}}));
    assert_eq!(strings(&cells(svc, &pending))[3..5], ["<pending>", "<none>"]);
    let balanced = service(
        json!({"type": "LoadBalancer", "externalIPs": ["9.9.9.9"]}),
        json!({"loadBalancer": {"ingress": [{"ip": "5.6.7.8"}, {"hostname": "lb.example.com"}, {"ip": "5.6.7.8"}]}}),
    );
    assert_eq!(strings(&cells(svc, &balanced))[3], "5.6.7.8,lb.example.com,9.9.9.9");
    let external = service(json!({"type": "ExternalName", "externalName": "db.example.com"}), json!({}));
    assert_eq!(strings(&cells(svc, &external))[2..4], ["<none>", "db.example.com"]);
    assert_eq!(strings(&cells(svc, &service(json!({}), json!({}))))[6], "<none>");
}

#[test]
fn node_row_shows_status_roles_and_system_info() {
    let node = json!({
        "metadata": {"name": "n1", "creationTimestamp": ago(20 * 86400),
                     "labels": {"node-role.kubernetes.io/control-plane": "", "kubernetes.io/role": "edge", "node-role.kubernetes.io/": "x"}},
        "spec": {"unschedulable": true},
        "status": {"conditions": [{"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": "True"}],
                   "addresses": [{"type": "InternalIP", "address": "192.0.2.10"}],
                   "nodeInfo": {"kubeletVersion": "v1.35.0", "osImage": "Debian", "containerRuntimeVersion": "gantry://0.1"}},
    });
    assert_eq!(
        strings(&cells(gk("", "Node"), &node)),
        [
            "n1",
            "Ready,SchedulingDisabled",
            "control-plane,edge",
            "20d",
            "v1.35.0",
            "192.0.2.10",
            "<none>",
            "Debian",
            "<unknown>",
            "gantry://0.1"
        ]
    );
    let unknown =
        json!({"metadata": {"name": "n2"}, "status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}});
    assert_eq!(strings(&cells(gk("", "Node"), &unknown))[1..3], ["NotReady", "<none>"]);
    assert_eq!(strings(&cells(gk("", "Node"), &json!({})))[1], "Unknown");
}

#[test]
fn event_rows_read_core_and_events_api_shapes() {
    let ev = gk("", "Event");
    let header: Vec<String> = columns(ev).into_iter().map(|c| c.name).collect();
    assert_eq!(
        header,
        ["Last Seen", "Type", "Reason", "Object", "Subobject", "Source", "Message", "First Seen", "Count", "Name"]
    );
    let core = json!({
        "metadata": {"name": "web-1.17a"}, "type": "Normal", "reason": "Pulled",
        "involvedObject": {"kind": "Pod", "name": "web-1", "fieldPath": "spec.containers{app}"},
        "source": {"component": "kubelet", "host": "n1"}, "message": "  pulled image \n",
        "firstTimestamp": ago(600), "lastTimestamp": ago(30), "count": 4,
    });
    assert_eq!(
        strings(&cells(ev, &core)),
        [
            "30s",
            "Normal",
            "Pulled",
            "pod/web-1",
            "spec.containers{app}",
            "kubelet, n1",
            "pulled image",
            "10m",
            "4",
            "web-1.17a"
        ]
    );
    let events_v1 = json!({
        "metadata": {"name": "e2"}, "type": "Warning", "reason": "FailedScheduling",
        "regarding": {"kind": "Pod", "name": "p"}, "note": "0/3 nodes available",
        "eventTime": ago(90), "reportingController": "default-scheduler", "reportingInstance": "sched-1",
    });
    assert_eq!(
        strings(&cells(gk("events.k8s.io", "Event"), &events_v1)),
        [
            "90s",
            "Warning",
            "FailedScheduling",
            "pod/p",
            "",
            "default-scheduler, sched-1",
            "0/3 nodes available",
            "90s",
            "1",
            "e2"
        ]
    );
    let series = json!({"involvedObject": {"kind": "Node"}, "eventTime": ago(7200), "series": {"count": 12, "lastObservedTime": ago(5)}});
    let c = strings(&cells(ev, &series));
    assert_eq!((c[0].as_str(), c[3].as_str(), c[7].as_str(), c[8].as_str()), ("5s", "node", "120m", "12"));
    assert_eq!(strings(&cells(ev, &json!({})))[0], "<unknown>");
}

#[test]
fn job_status_completions_and_duration() {
    let job = gk("batch", "Job");
    let complete = json!({
        "metadata": {"name": "pi", "creationTimestamp": ago(600)},
        "spec": {"completions": 1, "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "u1"}},
                 "template": {"spec": {"containers": [{"name": "pi", "image": "perl"}]}}},
        "status": {"succeeded": 1, "startTime": ago(600), "completionTime": ago(540),
                   "conditions": [{"type": "SuccessCriteriaMet", "status": "True"}, {"type": "Complete", "status": "True"}]},
    });
    assert_eq!(
        strings(&cells(job, &complete)),
        ["pi", "Complete", "1/1", "60s", "10m", "pi", "perl", "batch.kubernetes.io/controller-uid=u1"]
    );
    let running = json!({"metadata": {"name": "r"}, "spec": {"parallelism": 3}, "status": {"startTime": ago(150)}});
    assert_eq!(strings(&cells(job, &running))[1..4], ["Running", "0/1 of 3", "2m30s"]);
    let failed = json!({"status": {"conditions": [{"type": "Failed", "status": "True"}]}});
    assert_eq!(strings(&cells(job, &failed))[1..4], ["Failed", "0/1", ""]);
    let suspended = json!({"status": {"conditions": [{"type": "Suspended", "status": "True"}]}});
    assert_eq!(strings(&cells(job, &suspended))[1], "Suspended");
    let deleting = json!({"metadata": {"deletionTimestamp": ago(1)}, "status": {"conditions": [{"type": "Suspended", "status": "True"}]}});
    assert_eq!(strings(&cells(job, &deleting))[1], "Terminating");
}

#[test]
fn cron_job_row_shows_schedule_suspend_and_last_schedule() {
    let cj = json!({
        "metadata": {"name": "backup", "creationTimestamp": ago(86400 * 3)},
        "spec": {"schedule": "*/5 * * * *", "suspend": false,
                 "jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "b", "image": "backup:1"}]}}}}},
        "status": {"active": [{"name": "backup-1"}], "lastScheduleTime": ago(120)},
    });
    let c = cells(gk("batch", "CronJob"), &cj);
    assert_eq!(c[4], json!(1));
    assert_eq!(strings(&c), ["backup", "*/5 * * * *", "<none>", "False", "1", "2m", "3d", "b", "backup:1", "<none>"]);
    let bare = strings(&cells(gk("batch", "CronJob"), &json!({"spec": {"timeZone": "Etc/UTC"}})));
    assert_eq!(bare[2..6], ["Etc/UTC", "<unset>", "0", "<none>"]);
}

#[test]
fn replica_and_daemon_and_stateful_sets_show_counts() {
    let rs = json!({"metadata": {"name": "web-5d4"}, "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web", "pod-template-hash": "5d4"}}},
                    "status": {"replicas": 3, "readyReplicas": 1}});
    let c = cells(gk("apps", "ReplicaSet"), &rs);
    assert_eq!((c[1].clone(), c[2].clone(), c[3].clone()), (json!(3), json!(3), json!(1)));
    assert_eq!(strings(&c)[7], "app=web,pod-template-hash=5d4");
    let ds = json!({"metadata": {"name": "agent"},
                    "spec": {"template": {"spec": {"nodeSelector": {"kubernetes.io/os": "linux"}}}},
                    "status": {"desiredNumberScheduled": 2, "currentNumberScheduled": 2, "numberReady": 1, "updatedNumberScheduled": 2, "numberAvailable": 1}});
    assert_eq!(
        strings(&cells(gk("apps", "DaemonSet"), &ds))[1..7],
        ["2", "2", "1", "2", "1", "kubernetes.io/os=linux"]
    );
    let sts = json!({"metadata": {"name": "db"}, "spec": {"replicas": 3}, "status": {"readyReplicas": 2}});
    assert_eq!(strings(&cells(gk("apps", "StatefulSet"), &sts))[1], "2/3");
}

#[test]
fn autoscaler_targets_are_formatted_per_metric_type() {
    let hpa = json!({
        "metadata": {"name": "web"},
        "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "minReplicas": 2, "maxReplicas": 10,
                 "metrics": [
                    {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}},
                    {"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "500Mi"}}},
                    {"type": "Pods", "pods": {"metric": {"name": "qps"}, "target": {"type": "AverageValue", "averageValue": "10"}}},
                 ]},
        "status": {"currentReplicas": 3, "currentMetrics": [{"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 45}}}]},
    });
    assert_eq!(
        strings(&cells(gk("autoscaling", "HorizontalPodAutoscaler"), &hpa)),
        ["web", "Deployment/web", "cpu: 45%/80%, memory: <unknown>/500Mi + 1 more...", "2", "10", "3", "<unknown>"]
    );
    let v1 = json!({"spec": {"scaleTargetRef": {"kind": "Deployment", "name": "api"}, "maxReplicas": 4, "targetCPUUtilizationPercentage": 50}});
    assert_eq!(
        strings(&cells(gk("autoscaling", "HorizontalPodAutoscaler"), &v1))[2..4],
        ["cpu: <unknown>/50%", "<unset>"]
    );
    let none = json!({"spec": {"metrics": []}});
    assert_eq!(strings(&cells(gk("autoscaling", "HorizontalPodAutoscaler"), &none))[2], "<none>");
    let external = json!({"spec": {"metrics": [{"type": "External", "external": {"target": {"type": "Value", "value": "30"}}},
                                               {"type": "Object", "object": {"target": {"averageValue": "2"}}}]},
                          "status": {"currentMetrics": [{"type": "External", "external": {"current": {"value": "12"}}}]}});
    assert_eq!(strings(&cells(gk("autoscaling", "HorizontalPodAutoscaler"), &external))[2], "12/30, <unknown>/2 (avg)");
}

#[test]
fn endpoints_and_slices_list_at_most_three_addresses() {
    let ep = json!({"metadata": {"name": "web"}, "subsets": [
        {"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}], "ports": [{"port": 80}, {"port": 443}]},
        {"addresses": [{"ip": "fd00::1"}]},
    ]});
    assert_eq!(strings(&cells(gk("", "Endpoints"), &ep))[1], "10.0.0.1:80,10.0.0.2:80,10.0.0.1:443 + 2 more...");
    let v6 = json!({"subsets": [{"addresses": [{"ip": "fd00::1"}], "ports": [{"port": 80}]}]});
    assert_eq!(strings(&cells(gk("", "Endpoints"), &v6))[1], "[fd00::1]:80");
    assert_eq!(strings(&cells(gk("", "Endpoints"), &json!({})))[1], "<none>");
    let slice = json!({"addressType": "IPv4", "ports": [{"port": 80}, {"name": "metrics"}, {}],
                       "endpoints": [{"addresses": ["10.0.0.1"]}, {"addresses": ["10.0.0.2", "10.0.0.3", "10.0.0.4"]}]});
    assert_eq!(
        strings(&cells(gk("discovery.k8s.io", "EndpointSlice"), &slice))[1..4],
        ["IPv4", "80,metrics,*", "10.0.0.1,10.0.0.2,10.0.0.3 + 1 more..."]
    );
    assert_eq!(strings(&cells(gk("discovery.k8s.io", "EndpointSlice"), &json!({})))[2..4], ["<unset>", "<unset>"]);
}

#[test]
fn volumes_and_claims_show_capacity_modes_and_class() {
    let pv = json!({"metadata": {"name": "pv1", "annotations": {"volume.beta.kubernetes.io/storage-class": "slow"}},
                    "spec": {"capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteMany", "ReadWriteOnce"],
                             "persistentVolumeReclaimPolicy": "Retain", "storageClassName": "fast",
                             "claimRef": {"namespace": "default", "name": "data"}, "volumeMode": "Filesystem"},
                    "status": {"phase": "Bound"}});
    assert_eq!(
        strings(&cells(gk("", "PersistentVolume"), &pv)),
        ["pv1", "10Gi", "RWO,RWX", "Retain", "Bound", "default/data", "slow", "<unset>", "", "<unknown>", "Filesystem"]
    );
    let pending = json!({"metadata": {"name": "data"}, "spec": {"storageClassName": "fast", "resources": {"requests": {"storage": "1Gi"}}},
                         "status": {"phase": "Pending"}});
    assert_eq!(strings(&cells(gk("", "PersistentVolumeClaim"), &pending))[1..6], ["Pending", "", "", "", "fast"]);
    let bound = json!({"metadata": {"name": "data", "deletionTimestamp": ago(1)}, "spec": {"volumeName": "pv1"},
                       "status": {"phase": "Bound", "capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteOncePod"]}});
    assert_eq!(
        strings(&cells(gk("", "PersistentVolumeClaim"), &bound))[1..6],
        ["Terminating", "pv1", "10Gi", "RWOP", ""]
    );
}

#[test]
fn small_core_kinds_count_their_entries() {
    let cm = json!({"metadata": {"name": "cfg"}, "data": {"a": "1", "b": "2"}, "binaryData": {"c": "AA=="}});
    assert_eq!(cells(gk("", "ConfigMap"), &cm)[1], json!(3));
    let secret =
        json!({"metadata": {"name": "tls"}, "type": "kubernetes.io/tls", "data": {"tls.crt": "", "tls.key": ""}});
    assert_eq!(strings(&cells(gk("", "Secret"), &secret))[1..3], ["kubernetes.io/tls", "2"]);
    let sa = json!({"metadata": {"name": "default"}});
    assert_eq!(cells(gk("", "ServiceAccount"), &sa)[1], json!(0));
    let ns = json!({"metadata": {"name": "kube-system"}, "status": {"phase": "Active"}});
    assert_eq!(strings(&cells(gk("", "Namespace"), &ns))[1], "Active");
}

#[test]
fn resource_quota_splits_requests_and_limits() {
    let quota = json!({"metadata": {"name": "q"}, "status": {
        "hard": {"requests.cpu": "2", "limits.memory": "4Gi", "pods": "10", "limits.cpu": "4"},
        "used": {"requests.cpu": "500m", "pods": "3", "limits.cpu": "1"}}});
    assert_eq!(
        strings(&cells(gk("", "ResourceQuota"), &quota))[1..3],
        ["pods: 3/10, requests.cpu: 500m/2", "limits.cpu: 1/4, limits.memory: 0/4Gi"]
    );
}

#[test]
fn networking_kinds_show_hosts_classes_and_selectors() {
    let ing = json!({"metadata": {"name": "web"}, "spec": {"ingressClassName": "nginx",
        "rules": [{"host": "a.example.com"}, {}, {"host": "b.example.com"}, {"host": "c.example.com"}, {"host": "d.example.com"}],
        "tls": [{"hosts": ["a.example.com"]}]}, "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.9"}]}}});
    assert_eq!(
        strings(&cells(gk("networking.k8s.io", "Ingress"), &ing))[1..5],
        ["nginx", "a.example.com,b.example.com,c.example.com + 2 more...", "203.0.113.9", "80, 443"]
    );
    assert_eq!(strings(&cells(gk("networking.k8s.io", "Ingress"), &json!({})))[1..5], ["<none>", "*", "", "80"]);
    let class = json!({"spec": {"controller": "k8s.io/ingress-nginx", "parameters": {"apiGroup": "k8s.example.com", "kind": "IngressParameters", "name": "p"}}});
    assert_eq!(
        strings(&cells(gk("networking.k8s.io", "IngressClass"), &class))[1..3],
        ["k8s.io/ingress-nginx", "IngressParameters.k8s.example.com/p"]
    );
    let np = json!({"spec": {"podSelector": {"matchLabels": {"role": "db"}}}});
    assert_eq!(strings(&cells(gk("networking.k8s.io", "NetworkPolicy"), &np))[1], "role=db");
    let all = json!({"spec": {"podSelector": {}}});
    assert_eq!(strings(&cells(gk("networking.k8s.io", "NetworkPolicy"), &all))[1], "<none>");
}

#[test]
fn bindings_split_subjects_by_kind() {
    let rb = json!({"metadata": {"name": "admins"}, "roleRef": {"kind": "ClusterRole", "name": "admin"},
        "subjects": [{"kind": "User", "name": "alice"}, {"kind": "Group", "name": "ops"}, {"kind": "User", "name": "bob"},
                     {"kind": "ServiceAccount", "name": "ci", "namespace": "build"}]});
    for kind in ["RoleBinding", "ClusterRoleBinding"] {
        let c = strings(&cells(gk("rbac.authorization.k8s.io", kind), &rb));
        assert_eq!(c[1], "ClusterRole/admin");
        assert_eq!(c[3..], ["alice, bob", "ops", "build/ci"]);
    }
    let crb_cols = columns(gk("rbac.authorization.k8s.io", "ClusterRoleBinding"));
    assert_eq!(crb_cols[3].description, "Users in the clusterRoleBinding");
}

#[test]
fn cluster_kinds_show_defaults() {
    let sc = json!({"metadata": {"name": "standard", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
                    "provisioner": "rancher.io/local-path"});
    let c = cells(gk("storage.k8s.io", "StorageClass"), &sc);
    assert_eq!(strings(&c)[..4], ["standard (default)", "rancher.io/local-path", "Delete", "Immediate"]);
    assert_eq!(c[4], json!(false));
    let pc = json!({"metadata": {"name": "system-node-critical"}, "value": 2000001000, "preemptionPolicy": "PreemptLowerPriority"});
    let c = cells(gk("scheduling.k8s.io", "PriorityClass"), &pc);
    assert_eq!(
        (c[1].clone(), c[2].clone(), c[4].clone()),
        (json!(2000001000), json!(false), json!("PreemptLowerPriority"))
    );
    let lease = json!({"metadata": {"name": "n1"}, "spec": {"holderIdentity": "n1"}});
    assert_eq!(strings(&cells(gk("coordination.k8s.io", "Lease"), &lease))[1], "n1");
    let pdb = json!({"spec": {"minAvailable": "50%"}, "status": {"disruptionsAllowed": 1}});
    let c = cells(gk("policy", "PodDisruptionBudget"), &pdb);
    assert_eq!(strings(&c)[1..3], ["50%", "N/A"]);
    assert_eq!(c[3], json!(1));
}

#[test]
fn controller_revision_names_its_controller() {
    let cr = json!({"metadata": {"name": "web-7c9", "ownerReferences": [
        {"apiVersion": "v1", "kind": "Pod", "name": "other"},
        {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web", "controller": true}]}, "revision": 3});
    let c = cells(gk("apps", "ControllerRevision"), &cr);
    assert_eq!(c[1], json!("statefulset.apps/web"));
    assert_eq!(c[2], json!(3));
    assert_eq!(strings(&cells(gk("apps", "ControllerRevision"), &json!({})))[1], "<none>");
}

#[test]
fn table_serializes_like_meta_k8s_io_v1() {
    let mut table = Table::new(
        columns(gk("", "Namespace")),
        vec![table_row(
            gk("", "Namespace"),
            &json!({"metadata": {"name": "default"}, "status": {"phase": "Active"}}),
            now(),
        )],
    );
    table.metadata.resource_version = Some("42".to_string());
    let v = serde_json::to_value(&table).expect("serializable");
    assert_eq!(v["kind"], "Table");
    assert_eq!(v["apiVersion"], "meta.k8s.io/v1");
    assert_eq!(v["metadata"], json!({"resourceVersion": "42"}));
    assert_eq!(
        v["columnDefinitions"][1],
        json!({"name": "Status", "type": "string", "format": "", "description": "The status of the namespace", "priority": 0})
    );
    assert_eq!(v["columnDefinitions"][0]["format"], "name");
    assert_eq!(v["rows"][0], json!({"cells": ["default", "Active", "<unknown>"]}));

    let back: Table = serde_json::from_value(json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {},
        "columnDefinitions": null, "rows": [{"cells": [1, "x", true], "object": {"kind": "PartialObjectMetadata"}}]}))
    .expect("kube-apiserver watch events carry null column definitions");
    assert!(back.column_definitions.is_empty());
    assert_eq!(back.rows[0].cells, vec![json!(1), json!("x"), json!(true)]);
    assert_eq!(back.rows[0].object, Some(json!({"kind": "PartialObjectMetadata"})));
}
