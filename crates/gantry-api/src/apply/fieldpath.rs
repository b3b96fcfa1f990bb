//! Field paths and field sets, and their `FieldsV1` form (`metadata.managedFields[].fieldsV1`).
//!
//! A [`Set`] is a tree: each node has *members* (paths that end there) and *children* (paths that go on).
//! Path elements are ordered as kube-apiserver orders them (fields, then keys, then values, then indexes),
//! which is also the order [`Set::to_fields_v1_string`] writes them in.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde_json::{Map, Value};

/// One step of a path into an object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathElement {
    /// A field of an object: `f:<name>`.
    Field(String),
    /// An element of a list keyed by some of its fields: `k:{"name":"web"}`. Sorted by field name.
    Key(Vec<(String, Value)>),
    /// An element of a set, by its value: `v:"a"`.
    Value(Value),
    /// An element of a list without keys, by position: `i:0`.
    Index(usize),
}

fn rank(v: &Value) -> u8 {
    match v {
        Value::Number(_) => 0,
        Value::String(_) => 1,
        Value::Bool(_) => 2,
        Value::Array(_) => 3,
        Value::Object(_) => 4,
        Value::Null => 5,
    }
}

/// The total order kube-apiserver puts values in: numbers (compared as numbers), strings, booleans, lists,
/// maps, null.
pub fn compare_values(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => x.cmp(&y),
            _ => {
                let (x, y) = (x.as_f64().unwrap_or(0.0), y.as_f64().unwrap_or(0.0));
                x.partial_cmp(&y).unwrap_or(Ordering::Equal)
            }
        },
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Array(x), Value::Array(y)) => {
            for (p, q) in x.iter().zip(y) {
                let c = compare_values(p, q);
                if c != Ordering::Equal {
                    return c;
                }
            }
            x.len().cmp(&y.len())
        }
        (Value::Object(x), Value::Object(y)) => {
            // Maps compare by their sorted entries; serde_json's map is sorted already.
            for ((kp, vp), (kq, vq)) in x.iter().zip(y) {
                let c = kp.cmp(kq).then_with(|| compare_values(vp, vq));
                if c != Ordering::Equal {
                    return c;
                }
            }
            x.len().cmp(&y.len())
        }
        (Value::Null, Value::Null) => Ordering::Equal,
        _ => rank(a).cmp(&rank(b)),
    }
}

fn kind_rank(e: &PathElement) -> u8 {
    match e {
        PathElement::Field(_) => 0,
        PathElement::Key(_) => 1,
        PathElement::Value(_) => 2,
        PathElement::Index(_) => 3,
    }
}

impl Ord for PathElement {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (PathElement::Field(a), PathElement::Field(b)) => a.cmp(b),
            (PathElement::Key(a), PathElement::Key(b)) => {
                for ((na, va), (nb, vb)) in a.iter().zip(b) {
                    let c = na.cmp(nb).then_with(|| compare_values(va, vb));
                    if c != Ordering::Equal {
                        return c;
                    }
                }
                a.len().cmp(&b.len())
            }
            (PathElement::Value(a), PathElement::Value(b)) => compare_values(a, b),
            (PathElement::Index(a), PathElement::Index(b)) => a.cmp(b),
            _ => kind_rank(self).cmp(&kind_rank(other)),
        }
    }
}

impl PartialOrd for PathElement {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Compact JSON, as kube-apiserver writes values inside keys.
fn compact(v: &Value) -> String {
    v.to_string()
}

impl PathElement {
    /// The `FieldsV1` key of this element: `f:name`, `k:{...}`, `v:...` or `i:n`.
    pub fn to_fields_v1_key(&self) -> String {
        match self {
            PathElement::Field(name) => format!("f:{name}"),
            PathElement::Key(fields) => {
                let map: Map<String, Value> = fields.iter().cloned().collect();
                format!("k:{}", compact(&Value::Object(map)))
            }
            PathElement::Value(v) => format!("v:{}", compact(v)),
            PathElement::Index(i) => format!("i:{i}"),
        }
    }

    /// Parses a `FieldsV1` key.
    pub fn from_fields_v1_key(key: &str) -> Result<PathElement, FieldsV1Error> {
        let bad = || FieldsV1Error::BadKey { key: key.to_string() };
        let (kind, rest) = key.split_once(':').ok_or_else(bad)?;
        match kind {
            "f" => Ok(PathElement::Field(rest.to_string())),
            "k" => match serde_json::from_str::<Value>(rest).map_err(|_| bad())? {
                Value::Object(map) => Ok(PathElement::Key(map.into_iter().collect())),
                _ => Err(bad()),
            },
            "v" => serde_json::from_str(rest).map(PathElement::Value).map_err(|_| bad()),
            "i" => rest.parse().map(PathElement::Index).map_err(|_| bad()),
            _ => Err(bad()),
        }
    }
}

impl fmt::Display for PathElement {
    /// The form kube-apiserver prints in conflicts: `.name`, `[name="web"]`, `[="a"]`, `[0]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathElement::Field(name) => write!(f, ".{name}"),
            PathElement::Key(fields) => {
                let parts: Vec<String> = fields.iter().map(|(k, v)| format!("{k}={}", compact(v))).collect();
                write!(f, "[{}]", parts.join(","))
            }
            PathElement::Value(v) => write!(f, "[={}]", compact(v)),
            PathElement::Index(i) => write!(f, "[{i}]"),
        }
    }
}

/// A path from the root of an object.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Path(pub Vec<PathElement>);

impl Path {
    /// A path of field names only (`Path::fields(&["spec", "replicas"])`).
    pub fn fields(names: &[&str]) -> Path {
        Path(names.iter().map(|n| PathElement::Field((*n).to_string())).collect())
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for e in &self.0 {
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// Why a `fieldsV1` value could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FieldsV1Error {
    /// A key that is not `f:`, `k:`, `v:`, `i:` or `.`.
    #[error("invalid fieldsV1 key {key:?}")]
    BadKey {
        /// The key.
        key: String,
    },
    /// A value that is not an object.
    #[error("invalid fieldsV1: the value of {key:?} is not an object")]
    NotAnObject {
        /// The key whose value is wrong (empty for the root).
        key: String,
    },
}

/// A set of paths, as a tree.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Set {
    members: BTreeSet<PathElement>,
    children: BTreeMap<PathElement, Set>,
}

impl Set {
    /// The empty set.
    pub fn new() -> Set {
        Set::default()
    }

    /// Whether the set holds no path.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty() && self.children.values().all(Set::is_empty)
    }

    /// Adds a path (the empty path is ignored: the object itself is never owned).
    pub fn insert(&mut self, path: &[PathElement]) {
        match path {
            [] => {}
            [last] => {
                self.members.insert(last.clone());
            }
            // Looked up before inserting: `entry` would clone the element on every call, and most inserts
            // descend through nodes that exist.
            [first, rest @ ..] => match self.children.get_mut(first) {
                Some(child) => child.insert(rest),
                None => self.children.entry(first.clone()).or_default().insert(rest),
            },
        }
    }

    /// Whether the path is a member.
    pub fn has(&self, path: &[PathElement]) -> bool {
        match path {
            [] => false,
            [last] => self.members.contains(last),
            [first, rest @ ..] => self.children.get(first).is_some_and(|c| c.has(rest)),
        }
    }

    /// Whether `pe` is a member of this node.
    pub fn has_member(&self, pe: &PathElement) -> bool {
        self.members.contains(pe)
    }

    /// The paths below `pe`, if any.
    pub fn child(&self, pe: &PathElement) -> Option<&Set> {
        self.children.get(pe)
    }

    /// Whether `pe` is a member or leads to members.
    pub fn touches(&self, pe: &PathElement) -> bool {
        self.members.contains(pe) || self.children.get(pe).is_some_and(|c| !c.is_empty())
    }

    /// Every path that is in `self` or `other`.
    pub fn union(&self, other: &Set) -> Set {
        let mut out = self.clone();
        out.union_with(other);
        out
    }

    /// Adds every path of `other`.
    pub fn union_with(&mut self, other: &Set) {
        self.members.extend(other.members.iter().cloned());
        for (pe, child) in &other.children {
            self.children.entry(pe.clone()).or_default().union_with(child);
        }
    }

    /// Every path of `self` that is not in `other` (paths, not subtrees: a member of `other` does not remove
    /// the paths below it).
    pub fn difference(&self, other: &Set) -> Set {
        let members = self.members.iter().filter(|m| !other.members.contains(*m)).cloned().collect();
        let mut children = BTreeMap::new();
        for (pe, child) in &self.children {
            let rest = match other.children.get(pe) {
                Some(o) => child.difference(o),
                None => child.clone(),
            };
            if !rest.is_empty() {
                children.insert(pe.clone(), rest);
            }
        }
        Set { members, children }
    }

    /// Every path in both sets.
    pub fn intersection(&self, other: &Set) -> Set {
        let members = self.members.intersection(&other.members).cloned().collect();
        let mut children = BTreeMap::new();
        for (pe, child) in &self.children {
            if let Some(o) = other.children.get(pe) {
                let both = child.intersection(o);
                if !both.is_empty() {
                    children.insert(pe.clone(), both);
                }
            }
        }
        Set { members, children }
    }

    /// Removes the top-level field `name` and everything below it.
    pub fn remove_top_field(&mut self, name: &str) {
        let pe = PathElement::Field(name.to_string());
        self.members.remove(&pe);
        self.children.remove(&pe);
    }

    /// Keeps only the top-level field `name` and what is below it.
    pub fn retain_top_field(&mut self, name: &str) {
        let pe = PathElement::Field(name.to_string());
        self.members.retain(|m| *m == pe);
        self.children.retain(|k, _| *k == pe);
    }

    /// Removes one path (not what is below it).
    pub fn remove(&mut self, path: &[PathElement]) {
        match path {
            [] => {}
            [last] => {
                self.members.remove(last);
            }
            [first, rest @ ..] => {
                if let Some(child) = self.children.get_mut(first) {
                    child.remove(rest);
                    if child.is_empty() {
                        self.children.remove(first);
                    }
                }
            }
        }
    }

    /// Every member path, in order.
    pub fn paths(&self) -> Vec<Path> {
        let mut out = Vec::new();
        self.collect(&mut Vec::new(), &mut out);
        out
    }

    fn collect(&self, prefix: &mut Vec<PathElement>, out: &mut Vec<Path>) {
        // A node's members come before the paths of its children, as kube-apiserver iterates them.
        for pe in &self.members {
            prefix.push(pe.clone());
            out.push(Path(prefix.clone()));
            prefix.pop();
        }
        for (pe, child) in &self.children {
            prefix.push(pe.clone());
            child.collect(prefix, out);
            prefix.pop();
        }
    }

    /// Reads the JSON of a `fieldsV1`.
    pub fn from_fields_v1(value: &Value) -> Result<Set, FieldsV1Error> {
        let map = value.as_object().ok_or(FieldsV1Error::NotAnObject { key: String::new() })?;
        Set::from_map(map)
    }

    fn from_map(map: &Map<String, Value>) -> Result<Set, FieldsV1Error> {
        let mut set = Set::new();
        for (key, value) in map {
            if key == "." {
                continue;
            }
            let pe = PathElement::from_fields_v1_key(key)?;
            let inner = value.as_object().ok_or_else(|| FieldsV1Error::NotAnObject { key: key.clone() })?;
            if inner.is_empty() {
                set.members.insert(pe);
                continue;
            }
            if inner.contains_key(".") {
                set.members.insert(pe.clone());
            }
            let child = Set::from_map(inner)?;
            if !child.is_empty() {
                set.children.insert(pe, child);
            }
        }
        Ok(set)
    }

    /// The `fieldsV1` JSON text, byte for byte as kube-apiserver writes it (elements in its order).
    pub fn to_fields_v1_string(&self) -> String {
        let mut out = String::new();
        self.write_v1(false, &mut out);
        out
    }

    fn write_v1(&self, include_self: bool, out: &mut String) {
        out.push('{');
        let mut first = true;
        let mut sep = |out: &mut String| {
            if !std::mem::take(&mut first) {
                out.push(',');
            }
        };
        if include_self {
            sep(out);
            out.push_str("\".\":{}");
        }
        let mut keys: BTreeSet<&PathElement> = self.members.iter().collect();
        keys.extend(self.children.iter().filter(|(_, c)| !c.is_empty()).map(|(k, _)| k));
        for pe in keys {
            sep(out);
            out.push_str(&Value::String(pe.to_fields_v1_key()).to_string());
            out.push(':');
            match self.children.get(pe).filter(|c| !c.is_empty()) {
                Some(child) => child.write_v1(self.members.contains(pe), out),
                None => out.push_str("{}"),
            }
        }
        out.push('}');
    }

    /// The `fieldsV1` as a JSON value, to store in an object. (serde_json sorts object keys by text, so the
    /// order of `k:` keys holding numbers can differ from [`Self::to_fields_v1_string`].)
    pub fn to_fields_v1(&self) -> Value {
        let mut map = Map::new();
        for pe in &self.members {
            map.insert(pe.to_fields_v1_key(), Value::Object(Map::new()));
        }
        for (pe, child) in &self.children {
            if child.is_empty() {
                continue;
            }
            let mut inner = match child.to_fields_v1() {
                Value::Object(m) => m,
                _ => Map::new(),
            };
            if self.members.contains(pe) {
                inner.insert(".".into(), Value::Object(Map::new()));
            }
            map.insert(pe.to_fields_v1_key(), Value::Object(inner));
        }
        Value::Object(map)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A Deployment's `kubectl apply --server-side` entry as kube-apiserver v1.35 writes it.
    const APPLIED: &str = r#"{"f:metadata":{"f:labels":{"f:app":{}}},"f:spec":{"f:replicas":{},"f:selector":{},"f:template":{"f:metadata":{"f:labels":{"f:app":{}}},"f:spec":{"f:containers":{"k:{\"name\":\"nginx\"}":{".":{},"f:image":{},"f:name":{},"f:ports":{"k:{\"containerPort\":80,\"protocol\":\"TCP\"}":{".":{},"f:containerPort":{}}}}}}}}}"#;

    /// A client-side apply entry (operation Update) as kube-apiserver writes it for a create.
    const UPDATED: &str = r#"{"f:metadata":{"f:annotations":{".":{},"f:kubectl.kubernetes.io/last-applied-configuration":{}},"f:labels":{".":{},"f:app":{}}},"f:spec":{"f:progressDeadlineSeconds":{},"f:replicas":{},"f:revisionHistoryLimit":{},"f:selector":{},"f:strategy":{"f:rollingUpdate":{".":{},"f:maxSurge":{},"f:maxUnavailable":{}},"f:type":{}}}}"#;

    #[test]
    fn fields_v1_round_trips_byte_for_byte() {
        for text in [APPLIED, UPDATED] {
            let value: Value = serde_json::from_str(text).unwrap();
            let set = Set::from_fields_v1(&value).unwrap();
            assert_eq!(set.to_fields_v1_string(), text);
            assert_eq!(set.to_fields_v1(), value);
        }
    }

    #[test]
    fn keys_with_numbers_are_ordered_as_numbers() {
        let mut set = Set::new();
        for port in [10, 9] {
            set.insert(&[
                PathElement::Field("ports".into()),
                PathElement::Key(vec![("containerPort".into(), json!(port)), ("protocol".into(), json!("TCP"))]),
            ]);
        }
        assert_eq!(
            set.to_fields_v1_string(),
            r#"{"f:ports":{"k:{\"containerPort\":9,\"protocol\":\"TCP\"}":{},"k:{\"containerPort\":10,\"protocol\":\"TCP\"}":{}}}"#
        );
    }

    #[test]
    fn fields_come_before_keys_values_and_indexes() {
        let mut set = Set::new();
        set.insert(&[PathElement::Index(0)]);
        set.insert(&[PathElement::Value(json!("a"))]);
        set.insert(&[PathElement::Key(vec![("name".into(), json!("x"))])]);
        set.insert(&[PathElement::Field("z".into())]);
        assert_eq!(set.to_fields_v1_string(), r#"{"f:z":{},"k:{\"name\":\"x\"}":{},"v:\"a\"":{},"i:0":{}}"#);
    }

    #[test]
    fn paths_print_as_in_conflict_messages() {
        let path = Path(vec![
            PathElement::Field("spec".into()),
            PathElement::Field("containers".into()),
            PathElement::Key(vec![("name".into(), json!("web"))]),
            PathElement::Field("image".into()),
        ]);
        assert_eq!(path.to_string(), r#".spec.containers[name="web"].image"#);
        assert_eq!(PathElement::Value(json!("a")).to_string(), r#"[="a"]"#);
        assert_eq!(
            PathElement::Key(vec![("containerPort".into(), json!(80)), ("protocol".into(), json!("TCP"))]).to_string(),
            r#"[containerPort=80,protocol="TCP"]"#
        );
    }

    #[test]
    fn set_algebra_works_path_by_path() {
        let a = Set::from_fields_v1(&json!({"f:spec":{"f:a":{},"f:b":{}}})).unwrap();
        let b = Set::from_fields_v1(&json!({"f:spec":{"f:b":{},"f:c":{}}})).unwrap();
        assert_eq!(a.difference(&b).to_fields_v1(), json!({"f:spec":{"f:a":{}}}));
        assert_eq!(a.intersection(&b).to_fields_v1(), json!({"f:spec":{"f:b":{}}}));
        assert_eq!(a.union(&b).paths().len(), 3);
        assert!(a.difference(&a).is_empty());
        assert!(Set::from_fields_v1(&json!({"x:y":{}})).is_err());
    }
}
