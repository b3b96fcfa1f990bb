//! Temporary: no checks (the validation module replaces this).
#![allow(missing_docs)]
use crate::registry::GroupKind;
use serde_json::Value;
pub struct FieldError {
    pub field: String,
}
impl FieldError {
    pub fn reason(&self) -> &str {
        ""
    }
    pub fn cause_message(&self) -> String {
        String::new()
    }
}
pub fn validate_create(_gk: GroupKind, _o: &Value) -> Vec<FieldError> {
    Vec::new()
}
pub fn validate_update(_gk: GroupKind, _n: &Value, _o: &Value) -> Vec<FieldError> {
    Vec::new()
}
