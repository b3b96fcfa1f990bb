//! Discovery: `/version`, `/api`, `/apis`, `/apis/{group}`, `/api/v1`, `/apis/{group}/{version}`, in both the
//! legacy form and aggregated discovery v2 (chosen by the Accept header, answered with a matching
//! Content-Type, which is what clients decide by).

use gantry_api::registry::ResourceType;
use serde_json::{Value, json};

use crate::api::{Api, KUBERNETES_VERSION, Reply};
use crate::status::{ApiError, ApiResult};

const AGGREGATED: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// Whether the client asked for aggregated discovery v2.
fn wants_aggregated(accept: Option<&str>) -> bool {
    accept.is_some_and(|accept| {
        accept.split(',').any(|entry| {
            let params: Vec<&str> = entry.split(';').map(str::trim).collect();
            params.first() == Some(&"application/json")
                && params.contains(&"g=apidiscovery.k8s.io")
                && params.contains(&"v=v2")
                && params.contains(&"as=APIGroupDiscoveryList")
        })
    })
}

/// The `/version` body.
pub fn version() -> Value {
    let version = KUBERNETES_VERSION.trim_start_matches('v');
    let mut parts = version.split('.');
    let major = parts.next().unwrap_or("1");
    let minor = parts.next().unwrap_or("0");
    json!({
        "major": major,
        "minor": minor,
        "emulationMajor": major,
        "emulationMinor": minor,
        "gitVersion": format!("{KUBERNETES_VERSION}+gantry-{}", env!("CARGO_PKG_VERSION")),
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "1970-01-01T00:00:00Z",
        "goVersion": "n/a",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            other => other,
        }),
    })
}

fn aggregated_reply(items: Vec<Value>) -> Reply {
    let body = json!({"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {},
                      "items": items});
    Reply::Full { code: 200, content_type: AGGREGATED.into(), body: crate::codec::to_bytes(&body), warnings: vec![] }
}

fn aggregated_resource(r: &ResourceType) -> Value {
    let mut subresources: Vec<Value> = r
        .subresources
        .iter()
        .map(|s| {
            let (group, version, kind) = s.response_kind().unwrap_or((r.group, r.version, r.kind));
            json!({"subresource": s.name(), "responseKind": {"group": group, "version": version, "kind": kind},
                   "verbs": s.verbs()})
        })
        .chain(crate::pod_proxy::subresources_of(r).iter().map(|s| {
            json!({"subresource": s.name, "responseKind": {"group": "", "version": "v1", "kind": s.kind},
                   "verbs": s.verbs})
        }))
        .collect();
    // kube-apiserver lists subresources in name order.
    subresources.sort_by(|a, b| a["subresource"].as_str().cmp(&b["subresource"].as_str()));
    let mut entry = json!({
        "resource": r.plural,
        "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
        "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
        "singularResource": r.singular,
        "verbs": r.verbs(),
    });
    if !r.short_names.is_empty() {
        entry["shortNames"] = json!(r.short_names);
    }
    if !r.categories.is_empty() {
        entry["categories"] = json!(r.categories);
    }
    if !subresources.is_empty() {
        entry["subresources"] = Value::Array(subresources);
    }
    entry
}

fn aggregated_group(api: &Api, group: &str) -> Value {
    let groups = api.registry.groups();
    let versions: Vec<Value> = groups
        .iter()
        .find(|g| g.name == group)
        .map(|g| g.versions.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|v| {
            let resources: Vec<Value> = api.registry.in_group_version(group, v).map(aggregated_resource).collect();
            json!({"version": v, "resources": resources, "freshness": "Current"})
        })
        .collect();
    json!({"metadata": {"name": group, "creationTimestamp": null}, "versions": versions})
}

/// `/api`.
pub fn core_versions(api: &Api, accept: Option<&str>) -> Reply {
    if wants_aggregated(accept) {
        return aggregated_reply(vec![aggregated_group(api, "")]);
    }
    Reply::json(
        200,
        &json!({"kind": "APIVersions", "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": ""}]}),
    )
}

fn group_entry(name: &str, versions: &[&str]) -> Value {
    let versions: Vec<Value> =
        versions.iter().map(|v| json!({"groupVersion": format!("{name}/{v}"), "version": v})).collect();
    let preferred = versions.first().cloned().unwrap_or(Value::Null);
    json!({"name": name, "versions": versions, "preferredVersion": preferred})
}

/// `/apis`.
pub fn groups(api: &Api, accept: Option<&str>) -> Reply {
    let groups: Vec<_> = api.registry.groups().into_iter().filter(|g| !g.name.is_empty()).collect();
    if wants_aggregated(accept) {
        return aggregated_reply(groups.iter().map(|g| aggregated_group(api, g.name)).collect());
    }
    let entries: Vec<Value> = groups.iter().map(|g| group_entry(g.name, &g.versions)).collect();
    Reply::json(200, &json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": entries}))
}

/// `/apis/{group}`.
pub fn group(api: &Api, name: &str) -> ApiResult<Reply> {
    let groups = api.registry.groups();
    let group = groups.iter().find(|g| g.name == name && !name.is_empty()).ok_or_else(ApiError::no_route)?;
    let mut entry = group_entry(group.name, &group.versions);
    entry["kind"] = json!("APIGroup");
    entry["apiVersion"] = json!("v1");
    Ok(Reply::json(200, &entry))
}

/// `/api/v1` and `/apis/{group}/{version}`.
pub fn resources(api: &Api, group: &str, version: &str) -> ApiResult<Reply> {
    let served: Vec<&ResourceType> = api.registry.in_group_version(group, version).collect();
    if served.is_empty() {
        return Err(ApiError::no_route());
    }
    let mut resources = Vec::new();
    for r in served {
        let mut entry = json!({
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": r.verbs(),
        });
        if !r.short_names.is_empty() {
            entry["shortNames"] = json!(r.short_names);
        }
        if !r.categories.is_empty() {
            entry["categories"] = json!(r.categories);
        }
        resources.push(entry);
        let mut subresources = Vec::new();
        for s in crate::pod_proxy::subresources_of(r) {
            subresources.push(json!({
                "name": format!("{}/{}", r.plural, s.name),
                "singularName": "",
                "namespaced": r.namespaced,
                "kind": s.kind,
                "verbs": s.verbs,
            }));
        }
        for s in r.subresources {
            let mut sub = json!({
                "name": format!("{}/{}", r.plural, s.name()),
                "singularName": "",
                "namespaced": r.namespaced,
                "kind": r.kind,
                "verbs": s.verbs(),
            });
            if let Some((g, v, k)) = s.response_kind() {
                sub["kind"] = json!(k);
                if g != r.group || v != r.version {
                    sub["group"] = json!(g);
                    sub["version"] = json!(v);
                }
            }
            subresources.push(sub);
        }
        // kube-apiserver lists subresources in name order.
        subresources.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
        resources.extend(subresources);
    }
    let group_version = if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
    Ok(Reply::json(
        200,
        &json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources}),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregated_discovery_is_recognised_in_any_parameter_order() {
        let kubectl = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;\
                       g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
        assert!(wants_aggregated(Some(kubectl)));
        assert!(wants_aggregated(Some("application/json;as=APIGroupDiscoveryList;v=v2;g=apidiscovery.k8s.io")));
        assert!(!wants_aggregated(Some("application/json, */*")));
        assert!(!wants_aggregated(None));
    }

    #[test]
    fn pods_list_the_relayed_subresources_with_kube_apiservers_verbs() {
        let dir = tempfile::tempdir().unwrap();
        let store = gantry_store::sqlite::SqliteStore::open(gantry_store::sqlite::SqliteConfig::new(
            dir.path().join("state.db"),
        ))
        .unwrap();
        let cache = crate::cache::WatchCache::new(crate::cache::DEFAULT_WINDOW);
        let api = Api::new(std::sync::Arc::new(store), cache, tokio_util::sync::CancellationToken::new());
        let Reply::Full { body, .. } = resources(&api, "", "v1").unwrap() else { panic!("a full reply") };
        let list: Value = serde_json::from_slice(&body).unwrap();
        let entry = |name: &str| list["resources"].as_array().unwrap().iter().find(|r| r["name"] == name).cloned();
        assert_eq!(entry("pods/log").unwrap()["verbs"], json!(["get"]));
        assert_eq!(entry("pods/exec").unwrap()["kind"], "PodExecOptions");
        assert_eq!(entry("pods/portforward").unwrap()["verbs"], json!(["create", "get"]));
        assert_eq!(entry("pods/attach").unwrap()["verbs"], json!(["create", "get"]));
        let names: Vec<&str> =
            list["resources"].as_array().unwrap().iter().filter_map(|r| r["name"].as_str()).collect();
        let pods: Vec<&str> = names.iter().copied().filter(|n| n.starts_with("pods/")).collect();
        let mut sorted = pods.clone();
        sorted.sort();
        assert_eq!(pods, sorted);
        assert!(entry("services/exec").is_none());

        let pods = api.registry.by_plural("", "v1", "pods").unwrap();
        let aggregated = aggregated_resource(pods);
        let subs: Vec<&str> =
            aggregated["subresources"].as_array().unwrap().iter().filter_map(|s| s["subresource"].as_str()).collect();
        for wanted in ["attach", "exec", "log", "portforward"] {
            assert!(subs.contains(&wanted), "{subs:?}");
        }
    }

    #[test]
    fn the_version_is_a_semver_helm_accepts() {
        let v = version();
        let git = v["gitVersion"].as_str().unwrap();
        assert!(git.starts_with("v1.35.0"), "{git}");
        assert_eq!(v["major"], "1");
        assert_eq!(v["minor"], "35");
    }
}
