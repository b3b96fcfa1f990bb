//! The query parameters of pods/log, pods/exec, pods/attach and pods/portforward: decoded and validated as
//! kube-apiserver decodes `PodLogOptions`, `PodExecOptions`, `PodAttachOptions` and `PodPortForwardOptions`, and
//! re-encoded the way kube-apiserver asks the kubelet (keys sorted, flags as `1`, ports joined by commas).

use std::collections::BTreeMap;

use crate::api::cause;
use crate::status::{ApiError, ApiResult, Cause};

/// Query parameters with every value kept: `command` repeats, and kube's decoder reads the first value of the
/// other keys.
#[derive(Debug, Default)]
pub(crate) struct Params(Vec<(String, String)>);

impl Params {
    pub(crate) fn parse(raw: Option<&str>) -> Params {
        Params(
            form_urlencoded::parse(raw.unwrap_or("").as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0.iter().filter(move |(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    fn first(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// A string parameter; empty counts as absent.
    fn string(&self, key: &str) -> Option<String> {
        self.first(key).filter(|v| !v.is_empty()).map(str::to_string)
    }

    /// A boolean as kube's query decoder reads one: present and not `false` or `0` (any case) is true, so a
    /// bare `?follow` follows.
    fn flag(&self, key: &str) -> bool {
        self.first(key).is_some_and(|v| !v.eq_ignore_ascii_case("false") && v != "0")
    }

    /// An integer; a value that is not one is a 400, as kube's decoder answers.
    fn integer(&self, key: &str) -> ApiResult<Option<i64>> {
        match self.first(key).filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(v) => v
                .parse::<i64>()
                .map(Some)
                .map_err(|_| ApiError::bad_request(format!("invalid value for {key}: {v:?}: not an integer"))),
        }
    }
}

/// `PodLogOptions`.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct LogOptions {
    pub(crate) container: Option<String>,
    pub(crate) follow: bool,
    pub(crate) previous: bool,
    pub(crate) timestamps: bool,
    pub(crate) since_seconds: Option<i64>,
    pub(crate) since_time: Option<jiff::Timestamp>,
    pub(crate) tail_lines: Option<i64>,
    pub(crate) limit_bytes: Option<i64>,
    /// Accepted for compatibility; the node's certificate is never verified anyway (see `NodeClient`).
    pub(crate) insecure_skip_tls_verify_backend: bool,
}

impl LogOptions {
    /// Decodes the query; malformed numbers or times are a 400.
    pub(crate) fn parse(params: &Params) -> ApiResult<LogOptions> {
        let since_time = match params.first("sinceTime").filter(|v| !v.is_empty()) {
            None => None,
            Some(v) => Some(v.parse::<jiff::Timestamp>().map_err(|_| {
                ApiError::bad_request(format!("invalid value for sinceTime: {v:?}: not an RFC 3339 time"))
            })?),
        };
        Ok(LogOptions {
            container: params.string("container"),
            follow: params.flag("follow"),
            previous: params.flag("previous"),
            timestamps: params.flag("timestamps"),
            since_seconds: params.integer("sinceSeconds")?,
            since_time,
            tail_lines: params.integer("tailLines")?,
            limit_bytes: params.integer("limitBytes")?,
            insecure_skip_tls_verify_backend: params.flag("insecureSkipTLSVerifyBackend"),
        })
    }

    /// kube-apiserver's checks, answered as a 422 about the `PodLogOptions` of pod `name`.
    pub(crate) fn validate(&self, name: &str) -> ApiResult<()> {
        let mut causes: Vec<Cause> = Vec::new();
        if let Some(n) = self.tail_lines.filter(|n| *n < 0) {
            causes.push(invalid("tailLines", n, "must be greater than or equal to 0"));
        }
        if let Some(n) = self.limit_bytes.filter(|n| *n < 1) {
            causes.push(invalid("limitBytes", n, "must be greater than 0"));
        }
        match (self.since_seconds, self.since_time) {
            (Some(_), Some(_)) => causes.push(cause(
                "FieldValueForbidden",
                "",
                "Forbidden: at most one of `sinceTime` or `sinceSeconds` may be specified".into(),
            )),
            (Some(n), None) if n < 1 => causes.push(invalid("sinceSeconds", n, "must be greater than 0")),
            _ => {}
        }
        if causes.is_empty() {
            return Ok(());
        }
        // kube prints each error as `field: detail`, an empty field included.
        let details: Vec<String> = causes.iter().map(|c| format!("{}: {}", c.field, c.message)).collect();
        let summary = match details.as_slice() {
            [one] => format!("PodLogOptions \"{name}\" is invalid: {one}"),
            many => format!("PodLogOptions \"{name}\" is invalid: [{}]", many.join(", ")),
        };
        let mut err = ApiError::bad_request(summary);
        err.code = 422;
        err.reason = "Invalid";
        err.name = Some(name.to_string());
        err.kind = Some("PodLogOptions".into());
        err.causes = causes;
        Err(err)
    }

    /// The query for the node's `/containerLogs/...`, as kube-apiserver builds it.
    pub(crate) fn upstream_query(&self) -> String {
        let mut query = BTreeMap::new();
        for (key, on) in [("follow", self.follow), ("previous", self.previous), ("timestamps", self.timestamps)] {
            if on {
                query.insert(key, vec!["true".to_string()]);
            }
        }
        for (key, value) in
            [("sinceSeconds", self.since_seconds), ("tailLines", self.tail_lines), ("limitBytes", self.limit_bytes)]
        {
            if let Some(n) = value {
                query.insert(key, vec![n.to_string()]);
            }
        }
        if let Some(t) = self.since_time {
            query.insert("sinceTime", vec![t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()]);
        }
        encode(&query)
    }
}

fn invalid(field: &str, value: i64, detail: &str) -> Cause {
    cause("FieldValueInvalid", field, format!("Invalid value: {value}: {detail}"))
}

/// `PodExecOptions` and `PodAttachOptions` (attach has no command).
#[derive(Debug, Default, PartialEq)]
pub(crate) struct StreamOptions {
    pub(crate) container: Option<String>,
    pub(crate) command: Vec<String>,
    pub(crate) stdin: bool,
    pub(crate) stdout: bool,
    pub(crate) stderr: bool,
    pub(crate) tty: bool,
}

impl StreamOptions {
    /// Decodes the query. Streams the client leaves out stay off (kube-apiserver stopped defaulting stdout and
    /// stderr to true in 1.7); the node agent rejects a request with none, as the kubelet does.
    pub(crate) fn parse(params: &Params, with_command: bool) -> StreamOptions {
        StreamOptions {
            container: params.string("container"),
            command: if with_command { params.all("command").map(str::to_string).collect() } else { Vec::new() },
            stdin: params.flag("stdin"),
            stdout: params.flag("stdout"),
            stderr: params.flag("stderr"),
            tty: params.flag("tty"),
        }
    }

    /// The query for the node's `/exec/...` or `/attach/...`.
    pub(crate) fn upstream_query(&self) -> String {
        let mut query = BTreeMap::new();
        if !self.command.is_empty() {
            query.insert("command", self.command.clone());
        }
        for (key, on) in [("stdin", self.stdin), ("stdout", self.stdout), ("stderr", self.stderr), ("tty", self.tty)] {
            if on {
                query.insert(key, vec!["1".to_string()]);
            }
        }
        encode(&query)
    }
}

/// `PodPortForwardOptions`.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct PortForwardOptions {
    pub(crate) ports: Vec<i32>,
}

impl PortForwardOptions {
    /// Decodes `ports`, repeated or comma-separated as kube's decoder accepts it; a value that is not a 32-bit
    /// integer is a 400.
    pub(crate) fn parse(params: &Params) -> ApiResult<PortForwardOptions> {
        let mut ports = Vec::new();
        for value in params.all("ports") {
            for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                let port = part
                    .parse::<i32>()
                    .map_err(|_| ApiError::bad_request(format!("invalid value for ports: {part:?}: not an integer")))?;
                ports.push(port);
            }
        }
        Ok(PortForwardOptions { ports })
    }

    /// The query for the node's `/portForward/...`: `port=80,443`.
    pub(crate) fn upstream_query(&self) -> String {
        let mut query = BTreeMap::new();
        if !self.ports.is_empty() {
            let joined: Vec<String> = self.ports.iter().map(i32::to_string).collect();
            query.insert("port", vec![joined.join(",")]);
        }
        encode(&query)
    }
}

/// Form-encodes with keys in byte order and repeated values in their order.
fn encode(query: &BTreeMap<&str, Vec<String>>) -> String {
    let mut out = form_urlencoded::Serializer::new(String::new());
    for (key, values) in query {
        for value in values {
            out.append_pair(key, value);
        }
    }
    out.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(raw: &str) -> Params {
        Params::parse(Some(raw))
    }

    #[test]
    fn log_options_reach_the_node_sorted_and_normalised() {
        let options =
            LogOptions::parse(&params("timestamps=true&tailLines=5&follow=1&container=c&limitBytes=10&previous"))
                .unwrap();
        assert_eq!(options.container.as_deref(), Some("c"));
        assert!(options.previous, "a bare flag is true, as kube's decoder reads it");
        assert_eq!(options.upstream_query(), "follow=true&limitBytes=10&previous=true&tailLines=5&timestamps=true");
        let since = LogOptions::parse(&params("sinceTime=2026-01-02T03:04:05%2B01:00")).unwrap();
        assert_eq!(since.upstream_query(), "sinceTime=2026-01-02T02%3A04%3A05Z");
    }

    #[test]
    fn false_and_zero_turn_a_flag_off() {
        let options = LogOptions::parse(&params("follow=false&timestamps=0&previous=FALSE")).unwrap();
        assert!(!options.follow && !options.timestamps && !options.previous);
        assert_eq!(options.upstream_query(), "");
    }

    #[test]
    fn malformed_numbers_and_times_are_bad_requests() {
        for raw in ["tailLines=abc", "sinceSeconds=1.5", "limitBytes=x", "sinceTime=yesterday"] {
            let err = LogOptions::parse(&params(raw)).unwrap_err();
            assert_eq!((err.code, err.reason), (400, "BadRequest"), "{raw}");
        }
    }

    #[test]
    fn negative_tail_lines_are_invalid_log_options() {
        let err = LogOptions::parse(&params("tailLines=-1")).unwrap().validate("web").unwrap_err();
        assert_eq!((err.code, err.reason), (422, "Invalid"));
        assert_eq!(
            err.message,
            "PodLogOptions \"web\" is invalid: tailLines: Invalid value: -1: must be greater than or equal to 0"
        );
        assert_eq!(err.kind.as_deref(), Some("PodLogOptions"));
        assert_eq!(err.causes[0].field, "tailLines");
    }

    #[test]
    fn since_seconds_and_since_time_together_are_forbidden() {
        let options = LogOptions::parse(&params("sinceSeconds=10&sinceTime=2026-01-02T03:04:05Z")).unwrap();
        let err = options.validate("web").unwrap_err();
        assert_eq!(err.code, 422);
        assert_eq!(err.causes[0].reason, "FieldValueForbidden");
        assert!(
            err.message.contains("at most one of `sinceTime` or `sinceSeconds` may be specified"),
            "{}",
            err.message
        );
    }

    #[test]
    fn zero_limit_bytes_and_zero_since_seconds_are_both_reported() {
        let err = LogOptions::parse(&params("limitBytes=0&sinceSeconds=0")).unwrap().validate("web").unwrap_err();
        let fields: Vec<&str> = err.causes.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(fields, ["limitBytes", "sinceSeconds"]);
        assert!(err.message.starts_with("PodLogOptions \"web\" is invalid: ["), "{}", err.message);
    }

    #[test]
    fn exec_keeps_every_command_word_in_order_and_sends_flags_as_one() {
        let options =
            StreamOptions::parse(&params("command=sh&command=-c&command=echo+a%26b&stdout=true&tty=true"), true);
        assert_eq!(options.command, ["sh", "-c", "echo a&b"]);
        assert_eq!(options.upstream_query(), "command=sh&command=-c&command=echo+a%26b&stdout=1&tty=1");
        let none = StreamOptions::parse(&params("command=ls&stdout=false"), true);
        assert!(!none.stdout && !none.stderr, "streams the client leaves out stay off");
    }

    #[test]
    fn attach_ignores_a_command() {
        let options = StreamOptions::parse(&params("command=ls&stdin=true&stderr=1"), false);
        assert!(options.command.is_empty());
        assert_eq!(options.upstream_query(), "stderr=1&stdin=1");
    }

    #[test]
    fn ports_may_repeat_or_be_comma_separated() {
        let options = PortForwardOptions::parse(&params("ports=80&ports=443,8080")).unwrap();
        assert_eq!(options.ports, [80, 443, 8080]);
        assert_eq!(options.upstream_query(), "port=80%2C443%2C8080");
        assert_eq!(PortForwardOptions::parse(&params("")).unwrap().upstream_query(), "");
        assert_eq!(PortForwardOptions::parse(&params("ports=http")).unwrap_err().code, 400);
    }
}
