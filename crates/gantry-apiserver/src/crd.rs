//! CustomResourceDefinitions: what the API server serves for each, and the definitions' own lifecycle.
//!
//! A task per API server ([`run`]) follows the stored definitions through the watch cache and, on every
//! change, recomputes the served custom resources as a whole: names are checked for conflicts inside their
//! group, accepted definitions' served versions go into the [`Registry`](gantry_api::registry::Registry),
//! their schemas, printer columns and scale paths into [`CustomResources`], and their group-versions into
//! the OpenAPI documents. Only then are the definitions' conditions written (`NamesAccepted`,
//! `Established`), so a client that waits for `Established` finds the resource served. Several API servers
//! over one etcd each do this; they write the same status, and a write that finds nothing to change is
//! skipped.
//!
//! Deleting a definition first deletes its objects, as kube-apiserver does: the delete adds the
//! `customresourcecleanup.apiextensions.k8s.io` finalizer, the task marks the definition `Terminating`,
//! deletes every object (honouring their own finalizers), and releases the finalizer when none is left.
//! Creating objects of a terminating definition is refused.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use gantry_api::registry::{CustomResourceType, Registry, ResourceType, Subresource};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::Api;
use crate::objects::{DeleteOptions, WriteOptions};
use crate::status::{ApiError, ApiResult};

/// The finalizer that holds a deleted definition until its objects are gone.
pub const CLEANUP_FINALIZER: &str = "customresourcecleanup.apiextensions.k8s.io";

/// How long to wait before trying again when objects of a terminating definition remain.
const CLEANUP_RETRY: Duration = Duration::from_millis(500);

/// What serving one version of a custom resource needs beyond its [`ResourceType`].
#[derive(Clone, Debug)]
pub struct CustomVersion {
    /// The definition's name (`widgets.example.com`).
    pub definition: String,
    /// The whole definition, which custom resources are validated against.
    pub definition_object: Arc<Value>,
    /// The version's `openAPIV3Schema`.
    pub schema: Option<Value>,
    /// The version's table: `Name` and its printer columns (`None` when a column's JSONPath does not parse,
    /// which validation refuses).
    pub table: Option<gantry_api::crd::CrdTable>,
    /// The scale subresource's paths, if served.
    pub scale: Option<gantry_api::crd::ScalePaths>,
    /// Whether the definition is being deleted (new objects are refused).
    pub terminating: bool,
    /// The list and map semantics of the version's schema, for server-side apply and managed fields.
    pub apply_schema: Arc<gantry_api::apply::Schema>,
}

/// A served type's group, version and plural, as the registry interned them.
type ServedName = (&'static str, &'static str, &'static str);

/// The custom resources served now, by the served type's group, version and plural. The keys are the
/// registry's interned strings, so a lookup (once per object read) allocates nothing.
#[derive(Default)]
pub struct CustomResources {
    versions: RwLock<HashMap<ServedName, Arc<CustomVersion>>>,
}

impl CustomResources {
    /// What is known of a custom resource type; `None` for built-in ones.
    pub fn version(&self, resource: &ResourceType) -> Option<Arc<CustomVersion>> {
        if !resource.custom {
            return None;
        }
        let versions = self.versions.read().unwrap_or_else(|p| p.into_inner());
        versions.get(&(resource.group, resource.version, resource.plural)).cloned()
    }

    /// Replaces what is known with `new`, keyed by the types `registry` serves now.
    fn replace(&self, registry: &Registry, new: HashMap<(String, String, String), Arc<CustomVersion>>) {
        let new = new
            .into_iter()
            .filter_map(|((group, version, plural), custom)| {
                let served = registry.by_plural(&group, &version, &plural)?;
                Some(((served.group, served.version, served.plural), custom))
            })
            .collect();
        *self.versions.write().unwrap_or_else(|p| p.into_inner()) = new;
    }
}

/// The result of looking at every definition once.
struct Plan {
    types: Vec<CustomResourceType>,
    versions: HashMap<(String, String, String), Arc<CustomVersion>>,
    /// Per definition name, the status it should have.
    statuses: BTreeMap<String, Value>,
    /// Definitions being deleted, by name, with the resource types whose objects must go.
    terminating: Vec<(String, Vec<CustomResourceType>)>,
    /// The group-version documents for `/openapi/v3`.
    documents: Vec<(String, Value)>,
}

/// Follows the definitions until `shutdown`. [`sync`] must have run once before the server answers.
pub async fn run(api: Arc<Api>, shutdown: CancellationToken) {
    let Some(definitions) = definitions_type(&api) else { return };
    let cache = api.cache.resource(&definitions.key_prefix());
    let mut changes = cache.subscribe();
    loop {
        let pending = match sync(&api).await {
            Ok(pending) => pending,
            Err(err) => {
                tracing::warn!(error = %err.message, "custom resource definitions: sync failed; retrying");
                true
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            changed = changes.changed() => if changed.is_err() { return },
            _ = tokio::time::sleep(CLEANUP_RETRY), if pending => {}
        }
    }
}

fn definitions_type(api: &Api) -> Option<&'static ResourceType> {
    api.registry.by_plural("apiextensions.k8s.io", "v1", "customresourcedefinitions")
}

/// Brings the served custom resources and the definitions' status in line with the stored definitions.
/// Returns whether work remains that no change will announce (objects of a terminating definition).
pub async fn sync(api: &Arc<Api>) -> ApiResult<bool> {
    let definitions = definitions_type(api).ok_or_else(ApiError::no_route)?;
    let cache = api.cache.resource(&definitions.key_prefix());
    let snapshot = cache.snapshot(&definitions.key_prefix(), api.cache.applied());
    let objects: Vec<Value> = snapshot.objects.iter().map(|e| e.value.clone()).collect();
    let plan = plan(api, &objects);

    api.registry.set_custom(&plan.types);
    api.custom.replace(&api.registry, plan.versions);
    api.set_custom_openapi(plan.documents);

    let options = WriteOptions { field_manager: "gantry-apiserver".into(), ..Default::default() };
    for obj in &objects {
        let Some(name) = obj["metadata"]["name"].as_str() else { continue };
        let Some(status) = plan.statuses.get(name) else { continue };
        if same_status(&obj["status"], status) {
            continue;
        }
        let mut updated = obj.clone();
        updated["status"] = status.clone();
        match api.update(definitions, None, name, Some(Subresource::Status), updated, &options).await {
            Ok(_) => {}
            // Someone else changed it meanwhile; the change wakes us again.
            Err(e) if e.code == 409 || e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }

    let mut pending = false;
    for (name, types) in &plan.terminating {
        if delete_instances(api, types).await? {
            release(api, definitions, name).await?;
        } else {
            pending = true;
        }
    }
    Ok(pending)
}

/// Two statuses are the same if they differ at most in the conditions' transition times.
fn same_status(current: &Value, wanted: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(conditions) = v.get_mut("conditions").and_then(Value::as_array_mut) {
            for c in conditions {
                if let Some(c) = c.as_object_mut() {
                    c.remove("lastTransitionTime");
                }
            }
        }
        v
    };
    strip(current) == strip(wanted)
}

fn plan(api: &Api, objects: &[Value]) -> Plan {
    let mut ordered: Vec<&Value> = objects.iter().collect();
    // Definitions whose names were accepted before keep them; among the others the older one wins.
    ordered.sort_by_key(|o| {
        (
            !names_accepted_before(o),
            o["metadata"]["creationTimestamp"].as_str().unwrap_or_default().to_string(),
            name_of(o).to_string(),
        )
    });
    let builtin = api.registry.without_custom();
    let mut taken: HashMap<String, Vec<(String, &'static str)>> = HashMap::new();
    let mut accepted: Vec<(&Value, Names)> = Vec::new();
    let mut statuses = BTreeMap::new();
    for obj in ordered {
        let spec = &obj["spec"];
        let group = spec["group"].as_str().unwrap_or_default().to_string();
        let Some(names) = Names::of(&spec["names"]) else { continue };
        let used = taken.entry(group.clone()).or_insert_with(|| {
            builtin
                .all()
                .filter(|r| r.group == group)
                .flat_map(|r| {
                    let mut v = vec![(r.plural.to_string(), "plural"), (r.kind.to_string(), "kind")];
                    v.extend(r.short_names.iter().map(|s| (s.to_string(), "shortName")));
                    v
                })
                .collect()
        });
        let conflict = names.conflict(used);
        // A definition keeps serving the names it was given, whatever it asks for now.
        let served_names = match &conflict {
            None => Some(names.clone()),
            Some(_) if names_accepted_before(obj) => Names::of(&obj["status"]["acceptedNames"]),
            Some(_) => None,
        };
        let now = crate::objects::now_rfc3339();
        let previous = |kind: &str| -> Option<Value> {
            obj["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == kind).cloned()
        };
        let condition = |kind: &str, status: &str, reason: &str, message: &str| {
            let keep_time = previous(kind)
                .filter(|c| c["status"] == status)
                .and_then(|c| c["lastTransitionTime"].as_str().map(str::to_string));
            json!({"type": kind, "status": status, "reason": reason, "message": message,
                   "lastTransitionTime": keep_time.unwrap_or_else(|| now.clone())})
        };
        let mut conditions = Vec::new();
        let stored = stored_versions(obj);
        let deleting = obj["metadata"]["deletionTimestamp"].is_string();
        match &conflict {
            Some((reason, message)) => conditions.push(condition("NamesAccepted", "False", reason, message)),
            None => conditions.push(condition("NamesAccepted", "True", "NoConflicts", "no conflicts found")),
        }
        match &served_names {
            Some(served) => {
                conditions.push(condition(
                    "Established",
                    "True",
                    "InitialNamesAccepted",
                    "the initial names have been accepted",
                ));
                used.extend(served.all());
            }
            None => conditions.push(condition("Established", "False", "NotAccepted", "not all names are accepted")),
        }
        if deleting {
            conditions.push(condition(
                "Terminating",
                "True",
                "InstanceDeletionInProgress",
                "CustomResource deletion is in progress",
            ));
        }
        let accepted_names = match &served_names {
            Some(served) => served.to_value(),
            None => json!({"plural": "", "kind": ""}),
        };
        statuses.insert(
            name_of(obj).to_string(),
            json!({"conditions": conditions, "acceptedNames": accepted_names, "storedVersions": stored}),
        );
        if let Some(served) = served_names {
            accepted.push((obj, served));
        }
    }

    // The preferred version of a group is its highest-priority served version over all its definitions.
    let mut group_versions: HashMap<String, Vec<String>> = HashMap::new();
    for (obj, _) in &accepted {
        let group = obj["spec"]["group"].as_str().unwrap_or_default().to_string();
        for version in served_versions(obj) {
            let name = version["name"].as_str().unwrap_or_default().to_string();
            let list = group_versions.entry(group.clone()).or_default();
            if !list.contains(&name) {
                list.push(name);
            }
        }
    }
    for versions in group_versions.values_mut() {
        versions.sort_by(|a, b| compare_versions(a, b));
    }

    let mut types = Vec::new();
    let mut versions = HashMap::new();
    let mut terminating = Vec::new();
    accepted.sort_by_key(|(obj, _)| {
        (obj["spec"]["group"].as_str().unwrap_or_default().to_string(), name_of(obj).to_string())
    });
    for (obj, names) in &accepted {
        let spec = &obj["spec"];
        let group = spec["group"].as_str().unwrap_or_default().to_string();
        let namespaced = spec["scope"].as_str() != Some("Cluster");
        let deleting = obj["metadata"]["deletionTimestamp"].is_string();
        let preferred = group_versions.get(&group).and_then(|v| v.first()).cloned().unwrap_or_default();
        let mut definition_types = Vec::new();
        let definition_object = Arc::new((*obj).clone());
        for version in served_versions(obj) {
            let name = version["name"].as_str().unwrap_or_default().to_string();
            let mut subresources = Vec::new();
            if version["subresources"]["status"].is_object() {
                subresources.push(Subresource::Status);
            }
            let scale = gantry_api::crd::ScalePaths::from_version(version);
            if scale.is_some() {
                subresources.push(Subresource::Scale);
            }
            let resource_type = CustomResourceType {
                group: group.clone(),
                version: name.clone(),
                kind: names.kind.clone(),
                plural: names.plural.clone(),
                singular: names.singular.clone(),
                short_names: names.short_names.clone(),
                categories: names.categories.clone(),
                namespaced,
                subresources,
                storage_version: version["storage"] == true,
                preferred: name == preferred,
            };
            versions.insert(
                (group.clone(), name.clone(), names.plural.clone()),
                Arc::new(CustomVersion {
                    definition: name_of(obj).to_string(),
                    definition_object: Arc::clone(&definition_object),
                    schema: version["schema"].get("openAPIV3Schema").cloned(),
                    table: gantry_api::crd::CrdTable::new(version).ok(),
                    scale,
                    terminating: deleting,
                    apply_schema: match version["schema"].get("openAPIV3Schema") {
                        Some(schema) => Arc::new(gantry_api::apply::Schema::from_crd_schema(schema)),
                        None => Arc::new(gantry_api::apply::Schema::deduced()),
                    },
                }),
            );
            definition_types.push(resource_type);
        }
        if deleting {
            // Objects are stored under one key prefix whatever their version; any served type reaches them.
            terminating.push((name_of(obj).to_string(), definition_types.clone()));
        }
        types.extend(definition_types);
    }
    // Discovery lists a group's preferred version first.
    types.sort_by(|a, b| {
        (a.group.as_str(), !a.preferred, a.plural.as_str()).cmp(&(b.group.as_str(), !b.preferred, b.plural.as_str()))
    });
    let established: Vec<Value> = accepted.iter().map(|(obj, _)| (*obj).clone()).collect();
    let documents = gantry_api::openapi::custom_resource_documents(&established);
    Plan { types, versions, statuses, terminating, documents }
}

fn names_accepted_before(obj: &Value) -> bool {
    obj["status"]["conditions"]
        .as_array()
        .is_some_and(|c| c.iter().any(|c| c["type"] == "NamesAccepted" && c["status"] == "True"))
}

fn name_of(obj: &Value) -> &str {
    obj["metadata"]["name"].as_str().unwrap_or_default()
}

fn served_versions(obj: &Value) -> Vec<&Value> {
    obj["spec"]["versions"].as_array().map(|v| v.iter().filter(|v| v["served"] == true).collect()).unwrap_or_default()
}

/// `status.storedVersions`: what was stored before, plus the storage version now.
fn stored_versions(obj: &Value) -> Vec<String> {
    let mut stored: Vec<String> = obj["status"]["storedVersions"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default();
    if let Some(storage) = obj["spec"]["versions"]
        .as_array()
        .and_then(|v| v.iter().find(|v| v["storage"] == true))
        .and_then(|v| v["name"].as_str())
        && !stored.iter().any(|s| s == storage)
    {
        stored.push(storage.to_string());
    }
    stored
}

/// The names a definition asks for, with kube-apiserver's defaults filled in.
#[derive(Clone, Debug)]
struct Names {
    plural: String,
    singular: String,
    kind: String,
    list_kind: String,
    short_names: Vec<String>,
    categories: Vec<String>,
}

impl Names {
    fn of(names: &Value) -> Option<Names> {
        let plural = names["plural"].as_str().filter(|s| !s.is_empty())?.to_string();
        let kind = names["kind"].as_str().filter(|s| !s.is_empty())?.to_string();
        let strings = |v: &Value| -> Vec<String> {
            v.as_array().map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect()).unwrap_or_default()
        };
        Some(Names {
            singular: names["singular"]
                .as_str()
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .unwrap_or_else(|| kind.to_lowercase()),
            list_kind: names["listKind"]
                .as_str()
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .unwrap_or_else(|| format!("{kind}List")),
            short_names: strings(&names["shortNames"]),
            categories: strings(&names["categories"]),
            plural,
            kind,
        })
    }

    fn all(&self) -> Vec<(String, &'static str)> {
        let mut all = vec![
            (self.plural.clone(), "plural"),
            (self.singular.clone(), "singular"),
            (self.kind.clone(), "kind"),
            (self.list_kind.clone(), "listKind"),
        ];
        all.extend(self.short_names.iter().map(|s| (s.clone(), "shortName")));
        all
    }

    /// The first of these names another definition of the group (or a built-in resource) already uses, as
    /// kube-apiserver's naming controller checks them: resource names (plural, singular, short names) against
    /// resource names, kinds against kinds. Returns the condition's reason and message.
    fn conflict(&self, used: &[(String, &'static str)]) -> Option<(&'static str, String)> {
        let resource_name =
            |name: &str| used.iter().any(|(n, what)| n == name && !matches!(*what, "kind" | "listKind"));
        let kind_name = |name: &str| used.iter().any(|(n, what)| n == name && matches!(*what, "kind" | "listKind"));
        let in_use = |name: &str| format!("{name:?} is already in use");
        if resource_name(&self.plural) {
            return Some(("PluralConflict", in_use(&self.plural)));
        }
        if resource_name(&self.singular) {
            return Some(("SingularConflict", in_use(&self.singular)));
        }
        if let Some(short) = self.short_names.iter().find(|s| resource_name(s)) {
            return Some(("ShortNamesConflict", in_use(short)));
        }
        if kind_name(&self.kind) {
            return Some(("KindConflict", in_use(&self.kind)));
        }
        if kind_name(&self.list_kind) {
            return Some(("ListKindConflict", in_use(&self.list_kind)));
        }
        None
    }

    fn to_value(&self) -> Value {
        let mut names = json!({"plural": self.plural, "singular": self.singular, "kind": self.kind,
                               "listKind": self.list_kind});
        if !self.short_names.is_empty() {
            names["shortNames"] = json!(self.short_names);
        }
        if !self.categories.is_empty() {
            names["categories"] = json!(self.categories);
        }
        names
    }
}

/// Orders versions as Kubernetes does: GA before beta before alpha, higher numbers first, and versions that
/// follow no such form last, alphabetically.
pub fn compare_versions(a: &str, b: &str) -> std::cmp::Ordering {
    fn parse(v: &str) -> Option<(u8, u64, u64)> {
        let rest = v.strip_prefix('v')?;
        let digits_end = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        let major: u64 = rest[..digits_end].parse().ok()?;
        let tail = &rest[digits_end..];
        if tail.is_empty() {
            return Some((0, major, 0));
        }
        let (stage, number) = if let Some(n) = tail.strip_prefix("beta") {
            (1, n)
        } else if let Some(n) = tail.strip_prefix("alpha") {
            (2, n)
        } else {
            return None;
        };
        let minor: u64 = number.parse().ok()?;
        Some((stage, major, minor))
    }
    match (parse(a), parse(b)) {
        (Some((sa, ma, na)), Some((sb, mb, nb))) => sa.cmp(&sb).then(mb.cmp(&ma)).then(nb.cmp(&na)),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.cmp(b),
    }
}

/// Deletes every object of a terminating definition; true once none is left.
async fn delete_instances(api: &Arc<Api>, types: &[CustomResourceType]) -> ApiResult<bool> {
    let Some(first) = types.first() else { return Ok(true) };
    let Some(resource) = api.registry.by_plural(&first.group, &first.version, &first.plural) else {
        return Ok(true);
    };
    let cache = api.cache.resource(&resource.key_prefix());
    let snapshot = cache.snapshot(&resource.key_prefix(), api.cache.applied());
    if snapshot.objects.is_empty() {
        return Ok(true);
    }
    let options = DeleteOptions { propagation: Some("Background".into()), ..Default::default() };
    for entry in &snapshot.objects {
        if entry.value["metadata"]["deletionTimestamp"].is_string() {
            continue;
        }
        let namespace = entry.value["metadata"]["namespace"].as_str().filter(|_| resource.namespaced);
        let Some(name) = entry.value["metadata"]["name"].as_str() else { continue };
        match api.delete(resource, namespace, name, &options).await {
            Ok(_) => {}
            Err(e) if e.code == 404 || e.code == 409 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(false)
}

/// Removes the cleanup finalizer from a definition whose objects are gone.
async fn release(api: &Arc<Api>, definitions: &'static ResourceType, name: &str) -> ApiResult<()> {
    let cache = api.cache.resource(&definitions.key_prefix());
    let (Some(entry), _) = cache.get(&definitions.key(None, name), api.cache.applied()) else { return Ok(()) };
    let remaining: Vec<&Value> = entry.value["metadata"]["finalizers"]
        .as_array()
        .map(|a| a.iter().filter(|f| *f != CLEANUP_FINALIZER).collect())
        .unwrap_or_default();
    // The resourceVersion makes the patch a compare-and-swap: finalizers added meanwhile are not lost.
    let patch = json!({"metadata": {"finalizers": remaining,
                                     "resourceVersion": entry.value["metadata"]["resourceVersion"]}});
    let options = WriteOptions { field_manager: "gantry-apiserver".into(), ..Default::default() };
    let bytes = patch.to_string();
    match api
        .patch(definitions, None, name, None, gantry_api::patch::PatchType::Merge, bytes.as_bytes(), &options)
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if e.code == 404 || e.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}

/// Refuses a create of objects whose definition is being deleted, as kube-apiserver does.
pub fn check_create_allowed(api: &Api, resource: &ResourceType) -> ApiResult<()> {
    match api.custom.version(resource) {
        Some(version) if version.terminating => Err(ApiError::method_not_allowed(format!(
            "create not allowed while custom resource definition is terminating: {}",
            version.definition
        ))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_ordered_ga_then_beta_then_alpha_then_others() {
        let mut versions = vec!["v1alpha1", "foo", "v2beta1", "v1", "v11alpha2", "v2", "v1beta2", "v1beta1", "bar"];
        versions.sort_by(|a, b| compare_versions(a, b));
        assert_eq!(versions, vec!["v2", "v1", "v2beta1", "v1beta2", "v1beta1", "v11alpha2", "v1alpha1", "bar", "foo"]);
    }

    #[test]
    fn names_default_singular_and_list_kind_and_report_the_first_conflict() {
        let names = Names::of(&json!({"plural": "widgets", "kind": "Widget", "shortNames": ["wd"]})).unwrap();
        assert_eq!((names.singular.as_str(), names.list_kind.as_str()), ("widget", "WidgetList"));
        assert_eq!(names.conflict(&[("other".into(), "plural")]), None);
        assert_eq!(
            names.conflict(&[("wd".into(), "shortName")]).unwrap(),
            ("ShortNamesConflict", "\"wd\" is already in use".into())
        );
        assert_eq!(
            names.conflict(&[("Widget".into(), "kind")]).unwrap(),
            ("KindConflict", "\"Widget\" is already in use".into())
        );
        assert_eq!(names.conflict(&[("Widget".into(), "plural")]), None, "kinds are checked against kinds only");
        assert!(Names::of(&json!({"plural": "widgets"})).is_none());
    }

    #[test]
    fn stored_versions_keep_history_and_add_the_storage_version() {
        let crd = json!({"spec": {"versions": [{"name": "v1", "storage": true}, {"name": "v1beta1"}]},
                         "status": {"storedVersions": ["v1beta1"]}});
        assert_eq!(stored_versions(&crd), vec!["v1beta1", "v1"]);
    }

    #[test]
    fn statuses_that_differ_only_in_transition_times_are_the_same() {
        let a = json!({"conditions": [{"type": "Established", "status": "True", "lastTransitionTime": "1"}]});
        let b = json!({"conditions": [{"type": "Established", "status": "True", "lastTransitionTime": "2"}]});
        let c = json!({"conditions": [{"type": "Established", "status": "False", "lastTransitionTime": "2"}]});
        assert!(same_status(&a, &b));
        assert!(!same_status(&a, &c));
    }
}
