//! The read paths: GET, LIST and WATCH, served from the watch cache with kube-apiserver's resourceVersion
//! semantics; paging at an exact older revision reads the store.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use bytes::{BufMut, Bytes, BytesMut};
use gantry_api::registry::ResourceType;
use gantry_api::selector::{FieldSelector, LabelSelector};
use gantry_store::{ListOptions, Revision, StoreError};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::api::{Api, Reply};
use crate::cache::{Catchup, Entry, EventType};
use crate::codec::{Output, to_bytes};
use crate::objects::{from_stored, parse_resource_version};
use crate::request::{Query, ResourceRequest};
use crate::status::{ApiError, ApiResult};

/// How long a read waits for the cache to reach a requested resourceVersion.
const RESOURCE_VERSION_PATIENCE: Duration = Duration::from_secs(3);
/// Bookmarks are sent about this often to watchers that asked for them.
const BOOKMARK_INTERVAL: Duration = Duration::from_secs(60);

/// What a LIST or WATCH filters by.
pub struct Filter {
    prefix: String,
    labels: Option<LabelSelector>,
    fields: Option<FieldSelector>,
    resource: &'static ResourceType,
}

impl Filter {
    /// Parses the selectors of a request.
    pub fn from_request(request: &ResourceRequest, query: &Query) -> ApiResult<Filter> {
        let resource = request.resource;
        let labels = match query.get("labelSelector") {
            Some(s) => Some(LabelSelector::parse(s).map_err(|e| ApiError::bad_request(e.to_string()))?),
            None => None,
        };
        let fields = match query.get("fieldSelector") {
            Some(s) => {
                let sel = FieldSelector::parse(s).map_err(|e| ApiError::bad_request(e.to_string()))?;
                // Validates, and maps aliases (e.g. events.k8s.io names) to the fields objects expose.
                let sel = gantry_api::selector::convert_field_selector(resource.group_kind(), &sel)
                    .map_err(|e| ApiError::bad_request(e.to_string()))?;
                Some(sel)
            }
            None => None,
        };
        Ok(Filter { prefix: resource.namespace_prefix(request.namespace.as_deref()), labels, fields, resource })
    }

    fn is_empty(&self) -> bool {
        self.labels.is_none() && self.fields.is_none()
    }

    /// Whether an object passes the selectors (the namespace is checked by key prefix).
    pub fn matches(&self, obj: &Value) -> bool {
        if let Some(labels) = &self.labels {
            let empty = serde_json::Map::new();
            let map = obj["metadata"]["labels"].as_object().unwrap_or(&empty);
            if !labels.matches(map) {
                return false;
            }
        }
        if let Some(fields) = &self.fields {
            let set = gantry_api::selector::field_set(self.resource.group_kind(), obj);
            if !fields.matches(&set) {
                return false;
            }
        }
        true
    }

    fn matches_entry(&self, entry: &Entry) -> bool {
        entry.key.starts_with(&self.prefix) && self.matches(&entry.value)
    }
}

/// One item of a list: shared from the cache, read from the store, or the stored bytes themselves (a page
/// without selectors needs no parsing).
enum ListItem {
    Cached(Arc<Entry>),
    Owned(Value),
    Raw(Bytes),
}

impl ListItem {
    fn into_value(self) -> ApiResult<Value> {
        match self {
            ListItem::Cached(entry) => Ok(entry.value.clone()),
            ListItem::Owned(value) => Ok(value),
            ListItem::Raw(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| ApiError::internal(format!("a stored object is not valid JSON: {e}"))),
        }
    }
}

/// A list body assembled from the items' JSON: cheaper than building one large value and serializing it.
fn list_bytes(resource: &ResourceType, list_meta: &Value, items: impl Iterator<Item = Bytes>) -> Bytes {
    let mut out = BytesMut::with_capacity(4096);
    out.put_slice(b"{\"kind\":");
    out.put_slice(&to_bytes(&json!(resource.list_kind())));
    out.put_slice(b",\"apiVersion\":");
    out.put_slice(&to_bytes(&json!(resource.api_version())));
    out.put_slice(b",\"metadata\":");
    out.put_slice(&to_bytes(list_meta));
    out.put_slice(b",\"items\":[");
    for (i, item) in items.enumerate() {
        if i > 0 {
            out.put_u8(b',');
        }
        out.put_slice(&item);
    }
    out.put_slice(b"]}");
    out.freeze()
}

#[derive(serde::Serialize, serde::Deserialize)]
struct ContinueToken {
    rv: Revision,
    start: String,
}

fn encode_continue(rv: Revision, last_key: &str) -> String {
    let token = ContinueToken { rv, start: last_key.to_string() };
    base64::engine::general_purpose::STANDARD.encode(serde_json::to_vec(&token).unwrap_or_default())
}

fn decode_continue(token: &str) -> ApiResult<ContinueToken> {
    base64::engine::general_purpose::STANDARD
        .decode(token)
        .ok()
        .and_then(|raw| serde_json::from_slice(&raw).ok())
        .ok_or_else(|| ApiError::bad_request("invalid continue token: it was not issued by this server"))
}

/// How a read's resourceVersion is to be honoured.
enum ReadAt {
    /// The latest state (a consistent read).
    Latest,
    /// Whatever the cache has.
    Any,
    /// At least this revision.
    NotOlderThan(Revision),
    /// Exactly this revision (read from the store).
    Exact(Revision),
}

fn read_at(query: &Query, has_limit: bool) -> ApiResult<ReadAt> {
    let rv = query.get("resourceVersion");
    let rvm = query.get("resourceVersionMatch");
    match (rv, rvm) {
        (None, None) => Ok(ReadAt::Latest),
        (None, Some(m)) => Err(ApiError::bad_request(format!(
            "resourceVersionMatch is forbidden unless resourceVersion is provided (got {m})"
        ))),
        (Some("0"), None) => Ok(ReadAt::Any),
        (Some(rv), None) => {
            let rev = parse_resource_version(rv)?;
            Ok(if has_limit { ReadAt::Exact(rev) } else { ReadAt::NotOlderThan(rev) })
        }
        (Some(rv), Some("NotOlderThan")) => match parse_resource_version(rv)? {
            0 => Ok(ReadAt::Any),
            rev => Ok(ReadAt::NotOlderThan(rev)),
        },
        (Some(rv), Some("Exact")) => match parse_resource_version(rv)? {
            0 => Err(ApiError::bad_request("resourceVersionMatch \"Exact\" is forbidden for resourceVersion \"0\"")),
            rev => Ok(ReadAt::Exact(rev)),
        },
        (Some(_), Some(other)) => Err(ApiError::bad_request(format!(
            "resourceVersionMatch: Unsupported value: {other:?}: supported values: \"Exact\", \"NotOlderThan\""
        ))),
    }
}

impl Api {
    async fn wait_consistent(&self) -> ApiResult<Revision> {
        let current = self.store.current_revision().await.map_err(|e| match e {
            StoreError::Unavailable { .. } => ApiError::unavailable(format!("the store is unavailable: {e}")),
            other => ApiError::internal(other.to_string()),
        })?;
        self.cache.wait_for(current, RESOURCE_VERSION_PATIENCE).await?;
        Ok(current)
    }

    /// GET of one object.
    pub async fn get(&self, request: &ResourceRequest, query: &Query, output: Output) -> ApiResult<Reply> {
        let resource = request.resource;
        let name = request.name.as_deref().unwrap_or_default();
        let key = resource.key(request.namespace.as_deref(), name);
        let object = match read_at(query, false)? {
            // A GET without resourceVersion reads the store itself, the freshest answer there is.
            ReadAt::Latest | ReadAt::Exact(_) => {
                let kv = self.store.get(key.as_bytes()).await.map_err(|e| ApiError::from_store(e, resource, name))?;
                from_stored(&kv)?
            }
            at => {
                if let ReadAt::NotOlderThan(rev) = at {
                    self.cache.wait_for(rev, RESOURCE_VERSION_PATIENCE).await?;
                }
                let cache = self.cache.resource(&resource.key_prefix());
                let (entry, _) = cache.get(&key, self.cache.applied());
                entry.map(|e| e.value.clone()).ok_or_else(|| ApiError::not_found(resource, name))?
            }
        };
        let object = self.to_served(resource, object)?;
        let body = match (request.subresource, output) {
            (Some(gantry_api::registry::Subresource::Scale), _) => self.scale_of(resource, &object)?,
            (_, Output::Json) => object,
            (_, Output::Metadata) => crate::codec::partial_metadata(&object),
            (_, Output::Table) => {
                let include = query.get("includeObject").unwrap_or("Metadata");
                crate::tables::table(
                    resource,
                    self.custom.version(resource).as_deref(),
                    std::slice::from_ref(&object),
                    include,
                    None,
                    true,
                )?
            }
        };
        Ok(Reply::json(200, &body).with_content_type(output))
    }

    /// LIST.
    pub async fn list(&self, request: &ResourceRequest, query: &Query, output: Output) -> ApiResult<Reply> {
        let resource = request.resource;
        let filter = Filter::from_request(request, query)?;
        let limit = query.number("limit")?.filter(|l| *l > 0).map(|l| l as usize);
        let (items, revision, continue_token, remaining): (Vec<ListItem>, Revision, Option<String>, Option<usize>) =
            if let Some(token) = query.get("continue") {
                let token = decode_continue(token)?;
                self.list_from_store(&filter, token.rv, Some(token.start), limit).await?
            } else {
                match read_at(query, limit.is_some())? {
                    ReadAt::Exact(rev) => self.list_from_store(&filter, rev, None, limit).await?,
                    at => {
                        match at {
                            ReadAt::Latest => {
                                self.wait_consistent().await?;
                            }
                            ReadAt::NotOlderThan(rev) => self.cache.wait_for(rev, RESOURCE_VERSION_PATIENCE).await?,
                            _ => {}
                        }
                        let cache = self.cache.resource(&resource.key_prefix());
                        let snapshot = cache.snapshot(&filter.prefix, self.cache.applied());
                        let mut items = Vec::new();
                        let mut last_key = None;
                        let mut more = false;
                        for entry in &snapshot.objects {
                            if !filter.matches(&entry.value) {
                                continue;
                            }
                            if limit.is_some_and(|l| items.len() >= l) {
                                more = true;
                                break;
                            }
                            items.push(ListItem::Cached(Arc::clone(entry)));
                            last_key = Some(entry.key.clone());
                        }
                        let (token, remaining) = match (more, last_key) {
                            (true, Some(last)) => {
                                let remaining =
                                    filter.is_empty().then(|| snapshot.objects.iter().filter(|e| e.key > last).count());
                                (Some(encode_continue(snapshot.revision, &last)), remaining)
                            }
                            _ => (None, None),
                        };
                        (items, snapshot.revision, token, remaining)
                    }
                }
            };
        let mut list_meta = json!({"resourceVersion": revision.to_string()});
        if let Some(token) = &continue_token {
            list_meta["continue"] = json!(token);
        }
        if let Some(remaining) = remaining {
            list_meta["remainingItemCount"] = json!(remaining);
        }
        // The common case (JSON of the stored version) copies each cached object's bytes; everything else
        // works on values.
        if output != Output::Json || !resource.storage_version {
            let items: Vec<Value> =
                items.into_iter().map(|item| self.to_served(resource, item.into_value()?)).collect::<ApiResult<_>>()?;
            return match output {
                Output::Table => {
                    let include = query.get("includeObject").unwrap_or("Metadata");
                    let table = crate::tables::table(
                        resource,
                        self.custom.version(resource).as_deref(),
                        &items,
                        include,
                        Some(list_meta),
                        true,
                    )?;
                    Ok(Reply::json(200, &table).with_content_type(output))
                }
                Output::Metadata => {
                    let items: Vec<Value> = items.iter().map(crate::codec::partial_metadata).collect();
                    let body = json!({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1",
                                      "metadata": list_meta, "items": items});
                    Ok(Reply::json(200, &body).with_content_type(output))
                }
                Output::Json => Ok(Reply::Full {
                    code: 200,
                    content_type: "application/json".into(),
                    body: list_bytes(resource, &list_meta, items.iter().map(to_bytes)),
                    warnings: vec![],
                }),
            };
        }
        let body = list_bytes(
            resource,
            &list_meta,
            items.iter().map(|item| match item {
                ListItem::Cached(entry) => entry.json.clone(),
                ListItem::Owned(value) => to_bytes(value),
                ListItem::Raw(bytes) => bytes.clone(),
            }),
        );
        Ok(Reply::Full { code: 200, content_type: "application/json".into(), body, warnings: vec![] })
    }
    /// A page read from the store at an exact revision, filtered, up to `limit` matching items.
    async fn list_from_store(
        &self,
        filter: &Filter,
        revision: Revision,
        start_after: Option<String>,
        limit: Option<usize>,
    ) -> ApiResult<(Vec<ListItem>, Revision, Option<String>, Option<usize>)> {
        let mut items = Vec::new();
        let mut continue_from = start_after.map(|k| {
            let mut next = k.into_bytes();
            next.push(0);
            Bytes::from(next)
        });
        let page_size = limit.map(|l| l.max(100)).unwrap_or(1_000);
        loop {
            let options = ListOptions { revision: Some(revision), limit: Some(page_size), continue_from };
            let page = self.store.list(filter.prefix.as_bytes(), options).await.map_err(|e| match e {
                StoreError::Compacted { .. } => ApiError::expired(
                    "The provided continue parameter is too old to display a consistent list result. You can start \
                     a new list without the continue parameter, or use the continue token in this response to \
                     retrieve the remainder of the results. Continuing with the provided token results in an \
                     inconsistent list - objects that were created, modified, or deleted between the time the \
                     first chunk was returned and now may show up in the list.",
                ),
                other => ApiError::from_store(other, filter.resource, ""),
            })?;
            let mut last_key = None;
            for kv in &page.items {
                last_key = Some(String::from_utf8_lossy(&kv.key).into_owned());
                let raw = if filter.is_empty() {
                    crate::cache::splice_resource_version(&kv.value, kv.mod_revision)
                } else {
                    None
                };
                match raw {
                    Some(bytes) => items.push(ListItem::Raw(bytes)),
                    None => {
                        let obj = from_stored(kv)?;
                        if !filter.matches(&obj) {
                            continue;
                        }
                        items.push(ListItem::Owned(obj));
                    }
                }
                if limit.is_some_and(|l| items.len() >= l) {
                    let last = last_key.unwrap_or_default();
                    let more_in_page = kv.key != page.items.last().map(|k| k.key.clone()).unwrap_or_default();
                    if more_in_page || page.continue_from.is_some() {
                        return Ok((items, revision, Some(encode_continue(revision, &last)), None));
                    }
                    return Ok((items, revision, None, None));
                }
            }
            match page.continue_from {
                Some(next) if last_key.is_some() => continue_from = Some(next),
                _ => return Ok((items, revision, None, None)),
            }
        }
    }

    /// WATCH: a chunked stream of newline-delimited JSON events.
    pub async fn watch(self: &Arc<Self>, request: &ResourceRequest, query: &Query, output: Output) -> ApiResult<Reply> {
        let resource = request.resource;
        let filter = Filter::from_request(request, query)?;
        let send_initial = query.get("sendInitialEvents").map(|v| v == "true");
        let rvm = query.get("resourceVersionMatch");
        if send_initial.is_some() && rvm != Some("NotOlderThan") {
            return Err(self.invalid_list_options(
                "resourceVersionMatch",
                "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
            ));
        }
        if send_initial.is_some() && !query.flag("allowWatchBookmarks") {
            return Err(self.invalid_list_options(
                "allowWatchBookmarks",
                "sendInitialEvents requires setting allowWatchBookmarks to true",
            ));
        }
        if send_initial.is_none() && rvm.is_some() {
            return Err(self.invalid_list_options(
                "resourceVersionMatch",
                "resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided",
            ));
        }
        let bookmarks = query.flag("allowWatchBookmarks");
        let timeout = match query.number("timeoutSeconds")? {
            Some(t) => Duration::from_secs(t as u64),
            None => Duration::from_secs(1800 + u64::from(uuid::Uuid::new_v4().as_bytes()[0]) * 7),
        };
        let rv = query.get("resourceVersion");
        let cache = self.cache.resource(&resource.key_prefix());
        // Where the stream starts: with the current state as ADDED events, or after a given revision.
        let (initial, cursor, generation, initial_end) = match (send_initial, rv) {
            (Some(true), rv) => {
                match rv.map(parse_resource_version).transpose()? {
                    None | Some(0) if rv.is_none() => {
                        self.wait_consistent().await?;
                    }
                    Some(rev) if rev > 0 => self.cache.wait_for(rev, RESOURCE_VERSION_PATIENCE).await?,
                    _ => {}
                }
                let (snapshot, generation) = cache.snapshot_for_watch(&filter.prefix, self.cache.applied());
                (snapshot.objects, snapshot.revision, generation, true)
            }
            (Some(false), Some(rv)) | (None, Some(rv)) if rv != "0" => {
                let rev = parse_resource_version(rv)?;
                self.cache.wait_for(rev, RESOURCE_VERSION_PATIENCE).await?;
                (Vec::new(), rev, cache.generation(), false)
            }
            (Some(false), _) => {
                let (snapshot, generation) = cache.snapshot_for_watch(&filter.prefix, self.cache.applied());
                (Vec::new(), snapshot.revision, generation, false)
            }
            _ => {
                let (snapshot, generation) = cache.snapshot_for_watch(&filter.prefix, self.cache.applied());
                (snapshot.objects, snapshot.revision, generation, false)
            }
        };
        let (tx, rx) = mpsc::channel::<Bytes>(256);
        let api = Arc::clone(self);
        let mut changed = cache.subscribe();
        let shutdown = self.shutdown.clone();
        let mut encoder = EventEncoder { api: Arc::clone(&api), resource, output, sent_header: false };
        tokio::spawn(async move {
            let deadline = tokio::time::sleep(timeout);
            tokio::pin!(deadline);
            let mut bookmark_timer = tokio::time::interval(BOOKMARK_INTERVAL);
            bookmark_timer.tick().await;
            for entry in initial.iter().filter(|e| filter.matches_entry(e)) {
                if tx.send(encoder.entry_event("ADDED", entry)).await.is_err() {
                    return;
                }
            }
            if initial_end && bookmarks {
                let mark = encoder.bookmark(cursor, true);
                if tx.send(mark).await.is_err() {
                    return;
                }
            }
            let mut cursor = cursor;
            loop {
                changed.borrow_and_update();
                match cache.events_after(cursor, generation, api.cache.applied()) {
                    Catchup::Events(events, now) => {
                        for event in events {
                            if !event.object.key.starts_with(&filter.prefix) {
                                continue;
                            }
                            let now_matches = event.kind != EventType::Deleted && filter.matches(&event.object.value);
                            let was_matching = event.prev.as_ref().is_some_and(|p| filter.matches(&p.value));
                            let kind = match (event.kind, was_matching, now_matches) {
                                (EventType::Deleted, true, _) => "DELETED",
                                (EventType::Deleted, false, _) => continue,
                                (_, false, true) => "ADDED",
                                (_, true, true) => "MODIFIED",
                                // It stopped matching: to this watcher it is gone.
                                (_, true, false) => "DELETED",
                                (_, false, false) => continue,
                            };
                            if tx.send(encoder.entry_event(kind, &event.object)).await.is_err() {
                                return;
                            }
                        }
                        cursor = now;
                    }
                    Catchup::TooOld { oldest } => {
                        let status = ApiError::expired(format!("too old resource version: {cursor} ({oldest})"));
                        let line = encoder.error(&status);
                        let _ = tx.send(line).await;
                        return;
                    }
                    Catchup::Restarted => return,
                }
                tokio::select! {
                    _ = &mut deadline => return,
                    _ = shutdown.cancelled() => return,
                    _ = tx.closed() => return,
                    _ = bookmark_timer.tick(), if bookmarks => {
                        if tx.send(encoder.bookmark(cursor, false)).await.is_err() {
                            return;
                        }
                    }
                    result = changed.changed() => if result.is_err() { return },
                }
            }
        });
        let content_type = match output {
            Output::Table => "application/json;as=Table;v=v1;g=meta.k8s.io".to_string(),
            _ => "application/json".to_string(),
        };
        Ok(Reply::Stream { content_type, rx })
    }

    fn invalid_list_options(&self, field: &str, message: &str) -> ApiError {
        let mut e =
            ApiError::bad_request(format!("ListOptions.meta.k8s.io \"\" is invalid: {field}: Forbidden: {message}"));
        e.code = 422;
        e.reason = "Invalid";
        e.kind = Some("ListOptions".into());
        e.group = Some("meta.k8s.io".into());
        e.causes.push(crate::status::Cause {
            reason: "FieldValueForbidden".into(),
            message: format!("Forbidden: {message}"),
            field: field.into(),
        });
        e
    }
}

/// Turns cache events into watch-stream lines in the negotiated output.
struct EventEncoder {
    api: Arc<Api>,
    resource: &'static ResourceType,
    output: Output,
    sent_header: bool,
}

impl EventEncoder {
    fn line(value: &Value) -> Bytes {
        let mut bytes = serde_json::to_vec(value).unwrap_or_default();
        bytes.push(b'\n');
        Bytes::from(bytes)
    }

    /// An event for a cached object: its bytes are reused when the stored version is what the watcher wants,
    /// so one change fans out to many watchers without re-serializing it for each.
    fn entry_event(&mut self, kind: &str, entry: &Entry) -> Bytes {
        if self.output != Output::Json || !self.resource.storage_version {
            return self.event(kind, &entry.value);
        }
        let mut out = BytesMut::with_capacity(entry.json.len() + 32);
        out.put_slice(b"{\"type\":\"");
        out.put_slice(kind.as_bytes());
        out.put_slice(b"\",\"object\":");
        out.put_slice(&entry.json);
        out.put_slice(b"}\n");
        out.freeze()
    }

    fn event(&mut self, kind: &str, object: &Value) -> Bytes {
        let served = match self.api.to_served(self.resource, object.clone()) {
            Ok(o) => o,
            Err(e) => return self.error(&e),
        };
        let object = match self.output {
            Output::Json => served,
            Output::Metadata => crate::codec::partial_metadata(&served),
            Output::Table => {
                let with_header = !self.sent_header;
                self.sent_header = true;
                match crate::tables::table(
                    self.resource,
                    self.api.custom.version(self.resource).as_deref(),
                    std::slice::from_ref(&served),
                    "Metadata",
                    None,
                    with_header,
                ) {
                    Ok(t) => t,
                    Err(e) => return self.error(&e),
                }
            }
        };
        Self::line(&json!({"type": kind, "object": object}))
    }

    fn bookmark(&self, revision: Revision, initial_events_end: bool) -> Bytes {
        let mut meta = json!({"resourceVersion": revision.to_string()});
        if initial_events_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let (api_version, kind) = match self.output {
            Output::Json => (self.resource.api_version(), self.resource.kind.to_string()),
            Output::Metadata => ("meta.k8s.io/v1".to_string(), "PartialObjectMetadata".to_string()),
            Output::Table => ("meta.k8s.io/v1".to_string(), "Table".to_string()),
        };
        Self::line(&json!({"type": "BOOKMARK", "object": {"kind": kind, "apiVersion": api_version, "metadata": meta}}))
    }

    fn error(&self, status: &ApiError) -> Bytes {
        Self::line(&json!({"type": "ERROR", "object": status.to_status()}))
    }
}
