//! `pods/eviction`: a pod is deleted only if the PodDisruptionBudget that selects it allows a disruption, as
//! kube-apiserver's eviction subresource does. The budget's `disruptionsAllowed` is spent with a
//! compare-and-swap write before the pod is deleted, so concurrent evictions cannot overspend it.

use std::sync::Arc;

use gantry_api::registry::ResourceType;
use gantry_api::selector::LabelSelector;
use gantry_store::StoreError;
use serde_json::{Value, json};

use crate::api::Api;
use crate::objects::{DeleteOptions, Written, from_stored, now_rfc3339};
use crate::status::{ApiError, ApiResult, Cause};

/// Evictions recorded in a budget's `disruptedPods` that its controller has not confirmed, at most.
const MAX_DISRUPTED_PODS: usize = 2000;

/// Attempts at spending a budget (or deleting a pod) that others keep changing meanwhile, and the pause
/// between them, as kube-apiserver's eviction retries.
const RETRIES: usize = 20;
const RETRY_PAUSE: std::time::Duration = std::time::Duration::from_millis(500);

const DENIED: &str = "Cannot evict pod as it would violate the pod's disruption budget.";

fn budget_denied(message: String) -> ApiError {
    ApiError::too_many_requests(
        DENIED,
        Some(Cause { reason: "DisruptionBudget".into(), message, field: String::new() }),
    )
}

/// The budget's status does not reflect its spec yet (or a pod turned ready under an eviction): come back in
/// 10 seconds.
fn still_processing(budget: &str) -> ApiError {
    let mut e = budget_denied(format!("The disruption budget {budget} is still being processed by the server."));
    e.retry_after = Some(10);
    e
}

fn budget_forbidden(budget: &str, why: &str) -> ApiError {
    let mut e = ApiError::forbidden(format!("poddisruptionbudget.policy \"{budget}\" is forbidden: {why}"));
    e.name = Some(budget.to_string());
    e.group = Some("policy".into());
    e.kind = Some("poddisruptionbudget".into());
    e
}

fn delete_options(eviction: &Value) -> DeleteOptions {
    let opts = &eviction["deleteOptions"];
    DeleteOptions {
        grace_period: opts["gracePeriodSeconds"].as_i64(),
        propagation: opts["propagationPolicy"].as_str().map(str::to_string),
        uid: opts["preconditions"]["uid"].as_str().map(str::to_string),
        resource_version: opts["preconditions"]["resourceVersion"].as_str().map(str::to_string),
        dry_run: opts["dryRun"].as_array().is_some_and(|a| a.iter().any(|v| v == "All")),
    }
}

fn is_ready(pod: &Value) -> bool {
    pod["status"]["conditions"]
        .as_array()
        .is_some_and(|c| c.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
}

fn success() -> Written {
    Written {
        code: 201,
        body: json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
    }
}

/// Evicts a pod as kube-apiserver does: a pod that is not running (or already going) is deleted at once; a
/// running one only if the PodDisruptionBudget selecting it allows a disruption, which is spent (recorded in
/// the budget's `disruptedPods`) before the pod is deleted.
pub async fn evict(
    api: &Arc<Api>,
    pods: &'static ResourceType,
    namespace: Option<&str>,
    name: &str,
    eviction: Value,
) -> ApiResult<Written> {
    if eviction["metadata"]["name"].as_str().unwrap_or("") != name {
        return Err(ApiError::bad_request("name in URL does not match name in Eviction object"));
    }
    let options = delete_options(&eviction);
    // Without a resourceVersion of the caller's, conflicts with others' writes are retried here.
    let retry_conflicts = options.resource_version.is_none();
    let key = pods.key(namespace, name);
    let mut attempt = 0;
    let pod = loop {
        let pod = match api.store.get(key.as_bytes()).await {
            Ok(kv) => from_stored(&kv)?,
            Err(e) => return Err(ApiError::from_store(e, pods, name)),
        };
        // Pods that are not running, or already going, cost no disruption.
        let phase = pod["status"]["phase"].as_str().unwrap_or("Pending");
        let going = !pod["metadata"]["deletionTimestamp"].is_null();
        if !(matches!(phase, "Pending" | "Succeeded" | "Failed") || going) {
            break pod;
        }
        let mut pinned = options.clone();
        // A pending pod must not turn ready between this look and the delete.
        if !(matches!(phase, "Succeeded" | "Failed") || going) && pinned.resource_version.is_none() {
            pinned.resource_version = pod["metadata"]["resourceVersion"].as_str().map(str::to_string);
        }
        match api.delete(pods, namespace, name, &pinned).await {
            Ok(_) => return Ok(success()),
            Err(e) if e.code == 409 && retry_conflicts && attempt + 1 < RETRIES => {
                attempt += 1;
                tokio::time::sleep(RETRY_PAUSE).await;
            }
            Err(e) => return Err(e),
        }
    };
    let mut pinned = options.clone();
    let mut unready_exempt = None;
    if let Some((budget_name, budget)) = budget_of(api, namespace, &pod).await? {
        let status = &budget["status"];
        let always_allow = budget["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow";
        let desired = status["desiredHealthy"].as_i64().unwrap_or(0);
        let healthy_enough = status["currentHealthy"].as_i64().unwrap_or(0) >= desired && desired > 0;
        // An unready pod does not count as healthy: deleting it spends nothing.
        if !is_ready(&pod) && (always_allow || healthy_enough) {
            unready_exempt = Some(budget_name);
        } else {
            spend_budget(api, namespace, name, &budget_name, options.dry_run).await?;
        }
    }
    if unready_exempt.is_some() && pinned.resource_version.is_none() {
        // The pod must still be unready when it is deleted.
        pinned.resource_version = pod["metadata"]["resourceVersion"].as_str().map(str::to_string);
    }
    match api.delete(pods, namespace, name, &pinned).await {
        Ok(_) => Ok(success()),
        Err(e) if e.code == 409 && retry_conflicts && unready_exempt.is_some() => {
            Err(still_processing(unready_exempt.as_deref().unwrap_or_default()))
        }
        Err(e) => Err(e),
    }
}

/// The one budget selecting `pod` (name and object), if any.
async fn budget_of(api: &Arc<Api>, namespace: Option<&str>, pod: &Value) -> ApiResult<Option<(String, Value)>> {
    let budgets = api.registry.by_plural("policy", "v1", "poddisruptionbudgets").ok_or_else(ApiError::no_route)?;
    let prefix = budgets.namespace_prefix(namespace);
    let listed = api
        .store
        .list(prefix.as_bytes(), Default::default())
        .await
        .map_err(|e| ApiError::from_store(e, budgets, ""))?;
    let empty = serde_json::Map::new();
    let labels = pod["metadata"]["labels"].as_object().unwrap_or(&empty);
    let mut matching = Vec::new();
    for kv in &listed.items {
        let budget = from_stored(kv)?;
        let Ok(selector) = LabelSelector::from_optional_label_selector(budget["spec"].get("selector")) else {
            continue;
        };
        // A missing or empty selector protects no pod from eviction (whatever the disruption controller counts).
        if selector.is_nothing() || selector.is_everything() || !selector.matches(labels) {
            continue;
        }
        matching.push(budget);
    }
    match matching.len() {
        0 => Ok(None),
        1 => {
            let budget = matching.remove(0);
            let name = budget["metadata"]["name"].as_str().unwrap_or_default().to_string();
            Ok(Some((name, budget)))
        }
        _ => Err(ApiError::unknown(
            500,
            "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
        )),
    }
}

/// Spends one of the budget's disruptions for `pod_name` with a compare-and-swap write, re-reading the budget
/// when someone else wrote it meanwhile.
async fn spend_budget(
    api: &Arc<Api>,
    namespace: Option<&str>,
    pod_name: &str,
    budget_name: &str,
    dry_run: bool,
) -> ApiResult<()> {
    let budgets = api.registry.by_plural("policy", "v1", "poddisruptionbudgets").ok_or_else(ApiError::no_route)?;
    let key = budgets.key(namespace, budget_name);
    let mut attempt = 0;
    loop {
        let kv = api.store.get(key.as_bytes()).await.map_err(|e| ApiError::from_store(e, budgets, budget_name))?;
        let budget = from_stored(&kv)?;
        let spent = spent_budget(&budget, budget_name, pod_name)?;
        if dry_run {
            return Ok(());
        }
        let bytes = serde_json::to_vec(&spent).map_err(|e| ApiError::internal(e.to_string()))?;
        match api.store.update(&kv.key, bytes.into(), kv.mod_revision).await {
            Ok(_) => return Ok(()),
            // Someone else spent or refreshed the budget meanwhile: decide again on the new version.
            Err(StoreError::Conflict { .. }) if attempt + 1 < RETRIES => {
                attempt += 1;
                tokio::time::sleep(RETRY_PAUSE).await;
            }
            Err(StoreError::Conflict { .. }) => return Err(ApiError::conflict(budgets, budget_name)),
            Err(e) => return Err(ApiError::from_store(e, budgets, budget_name)),
        }
    }
}

/// The budget with one disruption spent on `pod_name`, or why it cannot be (kube-apiserver's
/// `checkAndDecrement`).
fn spent_budget(budget: &Value, budget_name: &str, pod_name: &str) -> ApiResult<Value> {
    let status = &budget["status"];
    let generation = budget["metadata"]["generation"].as_i64().unwrap_or(0);
    let observed = status["observedGeneration"].as_i64().unwrap_or(0);
    if observed < generation {
        return Err(still_processing(budget_name));
    }
    let allowed = status["disruptionsAllowed"].as_i64().unwrap_or(0);
    if allowed < 0 {
        return Err(budget_forbidden(budget_name, "pdb disruptions allowed is negative"));
    }
    if status["disruptedPods"].as_object().map_or(0, serde_json::Map::len) > MAX_DISRUPTED_PODS {
        return Err(budget_forbidden(
            budget_name,
            "DisruptedPods map too big - too many evictions not confirmed by PDB controller",
        ));
    }
    if allowed == 0 {
        return Err(budget_denied(format!(
            "The disruption budget {budget_name} needs {} healthy pods and has {} currently",
            status["desiredHealthy"].as_i64().unwrap_or(0),
            status["currentHealthy"].as_i64().unwrap_or(0),
        )));
    }
    let mut spent = budget.clone();
    let now = now_rfc3339();
    if let Some(status) = spent["status"].as_object_mut() {
        status.insert("disruptionsAllowed".into(), json!(allowed - 1));
        if allowed == 1 {
            set_insufficient(status, observed, &now);
        }
        let disrupted = status.entry("disruptedPods").or_insert_with(|| json!({}));
        if !disrupted.is_object() {
            *disrupted = json!({});
        }
        if let Some(map) = disrupted.as_object_mut() {
            map.insert(pod_name.to_string(), json!(now));
        }
    }
    if let Some(meta) = spent.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("resourceVersion");
    }
    Ok(spent)
}

/// The last disruption was spent: `DisruptionAllowed` turns False (InsufficientPods), as kube-apiserver sets it.
fn set_insufficient(status: &mut serde_json::Map<String, Value>, observed: i64, now: &str) {
    let conditions = status.entry("conditions").or_insert_with(|| json!([]));
    if !conditions.is_array() {
        *conditions = json!([]);
    }
    let Some(list) = conditions.as_array_mut() else { return };
    let wanted = json!({"type": "DisruptionAllowed", "status": "False", "reason": "InsufficientPods", "message": "",
                        "observedGeneration": observed, "lastTransitionTime": now});
    match list.iter_mut().find(|c| c["type"] == "DisruptionAllowed") {
        Some(existing) => {
            let transition =
                if existing["status"] == "False" { existing["lastTransitionTime"].clone() } else { json!(now) };
            *existing = wanted;
            existing["lastTransitionTime"] = transition;
        }
        None => list.push(wanted),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn budget(status: Value) -> Value {
        json!({"metadata": {"name": "db", "namespace": "d", "generation": 1, "resourceVersion": "5"},
               "spec": {"minAvailable": 2}, "status": status})
    }

    #[test]
    fn spending_the_last_disruption_records_the_pod_and_turns_the_condition_false() {
        let status = json!({"observedGeneration": 1, "disruptionsAllowed": 1, "currentHealthy": 3,
            "desiredHealthy": 2, "expectedPods": 3,
            "conditions": [{"type": "DisruptionAllowed", "status": "True", "reason": "SufficientPods", "message": "",
                            "observedGeneration": 1, "lastTransitionTime": "2026-01-01T00:00:00Z"}]});
        let spent = spent_budget(&budget(status), "db", "db-0").unwrap();
        assert_eq!(spent["status"]["disruptionsAllowed"], 0);
        assert!(spent["status"]["disruptedPods"]["db-0"].is_string());
        let condition = &spent["status"]["conditions"][0];
        assert_eq!((&condition["status"], &condition["reason"]), (&json!("False"), &json!("InsufficientPods")));
        assert_ne!(condition["lastTransitionTime"], "2026-01-01T00:00:00Z");
        assert!(spent["metadata"].get("resourceVersion").is_none(), "the store sets it");
    }

    #[test]
    fn a_spent_budget_is_answered_with_429_and_the_disruption_budget_cause() {
        let status = json!({"observedGeneration": 1, "disruptionsAllowed": 0, "currentHealthy": 2,
                            "desiredHealthy": 2});
        let err = spent_budget(&budget(status), "db", "db-0").unwrap_err();
        assert_eq!((err.code, err.reason), (429, "TooManyRequests"));
        assert_eq!(err.message, "Cannot evict pod as it would violate the pod's disruption budget.");
        assert_eq!(err.causes[0].reason, "DisruptionBudget");
        assert_eq!(err.causes[0].message, "The disruption budget db needs 2 healthy pods and has 2 currently");
        assert_eq!(err.retry_after, None);
    }

    #[test]
    fn a_budget_not_yet_processed_asks_to_come_back_in_ten_seconds() {
        let err =
            spent_budget(&budget(json!({"observedGeneration": 0, "disruptionsAllowed": 1})), "db", "p").unwrap_err();
        assert_eq!(err.code, 429);
        assert_eq!(err.causes[0].message, "The disruption budget db is still being processed by the server.");
        assert_eq!(err.retry_after, Some(10));
        let negative = spent_budget(&budget(json!({"observedGeneration": 1, "disruptionsAllowed": -1})), "db", "p");
        let err = negative.unwrap_err();
        assert_eq!(err.code, 403);
        assert_eq!(err.message, "poddisruptionbudget.policy \"db\" is forbidden: pdb disruptions allowed is negative");
    }
}
