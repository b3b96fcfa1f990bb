//! The pod table: READY, STATUS (the one-word summary of init containers, containers and deletion), RESTARTS.

use jiff::Timestamp;
use serde_json::Value;

use super::json::{arr_at, bool_at, i64_at, is_set, str_at, time_at};
use super::{TableColumnDefinition, TableRowCondition, age, column, descriptions as doc, duration, text, wide};

/// The reason the node lifecycle controller gives a pod on a node that stopped reporting.
const NODE_UNREACHABLE_POD_REASON: &str = "NodeLost";

pub(super) fn columns() -> Vec<TableColumnDefinition> {
    vec![
        super::name_column(),
        column("Ready", "string", "The aggregate readiness state of this pod for accepting traffic."),
        column("Status", "string", "The aggregate status of the containers in this pod."),
        column(
            "Restarts",
            "string",
            "The number of times the containers in this pod have been restarted and when the last container in \
             this pod has restarted.",
        ),
        super::age_column(),
        wide(column("IP", "string", doc::POD_IP)),
        wide(column("Node", "string", doc::POD_NODE_NAME)),
        wide(column("Nominated Node", "string", doc::POD_NOMINATED_NODE_NAME)),
        wide(column("Readiness Gates", "string", doc::POD_READINESS_GATES)),
    ]
}

pub(super) fn conditions(pod: &Value) -> Vec<TableRowCondition> {
    let (reason, message) = match str_at(pod, &["status", "phase"]) {
        "Succeeded" => ("Succeeded", "The pod has completed successfully."),
        "Failed" => ("Failed", "The pod failed."),
        _ => return Vec::new(),
    };
    vec![TableRowCondition {
        type_: "Completed".to_string(),
        status: "True".to_string(),
        reason: reason.to_string(),
        message: message.to_string(),
    }]
}

/// Keeps the later of the current latest time and a container's last termination time.
fn note_termination(latest: &mut Option<Timestamp>, status: &Value) {
    if !is_set(status, &["lastState", "terminated"]) {
        return;
    }
    if let Some(finished) = time_at(status, &["lastState", "terminated", "finishedAt"])
        && latest.is_none_or(|l| l < finished)
    {
        *latest = Some(finished);
    }
}

fn has_condition(pod: &Value, type_: &str) -> Option<bool> {
    arr_at(pod, &["status", "conditions"])
        .iter()
        .find(|c| str_at(c, &["type"]) == type_)
        .map(|c| str_at(c, &["status"]) == "True")
}

/// `Signal:9` / `ExitCode:1` for a termination without a reason.
fn termination_code(terminated: &Value) -> String {
    let signal = i64_at(terminated, &["signal"]);
    if signal != 0 { format!("Signal:{signal}") } else { format!("ExitCode:{}", i64_at(terminated, &["exitCode"])) }
}

pub(super) fn cells(pod: &Value, now: Timestamp) -> Vec<Value> {
    let init_specs = arr_at(pod, &["spec", "initContainers"]);
    // Sidecars (init containers that keep running) count as containers of the pod.
    let restartable = |name: &str| {
        init_specs
            .iter()
            .rev()
            .find(|c| str_at(c, &["name"]) == name)
            .is_some_and(|c| str_at(c, &["restartPolicy"]) == "Always")
    };
    let total = arr_at(pod, &["spec", "containers"]).len()
        + init_specs.iter().filter(|c| str_at(c, &["restartPolicy"]) == "Always").count();
    let mut ready = 0usize;
    let mut restarts = 0i64;
    let mut sidecar_restarts = 0i64;
    let mut last_restart: Option<Timestamp> = None;
    let mut last_sidecar_restart: Option<Timestamp> = None;

    let phase = str_at(pod, &["status", "phase"]);
    let mut reason = match str_at(pod, &["status", "reason"]) {
        "" => phase.to_string(),
        r => r.to_string(),
    };
    for c in arr_at(pod, &["status", "conditions"]) {
        if str_at(c, &["type"]) == "PodScheduled" && str_at(c, &["reason"]) == "SchedulingGated" {
            reason = "SchedulingGated".to_string();
        }
    }

    let mut initializing = false;
    for (i, status) in arr_at(pod, &["status", "initContainerStatuses"]).iter().enumerate() {
        let count = i64_at(status, &["restartCount"]);
        restarts += count;
        note_termination(&mut last_restart, status);
        let is_sidecar = restartable(str_at(status, &["name"]));
        if is_sidecar {
            sidecar_restarts += count;
            note_termination(&mut last_sidecar_restart, status);
        }
        let terminated = status.get("state").and_then(|s| s.get("terminated")).filter(|t| !t.is_null());
        let waiting_reason = str_at(status, &["state", "waiting", "reason"]);
        match terminated {
            Some(t) if i64_at(t, &["exitCode"]) == 0 => continue,
            _ if is_sidecar && bool_at(status, &["started"]) => {
                if bool_at(status, &["ready"]) {
                    ready += 1;
                }
                continue;
            }
            Some(t) => {
                reason = match str_at(t, &["reason"]) {
                    "" => format!("Init:{}", termination_code(t)),
                    r => format!("Init:{r}"),
                };
            }
            None if is_set(status, &["state", "waiting"])
                && !waiting_reason.is_empty()
                && waiting_reason != "PodInitializing" =>
            {
                reason = format!("Init:{waiting_reason}");
            }
            None => reason = format!("Init:{i}/{}", init_specs.len()),
        }
        initializing = true;
        break;
    }

    if !initializing || has_condition(pod, "Initialized") == Some(true) {
        restarts = sidecar_restarts;
        last_restart = last_sidecar_restart;
        let mut has_running = false;
        for status in arr_at(pod, &["status", "containerStatuses"]).iter().rev() {
            restarts += i64_at(status, &["restartCount"]);
            note_termination(&mut last_restart, status);
            let waiting = status.get("state").and_then(|s| s.get("waiting")).filter(|w| !w.is_null());
            let terminated = status.get("state").and_then(|s| s.get("terminated")).filter(|t| !t.is_null());
            let waiting_reason = waiting.map(|w| str_at(w, &["reason"])).unwrap_or("");
            if !waiting_reason.is_empty() {
                reason = waiting_reason.to_string();
            } else if let Some(t) = terminated {
                reason = match str_at(t, &["reason"]) {
                    "" => termination_code(t),
                    r => r.to_string(),
                };
            } else if bool_at(status, &["ready"]) && is_set(status, &["state", "running"]) {
                has_running = true;
                ready += 1;
            }
        }
        // A container still running keeps the pod from reading as Completed.
        if reason == "Completed" && has_running {
            reason = if has_condition(pod, "Ready") == Some(true) { "Running" } else { "NotReady" }.to_string();
        }
    }

    let deleting = is_set(pod, &["metadata", "deletionTimestamp"]);
    if deleting && str_at(pod, &["status", "reason"]) == NODE_UNREACHABLE_POD_REASON {
        reason = "Unknown".to_string();
    } else if deleting && phase != "Failed" && phase != "Succeeded" {
        reason = "Terminating".to_string();
    }

    let restarts_cell = match last_restart {
        Some(last) if restarts != 0 => format!("{restarts} ({} ago)", duration::since(Some(last), now)),
        _ => restarts.to_string(),
    };

    let or_none = |s: &str| if s.is_empty() { "<none>".to_string() } else { s.to_string() };
    let first_ip = arr_at(pod, &["status", "podIPs"]).first().map(|ip| str_at(ip, &["ip"])).unwrap_or("");
    let pod_ip = match str_at(pod, &["status", "podIP"]) {
        "" => first_ip,
        ip => ip,
    };
    let gates = arr_at(pod, &["spec", "readinessGates"]);
    let readiness_gates = if gates.is_empty() {
        "<none>".to_string()
    } else {
        let conditions = arr_at(pod, &["status", "conditions"]);
        let true_count = gates
            .iter()
            .filter(|g| {
                let wanted = str_at(g, &["conditionType"]);
                conditions
                    .iter()
                    .find(|c| str_at(c, &["type"]) == wanted)
                    .is_some_and(|c| str_at(c, &["status"]) == "True")
            })
            .count();
        format!("{true_count}/{}", gates.len())
    };

    vec![
        text(super::json::name(pod)),
        text(format!("{ready}/{total}")),
        text(reason),
        text(restarts_cell),
        age(pod, now),
        text(or_none(pod_ip)),
        text(or_none(str_at(pod, &["spec", "nodeName"]))),
        text(or_none(str_at(pod, &["status", "nominatedNodeName"]))),
        text(readiness_gates),
    ]
}
