//! Temporary: no defaults (the defaults module replaces this).
use crate::registry::GroupKind;
use serde_json::Value;
/// Applies defaults.
pub fn apply_defaults(_gk: GroupKind, _o: &mut Value) {}
