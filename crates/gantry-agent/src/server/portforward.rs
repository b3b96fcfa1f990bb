//! `/portForward/{namespace}/{pod}`: the `portforward.k8s.io` protocol over SPDY/3.1, either from a SPDY
//! upgrade or tunnelled in the binary messages of a WebSocket (subprotocol `SPDY/3.1+portforward.k8s.io`,
//! kubectl's first attempt).
//!
//! For each forwarded connection the client opens two streams with the same `requestID` and `port` headers:
//! `streamType: error` (we write a message there when the port cannot be reached) and `streamType: data` (the
//! connection's bytes). The connection is made inside the pod's network namespace by the runtime.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use gantry_runtime::cri::RuntimeService;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinSet;

use super::remotecommand::{is_spdy_upgrade, no_common_protocol, spdy_switching_protocols};
use super::spdy::{Role, SpdyConnection, SpdyStream};
use super::websocket::{self, WsBytes};
use super::{Body, Shared, find_pod, status_response};

/// The SPDY stream protocol of port forwarding.
pub const PROTOCOL: &str = "portforward.k8s.io";
/// The WebSocket subprotocol carrying SPDY for port forwarding.
pub const WEBSOCKET_PROTOCOL: &str = "SPDY/3.1+portforward.k8s.io";
/// How long the second stream of a pair may keep the first waiting.
const PAIR_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves a port-forward request.
pub(crate) async fn serve(
    shared: &Shared,
    namespace: &str,
    pod_name: &str,
    mut req: Request<Incoming>,
) -> Response<Body> {
    let pod = match find_pod(shared, namespace, pod_name) {
        Ok(pod) => pod,
        Err(response) => return *response,
    };
    let Some(sandbox_id) = pod.sandbox_id.clone() else {
        let message = format!("pod \"{pod_name}\" has no sandbox running: it cannot forward ports yet");
        return status_response(400, "BadRequest", &message);
    };
    let runtime = Arc::clone(&shared.runtime);
    let shutdown = shared.shutdown.clone();
    if let Some(offered) = websocket::offered_protocols(&req) {
        let Some(protocol) = websocket::negotiate(&offered, &[WEBSOCKET_PROTOCOL]) else {
            return no_common_protocol(&offered, &[WEBSOCKET_PROTOCOL]);
        };
        let response = match websocket::switching_protocols(&req, &protocol) {
            Ok(response) => response,
            Err(response) => return *response,
        };
        let upgrade = hyper::upgrade::on(&mut req);
        shared.tasks.spawn(async move {
            let upgraded = match upgrade.await {
                Ok(upgraded) => upgraded,
                Err(err) => return tracing::debug!(error = %err, "port-forward: the upgrade failed"),
            };
            let ws = websocket::server(upgraded).await;
            let conn = SpdyConnection::new(WsBytes::new(ws), Role::Server);
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = forward(conn, runtime, sandbox_id) => {}
            }
        });
        return response;
    }
    if is_spdy_upgrade(&req) {
        let offered = websocket::header_list(&req, "x-stream-protocol-version");
        if !offered.iter().any(|p| p == PROTOCOL) {
            return no_common_protocol(&offered, &[PROTOCOL]);
        }
        let upgrade = hyper::upgrade::on(&mut req);
        shared.tasks.spawn(async move {
            let upgraded = match upgrade.await {
                Ok(upgraded) => upgraded,
                Err(err) => return tracing::debug!(error = %err, "port-forward: the upgrade failed"),
            };
            let conn = SpdyConnection::new(TokioIo::new(upgraded), Role::Server);
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = forward(conn, runtime, sandbox_id) => {}
            }
        });
        return spdy_switching_protocols(PROTOCOL);
    }
    status_response(400, "BadRequest", "Upgrade request required")
}

#[derive(Default)]
struct Pair {
    error: Option<SpdyStream>,
    data: Option<SpdyStream>,
    since: Option<tokio::time::Instant>,
}

/// Pairs the client's streams and forwards each pair until the connection ends.
async fn forward(mut conn: SpdyConnection, runtime: Arc<dyn RuntimeService>, sandbox_id: String) {
    let mut pending: HashMap<String, Pair> = HashMap::new();
    let mut forwards = JoinSet::new();
    let mut sweep = tokio::time::interval(Duration::from_secs(5));
    loop {
        let stream = tokio::select! {
            stream = conn.accept() => match stream {
                Some(stream) => stream,
                None => break,
            },
            Some(_) = forwards.join_next(), if !forwards.is_empty() => continue,
            _ = sweep.tick() => {
                pending.retain(|_, pair| pair.since.is_none_or(|since| since.elapsed() < PAIR_TIMEOUT));
                continue;
            }
        };
        let request_id = stream.header("requestid").unwrap_or_default().to_string();
        let pair = pending.entry(request_id.clone()).or_default();
        pair.since.get_or_insert_with(tokio::time::Instant::now);
        match stream.header("streamtype").map(str::to_ascii_lowercase).as_deref() {
            Some("error") => pair.error = Some(stream),
            Some("data") => pair.data = Some(stream),
            _ => {
                let _ = stream.writer().reset(super::spdy::RST_PROTOCOL_ERROR).await;
                continue;
            }
        }
        if pair.error.is_some() && pair.data.is_some() {
            let Some(Pair { error: Some(error), data: Some(data), .. }) = pending.remove(&request_id) else {
                continue;
            };
            forwards.spawn(forward_one(Arc::clone(&runtime), sandbox_id.clone(), error, data));
        }
    }
    forwards.abort_all();
}

/// Forwards one connection: connects to the port in the pod and copies both ways until both ends are done.
async fn forward_one(runtime: Arc<dyn RuntimeService>, sandbox_id: String, error: SpdyStream, data: SpdyStream) {
    let error = error.writer();
    let port = data.header("port").and_then(|p| p.parse::<u16>().ok()).filter(|p| *p > 0);
    let Some(port) = port else {
        let raw = data.header("port").unwrap_or_default().to_string();
        let _ = error.write(format!("invalid port {raw:?}").as_bytes()).await;
        let _ = error.close().await;
        let _ = data.writer().close().await;
        return;
    };
    let tcp = match runtime.port_forward(&sandbox_id, port).await {
        Ok(tcp) => tcp,
        Err(err) => {
            let message = format!("error forwarding port {port} to pod {sandbox_id}, uid : {err}");
            tracing::debug!(%message, "port-forward failed");
            let _ = error.write(message.as_bytes()).await;
            let _ = error.close().await;
            let _ = data.writer().close().await;
            return;
        }
    };
    let (mut tcp_read, mut tcp_write) = tcp.into_split();
    let (mut incoming, outgoing) = data.split();
    let upstream = async move {
        while let Some(chunk) = incoming.recv().await {
            if tcp_write.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = tcp_write.shutdown().await;
    };
    let downstream = async move {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match tcp_read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if outgoing.write(&Bytes::copy_from_slice(&buf[..n])).await.is_err() {
                        return;
                    }
                }
            }
        }
        let _ = outgoing.close().await;
    };
    futures::future::join(upstream, downstream).await;
    let _ = error.close().await;
}
