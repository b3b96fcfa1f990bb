//! The pure model: a Service, its EndpointSlices and this node's facts become, per service port, the endpoints
//! that each kind of traffic may use. No IO; the renderer turns a [`ServicePlan`] into nftables text.

use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// The label that ties an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// The default timeout of ClientIP session affinity (3 hours), as the API server defaults it.
pub const DEFAULT_AFFINITY_TIMEOUT_SECONDS: u32 = 10_800;

/// An IPv4 prefix (`10.42.0.0/24`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cidr {
    /// The network address (host bits cleared).
    pub addr: Ipv4Addr,
    /// The prefix length, 0 to 32.
    pub prefix: u8,
}

/// Why a text is not an IPv4 prefix.
#[derive(Debug, thiserror::Error)]
#[error("{text:?} is not an IPv4 CIDR (a.b.c.d/n)")]
pub struct CidrError {
    /// The text.
    pub text: String,
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(text: &str) -> Result<Cidr, CidrError> {
        let err = || CidrError { text: text.to_string() };
        let (addr, prefix) = text.split_once('/').ok_or_else(err)?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| err())?;
        let prefix: u8 = prefix.parse().map_err(|_| err())?;
        if prefix > 32 {
            return Err(err());
        }
        let mask = if prefix == 0 { 0 } else { u32::MAX << (32 - prefix) };
        Ok(Cidr { addr: Ipv4Addr::from(u32::from(addr) & mask), prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// What the proxy knows of the node it programs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeInfo {
    /// The Node's name: endpoints whose `nodeName` is this are local.
    pub name: String,
    /// The addresses NodePorts answer on (the `nodeport-ips` set).
    pub node_ips: Vec<Ipv4Addr>,
    /// The pods' range on this node: ClusterIP traffic from outside it is masqueraded. `None`: nothing is
    /// masqueraded for that reason.
    pub pod_cidr: Option<Cidr>,
    /// The service ranges: traffic to an address in them that no Service holds is dropped.
    pub service_cidrs: Vec<Cidr>,
}

/// A Service's identity.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceKey {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
}

impl fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

impl ServiceKey {
    /// The key of a Service object (namespace `default` when unset).
    pub fn of_service(service: &Service) -> ServiceKey {
        ServiceKey {
            namespace: service.metadata.namespace.clone().unwrap_or_else(|| "default".into()),
            name: service.metadata.name.clone().unwrap_or_default(),
        }
    }

    /// The Service an EndpointSlice belongs to, from its `kubernetes.io/service-name` label.
    pub fn of_slice(slice: &EndpointSlice) -> Option<ServiceKey> {
        let name = slice.metadata.labels.as_ref()?.get(SERVICE_NAME_LABEL)?;
        Some(ServiceKey {
            namespace: slice.metadata.namespace.clone().unwrap_or_else(|| "default".into()),
            name: name.clone(),
        })
    }
}

/// A transport protocol of a service port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    /// TCP (the default).
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

impl Protocol {
    /// The API's spelling (`TCP`), `None` meaning TCP; `None` for anything else.
    pub fn parse(text: Option<&str>) -> Option<Protocol> {
        match text.unwrap_or("TCP") {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            "SCTP" => Some(Protocol::Sctp),
            _ => None,
        }
    }

    /// nftables' spelling, also used in chain names.
    pub fn nft(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

/// One backend of a service port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Endpoint {
    /// The backend's address.
    pub ip: Ipv4Addr,
    /// The backend's port.
    pub port: u16,
}

/// One port of a Service, with the endpoints each kind of traffic uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortPlan {
    /// The port's name (may be empty for a single-port Service).
    pub name: String,
    /// Its protocol.
    pub protocol: Protocol,
    /// The ClusterIP's port.
    pub port: u16,
    /// The NodePort, if the Service has one.
    pub node_port: Option<u16>,
    /// The endpoints for cluster-wide traffic: the ready ones, else the serving and terminating ones. Empty when
    /// no traffic uses cluster-wide endpoints (both policies Local).
    pub cluster: Vec<Endpoint>,
    /// This node's endpoints (ready, else serving and terminating); only filled when a policy is Local.
    pub local: Vec<Endpoint>,
    /// Whether any usable endpoint exists anywhere: without one, traffic is rejected rather than dropped.
    pub has_endpoints: bool,
    /// internalTrafficPolicy Local: ClusterIP traffic only goes to [`PortPlan::local`].
    pub internal_local: bool,
    /// externalTrafficPolicy Local: NodePort traffic from outside only goes to [`PortPlan::local`].
    pub external_local: bool,
    /// sessionAffinity ClientIP, with its timeout in seconds.
    pub affinity_timeout: Option<u32>,
}

/// What the proxy does for one Service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServicePlan {
    /// The Service.
    pub key: ServiceKey,
    /// Its ClusterIP.
    pub cluster_ip: Ipv4Addr,
    /// Its ports.
    pub ports: Vec<PortPlan>,
}

/// An endpoint's state in a slice, for [`categorize`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Candidate {
    endpoint: Endpoint,
    local: bool,
    ready: bool,
    serving: bool,
    terminating: bool,
}

/// The plan for a Service and the slices labelled with its name, or `None` when the proxy programs nothing for
/// it: ExternalName and headless Services, Services without an IPv4 ClusterIP.
pub fn plan_service<'a>(
    service: &Service,
    slices: impl IntoIterator<Item = &'a EndpointSlice>,
    node: &NodeInfo,
) -> Option<ServicePlan> {
    let spec = service.spec.as_ref()?;
    if spec.type_.as_deref() == Some("ExternalName") {
        return None;
    }
    let cluster_ip: Ipv4Addr = spec.cluster_ip.as_deref()?.parse().ok()?;
    let slices: Vec<&EndpointSlice> = slices.into_iter().filter(|s| s.address_type == "IPv4").collect();
    let affinity_timeout = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
        spec.session_affinity_config
            .as_ref()
            .and_then(|c| c.client_ip.as_ref())
            .and_then(|c| c.timeout_seconds)
            .and_then(|t| u32::try_from(t).ok())
            .filter(|t| *t > 0)
            .unwrap_or(DEFAULT_AFFINITY_TIMEOUT_SECONDS)
    });
    let external = matches!(spec.type_.as_deref(), Some("NodePort") | Some("LoadBalancer"));
    let internal_local = spec.internal_traffic_policy.as_deref() == Some("Local");
    let external_local = external && spec.external_traffic_policy.as_deref() == Some("Local");
    let mut ports = Vec::new();
    for port in spec.ports.iter().flatten() {
        let Some(protocol) = Protocol::parse(port.protocol.as_deref()) else { continue };
        let Ok(number) = u16::try_from(port.port) else { continue };
        let name = port.name.clone().unwrap_or_default();
        let candidates = candidates(&slices, &name, protocol, node);
        let node_port =
            if external { port.node_port.and_then(|p| u16::try_from(p).ok()).filter(|p| *p > 0) } else { None };
        let (cluster, local, has_endpoints) = categorize(
            &candidates,
            internal_local,
            node_port.is_some() && !external_local,
            internal_local || external_local,
        );
        ports.push(PortPlan {
            name,
            protocol,
            port: number,
            node_port,
            cluster,
            local,
            has_endpoints,
            internal_local,
            external_local: external_local && node_port.is_some(),
            affinity_timeout,
        });
    }
    Some(ServicePlan { key: ServiceKey::of_service(service), cluster_ip, ports })
}

/// The endpoints of the slices for one service port, merged by address and port (the first slice wins).
fn candidates(slices: &[&EndpointSlice], port_name: &str, protocol: Protocol, node: &NodeInfo) -> Vec<Candidate> {
    let mut seen = BTreeMap::new();
    for slice in slices {
        let Some(port) = slice.ports.iter().flatten().find(|p| {
            p.name.as_deref().unwrap_or("") == port_name && Protocol::parse(p.protocol.as_deref()) == Some(protocol)
        }) else {
            continue;
        };
        let Some(number) = port.port.and_then(|p| u16::try_from(p).ok()).filter(|p| *p > 0) else { continue };
        for ep in &slice.endpoints {
            let Some(ip) = ep.addresses.first().and_then(|a| a.parse::<Ipv4Addr>().ok()) else { continue };
            let conditions = ep.conditions.clone().unwrap_or_default();
            let ready = conditions.ready.unwrap_or(true);
            let endpoint = Endpoint { ip, port: number };
            seen.entry(endpoint).or_insert(Candidate {
                endpoint,
                local: ep.node_name.as_deref() == Some(node.name.as_str()),
                ready,
                serving: conditions.serving.unwrap_or(ready),
                terminating: conditions.terminating.unwrap_or(false),
            });
        }
    }
    seen.into_values().collect()
}

/// kube-proxy's CategorizeEndpoints: `(cluster, local, has_endpoints)`. Ready endpoints are used; when none is
/// ready, the serving and terminating ones are, so that a rolling update does not drop connections.
fn categorize(
    candidates: &[Candidate],
    internal_local: bool,
    external_cluster: bool,
    uses_local: bool,
) -> (Vec<Endpoint>, Vec<Endpoint>, bool) {
    let usable = |subset: &dyn Fn(&Candidate) -> bool| -> Vec<Endpoint> {
        let ready: Vec<Endpoint> = candidates.iter().filter(|c| subset(c) && c.ready).map(|c| c.endpoint).collect();
        if !ready.is_empty() {
            return ready;
        }
        candidates.iter().filter(|c| subset(c) && c.serving && c.terminating).map(|c| c.endpoint).collect()
    };
    let uses_cluster = !internal_local || external_cluster;
    let all = usable(&|_| true);
    let has_endpoints = !all.is_empty();
    let cluster = if uses_cluster { all } else { Vec::new() };
    let local = if uses_local { usable(&|c| c.local) } else { Vec::new() };
    (cluster, local, has_endpoints)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ServicePort, ServiceSpec};
    use k8s_openapi::api::discovery::v1::{Endpoint as SliceEndpoint, EndpointConditions, EndpointPort};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn node() -> NodeInfo {
        NodeInfo { name: "n1".into(), ..NodeInfo::default() }
    }

    fn service(type_: &str, spec: impl FnOnce(&mut ServiceSpec)) -> Service {
        let mut s = ServiceSpec {
            type_: Some(type_.into()),
            cluster_ip: Some("10.43.0.20".into()),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: 80,
                node_port: Some(31000),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        };
        spec(&mut s);
        Service {
            metadata: ObjectMeta { namespace: Some("ns".into()), name: Some("web".into()), ..ObjectMeta::default() },
            spec: Some(s),
            status: None,
        }
    }

    /// `(ip, node, ready, serving, terminating)`
    fn slice(endpoints: &[(&str, &str, bool, bool, bool)]) -> EndpointSlice {
        EndpointSlice {
            metadata: ObjectMeta { namespace: Some("ns".into()), name: Some("web-1".into()), ..ObjectMeta::default() },
            address_type: "IPv4".into(),
            endpoints: endpoints
                .iter()
                .map(|(ip, node, ready, serving, terminating)| SliceEndpoint {
                    addresses: vec![ip.to_string()],
                    node_name: Some(node.to_string()),
                    conditions: Some(EndpointConditions {
                        ready: Some(*ready),
                        serving: Some(*serving),
                        terminating: Some(*terminating),
                    }),
                    ..SliceEndpoint::default()
                })
                .collect(),
            ports: Some(vec![EndpointPort { name: Some("http".into()), port: Some(8080), ..EndpointPort::default() }]),
        }
    }

    fn ips(endpoints: &[Endpoint]) -> Vec<String> {
        endpoints.iter().map(|e| format!("{}:{}", e.ip, e.port)).collect()
    }

    #[test]
    fn only_ready_endpoints_are_used_when_any_is_ready() {
        let s = slice(&[("10.42.0.2", "n1", true, true, false), ("10.42.0.3", "n2", false, false, false)]);
        let plan = plan_service(&service("ClusterIP", |_| {}), [&s], &node()).expect("plan");
        assert_eq!(ips(&plan.ports[0].cluster), ["10.42.0.2:8080"]);
        assert!(plan.ports[0].has_endpoints);
        assert_eq!(plan.ports[0].node_port, None, "a ClusterIP Service has no NodePort even if one is written");
    }

    #[test]
    fn serving_terminating_endpoints_are_used_only_when_none_is_ready() {
        let s = slice(&[("10.42.0.2", "n1", false, true, true), ("10.42.0.3", "n2", false, false, true)]);
        let plan = plan_service(&service("ClusterIP", |_| {}), [&s], &node()).expect("plan");
        assert_eq!(ips(&plan.ports[0].cluster), ["10.42.0.2:8080"]);
        let s = slice(&[("10.42.0.2", "n1", false, true, true), ("10.42.0.4", "n2", true, true, false)]);
        let plan = plan_service(&service("ClusterIP", |_| {}), [&s], &node()).expect("plan");
        assert_eq!(ips(&plan.ports[0].cluster), ["10.42.0.4:8080"]);
    }

    #[test]
    fn internal_traffic_policy_local_uses_only_this_nodes_endpoints() {
        let s = slice(&[("10.42.0.2", "n1", true, true, false), ("10.42.1.3", "n2", true, true, false)]);
        let svc = service("ClusterIP", |s| s.internal_traffic_policy = Some("Local".into()));
        let plan = plan_service(&svc, [&s], &node()).expect("plan");
        let port = &plan.ports[0];
        assert!(port.internal_local);
        assert_eq!(ips(&port.local), ["10.42.0.2:8080"]);
        assert!(port.cluster.is_empty(), "nothing uses cluster-wide endpoints");
    }

    #[test]
    fn external_traffic_policy_local_keeps_cluster_endpoints_for_clusterip_traffic() {
        let s = slice(&[("10.42.0.2", "n2", true, true, false)]);
        let svc = service("NodePort", |s| s.external_traffic_policy = Some("Local".into()));
        let plan = plan_service(&svc, [&s], &node()).expect("plan");
        let port = &plan.ports[0];
        assert!(port.external_local);
        assert_eq!(port.node_port, Some(31000));
        assert!(port.local.is_empty());
        assert_eq!(ips(&port.cluster), ["10.42.0.2:8080"]);
        assert!(port.has_endpoints);
    }

    #[test]
    fn headless_and_external_name_services_get_no_plan() {
        let headless = service("ClusterIP", |s| s.cluster_ip = Some("None".into()));
        assert_eq!(plan_service(&headless, [], &node()), None);
        let external = service("ExternalName", |s| s.cluster_ip = None);
        assert_eq!(plan_service(&external, [], &node()), None);
    }

    #[test]
    fn session_affinity_takes_its_timeout_or_the_default() {
        let svc = service("ClusterIP", |s| s.session_affinity = Some("ClientIP".into()));
        let plan = plan_service(&svc, [], &node()).expect("plan");
        assert_eq!(plan.ports[0].affinity_timeout, Some(DEFAULT_AFFINITY_TIMEOUT_SECONDS));
        assert!(!plan.ports[0].has_endpoints);
    }

    #[test]
    fn slice_ports_match_by_name_and_protocol() {
        let mut s = slice(&[("10.42.0.2", "n1", true, true, false)]);
        s.ports = Some(vec![EndpointPort {
            name: Some("http".into()),
            port: Some(8080),
            protocol: Some("UDP".into()),
            ..EndpointPort::default()
        }]);
        let plan = plan_service(&service("ClusterIP", |_| {}), [&s], &node()).expect("plan");
        assert!(plan.ports[0].cluster.is_empty(), "a UDP slice port does not serve a TCP service port");
    }

    #[test]
    fn cidrs_parse_and_clear_host_bits() {
        let cidr: Cidr = "10.42.3.7/16".parse().expect("cidr");
        assert_eq!(cidr.to_string(), "10.42.0.0/16");
        assert!("10.42.0.0".parse::<Cidr>().is_err());
        assert!("10.42.0.0/33".parse::<Cidr>().is_err());
    }
}
