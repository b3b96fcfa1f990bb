//! The OpenAPI v3 documents Gantry serves under `/openapi/v3`, shaped like kube-apiserver's.
//!
//! `GET /openapi/v3` answers with an index naming one document per path (`api/v1`, `apis/apps/v1`, `apis`,
//! ...), each with a `serverRelativeURL` that carries the hash of the document's bytes. Clients fetch the
//! URL exactly as given and cache the answer by that hash.
//!
//! What clients need from the documents:
//! - `kubectl apply`, `create -f`, `replace` and `helm install` (strict validation by default) look, in the
//!   document of the object's group-version, for a `patch` operation carrying the object's
//!   `x-kubernetes-group-version-kind` and a `fieldValidation` query parameter; finding it they leave
//!   validation to the server (`fieldValidation=Strict`). Without it they fail with "failed to download
//!   openapi".
//! - Client-side `kubectl apply` computes its strategic merge patch from the kind's schema in
//!   `components.schemas`, using `x-kubernetes-patch-merge-key`/`-strategy`; a list without them is replaced
//!   whole.
//! - `kubectl explain` walks `components.schemas` from the schema carrying the kind's GVK.
//!
//! Documents are built from the [`Registry`] and the typed schemas of `k8s-openapi`. Building all of them
//! (about 2 MB of JSON for the built-in kinds) takes tens of milliseconds, so the server builds an
//! [`OpenApiV3`] once at start and serves its bytes; the same registry always yields the same bytes and
//! hashes, so client caches survive restarts.
//!
//! Not served: the deprecated `/watch/` paths, `pods/log`, `exec`, `attach`, `portforward` and `proxy`
//! (they are not in the registry), and the `default` values kube-apiserver writes beside some fields.

mod custom;
mod markers;
mod paths;
mod schemas;

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::registry::Registry;

use schemas::Components;

pub use custom::{custom_resource_document, custom_resource_documents, custom_resource_schema};

/// `info.version` of every document: the Kubernetes release whose API Gantry serves.
pub const KUBERNETES_VERSION: &str = "v1.35.0";

/// One document, serialized once, with the hash that names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Document {
    path: String,
    bytes: Vec<u8>,
    hash: String,
}

/// What to answer a request for a document, given the `hash` query parameter it carried.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CachePolicy {
    /// The request named the current hash: the answer never changes, so send
    /// `Cache-Control: public, immutable` and an `Expires` a year ahead, with the `ETag`.
    Immutable,
    /// No hash was given: send the `ETag` only, so clients revalidate.
    Revalidate,
    /// The request named an older hash: answer `301 Moved Permanently` to this URL, as kube-apiserver does.
    MovedTo(String),
}

impl Document {
    fn new(path: String, value: &Value) -> Document {
        // `Value`'s `Display` writes compact JSON and cannot fail for a `Value`.
        let bytes = value.to_string().into_bytes();
        let hash = stable_hash(&bytes);
        Document { path, bytes, hash }
    }

    /// The path under `/openapi/v3/`, e.g. `apis/apps/v1`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The JSON bytes to send (`Content-Type: application/json`).
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The hash of [`Self::bytes`]: uppercase hex, stable across builds and processes.
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// The value of the `ETag` header: the hash, quoted.
    pub fn etag(&self) -> String {
        format!("\"{}\"", self.hash)
    }

    /// The URL the index gives for this document: `/openapi/v3/apis/apps/v1?hash=<HASH>`.
    pub fn server_relative_url(&self) -> String {
        format!("/openapi/v3/{}?hash={}", self.path, self.hash)
    }

    /// How to answer a request that carried `hash` (`None`: no `hash` parameter, or an empty one).
    pub fn cache_policy(&self, requested_hash: Option<&str>) -> CachePolicy {
        match requested_hash {
            None | Some("") => CachePolicy::Revalidate,
            Some(hash) if hash == self.hash => CachePolicy::Immutable,
            Some(_) => CachePolicy::MovedTo(self.server_relative_url()),
        }
    }
}

/// Every document of `/openapi/v3`, built once from a registry.
#[derive(Clone, Debug)]
pub struct OpenApiV3 {
    documents: BTreeMap<String, Document>,
    index: Document,
}

impl OpenApiV3 {
    /// Builds the index and every document for the built-in resources of `registry`. Custom resources are
    /// described by their definitions' schemas and added with [`OpenApiV3::with_documents`].
    pub fn build(registry: &Registry) -> OpenApiV3 {
        let registry = &registry.without_custom();
        let documents: BTreeMap<String, Document> = document_paths(registry)
            .into_iter()
            .filter_map(|path| {
                let value = build_document(registry, &path)?;
                Some((path.clone(), Document::new(path, &value)))
            })
            .collect();
        OpenApiV3::indexed(documents)
    }

    fn indexed(documents: BTreeMap<String, Document>) -> OpenApiV3 {
        let mut paths = Map::new();
        for (path, document) in &documents {
            paths.insert(path.clone(), json!({"serverRelativeURL": document.server_relative_url()}));
        }
        let index = Document::new(String::new(), &json!({"paths": paths}));
        OpenApiV3 { documents, index }
    }

    /// These documents plus `extra` (path under `/openapi/v3/` and document, e.g. the group-version
    /// documents of custom resources), with a new index. An extra document at a path already served
    /// replaces it.
    pub fn with_documents(&self, extra: impl IntoIterator<Item = (String, Value)>) -> OpenApiV3 {
        let mut documents = self.documents.clone();
        for (path, value) in extra {
            let path = path.trim_matches('/').to_string();
            documents.insert(path.clone(), Document::new(path, &value));
        }
        OpenApiV3::indexed(documents)
    }

    /// The index served at `/openapi/v3`. Its hash serves as its `ETag`; its path is empty.
    pub fn index(&self) -> &Document {
        &self.index
    }

    /// The document served at `/openapi/v3/{path}`, e.g. `apis/apps/v1`. Leading and trailing slashes in
    /// `path` are ignored.
    pub fn document(&self, path: &str) -> Option<&Document> {
        self.documents.get(path.trim_matches('/'))
    }

    /// The document of one group-version (`""` for the core group).
    pub fn group_version(&self, group: &str, version: &str) -> Option<&Document> {
        self.documents.get(&gv_path(group, version))
    }

    /// Every served document, by path.
    pub fn documents(&self) -> impl Iterator<Item = &Document> {
        self.documents.values()
    }
}

/// The index of `/openapi/v3` for `registry`: `{"paths": {"api/v1": {"serverRelativeURL": ...}, ...}}`.
///
/// This builds every document to hash it; a server should build an [`OpenApiV3`] once instead.
pub fn index(registry: &Registry) -> Value {
    let built = OpenApiV3::build(registry);
    let mut paths = Map::new();
    for document in built.documents() {
        paths.insert(document.path().to_string(), json!({"serverRelativeURL": document.server_relative_url()}));
    }
    json!({"paths": paths})
}

/// The document of one served group-version (`""` for the core group), or `None` if nothing is served there.
pub fn group_version_document(registry: &Registry, group: &str, version: &str) -> Option<Value> {
    build_document(registry, &gv_path(group, version))
}

/// The component schemas of one kind, as its group-version's document would carry them: the name of the
/// kind's schema and every schema it references. Kinds `k8s-openapi` does not describe get an open schema
/// (`x-kubernetes-preserve-unknown-fields`). Server-side apply reads list and map semantics from these.
pub fn kind_components(group: &str, version: &str, kind: &str) -> (String, Map<String, Value>) {
    let mut components = Components::new(Vec::new());
    let name = components.kind(schemas::Gvk { group, version, kind });
    (name, components.finish())
}

/// `api/v1` or `apis/apps/v1`.
fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() { format!("api/{version}") } else { format!("apis/{group}/{version}") }
}

/// Every document path served for `registry`, as kube-apiserver lists them: the discovery roots, each
/// group, each group-version, and the version endpoint.
fn document_paths(registry: &Registry) -> Vec<String> {
    let mut paths = vec!["api".to_string(), "apis".to_string(), "version".to_string()];
    for group in registry.groups() {
        if !group.name.is_empty() {
            paths.push(format!("apis/{}", group.name));
        }
        for version in &group.versions {
            paths.push(gv_path(group.name, version));
        }
    }
    paths
}

fn served_group_versions(registry: &Registry) -> Vec<(String, String)> {
    let mut served = Vec::new();
    for group in registry.groups() {
        for version in group.versions {
            served.push((group.name.to_string(), version.to_string()));
        }
    }
    served
}

/// Builds the document at `path` (one of [`document_paths`]), or `None` for a path that names nothing.
fn build_document(registry: &Registry, path: &str) -> Option<Value> {
    let mut components = Components::new(served_group_versions(registry));
    let mut paths = Map::new();
    let segments: Vec<&str> = path.split('/').collect();
    match segments.as_slice() {
        ["api"] | ["apis"] | ["version"] => paths::add_root(&mut paths, &mut components, segments[0]),
        ["api", version] => add_group_version(registry, &mut paths, &mut components, "", version)?,
        ["apis", group] => {
            registry.groups().iter().find(|g| g.name == *group && !g.name.is_empty())?;
            paths::add_group(&mut paths, &mut components, group);
        }
        ["apis", group, version] if !group.is_empty() => {
            add_group_version(registry, &mut paths, &mut components, group, version)?
        }
        _ => return None,
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": KUBERNETES_VERSION},
        "paths": paths,
        "components": {"schemas": components.finish()},
    }))
}

fn add_group_version(
    registry: &Registry,
    paths: &mut Map<String, Value>,
    components: &mut Components,
    group: &str,
    version: &str,
) -> Option<()> {
    let mut any = false;
    for resource in registry.in_group_version(group, version) {
        paths::add_resource(paths, components, resource.into());
        any = true;
    }
    if !any {
        return None;
    }
    paths::add_resource_list(paths, components, group, version);
    Some(())
}

/// Two FNV-1a lanes over the bytes (the second with another offset basis and each byte rotated), printed
/// as 32 uppercase hex digits. It only names a cache entry, so it must be stable and change when the bytes
/// do; it need not resist an adversary, and 128 bits make an accidental collision negligible.
fn stable_hash(bytes: &[u8]) -> String {
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut first: u64 = 0xcbf2_9ce4_8422_2325;
    let mut second: u64 = 0x6c62_272e_07bb_0142;
    for &b in bytes {
        first = (first ^ u64::from(b)).wrapping_mul(PRIME);
        second = (second ^ u64::from(b.rotate_left(3))).wrapping_mul(PRIME);
    }
    second ^= bytes.len() as u64;
    format!("{first:016X}{second:016X}")
}

#[cfg(test)]
mod tests;
