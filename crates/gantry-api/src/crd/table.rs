//! Server-side tables of custom resources: `Name`, then the version's `additionalPrinterColumns` (or `Age`
//! when it has none), with cells computed as kube-apiserver's CRD table convertor computes them.

use jiff::Timestamp;
use serde_json::Value;

use super::jsonpath::{JsonPath, JsonPathError, print_value};
use crate::table::descriptions as doc;
use crate::table::{TableColumnDefinition, TableRow, human_duration};

/// One additional column: its definition and its compiled JSONPath.
#[derive(Clone, Debug)]
struct Column {
    definition: TableColumnDefinition,
    path: JsonPath,
}

/// The table of one served version of a CRD.
#[derive(Clone, Debug)]
pub struct CrdTable {
    columns: Vec<Column>,
}

impl CrdTable {
    /// Builds the table of a `spec.versions[]` entry. A version without `additionalPrinterColumns` shows
    /// `Age` (its `creationTimestamp`), as kube-apiserver serves it.
    pub fn new(version: &Value) -> Result<CrdTable, JsonPathError> {
        let declared =
            version.get("additionalPrinterColumns").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
        let mut columns = Vec::new();
        if declared.is_empty() {
            columns.push(Column {
                definition: TableColumnDefinition {
                    name: "Age".to_string(),
                    type_: "date".to_string(),
                    format: String::new(),
                    description: doc::CREATION_TIMESTAMP.to_string(),
                    priority: 0,
                },
                path: JsonPath::parse(".metadata.creationTimestamp")?,
            });
        }
        for c in declared {
            let text = |k: &str| c.get(k).and_then(Value::as_str).unwrap_or("").to_string();
            let json_path = text("jsonPath");
            let description = match text("description") {
                d if d.is_empty() => format!("Custom resource definition column (in JSONPath format): {json_path}"),
                d => d,
            };
            columns.push(Column {
                definition: TableColumnDefinition {
                    name: text("name"),
                    type_: text("type"),
                    format: text("format"),
                    description,
                    priority: c
                        .get("priority")
                        .and_then(Value::as_i64)
                        .and_then(|p| i32::try_from(p).ok())
                        .unwrap_or(0),
                },
                path: JsonPath::parse(&json_path)?,
            });
        }
        Ok(CrdTable { columns })
    }

    /// The column definitions: `Name` first, then the version's columns.
    pub fn columns(&self) -> Vec<TableColumnDefinition> {
        let name = TableColumnDefinition {
            name: "Name".to_string(),
            type_: "string".to_string(),
            format: "name".to_string(),
            description: doc::NAME.to_string(),
            priority: 0,
        };
        std::iter::once(name).chain(self.columns.iter().map(|c| c.definition.clone())).collect()
    }

    /// The cells of `obj`'s row as of `now`: the name, then one cell per column; a column whose path finds
    /// nothing, or a value of the wrong type, gives `null`.
    pub fn row_cells(&self, obj: &Value, now: Timestamp) -> Vec<Value> {
        let name = obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
        let mut cells = vec![Value::from(name)];
        for c in &self.columns {
            // Only the first result counts, as kube takes the first value of the first result set.
            let cell = match c.path.find(obj).first() {
                None | Some(Value::Null) => Value::Null,
                Some(v) if c.definition.type_ == "string" => Value::from(print_value(v)),
                Some(v) => cell_for(&c.definition.type_, v, now),
            };
            cells.push(cell);
        }
        cells
    }

    /// `obj`'s row, without the object itself.
    pub fn row(&self, obj: &Value, now: Timestamp) -> TableRow {
        TableRow { cells: self.row_cells(obj, now), conditions: Vec::new(), object: None }
    }
}

fn cell_for(column_type: &str, v: &Value, now: Timestamp) -> Value {
    match (column_type, v) {
        ("integer", Value::Number(n)) => {
            n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)).map_or(Value::Null, Value::from)
        }
        ("number", Value::Number(n)) => n.as_f64().map_or(Value::Null, Value::from),
        ("boolean", Value::Bool(b)) => Value::from(*b),
        ("date", Value::String(s)) => match s.parse::<Timestamp>() {
            Ok(ts) if ts == zero_time() => Value::from("<unknown>"),
            Ok(ts) => Value::from(human_duration(now.duration_since(ts))),
            Err(_) => Value::from("<invalid>"),
        },
        _ => Value::Null,
    }
}

fn zero_time() -> Timestamp {
    // Go's zero time, 0001-01-01T00:00:00Z, which kube prints as unknown.
    Timestamp::from_second(-62_135_596_800).unwrap_or(Timestamp::UNIX_EPOCH)
}
