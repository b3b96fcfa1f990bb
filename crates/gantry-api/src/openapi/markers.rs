//! The list and patch markers of the Kubernetes API types, which `k8s-openapi`'s schemas do not carry.
//!
//! Each entry is `(schema, property, markers)`, with the markers written as in the Go types of k8s.io/api
//! and k8s.io/apimachinery (`+patchMergeKey=name +patchStrategy=merge +listType=map +listMapKey=name`). An
//! empty property marks the schema itself (`+structType=atomic`). The table covers every type reachable
//! from the kinds Gantry serves; the tests check that each entry names a property of a served schema.
//!
//! They become the extensions kube-apiserver publishes: `x-kubernetes-patch-merge-key`,
//! `x-kubernetes-patch-strategy`, `x-kubernetes-list-type`, `x-kubernetes-list-map-keys` and
//! `x-kubernetes-map-type`. Client-side `kubectl apply` builds its strategic merge patches from the first
//! two, so a list missing them is sent whole and replaces the server's list.

use serde_json::{Value, json};

/// Sorted by schema, then property, so that a schema's entries are found by binary search.
pub(super) static MARKERS: &[(&str, &str, &str)] = &[
    (
        "io.k8s.api.apps.v1.DaemonSetStatus",
        "conditions",
        "+patchMergeKey=type +patchStrategy=merge +listType=map +listMapKey=type",
    ),
    ("io.k8s.api.apps.v1.DeploymentSpec", "strategy", "+patchStrategy=retainKeys"),
    (
        "io.k8s.api.apps.v1.DeploymentStatus",
        "conditions",
        "+patchMergeKey=type +patchStrategy=merge +listType=map +listMapKey=type",
    ),
    (
        "io.k8s.api.apps.v1.ReplicaSetStatus",
        "conditions",
        "+patchMergeKey=type +patchStrategy=merge +listType=map +listMapKey=type",
    ),
    ("io.k8s.api.apps.v1.StatefulSetSpec", "volumeClaimTemplates", "+listType=atomic"),
    (
        "io.k8s.api.apps.v1.StatefulSetStatus",
        "conditions",
        "+patchMergeKey=type +patchStrategy=merge +listType=map +listMapKey=type",
    ),
    ("io.k8s.api.autoscaling.v1.CrossVersionObjectReference", "", "+structType=atomic"),
    ("io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerSpec", "metrics", "+listType=atomic"),
    (
        "io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerStatus",
        "conditions",
        "+patchMergeKey=type +patchStrategy=merge +listType=map +listMapKey=type",
    ),
    ("io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerStatus", "currentMetrics", "+listType=atomic"),
    ("io.k8s.api.batch.v1.CronJobStatus", "active", "+listType=atomic"),
    ("io.k8s.api.batch.v1.JobStatus", "conditions", "+patchMergeKey=type +patchStrategy=merge +listType=atomic"),
    ("io.k8s.api.batch.v1.PodFailurePolicy", "rules", "+listType=atomic"),
    ("io.k8s.api.batch.v1.PodFailurePolicyOnExitCodesRequirement", "values", "+listType=set"),
    ("io.k8s.api.batch.v1.PodFailurePolicyRule", "onPodConditions", "+listType=atomic"),
    ("io.k8s.api.batch.v1.SuccessPolicy", "rules", "+listType=atomic"),
    ("io.k8s.api.batch.v1.UncountedTerminatedPods", "failed", "+listType=set"),
    ("io.k8s.api.batch.v1.UncountedTerminatedPods", "succeeded", "+listType=set"),
    ("io.k8s.api.core.v1.Capabilities", "add", "+listType=atomic"),
    ("io.k8s.api.core.v1.Capabilities", "drop", "+listType=atomic"),
    ("io.k8s.api.core.v1.ConfigMapKeySelector", "", "+structType=atomic"),
    ("io.k8s.api.core.v1.ConfigMapProjection", "items", "+listType=atomic"),
    ("io.k8s.api.core.v1.ConfigMapVolumeSource", "items", "+listType=atomic"),
    ("io.k8s.api.core.v1.Container", "args", "+listType=atomic"),
    ("io.k8s.api.core.v1.Container", "command", "+listType=atomic"),
    ("io.k8s.api.core.v1.Container", "env", "+patchMergeKey=name +patchStrategy=merge +listType=map +listMapKey=name"),
    ("io.k8s.api.core.v1.Container", "envFrom", "+listType=atomic"),
    (
        "io.k8s.api.core.v1.Container",
        "ports",
        "+patchMergeKey=containerPort +patchStrategy=merge +listType=map +listMapKey=containerPort +listMapKey=protocol",
    ),
    ("io.k8s.api.core.v1.Container", "resizePolicy", "+listType=atomic"),
    ("io.k8s.api.core.v1.Container", "restartPolicyRules", "+listType=atomic"),
    (
        "io.k8s.api.core.v1.Container",
        "volumeDevices",
        "+patchMergeKey=devicePath +patchStrategy=merge +listType=map +listMapKey=devicePath",
    ),
    (
        "io.k8s.api.core.v1.Container",
        "volumeMounts",
        "+patchMergeKey=mountPath +patchStrategy=merge +listType=map +listMapKey=mountPath",
    ),
    ("io.k8s.api.core.v1.ContainerImage", "names", "+listType=atomic"),
    ("io.k8s.api.core.v1.ContainerRestartRuleOnExitCodes", "values", "+listType=set"),
    (
        "io.k8s.api.core.v1.ContainerStatus",
        "allocatedResourcesStatus",
        "+patchMergeKey=name +patchStrategy=merge +listType=map +listMapKey=name",
    ),
    (
        "io.k8s.api.core.v1.ContainerStatus",
        "volumeMounts",
        "+patchMergeKey=mountPath +patchStrategy=merge +listType=map +listMapKey=mountPath",
    ),
    ("io.k8s.api.core.v1.DownwardAPIProjection", "items", "+listType=atomic"),
    ("io.k8s.api.core.v1.DownwardAPIVolumeSource", "items", "+listType=atomic"),
    ("io.k8s.api.core.v1.EndpointAddress", "", "+structType=atomic"),
    ("io.k8s.api.core.v1.EndpointPort", "", "+structType=atomic"),
    ("io.k8s.api.core.v1.EndpointSubset", "addresses", "+listType=atomic"),
    ("io.k8s.api.core.v1.EndpointSubset", "notReadyAddresses", "+listType=atomic"),
    ("io.k8s.api.core.v1.EndpointSubset", "ports", "+listType=atomic"),
    ("io.k8s.api.core.v1.Endpoints", "subsets", "+listType=atomic"),
    ("io.k8s.api.core.v1.ExecAction", "command", "+listType=atomic"),
    ("io.k8s.api.core.v1.FileKeySelector", "", "+structType=atomic"),
    ("io.k8s.api.core.v1.HostAlias", "hostnames", "+listType=atomic"),
    ("io.k8s.api.core.v1.LimitRangeSpec", "limits", "+listType=atomic"),
    ("io.k8s.api.core.v1.LinuxContainerUser", "supplementalGroups", "+listType=atomic"),
    ("io.k8s.api.core.v1.LoadBalancerIngress", "ports", "+listType=atomic"),
    ("io.k8s.api.core.v1.LoadBalancerStatus", "ingress", "+listType=atomic"),
    ("io.k8s.api.core.v1.LocalObjectReference", "", "+structType=atomic"),
    ("io.k8s.api.core.v1.NamespaceSpec", "finalizers", "+listType=atomic"),
    (
        "io.k8s.api.core.v1.NamespaceStatus",
        "conditions",
        "+patchMergeKey=type +patchStrategy=merge +listType=map +listMapKey=type",
    ),
    ("io.k8s.api.core.v1.NodeSelector", "", "+structType=atomic"),
    ("io.k8s.api.core.v1.NodeSelector", "nodeSelectorTerms", "+listType=atomic"),
    ("io.k8s.api.core.v1.NodeSelectorRequirement", "values", "+listType=atomic"),
    ("io.k8s.api.core.v1.NodeSelectorTerm", "", "+structType=atomic"),
    ("io.k8s.api.core.v1.NodeSelectorTerm", "matchExpressions", "+listType=atomic"),
    ("io.k8s.api.core.v1.NodeSelectorTerm", "matchFields", "+listType=atomic"),
    ("io.k8s.api.core.v1.NodeSpec", "podCIDRs", "+patchStrategy=merge +listType=set"),
    ("io.k8s.api.core.v1.NodeSpec", "taints", "+listType=atomic"),
    (
        "io.k8s.api.core.v1.NodeStatus",
        "addresses",
        "+patchMergeKey=type +patchStrategy=merge +listType=map +listMapKey=type",
    ),
    (
        "io.k8s.api.core.v1.NodeStatus",
        "conditions",
        "+patchMergeKey=type +patchStrategy=merge +listType=map +listMapKey=type",
    ),
    ("io.k8s.api.core.v1.NodeStatus", "declaredFeatures", "+listType=atomic"),
    ("io.k8s.api.core.v1.NodeStatus", "images", "+listType=atomic"),
    ("io.k8s.api.core.v1.NodeStatus", "runtimeHandlers", "+listType=atomic"),
    ("io.k8s.api.core.v1.NodeStatus", "volumesAttached", "+listType=atomic"),
    ("io.k8s.api.core.v1.NodeStatus", "volumesInUse", "+listType=atomic"),
    ("io.k8s.api.core.v1.ObjectFieldSelector", "", "+structType=atomic"),
    ("io.k8s.api.core.v1.ObjectReference", "", "+structType=atomic"),
    ("io.k8s.api.core.v1.PersistentVolumeClaimSpec", "accessModes", "+listType=atomic"),
    ("io.k8s.api.core.v1.PersistentVolumeClaimStatus", "accessModes", "+listType=atomic"),
    (
        "io.k8s.api.core.v1.PersistentVolumeClaimStatus",
        "conditions",
        "+patchMergeKey=type +patchStrategy=merge +listType=map +listMapKey=type",
    ),
    ("io.k8s.api.core.v1.PersistentVolumeSpec", "accessModes", "+listType=atomic"),
    ("io.k8s.api.core.v1.PersistentVolumeSpec", "claimRef", "+structType=granular"),
    ("io.k8s.api.core.v1.PersistentVolumeSpec", "mountOptions", "+listType=atomic"),
    ("io.k8s.api.core.v1.PodAffinity", "requiredDuringSchedulingIgnoredDuringExecution", "+listType=atomic"),
    ("io.k8s.api.core.v1.PodAffinityTerm", "matchLabelKeys", "+listType=atomic"),
    ("io.k8s.api.core.v1.PodAffinityTerm", "mismatchLabelKeys", "+listType=atomic"),
    ("io.k8s.api.core.v1.PodAffinityTerm", "namespaces", "+listType=atomic"),
    ("io.k8s.api.core.v1.PodAntiAffinity", "requiredDuringSchedulingIgnoredDuringExecution", "+listType=atomic"),
    ("io.k8s.api.core.v1.PodExtendedResourceClaimStatus", "requestMappings", "+listType=atomic"),
    ("io.k8s.api.core.v1.PodSecurityContext", "supplementalGroups", "+listType=atomic"),
    ("io.k8s.api.core.v1.PodSecurityContext", "sysctls", "+listType=atomic"),
    (
        "io.k8s.api.core.v1.PodSpec",
        "containers",
        "+patchMergeKey=name +patchStrategy=merge +listType=map +listMapKey=name",
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "ephemeralContainers",
        "+patchMergeKey=name +patchStrategy=merge +listType=map +listMapKey=name",
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "hostAliases",
        "+patchMergeKey=ip +patchStrategy=merge +listType=map +listMapKey=ip",
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "imagePullSecrets",
        "+patchMergeKey=name +patchStrategy=merge +listType=map +listMapKey=name",
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "initContainers",
        "+patchMergeKey=name +patchStrategy=merge +listType=map +listMapKey=name",
    ),
    ("io.k8s.api.core.v1.PodSpec", "readinessGates", "+listType=atomic"),
    (
        "io.k8s.api.core.v1.PodSpec",
        "resourceClaims",
        "+patchMergeKey=name +patchStrategy=merge,retainKeys +listType=map +listMapKey=name",
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "schedulingGates",
        "+patchMergeKey=name +patchStrategy=merge +listType=map +listMapKey=name",
    ),
    ("io.k8s.api.core.v1.PodSpec", "tolerations", "+listType=atomic"),
    (
        "io.k8s.api.core.v1.PodSpec",
        "topologySpreadConstraints",
        "+patchMergeKey=topologyKey +patchStrategy=merge +listType=map +listMapKey=topologyKey +listMapKey=whenUnsatisfiable",
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "volumes",
        "+patchMergeKey=name +patchStrategy=merge,retainKeys +listType=map +listMapKey=name",
    ),
    (
        "io.k8s.api.core.v1.PodStatus",
        "conditions",
        "+patchMergeKey=type +patchStrategy=merge +listType=map +listMapKey=type",
    ),
    ("io.k8s.api.core.v1.PodStatus", "containerStatuses", "+listType=atomic"),
    ("io.k8s.api.core.v1.PodStatus", "ephemeralContainerStatuses", "+listType=atomic"),
    ("io.k8s.api.core.v1.PodStatus", "hostIPs", "+patchStrategy=merge +patchMergeKey=ip +listType=atomic"),
    ("io.k8s.api.core.v1.PodStatus", "initContainerStatuses", "+listType=atomic"),
    ("io.k8s.api.core.v1.PodStatus", "podIPs", "+patchStrategy=merge +patchMergeKey=ip +listType=map +listMapKey=ip"),
    (
        "io.k8s.api.core.v1.PodStatus",
        "resourceClaimStatuses",
        "+patchMergeKey=name +patchStrategy=merge,retainKeys +listType=map +listMapKey=name",
    ),
    ("io.k8s.api.core.v1.ProjectedVolumeSource", "sources", "+listType=atomic"),
    ("io.k8s.api.core.v1.ResourceFieldSelector", "", "+structType=atomic"),
    ("io.k8s.api.core.v1.ResourceQuotaSpec", "scopes", "+listType=atomic"),
    ("io.k8s.api.core.v1.ResourceRequirements", "claims", "+listType=map +listMapKey=name"),
    ("io.k8s.api.core.v1.ResourceStatus", "resources", "+listType=map +listMapKey=resourceID"),
    ("io.k8s.api.core.v1.ScopeSelector", "", "+structType=atomic"),
    ("io.k8s.api.core.v1.ScopeSelector", "matchExpressions", "+listType=atomic"),
    ("io.k8s.api.core.v1.ScopedResourceSelectorRequirement", "values", "+listType=atomic"),
    ("io.k8s.api.core.v1.SecretKeySelector", "", "+structType=atomic"),
    ("io.k8s.api.core.v1.SecretProjection", "items", "+listType=atomic"),
    ("io.k8s.api.core.v1.SecretReference", "", "+structType=atomic"),
    ("io.k8s.api.core.v1.SecretVolumeSource", "items", "+listType=atomic"),
    ("io.k8s.api.core.v1.ServiceAccount", "imagePullSecrets", "+listType=atomic"),
    (
        "io.k8s.api.core.v1.ServiceAccount",
        "secrets",
        "+patchMergeKey=name +patchStrategy=merge +listType=map +listMapKey=name",
    ),
    ("io.k8s.api.core.v1.ServiceSpec", "clusterIPs", "+listType=atomic"),
    ("io.k8s.api.core.v1.ServiceSpec", "externalIPs", "+listType=atomic"),
    ("io.k8s.api.core.v1.ServiceSpec", "ipFamilies", "+listType=atomic"),
    ("io.k8s.api.core.v1.ServiceSpec", "loadBalancerSourceRanges", "+listType=atomic"),
    (
        "io.k8s.api.core.v1.ServiceSpec",
        "ports",
        "+patchMergeKey=port +patchStrategy=merge +listType=map +listMapKey=port +listMapKey=protocol",
    ),
    ("io.k8s.api.core.v1.TopologySelectorLabelRequirement", "values", "+listType=atomic"),
    ("io.k8s.api.core.v1.TopologySelectorTerm", "", "+structType=atomic"),
    ("io.k8s.api.core.v1.TopologySelectorTerm", "matchLabelExpressions", "+listType=atomic"),
    ("io.k8s.api.core.v1.TopologySpreadConstraint", "matchLabelKeys", "+listType=atomic"),
    ("io.k8s.api.core.v1.TypedLocalObjectReference", "", "+structType=atomic"),
    ("io.k8s.api.discovery.v1.Endpoint", "addresses", "+listType=set"),
    ("io.k8s.api.discovery.v1.EndpointHints", "forNodes", "+listType=atomic"),
    ("io.k8s.api.discovery.v1.EndpointHints", "forZones", "+listType=atomic"),
    ("io.k8s.api.discovery.v1.EndpointPort", "", "+structType=atomic"),
    ("io.k8s.api.discovery.v1.EndpointSlice", "endpoints", "+listType=atomic"),
    ("io.k8s.api.discovery.v1.EndpointSlice", "ports", "+listType=atomic"),
    ("io.k8s.api.networking.v1.IngressLoadBalancerIngress", "ports", "+listType=atomic"),
    ("io.k8s.api.networking.v1.IngressLoadBalancerStatus", "ingress", "+listType=atomic"),
    ("io.k8s.api.networking.v1.IngressSpec", "rules", "+listType=atomic"),
    ("io.k8s.api.networking.v1.IngressSpec", "tls", "+listType=atomic"),
    ("io.k8s.api.networking.v1.NetworkPolicyEgressRule", "ports", "+listType=atomic"),
    ("io.k8s.api.networking.v1.NetworkPolicyEgressRule", "to", "+listType=atomic"),
    ("io.k8s.api.networking.v1.NetworkPolicyIngressRule", "from", "+listType=atomic"),
    ("io.k8s.api.networking.v1.NetworkPolicyIngressRule", "ports", "+listType=atomic"),
    ("io.k8s.api.networking.v1.NetworkPolicySpec", "egress", "+listType=atomic"),
    ("io.k8s.api.networking.v1.NetworkPolicySpec", "ingress", "+listType=atomic"),
    ("io.k8s.api.networking.v1.NetworkPolicySpec", "policyTypes", "+listType=atomic"),
    ("io.k8s.api.networking.v1.ServiceBackendPort", "", "+structType=atomic"),
    ("io.k8s.api.rbac.v1.ClusterRole", "rules", "+listType=atomic"),
    ("io.k8s.api.rbac.v1.ClusterRoleBinding", "subjects", "+listType=atomic"),
    ("io.k8s.api.rbac.v1.PolicyRule", "apiGroups", "+listType=atomic"),
    ("io.k8s.api.rbac.v1.PolicyRule", "nonResourceURLs", "+listType=atomic"),
    ("io.k8s.api.rbac.v1.PolicyRule", "resourceNames", "+listType=atomic"),
    ("io.k8s.api.rbac.v1.PolicyRule", "resources", "+listType=atomic"),
    ("io.k8s.api.rbac.v1.PolicyRule", "verbs", "+listType=atomic"),
    ("io.k8s.api.rbac.v1.Role", "rules", "+listType=atomic"),
    ("io.k8s.api.rbac.v1.RoleBinding", "subjects", "+listType=atomic"),
    ("io.k8s.api.rbac.v1.RoleRef", "", "+structType=atomic"),
    ("io.k8s.api.rbac.v1.Subject", "", "+structType=atomic"),
    ("io.k8s.api.storage.v1.StorageClass", "allowedTopologies", "+listType=atomic"),
    ("io.k8s.api.storage.v1.StorageClass", "mountOptions", "+listType=atomic"),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.APIGroup", "serverAddressByClientCIDRs", "+listType=atomic"),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.APIGroup", "versions", "+listType=atomic"),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.APIGroupList", "groups", "+listType=atomic"),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.APIResource", "categories", "+listType=atomic"),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.APIResource", "shortNames", "+listType=atomic"),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.APIResourceList", "resources", "+listType=atomic"),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.APIVersions", "serverAddressByClientCIDRs", "+listType=atomic"),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.APIVersions", "versions", "+listType=atomic"),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions", "dryRun", "+listType=atomic"),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector", "", "+structType=atomic"),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector", "matchExpressions", "+listType=atomic"),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelectorRequirement", "values", "+listType=atomic"),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", "finalizers", "+patchStrategy=merge +listType=set"),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", "managedFields", "+listType=atomic"),
    (
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
        "ownerReferences",
        "+patchMergeKey=uid +patchStrategy=merge +listType=map +listMapKey=uid",
    ),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.OwnerReference", "", "+structType=atomic"),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.StatusDetails", "causes", "+listType=atomic"),
];

/// One marker turned into the extension it stands for.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Extension<'a> {
    /// `x-kubernetes-patch-merge-key`.
    PatchMergeKey(&'a str),
    /// `x-kubernetes-patch-strategy`.
    PatchStrategy(&'a str),
    /// `x-kubernetes-list-type`.
    ListType(&'a str),
    /// One of `x-kubernetes-list-map-keys`, in order.
    ListMapKey(&'a str),
    /// `x-kubernetes-map-type` (from `+mapType` or `+structType`).
    MapType(&'a str),
}

/// Parses one entry's markers; `None` for a marker this module does not know.
pub(super) fn parse(markers: &str) -> Option<Vec<Extension<'_>>> {
    markers
        .split_whitespace()
        .map(|marker| {
            let (name, value) = marker.strip_prefix('+')?.split_once('=')?;
            Some(match name {
                "patchMergeKey" => Extension::PatchMergeKey(value),
                "patchStrategy" => Extension::PatchStrategy(value),
                "listType" => Extension::ListType(value),
                "listMapKey" => Extension::ListMapKey(value),
                "mapType" | "structType" => Extension::MapType(value),
                _ => return None,
            })
        })
        .collect()
}

/// The entries of one schema.
fn entries_of(schema: &str) -> &'static [(&'static str, &'static str, &'static str)] {
    let start = MARKERS.partition_point(|(s, _, _)| *s < schema);
    let end = start + MARKERS[start..].partition_point(|(s, _, _)| *s == schema);
    &MARKERS[start..end]
}

/// Adds the extensions of the schema named `name` to it and to its properties.
pub(super) fn apply(name: &str, schema: &mut Value) {
    for (_, property, markers) in entries_of(name) {
        let target = if property.is_empty() {
            Some(&mut *schema)
        } else {
            schema.get_mut("properties").and_then(|p| p.get_mut(*property))
        };
        let (Some(Value::Object(target)), Some(extensions)) = (target, parse(markers)) else { continue };
        let mut map_keys = Vec::new();
        for extension in extensions {
            let (key, value) = match extension {
                Extension::PatchMergeKey(v) => ("x-kubernetes-patch-merge-key", v),
                Extension::PatchStrategy(v) => ("x-kubernetes-patch-strategy", v),
                Extension::ListType(v) => ("x-kubernetes-list-type", v),
                Extension::MapType(v) => ("x-kubernetes-map-type", v),
                Extension::ListMapKey(v) => {
                    map_keys.push(v);
                    continue;
                }
            };
            target.insert(key.to_string(), json!(value));
        }
        if !map_keys.is_empty() {
            target.insert("x-kubernetes-list-map-keys".to_string(), json!(map_keys));
        }
    }
}
