//! Adoption and release, shared by every controller that owns objects through a label selector (pods of
//! ReplicaSets, Jobs, DaemonSets and StatefulSets; ControllerRevisions of DaemonSets and StatefulSets), as
//! kube-controller-manager's `ControllerRefManager` does:
//!
//! - objects whose controller reference names the owner and that match the selector are owned;
//! - owned objects that stop matching are released (their reference removed), unless the owner is being
//!   deleted;
//! - orphans (no controller reference) that match are adopted, but only after re-reading the owner from the
//!   API: the informer may not show yet that it was deleted, and adopting then would orphan the objects again.

use std::fmt::Debug;
use std::sync::Arc;

use gantry_api::selector::LabelSelector;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Patch, PatchParams};
use kube::{Api, Client, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::informer::Informer;
use crate::meta::labels;
use crate::pods::{BY_CONTROLLER, controller_ref, orphans_of};

/// What can fail while claiming.
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    /// Re-reading the owner before adopting failed.
    #[error("reading {kind} {namespace}/{name} before adopting: {source}")]
    ReadOwner {
        /// The owner's kind.
        kind: String,
        /// The owner's namespace.
        namespace: String,
        /// The owner's name.
        name: String,
        /// The cause.
        #[source]
        source: kube::Error,
    },
    /// Patching an object's owner references failed.
    #[error("{action} {namespace}/{name}: {source}")]
    Patch {
        /// `adopting` or `releasing`.
        action: &'static str,
        /// The object's namespace.
        namespace: String,
        /// The object's name.
        name: String,
        /// The cause.
        #[source]
        source: kube::Error,
    },
}

/// The controller reference an owner gives what it creates or adopts: controller, blocking its deletion
/// (foreground deletion of the owner waits for them).
pub fn controller_reference<O: Resource<DynamicType = ()>>(owner: &O) -> OwnerReference {
    let meta = owner.meta();
    OwnerReference {
        api_version: O::api_version(&()).into_owned(),
        kind: O::kind(&()).into_owned(),
        name: meta.name.clone().unwrap_or_default(),
        uid: meta.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// Claims the objects of `candidates` (an informer with the [`BY_CONTROLLER`] index) for `owner`: returns the
/// objects it owns after adopting matching orphans and releasing owned objects that no longer match.
/// `eligible` filters the candidates considered at all (a ReplicaSet ignores finished pods; a Job does not).
pub async fn claim<O, K>(
    client: &Client,
    owner: &O,
    selector: &LabelSelector,
    candidates: &Informer<K>,
    eligible: impl Fn(&K) -> bool,
) -> Result<Vec<Arc<K>>, ClaimError>
where
    O: Resource<DynamicType = (), Scope = NamespaceResourceScope> + Clone + DeserializeOwned + Debug,
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Serialize
        + Debug
        + Send
        + Sync
        + 'static,
{
    let meta = owner.meta();
    let namespace = meta.namespace.as_deref().unwrap_or("");
    let uid = meta.uid.as_deref().unwrap_or("");
    let deleting = meta.deletion_timestamp.is_some();
    let mut owned = Vec::new();
    let mut orphans = Vec::new();
    let mut strays = Vec::new();
    let mut found = candidates.by_index(BY_CONTROLLER, uid);
    found.extend(candidates.by_index(BY_CONTROLLER, &orphans_of(namespace)));
    for object in found {
        if !eligible(&object) || object.meta().namespace.as_deref() != Some(namespace) {
            continue;
        }
        let matches = selector.matches(labels(object.meta()));
        match controller_ref(object.meta()) {
            Some(reference) if reference.uid == uid => {
                if matches {
                    owned.push(object);
                } else if !deleting {
                    strays.push(object);
                }
            }
            Some(_) => {}
            None if matches && !deleting => orphans.push(object),
            None => {}
        }
    }
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    for object in strays {
        let patch = json!({"metadata": {"ownerReferences": [{"$patch": "delete", "uid": uid}],
                                        "uid": object.meta().uid}});
        patch_owner(&api, &object, &patch, "releasing").await?;
    }
    if !orphans.is_empty() && owner_is_current::<O>(client, meta).await? {
        let reference = controller_reference(owner);
        for object in orphans {
            let patch = json!({"metadata": {"ownerReferences": [reference], "uid": object.meta().uid}});
            if let Some(adopted) = patch_owner(&api, &object, &patch, "adopting").await? {
                owned.push(Arc::new(adopted));
            }
        }
    }
    Ok(owned)
}

/// Whether the owner, read from the API rather than the informer, is still the same object and not being
/// deleted.
async fn owner_is_current<O>(client: &Client, meta: &ObjectMeta) -> Result<bool, ClaimError>
where
    O: Resource<DynamicType = (), Scope = NamespaceResourceScope> + Clone + DeserializeOwned + Debug,
{
    let namespace = meta.namespace.as_deref().unwrap_or("");
    let name = meta.name.as_deref().unwrap_or("");
    let api: Api<O> = Api::namespaced(client.clone(), namespace);
    let fresh = api.get_opt(name).await.map_err(|source| ClaimError::ReadOwner {
        kind: O::kind(&()).into_owned(),
        namespace: namespace.to_string(),
        name: name.to_string(),
        source,
    })?;
    Ok(fresh.is_some_and(|f| f.meta().uid == meta.uid && f.meta().deletion_timestamp.is_none()))
}

/// Patches an object's owner references (with its UID as a precondition); an object that is gone, changed
/// identity or cannot be patched any more is skipped, as kube's controllers skip it.
async fn patch_owner<K>(
    api: &Api<K>,
    object: &K,
    patch: &serde_json::Value,
    action: &'static str,
) -> Result<Option<K>, ClaimError>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
{
    let name = object.meta().name.as_deref().unwrap_or("");
    match api.patch(name, &PatchParams::default(), &Patch::Strategic(patch)).await {
        Ok(patched) => Ok(Some(patched)),
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 || e.code == 422 => Ok(None),
        Err(source) => Err(ClaimError::Patch {
            action,
            namespace: object.meta().namespace.clone().unwrap_or_default(),
            name: name.to_string(),
            source,
        }),
    }
}
