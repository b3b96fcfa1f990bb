//! The request handler: each question answered from the current snapshot, or relayed to the node's resolvers.

use std::sync::Arc;

use hickory_server::net::runtime::Time;
use hickory_server::proto::op::{Edns, Header, HeaderCounts, MessageType, Metadata, OpCode, ResponseCode};
use hickory_server::proto::rr::Record;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;

use crate::forward::Forwarder;
use crate::index::ClusterIndex;
use crate::lookup::{Outcome, lookup};

/// Answers the zone from the index and forwards the rest.
pub(crate) struct ClusterHandler {
    pub(crate) index: Arc<ClusterIndex>,
    pub(crate) forwarder: Forwarder,
}

/// The EDNS section of an answer: present when the question had one (RFC 6891), advertising what the client
/// accepts, which is also the size UDP answers are truncated to.
fn response_edns(request: &Request) -> Option<Edns> {
    let asked = request.edns.as_ref()?;
    let mut edns = Edns::new();
    edns.set_max_payload(asked.max_payload().max(512));
    edns.set_dnssec_ok(false);
    Some(edns)
}

fn failed(request: &Request, code: ResponseCode) -> ResponseInfo {
    let mut metadata = Metadata::response_from_request(&request.metadata);
    metadata.response_code = code;
    ResponseInfo::from(Header { metadata, counts: HeaderCounts::default() })
}

impl ClusterHandler {
    async fn send<R: ResponseHandler>(
        request: &Request,
        mut handle: R,
        metadata: Metadata,
        sections: [&[Record]; 3],
    ) -> ResponseInfo {
        let edns = response_edns(request);
        let [answers, authorities, additionals] = sections;
        let mut builder = MessageResponseBuilder::from_message_request(request);
        if let Some(edns) = edns.as_ref() {
            builder.edns(edns);
        }
        let code = metadata.response_code;
        let response = builder.build(metadata, answers.iter(), authorities.iter(), [].iter(), additionals.iter());
        match handle.send_response(response).await {
            Ok(info) => info,
            Err(err) => {
                tracing::debug!(error = %err, src = %request.src(), "sending a DNS answer");
                failed(request, code)
            }
        }
    }

    async fn refuse<R: ResponseHandler>(request: &Request, handle: R, code: ResponseCode) -> ResponseInfo {
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.response_code = code;
        metadata.recursion_available = true;
        Self::send(request, handle, metadata, [&[], &[], &[]]).await
    }

    async fn forward<R: ResponseHandler>(&self, request: &Request, handle: R) -> ResponseInfo {
        match self.forwarder.forward(request.as_slice(), request.metadata.id).await {
            Ok(upstream) => {
                let mut metadata = upstream.metadata;
                metadata.message_type = MessageType::Response;
                let sections = [&upstream.answers[..], &upstream.authorities[..], &upstream.additionals[..]];
                Self::send(request, handle, metadata, sections).await
            }
            Err(err) => {
                tracing::debug!(error = %err, "no upstream answered");
                Self::refuse(request, handle, ResponseCode::ServFail).await
            }
        }
    }
}

#[async_trait::async_trait]
impl RequestHandler for ClusterHandler {
    async fn handle_request<R: ResponseHandler, T: Time>(&self, request: &Request, handle: R) -> ResponseInfo {
        if request.metadata.message_type != MessageType::Query {
            return failed(request, ResponseCode::FormErr);
        }
        if request.metadata.op_code != OpCode::Query {
            return Self::refuse(request, handle, ResponseCode::NotImp).await;
        }
        let Ok(info) = request.request_info() else {
            return Self::refuse(request, handle, ResponseCode::FormErr).await;
        };
        let snapshot = self.index.snapshot();
        let outcome = lookup(&snapshot, info.query.original().name(), info.query.name(), info.query.query_type());
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.recursion_available = true;
        match outcome {
            Outcome::Forward => self.forward(request, handle).await,
            Outcome::NotReady => Self::refuse(request, handle, ResponseCode::ServFail).await,
            Outcome::Answer { answers, additionals } => {
                metadata.authoritative = true;
                Self::send(request, handle, metadata, [&answers[..], &[], &additionals[..]]).await
            }
            Outcome::NoData | Outcome::NxDomain => {
                metadata.authoritative = true;
                if outcome == Outcome::NxDomain {
                    metadata.response_code = ResponseCode::NXDomain;
                }
                Self::send(request, handle, metadata, [&[], std::slice::from_ref(snapshot.soa()), &[]]).await
            }
        }
    }
}
