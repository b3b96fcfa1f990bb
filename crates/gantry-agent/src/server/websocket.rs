//! WebSocket upgrades over hyper: the handshake (subprotocol negotiation, accept key) and, for SPDY tunnelled
//! in WebSocket, a byte stream made of the binary messages' payloads.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use futures::{Sink, Stream};
use http::{Request, Response, StatusCode};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::Role;

use super::{Body, status_response};

/// A server-side WebSocket over an upgraded HTTP/1.1 connection.
pub type WsStream = WebSocketStream<TokioIo<Upgraded>>;

/// The subprotocols a WebSocket upgrade request offers, in the client's order; `None` when the request is not
/// a WebSocket upgrade. Offers may come in one comma-joined header or in several.
pub fn offered_protocols<B>(req: &Request<B>) -> Option<Vec<String>> {
    let upgrade = req.headers().get(http::header::UPGRADE)?.to_str().ok()?;
    if !upgrade.eq_ignore_ascii_case("websocket") {
        return None;
    }
    Some(header_list(req, "sec-websocket-protocol"))
}

/// Every comma-separated value of every `name` header, trimmed.
pub fn header_list<B>(req: &Request<B>, name: &str) -> Vec<String> {
    req.headers()
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect()
}

/// The first protocol the client offers that the server supports (the client's preference wins).
pub fn negotiate(offered: &[String], supported: &[&str]) -> Option<String> {
    offered.iter().find(|p| supported.contains(&p.as_str())).cloned()
}

/// The 101 answer to a WebSocket upgrade choosing `protocol`, or the 400 for a malformed request.
pub fn switching_protocols<B>(req: &Request<B>, protocol: &str) -> Result<Response<Body>, Box<Response<Body>>> {
    let version_ok = req.headers().get("sec-websocket-version").and_then(|v| v.to_str().ok()) == Some("13");
    let key = req.headers().get("sec-websocket-key").map(|k| k.as_bytes());
    let (true, Some(key)) = (version_ok, key) else {
        return Err(Box::new(status_response(400, "BadRequest", "invalid WebSocket upgrade request")));
    };
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key);
    let mut response = Response::new(Body::default());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(http::header::CONNECTION, http::HeaderValue::from_static("Upgrade"));
    headers.insert(http::header::UPGRADE, http::HeaderValue::from_static("websocket"));
    if let Ok(value) = accept.parse() {
        headers.insert("sec-websocket-accept", value);
    }
    if let Ok(value) = protocol.parse() {
        headers.insert("sec-websocket-protocol", value);
    }
    Ok(response)
}

/// The server side of the WebSocket on a connection upgraded after [`switching_protocols`].
pub async fn server(upgraded: Upgraded) -> WsStream {
    WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await
}

/// A byte stream over a WebSocket: reads the payloads of binary messages in order, writes each buffer as one
/// binary message. Text messages are skipped; a close message or the connection's end is EOF.
pub struct WsBytes<S> {
    ws: S,
    pending: Bytes,
}

impl<S> WsBytes<S> {
    /// Wraps a WebSocket.
    pub fn new(ws: S) -> WsBytes<S> {
        WsBytes { ws, pending: Bytes::new() }
    }
}

type WsError = tokio_tungstenite::tungstenite::Error;

fn io_error(err: WsError) -> std::io::Error {
    match err {
        WsError::Io(err) => err,
        WsError::ConnectionClosed | WsError::AlreadyClosed => std::io::ErrorKind::BrokenPipe.into(),
        other => std::io::Error::other(other),
    }
}

impl<S> AsyncRead for WsBytes<S>
where
    S: Stream<Item = Result<Message, WsError>> + Unpin,
{
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        loop {
            if !self.pending.is_empty() {
                let n = self.pending.len().min(buf.remaining());
                let chunk = self.pending.split_to(n);
                buf.put_slice(&chunk);
                return Poll::Ready(Ok(()));
            }
            match ready!(Pin::new(&mut self.ws).poll_next(cx)) {
                Some(Ok(Message::Binary(data))) => self.pending = data,
                Some(Ok(Message::Close(_))) | None => return Poll::Ready(Ok(())),
                Some(Ok(_)) => continue,
                Some(Err(err)) => return Poll::Ready(Err(io_error(err))),
            }
        }
    }
}

impl<S> AsyncWrite for WsBytes<S>
where
    S: Sink<Message, Error = WsError> + Unpin,
{
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        ready!(Pin::new(&mut self.ws).poll_ready(cx)).map_err(io_error)?;
        Pin::new(&mut self.ws).start_send(Message::Binary(Bytes::copy_from_slice(buf))).map_err(io_error)?;
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.ws).poll_flush(cx).map_err(io_error)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.ws).poll_close(cx).map_err(io_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clients_preference_wins_and_comma_joined_offers_are_split() {
        let req = Request::builder()
            .header("upgrade", "websocket")
            .header("sec-websocket-protocol", "v5.channel.k8s.io, v4.channel.k8s.io")
            .header("sec-websocket-protocol", "channel.k8s.io")
            .body(())
            .expect("request");
        let offered = offered_protocols(&req).expect("a websocket upgrade");
        assert_eq!(offered, ["v5.channel.k8s.io", "v4.channel.k8s.io", "channel.k8s.io"]);
        assert_eq!(
            negotiate(&offered, &["v4.channel.k8s.io", "v5.channel.k8s.io"]).as_deref(),
            Some("v5.channel.k8s.io")
        );
        assert_eq!(negotiate(&offered, &["base64.channel.k8s.io"]), None);
    }

    #[test]
    fn a_request_without_upgrade_is_not_a_websocket() {
        let req = Request::builder().header("upgrade", "SPDY/3.1").body(()).expect("request");
        assert!(offered_protocols(&req).is_none());
    }

    #[test]
    fn the_accept_key_answers_the_clients_key() {
        let req = Request::builder()
            .header("upgrade", "websocket")
            .header("sec-websocket-version", "13")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
            .body(())
            .expect("request");
        let response = switching_protocols(&req, "v5.channel.k8s.io").expect("101");
        assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
        assert_eq!(response.headers()["sec-websocket-accept"], "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert_eq!(response.headers()["sec-websocket-protocol"], "v5.channel.k8s.io");
    }
}
