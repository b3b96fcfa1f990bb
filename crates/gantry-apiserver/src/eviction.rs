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

fn budget_denied(message: String) -> ApiError {
    ApiError::too_many_requests(
        "Cannot evict pod as it would violate the pod's disruption budget.",
        Some(Cause { reason: "DisruptionBudget".into(), message, field: String::new() }),
    )
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

/// Evicts a pod: checks its disruption budget, spends one disruption, deletes the pod.
pub async fn evict(
    api: &Arc<Api>,
    pods: &'static ResourceType,
    namespace: Option<&str>,
    name: &str,
    eviction: Value,
) -> ApiResult<Written> {
    if let Some(evicted) = eviction["metadata"]["name"].as_str().filter(|n| !n.is_empty())
        && evicted != name
    {
        return Err(ApiError::bad_request(format!(
            "name in URL does not match name in Eviction object: {name} vs {evicted}"
        )));
    }
    let options = delete_options(&eviction);
    let key = pods.key(namespace, name);
    let pod = match api.store.get(key.as_bytes()).await {
        Ok(kv) => from_stored(&kv)?,
        Err(e) => return Err(ApiError::from_store(e, pods, name)),
    };
    // Pods that are not running, or already going, cost no disruption.
    let phase = pod["status"]["phase"].as_str().unwrap_or("Pending");
    let exempt = matches!(phase, "Pending" | "Succeeded" | "Failed") || !pod["metadata"]["deletionTimestamp"].is_null();
    if !exempt {
        spend_budget(api, namespace, name, &pod, options.dry_run).await?;
    }
    api.delete(pods, namespace, name, &options).await?;
    Ok(Written {
        code: 201,
        body: json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                                         "code": 201}),
    })
}

async fn spend_budget(
    api: &Arc<Api>,
    namespace: Option<&str>,
    pod_name: &str,
    pod: &Value,
    dry_run: bool,
) -> ApiResult<()> {
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
        // policy/v1: a missing selector selects nothing, an empty one every pod in the namespace.
        let Ok(selector) = LabelSelector::from_optional_label_selector(budget["spec"].get("selector")) else {
            continue;
        };
        if selector.matches(labels) {
            matching.push((kv.clone(), budget));
        }
    }
    let (kv, budget) = match matching.len() {
        0 => return Ok(()),
        1 => matching.remove(0),
        _ => {
            return Err(ApiError::internal(
                "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
            ));
        }
    };
    let budget_name = budget["metadata"]["name"].as_str().unwrap_or_default().to_string();
    let generation = budget["metadata"]["generation"].as_i64().unwrap_or(0);
    let observed = budget["status"]["observedGeneration"].as_i64().unwrap_or(0);
    if observed < generation || budget["status"].is_null() {
        return Err(budget_denied(format!(
            "The disruption budget {budget_name} is still being processed by the server."
        )));
    }
    let allowed = budget["status"]["disruptionsAllowed"].as_i64().unwrap_or(0);
    if allowed <= 0 {
        return Err(budget_denied(format!(
            "The disruption budget {budget_name} needs {} healthy pods and has {} currently",
            budget["status"]["desiredHealthy"].as_i64().unwrap_or(0),
            budget["status"]["currentHealthy"].as_i64().unwrap_or(0),
        )));
    }
    if dry_run {
        return Ok(());
    }
    let mut spent = budget.clone();
    spent["status"]["disruptionsAllowed"] = json!(allowed - 1);
    let disrupted = spent["status"].as_object_mut().map(|s| s.entry("disruptedPods").or_insert_with(|| json!({})));
    if let Some(map) = disrupted.and_then(Value::as_object_mut) {
        map.insert(pod_name.to_string(), json!(now_rfc3339()));
    }
    if let Some(meta) = spent.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("resourceVersion");
    }
    let bytes = serde_json::to_vec(&spent).map_err(|e| ApiError::internal(e.to_string()))?;
    match api.store.update(&kv.key, bytes.into(), kv.mod_revision).await {
        Ok(_) => Ok(()),
        // Someone else spent or refreshed the budget meanwhile; the client retries, as with kube-apiserver.
        Err(StoreError::Conflict { .. }) => {
            Err(ApiError::conflict_because(budgets, &budget_name, "the disruption budget was modified concurrently"))
        }
        Err(e) => Err(ApiError::from_store(e, budgets, &budget_name)),
    }
}
