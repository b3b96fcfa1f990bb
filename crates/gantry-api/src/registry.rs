//! The registry of kinds: the single table from which serving, storage, discovery and OpenAPI are driven.
//!
//! Each built-in resource is described once, as data. Handlers never match on a kind's name to decide
//! *how* to serve it; they look it up here. Behaviour that differs per kind (validation, defaulting, table
//! columns) lives in the modules that own it, keyed by [`GroupKind`].

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock, RwLock};

/// A subresource served under `.../{name}/{subresource}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Subresource {
    /// `status`: GET/PUT/PATCH of the object, writing only `.status`.
    Status,
    /// `scale`: the `autoscaling/v1` `Scale` view of `.spec.replicas` and `.status.replicas`.
    Scale,
    /// `pods/binding`: POST a `Binding` to set `spec.nodeName`.
    Binding,
    /// `pods/eviction`: POST a `policy/v1` `Eviction` to delete a pod while honouring disruption budgets.
    Eviction,
    /// `namespaces/finalize`: PUT a Namespace to replace `spec.finalizers` (the namespace controller's step).
    Finalize,
}

impl Subresource {
    /// The path segment, e.g. `status`.
    pub fn name(self) -> &'static str {
        match self {
            Subresource::Status => "status",
            Subresource::Scale => "scale",
            Subresource::Binding => "binding",
            Subresource::Eviction => "eviction",
            Subresource::Finalize => "finalize",
        }
    }

    /// Parses a path segment.
    pub fn from_name(name: &str) -> Option<Subresource> {
        [Subresource::Status, Subresource::Scale, Subresource::Binding, Subresource::Eviction, Subresource::Finalize]
            .into_iter()
            .find(|s| s.name() == name)
    }

    /// The verbs discovery advertises for this subresource.
    pub fn verbs(self) -> &'static [&'static str] {
        match self {
            Subresource::Status | Subresource::Scale => &["get", "patch", "update"],
            Subresource::Binding | Subresource::Eviction => &["create"],
            Subresource::Finalize => &["update"],
        }
    }

    /// The (group, version, kind) a request to this subresource sends and receives; `None` means the parent's.
    pub fn response_kind(self) -> Option<(&'static str, &'static str, &'static str)> {
        match self {
            Subresource::Status | Subresource::Finalize => None,
            Subresource::Scale => Some(("autoscaling", "v1", "Scale")),
            Subresource::Binding => Some(("", "v1", "Binding")),
            Subresource::Eviction => Some(("policy", "v1", "Eviction")),
        }
    }
}

/// A group and kind, the key under which per-kind behaviour is registered (`""` is the core group).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupKind {
    /// API group, `""` for core.
    pub group: &'static str,
    /// Kind, e.g. `Deployment`.
    pub kind: &'static str,
}

impl fmt::Display for GroupKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.group.is_empty() { f.write_str(self.kind) } else { write!(f, "{}.{}", self.kind, self.group) }
    }
}

/// One resource served at one group-version.
#[derive(Debug)]
pub struct ResourceType {
    /// API group, `""` for core.
    pub group: &'static str,
    /// Version, e.g. `v1`.
    pub version: &'static str,
    /// Kind, e.g. `Deployment`.
    pub kind: &'static str,
    /// Plural resource name used in URLs, e.g. `deployments`.
    pub plural: &'static str,
    /// Singular name, e.g. `deployment`.
    pub singular: &'static str,
    /// Short names kubectl accepts, e.g. `deploy`.
    pub short_names: &'static [&'static str],
    /// Categories, e.g. `all`.
    pub categories: &'static [&'static str],
    /// Whether objects live in a namespace.
    pub namespaced: bool,
    /// Subresources served for this resource.
    pub subresources: &'static [Subresource],
    /// Where objects are stored: `(group, resource)`. Two served versions of one kind share storage (e.g.
    /// `autoscaling/v1` and `autoscaling/v2` HorizontalPodAutoscalers; core and `events.k8s.io` Events).
    pub storage: (&'static str, &'static str),
    /// Whether this version is the one written to storage. Other versions are converted on the way in and out.
    pub storage_version: bool,
    /// Whether discovery lists this version first for its group (the preferred version).
    pub preferred: bool,
    /// Whether the resource is defined by a CustomResourceDefinition rather than built in.
    pub custom: bool,
}

impl ResourceType {
    /// `apps/v1`, or `v1` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() { self.version.to_string() } else { format!("{}/{}", self.group, self.version) }
    }

    /// The group and kind.
    pub fn group_kind(&self) -> GroupKind {
        GroupKind { group: self.group, kind: self.kind }
    }

    /// `DeploymentList`.
    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    /// How kube-apiserver names the resource in messages: `deployments.apps`, or `pods` for core.
    pub fn qualified_resource(&self) -> String {
        if self.group.is_empty() { self.plural.to_string() } else { format!("{}.{}", self.plural, self.group) }
    }

    /// Whether the resource serves `sub`.
    pub fn has_subresource(&self, sub: Subresource) -> bool {
        self.subresources.contains(&sub)
    }

    /// The verbs discovery advertises for the resource itself.
    pub fn verbs(&self) -> &'static [&'static str] {
        &["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
    }

    /// The storage key prefix of every object of this resource: `/registry/<group>/<resource>/`, with
    /// `core` standing for the empty group.
    pub fn key_prefix(&self) -> String {
        let (group, resource) = self.storage;
        format!("/registry/{}/{}/", if group.is_empty() { "core" } else { group }, resource)
    }

    /// The storage key prefix of the objects in one namespace (or all, for a cluster-scoped resource).
    pub fn namespace_prefix(&self, namespace: Option<&str>) -> String {
        match namespace {
            Some(ns) if self.namespaced => format!("{}{}/", self.key_prefix(), ns),
            _ => self.key_prefix(),
        }
    }

    /// The storage key of one object.
    pub fn key(&self, namespace: Option<&str>, name: &str) -> String {
        format!("{}{}", self.namespace_prefix(namespace), name)
    }
}

use Subresource::{Binding, Eviction, Finalize, Scale, Status};

macro_rules! resource {
    ($group:literal, $version:literal, $kind:literal, $plural:literal, $singular:literal, [$($short:literal),*],
     [$($cat:literal),*], $namespaced:literal, [$($sub:expr),*]) => {
        resource!($group, $version, $kind, $plural, $singular, [$($short),*], [$($cat),*], $namespaced,
                  [$($sub),*], storage = ($group, $plural), storage_version = true, preferred = true)
    };
    ($group:literal, $version:literal, $kind:literal, $plural:literal, $singular:literal, [$($short:literal),*],
     [$($cat:literal),*], $namespaced:literal, [$($sub:expr),*], storage = ($sg:literal, $sr:literal),
     storage_version = $sv:literal, preferred = $pref:literal) => {
        ResourceType {
            group: $group,
            version: $version,
            kind: $kind,
            plural: $plural,
            singular: $singular,
            short_names: &[$($short),*],
            categories: &[$($cat),*],
            namespaced: $namespaced,
            subresources: &[$($sub),*],
            storage: ($sg, $sr),
            storage_version: $sv,
            preferred: $pref,
            custom: false,
        }
    };
}

/// Every built-in resource, grouped by group-version in the order discovery lists them.
pub static BUILT_IN: &[ResourceType] = &[
    // core/v1
    resource!("", "v1", "Pod", "pods", "pod", ["po"], ["all"], true, [Status, Binding, Eviction]),
    resource!("", "v1", "Service", "services", "service", ["svc"], ["all"], true, [Status]),
    resource!("", "v1", "Endpoints", "endpoints", "endpoints", ["ep"], [], true, []),
    resource!("", "v1", "ConfigMap", "configmaps", "configmap", ["cm"], [], true, []),
    resource!("", "v1", "Secret", "secrets", "secret", [], [], true, []),
    resource!("", "v1", "Namespace", "namespaces", "namespace", ["ns"], [], false, [Status, Finalize]),
    resource!("", "v1", "Node", "nodes", "node", ["no"], [], false, [Status]),
    resource!("", "v1", "Event", "events", "event", ["ev"], [], true, []),
    resource!("", "v1", "ServiceAccount", "serviceaccounts", "serviceaccount", ["sa"], [], true, []),
    resource!("", "v1", "PersistentVolume", "persistentvolumes", "persistentvolume", ["pv"], [], false, [Status]),
    resource!(
        "",
        "v1",
        "PersistentVolumeClaim",
        "persistentvolumeclaims",
        "persistentvolumeclaim",
        ["pvc"],
        [],
        true,
        [Status]
    ),
    resource!("", "v1", "ResourceQuota", "resourcequotas", "resourcequota", ["quota"], [], true, [Status]),
    resource!("", "v1", "LimitRange", "limitranges", "limitrange", ["limits"], [], true, []),
    // apps/v1
    resource!("apps", "v1", "Deployment", "deployments", "deployment", ["deploy"], ["all"], true, [Status, Scale]),
    resource!("apps", "v1", "ReplicaSet", "replicasets", "replicaset", ["rs"], ["all"], true, [Status, Scale]),
    resource!("apps", "v1", "StatefulSet", "statefulsets", "statefulset", ["sts"], ["all"], true, [Status, Scale]),
    resource!("apps", "v1", "DaemonSet", "daemonsets", "daemonset", ["ds"], ["all"], true, [Status]),
    resource!("apps", "v1", "ControllerRevision", "controllerrevisions", "controllerrevision", [], [], true, []),
    // batch/v1
    resource!("batch", "v1", "Job", "jobs", "job", [], ["all"], true, [Status]),
    resource!("batch", "v1", "CronJob", "cronjobs", "cronjob", ["cj"], ["all"], true, [Status]),
    // autoscaling: v2 is stored and preferred; v1 is converted.
    resource!(
        "autoscaling",
        "v2",
        "HorizontalPodAutoscaler",
        "horizontalpodautoscalers",
        "horizontalpodautoscaler",
        ["hpa"],
        ["all"],
        true,
        [Status]
    ),
    resource!(
        "autoscaling",
        "v1",
        "HorizontalPodAutoscaler",
        "horizontalpodautoscalers",
        "horizontalpodautoscaler",
        ["hpa"],
        ["all"],
        true,
        [Status],
        storage = ("autoscaling", "horizontalpodautoscalers"),
        storage_version = false,
        preferred = false
    ),
    // apiextensions.k8s.io/v1
    resource!(
        "apiextensions.k8s.io",
        "v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
        "customresourcedefinition",
        ["crd", "crds"],
        ["api-extensions"],
        false,
        [Status]
    ),
    // coordination.k8s.io/v1
    resource!("coordination.k8s.io", "v1", "Lease", "leases", "lease", [], [], true, []),
    // discovery.k8s.io/v1
    resource!("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices", "endpointslice", [], [], true, []),
    // events.k8s.io/v1 shares storage with core/v1 Events.
    resource!(
        "events.k8s.io",
        "v1",
        "Event",
        "events",
        "event",
        ["ev"],
        [],
        true,
        [],
        storage = ("", "events"),
        storage_version = false,
        preferred = true
    ),
    // policy/v1
    resource!(
        "policy",
        "v1",
        "PodDisruptionBudget",
        "poddisruptionbudgets",
        "poddisruptionbudget",
        ["pdb"],
        [],
        true,
        [Status]
    ),
    // rbac.authorization.k8s.io/v1
    resource!("rbac.authorization.k8s.io", "v1", "Role", "roles", "role", [], [], true, []),
    resource!("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings", "rolebinding", [], [], true, []),
    resource!("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", "clusterrole", [], [], false, []),
    resource!(
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRoleBinding",
        "clusterrolebindings",
        "clusterrolebinding",
        [],
        [],
        false,
        []
    ),
    // networking.k8s.io/v1
    resource!("networking.k8s.io", "v1", "Ingress", "ingresses", "ingress", ["ing"], [], true, [Status]),
    resource!("networking.k8s.io", "v1", "IngressClass", "ingressclasses", "ingressclass", [], [], false, []),
    resource!("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies", "networkpolicy", ["netpol"], [], true, []),
    // storage.k8s.io/v1
    resource!("storage.k8s.io", "v1", "StorageClass", "storageclasses", "storageclass", ["sc"], [], false, []),
    // scheduling.k8s.io/v1
    resource!("scheduling.k8s.io", "v1", "PriorityClass", "priorityclasses", "priorityclass", ["pc"], [], false, []),
];

/// A served group with its versions, preferred first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedGroup {
    /// The group name (`""` for core).
    pub name: &'static str,
    /// Served versions, preferred first.
    pub versions: Vec<&'static str>,
}

/// Lookups over the served resource types: the built-in ones and those CustomResourceDefinitions add.
///
/// The custom part is replaced as a whole ([`Registry::set_custom`]) when definitions change; readers take a
/// snapshot, so a request sees one consistent set.
#[derive(Debug)]
pub struct Registry {
    served: RwLock<Arc<Vec<&'static ResourceType>>>,
}

impl Default for Registry {
    fn default() -> Self {
        Self::built_in()
    }
}

impl Registry {
    /// The registry of built-in kinds.
    pub fn built_in() -> Registry {
        Registry { served: RwLock::new(Arc::new(BUILT_IN.iter().collect())) }
    }

    fn snapshot(&self) -> Arc<Vec<&'static ResourceType>> {
        match self.served.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Replaces the custom resource types with `custom` (in discovery order after the built-in ones).
    pub fn set_custom(&self, custom: &[CustomResourceType]) {
        let mut types: Vec<&'static ResourceType> = BUILT_IN.iter().collect();
        types.extend(custom.iter().map(intern));
        let types = Arc::new(types);
        match self.served.write() {
            Ok(mut guard) => *guard = types,
            Err(poisoned) => *poisoned.into_inner() = types,
        }
    }

    /// A registry of the built-in types of this one, without the custom ones.
    pub fn without_custom(&self) -> Registry {
        Registry { served: RwLock::new(Arc::new(self.all().filter(|r| !r.custom).collect())) }
    }

    /// Every resource type, in discovery order.
    pub fn all(&self) -> impl Iterator<Item = &'static ResourceType> + use<> {
        let snapshot = self.snapshot();
        (0..snapshot.len()).map(move |i| snapshot[i])
    }

    /// The resource served at `group/version` under `plural`.
    pub fn by_plural(&self, group: &str, version: &str, plural: &str) -> Option<&'static ResourceType> {
        self.all().find(|r| r.group == group && r.version == version && r.plural == plural)
    }

    /// The resource for a kind at a group-version.
    pub fn by_kind(&self, group: &str, version: &str, kind: &str) -> Option<&'static ResourceType> {
        self.all().find(|r| r.group == group && r.version == version && r.kind == kind)
    }

    /// The version of a kind that is stored. A resource no longer served (its definition just went away)
    /// is its own storage version.
    pub fn storage_type(&self, resource: &'static ResourceType) -> &'static ResourceType {
        self.all().find(|r| r.storage == resource.storage && r.storage_version).unwrap_or(resource)
    }

    /// Resources served at one group-version, in discovery order.
    pub fn in_group_version<'a>(
        &self,
        group: &'a str,
        version: &'a str,
    ) -> impl Iterator<Item = &'static ResourceType> + use<'a> {
        self.all().filter(move |r| r.group == group && r.version == version)
    }

    /// Served groups in discovery order, each with its versions (preferred first). The core group is first.
    pub fn groups(&self) -> Vec<ServedGroup> {
        let mut groups: Vec<ServedGroup> = Vec::new();
        for r in self.all() {
            match groups.iter_mut().find(|g| g.name == r.group) {
                Some(g) => {
                    if !g.versions.contains(&r.version) {
                        if r.preferred { g.versions.insert(0, r.version) } else { g.versions.push(r.version) }
                    }
                }
                None => groups.push(ServedGroup { name: r.group, versions: vec![r.version] }),
            }
        }
        groups
    }
}

/// A resource type a CustomResourceDefinition serves, as owned data.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CustomResourceType {
    /// API group.
    pub group: String,
    /// Version.
    pub version: String,
    /// Kind.
    pub kind: String,
    /// Plural resource name.
    pub plural: String,
    /// Singular name.
    pub singular: String,
    /// Short names.
    pub short_names: Vec<String>,
    /// Categories.
    pub categories: Vec<String>,
    /// Whether objects live in a namespace.
    pub namespaced: bool,
    /// `status` and/or `scale`.
    pub subresources: Vec<Subresource>,
    /// Whether this version is the one written to storage.
    pub storage_version: bool,
    /// Whether this version is the group's preferred one.
    pub preferred: bool,
}

/// Turns a custom resource type into a `&'static` one, reusing the one made earlier for an equal
/// definition. Served types are handed out as `&'static` so that handlers and watches can hold them without
/// reference counting; interning bounds what is kept to the distinct definitions a process ever serves.
fn intern(custom: &CustomResourceType) -> &'static ResourceType {
    static INTERNED: OnceLock<Mutex<HashMap<CustomResourceType, &'static ResourceType>>> = OnceLock::new();
    let mut interned = match INTERNED.get_or_init(Default::default).lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    };
    if let Some(existing) = interned.get(custom) {
        return existing;
    }
    let leak = |s: &str| -> &'static str { Box::leak(s.to_string().into_boxed_str()) };
    let leak_all = |list: &[String]| -> &'static [&'static str] {
        Box::leak(list.iter().map(|s| leak(s)).collect::<Vec<_>>().into_boxed_slice())
    };
    let group = leak(&custom.group);
    let plural = leak(&custom.plural);
    let resource: &'static ResourceType = Box::leak(Box::new(ResourceType {
        group,
        version: leak(&custom.version),
        kind: leak(&custom.kind),
        plural,
        singular: leak(&custom.singular),
        short_names: leak_all(&custom.short_names),
        categories: leak_all(&custom.categories),
        namespaced: custom.namespaced,
        subresources: Box::leak(custom.subresources.clone().into_boxed_slice()),
        storage: (group, plural),
        storage_version: custom.storage_version,
        preferred: custom.preferred,
        custom: true,
    }));
    interned.insert(custom.clone(), resource);
    resource
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_resource_is_unique_per_group_version() {
        let mut seen = std::collections::HashSet::new();
        for r in BUILT_IN {
            assert!(seen.insert((r.group, r.version, r.plural)), "{} listed twice", r.plural);
        }
    }

    #[test]
    fn every_storage_location_has_exactly_one_storage_version() {
        let registry = Registry::built_in();
        for r in BUILT_IN {
            let count = BUILT_IN.iter().filter(|o| o.storage == r.storage && o.storage_version).count();
            assert_eq!(count, 1, "{} has {count} storage versions", r.qualified_resource());
            assert_eq!(registry.storage_type(r).storage, r.storage);
        }
    }

    #[test]
    fn autoscaling_prefers_v2() {
        let groups = Registry::built_in().groups();
        let autoscaling = groups.iter().find(|g| g.name == "autoscaling").expect("autoscaling is served");
        assert_eq!(autoscaling.versions, vec!["v2", "v1"]);
        assert_eq!(groups[0].name, "");
    }

    #[test]
    fn keys_name_the_group_and_namespace() {
        let registry = Registry::built_in();
        let deploy = registry.by_plural("apps", "v1", "deployments").expect("deployments");
        assert_eq!(deploy.key(Some("default"), "web"), "/registry/apps/deployments/default/web");
        let pods = registry.by_plural("", "v1", "pods").expect("pods");
        assert_eq!(pods.namespace_prefix(None), "/registry/core/pods/");
        let nodes = registry.by_plural("", "v1", "nodes").expect("nodes");
        assert_eq!(nodes.key(Some("ignored"), "n1"), "/registry/core/nodes/n1");
        let events = registry.by_plural("events.k8s.io", "v1", "events").expect("events");
        assert_eq!(events.key_prefix(), "/registry/core/events/");
    }

    fn widget(version: &str, storage: bool) -> CustomResourceType {
        CustomResourceType {
            group: "example.com".into(),
            version: version.into(),
            kind: "Widget".into(),
            plural: "widgets".into(),
            singular: "widget".into(),
            short_names: vec!["wd".into()],
            categories: vec!["all".into()],
            namespaced: true,
            subresources: vec![Subresource::Status],
            storage_version: storage,
            preferred: storage,
        }
    }

    #[test]
    fn custom_types_are_served_beside_the_built_in_ones_and_replaced_as_a_whole() {
        let registry = Registry::built_in();
        assert!(registry.by_plural("example.com", "v1", "widgets").is_none());
        registry.set_custom(&[widget("v1", true), widget("v1beta1", false)]);
        let v1 = registry.by_plural("example.com", "v1", "widgets").expect("served");
        assert!(v1.custom && v1.namespaced && v1.has_subresource(Subresource::Status));
        assert_eq!(v1.key(Some("default"), "a"), "/registry/example.com/widgets/default/a");
        let beta = registry.by_kind("example.com", "v1beta1", "Widget").expect("served");
        assert!(std::ptr::eq(registry.storage_type(beta), v1));
        let groups = registry.groups();
        let group = groups.iter().find(|g| g.name == "example.com").expect("group listed");
        assert_eq!(group.versions, vec!["v1", "v1beta1"]);
        assert!(registry.by_plural("apps", "v1", "deployments").is_some());
        registry.set_custom(&[]);
        assert!(registry.by_plural("example.com", "v1", "widgets").is_none());
    }

    #[test]
    fn an_equal_definition_is_interned_once() {
        let registry = Registry::built_in();
        registry.set_custom(&[widget("v2", true)]);
        let first = registry.by_plural("example.com", "v2", "widgets").expect("served");
        registry.set_custom(&[widget("v2", true)]);
        let second = registry.by_plural("example.com", "v2", "widgets").expect("served");
        assert!(std::ptr::eq(first, second));
    }
}
