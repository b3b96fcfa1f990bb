//! apps/v1: Deployments, ReplicaSets, StatefulSets, DaemonSets, ControllerRevisions.

use serde_json::{Value, json};

use super::meta::{self, immutable, non_negative};
use super::names;
use super::pod;
use super::value::{field, int_at, obj_at, str_at};
use super::{FieldError, Path};

fn spec_of<'a>(obj: &'a Value, errs: &mut Vec<FieldError>, empty: &'a Value) -> &'a Value {
    obj_at(errs, obj, "spec", &Path::root("")).unwrap_or(empty)
}

/// Selector required and non-empty, valid, and matching the template labels; then the template itself.
fn validate_selector_and_template(spec: &Value, path: &Path, kind: &str, errs: &mut Vec<FieldError>) {
    let empty = json!({});
    let template = field(spec, "template").unwrap_or(&empty);
    match field(spec, "selector") {
        None => errs.push(FieldError::required(&path.child("selector"), "")),
        Some(sel) => {
            meta::validate_label_selector(sel, &path.child("selector"), errs);
            if meta::selector_is_empty(sel) {
                errs.push(FieldError::invalid(
                    &path.child("selector"),
                    sel.clone(),
                    format!("empty selector is invalid for {kind}"),
                ));
            } else {
                let labels = meta::template_labels(template, errs);
                if !meta::selector_matches(sel, &labels) {
                    let shown =
                        crate::validation::value::at(template, &["metadata", "labels"]).cloned().unwrap_or(Value::Null);
                    errs.push(FieldError::invalid(
                        &path.child("template").child("metadata").child("labels"),
                        shown,
                        "`selector` does not match template `labels`",
                    ));
                }
            }
        }
    }
}

/// The template checks of ReplicaSets and Deployments (`ValidatePodTemplateSpecForReplicaSet`).
fn validate_template_for_replica_set(spec: &Value, path: &Path, owner: &str, errs: &mut Vec<FieldError>) {
    let empty = json!({});
    let template = field(spec, "template").unwrap_or(&empty);
    let tpath = path.child("template");
    pod::validate_pod_template_spec(template, &tpath, errs);
    let rp = pod::template_restart_policy(template);
    if rp != "Always" {
        errs.push(FieldError::not_supported(&tpath.child("spec").child("restartPolicy"), rp, &["Always"]));
    }
    if pod::template_has_active_deadline(template) {
        errs.push(FieldError::forbidden(
            &tpath.child("spec").child("activeDeadlineSeconds"),
            format!("activeDeadlineSeconds in {owner} is not Supported"),
        ));
    }
}

/// An int-or-percent (`maxSurge`, `maxUnavailable`): a non-negative integer or a valid percentage.
fn validate_int_or_percent(v: Option<&Value>, path: &Path, errs: &mut Vec<FieldError>) {
    match v {
        Some(Value::String(s)) => {
            for msg in names::is_valid_percent(s) {
                errs.push(FieldError::invalid(path, s.as_str(), msg));
            }
        }
        Some(Value::Number(n)) => non_negative(n.as_i64(), path, errs),
        Some(other) => {
            errs.push(FieldError::invalid(path, other.clone(), "must be an integer or percentage (e.g '5%')"))
        }
        None => {}
    }
}

fn int_or_percent_value(v: Option<&Value>) -> i64 {
    match v {
        Some(Value::String(s)) if names::is_valid_percent(s).is_empty() => s[..s.len() - 1].parse().unwrap_or(0),
        Some(Value::Number(n)) => n.as_i64().unwrap_or(0),
        _ => 0,
    }
}

fn not_more_than_100_percent(v: Option<&Value>, path: &Path, errs: &mut Vec<FieldError>) {
    if let Some(Value::String(s)) = v
        && names::is_valid_percent(s).is_empty()
        && int_or_percent_value(v) > 100
    {
        errs.push(FieldError::invalid(path, s.as_str(), "must not be greater than 100%"));
    }
}

pub(crate) fn validate_deployment(obj: &Value, old: Option<&Value>, errs: &mut Vec<FieldError>) {
    let empty = json!({});
    let spec = spec_of(obj, errs, &empty);
    let path = Path::root("spec");
    non_negative(int_at(errs, spec, "replicas", &path), &path.child("replicas"), errs);
    validate_selector_and_template(spec, &path, "deployment", errs);
    validate_template_for_replica_set(spec, &path, "ReplicaSet", errs);

    let strategy = field(spec, "strategy").unwrap_or(&empty);
    let spath = path.child("strategy");
    match field(strategy, "type").and_then(Value::as_str).unwrap_or("") {
        "Recreate" => {
            if field(strategy, "rollingUpdate").is_some() {
                errs.push(FieldError::forbidden(
                    &spath.child("rollingUpdate"),
                    "may not be specified when strategy `type` is 'Recreate'",
                ));
            }
        }
        "RollingUpdate" => match field(strategy, "rollingUpdate") {
            None => errs
                .push(FieldError::required(&spath.child("rollingUpdate"), "this should be defaulted and never be nil")),
            Some(ru) => {
                let rpath = spath.child("rollingUpdate");
                let mu = field(ru, "maxUnavailable");
                let ms = field(ru, "maxSurge");
                validate_int_or_percent(mu, &rpath.child("maxUnavailable"), errs);
                validate_int_or_percent(ms, &rpath.child("maxSurge"), errs);
                if int_or_percent_value(mu) == 0 && int_or_percent_value(ms) == 0 {
                    errs.push(FieldError::invalid(
                        &rpath.child("maxUnavailable"),
                        mu.cloned().unwrap_or(json!(0)),
                        "may not be 0 when `maxSurge` is 0",
                    ));
                }
                not_more_than_100_percent(mu, &rpath.child("maxUnavailable"), errs);
            }
        },
        _ => errs.push(FieldError::not_supported(&spath, strategy.clone(), &["Recreate", "RollingUpdate"])),
    }
    let min_ready = int_at(errs, spec, "minReadySeconds", &path).unwrap_or(0);
    non_negative(Some(min_ready), &path.child("minReadySeconds"), errs);
    non_negative(int_at(errs, spec, "revisionHistoryLimit", &path), &path.child("revisionHistoryLimit"), errs);
    if let Some(pds) = int_at(errs, spec, "progressDeadlineSeconds", &path) {
        non_negative(Some(pds), &path.child("progressDeadlineSeconds"), errs);
        if pds <= min_ready {
            errs.push(FieldError::invalid(
                &path.child("progressDeadlineSeconds"),
                pds,
                "must be greater than minReadySeconds",
            ));
        }
    }
    if let Some(old) = old {
        immutable(
            field(spec, "selector"),
            crate::validation::value::at(old, &["spec", "selector"]),
            &path.child("selector"),
            errs,
        );
    }
}

pub(crate) fn validate_replica_set(obj: &Value, old: Option<&Value>, errs: &mut Vec<FieldError>) {
    let empty = json!({});
    let spec = spec_of(obj, errs, &empty);
    let path = Path::root("spec");
    non_negative(int_at(errs, spec, "replicas", &path), &path.child("replicas"), errs);
    non_negative(int_at(errs, spec, "minReadySeconds", &path), &path.child("minReadySeconds"), errs);
    // kube reuses the Deployment wording for ReplicaSets.
    validate_selector_and_template(spec, &path, "deployment", errs);
    validate_template_for_replica_set(spec, &path, "ReplicaSet", errs);
    if let Some(old) = old {
        immutable(
            field(spec, "selector"),
            crate::validation::value::at(old, &["spec", "selector"]),
            &path.child("selector"),
            errs,
        );
    }
}

pub(crate) fn validate_stateful_set(obj: &Value, old: Option<&Value>, errs: &mut Vec<FieldError>) {
    let empty = json!({});
    let spec = spec_of(obj, errs, &empty);
    let path = Path::root("spec");
    match str_at(errs, spec, "podManagementPolicy", &path).unwrap_or("") {
        "OrderedReady" | "Parallel" => {}
        "" => errs.push(FieldError::required(&path.child("podManagementPolicy"), "")),
        other => errs.push(FieldError::invalid(
            &path.child("podManagementPolicy"),
            other,
            "must be 'OrderedReady' or 'Parallel'",
        )),
    }
    let strategy = field(spec, "updateStrategy").unwrap_or(&empty);
    let upath = path.child("updateStrategy");
    match field(strategy, "type").and_then(Value::as_str).unwrap_or("") {
        "" => errs.push(FieldError::required(&upath, "")),
        "OnDelete" => {
            if let Some(ru) = field(strategy, "rollingUpdate") {
                errs.push(FieldError::invalid(
                    &upath.child("rollingUpdate"),
                    ru.clone(),
                    "only allowed for updateStrategy 'RollingUpdate'",
                ));
            }
        }
        "RollingUpdate" => {
            if let Some(ru) = field(strategy, "rollingUpdate") {
                let rpath = upath.child("rollingUpdate");
                non_negative(field(ru, "partition").and_then(Value::as_i64), &rpath.child("partition"), errs);
                if let Some(mu) = field(ru, "maxUnavailable") {
                    validate_int_or_percent(Some(mu), &rpath.child("maxUnavailable"), errs);
                    if int_or_percent_value(Some(mu)) == 0 {
                        errs.push(FieldError::invalid(&rpath.child("maxUnavailable"), mu.clone(), "cannot be 0"));
                    }
                    not_more_than_100_percent(Some(mu), &rpath.child("maxUnavailable"), errs);
                }
            }
        }
        _ => errs.push(FieldError::invalid(&upath, strategy.clone(), "must be 'RollingUpdate' or 'OnDelete'")),
    }
    if let Some(policy) = field(spec, "persistentVolumeClaimRetentionPolicy") {
        let ppath = path.child("persistentVolumeClaimRetentionPolicy");
        for key in ["whenDeleted", "whenScaled"] {
            let v = field(policy, key).and_then(Value::as_str).unwrap_or("");
            if v != "Retain" && v != "Delete" {
                errs.push(FieldError::not_supported(&ppath.child(key), v, &["Retain", "Delete"]));
            }
        }
    }
    non_negative(int_at(errs, spec, "replicas", &path), &path.child("replicas"), errs);
    non_negative(int_at(errs, spec, "minReadySeconds", &path), &path.child("minReadySeconds"), errs);
    if let Some(start) = crate::validation::value::at(spec, &["ordinals", "start"]).and_then(Value::as_i64) {
        non_negative(Some(start), &path.child("ordinals.start"), errs);
    }
    validate_selector_and_template(spec, &path, "statefulset", errs);
    let template = field(spec, "template").unwrap_or(&empty);
    let tpath = path.child("template");
    // kube checks only the template's metadata here, not its pod spec.
    let labels =
        crate::validation::value::string_map_at(errs, field(template, "metadata").unwrap_or(&empty), "labels", &tpath);
    meta::validate_labels(&labels, &tpath.child("labels"), errs);
    let rp = pod::template_restart_policy(template);
    if rp != "Always" {
        errs.push(FieldError::not_supported(&tpath.child("spec").child("restartPolicy"), rp, &["Always"]));
    }
    if pod::template_has_active_deadline(template) {
        errs.push(FieldError::forbidden(
            &tpath.child("spec").child("activeDeadlineSeconds"),
            "activeDeadlineSeconds in StatefulSet is not Supported",
        ));
    }
    if let Some(old) = old {
        let old_spec = field(old, "spec").unwrap_or(&empty);
        let mut a = spec.clone();
        let mut b = old_spec.clone();
        for m in [&mut a, &mut b] {
            if let Some(o) = m.as_object_mut() {
                for key in [
                    "replicas",
                    "template",
                    "updateStrategy",
                    "minReadySeconds",
                    "ordinals",
                    "persistentVolumeClaimRetentionPolicy",
                    "revisionHistoryLimit",
                ] {
                    o.remove(key);
                }
            }
        }
        if !crate::validation::value::semantic_eq(Some(&a), Some(&b)) {
            errs.push(FieldError::forbidden(
                &path,
                "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
            ));
        }
    }
}

pub(crate) fn validate_daemon_set(obj: &Value, old: Option<&Value>, errs: &mut Vec<FieldError>) {
    let empty = json!({});
    let spec = spec_of(obj, errs, &empty);
    let path = Path::root("spec");
    let template = field(spec, "template").unwrap_or(&empty);
    match field(spec, "selector") {
        None => errs.push(FieldError::required(&path.child("selector"), "")),
        Some(sel) => {
            meta::validate_label_selector(sel, &path.child("selector"), errs);
            let labels = meta::template_labels(template, errs);
            if !meta::selector_matches(sel, &labels) {
                errs.push(FieldError::invalid(
                    &path.child("template").child("metadata").child("labels"),
                    crate::validation::value::at(template, &["metadata", "labels"]).cloned().unwrap_or(Value::Null),
                    "`selector` does not match template `labels`",
                ));
            }
            if meta::selector_is_empty(sel) {
                errs.push(FieldError::invalid(
                    &path.child("selector"),
                    sel.clone(),
                    "empty selector is invalid for daemonset",
                ));
            }
        }
    }
    let tpath = path.child("template");
    pod::validate_pod_template_spec(template, &tpath, errs);
    let rp = pod::template_restart_policy(template);
    if rp != "Always" {
        errs.push(FieldError::not_supported(&tpath.child("spec").child("restartPolicy"), rp, &["Always"]));
    }
    if pod::template_has_active_deadline(template) {
        errs.push(FieldError::forbidden(
            &tpath.child("spec").child("activeDeadlineSeconds"),
            "activeDeadlineSeconds in DaemonSet is not Supported",
        ));
    }
    non_negative(int_at(errs, spec, "minReadySeconds", &path), &path.child("minReadySeconds"), errs);
    non_negative(int_at(errs, spec, "templateGeneration", &path), &path.child("templateGeneration"), errs);
    let strategy = field(spec, "updateStrategy").unwrap_or(&empty);
    let upath = path.child("updateStrategy");
    match field(strategy, "type").and_then(Value::as_str).unwrap_or("") {
        "OnDelete" => {}
        "RollingUpdate" => match field(strategy, "rollingUpdate") {
            None => errs.push(FieldError::required(&upath.child("rollingUpdate"), "")),
            Some(ru) => {
                let rpath = upath.child("rollingUpdate");
                let mu = field(ru, "maxUnavailable");
                let ms = field(ru, "maxSurge");
                validate_int_or_percent(mu, &rpath.child("maxUnavailable"), errs);
                validate_int_or_percent(ms, &rpath.child("maxSurge"), errs);
                not_more_than_100_percent(mu, &rpath.child("maxUnavailable"), errs);
                not_more_than_100_percent(ms, &rpath.child("maxSurge"), errs);
                let has_unavailable = int_or_percent_value(mu) != 0;
                let has_surge = int_or_percent_value(ms) != 0;
                if has_unavailable && has_surge {
                    errs.push(FieldError::invalid(
                        &rpath.child("maxSurge"),
                        ms.cloned().unwrap_or(json!(0)),
                        "may not be set when maxUnavailable is non-zero",
                    ));
                } else if !has_unavailable && !has_surge {
                    errs.push(FieldError::required(&rpath.child("maxUnavailable"), "cannot be 0 when maxSurge is 0"));
                }
            }
        },
        _ => errs.push(FieldError::not_supported(&upath, strategy.clone(), &["RollingUpdate", "OnDelete"])),
    }
    non_negative(int_at(errs, spec, "revisionHistoryLimit", &path), &path.child("revisionHistoryLimit"), errs);
    if let Some(old) = old {
        immutable(
            field(spec, "selector"),
            crate::validation::value::at(old, &["spec", "selector"]),
            &path.child("selector"),
            errs,
        );
    }
}

pub(crate) fn validate_controller_revision(obj: &Value, old: Option<&Value>, errs: &mut Vec<FieldError>) {
    if field(obj, "data").is_none() {
        errs.push(FieldError::required(&Path::root("data"), "data is mandatory"));
    }
    non_negative(field(obj, "revision").and_then(Value::as_i64), &Path::root("revision"), errs);
    if let Some(old) = old {
        immutable(field(obj, "data"), field(old, "data"), &Path::root("data"), errs);
    }
}
