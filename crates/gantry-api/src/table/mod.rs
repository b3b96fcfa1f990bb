//! Server-side tables (`meta.k8s.io/v1` `Table`): what `kubectl get` shows for each kind.
//!
//! For every built-in kind this module knows kube-apiserver's columns (names, types, formats, priorities,
//! descriptions) and how each cell is computed from an object, so `kubectl get` and `kubectl get -o wide` print
//! what they print against kube-apiserver. Rows always carry every column, the wide ones (`priority: 1`)
//! included; kubectl hides those unless asked for `-o wide`, exactly as with kube-apiserver.
//!
//! Kinds kube-apiserver has no printer for (roles, cluster roles, limit ranges, and anything unknown) get its
//! default table: `Name` and `Created At`.
//!
//! Cells are computed from the object's JSON as stored; a missing field reads as the zero value kube's typed
//! structs would hold. Quantities are shown as stored rather than re-canonicalized.

mod core_v1;
pub(crate) mod descriptions;
mod duration;
mod json;
mod named_groups;
mod pod;
mod workloads;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ListMeta;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

pub use duration::human_duration;

use crate::registry::GroupKind;
use descriptions as doc;

/// The `apiVersion` of a [`Table`].
pub const TABLE_API_VERSION: &str = "meta.k8s.io/v1";

/// A `meta.k8s.io/v1` `Table`: column definitions and one row per object.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Table {
    /// Always `Table`.
    pub kind: String,
    /// Always `meta.k8s.io/v1`.
    pub api_version: String,
    /// The list's `resourceVersion`, `continue` and `remainingItemCount`.
    #[serde(default)]
    pub metadata: ListMeta,
    /// The columns. Watch events after the first carry none.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub column_definitions: Vec<TableColumnDefinition>,
    /// One row per object.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub rows: Vec<TableRow>,
}

impl Table {
    /// A table of `rows` under `column_definitions`, with empty list metadata.
    pub fn new(column_definitions: Vec<TableColumnDefinition>, rows: Vec<TableRow>) -> Table {
        Table {
            kind: "Table".to_string(),
            api_version: TABLE_API_VERSION.to_string(),
            metadata: ListMeta::default(),
            column_definitions,
            rows,
        }
    }
}

/// One column of a [`Table`]. All fields are always serialized, as kube-apiserver does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TableColumnDefinition {
    /// The column header, e.g. `Name`; kubectl upper-cases it.
    #[serde(default)]
    pub name: String,
    /// The OpenAPI type of the cells: `string`, `integer`, `number`, `boolean` or `date`.
    #[serde(rename = "type", default)]
    pub type_: String,
    /// An OpenAPI format hint; `name` marks the column holding the object's name.
    #[serde(default)]
    pub format: String,
    /// What the column shows.
    #[serde(default)]
    pub description: String,
    /// 0 for the default view; 1 for columns shown only with `-o wide`.
    #[serde(default)]
    pub priority: i32,
}

/// One row of a [`Table`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TableRow {
    /// One cell per column definition: a string, integer or boolean.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub cells: Vec<Value>,
    /// Conditions of the row, e.g. `Completed` for a finished pod (kubectl hides completed pods in some views).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<TableRowCondition>,
    /// The object (`includeObject=Object`) or its `PartialObjectMetadata` (`includeObject=Metadata`, the
    /// default); absent for `includeObject=None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object: Option<Value>,
}

/// A condition of a [`TableRow`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TableRowCondition {
    /// The condition type; kube-apiserver uses `Completed`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// A one-word reason.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// A human-readable message.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

fn null_as_empty<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Vec<T>, D::Error> {
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

/// The printer kube-apiserver uses for a kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Printer {
    Pod,
    PodDisruptionBudget,
    ReplicaSet,
    DaemonSet,
    Job,
    CronJob,
    Service,
    Ingress,
    IngressClass,
    StatefulSet,
    Endpoints,
    Node,
    Event,
    Namespace,
    Secret,
    ServiceAccount,
    PersistentVolume,
    PersistentVolumeClaim,
    Deployment,
    HorizontalPodAutoscaler,
    ConfigMap,
    NetworkPolicy,
    RoleBinding,
    ClusterRoleBinding,
    Lease,
    StorageClass,
    ControllerRevision,
    ResourceQuota,
    PriorityClass,
    EndpointSlice,
    Default,
}

fn printer(gk: GroupKind) -> Printer {
    match (gk.group, gk.kind) {
        ("", "Pod") => Printer::Pod,
        ("", "Service") => Printer::Service,
        ("", "Endpoints") => Printer::Endpoints,
        ("", "ConfigMap") => Printer::ConfigMap,
        ("", "Secret") => Printer::Secret,
        ("", "Namespace") => Printer::Namespace,
        ("", "Node") => Printer::Node,
        ("", "Event") | ("events.k8s.io", "Event") => Printer::Event,
        ("", "ServiceAccount") => Printer::ServiceAccount,
        ("", "PersistentVolume") => Printer::PersistentVolume,
        ("", "PersistentVolumeClaim") => Printer::PersistentVolumeClaim,
        ("", "ResourceQuota") => Printer::ResourceQuota,
        ("apps", "Deployment") => Printer::Deployment,
        ("apps", "ReplicaSet") => Printer::ReplicaSet,
        ("apps", "StatefulSet") => Printer::StatefulSet,
        ("apps", "DaemonSet") => Printer::DaemonSet,
        ("apps", "ControllerRevision") => Printer::ControllerRevision,
        ("batch", "Job") => Printer::Job,
        ("batch", "CronJob") => Printer::CronJob,
        ("autoscaling", "HorizontalPodAutoscaler") => Printer::HorizontalPodAutoscaler,
        ("coordination.k8s.io", "Lease") => Printer::Lease,
        ("discovery.k8s.io", "EndpointSlice") => Printer::EndpointSlice,
        ("policy", "PodDisruptionBudget") => Printer::PodDisruptionBudget,
        ("rbac.authorization.k8s.io", "RoleBinding") => Printer::RoleBinding,
        ("rbac.authorization.k8s.io", "ClusterRoleBinding") => Printer::ClusterRoleBinding,
        ("networking.k8s.io", "Ingress") => Printer::Ingress,
        ("networking.k8s.io", "IngressClass") => Printer::IngressClass,
        ("networking.k8s.io", "NetworkPolicy") => Printer::NetworkPolicy,
        ("storage.k8s.io", "StorageClass") => Printer::StorageClass,
        ("scheduling.k8s.io", "PriorityClass") => Printer::PriorityClass,
        _ => Printer::Default,
    }
}

/// Whether kube-apiserver has a dedicated printer for the kind (otherwise it shows `Name` and `Created At`).
pub fn has_printer(gk: GroupKind) -> bool {
    printer(gk) != Printer::Default
}

/// The column definitions of the kind's table, wide columns included.
pub fn columns(gk: GroupKind) -> Vec<TableColumnDefinition> {
    match printer(gk) {
        Printer::Pod => pod::columns(),
        Printer::PodDisruptionBudget => workloads::pod_disruption_budget_columns(),
        Printer::ReplicaSet => workloads::replica_set_columns(),
        Printer::DaemonSet => workloads::daemon_set_columns(),
        Printer::Job => workloads::job_columns(),
        Printer::CronJob => workloads::cron_job_columns(),
        Printer::StatefulSet => workloads::stateful_set_columns(),
        Printer::Deployment => workloads::deployment_columns(),
        Printer::HorizontalPodAutoscaler => workloads::horizontal_pod_autoscaler_columns(),
        Printer::ControllerRevision => workloads::controller_revision_columns(),
        Printer::Service => core_v1::service_columns(),
        Printer::Endpoints => core_v1::endpoints_columns(),
        Printer::Node => core_v1::node_columns(),
        Printer::Event => core_v1::event_columns(),
        Printer::Namespace => core_v1::namespace_columns(),
        Printer::Secret => core_v1::secret_columns(),
        Printer::ServiceAccount => core_v1::service_account_columns(),
        Printer::PersistentVolume => core_v1::persistent_volume_columns(),
        Printer::PersistentVolumeClaim => core_v1::persistent_volume_claim_columns(),
        Printer::ConfigMap => core_v1::config_map_columns(),
        Printer::ResourceQuota => core_v1::resource_quota_columns(),
        Printer::Ingress => named_groups::ingress_columns(),
        Printer::IngressClass => named_groups::ingress_class_columns(),
        Printer::NetworkPolicy => named_groups::network_policy_columns(),
        Printer::EndpointSlice => named_groups::endpoint_slice_columns(),
        Printer::RoleBinding => named_groups::role_binding_columns("roleBinding", doc::ROLE_BINDING_ROLE_REF),
        Printer::ClusterRoleBinding => {
            named_groups::role_binding_columns("clusterRoleBinding", doc::CLUSTER_ROLE_BINDING_ROLE_REF)
        }
        Printer::Lease => named_groups::lease_columns(),
        Printer::StorageClass => named_groups::storage_class_columns(),
        Printer::PriorityClass => named_groups::priority_class_columns(),
        Printer::Default => default_columns(),
    }
}

/// The cells of `obj`'s row, one per column of [`columns`], computed as of `now` (for ages and durations).
pub fn row_cells(gk: GroupKind, obj: &Value, now: Timestamp) -> Vec<Value> {
    match printer(gk) {
        Printer::Pod => pod::cells(obj, now),
        Printer::PodDisruptionBudget => workloads::pod_disruption_budget_cells(obj, now),
        Printer::ReplicaSet => workloads::replica_set_cells(obj, now),
        Printer::DaemonSet => workloads::daemon_set_cells(obj, now),
        Printer::Job => workloads::job_cells(obj, now),
        Printer::CronJob => workloads::cron_job_cells(obj, now),
        Printer::StatefulSet => workloads::stateful_set_cells(obj, now),
        Printer::Deployment => workloads::deployment_cells(obj, now),
        Printer::HorizontalPodAutoscaler => workloads::horizontal_pod_autoscaler_cells(obj, now),
        Printer::ControllerRevision => workloads::controller_revision_cells(obj, now),
        Printer::Service => core_v1::service_cells(obj, now),
        Printer::Endpoints => core_v1::endpoints_cells(obj, now),
        Printer::Node => core_v1::node_cells(obj, now),
        Printer::Event => core_v1::event_cells(obj, now),
        Printer::Namespace => core_v1::namespace_cells(obj, now),
        Printer::Secret => core_v1::secret_cells(obj, now),
        Printer::ServiceAccount => core_v1::service_account_cells(obj, now),
        Printer::PersistentVolume => core_v1::persistent_volume_cells(obj, now),
        Printer::PersistentVolumeClaim => core_v1::persistent_volume_claim_cells(obj, now),
        Printer::ConfigMap => core_v1::config_map_cells(obj, now),
        Printer::ResourceQuota => core_v1::resource_quota_cells(obj, now),
        Printer::Ingress => named_groups::ingress_cells(obj, now),
        Printer::IngressClass => named_groups::ingress_class_cells(obj, now),
        Printer::NetworkPolicy => named_groups::network_policy_cells(obj, now),
        Printer::EndpointSlice => named_groups::endpoint_slice_cells(obj, now),
        Printer::RoleBinding | Printer::ClusterRoleBinding => named_groups::role_binding_cells(obj, now),
        Printer::Lease => named_groups::lease_cells(obj, now),
        Printer::StorageClass => named_groups::storage_class_cells(obj, now),
        Printer::PriorityClass => named_groups::priority_class_cells(obj, now),
        Printer::Default => default_cells(obj),
    }
}

/// The row conditions kube-apiserver attaches to `obj`'s row: `Completed` for a pod that succeeded or failed.
pub fn row_conditions(gk: GroupKind, obj: &Value) -> Vec<TableRowCondition> {
    match printer(gk) {
        Printer::Pod => pod::conditions(obj),
        _ => Vec::new(),
    }
}

/// `obj`'s row: its cells and conditions, without the object (which depends on `includeObject`).
pub fn table_row(gk: GroupKind, obj: &Value, now: Timestamp) -> TableRow {
    TableRow { cells: row_cells(gk, obj, now), conditions: row_conditions(gk, obj), object: None }
}

fn column(name: &str, type_: &str, description: &str) -> TableColumnDefinition {
    TableColumnDefinition {
        name: name.to_string(),
        type_: type_.to_string(),
        format: String::new(),
        description: description.to_string(),
        priority: 0,
    }
}

/// The same column, shown only with `-o wide`.
fn wide(mut c: TableColumnDefinition) -> TableColumnDefinition {
    c.priority = 1;
    c
}

fn name_column() -> TableColumnDefinition {
    TableColumnDefinition { format: "name".to_string(), ..column("Name", "string", doc::NAME) }
}

fn age_column() -> TableColumnDefinition {
    column("Age", "string", doc::CREATION_TIMESTAMP)
}

const CONTAINERS_DESCRIPTION: &str = "Names of each container in the template.";
const IMAGES_DESCRIPTION: &str = "Images referenced by each container in the template.";

fn containers_column() -> TableColumnDefinition {
    wide(column("Containers", "string", CONTAINERS_DESCRIPTION))
}

fn images_column() -> TableColumnDefinition {
    wide(column("Images", "string", IMAGES_DESCRIPTION))
}

fn default_columns() -> Vec<TableColumnDefinition> {
    vec![name_column(), column("Created At", "date", doc::CREATION_TIMESTAMP)]
}

/// The default table's cells: the name and the creation time in RFC 3339 (Go's zero time when unset).
fn default_cells(obj: &Value) -> Vec<Value> {
    let created = json::time_at(obj, &["metadata", "creationTimestamp"]).unwrap_or_else(json::zero_time);
    vec![text(json::name(obj)), text(created.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())]
}

fn text(s: impl Into<String>) -> Value {
    Value::String(s.into())
}

fn int(i: i64) -> Value {
    Value::from(i)
}

/// The age cell of an object.
fn age(obj: &Value, now: Timestamp) -> Value {
    text(duration::since(json::time_at(obj, &["metadata", "creationTimestamp"]), now))
}

/// Container names and images of a pod spec, each comma-joined.
fn container_cells(pod_spec: Option<&Value>) -> (Value, Value) {
    let containers = pod_spec.map(|s| json::arr_at(s, &["containers"])).unwrap_or_default();
    let names: Vec<&str> = containers.iter().map(|c| json::str_at(c, &["name"])).collect();
    let images: Vec<&str> = containers.iter().map(|c| json::str_at(c, &["image"])).collect();
    (text(names.join(",")), text(images.join(",")))
}

/// A label map as `k=v,...` sorted by key, or `<none>`.
fn format_labels(labels: Option<&serde_json::Map<String, Value>>) -> String {
    let mut pairs: Vec<(&str, &str)> =
        labels.into_iter().flatten().map(|(k, v)| (k.as_str(), v.as_str().unwrap_or(""))).collect();
    if pairs.is_empty() {
        return "<none>".to_string();
    }
    pairs.sort_unstable();
    pairs.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
}

/// A `metav1.LabelSelector` as kube prints it: its selector string, `<none>` when it selects everything or
/// nothing, `<error>` when invalid.
fn format_label_selector(selector: Option<&Value>) -> String {
    match crate::selector::LabelSelector::from_optional_label_selector(selector) {
        Err(_) => "<error>".to_string(),
        Ok(s) => {
            let s = s.to_string();
            if s.is_empty() { "<none>".to_string() } else { s }
        }
    }
}

#[cfg(test)]
mod tests;
