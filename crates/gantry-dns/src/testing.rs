//! A minimal DNS client over plain UDP and TCP messages, for tests and the benchmark: one question, one answer.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_server::proto::op::{Edns, Message, Query};
use hickory_server::proto::rr::{Name, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// How a question travels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// One datagram each way.
    Udp,
    /// A connection, each message behind its two-byte length.
    Tcp,
}

/// Why a question got no answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The name is not a DNS name.
    #[error("{name:?} is not a DNS name: {source}")]
    Name {
        /// The name.
        name: String,
        /// What the parser said.
        #[source]
        source: hickory_server::proto::ProtoError,
    },
    /// The question could not be encoded.
    #[error("encoding a question: {0}")]
    Encode(#[source] hickory_server::proto::ProtoError),
    /// The server could not be reached.
    #[error("{server}: {source}")]
    Io {
        /// The server.
        server: SocketAddr,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// The server did not answer in time.
    #[error("{server}: no answer within {timeout:?}")]
    Timeout {
        /// The server.
        server: SocketAddr,
        /// How long we waited.
        timeout: Duration,
    },
    /// The answer could not be decoded.
    #[error("{server}: undecodable answer: {source}")]
    Decode {
        /// The server.
        server: SocketAddr,
        /// What the decoder said.
        #[source]
        source: hickory_server::proto::serialize::binary::DecodeError,
    },
}

/// A question for `name` and `rtype`, with recursion desired and, when `edns` is set, an EDNS section offering
/// 1232-byte UDP answers.
pub fn question(id: u16, name: &str, rtype: RecordType, edns: bool) -> Result<Vec<u8>, ClientError> {
    let parsed = Name::from_ascii(name).map_err(|source| ClientError::Name { name: name.to_string(), source })?;
    let mut message = Message::query();
    message.metadata.id = id;
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(parsed, rtype));
    if edns {
        let mut section = Edns::new();
        section.set_max_payload(1232);
        message.set_edns(section);
    }
    message.to_vec().map_err(ClientError::Encode)
}

/// Asks `server` about `name` over `transport` (without EDNS) and returns its answer.
pub async fn ask(
    server: SocketAddr,
    transport: Transport,
    name: &str,
    rtype: RecordType,
) -> Result<Message, ClientError> {
    let id = u16::try_from(std::process::id() % 65536).unwrap_or(1) ^ 0x5a5a;
    let query = question(id, name, rtype, false)?;
    let timeout = Duration::from_secs(5);
    let io = |source| ClientError::Io { server, source };
    let exchange = async {
        let bytes = match transport {
            Transport::Udp => {
                let local: SocketAddr = if server.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { ([0u16; 8], 0).into() };
                let socket = UdpSocket::bind(local).await.map_err(io)?;
                socket.connect(server).await.map_err(io)?;
                socket.send(&query).await.map_err(io)?;
                let mut buffer = vec![0u8; 65535];
                let n = socket.recv(&mut buffer).await.map_err(io)?;
                buffer.truncate(n);
                buffer
            }
            Transport::Tcp => {
                let mut stream = TcpStream::connect(server).await.map_err(io)?;
                let length = u16::try_from(query.len()).unwrap_or(u16::MAX);
                stream.write_all(&length.to_be_bytes()).await.map_err(io)?;
                stream.write_all(&query).await.map_err(io)?;
                let mut length = [0u8; 2];
                stream.read_exact(&mut length).await.map_err(io)?;
                let mut buffer = vec![0u8; usize::from(u16::from_be_bytes(length))];
                stream.read_exact(&mut buffer).await.map_err(io)?;
                buffer
            }
        };
        Message::from_vec(&bytes).map_err(|source| ClientError::Decode { server, source })
    };
    tokio::time::timeout(timeout, exchange).await.map_err(|_| ClientError::Timeout { server, timeout })?
}
