//! Field selectors: `field=value`, `field==value`, `field!=value`, comma-joined, with `\,` `\=` `\\` escapes
//! in values.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::BuildHasher;
use std::str::FromStr;

use super::SelectorError;

/// The values of an object's selectable fields.
///
/// A field that is not set reads as the empty string when matching, as in kube-apiserver.
pub trait Fields {
    /// The value of field `label`, if the object has it.
    fn field(&self, label: &str) -> Option<Cow<'_, str>>;
}

impl Fields for BTreeMap<String, String> {
    fn field(&self, label: &str) -> Option<Cow<'_, str>> {
        self.get(label).map(|v| Cow::Borrowed(v.as_str()))
    }
}

impl<S: BuildHasher> Fields for HashMap<String, String, S> {
    fn field(&self, label: &str) -> Option<Cow<'_, str>> {
        self.get(label).map(|v| Cow::Borrowed(v.as_str()))
    }
}

/// The comparison of one field selector term.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FieldOp {
    /// `=` or `==`: the field has exactly this value (an unset field has the empty value).
    Equals,
    /// `!=`: the field has any other value.
    NotEquals,
}

/// One `field=value` / `field!=value` term, with the value unescaped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldTerm {
    /// The field label, e.g. `spec.nodeName`.
    pub field: String,
    /// The comparison.
    pub op: FieldOp,
    /// The value, unescaped.
    pub value: String,
}

impl FieldTerm {
    /// Whether `fields` satisfy the term.
    pub fn matches<F: Fields + ?Sized>(&self, fields: &F) -> bool {
        let actual = fields.field(&self.field);
        let actual = actual.as_deref().unwrap_or("");
        match self.op {
            FieldOp::Equals => actual == self.value,
            FieldOp::NotEquals => actual != self.value,
        }
    }
}

impl fmt::Display for FieldTerm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.op {
            FieldOp::Equals => "=",
            FieldOp::NotEquals => "!=",
        };
        write!(f, "{}{}{}", self.field, op, escape_field_value(&self.value))
    }
}

/// A parsed field selector: terms that must all hold. The default value matches everything.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct FieldSelector {
    terms: Vec<FieldTerm>,
}

/// Escapes `\`, `,` and `=` in a value so it can be placed in a field selector.
pub fn escape_field_value(value: &str) -> Cow<'_, str> {
    if !value.contains(['\\', ',', '=']) {
        return Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len() + 4);
    for c in value.chars() {
        if matches!(c, '\\' | ',' | '=') {
            out.push('\\');
        }
        out.push(c);
    }
    Cow::Owned(out)
}

fn unescape_value(value: &str) -> Result<Cow<'_, str>, SelectorError> {
    if !value.contains(['\\', ',', '=']) {
        return Ok(Cow::Borrowed(value));
    }
    let mut out = String::with_capacity(value.len());
    let mut in_slash = false;
    for c in value.chars() {
        if in_slash {
            if !matches!(c, '\\' | ',' | '=') {
                return Err(SelectorError::InvalidEscape { sequence: format!("\\{c}") });
            }
            out.push(c);
            in_slash = false;
            continue;
        }
        match c {
            '\\' => in_slash = true,
            ',' | '=' => return Err(SelectorError::UnescapedCharacter { character: c }),
            c => out.push(c),
        }
    }
    if in_slash {
        return Err(SelectorError::InvalidEscape { sequence: "\\".to_string() });
    }
    Ok(Cow::Owned(out))
}

/// Splits on commas not preceded by a backslash escape; escapes stay in the terms.
fn split_terms(selector: &str) -> Vec<&str> {
    if selector.is_empty() {
        return Vec::new();
    }
    let mut terms = Vec::with_capacity(1);
    let mut start = 0;
    let mut in_slash = false;
    for (i, c) in selector.char_indices() {
        if in_slash {
            in_slash = false;
        } else if c == '\\' {
            in_slash = true;
        } else if c == ',' {
            terms.push(&selector[start..i]);
            start = i + 1;
        }
    }
    terms.push(&selector[start..]);
    terms
}

/// Splits a term at the first operator; at each position `!=` is tried before `==` before `=`, so the field
/// name itself cannot contain an operator.
fn split_term(term: &str) -> Option<(&str, FieldOp, &str)> {
    let bytes = term.as_bytes();
    for i in 0..bytes.len() {
        let rest = &bytes[i..];
        let (op, len) = if rest.starts_with(b"!=") {
            (FieldOp::NotEquals, 2)
        } else if rest.starts_with(b"==") {
            (FieldOp::Equals, 2)
        } else if rest.starts_with(b"=") {
            (FieldOp::Equals, 1)
        } else {
            continue;
        };
        // The operators are ASCII, so both split points are character boundaries.
        return Some((term.get(..i)?, op, term.get(i + len..)?));
    }
    None
}

impl FieldSelector {
    /// The selector that matches everything.
    pub fn everything() -> FieldSelector {
        FieldSelector::default()
    }

    /// A selector with the single term `field=value` (what kube-apiserver adds for a `GET` of one object).
    pub fn one_term_equal(field: impl Into<String>, value: impl Into<String>) -> FieldSelector {
        FieldSelector { terms: vec![FieldTerm { field: field.into(), op: FieldOp::Equals, value: value.into() }] }
    }

    /// Builds a selector from terms, kept in the given order.
    pub fn from_terms(terms: Vec<FieldTerm>) -> FieldSelector {
        FieldSelector { terms }
    }

    /// Parses the `fieldSelector` query parameter. Empty terms are skipped; terms are checked in sorted order,
    /// so with several bad terms the error names the same one kube-apiserver does.
    pub fn parse(selector: &str) -> Result<FieldSelector, SelectorError> {
        let mut parts = split_terms(selector);
        parts.sort_unstable();
        let mut terms = Vec::with_capacity(parts.len());
        for part in parts {
            if part.is_empty() {
                continue;
            }
            let Some((field, op, raw)) = split_term(part) else {
                return Err(SelectorError::FieldSyntax { selector: selector.to_string(), term: part.to_string() });
            };
            let value = unescape_value(raw)?.into_owned();
            terms.push(FieldTerm { field: field.to_string(), op, value });
        }
        Ok(FieldSelector { terms })
    }

    /// The terms, in the order they are checked.
    pub fn terms(&self) -> &[FieldTerm] {
        &self.terms
    }

    /// Whether the selector places no restriction.
    pub fn is_everything(&self) -> bool {
        self.terms.is_empty()
    }

    /// Whether `fields` satisfy every term.
    pub fn matches<F: Fields + ?Sized>(&self, fields: &F) -> bool {
        self.terms.iter().all(|t| t.matches(fields))
    }

    /// If a term pins `field` to one value (`field=v`), that value; lets a list of `metadata.name=x` become a get.
    pub fn requires_exact_match(&self, field: &str) -> Option<&str> {
        self.terms.iter().find(|t| t.field == field && t.op == FieldOp::Equals).map(|t| t.value.as_str())
    }
}

impl fmt::Display for FieldSelector {
    /// The terms joined by commas, values escaped, so the output parses back to the same selector.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, t) in self.terms.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{t}")?;
        }
        Ok(())
    }
}

impl FromStr for FieldSelector {
    type Err = SelectorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        FieldSelector::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn parse(s: &str) -> FieldSelector {
        FieldSelector::parse(s).unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
    }

    #[test]
    fn equality_forms_parse_to_terms() {
        let sel = parse("spec.nodeName=n1,status.phase!=Running,metadata.name==web");
        let terms: Vec<(&str, FieldOp, &str)> =
            sel.terms().iter().map(|t| (t.field.as_str(), t.op, t.value.as_str())).collect();
        assert_eq!(
            terms,
            vec![
                ("metadata.name", FieldOp::Equals, "web"),
                ("spec.nodeName", FieldOp::Equals, "n1"),
                ("status.phase", FieldOp::NotEquals, "Running"),
            ]
        );
    }

    #[test]
    fn unset_fields_read_as_empty() {
        let f = fields(&[("spec.nodeName", "n1")]);
        assert!(parse("spec.nodeName=n1").matches(&f));
        assert!(parse("status.phase=").matches(&f));
        assert!(parse("status.phase!=Running").matches(&f));
        assert!(!parse("spec.nodeName!=n1").matches(&f));
        assert!(!parse("spec.nodeName=").matches(&f));
        assert!(parse("").matches(&f));
        assert!(parse(",").is_everything());
    }

    #[test]
    fn escaped_commas_equals_and_backslashes_are_part_of_the_value() {
        let sel = parse(r"metadata.name=a\,b\=c\\d,spec.x=y");
        assert_eq!(sel.terms()[0].value, r"a,b=c\d");
        assert_eq!(sel.terms()[1].value, "y");
        assert_eq!(sel.to_string(), r"metadata.name=a\,b\=c\\d,spec.x=y");
        assert_eq!(parse(&sel.to_string()), sel);
        assert_eq!(escape_field_value("plain"), "plain");
    }

    #[test]
    fn bad_escapes_and_unescaped_specials_are_rejected_like_kube() {
        let err = |s: &str| FieldSelector::parse(s).expect_err("should fail").to_string();
        assert_eq!(err(r"a=b\n"), r"invalid field selector: invalid escape sequence: \n");
        assert_eq!(err(r"a=b\"), r"invalid field selector: invalid escape sequence: \");
        assert_eq!(err("a=b=c"), "invalid field selector: unescaped character in value: 61");
        assert_eq!(err("a==b,c"), "invalid selector: 'a==b,c'; can't understand 'c'");
        assert_eq!(err("x,a=b"), "invalid selector: 'x,a=b'; can't understand 'x'");
    }

    #[test]
    fn first_operator_splits_the_term() {
        let sel = parse("a!b=c");
        assert_eq!(sel.terms()[0].field, "a!b");
        assert_eq!(sel.terms()[0].value, "c");
        // `==` is taken first, leaving a bare `=` in the value.
        assert_eq!(
            FieldSelector::parse("a===b").expect_err("value has a bare =").to_string(),
            "invalid field selector: unescaped character in value: 61"
        );
    }

    #[test]
    fn exact_match_is_found_only_for_equality() {
        let sel = parse("metadata.name=web,spec.nodeName!=n1");
        assert_eq!(sel.requires_exact_match("metadata.name"), Some("web"));
        assert_eq!(sel.requires_exact_match("spec.nodeName"), None);
        assert_eq!(FieldSelector::one_term_equal("metadata.name", "x").to_string(), "metadata.name=x");
    }
}
