//! The grpc probe: `grpc.health.v1.Health/Check` over HTTP/2 cleartext, its two small messages encoded here.
//! Messages follow the kubelet's (`service unhealthy (responded with "NOT_SERVING")`).

use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::{KUBE_VERSION, ProbeResult, dial_error, join_host_port};

/// `HealthCheckResponse.ServingStatus` values.
const SERVING_STATUSES: [&str; 4] = ["UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN"];
const SERVING: u64 = 1;

/// gRPC status codes, by number.
const CODES: [&str; 17] = [
    "OK",
    "Canceled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
];
const UNIMPLEMENTED: u32 = 12;
const DEADLINE_EXCEEDED: u32 = 4;

/// Asks the health service at `host:port` about `service` ("" for the server as a whole).
pub(crate) async fn probe(host: &str, port: u16, service: &str, timeout: Duration) -> ProbeResult {
    let address = join_host_port(host, port);
    let deadline = Instant::now() + timeout;
    let within = format_seconds(timeout);
    let tcp = match tokio::time::timeout_at(deadline, TcpStream::connect(&address)).await {
        Err(_) => {
            return ProbeResult::Failure(format!(
                "timeout: failed to connect service {address:?} within {within}: context deadline exceeded"
            ));
        }
        Ok(Err(err)) => {
            return ProbeResult::Failure(format!(
                "error: failed to connect service at {address:?}: dial tcp {address}: {}",
                dial_error(&err)
            ));
        }
        Ok(Ok(tcp)) => tcp,
    };
    let _ = tcp.set_nodelay(true);
    match tokio::time::timeout_at(deadline, check(tcp, &address, service)).await {
        Err(_) => ProbeResult::Failure(format!("timeout: health rpc did not complete within {within}")),
        Ok(Err(failure)) => ProbeResult::Failure(failure.message(&within)),
        Ok(Ok(SERVING)) => ProbeResult::Success,
        Ok(Ok(status)) => {
            let name = usize::try_from(status).ok().and_then(|s| SERVING_STATUSES.get(s)).copied();
            let name = name.map(str::to_string).unwrap_or_else(|| status.to_string());
            ProbeResult::Failure(format!("service unhealthy (responded with {name:?})"))
        }
    }
}

/// Go's rendering of a whole number of seconds (`1s`).
fn format_seconds(duration: Duration) -> String {
    format!("{}s", duration.as_secs())
}

/// How the call failed.
enum CallError {
    /// The HTTP/2 exchange failed.
    Transport(hyper::Error),
    /// The answer is not a gRPC answer.
    Malformed(String),
    /// The server answered with a non-OK gRPC status.
    Status { code: u32, message: String },
}

impl CallError {
    fn message(&self, within: &str) -> String {
        match self {
            CallError::Status { code: UNIMPLEMENTED, message } => format!(
                "error: this server does not implement the grpc health protocol (grpc.health.v1.Health): {message}"
            ),
            CallError::Status { code: DEADLINE_EXCEEDED, .. } => {
                format!("timeout: health rpc did not complete within {within}")
            }
            CallError::Status { code, message } => {
                let name = usize::try_from(*code).ok().and_then(|c| CODES.get(c)).copied();
                let name = name.map(str::to_string).unwrap_or_else(|| format!("Code({code})"));
                format!("error: health rpc probe failed: rpc error: code = {name} desc = {message}")
            }
            CallError::Transport(err) => {
                format!("error: health rpc probe failed: rpc error: code = Unavailable desc = {err}")
            }
            CallError::Malformed(what) => {
                format!("error: health rpc probe failed: rpc error: code = Internal desc = {what}")
            }
        }
    }
}

impl From<hyper::Error> for CallError {
    fn from(err: hyper::Error) -> Self {
        CallError::Transport(err)
    }
}

/// The `Check` call on an open connection; returns the serving status.
async fn check(tcp: TcpStream, authority: &str, service: &str) -> Result<u64, CallError> {
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp)).await?;
    let request = Request::post(format!("http://{authority}/grpc.health.v1.Health/Check"))
        .header(http::header::CONTENT_TYPE, "application/grpc")
        .header(http::header::TE, "trailers")
        .header(http::header::USER_AGENT, format!("kube-probe/{KUBE_VERSION}"))
        .body(Full::new(frame(&encode_request(service))))
        .map_err(|e| CallError::Malformed(e.to_string()))?;
    let call = async move {
        let response = sender.send_request(request).await?;
        let (parts, mut body) = response.into_parts();
        if parts.status != StatusCode::OK {
            return Err(CallError::Malformed(format!("unexpected HTTP status code {}", parts.status.as_u16())));
        }
        let mut data = BytesMut::new();
        let mut trailers = None;
        while let Some(frame) = body.frame().await {
            match frame?.into_data() {
                Ok(chunk) => data.extend_from_slice(&chunk),
                Err(frame) => trailers = frame.into_trailers().ok(),
            }
        }
        // A "trailers-only" answer carries its status in the headers.
        let status = trailers.as_ref().and_then(grpc_status).or_else(|| grpc_status(&parts.headers));
        match status {
            Some((0, _)) => decode_response(data.freeze()),
            Some((code, message)) => Err(CallError::Status { code, message }),
            None => Err(CallError::Malformed("server closed the stream without sending trailers".to_string())),
        }
    };
    tokio::pin!(call);
    tokio::select! {
        result = &mut call => result,
        ended = connection => {
            ended?;
            call.await
        }
    }
}

fn grpc_status(headers: &HeaderMap) -> Option<(u32, String)> {
    let code = headers.get("grpc-status")?.to_str().ok()?.trim().parse().ok()?;
    let message = headers.get("grpc-message").and_then(|m| m.to_str().ok()).map(percent_decode).unwrap_or_default();
    Some((code, message))
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = (bytes[i] == b'%').then(|| text.get(i + 1..i + 3)).flatten();
        match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `HealthCheckRequest { string service = 1; }`.
fn encode_request(service: &str) -> Vec<u8> {
    let mut message = Vec::with_capacity(service.len() + 6);
    if !service.is_empty() {
        message.push(0x0a);
        put_varint(&mut message, service.len() as u64);
        message.extend_from_slice(service.as_bytes());
    }
    message
}

/// A gRPC length-prefixed message (uncompressed).
fn frame(message: &[u8]) -> Bytes {
    let mut framed = BytesMut::with_capacity(message.len() + 5);
    framed.extend_from_slice(&[0]);
    framed.extend_from_slice(&u32::try_from(message.len()).unwrap_or(u32::MAX).to_be_bytes());
    framed.extend_from_slice(message);
    framed.freeze()
}

/// The `status` of `HealthCheckResponse { ServingStatus status = 1; }` in a framed answer (0 when absent, as
/// proto3 leaves defaults out).
fn decode_response(mut data: Bytes) -> Result<u64, CallError> {
    let malformed = |what: &str| CallError::Malformed(format!("malformed health response: {what}"));
    if data.len() < 5 {
        return Err(malformed("no message"));
    }
    if data.get_u8() != 0 {
        return Err(malformed("compressed message"));
    }
    let length = data.get_u32() as usize;
    if data.len() < length {
        return Err(malformed("truncated message"));
    }
    let mut message = data.split_to(length);
    let mut status = 0;
    while message.has_remaining() {
        let key = get_varint(&mut message).ok_or_else(|| malformed("bad field key"))?;
        match (key >> 3, key & 7) {
            (1, 0) => status = get_varint(&mut message).ok_or_else(|| malformed("bad status"))?,
            (_, 0) => {
                get_varint(&mut message).ok_or_else(|| malformed("bad varint"))?;
            }
            (_, 1) if message.remaining() >= 8 => message.advance(8),
            (_, 5) if message.remaining() >= 4 => message.advance(4),
            (_, 2) => {
                let len = get_varint(&mut message).ok_or_else(|| malformed("bad length"))?;
                let len = usize::try_from(len).ok().filter(|l| *l <= message.remaining());
                message.advance(len.ok_or_else(|| malformed("truncated field"))?);
            }
            _ => return Err(malformed("unknown wire type")),
        }
    }
    Ok(status)
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn get_varint(data: &mut Bytes) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        if !data.has_remaining() {
            return None;
        }
        let byte = data.get_u8();
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_names_its_service_in_field_one() {
        assert_eq!(encode_request(""), Vec::<u8>::new());
        assert_eq!(encode_request("db"), vec![0x0a, 2, b'd', b'b']);
        assert_eq!(&frame(&[1, 2])[..], &[0, 0, 0, 0, 2, 1, 2]);
    }

    #[test]
    fn a_response_decodes_to_its_status_and_skips_unknown_fields() {
        let answer = frame(&[0x10, 0x05, 0x08, 0x02]);
        assert!(matches!(decode_response(answer), Ok(2)));
        assert!(matches!(decode_response(frame(&[])), Ok(0)));
        assert!(decode_response(Bytes::from_static(&[0, 0, 0, 0, 9, 1])).is_err());
    }

    #[test]
    fn grpc_messages_are_percent_decoded() {
        assert_eq!(percent_decode("no%20such%2Fservice"), "no such/service");
        assert_eq!(percent_decode("100%"), "100%");
    }
}
