//! Server-side apply (`PATCH` with `Content-Type: application/apply-patch+yaml`): creation when the object
//! is missing (201), merge into the live object otherwise (200), with field ownership and conflicts from
//! [`gantry_api::apply`], then the same defaulting, validation and admission as every other write.

use std::sync::Arc;

use gantry_api::apply::{ApplyError, Schema, Writer};
use gantry_api::registry::{ResourceType, Subresource};
use gantry_store::StoreError;
use serde_json::Value;

use crate::api::Api;
use crate::objects::{FieldValidation, Outcome, WriteOptions, Written, from_stored, now_rfc3339};
use crate::status::{ApiError, ApiResult, Cause};

/// The query of an apply request that matters beyond the common write options.
#[derive(Clone, Copy, Debug, Default)]
pub struct ApplyOptions {
    /// `force=true`: take conflicting fields from their owners.
    pub force: bool,
}

impl Api {
    /// The list and map semantics server-side apply and managedFields use for `resource`.
    ///
    /// This is the one place a kind's schema is chosen: built-in kinds use the schemas Gantry publishes
    /// (built once per kind and shared); custom resources the schema of their definition's version (built
    /// when the definition is loaded); a kind without one gets the deduced schema (objects granular, lists
    /// atomic).
    pub fn apply_schema(&self, resource: &ResourceType) -> Arc<Schema> {
        if let Some(custom) = self.custom.version(resource) {
            return Arc::clone(&custom.apply_schema);
        }
        Schema::builtin(resource.group, resource.version, resource.kind)
    }

    /// `PATCH` with an apply configuration, on an object or its `status`.
    #[allow(clippy::too_many_arguments)] // one per part of the request; a struct would only rename them
    pub async fn server_side_apply(
        &self,
        served: &'static ResourceType,
        namespace: Option<&str>,
        name: &str,
        subresource: Option<Subresource>,
        body: &[u8],
        options: &WriteOptions,
        apply: ApplyOptions,
    ) -> ApiResult<(Written, Vec<String>)> {
        let resource = self.registry.storage_type(served);
        let (config, warnings) = self.decode_apply_body(served, name, body, options)?;
        let mut config = self.to_storage(served, config)?;
        self.check_namespace_field(resource, namespace, &mut config)?;
        let schema = self.apply_schema(resource);
        let api_version = served.api_version();
        let scope = crate::managed_fields::scope(resource, subresource);
        let expected_rv = config
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .filter(|rv| !rv.is_empty())
            .map(str::to_string);
        // An object created or deleted by someone else between the read and the write sends the apply down
        // the other path; a few rounds settle any such race.
        for _ in 0..5 {
            let key = resource.key(namespace, name);
            let live = match self.store.get(key.as_bytes()).await {
                Ok(kv) => Some(from_stored(&kv)?),
                Err(StoreError::NotFound { .. }) => None,
                Err(e) => return Err(ApiError::from_store(e, resource, name)),
            };
            let now = now_rfc3339();
            let writer = Writer {
                manager: &options.field_manager,
                api_version: &api_version,
                subresource: subresource.map(Subresource::name),
                scope,
                now: &now,
            };
            let Some(_) = live else {
                if subresource.is_some() || expected_rv.is_some() {
                    return Err(ApiError::not_found(resource, name));
                }
                let created = gantry_api::apply::apply(&schema, None, &config, &writer, apply.force)
                    .map_err(|e| apply_error(e, served))?;
                let create_options = WriteOptions { applied: true, ..options.clone() };
                match self.create(resource, namespace, created, &create_options).await {
                    // Created by someone else meanwhile: apply to theirs.
                    Err(e) if e.code == 409 && e.reason == "AlreadyExists" => continue,
                    other => return other.map(|w| (w, warnings)),
                }
            };
            let result = self
                .update_with(resource, namespace, name, None, options.dry_run, |old| {
                    if let Some(rv) = &expected_rv
                        && old.pointer("/metadata/resourceVersion").and_then(Value::as_str) != Some(rv.as_str())
                    {
                        return Err(ApiError::conflict(resource, name));
                    }
                    let new = gantry_api::apply::apply(&schema, Some(old), &config, &writer, apply.force)
                        .map_err(|e| apply_error(e, served))?;
                    if &new == old {
                        return Ok(Outcome::Write(new));
                    }
                    self.finish_update(resource, old, new, subresource, None)
                })
                .await;
            match result {
                // Deleted meanwhile: an apply then creates it.
                Err(e) if e.code == 404 && subresource.is_none() && expected_rv.is_none() => continue,
                other => return other.map(|w| (w, warnings)),
            }
        }
        Err(ApiError::conflict_because(
            resource,
            name,
            "the object was created or deleted repeatedly while being applied",
        ))
    }

    /// Reads the body (YAML or JSON), checks it names the kind and object the URL addresses, and drops
    /// unknown fields as `fieldValidation` says.
    fn decode_apply_body(
        &self,
        served: &'static ResourceType,
        name: &str,
        body: &[u8],
        options: &WriteOptions,
    ) -> ApiResult<(Value, Vec<String>)> {
        if body.is_empty() {
            return Err(ApiError::bad_request("the request body is empty"));
        }
        let mut config: Value =
            serde_yaml_ng::from_slice(body).map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?;
        let Some(map) = config.as_object_mut() else {
            return Err(ApiError::bad_request("the apply configuration must be an object"));
        };
        let expected_version = served.api_version();
        match map.get("apiVersion").and_then(Value::as_str) {
            Some(v) if v == expected_version => {}
            other => {
                return Err(ApiError::bad_request(format!(
                    "Incorrect version specified in apply patch. Specified patch version: {}, expected: {}",
                    other.unwrap_or_default(),
                    expected_version
                )));
            }
        }
        match map.get("kind").and_then(Value::as_str) {
            Some(k) if k == served.kind => {}
            other => {
                return Err(ApiError::bad_request(format!(
                    "Incorrect kind specified in apply patch. Specified patch kind: {}, expected: {}",
                    other.unwrap_or_default(),
                    served.kind
                )));
            }
        }
        let meta = map.entry("metadata").or_insert_with(|| Value::Object(Default::default()));
        let Some(meta) = meta.as_object_mut() else {
            return Err(ApiError::bad_request("metadata must be an object"));
        };
        match meta.get("name").and_then(Value::as_str) {
            Some(n) if !n.is_empty() && n != name => {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({n}) does not match the name on the URL ({name})"
                )));
            }
            _ => {
                meta.insert("name".into(), Value::String(name.to_string()));
            }
        }
        if meta.get("managedFields").is_some_and(|v| !v.is_null()) {
            return Err(ApiError::bad_request("metadata.managedFields must be nil"));
        }
        let (config, unknown) = self.schemas.prune(served, config);
        if unknown.is_empty() {
            return Ok((config, Vec::new()));
        }
        let messages: Vec<String> = unknown.iter().map(|f| format!("unknown field \"{f}\"")).collect();
        match options.field_validation {
            FieldValidation::Ignore => Ok((config, Vec::new())),
            FieldValidation::Warn => Ok((config, messages)),
            FieldValidation::Strict => {
                Err(ApiError::bad_request(format!("strict decoding error: {}", messages.join(", "))))
            }
        }
    }
}

/// The `Status` kube-apiserver answers for a failed apply.
fn apply_error(err: ApplyError, resource: &ResourceType) -> ApiError {
    match err {
        ApplyError::Conflicts(conflicts) => {
            let mut e = ApiError::conflict(resource, "");
            e.message = ApplyError::Conflicts(conflicts.clone()).to_string();
            e.name = None;
            e.group = None;
            e.kind = None;
            e.causes = conflicts
                .iter()
                .map(|c| Cause {
                    reason: "FieldManagerConflict".into(),
                    message: c.cause_message(),
                    field: c.field.clone(),
                })
                .collect();
            e
        }
        ApplyError::Invalid { path, message } => {
            let group_version = if resource.group.is_empty() {
                resource.version.to_string()
            } else {
                format!("{}/{}", resource.group, resource.version)
            };
            ApiError::bad_request(format!(
                "failed to create typed patch object ({group_version}, Kind={}): {path}: {message}",
                resource.kind
            ))
        }
        other => ApiError::bad_request(other.to_string()),
    }
}
