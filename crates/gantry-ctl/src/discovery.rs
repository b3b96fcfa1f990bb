//! Resource types as the server lists them (`/api/v1`, `/apis/GROUP/VERSION` of each group's preferred
//! version), and their resolution from what a person types, as kubectl resolves them: the plural, the
//! singular, the kind or a short name, optionally qualified with a group (`deployments.apps`) or a version and
//! a group (`deployments.v1.apps`). The core group is tried first, then the groups in the server's order.

use serde_json::Value;

use crate::Result;
use crate::config::Context;

/// One resource type of the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resource {
    /// The API group, empty for the core group.
    pub group: String,
    /// The version served.
    pub version: String,
    /// The plural name, as in URLs (`deployments`).
    pub plural: String,
    /// The singular name (`deployment`).
    pub singular: String,
    /// The kind (`Deployment`).
    pub kind: String,
    /// Whether objects live in namespaces.
    pub namespaced: bool,
    /// Short names (`deploy`).
    pub short_names: Vec<String>,
    /// The verbs the server allows.
    pub verbs: Vec<String>,
}

impl Resource {
    /// `apps/v1`, or `v1` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() { self.version.clone() } else { format!("{}/{}", self.group, self.version) }
    }

    /// The collection's path, in `namespace` for a namespaced type (all namespaces when `None`).
    pub fn path(&self, namespace: Option<&str>) -> String {
        let prefix = if self.group.is_empty() {
            "/api/v1".to_string()
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        };
        match namespace {
            Some(ns) if self.namespaced => format!("{prefix}/namespaces/{ns}/{}", self.plural),
            _ => format!("{prefix}/{}", self.plural),
        }
    }

    /// One object's path.
    pub fn object_path(&self, namespace: &str, name: &str) -> String {
        format!("{}/{}", self.path(Some(namespace)), name)
    }

    /// `deployment.apps`, or `pod` for the core group: how kubectl names the type before `/NAME`.
    pub fn kind_group(&self) -> String {
        let kind = self.kind.to_lowercase();
        if self.group.is_empty() { kind } else { format!("{kind}.{}", self.group) }
    }

    /// `deployments.apps`, or `pods`: how kubectl names the type in messages.
    pub fn plural_group(&self) -> String {
        if self.group.is_empty() { self.plural.clone() } else { format!("{}.{}", self.plural, self.group) }
    }

    fn answers_to(&self, name: &str) -> bool {
        self.plural == name
            || self.singular == name
            || self.kind.to_lowercase() == name
            || self.short_names.iter().any(|s| s == name)
    }
}

/// The server's resource types, in kubectl's order of preference.
#[derive(Clone, Debug, Default)]
pub struct Discovery {
    /// Every top-level resource type (no subresources).
    pub resources: Vec<Resource>,
}

impl Discovery {
    /// Asks the server.
    pub async fn fetch(cx: &Context) -> Result<Discovery> {
        let mut resources = Vec::new();
        let core = cx.get_json("/api/v1").await?;
        resources.extend(parse_resource_list("", "v1", &core));
        let groups = cx.get_json("/apis").await?;
        for group in groups["groups"].as_array().into_iter().flatten() {
            let Some(name) = group["name"].as_str() else { continue };
            let Some(version) =
                group["preferredVersion"]["version"].as_str().or_else(|| group["versions"][0]["version"].as_str())
            else {
                continue;
            };
            let list = cx.get_json(&format!("/apis/{name}/{version}")).await?;
            resources.extend(parse_resource_list(name, version, &list));
        }
        Ok(Discovery { resources })
    }

    /// The type `name` stands for, as kubectl resolves it.
    pub fn resolve(&self, name: &str) -> Option<&Resource> {
        let name = name.to_lowercase();
        // Unqualified first: `deployments` or `po`.
        if let Some(found) = self.resources.iter().find(|r| r.answers_to(&name)) {
            return Some(found);
        }
        let (resource, rest) = name.split_once('.')?;
        // `deployments.v1.apps`: a version then a group.
        if let Some((version, group)) = rest.split_once('.')
            && let Some(found) =
                self.resources.iter().find(|r| r.group == group && r.version == version && r.answers_to(resource))
        {
            return Some(found);
        }
        // `deployments.apps`, or a group that is a prefix-free dotted name (`ingresses.networking.k8s.io`).
        self.resources.iter().find(|r| r.group == rest && r.answers_to(resource))
    }

    /// The type of objects of `kind` in `apiVersion` (as a manifest names them).
    pub fn for_kind(&self, api_version: &str, kind: &str) -> Option<&Resource> {
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        self.resources.iter().find(|r| r.group == group && r.version == version && r.kind == kind).or_else(|| {
            // Another version of the same group: the server converts.
            self.resources.iter().find(|r| r.group == group && r.kind == kind)
        })
    }
}

/// The top-level resources of an `APIResourceList`.
pub fn parse_resource_list(group: &str, version: &str, list: &Value) -> Vec<Resource> {
    let strings = |v: &Value| -> Vec<String> {
        v.as_array().into_iter().flatten().filter_map(|s| s.as_str().map(str::to_string)).collect()
    };
    list["resources"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| {
            let plural = r["name"].as_str()?;
            if plural.contains('/') {
                return None;
            }
            let kind = r["kind"].as_str()?.to_string();
            let singular = r["singularName"].as_str().filter(|s| !s.is_empty()).map(str::to_string);
            Some(Resource {
                group: group.to_string(),
                version: version.to_string(),
                plural: plural.to_string(),
                singular: singular.unwrap_or_else(|| kind.to_lowercase()),
                kind,
                namespaced: r["namespaced"].as_bool().unwrap_or(false),
                short_names: strings(&r["shortNames"]),
                verbs: strings(&r["verbs"]),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn discovery() -> Discovery {
        let core = json!({"resources": [
            {"name": "pods", "singularName": "pod", "kind": "Pod", "namespaced": true, "shortNames": ["po"]},
            {"name": "pods/log", "kind": "Pod", "namespaced": true},
            {"name": "nodes", "singularName": "node", "kind": "Node", "namespaced": false, "shortNames": ["no"]},
            {"name": "events", "singularName": "event", "kind": "Event", "namespaced": true, "shortNames": ["ev"]},
        ]});
        let apps = json!({"resources": [
            {"name": "deployments", "singularName": "deployment", "kind": "Deployment", "namespaced": true,
             "shortNames": ["deploy"]},
            {"name": "replicasets", "singularName": "replicaset", "kind": "ReplicaSet", "namespaced": true,
             "shortNames": ["rs"]},
        ]});
        let events = json!({"resources": [
            {"name": "events", "singularName": "event", "kind": "Event", "namespaced": true, "shortNames": ["ev"]},
        ]});
        let mut resources = parse_resource_list("", "v1", &core);
        resources.extend(parse_resource_list("apps", "v1", &apps));
        resources.extend(parse_resource_list("events.k8s.io", "v1", &events));
        Discovery { resources }
    }

    #[test]
    fn plural_singular_kind_and_short_names_resolve_to_the_same_type() {
        let d = discovery();
        for name in ["deployments", "deployment", "Deployment", "deploy", "DEPLOY"] {
            assert_eq!(d.resolve(name).map(|r| r.plural.as_str()), Some("deployments"), "{name}");
        }
        assert_eq!(d.resolve("po").map(|r| r.kind.as_str()), Some("Pod"));
        assert_eq!(d.resolve("rs").map(|r| r.kind.as_str()), Some("ReplicaSet"));
        assert_eq!(d.resolve("no").map(|r| r.kind.as_str()), Some("Node"));
    }

    #[test]
    fn the_core_group_wins_over_other_groups_with_the_same_name() {
        assert_eq!(discovery().resolve("events").map(|r| r.group.as_str()), Some(""));
        assert_eq!(discovery().resolve("events.events.k8s.io").map(|r| r.group.as_str()), Some("events.k8s.io"));
    }

    #[test]
    fn group_and_version_qualified_names_resolve() {
        let d = discovery();
        assert_eq!(d.resolve("deployments.apps").map(|r| r.kind.as_str()), Some("Deployment"));
        assert_eq!(d.resolve("deploy.v1.apps").map(|r| r.kind.as_str()), Some("Deployment"));
        assert_eq!(d.resolve("deployments.batch"), None);
    }

    #[test]
    fn subresources_and_unknown_names_do_not_resolve() {
        assert_eq!(discovery().resolve("pods/log"), None);
        assert_eq!(discovery().resolve("nope"), None);
    }

    #[test]
    fn paths_and_names_follow_the_group() {
        let d = discovery();
        let deploy = d.resolve("deploy").expect("deploy");
        assert_eq!(deploy.object_path("web", "x"), "/apis/apps/v1/namespaces/web/deployments/x");
        assert_eq!(deploy.kind_group(), "deployment.apps");
        let node = d.resolve("no").expect("node");
        assert_eq!(node.object_path("default", "n1"), "/api/v1/nodes/n1");
        assert_eq!(node.kind_group(), "node");
        assert_eq!(d.for_kind("apps/v1", "ReplicaSet").map(|r| r.plural.as_str()), Some("replicasets"));
    }
}
