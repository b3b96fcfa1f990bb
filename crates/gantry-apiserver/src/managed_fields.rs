//! `metadata.managedFields` for creates, updates and patches: which manager last set which fields.
//!
//! Fields are tracked down to object leaves; lists are tracked as a whole (`f:containers: {}`), the way
//! kube-apiserver records atomic lists. Server-side apply (a later step) needs per-element ownership of
//! associative lists; until then a manager that changes one element of a list owns the list.

use std::collections::BTreeSet;

use gantry_api::registry::Subresource;
use serde_json::{Map, Value, json};

type Path = Vec<String>;

/// Metadata fields the server owns; never recorded as a manager's.
const SYSTEM_METADATA: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "creationTimestamp",
    "generation",
    "managedFields",
    "selfLink",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "generateName",
];

fn leaves(value: &Value, prefix: &mut Path, out: &mut BTreeSet<Path>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                if prefix.is_empty() && matches!(k.as_str(), "apiVersion" | "kind") {
                    continue;
                }
                if prefix.len() == 1 && prefix[0] == "f:metadata" && SYSTEM_METADATA.contains(&k.as_str()) {
                    continue;
                }
                prefix.push(format!("f:{k}"));
                leaves(v, prefix, out);
                prefix.pop();
            }
        }
        _ if !prefix.is_empty() => {
            out.insert(prefix.clone());
        }
        _ => {}
    }
}

fn leaf_set(value: &Value, part: Part) -> BTreeSet<Path> {
    let mut out = BTreeSet::new();
    leaves(value, &mut Vec::new(), &mut out);
    out.retain(|p| part.contains(p));
    out
}

/// Which part of an object a write may own: everything but status, or only status.
#[derive(Clone, Copy)]
enum Part {
    Main,
    Status,
}

impl Part {
    fn contains(self, path: &Path) -> bool {
        let is_status = path.first().is_some_and(|p| p == "f:status");
        match self {
            Part::Main => !is_status,
            Part::Status => is_status,
        }
    }
}

fn value_at<'a>(value: &'a Value, path: &Path) -> Option<&'a Value> {
    path.iter().try_fold(value, |v, seg| v.get(seg.strip_prefix("f:").unwrap_or(seg)))
}

fn to_fields_v1(paths: &BTreeSet<Path>) -> Value {
    let mut root = Map::new();
    for path in paths {
        let mut node = &mut root;
        for seg in path {
            let entry = node.entry(seg.clone()).or_insert_with(|| json!({}));
            let Some(next) = entry.as_object_mut() else { break };
            node = next;
        }
    }
    Value::Object(root)
}

fn from_fields_v1(value: &Value, prefix: &mut Path, out: &mut BTreeSet<Path>) {
    match value.as_object() {
        Some(map) if !map.is_empty() => {
            for (k, v) in map {
                if k == "." {
                    continue;
                }
                prefix.push(k.clone());
                from_fields_v1(v, prefix, out);
                prefix.pop();
            }
        }
        _ if !prefix.is_empty() => {
            out.insert(prefix.clone());
        }
        _ => {}
    }
}

fn entries(obj: &Value) -> Vec<Value> {
    obj.get("metadata").and_then(|m| m.get("managedFields")).and_then(Value::as_array).cloned().unwrap_or_default()
}

fn set_entries(obj: &mut Value, list: Vec<Value>) {
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        if list.is_empty() {
            meta.remove("managedFields");
        } else {
            meta.insert("managedFields".into(), Value::Array(list));
        }
    }
}

fn entry(manager: &str, api_version: &str, paths: &BTreeSet<Path>, subresource: Option<&str>) -> Value {
    let mut e = json!({
        "manager": manager,
        "operation": "Update",
        "apiVersion": api_version,
        "time": crate::objects::now_rfc3339(),
        "fieldsType": "FieldsV1",
        "fieldsV1": to_fields_v1(paths),
    });
    if let Some(sub) = subresource {
        e["subresource"] = json!(sub);
    }
    e
}

/// The FieldsV1 tree of every leaf under `value`, built directly (creates are the hot path; no path sets).
fn mirror(value: &Value, depth: usize) -> Option<Value> {
    match value {
        Value::Object(map) if !map.is_empty() => {
            let mut out = Map::new();
            for (k, v) in map {
                let skip = match depth {
                    0 => matches!(k.as_str(), "apiVersion" | "kind" | "status"),
                    _ => false,
                };
                if skip {
                    continue;
                }
                let child = if depth == 0 && k == "metadata" {
                    let mut meta = v.clone();
                    if let Some(m) = meta.as_object_mut() {
                        m.retain(|field, _| !SYSTEM_METADATA.contains(&field.as_str()));
                    }
                    if meta.as_object().is_some_and(|m| m.is_empty()) { None } else { mirror(&meta, depth + 1) }
                } else {
                    mirror(v, depth + 1)
                };
                if let Some(child) = child {
                    out.insert(format!("f:{k}"), child);
                }
            }
            (!out.is_empty() || depth > 0).then_some(Value::Object(out))
        }
        Value::Object(_) if depth > 0 => Some(json!({})),
        Value::Object(_) => None,
        _ => Some(json!({})),
    }
}

/// Records the creating manager as the owner of every field it set.
pub fn record_create(obj: &mut Value, manager: &str, api_version: &str) {
    let mut list = Vec::new();
    if let Some(fields) = mirror(obj, 0).filter(|f| f.as_object().is_some_and(|m| !m.is_empty())) {
        let mut e = entry(manager, api_version, &BTreeSet::new(), None);
        e["fieldsV1"] = fields;
        list.push(e);
    }
    set_entries(obj, list);
}

/// Records an update: the manager gains the fields it changed; other managers lose them.
/// A client that writes `managedFields` itself (as kubectl does when it migrates to server-side apply) is
/// taken at its word.
pub fn record_update(old: &Value, new: &mut Value, manager: &str, api_version: &str, sub: Option<Subresource>) {
    let old_entries = entries(old);
    let sent = entries(new);
    // A body without managedFields keeps the recorded ones; a body with different ones replaces them.
    if !sent.is_empty() && sent != old_entries && sub.is_none() {
        return;
    }
    let (part, sub_name) = match sub {
        Some(Subresource::Status) => (Part::Status, Some("status")),
        Some(other) => (Part::Main, Some(other.name())),
        None => (Part::Main, None),
    };
    let present = leaf_set(new, part);
    let changed: BTreeSet<Path> = present.iter().filter(|p| value_at(old, p) != value_at(new, p)).cloned().collect();
    let removed = leaf_set(old, part).iter().any(|p| value_at(new, p).is_none());
    if changed.is_empty() && !removed {
        // Nothing changed: the record stays as it was, so that a no-op write stays a no-op (no new
        // resourceVersion just because the clock moved).
        set_entries(new, old_entries);
        return;
    }
    let mut list = Vec::new();
    let mut mine: BTreeSet<Path> = BTreeSet::new();
    for e in old_entries {
        let same_manager = e["manager"] == manager
            && e["operation"] == "Update"
            && e.get("subresource").and_then(Value::as_str) == sub_name;
        let mut paths = BTreeSet::new();
        from_fields_v1(&e["fieldsV1"], &mut Vec::new(), &mut paths);
        if same_manager {
            mine.extend(paths);
            continue;
        }
        // Fields this write changed now belong to its manager; fields that are gone belong to no one.
        let all_present =
            leaf_set(new, Part::Main).union(&leaf_set(new, Part::Status)).cloned().collect::<BTreeSet<_>>();
        paths.retain(|p| !changed.contains(p) && all_present.iter().any(|q| q.starts_with(p) || p.starts_with(q)));
        if paths.is_empty() {
            continue;
        }
        let mut kept = e.clone();
        kept["fieldsV1"] = to_fields_v1(&paths);
        list.push(kept);
    }
    mine.extend(changed.iter().cloned());
    mine.retain(|p| present.iter().any(|q| q.starts_with(p) || p.starts_with(q)));
    if !mine.is_empty() {
        list.push(entry(manager, api_version, &mine, sub_name));
    }
    set_entries(new, list);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn managers(obj: &Value) -> Vec<String> {
        entries(obj).iter().map(|e| e["manager"].as_str().unwrap_or_default().to_string()).collect()
    }

    #[test]
    fn a_create_owns_every_field_it_set() {
        let mut obj = json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a","labels":{"x":"1"}},
                             "data":{"k":"v"}});
        record_create(&mut obj, "kubectl-create", "v1");
        let fields = &obj["metadata"]["managedFields"][0]["fieldsV1"];
        assert_eq!(fields, &json!({"f:data":{"f:k":{}},"f:metadata":{"f:labels":{"f:x":{}}}}));
    }

    #[test]
    fn a_create_records_the_same_fields_as_an_update_would() {
        let mut obj = json!({"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"a","uid":"u",
            "labels":{"x":"1"}},"spec":{"replicas":1,"template":{"spec":{"containers":[{"name":"c"}]},
            "metadata":{}}},"status":{"replicas":0}});
        let mut expected = BTreeSet::new();
        leaves(&obj, &mut Vec::new(), &mut expected);
        expected.retain(|p| Part::Main.contains(p));
        record_create(&mut obj, "m", "apps/v1");
        assert_eq!(obj["metadata"]["managedFields"][0]["fieldsV1"], to_fields_v1(&expected));
        let mut bare = json!({"metadata":{"name":"b"}});
        record_create(&mut bare, "m", "v1");
        assert!(bare["metadata"].get("managedFields").is_none());
    }

    #[test]
    fn an_update_takes_changed_fields_from_other_managers() {
        let mut old = json!({"metadata":{"name":"a"},"data":{"k":"v","j":"w"}});
        record_create(&mut old, "creator", "v1");
        let mut new = json!({"metadata":{"name":"a","managedFields":old["metadata"]["managedFields"].clone()},
                             "data":{"k":"changed","j":"w"}});
        record_update(&old, &mut new, "editor", "v1", None);
        assert_eq!(managers(&new), vec!["creator", "editor"]);
        assert_eq!(new["metadata"]["managedFields"][0]["fieldsV1"], json!({"f:data":{"f:j":{}}}));
        assert_eq!(new["metadata"]["managedFields"][1]["fieldsV1"], json!({"f:data":{"f:k":{}}}));
    }

    #[test]
    fn a_write_that_changes_nothing_keeps_the_record() {
        let mut old = json!({"metadata":{"name":"a"},"data":{"k":"v"}});
        record_create(&mut old, "creator", "v1");
        let mut new = json!({"metadata":{"name":"a"},"data":{"k":"v"}});
        record_update(&old, &mut new, "someone-else", "v1", None);
        assert_eq!(new["metadata"]["managedFields"], old["metadata"]["managedFields"]);
    }

    #[test]
    fn status_writes_are_recorded_with_their_subresource() {
        let mut old = json!({"metadata":{"name":"a"},"spec":{"replicas":1}});
        record_create(&mut old, "creator", "apps/v1");
        let mut new = old.clone();
        new["status"] = json!({"replicas": 1});
        record_update(&old, &mut new, "controller", "apps/v1", Some(Subresource::Status));
        let last = entries(&new).pop().unwrap();
        assert_eq!(last["subresource"], "status");
        assert_eq!(last["fieldsV1"], json!({"f:status":{"f:replicas":{}}}));
    }
}
