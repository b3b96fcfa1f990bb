//! `x-kubernetes-validations` rules (CEL), evaluated with the `cel` crate.
//!
//! A rule rejects a value only when it evaluates to `false`. kube type-checks rules when a CRD is written
//! and also rejects values whose rule fails at run time (`no such key`, ...); here a rule that does not
//! parse, uses a function the evaluator lacks (the Kubernetes CEL libraries: `url`, `quantity`, `isSorted`,
//! ...) or fails at run time is skipped, so an object is never rejected for a reason kube would not give.
//! Transition rules (those naming `oldSelf`) run only on updates where the old value is found at the same
//! place.

use std::collections::HashMap;
use std::sync::Arc;

use cel::extractors::This;
use cel::objects::{Key, Map as CelMap};
use cel::{Context, ExecutionError, FunctionContext, Program, Value as CelValue};
use serde_json::Value;

use super::schema::Node;
use crate::validation::{FieldError, FieldErrorKind, Path};

fn to_cel(v: &Value) -> CelValue {
    match v {
        Value::Null => CelValue::Null,
        Value::Bool(b) => CelValue::Bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => CelValue::Int(i),
            None => match n.as_u64() {
                Some(u) => CelValue::UInt(u),
                None => CelValue::Float(n.as_f64().unwrap_or(0.0)),
            },
        },
        Value::String(s) => CelValue::String(Arc::new(s.clone())),
        Value::Array(items) => CelValue::List(Arc::new(items.iter().map(to_cel).collect())),
        Value::Object(map) => {
            let converted: HashMap<Key, CelValue> =
                map.iter().map(|(k, v)| (Key::String(Arc::new(k.clone())), to_cel(v))).collect();
            CelValue::Map(CelMap { map: Arc::new(converted) })
        }
    }
}

/// CEL's `size()`: strings count code points (the evaluator's own counts bytes).
fn size(ftx: &FunctionContext, This(this): This<CelValue>) -> Result<i64, ExecutionError> {
    let n = match this {
        CelValue::List(l) => l.len(),
        CelValue::Map(m) => m.map.len(),
        CelValue::String(s) => s.chars().count(),
        CelValue::Bytes(b) => b.len(),
        other => return Err(ftx.error(format!("cannot determine the size of {other:?}"))),
    };
    Ok(i64::try_from(n).unwrap_or(i64::MAX))
}

/// A context with the standard functions, `size()` as CEL defines it, and `self` (and `oldSelf`) bound.
fn context(value: &Value, old: Option<&Value>) -> Context<'static> {
    let mut context = Context::default();
    context.add_function("size", size);
    context.add_variable_from_value("self", to_cel(value));
    if let Some(old) = old {
        context.add_variable_from_value("oldSelf", to_cel(old));
    }
    context
}

/// The result of one rule on one value.
enum Outcome {
    Pass,
    Fail,
    /// Not evaluated: the rule does not parse, needs `oldSelf` without one, or failed at run time.
    Skipped,
}

fn evaluate(rule: &str, value: &Value, old: Option<&Value>) -> Outcome {
    let Ok(program) = Program::compile(rule) else { return Outcome::Skipped };
    if rule.contains("oldSelf") && old.is_none() {
        return Outcome::Skipped;
    }
    match program.execute(&context(value, old)) {
        Ok(CelValue::Bool(true)) => Outcome::Pass,
        Ok(CelValue::Bool(false)) => Outcome::Fail,
        _ => Outcome::Skipped,
    }
}

/// The message of a failed rule: its `messageExpression` when that evaluates to a string, else its
/// `message`, else `failed rule: <rule>`.
fn message(rule: Node<'_>, value: &Value, old: Option<&Value>) -> String {
    let expression = rule.str("messageExpression");
    if !expression.is_empty()
        && let Ok(program) = Program::compile(expression)
        && let Ok(CelValue::String(s)) = program.execute(&context(value, old))
        && !s.trim().is_empty()
    {
        return s.to_string();
    }
    match rule.str("message") {
        "" => format!("failed rule: {}", rule.str("rule").trim()),
        m => m.to_string(),
    }
}

/// Evaluates every rule of `s` and of the nodes under it against `x` (and `old`, the stored value at the
/// same place, on updates), reporting failures at `path` as kube does:
/// `spec: Invalid value: "object": <message>`.
pub(crate) fn validate_rules(s: Node<'_>, x: &Value, old: Option<&Value>, path: &Path, errs: &mut Vec<FieldError>) {
    if x.is_null() {
        return;
    }
    for rule in s.list("x-kubernetes-validations").iter().map(Node) {
        let text = rule.str("rule");
        if text.trim().is_empty() || rule.get("optionalOldSelf").is_some() {
            continue;
        }
        if !matches!(evaluate(text, x, old), Outcome::Fail) {
            continue;
        }
        let mut field = path.to_string();
        let field_path = rule.str("fieldPath").trim();
        if !field_path.is_empty() {
            let rest = field_path.trim_start_matches('.');
            field = if field.is_empty() { rest.to_string() } else { format!("{field}.{rest}") };
        }
        let detail = message(rule, x, old);
        let ty = if s.ty().is_empty() { "object" } else { s.ty() };
        let (kind, value) = match rule.str("reason") {
            "FieldValueRequired" => (FieldErrorKind::FieldValueRequired, None),
            "FieldValueForbidden" => (FieldErrorKind::FieldValueForbidden, None),
            "FieldValueDuplicate" => (FieldErrorKind::FieldValueDuplicate, Some(Value::from(ty))),
            _ => (FieldErrorKind::FieldValueInvalid, Some(Value::from(ty))),
        };
        let detail = if kind == FieldErrorKind::FieldValueDuplicate { String::new() } else { detail };
        errs.push(FieldError {
            kind,
            field: if field.is_empty() { "<nil>".to_string() } else { field },
            value,
            detail,
        });
    }
    match x {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            for key in keys {
                let Some(v) = map.get(key) else { continue };
                let old_v = old.and_then(|o| o.get(key.as_str()));
                if let Some(prop) = s.property(key) {
                    validate_rules(prop, v, old_v, &path.child(key), errs);
                } else if let Some(a) = s.additional_schema() {
                    validate_rules(a, v, old_v, &path.key(key), errs);
                }
            }
        }
        Value::Array(items) => {
            let Some(item_schema) = s.items() else { return };
            let keys = s.strings("x-kubernetes-list-map-keys");
            let old_items = old.and_then(Value::as_array);
            for (i, item) in items.iter().enumerate() {
                // Items of map lists are matched with their old selves by key; others are not correlated.
                let old_item = match s.list_type() {
                    Some("map") if !keys.is_empty() => old_items.and_then(|o| {
                        o.iter().find(|candidate| keys.iter().all(|k| candidate.get(*k) == item.get(*k)))
                    }),
                    _ => None,
                };
                validate_rules(item_schema, item, old_item, &path.index(i), errs);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(rule: &str, value: Value) -> Option<bool> {
        match evaluate(rule, &value, None) {
            Outcome::Pass => Some(true),
            Outcome::Fail => Some(false),
            Outcome::Skipped => None,
        }
    }

    #[test]
    fn rules_evaluate_with_cel_semantics() {
        let v = serde_json::json!({"s": "héllo", "n": 3, "tags": ["a", "b"], "m": {"k": "v"}});
        assert_eq!(eval("self.s.size() == 5", v.clone()), Some(true));
        assert_eq!(eval("size(self.tags) == 2 && size(self.m) == 1", v.clone()), Some(true));
        assert_eq!(eval("self.n == 3.0 && self.n > 2u", v.clone()), Some(true));
        assert_eq!(eval("self.tags.exists_one(t, t == 'a') && 'k' in self.m", v.clone()), Some(true));
        assert_eq!(eval("has(self.zz)", v.clone()), Some(false));
        // Run-time errors, missing functions and unsupported syntax are skipped, never a rejection.
        assert_eq!(eval("self.zz == 1", v.clone()), None);
        assert_eq!(eval("self.s.lowerAscii() == 'x'", v.clone()), None);
        assert_eq!(eval("self.?zz.orValue('d') == 'd'", v.clone()), None);
        assert_eq!(eval("self == oldSelf", v), None);
    }
}
