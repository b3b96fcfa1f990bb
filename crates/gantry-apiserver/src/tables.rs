//! Server-side tables (`as=Table`): the columns `kubectl get` prints, with rows carrying the object or its
//! metadata as `includeObject` asks.

use gantry_api::registry::ResourceType;
use serde_json::{Value, json};

use crate::codec::partial_metadata;
use crate::status::{ApiError, ApiResult};

/// Builds a `meta.k8s.io/v1` `Table` of `objects`. `include` is `includeObject` (`None`, `Metadata`,
/// `Object`); `with_header` false leaves out the column definitions (watch events after the first).
pub fn table(
    resource: &ResourceType,
    custom: Option<&crate::crd::CustomVersion>,
    objects: &[Value],
    include: &str,
    list_meta: Option<Value>,
    with_header: bool,
) -> ApiResult<Value> {
    let gk = resource.group_kind();
    let now = jiff::Timestamp::now();
    let rows: Vec<Value> = objects
        .iter()
        .map(|obj| {
            let cells = match custom {
                Some(custom) => custom_cells(custom, obj, now),
                None => gantry_api::table::row_cells(gk, obj, now),
            };
            let mut row = json!({"cells": cells});
            match include {
                "None" => {}
                "Object" => row["object"] = obj.clone(),
                _ => row["object"] = partial_metadata(obj),
            }
            Ok(row)
        })
        .collect::<ApiResult<_>>()?;
    if !matches!(include, "None" | "Object" | "Metadata") {
        return Err(ApiError::bad_request(format!(
            "includeObject: Unsupported value: {include:?}: supported values: \"None\", \"Metadata\", \"Object\""
        )));
    }
    let columns = if with_header {
        match custom {
            Some(custom) => json!(custom_columns(custom)),
            None => serde_json::to_value(gantry_api::table::columns(gk)).unwrap_or_else(|_| json!([])),
        }
    } else {
        json!([])
    };
    Ok(json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta.unwrap_or_else(|| json!({})),
        "columnDefinitions": columns,
        "rows": rows,
    }))
}

/// A custom resource's columns: `Name`, then its definition's `additionalPrinterColumns`, or `Age` when it
/// names none, as kube-apiserver prints them.
fn custom_columns(custom: &crate::crd::CustomVersion) -> Vec<Value> {
    let mut columns = vec![json!({"name": "Name", "type": "string", "format": "name",
        "description": "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names",
        "priority": 0})];
    for column in printer_columns(custom) {
        columns.push(json!({
            "name": column["name"],
            "type": column["type"],
            "format": column["format"].as_str().unwrap_or_default(),
            "description": column["description"].as_str().unwrap_or_default(),
            "priority": column["priority"].as_i64().unwrap_or(0),
        }));
    }
    columns
}

fn printer_columns(custom: &crate::crd::CustomVersion) -> Vec<Value> {
    if custom.printer_columns.is_empty() {
        vec![json!({"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp",
                    "description": "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata"})]
    } else {
        custom.printer_columns.clone()
    }
}

fn custom_cells(custom: &crate::crd::CustomVersion, obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let mut cells = vec![obj["metadata"]["name"].clone()];
    for column in printer_columns(custom) {
        let path = column["jsonPath"].as_str().unwrap_or_default();
        let value = crate::crd::value_at(obj, path).cloned().unwrap_or(Value::Null);
        let cell = match (column["type"].as_str(), &value) {
            (_, Value::Null) => Value::Null,
            (Some("date"), Value::String(s)) => match s.parse::<jiff::Timestamp>() {
                Ok(t) => json!(gantry_api::table::human_duration(now.duration_since(t))),
                Err(_) => value.clone(),
            },
            _ => value.clone(),
        };
        cells.push(cell);
    }
    cells
}
