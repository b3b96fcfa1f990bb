//! The write paths: create, update, patch, delete of objects and their subresources, with the metadata
//! semantics of kube-apiserver (uid, resourceVersion, generation, timestamps, finalizers, graceful deletion).

use std::time::Duration;

use bytes::Bytes;
use gantry_api::registry::{ResourceType, Subresource};
use gantry_store::{KeyValue, Revision, StoreError};
use serde_json::{Map, Value, json};

use crate::api::Api;
use crate::status::{ApiError, ApiResult, Cause};
use crate::strategy;

/// How long a write waits for the watch cache to show it, so that a read right after a write sees it.
const READ_YOUR_WRITES_PATIENCE: Duration = Duration::from_secs(5);

/// How unknown fields in a request body are treated (`fieldValidation`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum FieldValidation {
    /// Drop them silently.
    Ignore,
    /// Drop them and warn (the default, as in kube-apiserver).
    #[default]
    Warn,
    /// Refuse the request.
    Strict,
}

/// Options common to writes.
#[derive(Clone, Debug, Default)]
pub struct WriteOptions {
    /// `dryRun=All`: do everything but store.
    pub dry_run: bool,
    /// `fieldManager`, or one derived from the user agent.
    pub field_manager: String,
    /// `fieldValidation`.
    pub field_validation: FieldValidation,
    /// The object's `managedFields` were computed by server-side apply: keep them as they are.
    pub applied: bool,
}

/// `DeleteOptions`, from the body or the query.
#[derive(Clone, Debug, Default)]
pub struct DeleteOptions {
    /// `gracePeriodSeconds`.
    pub grace_period: Option<i64>,
    /// `propagationPolicy`: `Orphan`, `Background` or `Foreground`.
    pub propagation: Option<String>,
    /// `preconditions.uid`.
    pub uid: Option<String>,
    /// `preconditions.resourceVersion`.
    pub resource_version: Option<String>,
    /// `dryRun=All`.
    pub dry_run: bool,
}

/// The result of a write: the HTTP code and the body.
#[derive(Debug)]
pub struct Written {
    /// 200 or 201.
    pub code: u16,
    /// The object (or a `Status` for completed deletes).
    pub body: Value,
}

/// The current time as kube-apiserver writes timestamps (RFC 3339, seconds).
pub fn now_rfc3339() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn meta(obj: &Value) -> Option<&Map<String, Value>> {
    obj.get("metadata")?.as_object()
}

fn meta_mut(obj: &mut Value) -> ApiResult<&mut Map<String, Value>> {
    let map = obj.as_object_mut().ok_or_else(|| ApiError::bad_request("the request body is not a JSON object"))?;
    let meta = map.entry("metadata").or_insert_with(|| json!({}));
    if meta.is_null() {
        *meta = json!({});
    }
    meta.as_object_mut().ok_or_else(|| ApiError::bad_request("metadata must be an object"))
}

fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    meta(obj)?.get(field)?.as_str().filter(|s| !s.is_empty())
}

/// Parses a resourceVersion given by a client.
pub fn parse_resource_version(rv: &str) -> ApiResult<Revision> {
    rv.parse::<Revision>()
        .ok()
        .filter(|r| *r >= 0)
        .ok_or_else(|| ApiError::bad_request(format!("invalid resource version: {rv:?}")))
}

/// The object as stored: without resourceVersion (it is the store's revision).
pub(crate) fn to_stored(obj: &mut Value) -> ApiResult<Bytes> {
    // The resourceVersion is taken out for the encoding and put back, rather than encoding a copy: objects
    // can be large and this runs on every write.
    let meta = obj.get_mut("metadata").and_then(Value::as_object_mut);
    let taken = meta.and_then(|m| {
        m.remove("selfLink");
        m.remove("resourceVersion")
    });
    let encoded = serde_json::to_vec(&*obj);
    if let (Some(rv), Some(meta)) = (taken, obj.get_mut("metadata").and_then(Value::as_object_mut)) {
        meta.insert("resourceVersion".into(), rv);
    }
    encoded.map(Bytes::from).map_err(|e| ApiError::internal(format!("encoding the object: {e}")))
}

/// The object as read from the store, with its resourceVersion.
pub fn from_stored(kv: &KeyValue) -> ApiResult<Value> {
    with_revision(&kv.value, kv.mod_revision)
}

fn with_revision(raw: &[u8], revision: Revision) -> ApiResult<Value> {
    let mut obj: Value = serde_json::from_slice(raw).map_err(|e| {
        ApiError::internal(format!("a stored object is not valid JSON ({e}); the store may be corrupt"))
    })?;
    if let Ok(meta) = meta_mut(&mut obj) {
        meta.insert("resourceVersion".into(), Value::String(revision.to_string()));
    }
    Ok(obj)
}

const NAME_CHARS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

fn random_suffix() -> String {
    let bytes = uuid::Uuid::new_v4().into_bytes();
    bytes[..5].iter().map(|b| NAME_CHARS[usize::from(*b) % NAME_CHARS.len()] as char).collect()
}

/// What an update decides to do with an object.
pub(crate) enum Outcome {
    Write(Value),
    Delete(Value),
}

impl Api {
    /// Checks that the body names the kind the URL addresses, filling in `apiVersion` and `kind` when absent.
    pub(crate) fn check_type(&self, resource: &ResourceType, obj: &mut Value) -> ApiResult<()> {
        let expected_version = resource.api_version();
        let map = obj.as_object_mut().ok_or_else(|| ApiError::bad_request("the request body is not a JSON object"))?;
        match map.get("apiVersion").and_then(Value::as_str).filter(|s| !s.is_empty()) {
            Some(v) if v != expected_version => {
                return Err(ApiError::bad_request(format!(
                    "the API version in the data ({v}) does not match the expected API version ({expected_version})"
                )));
            }
            Some(_) => {}
            None => {
                map.insert("apiVersion".into(), json!(expected_version));
            }
        }
        match map.get("kind").and_then(Value::as_str).filter(|s| !s.is_empty()) {
            Some(k) if k != resource.kind => {
                return Err(ApiError::bad_request(format!(
                    "the kind in the data ({k}) does not match the expected kind ({})",
                    resource.kind
                )));
            }
            Some(_) => {}
            None => {
                map.insert("kind".into(), json!(resource.kind));
            }
        }
        Ok(())
    }

    pub(crate) fn check_namespace_field(
        &self,
        resource: &ResourceType,
        namespace: Option<&str>,
        obj: &mut Value,
    ) -> ApiResult<()> {
        let meta = meta_mut(obj)?;
        if !resource.namespaced {
            meta.remove("namespace");
            return Ok(());
        }
        let Some(namespace) = namespace else {
            return Err(ApiError::bad_request("a namespace is required to create or update this resource"));
        };
        match meta.get("namespace").and_then(Value::as_str).filter(|s| !s.is_empty()) {
            Some(ns) if ns != namespace => Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            )),
            _ => {
                meta.insert("namespace".into(), json!(namespace));
                Ok(())
            }
        }
    }

    /// Refuses creation in a namespace that does not exist or is being deleted.
    async fn check_namespace_open(&self, namespace: &str) -> ApiResult<()> {
        let namespaces = self.registry.by_plural("", "v1", "namespaces").ok_or_else(ApiError::no_route)?;
        let key = namespaces.key(None, namespace);
        // The cache answers almost always; a namespace it does not know yet (created a moment ago) is looked
        // up in the store, as kube-apiserver's lifecycle admission falls back to a live read.
        let cached = self.cache.resource(&namespaces.key_prefix()).get(&key, self.cache.applied()).0;
        let ns = match cached {
            Some(entry) => entry.value.clone(),
            None => match self.store.get(key.as_bytes()).await {
                Ok(kv) => from_stored(&kv)?,
                Err(StoreError::NotFound { .. }) => return Err(ApiError::not_found(namespaces, namespace)),
                Err(e) => return Err(ApiError::from_store(e, namespaces, namespace)),
            },
        };
        if meta_str(&ns, "deletionTimestamp").is_some() || ns["status"]["phase"] == "Terminating" {
            let mut err = ApiError::forbidden(format!(
                "unable to create new content in namespace {namespace} because it is being terminated"
            ));
            err.causes.push(Cause {
                reason: "NamespaceTerminating".into(),
                message: format!("namespace {namespace} is being terminated"),
                field: "metadata.namespace".into(),
            });
            return Err(err);
        }
        Ok(())
    }

    /// Waits until the watch cache shows `revision`, so that reads after this write see it.
    async fn settle(&self, revision: Revision) {
        if let Err(err) = self.cache.wait_for(revision, READ_YOUR_WRITES_PATIENCE).await {
            tracing::warn!(revision, error = %err, "the watch cache is behind the store");
        }
    }

    /// POST: creates an object.
    pub async fn create(
        &self,
        resource: &'static ResourceType,
        namespace: Option<&str>,
        mut obj: Value,
        options: &WriteOptions,
    ) -> ApiResult<Written> {
        self.check_type(resource, &mut obj)?;
        self.check_namespace_field(resource, namespace, &mut obj)?;
        crate::crd::check_create_allowed(self, resource)?;
        if resource.custom
            && resource.has_subresource(Subresource::Status)
            && let Some(map) = obj.as_object_mut()
        {
            map.remove("status");
        }
        let generate_name = meta_str(&obj, "generateName").map(str::to_string);
        if meta_str(&obj, "name").is_none() && generate_name.is_none() {
            return Err(self.invalid(
                resource,
                "",
                vec![Cause {
                    reason: "FieldValueRequired".into(),
                    message: "Required value: name or generateName is required".into(),
                    field: "metadata.name".into(),
                }],
            ));
        }
        {
            let now = now_rfc3339();
            let meta = meta_mut(&mut obj)?;
            for field in ["resourceVersion", "selfLink", "deletionTimestamp", "deletionGracePeriodSeconds"] {
                meta.remove(field);
            }
            meta.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
            meta.insert("creationTimestamp".into(), json!(now));
            if strategy::tracks_generation(resource) {
                meta.insert("generation".into(), json!(1));
            } else {
                meta.remove("generation");
            }
        }
        if let Some(status) = strategy::initial_status(resource, &obj)
            && let Some(map) = obj.as_object_mut()
        {
            map.insert("status".into(), status);
        }
        if resource.group.is_empty() && resource.kind == "Pod" {
            self.resolve_priority(&mut obj).await?;
        }
        self.admit_create(resource, &mut obj)?;
        // After defaulting, so that the template compared later is the one stored.
        strategy::daemon_set_template_generation(resource, None, &mut obj);
        if let Some(ns) = namespace.filter(|_| resource.namespaced) {
            self.admit_limit_ranges(resource, ns, &mut obj, None)?;
        }
        if !options.applied {
            let schema = self.apply_schema(resource);
            crate::managed_fields::record_create(&schema, resource, &mut obj, &options.field_manager);
        }
        if let Some(ns) = namespace.filter(|_| resource.namespaced) {
            self.check_namespace_open(ns).await?;
        }
        // A generated name can collide; try a few fresh suffixes before giving up, as kube-apiserver does.
        for attempt in 0..5 {
            if let Some(prefix) = &generate_name
                && (attempt > 0 || meta_str(&obj, "name").is_none())
            {
                let name = format!("{prefix}{}", random_suffix());
                meta_mut(&mut obj)?.insert("name".into(), json!(name));
            }
            let name = meta_str(&obj, "name").unwrap_or_default().to_string();
            // Charged once, whatever name a retry picks: a create that fails after its charge leaves the quota
            // for the quota controller to recount, as in kube-apiserver.
            if attempt == 0
                && let Some(ns) = namespace.filter(|_| resource.namespaced)
            {
                self.admit_quota(resource, ns, &obj, None, options.dry_run).await?;
            }
            let service = crate::services::is_service(resource);
            if options.dry_run {
                if service {
                    // Checks requested addresses and ports; claims nothing.
                    let checked = self.claim_service(resource, None, &mut obj, true).await?;
                    self.undo_claim(checked).await;
                }
                return Ok(Written { code: 201, body: obj });
            }
            let claim = if service { Some(self.claim_service(resource, None, &mut obj, false).await?) } else { None };
            let key = resource.key(namespace, &name);
            let created = match to_stored(&mut obj) {
                Ok(bytes) => {
                    self.store.create(key.as_bytes(), bytes).await.map_err(|e| ApiError::from_store(e, resource, &name))
                }
                Err(e) => Err(e),
            };
            match (created, claim) {
                (Ok(revision), claim) => {
                    if let Some(claim) = claim {
                        self.finish_claim(claim).await;
                    }
                    meta_mut(&mut obj)?.insert("resourceVersion".into(), json!(revision.to_string()));
                    self.settle(revision).await;
                    return Ok(Written { code: 201, body: obj });
                }
                (Err(e), claim) => {
                    if let Some(claim) = claim {
                        self.undo_claim(claim).await;
                    }
                    if e.code == 409 && generate_name.is_some() && attempt < 4 {
                        continue;
                    }
                    return Err(e);
                }
            }
        }
        Err(ApiError::internal("could not generate a unique name"))
    }

    /// The Priority admission step: a pod's `spec.priority` (and `preemptionPolicy`) come from its
    /// PriorityClass, or from the class marked `globalDefault` when it names none (0 without one). A pod
    /// naming a class that does not exist is refused, as kube-apiserver refuses it.
    async fn resolve_priority(&self, pod: &mut Value) -> ApiResult<()> {
        let classes =
            self.registry.by_plural("scheduling.k8s.io", "v1", "priorityclasses").ok_or_else(ApiError::no_route)?;
        let wanted = pod["spec"]["priorityClassName"].as_str().filter(|n| !n.is_empty()).map(str::to_string);
        let class = match &wanted {
            Some(name) => {
                // The built-in classes exist without being stored, as in kube-apiserver.
                let builtin = match name.as_str() {
                    "system-cluster-critical" => Some(2_000_000_000),
                    "system-node-critical" => Some(2_000_001_000),
                    _ => None,
                };
                if let Some(value) = builtin {
                    Some(json!({"value": value}))
                } else {
                    match self.store.get(classes.key(None, name).as_bytes()).await {
                        Ok(kv) => Some(from_stored(&kv)?),
                        Err(StoreError::NotFound { .. }) => {
                            return Err(ApiError::forbidden(format!("no PriorityClass with name {name} was found")));
                        }
                        Err(e) => return Err(ApiError::from_store(e, classes, name)),
                    }
                }
            }
            None => {
                let cache = self.cache.resource(&classes.key_prefix());
                let snapshot = cache.snapshot(&classes.key_prefix(), self.cache.applied());
                snapshot.objects.iter().find(|e| e.value["globalDefault"] == true).map(|e| e.value.clone())
            }
        };
        let spec = pod.get_mut("spec").and_then(Value::as_object_mut);
        let Some(spec) = spec else { return Ok(()) };
        let value = class.as_ref().and_then(|c| c["value"].as_i64()).unwrap_or(0);
        if let Some(given) = spec.get("priority").and_then(Value::as_i64)
            && given != value
        {
            return Err(ApiError::forbidden(
                "the integer value of priority must not be provided in pod spec; priority admission controller \
                 computed the value from the given PriorityClass name",
            ));
        }
        spec.insert("priority".into(), json!(value));
        if let Some(class) = &class {
            if wanted.is_none()
                && let Some(name) = class["metadata"]["name"].as_str()
            {
                spec.insert("priorityClassName".into(), json!(name));
            }
            let policy = class["preemptionPolicy"].as_str().unwrap_or("PreemptLowerPriority");
            spec.insert("preemptionPolicy".into(), json!(policy));
        }
        Ok(())
    }

    /// Builds a 422 from causes, with kube-apiserver's summary message.
    pub fn invalid(&self, resource: &ResourceType, name: &str, causes: Vec<Cause>) -> ApiError {
        let kind = if resource.group.is_empty() {
            resource.kind.to_string()
        } else {
            format!("{}.{}", resource.kind, resource.group)
        };
        let details: Vec<String> = causes
            .iter()
            .map(|c| if c.field.is_empty() { c.message.clone() } else { format!("{}: {}", c.field, c.message) })
            .collect();
        let summary = match details.as_slice() {
            [one] => format!("{kind} \"{name}\" is invalid: {one}"),
            many => format!("{kind} \"{name}\" is invalid: [{}]", many.join(", ")),
        };
        ApiError::invalid(resource, name, summary, causes)
    }

    /// Reads, transforms and writes one object with compare-and-swap, retrying on conflicts unless the
    /// client named the resourceVersion it expects.
    pub(crate) async fn update_with<F>(
        &self,
        resource: &'static ResourceType,
        namespace: Option<&str>,
        name: &str,
        expected: Option<Revision>,
        dry_run: bool,
        mut transform: F,
    ) -> ApiResult<Written>
    where
        F: FnMut(&Value) -> ApiResult<Outcome> + Send,
    {
        let key = resource.key(namespace, name);
        loop {
            let current = match self.store.get(key.as_bytes()).await {
                Ok(kv) => kv,
                Err(e) => return Err(ApiError::from_store(e, resource, name)),
            };
            if let Some(expected) = expected
                && expected != current.mod_revision
            {
                return Err(ApiError::conflict(resource, name));
            }
            let old = from_stored(&current)?;
            let outcome = transform(&old)?;
            let result = match outcome {
                Outcome::Write(mut new) => {
                    self.admit_update_charges(resource, namespace, &old, &mut new, dry_run).await?;
                    let claim = match crate::services::is_service(resource) {
                        true => Some(self.claim_service(resource, Some(&old), &mut new, dry_run).await?),
                        false => None,
                    };
                    let bytes = to_stored(&mut new);
                    let unchanged = bytes.as_ref().is_ok_and(|b| *b == current.value);
                    let bytes = match bytes {
                        Ok(bytes) if !unchanged && !dry_run => bytes,
                        other => {
                            if let Some(claim) = claim {
                                self.undo_claim(claim).await;
                            }
                            other?;
                            let body = if unchanged { old } else { new };
                            return Ok(Written { code: 200, body });
                        }
                    };
                    let updated = self.store.update(key.as_bytes(), bytes, current.mod_revision).await;
                    if let Some(claim) = claim {
                        match &updated {
                            Ok(_) => self.finish_claim(claim).await,
                            Err(_) => self.undo_claim(claim).await,
                        }
                    }
                    match updated {
                        Ok(revision) => {
                            meta_mut(&mut new)?.insert("resourceVersion".into(), json!(revision.to_string()));
                            self.settle(revision).await;
                            Ok(Written { code: 200, body: new })
                        }
                        Err(e) => Err(e),
                    }
                }
                Outcome::Delete(mut last) => {
                    if dry_run {
                        return Ok(Written { code: 200, body: last });
                    }
                    match self.store.delete(key.as_bytes(), Some(current.mod_revision)).await {
                        Ok(deleted) => {
                            self.release_service(resource, &last).await;
                            meta_mut(&mut last)?.insert("resourceVersion".into(), json!(deleted.revision.to_string()));
                            self.settle(deleted.revision).await;
                            Ok(Written { code: 200, body: last })
                        }
                        Err(e) => Err(e),
                    }
                }
            };
            match result {
                Ok(written) => return Ok(written),
                Err(StoreError::Conflict { .. }) if expected.is_none() => continue,
                Err(StoreError::NotFound { .. }) if expected.is_none() => continue,
                Err(e) => return Err(ApiError::from_store(e, resource, name)),
            }
        }
    }

    /// LimitRanger and quota on a spec change that may charge more (a claim growing, a service becoming a load
    /// balancer, a pod entering the `Terminating` scope). Writes that leave the spec alone (status, metadata) are
    /// not re-admitted: they cannot add usage.
    async fn admit_update_charges(
        &self,
        resource: &'static ResourceType,
        namespace: Option<&str>,
        old: &Value,
        new: &mut Value,
        dry_run: bool,
    ) -> ApiResult<()> {
        let Some(ns) = namespace.filter(|_| resource.namespaced) else { return Ok(()) };
        if !strategy::spec_changed(old, new)
            || !gantry_api::quota::charges_update(resource.group, resource.plural, old, new)
        {
            return Ok(());
        }
        self.admit_limit_ranges(resource, ns, new, Some(old))?;
        self.admit_quota(resource, ns, new, Some(old), dry_run).await
    }

    /// The rules every write to an existing object follows, whichever verb carried it. `manager` is who the
    /// changes are recorded for in managedFields (`None`: server-side apply recorded them already).
    pub(crate) fn finish_update(
        &self,
        resource: &'static ResourceType,
        old: &Value,
        mut new: Value,
        subresource: Option<Subresource>,
        manager: Option<&str>,
    ) -> ApiResult<Outcome> {
        let name = meta_str(old, "name").unwrap_or_default().to_string();
        if subresource == Some(Subresource::Status) {
            // A status write changes the status and nothing else.
            let status = new.get("status").cloned();
            let managed = meta(&new).and_then(|m| m.get("managedFields")).cloned();
            new = old.clone();
            if let Some(map) = new.as_object_mut() {
                match status {
                    Some(s) => map.insert("status".into(), s),
                    None => map.remove("status"),
                };
            }
            if let Some(managed) = managed {
                meta_mut(&mut new)?.insert("managedFields".into(), managed);
            }
        } else if strategy::has_status_subresource(resource)
            && let Some(map) = new.as_object_mut()
        {
            match old.get("status") {
                Some(s) => map.insert("status".into(), s.clone()),
                None => map.remove("status"),
            };
        }
        {
            let old_meta = meta(old).cloned().unwrap_or_default();
            let meta = meta_mut(&mut new)?;
            if let Some(new_name) = meta.get("name").and_then(Value::as_str)
                && new_name != name
            {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({new_name}) does not match the name on the URL ({name})"
                )));
            }
            for field in
                ["name", "namespace", "uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds"]
            {
                match old_meta.get(field) {
                    Some(v) => meta.insert(field.into(), v.clone()),
                    None => meta.remove(field),
                };
            }
            meta.remove("selfLink");
            // An unconditional update (no resourceVersion sent) applies to the version it was checked against.
            if meta.get("resourceVersion").and_then(Value::as_str).is_none_or(str::is_empty)
                && let Some(rv) = old_meta.get("resourceVersion")
            {
                meta.insert("resourceVersion".into(), rv.clone());
            }
            if let Some(v) = old_meta.get("generation") {
                meta.insert("generation".into(), v.clone());
            }
        }
        if strategy::tracks_generation(resource) && strategy::spec_changed(old, &new) {
            let generation = meta(old).and_then(|m| m.get("generation")).and_then(Value::as_i64).unwrap_or(0);
            meta_mut(&mut new)?.insert("generation".into(), json!(generation + 1));
        }
        let finalizers = |o: &Value| -> Vec<String> {
            meta(o)
                .and_then(|m| m.get("finalizers"))
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
                .unwrap_or_default()
        };
        let deleting = meta_str(old, "deletionTimestamp").is_some();
        let (old_finalizers, new_finalizers) = (finalizers(old), finalizers(&new));
        if deleting && new_finalizers.iter().any(|f| !old_finalizers.contains(f)) {
            return Err(self.invalid(
                resource,
                &name,
                vec![Cause {
                    reason: "FieldValueForbidden".into(),
                    message: "Forbidden: no new finalizers can be added if the object is being deleted".into(),
                    field: "metadata.finalizers".into(),
                }],
            ));
        }
        if subresource.is_none() && crate::services::is_service(resource) {
            crate::services::drop_type_dependent_fields(old, &mut new);
        }
        self.admit_update(resource, &mut new, old)?;
        strategy::daemon_set_template_generation(resource, Some(old), &mut new);
        if let Some(manager) = manager {
            let schema = self.apply_schema(resource);
            crate::managed_fields::record_update(&schema, resource, old, &mut new, manager, subresource);
        }
        if deleting
            && new_finalizers.is_empty()
            && !self.awaits_graceful_confirmation(resource, &new)
            && !awaits_namespace_finalizers(resource, &new)
        {
            return Ok(Outcome::Delete(new));
        }
        Ok(Outcome::Write(new))
    }

    /// Pods bound to a node stay until the node agent confirms their end (a delete with grace 0).
    fn awaits_graceful_confirmation(&self, resource: &ResourceType, obj: &Value) -> bool {
        resource.group.is_empty()
            && resource.kind == "Pod"
            && meta(obj).and_then(|m| m.get("deletionGracePeriodSeconds")).and_then(Value::as_i64).unwrap_or(0) > 0
    }

    /// PUT: replaces an object (or its status).
    pub async fn update(
        &self,
        resource: &'static ResourceType,
        namespace: Option<&str>,
        name: &str,
        subresource: Option<Subresource>,
        mut obj: Value,
        options: &WriteOptions,
    ) -> ApiResult<Written> {
        self.check_type(resource, &mut obj)?;
        self.check_namespace_field(resource, namespace, &mut obj)?;
        let expected = meta_str(&obj, "resourceVersion").map(parse_resource_version).transpose()?;
        self.update_with(resource, namespace, name, expected, options.dry_run, |old| {
            self.finish_update(resource, old, obj.clone(), subresource, Some(&options.field_manager))
        })
        .await
    }

    /// PATCH of an object (or its status).
    #[allow(clippy::too_many_arguments)] // one per part of the request; a struct would only rename them
    pub async fn patch(
        &self,
        resource: &'static ResourceType,
        namespace: Option<&str>,
        name: &str,
        subresource: Option<Subresource>,
        patch_type: gantry_api::patch::PatchType,
        patch: &[u8],
        options: &WriteOptions,
    ) -> ApiResult<Written> {
        // A patch applies to the version the client addressed; the result is stored in the stored version.
        let served = resource;
        let resource = self.registry.storage_type(served);
        let mut expected_from_patch = None;
        let result = self
            .update_with(resource, namespace, name, None, options.dry_run, |old| {
                let old_served = self.to_served(served, old.clone())?;
                let new = gantry_api::patch::apply_patch(patch_type, served.group_kind(), &old_served, patch)
                    .map_err(|e| crate::codec::patch_error(e, served))?;
                let mut new = self.to_storage(served, new)?;
                self.check_type(resource, &mut new)?;
                // A patch that names a resourceVersion is a precondition on it.
                if let Some(rv) = meta_str(&new, "resourceVersion")
                    && Some(rv) != meta_str(old, "resourceVersion")
                {
                    expected_from_patch = Some(rv.to_string());
                    return Err(ApiError::conflict(resource, name));
                }
                self.finish_update(resource, old, new, subresource, Some(&options.field_manager))
            })
            .await;
        if expected_from_patch.is_some() {
            tracing::debug!(name, "patch precondition on resourceVersion failed");
        }
        result
    }

    /// DELETE of one object, honouring preconditions, finalizers, propagation and graceful pod deletion.
    pub async fn delete(
        &self,
        resource: &'static ResourceType,
        namespace: Option<&str>,
        name: &str,
        options: &DeleteOptions,
    ) -> ApiResult<Written> {
        let key = resource.key(namespace, name);
        let is_pod = resource.group.is_empty() && resource.kind == "Pod";
        let is_namespace = resource.group.is_empty() && resource.kind == "Namespace";
        loop {
            let current = self.store.get(key.as_bytes()).await.map_err(|e| ApiError::from_store(e, resource, name))?;
            let old = from_stored(&current)?;
            if let Some(uid) = &options.uid
                && meta_str(&old, "uid") != Some(uid.as_str())
            {
                return Err(ApiError::conflict_because(
                    resource,
                    name,
                    &format!(
                        "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                        meta_str(&old, "uid").unwrap_or_default()
                    ),
                ));
            }
            if let Some(rv) = &options.resource_version
                && meta_str(&old, "resourceVersion") != Some(rv.as_str())
            {
                return Err(ApiError::conflict_because(
                    resource,
                    name,
                    &format!(
                        "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                        meta_str(&old, "resourceVersion").unwrap_or_default()
                    ),
                ));
            }
            let mut new = old.clone();
            let mut finalizers: Vec<String> = meta(&old)
                .and_then(|m| m.get("finalizers"))
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
                .unwrap_or_default();
            let already_deleting = meta_str(&old, "deletionTimestamp").is_some();
            if !already_deleting
                && resource.group == "apiextensions.k8s.io"
                && resource.kind == "CustomResourceDefinition"
                && !finalizers.iter().any(|f| f == crate::crd::CLEANUP_FINALIZER)
            {
                // The definition stays until its objects are deleted (see `crd`).
                finalizers.push(crate::crd::CLEANUP_FINALIZER.into());
            }
            if !already_deleting {
                match options.propagation.as_deref() {
                    Some("Foreground") => {
                        finalizers.retain(|f| f != "orphan");
                        if !finalizers.iter().any(|f| f == "foregroundDeletion") {
                            finalizers.push("foregroundDeletion".into());
                        }
                    }
                    Some("Orphan") => {
                        finalizers.retain(|f| f != "foregroundDeletion");
                        if !finalizers.iter().any(|f| f == "orphan") {
                            finalizers.push("orphan".into());
                        }
                    }
                    Some("Background") | None => {}
                    Some(other) => {
                        return Err(ApiError::bad_request(format!(
                            "invalid propagationPolicy {other:?}: must be Orphan, Background or Foreground"
                        )));
                    }
                }
            }
            // Namespaces wait for their content to be removed (spec.finalizers), pods bound to a node for the
            // node agent; anything with finalizers for whoever owns them.
            let namespace_finalizers =
                is_namespace && new["spec"]["finalizers"].as_array().is_some_and(|a| !a.is_empty());
            let grace = if is_pod {
                let bound = new["spec"]["nodeName"].as_str().is_some_and(|n| !n.is_empty());
                let terminal = matches!(new["status"]["phase"].as_str(), Some("Succeeded" | "Failed"));
                let requested = options.grace_period.unwrap_or_else(|| strategy::pod_grace_period(&new));
                if bound && !terminal { requested.max(0) } else { 0 }
            } else {
                0
            };
            let previous_grace = meta(&old).and_then(|m| m.get("deletionGracePeriodSeconds")).and_then(Value::as_i64);
            if finalizers.is_empty() && !namespace_finalizers && grace == 0 {
                if options.dry_run {
                    return Ok(Written { code: 200, body: self.deleted_reply(resource, &old) });
                }
                match self.store.delete(key.as_bytes(), Some(current.mod_revision)).await {
                    Ok(deleted) => {
                        self.release_service(resource, &old).await;
                        self.settle(deleted.revision).await;
                        let mut last = old;
                        meta_mut(&mut last)?.insert("resourceVersion".into(), json!(deleted.revision.to_string()));
                        return Ok(Written { code: 200, body: self.deleted_reply(resource, &last) });
                    }
                    Err(StoreError::Conflict { .. } | StoreError::NotFound { .. })
                        if options.resource_version.is_none() =>
                    {
                        continue;
                    }
                    Err(e) => return Err(ApiError::from_store(e, resource, name)),
                }
            }
            // Deferred deletion: mark it and let finalizers, the namespace controller or the node agent finish.
            {
                let now = jiff::Timestamp::now();
                let meta = meta_mut(&mut new)?;
                let shorter = previous_grace.is_some_and(|p| grace < p);
                if !already_deleting || shorter {
                    let at = now.checked_add(jiff::SignedDuration::from_secs(grace)).unwrap_or(now);
                    meta.insert("deletionTimestamp".into(), json!(at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()));
                    meta.insert("deletionGracePeriodSeconds".into(), json!(grace));
                }
                if finalizers.is_empty() {
                    meta.remove("finalizers");
                } else {
                    meta.insert("finalizers".into(), json!(finalizers));
                }
            }
            if is_namespace && let Some(map) = new.as_object_mut() {
                map.insert("status".into(), json!({"phase": "Terminating"}));
            }
            let bytes = to_stored(&mut new)?;
            if bytes == current.value || options.dry_run {
                return Ok(Written { code: 200, body: new });
            }
            match self.store.update(key.as_bytes(), bytes, current.mod_revision).await {
                Ok(revision) => {
                    meta_mut(&mut new)?.insert("resourceVersion".into(), json!(revision.to_string()));
                    self.settle(revision).await;
                    return Ok(Written { code: 200, body: new });
                }
                Err(StoreError::Conflict { .. }) if options.resource_version.is_none() => continue,
                Err(e) => return Err(ApiError::from_store(e, resource, name)),
            }
        }
    }

    /// What a completed delete answers: the object for pods (as kube-apiserver does), a `Status` otherwise.
    fn deleted_reply(&self, resource: &ResourceType, last: &Value) -> Value {
        if resource.group.is_empty() && resource.kind == "Pod" {
            return last.clone();
        }
        let mut details = json!({
            "name": meta_str(last, "name").unwrap_or_default(),
            "kind": resource.plural,
            "uid": meta_str(last, "uid").unwrap_or_default(),
        });
        if !resource.group.is_empty() {
            details["group"] = json!(resource.group);
        }
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details})
    }

    /// `PUT namespaces/{name}/finalize`: replaces `spec.finalizers` (what the namespace controller removes
    /// once the namespace is empty); a terminating namespace with no finalizers left is deleted.
    pub async fn finalize_namespace(&self, name: &str, mut obj: Value, options: &WriteOptions) -> ApiResult<Written> {
        let resource = self.registry.by_plural("", "v1", "namespaces").ok_or_else(ApiError::no_route)?;
        self.check_type(resource, &mut obj)?;
        let finalizers = obj["spec"]["finalizers"].clone();
        self.update_with(resource, None, name, None, options.dry_run, |old| {
            let mut new = old.clone();
            if let Some(map) = new.as_object_mut() {
                let spec = map.entry("spec").or_insert_with(|| json!({}));
                spec["finalizers"] = if finalizers.is_null() { json!([]) } else { finalizers.clone() };
            }
            let spec_empty = new["spec"]["finalizers"].as_array().is_none_or(|a| a.is_empty());
            let meta_empty =
                meta(&new).and_then(|m| m.get("finalizers")).and_then(Value::as_array).is_none_or(|a| a.is_empty());
            if meta_str(&new, "deletionTimestamp").is_some() && spec_empty && meta_empty {
                Ok(Outcome::Delete(new))
            } else {
                Ok(Outcome::Write(new))
            }
        })
        .await
    }

    /// `POST pods/{name}/binding`: assigns a pod to a node, once.
    pub async fn bind(
        &self,
        pods: &'static ResourceType,
        namespace: Option<&str>,
        name: &str,
        binding: Value,
        options: &WriteOptions,
    ) -> ApiResult<Written> {
        let node = binding["target"]["name"].as_str().filter(|n| !n.is_empty()).map(str::to_string);
        let Some(node) = node else {
            return Err(self.invalid(
                pods,
                name,
                vec![Cause {
                    reason: "FieldValueRequired".into(),
                    message: "Required value".into(),
                    field: "target.name".into(),
                }],
            ));
        };
        let expected_uid = meta_str(&binding, "uid").map(str::to_string);
        self.update_with(pods, namespace, name, None, options.dry_run, |old| {
            if let Some(uid) = &expected_uid
                && meta_str(old, "uid") != Some(uid.as_str())
            {
                return Err(ApiError::conflict_because(pods, name, "the pod's UID does not match the binding"));
            }
            if meta_str(old, "deletionTimestamp").is_some() {
                return Err(ApiError::conflict_because(
                    pods,
                    name,
                    "pod is being deleted, cannot be assigned to a host",
                ));
            }
            if let Some(current) = old["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) {
                return Err(ApiError::conflict_because(
                    pods,
                    name,
                    &format!("pod {name} is already assigned to node \"{current}\""),
                ));
            }
            let mut new = old.clone();
            new["spec"]["nodeName"] = json!(node);
            let condition = json!({
                "type": "PodScheduled", "status": "True", "lastProbeTime": null,
                "lastTransitionTime": now_rfc3339(),
            });
            if let Some(status) = new.as_object_mut().map(|m| m.entry("status").or_insert_with(|| json!({}))) {
                let conditions = status.as_object_mut().map(|s| s.entry("conditions").or_insert_with(|| json!([])));
                if let Some(list) = conditions.and_then(Value::as_array_mut) {
                    list.retain(|c| c["type"] != "PodScheduled");
                    list.push(condition);
                }
            }
            Ok(Outcome::Write(new))
        })
        .await?;
        Ok(Written {
            code: 201,
            body: json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
        })
    }

    /// The `autoscaling/v1` `Scale` view of an object with `spec.replicas` (or the paths its definition
    /// names, for a custom resource).
    pub fn scale_of(&self, resource: &ResourceType, obj: &Value) -> ApiResult<Value> {
        let meta = meta(obj).cloned().unwrap_or_default();
        let mut scale_meta = Map::new();
        for field in ["name", "namespace", "uid", "resourceVersion", "creationTimestamp"] {
            if let Some(v) = meta.get(field) {
                scale_meta.insert(field.into(), v.clone());
            }
        }
        if let Some(paths) = self.custom.version(resource).and_then(|v| v.scale.clone()) {
            return gantry_api::crd::scale_of(obj, &paths).map_err(|e| ApiError::internal(e.to_string()));
        }
        let selector = crate::codec::selector_string(&obj["spec"]["selector"]);
        Ok(json!({
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": scale_meta,
            "spec": {"replicas": obj["spec"]["replicas"].as_i64().unwrap_or(0)},
            "status": {"replicas": obj["status"]["replicas"].as_i64().unwrap_or(0), "selector": selector},
        }))
    }

    /// PUT or PATCH of `scale`: `change` turns the current Scale into the wanted one.
    pub async fn update_scale<F>(
        &self,
        resource: &'static ResourceType,
        namespace: Option<&str>,
        name: &str,
        options: &WriteOptions,
        mut change: F,
    ) -> ApiResult<Written>
    where
        F: FnMut(&Value) -> ApiResult<Value> + Send,
    {
        let written = self
            .update_with(resource, namespace, name, None, options.dry_run, |old| {
                let scale = self.scale_of(resource, old)?;
                let wanted = change(&scale)?;
                if let Some(rv) = meta_str(&wanted, "resourceVersion")
                    && Some(rv) != meta_str(old, "resourceVersion")
                {
                    return Err(ApiError::conflict(resource, name));
                }
                let replicas = wanted["spec"]["replicas"].as_i64().unwrap_or(0);
                if replicas < 0 {
                    return Err(self.invalid(
                        resource,
                        name,
                        vec![Cause {
                            reason: "FieldValueInvalid".into(),
                            message: format!("Invalid value: {replicas}: must be greater than or equal to 0"),
                            field: "spec.replicas".into(),
                        }],
                    ));
                }
                let mut new = old.clone();
                match self.custom.version(resource).and_then(|v| v.scale.clone()) {
                    Some(paths) => gantry_api::crd::set_spec_replicas(&mut new, &paths, replicas)
                        .map_err(|e| ApiError::internal(e.to_string()))?,
                    None => new["spec"]["replicas"] = json!(replicas),
                }
                // Recorded as a write through `scale`, as kube-apiserver records it.
                self.finish_update(resource, old, new, Some(Subresource::Scale), Some(&options.field_manager))
            })
            .await?;
        Ok(Written { code: 200, body: self.scale_of(resource, &written.body)? })
    }
}

/// A namespace stays while `spec.finalizers` lists anything: only its `finalize` subresource (the namespace
/// controller, once the namespace is empty) releases it, whatever other writes (its status) happen meanwhile.
fn awaits_namespace_finalizers(resource: &ResourceType, obj: &Value) -> bool {
    resource.group.is_empty()
        && resource.kind == "Namespace"
        && obj["spec"]["finalizers"].as_array().is_some_and(|a| !a.is_empty())
}
