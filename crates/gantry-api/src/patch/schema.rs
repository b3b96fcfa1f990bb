//! The strategic-merge facts of the built-in kinds: which field of which type merges, and by which key.
//!
//! The facts are those of the Kubernetes v1.35 API (the Go struct tags `patchStrategy` / `patchMergeKey` of
//! k8s.io/api, published in its OpenAPI as `x-kubernetes-patch-strategy` / `x-kubernetes-patch-merge-key`).
//! They are written as a small tree of types: each [`TypeSchema`] lists only the fields that either carry a
//! strategy or lead to a type that does, so `PodSpec` is written once and reached from every kind that embeds
//! a pod template. A field missing from its type's list has the default strategy: objects merge key by key,
//! lists and scalars are replaced whole.
//!
//! Kinds without an entry here (custom resources) cannot be patched with a strategic merge patch, as in
//! kube-apiserver.

use crate::registry::GroupKind;

/// How a field's live value and the patch's value are combined.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Strategy {
    /// Objects merge key by key; lists and scalars from the patch replace the live value.
    #[default]
    Default,
    /// `patchStrategy: replace` on an object field: the patch's object replaces the live one whole.
    Replace,
    /// `patchStrategy: merge` on a list of scalars: the union of both lists, without duplicates.
    MergeSet,
    /// `patchStrategy: merge` with `patchMergeKey`: a list of objects whose elements are matched by this key.
    MergeByKey(&'static str),
}

impl Strategy {
    /// Whether a list under this strategy is merged element by element rather than replaced.
    pub fn merges_lists(self) -> bool {
        matches!(self, Strategy::MergeSet | Strategy::MergeByKey(_))
    }

    /// The merge key, for lists of objects.
    pub fn merge_key(self) -> Option<&'static str> {
        match self {
            Strategy::MergeByKey(key) => Some(key),
            _ => None,
        }
    }
}

/// One field of a [`TypeSchema`].
#[derive(Debug)]
pub struct Field {
    /// The JSON name of the field.
    pub name: &'static str,
    /// How the field is patched.
    pub strategy: Strategy,
    /// Whether the field also carries the `retainKeys` strategy. It only tells clients to send `$retainKeys`
    /// (kubectl does so for `volumes` and a Deployment's `strategy`); applying a patch honours `$retainKeys`
    /// wherever it appears, as kube-apiserver does.
    pub retain_keys: bool,
    /// The type of the field's value, or of each element for a list; `None` when nothing below has facts.
    pub schema: Option<&'static TypeSchema>,
}

/// A type of the API, with the fields that matter to a strategic merge patch.
#[derive(Debug)]
pub struct TypeSchema {
    /// The OpenAPI definition name, e.g. `io.k8s.api.core.v1.PodSpec`.
    pub name: &'static str,
    /// The fields that carry a strategy or lead to a type that does.
    pub fields: &'static [Field],
}

impl TypeSchema {
    /// The facts of one field, if it has any.
    pub fn field(&self, name: &str) -> Option<&'static Field> {
        // The tables are 'static, so the returned reference may outlive `self`'s borrow.
        let fields: &'static [Field] = self.fields;
        fields.iter().find(|f| f.name == name)
    }
}

const fn object(name: &'static str, schema: &'static TypeSchema) -> Field {
    Field { name, strategy: Strategy::Default, retain_keys: false, schema: Some(schema) }
}

const fn atomic_list(name: &'static str, schema: &'static TypeSchema) -> Field {
    Field { name, strategy: Strategy::Default, retain_keys: false, schema: Some(schema) }
}

const fn merge_by(name: &'static str, key: &'static str) -> Field {
    Field { name, strategy: Strategy::MergeByKey(key), retain_keys: false, schema: None }
}

const fn merge_by_into(name: &'static str, key: &'static str, schema: &'static TypeSchema) -> Field {
    Field { name, strategy: Strategy::MergeByKey(key), retain_keys: false, schema: Some(schema) }
}

const fn merge_set(name: &'static str) -> Field {
    Field { name, strategy: Strategy::MergeSet, retain_keys: false, schema: None }
}

const fn retain_keys(field: Field) -> Field {
    Field { retain_keys: true, ..field }
}

const fn merge_by_type(name: &'static str) -> Field {
    merge_by(name, "type")
}

// meta/v1

/// `ObjectMeta`, present in every kind.
pub static OBJECT_META: TypeSchema = TypeSchema {
    name: "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
    fields: &[merge_set("finalizers"), merge_by("ownerReferences", "uid")],
};

/// A kind whose only strategic facts are those of its `metadata`.
pub static OBJECT: TypeSchema =
    TypeSchema { name: "object with ObjectMeta", fields: &[object("metadata", &OBJECT_META)] };

// core/v1: pods and pod templates

const CONTAINER_FIELDS: &[Field] = &[
    merge_by("env", "name"),
    merge_by("ports", "containerPort"),
    merge_by("volumeDevices", "devicePath"),
    merge_by("volumeMounts", "mountPath"),
];

/// `Container` (also the element type of `initContainers`).
pub static CONTAINER: TypeSchema = TypeSchema { name: "io.k8s.api.core.v1.Container", fields: CONTAINER_FIELDS };

/// `EphemeralContainer`: the same list facts as `Container`.
pub static EPHEMERAL_CONTAINER: TypeSchema =
    TypeSchema { name: "io.k8s.api.core.v1.EphemeralContainer", fields: CONTAINER_FIELDS };

/// `PersistentVolumeClaimTemplate`, inside an ephemeral volume.
pub static PERSISTENT_VOLUME_CLAIM_TEMPLATE: TypeSchema = TypeSchema {
    name: "io.k8s.api.core.v1.PersistentVolumeClaimTemplate",
    fields: &[object("metadata", &OBJECT_META)],
};

/// `EphemeralVolumeSource`.
pub static EPHEMERAL_VOLUME_SOURCE: TypeSchema = TypeSchema {
    name: "io.k8s.api.core.v1.EphemeralVolumeSource",
    fields: &[object("volumeClaimTemplate", &PERSISTENT_VOLUME_CLAIM_TEMPLATE)],
};

/// `Volume`.
pub static VOLUME: TypeSchema =
    TypeSchema { name: "io.k8s.api.core.v1.Volume", fields: &[object("ephemeral", &EPHEMERAL_VOLUME_SOURCE)] };

/// `PodSpec`, shared by pods and by every pod template.
pub static POD_SPEC: TypeSchema = TypeSchema {
    name: "io.k8s.api.core.v1.PodSpec",
    fields: &[
        merge_by_into("containers", "name", &CONTAINER),
        merge_by_into("ephemeralContainers", "name", &EPHEMERAL_CONTAINER),
        merge_by("hostAliases", "ip"),
        merge_by("imagePullSecrets", "name"),
        merge_by_into("initContainers", "name", &CONTAINER),
        retain_keys(merge_by("resourceClaims", "name")),
        merge_by("schedulingGates", "name"),
        merge_by("topologySpreadConstraints", "topologyKey"),
        retain_keys(merge_by_into("volumes", "name", &VOLUME)),
    ],
};

/// `ContainerStatus`.
pub static CONTAINER_STATUS: TypeSchema = TypeSchema {
    name: "io.k8s.api.core.v1.ContainerStatus",
    fields: &[merge_by("allocatedResourcesStatus", "name"), merge_by("volumeMounts", "mountPath")],
};

/// `PodStatus`.
pub static POD_STATUS: TypeSchema = TypeSchema {
    name: "io.k8s.api.core.v1.PodStatus",
    fields: &[
        merge_by_type("conditions"),
        atomic_list("containerStatuses", &CONTAINER_STATUS),
        atomic_list("ephemeralContainerStatuses", &CONTAINER_STATUS),
        merge_by("hostIPs", "ip"),
        atomic_list("initContainerStatuses", &CONTAINER_STATUS),
        merge_by("podIPs", "ip"),
        retain_keys(merge_by("resourceClaimStatuses", "name")),
    ],
};

/// `Pod`.
pub static POD: TypeSchema = TypeSchema {
    name: "io.k8s.api.core.v1.Pod",
    fields: &[object("metadata", &OBJECT_META), object("spec", &POD_SPEC), object("status", &POD_STATUS)],
};

/// `PodTemplateSpec`, embedded by the workload kinds.
pub static POD_TEMPLATE_SPEC: TypeSchema = TypeSchema {
    name: "io.k8s.api.core.v1.PodTemplateSpec",
    fields: &[object("metadata", &OBJECT_META), object("spec", &POD_SPEC)],
};

// core/v1: other kinds

/// `ServiceSpec`.
pub static SERVICE_SPEC: TypeSchema =
    TypeSchema { name: "io.k8s.api.core.v1.ServiceSpec", fields: &[merge_by("ports", "port")] };

/// `ServiceStatus`.
pub static SERVICE_STATUS: TypeSchema =
    TypeSchema { name: "io.k8s.api.core.v1.ServiceStatus", fields: &[merge_by_type("conditions")] };

/// `Service`.
pub static SERVICE: TypeSchema = TypeSchema {
    name: "io.k8s.api.core.v1.Service",
    fields: &[object("metadata", &OBJECT_META), object("spec", &SERVICE_SPEC), object("status", &SERVICE_STATUS)],
};

/// `NamespaceStatus`.
pub static NAMESPACE_STATUS: TypeSchema =
    TypeSchema { name: "io.k8s.api.core.v1.NamespaceStatus", fields: &[merge_by_type("conditions")] };

/// `Namespace`.
pub static NAMESPACE: TypeSchema = TypeSchema {
    name: "io.k8s.api.core.v1.Namespace",
    fields: &[object("metadata", &OBJECT_META), object("status", &NAMESPACE_STATUS)],
};

/// `NodeSpec`.
pub static NODE_SPEC: TypeSchema = TypeSchema { name: "io.k8s.api.core.v1.NodeSpec", fields: &[merge_set("podCIDRs")] };

/// `NodeStatus`.
pub static NODE_STATUS: TypeSchema = TypeSchema {
    name: "io.k8s.api.core.v1.NodeStatus",
    fields: &[merge_by_type("addresses"), merge_by_type("conditions")],
};

/// `Node`.
pub static NODE: TypeSchema = TypeSchema {
    name: "io.k8s.api.core.v1.Node",
    fields: &[object("metadata", &OBJECT_META), object("spec", &NODE_SPEC), object("status", &NODE_STATUS)],
};

/// `ServiceAccount`.
pub static SERVICE_ACCOUNT: TypeSchema = TypeSchema {
    name: "io.k8s.api.core.v1.ServiceAccount",
    fields: &[object("metadata", &OBJECT_META), merge_by("secrets", "name")],
};

/// `PersistentVolumeClaimStatus`.
pub static PERSISTENT_VOLUME_CLAIM_STATUS: TypeSchema =
    TypeSchema { name: "io.k8s.api.core.v1.PersistentVolumeClaimStatus", fields: &[merge_by_type("conditions")] };

/// `PersistentVolumeClaim` (also the element type of a StatefulSet's `volumeClaimTemplates`).
pub static PERSISTENT_VOLUME_CLAIM: TypeSchema = TypeSchema {
    name: "io.k8s.api.core.v1.PersistentVolumeClaim",
    fields: &[object("metadata", &OBJECT_META), object("status", &PERSISTENT_VOLUME_CLAIM_STATUS)],
};

// apps/v1

/// `DeploymentSpec`: `strategy` carries `retainKeys`, so `$retainKeys` clears `rollingUpdate` on a switch to
/// `Recreate`.
pub static DEPLOYMENT_SPEC: TypeSchema = TypeSchema {
    name: "io.k8s.api.apps.v1.DeploymentSpec",
    fields: &[
        Field { name: "strategy", strategy: Strategy::Default, retain_keys: true, schema: None },
        object("template", &POD_TEMPLATE_SPEC),
    ],
};

/// `DeploymentStatus`.
pub static DEPLOYMENT_STATUS: TypeSchema =
    TypeSchema { name: "io.k8s.api.apps.v1.DeploymentStatus", fields: &[merge_by_type("conditions")] };

/// `Deployment`.
pub static DEPLOYMENT: TypeSchema = TypeSchema {
    name: "io.k8s.api.apps.v1.Deployment",
    fields: &[object("metadata", &OBJECT_META), object("spec", &DEPLOYMENT_SPEC), object("status", &DEPLOYMENT_STATUS)],
};

/// `ReplicaSetSpec`.
pub static REPLICA_SET_SPEC: TypeSchema =
    TypeSchema { name: "io.k8s.api.apps.v1.ReplicaSetSpec", fields: &[object("template", &POD_TEMPLATE_SPEC)] };

/// `ReplicaSetStatus`.
pub static REPLICA_SET_STATUS: TypeSchema =
    TypeSchema { name: "io.k8s.api.apps.v1.ReplicaSetStatus", fields: &[merge_by_type("conditions")] };

/// `ReplicaSet`.
pub static REPLICA_SET: TypeSchema = TypeSchema {
    name: "io.k8s.api.apps.v1.ReplicaSet",
    fields: &[
        object("metadata", &OBJECT_META),
        object("spec", &REPLICA_SET_SPEC),
        object("status", &REPLICA_SET_STATUS),
    ],
};

/// `StatefulSetSpec`: `volumeClaimTemplates` is replaced whole (it has no merge strategy).
pub static STATEFUL_SET_SPEC: TypeSchema = TypeSchema {
    name: "io.k8s.api.apps.v1.StatefulSetSpec",
    fields: &[object("template", &POD_TEMPLATE_SPEC), atomic_list("volumeClaimTemplates", &PERSISTENT_VOLUME_CLAIM)],
};

/// `StatefulSetStatus`.
pub static STATEFUL_SET_STATUS: TypeSchema =
    TypeSchema { name: "io.k8s.api.apps.v1.StatefulSetStatus", fields: &[merge_by_type("conditions")] };

/// `StatefulSet`.
pub static STATEFUL_SET: TypeSchema = TypeSchema {
    name: "io.k8s.api.apps.v1.StatefulSet",
    fields: &[
        object("metadata", &OBJECT_META),
        object("spec", &STATEFUL_SET_SPEC),
        object("status", &STATEFUL_SET_STATUS),
    ],
};

/// `DaemonSetSpec`.
pub static DAEMON_SET_SPEC: TypeSchema =
    TypeSchema { name: "io.k8s.api.apps.v1.DaemonSetSpec", fields: &[object("template", &POD_TEMPLATE_SPEC)] };

/// `DaemonSetStatus`.
pub static DAEMON_SET_STATUS: TypeSchema =
    TypeSchema { name: "io.k8s.api.apps.v1.DaemonSetStatus", fields: &[merge_by_type("conditions")] };

/// `DaemonSet`.
pub static DAEMON_SET: TypeSchema = TypeSchema {
    name: "io.k8s.api.apps.v1.DaemonSet",
    fields: &[object("metadata", &OBJECT_META), object("spec", &DAEMON_SET_SPEC), object("status", &DAEMON_SET_STATUS)],
};

// batch/v1

/// `JobSpec`.
pub static JOB_SPEC: TypeSchema =
    TypeSchema { name: "io.k8s.api.batch.v1.JobSpec", fields: &[object("template", &POD_TEMPLATE_SPEC)] };

/// `JobStatus`.
pub static JOB_STATUS: TypeSchema =
    TypeSchema { name: "io.k8s.api.batch.v1.JobStatus", fields: &[merge_by_type("conditions")] };

/// `Job`.
pub static JOB: TypeSchema = TypeSchema {
    name: "io.k8s.api.batch.v1.Job",
    fields: &[object("metadata", &OBJECT_META), object("spec", &JOB_SPEC), object("status", &JOB_STATUS)],
};

/// `JobTemplateSpec`, inside a CronJob.
pub static JOB_TEMPLATE_SPEC: TypeSchema = TypeSchema {
    name: "io.k8s.api.batch.v1.JobTemplateSpec",
    fields: &[object("metadata", &OBJECT_META), object("spec", &JOB_SPEC)],
};

/// `CronJobSpec`.
pub static CRON_JOB_SPEC: TypeSchema =
    TypeSchema { name: "io.k8s.api.batch.v1.CronJobSpec", fields: &[object("jobTemplate", &JOB_TEMPLATE_SPEC)] };

/// `CronJob`.
pub static CRON_JOB: TypeSchema = TypeSchema {
    name: "io.k8s.api.batch.v1.CronJob",
    fields: &[object("metadata", &OBJECT_META), object("spec", &CRON_JOB_SPEC)],
};

// autoscaling, policy

/// `HorizontalPodAutoscalerStatus` of `autoscaling/v2` (the `autoscaling/v1` status has no conditions, so
/// the same facts serve both versions).
pub static HORIZONTAL_POD_AUTOSCALER_STATUS: TypeSchema = TypeSchema {
    name: "io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerStatus",
    fields: &[merge_by_type("conditions")],
};

/// `HorizontalPodAutoscaler`.
pub static HORIZONTAL_POD_AUTOSCALER: TypeSchema = TypeSchema {
    name: "io.k8s.api.autoscaling.v2.HorizontalPodAutoscaler",
    fields: &[object("metadata", &OBJECT_META), object("status", &HORIZONTAL_POD_AUTOSCALER_STATUS)],
};

/// `PodDisruptionBudgetSpec`: `selector` is replaced whole (`patchStrategy: replace`).
pub static POD_DISRUPTION_BUDGET_SPEC: TypeSchema = TypeSchema {
    name: "io.k8s.api.policy.v1.PodDisruptionBudgetSpec",
    fields: &[Field { name: "selector", strategy: Strategy::Replace, retain_keys: false, schema: None }],
};

/// `PodDisruptionBudgetStatus`.
pub static POD_DISRUPTION_BUDGET_STATUS: TypeSchema =
    TypeSchema { name: "io.k8s.api.policy.v1.PodDisruptionBudgetStatus", fields: &[merge_by_type("conditions")] };

/// `PodDisruptionBudget`.
pub static POD_DISRUPTION_BUDGET: TypeSchema = TypeSchema {
    name: "io.k8s.api.policy.v1.PodDisruptionBudget",
    fields: &[
        object("metadata", &OBJECT_META),
        object("spec", &POD_DISRUPTION_BUDGET_SPEC),
        object("status", &POD_DISRUPTION_BUDGET_STATUS),
    ],
};

/// The schema of each kind that accepts a strategic merge patch: every built-in kind, plus `autoscaling`
/// `Scale`, the kind served by the `scale` subresources.
pub static KINDS: &[(GroupKind, &TypeSchema)] = &[
    (gk("", "Pod"), &POD),
    (gk("", "Service"), &SERVICE),
    (gk("", "Endpoints"), &OBJECT),
    (gk("", "ConfigMap"), &OBJECT),
    (gk("", "Secret"), &OBJECT),
    (gk("", "Namespace"), &NAMESPACE),
    (gk("", "Node"), &NODE),
    (gk("", "Event"), &OBJECT),
    (gk("", "ServiceAccount"), &SERVICE_ACCOUNT),
    (gk("", "PersistentVolume"), &OBJECT),
    (gk("", "PersistentVolumeClaim"), &PERSISTENT_VOLUME_CLAIM),
    (gk("", "ResourceQuota"), &OBJECT),
    (gk("", "LimitRange"), &OBJECT),
    (gk("apps", "Deployment"), &DEPLOYMENT),
    (gk("apps", "ReplicaSet"), &REPLICA_SET),
    (gk("apps", "StatefulSet"), &STATEFUL_SET),
    (gk("apps", "DaemonSet"), &DAEMON_SET),
    (gk("apps", "ControllerRevision"), &OBJECT),
    (gk("batch", "Job"), &JOB),
    (gk("batch", "CronJob"), &CRON_JOB),
    (gk("autoscaling", "HorizontalPodAutoscaler"), &HORIZONTAL_POD_AUTOSCALER),
    (gk("autoscaling", "Scale"), &OBJECT),
    (gk("coordination.k8s.io", "Lease"), &OBJECT),
    (gk("discovery.k8s.io", "EndpointSlice"), &OBJECT),
    (gk("events.k8s.io", "Event"), &OBJECT),
    (gk("policy", "PodDisruptionBudget"), &POD_DISRUPTION_BUDGET),
    (gk("rbac.authorization.k8s.io", "Role"), &OBJECT),
    (gk("rbac.authorization.k8s.io", "RoleBinding"), &OBJECT),
    (gk("rbac.authorization.k8s.io", "ClusterRole"), &OBJECT),
    (gk("rbac.authorization.k8s.io", "ClusterRoleBinding"), &OBJECT),
    (gk("networking.k8s.io", "Ingress"), &OBJECT),
    (gk("networking.k8s.io", "IngressClass"), &OBJECT),
    (gk("networking.k8s.io", "NetworkPolicy"), &OBJECT),
    (gk("storage.k8s.io", "StorageClass"), &OBJECT),
    (gk("scheduling.k8s.io", "PriorityClass"), &OBJECT),
    (gk("apiextensions.k8s.io", "CustomResourceDefinition"), &OBJECT),
];

const fn gk(group: &'static str, kind: &'static str) -> GroupKind {
    GroupKind { group, kind }
}

/// The schema a strategic merge patch of this kind follows; `None` when the kind does not accept one.
pub fn for_kind(gk: GroupKind) -> Option<&'static TypeSchema> {
    KINDS.iter().find(|(k, _)| *k == gk).map(|(_, schema)| *schema)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::BUILT_IN;

    /// Follows a dotted path of field names from a kind's schema to a field.
    fn field_at(kind: &TypeSchema, path: &str) -> &'static Field {
        let mut schema = kind;
        let mut names = path.split('.').peekable();
        loop {
            let name = names.next().expect("a non-empty path");
            let field = schema.field(name).unwrap_or_else(|| panic!("{} has no facts for {name}", schema.name));
            if names.peek().is_none() {
                return field;
            }
            schema = field.schema.unwrap_or_else(|| panic!("{}.{name} leads nowhere", schema.name));
        }
    }

    #[test]
    fn every_built_in_kind_has_a_schema() {
        for r in BUILT_IN {
            assert!(for_kind(r.group_kind()).is_some(), "{} has no strategic merge schema", r.group_kind());
        }
    }

    #[test]
    fn every_kind_is_listed_once() {
        for (i, (gk, _)) in KINDS.iter().enumerate() {
            assert!(KINDS[i + 1..].iter().all(|(other, _)| other != gk), "{gk} listed twice");
        }
    }

    #[test]
    fn every_kind_reaches_object_meta_through_metadata() {
        for (gk, schema) in KINDS {
            let meta = schema.field("metadata").unwrap_or_else(|| panic!("{gk} has no metadata"));
            assert!(std::ptr::eq(meta.schema.expect("metadata schema"), &OBJECT_META), "{gk}");
        }
    }

    #[test]
    fn custom_resources_have_no_schema() {
        assert!(for_kind(GroupKind { group: "example.com", kind: "Widget" }).is_none());
        assert!(for_kind(GroupKind { group: "", kind: "Widget" }).is_none());
    }

    #[test]
    fn pod_spec_facts_are_shared_by_every_pod_template() {
        let pod_spec_paths = [
            (&DEPLOYMENT, "spec.template.spec"),
            (&REPLICA_SET, "spec.template.spec"),
            (&STATEFUL_SET, "spec.template.spec"),
            (&DAEMON_SET, "spec.template.spec"),
            (&JOB, "spec.template.spec"),
            (&CRON_JOB, "spec.jobTemplate.spec.template.spec"),
            (&POD, "spec"),
        ];
        for (kind, path) in pod_spec_paths {
            let spec = field_at(kind, path).schema.expect("a PodSpec");
            assert!(std::ptr::eq(spec, &POD_SPEC), "{} {path}", kind.name);
        }
    }

    #[test]
    fn merge_keys_match_the_kubernetes_api() {
        let expected = [
            (&POD, "spec.containers", Strategy::MergeByKey("name")),
            (&POD, "spec.initContainers", Strategy::MergeByKey("name")),
            (&POD, "spec.ephemeralContainers", Strategy::MergeByKey("name")),
            (&POD, "spec.containers.env", Strategy::MergeByKey("name")),
            (&POD, "spec.containers.ports", Strategy::MergeByKey("containerPort")),
            (&POD, "spec.containers.volumeMounts", Strategy::MergeByKey("mountPath")),
            (&POD, "spec.containers.volumeDevices", Strategy::MergeByKey("devicePath")),
            (&POD, "spec.volumes", Strategy::MergeByKey("name")),
            (&POD, "spec.imagePullSecrets", Strategy::MergeByKey("name")),
            (&POD, "spec.hostAliases", Strategy::MergeByKey("ip")),
            (&POD, "spec.topologySpreadConstraints", Strategy::MergeByKey("topologyKey")),
            (&POD, "status.conditions", Strategy::MergeByKey("type")),
            (&POD, "status.podIPs", Strategy::MergeByKey("ip")),
            (&POD, "metadata.finalizers", Strategy::MergeSet),
            (&POD, "metadata.ownerReferences", Strategy::MergeByKey("uid")),
            (&SERVICE, "spec.ports", Strategy::MergeByKey("port")),
            (&NODE, "spec.podCIDRs", Strategy::MergeSet),
            (&NODE, "status.addresses", Strategy::MergeByKey("type")),
            (&SERVICE_ACCOUNT, "secrets", Strategy::MergeByKey("name")),
            (&POD_DISRUPTION_BUDGET, "spec.selector", Strategy::Replace),
            (&DEPLOYMENT, "status.conditions", Strategy::MergeByKey("type")),
        ];
        for (kind, path, strategy) in expected {
            assert_eq!(field_at(kind, path).strategy, strategy, "{} {path}", kind.name);
        }
        assert!(field_at(&DEPLOYMENT, "spec.strategy").retain_keys);
        assert!(field_at(&POD, "spec.volumes").retain_keys);
        assert!(!field_at(&POD, "spec.containers").retain_keys);
    }

    #[test]
    fn atomic_lists_have_no_facts() {
        // Tolerations, args and a StatefulSet's claim templates are replaced whole, as in kube-apiserver.
        assert!(POD_SPEC.field("tolerations").is_none());
        assert!(CONTAINER.field("args").is_none());
        assert_eq!(field_at(&STATEFUL_SET, "spec.volumeClaimTemplates").strategy, Strategy::Default);
        assert_eq!(field_at(&POD, "status.containerStatuses").strategy, Strategy::Default);
    }

    #[test]
    fn every_list_of_objects_merged_by_key_names_a_key() {
        fn check(schema: &'static TypeSchema, seen: &mut Vec<&'static str>) {
            if seen.contains(&schema.name) {
                return;
            }
            seen.push(schema.name);
            for field in schema.fields {
                if let Strategy::MergeByKey(key) = field.strategy {
                    assert!(!key.is_empty(), "{}.{} has an empty merge key", schema.name, field.name);
                }
                if let Some(child) = field.schema {
                    check(child, seen);
                }
            }
        }
        let mut seen = Vec::new();
        for (_, schema) in KINDS {
            check(schema, &mut seen);
        }
        assert!(seen.contains(&"io.k8s.api.core.v1.Container"));
    }
}
