//! Label selectors: the query-parameter grammar, the `metav1.LabelSelector` object, and matching.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::BuildHasher;
use std::str::FromStr;

use k8s_openapi::apimachinery::pkg::apis::meta::v1 as metav1;
use serde_json::Value;

use super::validation::{label_key_errors, label_value_errors};
use super::{BadValue, FieldError, FieldErrors, SelectorError};

/// A set of labels a selector can be matched against.
///
/// Implemented for the usual maps and for a JSON object (an object's `metadata.labels`); a label whose JSON
/// value is not a string counts as absent.
pub trait Labels {
    /// The value of label `key`, if set.
    fn label(&self, key: &str) -> Option<&str>;
}

impl Labels for BTreeMap<String, String> {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

impl<S: BuildHasher> Labels for HashMap<String, String, S> {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

impl Labels for serde_json::Map<String, Value> {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(Value::as_str)
    }
}

impl Labels for Value {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(Value::as_str)
    }
}

/// How a [`Requirement`] relates its key to its values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operator {
    /// `key in (a,b)`: the label is set to one of the values.
    In,
    /// `key notin (a,b)`: the label is unset or set to none of the values.
    NotIn,
    /// `key=a`.
    Equals,
    /// `key==a`, the same as `=`.
    DoubleEquals,
    /// `key!=a`: the label is unset or set to something else.
    NotEquals,
    /// `key`: the label is set.
    Exists,
    /// `!key`: the label is unset.
    DoesNotExist,
    /// `key>5`: the label is set to an integer greater than the value.
    GreaterThan,
    /// `key<5`: the label is set to an integer less than the value.
    LessThan,
}

impl Operator {
    /// The operator's name as kube-apiserver spells it in `selection.Operator`.
    pub fn as_str(self) -> &'static str {
        match self {
            Operator::In => "in",
            Operator::NotIn => "notin",
            Operator::Equals => "=",
            Operator::DoubleEquals => "==",
            Operator::NotEquals => "!=",
            Operator::Exists => "exists",
            Operator::DoesNotExist => "!",
            Operator::GreaterThan => "gt",
            Operator::LessThan => "lt",
        }
    }
}

/// One condition of a label selector: a key, an operator and the values it compares with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Requirement {
    key: String,
    operator: Operator,
    /// Sorted and free of duplicates, so membership is a binary search.
    values: Vec<String>,
    /// The parsed value of a `>` / `<` requirement; unused otherwise.
    bound: i64,
}

impl Requirement {
    /// Builds a requirement, checking it the way kube-apiserver's `labels.NewRequirement` does: the key must be
    /// a qualified name; `in`/`notin` need values, `=`/`==`/`!=` exactly one, `exists`/`!` none, `gt`/`lt` one
    /// integer; every value must be a valid label value.
    pub fn new(key: impl Into<String>, operator: Operator, values: Vec<String>) -> Result<Requirement, SelectorError> {
        let key = key.into();
        let mut errors = Vec::new();
        let key_errors = label_key_errors(&key);
        if !key_errors.is_empty() {
            errors.push(FieldError {
                path: "key".to_string(),
                value: BadValue::Str(key.clone()),
                detail: key_errors.join("; "),
            });
        }
        let values_error = |detail: &str| FieldError {
            path: "values".to_string(),
            // kube-apiserver renders an empty list of values as a nil slice: `null`.
            value: BadValue::List(if values.is_empty() { None } else { Some(values.clone()) }),
            detail: detail.to_string(),
        };
        let mut bound = 0;
        match operator {
            Operator::In | Operator::NotIn => {
                if values.is_empty() {
                    errors.push(values_error("for 'in', 'notin' operators, values set can't be empty"));
                }
            }
            Operator::Equals | Operator::DoubleEquals | Operator::NotEquals => {
                if values.len() != 1 {
                    errors.push(values_error("exact-match compatibility requires one single value"));
                }
            }
            Operator::Exists | Operator::DoesNotExist => {
                if !values.is_empty() {
                    errors.push(values_error("values set must be empty for exists and does not exist"));
                }
            }
            Operator::GreaterThan | Operator::LessThan => {
                if values.len() != 1 {
                    errors.push(values_error("for 'Gt', 'Lt' operators, exactly one value is required"));
                }
                for (i, v) in values.iter().enumerate() {
                    match v.parse::<i64>() {
                        Ok(n) => bound = n,
                        Err(_) => errors.push(FieldError {
                            path: format!("values[{i}]"),
                            value: BadValue::Str(v.clone()),
                            detail: "for 'Gt', 'Lt' operators, the value must be an integer".to_string(),
                        }),
                    }
                }
            }
        }
        for (i, v) in values.iter().enumerate() {
            let value_errors = label_value_errors(v);
            if !value_errors.is_empty() {
                errors.push(FieldError {
                    path: format!("values[{i}][{key}]"),
                    value: BadValue::Str(v.clone()),
                    detail: value_errors.join("; "),
                });
            }
        }
        if !errors.is_empty() {
            return Err(SelectorError::InvalidRequirement(FieldErrors(errors)));
        }
        let mut values = values;
        values.sort_unstable();
        values.dedup();
        Ok(Requirement { key, operator, values, bound })
    }

    /// The label key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The operator.
    pub fn operator(&self) -> Operator {
        self.operator
    }

    /// The values, sorted and without duplicates.
    pub fn values(&self) -> &[String] {
        &self.values
    }

    fn has_value(&self, value: &str) -> bool {
        self.values.binary_search_by(|v| v.as_str().cmp(value)).is_ok()
    }

    /// Whether `labels` satisfy this requirement.
    pub fn matches<L: Labels + ?Sized>(&self, labels: &L) -> bool {
        let value = labels.label(&self.key);
        match self.operator {
            Operator::In | Operator::Equals | Operator::DoubleEquals => value.is_some_and(|v| self.has_value(v)),
            Operator::NotIn | Operator::NotEquals => value.is_none_or(|v| !self.has_value(v)),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
            Operator::GreaterThan => value.and_then(|v| v.parse::<i64>().ok()).is_some_and(|n| n > self.bound),
            Operator::LessThan => value.and_then(|v| v.parse::<i64>().ok()).is_some_and(|n| n < self.bound),
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.operator == Operator::DoesNotExist {
            f.write_str("!")?;
        }
        f.write_str(&self.key)?;
        let (op, parens) = match self.operator {
            Operator::Exists | Operator::DoesNotExist => return Ok(()),
            Operator::Equals => ("=", false),
            Operator::DoubleEquals => ("==", false),
            Operator::NotEquals => ("!=", false),
            Operator::In => (" in ", true),
            Operator::NotIn => (" notin ", true),
            Operator::GreaterThan => (">", false),
            Operator::LessThan => ("<", false),
        };
        f.write_str(op)?;
        if parens {
            f.write_str("(")?;
        }
        f.write_str(&self.values.join(","))?;
        if parens {
            f.write_str(")")?;
        }
        Ok(())
    }
}

/// A parsed label selector: requirements that must all hold, or a selector that matches nothing.
///
/// The default value matches everything.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct LabelSelector {
    /// Sorted by key, as kube-apiserver sorts them.
    requirements: Vec<Requirement>,
    nothing: bool,
}

/// An empty label set, for objects without `metadata.labels`.
struct NoLabels;

impl Labels for NoLabels {
    fn label(&self, _key: &str) -> Option<&str> {
        None
    }
}

impl LabelSelector {
    /// The selector that matches every label set (an empty `labelSelector`).
    pub fn everything() -> LabelSelector {
        LabelSelector::default()
    }

    /// The selector that matches nothing (what a missing `metav1.LabelSelector` means).
    pub fn nothing() -> LabelSelector {
        LabelSelector { requirements: Vec::new(), nothing: true }
    }

    /// Builds a selector requiring every label of `set` to have exactly its value, without validating keys or
    /// values (like kube-apiserver's `SelectorFromValidatedSet`).
    pub fn from_set<'a>(set: impl IntoIterator<Item = (&'a str, &'a str)>) -> LabelSelector {
        let mut requirements: Vec<Requirement> = set
            .into_iter()
            .map(|(k, v)| Requirement {
                key: k.to_string(),
                operator: Operator::Equals,
                values: vec![v.to_string()],
                bound: 0,
            })
            .collect();
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        LabelSelector { requirements, nothing: false }
    }

    /// Parses the `labelSelector` query parameter grammar:
    ///
    /// ```text
    /// selector    ::= requirement | requirement "," selector
    /// requirement ::= ["!"] KEY [ ("in" | "notin") "(" VALUES ")" | ("=" | "==" | "!=" | ">" | "<") VALUE ]
    /// ```
    ///
    /// Whitespace around tokens is ignored; an empty string selects everything. Errors carry kube-apiserver's
    /// messages (`unable to parse requirement: ...`, `found 'x', expected: ...`).
    pub fn parse(selector: &str) -> Result<LabelSelector, SelectorError> {
        let mut requirements = Parser::new(selector).parse()?;
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(LabelSelector { requirements, nothing: false })
    }

    /// Converts a `metav1.LabelSelector` JSON value (`matchLabels` and `matchExpressions`) the way
    /// kube-apiserver's `LabelSelectorAsSelector` does: `null` matches nothing, `{}` matches everything, and
    /// every requirement is validated.
    pub fn from_label_selector(selector: &Value) -> Result<LabelSelector, SelectorError> {
        let obj = match selector {
            Value::Null => return Ok(LabelSelector::nothing()),
            Value::Object(obj) => obj,
            _ => return Err(malformed("selector", "an object")),
        };
        let mut labels: Vec<(&str, &str)> = Vec::new();
        match obj.get("matchLabels") {
            None | Some(Value::Null) => {}
            Some(Value::Object(m)) => {
                for (k, v) in m {
                    let v = v.as_str().ok_or_else(|| malformed(&format!("matchLabels[{k}]"), "a string"))?;
                    labels.push((k, v));
                }
            }
            Some(_) => return Err(malformed("matchLabels", "an object")),
        }
        let expressions: &[Value] = match obj.get("matchExpressions") {
            None | Some(Value::Null) => &[],
            Some(Value::Array(a)) => a,
            Some(_) => return Err(malformed("matchExpressions", "a list")),
        };
        if labels.is_empty() && expressions.is_empty() {
            return Ok(LabelSelector::everything());
        }
        labels.sort_unstable();
        let mut requirements = Vec::with_capacity(labels.len() + expressions.len());
        for (k, v) in labels {
            requirements.push(Requirement::new(k, Operator::Equals, vec![v.to_string()])?);
        }
        for (i, expr) in expressions.iter().enumerate() {
            let at = |field: &str| format!("matchExpressions[{i}].{field}");
            if !expr.is_object() {
                return Err(malformed(&format!("matchExpressions[{i}]"), "an object"));
            }
            let text = |field: &str| match expr.get(field) {
                None | Some(Value::Null) => Ok(""),
                Some(Value::String(s)) => Ok(s.as_str()),
                Some(_) => Err(malformed(&at(field), "a string")),
            };
            let key = text("key")?;
            let operator = text("operator")?;
            let values = match expr.get("values") {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::Array(a)) => a
                    .iter()
                    .enumerate()
                    .map(|(j, v)| {
                        v.as_str()
                            .map(str::to_string)
                            .ok_or_else(|| malformed(&format!("{}[{j}]", at("values")), "a string"))
                    })
                    .collect::<Result<Vec<_>, _>>()?,
                Some(_) => return Err(malformed(&at("values"), "a list")),
            };
            requirements.push(Requirement::new(key, expression_operator(operator)?, values)?);
        }
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(LabelSelector { requirements, nothing: false })
    }

    /// Like [`LabelSelector::from_label_selector`], for a field that may be absent (absent matches nothing).
    pub fn from_optional_label_selector(selector: Option<&Value>) -> Result<LabelSelector, SelectorError> {
        selector.map_or_else(|| Ok(LabelSelector::nothing()), LabelSelector::from_label_selector)
    }

    /// Converts a typed `metav1.LabelSelector`, with the same rules as [`LabelSelector::from_label_selector`].
    pub fn from_k8s(selector: Option<&metav1::LabelSelector>) -> Result<LabelSelector, SelectorError> {
        let Some(selector) = selector else { return Ok(LabelSelector::nothing()) };
        let labels = selector.match_labels.as_ref();
        let expressions = selector.match_expressions.as_deref().unwrap_or_default();
        if labels.is_none_or(BTreeMap::is_empty) && expressions.is_empty() {
            return Ok(LabelSelector::everything());
        }
        let mut requirements = Vec::new();
        for (k, v) in labels.into_iter().flatten() {
            requirements.push(Requirement::new(k.as_str(), Operator::Equals, vec![v.clone()])?);
        }
        for expr in expressions {
            let values = expr.values.clone().unwrap_or_default();
            requirements.push(Requirement::new(expr.key.as_str(), expression_operator(&expr.operator)?, values)?);
        }
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(LabelSelector { requirements, nothing: false })
    }

    /// Whether the selector places no restriction (kube-apiserver's `Empty()`); false for one matching nothing.
    pub fn is_everything(&self) -> bool {
        !self.nothing && self.requirements.is_empty()
    }

    /// Whether the selector matches nothing at all.
    pub fn is_nothing(&self) -> bool {
        self.nothing
    }

    /// The requirements, sorted by key.
    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    /// Whether `labels` satisfy every requirement.
    pub fn matches<L: Labels + ?Sized>(&self, labels: &L) -> bool {
        !self.nothing && self.requirements.iter().all(|r| r.matches(labels))
    }

    /// Whether an object's `metadata.labels` satisfy the selector (an object without labels has none).
    pub fn matches_object(&self, obj: &Value) -> bool {
        match obj.get("metadata").and_then(|m| m.get("labels")) {
            Some(Value::Object(labels)) => self.matches(labels),
            _ => self.matches(&NoLabels),
        }
    }

    /// If the selector pins label `key` to a single value (`key=v`, `key==v` or `key in (v)`), that value. Used
    /// to narrow a list before matching, as kube-apiserver's `RequiresExactMatch`.
    pub fn requires_exact_match(&self, key: &str) -> Option<&str> {
        let r = self.requirements.iter().find(|r| r.key == key)?;
        match (r.operator, r.values.as_slice()) {
            (Operator::Equals | Operator::DoubleEquals | Operator::In, [only]) => Some(only),
            _ => None,
        }
    }
}

fn malformed(path: &str, expected: &'static str) -> SelectorError {
    SelectorError::MalformedLabelSelector { path: path.to_string(), expected }
}

fn expression_operator(operator: &str) -> Result<Operator, SelectorError> {
    match operator {
        "In" => Ok(Operator::In),
        "NotIn" => Ok(Operator::NotIn),
        "Exists" => Ok(Operator::Exists),
        "DoesNotExist" => Ok(Operator::DoesNotExist),
        other => Err(SelectorError::InvalidOperator { operator: other.to_string() }),
    }
}

impl fmt::Display for LabelSelector {
    /// The canonical string form (requirements sorted by key, values sorted), empty for everything and nothing.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

impl FromStr for LabelSelector {
    type Err = SelectorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        LabelSelector::parse(s)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tok {
    End,
    ClosedPar,
    Comma,
    DoesNotExist,
    DoubleEquals,
    Equals,
    GreaterThan,
    Identifier,
    In,
    LessThan,
    NotEquals,
    NotIn,
    OpenPar,
}

fn keyword(s: &str) -> Option<Tok> {
    Some(match s {
        ")" => Tok::ClosedPar,
        "," => Tok::Comma,
        "!" => Tok::DoesNotExist,
        "==" => Tok::DoubleEquals,
        "=" => Tok::Equals,
        ">" => Tok::GreaterThan,
        "in" => Tok::In,
        "<" => Tok::LessThan,
        "!=" => Tok::NotEquals,
        "notin" => Tok::NotIn,
        "(" => Tok::OpenPar,
        _ => return None,
    })
}

fn is_whitespace(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

fn is_special(b: u8) -> bool {
    matches!(b, b'=' | b'!' | b'(' | b')' | b',' | b'>' | b'<')
}

/// The tokenizer, byte for byte the one kube-apiserver uses, so odd inputs fail with the same messages (a NUL
/// byte, for instance, ends a token and, where a token would start, the input).
struct Lexer<'a> {
    src: &'a str,
    pos: usize,
}

impl<'a> Lexer<'a> {
    fn read(&mut self) -> u8 {
        match self.src.as_bytes().get(self.pos) {
            Some(&b) => {
                self.pos += 1;
                b
            }
            None => 0,
        }
    }

    fn unread(&mut self) {
        self.pos = self.pos.saturating_sub(1);
    }

    fn slice(&self, start: usize, end: usize) -> &'a str {
        // Tokens start and end next to ASCII bytes, so these are always character boundaries.
        self.src.get(start..end).unwrap_or_default()
    }

    fn scan_identifier_or_keyword(&mut self) -> (Tok, &'a str) {
        let start = self.pos;
        let mut end = start;
        loop {
            let b = self.read();
            if b == 0 {
                break;
            }
            if is_special(b) || is_whitespace(b) {
                self.unread();
                break;
            }
            end = self.pos;
        }
        let literal = self.slice(start, end);
        match keyword(literal) {
            Some(tok) => (tok, literal),
            None => (Tok::Identifier, literal),
        }
    }

    fn scan_special_symbol(&mut self) -> (Tok, &'a str) {
        let start = self.pos;
        let mut last: Option<(Tok, usize)> = None;
        loop {
            let b = self.read();
            if b == 0 {
                break;
            }
            if !is_special(b) {
                self.unread();
                break;
            }
            match keyword(self.slice(start, self.pos)) {
                Some(tok) => last = Some((tok, self.pos)),
                None if last.is_some() => {
                    self.unread();
                    break;
                }
                None => {}
            }
        }
        match last {
            Some((tok, end)) => (tok, self.slice(start, end)),
            // Every special character is a token by itself, so this is unreachable; end the input defensively.
            None => (Tok::End, ""),
        }
    }

    fn lex(&mut self) -> (Tok, &'a str) {
        let mut b = self.read();
        while is_whitespace(b) {
            b = self.read();
        }
        if b == 0 {
            return (Tok::End, "");
        }
        self.unread();
        if is_special(b) { self.scan_special_symbol() } else { self.scan_identifier_or_keyword() }
    }
}

/// Whether `in` / `notin` are keywords (after a key) or plain values (everywhere else).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Context {
    KeyAndOperator,
    Values,
}

struct Parser<'a> {
    items: Vec<(Tok, &'a str)>,
    position: usize,
}

const EXPECTED_IDENTIFIER: &str = "identifier";
const EXPECTED_OPERATOR: &str = "in, notin, =, ==, !=, gt, lt";

fn unexpected(found: &str, expected: &'static str) -> SelectorError {
    SelectorError::UnexpectedToken { found: found.to_string(), expected }
}

impl<'a> Parser<'a> {
    fn new(selector: &'a str) -> Parser<'a> {
        let mut lexer = Lexer { src: selector, pos: 0 };
        let mut items = Vec::new();
        loop {
            let item = lexer.lex();
            items.push(item);
            if item.0 == Tok::End {
                break;
            }
        }
        Parser { items, position: 0 }
    }

    fn lookahead(&self, context: Context) -> (Tok, &'a str) {
        let (tok, lit) = self.items.get(self.position).copied().unwrap_or((Tok::End, ""));
        match (context, tok) {
            (Context::Values, Tok::In | Tok::NotIn) => (Tok::Identifier, lit),
            _ => (tok, lit),
        }
    }

    fn consume(&mut self, context: Context) -> (Tok, &'a str) {
        let item = self.lookahead(context);
        self.position += 1;
        item
    }

    fn parse(&mut self) -> Result<Vec<Requirement>, SelectorError> {
        let mut requirements = Vec::new();
        loop {
            let (tok, lit) = self.lookahead(Context::Values);
            match tok {
                Tok::Identifier | Tok::DoesNotExist => {
                    let r = self.parse_requirement().map_err(|e| SelectorError::Requirement(Box::new(e)))?;
                    requirements.push(r);
                    let (t, l) = self.consume(Context::Values);
                    match t {
                        Tok::End => return Ok(requirements),
                        Tok::Comma => {
                            let (t2, l2) = self.lookahead(Context::Values);
                            if t2 != Tok::Identifier && t2 != Tok::DoesNotExist {
                                return Err(unexpected(l2, "identifier after ','"));
                            }
                        }
                        _ => return Err(unexpected(l, "',' or 'end of string'")),
                    }
                }
                Tok::End => return Ok(requirements),
                _ => return Err(unexpected(lit, "!, identifier, or 'end of string'")),
            }
        }
    }

    fn parse_requirement(&mut self) -> Result<Requirement, SelectorError> {
        let (key, operator) = self.parse_key_and_infer_operator()?;
        if let Some(op @ (Operator::Exists | Operator::DoesNotExist)) = operator {
            return Requirement::new(key, op, Vec::new());
        }
        let operator = self.parse_operator()?;
        let values = match operator {
            Operator::In | Operator::NotIn => self.parse_values()?,
            _ => self.parse_exact_value()?,
        };
        Requirement::new(key, operator, values)
    }

    fn parse_key_and_infer_operator(&mut self) -> Result<(&'a str, Option<Operator>), SelectorError> {
        let mut operator = None;
        let (mut tok, mut literal) = self.consume(Context::Values);
        if tok == Tok::DoesNotExist {
            operator = Some(Operator::DoesNotExist);
            (tok, literal) = self.consume(Context::Values);
        }
        if tok != Tok::Identifier {
            return Err(unexpected(literal, EXPECTED_IDENTIFIER));
        }
        let key_errors = label_key_errors(literal);
        if !key_errors.is_empty() {
            return Err(SelectorError::InvalidKey(FieldError {
                path: "<nil>".to_string(),
                value: BadValue::Str(literal.to_string()),
                detail: key_errors.join("; "),
            }));
        }
        let (next, _) = self.lookahead(Context::Values);
        if (next == Tok::End || next == Tok::Comma) && operator.is_none() {
            operator = Some(Operator::Exists);
        }
        Ok((literal, operator))
    }

    fn parse_operator(&mut self) -> Result<Operator, SelectorError> {
        let (tok, lit) = self.consume(Context::KeyAndOperator);
        Ok(match tok {
            Tok::In => Operator::In,
            Tok::Equals => Operator::Equals,
            Tok::DoubleEquals => Operator::DoubleEquals,
            Tok::GreaterThan => Operator::GreaterThan,
            Tok::LessThan => Operator::LessThan,
            Tok::NotIn => Operator::NotIn,
            Tok::NotEquals => Operator::NotEquals,
            _ => return Err(unexpected(lit, EXPECTED_OPERATOR)),
        })
    }

    fn parse_values(&mut self) -> Result<Vec<String>, SelectorError> {
        let (tok, lit) = self.consume(Context::Values);
        if tok != Tok::OpenPar {
            return Err(SelectorError::ExpectedOpenParen { found: lit.to_string() });
        }
        let (tok, lit) = self.lookahead(Context::Values);
        match tok {
            Tok::Identifier | Tok::Comma => {
                let values = self.parse_identifiers_list()?;
                let (tok, _) = self.consume(Context::Values);
                if tok != Tok::ClosedPar {
                    return Err(unexpected(lit, "')'"));
                }
                Ok(values)
            }
            Tok::ClosedPar => {
                self.consume(Context::Values);
                Ok(vec![String::new()])
            }
            _ => Err(unexpected(lit, "',', ')' or identifier")),
        }
    }

    /// A comma-separated list in which empty entries stand for the empty value; returned sorted, deduplicated.
    fn parse_identifiers_list(&mut self) -> Result<Vec<String>, SelectorError> {
        let mut values: Vec<String> = Vec::new();
        let done = |mut values: Vec<String>| {
            values.sort_unstable();
            values.dedup();
            values
        };
        loop {
            let (tok, lit) = self.consume(Context::Values);
            match tok {
                Tok::Identifier => {
                    values.push(lit.to_string());
                    let (tok2, lit2) = self.lookahead(Context::Values);
                    match tok2 {
                        Tok::Comma => continue,
                        Tok::ClosedPar => return Ok(done(values)),
                        _ => return Err(unexpected(lit2, "',' or ')'")),
                    }
                }
                Tok::Comma => {
                    if values.is_empty() {
                        values.push(String::new());
                    }
                    let (tok2, _) = self.lookahead(Context::Values);
                    if tok2 == Tok::ClosedPar {
                        values.push(String::new());
                        return Ok(done(values));
                    }
                    if tok2 == Tok::Comma {
                        self.consume(Context::Values);
                        values.push(String::new());
                    }
                }
                _ => return Err(unexpected(lit, "',', or identifier")),
            }
        }
    }

    fn parse_exact_value(&mut self) -> Result<Vec<String>, SelectorError> {
        let (tok, _) = self.lookahead(Context::Values);
        if tok == Tok::End || tok == Tok::Comma {
            return Ok(vec![String::new()]);
        }
        let (tok, lit) = self.consume(Context::Values);
        if tok == Tok::Identifier { Ok(vec![lit.to_string()]) } else { Err(unexpected(lit, EXPECTED_IDENTIFIER)) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn parse(s: &str) -> LabelSelector {
        LabelSelector::parse(s).unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
    }

    fn error(s: &str) -> String {
        match LabelSelector::parse(s) {
            Ok(sel) => panic!("{s:?} should not parse, got {sel}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn every_operator_of_the_grammar_parses_and_prints_canonically() {
        let cases = [
            ("a=b", "a=b"),
            ("a==b", "a==b"),
            ("a!=b", "a!=b"),
            ("a in (y,x)", "a in (x,y)"),
            ("a notin (x)", "a notin (x)"),
            ("a", "a"),
            ("!a", "!a"),
            ("a>5", "a>5"),
            ("a<5", "a<5"),
            ("x in (foo,,baz),y,z notin ()", "x in (,baz,foo),y,z notin ()"),
            ("  b = c ,  a  ", "a,b=c"),
            ("a=", "a="),
            ("app.kubernetes.io/name=web,tier in (in,notin)", "app.kubernetes.io/name=web,tier in (in,notin)"),
            ("", ""),
        ];
        for (input, canonical) in cases {
            assert_eq!(parse(input).to_string(), canonical, "{input:?}");
        }
    }

    #[test]
    fn equality_and_set_requirements_match_like_kube() {
        let l = labels(&[("app", "web"), ("tier", "front"), ("n", "10")]);
        let yes = [
            "app=web",
            "app==web",
            "app!=db",
            "missing!=x",
            "app in (db,web)",
            "tier notin (back)",
            "missing notin (x)",
            "app",
            "!missing",
            "n>9",
            "n<11",
            "app=web,tier=front",
            "",
        ];
        for s in yes {
            assert!(parse(s).matches(&l), "{s} should match");
        }
        let no = [
            "app=db",
            "app!=web",
            "missing=x",
            "missing in (x)",
            "app notin (web)",
            "missing",
            "!app",
            "n>10",
            "app<5",
            "missing>1",
            "app=web,tier=back",
        ];
        for s in no {
            assert!(!parse(s).matches(&l), "{s} should not match");
        }
    }

    #[test]
    fn empty_value_matches_an_empty_label_but_not_a_missing_one() {
        let sel = parse("a=");
        assert!(sel.matches(&labels(&[("a", "")])));
        assert!(!sel.matches(&labels(&[])));
        assert!(parse("a in ()").matches(&labels(&[("a", "")])));
    }

    #[test]
    fn json_labels_and_objects_are_matched_without_conversion() {
        let obj = json!({"metadata": {"name": "p", "labels": {"app": "web"}}});
        assert!(parse("app=web").matches_object(&obj));
        assert!(!parse("app=db").matches_object(&obj));
        let unlabelled = json!({"metadata": {"name": "p"}});
        assert!(parse("!app").matches_object(&unlabelled));
        assert!(!parse("app").matches_object(&unlabelled));
        assert!(parse("").matches_object(&unlabelled));
    }

    #[test]
    fn syntax_errors_carry_kube_apiserver_messages() {
        assert_eq!(error("a b"), "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt");
        assert_eq!(error("a=b c"), "found 'c', expected: ',' or 'end of string'");
        assert_eq!(error("a,"), "found '', expected: identifier after ','");
        assert_eq!(error("a,,b"), "found ',', expected: identifier after ','");
        assert_eq!(error("=a"), "found '=', expected: !, identifier, or 'end of string'");
        assert_eq!(error("a in b"), "unable to parse requirement: found 'b' expected: '('");
        assert_eq!(error("a in (b"), "unable to parse requirement: found '', expected: ',' or ')'");
        assert_eq!(error("a in (b c)"), "unable to parse requirement: found 'c', expected: ',' or ')'");
        assert_eq!(error("a in (=)"), "unable to parse requirement: found '=', expected: ',', ')' or identifier");
        assert_eq!(error("a=(b)"), "unable to parse requirement: found '(', expected: identifier");
        assert_eq!(error("!"), "unable to parse requirement: found '', expected: identifier");
        assert_eq!(error("!a=b"), "found '=', expected: ',' or 'end of string'");
        assert_eq!(
            error("env IN (a)"),
            "unable to parse requirement: found 'IN', expected: in, notin, =, ==, !=, gt, lt"
        );
        assert_eq!(error("a (b)"), "unable to parse requirement: found '(', expected: in, notin, =, ==, !=, gt, lt");
    }

    #[test]
    fn invalid_keys_and_values_are_explained_with_their_path() {
        let e = error("a:=b");
        assert!(
            e.starts_with("unable to parse requirement: <nil>: Invalid value: \"a:\": name part must consist of"),
            "{e}"
        );
        let e = error("a=-b");
        assert!(
            e.starts_with(
                "unable to parse requirement: values[0][a]: Invalid value: \"-b\": a valid label must be an empty \
                 string"
            ),
            "{e}"
        );
        // The index is that of the sorted value set.
        let e = error("a in (z,-b)");
        assert!(e.contains("values[0][a]: Invalid value: \"-b\""), "{e}");
        let e = error("a>x");
        assert_eq!(
            e,
            "unable to parse requirement: values[0]: Invalid value: \"x\": for 'Gt', 'Lt' operators, the value must \
             be an integer"
        );
    }

    #[test]
    fn several_invalid_values_are_reported_together() {
        let e = error("a in (-x,-y)");
        assert!(e.starts_with("unable to parse requirement: [values[0][a]: Invalid value: \"-x\""), "{e}");
        assert!(e.contains(", values[1][a]: Invalid value: \"-y\""), "{e}");
        assert!(e.ends_with(']'), "{e}");
    }

    #[test]
    fn nul_byte_ends_the_input_where_a_token_would_start() {
        assert_eq!(parse("a=b \0junk").to_string(), "a=b");
        // Inside a token scan the NUL is consumed, so what follows is read on (as kube-apiserver does).
        assert_eq!(parse("a=b,\0junk").to_string(), "a=b,junk");
    }

    #[test]
    fn exact_match_is_reported_for_equality_and_single_value_sets() {
        assert_eq!(parse("a=x,b").requires_exact_match("a"), Some("x"));
        assert_eq!(parse("a in (x)").requires_exact_match("a"), Some("x"));
        assert_eq!(parse("a in (x,y)").requires_exact_match("a"), None);
        assert_eq!(parse("a!=x").requires_exact_match("a"), None);
        assert_eq!(parse("b=x").requires_exact_match("a"), None);
    }

    #[test]
    fn label_selector_object_converts_match_labels_and_expressions() {
        let sel = LabelSelector::from_label_selector(&json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["front", "edge"]},
                {"key": "legacy", "operator": "DoesNotExist"},
                {"key": "zone", "operator": "Exists"},
                {"key": "env", "operator": "NotIn", "values": ["dev"]},
            ]
        }))
        .expect("valid selector");
        assert_eq!(sel.to_string(), "app=web,env notin (dev),!legacy,tier in (edge,front),zone");
        assert!(sel.matches(&labels(&[("app", "web"), ("tier", "edge"), ("zone", "a")])));
        assert!(!sel.matches(&labels(&[("app", "web"), ("tier", "edge"), ("zone", "a"), ("legacy", "1")])));
    }

    #[test]
    fn null_label_selector_matches_nothing_and_empty_matches_everything() {
        let nothing = LabelSelector::from_label_selector(&Value::Null).expect("null is valid");
        assert!(nothing.is_nothing());
        assert!(!nothing.matches(&labels(&[])));
        assert!(!LabelSelector::from_optional_label_selector(None).expect("absent").matches(&labels(&[])));
        let everything = LabelSelector::from_label_selector(&json!({})).expect("empty is valid");
        assert!(everything.is_everything());
        assert!(everything.matches(&labels(&[("x", "y")])));
        let empty_lists = LabelSelector::from_label_selector(&json!({"matchLabels": {}, "matchExpressions": []}));
        assert!(empty_lists.expect("valid").is_everything());
    }

    #[test]
    fn invalid_label_selector_objects_are_rejected_with_kube_messages() {
        let err = |v: Value| LabelSelector::from_label_selector(&v).expect_err("should be invalid").to_string();
        assert_eq!(
            err(json!({"matchExpressions": [{"key": "a", "operator": "Equals", "values": ["x"]}]})),
            "\"Equals\" is not a valid label selector operator"
        );
        assert_eq!(
            err(json!({"matchExpressions": [{"key": "a", "operator": "In"}]})),
            "values: Invalid value: null: for 'in', 'notin' operators, values set can't be empty"
        );
        assert_eq!(
            err(json!({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]})),
            "values: Invalid value: [\"x\"]: values set must be empty for exists and does not exist"
        );
        assert!(
            err(json!({"matchLabels": {"bad key": "x"}})).starts_with("key: Invalid value: \"bad key\": name part")
        );
        assert!(err(json!({"matchLabels": {"a": "-x"}})).starts_with("values[0][a]: Invalid value: \"-x\""));
        assert_eq!(err(json!({"matchLabels": ["a"]})), "invalid label selector: matchLabels must be an object");
        assert_eq!(
            err(json!({"matchExpressions": [{"key": "a", "operator": "In", "values": [1]}]})),
            "invalid label selector: matchExpressions[0].values[0] must be a string"
        );
    }

    #[test]
    fn typed_label_selector_converts_like_json() {
        let typed = metav1::LabelSelector {
            match_labels: Some([("app".to_string(), "web".to_string())].into_iter().collect()),
            match_expressions: Some(vec![metav1::LabelSelectorRequirement {
                key: "tier".into(),
                operator: "NotIn".into(),
                values: Some(vec!["db".into()]),
            }]),
        };
        let sel = LabelSelector::from_k8s(Some(&typed)).expect("valid");
        assert_eq!(sel.to_string(), "app=web,tier notin (db)");
        assert!(LabelSelector::from_k8s(None).expect("absent").is_nothing());
        assert!(LabelSelector::from_k8s(Some(&metav1::LabelSelector::default())).expect("empty").is_everything());
    }

    #[test]
    fn from_set_requires_every_pair() {
        let sel = LabelSelector::from_set([("b", "2"), ("a", "1")]);
        assert_eq!(sel.to_string(), "a=1,b=2");
        assert!(sel.matches(&labels(&[("a", "1"), ("b", "2"), ("c", "3")])));
        assert!(!sel.matches(&labels(&[("a", "1")])));
    }

    #[test]
    fn requirement_constructor_validates_value_counts() {
        let err = Requirement::new("a", Operator::Equals, vec!["x".into(), "y".into()]).expect_err("two values");
        assert_eq!(
            err.to_string(),
            "values: Invalid value: [\"x\",\"y\"]: exact-match compatibility requires one single value"
        );
        assert!(Requirement::new("a", Operator::GreaterThan, vec!["3".into()]).is_ok());
        // The bound is a label value too, so a negative number is not accepted (as in kube-apiserver).
        assert!(Requirement::new("a", Operator::LessThan, vec!["-3".into()]).is_err());
    }
}
