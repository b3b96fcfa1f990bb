//! The JSONPath subset kubectl and kube-apiserver use for printer columns (client-go's `jsonpath`):
//! `.a.b`, `.a[0]`, `.a[-1]`, `.a[1:3]`, `.a[*].b`, `.a.*`, `..b`, `.a['x.y']`, `.a[0,2]` and filters such as
//! `.conditions[?(@.type=="Ready")].status`. Missing keys give no result rather than an error, as the
//! printer columns allow.

use serde_json::Value;

/// Why a JSONPath expression could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonPathError {
    /// The expression ended inside a bracket, quote or filter.
    #[error("unterminated {what} in JSONPath {expression:?}")]
    Unterminated {
        /// What was left open: `[`, a quote, a filter.
        what: &'static str,
        /// The expression.
        expression: String,
    },
    /// A character that cannot start a step.
    #[error("unexpected {found:?} at offset {offset} in JSONPath {expression:?}")]
    Unexpected {
        /// The character found.
        found: char,
        /// Its byte offset.
        offset: usize,
        /// The expression.
        expression: String,
    },
    /// A bracket whose content is neither an index, a slice, a quoted name, `*` nor a filter.
    #[error("invalid array index or name {content:?} in JSONPath {expression:?}")]
    InvalidBracket {
        /// The bracket's content.
        content: String,
        /// The expression.
        expression: String,
    },
}

#[derive(Clone, Debug, PartialEq)]
enum Step {
    Field(String),
    Wildcard,
    Recursive(String),
    Index(Vec<i64>),
    Slice(Option<i64>, Option<i64>, Option<i64>),
    Filter(Filter),
}

#[derive(Clone, Debug, PartialEq)]
struct Filter {
    left: Vec<Step>,
    op: Option<(String, Literal)>,
}

#[derive(Clone, Debug, PartialEq)]
enum Literal {
    Str(String),
    Num(f64),
    Bool(bool),
    Path(Vec<Step>),
}

/// A parsed JSONPath expression.
#[derive(Clone, Debug, PartialEq)]
pub struct JsonPath {
    steps: Vec<Step>,
}

impl JsonPath {
    /// Parses `expression`, with or without the surrounding `{}` of a template.
    pub fn parse(expression: &str) -> Result<JsonPath, JsonPathError> {
        let trimmed = expression.trim();
        let inner = trimmed.strip_prefix('{').and_then(|t| t.strip_suffix('}')).unwrap_or(trimmed);
        let inner = inner.strip_prefix('$').unwrap_or(inner);
        let mut p = Parser { s: inner, pos: 0, expression };
        let steps = p.steps(false)?;
        Ok(JsonPath { steps })
    }

    /// Every value the expression selects in `root`, in document order.
    pub fn find<'a>(&self, root: &'a Value) -> Vec<&'a Value> {
        eval(&self.steps, vec![root])
    }
}

struct Parser<'a> {
    s: &'a str,
    pos: usize,
    expression: &'a str,
}

impl Parser<'_> {
    fn peek(&self) -> Option<char> {
        self.s[self.pos..].chars().next()
    }

    fn unexpected(&self, found: char) -> JsonPathError {
        JsonPathError::Unexpected { found, offset: self.pos, expression: self.expression.to_string() }
    }

    fn unterminated(&self, what: &'static str) -> JsonPathError {
        JsonPathError::Unterminated { what, expression: self.expression.to_string() }
    }

    /// Steps until the end, or (inside a filter) until an operator or `)`.
    fn steps(&mut self, in_filter: bool) -> Result<Vec<Step>, JsonPathError> {
        let mut steps = Vec::new();
        while let Some(c) = self.peek() {
            match c {
                '.' => {
                    self.pos += 1;
                    if self.peek() == Some('.') {
                        self.pos += 1;
                        let name = self.ident();
                        steps.push(Step::Recursive(name));
                    } else if self.peek() == Some('*') {
                        self.pos += 1;
                        steps.push(Step::Wildcard);
                    } else {
                        let name = self.ident();
                        if !name.is_empty() {
                            steps.push(Step::Field(name));
                        }
                    }
                }
                '[' => steps.push(self.bracket()?),
                c if in_filter && (c.is_whitespace() || "=!<>)".contains(c)) => break,
                c if c.is_whitespace() => self.pos += c.len_utf8(),
                c => return Err(self.unexpected(c)),
            }
        }
        Ok(steps)
    }

    fn ident(&mut self) -> String {
        let rest = &self.s[self.pos..];
        let len = rest.find(['.', '[', ']', ' ', '=', '!', '<', '>', ')', '(']).unwrap_or(rest.len());
        self.pos += len;
        rest[..len].to_string()
    }

    fn bracket(&mut self) -> Result<Step, JsonPathError> {
        self.pos += 1;
        let rest = &self.s[self.pos..];
        if rest.starts_with("?(") {
            self.pos += 2;
            let filter = self.filter()?;
            if !self.s[self.pos..].starts_with(")]") {
                return Err(self.unterminated("filter"));
            }
            self.pos += 2;
            return Ok(Step::Filter(filter));
        }
        if let Some(q @ ('\'' | '"')) = rest.chars().next() {
            let body = &rest[1..];
            let end = body.find(q).ok_or_else(|| self.unterminated("quote"))?;
            let name = body[..end].to_string();
            self.pos += end + 2;
            if self.peek() != Some(']') {
                return Err(self.unterminated("["));
            }
            self.pos += 1;
            return Ok(Step::Field(name));
        }
        let end = rest.find(']').ok_or_else(|| self.unterminated("["))?;
        let content = rest[..end].trim().to_string();
        self.pos += end + 1;
        let invalid =
            || JsonPathError::InvalidBracket { content: content.clone(), expression: self.expression.to_string() };
        if content == "*" {
            return Ok(Step::Wildcard);
        }
        if content.contains(':') {
            let parts: Vec<&str> = content.split(':').map(str::trim).collect();
            if parts.len() > 3 {
                return Err(invalid());
            }
            let num = |s: &str| -> Result<Option<i64>, JsonPathError> {
                if s.is_empty() { Ok(None) } else { s.parse().map(Some).map_err(|_| invalid()) }
            };
            let start = num(parts[0])?;
            let stop = num(parts.get(1).copied().unwrap_or(""))?;
            let step = num(parts.get(2).copied().unwrap_or(""))?;
            return Ok(Step::Slice(start, stop, step));
        }
        let indices: Result<Vec<i64>, _> = content.split(',').map(|p| p.trim().parse::<i64>()).collect();
        match indices {
            Ok(i) if !i.is_empty() => Ok(Step::Index(i)),
            _ => Err(invalid()),
        }
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.pos += 1;
        }
    }

    fn filter(&mut self) -> Result<Filter, JsonPathError> {
        self.skip_ws();
        if self.peek() != Some('@') {
            return Err(self.peek().map_or_else(|| self.unterminated("filter"), |c| self.unexpected(c)));
        }
        self.pos += 1;
        let left = self.steps(true)?;
        self.skip_ws();
        let rest = &self.s[self.pos..];
        let op = ["==", "!=", "<=", ">=", "<", ">"].into_iter().find(|op| rest.starts_with(op));
        let Some(op) = op else {
            return Ok(Filter { left, op: None });
        };
        self.pos += op.len();
        self.skip_ws();
        let literal = self.literal()?;
        self.skip_ws();
        Ok(Filter { left, op: Some((op.to_string(), literal)) })
    }

    fn literal(&mut self) -> Result<Literal, JsonPathError> {
        let rest = &self.s[self.pos..];
        match rest.chars().next() {
            Some(q @ ('\'' | '"')) => {
                let body = &rest[1..];
                let end = body.find(q).ok_or_else(|| self.unterminated("quote"))?;
                self.pos += end + 2;
                Ok(Literal::Str(body[..end].to_string()))
            }
            Some('@') => {
                self.pos += 1;
                Ok(Literal::Path(self.steps(true)?))
            }
            Some(_) => {
                let len = rest.find(|c: char| c == ')' || c.is_whitespace()).unwrap_or(rest.len());
                let word = &rest[..len];
                self.pos += len;
                match word {
                    "true" => Ok(Literal::Bool(true)),
                    "false" => Ok(Literal::Bool(false)),
                    _ => word.parse::<f64>().map(Literal::Num).map_err(|_| JsonPathError::InvalidBracket {
                        content: word.to_string(),
                        expression: self.expression.to_string(),
                    }),
                }
            }
            None => Err(self.unterminated("filter")),
        }
    }
}

fn eval<'a>(steps: &[Step], mut current: Vec<&'a Value>) -> Vec<&'a Value> {
    for step in steps {
        let mut next = Vec::new();
        for v in current {
            apply(step, v, &mut next);
        }
        current = next;
    }
    current
}

fn apply<'a>(step: &Step, v: &'a Value, out: &mut Vec<&'a Value>) {
    match step {
        Step::Field(name) => {
            if let Some(x) = v.get(name.as_str()) {
                out.push(x);
            }
        }
        Step::Wildcard => match v {
            Value::Array(items) => out.extend(items.iter()),
            Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                out.extend(keys.into_iter().filter_map(|k| map.get(k)));
            }
            _ => {}
        },
        Step::Recursive(name) => recurse(name, v, out),
        Step::Index(indices) => {
            if let Value::Array(items) = v {
                for i in indices {
                    let idx = if *i < 0 { items.len() as i64 + i } else { *i };
                    if let Some(x) = usize::try_from(idx).ok().and_then(|i| items.get(i)) {
                        out.push(x);
                    }
                }
            }
        }
        Step::Slice(start, stop, step) => {
            if let Value::Array(items) = v {
                let len = items.len() as i64;
                let clamp = |i: i64| if i < 0 { (len + i).max(0) } else { i.min(len) };
                let start = clamp(start.unwrap_or(0));
                let stop = clamp(stop.unwrap_or(len));
                let step = step.unwrap_or(1).max(1) as usize;
                let (start, stop) = (start as usize, stop as usize);
                if start < stop {
                    out.extend(items[start..stop].iter().step_by(step));
                }
            }
        }
        Step::Filter(filter) => {
            let candidates: Vec<&Value> = match v {
                Value::Array(items) => items.iter().collect(),
                other => vec![other],
            };
            out.extend(candidates.into_iter().filter(|c| matches(filter, c)));
        }
    }
}

fn recurse<'a>(name: &str, v: &'a Value, out: &mut Vec<&'a Value>) {
    match v {
        Value::Object(map) => {
            if let Some(x) = map.get(name) {
                out.push(x);
            }
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            for k in keys {
                if let Some(child) = map.get(k) {
                    recurse(name, child, out);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| recurse(name, i, out)),
        _ => {}
    }
}

fn matches(filter: &Filter, item: &Value) -> bool {
    let left = eval(&filter.left, vec![item]);
    let Some((op, literal)) = &filter.op else {
        return !left.is_empty();
    };
    let Some(lhs) = left.first() else { return false };
    let rhs_owned;
    let rhs: &Value = match literal {
        Literal::Str(s) => {
            rhs_owned = Value::from(s.as_str());
            &rhs_owned
        }
        Literal::Num(n) => {
            rhs_owned = Value::from(*n);
            &rhs_owned
        }
        Literal::Bool(b) => {
            rhs_owned = Value::from(*b);
            &rhs_owned
        }
        Literal::Path(steps) => match eval(steps, vec![item]).first() {
            Some(v) => v,
            None => return false,
        },
    };
    let ordering = match (lhs, rhs) {
        (Value::Number(a), Value::Number(b)) => a.as_f64().zip(b.as_f64()).and_then(|(a, b)| a.partial_cmp(&b)),
        (Value::String(a), Value::String(b)) => Some(a.cmp(b)),
        (a, b) if *a == b => Some(std::cmp::Ordering::Equal),
        _ => None,
    };
    use std::cmp::Ordering::{Equal, Greater, Less};
    match op.as_str() {
        "==" => ordering == Some(Equal),
        "!=" => ordering != Some(Equal),
        "<" => ordering == Some(Less),
        "<=" => matches!(ordering, Some(Less | Equal)),
        ">" => ordering == Some(Greater),
        ">=" => matches!(ordering, Some(Greater | Equal)),
        _ => false,
    }
}

/// A value as the JSONPath printer writes it: strings bare, numbers and booleans as Go prints them, objects
/// and lists as JSON.
pub fn print_value(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) if n.is_f64() => super::object::go_float(n.as_f64().unwrap_or(0.0)),
        Value::Number(n) => n.to_string(),
        Value::Array(_) | Value::Object(_) => v.to_string(),
    }
}
