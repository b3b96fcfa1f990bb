//! The ResourceQuota admission step, as kube-apiserver's: an object about to be created (or a service or claim
//! about to change) is charged to every quota of its namespace that tracks it, and refused with 403 Forbidden
//! when a quota would be exceeded.
//!
//! The charge is written into the quota's `status.used` with a compare-and-swap on its revision *before* the
//! object is stored, and retried against the fresh quota on a conflict: two requests (on one API server or on
//! several sharing the store) can never both take the last unit. A request that fails after its charge (the
//! store refuses the object) leaves the quota over-counted until the quota controller recounts the namespace,
//! as in kube. Dry runs are checked but never charged.
//!
//! A quota only applies once its `status.hard` is set (by the quota controller), as in kube; a quota whose
//! `status.used` lacks a resource it limits refuses with "status unknown".

use gantry_api::quota::{self, ResourceList};
use gantry_api::registry::ResourceType;
use gantry_store::StoreError;
use serde_json::{Value, json};

use crate::api::Api;
use crate::objects::{from_stored, to_stored};
use crate::status::{ApiError, ApiResult};

/// How often a charge is retried against a quota that keeps changing underneath it.
const MAX_CONFLICTS: usize = 100;

/// One object's request against the quotas: what it is and what it charges.
struct Request<'a> {
    resource: &'static ResourceType,
    name: &'a str,
    obj: &'a Value,
    /// The object as it was, on update.
    old: Option<&'a Value>,
    /// What the object charges (zeros left out).
    full: ResourceList,
    /// What it charges beyond what it charged before (on create, all of it).
    delta: ResourceList,
}

/// Why a quota refuses a request, or what it becomes once charged.
enum Verdict {
    /// The quota does not track the object.
    Untouched,
    /// The quota tracks it but nothing is charged (an update that adds nothing).
    Unchanged,
    /// The quota with the charge added.
    Charged(Value),
}

impl<'a> Request<'a> {
    /// What `obj` (replacing `old` on update) charges; `now` in seconds since the epoch.
    fn new(resource: &'static ResourceType, obj: &'a Value, old: Option<&'a Value>, now: i64) -> ApiResult<Self> {
        let (group, plural) = (resource.group, resource.plural);
        let name = obj["metadata"]["name"].as_str().unwrap_or_default();
        let mut full = quota::usage(group, plural, obj, now);
        let negative: Vec<String> = full.iter().filter(|(_, v)| v.is_negative()).map(|(k, _)| k.clone()).collect();
        if !negative.is_empty() {
            let why = format!("quota usage is negative for resource(s): {}", negative.join(","));
            return Err(ApiError::forbidden_object(resource, name, &why));
        }
        full.retain(|_, v| !v.is_zero());
        let mut delta = match old {
            Some(old) => quota::subtract_non_negative(&full, &quota::usage(group, plural, old, now)),
            None => full.clone(),
        };
        delta.retain(|_, v| !v.is_zero());
        Ok(Request { resource, name, obj, old, full, delta })
    }

    fn forbidden(&self, why: String) -> ApiError {
        ApiError::forbidden_object(self.resource, self.name, &why)
    }

    /// Checks the request against one quota (as stored now) and computes the quota with the charge.
    fn evaluate(&self, quota_obj: &Value) -> ApiResult<Verdict> {
        let (group, plural) = (self.resource.group, self.resource.plural);
        let quota_name = quota_obj["metadata"]["name"].as_str().unwrap_or_default();
        let hard = quota::parse_list(&quota_obj["status"]["hard"]);
        let restricted = quota::matching_resources(group, plural, hard.keys().map(String::as_str));
        if restricted.is_empty() || !quota::matches_scopes(group, plural, quota_obj, self.obj) {
            return Ok(Verdict::Untouched);
        }
        if let Err(why) = quota::check_constraints(group, plural, &restricted, self.obj) {
            return Err(self.forbidden(format!("failed quota: {quota_name}: {why}")));
        }
        let used = quota::parse_list(&quota_obj["status"]["used"]);
        if restricted.iter().any(|r| !used.contains_key(r)) {
            let mut names = restricted.clone();
            names.sort();
            return Err(
                self.forbidden(format!("status unknown for quota: {quota_name}, resources: {}", names.join(",")))
            );
        }
        let hard_names: Vec<String> = hard.keys().cloned().collect();
        // An object entering the quota's scopes with this update (a pod given a deadline) is charged in full.
        let entering = self.old.is_some_and(|old| !quota::matches_scopes(group, plural, quota_obj, old));
        let requested = quota::mask(if entering { &self.full } else { &self.delta }, &hard_names);
        if requested.is_empty() {
            return Ok(Verdict::Unchanged);
        }
        let new_used = quota::add(&used, &requested);
        let requested_names: Vec<String> = requested.keys().cloned().collect();
        let exceeded = quota::exceeding(&quota::mask(&new_used, &requested_names), &hard);
        if !exceeded.is_empty() {
            return Err(self.forbidden(format!(
                "exceeded quota: {quota_name}, requested: {}, used: {}, limited: {}",
                quota::pretty_print(&quota::mask(&requested, &exceeded)),
                quota::pretty_print(&quota::mask(&used, &exceeded)),
                quota::pretty_print(&quota::mask(&hard, &exceeded)),
            )));
        }
        let mut charged = quota_obj.clone();
        if let Some(map) = charged.as_object_mut() {
            let status = map.entry("status").or_insert_with(|| json!({}));
            status["used"] = quota::list_to_json(&new_used);
        }
        Ok(Verdict::Charged(charged))
    }
}

impl Api {
    /// Charges a new object (`old` is `None`) or what an update adds to the quotas of `namespace`;
    /// refuses it when a quota is exceeded, unknown, or wants what the object does not state.
    pub(crate) async fn admit_quota(
        &self,
        resource: &'static ResourceType,
        namespace: &str,
        obj: &Value,
        old: Option<&Value>,
        dry_run: bool,
    ) -> ApiResult<()> {
        let Some(quotas) = self.registry.by_plural("", "v1", "resourcequotas") else { return Ok(()) };
        // The cache says which quotas exist; each is then read and charged in the store itself.
        let cache = self.cache.resource(&quotas.key_prefix());
        let snapshot = cache.snapshot(&quotas.namespace_prefix(Some(namespace)), self.cache.applied());
        let mut names: Vec<String> = snapshot.objects.iter().map(|e| e.name.clone()).collect();
        if names.is_empty() {
            return Ok(());
        }
        names.sort();
        let request = Request::new(resource, obj, old, jiff::Timestamp::now().as_second())?;
        // Every quota is checked before any is charged, so that one refusing does not leave others charged.
        let mut current = Vec::new();
        for quota_name in &names {
            let key = quotas.key(Some(namespace), quota_name);
            let kv = match self.store.get(key.as_bytes()).await {
                Ok(kv) => kv,
                Err(StoreError::NotFound { .. }) => continue,
                Err(e) => return Err(ApiError::from_store(e, quotas, quota_name)),
            };
            let quota_obj = from_stored(&kv)?;
            if let Verdict::Charged(charged) = request.evaluate(&quota_obj)? {
                current.push((key, kv.mod_revision, charged));
            }
        }
        if current.is_empty() || dry_run {
            return Ok(());
        }
        for (key, mut revision, mut charged) in current {
            for _ in 0..MAX_CONFLICTS {
                let quota_name = charged["metadata"]["name"].as_str().unwrap_or_default().to_string();
                match self.store.update(key.as_bytes(), to_stored(&mut charged)?, revision).await {
                    Ok(_) => break,
                    Err(StoreError::Conflict { .. }) => {}
                    Err(StoreError::NotFound { .. }) => break,
                    Err(e) => return Err(ApiError::from_store(e, quotas, &quota_name)),
                }
                // Someone else charged (or changed) the quota meanwhile: check again against what it is now.
                let kv = match self.store.get(key.as_bytes()).await {
                    Ok(kv) => kv,
                    Err(StoreError::NotFound { .. }) => break,
                    Err(e) => return Err(ApiError::from_store(e, quotas, &quota_name)),
                };
                revision = kv.mod_revision;
                match request.evaluate(&from_stored(&kv)?)? {
                    Verdict::Charged(again) => charged = again,
                    Verdict::Untouched | Verdict::Unchanged => break,
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_api::registry::Registry;

    fn request<'a>(obj: &'a Value, resource: &'static ResourceType) -> Request<'a> {
        Request::new(resource, obj, None, 0).unwrap()
    }

    fn pods() -> &'static ResourceType {
        let registry = Registry::built_in();
        registry.by_plural("", "v1", "pods").unwrap()
    }

    fn quota_with(hard: Value, used: Value) -> Value {
        json!({"metadata": {"name": "q"}, "spec": {"hard": hard}, "status": {"hard": hard, "used": used}})
    }

    #[test]
    fn a_full_quota_refuses_in_kubes_words() {
        let pod = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c"}]}});
        let r = request(&pod, pods());
        let err = r.evaluate(&quota_with(json!({"pods": "2"}), json!({"pods": "2"}))).err().unwrap();
        assert_eq!((err.code, err.reason), (403, "Forbidden"));
        assert_eq!(
            err.message,
            "pods \"p\" is forbidden: exceeded quota: q, requested: pods=1, used: pods=2, limited: pods=2"
        );
        let Ok(Verdict::Charged(charged)) = r.evaluate(&quota_with(json!({"pods": "2"}), json!({"pods": "1"}))) else {
            panic!("not charged")
        };
        assert_eq!(charged["status"]["used"], json!({"pods": "2"}));
    }

    #[test]
    fn a_quota_without_usage_is_status_unknown_and_one_without_hard_does_not_apply() {
        let pod = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c"}]}});
        let r = request(&pod, pods());
        let err = r.evaluate(&quota_with(json!({"pods": "2", "secrets": "1"}), json!({}))).err().unwrap();
        assert_eq!(err.message, "pods \"p\" is forbidden: status unknown for quota: q, resources: pods");
        let fresh = json!({"metadata": {"name": "q"}, "spec": {"hard": {"pods": "1"}}});
        assert!(matches!(r.evaluate(&fresh), Ok(Verdict::Untouched)));
    }

    #[test]
    fn a_compute_quota_wants_requests_stated() {
        let pod = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c"}]}});
        let r = request(&pod, pods());
        let q = quota_with(json!({"requests.cpu": "1", "limits.memory": "1Gi"}), json!({}));
        let err = r.evaluate(&q).err().unwrap();
        assert_eq!(
            err.message,
            "pods \"p\" is forbidden: failed quota: q: must specify limits.memory for: c; requests.cpu for: c"
        );
    }

    #[test]
    fn only_the_exceeded_resources_are_named() {
        let pod = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c",
            "resources": {"requests": {"cpu": "600m"}}}]}});
        let r = request(&pod, pods());
        let q = quota_with(json!({"pods": "10", "requests.cpu": "1"}), json!({"pods": "1", "requests.cpu": "500m"}));
        let err = r.evaluate(&q).err().unwrap();
        assert!(
            err.message.ends_with("requested: requests.cpu=600m, used: requests.cpu=500m, limited: requests.cpu=1"),
            "{}",
            err.message
        );
    }

    #[test]
    fn a_pod_entering_a_quotas_scope_is_charged_in_full() {
        let old = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c"}]}});
        let mut new = old.clone();
        new["spec"]["activeDeadlineSeconds"] = json!(30);
        let r = Request::new(pods(), &new, Some(&old), 0).unwrap();
        let mut q = quota_with(json!({"pods": "1"}), json!({"pods": "1"}));
        q["spec"]["scopes"] = json!(["Terminating"]);
        let err = r.evaluate(&q).err().unwrap();
        assert!(err.message.contains("exceeded quota: q, requested: pods=1"), "{}", err.message);
        q["spec"]["scopes"] = json!(["BestEffort"]);
        assert!(matches!(r.evaluate(&q), Ok(Verdict::Unchanged)), "already in scope: nothing more to charge");
    }

    #[test]
    fn a_scoped_quota_ignores_pods_outside_its_scope() {
        let pod = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c"}]}});
        let r = request(&pod, pods());
        let mut q = quota_with(json!({"pods": "0"}), json!({"pods": "0"}));
        q["spec"]["scopes"] = json!(["NotBestEffort"]);
        assert!(matches!(r.evaluate(&q), Ok(Verdict::Untouched)));
        q["spec"]["scopes"] = json!(["BestEffort"]);
        assert!(r.evaluate(&q).is_err());
    }
}
