//! Strategic merge patch, applied as kube-apiserver applies it.
//!
//! A strategic merge patch is a merge patch whose lists merge where the schema says so:
//! - a list of objects with a merge key merges element by element, matched by that key; a list of scalars
//!   with the merge strategy becomes the union of both; any other list is replaced;
//! - `null` deletes a member; objects merge member by member unless the schema says `replace`;
//! - `$patch: replace` in an object replaces it whole, `$patch: delete` empties it; in a list element,
//!   `$patch: delete` removes the live elements with that key and `$patch: replace` makes the list the patch's
//!   other elements; `$patch: merge` is the default and changes nothing (kube-apiserver rejects it);
//! - `$retainKeys: [...]` in an object drops every live member not named;
//! - `$deleteFromPrimitiveList/<field>: [...]` removes those scalars from the list `<field>`;
//! - `$setElementOrder/<field>: [...]` orders the merged list `<field>`: its elements (merge keys, or the
//!   scalars) first in the given order, the live elements it does not name kept where they were relative to
//!   the others.
//!
//! Without `$setElementOrder`, merged elements named by the patch come in the patch's order and are
//! interleaved with the live-only elements by live position; elements new to the list come before live-only
//! elements that cannot be placed relative to them. This is kube-apiserver's ordering, so the order kubectl
//! users see is the same.
//!
//! Where kube-apiserver copies a patch value into the object as it is (a member the object lacks, a replaced
//! list, a new list element), Gantry applies it to an empty value instead, so directives and `null`s never
//! reach the stored object.

use std::collections::{HashMap, HashSet};
use std::fmt;

use serde_json::{Map, Value};

use super::schema::{Strategy, TypeSchema};

const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList";
const SET_ELEMENT_ORDER: &str = "$setElementOrder";

/// A strategic merge patch that could not be applied, and where in the object.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{problem} (at {path})")]
pub struct StrategicMergeError {
    /// Where: `.spec.template.spec.containers[name=web].env`, or `.` for the object itself.
    pub path: String,
    /// What.
    pub problem: Problem,
}

/// What is wrong with a strategic merge patch.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Problem {
    /// `$patch` with a value other than `replace`, `delete` or `merge`.
    #[error("unknown patch type: {0}")]
    UnknownDirective(String),
    /// `$retainKeys` that is not a list.
    #[error("invalid patch format of retainKeys: it must be a list of field names")]
    RetainKeysNotAList,
    /// A member set by the patch but missing from its `$retainKeys` list.
    #[error("invalid patch format of retainKeys: {field:?} is set but not retained")]
    NotRetained {
        /// The member.
        field: String,
    },
    /// A `$deleteFromPrimitiveList` key without `/<field>`, or whose value deletes objects.
    #[error("invalid patch format of primitive list: {0}")]
    BadDeleteFromPrimitiveList(&'static str),
    /// A `$setElementOrder` key without `/<field>`, or whose value is not a list of the list's merge keys.
    #[error("invalid patch format of setElementOrder list: {0}")]
    BadSetElementOrder(&'static str),
    /// The patch's list names its elements in another order than its `$setElementOrder` list, or names one
    /// that list lacks.
    #[error("the order in the patch list doesn't match the $setElementOrder list")]
    SetElementOrderMismatch,
    /// A list element without the list's merge key.
    #[error("{element} does not contain declared merge key: {key}")]
    MissingMergeKey {
        /// The merge key.
        key: &'static str,
        /// The element, as compact JSON.
        element: String,
    },
    /// A list merged by key whose elements are not objects, or a list of objects with no merge key.
    #[error("list elements must be objects with a merge key, or scalars in a list merged as a set")]
    ElementsDoNotFitStrategy,
    /// A merged list whose elements are not all of one JSON type, or include `null`.
    #[error("list element types are not identical")]
    MixedElementTypes,
    /// A merged list whose elements are lists.
    #[error("lists of lists are not supported")]
    ListOfLists,
}

/// Where the merge is, for error messages.
#[derive(Clone)]
struct Path(String);

impl Path {
    fn root() -> Path {
        Path(String::new())
    }

    fn member(&self, key: &str) -> Path {
        Path(format!("{}.{key}", self.0))
    }

    fn element(&self, key: &str, value: &Value) -> Path {
        Path(format!("{}[{key}={}]", self.0, compact(value)))
    }

    fn index(&self, index: usize) -> Path {
        Path(format!("{}[{index}]", self.0))
    }

    fn error(&self, problem: Problem) -> StrategicMergeError {
        StrategicMergeError { path: self.to_string(), problem }
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() { "." } else { &self.0 })
    }
}

fn compact(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

type Result<T> = std::result::Result<T, StrategicMergeError>;

/// What the schema says about one value: its strategy and, for objects and list elements, its type.
#[derive(Clone, Copy, Default)]
struct Meta {
    strategy: Strategy,
    schema: Option<&'static TypeSchema>,
}

impl Meta {
    fn of(schema: Option<&'static TypeSchema>, member: &str) -> Meta {
        schema
            .and_then(|s| s.field(member))
            .map(|f| Meta { strategy: f.strategy, schema: f.schema })
            .unwrap_or_default()
    }

    fn object(schema: Option<&'static TypeSchema>) -> Meta {
        Meta { strategy: Strategy::Default, schema }
    }
}

/// Applies `patch` to `original` (an object of the kind `schema` describes).
pub(super) fn apply(
    original: &Value,
    patch: Map<String, Value>,
    schema: &'static TypeSchema,
) -> std::result::Result<Value, StrategicMergeError> {
    let original = match original {
        Value::Object(map) => map.clone(),
        _ => Map::new(),
    };
    merge_map(original, patch, Some(schema), &Path::root()).map(Value::Object)
}

fn merge_map(
    mut original: Map<String, Value>,
    mut patch: Map<String, Value>,
    schema: Option<&'static TypeSchema>,
    path: &Path,
) -> Result<Map<String, Value>> {
    if let Some(directive) = patch.remove(DIRECTIVE) {
        match directive.as_str() {
            Some("replace") => return merge_map(Map::new(), patch, schema, path),
            Some("delete") => return Ok(Map::new()),
            Some("merge") => {}
            _ => return Err(path.error(Problem::UnknownDirective(compact(&directive)))),
        }
    }
    if let Some(retain) = patch.remove(RETAIN_KEYS) {
        retain_keys(&mut original, &patch, retain, path)?;
    }
    let order_keys: Vec<String> = patch.keys().filter(|k| k.starts_with(SET_ELEMENT_ORDER)).cloned().collect();
    for key in order_keys {
        if let Some(order) = patch.remove(&key) {
            let member = directive_target(&key, SET_ELEMENT_ORDER)
                .ok_or_else(|| path.error(Problem::BadSetElementOrder("the key must be $setElementOrder/<field>")))?;
            set_element_order(&mut original, &mut patch, member, order, schema, path)?;
        }
    }
    let mut deletions = Vec::new();
    for (key, value) in patch {
        if key.starts_with(DELETE_FROM_PRIMITIVE_LIST) {
            let member = directive_target(&key, DELETE_FROM_PRIMITIVE_LIST).ok_or_else(|| {
                path.error(Problem::BadDeleteFromPrimitiveList("the key must be $deleteFromPrimitiveList/<field>"))
            })?;
            deletions.push((member.to_string(), value));
            continue;
        }
        if value.is_null() {
            original.remove(&key);
            continue;
        }
        let meta = Meta::of(schema, &key);
        let at = path.member(&key);
        let merged = match original.remove(&key) {
            Some(live) => merge_value(live, value, meta, &at)?,
            None => materialize(value, meta, &at)?,
        };
        original.insert(key, merged);
    }
    // Deletions run after the merges so a list the patch both adds to and deletes from ends without the
    // deleted scalars; kube-apiserver's order is unspecified there.
    for (member, to_delete) in deletions {
        delete_from_primitive_list(&mut original, &member, to_delete, &path.member(&member))?;
    }
    Ok(original)
}

/// The field a `$prefix/<field>` directive key names.
fn directive_target<'k>(key: &'k str, prefix: &str) -> Option<&'k str> {
    key.strip_prefix(prefix)?.strip_prefix('/')
}

fn merge_value(live: Value, patch: Value, meta: Meta, path: &Path) -> Result<Value> {
    match (live, patch) {
        (Value::Object(live), Value::Object(patch)) if meta.strategy != Strategy::Replace => {
            merge_map(live, patch, meta.schema, path).map(Value::Object)
        }
        (Value::Array(live), Value::Array(patch)) if meta.strategy.merges_lists() => {
            merge_list(live, patch, meta, path).map(|merged| Value::Array(merged.items))
        }
        (_, patch) => materialize(patch, meta, path),
    }
}

/// The value a patch value stands for where there is nothing to merge it with: the patch applied to an empty
/// value of its own shape.
fn materialize(value: Value, meta: Meta, path: &Path) -> Result<Value> {
    match value {
        Value::Object(patch) => merge_map(Map::new(), patch, meta.schema, path).map(Value::Object),
        Value::Array(patch) if meta.strategy.merges_lists() => {
            merge_list(Vec::new(), patch, meta, path).map(|merged| Value::Array(merged.items))
        }
        Value::Array(items) => items
            .into_iter()
            .enumerate()
            .map(|(i, item)| materialize(item, Meta::object(meta.schema), &path.index(i)))
            .collect::<Result<Vec<_>>>()
            .map(Value::Array),
        scalar => Ok(scalar),
    }
}

fn retain_keys(
    original: &mut Map<String, Value>,
    patch: &Map<String, Value>,
    retain: Value,
    path: &Path,
) -> Result<()> {
    let Value::Array(names) = retain else {
        return Err(path.error(Problem::RetainKeysNotAList));
    };
    let retained = |key: &str| names.iter().any(|name| name.as_str() == Some(key));
    for (key, value) in patch {
        let directive = key.starts_with(DELETE_FROM_PRIMITIVE_LIST) || key.starts_with(SET_ELEMENT_ORDER);
        if !value.is_null() && !directive && !retained(key) {
            return Err(path.error(Problem::NotRetained { field: key.clone() }));
        }
    }
    original.retain(|key, _| retained(key));
    Ok(())
}

fn delete_from_primitive_list(
    original: &mut Map<String, Value>,
    member: &str,
    to_delete: Value,
    path: &Path,
) -> Result<()> {
    // As in kube-apiserver, deleting from a list the object lacks (or holds as something else) does nothing.
    let (Some(Value::Array(live)), Value::Array(to_delete)) = (original.get_mut(member), to_delete) else {
        return Ok(());
    };
    match element_kind(live.iter().chain(&to_delete), path)? {
        ElementKind::Object => Err(path.error(Problem::BadDeleteFromPrimitiveList("it can only delete scalars"))),
        ElementKind::None | ElementKind::Scalar => {
            let to_delete: HashSet<String> = to_delete.iter().map(Value::to_string).collect();
            live.retain(|item| !to_delete.contains(&item.to_string()));
            Ok(())
        }
    }
}

/// The kind of a merged list's elements.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ElementKind {
    None,
    Object,
    Scalar,
}

fn element_kind<'v>(items: impl Iterator<Item = &'v Value>, path: &Path) -> Result<ElementKind> {
    let same = |a: &Value, b: &Value| std::mem::discriminant(a) == std::mem::discriminant(b);
    let mut first: Option<&Value> = None;
    for item in items {
        match (first, item) {
            (_, Value::Array(_)) => return Err(path.error(Problem::ListOfLists)),
            (_, Value::Null) => return Err(path.error(Problem::MixedElementTypes)),
            (None, _) => first = Some(item),
            (Some(first), item) if !same(first, item) => return Err(path.error(Problem::MixedElementTypes)),
            _ => {}
        }
    }
    Ok(match first {
        None => ElementKind::None,
        Some(Value::Object(_)) => ElementKind::Object,
        Some(_) => ElementKind::Scalar,
    })
}

/// A merged list, and the live order kube-apiserver compares against when it enforces `$setElementOrder`.
struct MergedList {
    items: Vec<Value>,
    /// The identities of the live elements as kube-apiserver sees them after the merge: it reads the live
    /// list's storage, which the merge overwrote with the surviving elements followed by the appended ones.
    live_view: Vec<Id>,
}

fn merge_list(live: Vec<Value>, patch: Vec<Value>, meta: Meta, path: &Path) -> Result<MergedList> {
    if live.is_empty() && patch.is_empty() {
        return Ok(MergedList { items: live, live_view: Vec::new() });
    }
    match (element_kind(live.iter().chain(&patch), path)?, meta.strategy) {
        (ElementKind::Object, Strategy::MergeByKey(key)) => merge_objects(live, patch, key, meta.schema, path),
        (ElementKind::Scalar | ElementKind::None, Strategy::MergeSet) => Ok(merge_scalars(live, patch)),
        _ => Err(path.error(Problem::ElementsDoNotFitStrategy)),
    }
}

fn merge_scalars(live: Vec<Value>, patch: Vec<Value>) -> MergedList {
    let mut seen = HashSet::with_capacity(live.len() + patch.len());
    let merged: Vec<Value> = live.iter().chain(&patch).filter(|item| seen.insert(item.to_string())).cloned().collect();
    let live_view = identities(&live, None);
    let patch_order = Positions::of(identities(&patch, None));
    let items = order_merged(merged, &patch_order, &Positions::of(live_view.iter().cloned()), None);
    MergedList { items, live_view }
}

fn merge_objects(
    mut live: Vec<Value>,
    patch: Vec<Value>,
    key: &'static str,
    schema: Option<&'static TypeSchema>,
    path: &Path,
) -> Result<MergedList> {
    let live_len = live.len();
    let mut plain: Vec<Map<String, Value>> = Vec::with_capacity(patch.len());
    let mut deleted = HashSet::new();
    let mut replace = false;
    for item in patch {
        let Value::Object(mut item) = item else {
            return Err(path.error(Problem::ElementsDoNotFitStrategy));
        };
        match item.get(DIRECTIVE).map(|d| (d.as_str(), d)) {
            None => plain.push(item),
            Some((Some("delete"), _)) => {
                deleted.insert(required_key(&item, key, path)?.to_string());
            }
            Some((Some("replace"), _)) => replace = true,
            Some((Some("merge"), _)) => {
                item.remove(DIRECTIVE);
                plain.push(item);
            }
            Some((_, directive)) => return Err(path.error(Problem::UnknownDirective(compact(directive)))),
        }
    }
    if !deleted.is_empty() {
        live.retain(|element| !identity(element, Some(key)).is_some_and(|id| deleted.contains(&id)));
    }
    if replace {
        // The list becomes the patch's other elements, in the patch's order.
        let mut items = Vec::with_capacity(plain.len());
        for item in plain {
            let at = path.element(key, required_key(&item, key, path)?);
            items.push(Value::Object(merge_map(Map::new(), item, schema, &at)?));
        }
        return Ok(MergedList { items, live_view: identities(&live, Some(key)) });
    }
    let survivors = identities(&live, Some(key));
    let mut index: HashMap<String, usize> = HashMap::with_capacity(live.len() + plain.len());
    for (i, id) in survivors.iter().enumerate() {
        if let Some(id) = id {
            index.entry(id.clone()).or_insert(i);
        }
    }
    let mut patch_ids = Vec::with_capacity(plain.len());
    for item in plain {
        let id_value = required_key(&item, key, path)?;
        let at = path.element(key, id_value);
        let id = id_value.to_string();
        match index.get(&id) {
            Some(&i) => {
                let existing = match std::mem::take(&mut live[i]) {
                    Value::Object(existing) => existing,
                    _ => Map::new(),
                };
                live[i] = Value::Object(merge_map(existing, item, schema, &at)?);
            }
            None => {
                index.insert(id.clone(), live.len());
                live.push(Value::Object(merge_map(Map::new(), item, schema, &at)?));
            }
        }
        patch_ids.push(Some(id));
    }
    for element in &live {
        required_key_of(element, key, path)?;
    }
    let mut live_view = identities(&live, Some(key));
    live_view.truncate(live_len);
    let items = order_merged(live, &Positions::of(patch_ids), &Positions::of(survivors), Some(key));
    Ok(MergedList { items, live_view })
}

fn required_key<'m>(item: &'m Map<String, Value>, key: &'static str, path: &Path) -> Result<&'m Value> {
    item.get(key)
        .ok_or_else(|| path.error(Problem::MissingMergeKey { key, element: Value::Object(item.clone()).to_string() }))
}

fn required_key_of<'v>(item: &'v Value, key: &'static str, path: &Path) -> Result<&'v Value> {
    match item {
        Value::Object(map) => required_key(map, key, path),
        other => Err(path.error(Problem::MissingMergeKey { key, element: other.to_string() })),
    }
}

/// What identifies a list element when lists are merged and ordered: the JSON text of its merge key's value
/// for objects (`None` if it has none), of the element itself for scalars.
type Id = Option<String>;

fn identity(item: &Value, key: Option<&str>) -> Id {
    match key {
        Some(key) => item.get(key).map(Value::to_string),
        None => Some(item.to_string()),
    }
}

fn identities(items: &[Value], key: Option<&str>) -> Vec<Id> {
    items.iter().map(|item| identity(item, key)).collect()
}

/// The position of each identity in a list (its first occurrence).
struct Positions(HashMap<Id, usize>);

impl Positions {
    fn of(ids: impl IntoIterator<Item = Id>) -> Positions {
        let mut positions = HashMap::new();
        for (i, id) in ids.into_iter().enumerate() {
            positions.entry(id).or_insert(i);
        }
        Positions(positions)
    }

    fn get(&self, id: &Id) -> Option<usize> {
        self.0.get(id).copied()
    }
}

/// Orders a merged list as kube-apiserver's `normalizeElementOrder` does: the elements `patch_order` names, in
/// that order, interleaved with the others (kept in `live_order`'s order): an other element goes first when
/// both it and the next named element are in `live_order` and it comes earlier there.
fn order_merged(merged: Vec<Value>, patch_order: &Positions, live_order: &Positions, key: Option<&str>) -> Vec<Value> {
    type Tagged = Vec<(Id, Value)>;
    let (mut named, mut others): (Tagged, Tagged) =
        merged.into_iter().map(|item| (identity(&item, key), item)).partition(|(id, _)| patch_order.get(id).is_some());
    named.sort_by_key(|(id, _)| patch_order.get(id));
    others.sort_by_key(|(id, _)| live_order.get(id).unwrap_or(usize::MAX));
    let mut result = Vec::with_capacity(named.len() + others.len());
    let mut named = named.into_iter().peekable();
    let mut others = others.into_iter().peekable();
    loop {
        let take_other = match (others.peek(), named.peek()) {
            (Some((other, _)), Some((next, _))) => {
                matches!((live_order.get(other), live_order.get(next)), (Some(o), Some(n)) if o < n)
            }
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => break,
        };
        let item = if take_other { others.next() } else { named.next() };
        result.extend(item.map(|(_, value)| value));
    }
    result
}

fn set_element_order(
    original: &mut Map<String, Value>,
    patch: &mut Map<String, Value>,
    member: &str,
    order: Value,
    schema: Option<&'static TypeSchema>,
    path: &Path,
) -> Result<()> {
    let meta = Meta::of(schema, member);
    let at = path.member(member);
    let Value::Array(order) = order else {
        return Err(at.error(Problem::BadSetElementOrder("it must be a list")));
    };
    // A list the schema replaces whole keeps the patch's order; there is nothing to arrange.
    if !meta.strategy.merges_lists() {
        return Ok(());
    }
    // A patch value that is not a list replaces the live value in the main pass.
    if patch.get(member).is_some_and(|v| !v.is_array()) {
        return Ok(());
    }
    let key = meta.strategy.merge_key();
    let order_ids = order
        .iter()
        .map(|item| match key {
            Some(key) => required_key_of(item, key, &at).map(|id| Some(id.to_string())),
            None if item.is_array() || item.is_object() => {
                Err(at.error(Problem::BadSetElementOrder("a list of scalars is ordered by scalars")))
            }
            None => Ok(identity(item, None)),
        })
        .collect::<Result<Vec<Id>>>()?;
    let patch_list = match patch.remove(member) {
        Some(Value::Array(items)) => Some(items),
        _ => None,
    };
    if let Some(items) = &patch_list {
        check_order(items, &order_ids, key, &at)?;
    }
    let live_list = match original.get(member) {
        Some(Value::Array(_)) => match original.remove(member) {
            Some(Value::Array(items)) => Some(items),
            _ => None,
        },
        _ => None,
    };
    let (merged, live_view) = match (live_list, patch_list) {
        (None, None) => return Ok(()),
        (Some(live), None) => {
            let kind = element_kind(live.iter(), &at)?;
            if (kind == ElementKind::Object) != key.is_some() && kind != ElementKind::None {
                return Err(at.error(Problem::ElementsDoNotFitStrategy));
            }
            let view = identities(&live, key);
            (live, view)
        }
        (None, Some(patch)) => (merge_list(Vec::new(), patch, meta, &at)?.items, Vec::new()),
        (Some(live), Some(patch)) => {
            let merged = merge_list(live, patch, meta, &at)?;
            (merged.items, merged.live_view)
        }
    };
    if let Some(key) = key {
        for element in &merged {
            required_key_of(element, key, &at)?;
        }
    }
    let ordered = order_merged(merged, &Positions::of(order_ids), &Positions::of(live_view), key);
    original.insert(member.to_string(), Value::Array(ordered));
    Ok(())
}

/// Checks that the patch list names its elements in the `$setElementOrder` list's order, and names none that
/// list lacks (kube-apiserver's `validatePatchWithSetOrderList`). Elements deleting or carrying a directive
/// are not ordered.
fn check_order(patch_list: &[Value], order_ids: &[Id], key: Option<&'static str>, path: &Path) -> Result<()> {
    if patch_list.is_empty() || order_ids.is_empty() {
        return Ok(());
    }
    let mut ordered = Vec::with_capacity(patch_list.len());
    for item in patch_list {
        match key {
            Some(key) => {
                let Value::Object(map) = item else {
                    return Err(path.error(Problem::ElementsDoNotFitStrategy));
                };
                if !map.contains_key(DIRECTIVE) {
                    ordered.push(Some(required_key(map, key, path)?.to_string()));
                }
            }
            None => ordered.push(identity(item, None)),
        }
    }
    let mut expected = order_ids.iter();
    for id in &ordered {
        if !expected.any(|o| o == id) {
            return Err(path.error(Problem::SetElementOrderMismatch));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::patch::schema;
    use serde_json::json;

    fn smp(
        schema: &'static TypeSchema,
        original: Value,
        patch: Value,
    ) -> std::result::Result<Value, StrategicMergeError> {
        let Value::Object(patch) = patch else { panic!("patches are objects") };
        apply(&original, patch, schema)
    }

    fn names(list: &Value, key: &str) -> Vec<String> {
        list.as_array().expect("a list").iter().map(|item| compact(&item[key])).collect()
    }

    fn deployment() -> Value {
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": "web",
                "namespace": "default",
                "labels": {"app": "web", "tier": "front"},
                "finalizers": ["a.example.com/one", "b.example.com/two"]
            },
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": {"app": "web"}},
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {
                        "containers": [
                            {
                                "name": "nginx",
                                "image": "nginx:1.27",
                                "imagePullPolicy": "IfNotPresent",
                                "args": ["--port", "80"],
                                "ports": [{"containerPort": 80, "protocol": "TCP"}],
                                "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                                "volumeMounts": [{"name": "data", "mountPath": "/data"}]
                            },
                            {"name": "sidecar", "image": "busybox:1", "terminationMessagePath": "/dev/termination-log"}
                        ],
                        "tolerations": [{"key": "k1", "operator": "Exists"}],
                        "volumes": [{"name": "data", "emptyDir": {}}]
                    }
                }
            }
        })
    }

    fn containers(object: &Value) -> &Value {
        &object["spec"]["template"]["spec"]["containers"]
    }

    #[test]
    fn a_container_image_changes_by_name() {
        let patch =
            json!({"spec": {"template": {"spec": {"containers": [{"name": "sidecar", "image": "busybox:2"}]}}}});
        let patched = smp(&schema::DEPLOYMENT, deployment(), patch).unwrap();
        let c = containers(&patched);
        assert_eq!(names(c, "name"), ["nginx", "sidecar"]);
        assert_eq!(c[1]["image"], "busybox:2");
        assert_eq!(c[1]["terminationMessagePath"], "/dev/termination-log", "unpatched members stay");
        assert_eq!(c[0], containers(&deployment())[0], "other containers are untouched");
    }

    #[test]
    fn kubectl_set_image_patch_applies() {
        // The body `kubectl set image deployment/web nginx=nginx:2` sends.
        let body = r#"{"spec":{"template":{"spec":{"$setElementOrder/containers":[{"name":"nginx"}],"containers":[{"image":"nginx:2","name":"nginx"}]}}}}"#;
        let original = json!({"spec": {"template": {"spec": {"containers": [{"name": "nginx", "image": "nginx:1"}]}}}});
        let patched = smp(&schema::DEPLOYMENT, original, serde_json::from_str(body).unwrap()).unwrap();
        assert_eq!(containers(&patched), &json!([{"name": "nginx", "image": "nginx:2"}]));
    }

    #[test]
    fn an_env_var_is_added_without_losing_the_others() {
        let patch = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "nginx", "env": [{"name": "C", "value": "3"}]}
        ]}}}});
        let patched = smp(&schema::DEPLOYMENT, deployment(), patch).unwrap();
        let env = &containers(&patched)[0]["env"];
        // A new element comes before the live elements it cannot be placed against, as in kube-apiserver.
        assert_eq!(names(env, "name"), ["C", "A", "B"]);
        assert_eq!(env[0]["value"], "3");
    }

    #[test]
    fn an_env_var_value_changes_in_place() {
        let patch = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "nginx", "env": [{"name": "B", "value": "two"}]}
        ]}}}});
        let patched = smp(&schema::DEPLOYMENT, deployment(), patch).unwrap();
        assert_eq!(containers(&patched)[0]["env"], json!([{"name": "A", "value": "1"}, {"name": "B", "value": "two"}]));
    }

    #[test]
    fn a_container_is_deleted_with_patch_delete() {
        let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "sidecar", "$patch": "delete"}]}}}});
        let patched = smp(&schema::DEPLOYMENT, deployment(), patch).unwrap();
        assert_eq!(names(containers(&patched), "name"), ["nginx"]);
    }

    #[test]
    fn deleting_a_missing_element_changes_nothing() {
        let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "ghost", "$patch": "delete"}]}}}});
        let patched = smp(&schema::DEPLOYMENT, deployment(), patch).unwrap();
        assert_eq!(patched, deployment());
    }

    #[test]
    fn patch_replace_in_a_list_keeps_only_the_patch_elements() {
        let patch = json!({"spec": {"template": {"spec": {"containers": [
            {"$patch": "replace"}, {"name": "only", "image": "only:1"}
        ]}}}});
        let patched = smp(&schema::DEPLOYMENT, deployment(), patch).unwrap();
        assert_eq!(containers(&patched), &json!([{"name": "only", "image": "only:1"}]));
    }

    #[test]
    fn patch_replace_alone_empties_a_list() {
        let patch = json!({"spec": {"template": {"spec": {"containers": [{"$patch": "replace"}]}}}});
        let patched = smp(&schema::DEPLOYMENT, deployment(), patch).unwrap();
        assert_eq!(containers(&patched), &json!([]));
    }

    #[test]
    fn set_element_order_reorders_the_live_list() {
        let patch = json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "sidecar"}, {"name": "nginx"}]
        }}}});
        let patched = smp(&schema::DEPLOYMENT, deployment(), patch).unwrap();
        assert_eq!(names(containers(&patched), "name"), ["sidecar", "nginx"]);
        assert_eq!(containers(&patched)[1], containers(&deployment())[0]);
    }

    #[test]
    fn set_element_order_places_added_elements() {
        let patch = json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "nginx"}, {"name": "new"}, {"name": "sidecar"}],
            "containers": [{"name": "new", "image": "new:1"}]
        }}}});
        let patched = smp(&schema::DEPLOYMENT, deployment(), patch).unwrap();
        assert_eq!(names(containers(&patched), "name"), ["nginx", "new", "sidecar"]);
    }

    #[test]
    fn set_element_order_keeps_live_only_elements_in_place() {
        let original = json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}, {"name": "c"}]}});
        let patch = json!({"spec": {"$setElementOrder/containers": [{"name": "c"}, {"name": "a"}]}});
        let patched = smp(&schema::POD, original, patch).unwrap();
        // b was before c in the live list, so it stays before c.
        assert_eq!(names(&patched["spec"]["containers"], "name"), ["b", "c", "a"]);
    }

    #[test]
    fn set_element_order_naming_absent_elements_ignores_them() {
        let original = json!({"spec": {"containers": [{"name": "a"}, {"name": "c"}]}});
        let patch = json!({"spec": {
            "$setElementOrder/containers": [{"name": "c"}, {"name": "b"}, {"name": "a"}],
            "containers": [{"name": "c", "image": "c"}, {"name": "a", "image": "a"}]
        }});
        let patched = smp(&schema::POD, original, patch).unwrap();
        assert_eq!(patched["spec"]["containers"], json!([{"name": "c", "image": "c"}, {"name": "a", "image": "a"}]));
    }

    #[test]
    fn adding_and_deleting_with_live_only_elements_orders_as_kube_apiserver_does() {
        // kube-apiserver's own case: the live list [1, 2, 4], a patch deleting 1 and adding 3 with the order
        // [2, 3]. The live-only 4 stays before the added 3.
        let original = json!({"spec": {"containers": [
            {"name": "1"}, {"name": "2", "image": "b"}, {"name": "4", "image": "c"}
        ]}});
        let patch = json!({"spec": {
            "$setElementOrder/containers": [{"name": "2"}, {"name": "3"}],
            "containers": [{"name": "3"}, {"name": "1", "$patch": "delete"}]
        }});
        let patched = smp(&schema::POD, original, patch).unwrap();
        assert_eq!(
            patched["spec"]["containers"],
            json!([{"name": "2", "image": "b"}, {"name": "4", "image": "c"}, {"name": "3"}])
        );
    }

    #[test]
    fn set_element_order_out_of_step_with_the_patch_list_is_refused() {
        let patch = json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "nginx"}, {"name": "sidecar"}],
            "containers": [{"name": "sidecar", "image": "s"}, {"name": "nginx", "image": "n"}]
        }}}});
        let err = smp(&schema::DEPLOYMENT, deployment(), patch).unwrap_err();
        assert_eq!(err.problem, Problem::SetElementOrderMismatch);
        assert_eq!(err.path, ".spec.template.spec.containers");
        let patch = json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "nginx"}],
            "containers": [{"name": "other", "image": "o"}]
        }}}});
        let err = smp(&schema::DEPLOYMENT, deployment(), patch).unwrap_err();
        assert_eq!(err.problem, Problem::SetElementOrderMismatch);
    }

    #[test]
    fn set_element_order_ignores_deleted_elements() {
        let patch = json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "nginx"}],
            "containers": [{"name": "sidecar", "$patch": "delete"}]
        }}}});
        let patched = smp(&schema::DEPLOYMENT, deployment(), patch).unwrap();
        assert_eq!(names(containers(&patched), "name"), ["nginx"]);
    }

    #[test]
    fn malformed_set_element_order_is_refused() {
        let cases = [
            json!({"spec": {"$setElementOrder": [{"name": "a"}]}}),
            json!({"spec": {"$setElementOrder/containers": {"name": "a"}}}),
            json!({"spec": {"$setElementOrder/containers": [{"image": "a"}]}}),
        ];
        for patch in cases {
            let err = smp(&schema::POD, json!({"spec": {"containers": [{"name": "a"}]}}), patch.clone()).unwrap_err();
            assert!(
                matches!(err.problem, Problem::BadSetElementOrder(_) | Problem::MissingMergeKey { .. }),
                "{patch}: {err}"
            );
        }
    }

    #[test]
    fn set_element_order_of_a_list_without_merge_strategy_keeps_the_patch_list() {
        let original = json!({"spec": {"tolerations": [{"key": "a"}, {"key": "b"}]}});
        let patch = json!({"spec": {
            "$setElementOrder/tolerations": [{"key": "b"}],
            "tolerations": [{"key": "b"}]
        }});
        let patched = smp(&schema::POD, original, patch).unwrap();
        assert_eq!(patched["spec"]["tolerations"], json!([{"key": "b"}]));
    }

    #[test]
    fn retain_keys_switches_a_deployment_to_recreate() {
        // What kubectl apply sends when the manifest switches to Recreate and never set rollingUpdate.
        let patch = json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}});
        let patched = smp(&schema::DEPLOYMENT, deployment(), patch).unwrap();
        assert_eq!(patched["spec"]["strategy"], json!({"type": "Recreate"}));
    }

    #[test]
    fn retain_keys_switches_a_volume_source() {
        let patch = json!({"spec": {"template": {"spec": {"volumes": [
            {"name": "data", "$retainKeys": ["configMap", "name"], "configMap": {"name": "cfg"}}
        ]}}}});
        let patched = smp(&schema::DEPLOYMENT, deployment(), patch).unwrap();
        assert_eq!(
            patched["spec"]["template"]["spec"]["volumes"],
            json!([{"name": "data", "configMap": {"name": "cfg"}}])
        );
    }

    #[test]
    fn retain_keys_must_name_every_member_the_patch_sets() {
        let patch = json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": {}}}});
        let err = smp(&schema::DEPLOYMENT, deployment(), patch).unwrap_err();
        assert_eq!(err.problem, Problem::NotRetained { field: "rollingUpdate".into() });
        assert_eq!(err.path, ".spec.strategy");
        let patch = json!({"spec": {"strategy": {"$retainKeys": "type", "type": "Recreate"}}});
        let err = smp(&schema::DEPLOYMENT, deployment(), patch).unwrap_err();
        assert_eq!(err.problem, Problem::RetainKeysNotAList);
    }

    #[test]
    fn retain_keys_allows_nulls_for_members_it_drops() {
        let patch = json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": null}}});
        let patched = smp(&schema::DEPLOYMENT, deployment(), patch).unwrap();
        assert_eq!(patched["spec"]["strategy"], json!({"type": "Recreate"}));
    }

    #[test]
    fn a_label_is_deleted_with_null() {
        let patch = json!({"metadata": {"labels": {"tier": null, "absent": null}}});
        let patched = smp(&schema::DEPLOYMENT, deployment(), patch).unwrap();
        assert_eq!(patched["metadata"]["labels"], json!({"app": "web"}));
    }

    #[test]
    fn finalizers_merge_as_a_set() {
        let patch = json!({"metadata": {"finalizers": ["b.example.com/two", "c.example.com/three"]}});
        let patched = smp(&schema::DEPLOYMENT, deployment(), patch).unwrap();
        assert_eq!(
            patched["metadata"]["finalizers"],
            json!(["a.example.com/one", "b.example.com/two", "c.example.com/three"])
        );
    }

    #[test]
    fn a_new_finalizer_comes_first_as_in_kube_apiserver() {
        let patch = json!({"metadata": {"finalizers": ["c.example.com/three"]}});
        let patched = smp(&schema::DEPLOYMENT, deployment(), patch).unwrap();
        assert_eq!(
            patched["metadata"]["finalizers"],
            json!(["c.example.com/three", "a.example.com/one", "b.example.com/two"])
        );
    }

    #[test]
    fn a_finalizer_is_removed_with_delete_from_primitive_list() {
        let patch = json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a.example.com/one", "absent"]}});
        let patched = smp(&schema::DEPLOYMENT, deployment(), patch).unwrap();
        assert_eq!(patched["metadata"]["finalizers"], json!(["b.example.com/two"]));
    }

    #[test]
    fn deleting_from_an_absent_primitive_list_adds_nothing() {
        let patch = json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["x"]}});
        let patched = smp(&schema::POD, json!({"metadata": {"name": "p"}}), patch).unwrap();
        assert_eq!(patched, json!({"metadata": {"name": "p"}}));
    }

    #[test]
    fn delete_from_primitive_list_works_on_lists_without_merge_strategy() {
        let patch = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "nginx", "$deleteFromPrimitiveList/args": ["80"]}
        ]}}}});
        let patched = smp(&schema::DEPLOYMENT, deployment(), patch).unwrap();
        assert_eq!(containers(&patched)[0]["args"], json!(["--port"]));
    }

    #[test]
    fn kubectl_apply_finalizer_patch_adds_deletes_and_orders() {
        let patch = json!({"metadata": {
            "$setElementOrder/finalizers": ["b.example.com/two", "c.example.com/three"],
            "$deleteFromPrimitiveList/finalizers": ["a.example.com/one"],
            "finalizers": ["c.example.com/three"]
        }});
        let patched = smp(&schema::DEPLOYMENT, deployment(), patch).unwrap();
        assert_eq!(patched["metadata"]["finalizers"], json!(["b.example.com/two", "c.example.com/three"]));
    }

    #[test]
    fn malformed_delete_from_primitive_list_is_refused() {
        let patch = json!({"metadata": {"$deleteFromPrimitiveList": ["a"]}});
        let err = smp(&schema::DEPLOYMENT, deployment(), patch).unwrap_err();
        assert!(matches!(err.problem, Problem::BadDeleteFromPrimitiveList(_)));
        let patch =
            json!({"spec": {"template": {"spec": {"$deleteFromPrimitiveList/containers": [{"name": "nginx"}]}}}});
        let err = smp(&schema::DEPLOYMENT, deployment(), patch).unwrap_err();
        assert!(matches!(err.problem, Problem::BadDeleteFromPrimitiveList(_)));
    }

    #[test]
    fn service_ports_merge_by_port() {
        let original = json!({"spec": {"ports": [
            {"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"},
            {"name": "https", "port": 443, "targetPort": 8443, "protocol": "TCP"}
        ]}});
        let patch = json!({"spec": {"ports": [{"port": 80, "targetPort": 9090}, {"port": 8081, "name": "admin"}]}});
        let patched = smp(&schema::SERVICE, original, patch).unwrap();
        assert_eq!(
            patched["spec"]["ports"],
            json!([
                {"name": "http", "port": 80, "targetPort": 9090, "protocol": "TCP"},
                {"name": "admin", "port": 8081},
                {"name": "https", "port": 443, "targetPort": 8443, "protocol": "TCP"}
            ])
        );
    }

    #[test]
    fn container_ports_merge_by_container_port() {
        let patch = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "nginx", "ports": [{"containerPort": 80, "name": "http"}]}
        ]}}}});
        let patched = smp(&schema::DEPLOYMENT, deployment(), patch).unwrap();
        assert_eq!(containers(&patched)[0]["ports"], json!([{"containerPort": 80, "protocol": "TCP", "name": "http"}]));
    }

    #[test]
    fn lists_without_merge_strategy_are_replaced() {
        let patch = json!({"spec": {"template": {"spec": {
            "tolerations": [{"key": "k2", "operator": "Exists"}],
            "containers": [{"name": "nginx", "args": ["--verbose"]}]
        }}}});
        let patched = smp(&schema::DEPLOYMENT, deployment(), patch).unwrap();
        assert_eq!(patched["spec"]["template"]["spec"]["tolerations"], json!([{"key": "k2", "operator": "Exists"}]));
        assert_eq!(containers(&patched)[0]["args"], json!(["--verbose"]));
    }

    #[test]
    fn unknown_kinds_of_fields_merge_objects_and_replace_lists() {
        let original = json!({"spec": {"custom": {"a": 1, "list": [1, 2]}}});
        let patch = json!({"spec": {"custom": {"b": 2, "list": [3]}}});
        let patched = smp(&schema::OBJECT, original, patch).unwrap();
        assert_eq!(patched["spec"]["custom"], json!({"a": 1, "b": 2, "list": [3]}));
    }

    #[test]
    fn a_nested_pod_template_in_a_cron_job_merges_containers() {
        let original = json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [
            {"name": "job", "image": "job:1", "env": [{"name": "A", "value": "1"}]}
        ]}}}}}});
        let patch = json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [
            {"name": "job", "env": [{"name": "A", "value": "2"}]}
        ]}}}}}});
        let patched = smp(&schema::CRON_JOB, original, patch).unwrap();
        assert_eq!(
            patched["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"],
            json!([{"name": "job", "image": "job:1", "env": [{"name": "A", "value": "2"}]}])
        );
    }

    #[test]
    fn every_workload_kind_merges_template_containers() {
        for kind in [&schema::REPLICA_SET, &schema::STATEFUL_SET, &schema::DAEMON_SET, &schema::JOB] {
            let original = json!({"spec": {"template": {"spec": {"containers": [{"name": "a"}, {"name": "b"}]}}}});
            let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "b", "image": "b:2"}]}}}});
            let patched = smp(kind, original, patch).unwrap();
            assert_eq!(
                patched["spec"]["template"]["spec"]["containers"],
                json!([{"name": "a"}, {"name": "b", "image": "b:2"}]),
                "{}",
                kind.name
            );
        }
    }

    #[test]
    fn pod_disruption_budget_selector_is_replaced_whole() {
        let original = json!({"spec": {"minAvailable": 1, "selector": {"matchLabels": {"a": "1"}}}});
        let patch = json!({"spec": {"selector": {"matchExpressions": [{"key": "b", "operator": "Exists"}]}}});
        let patched = smp(&schema::POD_DISRUPTION_BUDGET, original, patch).unwrap();
        assert_eq!(patched["spec"]["selector"], json!({"matchExpressions": [{"key": "b", "operator": "Exists"}]}));
        assert_eq!(patched["spec"]["minAvailable"], 1);
    }

    #[test]
    fn patch_replace_in_an_object_replaces_it() {
        let patch = json!({"metadata": {"labels": {"$patch": "replace", "only": "this"}}});
        let patched = smp(&schema::DEPLOYMENT, deployment(), patch).unwrap();
        assert_eq!(patched["metadata"]["labels"], json!({"only": "this"}));
    }

    #[test]
    fn patch_delete_in_an_object_empties_it() {
        let patch = json!({"metadata": {"labels": {"$patch": "delete"}}});
        let patched = smp(&schema::DEPLOYMENT, deployment(), patch).unwrap();
        assert_eq!(patched["metadata"]["labels"], json!({}));
    }

    #[test]
    fn patch_merge_is_the_default() {
        let patch = json!({"metadata": {"labels": {"$patch": "merge", "env": "prod"}}});
        let patched = smp(&schema::DEPLOYMENT, deployment(), patch).unwrap();
        assert_eq!(patched["metadata"]["labels"], json!({"app": "web", "tier": "front", "env": "prod"}));
    }

    #[test]
    fn unknown_patch_directives_are_refused_with_their_path() {
        let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "nginx", "$patch": "explode"}]}}}});
        let err = smp(&schema::DEPLOYMENT, deployment(), patch).unwrap_err();
        assert_eq!(err.problem, Problem::UnknownDirective("explode".into()));
        assert_eq!(err.path, ".spec.template.spec.containers");
        let err = smp(&schema::DEPLOYMENT, deployment(), json!({"metadata": {"$patch": 1}})).unwrap_err();
        assert_eq!(err.problem, Problem::UnknownDirective("1".into()));
        assert_eq!(err.path, ".metadata");
    }

    #[test]
    fn list_elements_without_the_merge_key_are_refused() {
        let patch = json!({"spec": {"template": {"spec": {"containers": [{"image": "nameless"}]}}}});
        let err = smp(&schema::DEPLOYMENT, deployment(), patch).unwrap_err();
        assert!(matches!(&err.problem, Problem::MissingMergeKey { key: "name", .. }), "{err}");
        let patch = json!({"spec": {"template": {"spec": {"containers": [{"$patch": "delete"}]}}}});
        let err = smp(&schema::DEPLOYMENT, deployment(), patch).unwrap_err();
        assert!(matches!(&err.problem, Problem::MissingMergeKey { key: "name", .. }), "{err}");
    }

    #[test]
    fn merged_lists_of_mixed_or_nested_elements_are_refused() {
        let err = smp(&schema::DEPLOYMENT, deployment(), json!({"metadata": {"finalizers": [1]}})).unwrap_err();
        assert_eq!(err.problem, Problem::MixedElementTypes);
        let err = smp(&schema::DEPLOYMENT, deployment(), json!({"metadata": {"finalizers": [null]}})).unwrap_err();
        assert_eq!(err.problem, Problem::MixedElementTypes);
        let err = smp(&schema::DEPLOYMENT, deployment(), json!({"metadata": {"finalizers": [["x"]]}})).unwrap_err();
        assert_eq!(err.problem, Problem::ListOfLists);
        let patch = json!({"spec": {"template": {"spec": {"containers": ["nginx"]}}}});
        let err = smp(&schema::DEPLOYMENT, deployment(), patch).unwrap_err();
        assert_eq!(err.problem, Problem::MixedElementTypes);
        let err = smp(&schema::DEPLOYMENT, deployment(), json!({"metadata": {"finalizers": [{"a": 1}]}})).unwrap_err();
        assert_eq!(err.problem, Problem::MixedElementTypes);
        let patch = json!({"metadata": {"finalizers": [{"a": 1}]}});
        let err = smp(&schema::DEPLOYMENT, json!({"metadata": {}}), patch).unwrap_err();
        assert_eq!(err.problem, Problem::ElementsDoNotFitStrategy);
    }

    #[test]
    fn new_members_are_taken_from_the_patch_without_directives_or_nulls() {
        let original = json!({"metadata": {"name": "web"}});
        let patch = json!({"spec": {
            "replicas": 2,
            "paused": null,
            "template": {"spec": {"containers": [
                {"name": "a", "image": "a:1", "command": null},
                {"name": "gone", "$patch": "delete"}
            ]}}
        }});
        let patched = smp(&schema::DEPLOYMENT, original, patch).unwrap();
        assert_eq!(
            patched,
            json!({"metadata": {"name": "web"}, "spec": {"replicas": 2, "template": {"spec": {"containers": [
                {"name": "a", "image": "a:1"}
            ]}}}})
        );
    }

    #[test]
    fn a_patch_value_of_another_type_replaces_the_live_value() {
        let original = json!({"metadata": {"creationTimestamp": null, "labels": "not-a-map"}});
        let patch = json!({"metadata": {"labels": {"a": "1", "b": null}}});
        let patched = smp(&schema::DEPLOYMENT, original, patch).unwrap();
        assert_eq!(patched["metadata"]["labels"], json!({"a": "1"}));
    }

    #[test]
    fn duplicate_live_elements_are_all_deleted() {
        let original = json!({"spec": {"containers": [{"name": "a"}, {"name": "a", "x": 1}, {"name": "b"}]}});
        let patch = json!({"spec": {"containers": [{"name": "a", "$patch": "delete"}]}});
        let patched = smp(&schema::POD, original, patch).unwrap();
        assert_eq!(patched["spec"]["containers"], json!([{"name": "b"}]));
    }

    #[test]
    fn patch_order_wins_over_live_order_for_named_elements() {
        // kube-apiserver's case: live [1, 2, 3], patch [3, 1] gives [2, 3, 1].
        let original = json!({"spec": {"containers": [{"name": "1"}, {"name": "2"}, {"name": "3"}]}});
        let patch = json!({"spec": {"containers": [{"name": "3", "image": "c"}, {"name": "1", "image": "a"}]}});
        let patched = smp(&schema::POD, original, patch).unwrap();
        assert_eq!(names(&patched["spec"]["containers"], "name"), ["2", "3", "1"]);
        let original = json!({"metadata": {"finalizers": ["1", "2", "3"]}});
        let patched = smp(&schema::POD, original, json!({"metadata": {"finalizers": ["3", "1"]}})).unwrap();
        assert_eq!(patched["metadata"]["finalizers"], json!(["2", "3", "1"]));
    }

    #[test]
    fn owner_references_merge_by_uid() {
        let original = json!({"metadata": {"ownerReferences": [{"uid": "u1", "kind": "ReplicaSet", "name": "rs"}]}});
        let patch = json!({"metadata": {"ownerReferences": [{"uid": "u1", "controller": true}]}});
        let patched = smp(&schema::POD, original, patch).unwrap();
        assert_eq!(
            patched["metadata"]["ownerReferences"],
            json!([{"uid": "u1", "kind": "ReplicaSet", "name": "rs", "controller": true}])
        );
    }

    #[test]
    fn status_conditions_merge_by_type() {
        let original = json!({"status": {"conditions": [
            {"type": "Ready", "status": "False"}, {"type": "Initialized", "status": "True"}
        ]}});
        let patch = json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}});
        let patched = smp(&schema::POD, original, patch).unwrap();
        assert_eq!(
            patched["status"]["conditions"],
            json!([{"type": "Ready", "status": "True"}, {"type": "Initialized", "status": "True"}])
        );
    }

    #[test]
    fn a_node_is_cordoned() {
        // The body `kubectl cordon` sends.
        let original = json!({"metadata": {"name": "n1"}, "spec": {"podCIDRs": ["10.0.0.0/24"]}});
        let patched = smp(&schema::NODE, original, json!({"spec": {"unschedulable": true}})).unwrap();
        assert_eq!(patched["spec"], json!({"podCIDRs": ["10.0.0.0/24"], "unschedulable": true}));
    }

    #[test]
    fn kubectl_rollout_restart_patch_adds_a_template_annotation() {
        let body = r#"{"spec":{"template":{"metadata":{"annotations":{"kubectl.kubernetes.io/restartedAt":"2026-11-27T18:56:03Z"}}}}}"#;
        let patched = smp(&schema::DEPLOYMENT, deployment(), serde_json::from_str(body).unwrap()).unwrap();
        assert_eq!(
            patched["spec"]["template"]["metadata"],
            json!({"labels": {"app": "web"}, "annotations": {"kubectl.kubernetes.io/restartedAt": "2026-11-27T18:56:03Z"}})
        );
    }

    /// The live object of a Deployment created by `kubectl apply` and defaulted by the server.
    fn applied_deployment(last_applied: &str) -> Value {
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": "web",
                "namespace": "default",
                "uid": "7c1d0c31-4a5b-4b7a-9f7e-2f0b1a6f3e11",
                "resourceVersion": "104",
                "generation": 1,
                "labels": {"app": "web"},
                "annotations": {
                    "deployment.kubernetes.io/revision": "1",
                    "kubectl.kubernetes.io/last-applied-configuration": last_applied
                }
            },
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": {"app": "web"}},
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
                "revisionHistoryLimit": 10,
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {
                        "containers": [
                            {
                                "name": "nginx",
                                "image": "nginx:1.27",
                                "ports": [{"containerPort": 80, "protocol": "TCP"}],
                                "imagePullPolicy": "IfNotPresent",
                                "terminationMessagePath": "/dev/termination-log",
                                "terminationMessagePolicy": "File"
                            },
                            {
                                "name": "log",
                                "image": "busybox:1",
                                "imagePullPolicy": "IfNotPresent",
                                "terminationMessagePath": "/dev/termination-log",
                                "terminationMessagePolicy": "File"
                            }
                        ],
                        "restartPolicy": "Always",
                        "dnsPolicy": "ClusterFirst"
                    }
                }
            },
            "status": {"replicas": 3, "conditions": [{"type": "Available", "status": "True"}]}
        })
    }

    #[test]
    fn a_kubectl_apply_three_way_patch_applies() {
        // The previous manifest had nginx:1.27 and the log container; the new one changes the image, adds an
        // env var, drops the log container and adds a metrics container. This is the patch kubectl computes.
        let old = r#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"annotations":{},"labels":{"app":"web"},"name":"web","namespace":"default"},"spec":{"replicas":3,"selector":{"matchLabels":{"app":"web"}},"template":{"metadata":{"labels":{"app":"web"}},"spec":{"containers":[{"image":"nginx:1.27","name":"nginx","ports":[{"containerPort":80}]},{"image":"busybox:1","name":"log"}]}}}}"#;
        let new = r#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"annotations":{},"labels":{"app":"web"},"name":"web","namespace":"default"},"spec":{"replicas":3,"selector":{"matchLabels":{"app":"web"}},"template":{"metadata":{"labels":{"app":"web"}},"spec":{"containers":[{"env":[{"name":"MODE","value":"prod"}],"image":"nginx:1.28","name":"nginx","ports":[{"containerPort":80}]},{"image":"prom/exporter:1","name":"metrics"}]}}}}"#;
        let patch = json!({
            "metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": format!("{new}\n")}},
            "spec": {"template": {"spec": {
                "$setElementOrder/containers": [{"name": "nginx"}, {"name": "metrics"}],
                "containers": [
                    {"env": [{"name": "MODE", "value": "prod"}], "image": "nginx:1.28", "name": "nginx"},
                    {"image": "prom/exporter:1", "name": "metrics"},
                    {"$patch": "delete", "name": "log"}
                ]
            }}}
        });
        let live = applied_deployment(&format!("{old}\n"));
        let patched = smp(&schema::DEPLOYMENT, live.clone(), patch).unwrap();

        let annotations = &patched["metadata"]["annotations"];
        assert_eq!(annotations["kubectl.kubernetes.io/last-applied-configuration"], format!("{new}\n"));
        assert_eq!(annotations["deployment.kubernetes.io/revision"], "1", "other annotations stay");
        let c = containers(&patched);
        assert_eq!(names(c, "name"), ["nginx", "metrics"]);
        assert_eq!(
            c[0],
            json!({
                "name": "nginx",
                "image": "nginx:1.28",
                "env": [{"name": "MODE", "value": "prod"}],
                "ports": [{"containerPort": 80, "protocol": "TCP"}],
                "imagePullPolicy": "IfNotPresent",
                "terminationMessagePath": "/dev/termination-log",
                "terminationMessagePolicy": "File"
            })
        );
        assert_eq!(c[1], json!({"name": "metrics", "image": "prom/exporter:1"}));
        // Everything the patch does not touch is as it was.
        let mut expected_rest = live;
        let mut got_rest = patched.clone();
        for object in [&mut expected_rest, &mut got_rest] {
            object["spec"]["template"]["spec"]["containers"] = Value::Null;
            object["metadata"]["annotations"] = Value::Null;
        }
        assert_eq!(got_rest, expected_rest);
    }

    #[test]
    fn a_kubectl_apply_patch_that_drops_a_field_from_the_manifest_deletes_it() {
        // The previous manifest set replicas and an env var; the new one sets neither.
        let patch = json!({
            "spec": {
                "replicas": null,
                "template": {"spec": {
                    "$setElementOrder/containers": [{"name": "nginx"}, {"name": "sidecar"}],
                    "containers": [{"name": "nginx", "env": [{"$patch": "delete", "name": "B"}], "$setElementOrder/env": [{"name": "A"}]}]
                }}
            }
        });
        let patched = smp(&schema::DEPLOYMENT, deployment(), patch).unwrap();
        assert!(patched["spec"].get("replicas").is_none());
        assert_eq!(containers(&patched)[0]["env"], json!([{"name": "A", "value": "1"}]));
        assert_eq!(names(containers(&patched), "name"), ["nginx", "sidecar"]);
    }

    #[test]
    fn paths_in_errors_name_list_elements_by_merge_key() {
        let patch = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "nginx", "env": [{"value": "no name"}]}
        ]}}}});
        let err = smp(&schema::DEPLOYMENT, deployment(), patch).unwrap_err();
        assert_eq!(err.path, ".spec.template.spec.containers[name=nginx].env");
        assert!(err.to_string().contains("does not contain declared merge key: name"), "{err}");
    }

    #[test]
    fn volume_mounts_merge_by_mount_path_and_pull_secrets_by_name() {
        let original = json!({"spec": {
            "imagePullSecrets": [{"name": "reg1"}],
            "containers": [{"name": "a", "volumeMounts": [{"name": "v", "mountPath": "/a", "readOnly": true}]}]
        }});
        let patch = json!({"spec": {
            "imagePullSecrets": [{"name": "reg2"}],
            "containers": [{"name": "a", "volumeMounts": [{"name": "w", "mountPath": "/a"}, {"name": "x", "mountPath": "/x"}]}]
        }});
        let patched = smp(&schema::POD, original, patch).unwrap();
        assert_eq!(patched["spec"]["imagePullSecrets"], json!([{"name": "reg2"}, {"name": "reg1"}]));
        assert_eq!(
            patched["spec"]["containers"][0]["volumeMounts"],
            json!([{"name": "w", "mountPath": "/a", "readOnly": true}, {"name": "x", "mountPath": "/x"}])
        );
    }

    #[test]
    fn facts_deep_inside_an_ephemeral_volume_apply() {
        let original = json!({"spec": {"volumes": [{"name": "scratch", "ephemeral": {"volumeClaimTemplate": {
            "metadata": {"finalizers": ["a"]}, "spec": {"accessModes": ["ReadWriteOnce"]}
        }}}]}});
        let patch = json!({"spec": {"volumes": [{"name": "scratch", "ephemeral": {"volumeClaimTemplate": {
            "metadata": {"finalizers": ["b"]}, "spec": {"accessModes": ["ReadOnlyMany"]}
        }}}]}});
        let patched = smp(&schema::POD, original, patch).unwrap();
        let template = &patched["spec"]["volumes"][0]["ephemeral"]["volumeClaimTemplate"];
        assert_eq!(template["metadata"]["finalizers"], json!(["b", "a"]), "finalizers merge");
        assert_eq!(template["spec"]["accessModes"], json!(["ReadOnlyMany"]), "access modes are replaced");
    }

    #[test]
    fn autoscaler_conditions_merge_by_type() {
        let original = json!({"status": {"conditions": [{"type": "AbleToScale", "status": "True"}]}});
        let patch = json!({"status": {"conditions": [{"type": "ScalingActive", "status": "False"}]}});
        let patched = smp(&schema::HORIZONTAL_POD_AUTOSCALER, original, patch).unwrap();
        assert_eq!(names(&patched["status"]["conditions"], "type"), ["ScalingActive", "AbleToScale"]);
    }

    #[test]
    fn long_lists_merge_without_quadratic_cost() {
        let live: Vec<String> = (0..20_000).map(|i| format!("live-{i}")).collect();
        let added: Vec<String> = (0..20_000).map(|i| format!("added-{i}")).collect();
        let deleted: Vec<String> = live.iter().step_by(2).cloned().collect();
        let patch = json!({"metadata": {"finalizers": added, "$deleteFromPrimitiveList/finalizers": deleted}});
        let patched = smp(&schema::POD, json!({"metadata": {"finalizers": live}}), patch).unwrap();
        let finalizers = patched["metadata"]["finalizers"].as_array().unwrap();
        assert_eq!(finalizers.len(), 30_000);
        assert_eq!(finalizers[0], "added-0");
        assert_eq!(finalizers[20_000], "live-1");

        let containers: Vec<Value> = (0..20_000).map(|i| json!({"name": format!("c{i}")})).collect();
        let updates: Vec<Value> = (0..20_000).rev().map(|i| json!({"name": format!("c{i}"), "image": "x"})).collect();
        let patched =
            smp(&schema::POD, json!({"spec": {"containers": containers}}), json!({"spec": {"containers": updates}}))
                .unwrap();
        let merged = patched["spec"]["containers"].as_array().unwrap();
        assert_eq!(merged.len(), 20_000);
        assert_eq!(merged[0], json!({"name": "c19999", "image": "x"}), "the patch's order wins");
    }

    #[test]
    fn deeply_nested_unknown_members_merge() {
        let mut original = json!({"leaf": 1});
        let mut patch = json!({"leaf": null, "new": true});
        for _ in 0..100 {
            original = json!({"nested": original});
            patch = json!({"nested": patch});
        }
        let patched = smp(&schema::OBJECT, json!({"spec": original}), json!({"spec": patch})).unwrap();
        let mut inner = &patched["spec"];
        for _ in 0..100 {
            inner = &inner["nested"];
        }
        assert_eq!(inner, &json!({"new": true}));
    }

    #[test]
    fn an_empty_patch_changes_nothing() {
        assert_eq!(smp(&schema::DEPLOYMENT, deployment(), json!({})).unwrap(), deployment());
    }

    #[test]
    fn a_top_level_patch_delete_empties_the_object() {
        assert_eq!(smp(&schema::DEPLOYMENT, deployment(), json!({"$patch": "delete"})).unwrap(), json!({}));
    }
}
