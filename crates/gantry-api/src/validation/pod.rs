//! Pods, pod templates and the pod spec they share.

use std::collections::{BTreeMap, HashSet};

use serde_json::{Value, json};

use super::meta::{self, IS_NEGATIVE};
use super::names::{self, NameRule};
use super::quantity::Quantity;
use super::value::{at, field, int_at, list_at, obj_at, semantic_eq, str_at, string_map_at};
use super::{FieldError, Path};

const MAX_INT32: i64 = i32::MAX as i64;
const FILE_MODE_ERROR: &str = "must be a number between 0 and 0777 (octal), both inclusive";
const UPDATABLE_POD_SPEC_FIELDS: &[&str] = &[
    "`spec.containers[*].image`",
    "`spec.initContainers[*].image`",
    "`spec.activeDeadlineSeconds`",
    "`spec.tolerations` (only additions to existing tolerations)",
    "`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
];

/// A Pod, on create (`old` unset) or update.
pub(crate) fn validate_pod(obj: &Value, old: Option<&Value>, errs: &mut Vec<FieldError>) {
    let spec_path = Path::root("spec");
    let empty = json!({});
    let spec = obj_at(errs, obj, "spec", &Path::root("")).unwrap_or(&empty);
    let pod_name = at(obj, &["metadata", "name"]).and_then(Value::as_str);
    validate_pod_spec(spec, &spec_path, pod_name, errs);
    for key in ["containers", "initContainers"] {
        for (i, c) in list_at(errs, spec, key, &spec_path).iter().enumerate() {
            let image = field(c, "image").and_then(Value::as_str).unwrap_or("");
            if image.trim() != image {
                errs.push(FieldError::invalid(
                    &spec_path.child(key).index(i).child("image"),
                    image,
                    "must not have leading or trailing whitespace",
                ));
            }
        }
    }
    match old {
        None => {
            if !list_at(errs, spec, "ephemeralContainers", &spec_path).is_empty() {
                errs.push(FieldError::forbidden(&spec_path.child("ephemeralContainers"), "cannot be set on create"));
            }
            let node = field(spec, "nodeName").and_then(Value::as_str).unwrap_or("");
            if !node.is_empty() && !list_at(errs, spec, "schedulingGates", &spec_path).is_empty() {
                errs.push(FieldError::forbidden(
                    &spec_path.child("nodeName"),
                    "cannot be set until all schedulingGates have been cleared",
                ));
            }
        }
        Some(old) => validate_pod_spec_update(spec, field(old, "spec").unwrap_or(&empty), errs),
    }
}

/// A core/v1 PodTemplate object.
pub(crate) fn validate_pod_template_object(obj: &Value, errs: &mut Vec<FieldError>) {
    let empty = json!({});
    let template = obj_at(errs, obj, "template", &Path::root("")).unwrap_or(&empty);
    validate_pod_template_spec(template, &Path::root("template"), errs);
}

/// A pod template as embedded in workloads (`ValidatePodTemplateSpec`).
pub(crate) fn validate_pod_template_spec(template: &Value, path: &Path, errs: &mut Vec<FieldError>) {
    let empty = json!({});
    let meta = field(template, "metadata").unwrap_or(&empty);
    let labels = string_map_at(errs, meta, "labels", path);
    meta::validate_labels(&labels, &path.child("labels"), errs);
    let annotations = string_map_at(errs, meta, "annotations", path);
    meta::validate_annotations(&annotations, &path.child("annotations"), errs);
    let spec = obj_at(errs, template, "spec", path).unwrap_or(&empty);
    validate_pod_spec(spec, &path.child("spec"), None, errs);
    if field(spec, "ephemeralContainers").and_then(Value::as_array).is_some_and(|a| !a.is_empty()) {
        errs.push(FieldError::forbidden(
            &path.child("spec").child("ephemeralContainers"),
            "ephemeral containers not allowed in pod template",
        ));
    }
}

/// `ValidatePodSpec`.
pub(crate) fn validate_pod_spec(spec: &Value, path: &Path, pod_name: Option<&str>, errs: &mut Vec<FieldError>) {
    let grace = int_at(errs, spec, "terminationGracePeriodSeconds", path);
    if grace.is_none() {
        errs.push(FieldError::required(&path.child("terminationGracePeriodSeconds"), ""));
    }
    let volumes = validate_volumes(spec, path, pod_name, errs);
    let restart_policy = field(spec, "restartPolicy").and_then(Value::as_str).unwrap_or("");
    let containers = list_at(errs, spec, "containers", path);
    validate_containers(containers, &volumes, &path.child("containers"), restart_policy, errs);
    let init = list_at(errs, spec, "initContainers", path);
    validate_init_containers(init, containers, &volumes, &path.child("initContainers"), restart_policy, errs);

    match restart_policy {
        "Always" | "OnFailure" | "Never" => {}
        "" => errs.push(FieldError::required(&path.child("restartPolicy"), "")),
        other => {
            errs.push(FieldError::not_supported(&path.child("restartPolicy"), other, &["Always", "OnFailure", "Never"]))
        }
    }
    let dns_policy = str_at(errs, spec, "dnsPolicy", path).unwrap_or("");
    match dns_policy {
        "ClusterFirstWithHostNet" | "ClusterFirst" | "Default" | "None" => {}
        "" => errs.push(FieldError::required(&path.child("dnsPolicy"), "")),
        other => errs.push(FieldError::not_supported(
            &path.child("dnsPolicy"),
            other,
            &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"],
        )),
    }
    let node_selector = string_map_at(errs, spec, "nodeSelector", path);
    meta::validate_labels(&node_selector, &path.child("nodeSelector"), errs);
    validate_dns_config(spec, dns_policy, path, errs);
    for (i, g) in list_at(errs, spec, "schedulingGates", path).iter().enumerate() {
        let name = field(g, "name").and_then(Value::as_str).unwrap_or("");
        for msg in names::is_qualified_name(name) {
            errs.push(FieldError::invalid(&path.child("schedulingGates").index(i), name, msg));
        }
    }
    for (key, rule) in [
        ("serviceAccountName", NameRule::Dns1123Subdomain),
        ("nodeName", NameRule::Dns1123Subdomain),
        ("priorityClassName", NameRule::Dns1123Subdomain),
    ] {
        if let Some(v) = str_at(errs, spec, key, path).filter(|v| !v.is_empty()) {
            for msg in rule.check(v, false) {
                errs.push(FieldError::invalid(&path.child(key), v, msg));
            }
        }
    }
    if let Some(v) = int_at(errs, spec, "activeDeadlineSeconds", path)
        && !(1..=MAX_INT32).contains(&v)
    {
        errs.push(FieldError::invalid(
            &path.child("activeDeadlineSeconds"),
            v,
            names::inclusive_range_error(1, MAX_INT32),
        ));
    }
    for key in ["hostname", "subdomain"] {
        if let Some(v) = str_at(errs, spec, key, path).filter(|v| !v.is_empty()) {
            for msg in names::is_dns1123_label(v) {
                errs.push(FieldError::invalid(&path.child(key), v, msg));
            }
        }
    }
    validate_tolerations(list_at(errs, spec, "tolerations", path), &path.child("tolerations"), errs);
    if let Some(p) = str_at(errs, spec, "preemptionPolicy", path) {
        match p {
            "PreemptLowerPriority" | "Never" => {}
            "" => errs.push(FieldError::required(&path.child("preemptionPolicy"), "")),
            other => errs.push(FieldError::not_supported(
                &path.child("preemptionPolicy"),
                other,
                &["PreemptLowerPriority", "Never"],
            )),
        }
    }
    if let Some(overhead) = obj_at(errs, spec, "overhead", path) {
        let overhead = overhead.clone();
        validate_resource_list(&overhead, &path.child("overhead"), true, errs);
    }
    for (i, s) in list_at(errs, spec, "imagePullSecrets", path).iter().enumerate() {
        if field(s, "name").and_then(Value::as_str).unwrap_or("").is_empty() {
            errs.push(FieldError::required(&path.child("imagePullSecrets").index(i).child("name"), ""));
        }
    }
    if let Some(os) = at(spec, &["os", "name"]).and_then(Value::as_str)
        && os != "linux"
        && os != "windows"
    {
        errs.push(FieldError::not_supported(&path.child("os").child("name"), os, &["linux", "windows"]));
    }
}

fn validate_dns_config(spec: &Value, dns_policy: &str, path: &Path, errs: &mut Vec<FieldError>) {
    let cfg = field(spec, "dnsConfig");
    let p = path.child("dnsConfig");
    if dns_policy == "None" {
        match cfg {
            None => {
                errs.push(FieldError::required(&p, "must provide `dnsConfig` when `dnsPolicy` is None"));
                return;
            }
            Some(c) if field(c, "nameservers").and_then(Value::as_array).is_none_or(|a| a.is_empty()) => {
                errs.push(FieldError::required(
                    &p.child("nameservers"),
                    "must provide at least one DNS nameserver when `dnsPolicy` is None",
                ));
                return;
            }
            _ => {}
        }
    }
    if let Some(c) = cfg {
        let servers = field(c, "nameservers").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
        if servers.len() > 3 {
            errs.push(FieldError::invalid(
                &p.child("nameservers"),
                Value::Array(servers.to_vec()),
                "must not have more than 3 nameservers",
            ));
        }
        for (i, s) in servers.iter().enumerate() {
            let s = s.as_str().unwrap_or("");
            for msg in names::is_valid_ip(s) {
                errs.push(FieldError::invalid(&p.child("nameservers").index(i), s, msg));
            }
        }
    }
}

fn validate_tolerations(tolerations: &[Value], path: &Path, errs: &mut Vec<FieldError>) {
    for (i, t) in tolerations.iter().enumerate() {
        let p = path.index(i);
        let key = field(t, "key").and_then(Value::as_str).unwrap_or("");
        if !key.is_empty() {
            for msg in names::is_qualified_name(key) {
                errs.push(FieldError::invalid(&p.child("key"), key, msg));
            }
        }
        let op = field(t, "operator").and_then(Value::as_str).unwrap_or("");
        let value = field(t, "value").and_then(Value::as_str).unwrap_or("");
        if key.is_empty() && op != "Exists" {
            errs.push(FieldError::invalid(
                &p.child("operator"),
                op,
                "operator must be Exists when `key` is empty, which means \"match all values and all keys\"",
            ));
        }
        if let Some(secs) = field(t, "tolerationSeconds").and_then(Value::as_i64)
            && field(t, "effect").and_then(Value::as_str) != Some("NoExecute")
        {
            let _ = secs;
            errs.push(FieldError::invalid(
                &p.child("effect"),
                field(t, "effect").and_then(Value::as_str).unwrap_or(""),
                "effect must be 'NoExecute' when `tolerationSeconds` is set",
            ));
        }
        match op {
            "" | "Equal" => {
                for msg in names::is_valid_label_value(value) {
                    errs.push(FieldError::invalid(&p.child("operator"), value, msg));
                }
            }
            "Exists" => {
                if !value.is_empty() {
                    errs.push(FieldError::invalid(
                        &p.child("operator"),
                        t.clone(),
                        "value must be empty when `operator` is 'Exists'",
                    ));
                }
            }
            other => errs.push(FieldError::not_supported(&p.child("operator"), other, &["Equal", "Exists"])),
        }
        if let Some(effect) = field(t, "effect").and_then(Value::as_str).filter(|e| !e.is_empty())
            && !["NoSchedule", "PreferNoSchedule", "NoExecute"].contains(&effect)
        {
            errs.push(FieldError::not_supported(
                &p.child("effect"),
                effect,
                &["NoSchedule", "PreferNoSchedule", "NoExecute"],
            ));
        }
    }
}

/// Volume name → whether it is a PVC-backed (block-capable) volume.
type Volumes = BTreeMap<String, bool>;

/// The volume source fields of a Volume; exactly one is set (defaulting adds emptyDir when none is).
pub(crate) const VOLUME_SOURCES: &[&str] = &[
    "emptyDir",
    "hostPath",
    "gitRepo",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "secret",
    "nfs",
    "iscsi",
    "glusterfs",
    "flocker",
    "persistentVolumeClaim",
    "rbd",
    "cinder",
    "cephfs",
    "quobyte",
    "downwardAPI",
    "fc",
    "flexVolume",
    "configMap",
    "azureFile",
    "vsphereVolume",
    "photonPersistentDisk",
    "portworxVolume",
    "azureDisk",
    "storageos",
    "projected",
    "scaleIO",
    "csi",
    "ephemeral",
    "image",
];

fn validate_volumes(spec: &Value, path: &Path, pod_name: Option<&str>, errs: &mut Vec<FieldError>) -> Volumes {
    let mut out = Volumes::new();
    let vols_path = path.child("volumes");
    for (i, vol) in list_at(errs, spec, "volumes", path).iter().enumerate() {
        let p = vols_path.index(i);
        let mut el = Vec::new();
        let name = field(vol, "name").and_then(Value::as_str).unwrap_or("");
        let mut count = 0;
        let mut pvc_backed = false;
        for src in VOLUME_SOURCES {
            let Some(source) = field(vol, src) else { continue };
            if count > 0 {
                el.push(FieldError::forbidden(&p.child(src), "may not specify more than 1 volume type"));
                continue;
            }
            count += 1;
            pvc_backed = matches!(*src, "persistentVolumeClaim" | "ephemeral");
            validate_volume_source(src, source, &p.child(src), &mut el);
            if *src == "ephemeral"
                && let Some(pod) = pod_name.filter(|n| !n.is_empty())
                && !name.is_empty()
            {
                let pvc = format!("{pod}-{name}");
                for msg in names::is_dns1123_subdomain(&pvc) {
                    el.push(FieldError::invalid(
                        &p.child("ephemeral").child("name"),
                        name,
                        format!("PVC name {}: {msg}", super::go_quote(&pvc)),
                    ));
                }
            }
        }
        if count == 0 {
            el.push(FieldError::required(&p, "must specify a volume type"));
        }
        if name.is_empty() {
            el.push(FieldError::required(&p.child("name"), ""));
        } else {
            for msg in names::is_dns1123_label(name) {
                el.push(FieldError::invalid(&p.child("name"), name, msg));
            }
        }
        if out.contains_key(name) {
            el.push(FieldError::duplicate(&p.child("name"), name));
        }
        if el.is_empty() {
            out.insert(name.to_string(), pvc_backed);
        } else {
            errs.extend(el);
        }
    }
    out
}

fn validate_file_mode(source: &Value, key: &str, path: &Path, errs: &mut Vec<FieldError>) {
    if let Some(mode) = field(source, key).and_then(Value::as_i64)
        && !(0..=0o777).contains(&mode)
    {
        errs.push(FieldError::invalid(&path.child(key), mode, FILE_MODE_ERROR));
    }
}

fn validate_key_to_paths(source: &Value, path: &Path, errs: &mut Vec<FieldError>) {
    if let Some(items) = field(source, "items").and_then(Value::as_array) {
        for (i, item) in items.iter().enumerate() {
            let p = path.child("items").index(i);
            if field(item, "key").and_then(Value::as_str).unwrap_or("").is_empty() {
                errs.push(FieldError::required(&p.child("key"), ""));
            }
            let item_path = field(item, "path").and_then(Value::as_str).unwrap_or("");
            if item_path.is_empty() {
                errs.push(FieldError::required(&p.child("path"), ""));
            } else {
                validate_local_descending_path(item_path, &p.child("path"), errs);
            }
            validate_file_mode(item, "mode", &p, errs);
        }
    }
}

fn validate_local_descending_path(target: &str, path: &Path, errs: &mut Vec<FieldError>) {
    if target.starts_with('/') {
        errs.push(FieldError::invalid(path, target, "must be a relative path"));
    }
    if target.split(['/', '\\']).any(|part| part == "..") {
        errs.push(FieldError::invalid(path, target, "must not contain '..'"));
    }
}

fn validate_volume_source(kind: &str, source: &Value, path: &Path, errs: &mut Vec<FieldError>) {
    let required = |key: &str, errs: &mut Vec<FieldError>| {
        if field(source, key).and_then(Value::as_str).unwrap_or("").is_empty() {
            errs.push(FieldError::required(&path.child(key), ""));
        }
    };
    match kind {
        "emptyDir" => {
            if let Some(limit) = field(source, "sizeLimit")
                && Quantity::from_json(limit).is_ok_and(|q| q.is_negative())
            {
                errs.push(FieldError::forbidden(
                    &path.child("sizeLimit"),
                    "SizeLimit field must be a valid resource quantity",
                ));
            }
            if let Some(medium) = field(source, "medium").and_then(Value::as_str)
                && !medium.is_empty()
                && medium != "Memory"
                && !medium.starts_with("HugePages")
            {
                errs.push(FieldError::not_supported(&path.child("medium"), medium, &["", "Memory", "HugePages"]));
            }
        }
        "hostPath" => {
            let p = field(source, "path").and_then(Value::as_str).unwrap_or("");
            if p.is_empty() {
                errs.push(FieldError::required(&path.child("path"), ""));
                return;
            }
            if p.split('/').any(|part| part == "..") {
                errs.push(FieldError::invalid(&path.child("path"), p, "must not contain '..'"));
            }
            if let Some(t) = field(source, "type").and_then(Value::as_str) {
                const TYPES: &[&str] = &[
                    "",
                    "BlockDevice",
                    "CharDevice",
                    "Directory",
                    "DirectoryOrCreate",
                    "File",
                    "FileOrCreate",
                    "Socket",
                ];
                if !TYPES.contains(&t) {
                    errs.push(FieldError::not_supported(&path.child("type"), t, TYPES));
                }
            }
        }
        "secret" => {
            required("secretName", errs);
            validate_file_mode(source, "defaultMode", path, errs);
            validate_key_to_paths(source, path, errs);
        }
        "configMap" => {
            required("name", errs);
            validate_file_mode(source, "defaultMode", path, errs);
            validate_key_to_paths(source, path, errs);
        }
        "persistentVolumeClaim" => {
            let claim = field(source, "claimName").and_then(Value::as_str).unwrap_or("");
            if claim.is_empty() {
                errs.push(FieldError::required(&path.child("claimName"), ""));
            }
        }
        "nfs" => {
            required("server", errs);
            let p = field(source, "path").and_then(Value::as_str).unwrap_or("");
            if p.is_empty() {
                errs.push(FieldError::required(&path.child("path"), ""));
            } else if !p.starts_with('/') {
                errs.push(FieldError::invalid(&path.child("path"), p, "must be an absolute path"));
            }
        }
        "csi" => required("driver", errs),
        "downwardAPI" | "projected" => validate_file_mode(source, "defaultMode", path, errs),
        "image" => required("reference", errs),
        "ephemeral" if field(source, "volumeClaimTemplate").is_none() => {
            errs.push(FieldError::required(&path.child("volumeClaimTemplate"), ""));
        }
        _ => {}
    }
}

fn validate_containers(
    containers: &[Value],
    volumes: &Volumes,
    path: &Path,
    restart_policy: &str,
    errs: &mut Vec<FieldError>,
) {
    if containers.is_empty() {
        errs.push(FieldError::required(path, ""));
        return;
    }
    let mut names = HashSet::new();
    for (i, c) in containers.iter().enumerate() {
        let p = path.index(i);
        validate_container_common(c, volumes, &p, restart_policy, errs);
        let name = field(c, "name").and_then(Value::as_str).unwrap_or("");
        if !names.insert(name) {
            errs.push(FieldError::duplicate(&p.child("name"), name));
        }
        validate_lifecycle_and_probes(c, &p, errs);
        if field(c, "restartPolicy").is_some() {
            errs.push(FieldError::forbidden(&p.child("restartPolicy"), "may not be set for non-init containers"));
        }
    }
    check_host_port_conflicts(containers, path, errs);
}

fn validate_init_containers(
    init: &[Value],
    regular: &[Value],
    volumes: &Volumes,
    path: &Path,
    restart_policy: &str,
    errs: &mut Vec<FieldError>,
) {
    let mut names: HashSet<&str> =
        regular.iter().map(|c| field(c, "name").and_then(Value::as_str).unwrap_or("")).collect();
    for (i, c) in init.iter().enumerate() {
        let p = path.index(i);
        validate_container_common(c, volumes, &p, restart_policy, errs);
        let mut sidecar = false;
        if let Some(rp) = field(c, "restartPolicy").and_then(Value::as_str) {
            if rp == "Always" {
                sidecar = true;
            } else {
                errs.push(FieldError::not_supported(&p.child("restartPolicy"), rp, &["Always"]));
            }
        }
        let name = field(c, "name").and_then(Value::as_str).unwrap_or("");
        if names.contains(name) {
            errs.push(FieldError::duplicate(&p.child("name"), name));
        } else if !name.is_empty() {
            names.insert(name);
        }
        check_host_port_conflicts(std::slice::from_ref(c), path, errs);
        if sidecar {
            validate_lifecycle_and_probes(c, &p, errs);
        } else {
            for key in ["lifecycle", "livenessProbe", "readinessProbe", "startupProbe"] {
                if field(c, key).is_some() {
                    errs.push(FieldError::forbidden(
                        &p.child(key),
                        "may not be set for init containers without restartPolicy=Always",
                    ));
                }
            }
        }
    }
}

fn validate_container_common(
    c: &Value,
    volumes: &Volumes,
    path: &Path,
    restart_policy: &str,
    errs: &mut Vec<FieldError>,
) {
    let name = str_at(errs, c, "name", path).unwrap_or("");
    if name.is_empty() {
        errs.push(FieldError::required(&path.child("name"), ""));
    } else {
        for msg in names::is_dns1123_label(name) {
            errs.push(FieldError::invalid(&path.child("name"), name, msg));
        }
    }
    if str_at(errs, c, "image", path).unwrap_or("").is_empty() {
        errs.push(FieldError::required(&path.child("image"), ""));
    }
    match str_at(errs, c, "terminationMessagePolicy", path).unwrap_or("") {
        "File" | "FallbackToLogsOnError" => {}
        "" => errs.push(FieldError::required(&path.child("terminationMessagePolicy"), "")),
        other => errs.push(FieldError::not_supported(
            &path.child("terminationMessagePolicy"),
            other,
            &["File", "FallbackToLogsOnError"],
        )),
    }
    validate_container_ports(list_at(errs, c, "ports", path), &path.child("ports"), errs);
    validate_env(list_at(errs, c, "env", path), &path.child("env"), errs);
    validate_env_from(list_at(errs, c, "envFrom", path), &path.child("envFrom"), errs);
    validate_volume_mounts(c, volumes, path, errs);
    match str_at(errs, c, "imagePullPolicy", path).unwrap_or("") {
        "Always" | "IfNotPresent" | "Never" => {}
        "" => errs.push(FieldError::required(&path.child("imagePullPolicy"), "")),
        other => errs.push(FieldError::not_supported(
            &path.child("imagePullPolicy"),
            other,
            &["Always", "IfNotPresent", "Never"],
        )),
    }
    if let Some(res) = obj_at(errs, c, "resources", path) {
        validate_resource_requirements(res, &path.child("resources"), errs);
    }
    for (i, rp) in list_at(errs, c, "resizePolicy", path).iter().enumerate() {
        let p = path.child("resizePolicy");
        let res = field(rp, "resourceName").and_then(Value::as_str).unwrap_or("");
        match res {
            "cpu" | "memory" => {}
            "" => errs.push(FieldError::required(&p, "")),
            other => errs.push(FieldError::not_supported(&p, other, &["cpu", "memory"])),
        }
        let policy = field(rp, "restartPolicy").and_then(Value::as_str).unwrap_or("");
        match policy {
            "NotRequired" | "RestartContainer" => {}
            "" => errs.push(FieldError::required(&p, "")),
            other => errs.push(FieldError::not_supported(&p, other, &["NotRequired", "RestartContainer"])),
        }
        if restart_policy == "Never" && policy != "NotRequired" {
            errs.push(FieldError::invalid(&p, policy, "must be 'NotRequired' when `restartPolicy` is 'Never'"));
        }
        let _ = i;
    }
}

fn validate_container_ports(ports: &[Value], path: &Path, errs: &mut Vec<FieldError>) {
    let mut names = HashSet::new();
    for (i, port) in ports.iter().enumerate() {
        let p = path.index(i);
        let name = field(port, "name").and_then(Value::as_str).unwrap_or("");
        if !name.is_empty() {
            let msgs = names::is_valid_port_name(name);
            if !msgs.is_empty() {
                for msg in msgs {
                    errs.push(FieldError::invalid(&p.child("name"), name, msg));
                }
            } else if !names.insert(name) {
                errs.push(FieldError::duplicate(&p.child("name"), name));
            }
        }
        match int_at(errs, port, "containerPort", &p) {
            None | Some(0) => errs.push(FieldError::required(&p.child("containerPort"), "")),
            Some(n) => {
                for msg in names::is_valid_port_num(n) {
                    errs.push(FieldError::invalid(&p.child("containerPort"), n, msg));
                }
            }
        }
        if let Some(n) = int_at(errs, port, "hostPort", &p).filter(|n| *n != 0) {
            for msg in names::is_valid_port_num(n) {
                errs.push(FieldError::invalid(&p.child("hostPort"), n, msg));
            }
        }
        validate_protocol(port, &p, errs);
    }
}

/// `protocol` of a container or service port: required, one of SCTP, TCP, UDP.
pub(crate) fn validate_protocol(port: &Value, path: &Path, errs: &mut Vec<FieldError>) {
    match field(port, "protocol").and_then(Value::as_str).unwrap_or("") {
        "" => errs.push(FieldError::required(&path.child("protocol"), "")),
        "TCP" | "UDP" | "SCTP" => {}
        other => errs.push(FieldError::not_supported(&path.child("protocol"), other, &["SCTP", "TCP", "UDP"])),
    }
}

fn check_host_port_conflicts(containers: &[Value], path: &Path, errs: &mut Vec<FieldError>) {
    let mut seen = HashSet::new();
    for (ci, c) in containers.iter().enumerate() {
        let ports = field(c, "ports").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
        for (pi, port) in ports.iter().enumerate() {
            let host_port = field(port, "hostPort").and_then(Value::as_i64).unwrap_or(0);
            if host_port == 0 {
                continue;
            }
            let protocol = field(port, "protocol").and_then(Value::as_str).unwrap_or("");
            let host_ip = field(port, "hostIP").and_then(Value::as_str).unwrap_or("");
            let key = format!("{protocol}/{host_ip}/{host_port}");
            if !seen.insert(key.clone()) {
                errs.push(FieldError::duplicate(&path.index(ci).child("ports").index(pi).child("hostPort"), key));
            }
        }
    }
}

fn validate_env(env: &[Value], path: &Path, errs: &mut Vec<FieldError>) {
    for (i, ev) in env.iter().enumerate() {
        let p = path.index(i);
        let name = field(ev, "name").and_then(Value::as_str).unwrap_or("");
        if name.is_empty() {
            errs.push(FieldError::required(&p.child("name"), ""));
        } else {
            for msg in names::is_env_var_name(name) {
                errs.push(FieldError::invalid(&p.child("name"), name, msg));
            }
        }
        let Some(from) = field(ev, "valueFrom") else { continue };
        let vp = p.child("valueFrom");
        let mut sources = 0;
        if let Some(r) = field(from, "fieldRef") {
            sources += 1;
            let rp = vp.child("fieldRef");
            if field(r, "apiVersion").and_then(Value::as_str).unwrap_or("").is_empty() {
                errs.push(FieldError::required(&rp.child("apiVersion"), ""));
            } else if field(r, "fieldPath").and_then(Value::as_str).unwrap_or("").is_empty() {
                errs.push(FieldError::required(&rp.child("fieldPath"), ""));
            }
        }
        if let Some(r) = field(from, "resourceFieldRef") {
            sources += 1;
            if field(r, "resource").and_then(Value::as_str).unwrap_or("").is_empty() {
                errs.push(FieldError::required(&vp.child("resourceFieldRef").child("resource"), ""));
            }
        }
        for key in ["configMapKeyRef", "secretKeyRef"] {
            if let Some(r) = field(from, key) {
                sources += 1;
                let rp = vp.child(key);
                let name = field(r, "name").and_then(Value::as_str).unwrap_or("");
                for msg in names::is_dns1123_subdomain(name) {
                    errs.push(FieldError::invalid(&rp.child("name"), name, msg));
                }
                let k = field(r, "key").and_then(Value::as_str).unwrap_or("");
                if k.is_empty() {
                    errs.push(FieldError::required(&rp.child("key"), ""));
                } else {
                    for msg in names::is_config_map_key(k) {
                        errs.push(FieldError::invalid(&rp.child("key"), k, msg));
                    }
                }
            }
        }
        if sources == 0 {
            errs.push(FieldError::invalid(
                &vp,
                "",
                "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`",
            ));
        } else if !field(ev, "value").and_then(Value::as_str).unwrap_or("").is_empty() {
            errs.push(FieldError::invalid(&vp, "", "may not be specified when `value` is not empty"));
        } else if sources > 1 {
            errs.push(FieldError::invalid(&vp, "", "may not have more than one field specified at a time"));
        }
    }
}

fn validate_env_from(env_from: &[Value], path: &Path, errs: &mut Vec<FieldError>) {
    for (i, ev) in env_from.iter().enumerate() {
        let p = path.index(i);
        if let Some(prefix) = field(ev, "prefix").and_then(Value::as_str).filter(|s| !s.is_empty()) {
            for msg in names::is_env_var_name(prefix) {
                errs.push(FieldError::invalid(&p.child("prefix"), prefix, msg));
            }
        }
        let mut sources = 0;
        for key in ["configMapRef", "secretRef"] {
            if let Some(r) = field(ev, key) {
                sources += 1;
                let name = field(r, "name").and_then(Value::as_str).unwrap_or("");
                if name.is_empty() {
                    errs.push(FieldError::required(&p.child(key).child("name"), ""));
                } else {
                    for msg in NameRule::Dns1123Subdomain.check(name, true) {
                        errs.push(FieldError::invalid(&p.child(key).child("name"), name, msg));
                    }
                }
            }
        }
        if sources == 0 {
            errs.push(FieldError::invalid(path, "", "must specify one of: `configMapRef` or `secretRef`"));
        } else if sources > 1 {
            errs.push(FieldError::invalid(path, "", "may not have more than one field specified at a time"));
        }
    }
}

fn validate_volume_mounts(c: &Value, volumes: &Volumes, path: &Path, errs: &mut Vec<FieldError>) {
    let mounts_path = path.child("volumeMounts");
    let devices = field(c, "volumeDevices").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
    let device_names: HashSet<&str> = devices.iter().filter_map(|d| field(d, "name").and_then(Value::as_str)).collect();
    let device_paths: HashSet<&str> =
        devices.iter().filter_map(|d| field(d, "devicePath").and_then(Value::as_str)).collect();
    let mut mount_points = HashSet::new();
    let mounts = list_at(errs, c, "volumeMounts", path);
    for (i, m) in mounts.iter().enumerate() {
        let p = mounts_path.index(i);
        let name = field(m, "name").and_then(Value::as_str).unwrap_or("");
        if name.is_empty() {
            errs.push(FieldError::required(&p.child("name"), ""));
        }
        if !volumes.contains_key(name) {
            errs.push(FieldError::not_found(&p.child("name"), name));
        }
        let mount_path = field(m, "mountPath").and_then(Value::as_str).unwrap_or("");
        if mount_path.is_empty() {
            errs.push(FieldError::required(&p.child("mountPath"), ""));
        }
        if !mount_points.insert(mount_path) {
            errs.push(FieldError::invalid(&p.child("mountPath"), mount_path, "must be unique"));
        }
        if device_names.contains(name) {
            errs.push(FieldError::invalid(&p.child("name"), name, "must not already exist in volumeDevices"));
        }
        if device_paths.contains(mount_path) {
            errs.push(FieldError::invalid(
                &p.child("mountPath"),
                mount_path,
                "must not already exist as a path in volumeDevices",
            ));
        }
        let sub_path = field(m, "subPath").and_then(Value::as_str).unwrap_or("");
        if !sub_path.is_empty() {
            validate_local_descending_path(sub_path, &mounts_path.child("subPath"), errs);
        }
        let sub_expr = field(m, "subPathExpr").and_then(Value::as_str).unwrap_or("");
        if !sub_expr.is_empty() {
            if !sub_path.is_empty() {
                errs.push(FieldError::invalid(
                    &p.child("subPathExpr"),
                    sub_expr,
                    "subPathExpr and subPath are mutually exclusive",
                ));
            }
            validate_local_descending_path(sub_expr, &mounts_path.child("subPathExpr"), errs);
        }
        if let Some(mp) = field(m, "mountPropagation").and_then(Value::as_str) {
            const MODES: &[&str] = &["Bidirectional", "HostToContainer", "None"];
            if !MODES.contains(&mp) {
                errs.push(FieldError::not_supported(&mounts_path.child("mountPropagation"), mp, MODES));
            }
        }
    }
    let mut seen_devices = HashSet::new();
    for (i, d) in devices.iter().enumerate() {
        let p = path.child("volumeDevices").index(i);
        let name = field(d, "name").and_then(Value::as_str).unwrap_or("");
        if name.is_empty() {
            errs.push(FieldError::required(&p.child("name"), ""));
        }
        if !seen_devices.insert(name) {
            errs.push(FieldError::invalid(&p.child("name"), name, "must be unique"));
        }
        match volumes.get(name) {
            None => errs.push(FieldError::not_found(&p.child("name"), name)),
            Some(false) => errs.push(FieldError::invalid(
                &p.child("name"),
                name,
                "can only use volume source type of PersistentVolumeClaim or Ephemeral for block mode",
            )),
            Some(true) => {}
        }
        if field(d, "devicePath").and_then(Value::as_str).unwrap_or("").is_empty() {
            errs.push(FieldError::required(&p.child("devicePath"), ""));
        }
    }
}

fn validate_lifecycle_and_probes(c: &Value, path: &Path, errs: &mut Vec<FieldError>) {
    if let Some(lc) = field(c, "lifecycle") {
        for hook in ["postStart", "preStop"] {
            if let Some(h) = field(lc, hook) {
                validate_handler(h, &path.child("lifecycle").child(hook), true, errs);
            }
        }
    }
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        let Some(pr) = field(c, probe) else { continue };
        let p = path.child(probe);
        validate_handler(pr, &p, false, errs);
        for key in ["initialDelaySeconds", "timeoutSeconds", "periodSeconds", "successThreshold", "failureThreshold"] {
            meta::non_negative(field(pr, key).and_then(Value::as_i64), &p.child(key), errs);
        }
        if let Some(t) = field(pr, "terminationGracePeriodSeconds").and_then(Value::as_i64) {
            if probe == "readinessProbe" {
                errs.push(FieldError::invalid(
                    &p.child("terminationGracePeriodSeconds"),
                    t,
                    "must not be set for readinessProbes",
                ));
            } else if t <= 0 {
                errs.push(FieldError::invalid(&p.child("terminationGracePeriodSeconds"), t, "must be greater than 0"));
            }
        }
        let success = field(pr, "successThreshold").and_then(Value::as_i64).unwrap_or(1);
        if probe != "readinessProbe" && success != 1 {
            errs.push(FieldError::invalid(&p.child("successThreshold"), success, "must be 1"));
        }
    }
}

fn validate_handler(h: &Value, path: &Path, lifecycle: bool, errs: &mut Vec<FieldError>) {
    let kinds: &[&str] =
        if lifecycle { &["exec", "httpGet", "tcpSocket", "sleep"] } else { &["exec", "httpGet", "tcpSocket", "grpc"] };
    let mut count = 0;
    for kind in kinds {
        let Some(action) = field(h, kind) else { continue };
        if count > 0 {
            errs.push(FieldError::forbidden(&path.child(kind), "may not specify more than 1 handler type"));
            continue;
        }
        count += 1;
        let p = path.child(kind);
        match *kind {
            "exec" if field(action, "command").and_then(Value::as_array).is_none_or(|a| a.is_empty()) => {
                errs.push(FieldError::required(&p.child("command"), ""));
            }
            "httpGet" => {
                if field(action, "path").and_then(Value::as_str).unwrap_or("").is_empty() {
                    errs.push(FieldError::required(&p.child("path"), ""));
                }
                validate_port_num_or_name(field(action, "port"), &p.child("port"), errs);
                let scheme = field(action, "scheme").and_then(Value::as_str).unwrap_or("");
                if scheme != "HTTP" && scheme != "HTTPS" {
                    errs.push(FieldError::not_supported(&p.child("scheme"), scheme, &["HTTP", "HTTPS"]));
                }
                if let Some(headers) = field(action, "httpHeaders").and_then(Value::as_array) {
                    for hd in headers {
                        let n = field(hd, "name").and_then(Value::as_str).unwrap_or("");
                        for msg in names::is_http_header_name(n) {
                            errs.push(FieldError::invalid(&p.child("httpHeaders"), n, msg));
                        }
                    }
                }
            }
            "tcpSocket" => validate_port_num_or_name(field(action, "port"), &p.child("port"), errs),
            "grpc" => {
                let port = field(action, "port").and_then(Value::as_i64).unwrap_or(0);
                for msg in names::is_valid_port_num(port) {
                    errs.push(FieldError::invalid(&p.child("port"), port, msg));
                }
            }
            _ => {}
        }
    }
    if count == 0 {
        errs.push(FieldError::required(path, "must specify a handler type"));
    }
}

/// An int-or-string port: a number in 1-65535 or a valid port name.
pub(crate) fn validate_port_num_or_name(port: Option<&Value>, path: &Path, errs: &mut Vec<FieldError>) {
    match port {
        Some(Value::String(s)) => {
            for msg in names::is_valid_port_name(s) {
                errs.push(FieldError::invalid(path, s.as_str(), msg));
            }
        }
        Some(v) => {
            let n = v.as_i64().unwrap_or(0);
            for msg in names::is_valid_port_num(n) {
                errs.push(FieldError::invalid(path, n, msg));
            }
        }
        None => {
            for msg in names::is_valid_port_num(0) {
                errs.push(FieldError::invalid(path, 0, msg));
            }
        }
    }
}

const STANDARD_CONTAINER_RESOURCES: &[&str] = &["cpu", "memory", "ephemeral-storage"];
const STANDARD_RESOURCES: &[&str] = &[
    "cpu",
    "memory",
    "ephemeral-storage",
    "requests.cpu",
    "requests.memory",
    "requests.ephemeral-storage",
    "limits.cpu",
    "limits.memory",
    "limits.ephemeral-storage",
    "pods",
    "services",
    "replicationcontrollers",
    "resourcequotas",
    "secrets",
    "configmaps",
    "persistentvolumeclaims",
    "storage",
    "requests.storage",
    "services.nodeports",
    "services.loadbalancers",
];

fn is_hugepages(name: &str) -> bool {
    name.starts_with("hugepages-")
}

/// A resource name with no `kubernetes.io` domain is not native to Kubernetes.
fn is_native(name: &str) -> bool {
    !name.contains('/') || name.contains("kubernetes.io/")
}

fn is_extended(name: &str) -> bool {
    if is_native(name) || name.starts_with("requests.") {
        return false;
    }
    names::is_qualified_name(&format!("requests.{name}")).is_empty()
}

fn overcommit_allowed(name: &str) -> bool {
    is_native(name) && !is_hugepages(name)
}

/// Resource name checks of a container resource list (`validateContainerResourceName`).
fn validate_container_resource_name(name: &str, path: &Path, errs: &mut Vec<FieldError>) {
    let qualified = names::is_qualified_name(name);
    if !qualified.is_empty() {
        for msg in qualified {
            errs.push(FieldError::invalid(path, name, msg));
        }
    } else if !name.contains('/') && !STANDARD_RESOURCES.contains(&name) && !is_hugepages(name) {
        errs.push(FieldError::invalid(path, name, "must be a standard resource type or fully qualified"));
    }
    if !name.contains('/') {
        if !STANDARD_CONTAINER_RESOURCES.contains(&name) && !is_hugepages(name) {
            errs.push(FieldError::invalid(path, name, "must be a standard resource for containers"));
        }
    } else if !is_native(name) && !is_extended(name) {
        errs.push(FieldError::invalid(path, name, "doesn't follow extended resource name standard"));
    }
}

/// Parses each quantity of a resource list; unparseable ones are reported.
fn quantities(list: &Value, path: &Path, errs: &mut Vec<FieldError>) -> Vec<(String, Quantity)> {
    let mut out = Vec::new();
    if let Some(map) = list.as_object() {
        for (k, v) in map {
            match Quantity::from_json(v) {
                Ok(q) => out.push((k.clone(), q)),
                Err(e) => errs.push(FieldError::invalid(&path.key(k), v.clone(), e.to_string())),
            }
        }
    }
    out
}

/// Checks the value of one quantity: non-negative, and whole for extended resources.
fn validate_quantity_value(name: &str, q: &Quantity, path: &Path, errs: &mut Vec<FieldError>) {
    if q.is_negative() {
        errs.push(FieldError::invalid(path, q.to_string(), IS_NEGATIVE));
    }
    if is_extended(name) && q.milli_value() % 1000 != 0 {
        errs.push(FieldError::invalid(path, q.to_string(), "must be an integer"));
    }
}

fn validate_resource_list(list: &Value, path: &Path, container: bool, errs: &mut Vec<FieldError>) {
    for (name, q) in quantities(list, path, errs) {
        let p = path.key(&name);
        if container {
            validate_container_resource_name(&name, &p, errs);
        }
        validate_quantity_value(&name, &q, &p, errs);
    }
}

/// Container `resources`: names, values, and requests not above limits.
fn validate_resource_requirements(res: &Value, path: &Path, errs: &mut Vec<FieldError>) {
    let lim_path = path.child("limits");
    let req_path = path.child("requests");
    let empty = json!({});
    let limits = quantities(field(res, "limits").unwrap_or(&empty), &lim_path, errs);
    let requests = quantities(field(res, "requests").unwrap_or(&empty), &req_path, errs);
    let mut hugepages = false;
    let mut cpu_or_memory = false;
    for (name, q) in &limits {
        let p = lim_path.key(name);
        validate_container_resource_name(name, &p, errs);
        validate_quantity_value(name, q, &p, errs);
        hugepages |= is_hugepages(name);
        cpu_or_memory |= name == "cpu" || name == "memory";
    }
    for (name, q) in &requests {
        let p = req_path.key(name);
        validate_container_resource_name(name, &p, errs);
        validate_quantity_value(name, q, &p, errs);
        match limits.iter().find(|(n, _)| n == name) {
            Some((_, limit)) => {
                if q != limit && !overcommit_allowed(name) {
                    errs.push(FieldError::invalid(
                        &req_path,
                        q.to_string(),
                        format!("must be equal to {name} limit of {limit}"),
                    ));
                } else if q > limit {
                    errs.push(FieldError::invalid(
                        &req_path,
                        q.to_string(),
                        format!("must be less than or equal to {name} limit of {limit}"),
                    ));
                }
            }
            None if !overcommit_allowed(name) => {
                errs.push(FieldError::required(&lim_path, "Limit must be set for non overcommitable resources"));
            }
            None => {}
        }
        hugepages |= is_hugepages(name);
        cpu_or_memory |= name == "cpu" || name == "memory";
    }
    if hugepages && !cpu_or_memory {
        errs.push(FieldError::forbidden(path, "HugePages require cpu or memory"));
    }
}

/// The rules of a Pod update: only images, activeDeadlineSeconds, tolerations (additions) and a few more may change.
fn validate_pod_spec_update(new: &Value, old: &Value, errs: &mut Vec<FieldError>) {
    let spec_path = Path::root("spec");
    for key in ["containers", "initContainers"] {
        let n = field(new, key).and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
        let o = field(old, key).and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
        if n.len() != o.len() {
            errs.push(FieldError::forbidden(&spec_path.child(key), "pod updates may not add or remove containers"));
            return;
        }
        for (i, c) in n.iter().enumerate() {
            let image = field(c, "image").and_then(Value::as_str).unwrap_or("");
            if image.is_empty() {
                errs.push(FieldError::required(&spec_path.child(key).index(i).child("image"), ""));
            }
        }
    }
    let ads_path = spec_path.child("activeDeadlineSeconds");
    let new_ads = field(new, "activeDeadlineSeconds").and_then(Value::as_i64);
    let old_ads = field(old, "activeDeadlineSeconds").and_then(Value::as_i64);
    match (new_ads, old_ads) {
        (Some(n), _) if !(0..=MAX_INT32).contains(&n) => {
            errs.push(FieldError::invalid(&ads_path, n, names::inclusive_range_error(0, MAX_INT32)));
            return;
        }
        (Some(n), Some(o)) if o < n => {
            errs.push(FieldError::invalid(&ads_path, n, "must be less than or equal to previous value"));
            return;
        }
        (None, Some(_)) => errs.push(FieldError::invalid(
            &ads_path,
            Value::Null,
            "must not update from a positive integer to nil value",
        )),
        _ => {}
    }
    let new_tol = field(new, "tolerations").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
    let old_tol = field(old, "tolerations").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
    for o in old_tol {
        let kept = new_tol.iter().any(|n| {
            let mut n = n.clone();
            if let (Some(obj), Some(secs)) = (n.as_object_mut(), field(o, "tolerationSeconds")) {
                // tolerationSeconds of an existing toleration may change.
                obj.insert("tolerationSeconds".into(), secs.clone());
            }
            semantic_eq(Some(&n), Some(o))
        });
        if !kept {
            errs.push(FieldError::forbidden(
                &spec_path.child("tolerations"),
                "existing toleration can not be modified except its tolerationSeconds",
            ));
            break;
        }
    }
    let new_gates = field(new, "schedulingGates").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
    let old_gates = field(old, "schedulingGates").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
    if new_gates.iter().any(|g| !old_gates.contains(g)) {
        errs.push(FieldError::forbidden(
            &spec_path.child("schedulingGates"),
            "only deletion is allowed, but found new scheduling gate",
        ));
    }

    if semantic_eq(Some(new), Some(old)) {
        return;
    }
    // Replace what may change with the old values, then anything still different is forbidden.
    let mut munged = new.clone();
    if let Some(obj) = munged.as_object_mut() {
        for key in ["containers", "initContainers"] {
            if let (Some(Value::Array(cs)), Some(olds)) = (obj.get_mut(key), field(old, key).and_then(Value::as_array))
            {
                for (c, o) in cs.iter_mut().zip(olds) {
                    if let Some(c) = c.as_object_mut() {
                        match field(o, "image") {
                            Some(img) => c.insert("image".into(), img.clone()),
                            None => c.remove("image"),
                        };
                    }
                }
            }
        }
        for key in ["activeDeadlineSeconds", "tolerations", "schedulingGates"] {
            match old.get(key) {
                Some(v) => obj.insert(key.into(), v.clone()),
                None => obj.remove(key),
            };
        }
        let old_grace = field(old, "terminationGracePeriodSeconds").and_then(Value::as_i64);
        let new_grace = field(new, "terminationGracePeriodSeconds").and_then(Value::as_i64);
        if let (Some(o), Some(1)) = (old_grace, new_grace)
            && o < 0
        {
            obj.insert("terminationGracePeriodSeconds".into(), json!(o));
        }
        if !old_gates.is_empty() {
            for key in ["nodeSelector", "affinity"] {
                match old.get(key) {
                    Some(v) => obj.insert(key.into(), v.clone()),
                    None => obj.remove(key),
                };
            }
        }
    }
    if !semantic_eq(Some(&munged), Some(old)) {
        let mut changed = Vec::new();
        diff_paths(Some(old), Some(&munged), &spec_path, &mut changed);
        let mut detail =
            format!("pod updates may not change fields other than {}", UPDATABLE_POD_SPEC_FIELDS.join(","));
        detail.push('\n');
        for c in changed.iter().take(20) {
            detail.push_str(&format!("  changed: {c}\n"));
        }
        errs.push(FieldError::forbidden(&spec_path, detail));
    }
}

/// The paths at which two JSON values differ, for the explanation of a forbidden update.
pub(crate) fn diff_paths(a: Option<&Value>, b: Option<&Value>, path: &Path, out: &mut Vec<String>) {
    if semantic_eq(a, b) {
        return;
    }
    match (a, b) {
        (Some(Value::Object(x)), Some(Value::Object(y))) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                diff_paths(x.get(k), y.get(k), &path.child(k), out);
            }
        }
        (Some(Value::Array(x)), Some(Value::Array(y))) if x.len() == y.len() => {
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                diff_paths(Some(p), Some(q), &path.index(i), out);
            }
        }
        _ => out.push(path.to_string()),
    }
}

/// The pod-spec of a workload template must be checked with its own restart rules; this helper returns the
/// template's `spec.restartPolicy` (after defaulting).
pub(crate) fn template_restart_policy(template: &Value) -> &str {
    at(template, &["spec", "restartPolicy"]).and_then(Value::as_str).unwrap_or("")
}

/// Whether `spec.activeDeadlineSeconds` is set in a template.
pub(crate) fn template_has_active_deadline(template: &Value) -> bool {
    at(template, &["spec", "activeDeadlineSeconds"]).is_some()
}
