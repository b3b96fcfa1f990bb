//! `GET /containerLogs/{namespace}/{pod}/{container}`: a container's log, read from the runtime's CRI log files
//! (rotated files included) and written as the kubelet writes it: the content only, or
//! `<RFC3339Nano timestamp> <content>` with `timestamps`, pieces of long lines joined, and with `follow` new
//! lines streamed until the container exits or the client goes away.

use std::convert::Infallible;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use gantry_runtime::cri::{ContainerState, RuntimeError};
use gantry_runtime::native::logs::{LogEntry, Stream, parse_entry};
use http::Response;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use tokio::sync::mpsc;

use super::{Body, Shared, find_pod, query_bool, response, status_response};

/// How often a follow looks for new lines and for the container's exit.
const FOLLOW_POLL: Duration = Duration::from_millis(200);
/// Rotated files kept by the runtime at most: `<log>.1` .. `<log>.N`.
const MAX_ROTATED: u32 = 10;

/// The query parameters of a log request (the API's `PodLogOptions`, as the API server relays them).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogOptions {
    /// Keep streaming new lines.
    pub follow: bool,
    /// The previous attempt's log instead of the current one's.
    pub previous: bool,
    /// Prefix every line with its timestamp.
    pub timestamps: bool,
    /// Only the last this many lines.
    pub tail_lines: Option<usize>,
    /// Stop after this many bytes.
    pub limit_bytes: Option<u64>,
    /// Only lines written at or after this time (`sinceTime`, or now minus `sinceSeconds`).
    pub since: Option<jiff::Timestamp>,
}

impl LogOptions {
    /// Reads the options from a query; `now` anchors `sinceSeconds`. Errors are the 400 message.
    pub fn from_query(pairs: &[(String, String)], now: jiff::Timestamp) -> Result<LogOptions, String> {
        let value = |name: &str| pairs.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
        let number = |name: &str| -> Result<Option<i64>, String> {
            value(name)
                .map(|v| v.parse::<i64>().map_err(|_| format!("invalid value {v:?} for {name}: not an integer")))
                .transpose()
        };
        let mut options = LogOptions {
            follow: query_bool(pairs, "follow"),
            previous: query_bool(pairs, "previous"),
            timestamps: query_bool(pairs, "timestamps"),
            ..Default::default()
        };
        if let Some(tail) = number("tailLines")? {
            // A negative count means every line, as the kubelet reads it.
            options.tail_lines = usize::try_from(tail).ok();
        }
        if let Some(limit) = number("limitBytes")? {
            if limit < 1 {
                return Err("limitBytes: Invalid value: must be greater than 0".to_string());
            }
            options.limit_bytes = Some(limit as u64);
        }
        let since_seconds = number("sinceSeconds")?;
        let since_time = value("sinceTime");
        match (since_seconds, since_time) {
            (Some(_), Some(_)) => return Err("at most one of sinceTime or sinceSeconds may be specified".to_string()),
            (Some(seconds), None) => {
                if seconds < 1 {
                    return Err("sinceSeconds: Invalid value: must be greater than 0".to_string());
                }
                options.since = now.checked_sub(jiff::SignedDuration::from_secs(seconds)).ok();
            }
            (None, Some(time)) => {
                let parsed = time.parse::<jiff::Timestamp>().map_err(|_| format!("invalid sinceTime {time:?}"))?;
                options.since = Some(parsed);
            }
            (None, None) => {}
        }
        Ok(options)
    }
}

/// Formats log entries as the kubelet writes them: a timestamp (when asked) at the start of each line, pieces
/// of one line joined, a newline after each complete line.
#[derive(Debug)]
pub struct LogFormatter {
    timestamps: bool,
    /// Per stream: the last entry was a piece of a line still being continued.
    continuing: [bool; 2],
}

impl LogFormatter {
    /// A formatter, with or without timestamps.
    pub fn new(timestamps: bool) -> LogFormatter {
        LogFormatter { timestamps, continuing: [false; 2] }
    }

    /// Appends the output for `entry` to `out`.
    pub fn format(&mut self, entry: &LogEntry, out: &mut Vec<u8>) {
        let index = match entry.stream {
            Stream::Stdout => 0,
            Stream::Stderr => 1,
        };
        if self.timestamps && !self.continuing[index] {
            out.extend_from_slice(format_timestamp(entry.timestamp).as_bytes());
            out.push(b' ');
        }
        out.extend_from_slice(&entry.content);
        if !entry.partial {
            out.push(b'\n');
        }
        self.continuing[index] = entry.partial;
    }
}

/// RFC 3339 with nanoseconds, trailing zeros dropped, in UTC (Go's `RFC3339Nano`).
pub fn format_timestamp(timestamp: jiff::Timestamp) -> String {
    let base = timestamp.strftime("%Y-%m-%dT%H:%M:%S").to_string();
    let nanos = timestamp.subsec_nanosecond();
    if nanos == 0 {
        return format!("{base}Z");
    }
    let fraction = format!("{nanos:09}");
    format!("{base}.{}Z", fraction.trim_end_matches('0'))
}

/// The index of the first entry to write so that `tail` complete lines (and any line still being written)
/// remain.
pub fn tail_start(entries: &[LogEntry], tail: usize) -> usize {
    if tail == 0 {
        return entries.len();
    }
    let mut lines = 0;
    for (i, entry) in entries.iter().enumerate().rev() {
        if !entry.partial {
            lines += 1;
            if lines > tail {
                return i + 1;
            }
        }
    }
    0
}

/// The selected, formatted output of `entries` (already in order, oldest first).
pub fn render(entries: &[LogEntry], options: &LogOptions) -> Vec<u8> {
    render_with(entries, options, &mut LogFormatter::new(options.timestamps))
}

/// [`render`] with a formatter that a follow keeps using afterwards (a line may continue past what was read).
fn render_with(entries: &[LogEntry], options: &LogOptions, formatter: &mut LogFormatter) -> Vec<u8> {
    let selected: Vec<LogEntry> =
        entries.iter().filter(|e| options.since.is_none_or(|since| e.timestamp >= since)).cloned().collect();
    let start = options.tail_lines.map(|n| tail_start(&selected, n)).unwrap_or(0);
    let mut out = Vec::new();
    for entry in &selected[start..] {
        formatter.format(entry, &mut out);
    }
    if let Some(limit) = options.limit_bytes {
        out.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    }
    out
}

/// The rotated files of `path` (oldest first) and then `path` itself, those that exist.
fn log_files(path: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = (1..=MAX_ROTATED)
        .rev()
        .map(|n| PathBuf::from(format!("{}.{n}", path.display())))
        .filter(|p| p.exists())
        .collect();
    files.push(path.to_path_buf());
    files
}

/// Parses complete lines of `bytes`; returns the entries and how many bytes they covered.
fn parse_complete(bytes: &[u8]) -> (Vec<LogEntry>, usize) {
    let end = bytes.iter().rposition(|b| *b == b'\n').map(|i| i + 1).unwrap_or(0);
    let entries = bytes[..end].split_inclusive(|b| *b == b'\n').filter_map(parse_entry).collect();
    (entries, end)
}

/// Every entry of the log at `path` and its rotated files; the offset of the live file up to which it was read.
fn read_all(path: &Path) -> std::io::Result<(Vec<LogEntry>, u64)> {
    let mut entries = Vec::new();
    let mut offset = 0;
    for file in log_files(path) {
        let bytes = match std::fs::read(&file) {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
            Err(err) => return Err(err),
        };
        let (mut parsed, used) = parse_complete(&bytes);
        entries.append(&mut parsed);
        if file == path {
            offset = used as u64;
        }
    }
    Ok((entries, offset))
}

/// New complete lines of the live file from `offset`; the offset moves past them. A file shorter than the
/// offset was rotated away: reading starts again at its beginning.
fn read_from(path: &Path, offset: &mut u64) -> std::io::Result<Vec<LogEntry>> {
    let mut file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(err),
    };
    if file.metadata()?.len() < *offset {
        *offset = 0;
    }
    file.seek(SeekFrom::Start(*offset))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    let (entries, used) = parse_complete(&bytes);
    *offset += used as u64;
    Ok(entries)
}

/// Serves a container log request.
pub(crate) async fn serve_logs(
    shared: &Shared,
    namespace: &str,
    pod_name: &str,
    container: &str,
    query: Vec<(String, String)>,
) -> Response<Body> {
    let pod = match find_pod(shared, namespace, pod_name) {
        Ok(pod) => pod,
        Err(response) => return *response,
    };
    let options = match LogOptions::from_query(&query, jiff::Timestamp::now()) {
        Ok(options) => options,
        Err(message) => return status_response(400, "BadRequest", &message),
    };
    let Some(entry) = pod.containers.get(container) else {
        return status_response(400, "BadRequest", &format!("container {container} is not valid for pod {pod_name}"));
    };
    let path = if options.previous {
        match entry.previous_log_path.as_ref().filter(|p| p.exists()) {
            Some(path) => path.clone(),
            None => {
                let message = format!("previous terminated container \"{container}\" in pod \"{pod_name}\" not found");
                return status_response(400, "BadRequest", &message);
            }
        }
    } else {
        match (&entry.log_path, &entry.waiting_reason) {
            (Some(path), _) => path.clone(),
            (None, Some(reason)) => {
                let message = format!("container \"{container}\" in pod \"{pod_name}\" is waiting to start: {reason}");
                return status_response(400, "BadRequest", &message);
            }
            (None, None) => {
                let message = format!("container \"{container}\" in pod \"{pod_name}\" is not available");
                return status_response(400, "BadRequest", &message);
            }
        }
    };
    let read_path = path.clone();
    let read = tokio::task::spawn_blocking(move || read_all(&read_path)).await;
    let (entries, offset) = match read {
        Ok(Ok(read)) => read,
        Ok(Err(err)) => {
            let message = format!("failed to read log file {}: {err}", path.display());
            return status_response(500, "InternalError", &message);
        }
        Err(err) => return status_response(500, "InternalError", &format!("reading the log failed: {err}")),
    };
    let mut formatter = LogFormatter::new(options.timestamps);
    let first = render_with(&entries, &options, &mut formatter);
    let follow_id = entry.container_id.clone().filter(|_| options.follow && !options.previous);
    let Some(container_id) = follow_id else {
        return response(200, "text/plain", Bytes::from(first));
    };
    let (tx, rx) = mpsc::channel::<Bytes>(16);
    let follow = Follow {
        runtime: std::sync::Arc::clone(&shared.runtime),
        container_id,
        path,
        offset,
        formatter,
        since: options.since,
        remaining: options.limit_bytes,
        tx,
    };
    let shutdown = shared.shutdown.clone();
    shared.tasks.spawn(async move {
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = follow.run(first) => {}
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (Ok::<_, Infallible>(Frame::data(chunk)), rx))
    });
    let mut response = response(200, "text/plain", Bytes::new());
    *response.body_mut() = StreamBody::new(stream).boxed_unsync();
    response
}

struct Follow {
    runtime: std::sync::Arc<dyn gantry_runtime::cri::RuntimeService>,
    container_id: String,
    path: PathBuf,
    offset: u64,
    formatter: LogFormatter,
    since: Option<jiff::Timestamp>,
    remaining: Option<u64>,
    tx: mpsc::Sender<Bytes>,
}

impl Follow {
    /// Sends `first`, then new lines until the container exited (and its last lines are sent), the client went
    /// away or the byte limit is reached.
    async fn run(mut self, first: Vec<u8>) {
        if !self.send(first).await {
            return;
        }
        loop {
            let exited = self.exited().await;
            let entries = match self.read_new().await {
                Some(entries) => entries,
                None => return,
            };
            let mut out = Vec::new();
            for entry in entries.iter().filter(|e| self.since.is_none_or(|since| e.timestamp >= since)) {
                self.formatter.format(entry, &mut out);
            }
            if !self.send(out).await || exited {
                return;
            }
            tokio::select! {
                _ = self.tx.closed() => return,
                _ = tokio::time::sleep(FOLLOW_POLL) => {}
            }
        }
    }

    /// Whether the container no longer runs; asked before reading, so that lines written before the exit are
    /// still read after it.
    async fn exited(&self) -> bool {
        match self.runtime.container_status(&self.container_id).await {
            Ok(status) => matches!(status.state, ContainerState::Exited | ContainerState::Unknown),
            Err(RuntimeError::NotFound { .. }) => true,
            Err(err) => {
                tracing::debug!(container = %self.container_id, error = %err, "log follow: status failed");
                false
            }
        }
    }

    async fn read_new(&mut self) -> Option<Vec<LogEntry>> {
        let path = self.path.clone();
        let mut offset = self.offset;
        let read = tokio::task::spawn_blocking(move || read_from(&path, &mut offset).map(|e| (e, offset))).await;
        match read {
            Ok(Ok((entries, offset))) => {
                self.offset = offset;
                Some(entries)
            }
            Ok(Err(err)) => {
                tracing::debug!(path = %self.path.display(), error = %err, "log follow: read failed");
                None
            }
            Err(_) => None,
        }
    }

    /// Sends output within the byte limit; false once nothing more is to be sent.
    async fn send(&mut self, mut out: Vec<u8>) -> bool {
        if let Some(remaining) = self.remaining.as_mut() {
            let allowed = usize::try_from(*remaining).unwrap_or(usize::MAX);
            out.truncate(allowed);
            *remaining -= out.len() as u64;
        }
        if !out.is_empty() && self.tx.send(Bytes::from(out)).await.is_err() {
            return false;
        }
        self.remaining != Some(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(seconds: i64, nanos: i32, stream: Stream, partial: bool, content: &str) -> LogEntry {
        LogEntry {
            timestamp: jiff::Timestamp::new(seconds, nanos).expect("timestamp"),
            stream,
            partial,
            content: content.as_bytes().to_vec(),
        }
    }

    fn query(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn timestamps_are_rfc3339_with_trailing_zeros_dropped() {
        let at = |nanos| format_timestamp(jiff::Timestamp::new(1_700_000_000, nanos).expect("timestamp"));
        assert_eq!(at(123_400_000), "2023-11-14T22:13:20.1234Z");
        assert_eq!(at(0), "2023-11-14T22:13:20Z");
        assert_eq!(at(5), "2023-11-14T22:13:20.000000005Z");
    }

    #[test]
    fn pieces_of_a_line_are_joined_with_one_timestamp() {
        let entries = vec![
            entry(1_700_000_000, 0, Stream::Stdout, true, "hel"),
            entry(1_700_000_001, 0, Stream::Stdout, false, "lo"),
            entry(1_700_000_002, 500, Stream::Stderr, false, "oops"),
        ];
        let plain = render(&entries, &LogOptions::default());
        assert_eq!(plain, b"hello\noops\n");
        let stamped = render(&entries, &LogOptions { timestamps: true, ..Default::default() });
        assert_eq!(
            String::from_utf8(stamped).expect("utf-8"),
            "2023-11-14T22:13:20Z hello\n2023-11-14T22:13:22.0000005Z oops\n"
        );
    }

    #[test]
    fn tail_since_and_limit_select_what_the_kubelet_would() {
        let entries: Vec<LogEntry> =
            (0..5).map(|i| entry(1_700_000_000 + i, 0, Stream::Stdout, false, &format!("line{i}"))).collect();
        let tail = render(&entries, &LogOptions { tail_lines: Some(2), ..Default::default() });
        assert_eq!(tail, b"line3\nline4\n");
        assert!(render(&entries, &LogOptions { tail_lines: Some(0), ..Default::default() }).is_empty());
        let since = Some(jiff::Timestamp::new(1_700_000_003, 0).expect("timestamp"));
        assert_eq!(render(&entries, &LogOptions { since, ..Default::default() }), b"line3\nline4\n");
        assert_eq!(render(&entries, &LogOptions { limit_bytes: Some(8), ..Default::default() }), b"line0\nli");
    }

    #[test]
    fn a_tail_counts_the_pieces_of_a_line_as_one_line() {
        let entries = vec![
            entry(1, 0, Stream::Stdout, false, "a"),
            entry(2, 0, Stream::Stdout, true, "b1"),
            entry(3, 0, Stream::Stdout, false, "b2"),
        ];
        assert_eq!(render(&entries, &LogOptions { tail_lines: Some(1), ..Default::default() }), b"b1b2\n");
    }

    #[test]
    fn options_are_read_from_the_query() {
        let now = jiff::Timestamp::new(1_700_000_000, 0).expect("timestamp");
        let options = LogOptions::from_query(
            &query(&[("follow", "true"), ("tailLines", "5"), ("timestamps", "true"), ("sinceSeconds", "10")]),
            now,
        )
        .expect("options");
        assert!(options.follow && options.timestamps && !options.previous);
        assert_eq!(options.tail_lines, Some(5));
        assert_eq!(options.since, Some(jiff::Timestamp::new(1_699_999_990, 0).expect("timestamp")));
        let since_time = LogOptions::from_query(&query(&[("sinceTime", "2023-11-14T22:13:20Z")]), now).expect("since");
        assert_eq!(since_time.since, Some(now));
        assert!(LogOptions::from_query(&query(&[("sinceTime", "x"), ("sinceSeconds", "1")]), now).is_err());
        assert!(LogOptions::from_query(&query(&[("tailLines", "many")]), now).is_err());
        assert!(LogOptions::from_query(&query(&[("limitBytes", "0")]), now).is_err());
    }

    #[test]
    fn rotated_files_are_read_oldest_first_and_an_unfinished_line_waits() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("0.log");
        std::fs::write(format!("{}.2", path.display()), "2023-11-14T22:13:20Z stdout F one\n").expect("write");
        std::fs::write(format!("{}.1", path.display()), "2023-11-14T22:13:21Z stdout F two\n").expect("write");
        std::fs::write(&path, "2023-11-14T22:13:22Z stdout F three\n2023-11-14T22:13:23Z stdout F fo").expect("write");
        let (entries, mut offset) = read_all(&path).expect("read");
        assert_eq!(render(&entries, &LogOptions::default()), b"one\ntwo\nthree\n");
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new().append(true).open(&path).expect("open");
        file.write_all(b"ur\n").expect("append");
        let new = read_from(&path, &mut offset).expect("read");
        assert_eq!(new.len(), 1);
        assert_eq!(new[0].content, b"four");
        assert_eq!(offset, std::fs::metadata(&path).expect("metadata").len());
    }
}
