//! ControllerRevisions: the history of a DaemonSet's or StatefulSet's pod templates, as kube-controller-manager
//! keeps it, so that `kubectl rollout history` lists it and `kubectl rollout undo` patches an old template
//! back.
//!
//! A revision holds a patch of its owner (`{"spec":{"template":{…,"$patch":"replace"}}}`), a revision number
//! (the owner's newest template has the highest), and is named `<owner>-<hash>`. Two templates whose names
//! collide are told apart by the owner's `status.collisionCount`, which feeds the hash.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;

/// The label on revisions (and on the pods made from them) naming the revision's hash.
pub const CONTROLLER_REVISION_HASH: &str = "controller-revision-hash";

/// Revisions kept by default besides the ones in use (`spec.revisionHistoryLimit`).
pub const DEFAULT_HISTORY_LIMIT: i32 = 10;

/// Creating a revision gives up after this many name collisions in a row.
const MAX_COLLISIONS: i32 = 100;

/// What can fail while keeping history.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// An API call failed.
    #[error("{what} ControllerRevision {namespace}/{name}: {source}")]
    Api {
        /// The call (`creating`, `reading`, `updating`, `deleting`).
        what: &'static str,
        /// The revision's namespace.
        namespace: String,
        /// The revision's name.
        name: String,
        /// The cause.
        #[source]
        source: kube::Error,
    },
    /// Every name tried was taken by a revision with other data.
    #[error("ControllerRevision {namespace}/{name}: gave up after {MAX_COLLISIONS} hash collisions")]
    Collisions {
        /// The namespace.
        namespace: String,
        /// The last name tried.
        name: String,
    },
}

/// kube's object hash: FNV-1a (32 bits) over `bytes` and the collision count, its decimal form spelled in a
/// vowel-free alphabet (so that it never reads as a word). The pod-template-hash of ReplicaSets is the same
/// function over the template.
pub fn hash_bytes(bytes: &[u8], collision_count: Option<i32>) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut hash: u32 = 2_166_136_261;
    let mut feed = |bytes: &[u8]| {
        for b in bytes {
            hash ^= u32::from(*b);
            hash = hash.wrapping_mul(16_777_619);
        }
    };
    feed(bytes);
    if let Some(count) = collision_count {
        let mut counted = [0u8; 8];
        counted[..4].copy_from_slice(&(count as u32).to_le_bytes());
        feed(&counted);
    }
    hash.to_string().bytes().map(|b| ALPHABET[usize::from(b) % ALPHABET.len()] as char).collect()
}

/// A revision's name: the owner's name (cut to leave room, as kube does) and the hash.
pub fn revision_name(owner: &str, hash: &str) -> String {
    let prefix: String = owner.chars().take(223).collect();
    format!("{prefix}-{hash}")
}

/// The patch a revision stores for an owner's pod template: applied to the owner with a strategic merge
/// patch, it puts the template back whole.
pub fn template_patch(template: &serde_json::Value) -> serde_json::Value {
    let mut template = template.clone();
    if let Some(object) = template.as_object_mut() {
        object.insert("$patch".into(), json!("replace"));
    }
    json!({"spec": {"template": template}})
}

/// The data of a revision recording a DaemonSet's or StatefulSet's pod template: [`template_patch`] of the
/// template written as kube's Go types (1.35) write it, with the fields they always emit (`metadata`, every
/// container's `resources`), so that the bytes equal those kubectl computes from the owner to tell whether
/// `rollout undo` would change anything.
pub fn pod_template_data(template: Option<&PodTemplateSpec>) -> serde_json::Value {
    let mut template = serde_json::to_value(template).unwrap_or(serde_json::Value::Null);
    if let serde_json::Value::Object(object) = &mut template {
        object.entry("metadata").or_insert_with(|| json!({}));
        if let Some(serde_json::Value::Object(spec)) = object.get_mut("spec") {
            for list in ["initContainers", "containers", "ephemeralContainers"] {
                for container in spec.get_mut(list).and_then(serde_json::Value::as_array_mut).into_iter().flatten() {
                    if let serde_json::Value::Object(container) = container {
                        container.entry("resources").or_insert_with(|| json!({}));
                    }
                }
            }
        }
    } else {
        template = json!({});
    }
    template_patch(&template)
}

/// A revision's data as JSON (`null` when it has none).
pub fn data_of(revision: &ControllerRevision) -> &serde_json::Value {
    static NULL: serde_json::Value = serde_json::Value::Null;
    revision.data.as_ref().map(|d| &d.0).unwrap_or(&NULL)
}

/// Whether two revisions hold the same data.
pub fn same_data(a: &ControllerRevision, b: &ControllerRevision) -> bool {
    data_of(a) == data_of(b)
}

/// Revisions oldest first: by revision number, then creation time, then name (kube's order).
pub fn sort(revisions: &mut [Arc<ControllerRevision>]) {
    revisions.sort_by(|a, b| {
        a.revision
            .cmp(&b.revision)
            .then_with(|| {
                let time = |r: &ControllerRevision| r.metadata.creation_timestamp.as_ref().map(|t| t.0);
                time(a).cmp(&time(b))
            })
            .then_with(|| a.metadata.name.cmp(&b.metadata.name))
    });
}

/// The number the next revision gets: one more than the newest.
pub fn next_revision(revisions: &[Arc<ControllerRevision>]) -> i64 {
    revisions.iter().map(|r| r.revision).max().unwrap_or(0) + 1
}

/// A new revision of an owner, not yet stored: `data` under the owner's name and the hash of `data` and the
/// collision count; `labels` (usually the template's) get the hash label.
pub fn new_revision(
    owner: &ObjectMeta,
    reference: OwnerReference,
    mut labels: BTreeMap<String, String>,
    data: serde_json::Value,
    revision: i64,
    collision_count: Option<i32>,
) -> ControllerRevision {
    let hash = hash_bytes(serde_json::to_string(&data).unwrap_or_default().as_bytes(), collision_count);
    labels.insert(CONTROLLER_REVISION_HASH.into(), hash.clone());
    ControllerRevision {
        metadata: ObjectMeta {
            name: Some(revision_name(owner.name.as_deref().unwrap_or(""), &hash)),
            namespace: owner.namespace.clone(),
            labels: Some(labels),
            owner_references: Some(vec![reference]),
            ..ObjectMeta::default()
        },
        data: Some(RawExtension(data)),
        revision,
    }
}

fn api_error(what: &'static str, revision: &ControllerRevision, source: kube::Error) -> HistoryError {
    HistoryError::Api {
        what,
        namespace: revision.metadata.namespace.clone().unwrap_or_default(),
        name: revision.metadata.name.clone().unwrap_or_default(),
        source,
    }
}

/// Stores a revision made by [`new_revision`]. If its name is taken by a revision with the same data and owner,
/// that one is returned; if by other data, `collision_count` goes up and the name is computed again (the
/// owner must then record the new count in its status, as kube's controllers do).
pub async fn create_revision(
    client: &Client,
    revision: ControllerRevision,
    collision_count: &mut i32,
) -> Result<ControllerRevision, HistoryError> {
    let namespace = revision.metadata.namespace.clone().unwrap_or_default();
    let api: Api<ControllerRevision> = Api::namespaced(client.clone(), &namespace);
    let owner_name = revision.metadata.owner_references.iter().flatten().next().map(|r| r.name.clone());
    let owner_uid = revision.metadata.owner_references.iter().flatten().next().map(|r| r.uid.clone());
    let mut candidate = revision;
    for _ in 0..MAX_COLLISIONS {
        let hash = hash_bytes(
            serde_json::to_string(data_of(&candidate)).unwrap_or_default().as_bytes(),
            Some(*collision_count).filter(|c| *c != 0),
        );
        let name = revision_name(owner_name.as_deref().unwrap_or(""), &hash);
        candidate.metadata.name = Some(name.clone());
        candidate.metadata.labels.get_or_insert_with(BTreeMap::new).insert(CONTROLLER_REVISION_HASH.into(), hash);
        match api.create(&PostParams::default(), &candidate).await {
            Ok(created) => return Ok(created),
            Err(kube::Error::Api(e)) if e.code == 409 => {
                let existing = api.get_opt(&name).await.map_err(|source| api_error("reading", &candidate, source))?;
                if let Some(existing) = existing {
                    let same_owner =
                        crate::pods::controller_ref(&existing.metadata).map(|r| r.uid.clone()) == owner_uid;
                    if same_owner && same_data(&existing, &candidate) {
                        return Ok(existing);
                    }
                }
                *collision_count = collision_count.saturating_add(1);
            }
            Err(source) => return Err(api_error("creating", &candidate, source)),
        }
    }
    Err(HistoryError::Collisions { namespace, name: candidate.metadata.name.unwrap_or_default() })
}

/// Gives a stored revision a new number (an old template came back: it becomes the newest again).
pub async fn renumber(
    client: &Client,
    revision: &ControllerRevision,
    number: i64,
) -> Result<ControllerRevision, HistoryError> {
    if revision.revision == number {
        return Ok(revision.clone());
    }
    let namespace = revision.metadata.namespace.as_deref().unwrap_or("");
    let name = revision.metadata.name.as_deref().unwrap_or("");
    let api: Api<ControllerRevision> = Api::namespaced(client.clone(), namespace);
    api.patch(name, &PatchParams::default(), &Patch::Merge(json!({"revision": number})))
        .await
        .map_err(|source| api_error("updating", revision, source))
}

/// Deletes the oldest revisions not in `live` (names of revisions pods still run) beyond `limit` of them.
/// `revisions` must be sorted oldest first ([`sort`]).
pub async fn truncate(
    client: &Client,
    revisions: &[Arc<ControllerRevision>],
    live: &HashSet<String>,
    limit: i32,
) -> Result<(), HistoryError> {
    let unused: Vec<&Arc<ControllerRevision>> =
        revisions.iter().filter(|r| !live.contains(r.metadata.name.as_deref().unwrap_or(""))).collect();
    let excess = unused.len().saturating_sub(usize::try_from(limit.max(0)).unwrap_or(0));
    for revision in unused.into_iter().take(excess) {
        let namespace = revision.metadata.namespace.as_deref().unwrap_or("");
        let name = revision.metadata.name.as_deref().unwrap_or("");
        let api: Api<ControllerRevision> = Api::namespaced(client.clone(), namespace);
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(source) => return Err(api_error("deleting", revision, source)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn revision(name: &str, number: i64, data: serde_json::Value) -> Arc<ControllerRevision> {
        Arc::new(ControllerRevision {
            metadata: ObjectMeta { name: Some(name.into()), ..ObjectMeta::default() },
            data: Some(RawExtension(data)),
            revision: number,
        })
    }

    #[test]
    fn the_hash_changes_with_the_data_and_the_collision_count_and_has_no_vowels() {
        let a = hash_bytes(b"{\"a\":1}", None);
        assert_ne!(a, hash_bytes(b"{\"a\":2}", None));
        assert_ne!(a, hash_bytes(b"{\"a\":1}", Some(1)));
        assert_eq!(a, hash_bytes(b"{\"a\":1}", None));
        assert!(a.chars().all(|c| !"aeiou013".contains(c)), "{a}");
    }

    #[test]
    fn names_keep_room_for_the_hash() {
        assert_eq!(revision_name("web", "abc"), "web-abc");
        assert_eq!(revision_name(&"x".repeat(300), "h").len(), 225);
    }

    #[test]
    fn the_stored_patch_replaces_the_whole_template() {
        let patch = template_patch(&json!({"metadata": {"labels": {"a": "b"}}}));
        assert_eq!(patch, json!({"spec": {"template": {"metadata": {"labels": {"a": "b"}}, "$patch": "replace"}}}));
    }

    #[test]
    fn revisions_sort_by_number_and_the_next_is_one_more_than_the_newest() {
        let mut revisions = vec![revision("c", 3, json!(1)), revision("a", 1, json!(2)), revision("b", 2, json!(3))];
        sort(&mut revisions);
        let names: Vec<_> = revisions.iter().map(|r| r.metadata.name.clone().unwrap_or_default()).collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert_eq!(next_revision(&revisions), 4);
        assert_eq!(next_revision(&[]), 1);
    }

    #[test]
    fn a_new_revision_is_named_and_labelled_by_its_hash() {
        let owner = ObjectMeta { name: Some("ds".into()), namespace: Some("ns".into()), ..ObjectMeta::default() };
        let data = template_patch(&json!({"spec": {}}));
        let r = new_revision(&owner, OwnerReference::default(), BTreeMap::new(), data.clone(), 1, None);
        let hash = hash_bytes(serde_json::to_string(&data).unwrap_or_default().as_bytes(), None);
        assert_eq!(r.metadata.name.as_deref(), Some(format!("ds-{hash}").as_str()));
        assert_eq!(r.metadata.labels.unwrap_or_default().get(CONTROLLER_REVISION_HASH), Some(&hash));
        assert_eq!(r.revision, 1);
    }
}
