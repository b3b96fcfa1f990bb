//! The API: one `Api` value holds the registry, the store and the watch cache, and turns requests into
//! replies. HTTP, TLS and authentication live in [`crate::server`].

use std::sync::Arc;

use bytes::Bytes;
use gantry_api::registry::{Registry, ResourceType, Subresource};
use gantry_store::Store;
use http::{HeaderMap, Method};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::auth::User;
use crate::cache::WatchCache;
use crate::codec::{self, Output};
use crate::objects::{DeleteOptions, FieldValidation, WriteOptions};
use crate::request::{Query, ResourceRequest, Target, Verb, parse_target};
use crate::status::{ApiError, ApiResult, Cause};

/// The Kubernetes version Gantry serves the API of.
pub const KUBERNETES_VERSION: &str = "v1.35.0";

/// A reply, ready for HTTP.
pub enum Reply {
    /// A complete body.
    Full {
        /// HTTP status code.
        code: u16,
        /// Content-Type.
        content_type: String,
        /// Body.
        body: Bytes,
        /// `Warning` headers (kube's `299 - "text"` form is applied by the server).
        warnings: Vec<String>,
    },
    /// A streamed body (watch), one chunk per event.
    Stream {
        /// Content-Type.
        content_type: String,
        /// The chunks.
        rx: mpsc::Receiver<Bytes>,
    },
    /// A pre-built response with extra headers (OpenAPI caching, redirects).
    Raw(http::Response<Bytes>),
}

impl Reply {
    /// A JSON reply.
    pub fn json(code: u16, value: &Value) -> Reply {
        Reply::Full { code, content_type: "application/json".into(), body: codec::to_bytes(value), warnings: vec![] }
    }

    /// Sets the Content-Type that matches the negotiated output.
    pub fn with_content_type(mut self, output: Output) -> Reply {
        if let Reply::Full { content_type, .. } = &mut self {
            *content_type = match output {
                Output::Json => "application/json".into(),
                Output::Table => "application/json;as=Table;v=v1;g=meta.k8s.io".into(),
                Output::Metadata => "application/json;as=PartialObjectMetadata;v=v1;g=meta.k8s.io".into(),
            };
        }
        self
    }

    /// A plain-text reply.
    pub fn text(code: u16, text: &str) -> Reply {
        Reply::Full {
            code,
            content_type: "text/plain; charset=utf-8".into(),
            body: Bytes::copy_from_slice(text.as_bytes()),
            warnings: vec![],
        }
    }

    /// An error as a `Status`.
    pub fn error(err: &ApiError) -> Reply {
        Reply::json(err.code, &err.to_status())
    }
}

/// A request as the API sees it, after HTTP and authentication.
pub struct ApiRequest {
    /// Method.
    pub method: Method,
    /// Path, without the query.
    pub path: String,
    /// Parsed query.
    pub query: Query,
    /// Headers.
    pub headers: HeaderMap,
    /// Body (empty for GET).
    pub body: Bytes,
    /// The authenticated user.
    pub user: User,
}

impl ApiRequest {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// The API server's state.
pub struct Api {
    /// The kinds served.
    pub registry: Registry,
    /// The store.
    pub store: Arc<dyn Store>,
    /// The watch cache.
    pub cache: Arc<WatchCache>,
    /// Cancelled when the server shuts down; long requests (watches) end then.
    pub shutdown: CancellationToken,
    /// The OpenAPI v3 documents of the built-in kinds, built once.
    openapi_built_in: gantry_api::openapi::OpenApiV3,
    /// The documents served now: the built-in ones and those of custom resources.
    openapi: std::sync::RwLock<Arc<gantry_api::openapi::OpenApiV3>>,
    /// The custom resources' documents in `openapi`, to tell when they change.
    custom_openapi: std::sync::Mutex<Vec<(String, Value)>>,
    /// What serving each custom resource needs beyond its registry entry.
    pub custom: crate::crd::CustomResources,
    /// The schemas of the served kinds, for finding unknown fields.
    pub schemas: crate::admission::Schemas,
    /// Answers `gantry why` once a scheduler runs in this process.
    pub(crate) explainer: std::sync::OnceLock<Arc<dyn crate::scheduling::SchedulingExplainer>>,
    /// Where Services' addresses and node ports come from ([`crate::services`]).
    pub service_network: crate::services::ServiceNetwork,
}

impl Api {
    /// Creates the API over a store; the watch cache must be run separately ([`WatchCache::run`]).
    pub fn new(store: Arc<dyn Store>, cache: Arc<WatchCache>, shutdown: CancellationToken) -> Api {
        let registry = Registry::built_in();
        let openapi = gantry_api::openapi::OpenApiV3::build(&registry);
        let schemas = crate::admission::Schemas::from_openapi(&openapi);
        Api {
            registry,
            store,
            cache,
            shutdown,
            openapi: std::sync::RwLock::new(Arc::new(openapi.clone())),
            openapi_built_in: openapi,
            custom_openapi: std::sync::Mutex::new(Vec::new()),
            custom: crate::crd::CustomResources::default(),
            schemas,
            explainer: std::sync::OnceLock::new(),
            service_network: crate::services::ServiceNetwork::default(),
        }
    }

    /// The OpenAPI documents served now.
    pub fn openapi(&self) -> Arc<gantry_api::openapi::OpenApiV3> {
        self.openapi.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Serves the built-in documents plus `custom` (custom resources' group-version documents). Unchanged
    /// documents keep their hashes, so clients' caches stay valid.
    pub(crate) fn set_custom_openapi(&self, custom: Vec<(String, Value)>) {
        let mut served = self.custom_openapi.lock().unwrap_or_else(|p| p.into_inner());
        // Most definition changes (their own status writes) leave the documents as they are.
        if *served == custom {
            return;
        }
        let built = Arc::new(self.openapi_built_in.with_documents(custom.clone()));
        *self.openapi.write().unwrap_or_else(|p| p.into_inner()) = built;
        *served = custom;
    }

    /// Serves one authenticated request.
    pub async fn handle(self: &Arc<Self>, request: ApiRequest) -> Reply {
        match self.route(&request).await {
            Ok(reply) => reply,
            Err(err) => Reply::error(&err),
        }
    }

    async fn route(self: &Arc<Self>, request: &ApiRequest) -> ApiResult<Reply> {
        let path = request.path.as_str();
        if path == "/openapi/v3" || path.starts_with("/openapi/v3/") {
            return self.openapi_reply(path, &request.query);
        }
        if path == "/openapi/v2" {
            return Err(ApiError::no_route());
        }
        if path.starts_with(crate::scheduling::PREFIX) {
            return self.gantry_path(&request.method, path).await;
        }
        if !(path.starts_with("/api") && (path.len() == 4 || path[4..].starts_with('/') || path.starts_with("/apis"))) {
            return Err(ApiError::no_route());
        }
        let target = parse_target(&self.registry, &request.method, path, &request.query)?;
        let accept = request.header("accept");
        match target {
            Target::CoreVersions => Ok(crate::discovery::core_versions(self, accept)),
            Target::Groups => Ok(crate::discovery::groups(self, accept)),
            Target::Group(group) => crate::discovery::group(self, &group),
            Target::GroupVersion(group, version) => crate::discovery::resources(self, &group, &version),
            Target::Resource(rr) => {
                let span = tracing::debug_span!("request", verb = ?rr.verb, resource = rr.resource.plural,
                                                namespace = rr.namespace.as_deref(), name = rr.name.as_deref());
                let _guard = span.enter();
                drop(_guard);
                self.resource(request, rr).await
            }
        }
    }

    fn openapi_reply(&self, path: &str, query: &Query) -> ApiResult<Reply> {
        use gantry_api::openapi::CachePolicy;
        let openapi = self.openapi();
        let doc = if path == "/openapi/v3" || path == "/openapi/v3/" {
            openapi.index()
        } else {
            openapi.document(&path["/openapi/v3/".len()..]).ok_or_else(ApiError::no_route)?
        };
        let mut response =
            http::Response::builder().status(200).header("content-type", "application/json").header("etag", doc.etag());
        match doc.cache_policy(query.get("hash")) {
            CachePolicy::Immutable => {
                let expires = jiff::Timestamp::now()
                    .checked_add(jiff::SignedDuration::from_hours(24 * 365))
                    .unwrap_or_else(|_| jiff::Timestamp::now())
                    .strftime("%a, %d %b %Y %H:%M:%S GMT")
                    .to_string();
                response = response.header("cache-control", "public, immutable").header("expires", expires);
            }
            CachePolicy::Revalidate => {
                response = response.header("cache-control", "no-cache, private");
            }
            CachePolicy::MovedTo(url) => {
                let moved = http::Response::builder()
                    .status(301)
                    .header("location", url)
                    .body(Bytes::new())
                    .map_err(|e| ApiError::internal(e.to_string()))?;
                return Ok(Reply::Raw(moved));
            }
        }
        let response =
            response.body(Bytes::copy_from_slice(doc.bytes())).map_err(|e| ApiError::internal(e.to_string()))?;
        Ok(Reply::Raw(response))
    }

    fn write_options(&self, request: &ApiRequest) -> ApiResult<WriteOptions> {
        let dry_run = match request.query.get("dryRun") {
            None => false,
            Some("All") => true,
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "dryRun: Unsupported value: {other:?}: supported values: \"All\""
                )));
            }
        };
        let field_validation = match request.query.get("fieldValidation") {
            None | Some("Warn") => FieldValidation::Warn,
            Some("Strict") => FieldValidation::Strict,
            Some("Ignore") => FieldValidation::Ignore,
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "fieldValidation: Unsupported value: {other:?}: supported values: \"Ignore\", \"Strict\", \"Warn\""
                )));
            }
        };
        let field_manager = match request.query.get("fieldManager") {
            Some(m) if m.len() > 128 => {
                return Err(ApiError::bad_request("fieldManager: Too long: may not be more than 128 bytes"));
            }
            Some(m) => m.to_string(),
            // As kube-apiserver does: the user agent's product name.
            None => request
                .header("user-agent")
                .and_then(|ua| ua.split('/').next())
                .filter(|s| !s.is_empty())
                .unwrap_or("unknown")
                .chars()
                .take(128)
                .collect(),
        };
        Ok(WriteOptions { dry_run, field_manager, field_validation, applied: false })
    }

    fn decode(&self, request: &ApiRequest) -> ApiResult<Value> {
        if request.body.is_empty() {
            return Err(ApiError::bad_request("the request body is empty"));
        }
        codec::decode_body(request.header("content-type"), &request.body)
    }

    async fn resource(self: &Arc<Self>, request: &ApiRequest, rr: ResourceRequest) -> ApiResult<Reply> {
        // Writes work on the stored version; replies are converted back to the version asked for.
        let served = rr.resource;
        let resource = self.registry.storage_type(served);
        let namespace = rr.namespace.as_deref();
        let name = rr.name.as_deref().unwrap_or_default();
        if resource.namespaced && namespace.is_none() && !matches!(rr.verb, Verb::List | Verb::Watch) {
            return Err(ApiError::no_route());
        }
        let output = Output::negotiate(request.header("accept"))?;
        match (rr.verb, rr.subresource) {
            (Verb::Get, _) => self.get(&rr, &request.query, output).await,
            (Verb::List, None) => self.list(&rr, &request.query, output).await,
            (Verb::Watch, None) => self.watch(&rr, &request.query, output).await,
            (Verb::Create, None) => {
                if rr.name.is_some() {
                    return Err(ApiError::method_not_allowed("POST is not allowed on a named object"));
                }
                let options = self.write_options(request)?;
                let (obj, warnings) = self.decode_object(request, served, &options)?;
                let written = self.create(resource, namespace, obj, &options).await?;
                Ok(self.written_reply(served, written, warnings, output, &options)?)
            }
            (Verb::Create, Some(Subresource::Binding)) => {
                let options = self.write_options(request)?;
                let binding = self.decode(request)?;
                let written = self.bind(resource, namespace, name, binding, &options).await?;
                Ok(Reply::json(written.code, &written.body))
            }
            (Verb::Create, Some(Subresource::Eviction)) => {
                let eviction = self.decode(request)?;
                let written = self.evict(resource, namespace, name, eviction).await?;
                Ok(Reply::json(written.code, &written.body))
            }
            (Verb::Update, Some(Subresource::Scale)) => {
                let options = self.write_options(request)?;
                let wanted = self.decode(request)?;
                let written = self.update_scale(resource, namespace, name, &options, |_| Ok(wanted.clone())).await?;
                Ok(Reply::json(200, &written.body))
            }
            (Verb::Patch, Some(Subresource::Scale)) => {
                let options = self.write_options(request)?;
                let patch_type = self.patch_type(request)?;
                let body = request.body.clone();
                let written = self
                    .update_scale(resource, namespace, name, &options, |scale| {
                        gantry_api::patch::apply_patch(patch_type, autoscaling_scale(), scale, &body)
                            .map_err(|e| codec::patch_error(e, resource))
                    })
                    .await?;
                Ok(Reply::json(200, &written.body))
            }
            (Verb::Update, sub @ (None | Some(Subresource::Status))) => {
                let options = self.write_options(request)?;
                let (obj, warnings) = self.decode_object(request, served, &options)?;
                let written = self.update(resource, namespace, name, sub, obj, &options).await?;
                Ok(self.written_reply(served, written, warnings, output, &options)?)
            }
            (Verb::Patch, sub @ (None | Some(Subresource::Status))) => {
                let options = self.write_options(request)?;
                if let Some(apply) = self.apply_options(request)? {
                    let (written, warnings) =
                        self.server_side_apply(served, namespace, name, sub, &request.body, &options, apply).await?;
                    return self.written_reply(served, written, warnings, output, &options);
                }
                let patch_type = self.patch_type(request)?;
                let written = self.patch(served, namespace, name, sub, patch_type, &request.body, &options).await?;
                Ok(self.written_reply(served, written, Vec::new(), output, &options)?)
            }
            (Verb::Update, Some(Subresource::Finalize)) => {
                let options = self.write_options(request)?;
                let obj = self.decode(request)?;
                let written = self.finalize_namespace(name, obj, &options).await?;
                Ok(Reply::json(written.code, &written.body))
            }
            (Verb::Update, Some(_)) | (Verb::Patch, Some(_)) => {
                Err(ApiError::method_not_allowed("this subresource cannot be updated"))
            }
            (Verb::Delete, None) => {
                let options = self.delete_options(request)?;
                let written = self.delete(resource, namespace, name, &options).await?;
                Ok(Reply::json(written.code, &self.to_served_if_object(served, written.body)?))
            }
            (Verb::DeleteCollection, None) => self.delete_collection(request, &rr).await,
            _ => Err(ApiError::method_not_allowed(format!(
                "the server does not allow this method on the requested resource ({} {})",
                request.method, request.path
            ))),
        }
    }

    /// The options of a server-side apply request, or `None` for other patches (which may not say `force`).
    fn apply_options(&self, request: &ApiRequest) -> ApiResult<Option<crate::apply::ApplyOptions>> {
        let media = codec::media_type(request.header("content-type").unwrap_or(""));
        let force = request.query.get("force");
        let patch_options_invalid = |field: &str, reason: &str, message: &str| {
            let mut e = ApiError::bad_request(format!("PatchOptions.meta.k8s.io \"\" is invalid: {field}: {message}"));
            e.code = 422;
            e.reason = "Invalid";
            e.group = Some("meta.k8s.io".into());
            e.kind = Some("PatchOptions".into());
            e.causes.push(Cause { reason: reason.into(), message: message.into(), field: field.into() });
            e
        };
        if media != "application/apply-patch+yaml" {
            if force.is_some() {
                return Err(patch_options_invalid(
                    "force",
                    "FieldValueForbidden",
                    "Forbidden: may not be specified for non-apply patch",
                ));
            }
            return Ok(None);
        }
        if request.query.get("fieldManager").is_none_or(str::is_empty) {
            return Err(patch_options_invalid(
                "fieldManager",
                "FieldValueRequired",
                "Required value: is required for apply patch",
            ));
        }
        let force = match force {
            None | Some("") => false,
            Some("true" | "True" | "TRUE" | "t" | "T" | "1") => true,
            Some("false" | "False" | "FALSE" | "f" | "F" | "0") => false,
            Some(other) => {
                return Err(ApiError::bad_request(format!("force: invalid boolean value {other:?}")));
            }
        };
        Ok(Some(crate::apply::ApplyOptions { force }))
    }

    fn patch_type(&self, request: &ApiRequest) -> ApiResult<gantry_api::patch::PatchType> {
        let content_type = request.header("content-type").unwrap_or("");
        let media = codec::media_type(content_type);
        if media == "application/apply-patch+yaml" || media == "application/apply-patch+cbor" {
            return Err(ApiError::unsupported_media_type(format!(
                "server-side apply ({media}) is not supported on this subresource; use a JSON, merge or strategic \
                 merge patch"
            )));
        }
        gantry_api::patch::PatchType::from_content_type(&media).ok_or_else(|| {
            ApiError::unsupported_media_type(format!(
                "the body of the request was in an unknown format - accepted media types include: \
                 application/json-patch+json, application/merge-patch+json, \
                 application/strategic-merge-patch+json (got {content_type:?})"
            ))
        })
    }

    fn decode_object(
        &self,
        request: &ApiRequest,
        resource: &'static ResourceType,
        options: &WriteOptions,
    ) -> ApiResult<(Value, Vec<String>)> {
        let obj = self.decode(request)?;
        let (obj, unknown) = match self.custom.version(resource) {
            Some(custom) => {
                let mut obj = obj;
                let unknown = custom.schema.as_ref().map(|s| gantry_api::crd::prune_and_default(s, &mut obj));
                (obj, unknown.unwrap_or_default())
            }
            None => self.schemas.prune(resource, obj),
        };
        let obj = self.to_storage(resource, obj)?;
        if unknown.is_empty() {
            return Ok((obj, Vec::new()));
        }
        let messages: Vec<String> = unknown.iter().map(|f| format!("unknown field \"{f}\"")).collect();
        match options.field_validation {
            FieldValidation::Ignore => Ok((obj, Vec::new())),
            FieldValidation::Warn => Ok((obj, messages)),
            FieldValidation::Strict => {
                Err(ApiError::bad_request(format!("strict decoding error: {}", messages.join(", "))))
            }
        }
    }

    fn written_reply(
        &self,
        resource: &'static ResourceType,
        written: crate::objects::Written,
        warnings: Vec<String>,
        output: Output,
        options: &WriteOptions,
    ) -> ApiResult<Reply> {
        let crate::objects::Written { code, body } = written;
        // A dry run's result was never stored: the cache holds the object as it is, not as it would be.
        if output == Output::Json
            && !options.dry_run
            && resource.storage_version
            && let Some(json) = self.cached_json(resource, &body)
        {
            return Ok(Reply::Full { code, content_type: "application/json".into(), body: json, warnings });
        }
        let body = self.to_served(resource, body)?;
        let body = match output {
            Output::Metadata => codec::partial_metadata(&body),
            _ => body,
        };
        Ok(Reply::Full { code, content_type: "application/json".into(), body: codec::to_bytes(&body), warnings })
    }

    /// The cache's serialized copy of a just-written object, when the cache holds exactly that version: writes
    /// wait for the cache anyway, and this saves encoding the reply.
    fn cached_json(&self, resource: &'static ResourceType, body: &Value) -> Option<Bytes> {
        let meta = body.get("metadata")?;
        let revision: i64 = meta.get("resourceVersion")?.as_str()?.parse().ok()?;
        let key = resource.key(meta.get("namespace").and_then(Value::as_str), meta.get("name")?.as_str()?);
        let (entry, _) = self.cache.resource(&resource.key_prefix()).get(&key, self.cache.applied());
        entry.filter(|e| e.revision == revision).map(|e| e.json.clone())
    }

    fn to_served_if_object(&self, resource: &'static ResourceType, body: Value) -> ApiResult<Value> {
        if body["kind"] == "Status" { Ok(body) } else { self.to_served(resource, body) }
    }

    /// Converts a stored object to the version `resource` serves.
    pub fn to_served(&self, resource: &'static ResourceType, obj: Value) -> ApiResult<Value> {
        if resource.custom {
            let mut obj = crate::convert::custom_none(resource, obj)?;
            // Defaults added to a definition after an object was stored apply when it is read, as in
            // kube-apiserver.
            if let Some(custom) = self.custom.version(resource)
                && let Some(schema) = &custom.schema
            {
                gantry_api::crd::prune_and_default(schema, &mut obj);
            }
            return Ok(obj);
        }
        if resource.storage_version {
            return Ok(obj);
        }
        crate::convert::from_storage(resource, obj)
    }

    /// Converts an object sent to `resource`'s version into the stored version.
    pub(crate) fn to_storage(&self, resource: &'static ResourceType, obj: Value) -> ApiResult<Value> {
        if resource.custom {
            let storage = self.registry.storage_type(resource);
            crate::convert::check_api_version(resource, &obj)?;
            return crate::convert::custom_none(storage, obj);
        }
        if resource.storage_version {
            return Ok(obj);
        }
        crate::convert::to_storage(resource, obj)
    }

    fn delete_options(&self, request: &ApiRequest) -> ApiResult<DeleteOptions> {
        let mut options = DeleteOptions::default();
        if !request.body.is_empty() {
            let body = codec::decode_body(request.header("content-type"), &request.body)?;
            options.grace_period = body["gracePeriodSeconds"].as_i64();
            options.propagation = body["propagationPolicy"].as_str().map(str::to_string);
            if options.propagation.is_none() {
                // The older form: orphanDependents true means Orphan.
                match body["orphanDependents"].as_bool() {
                    Some(true) => options.propagation = Some("Orphan".into()),
                    Some(false) => options.propagation = Some("Background".into()),
                    None => {}
                }
            }
            options.uid = body["preconditions"]["uid"].as_str().map(str::to_string);
            options.resource_version = body["preconditions"]["resourceVersion"].as_str().map(str::to_string);
            options.dry_run = body["dryRun"].as_array().is_some_and(|a| a.iter().any(|v| v == "All"));
        }
        if let Some(grace) = request.query.number("gracePeriodSeconds")? {
            options.grace_period = Some(grace);
        }
        if let Some(policy) = request.query.get("propagationPolicy") {
            options.propagation = Some(policy.to_string());
        }
        if request.query.get("dryRun") == Some("All") {
            options.dry_run = true;
        }
        Ok(options)
    }

    async fn delete_collection(self: &Arc<Self>, request: &ApiRequest, rr: &ResourceRequest) -> ApiResult<Reply> {
        let resource = rr.resource;
        let options = self.delete_options(request)?;
        let filter = crate::reads::Filter::from_request(rr, &request.query)?;
        self.cache
            .wait_for(self.store.current_revision().await.unwrap_or(0), std::time::Duration::from_secs(3))
            .await?;
        let cache = self.cache.resource(&resource.key_prefix());
        let snapshot = cache.snapshot(&resource.namespace_prefix(rr.namespace.as_deref()), self.cache.applied());
        let mut deleted = Vec::new();
        for entry in snapshot.objects.iter().filter(|e| filter.matches(&e.value)) {
            match self.delete(resource, entry.namespace.as_deref(), &entry.name, &options).await {
                Ok(written) if written.body["kind"] == "Status" => deleted.push(entry.value.clone()),
                Ok(written) => deleted.push(written.body),
                Err(e) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        let items: Vec<Value> = deleted.into_iter().map(|o| self.to_served(resource, o)).collect::<ApiResult<_>>()?;
        let list = json!({
            "kind": resource.list_kind(),
            "apiVersion": resource.api_version(),
            "metadata": {"resourceVersion": self.cache.revision().to_string()},
            "items": items,
        });
        Ok(Reply::json(200, &list))
    }

    /// Defaults and validates a new object.
    pub(crate) fn admit_create(&self, resource: &'static ResourceType, obj: &mut Value) -> ApiResult<()> {
        if let Some(custom) = self.custom.version(resource) {
            return crate::admission::admit_custom(resource, &custom.definition_object, resource.version, obj, None);
        }
        self.schemas.check_types(resource, obj)?;
        crate::admission::admit_create(resource, obj)
    }

    /// Defaults and validates a changed object against its previous state.
    pub(crate) fn admit_update(&self, resource: &'static ResourceType, obj: &mut Value, old: &Value) -> ApiResult<()> {
        if let Some(custom) = self.custom.version(resource) {
            let version = resource.version;
            return crate::admission::admit_custom(resource, &custom.definition_object, version, obj, Some(old));
        }
        self.schemas.check_types(resource, obj)?;
        crate::admission::admit_update(resource, obj, old)
    }

    /// `POST pods/{name}/eviction`: deletes the pod unless a PodDisruptionBudget forbids it.
    pub async fn evict(
        self: &Arc<Self>,
        pods: &'static ResourceType,
        namespace: Option<&str>,
        name: &str,
        eviction: Value,
    ) -> ApiResult<crate::objects::Written> {
        crate::eviction::evict(self, pods, namespace, name, eviction).await
    }
}

fn autoscaling_scale() -> gantry_api::registry::GroupKind {
    gantry_api::registry::GroupKind { group: "autoscaling", kind: "Scale" }
}

/// A 422 cause for a field.
pub fn cause(reason: &str, field: &str, message: String) -> Cause {
    Cause { reason: reason.into(), message, field: field.into() }
}
