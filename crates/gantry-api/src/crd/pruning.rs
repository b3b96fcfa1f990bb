//! Pruning: dropping the fields a CRD schema does not specify, as kube-apiserver does for every custom
//! resource it decodes, and reporting them for `fieldValidation=Strict|Warn`.

use serde_json::{Map, Value};

use super::schema::{Additional, Node};
use crate::validation::Path;

/// The fields of `metadata` (`ObjectMeta`) that survive decoding; anything else is dropped as unknown.
const OBJECT_META_FIELDS: &[&str] = &[
    "annotations",
    "creationTimestamp",
    "deletionGracePeriodSeconds",
    "deletionTimestamp",
    "finalizers",
    "generateName",
    "generation",
    "labels",
    "managedFields",
    "name",
    "namespace",
    "ownerReferences",
    "resourceVersion",
    "selfLink",
    "uid",
];

/// Removes from `obj` (a whole custom resource) every field `schema` does not specify, except under
/// `x-kubernetes-preserve-unknown-fields: true`. `apiVersion`, `kind` and the known `metadata` fields of the
/// object and of every `x-kubernetes-embedded-resource` are always kept.
///
/// Returns the paths of the removed fields, sorted (`spec.foo`, `spec.items[0].bar`, `metadata.foo`); a
/// server reports each as `unknown field "<path>"` (a warning for `fieldValidation=Warn`, a 400 for
/// `Strict`).
pub fn prune(schema: &Value, obj: &mut Value) -> Vec<String> {
    let mut pruned = Vec::new();
    prune_node(obj, Some(Node(schema)), true, false, &Path::root(""), &mut pruned);
    pruned.sort();
    pruned
}

fn record(path: &Path, pruned: &mut Vec<String>) {
    pruned.push(path.to_string());
}

fn prune_meta(meta: &mut Map<String, Value>, path: &Path, pruned: &mut Vec<String>) {
    meta.retain(|k, _| {
        let keep = OBJECT_META_FIELDS.contains(&k.as_str());
        if !keep {
            record(&path.child(k), pruned);
        }
        keep
    });
}

/// `skip` marks the items of a list with `x-kubernetes-preserve-unknown-fields`, which keep unknown fields
/// as their list does.
fn prune_node(
    x: &mut Value,
    s: Option<Node<'_>>,
    resource_root: bool,
    skip: bool,
    path: &Path,
    pruned: &mut Vec<String>,
) {
    match x {
        Value::Object(map) => {
            let Some(s) = s else {
                for k in map.keys() {
                    record(&path.child(k), pruned);
                }
                map.clear();
                return;
            };
            let keep_unknown = skip || s.preserve_unknown();
            let additional = s.additional();
            map.retain(|k, v| {
                let p = path.child(k);
                if resource_root {
                    match k.as_str() {
                        "apiVersion" | "kind" if v.is_string() => return true,
                        "metadata" => {
                            if let Value::Object(meta) = v {
                                prune_meta(meta, &p, pruned);
                            }
                            return true;
                        }
                        _ => {}
                    }
                }
                if let Some(prop) = s.property(k) {
                    prune_node(v, Some(prop), prop.embedded(), false, &p, pruned);
                    return true;
                }
                match additional {
                    Some(Additional::Schema(a)) => {
                        prune_node(v, Some(a), a.embedded(), false, &p, pruned);
                        true
                    }
                    Some(Additional::Allows(true)) if !keep_unknown => {
                        prune_node(v, None, false, false, &p, pruned);
                        true
                    }
                    _ if keep_unknown => true,
                    _ => {
                        record(&p, pruned);
                        false
                    }
                }
            });
        }
        Value::Array(items) => {
            let item_schema = s.and_then(|s| s.items());
            let keep_unknown = skip || s.is_some_and(|s| s.preserve_unknown());
            // Under preserve-unknown-fields without an items schema, list contents are kept as they are.
            if item_schema.is_none() && keep_unknown {
                return;
            }
            let embedded = item_schema.is_some_and(|i| i.embedded());
            for (i, item) in items.iter_mut().enumerate() {
                prune_node(item, item_schema, embedded, keep_unknown, &path.index(i), pruned);
            }
        }
        _ => {}
    }
}

/// Prunes a value against one schema node (a default, an embedded object), `resource_root` when the node is
/// an embedded resource whose `apiVersion`, `kind` and `metadata` are kept. Returns the pruned paths,
/// relative to the value.
pub(crate) fn prune_value(s: Node<'_>, x: &mut Value, resource_root: bool) -> Vec<String> {
    let mut pruned = Vec::new();
    prune_node(x, Some(s), resource_root, false, &Path::root(""), &mut pruned);
    pruned
}
