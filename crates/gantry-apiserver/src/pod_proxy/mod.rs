//! `pods/log`, `pods/exec`, `pods/attach` and `pods/portforward`: the API server relays them to the node agent on
//! the pod's node, as kube-apiserver relays them to the kubelet.
//!
//! The node is reached at its first `InternalIP`, else `ExternalIP`, else `Hostname` address, on the port in
//! `status.daemonEndpoints.kubeletEndpoint.Port` (10250 when unset), over HTTPS with the API server's client
//! certificate ([`NodeClient`]). The node agent serves the kubelet's paths: `/containerLogs/{ns}/{pod}/{container}`,
//! `/exec/{ns}/{pod}/{container}`, `/attach/{ns}/{pod}/{container}` and `/portForward/{ns}/{pod}`.
//!
//! Logs are streamed back as they arrive; a client that goes away closes the node connection. Exec, attach and
//! port-forward are connection upgrades (WebSocket or SPDY): the upgrade request goes to the node, and once the
//! node answers 101 the API server answers 101 and copies bytes both ways without looking at them. A node that
//! refuses the upgrade has its answer passed through, so kubectl can fall back from WebSocket to SPDY.

mod node;
mod options;

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use gantry_api::registry::ResourceType;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Empty, Full, Limited};
use hyper::body::{Frame, Incoming};
use serde_json::Value;

pub use node::{NodeClient, NodeClientError};

use crate::api::Api;
use crate::objects::from_stored;
use crate::server::Body;
use crate::status::{ApiError, ApiResult};
use node::{ConnectionGuard, DEFAULT_NODE_PORT, DialError, NodeEndpoint};
use options::{LogOptions, Params, PortForwardOptions, StreamOptions};

/// How much of a node's error answer is kept.
const MAX_ERROR_BODY: usize = 1 << 20;

/// Request headers an upgrade carries to the node (Connection is set anew).
const UPGRADE_REQUEST_HEADERS: &[&str] = &[
    "upgrade",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-protocol",
    "sec-websocket-extensions",
    "x-stream-protocol-version",
];

/// Response headers of the node's 101 the client gets.
const UPGRADE_RESPONSE_HEADERS: &[&str] = &[
    "connection",
    "upgrade",
    "sec-websocket-accept",
    "sec-websocket-protocol",
    "sec-websocket-extensions",
    "x-stream-protocol-version",
];

/// What a proxied request asks the node for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// `pods/log`.
    Log,
    /// `pods/exec`.
    Exec,
    /// `pods/attach`.
    Attach,
    /// `pods/portforward`.
    PortForward,
}

/// A subresource of pods served by relaying to the node, as discovery lists it.
#[derive(Debug)]
pub struct ProxySubresource {
    /// The path segment, e.g. `exec`.
    pub name: &'static str,
    /// The kind discovery names for it (in core `v1`).
    pub kind: &'static str,
    /// The verbs kube-apiserver lists for it.
    pub verbs: &'static [&'static str],
}

/// The relayed subresources of `pods`, in name order.
pub const POD_SUBRESOURCES: &[ProxySubresource] = &[
    ProxySubresource { name: "attach", kind: "PodAttachOptions", verbs: &["create", "get"] },
    ProxySubresource { name: "exec", kind: "PodExecOptions", verbs: &["create", "get"] },
    ProxySubresource { name: "log", kind: "Pod", verbs: &["get"] },
    ProxySubresource { name: "portforward", kind: "PodPortForwardOptions", verbs: &["create", "get"] },
];

/// The relayed subresources of a resource type (only core `v1` pods have any).
pub fn subresources_of(resource: &ResourceType) -> &'static [ProxySubresource] {
    if resource.group.is_empty() && resource.version == "v1" && resource.plural == "pods" {
        POD_SUBRESOURCES
    } else {
        &[]
    }
}

/// A request path that names a relayed pod subresource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxyTarget {
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name.
    pub pod: String,
    /// What is asked of the node.
    pub action: Action,
}

impl ProxyTarget {
    /// Recognises `/api/v1/namespaces/{ns}/pods/{name}/{log|exec|attach|portforward}`.
    pub fn parse(path: &str) -> Option<ProxyTarget> {
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        let ["api", "v1", "namespaces", namespace, "pods", pod, sub] = parts.as_slice() else { return None };
        let action = match *sub {
            "log" => Action::Log,
            "exec" => Action::Exec,
            "attach" => Action::Attach,
            "portforward" => Action::PortForward,
            _ => return None,
        };
        if namespace.is_empty() || pod.is_empty() {
            return None;
        }
        Some(ProxyTarget { namespace: (*namespace).to_string(), pod: (*pod).to_string(), action })
    }

    fn describe(&self) -> String {
        let sub = match self.action {
            Action::Log => "log",
            Action::Exec => "exec",
            Action::Attach => "attach",
            Action::PortForward => "portforward",
        };
        format!("pods/{sub} {}/{}", self.namespace, self.pod)
    }
}

/// Serves one authenticated request for a relayed subresource.
pub(crate) async fn serve(
    api: &Api,
    nodes: &NodeClient,
    target: ProxyTarget,
    req: Request<Incoming>,
) -> Response<Body> {
    let result = match target.action {
        Action::Log => logs(api, nodes, &target, &req).await,
        _ => upgrade(api, nodes, &target, req).await,
    };
    result.unwrap_or_else(|err| crate::server::error_response(&err))
}

async fn logs(
    api: &Api,
    nodes: &NodeClient,
    target: &ProxyTarget,
    req: &Request<Incoming>,
) -> ApiResult<Response<Body>> {
    if req.method() != Method::GET {
        return Err(not_allowed(req));
    }
    let options = LogOptions::parse(&Params::parse(req.uri().query()))?;
    options.validate(&target.pod)?;
    let pod = get_object(api, "pods", Some(&target.namespace), &target.pod).await?;
    let container = choose_container(&pod, &target.pod, options.container.as_deref())?;
    let Some(node_name) = node_name(&pod) else {
        // kube-apiserver answers an empty log for a pod that is not scheduled yet.
        return Ok(text_response(StatusCode::OK, Bytes::new()));
    };
    let endpoint = node_endpoint(api, node_name).await?;
    let path = with_query(
        format!("/containerLogs/{}/{}/{container}", target.namespace, target.pod),
        &options.upstream_query(),
    );
    let request = upstream_request(Method::GET, &path, &endpoint)
        .body(Empty::new())
        .map_err(|e| ApiError::internal(format!("building the node request: {e}")))?;
    let (response, guard) = nodes.send(&endpoint, request).await.map_err(dial_error)?;
    if !response.status().is_success() {
        return Ok(upstream_failure(response).await);
    }
    tracing::debug!(stream = %target.describe(), node = %endpoint.authority(), "streaming logs");
    let body = Relay { body: response.into_body(), _connection: guard };
    let mut reply = Response::new(BodyExt::boxed_unsync(body));
    reply.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    Ok(reply)
}

async fn upgrade(
    api: &Api,
    nodes: &NodeClient,
    target: &ProxyTarget,
    mut req: Request<Incoming>,
) -> ApiResult<Response<Body>> {
    if req.method() != Method::GET && req.method() != Method::POST {
        return Err(not_allowed(&req));
    }
    let params = Params::parse(req.uri().query());
    let (ns, name) = (&target.namespace, &target.pod);
    let path = match target.action {
        Action::Exec | Action::Attach => {
            let exec = target.action == Action::Exec;
            let options = StreamOptions::parse(&params, exec);
            let pod = get_object(api, "pods", Some(ns), name).await?;
            let container = choose_container(&pod, name, options.container.as_deref())?;
            let node = required_node(&pod, name)?;
            let verb = if exec { "exec" } else { "attach" };
            (node, with_query(format!("/{verb}/{ns}/{name}/{container}"), &options.upstream_query()))
        }
        Action::PortForward | Action::Log => {
            let options = PortForwardOptions::parse(&params)?;
            let pod = get_object(api, "pods", Some(ns), name).await?;
            let node = required_node(&pod, name)?;
            (node, with_query(format!("/portForward/{ns}/{name}"), &options.upstream_query()))
        }
    };
    let (node_name, path) = path;
    if !is_upgrade_request(req.headers()) {
        return Err(ApiError::bad_request("Upgrade request required"));
    }
    let endpoint = node_endpoint(api, &node_name).await?;
    let mut request = upstream_request(req.method().clone(), &path, &endpoint).header(header::CONNECTION, "Upgrade");
    for name in UPGRADE_REQUEST_HEADERS {
        for value in req.headers().get_all(*name) {
            request = request.header(*name, value);
        }
    }
    let request =
        request.body(Empty::new()).map_err(|e| ApiError::internal(format!("building the node request: {e}")))?;
    let client_upgrade = hyper::upgrade::on(&mut req);
    let (mut response, guard) = nodes.send(&endpoint, request).await.map_err(dial_error)?;
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        let status = response.status().as_u16();
        tracing::debug!(stream = %target.describe(), status, "the node refused the upgrade");
        return Ok(passthrough(response).await);
    }
    let mut reply = Response::new(BodyExt::boxed_unsync(Empty::<Bytes>::new()));
    *reply.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    for name in UPGRADE_RESPONSE_HEADERS {
        for value in response.headers().get_all(*name) {
            reply.headers_mut().append(*name, value.clone());
        }
    }
    if !reply.headers().contains_key(header::CONNECTION) {
        reply.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    }
    let node_upgrade = hyper::upgrade::on(&mut response);
    nodes.relay(client_upgrade, node_upgrade, guard, target.describe());
    Ok(reply)
}

fn not_allowed<B>(req: &Request<B>) -> ApiError {
    ApiError::method_not_allowed(format!(
        "the server does not allow this method on the requested resource ({} {})",
        req.method(),
        req.uri().path()
    ))
}

/// Whether the request asks for a connection upgrade, read as kube's `httpstream.IsUpgradeRequest` reads it.
fn is_upgrade_request(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.to_ascii_lowercase().contains("upgrade"))
}

fn with_query(path: String, query: &str) -> String {
    if query.is_empty() { path } else { format!("{path}?{query}") }
}

fn upstream_request(method: Method, path: &str, endpoint: &NodeEndpoint) -> http::request::Builder {
    Request::builder().method(method).uri(path).header(header::HOST, endpoint.authority())
}

fn dial_error(err: DialError) -> ApiError {
    tracing::debug!(error = %err, "reaching the node failed");
    ApiError::unknown(500, format!("error dialing backend: {err}"))
}

async fn get_object(api: &Api, plural: &str, namespace: Option<&str>, name: &str) -> ApiResult<Value> {
    let resource = api.registry.by_plural("", "v1", plural).ok_or_else(ApiError::no_route)?;
    let key = resource.key(namespace, name);
    let kv = api.store.get(key.as_bytes()).await.map_err(|e| ApiError::from_store(e, resource, name))?;
    from_stored(&kv)
}

fn node_name(pod: &Value) -> Option<&str> {
    pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty())
}

fn required_node(pod: &Value, name: &str) -> ApiResult<String> {
    node_name(pod)
        .map(str::to_string)
        .ok_or_else(|| ApiError::bad_request(format!("pod {name} does not have a host assigned")))
}

/// The container a request is about, chosen as kube-apiserver chooses: the one named (init and ephemeral
/// containers count), or the only regular container.
fn choose_container(pod: &Value, name: &str, wanted: Option<&str>) -> ApiResult<String> {
    let names = |field: &str| -> Vec<String> {
        pod["spec"][field]
            .as_array()
            .map(|list| list.iter().filter_map(|c| c["name"].as_str().map(str::to_string)).collect())
            .unwrap_or_default()
    };
    let regular = names("containers");
    let all: Vec<String> = names("initContainers")
        .into_iter()
        .chain(regular.iter().cloned())
        .chain(names("ephemeralContainers"))
        .collect();
    match wanted {
        Some(container) if all.iter().any(|c| c == container) => Ok(container.to_string()),
        Some(container) => Err(ApiError::bad_request(format!("container {container} is not valid for pod {name}"))),
        None => match regular.as_slice() {
            [only] => Ok(only.clone()),
            [] => Err(ApiError::bad_request(format!("a container name must be specified for pod {name}"))),
            _ => Err(ApiError::bad_request(format!(
                "a container name must be specified for pod {name}, choose one of: [{}]",
                all.join(" ")
            ))),
        },
    }
}

/// Where the node agent of `node_name` listens.
async fn node_endpoint(api: &Api, node_name: &str) -> ApiResult<NodeEndpoint> {
    let node = get_object(api, "nodes", None, node_name).await?;
    endpoint_of(&node)
}

fn endpoint_of(node: &Value) -> ApiResult<NodeEndpoint> {
    let addresses: Vec<(&str, &str)> = node["status"]["addresses"]
        .as_array()
        .map(|list| {
            list.iter()
                .filter_map(|a| Some((a["type"].as_str()?, a["address"].as_str()?)))
                .filter(|(_, address)| !address.is_empty())
                .collect()
        })
        .unwrap_or_default();
    let host = ["InternalIP", "ExternalIP", "Hostname"]
        .iter()
        .find_map(|wanted| addresses.iter().find(|(kind, _)| kind == wanted).map(|(_, address)| *address))
        .ok_or_else(|| {
            let known: Vec<String> = addresses.iter().map(|(kind, address)| format!("{{{kind} {address}}}")).collect();
            ApiError::unknown(500, format!("no preferred addresses found; known addresses: [{}]", known.join(" ")))
        })?;
    let port = node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
        .as_u64()
        .and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p > 0)
        .unwrap_or(DEFAULT_NODE_PORT);
    Ok(NodeEndpoint { host: host.to_string(), port })
}

fn text_response(status: StatusCode, body: Bytes) -> Response<Body> {
    let mut response = Response::new(BodyExt::boxed_unsync(Full::new(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    response
}

async fn read_error_body(response: Response<Incoming>) -> (StatusCode, Option<HeaderValue>, Bytes) {
    let status = response.status();
    let content_type = response.headers().get(header::CONTENT_TYPE).cloned();
    let body = match Limited::new(response.into_body(), MAX_ERROR_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(err) => {
            tracing::debug!(error = %err, "reading the node's answer failed");
            Bytes::new()
        }
    };
    (status, content_type, body)
}

/// A node's refusal of an upgrade, as it gave it.
async fn passthrough(response: Response<Incoming>) -> Response<Body> {
    let (status, content_type, body) = read_error_body(response).await;
    let mut reply = Response::new(BodyExt::boxed_unsync(Full::new(body)));
    *reply.status_mut() = status;
    if let Some(content_type) = content_type {
        reply.headers_mut().insert(header::CONTENT_TYPE, content_type);
    }
    reply
}

/// A node's failure to serve logs: its `Status` as it is, or its text as kube-apiserver words it.
async fn upstream_failure(response: Response<Incoming>) -> Response<Body> {
    let (status, _, body) = read_error_body(response).await;
    let is_status = serde_json::from_slice::<Value>(&body).is_ok_and(|v| v["kind"] == "Status");
    if is_status {
        let mut reply = Response::new(BodyExt::boxed_unsync(Full::new(body)));
        *reply.status_mut() = status;
        reply.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        return reply;
    }
    let text = String::from_utf8_lossy(&body).trim_end().to_string();
    let err = match status.as_u16() {
        400 => ApiError::bad_request(text),
        500 => ApiError::internal(text),
        code => {
            let mut err = ApiError::unknown(code, text);
            err.reason = match code {
                401 => "Unauthorized",
                403 => "Forbidden",
                404 => "NotFound",
                409 => "Conflict",
                429 => "TooManyRequests",
                503 => "ServiceUnavailable",
                504 => "Timeout",
                _ => "",
            };
            err
        }
    };
    crate::server::error_response(&err)
}

/// The node's log stream as the client's body: frames pass as they come; a broken node connection ends the
/// body; dropping it (the client went away) closes the node connection.
struct Relay {
    body: Incoming,
    _connection: ConnectionGuard,
}

impl hyper::body::Body for Relay {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match Pin::new(&mut self.get_mut().body).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => Poll::Ready(Some(Ok(frame))),
            Poll::Ready(Some(Err(err))) => {
                tracing::debug!(error = %err, "the node's log stream broke off");
                Poll::Ready(None)
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_the_relayed_pod_subresources_are_recognised() {
        let target = ProxyTarget::parse("/api/v1/namespaces/default/pods/web/exec").unwrap();
        assert_eq!((target.namespace.as_str(), target.pod.as_str(), target.action), ("default", "web", Action::Exec));
        assert_eq!(ProxyTarget::parse("/api/v1/namespaces/ns/pods/p/portforward").unwrap().action, Action::PortForward);
        assert!(ProxyTarget::parse("/api/v1/namespaces/default/pods/web/status").is_none());
        assert!(ProxyTarget::parse("/api/v1/namespaces/default/pods/web").is_none());
        assert!(ProxyTarget::parse("/apis/apps/v1/namespaces/default/deployments/web/log").is_none());
        assert!(ProxyTarget::parse("/api/v1/namespaces/default/services/web/log").is_none());
    }

    fn pod(init: &[&str], regular: &[&str], ephemeral: &[&str]) -> Value {
        let list = |names: &[&str]| names.iter().map(|n| json!({"name": n})).collect::<Vec<_>>();
        let (init, regular, ephemeral) = (list(init), list(regular), list(ephemeral));
        json!({"spec": {"initContainers": init, "containers": regular, "ephemeralContainers": ephemeral}})
    }

    #[test]
    fn the_only_container_is_chosen_when_none_is_named() {
        assert_eq!(choose_container(&pod(&["setup"], &["app"], &[]), "web", None).unwrap(), "app");
    }

    #[test]
    fn several_containers_need_a_name_and_every_kind_is_offered() {
        let err = choose_container(&pod(&["setup"], &["a", "b"], &["debug"]), "web", None).unwrap_err();
        assert_eq!((err.code, err.reason), (400, "BadRequest"));
        assert_eq!(err.message, "a container name must be specified for pod web, choose one of: [setup a b debug]");
    }

    #[test]
    fn init_and_ephemeral_containers_may_be_named() {
        let p = pod(&["setup"], &["a", "b"], &["debug"]);
        assert_eq!(choose_container(&p, "web", Some("setup")).unwrap(), "setup");
        assert_eq!(choose_container(&p, "web", Some("debug")).unwrap(), "debug");
        let err = choose_container(&p, "web", Some("nope")).unwrap_err();
        assert_eq!(err.message, "container nope is not valid for pod web");
    }

    #[test]
    fn the_node_is_reached_at_its_internal_ip_before_other_addresses() {
        let node = json!({"status": {
            "addresses": [{"type": "Hostname", "address": "n1"}, {"type": "ExternalIP", "address": "1.2.3.4"},
                          {"type": "InternalIP", "address": "10.0.0.1"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 11250}}}});
        assert_eq!(endpoint_of(&node).unwrap(), NodeEndpoint { host: "10.0.0.1".into(), port: 11250 });
        let external = json!({"status": {"addresses": [{"type": "Hostname", "address": "n1"},
                                                       {"type": "ExternalIP", "address": "1.2.3.4"}]}});
        assert_eq!(endpoint_of(&external).unwrap(), NodeEndpoint { host: "1.2.3.4".into(), port: 10250 });
        let named = json!({"status": {"addresses": [{"type": "Hostname", "address": "n1"}]}});
        assert_eq!(endpoint_of(&named).unwrap().host, "n1");
    }

    #[test]
    fn a_node_without_a_usable_address_is_an_error_without_a_reason() {
        let node = json!({"status": {"addresses": [{"type": "InternalDNS", "address": "n1.local"}]}});
        let err = endpoint_of(&node).unwrap_err();
        assert_eq!((err.code, err.reason), (500, ""));
        assert!(err.message.contains("InternalDNS n1.local"), "{}", err.message);
    }

    #[test]
    fn an_upgrade_is_recognised_in_any_case_and_among_other_tokens() {
        let mut headers = HeaderMap::new();
        assert!(!is_upgrade_request(&headers));
        headers.insert(header::CONNECTION, HeaderValue::from_static("keep-alive, UPGRADE"));
        assert!(is_upgrade_request(&headers));
    }
}
