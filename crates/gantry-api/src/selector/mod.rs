//! Label and field selectors, parsed and matched the way kube-apiserver does.
//!
//! - [`LabelSelector`]: the `labelSelector` query parameter grammar (`a=b`, `a!=b`, `a in (x,y)`, `!a`, ...)
//!   and the `metav1.LabelSelector` object (`matchLabels` / `matchExpressions`) used by workloads, both
//!   turned into the same matcher.
//! - [`FieldSelector`]: the `fieldSelector` query parameter (`a=b`, `a==b`, `a!=b`, with `\,` `\=` `\\`
//!   escapes), plus the per-kind rules of which fields may be selected ([`validate_field_selector`],
//!   [`convert_field_selector`]) and the values those fields take on an object ([`field_set`]).
//!
//! Selectors are parsed once per request and then matched against many cached objects, so matching never
//! allocates except where a field's value has to be rendered (a number, for instance).
//!
//! Every error's `Display` is the exact message kube-apiserver puts in its `400 BadRequest` `Status`, so the
//! API server can pass it through unchanged.

mod field;
mod kinds;
mod label;
mod validation;

use std::fmt;

pub use field::{FieldOp, FieldSelector, FieldTerm, Fields, escape_field_value};
pub use kinds::{FieldSet, convert_field_selector, field_set, validate_field_selector};
pub use label::{LabelSelector, Labels, Operator, Requirement};
pub use validation::{label_key_errors, label_value_errors};

/// The value a [`FieldError`] complains about, rendered as kube-apiserver renders it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BadValue {
    /// A single string, shown Go-quoted: `"-b"`.
    Str(String),
    /// A list of strings, shown as JSON (`null` for a missing list, as Go renders a nil slice).
    List(Option<Vec<String>>),
}

impl fmt::Display for BadValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BadValue::Str(s) => f.write_str(&go_quote(s)),
            BadValue::List(None) => f.write_str("null"),
            BadValue::List(Some(items)) => {
                f.write_str("[")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    // serde_json renders a string the way Go's encoding/json does for printable input.
                    let quoted = serde_json::Value::String(item.clone()).to_string();
                    f.write_str(&quoted)?;
                }
                f.write_str("]")
            }
        }
    }
}

/// One invalid part of a selector requirement, in the `field.Error` form kube-apiserver reports:
/// `values[0][app]: Invalid value: "-b": a valid label must be ...`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// The path of the offending part (`key`, `values[0][app]`), or `<nil>` where kube-apiserver has none.
    pub path: String,
    /// The offending value.
    pub value: BadValue,
    /// Why it is invalid.
    pub detail: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: Invalid value: {}", self.path, self.value)?;
        if !self.detail.is_empty() {
            write!(f, ": {}", self.detail)?;
        }
        Ok(())
    }
}

/// A list of [`FieldError`]s shown the way kube-apiserver aggregates them: one error alone, several as
/// `[first, second]` with duplicates dropped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldErrors(pub Vec<FieldError>);

impl fmt::Display for FieldErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut seen: Vec<String> = Vec::with_capacity(self.0.len());
        for e in &self.0 {
            let msg = e.to_string();
            if !seen.contains(&msg) {
                seen.push(msg);
            }
        }
        match seen.as_slice() {
            [] => Ok(()),
            [one] => f.write_str(one),
            many => write!(f, "[{}]", many.join(", ")),
        }
    }
}

/// Why a selector was rejected. The `Display` text is kube-apiserver's message; every variant is a
/// `400 BadRequest` for a client.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    /// A label selector token was not what the grammar allows at that point.
    #[error("found '{found}', expected: {expected}")]
    UnexpectedToken {
        /// The token found (empty at the end of the input).
        found: String,
        /// What the grammar allows there, in kube-apiserver's words.
        expected: &'static str,
    },
    /// `in` / `notin` not followed by `(`. The missing comma after the token is kube-apiserver's wording.
    #[error("found '{found}' expected: '('")]
    ExpectedOpenParen {
        /// The token found instead.
        found: String,
    },
    /// One requirement of a label selector could not be parsed or is invalid.
    #[error("unable to parse requirement: {0}")]
    Requirement(Box<SelectorError>),
    /// A label key that is not a qualified name, found while parsing (kube-apiserver reports no path there).
    #[error("{0}")]
    InvalidKey(FieldError),
    /// A requirement whose key, operator or values are invalid.
    #[error("{0}")]
    InvalidRequirement(FieldErrors),
    /// A `matchExpressions` operator other than `In`, `NotIn`, `Exists`, `DoesNotExist`.
    #[error("{} is not a valid label selector operator", go_quote(.operator))]
    InvalidOperator {
        /// The operator given.
        operator: String,
    },
    /// A `metav1.LabelSelector` value whose JSON shape is wrong (e.g. `matchLabels` is not an object).
    #[error("invalid label selector: {path} must be {expected}")]
    MalformedLabelSelector {
        /// Where in the selector object the problem is, e.g. `matchExpressions[0].values`.
        path: String,
        /// What was expected there.
        expected: &'static str,
    },
    /// A field selector term with no `=`, `==` or `!=`.
    #[error("invalid selector: '{selector}'; can't understand '{term}'")]
    FieldSyntax {
        /// The whole selector.
        selector: String,
        /// The term that could not be split.
        term: String,
    },
    /// A backslash in a field selector value not followed by `\`, `,` or `=`.
    #[error("invalid field selector: invalid escape sequence: {sequence}")]
    InvalidEscape {
        /// The offending sequence, e.g. `\n` or a lone trailing `\`.
        sequence: String,
    },
    /// An unescaped `,` or `=` in a field selector value. kube-apiserver prints the character's code point.
    #[error("invalid field selector: unescaped character in value: {}", u32::from(*.character))]
    UnescapedCharacter {
        /// The character.
        character: char,
    },
    /// A field label the kind does not support, for kinds that list their selectable fields.
    #[error("field label not supported: {label}")]
    UnsupportedFieldLabel {
        /// The label given.
        label: String,
    },
    /// A field label a Job does not support (kube-apiserver words this one differently).
    #[error("field label {} not supported for {kind}", go_quote(.label))]
    UnsupportedFieldLabelForKind {
        /// The label given.
        label: String,
        /// The kind, e.g. `Job`.
        kind: &'static str,
    },
    /// A field label other than `metadata.name` / `metadata.namespace` for a kind with no extra fields.
    #[error("{} is not a known field selector: only \"metadata.name\", \"metadata.namespace\"", go_quote(.label))]
    UnknownFieldLabel {
        /// The label given.
        label: String,
    },
}

pub(crate) use crate::validation::go_quote;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_quote_escapes_like_go() {
        assert_eq!(go_quote("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(go_quote("tab\there"), r#""tab\there""#);
        assert_eq!(go_quote("\u{1}"), r#""\x01""#);
        assert_eq!(go_quote("héllo"), "\"héllo\"");
    }

    #[test]
    fn several_field_errors_are_bracketed_and_deduplicated() {
        let e = |d: &str| FieldError { path: "key".into(), value: BadValue::Str("x".into()), detail: d.into() };
        assert_eq!(FieldErrors(vec![e("one")]).to_string(), r#"key: Invalid value: "x": one"#);
        assert_eq!(
            FieldErrors(vec![e("one"), e("two"), e("one")]).to_string(),
            r#"[key: Invalid value: "x": one, key: Invalid value: "x": two]"#
        );
    }

    #[test]
    fn list_values_render_as_json_and_nil_as_null() {
        assert_eq!(BadValue::List(None).to_string(), "null");
        assert_eq!(BadValue::List(Some(vec!["a".into(), "b\"".into()])).to_string(), r#"["a","b\""]"#);
    }
}
