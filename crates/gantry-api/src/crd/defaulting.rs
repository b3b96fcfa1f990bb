//! Applying a CRD schema's `default` values, as kube-apiserver does when it reads a custom resource from
//! storage and when it decodes a create or update request.

use serde_json::Value;

use super::schema::Node;

/// Sets every missing field that has a `default` in `schema`, and replaces a `null` by the default where the
/// schema does not allow `null`, recursing into objects, maps and lists in kube's order: the defaults of an
/// object's own properties first, then its fields (so a defaulted object gets its own nested defaults).
///
/// Nothing is defaulted where the schema specifies nothing, such as under
/// `x-kubernetes-preserve-unknown-fields` without properties.
pub fn default(schema: &Value, obj: &mut Value) {
    default_node(Some(Node(schema)), obj);
}

fn non_nullable_null(x: &Value, s: Node<'_>) -> bool {
    x.is_null() && !s.nullable()
}

fn default_node(s: Option<Node<'_>>, x: &mut Value) {
    let Some(s) = s else { return };
    match x {
        Value::Object(map) => {
            for (k, prop) in s.sorted_properties() {
                let Some(default) = prop.default_value() else { continue };
                let missing = match map.get(k) {
                    None => true,
                    Some(v) => non_nullable_null(v, prop),
                };
                if missing {
                    map.insert(k.to_string(), default.clone());
                }
            }
            let additional = s.additional_schema();
            for (k, v) in map.iter_mut() {
                if let Some(prop) = s.property(k) {
                    default_node(Some(prop), v);
                } else if let Some(a) = additional {
                    if non_nullable_null(v, a)
                        && let Some(d) = a.default_value()
                    {
                        *v = d.clone();
                    }
                    default_node(Some(a), v);
                }
            }
        }
        Value::Array(items) => {
            let Some(item_schema) = s.items() else { return };
            for item in items.iter_mut() {
                if non_nullable_null(item, item_schema)
                    && let Some(d) = item_schema.default_value()
                {
                    *item = d.clone();
                }
                default_node(Some(item_schema), item);
            }
        }
        _ => {}
    }
}

/// Removes fields whose value is `null` where the schema does not allow `null` and has no default to put
/// instead, as kube does before defaulting.
pub fn prune_non_nullable_nulls(schema: &Value, obj: &mut Value) {
    prune_nulls(Node(schema), obj);
}

fn prune_nulls(s: Node<'_>, x: &mut Value) {
    match x {
        Value::Object(map) => {
            map.retain(|k, v| {
                !(v.is_null() && s.property(k).is_some_and(|p| !p.nullable() && p.default_value().is_none()))
            });
            for (k, v) in map.iter_mut() {
                if let Some(prop) = s.property(k) {
                    prune_nulls(prop, v);
                } else if let Some(a) = s.additional_schema() {
                    prune_nulls(a, v);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = s.items() {
                items.iter_mut().for_each(|item| prune_nulls(item_schema, item));
            }
        }
        _ => {}
    }
}
