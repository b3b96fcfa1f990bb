//! placeholder
use serde_json::Value;
pub(super) fn apply(_name: &str, _schema: &mut Value) {}
