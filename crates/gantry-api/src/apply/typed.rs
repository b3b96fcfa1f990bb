//! Walks of objects along a [`Schema`]: the field set of an object, the comparison of two objects, the merge
//! of an applied configuration into a live object, and the removal of fields a manager gave up.

use std::collections::{BTreeSet, HashSet};

use serde_json::{Map, Value};

use super::fieldpath::{PathElement, Set};
use super::schema::{ListType, Node, NodeId, Schema};

/// A node of the schema, or `None` where nothing is known (deduced).
type Ty = Option<NodeId>;

enum View<'s> {
    Leaf,
    Map(Ty),
    List(Ty, &'s ListType),
}

fn view<'s>(schema: &'s Schema, ty: Ty, value: &Value) -> View<'s> {
    let node = match ty {
        Some(id) => schema.node(id),
        None => &Node::Deduced,
    };
    match node {
        Node::Scalar => View::Leaf,
        Node::Deduced if value.is_object() => View::Map(None),
        Node::Deduced => View::Leaf,
        Node::Map { atomic: false, .. } if value.is_object() => View::Map(ty),
        Node::Map { .. } => View::Leaf,
        Node::List { list: ListType::Atomic, .. } => View::Leaf,
        Node::List { items, list } if value.is_array() => View::List(Some(*items), list),
        Node::List { .. } => View::Leaf,
    }
}

fn field_ty(schema: &Schema, ty: Ty, name: &str) -> Ty {
    ty.and_then(|id| schema.field(id, name))
}

/// The path element of a list element, or why it has none.
pub(crate) fn item_element(list: &ListType, item: &Value, index: usize) -> Result<PathElement, String> {
    match list {
        ListType::Map { keys, defaults } => {
            let Some(object) = item.as_object() else {
                return Err("associative list element is not an object".into());
            };
            let mut fields = Vec::with_capacity(keys.len());
            for key in keys {
                match object.get(key).filter(|v| !v.is_null()).or_else(|| defaults.get(key)) {
                    Some(v) => fields.push((key.clone(), v.clone())),
                    None => {
                        return Err(format!(
                            "associative list with keys has an element that omits key field {key:?} (and doesn't \
                             have default value)"
                        ));
                    }
                }
            }
            fields.sort_by(|a, b| a.0.cmp(&b.0));
            Ok(PathElement::Key(fields))
        }
        ListType::Set => Ok(PathElement::Value(item.clone())),
        ListType::Atomic => Ok(PathElement::Index(index)),
    }
}

/// An error found while walking an applied configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WalkError {
    pub path: String,
    pub message: String,
}

fn path_string(path: &[PathElement]) -> String {
    super::fieldpath::Path(path.to_vec()).to_string()
}

/// The fields an applied configuration sets, as kube-apiserver counts them: every leaf, every list element,
/// and objects that are empty, null, or not declared by the schema.
pub(crate) fn to_field_set(schema: &Schema, value: &Value) -> Result<Set, WalkError> {
    let mut set = Set::new();
    let mut path = Vec::new();
    field_set_walk(schema, Some(schema.root()), value, &mut path, &mut set)?;
    Ok(set)
}

fn field_set_walk(
    schema: &Schema,
    ty: Ty,
    value: &Value,
    path: &mut Vec<PathElement>,
    set: &mut Set,
) -> Result<(), WalkError> {
    match view(schema, ty, value) {
        View::Leaf => set.insert(path),
        View::Map(ty) => {
            let Some(map) = value.as_object() else { return Ok(()) };
            for (key, child) in map {
                path.push(PathElement::Field(key.clone()));
                field_set_walk(schema, field_ty(schema, ty, key), child, path, set)?;
                let declared = ty.is_some_and(|id| schema.declares(id, key));
                if child.is_null() || child.as_object().is_some_and(Map::is_empty) || !declared {
                    set.insert(path);
                }
                path.pop();
            }
        }
        View::List(items, list) => {
            let Some(elements) = value.as_array() else { return Ok(()) };
            let mut seen = HashSet::new();
            for (i, item) in elements.iter().enumerate() {
                let pe =
                    item_element(list, item, i).map_err(|message| WalkError { path: path_string(path), message })?;
                if !seen.insert(pe.to_fields_v1_key()) {
                    return Err(WalkError {
                        path: path_string(path),
                        message: format!("duplicate entries for key {pe}"),
                    });
                }
                path.push(pe);
                field_set_walk(schema, items, item, path, set)?;
                set.insert(path);
                path.pop();
            }
        }
    }
    Ok(())
}

/// What changed between two versions of an object.
#[derive(Debug, Default, Clone)]
pub(crate) struct Comparison {
    pub added: Set,
    pub modified: Set,
    pub removed: Set,
}

impl Comparison {
    pub(crate) fn is_same(&self) -> bool {
        self.added.is_empty() && self.modified.is_empty() && self.removed.is_empty()
    }
}

/// Compares `old` and `new` along the schema. Elements of a list that cannot be identified are skipped.
pub(crate) fn compare(schema: &Schema, old: &Value, new: &Value) -> Comparison {
    let mut out = Comparison::default();
    compare_walk(schema, Some(schema.root()), Some(old), Some(new), &mut Vec::new(), &mut out);
    out
}

fn is_empty_container(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => true,
        Some(Value::Object(m)) => m.is_empty(),
        Some(Value::Array(a)) => a.is_empty(),
        _ => false,
    }
}

fn compare_walk(
    schema: &Schema,
    ty: Ty,
    lhs: Option<&Value>,
    rhs: Option<&Value>,
    path: &mut Vec<PathElement>,
    out: &mut Comparison,
) {
    let Some(shape_of) = rhs.or(lhs) else { return };
    let mut shape = view(schema, ty, shape_of);
    // Both sides must have the shape to be walked into; otherwise the value changed type and is a leaf. Null
    // stands for an empty object or list that exists.
    let same_kind = match (lhs, rhs) {
        (Some(Value::Null), Some(_)) => true,
        (Some(l), Some(r)) => l.is_object() == r.is_object() && l.is_array() == r.is_array(),
        _ => true,
    };
    if !same_kind || (is_empty_container(lhs) && is_empty_container(rhs)) {
        shape = View::Leaf;
    }
    match shape {
        View::Leaf => match (lhs, rhs) {
            (None, Some(_)) => out.added.insert(path),
            (Some(_), None) => out.removed.insert(path),
            (Some(l), Some(r)) if l != r => out.modified.insert(path),
            _ => {}
        },
        View::Map(ty) => {
            let empty = Map::new();
            let l = lhs.and_then(Value::as_object).unwrap_or(&empty);
            let r = rhs.and_then(Value::as_object).unwrap_or(&empty);
            // managedFields are bookkeeping about the object, never part of a comparison; skipping them here
            // spares every caller a copy of the object without them.
            let at_metadata = path_is_metadata(path);
            let bookkeeping = |key: &str| at_metadata && key == "managedFields";
            for (key, lv) in l.iter().filter(|(k, _)| !bookkeeping(k)) {
                path.push(PathElement::Field(key.clone()));
                compare_walk(schema, field_ty(schema, ty, key), Some(lv), r.get(key), path, out);
                path.pop();
            }
            for (key, rv) in r.iter().filter(|(k, _)| !l.contains_key(*k) && !bookkeeping(k)) {
                path.push(PathElement::Field(key.clone()));
                compare_walk(schema, field_ty(schema, ty, key), None, Some(rv), path, out);
                path.pop();
            }
            mark_presence(lhs, rhs, path, out);
        }
        View::List(items, list) => {
            let l = index_list(list, lhs);
            let r = index_list(list, rhs);
            for (pe, lv) in &l {
                let rv = r.iter().find(|(p, _)| p == pe).map(|(_, v)| *v);
                path.push(pe.clone());
                compare_walk(schema, items, Some(lv), rv, path, out);
                path.pop();
            }
            for (pe, rv) in r.iter().filter(|(p, _)| !l.iter().any(|(q, _)| q == p)) {
                path.push(pe.clone());
                compare_walk(schema, items, None, Some(rv), path, out);
                path.pop();
            }
            mark_presence(lhs, rhs, path, out);
        }
    }
}

fn path_is_metadata(path: &[PathElement]) -> bool {
    matches!(path, [PathElement::Field(name)] if name == "metadata")
}

fn mark_presence(lhs: Option<&Value>, rhs: Option<&Value>, path: &[PathElement], out: &mut Comparison) {
    match (lhs, rhs) {
        (None, Some(_)) => out.added.insert(path),
        (Some(_), None) => out.removed.insert(path),
        _ => {}
    }
}

/// The identifiable elements of a list, first occurrence of each.
fn index_list<'v>(list: &ListType, value: Option<&'v Value>) -> Vec<(PathElement, &'v Value)> {
    let mut out: Vec<(PathElement, &Value)> = Vec::new();
    let mut seen = BTreeSet::new();
    for (i, item) in value.and_then(Value::as_array).into_iter().flatten().enumerate() {
        if let Ok(pe) = item_element(list, item, i)
            && (matches!(pe, PathElement::Index(_)) || seen.insert(pe.clone()))
        {
            out.push((pe, item));
        }
    }
    out
}

/// Merges an applied configuration into the live object: objects field by field, map lists by key, sets by
/// value, anything atomic replaced. A field the configuration sets to null is removed.
pub(crate) fn merge(schema: &Schema, live: &Value, config: &Value) -> Value {
    merge_walk(schema, Some(schema.root()), Some(live), config)
}

fn merge_walk(schema: &Schema, ty: Ty, lhs: Option<&Value>, rhs: &Value) -> Value {
    let Some(lhs) = lhs else { return rhs.clone() };
    match view(schema, ty, rhs) {
        View::Map(ty) if lhs.is_object() => {
            let mut out = lhs.as_object().cloned().unwrap_or_default();
            for (key, rv) in rhs.as_object().into_iter().flatten() {
                if rv.is_null() {
                    out.remove(key);
                    continue;
                }
                let merged = merge_walk(schema, field_ty(schema, ty, key), out.get(key), rv);
                out.insert(key.clone(), merged);
            }
            Value::Object(out)
        }
        View::List(items, list) if lhs.is_array() => Value::Array(merge_list(schema, items, list, lhs, rhs)),
        _ => rhs.clone(),
    }
}

/// The elements of both lists: live elements keep their place, applied ones come in the applied order,
/// each shared element merged (kube-apiserver's ordering).
fn merge_list(schema: &Schema, items: Ty, list: &ListType, lhs: &Value, rhs: &Value) -> Vec<Value> {
    let l: Vec<(Option<PathElement>, &Value)> =
        lhs.as_array().into_iter().flatten().enumerate().map(|(i, v)| (item_element(list, v, i).ok(), v)).collect();
    let r = index_list(list, Some(rhs));
    let in_rhs = |pe: &Option<PathElement>| pe.as_ref().is_some_and(|pe| r.iter().any(|(p, _)| p == pe));
    let lhs_value = |pe: &PathElement| l.iter().find(|(p, _)| p.as_ref() == Some(pe)).map(|(_, v)| *v);
    let shared: Vec<&PathElement> = r.iter().map(|(p, _)| p).filter(|p| lhs_value(p).is_some()).collect();
    let mut next_shared = 0;
    let mut merged: Vec<PathElement> = Vec::new();
    let mut out = Vec::with_capacity(l.len() + r.len());
    let (mut li, mut ri) = (0, 0);
    while li < l.len() || ri < r.len() {
        if li < l.len() && ri < r.len() {
            let pe = &l[li].0;
            if pe.as_ref() == Some(&r[ri].0) {
                out.push(merge_walk(schema, items, Some(l[li].1), r[ri].1));
                merged.push(r[ri].0.clone());
                if shared.get(next_shared) == Some(&&r[ri].0) {
                    next_shared += 1;
                }
                li += 1;
                ri += 1;
                continue;
            }
            if in_rhs(pe) && shared.get(next_shared).is_some_and(|s| Some(*s) != pe.as_ref()) {
                li += 1;
                continue;
            }
        }
        if li < l.len() {
            let pe = &l[li].0;
            if !in_rhs(pe) {
                out.push(l[li].1.clone());
                li += 1;
                continue;
            }
            if pe.as_ref().is_some_and(|pe| merged.contains(pe)) {
                li += 1;
                continue;
            }
        }
        if ri < r.len() {
            let (pe, rv) = &r[ri];
            out.push(merge_walk(schema, items, lhs_value(pe), rv));
            merged.push(pe.clone());
            if shared.get(next_shared) == Some(&pe) {
                next_shared += 1;
            }
            ri += 1;
        }
    }
    out
}

/// Removes what a manager applied before (`last`) and applies no more, unless someone owns it (`owned`, which
/// includes the manager's new set). Owning something below a field counts as owning the field.
pub(crate) fn prune(schema: &Schema, value: &mut Value, last: &Set, owned: &Set) {
    prune_walk(schema, Some(schema.root()), value, last, Some(owned));
}

fn prune_walk(schema: &Schema, ty: Ty, value: &mut Value, last: &Set, owned: Option<&Set>) {
    let owns = |pe: &PathElement| owned.is_some_and(|o| o.touches(pe));
    let dropped = |pe: &PathElement| {
        let was_applied = last.has_member(pe) || (matches!(pe, PathElement::Field(_)) && last.child(pe).is_some());
        was_applied && !owns(pe)
    };
    match view(schema, ty, value) {
        View::Leaf => {}
        View::Map(ty) => {
            let Some(map) = value.as_object_mut() else { return };
            let keys: Vec<String> = map.keys().cloned().collect();
            for key in keys {
                let pe = PathElement::Field(key.clone());
                if dropped(&pe) {
                    map.remove(&key);
                } else if let (Some(below), Some(child)) = (last.child(&pe), map.get_mut(&key)) {
                    prune_walk(schema, field_ty(schema, ty, &key), child, below, owned.and_then(|o| o.child(&pe)));
                }
            }
        }
        View::List(items, list) => {
            let list = list.clone();
            let Some(elements) = value.as_array_mut() else { return };
            let mut kept = Vec::with_capacity(elements.len());
            for (i, mut item) in std::mem::take(elements).into_iter().enumerate() {
                let Ok(pe) = item_element(&list, &item, i) else {
                    kept.push(item);
                    continue;
                };
                if dropped(&pe) {
                    continue;
                }
                if let Some(below) = last.child(&pe) {
                    prune_walk(schema, items, &mut item, below, owned.and_then(|o| o.child(&pe)));
                }
                kept.push(item);
            }
            *elements = kept;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment() -> std::sync::Arc<Schema> {
        Schema::builtin("apps", "v1", "Deployment")
    }

    #[test]
    fn the_field_set_of_an_applied_deployment_is_what_kube_apiserver_records() {
        let config = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "nginx", "labels": {"app": "nginx"}},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "nginx"}},
                "template": {"metadata": {"labels": {"app": "nginx"}},
                    "spec": {"containers": [{"name": "nginx", "image": "nginx:1.25",
                                             "ports": [{"containerPort": 80}]}]}}},
        });
        let mut set = to_field_set(&deployment(), &config).unwrap();
        for field in ["apiVersion", "kind"] {
            set.remove(&[PathElement::Field(field.into())]);
        }
        set.remove(&[PathElement::Field("metadata".into()), PathElement::Field("name".into())]);
        assert_eq!(
            set.to_fields_v1_string(),
            r#"{"f:metadata":{"f:labels":{"f:app":{}}},"f:spec":{"f:replicas":{},"f:selector":{},"f:template":{"f:metadata":{"f:labels":{"f:app":{}}},"f:spec":{"f:containers":{"k:{\"name\":\"nginx\"}":{".":{},"f:image":{},"f:name":{},"f:ports":{"k:{\"containerPort\":80,\"protocol\":\"TCP\"}":{".":{},"f:containerPort":{}}}}}}}}}"#
        );
    }

    #[test]
    fn duplicate_keys_and_missing_keys_in_a_configuration_are_errors() {
        let dup = json!({"spec": {"template": {"spec": {"containers": [{"name": "a"}, {"name": "a"}]}}}});
        let err = to_field_set(&deployment(), &dup).unwrap_err();
        assert_eq!(err.path, ".spec.template.spec.containers");
        assert!(err.message.contains(r#"duplicate entries for key [name="a"]"#), "{}", err.message);
        let missing = json!({"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}});
        assert!(to_field_set(&deployment(), &missing).unwrap_err().message.contains("omits key field \"name\""));
    }

    #[test]
    fn map_lists_merge_by_key_and_keep_live_elements() {
        let live = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "a", "image": "a:1", "imagePullPolicy": "Always"},
            {"name": "b", "image": "b:1"},
        ]}}}});
        let config = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "b", "image": "b:2"},
            {"name": "c", "image": "c:1"},
        ]}}}});
        let merged = merge(&deployment(), &live, &config);
        assert_eq!(
            merged["spec"]["template"]["spec"]["containers"],
            json!([
                {"name": "a", "image": "a:1", "imagePullPolicy": "Always"},
                {"name": "b", "image": "b:2"},
                {"name": "c", "image": "c:1"},
            ])
        );
    }

    #[test]
    fn atomic_lists_are_replaced_and_sets_merge_by_value() {
        let live = json!({"metadata": {"finalizers": ["a", "b"]},
                          "spec": {"template": {"spec": {"containers": [{"name": "x", "args": ["1", "2"]}]}}}});
        let config = json!({"metadata": {"finalizers": ["c", "a"]},
                            "spec": {"template": {"spec": {"containers": [{"name": "x", "args": ["3"]}]}}}});
        let merged = merge(&deployment(), &live, &config);
        assert_eq!(merged["spec"]["template"]["spec"]["containers"][0]["args"], json!(["3"]));
        // The applied order leads up to each shared element; live-only elements follow it.
        assert_eq!(merged["metadata"]["finalizers"], json!(["c", "a", "b"]));
    }

    #[test]
    fn comparison_marks_added_objects_and_changed_leaves() {
        let old = json!({"spec": {"replicas": 1, "template": {"spec": {"containers": [{"name": "a", "image": "1"}]}}}});
        let new = json!({"spec": {"replicas": 2, "strategy": {"rollingUpdate": {"maxSurge": 1}},
                                  "template": {"spec": {"containers": [{"name": "a", "image": "1"},
                                                                       {"name": "b", "image": "2"}]}}}});
        let c = compare(&deployment(), &old, &new);
        assert_eq!(c.modified.to_fields_v1(), json!({"f:spec": {"f:replicas": {}}}));
        assert_eq!(
            c.added.to_fields_v1(),
            json!({"f:spec": {
                "f:strategy": {".": {}, "f:rollingUpdate": {".": {}, "f:maxSurge": {}}},
                "f:template": {"f:spec": {"f:containers": {"k:{\"name\":\"b\"}": {".": {}, "f:image": {}, "f:name": {}}}}},
            }})
        );
        assert!(c.removed.is_empty());
        assert!(compare(&deployment(), &old, &old).is_same());
    }

    #[test]
    fn pruning_removes_given_up_fields_unless_someone_owns_them() {
        let mut value = json!({"spec": {"replicas": 3, "paused": true, "template": {"spec": {"containers": [
            {"name": "a", "image": "1", "command": ["x"]}, {"name": "b", "image": "2"}]}}}});
        let last = Set::from_fields_v1(&json!({"f:spec": {"f:replicas": {}, "f:paused": {}, "f:template": {"f:spec": {
            "f:containers": {"k:{\"name\":\"a\"}": {".": {}, "f:name": {}, "f:image": {}, "f:command": {}},
                             "k:{\"name\":\"b\"}": {".": {}, "f:name": {}, "f:image": {}}}}}}}))
        .unwrap();
        // Now applied: replicas and container a without its command; someone else owns paused.
        let owned =
            Set::from_fields_v1(&json!({"f:spec": {"f:replicas": {}, "f:paused": {}, "f:template": {"f:spec": {
            "f:containers": {"k:{\"name\":\"a\"}": {".": {}, "f:name": {}, "f:image": {}}}}}}}))
            .unwrap();
        prune(&deployment(), &mut value, &last, &owned);
        assert_eq!(
            value,
            json!({"spec": {"replicas": 3, "paused": true, "template": {"spec": {"containers": [
                {"name": "a", "image": "1"}]}}}})
        );
    }
}
