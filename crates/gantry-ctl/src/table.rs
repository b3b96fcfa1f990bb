//! The server's `Table` (meta.k8s.io/v1) printed as kubectl prints it: upper-case headers, the columns of
//! priority 0 unless `-o wide`, a NAMESPACE column first with `--all-namespaces`, the name prefixed with the
//! type (`deployment.apps/web`) when several types are listed, aligned by a tab writer (minimum width 6,
//! padding 3).

use serde_json::Value;

use crate::tabwriter;

/// How one table is printed.
#[derive(Clone, Debug, Default)]
pub struct TableOptions {
    /// `-o wide`: every column, whatever its priority.
    pub wide: bool,
    /// `-A`: a NAMESPACE column first.
    pub with_namespace: bool,
    /// `kind.group`, prefixed to each name as `kind.group/name` (several types listed).
    pub kind_prefix: Option<String>,
    /// `--no-headers`.
    pub no_headers: bool,
}

/// The tab-separated lines (header first) of a `Table` document.
pub fn table_lines(table: &Value, options: &TableOptions) -> Vec<String> {
    let columns: Vec<&Value> = table["columnDefinitions"].as_array().map(|c| c.iter().collect()).unwrap_or_default();
    let shown: Vec<usize> = columns
        .iter()
        .enumerate()
        .filter(|(_, c)| options.wide || c["priority"].as_i64().unwrap_or(0) == 0)
        .map(|(i, _)| i)
        .collect();
    let mut lines = Vec::new();
    if !options.no_headers {
        let mut header: Vec<String> = Vec::new();
        if options.with_namespace {
            header.push("NAMESPACE".to_string());
        }
        header.extend(shown.iter().map(|&i| columns[i]["name"].as_str().unwrap_or("").to_uppercase()));
        lines.push(header.join("\t"));
    }
    for row in table["rows"].as_array().into_iter().flatten() {
        let cells = row["cells"].as_array();
        let mut line: Vec<String> = Vec::new();
        if options.with_namespace {
            line.push(row["object"]["metadata"]["namespace"].as_str().unwrap_or("").to_string());
        }
        for &i in &shown {
            let mut text = cell_text(cells.and_then(|c| c.get(i)).unwrap_or(&Value::Null));
            if columns[i]["format"].as_str() == Some("name")
                && let Some(prefix) = &options.kind_prefix
            {
                text = format!("{prefix}/{text}");
            }
            line.push(text);
        }
        lines.push(line.join("\t"));
    }
    lines
}

/// The number of rows of a `Table`.
pub fn row_count(table: &Value) -> usize {
    table["rows"].as_array().map_or(0, Vec::len)
}

/// Aligned text of tab-separated lines, as kubectl's printer writes it.
pub fn align(lines: &[String]) -> String {
    let mut text = String::new();
    for line in lines {
        text.push_str(line);
        text.push('\n');
    }
    tabwriter::align(&text, 6, 3)
}

/// A cell as kubectl prints it: strings up to their first line break (then `...`), other values as Go's `%v`.
pub fn cell_text(cell: &Value) -> String {
    let text = match cell {
        Value::String(s) => match s.split_once('\n') {
            Some((first, _)) => format!("{first}..."),
            None => s.clone(),
        },
        Value::Null => "<nil>".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        other => other.to_string(),
    };
    // A cell must not break the columns nor move the terminal's cursor.
    text.chars().map(|c| if c == '\t' || c.is_control() { ' ' } else { c }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pods() -> Value {
        json!({
            "kind": "Table",
            "columnDefinitions": [
                {"name": "Name", "type": "string", "format": "name", "priority": 0},
                {"name": "Ready", "type": "string", "priority": 0},
                {"name": "Status", "type": "string", "priority": 0},
                {"name": "Restarts", "type": "string", "priority": 0},
                {"name": "Age", "type": "string", "priority": 0},
                {"name": "IP", "type": "string", "priority": 1},
                {"name": "Nominated Node", "type": "string", "priority": 1},
            ],
            "rows": [
                {"cells": ["web-1", "1/1", "Running", 0, "5m", "10.0.0.5", "<none>"],
                 "object": {"metadata": {"name": "web-1", "namespace": "default"}}},
                {"cells": ["a", "0/1", "Pending", 12, "10s", "<none>", "<none>"],
                 "object": {"metadata": {"name": "a", "namespace": "kube-system"}}},
            ]
        })
    }

    #[test]
    fn only_priority_zero_columns_are_printed_by_default() {
        let text = align(&table_lines(&pods(), &TableOptions::default()));
        assert_eq!(
            text,
            "NAME    READY   STATUS    RESTARTS   AGE\nweb-1   1/1     Running   0          5m\na       0/1     Pending   12         10s\n"
        );
    }

    #[test]
    fn wide_output_adds_every_column_with_upper_case_headers() {
        let options = TableOptions { wide: true, ..Default::default() };
        let text = align(&table_lines(&pods(), &options));
        assert!(text.starts_with("NAME    READY   STATUS    RESTARTS   AGE   IP         NOMINATED NODE\n"), "{text}");
    }

    #[test]
    fn all_namespaces_adds_a_namespace_column_and_several_types_prefix_the_name() {
        let options = TableOptions { with_namespace: true, kind_prefix: Some("pod".to_string()), ..Default::default() };
        let lines = table_lines(&pods(), &options);
        assert_eq!(lines[0], "NAMESPACE\tNAME\tREADY\tSTATUS\tRESTARTS\tAGE");
        assert_eq!(lines[2], "kube-system\tpod/a\t0/1\tPending\t12\t10s");
    }

    #[test]
    fn cells_are_cut_at_a_line_break() {
        assert_eq!(cell_text(&json!("one\ntwo")), "one...");
        assert_eq!(cell_text(&Value::Null), "<nil>");
        assert_eq!(cell_text(&json!(true)), "true");
    }
}
