//! batch/v1: Jobs and CronJobs, with the cron schedule syntax CronJobs accept.

use serde_json::{Value, json};

use super::meta::{self, immutable, non_negative};
use super::names;
use super::pod;
use super::value::{at, field, int_at, obj_at, semantic_eq};
use super::{FieldError, Path};

const MAX_PARALLELISM_FOR_INDEXED_JOB: i64 = 100_000;
const MAX_MANAGED_BY_LENGTH: usize = 63;

pub(crate) fn validate_job(obj: &Value, old: Option<&Value>, errs: &mut Vec<FieldError>) {
    let empty = json!({});
    let spec = obj_at(errs, obj, "spec", &Path::root("")).unwrap_or(&empty);
    let path = Path::root("spec");
    let manual = field(spec, "manualSelector").and_then(Value::as_bool) == Some(true);

    if old.is_none()
        && !manual
        && let Some(sel) = field(spec, "selector")
    {
        // A generated selector names this Job's uid; anything else was written by the client.
        let uid = at(obj, &["metadata", "uid"]).and_then(Value::as_str).unwrap_or("");
        if !uid.is_empty() {
            let name = at(obj, &["metadata", "name"]).and_then(Value::as_str).unwrap_or("");
            let expected = [
                ("batch.kubernetes.io/controller-uid", uid),
                ("batch.kubernetes.io/job-name", name),
                ("controller-uid", uid),
                ("job-name", name),
            ];
            if !meta::selector_matches(sel, &expected) {
                errs.push(FieldError::invalid(&path.child("selector"), sel.clone(), "`selector` not auto-generated"));
            }
        }
    }
    validate_job_spec(spec, &path, errs);
    match field(spec, "selector") {
        // Without manualSelector the server generates the selector from the Job's uid.
        None if manual => errs.push(FieldError::required(&path.child("selector"), "")),
        None => {}
        Some(sel) => {
            meta::validate_label_selector(sel, &path.child("selector"), errs);
            let template = field(spec, "template").unwrap_or(&empty);
            let labels = meta::template_labels(template, errs);
            if !meta::selector_matches(sel, &labels) {
                errs.push(FieldError::invalid(
                    &path.child("template").child("metadata").child("labels"),
                    at(template, &["metadata", "labels"]).cloned().unwrap_or(Value::Null),
                    "`selector` does not match template `labels`",
                ));
            }
        }
    }
    if old.is_none() {
        let indexed = field(spec, "completionMode").and_then(Value::as_str) == Some("Indexed");
        if let (true, Some(completions)) = (indexed, field(spec, "completions").and_then(Value::as_i64))
            && completions > 0
        {
            let name = at(obj, &["metadata", "name"]).and_then(Value::as_str).unwrap_or("");
            let hostname = format!("{name}-{}", completions - 1);
            if !names::is_dns1123_label(&hostname).is_empty() {
                errs.push(FieldError::invalid(
                    &Path::root("metadata").child("name"),
                    name,
                    format!("will not able to create pod with invalid DNS label: {hostname}"),
                ));
            }
        }
    }
    if let Some(old) = old {
        let old_spec = field(old, "spec").unwrap_or(&empty);
        validate_job_spec_update(old, spec, old_spec, &path, errs);
    }
}

fn validate_job_spec_update(old: &Value, spec: &Value, old_spec: &Value, path: &Path, errs: &mut Vec<FieldError>) {
    let indexed = field(spec, "completionMode").and_then(Value::as_str) == Some("Indexed");
    let completions = field(spec, "completions");
    if !indexed {
        immutable(completions, field(old_spec, "completions"), &path.child("completions"), errs);
    } else if !semantic_eq(completions, field(old_spec, "completions"))
        && let Some(c) = completions.and_then(Value::as_i64)
        && Some(c) != field(spec, "parallelism").and_then(Value::as_i64)
    {
        errs.push(FieldError::invalid(
            &path.child("completions"),
            c,
            "can only be modified in tandem with spec.parallelism",
        ));
    }
    immutable(field(spec, "selector"), field(old_spec, "selector"), &path.child("selector"), errs);

    // A suspended Job that never started may still have its scheduling directives changed.
    let empty = json!({});
    let mut template = field(spec, "template").cloned().unwrap_or(json!({}));
    let mut old_template = field(old_spec, "template").cloned().unwrap_or(json!({}));
    let suspended = field(spec, "suspend").and_then(Value::as_bool) == Some(true);
    let never_started = at(old, &["status", "startTime"]).is_none();
    if suspended && never_started {
        for t in [&mut template, &mut old_template] {
            if let Some(m) = t.get_mut("metadata").and_then(Value::as_object_mut) {
                m.remove("labels");
                m.remove("annotations");
            }
            if let Some(s) = t.get_mut("spec").and_then(Value::as_object_mut) {
                for key in ["nodeSelector", "tolerations", "schedulingGates"] {
                    s.remove(key);
                }
                if let Some(a) = s.get_mut("affinity").and_then(Value::as_object_mut) {
                    a.remove("nodeAffinity");
                }
            }
        }
    }
    if !semantic_eq(Some(&template), Some(&old_template)) {
        errs.push(FieldError::invalid(
            &path.child("template"),
            field(spec, "template").cloned().unwrap_or(Value::Null),
            meta::FIELD_IMMUTABLE,
        ));
    }
    for key in ["completionMode", "podFailurePolicy", "backoffLimitPerIndex", "managedBy", "successPolicy"] {
        immutable(field(spec, key), field(old_spec, key), &path.child(key), errs);
    }
    let _ = empty;
}

/// `validateJobSpec`: counters, completion mode, replacement policy and the pod template.
fn validate_job_spec(spec: &Value, path: &Path, errs: &mut Vec<FieldError>) {
    for key in [
        "parallelism",
        "completions",
        "activeDeadlineSeconds",
        "backoffLimit",
        "ttlSecondsAfterFinished",
        "backoffLimitPerIndex",
        "maxFailedIndexes",
    ] {
        non_negative(int_at(errs, spec, key, path), &path.child(key), errs);
    }
    let max_failed = field(spec, "maxFailedIndexes").and_then(Value::as_i64);
    let per_index = field(spec, "backoffLimitPerIndex").and_then(Value::as_i64);
    if max_failed.is_some() && per_index.is_none() {
        errs.push(FieldError::required(&path.child("backoffLimitPerIndex"), "when maxFailedIndexes is specified"));
    }
    if let Some(managed_by) = field(spec, "managedBy").and_then(Value::as_str) {
        let p = path.child("managedBy");
        match managed_by.split_once('/') {
            Some((host, rest)) if !host.is_empty() && !rest.is_empty() => {
                for msg in names::is_dns1123_subdomain(host) {
                    errs.push(FieldError::invalid(&p, host, msg));
                }
            }
            _ if managed_by.is_empty() => errs.push(FieldError::required(&p, "")),
            _ => errs.push(FieldError::invalid(
                &p,
                managed_by,
                "must be a domain-prefixed path (such as \"acme.io/foo\")",
            )),
        }
        if managed_by.len() > MAX_MANAGED_BY_LENGTH {
            errs.push(FieldError::too_long(&p, MAX_MANAGED_BY_LENGTH));
        }
    }
    let mode = field(spec, "completionMode").and_then(Value::as_str);
    if let Some(m) = mode {
        if m != "NonIndexed" && m != "Indexed" {
            errs.push(FieldError::not_supported(&path.child("completionMode"), m, &["NonIndexed", "Indexed"]));
        }
        if m == "Indexed" {
            if field(spec, "completions").is_none() {
                errs.push(FieldError::required(&path.child("completions"), "when completion mode is Indexed"));
            }
            if let Some(p) = field(spec, "parallelism").and_then(Value::as_i64)
                && p > MAX_PARALLELISM_FOR_INDEXED_JOB
            {
                errs.push(FieldError::invalid(
                    &path.child("parallelism"),
                    p,
                    format!("must be less than or equal to {MAX_PARALLELISM_FOR_INDEXED_JOB} when completion mode is Indexed"),
                ));
            }
        }
    }
    if mode.is_none_or(|m| m == "NonIndexed") {
        if let Some(v) = per_index {
            errs.push(FieldError::invalid(&path.child("backoffLimitPerIndex"), v, "requires indexed completion mode"));
        }
        if let Some(v) = max_failed {
            errs.push(FieldError::invalid(&path.child("maxFailedIndexes"), v, "requires indexed completion mode"));
        }
    }
    let has_failure_policy = field(spec, "podFailurePolicy").is_some();
    if let Some(prp) = field(spec, "podReplacementPolicy").and_then(Value::as_str) {
        let p = path.child("podReplacementPolicy");
        if has_failure_policy {
            if prp != "Failed" {
                errs.push(FieldError::not_supported(&p, prp, &["Failed"]));
            }
        } else if prp != "Failed" && prp != "TerminatingOrFailed" {
            errs.push(FieldError::not_supported(&p, prp, &["Failed", "TerminatingOrFailed"]));
        }
    }
    let empty = json!({});
    let template = field(spec, "template").unwrap_or(&empty);
    let tpath = path.child("template");
    pod::validate_pod_template_spec(template, &tpath, errs);
    let rp = pod::template_restart_policy(template);
    let rp_path = tpath.child("spec").child("restartPolicy");
    if rp == "Always" || rp.is_empty() {
        errs.push(FieldError::required(&rp_path, "valid values: \"OnFailure\", \"Never\""));
    } else if rp != "OnFailure" && rp != "Never" {
        errs.push(FieldError::not_supported(&rp_path, rp, &["OnFailure", "Never"]));
    } else if has_failure_policy && rp != "Never" {
        errs.push(FieldError::invalid(&rp_path, rp, "only \"Never\" is supported when podFailurePolicy is specified"));
    }
}

pub(crate) fn validate_cron_job(obj: &Value, old: Option<&Value>, errs: &mut Vec<FieldError>) {
    let empty = json!({});
    let spec = obj_at(errs, obj, "spec", &Path::root("")).unwrap_or(&empty);
    let path = Path::root("spec");
    let old_spec = old.and_then(|o| field(o, "spec"));
    let schedule = field(spec, "schedule").and_then(Value::as_str).unwrap_or("");
    let time_zone = field(spec, "timeZone");
    if schedule.is_empty() {
        errs.push(FieldError::required(&path.child("schedule"), ""));
    } else {
        let allow_tz =
            old_spec.and_then(|s| field(s, "schedule")).and_then(Value::as_str).is_some_and(|s| s.contains("TZ"));
        if let Err(e) = parse_cron_schedule(schedule) {
            errs.push(FieldError::invalid(&path.child("schedule"), schedule, e));
        }
        if allow_tz && schedule.contains("TZ") && time_zone.is_some() {
            errs.push(FieldError::invalid(
                &path.child("schedule"),
                schedule,
                "cannot use both timeZone field and TZ or CRON_TZ in schedule",
            ));
        } else if !allow_tz && schedule.contains("TZ") {
            errs.push(FieldError::invalid(
                &path.child("schedule"),
                schedule,
                "cannot use TZ or CRON_TZ in schedule, use timeZone field instead",
            ));
        }
    }
    non_negative(int_at(errs, spec, "startingDeadlineSeconds", &path), &path.child("startingDeadlineSeconds"), errs);
    if old_spec.is_none_or(|o| !semantic_eq(field(o, "timeZone"), time_zone))
        && let Some(tz) = time_zone.and_then(Value::as_str)
    {
        validate_time_zone(tz, &path.child("timeZone"), errs);
    }
    match field(spec, "concurrencyPolicy").and_then(Value::as_str).unwrap_or("") {
        "Allow" | "Forbid" | "Replace" => {}
        "" => errs.push(FieldError::required(&path.child("concurrencyPolicy"), "")),
        other => errs.push(FieldError::not_supported(
            &path.child("concurrencyPolicy"),
            other,
            &["Allow", "Forbid", "Replace"],
        )),
    }
    let jt = field(spec, "jobTemplate").unwrap_or(&empty);
    let jt_spec = field(jt, "spec").unwrap_or(&empty);
    let jt_path = path.child("jobTemplate").child("spec");
    validate_job_spec(jt_spec, &jt_path, errs);
    if let Some(sel) = field(jt_spec, "selector") {
        errs.push(FieldError::invalid(&jt_path.child("selector"), sel.clone(), "`selector` will be auto-generated"));
    }
    if let Some(true) = field(jt_spec, "manualSelector").and_then(Value::as_bool) {
        errs.push(FieldError::not_supported(&jt_path.child("manualSelector"), true, &["nil", "false"]));
    }
    for key in ["successfulJobsHistoryLimit", "failedJobsHistoryLimit"] {
        non_negative(int_at(errs, spec, key, &path), &path.child(key), errs);
    }
    if old.is_none() {
        let name = at(obj, &["metadata", "name"]).and_then(Value::as_str).unwrap_or("");
        if name.len() > 52 {
            errs.push(FieldError::invalid(
                &Path::root("metadata").child("name"),
                name,
                "must be no more than 52 characters",
            ));
        }
    }
}

fn validate_time_zone(tz: &str, path: &Path, errs: &mut Vec<FieldError>) {
    if tz.is_empty() {
        errs.push(FieldError::invalid(path, tz, "timeZone must be nil or non-empty string"));
        return;
    }
    let part_ok = |p: &str| {
        p != "."
            && p != ".."
            && !p.starts_with('-')
            && (1..=14).contains(&p.len())
            && p.bytes().all(|c| c.is_ascii_alphanumeric() || b".-_+".contains(&c))
    };
    if !tz.split('/').all(part_ok) {
        errs.push(FieldError::invalid(path, tz, format!("unknown time zone {tz}")));
        return;
    }
    if tz.eq_ignore_ascii_case("Local") {
        errs.push(FieldError::invalid(
            path,
            tz,
            "timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones",
        ));
    }
}

/// One field of a cron expression: bounds and optional names.
struct CronField {
    min: u32,
    max: u32,
    names: &'static [&'static str],
    name_base: u32,
}

const MINUTES: CronField = CronField { min: 0, max: 59, names: &[], name_base: 0 };
const HOURS: CronField = CronField { min: 0, max: 23, names: &[], name_base: 0 };
const DOM: CronField = CronField { min: 1, max: 31, names: &[], name_base: 0 };
const MONTHS: CronField = CronField {
    min: 1,
    max: 12,
    names: &["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"],
    name_base: 1,
};
const DOW: CronField =
    CronField { min: 0, max: 6, names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"], name_base: 0 };

/// Parses a standard five-field cron schedule (or a `@descriptor`), returning the error text kube's cron parser
/// gives for a bad one.
pub fn parse_cron_schedule(spec: &str) -> Result<(), String> {
    if spec.is_empty() {
        return Err("empty spec string".to_string());
    }
    let mut spec = spec;
    if spec.starts_with("TZ=") || spec.starts_with("CRON_TZ=") {
        let Some(space) = spec.find(' ') else {
            return Err(format!(
                "provided bad location {}: unknown time zone",
                &spec[spec.find('=').map_or(0, |i| i + 1)..]
            ));
        };
        spec = spec[space..].trim();
    }
    if spec.starts_with('@') {
        return parse_descriptor(spec);
    }
    let fields: Vec<&str> = spec.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!("expected exactly 5 fields, found {}: [{}]", fields.len(), fields.join(" ")));
    }
    for (f, bounds) in fields.iter().zip([MINUTES, HOURS, DOM, MONTHS, DOW]) {
        for expr in f.split(',').filter(|e| !e.is_empty()) {
            parse_range(expr, &bounds)?;
        }
    }
    Ok(())
}

fn parse_descriptor(spec: &str) -> Result<(), String> {
    match spec {
        "@yearly" | "@annually" | "@monthly" | "@weekly" | "@daily" | "@midnight" | "@hourly" => Ok(()),
        s if s.starts_with("@every ") => {
            let d = &s["@every ".len()..];
            if parse_go_duration(d) {
                Ok(())
            } else {
                Err(format!("failed to parse duration {s}: time: invalid duration \"{d}\""))
            }
        }
        s => Err(format!("unrecognized descriptor: {s}")),
    }
}

/// Accepts Go's `time.ParseDuration` syntax (`1h30m`, `1.5s`, `300ms`).
fn parse_go_duration(s: &str) -> bool {
    let s = s.strip_prefix(['+', '-']).unwrap_or(s);
    if s == "0" {
        return true;
    }
    if s.is_empty() {
        return false;
    }
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest.bytes().take_while(|c| c.is_ascii_digit() || *c == b'.').count();
        if num_len == 0 || rest[..num_len] == *"." {
            return false;
        }
        rest = &rest[num_len..];
        let unit = ["ns", "us", "µs", "μs", "ms", "s", "m", "h"]
            .iter()
            .filter(|u| rest.starts_with(*u))
            .max_by_key(|u| u.len());
        match unit {
            Some(u) => rest = &rest[u.len()..],
            None => return false,
        }
    }
    true
}

fn parse_cron_int(expr: &str) -> Result<u32, String> {
    let n: i64 = expr.parse().map_err(|_| {
        format!("failed to parse int from {expr}: strconv.Atoi: parsing {}: invalid syntax", super::go_quote(expr))
    })?;
    if n < 0 {
        return Err(format!("negative number ({n}) not allowed: {expr}"));
    }
    u32::try_from(n).map_err(|_| {
        format!("failed to parse int from {expr}: strconv.Atoi: parsing {}: value out of range", super::go_quote(expr))
    })
}

fn parse_int_or_name(expr: &str, f: &CronField) -> Result<u32, String> {
    let lower = expr.to_ascii_lowercase();
    if let Some(i) = f.names.iter().position(|n| *n == lower) {
        return Ok(i as u32 + f.name_base);
    }
    parse_cron_int(expr)
}

fn parse_range(expr: &str, f: &CronField) -> Result<(), String> {
    let range_and_step: Vec<&str> = expr.split('/').collect();
    let low_high: Vec<&str> = range_and_step[0].split('-').collect();
    let (start, mut end);
    if low_high[0] == "*" || low_high[0] == "?" {
        start = f.min;
        end = f.max;
    } else {
        start = parse_int_or_name(low_high[0], f)?;
        end = match low_high.len() {
            1 => start,
            2 => parse_int_or_name(low_high[1], f)?,
            _ => return Err(format!("too many hyphens: {expr}")),
        };
    }
    let step = match range_and_step.len() {
        1 => 1,
        2 => {
            let step = parse_cron_int(range_and_step[1])?;
            if low_high.len() == 1 {
                end = f.max;
            }
            step
        }
        _ => return Err(format!("too many slashes: {expr}")),
    };
    if start < f.min {
        return Err(format!("beginning of range ({start}) below minimum ({}): {expr}", f.min));
    }
    if end > f.max {
        return Err(format!("end of range ({end}) above maximum ({}): {expr}", f.max));
    }
    if start > end {
        return Err(format!("beginning of range ({start}) beyond end of range ({end}): {expr}"));
    }
    if step == 0 {
        return Err(format!("step of range should be a positive number: {expr}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_schedules_parse() {
        for s in ["*/5 * * * *", "0 0 * * 0", "0 9-17 * * mon-fri", "15,45 */2 1 jan,jul *", "@hourly", "@every 1h30m"]
        {
            assert_eq!(parse_cron_schedule(s), Ok(()), "{s}");
        }
    }

    #[test]
    fn bad_schedules_give_the_cron_parsers_messages() {
        assert_eq!(parse_cron_schedule("* * * *"), Err("expected exactly 5 fields, found 4: [* * * *]".to_string()));
        assert_eq!(parse_cron_schedule("61 * * * *"), Err("end of range (61) above maximum (59): 61".to_string()));
        assert_eq!(parse_cron_schedule("* * 0 * *"), Err("beginning of range (0) below minimum (1): 0".to_string()));
        assert_eq!(
            parse_cron_schedule("5-1 * * * *"),
            Err("beginning of range (5) beyond end of range (1): 5-1".to_string())
        );
        assert_eq!(
            parse_cron_schedule("x * * * *"),
            Err("failed to parse int from x: strconv.Atoi: parsing \"x\": invalid syntax".to_string())
        );
        assert_eq!(
            parse_cron_schedule("*/0 * * * *"),
            Err("step of range should be a positive number: */0".to_string())
        );
        assert_eq!(parse_cron_schedule("@fortnightly"), Err("unrecognized descriptor: @fortnightly".to_string()));
        assert!(parse_cron_schedule("@every forever").is_err());
    }
}
