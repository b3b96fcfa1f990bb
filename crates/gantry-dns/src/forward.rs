//! Relaying questions outside the cluster to the node's resolvers, as CoreDNS's `forward` plugin does: the
//! client's message goes out as it came (same ID, flags and EDNS), over UDP first and again over TCP when the
//! answer came back truncated; the resolvers are tried in order until one answers.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_server::proto::op::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// Why no resolver answered.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// There is no resolver to ask.
    #[error("no upstream resolvers")]
    NoUpstreams,
    /// A resolver could not be reached or answered nonsense.
    #[error("upstream {upstream} over {protocol}: {source}")]
    Io {
        /// The resolver.
        upstream: SocketAddr,
        /// `UDP` or `TCP`.
        protocol: &'static str,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// A resolver did not answer in time.
    #[error("upstream {upstream} over {protocol}: no answer within {timeout:?}")]
    Timeout {
        /// The resolver.
        upstream: SocketAddr,
        /// `UDP` or `TCP`.
        protocol: &'static str,
        /// How long we waited.
        timeout: Duration,
    },
    /// A resolver's answer could not be decoded.
    #[error("upstream {upstream}: undecodable answer: {source}")]
    Decode {
        /// The resolver.
        upstream: SocketAddr,
        /// What the decoder said.
        #[source]
        source: hickory_server::proto::serialize::binary::DecodeError,
    },
}

/// The node's resolvers.
#[derive(Clone, Debug)]
pub struct Forwarder {
    upstreams: Vec<SocketAddr>,
    timeout: Duration,
}

/// The largest UDP answer we accept from a resolver.
const MAX_UDP: usize = 65535;

impl Forwarder {
    /// Asks `upstreams` in order, waiting `timeout` for each exchange.
    pub fn new(upstreams: Vec<SocketAddr>, timeout: Duration) -> Forwarder {
        Forwarder { upstreams, timeout }
    }

    /// The resolvers.
    pub fn upstreams(&self) -> &[SocketAddr] {
        &self.upstreams
    }

    /// Sends `query` (a whole DNS message) to the first resolver that answers; over TCP when its UDP answer is
    /// truncated. A truncated answer is returned only when TCP fails too, so that the client retries.
    pub async fn forward(&self, query: &[u8], id: u16) -> Result<Message, ForwardError> {
        let mut last = ForwardError::NoUpstreams;
        for upstream in &self.upstreams {
            let udp = match self.exchange_udp(*upstream, query, id).await {
                Ok(message) => message,
                Err(err) => {
                    tracing::debug!(error = %err, "forwarding");
                    last = err;
                    continue;
                }
            };
            if !udp.metadata.truncation {
                return Ok(udp);
            }
            match self.exchange_tcp(*upstream, query, id).await {
                Ok(message) => return Ok(message),
                Err(err) => {
                    tracing::debug!(error = %err, "forwarding a truncated answer again over TCP");
                    return Ok(udp);
                }
            }
        }
        Err(last)
    }

    async fn exchange_udp(&self, upstream: SocketAddr, query: &[u8], id: u16) -> Result<Message, ForwardError> {
        let io = |source| ForwardError::Io { upstream, protocol: "UDP", source };
        let local: SocketAddr = match upstream.ip() {
            IpAddr::V4(_) => (std::net::Ipv4Addr::UNSPECIFIED, 0).into(),
            IpAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        // A socket per question: a fresh random source port, and only the resolver's replies reach it.
        let socket = UdpSocket::bind(local).await.map_err(io)?;
        socket.connect(upstream).await.map_err(io)?;
        socket.send(query).await.map_err(io)?;
        let mut buffer = vec![0u8; MAX_UDP];
        let receive = async {
            loop {
                let n = socket.recv(&mut buffer).await.map_err(io)?;
                match Message::from_vec(&buffer[..n]) {
                    // Stray datagrams (an answer to an earlier question) are skipped.
                    Ok(message) if message.metadata.id == id => return Ok(message),
                    Ok(_) => continue,
                    Err(source) => return Err(ForwardError::Decode { upstream, source }),
                }
            }
        };
        tokio::time::timeout(self.timeout, receive).await.map_err(|_| ForwardError::Timeout {
            upstream,
            protocol: "UDP",
            timeout: self.timeout,
        })?
    }

    async fn exchange_tcp(&self, upstream: SocketAddr, query: &[u8], id: u16) -> Result<Message, ForwardError> {
        let io = |source| ForwardError::Io { upstream, protocol: "TCP", source };
        let exchange = async {
            let mut stream = TcpStream::connect(upstream).await.map_err(io)?;
            let length = u16::try_from(query.len()).map_err(|_| io(std::io::ErrorKind::InvalidInput.into()))?;
            let mut framed = Vec::with_capacity(query.len() + 2);
            framed.extend_from_slice(&length.to_be_bytes());
            framed.extend_from_slice(query);
            stream.write_all(&framed).await.map_err(io)?;
            loop {
                let mut length = [0u8; 2];
                stream.read_exact(&mut length).await.map_err(io)?;
                let mut buffer = vec![0u8; usize::from(u16::from_be_bytes(length))];
                stream.read_exact(&mut buffer).await.map_err(io)?;
                match Message::from_vec(&buffer) {
                    Ok(message) if message.metadata.id == id => return Ok(message),
                    Ok(_) => continue,
                    Err(source) => return Err(ForwardError::Decode { upstream, source }),
                }
            }
        };
        tokio::time::timeout(self.timeout, exchange).await.map_err(|_| ForwardError::Timeout {
            upstream,
            protocol: "TCP",
            timeout: self.timeout,
        })?
    }
}

/// The resolvers a resolv.conf names (port 53), without `exclude`d addresses: the cluster DNS address and the
/// server's own, which would make every forwarded question come back to this server.
pub fn upstreams_from_resolv_conf(text: &str, exclude: &[IpAddr]) -> Vec<SocketAddr> {
    let mut upstreams = Vec::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        if words.next() != Some("nameserver") {
            continue;
        }
        // A zone index (`fe80::1%eth0`) is not part of the address.
        let Some(Ok(ip)) = words.next().map(|w| w.split('%').next().unwrap_or(w).parse::<IpAddr>()) else {
            continue;
        };
        if exclude.contains(&ip) || ip.is_unspecified() {
            tracing::warn!(%ip, "resolv.conf names the cluster DNS itself: not forwarding there, to avoid a loop");
            continue;
        }
        let upstream = SocketAddr::new(ip, 53);
        if !upstreams.contains(&upstream) {
            upstreams.push(upstream);
        }
    }
    upstreams
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_servers_become_upstreams_without_the_cluster_dns() {
        let text = "# comment\nsearch example.com\nnameserver 10.43.0.10\nnameserver 127.0.0.53\n\
                    nameserver 1.1.1.1\nnameserver 1.1.1.1\nnameserver fe80::1%eth0\nnameserver bogus\noptions edns0\n";
        let upstreams = upstreams_from_resolv_conf(text, &["10.43.0.10".parse().unwrap()]);
        let expected: Vec<SocketAddr> =
            vec!["127.0.0.53:53".parse().unwrap(), "1.1.1.1:53".parse().unwrap(), "[fe80::1]:53".parse().unwrap()];
        assert_eq!(upstreams, expected);
    }

    #[tokio::test]
    async fn with_no_upstreams_forwarding_fails_at_once() {
        let forwarder = Forwarder::new(Vec::new(), Duration::from_secs(1));
        assert!(matches!(forwarder.forward(&[0; 12], 0).await, Err(ForwardError::NoUpstreams)));
    }
}
