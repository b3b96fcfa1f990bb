//! Validating a value against a CRD schema the way kube-apiserver's OpenAPI schema validator does, with its
//! messages (`spec.replicas in body must be of type integer: "string"`) and its field errors, plus the
//! checks kube runs beside it: embedded resources and `x-kubernetes-list-type` sets and maps.

use serde_json::{Map, Value};

use super::formats;
use super::schema::{Additional, Node};
use crate::validation::meta::validate_object_meta_as;
use crate::validation::names::{self, NameRule};
use crate::validation::{FieldError, FieldErrorKind, Path};

/// Where errors of one validation run are reported: kube names each failure by its path inside the value
/// (`spec.replicas`) and puts that under an optional prefix (a default's `...properties[x].default`).
pub(crate) struct Reporter<'p> {
    prefix: Option<&'p Path>,
    pub(crate) errs: Vec<FieldError>,
}

impl<'p> Reporter<'p> {
    pub(crate) fn new(prefix: Option<&'p Path>) -> Reporter<'p> {
        Reporter { prefix, errs: Vec::new() }
    }

    fn path(&self, name: &str) -> Path {
        match (self.prefix, name.is_empty()) {
            // kube builds a nil field path for failures of the value as a whole and prints it as `<nil>`.
            (None, true) => Path::root("<nil>"),
            (None, false) => Path::root(name),
            (Some(p), true) => p.clone(),
            (Some(p), false) => p.child(name),
        }
    }

    fn push(&mut self, kind: FieldErrorKind, name: &str, value: Option<Value>, detail: String) {
        self.errs.push(FieldError { kind, field: self.path(name).to_string(), value, detail });
    }

    fn invalid(&mut self, name: &str, value: Value, detail: String) {
        self.push(FieldErrorKind::FieldValueInvalid, name, Some(value), detail);
    }
}

fn child(name: &str, key: &str) -> String {
    if name.is_empty() { key.to_string() } else { format!("{name}.{key}") }
}

/// The JSON type kube's validator infers for a value.
fn json_type(x: &Value) -> &'static str {
    match x {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
    }
}

/// Validates `x` against the schema node `s`; `name` is the path of `x` inside the validated value.
pub(crate) fn validate(s: Node<'_>, x: &Value, name: &str, r: &mut Reporter<'_>) {
    if x.is_null() {
        check_type(s, x, name, r);
        check_enum(s, x, name, r);
        return;
    }
    check_type(s, x, name, r);
    check_junctors(s, x, name, r);
    match x {
        Value::String(text) => {
            check_string(s, x, text, name, r);
            let format = s.str("format");
            if !format.is_empty() && !formats::valid(format, text) {
                r.push(
                    FieldErrorKind::FieldValueTypeInvalid,
                    name,
                    Some(x.clone()),
                    format!("{name} in body must be of type {format}: {}", crate::validation::go_quote(text)),
                );
            }
        }
        Value::Number(_) => check_number(s, x, name, r),
        Value::Array(items) => check_array(s, x, items, name, r),
        _ => {}
    }
    check_enum(s, x, name, r);
    if let Value::Object(map) = x {
        check_object(s, map, name, r);
    }
}

fn check_type(s: Node<'_>, x: &Value, name: &str, r: &mut Reporter<'_>) {
    let types: Vec<&str> = if s.int_or_string() {
        vec!["integer", "string"]
    } else if s.ty().is_empty() {
        return;
    } else {
        vec![s.ty()]
    };
    let want = types.join(",");
    if x.is_null() {
        if !s.nullable() {
            type_error(name, &want, "null", r);
        }
        return;
    }
    let actual = json_type(x);
    let float_int = actual == "number" && x.as_f64().is_some_and(|f| f.fract() == 0.0) && types.contains(&"integer");
    let int_float = actual == "integer" && types.contains(&"number");
    if !(types.contains(&actual) || float_int || int_float) {
        type_error(name, &want, actual, r);
    }
}

fn type_error(name: &str, want: &str, actual: &str, r: &mut Reporter<'_>) {
    r.push(
        FieldErrorKind::FieldValueTypeInvalid,
        name,
        Some(Value::from(actual)),
        format!("{name} in body must be of type {want}: {}", crate::validation::go_quote(actual)),
    );
}

/// `allOf`, `anyOf`, `oneOf` and `not`: value validations that run on the same value.
fn check_junctors(s: Node<'_>, x: &Value, name: &str, r: &mut Reporter<'_>) {
    let quoted = crate::validation::go_quote(name);
    let all_of = s.list("allOf");
    if !all_of.is_empty() {
        let mut valid = 0;
        for sub in all_of {
            let mut inner = Reporter { prefix: r.prefix, errs: Vec::new() };
            validate(Node(sub), x, name, &mut inner);
            if inner.errs.is_empty() {
                valid += 1;
            }
            r.errs.extend(inner.errs);
        }
        if valid != all_of.len() {
            let extra = if valid == 0 { ". None validated" } else { "" };
            r.invalid("", Value::from(""), format!("{quoted} must validate all the schemas (allOf){extra}"));
        }
    }
    let any_of = s.list("anyOf");
    if !any_of.is_empty() {
        let results: Vec<Vec<FieldError>> = any_of.iter().map(|sub| failures(Node(sub), x, name, r.prefix)).collect();
        if !results.iter().any(Vec::is_empty) {
            r.invalid("", Value::from(""), format!("{quoted} must validate at least one schema (anyOf)"));
            r.errs.extend(best_failures(results));
        }
    }
    let one_of = s.list("oneOf");
    if !one_of.is_empty() {
        let results: Vec<Vec<FieldError>> = one_of.iter().map(|sub| failures(Node(sub), x, name, r.prefix)).collect();
        let valid = results.iter().filter(|e| e.is_empty()).count();
        if valid != 1 {
            let extra =
                if valid == 0 { "Found none valid".to_string() } else { format!("Found {valid} valid alternatives") };
            r.invalid("", Value::from(""), format!("{quoted} must validate one and only one schema (oneOf). {extra}"));
            if valid == 0 {
                r.errs.extend(best_failures(results));
            }
        }
    }
    if let Some(not) = s.get("not").filter(|n| n.is_object())
        && passes(Node(not), x, name)
    {
        r.invalid("", Value::from(""), format!("{quoted} must not validate the schema (not)"));
    }
}

fn passes(s: Node<'_>, x: &Value, name: &str) -> bool {
    failures(s, x, name, None).is_empty()
}

fn failures(s: Node<'_>, x: &Value, name: &str, prefix: Option<&Path>) -> Vec<FieldError> {
    let mut inner = Reporter::new(prefix);
    validate(s, x, name, &mut inner);
    inner.errs
}

/// The failures of the alternative that came closest, which kube reports beside a failed `anyOf` or `oneOf`.
/// kube picks the alternative with the most passed checks; the one with the fewest failures stands in.
fn best_failures(results: Vec<Vec<FieldError>>) -> Vec<FieldError> {
    results.into_iter().min_by_key(Vec::len).unwrap_or_default()
}

fn check_string(s: Node<'_>, x: &Value, text: &str, name: &str, r: &mut Reporter<'_>) {
    let len = text.chars().count() as i64;
    if let Some(max) = s.i64("maxLength")
        && len > max
    {
        let unit = if max == 1 { "byte" } else { "bytes" };
        let detail = format!("may not be more than {max} {unit}");
        r.push(FieldErrorKind::FieldValueTooLong, name, Some(x.clone()), detail);
    }
    if let Some(min) = s.i64("minLength")
        && len < min
    {
        r.invalid(name, x.clone(), format!("{name} in body should be at least {min} chars long"));
    }
    let pattern = s.str("pattern");
    if !pattern.is_empty()
        && let Ok(re) = regex::Regex::new(pattern)
        && !re.is_match(text)
    {
        r.invalid(name, x.clone(), format!("{name} in body should match '{pattern}'"));
    }
}

/// A bound as kube prints it: as an integer when the value checked is one, else Go's `%v` of a float.
fn bound(b: f64, integer_data: bool) -> String {
    if integer_data && b.fract() == 0.0 && b.abs() < 9.2e18 { format!("{}", b as i64) } else { go_float(b) }
}

/// Go's `%v` of a float64: the shortest representation, in exponent form (`1e+06`) when the exponent is
/// below -4 or at least 6.
pub(crate) fn go_float(f: f64) -> String {
    if f == 0.0 {
        return "0".to_string();
    }
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if !(-4..6).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.abs())
    } else {
        format!("{f}")
    }
}

fn check_number(s: Node<'_>, x: &Value, name: &str, r: &mut Reporter<'_>) {
    let Some(v) = x.as_f64() else { return };
    let integer_data = x.is_i64() || x.is_u64();
    if let Some(factor) = s.f64("multipleOf") {
        if factor <= 0.0 {
            r.invalid(
                name,
                Value::from(factor),
                format!("factor MultipleOf declared for {name} must be positive: {}", go_float(factor)),
            );
        } else if (v / factor).fract() != 0.0 {
            r.invalid(
                name,
                x.clone(),
                format!("{name} in body should be a multiple of {}", bound(factor, integer_data)),
            );
        }
    }
    if let Some(max) = s.f64("maximum") {
        let exclusive = s.flag("exclusiveMaximum");
        if (exclusive && v >= max) || (!exclusive && v > max) {
            let how = if exclusive { "less than" } else { "less than or equal to" };
            r.invalid(name, x.clone(), format!("{name} in body should be {how} {}", bound(max, integer_data)));
        }
    }
    if let Some(min) = s.f64("minimum") {
        let exclusive = s.flag("exclusiveMinimum");
        if (exclusive && v <= min) || (!exclusive && v < min) {
            let how = if exclusive { "greater than" } else { "greater than or equal to" };
            r.invalid(name, x.clone(), format!("{name} in body should be {how} {}", bound(min, integer_data)));
        }
    }
}

fn check_array(s: Node<'_>, x: &Value, items: &[Value], name: &str, r: &mut Reporter<'_>) {
    if let Some(item_schema) = s.items() {
        for (i, item) in items.iter().enumerate() {
            validate(item_schema, item, &format!("{name}[{i}]"), r);
        }
    }
    let size = items.len() as i64;
    if let Some(min) = s.i64("minItems")
        && size < min
    {
        r.invalid(name, Value::from(size), format!("{name} in body should have at least {min} items"));
    }
    if let Some(max) = s.i64("maxItems")
        && size > max
    {
        let unit = if max == 1 { "item" } else { "items" };
        r.push(
            FieldErrorKind::FieldValueTooMany,
            name,
            Some(Value::from(size)),
            format!("must have at most {max} {unit}"),
        );
    }
    if s.flag("uniqueItems") && items.iter().enumerate().any(|(i, a)| items[..i].iter().any(|b| json_eq(a, b))) {
        r.invalid(name, Value::from(""), format!("{name} in body shouldn't contain duplicates"));
    }
    let _ = x;
}

/// Equality of JSON values with numbers compared by value, as Go compares decoded values.
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_eq(a, b)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

fn check_enum(s: Node<'_>, x: &Value, name: &str, r: &mut Reporter<'_>) {
    let Some(Value::Array(allowed)) = s.0.get("enum") else { return };
    if allowed.iter().any(|a| json_eq(a, x)) {
        return;
    }
    let values: Vec<String> = allowed
        .iter()
        .map(|a| match a {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect();
    let refs: Vec<&str> = values.iter().map(String::as_str).collect();
    let mut e = FieldError::not_supported(&r.path(name), x.clone(), &refs);
    e.field = r.path(name).to_string();
    r.errs.push(e);
}

fn check_object(s: Node<'_>, map: &Map<String, Value>, name: &str, r: &mut Reporter<'_>) {
    let n = map.len() as i64;
    // A property count out of bounds ends the object's validation, as in kube.
    if let Some(min) = s.i64("minProperties")
        && n < min
    {
        r.invalid(name, Value::from(n), format!("{name} in body should have at least {min} properties"));
        return;
    }
    if let Some(max) = s.i64("maxProperties")
        && n > max
    {
        let unit = if max == 1 { "item" } else { "items" };
        r.push(
            FieldErrorKind::FieldValueTooMany,
            name,
            Some(Value::from(n)),
            format!("must have at most {max} {unit}"),
        );
        return;
    }
    let mut keys: Vec<&String> = map.keys().collect();
    keys.sort();
    if let Some(Additional::Allows(false)) = s.additional() {
        for key in &keys {
            if s.property(key).is_none() {
                r.invalid(name, Value::from(key.as_str()), format!("{name}.{key} in body is a forbidden property"));
            }
        }
    } else if let Some(a) = s.additional_schema() {
        for key in &keys {
            if s.property(key).is_none()
                && let Some(v) = map.get(key.as_str())
            {
                validate(a, v, &format!("{name}.{key}"), r);
            }
        }
    }
    for (key, prop) in s.sorted_properties() {
        if let Some(v) = map.get(key) {
            validate(prop, v, &child(name, key), r);
        }
    }
    for key in s.strings("required") {
        if !map.contains_key(key) {
            r.push(FieldErrorKind::FieldValueRequired, &child(name, key), None, String::new());
        }
    }
}

/// kube's checks of `x-kubernetes-embedded-resource` values: `apiVersion` and `kind` set and well-formed,
/// and their `metadata` valid.
pub(crate) fn validate_embedded(s: Node<'_>, x: &Value, path: &Path, errs: &mut Vec<FieldError>) {
    match x {
        Value::Object(map) => {
            if s.embedded() {
                embedded_resource(map, path, errs);
            }
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            for key in keys {
                let Some(v) = map.get(key) else { continue };
                if let Some(prop) = s.property(key) {
                    validate_embedded(prop, v, &path.child(key), errs);
                } else if let Some(a) = s.additional_schema() {
                    validate_embedded(a, v, &path.key(key), errs);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = s.items() {
                for (i, item) in items.iter().enumerate() {
                    validate_embedded(item_schema, item, &path.index(i), errs);
                }
            }
        }
        _ => {}
    }
}

fn embedded_resource(map: &Map<String, Value>, path: &Path, errs: &mut Vec<FieldError>) {
    if !map.contains_key("apiVersion") {
        errs.push(FieldError::required(&path.child("apiVersion"), ""));
    }
    if !map.contains_key("kind") {
        errs.push(FieldError::required(&path.child("kind"), ""));
    }
    if let Some(v) = map.get("apiVersion") {
        let p = path.child("apiVersion");
        match v.as_str() {
            None => errs.push(FieldError::invalid(&p, v.clone(), "must be a string")),
            Some("") => errs.push(FieldError::required(&p, "")),
            Some(av) => {
                if av.matches('/').count() > 1 {
                    errs.push(FieldError::invalid(&p, av, format!("unexpected GroupVersion string: {av}")));
                }
            }
        }
    }
    if let Some(v) = map.get("kind") {
        let p = path.child("kind");
        match v.as_str() {
            None => errs.push(FieldError::invalid(&p, v.clone(), "must be a string")),
            Some("") => errs.push(FieldError::required(&p, "")),
            Some(kind) => {
                let msgs = names::is_dns1035_label(&kind.to_lowercase());
                if !msgs.is_empty() {
                    errs.push(FieldError::invalid(
                        &p,
                        kind,
                        format!("may have mixed case, but should otherwise match: {}", msgs.join(",")),
                    ));
                }
            }
        }
    }
    match map.get("metadata") {
        None | Some(Value::Null) => {}
        Some(Value::Object(meta)) => {
            // kube validates embedded metadata as ObjectMeta, with path-segment names, a stand-in name when
            // none is set, and the namespace checked only when one is.
            let mut meta = meta.clone();
            if meta.get("name").and_then(Value::as_str).is_none_or(str::is_empty) {
                meta.insert("name".into(), Value::from("fakename"));
            }
            let namespaced = meta.get("namespace").and_then(Value::as_str).is_some_and(|n| !n.is_empty());
            let wrapped = Value::Object(Map::from_iter([("metadata".to_string(), Value::Object(meta))]));
            let mut meta_errs = Vec::new();
            validate_object_meta_as(NameRule::PathSegment, Some(namespaced), &wrapped, &mut meta_errs);
            let prefix = path.to_string();
            for mut e in meta_errs {
                e.field = if prefix.is_empty() { e.field } else { format!("{prefix}.{}", e.field) };
                errs.push(e);
            }
        }
        Some(other) => errs.push(FieldError::invalid(
            &path.child("metadata"),
            other.clone(),
            format!("expected metadata to be an object, got {}", json_type(other)),
        )),
    }
}

/// `x-kubernetes-list-type: set` items must be unique and `map` items unique by their keys.
pub(crate) fn validate_list_types(s: Node<'_>, x: &Value, path: &Path, errs: &mut Vec<FieldError>) {
    match x {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            for key in keys {
                let Some(v) = map.get(key) else { continue };
                if let Some(sub) = s.property(key).or_else(|| s.additional_schema()) {
                    validate_list_types(sub, v, &path.child(key), errs);
                }
            }
        }
        Value::Array(items) => {
            match s.list_type() {
                Some("set") => {
                    for (i, item) in items.iter().enumerate() {
                        if items[..i].iter().any(|prev| json_eq(prev, item)) {
                            errs.push(FieldError::duplicate(&path.index(i), item.clone()));
                        }
                    }
                }
                Some("map") => {
                    let keys = s.strings("x-kubernetes-list-map-keys");
                    let key_of = |item: &Value| -> Value {
                        let mut m = Map::new();
                        for k in &keys {
                            if let Some(v) = item.get(*k) {
                                m.insert((*k).to_string(), v.clone());
                            }
                        }
                        Value::Object(m)
                    };
                    for (i, item) in items.iter().enumerate() {
                        let key = key_of(item);
                        if items[..i].iter().any(|prev| json_eq(&key_of(prev), &key)) {
                            errs.push(FieldError::duplicate(&path.index(i), key));
                        }
                    }
                }
                _ => {}
            }
            if let Some(item_schema) = s.items() {
                for (i, item) in items.iter().enumerate() {
                    validate_list_types(item_schema, item, &path.index(i), errs);
                }
            }
        }
        _ => {}
    }
}
