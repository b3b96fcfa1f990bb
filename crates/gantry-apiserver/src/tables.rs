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
            let cells = match custom.and_then(|c| c.table.as_ref()) {
                Some(table) => table.row_cells(obj, now),
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
        let columns = match custom.and_then(|c| c.table.as_ref()) {
            Some(table) => table.columns(),
            None => gantry_api::table::columns(gk),
        };
        serde_json::to_value(columns).unwrap_or_else(|_| json!([]))
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
