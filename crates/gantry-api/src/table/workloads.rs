//! Tables of the workload kinds: deployments, replica sets, stateful sets, daemon sets, jobs, cron jobs,
//! autoscalers, disruption budgets and controller revisions.

use jiff::Timestamp;
use serde_json::{Value, json};

use super::json::{
    arr_at, at, i64_at, int_or_string, is_set, name, obj_at, opt_bool, opt_i64, quantity, str_at, time_at,
};
use super::{
    TableColumnDefinition, age, column, container_cells, containers_column, descriptions as doc, duration,
    format_label_selector, format_labels, images_column, int, name_column, text, wide,
};

const READY_PODS_DESCRIPTION: &str = "Number of the pod with ready state";

pub(super) fn pod_disruption_budget_columns() -> Vec<TableColumnDefinition> {
    vec![
        name_column(),
        column("Min Available", "string", "The minimum number of pods that must be available."),
        column("Max Unavailable", "string", "The maximum number of pods that may be unavailable."),
        column("Allowed Disruptions", "integer", "Calculated number of pods that may be disrupted at this time."),
        super::age_column(),
    ]
}

pub(super) fn pod_disruption_budget_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let bound = |field: &str| {
        at(obj, &["spec", field]).filter(|v| !v.is_null()).map_or_else(|| "N/A".to_string(), int_or_string)
    };
    vec![
        text(name(obj)),
        text(bound("minAvailable")),
        text(bound("maxUnavailable")),
        int(i64_at(obj, &["status", "disruptionsAllowed"])),
        age(obj, now),
    ]
}

pub(super) fn replica_set_columns() -> Vec<TableColumnDefinition> {
    vec![
        name_column(),
        column("Desired", "integer", doc::RS_SPEC_REPLICAS),
        column("Current", "integer", doc::RS_STATUS_REPLICAS),
        column("Ready", "integer", doc::RS_STATUS_READY_REPLICAS),
        super::age_column(),
        containers_column(),
        images_column(),
        wide(column("Selector", "string", doc::RS_SPEC_SELECTOR)),
    ]
}

pub(super) fn replica_set_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let (names, images) = container_cells(at(obj, &["spec", "template", "spec"]));
    vec![
        text(name(obj)),
        int(i64_at(obj, &["spec", "replicas"])),
        int(i64_at(obj, &["status", "replicas"])),
        int(i64_at(obj, &["status", "readyReplicas"])),
        age(obj, now),
        names,
        images,
        text(format_label_selector(at(obj, &["spec", "selector"]))),
    ]
}

pub(super) fn daemon_set_columns() -> Vec<TableColumnDefinition> {
    vec![
        name_column(),
        column("Desired", "integer", doc::DS_DESIRED_NUMBER_SCHEDULED),
        column("Current", "integer", doc::DS_CURRENT_NUMBER_SCHEDULED),
        column("Ready", "integer", doc::DS_NUMBER_READY),
        column("Up-to-date", "integer", doc::DS_UPDATED_NUMBER_SCHEDULED),
        column("Available", "integer", doc::DS_NUMBER_AVAILABLE),
        column("Node Selector", "string", doc::POD_NODE_SELECTOR),
        super::age_column(),
        containers_column(),
        images_column(),
        wide(column("Selector", "string", doc::DS_SELECTOR)),
    ]
}

pub(super) fn daemon_set_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let status = |field: &str| int(i64_at(obj, &["status", field]));
    let (names, images) = container_cells(at(obj, &["spec", "template", "spec"]));
    vec![
        text(name(obj)),
        status("desiredNumberScheduled"),
        status("currentNumberScheduled"),
        status("numberReady"),
        status("updatedNumberScheduled"),
        status("numberAvailable"),
        text(format_labels(obj_at(obj, &["spec", "template", "spec", "nodeSelector"]))),
        age(obj, now),
        names,
        images,
        text(format_label_selector(at(obj, &["spec", "selector"]))),
    ]
}

pub(super) fn job_columns() -> Vec<TableColumnDefinition> {
    vec![
        name_column(),
        column("Status", "string", "Status of the job."),
        column("Completions", "string", doc::JOB_SUCCEEDED),
        column("Duration", "string", "Time required to complete the job."),
        super::age_column(),
        containers_column(),
        images_column(),
        wide(column("Selector", "string", doc::JOB_SELECTOR)),
    ]
}

/// Whether the first condition of `type_` is `True`.
fn job_condition(obj: &Value, type_: &str) -> bool {
    arr_at(obj, &["status", "conditions"])
        .iter()
        .find(|c| str_at(c, &["type"]) == type_)
        .is_some_and(|c| str_at(c, &["status"]) == "True")
}

pub(super) fn job_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let succeeded = i64_at(obj, &["status", "succeeded"]);
    let completions = match opt_i64(obj, &["spec", "completions"]) {
        Some(completions) => format!("{succeeded}/{completions}"),
        None => match opt_i64(obj, &["spec", "parallelism"]).unwrap_or(0) {
            parallelism if parallelism > 1 => format!("{succeeded}/1 of {parallelism}"),
            _ => format!("{succeeded}/1"),
        },
    };
    let job_duration = match (time_at(obj, &["status", "startTime"]), time_at(obj, &["status", "completionTime"])) {
        (None, _) => String::new(),
        (Some(start), None) => duration::human_duration(now.duration_since(start)),
        (Some(start), Some(end)) => duration::human_duration(end.duration_since(start)),
    };
    let status = if job_condition(obj, "Complete") {
        "Complete"
    } else if job_condition(obj, "Failed") {
        "Failed"
    } else if is_set(obj, &["metadata", "deletionTimestamp"]) {
        "Terminating"
    } else if job_condition(obj, "Suspended") {
        "Suspended"
    } else if job_condition(obj, "FailureTarget") {
        "FailureTarget"
    } else {
        "Running"
    };
    let (names, images) = container_cells(at(obj, &["spec", "template", "spec"]));
    vec![
        text(name(obj)),
        text(status),
        text(completions),
        text(job_duration),
        age(obj, now),
        names,
        images,
        text(format_label_selector(at(obj, &["spec", "selector"]))),
    ]
}

pub(super) fn cron_job_columns() -> Vec<TableColumnDefinition> {
    vec![
        name_column(),
        column("Schedule", "string", doc::CRONJOB_SCHEDULE),
        column("Timezone", "string", doc::CRONJOB_TIME_ZONE),
        column("Suspend", "boolean", doc::CRONJOB_SUSPEND),
        column("Active", "integer", doc::CRONJOB_ACTIVE),
        column("Last Schedule", "string", doc::CRONJOB_LAST_SCHEDULE_TIME),
        super::age_column(),
        containers_column(),
        images_column(),
        wide(column("Selector", "string", doc::JOB_SELECTOR)),
    ]
}

pub(super) fn cron_job_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let last_schedule = if is_set(obj, &["status", "lastScheduleTime"]) {
        duration::since(time_at(obj, &["status", "lastScheduleTime"]), now)
    } else {
        "<none>".to_string()
    };
    let time_zone = if is_set(obj, &["spec", "timeZone"]) { str_at(obj, &["spec", "timeZone"]) } else { "<none>" };
    let suspend = match opt_bool(obj, &["spec", "suspend"]) {
        Some(true) => "True",
        Some(false) => "False",
        None => "<unset>",
    };
    let job_spec = at(obj, &["spec", "jobTemplate", "spec"]);
    let (names, images) = container_cells(job_spec.and_then(|s| at(s, &["template", "spec"])));
    vec![
        text(name(obj)),
        text(str_at(obj, &["spec", "schedule"])),
        text(time_zone),
        text(suspend),
        int(arr_at(obj, &["status", "active"]).len() as i64),
        text(last_schedule),
        age(obj, now),
        names,
        images,
        text(format_label_selector(job_spec.and_then(|s| s.get("selector")))),
    ]
}

pub(super) fn stateful_set_columns() -> Vec<TableColumnDefinition> {
    vec![
        name_column(),
        column("Ready", "string", READY_PODS_DESCRIPTION),
        super::age_column(),
        containers_column(),
        images_column(),
    ]
}

pub(super) fn stateful_set_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let (names, images) = container_cells(at(obj, &["spec", "template", "spec"]));
    vec![
        text(name(obj)),
        text(format!("{}/{}", i64_at(obj, &["status", "readyReplicas"]), i64_at(obj, &["spec", "replicas"]))),
        age(obj, now),
        names,
        images,
    ]
}

pub(super) fn deployment_columns() -> Vec<TableColumnDefinition> {
    vec![
        name_column(),
        column("Ready", "string", READY_PODS_DESCRIPTION),
        column("Up-to-date", "string", doc::DEPLOYMENT_UPDATED_REPLICAS),
        column("Available", "string", doc::DEPLOYMENT_AVAILABLE_REPLICAS),
        super::age_column(),
        containers_column(),
        images_column(),
        wide(column("Selector", "string", doc::DEPLOYMENT_SELECTOR)),
    ]
}

pub(super) fn deployment_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    // Unlike the other workloads, a deployment shows its selector bare: empty when it selects everything.
    let selector = match crate::selector::LabelSelector::from_optional_label_selector(at(obj, &["spec", "selector"])) {
        Ok(s) => s.to_string(),
        Err(_) => "<invalid>".to_string(),
    };
    let (names, images) = container_cells(at(obj, &["spec", "template", "spec"]));
    vec![
        text(name(obj)),
        text(format!("{}/{}", i64_at(obj, &["status", "readyReplicas"]), i64_at(obj, &["spec", "replicas"]))),
        int(i64_at(obj, &["status", "updatedReplicas"])),
        int(i64_at(obj, &["status", "availableReplicas"])),
        age(obj, now),
        names,
        images,
        text(selector),
    ]
}

pub(super) fn horizontal_pod_autoscaler_columns() -> Vec<TableColumnDefinition> {
    vec![
        name_column(),
        column("Reference", "string", doc::HPA_SCALE_TARGET_REF),
        column("Targets", "string", doc::HPA_METRICS),
        column("MinPods", "string", doc::HPA_MIN_REPLICAS),
        column("MaxPods", "string", doc::HPA_MAX_REPLICAS),
        column("Replicas", "string", doc::HPA_CURRENT_REPLICAS),
        super::age_column(),
    ]
}

/// A quantity behind a pointer: `<nil>` when unset, as Go prints a nil `*Quantity`.
fn quantity_ptr(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "<nil>".to_string(),
        Some(v) => quantity(Some(v)),
    }
}

/// The metrics and their current values in `autoscaling/v2` form; an `autoscaling/v1` object's CPU target
/// becomes a resource metric, as conversion to the internal type does.
fn hpa_metrics(obj: &Value) -> (Vec<Value>, Vec<Value>) {
    if let Some(specs) = at(obj, &["spec", "metrics"]).and_then(Value::as_array) {
        return (specs.clone(), arr_at(obj, &["status", "currentMetrics"]).to_vec());
    }
    let Some(target) = opt_i64(obj, &["spec", "targetCPUUtilizationPercentage"]) else {
        return (Vec::new(), Vec::new());
    };
    let spec = json!({"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": target}}});
    let statuses = match opt_i64(obj, &["status", "currentCPUUtilizationPercentage"]) {
        Some(current) => {
            vec![json!({"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": current}}})]
        }
        None => Vec::new(),
    };
    (vec![spec], statuses)
}

/// One metric as `current/target`; `source` is the metric's field (`external`, `object`, ...).
fn format_value_metric(spec: &Value, status: Option<&Value>, source: &str) -> String {
    let target = at(spec, &[source, "target"]);
    let status_source = status.and_then(|s| s.get(source)).filter(|v| !v.is_null());
    if let Some(average) = target.and_then(|t| t.get("averageValue")).filter(|v| !v.is_null()) {
        let current = status_source
            .and_then(|s| at(s, &["current", "averageValue"]))
            .filter(|v| !v.is_null())
            .map_or_else(|| "<unknown>".to_string(), |v| quantity(Some(v)));
        format!("{current}/{} (avg)", quantity(Some(average)))
    } else {
        let current =
            status_source.map_or_else(|| "<unknown>".to_string(), |s| quantity_ptr(at(s, &["current", "value"])));
        format!("{current}/{}", quantity_ptr(target.and_then(|t| t.get("value"))))
    }
}

/// One resource metric as `cpu: current/target`; `source` is `resource` or `containerResource`.
fn format_resource_metric(spec: &Value, status: Option<&Value>, source: &str) -> String {
    let resource = str_at(spec, &[source, "name"]);
    let target = at(spec, &[source, "target"]);
    let status_source = status.and_then(|s| s.get(source)).filter(|v| !v.is_null());
    if let Some(average) = target.and_then(|t| t.get("averageValue")).filter(|v| !v.is_null()) {
        let current = status_source
            .map_or_else(|| "<unknown>".to_string(), |s| quantity_ptr(at(s, &["current", "averageValue"])));
        format!("{resource}: {current}/{}", quantity(Some(average)))
    } else {
        let percent = |v: Option<i64>| v.map(|n| format!("{n}%"));
        let current = percent(status_source.and_then(|s| opt_i64(s, &["current", "averageUtilization"])))
            .unwrap_or_else(|| "<unknown>".to_string());
        let target =
            percent(target.and_then(|t| opt_i64(t, &["averageUtilization"]))).unwrap_or_else(|| "<auto>".to_string());
        format!("{resource}: {current}/{target}")
    }
}

/// The TARGETS cell: at most two metrics, then `+ N more...`.
fn format_hpa_metrics(obj: &Value) -> String {
    const MAX: usize = 2;
    let (specs, statuses) = hpa_metrics(obj);
    if specs.is_empty() {
        return "<none>".to_string();
    }
    let mut list: Vec<String> = specs
        .iter()
        .enumerate()
        .map(|(i, spec)| {
            let status = statuses.get(i);
            match str_at(spec, &["type"]) {
                "External" => format_value_metric(spec, status, "external"),
                "Object" => format_value_metric(spec, status, "object"),
                "Pods" => {
                    let current = status
                        .and_then(|s| s.get("pods"))
                        .filter(|v| !v.is_null())
                        .map_or_else(|| "<unknown>".to_string(), |p| quantity_ptr(at(p, &["current", "averageValue"])));
                    format!("{current}/{}", quantity_ptr(at(spec, &["pods", "target", "averageValue"])))
                }
                "Resource" => format_resource_metric(spec, status, "resource"),
                "ContainerResource" => format_resource_metric(spec, status, "containerResource"),
                _ => "<unknown type>".to_string(),
            }
        })
        .collect();
    let count = list.len();
    if count > MAX {
        list.truncate(MAX);
        return format!("{} + {} more...", list.join(", "), count - MAX);
    }
    list.join(", ")
}

pub(super) fn horizontal_pod_autoscaler_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let reference = format!(
        "{}/{}",
        str_at(obj, &["spec", "scaleTargetRef", "kind"]),
        str_at(obj, &["spec", "scaleTargetRef", "name"])
    );
    let min_pods = opt_i64(obj, &["spec", "minReplicas"]).map_or_else(|| "<unset>".to_string(), |n| n.to_string());
    vec![
        text(name(obj)),
        text(reference),
        text(format_hpa_metrics(obj)),
        text(min_pods),
        int(i64_at(obj, &["spec", "maxReplicas"])),
        int(i64_at(obj, &["status", "currentReplicas"])),
        age(obj, now),
    ]
}

pub(super) fn controller_revision_columns() -> Vec<TableColumnDefinition> {
    vec![
        name_column(),
        column("Controller", "string", "Controller of the object"),
        column("Revision", "string", doc::CONTROLLER_REVISION_REVISION),
        super::age_column(),
    ]
}

/// The controlling owner as `kind.group/name` in lower case (`statefulset.apps/web`), or `<none>`.
fn controller_name(obj: &Value) -> String {
    let Some(owner) = arr_at(obj, &["metadata", "ownerReferences"])
        .iter()
        .find(|r| at(r, &["controller"]).and_then(Value::as_bool) == Some(true))
    else {
        return "<none>".to_string();
    };
    let api_version = str_at(owner, &["apiVersion"]);
    let group = api_version.split_once('/').map_or("", |(group, _)| group);
    let kind = str_at(owner, &["kind"]);
    let owner_name = str_at(owner, &["name"]);
    if group.is_empty() && kind.is_empty() {
        return owner_name.to_string();
    }
    let group_kind = if group.is_empty() { kind.to_string() } else { format!("{kind}.{group}") };
    format!("{}/{owner_name}", group_kind.to_lowercase())
}

pub(super) fn controller_revision_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    vec![text(name(obj)), text(controller_name(obj)), int(i64_at(obj, &["revision"])), age(obj, now)]
}
