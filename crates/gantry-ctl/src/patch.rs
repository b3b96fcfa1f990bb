//! The three-way patch of client-side apply: from the configuration applied last time (`original`, the
//! `last-applied-configuration` annotation), the configuration applied now (`modified`) and the live object
//! (`current`), the smallest patch that makes the live object carry `modified`:
//! - a field of `original` missing from `modified` is deleted (`null`), whatever the live object says, so that
//!   fields another writer set (defaults, controllers) stay untouched;
//! - a field of `modified` that differs from the live object is set; objects are compared member by member;
//! - for a strategic merge patch (built-in kinds), lists that merge by key are compared element by element
//!   (a changed element carries its key; an element removed from the configuration becomes
//!   `{key: …, "$patch": "delete"}`; `$setElementOrder/<field>` keeps the configuration's order), lists of
//!   scalars that merge become additions plus `$deleteFromPrimitiveList/<field>`; any other list is replaced
//!   whole. For a JSON merge patch (custom resources) every list is replaced whole.
//!
//! An empty patch (`{}`) means the object is unchanged.

use gantry_api::patch::schema::{Strategy, TypeSchema};
use serde_json::{Map, Value};

/// The strategic-merge facts of a kind, `None` for kinds that take only JSON merge patches.
pub fn schema_for(group: &str, kind: &str) -> Option<&'static TypeSchema> {
    gantry_api::registry::BUILT_IN
        .iter()
        .find(|r| r.group == group && r.kind == kind)
        .and_then(|r| gantry_api::patch::schema::for_kind(r.group_kind()))
}

/// How the patch is computed and sent.
#[derive(Clone, Copy, Debug)]
pub enum PatchKind {
    /// `application/strategic-merge-patch+json`, following the kind's schema.
    Strategic(&'static TypeSchema),
    /// `application/merge-patch+json` (RFC 7386).
    Merge,
}

impl PatchKind {
    /// The patch's content type.
    pub fn content_type(self) -> &'static str {
        match self {
            PatchKind::Strategic(_) => "application/strategic-merge-patch+json",
            PatchKind::Merge => "application/merge-patch+json",
        }
    }
}

/// The three-way patch (see the module's documentation); an empty object when nothing changes.
pub fn three_way(original: Option<&Value>, modified: &Value, current: &Value, kind: PatchKind) -> Value {
    let schema = match kind {
        PatchKind::Strategic(schema) => Some(schema),
        PatchKind::Merge => None,
    };
    let strategic = matches!(kind, PatchKind::Strategic(_));
    let empty = Map::new();
    let patch = diff_maps(
        original.and_then(Value::as_object),
        modified.as_object().unwrap_or(&empty),
        current.as_object(),
        schema,
        strategic,
    );
    Value::Object(patch)
}

fn diff_maps(
    original: Option<&Map<String, Value>>,
    modified: &Map<String, Value>,
    current: Option<&Map<String, Value>>,
    schema: Option<&'static TypeSchema>,
    strategic: bool,
) -> Map<String, Value> {
    let mut patch = Map::new();
    for key in original.into_iter().flat_map(|o| o.keys()) {
        if !modified.contains_key(key) {
            patch.insert(key.clone(), Value::Null);
        }
    }
    for (key, want) in modified {
        let live = current.and_then(|c| c.get(key));
        let before = original.and_then(|o| o.get(key));
        let field = schema.and_then(|s| s.field(key));
        let strategy = if strategic { field.map(|f| f.strategy).unwrap_or_default() } else { Strategy::Default };
        match (want, live) {
            (Value::Object(want_map), Some(Value::Object(live_map))) if strategy != Strategy::Replace => {
                let sub = diff_maps(
                    before.and_then(Value::as_object),
                    want_map,
                    Some(live_map),
                    field.and_then(|f| f.schema),
                    strategic,
                );
                if !sub.is_empty() {
                    patch.insert(key.clone(), Value::Object(sub));
                }
            }
            (Value::Array(want_list), Some(Value::Array(live_list))) if strategy.merges_lists() => {
                let before_list = before.and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
                let element_schema = field.and_then(|f| f.schema);
                diff_merging_list(&mut patch, key, strategy, before_list, want_list, live_list, element_schema);
            }
            _ => {
                if live != Some(want) {
                    patch.insert(key.clone(), want.clone());
                }
            }
        }
    }
    patch
}

fn diff_merging_list(
    patch: &mut Map<String, Value>,
    field: &str,
    strategy: Strategy,
    original: &[Value],
    modified: &[Value],
    current: &[Value],
    schema: Option<&'static TypeSchema>,
) {
    let Some(merge_key) = strategy.merge_key() else {
        // A set of scalars: additions, and deletions of what the configuration had.
        let added: Vec<Value> = modified.iter().filter(|v| !current.contains(v)).cloned().collect();
        let deleted: Vec<Value> = original.iter().filter(|v| !modified.contains(v)).cloned().collect();
        if !added.is_empty() {
            patch.insert(format!("$setElementOrder/{field}"), Value::Array(modified.to_vec()));
            patch.insert(field.to_string(), Value::Array(added));
        }
        if !deleted.is_empty() {
            patch.insert(format!("$deleteFromPrimitiveList/{field}"), Value::Array(deleted));
        }
        return;
    };
    let key_of = |v: &Value| v.get(merge_key).cloned();
    if modified.iter().chain(current).any(|v| key_of(v).is_none()) {
        // Elements without their merge key cannot be matched: replace the list when it differs.
        if modified != current {
            patch.insert(field.to_string(), Value::Array(modified.to_vec()));
        }
        return;
    }
    let mut items = Vec::new();
    for want in modified {
        let key = key_of(want);
        let live = current.iter().find(|c| key_of(c) == key);
        let before = original.iter().find(|o| key_of(o) == key);
        match (want.as_object(), live.and_then(Value::as_object)) {
            (Some(want_map), Some(live_map)) => {
                let mut sub = diff_maps(before.and_then(Value::as_object), want_map, Some(live_map), schema, true);
                if !sub.is_empty() {
                    if let Some(key) = key {
                        sub.insert(merge_key.to_string(), key);
                    }
                    items.push(Value::Object(sub));
                }
            }
            _ => {
                if live != Some(want) {
                    items.push(want.clone());
                }
            }
        }
    }
    for gone in original {
        let key = key_of(gone);
        if key.is_some() && !modified.iter().any(|m| key_of(m) == key) {
            let mut directive = Map::new();
            if let Some(key) = key {
                directive.insert(merge_key.to_string(), key);
            }
            directive.insert("$patch".to_string(), Value::String("delete".to_string()));
            items.push(Value::Object(directive));
        }
    }
    if !items.is_empty() {
        let order: Vec<Value> = modified
            .iter()
            .filter_map(|m| {
                let mut entry = Map::new();
                entry.insert(merge_key.to_string(), key_of(m)?);
                Some(Value::Object(entry))
            })
            .collect();
        patch.insert(format!("$setElementOrder/{field}"), Value::Array(order));
        patch.insert(field.to_string(), Value::Array(items));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment(image: &str, labels: Value, env: Value) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": labels},
            "spec": {"replicas": 2, "template": {"spec": {"containers": [
                {"name": "main", "image": image, "env": env}
            ]}}}
        })
    }

    fn strategic() -> PatchKind {
        PatchKind::Strategic(schema_for("apps", "Deployment").expect("deployment schema"))
    }

    #[test]
    fn applying_the_same_configuration_again_is_an_empty_patch() {
        let config = deployment("a:1", json!({"app": "web"}), json!([{"name": "A", "value": "1"}]));
        let mut live = config.clone();
        live["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] = json!("IfNotPresent");
        live["status"] = json!({"replicas": 2});
        assert_eq!(three_way(Some(&config), &config, &live, strategic()), json!({}));
    }

    #[test]
    fn a_field_removed_from_the_configuration_is_deleted_and_defaults_stay() {
        let before = deployment("a:1", json!({"app": "web", "tier": "front"}), json!([]));
        let now = deployment("a:1", json!({"app": "web"}), json!([]));
        let mut live = before.clone();
        live["metadata"]["labels"]["added-by-someone"] = json!("x");
        let patch = three_way(Some(&before), &now, &live, strategic());
        assert_eq!(patch, json!({"metadata": {"labels": {"tier": null}}}));
    }

    #[test]
    fn containers_merge_by_name_and_a_removed_env_var_becomes_a_delete_directive() {
        let before = deployment("a:1", json!({}), json!([{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]));
        let now = deployment("a:2", json!({}), json!([{"name": "A", "value": "1"}]));
        let patch = three_way(Some(&before), &now, &before, strategic());
        assert_eq!(
            patch,
            json!({"spec": {"template": {"spec": {
                "$setElementOrder/containers": [{"name": "main"}],
                "containers": [{
                    "name": "main",
                    "image": "a:2",
                    "$setElementOrder/env": [{"name": "A"}],
                    "env": [{"name": "B", "$patch": "delete"}]
                }]
            }}}})
        );
    }

    #[test]
    fn a_merge_patch_replaces_lists_whole() {
        let before = json!({"spec": {"items": [1, 2, 3], "keep": true}});
        let now = json!({"spec": {"items": [1, 2]}});
        let patch = three_way(Some(&before), &now, &before, PatchKind::Merge);
        assert_eq!(patch, json!({"spec": {"items": [1, 2], "keep": null}}));
    }

    #[test]
    fn merged_scalar_lists_add_and_delete_elements() {
        let schema = PatchKind::Strategic(schema_for("", "ConfigMap").expect("configmap schema"));
        let before = json!({"metadata": {"finalizers": ["a", "b"]}});
        let now = json!({"metadata": {"finalizers": ["a", "c"]}});
        let patch = three_way(Some(&before), &now, &before, schema);
        assert_eq!(
            patch,
            json!({"metadata": {
                "$setElementOrder/finalizers": ["a", "c"],
                "finalizers": ["c"],
                "$deleteFromPrimitiveList/finalizers": ["b"]
            }})
        );
    }

    #[test]
    fn without_a_last_applied_configuration_nothing_is_deleted() {
        let now = json!({"data": {"a": "1"}});
        let live = json!({"data": {"a": "0", "b": "2"}});
        assert_eq!(three_way(None, &now, &live, PatchKind::Merge), json!({"data": {"a": "1"}}));
    }

    #[test]
    fn custom_resources_have_no_strategic_schema() {
        assert!(schema_for("example.com", "Widget").is_none());
        assert!(schema_for("", "Pod").is_some());
    }
}
