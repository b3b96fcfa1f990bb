//! Server-side apply and field ownership (`metadata.managedFields`), with kube-apiserver's semantics.
//!
//! - [`fieldpath`]: paths and field sets in the `FieldsV1` format of `managedFields[].fieldsV1`.
//! - [`Schema`]: which lists merge by key (`map`), by value (`set`) or whole (`atomic`), and which objects
//!   are atomic; built from the published OpenAPI schemas ([`Schema::builtin`]), a CRD's
//!   `openAPIV3Schema` ([`Schema::from_crd_schema`]) or deduced ([`Schema::deduced`]).
//! - [`apply`]: merges an applied configuration into the live object, records the manager's fields
//!   (`operation: Apply`), removes what it applied before and no longer applies, and refuses to change a
//!   field another manager owns unless forced.
//! - [`update`]: records what a non-apply write (create, update, patch) changed as its manager's
//!   (`operation: Update`), taking those fields from other managers; an update never conflicts.
//!
//! Invariants: one entry per manager identity (manager, operation, subresource, and for updates the
//! apiVersion); no entry is empty; entries are sorted as kube-apiserver sorts them; system metadata
//! (`name`, `uid`, `resourceVersion`, ...), `apiVersion` and `kind` are owned by nobody.

pub mod fieldpath;
mod schema;
mod typed;

use std::collections::HashMap;

use serde_json::{Map, Value, json};

pub use fieldpath::{FieldsV1Error, Path, PathElement, Set};
pub use schema::{ListType, Schema, Shape};

/// The annotation client-side `kubectl apply` keeps its last configuration in.
pub const LAST_APPLIED_ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// The metadata fields the server sets; owned by nobody (kube-apiserver's list).
const SERVER_METADATA: &[&str] = &[
    "name",
    "namespace",
    "creationTimestamp",
    "selfLink",
    "uid",
    "clusterName",
    "generation",
    "managedFields",
    "resourceVersion",
];

/// Metadata an applied configuration cannot set (the server owns it).
const UNAPPLIABLE_METADATA: &[&str] = &[
    "uid",
    "resourceVersion",
    "creationTimestamp",
    "generation",
    "selfLink",
    "managedFields",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
];

/// How a manager wrote its fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Operation {
    /// Server-side apply.
    Apply,
    /// Any other write (create, update, patch).
    Update,
}

impl Operation {
    /// `Apply` or `Update`.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Apply => "Apply",
            Operation::Update => "Update",
        }
    }
}

/// One entry of `metadata.managedFields`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManagedFieldsEntry {
    /// The field manager.
    pub manager: String,
    /// Apply or Update.
    pub operation: Operation,
    /// The API version the fields are expressed in.
    pub api_version: String,
    /// When the manager last changed the object (RFC 3339, seconds).
    pub time: Option<String>,
    /// The subresource written through (`status`), if any.
    pub subresource: Option<String>,
    /// The owned fields.
    pub fields: Set,
}

/// Why `metadata.managedFields` could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ManagedFieldsError {
    /// `managedFields` is not a list of objects.
    #[error("metadata.managedFields must be a list of objects")]
    NotAList,
    /// An entry's operation is neither `Apply` nor `Update`.
    #[error("managedFields[{index}]: operation must be `Apply` or `Update`")]
    Operation {
        /// The entry's position.
        index: usize,
    },
    /// An entry's `fieldsType` is not `FieldsV1`.
    #[error("managedFields[{index}]: invalid fieldsType {fields_type:?}: must be `FieldsV1`")]
    FieldsType {
        /// The entry's position.
        index: usize,
        /// What it said.
        fields_type: String,
    },
    /// An entry's `fieldsV1` is malformed.
    #[error("managedFields[{index}].fieldsV1: {source}")]
    Fields {
        /// The entry's position.
        index: usize,
        /// What is wrong.
        #[source]
        source: FieldsV1Error,
    },
}

impl ManagedFieldsEntry {
    fn same_identity(&self, manager: &str, operation: Operation, api_version: &str, sub: Option<&str>) -> bool {
        // Appliers keep one entry whatever version they apply with; updaters get one per version.
        self.manager == manager
            && self.operation == operation
            && self.subresource.as_deref() == sub
            && (operation == Operation::Apply || self.api_version == api_version)
    }

    /// The entry as it appears in `metadata.managedFields`.
    pub fn to_json(&self) -> Value {
        let mut entry = json!({
            "manager": self.manager,
            "operation": self.operation.as_str(),
            "apiVersion": self.api_version,
            "fieldsType": "FieldsV1",
            "fieldsV1": self.fields.to_fields_v1(),
        });
        if let Some(time) = &self.time {
            entry["time"] = json!(time);
        }
        if let Some(sub) = &self.subresource {
            entry["subresource"] = json!(sub);
        }
        entry
    }

    fn from_json(index: usize, value: &Value) -> Result<ManagedFieldsEntry, ManagedFieldsError> {
        let text = |k: &str| value.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
        let operation = match value.get("operation").and_then(Value::as_str) {
            Some("Apply") => Operation::Apply,
            Some("Update") => Operation::Update,
            _ => return Err(ManagedFieldsError::Operation { index }),
        };
        let fields_type = text("fieldsType");
        if fields_type != "FieldsV1" {
            return Err(ManagedFieldsError::FieldsType { index, fields_type });
        }
        let fields = match value.get("fieldsV1") {
            None | Some(Value::Null) => Set::new(),
            Some(v) => Set::from_fields_v1(v).map_err(|source| ManagedFieldsError::Fields { index, source })?,
        };
        Ok(ManagedFieldsEntry {
            manager: text("manager"),
            operation,
            api_version: text("apiVersion"),
            time: value.get("time").and_then(Value::as_str).map(str::to_string),
            subresource: value.get("subresource").and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string),
            fields,
        })
    }

    /// How kube-apiserver names this manager in a conflict: `"m"`, `"m" with subresource "status"`, and for
    /// updaters `… using apps/v1`.
    pub fn describe(&self) -> String {
        describe_manager(&self.manager, self.operation, &self.api_version, self.subresource.as_deref())
    }
}

fn describe_manager(manager: &str, operation: Operation, api_version: &str, sub: Option<&str>) -> String {
    let mut out = format!("{manager:?}");
    if let Some(sub) = sub {
        out.push_str(&format!(" with subresource {sub:?}"));
    }
    if operation == Operation::Update {
        out.push_str(&format!(" using {api_version}"));
    }
    out
}

/// Reads `metadata.managedFields` of an object (none: an empty list).
pub fn decode_managed_fields(obj: &Value) -> Result<Vec<ManagedFieldsEntry>, ManagedFieldsError> {
    match obj.get("metadata").and_then(|m| m.get("managedFields")) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(list)) => list.iter().enumerate().map(|(i, e)| ManagedFieldsEntry::from_json(i, e)).collect(),
        Some(_) => Err(ManagedFieldsError::NotAList),
    }
}

/// Writes `metadata.managedFields`, sorted as kube-apiserver sorts them (operation, time, manager, apiVersion,
/// subresource); an empty list removes the field.
pub fn encode_managed_fields(obj: &mut Value, mut entries: Vec<ManagedFieldsEntry>) {
    entries.retain(|e| !e.fields.is_empty());
    cap_update_managers(&mut entries);
    entries.sort_by(|a, b| {
        a.operation
            .cmp(&b.operation)
            .then_with(|| a.time.as_deref().unwrap_or("").cmp(b.time.as_deref().unwrap_or("")))
            .then_with(|| a.manager.cmp(&b.manager))
            .then_with(|| a.api_version.cmp(&b.api_version))
            .then_with(|| a.subresource.cmp(&b.subresource))
    });
    let Some(object) = obj.as_object_mut() else { return };
    let meta = object.entry("metadata").or_insert_with(|| json!({}));
    let Some(meta) = meta.as_object_mut() else { return };
    if entries.is_empty() {
        meta.remove("managedFields");
    } else {
        meta.insert("managedFields".into(), Value::Array(entries.iter().map(ManagedFieldsEntry::to_json).collect()));
    }
}

/// How many `Update` entries an object keeps, as in kube-apiserver.
pub const MAX_UPDATE_MANAGERS: usize = 10;

/// The manager name of the entries older updates are merged into.
pub const ANCIENT_CHANGES: &str = "ancient-changes";

/// Keeps at most [`MAX_UPDATE_MANAGERS`] `Update` entries, as kube-apiserver does: oldest first, each update is
/// merged into an `ancient-changes` entry of its API version (the first one of a version seen becomes that
/// entry when a second one joins it), taking the newer time, until few enough are left. Objects written by
/// many clients over time would otherwise grow without bound.
fn cap_update_managers(entries: &mut Vec<ManagedFieldsEntry>) {
    let mut updaters: Vec<usize> = (0..entries.len()).filter(|&i| entries[i].operation == Operation::Update).collect();
    if updaters.len() <= MAX_UPDATE_MANAGERS {
        return;
    }
    updaters.sort_by(|&a, &b| entries[a].time.as_deref().unwrap_or("").cmp(entries[b].time.as_deref().unwrap_or("")));
    let mut remaining = updaters.len();
    let mut first_of_version: HashMap<String, usize> = HashMap::new();
    let mut removed = vec![false; entries.len()];
    for &i in &updaters {
        if remaining <= MAX_UPDATE_MANAGERS {
            break;
        }
        let version = entries[i].api_version.clone();
        let Some(first) = first_of_version.get(&version).copied() else {
            first_of_version.insert(version, i);
            continue;
        };
        let is_bucket = |e: &ManagedFieldsEntry| {
            e.manager == ANCIENT_CHANGES
                && e.operation == Operation::Update
                && e.api_version == version
                && e.subresource.is_none()
        };
        let existing = (0..entries.len()).find(|&j| j != i && !removed[j] && is_bucket(&entries[j]));
        let bucket = match existing {
            Some(bucket) => bucket,
            None => {
                entries[first].manager = ANCIENT_CHANGES.to_string();
                entries[first].subresource = None;
                first
            }
        };
        let fields = std::mem::take(&mut entries[i].fields);
        entries[bucket].fields.union_with(&fields);
        entries[bucket].time = entries[i].time.clone();
        removed[i] = true;
        remaining -= 1;
    }
    let mut index = 0;
    entries.retain(|_| {
        let keep = !removed[index];
        index += 1;
        keep
    });
}

/// Which fields of an object a write may own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Every field (kinds whose status is not a separate subresource).
    Whole,
    /// Everything but `status` (the main resource of a kind with a `status` subresource).
    Main,
    /// Only `status` (writes through the `status` subresource).
    Status,
}

/// Who writes, and how.
#[derive(Clone, Copy, Debug)]
pub struct Writer<'a> {
    /// The field manager (`fieldManager`).
    pub manager: &'a str,
    /// The API version the object is written in (`apps/v1`).
    pub api_version: &'a str,
    /// The subresource written through (`status`), if any.
    pub subresource: Option<&'a str>,
    /// Which fields the write may own.
    pub scope: Scope,
    /// The time to record (RFC 3339, seconds).
    pub now: &'a str,
}

/// A field another manager owns and an apply would change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    /// The other manager.
    pub manager: String,
    /// How it wrote the field.
    pub operation: Operation,
    /// The version it wrote in (named for updaters only, as kube-apiserver does).
    pub api_version: Option<String>,
    /// The subresource it wrote through.
    pub subresource: Option<String>,
    /// The field, as `.spec.replicas` or `.spec.containers[name="web"].image`.
    pub field: String,
}

impl Conflict {
    /// The manager as kube-apiserver names it in messages (`"m" using apps/v1`).
    pub fn manager_description(&self) -> String {
        describe_manager(
            &self.manager,
            self.operation,
            self.api_version.as_deref().unwrap_or(""),
            self.subresource.as_deref(),
        )
    }

    /// The message of this conflict's `FieldManagerConflict` cause: `conflict with "m" using apps/v1`.
    pub fn cause_message(&self) -> String {
        format!("conflict with {}", self.manager_description())
    }
}

/// Why an apply was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ApplyError {
    /// Fields other managers own would change (HTTP 409).
    #[error("{}", conflict_message(.0))]
    Conflicts(Vec<Conflict>),
    /// The configuration carries `metadata.managedFields`.
    #[error("metadata.managedFields must be nil")]
    ManagedFieldsInConfig,
    /// The configuration is not an object.
    #[error("the applied configuration is not an object")]
    NotAnObject,
    /// The configuration does not fit the schema (duplicate or missing list keys).
    #[error("failed to create typed patch object: {path}: {message}")]
    Invalid {
        /// Where.
        path: String,
        /// What.
        message: String,
    },
    /// The live object's managedFields could not be read.
    #[error("failed to decode managed fields: {0}")]
    ManagedFields(#[from] ManagedFieldsError),
}

/// kube-apiserver's message for a set of conflicts.
fn conflict_message(conflicts: &[Conflict]) -> String {
    if let [one] = conflicts {
        return format!("Apply failed with 1 conflict: conflict with {}: {}", one.manager_description(), one.field);
    }
    let mut managers: Vec<String> = conflicts.iter().map(Conflict::manager_description).collect();
    managers.sort();
    managers.dedup();
    let mut lines = Vec::new();
    for manager in &managers {
        lines.push(format!("conflicts with {manager}:"));
        for c in conflicts.iter().filter(|c| &c.manager_description() == manager) {
            lines.push(format!("- {}", c.field));
        }
    }
    format!("Apply failed with {} conflicts: {}", conflicts.len(), lines.join("\n"))
}

/// Removes what nobody owns (apiVersion, kind, server metadata) and what lies outside the writer's scope.
fn strip(set: &mut Set, scope: Scope) {
    set.remove_top_field("apiVersion");
    set.remove_top_field("kind");
    let metadata = PathElement::Field("metadata".into());
    for field in SERVER_METADATA {
        set.remove(&[metadata.clone(), PathElement::Field((*field).to_string())]);
    }
    set.remove(std::slice::from_ref(&metadata));
    match scope {
        Scope::Whole => {}
        Scope::Main => set.remove_top_field("status"),
        Scope::Status => set.retain_top_field("status"),
    }
}

fn strip_comparison(c: &mut typed::Comparison, scope: Scope) {
    strip(&mut c.added, scope);
    strip(&mut c.modified, scope);
    strip(&mut c.removed, scope);
}

fn without_managed_fields(obj: &Value) -> Value {
    let mut out = obj.clone();
    if let Some(meta) = out.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
    }
    out
}

/// The part of an applied configuration a write in `scope` may set.
fn scoped_config(config: &Map<String, Value>, scope: Scope) -> Map<String, Value> {
    let mut out = config.clone();
    match scope {
        Scope::Whole => {}
        Scope::Main => {
            out.remove("status");
        }
        Scope::Status => {
            out.retain(|k, _| matches!(k.as_str(), "apiVersion" | "kind" | "metadata" | "status"));
            if let Some(meta) = out.get_mut("metadata").and_then(Value::as_object_mut) {
                meta.retain(|k, _| k == "name" || k == "namespace");
            }
        }
    }
    if let Some(meta) = out.get_mut("metadata").and_then(Value::as_object_mut) {
        for field in UNAPPLIABLE_METADATA {
            meta.remove(*field);
        }
    }
    out
}

/// The fields of the last client-side apply whose live values still match it: an apply by `kubectl` may take
/// them over without conflict (the client-side → server-side upgrade kube-apiserver allows).
fn fields_matching_last_applied(schema: &Schema, live: &Value) -> Option<Set> {
    let text = live.get("metadata")?.get("annotations")?.get(LAST_APPLIED_ANNOTATION)?.as_str()?;
    let last: Value = serde_json::from_str(text).ok()?;
    let set = typed::to_field_set(schema, &last).ok()?;
    let c = typed::compare(schema, &last, live);
    Some(set.difference(&c.modified).difference(&c.added).difference(&c.removed))
}

/// Server-side apply of `config` by `writer` to `live` (`None`: the object does not exist yet).
///
/// Returns the new object with its `managedFields`, or the live object unchanged (same bytes) when the apply
/// changes nothing. With `force`, fields other managers own are taken from them instead of conflicting.
pub fn apply(
    schema: &Schema,
    live: Option<&Value>,
    config: &Value,
    writer: &Writer<'_>,
    force: bool,
) -> Result<Value, ApplyError> {
    let config = config.as_object().ok_or(ApplyError::NotAnObject)?;
    if config.get("metadata").and_then(|m| m.get("managedFields")).is_some_and(|v| !v.is_null()) {
        return Err(ApplyError::ManagedFieldsInConfig);
    }
    let live_obj = live.cloned().unwrap_or_else(|| json!({}));
    let mut entries = decode_managed_fields(&live_obj)?;
    let live_clean = without_managed_fields(&live_obj);
    let config = Value::Object(scoped_config(config, writer.scope));

    let mut applied =
        typed::to_field_set(schema, &config).map_err(|e| ApplyError::Invalid { path: e.path, message: e.message })?;
    strip(&mut applied, writer.scope);
    let mut merged = typed::merge(schema, &live_clean, &config);

    let position = entries
        .iter()
        .position(|e| e.same_identity(writer.manager, Operation::Apply, writer.api_version, writer.subresource));
    let (last, previous_time, is_new) = match position {
        Some(i) => {
            let e = entries.remove(i);
            (e.fields, e.time, false)
        }
        None => (Set::new(), None, true),
    };
    let unchanged_set = last == applied;
    let mut owned = applied.clone();
    for e in &entries {
        owned.union_with(&e.fields);
    }
    typed::prune(schema, &mut merged, &last, &owned);

    let mut comparison = typed::compare(schema, &live_clean, &merged);
    strip_comparison(&mut comparison, writer.scope);
    let changed = comparison.added.union(&comparison.modified);
    let mut conflicts = Vec::new();
    let mut conflict_sets = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let overlap = e.fields.intersection(&changed);
        if overlap.is_empty() {
            continue;
        }
        for path in overlap.paths() {
            conflicts.push(Conflict {
                manager: e.manager.clone(),
                operation: e.operation,
                api_version: (e.operation == Operation::Update).then(|| e.api_version.clone()),
                subresource: e.subresource.clone(),
                field: path.to_string(),
            });
        }
        conflict_sets.push((i, overlap));
    }
    if !conflicts.is_empty() && !force {
        let allowed = (writer.manager == "kubectl").then(|| fields_matching_last_applied(schema, &live_clean));
        let all_allowed = match allowed.flatten() {
            Some(allowed) => conflict_sets.iter().all(|(_, s)| s.difference(&allowed).is_empty()),
            None => false,
        };
        if !all_allowed {
            conflicts.sort_by_key(Conflict::manager_description);
            return Err(ApplyError::Conflicts(conflicts));
        }
    }
    for (i, taken) in conflict_sets {
        entries[i].fields = entries[i].fields.difference(&taken);
    }
    for e in &mut entries {
        e.fields = e.fields.difference(&comparison.removed);
    }

    let object_changed = !comparison.is_same() || merged != live_clean;
    if !object_changed && unchanged_set && !is_new {
        return Ok(live_obj);
    }
    let time = if object_changed || is_new { Some(writer.now.to_string()) } else { previous_time };
    entries.push(ManagedFieldsEntry {
        manager: writer.manager.to_string(),
        operation: Operation::Apply,
        api_version: writer.api_version.to_string(),
        time,
        subresource: writer.subresource.map(str::to_string),
        fields: applied,
    });
    if writer.manager == "kubectl" {
        keep_last_applied_in_step(&mut merged, &config);
    }
    encode_managed_fields(&mut merged, entries);
    Ok(merged)
}

/// After an apply by `kubectl`, an object that still carries a client-side last-applied annotation gets the
/// applied configuration in it, so that a later client-side apply starts from it (as kube-apiserver does).
fn keep_last_applied_in_step(obj: &mut Value, config: &Value) {
    let has =
        obj.get("metadata").and_then(|m| m.get("annotations")).and_then(|a| a.get(LAST_APPLIED_ANNOTATION)).is_some();
    if !has {
        return;
    }
    let mut recorded = config.clone();
    if let Some(annotations) = recorded.pointer_mut("/metadata/annotations").and_then(Value::as_object_mut) {
        annotations.remove(LAST_APPLIED_ANNOTATION);
        if annotations.is_empty()
            && let Some(meta) = recorded.pointer_mut("/metadata").and_then(Value::as_object_mut)
        {
            meta.remove("annotations");
        }
    }
    if let Some(annotations) = obj.pointer_mut("/metadata/annotations").and_then(Value::as_object_mut) {
        annotations.insert(LAST_APPLIED_ANNOTATION.into(), Value::String(format!("{recorded}\n")));
    }
}

/// The objects the API types embed by value (not behind a pointer): they exist, empty, in the zero value of a
/// kind, so a create does not own them as such (no `.`), as kube-apiserver records it.
const EMBEDDED_BY_VALUE: &[&str] =
    &["metadata", "spec", "status", "template", "strategy", "updateStrategy", "jobTemplate"];

/// What a created object is compared with: kube-apiserver compares it with the zero value of its type, in which
/// the objects embedded by value exist, empty, and a pod's `containers` (never omitted) is null.
fn zero_value(new: &Value) -> Value {
    let mut zero = Map::new();
    for (key, child) in new.as_object().into_iter().flatten() {
        if EMBEDDED_BY_VALUE.contains(&key.as_str()) && child.is_object() {
            zero.insert(key.clone(), zero_value(child));
        } else if key == "containers" {
            zero.insert(key.clone(), Value::Null);
        }
    }
    Value::Object(zero)
}

/// Whether a client asks to clear managedFields: an empty list, or a list of one empty entry.
fn is_reset(sent: Option<&Value>) -> bool {
    match sent {
        Some(Value::Array(list)) => match list.as_slice() {
            [] => true,
            [one] => one.as_object().is_some_and(Map::is_empty),
            _ => false,
        },
        _ => false,
    }
}

/// Records a non-apply write (`old` → `new`; `old` is `None` for a create) in `new`'s managedFields: the
/// fields it added or changed become the writer's (`operation: Update`) and no one else's; fields it removed
/// are no one's. Never fails: an update does not conflict.
///
/// `managedFields` sent in `new` replace the recorded ones (how kubectl rewrites them when it upgrades an
/// object to server-side apply); an empty list, or a list of one empty entry, clears them first. Writes
/// through a subresource cannot change them.
pub fn update(schema: &Schema, old: Option<&Value>, new: &mut Value, writer: &Writer<'_>) {
    let sent = new.get("metadata").and_then(|m| m.get("managedFields")).cloned();
    let recorded = || old.map(decode_managed_fields).and_then(Result::ok).unwrap_or_default();
    let mut entries = if writer.subresource.is_some() {
        recorded()
    } else if is_reset(sent.as_ref()) {
        Vec::new()
    } else {
        match new.as_object().map(|_| decode_managed_fields(new)) {
            Some(Ok(list)) if !list.is_empty() => list,
            _ => recorded(),
        }
    };
    // The comparison skips managedFields itself: no copies of the objects without them.
    let zero;
    let old = match old {
        Some(old) => old,
        None => {
            zero = zero_value(new);
            &zero
        }
    };
    let mut comparison = typed::compare(schema, old, new);
    strip_comparison(&mut comparison, writer.scope);
    let changed = comparison.added.union(&comparison.modified);
    for e in &mut entries {
        e.fields = e.fields.difference(&changed).difference(&comparison.removed);
    }
    if !changed.is_empty() {
        let position = entries
            .iter()
            .position(|e| e.same_identity(writer.manager, Operation::Update, writer.api_version, writer.subresource));
        match position {
            Some(i) => {
                entries[i].fields.union_with(&changed);
                entries[i].time = Some(writer.now.to_string());
            }
            None => entries.push(ManagedFieldsEntry {
                manager: writer.manager.to_string(),
                operation: Operation::Update,
                api_version: writer.api_version.to_string(),
                time: Some(writer.now.to_string()),
                subresource: writer.subresource.map(str::to_string),
                fields: changed,
            }),
        }
    }
    encode_managed_fields(new, entries);
}

#[cfg(test)]
mod tests;
