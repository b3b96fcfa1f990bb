//! `metadata.managedFields` for creates, updates and patches: which manager last set which fields.
//!
//! The bookkeeping itself is [`gantry_api::apply`]'s (field sets per kind schema, map lists owned element
//! by element); this module picks the scope of a write (main resource or `status`) and the time.

use gantry_api::apply::{Schema, Scope, Writer};
use gantry_api::registry::{ResourceType, Subresource};
use serde_json::Value;

/// Which fields a write to `resource` (through `sub`) may own.
pub fn scope(resource: &ResourceType, sub: Option<Subresource>) -> Scope {
    match sub {
        Some(Subresource::Status) => Scope::Status,
        _ if crate::strategy::has_status_subresource(resource) => Scope::Main,
        _ => Scope::Whole,
    }
}

/// Records the creating manager as the owner of every field it set.
pub fn record_create(schema: &Schema, resource: &ResourceType, obj: &mut Value, manager: &str) {
    let api_version = resource.api_version();
    let now = crate::objects::now_rfc3339();
    let writer =
        Writer { manager, api_version: &api_version, subresource: None, scope: scope(resource, None), now: &now };
    gantry_api::apply::update(schema, None, obj, &writer);
}

/// Records an update: the manager gains the fields it changed; other managers lose them. A client that writes
/// `managedFields` itself (as kubectl does when it upgrades an object to server-side apply) is taken at its
/// word; an empty list clears them.
pub fn record_update(
    schema: &Schema,
    resource: &ResourceType,
    old: &Value,
    new: &mut Value,
    manager: &str,
    sub: Option<Subresource>,
) {
    let api_version = resource.api_version();
    let now = crate::objects::now_rfc3339();
    let writer = Writer {
        manager,
        api_version: &api_version,
        subresource: sub.map(Subresource::name),
        scope: scope(resource, sub),
        now: &now,
    };
    gantry_api::apply::update(schema, Some(old), new, &writer);
}

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_api::registry::Registry;
    use serde_json::json;

    fn deployments() -> &'static ResourceType {
        Registry::built_in().by_plural("apps", "v1", "deployments").unwrap()
    }

    #[test]
    fn status_writes_are_recorded_with_their_subresource() {
        let resource = deployments();
        let schema = Schema::builtin("apps", "v1", "Deployment");
        let mut old = json!({"metadata":{"name":"a"},"spec":{"replicas":1}});
        record_create(&schema, resource, &mut old, "creator");
        let mut new = old.clone();
        new["status"] = json!({"replicas": 1});
        record_update(&schema, resource, &old, &mut new, "controller", Some(Subresource::Status));
        let entries = new["metadata"]["managedFields"].as_array().unwrap();
        let last = entries.iter().find(|e| e["manager"] == "controller").unwrap().clone();
        assert_eq!(last["subresource"], "status");
        assert_eq!(last["fieldsV1"], json!({"f:status":{".":{},"f:replicas":{}}}));
    }

    #[test]
    fn the_main_resource_never_owns_status_of_a_kind_with_a_status_subresource() {
        let resource = deployments();
        let schema = Schema::builtin("apps", "v1", "Deployment");
        let mut obj = json!({"metadata":{"name":"a"},"spec":{"replicas":1},"status":{"replicas":0}});
        record_create(&schema, resource, &mut obj, "creator");
        assert_eq!(obj["metadata"]["managedFields"][0]["fieldsV1"], json!({"f:spec":{"f:replicas":{}}}));
    }
}
