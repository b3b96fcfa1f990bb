//! Static pods: pods the node runs from manifest files in a directory, without the API server deciding, and
//! their mirror pods, which show them in the API.
//!
//! As the kubelet does: a static pod is named `<name>-<node>`, its UID is a hash of its manifest and the node
//! (so an edited manifest is a new pod), and it carries `kubernetes.io/config.source: file` and
//! `kubernetes.io/config.hash`. Its mirror pod is a copy in the API with `kubernetes.io/config.mirror` set to
//! that hash and the Node as its owner; the agent writes the static pod's status to it and recreates it when it
//! is deleted. A mirror pod cannot stop its static pod: only removing the file does.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client};
use sha2::Digest;

/// Annotation: where a pod came from (`file` for static pods, `api` otherwise).
pub const CONFIG_SOURCE: &str = "kubernetes.io/config.source";
/// Annotation: the static pod's hash (its UID).
pub const CONFIG_HASH: &str = "kubernetes.io/config.hash";
/// Annotation on mirror pods: the hash of the static pod they mirror.
pub const CONFIG_MIRROR: &str = "kubernetes.io/config.mirror";
/// Annotation: when the agent first saw the pod.
pub const CONFIG_SEEN: &str = "kubernetes.io/config.seen";

/// Whether an API pod is the mirror of a static pod.
pub fn is_mirror(pod: &Pod) -> bool {
    pod.metadata.annotations.as_ref().is_some_and(|a| a.contains_key(CONFIG_MIRROR))
}

/// A manifest that could not be used, for the agent's log (the kubelet logs and skips them too).
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a pod.
    #[error("{path}: not a pod manifest: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// Reads every manifest in `dir` (`*.yaml`, `*.yml`, `*.json`; hidden files skipped) as static pods of
/// `node`. Files that cannot be used are returned apart, so that one bad file does not stop the others.
pub fn read_manifests(dir: &Path, node: &str) -> (Vec<Pod>, Vec<ManifestError>) {
    let mut pods = Vec::new();
    let mut errors = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return (pods, errors) };
    let mut paths: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            !name.starts_with('.') && (name.ends_with(".yaml") || name.ends_with(".yml") || name.ends_with(".json"))
        })
        .collect();
    paths.sort();
    for path in paths {
        match read_manifest(&path, node) {
            Ok(pod) => pods.push(pod),
            Err(err) => errors.push(err),
        }
    }
    (pods, errors)
}

fn read_manifest(path: &Path, node: &str) -> Result<Pod, ManifestError> {
    let invalid = |reason: String| ManifestError::Invalid { path: path.to_path_buf(), reason };
    let bytes = std::fs::read(path).map_err(|source| ManifestError::Read { path: path.to_path_buf(), source })?;
    let mut value: serde_json::Value = serde_yaml_ng::from_slice(&bytes).map_err(|e| invalid(e.to_string()))?;
    let kind = value.get("kind").and_then(|k| k.as_str()).unwrap_or("");
    if kind != "Pod" || value.get("apiVersion").and_then(|v| v.as_str()) != Some("v1") {
        return Err(invalid(format!("apiVersion v1 and kind Pod expected, found kind {kind:?}")));
    }
    let name = value.pointer("/metadata/name").and_then(|n| n.as_str()).unwrap_or("").to_string();
    if name.is_empty() {
        return Err(invalid("metadata.name is missing".into()));
    }
    gantry_api::defaults::apply_defaults(gantry_api::registry::GroupKind { group: "", kind: "Pod" }, &mut value);
    let uid = {
        let mut hash = sha2::Sha256::new();
        hash.update(node.as_bytes());
        hash.update(path.display().to_string().as_bytes());
        hash.update(&bytes);
        let digest = hash.finalize();
        digest.iter().take(16).map(|b| format!("{b:02x}")).collect::<String>()
    };
    let meta = &mut value["metadata"];
    meta["name"] = serde_json::json!(format!("{name}-{node}"));
    if meta.get("namespace").and_then(|n| n.as_str()).is_none_or(str::is_empty) {
        meta["namespace"] = serde_json::json!("default");
    }
    meta["uid"] = serde_json::json!(uid);
    let annotations = meta.as_object_mut().map(|m| m.entry("annotations").or_insert_with(|| serde_json::json!({})));
    if let Some(annotations) = annotations.and_then(|a| a.as_object_mut()) {
        annotations.insert(CONFIG_SOURCE.into(), serde_json::json!("file"));
        annotations.insert(CONFIG_HASH.into(), serde_json::json!(uid));
        annotations.insert(CONFIG_SEEN.into(), serde_json::json!(jiff::Timestamp::now().to_string()));
    }
    value["spec"]["nodeName"] = serde_json::json!(node);
    value.as_object_mut().map(|m| m.remove("status"));
    serde_json::from_value(value).map_err(|e| invalid(e.to_string()))
}

/// The mirror pod of a static pod.
pub fn mirror_of(pod: &Pod, node: &Node) -> Pod {
    let mut mirror = pod.clone();
    let hash = pod.metadata.uid.clone().unwrap_or_default();
    mirror.metadata.uid = None;
    mirror.metadata.resource_version = None;
    mirror.metadata.annotations.get_or_insert_with(BTreeMap::new).insert(CONFIG_MIRROR.into(), hash);
    mirror.metadata.owner_references = Some(vec![OwnerReference {
        api_version: "v1".into(),
        kind: "Node".into(),
        name: node.metadata.name.clone().unwrap_or_default(),
        uid: node.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: None,
    }]);
    mirror.status = None;
    mirror
}

/// Makes the API's mirror pods match the static pods: creates missing ones, replaces those of another hash
/// (an edited manifest), and deletes mirrors whose static pod is gone.
pub async fn sync_mirrors(client: &Client, node_name: &str, statics: &[Pod], mirrors: &[Pod]) {
    let nodes: Api<Node> = Api::all(client.clone());
    let Ok(node) = nodes.get(node_name).await else { return };
    for pod in statics {
        let (name, namespace) =
            (pod.metadata.name.clone().unwrap_or_default(), pod.metadata.namespace.clone().unwrap_or_default());
        let hash = pod.metadata.uid.clone().unwrap_or_default();
        let existing = mirrors
            .iter()
            .find(|m| m.metadata.name.as_deref() == Some(&name) && m.metadata.namespace.as_deref() == Some(&namespace));
        let api: Api<Pod> = Api::namespaced(client.clone(), &namespace);
        if let Some(existing) = existing {
            let same = existing.metadata.annotations.as_ref().and_then(|a| a.get(CONFIG_MIRROR)) == Some(&hash);
            if same && existing.metadata.deletion_timestamp.is_none() {
                continue;
            }
            let _ = api.delete(&name, &DeleteParams { grace_period_seconds: Some(0), ..Default::default() }).await;
        }
        if let Err(err) = api.create(&PostParams::default(), &mirror_of(pod, &node)).await {
            tracing::warn!(pod = %name, error = %err, "creating the mirror pod");
        }
    }
    for mirror in mirrors {
        let gone = !statics
            .iter()
            .any(|s| s.metadata.name == mirror.metadata.name && s.metadata.namespace == mirror.metadata.namespace);
        if gone {
            let api: Api<Pod> =
                Api::namespaced(client.clone(), mirror.metadata.namespace.as_deref().unwrap_or("default"));
            let name = mirror.metadata.name.clone().unwrap_or_default();
            if let Err(err) =
                api.delete(&name, &DeleteParams { grace_period_seconds: Some(0), ..Default::default() }).await
            {
                tracing::debug!(pod = %name, error = %err, "deleting a mirror pod");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manifest_becomes_a_static_pod_named_after_the_node() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("web.yaml"),
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\nspec:\n  containers:\n  - name: c\n    image: busybox:1\n",
        )
        .expect("write");
        std::fs::write(dir.path().join("notes.txt"), "ignored").expect("write");
        std::fs::write(dir.path().join("bad.yaml"), "kind: Deployment\napiVersion: apps/v1\n").expect("write");
        let (pods, errors) = read_manifests(dir.path(), "n1");
        assert_eq!(pods.len(), 1);
        assert_eq!(errors.len(), 1, "{errors:?}");
        let pod = &pods[0];
        assert_eq!(pod.metadata.name.as_deref(), Some("web-n1"));
        assert_eq!(pod.metadata.namespace.as_deref(), Some("default"));
        assert_eq!(pod.spec.as_ref().and_then(|s| s.node_name.as_deref()), Some("n1"));
        assert_eq!(pod.spec.as_ref().and_then(|s| s.restart_policy.as_deref()), Some("Always"), "defaults applied");
        let annotations = pod.metadata.annotations.clone().unwrap_or_default();
        assert_eq!(annotations.get(CONFIG_SOURCE).map(String::as_str), Some("file"));
        assert_eq!(annotations.get(CONFIG_HASH), pod.metadata.uid.as_ref());
    }

    #[test]
    fn an_edited_manifest_is_another_pod() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("web.json");
        let manifest = |image: &str| {
            serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"},
                "spec": {"containers": [{"name": "c", "image": image}]}})
            .to_string()
        };
        std::fs::write(&path, manifest("busybox:1")).expect("write");
        let first = read_manifests(dir.path(), "n1").0[0].metadata.uid.clone();
        assert_eq!(read_manifests(dir.path(), "n1").0[0].metadata.uid, first, "stable while unchanged");
        std::fs::write(&path, manifest("busybox:2")).expect("write");
        assert_ne!(read_manifests(dir.path(), "n1").0[0].metadata.uid, first);
    }

    #[test]
    fn the_mirror_names_its_static_pod_and_its_node() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("web.yaml"),
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\nspec:\n  containers:\n  - name: c\n    image: busybox:1\n",
        )
        .expect("write");
        let pod = read_manifests(dir.path(), "n1").0.remove(0);
        let node: Node =
            serde_json::from_value(serde_json::json!({"metadata": {"name": "n1", "uid": "node-uid"}})).expect("node");
        let mirror = mirror_of(&pod, &node);
        assert!(is_mirror(&mirror) && !is_mirror(&pod));
        assert_eq!(mirror.metadata.uid, None);
        assert_eq!(mirror.metadata.annotations.unwrap_or_default().get(CONFIG_MIRROR), pod.metadata.uid.as_ref());
        let owner = &mirror.metadata.owner_references.unwrap_or_default()[0];
        assert_eq!((owner.kind.as_str(), owner.uid.as_str()), ("Node", "node-uid"));
    }
}
