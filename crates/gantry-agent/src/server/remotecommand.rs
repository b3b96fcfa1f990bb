//! `/exec/{namespace}/{pod}/{container}` and `/attach/...`: the remote command protocol kubectl speaks, over
//! WebSocket (channel protocols `v5.channel.k8s.io` and `v4.channel.k8s.io`) or SPDY/3.1 (`v4`, `v3`, `v2`).
//!
//! WebSocket: binary messages whose first byte names the channel (0 stdin, 1 stdout, 2 stderr, 3 status,
//! 4 resize; with v5, 255 closes the channel named by the next byte). SPDY: one stream per channel, opened by
//! the client and named by its `streamType` header. Either way the session ends with a `Status` on the error
//! channel (for a non-zero exit code, `NonZeroExitCode` with the code as the `ExitCode` cause, from which
//! kubectl takes its own exit code), then the connection closes.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use gantry_runtime::cri::{RuntimeError, RuntimeService, StreamOptions, StreamSession, TerminalSize};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use super::spdy::{Role, SpdyConnection, SpdyStream, StreamWriter};
use super::websocket::{self, WsStream};
use super::{Body, Shared, find_pod, query_bool, query_pairs, status_response};

/// WebSocket subprotocols served, newest first.
pub const WEBSOCKET_PROTOCOLS: &[&str] = &["v5.channel.k8s.io", "v4.channel.k8s.io"];
/// SPDY stream protocols served, newest first.
pub const SPDY_PROTOCOLS: &[&str] = &["v4.channel.k8s.io", "v3.channel.k8s.io", "v2.channel.k8s.io"];

/// Channel numbers of the WebSocket protocol.
pub mod channel {
    /// Standard input (client to server).
    pub const STDIN: u8 = 0;
    /// Standard output.
    pub const STDOUT: u8 = 1;
    /// Standard error.
    pub const STDERR: u8 = 2;
    /// The final status.
    pub const ERROR: u8 = 3;
    /// Terminal size changes (client to server).
    pub const RESIZE: u8 = 4;
    /// v5: closes the channel named by the next byte.
    pub const CLOSE: u8 = 255;
}

/// How long a SPDY client has to open the streams the request announced.
const STREAM_CREATION_TIMEOUT: Duration = Duration::from_secs(30);
/// How long output is still drained after the process exited (a background child may hold the pipes open).
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(2);

/// Exec runs a new process; attach joins the container's main process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A new process in the container.
    Exec,
    /// The container's main process.
    Attach,
}

/// A message from the client, whatever the transport.
#[derive(Debug, PartialEq, Eq)]
pub enum Input {
    /// Bytes for the process's standard input.
    Stdin(Bytes),
    /// Standard input ended.
    StdinEnd,
    /// The terminal's new size.
    Resize(TerminalSize),
}

/// Output of the process, whatever the transport.
#[derive(Debug, PartialEq, Eq)]
pub enum Output {
    /// Standard output (or the terminal).
    Stdout(Bytes),
    /// Standard error.
    Stderr(Bytes),
}

/// Decodes one WebSocket message of the channel protocol into client input; `None` for messages that carry
/// none (empty, unknown channels, an unparsable size).
pub fn decode_channel_message(data: &[u8], v5: bool) -> Option<Input> {
    let (&channel, payload) = data.split_first()?;
    match channel {
        channel::STDIN => Some(Input::Stdin(Bytes::copy_from_slice(payload))),
        channel::RESIZE => parse_size(payload).map(Input::Resize),
        channel::CLOSE if v5 && payload.first() == Some(&channel::STDIN) => Some(Input::StdinEnd),
        _ => None,
    }
}

/// One WebSocket message of the channel protocol.
pub fn encode_channel_message(channel: u8, payload: &[u8]) -> Bytes {
    let mut message = Vec::with_capacity(payload.len() + 1);
    message.push(channel);
    message.extend_from_slice(payload);
    Bytes::from(message)
}

#[derive(serde::Deserialize)]
struct Size {
    #[serde(rename = "Width")]
    width: u16,
    #[serde(rename = "Height")]
    height: u16,
}

fn parse_size(payload: &[u8]) -> Option<TerminalSize> {
    let size: Size = serde_json::from_slice(payload).ok()?;
    Some(TerminalSize { width: size.width, height: size.height })
}

/// Decodes the SPDY resize stream: JSON objects one after another, cut anywhere by the framing.
#[derive(Debug, Default)]
pub struct ResizeDecoder {
    buf: Vec<u8>,
}

impl ResizeDecoder {
    /// Feeds bytes; returns the sizes they complete.
    pub fn feed(&mut self, data: &[u8]) -> Vec<TerminalSize> {
        self.buf.extend_from_slice(data);
        let mut sizes = Vec::new();
        let mut stream = serde_json::Deserializer::from_slice(&self.buf).into_iter::<Size>();
        let mut used = 0;
        while let Some(Ok(size)) = stream.next() {
            used = stream.byte_offset();
            sizes.push(TerminalSize { width: size.width, height: size.height });
        }
        self.buf.drain(..used);
        sizes
    }
}

/// The `Status` that ends a session, as the kubelet writes it on the error channel.
pub fn exit_status(result: &Result<i32, RuntimeError>, kind: Kind, command: &[String]) -> serde_json::Value {
    match result {
        Ok(0) => serde_json::json!({"metadata": {}, "status": "Success"}),
        Ok(_) if kind == Kind::Attach => serde_json::json!({"metadata": {}, "status": "Success"}),
        Ok(code) => serde_json::json!({
            "metadata": {},
            "status": "Failure",
            "message": format!(
                "command terminated with non-zero exit code: error executing command [{}], exit code {code}",
                command.join(" ")
            ),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
        }),
        Err(err) => internal_error(&err.to_string()),
    }
}

fn internal_error(message: &str) -> serde_json::Value {
    serde_json::json!({
        "metadata": {},
        "status": "Failure",
        "message": format!("Internal error occurred: {message}"),
        "reason": "InternalError",
        "details": {"causes": [{"message": message}]},
        "code": 500,
    })
}

/// What a session needs once the connection is upgraded.
struct Request0 {
    runtime: Arc<dyn RuntimeService>,
    kind: Kind,
    container_id: String,
    command: Vec<String>,
    options: StreamOptions,
}

impl Request0 {
    async fn start(&self) -> Result<StreamSession, RuntimeError> {
        match self.kind {
            Kind::Exec => self.runtime.exec(&self.container_id, &self.command, &self.options).await,
            Kind::Attach => self.runtime.attach(&self.container_id, &self.options).await,
        }
    }
}

/// Whether a request asks for a SPDY/3.1 upgrade.
pub(crate) fn is_spdy_upgrade<B>(req: &Request<B>) -> bool {
    req.headers()
        .get(http::header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("SPDY/3.1"))
}

/// The 101 answer to a SPDY upgrade with the chosen stream protocol.
pub(crate) fn spdy_switching_protocols(protocol: &str) -> Response<Body> {
    let mut response = Response::new(Body::default());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(http::header::CONNECTION, http::HeaderValue::from_static("Upgrade"));
    headers.insert(http::header::UPGRADE, http::HeaderValue::from_static("SPDY/3.1"));
    if let Ok(value) = protocol.parse() {
        headers.insert("x-stream-protocol-version", value);
    }
    response
}

/// The 403 the kubelet answers when no stream protocol is common.
pub(crate) fn no_common_protocol(offered: &[String], supported: &[&str]) -> Response<Body> {
    let message = format!(
        "unable to upgrade connection: unable to negotiate protocol: client supports {offered:?}, server supports \
         {supported:?}"
    );
    status_response(403, "Forbidden", &message)
}

/// Serves an exec or attach request.
pub(crate) async fn serve(
    shared: &Shared,
    kind: Kind,
    namespace: &str,
    pod_name: &str,
    container: &str,
    mut req: Request<Incoming>,
) -> Response<Body> {
    let pod = match find_pod(shared, namespace, pod_name) {
        Ok(pod) => pod,
        Err(response) => return *response,
    };
    let pairs = query_pairs(&req);
    let tty = query_bool(&pairs, "tty");
    let options = StreamOptions {
        stdin: query_bool(&pairs, "stdin"),
        stdout: query_bool(&pairs, "stdout"),
        // With a terminal, standard error is part of the terminal's output.
        stderr: query_bool(&pairs, "stderr") && !tty,
        tty,
    };
    if !options.stdin && !options.stdout && !query_bool(&pairs, "stderr") {
        return status_response(400, "BadRequest", "you must specify at least 1 of stdin, stdout, stderr");
    }
    let command: Vec<String> = pairs.iter().filter(|(k, _)| k == "command").map(|(_, v)| v.clone()).collect();
    if kind == Kind::Exec && command.is_empty() {
        return status_response(400, "BadRequest", "you must specify at least one command for the container");
    }
    let Some(entry) = pod.containers.get(container) else {
        return status_response(400, "BadRequest", &format!("container {container} is not valid for pod {pod_name}"));
    };
    let Some(container_id) = entry.container_id.clone() else {
        let message = format!("container not found (\"{container}\")");
        return status_response(404, "NotFound", &message);
    };
    let session = Request0 { runtime: Arc::clone(&shared.runtime), kind, container_id, command, options };
    let shutdown = shared.shutdown.clone();

    if let Some(offered) = websocket::offered_protocols(&req) {
        let Some(protocol) = websocket::negotiate(&offered, WEBSOCKET_PROTOCOLS) else {
            return no_common_protocol(&offered, WEBSOCKET_PROTOCOLS);
        };
        let response = match websocket::switching_protocols(&req, &protocol) {
            Ok(response) => response,
            Err(response) => return *response,
        };
        let upgrade = hyper::upgrade::on(&mut req);
        let v5 = protocol == "v5.channel.k8s.io";
        shared.tasks.spawn(async move {
            let upgraded = match upgrade.await {
                Ok(upgraded) => upgraded,
                Err(err) => return tracing::debug!(error = %err, "exec: the upgrade failed"),
            };
            let ws = websocket::server(upgraded).await;
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = run_websocket(ws, v5, session) => {}
            }
        });
        return response;
    }
    if is_spdy_upgrade(&req) {
        let offered = websocket::header_list(&req, "x-stream-protocol-version");
        let Some(protocol) = websocket::negotiate(&offered, SPDY_PROTOCOLS) else {
            return no_common_protocol(&offered, SPDY_PROTOCOLS);
        };
        let upgrade = hyper::upgrade::on(&mut req);
        let version = if protocol.starts_with("v4") {
            4
        } else if protocol.starts_with("v3") {
            3
        } else {
            2
        };
        shared.tasks.spawn(async move {
            let upgraded = match upgrade.await {
                Ok(upgraded) => upgraded,
                Err(err) => return tracing::debug!(error = %err, "exec: the upgrade failed"),
            };
            let conn = SpdyConnection::new(TokioIo::new(upgraded), Role::Server);
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = run_spdy(conn, version, session) => {}
            }
        });
        return spdy_switching_protocols(&protocol);
    }
    status_response(400, "BadRequest", "Upgrade request required")
}

/// Moves bytes between the process and the client until the process exits; returns its exit code.
async fn pump(
    session: StreamSession,
    mut input: mpsc::Receiver<Input>,
    output: mpsc::Sender<Output>,
) -> Result<i32, RuntimeError> {
    let StreamSession { stdin, stdout, stderr, resize, mut exit } = session;
    let copy_out = |reader: Option<gantry_runtime::cri::ByteReader>, wrap: fn(Bytes) -> Output| {
        let output = output.clone();
        async move {
            let Some(mut reader) = reader else { return };
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                match reader.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        if output.send(wrap(Bytes::copy_from_slice(&buf[..n]))).await.is_err() {
                            return;
                        }
                    }
                }
            }
        }
    };
    let outputs = futures::future::join(copy_out(stdout, Output::Stdout), copy_out(stderr, Output::Stderr));
    drop(output);
    let feed = async move {
        let mut stdin = stdin;
        while let Some(message) = input.recv().await {
            match message {
                Input::Stdin(data) => {
                    if let Some(writer) = stdin.as_mut()
                        && (writer.write_all(&data).await.is_err() || writer.flush().await.is_err())
                    {
                        stdin = None;
                    }
                }
                Input::StdinEnd => {
                    if let Some(mut writer) = stdin.take() {
                        let _ = writer.shutdown().await;
                    }
                }
                Input::Resize(size) => {
                    if let Some(resize) = &resize {
                        let _ = resize.send(size).await;
                    }
                }
            }
        }
        // The client is gone or sends nothing more: the process's input ends.
        drop(stdin);
        futures::future::pending::<()>().await
    };
    let mut feed = std::pin::pin!(feed);
    let mut outputs = std::pin::pin!(outputs);
    let mut outputs_done = false;
    let code = loop {
        tokio::select! {
            code = &mut exit => break code,
            _ = &mut feed => {}
            _ = &mut outputs, if !outputs_done => outputs_done = true,
        }
    };
    if !outputs_done {
        let _ = tokio::time::timeout(DRAIN_AFTER_EXIT, outputs).await;
    }
    code
}

async fn run_websocket(ws: WsStream, v5: bool, request: Request0) {
    let (mut sink, mut stream) = ws.split();
    // The kubelet announces the session with an empty message on the lowest channel it writes.
    let first = if request.options.stdout {
        channel::STDOUT
    } else if request.options.stderr {
        channel::STDERR
    } else {
        channel::ERROR
    };
    if sink.send(Message::Binary(encode_channel_message(first, &[]))).await.is_err() {
        return;
    }
    let (input_tx, input_rx) = mpsc::channel(16);
    let reader = async move {
        while let Some(message) = stream.next().await {
            match message {
                Ok(Message::Binary(data)) => {
                    if let Some(input) = decode_channel_message(&data, v5) {
                        let _ = input_tx.send(input).await;
                    }
                }
                Ok(Message::Close(_)) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    let result = match request.start().await {
        Ok(session) => {
            let (output_tx, mut output_rx) = mpsc::channel(16);
            let forward = async {
                while let Some(output) = output_rx.recv().await {
                    let message = match output {
                        Output::Stdout(data) => encode_channel_message(channel::STDOUT, &data),
                        Output::Stderr(data) => encode_channel_message(channel::STDERR, &data),
                    };
                    if sink.send(Message::Binary(message)).await.is_err() {
                        // The client is gone; keep draining so the process is not blocked on its output.
                        while output_rx.recv().await.is_some() {}
                    }
                }
            };
            let running = async { futures::future::join(pump(session, input_rx, output_tx), forward).await.0 };
            tokio::select! {
                result = running => result,
                _ = reader => return,
            }
        }
        Err(err) => Err(err),
    };
    let status = exit_status(&result, request.kind, &request.command);
    let payload = serde_json::to_vec(&status).unwrap_or_default();
    let _ = sink.send(Message::Binary(encode_channel_message(channel::ERROR, &payload))).await;
    let close = CloseFrame { code: CloseCode::Normal, reason: "".into() };
    let _ = sink.send(Message::Close(Some(close))).await;
    let _ = sink.close().await;
}

async fn run_spdy(mut conn: SpdyConnection, version: u8, request: Request0) {
    let options = &request.options;
    let mut wanted: Vec<&str> = vec!["error"];
    if options.stdin {
        wanted.push("stdin");
    }
    if options.stdout {
        wanted.push("stdout");
    }
    if options.stderr {
        wanted.push("stderr");
    }
    if options.tty && version >= 3 {
        wanted.push("resize");
    }
    let mut streams: std::collections::HashMap<String, SpdyStream> = std::collections::HashMap::new();
    let collected = tokio::time::timeout(STREAM_CREATION_TIMEOUT, async {
        while wanted.iter().any(|w| !streams.contains_key(*w)) {
            let stream = conn.accept().await?;
            if let Some(kind) = stream.header("streamtype").map(str::to_ascii_lowercase)
                && wanted.contains(&kind.as_str())
            {
                streams.insert(kind, stream);
            }
        }
        Some(())
    })
    .await;
    if !matches!(collected, Ok(Some(()))) {
        tracing::debug!("exec: the client did not open the announced streams");
        return;
    }
    let Some(error) = streams.remove("error") else { return };
    let error = error.writer();
    let stdout = streams.remove("stdout").map(|s| s.writer());
    let stderr = streams.remove("stderr").map(|s| s.writer());
    let (input_tx, input_rx) = mpsc::channel(16);
    let mut readers = Vec::new();
    if let Some(stdin) = streams.remove("stdin") {
        let input = input_tx.clone();
        readers.push(tokio::spawn(async move {
            let (mut data, _writer) = stdin.split();
            while let Some(chunk) = data.recv().await {
                if input.send(Input::Stdin(chunk)).await.is_err() {
                    return;
                }
            }
            let _ = input.send(Input::StdinEnd).await;
        }));
    }
    if let Some(resize) = streams.remove("resize") {
        let input = input_tx.clone();
        readers.push(tokio::spawn(async move {
            let (mut data, _writer) = resize.split();
            let mut decoder = ResizeDecoder::default();
            while let Some(chunk) = data.recv().await {
                for size in decoder.feed(&chunk) {
                    if input.send(Input::Resize(size)).await.is_err() {
                        return;
                    }
                }
            }
        }));
    }
    drop(input_tx);
    let result = match request.start().await {
        Ok(session) => {
            let (output_tx, mut output_rx) = mpsc::channel(16);
            let forward = async {
                while let Some(output) = output_rx.recv().await {
                    let (target, data): (&Option<StreamWriter>, Bytes) = match output {
                        Output::Stdout(data) => (&stdout, data),
                        Output::Stderr(data) => (&stderr, data),
                    };
                    if let Some(target) = target {
                        let _ = target.write(&data).await;
                    }
                }
            };
            let running = async { futures::future::join(pump(session, input_rx, output_tx), forward).await.0 };
            // The connection's end (no more streams to accept) means the client is gone.
            let gone = async { while conn.accept().await.is_some() {} };
            tokio::select! {
                result = running => result,
                _ = gone => {
                    readers.iter().for_each(|r| r.abort());
                    return;
                }
            }
        }
        Err(err) => Err(err),
    };
    for writer in [&stdout, &stderr].into_iter().flatten() {
        let _ = writer.close().await;
    }
    let status = exit_status(&result, request.kind, &request.command);
    let payload = if version >= 4 {
        serde_json::to_vec(&status).unwrap_or_default()
    } else if status["status"] == "Success" {
        Vec::new()
    } else {
        status["message"].as_str().unwrap_or_default().as_bytes().to_vec()
    };
    if !payload.is_empty() {
        let _ = error.write(&payload).await;
    }
    let _ = error.close().await;
    readers.iter().for_each(|r| r.abort());
    conn.close().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_messages_decode_to_input() {
        assert_eq!(decode_channel_message(b"\x00hi\n", true), Some(Input::Stdin(Bytes::from_static(b"hi\n"))));
        assert_eq!(
            decode_channel_message(b"\x04{\"Width\":80,\"Height\":24}", false),
            Some(Input::Resize(TerminalSize { width: 80, height: 24 }))
        );
        assert_eq!(decode_channel_message(b"\xff\x00", true), Some(Input::StdinEnd));
        // v4 has no close signal; other channels carry no input.
        assert_eq!(decode_channel_message(b"\xff\x00", false), None);
        assert_eq!(decode_channel_message(b"\x01out", true), None);
        assert_eq!(decode_channel_message(b"", true), None);
        assert_eq!(decode_channel_message(b"\x04not json", true), None);
    }

    #[test]
    fn output_is_prefixed_with_its_channel() {
        assert_eq!(&encode_channel_message(channel::STDERR, b"oops")[..], b"\x02oops");
        assert_eq!(&encode_channel_message(channel::STDOUT, b"")[..], b"\x01");
    }

    #[test]
    fn resize_objects_are_decoded_across_frame_boundaries() {
        let mut decoder = ResizeDecoder::default();
        assert!(decoder.feed(b"{\"Width\":100,").is_empty());
        let sizes = decoder.feed(b"\"Height\":30}\n{\"Width\":1,\"Height\":2}\n{\"Wi");
        assert_eq!(sizes, [TerminalSize { width: 100, height: 30 }, TerminalSize { width: 1, height: 2 }]);
        assert_eq!(decoder.feed(b"dth\":5,\"Height\":6}"), [TerminalSize { width: 5, height: 6 }]);
    }

    #[test]
    fn a_non_zero_exit_is_a_failure_with_the_code_as_cause() {
        let command = vec!["sh".to_string(), "-c".to_string(), "exit 3".to_string()];
        let status = exit_status(&Ok(3), Kind::Exec, &command);
        assert_eq!(status["status"], "Failure");
        assert_eq!(status["reason"], "NonZeroExitCode");
        assert_eq!(status["details"]["causes"][0]["reason"], "ExitCode");
        assert_eq!(status["details"]["causes"][0]["message"], "3");
        assert_eq!(exit_status(&Ok(0), Kind::Exec, &command), serde_json::json!({"metadata": {}, "status": "Success"}));
        assert_eq!(exit_status(&Ok(1), Kind::Attach, &[])["status"], "Success");
        let failed = exit_status(&Err(RuntimeError::Invalid("no such file".into())), Kind::Exec, &command);
        assert_eq!((failed["reason"].as_str(), failed["code"].as_i64()), (Some("InternalError"), Some(500)));
    }
}
