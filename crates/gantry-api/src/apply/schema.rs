//! Which parts of an object merge element by element and which are replaced whole: the facts server-side
//! apply needs from a kind's OpenAPI schema (`x-kubernetes-list-type`, `-list-map-keys`, `-map-type`,
//! `-patch-merge-key`, `-int-or-string`, `-preserve-unknown-fields`).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::{Map, Value};

/// How a list is merged and owned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListType {
    /// Replaced whole, owned as one field (the default).
    Atomic,
    /// A set of scalars: merged by value, each value owned apart (`v:"a"`).
    Set,
    /// A list of objects identified by some of their fields: merged by key, each element owned apart
    /// (`k:{"name":"web"}`).
    Map {
        /// The key fields, in the order the schema names them.
        keys: Vec<String>,
        /// Values of key fields an element may omit (kube-apiserver's key defaults, e.g. `protocol: TCP`).
        defaults: BTreeMap<String, Value>,
    },
}

/// What a schema says about the value at a path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape<'a> {
    /// A scalar, an int-or-string, or anything else owned as one leaf.
    Scalar,
    /// Nothing is known: objects are granular (every field deduced), lists atomic, scalars leaves.
    Deduced,
    /// An object: granular (each field owned apart) unless `atomic`.
    Map {
        /// `x-kubernetes-map-type: atomic`.
        atomic: bool,
    },
    /// A list.
    List(&'a ListType),
}

/// An index into a schema's nodes.
pub(crate) type NodeId = usize;

#[derive(Clone, Debug)]
pub(crate) enum Node {
    Scalar,
    Deduced,
    Map { fields: HashMap<String, NodeId>, additional: Option<NodeId>, atomic: bool },
    List { items: NodeId, list: ListType },
}

/// The list and map semantics of one kind, compiled from its schema. Cheap to share behind an `Arc`.
#[derive(Clone, Debug)]
pub struct Schema {
    nodes: Vec<Node>,
    root: NodeId,
}

/// `(group, version, kind)`.
type GroupVersionKind = (String, String, String);

const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";

impl Schema {
    /// The schema of nothing known: objects granular, lists atomic (what kube-apiserver deduces).
    pub fn deduced() -> Schema {
        Schema { nodes: vec![Node::Deduced], root: 0 }
    }

    /// Compiles the schema named `root` among OpenAPI v3 `components.schemas`, resolving `$ref` and `allOf`.
    pub fn from_components(components: &Map<String, Value>, root: &str) -> Schema {
        let mut builder = Builder { components, nodes: Vec::new(), named: HashMap::new() };
        let root = builder.named(root);
        Schema { nodes: builder.nodes, root }
    }

    /// The schema of a built-in kind, built from the OpenAPI schemas Gantry publishes (once per kind; later
    /// calls share it). A kind without a published schema gets the deduced schema.
    pub fn builtin(group: &str, version: &str, kind: &str) -> Arc<Schema> {
        static CACHE: OnceLock<Mutex<HashMap<GroupVersionKind, Arc<Schema>>>> = OnceLock::new();
        let cache = CACHE.get_or_init(Default::default);
        let key = (group.to_string(), version.to_string(), kind.to_string());
        if let Some(found) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
            return found.clone();
        }
        let (name, components) = crate::openapi::kind_components(group, version, kind);
        let built = Arc::new(Schema::from_components(&components, &name));
        cache.lock().unwrap_or_else(|e| e.into_inner()).entry(key).or_insert(built).clone()
    }

    /// Compiles a CustomResourceDefinition's `openAPIV3Schema` (no references). Lists without
    /// `x-kubernetes-list-type` are atomic, objects granular; `metadata` follows `ObjectMeta` as for every kind.
    pub fn from_crd_schema(schema: &Value) -> Schema {
        let (_, components) = crate::openapi::kind_components("", "v1", "ConfigMap");
        let mut builder = Builder { components: &components, nodes: Vec::new(), named: HashMap::new() };
        let root = builder.inline(schema);
        let meta = builder.named(OBJECT_META);
        let scalar = builder.push(Node::Scalar);
        if let Some(Node::Map { fields, .. }) = builder.nodes.get_mut(root) {
            fields.insert("metadata".into(), meta);
            fields.entry("apiVersion".into()).or_insert(scalar);
            fields.entry("kind".into()).or_insert(scalar);
        } else {
            // A root that is not an object schema (preserve-unknown-fields only): keep it open, but with
            // real metadata.
            let fields = HashMap::from([
                ("metadata".to_string(), meta),
                ("apiVersion".to_string(), scalar),
                ("kind".to_string(), scalar),
            ]);
            let deduced = builder.push(Node::Deduced);
            builder.nodes[root] = Node::Map { fields, additional: Some(deduced), atomic: false };
        }
        Schema { nodes: builder.nodes, root }
    }

    pub(crate) fn root(&self) -> NodeId {
        self.root
    }

    pub(crate) fn node(&self, id: NodeId) -> &Node {
        self.nodes.get(id).unwrap_or(&Node::Deduced)
    }

    /// The node of field `name` of the object node `id`.
    pub(crate) fn field(&self, id: NodeId, name: &str) -> Option<NodeId> {
        match self.node(id) {
            Node::Map { fields, additional, .. } => fields.get(name).copied().or(*additional),
            _ => None,
        }
    }

    /// Whether `name` is a declared field (a property) of the object node `id`.
    pub(crate) fn declares(&self, id: NodeId, name: &str) -> bool {
        matches!(self.node(id), Node::Map { fields, .. } if fields.contains_key(name))
    }

    /// What the schema says about the value at `path` (field names; a list is stepped through to its
    /// elements). `None` when the path leaves the schema.
    pub fn shape_at(&self, path: &[&str]) -> Option<Shape<'_>> {
        let mut id = Some(self.root);
        for name in path {
            let mut current = id?;
            if let Node::List { items, .. } = self.node(current) {
                current = *items;
            }
            id = match self.node(current) {
                Node::Deduced => return Some(Shape::Deduced),
                _ => self.field(current, name),
            };
        }
        Some(match self.node(id?) {
            Node::Scalar => Shape::Scalar,
            Node::Deduced => Shape::Deduced,
            Node::Map { atomic, .. } => Shape::Map { atomic: *atomic },
            Node::List { list, .. } => Shape::List(list),
        })
    }
}

struct Builder<'a> {
    components: &'a Map<String, Value>,
    nodes: Vec<Node>,
    named: HashMap<String, NodeId>,
}

/// The component a schema refers to, directly or as the single member of `allOf`/`anyOf`/`oneOf`.
fn reference(schema: &Value) -> Option<&str> {
    let direct = schema.get("$ref").and_then(Value::as_str);
    let wrapped = || {
        ["allOf", "anyOf", "oneOf"]
            .iter()
            .find_map(|k| schema.get(*k)?.as_array()?.iter().find_map(|s| s.get("$ref").and_then(Value::as_str)))
    };
    direct.or_else(wrapped).map(|r| r.strip_prefix("#/components/schemas/").unwrap_or(r))
}

impl Builder<'_> {
    fn push(&mut self, node: Node) -> NodeId {
        self.nodes.push(node);
        self.nodes.len() - 1
    }

    fn named(&mut self, name: &str) -> NodeId {
        if let Some(id) = self.named.get(name) {
            return *id;
        }
        // Registered before it is built, so that recursive types end.
        let id = self.push(Node::Deduced);
        self.named.insert(name.to_string(), id);
        if let Some(schema) = self.components.get(name) {
            let node = self.node_of(schema);
            self.nodes[id] = node;
        }
        id
    }

    fn resolve<'s>(&'s self, schema: &'s Value) -> &'s Value {
        let mut current = schema;
        for _ in 0..8 {
            match reference(current).and_then(|name| self.components.get(name)) {
                Some(next) => current = next,
                None => break,
            }
        }
        current
    }

    /// The node of a property or of list items: a reference, possibly with its own map type.
    fn build(&mut self, schema: &Value) -> NodeId {
        let Some(name) = reference(schema) else { return self.inline(schema) };
        let id = self.named(name);
        match (schema.get("x-kubernetes-map-type").and_then(Value::as_str), self.nodes[id].clone()) {
            (Some(map_type), Node::Map { fields, additional, .. }) => {
                self.push(Node::Map { fields, additional, atomic: map_type == "atomic" })
            }
            _ => id,
        }
    }

    fn inline(&mut self, schema: &Value) -> NodeId {
        let node = self.node_of(schema);
        self.push(node)
    }

    fn node_of(&mut self, schema: &Value) -> Node {
        if schema.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true)) {
            return Node::Scalar;
        }
        let ty = schema.get("type").and_then(Value::as_str);
        let properties = schema.get("properties").and_then(Value::as_object);
        let preserve = schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
        if ty == Some("array") || schema.get("items").is_some() {
            let items = match schema.get("items") {
                Some(items) => self.build(items),
                None => self.push(Node::Deduced),
            };
            let list = self.list_type(schema);
            return Node::List { items, list };
        }
        if ty == Some("object") || properties.is_some() || schema.get("additionalProperties").is_some() {
            if preserve && properties.is_none_or(|p| p.is_empty()) {
                return Node::Deduced;
            }
            let mut fields = HashMap::new();
            for (name, property) in properties.into_iter().flatten() {
                let id = self.build(property);
                fields.insert(name.clone(), id);
            }
            let additional = match schema.get("additionalProperties") {
                Some(Value::Object(a)) if !a.is_empty() => Some(self.build(&Value::Object(a.clone()))),
                Some(Value::Object(_)) | Some(Value::Bool(true)) => Some(self.push(Node::Deduced)),
                _ if preserve => Some(self.push(Node::Deduced)),
                _ => None,
            };
            let atomic = schema.get("x-kubernetes-map-type").and_then(Value::as_str) == Some("atomic");
            return Node::Map { fields, additional, atomic };
        }
        if let Some(name) = reference(schema) {
            let id = self.named(name);
            return self.nodes[id].clone();
        }
        match ty {
            Some(_) => Node::Scalar,
            None if preserve => Node::Deduced,
            // `oneOf` of scalar types, `format`-only schemas and the like.
            None if schema.get("oneOf").is_some() || schema.get("anyOf").is_some() => Node::Scalar,
            None => Node::Deduced,
        }
    }

    fn list_type(&mut self, schema: &Value) -> ListType {
        let explicit = schema.get("x-kubernetes-list-type").and_then(Value::as_str);
        let strategy = schema.get("x-kubernetes-patch-strategy").and_then(Value::as_str).unwrap_or("");
        let merge_key = schema.get("x-kubernetes-patch-merge-key").and_then(Value::as_str);
        let keys: Vec<String> = match explicit {
            Some("map") => schema
                .get("x-kubernetes-list-map-keys")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
                .unwrap_or_default(),
            Some("set") => return ListType::Set,
            Some(_) => return ListType::Atomic,
            // Without a list type, a list with a merge strategy merges as its patch strategy says.
            None if strategy.split(',').any(|s| s == "merge") => match merge_key {
                Some(key) => vec![key.to_string()],
                None => return ListType::Set,
            },
            None => return ListType::Atomic,
        };
        if keys.is_empty() {
            return ListType::Atomic;
        }
        let items = schema.get("items").map(|i| self.resolve(i).clone()).unwrap_or(Value::Null);
        let mut defaults = BTreeMap::new();
        for key in &keys {
            let declared = items.get("properties").and_then(|p| p.get(key)).and_then(|p| p.get("default"));
            match declared {
                Some(d) => {
                    defaults.insert(key.clone(), d.clone());
                }
                // The published schemas carry no defaults; kube-apiserver defaults a port's protocol.
                None if key == "protocol" => {
                    defaults.insert(key.clone(), Value::String("TCP".into()));
                }
                None => {}
            }
        }
        ListType::Map { keys, defaults }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn keys(list: Shape<'_>) -> Vec<String> {
        match list {
            Shape::List(ListType::Map { keys, .. }) => keys.clone(),
            other => panic!("not a map list: {other:?}"),
        }
    }

    #[test]
    fn builtin_pod_lists_follow_the_published_markers() {
        let schema = Schema::builtin("apps", "v1", "Deployment");
        let containers = ["spec", "template", "spec", "containers"];
        assert_eq!(keys(schema.shape_at(&containers).unwrap()), vec!["name"]);
        let ports = ["spec", "template", "spec", "containers", "ports"];
        assert_eq!(keys(schema.shape_at(&ports).unwrap()), vec!["containerPort", "protocol"]);
        let Some(Shape::List(ListType::Map { defaults, .. })) = schema.shape_at(&ports) else { panic!() };
        assert_eq!(defaults.get("protocol"), Some(&json!("TCP")));
        let env = ["spec", "template", "spec", "containers", "env"];
        assert_eq!(keys(schema.shape_at(&env).unwrap()), vec!["name"]);
        let volumes = ["spec", "template", "spec", "volumes"];
        assert_eq!(keys(schema.shape_at(&volumes).unwrap()), vec!["name"]);
        let tolerations = ["spec", "template", "spec", "tolerations"];
        assert_eq!(schema.shape_at(&tolerations), Some(Shape::List(&ListType::Atomic)));
        let args = ["spec", "template", "spec", "containers", "args"];
        assert_eq!(schema.shape_at(&args), Some(Shape::List(&ListType::Atomic)));
        assert_eq!(schema.shape_at(&["spec", "selector"]), Some(Shape::Map { atomic: true }));
        assert_eq!(schema.shape_at(&["spec", "replicas"]), Some(Shape::Scalar));
        assert_eq!(schema.shape_at(&["metadata", "finalizers"]), Some(Shape::List(&ListType::Set)));
        assert_eq!(keys(schema.shape_at(&["metadata", "ownerReferences"]).unwrap()), vec!["uid"]);
        assert_eq!(schema.shape_at(&["metadata", "labels"]), Some(Shape::Map { atomic: false }));
        let limits = ["spec", "template", "spec", "containers", "resources", "limits", "cpu"];
        assert_eq!(schema.shape_at(&limits), Some(Shape::Scalar));
        let service = Schema::builtin("", "v1", "Service");
        assert_eq!(keys(service.shape_at(&["spec", "ports"]).unwrap()), vec!["port", "protocol"]);
        assert_eq!(service.shape_at(&["spec", "ports", "targetPort"]), Some(Shape::Scalar));
    }

    #[test]
    fn builtin_schemas_are_built_once_and_shared() {
        let a = Schema::builtin("", "v1", "ConfigMap");
        let b = Schema::builtin("", "v1", "ConfigMap");
        assert!(Arc::ptr_eq(&a, &b));
    }

    #[test]
    fn crd_schemas_default_to_atomic_lists_and_granular_objects() {
        let schema = Schema::from_crd_schema(&json!({
            "type": "object",
            "properties": {
                "spec": {"type": "object", "properties": {
                    "tags": {"type": "array", "items": {"type": "string"}},
                    "hosts": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
                    "routes": {"type": "array", "x-kubernetes-list-type": "map",
                               "x-kubernetes-list-map-keys": ["name"],
                               "items": {"type": "object", "properties": {"name": {"type": "string"}}}},
                    "ref": {"type": "object", "x-kubernetes-map-type": "atomic",
                            "properties": {"name": {"type": "string"}}},
                    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                    "port": {"x-kubernetes-int-or-string": true},
                    "blob": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                }},
            },
        }));
        assert_eq!(schema.shape_at(&["spec", "tags"]), Some(Shape::List(&ListType::Atomic)));
        assert_eq!(schema.shape_at(&["spec", "hosts"]), Some(Shape::List(&ListType::Set)));
        assert_eq!(keys(schema.shape_at(&["spec", "routes"]).unwrap()), vec!["name"]);
        assert_eq!(schema.shape_at(&["spec", "ref"]), Some(Shape::Map { atomic: true }));
        assert_eq!(schema.shape_at(&["spec", "labels"]), Some(Shape::Map { atomic: false }));
        assert_eq!(schema.shape_at(&["spec", "labels", "x"]), Some(Shape::Scalar));
        assert_eq!(schema.shape_at(&["spec", "port"]), Some(Shape::Scalar));
        assert_eq!(schema.shape_at(&["spec", "blob"]), Some(Shape::Deduced));
        assert_eq!(schema.shape_at(&["metadata", "finalizers"]), Some(Shape::List(&ListType::Set)));
    }

    #[test]
    fn the_deduced_schema_knows_nothing() {
        let schema = Schema::deduced();
        assert_eq!(schema.shape_at(&["spec", "anything"]), Some(Shape::Deduced));
    }
}
