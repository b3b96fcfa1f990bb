//! The cluster's DNS data: what Services and EndpointSlices say, reduced to what DNS answers need, and published
//! as immutable snapshots that queries read without waiting for the writer.
//!
//! [`Sources`] is the writer's side: one entry per Service and per EndpointSlice, kept as the watches report
//! them. [`Sources::snapshot`] joins them into a [`Snapshot`], indexed by namespace then Service name (the order
//! in which a query name is read), plus a reverse index for PTR queries. [`ClusterIndex`] holds the current
//! snapshot; readers take an `Arc` of it, so a snapshot being replaced never blocks a query.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, PoisonError, RwLock};

use hickory_server::proto::rr::rdata::SOA;
use hickory_server::proto::rr::{LowerName, Name, RData, Record};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// The label naming the Service an EndpointSlice belongs to.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// The TTL of every record this server answers with (CoreDNS's default for its kubernetes plugin): short,
/// because endpoints come and go.
pub const TTL: u32 = 5;

/// The cluster domain (`cluster.local`), the zone this server is authoritative for.
#[derive(Clone, Debug)]
pub struct Zone {
    name: Name,
    lower: LowerName,
    labels: usize,
    soa_mname: Name,
    soa_rname: Name,
}

/// Why a cluster domain cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("cluster domain {domain:?} is not a valid DNS name: {source}")]
pub struct ZoneError {
    /// The domain as given.
    pub domain: String,
    /// What the parser said.
    #[source]
    pub source: hickory_server::proto::ProtoError,
}

impl Zone {
    /// The zone for `domain` (`cluster.local`, with or without the final dot; matched case-insensitively).
    pub fn new(domain: &str) -> Result<Zone, ZoneError> {
        let fail = |source| ZoneError { domain: domain.to_string(), source };
        let trimmed = domain.trim_end_matches('.');
        let name = Name::from_ascii(format!("{trimmed}.")).map_err(fail)?.to_lowercase();
        let soa_mname = Name::from_ascii(format!("ns.dns.{trimmed}.")).map_err(fail)?.to_lowercase();
        let soa_rname = Name::from_ascii(format!("hostmaster.{trimmed}.")).map_err(fail)?.to_lowercase();
        Ok(Zone { lower: LowerName::new(&name), labels: usize::from(name.num_labels()), name, soa_mname, soa_rname })
    }

    /// The zone's name, lowercase and fully qualified.
    pub fn name(&self) -> &Name {
        &self.name
    }

    /// Whether `name` is the zone or below it.
    pub fn contains(&self, name: &LowerName) -> bool {
        self.lower.zone_of(name)
    }

    /// How many labels the zone's name has.
    pub fn label_count(&self) -> usize {
        self.labels
    }

    fn soa(&self, serial: u32) -> Record {
        let soa = SOA::new(self.soa_mname.clone(), self.soa_rname.clone(), serial, 7200, 1800, 86400, TTL);
        Record::from_rdata(self.name.clone(), TTL, RData::SOA(soa))
    }

    /// `<first>.<namespace>.svc.<zone>.`, or `None` when the labels do not make a DNS name.
    fn service_name(&self, labels: &[&str]) -> Option<Name> {
        let mut text = labels.join(".");
        text.push_str(".svc.");
        text.push_str(&self.name.to_ascii());
        Name::from_ascii(text).ok()
    }
}

/// A port of a Service or of an EndpointSlice, as SRV records need it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortView {
    /// The port's name, lowercase; empty when unnamed.
    pub name: String,
    /// The protocol, lowercase (`tcp`, `udp`, `sctp`).
    pub protocol: String,
    /// The port number.
    pub port: u16,
}

/// What a Service resolves to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServiceKind {
    /// A Service with cluster IPs (none yet when the allocator has not given it one).
    ClusterIp(Vec<IpAddr>),
    /// `clusterIP: None`: the ready endpoints' addresses.
    Headless,
    /// `type: ExternalName`: a CNAME to this name.
    ExternalName(Name),
}

/// A Service as DNS sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceSource {
    /// The namespace, lowercase.
    pub namespace: String,
    /// The name, lowercase.
    pub name: String,
    /// What it resolves to.
    pub kind: ServiceKind,
    /// Its ports (for the SRV records of Services with cluster IPs).
    pub ports: Vec<PortView>,
}

fn port_view(name: Option<&String>, protocol: Option<&String>, port: Option<i32>) -> Option<PortView> {
    Some(PortView {
        name: name.map(|n| n.to_ascii_lowercase()).unwrap_or_default(),
        protocol: protocol.map(|p| p.to_ascii_lowercase()).unwrap_or_else(|| "tcp".to_string()),
        port: u16::try_from(port?).ok().filter(|p| *p != 0)?,
    })
}

impl ServiceSource {
    /// The DNS view of a Service; `None` for one without a name, or an ExternalName that is no DNS name.
    pub fn from_service(service: &Service) -> Option<ServiceSource> {
        let namespace = service.metadata.namespace.as_deref()?.to_ascii_lowercase();
        let name = service.metadata.name.as_deref()?.to_ascii_lowercase();
        let spec = service.spec.as_ref()?;
        let kind = if spec.type_.as_deref() == Some("ExternalName") {
            let target = spec.external_name.as_deref()?.trim_end_matches('.');
            ServiceKind::ExternalName(Name::from_ascii(format!("{target}.")).ok()?)
        } else if spec.cluster_ip.as_deref() == Some("None") {
            ServiceKind::Headless
        } else {
            let listed = spec.cluster_ips.iter().flatten();
            let mut ips: Vec<IpAddr> = listed.filter_map(|ip| ip.parse().ok()).collect();
            if ips.is_empty() {
                ips.extend(spec.cluster_ip.as_deref().and_then(|ip| ip.parse::<IpAddr>().ok()));
            }
            ServiceKind::ClusterIp(ips)
        };
        let ports = spec
            .ports
            .iter()
            .flatten()
            .filter_map(|p| port_view(p.name.as_ref(), p.protocol.as_ref(), Some(p.port)))
            .collect();
        Some(ServiceSource { namespace, name, kind, ports })
    }
}

/// One endpoint of an EndpointSlice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointSource {
    /// Its addresses.
    pub ips: Vec<IpAddr>,
    /// Whether it is ready (an absent condition counts as ready, as the API documents).
    pub ready: bool,
    /// Its hostname, lowercase (StatefulSet pods with a matching subdomain).
    pub hostname: Option<String>,
}

/// An EndpointSlice as DNS sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SliceSource {
    /// The namespace, lowercase.
    pub namespace: String,
    /// The Service it belongs to, lowercase.
    pub service: String,
    /// The endpoints.
    pub endpoints: Vec<EndpointSource>,
    /// The ports every endpoint of the slice serves.
    pub ports: Arc<[PortView]>,
}

impl SliceSource {
    /// The DNS view of a slice; `None` for one without the Service label, or of FQDN addresses.
    pub fn from_slice(slice: &EndpointSlice) -> Option<SliceSource> {
        if slice.address_type == "FQDN" {
            return None;
        }
        let namespace = slice.metadata.namespace.as_deref()?.to_ascii_lowercase();
        let service = slice.metadata.labels.as_ref()?.get(SERVICE_NAME_LABEL)?.to_ascii_lowercase();
        let endpoints = slice
            .endpoints
            .iter()
            .map(|e| EndpointSource {
                ips: e.addresses.iter().filter_map(|a| a.parse().ok()).collect(),
                ready: e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true),
                hostname: e.hostname.as_deref().filter(|h| !h.is_empty()).map(str::to_ascii_lowercase),
            })
            .collect();
        let ports = slice
            .ports
            .iter()
            .flatten()
            .filter_map(|p| port_view(p.name.as_ref(), p.protocol.as_ref(), p.port))
            .collect();
        Some(SliceSource { namespace, service, endpoints, ports })
    }
}

/// A ready endpoint of a Service, as answers need it.
#[derive(Clone, Debug)]
pub struct EndpointRecord {
    /// Its address.
    pub ip: IpAddr,
    /// The label it is known by under its Service: its hostname, else its address with dashes
    /// (`10-42-0-5`), as CoreDNS names endpoints.
    pub label: String,
    /// `<label>.<service>.<namespace>.svc.<zone>.`
    pub fqdn: Name,
    /// The ports it serves.
    pub ports: Arc<[PortView]>,
}

/// A Service with its ready endpoints.
#[derive(Clone, Debug)]
pub struct ServiceRecord {
    /// `<service>.<namespace>.svc.<zone>.`
    pub fqdn: Name,
    /// What it resolves to.
    pub kind: ServiceKind,
    /// The Service's ports.
    pub ports: Vec<PortView>,
    /// Its ready endpoints, one per address.
    pub endpoints: Vec<EndpointRecord>,
}

/// The dashed form of an address CoreDNS uses in endpoint and pod names: `10-42-0-5`, `fd00--5`.
pub fn dashed(ip: IpAddr) -> String {
    ip.to_string().replace(['.', ':'], "-")
}

/// What every query reads: the Services by namespace and name, and the names of cluster addresses.
#[derive(Debug)]
pub struct Snapshot {
    zone: Zone,
    namespaces: HashMap<String, HashMap<String, ServiceRecord>>,
    reverse: HashMap<IpAddr, Vec<Name>>,
    soa: Record,
    synced: bool,
}

impl Snapshot {
    /// A snapshot with nothing in it, before the watches have listed anything: queries in the zone fail rather
    /// than deny names that may well exist.
    pub fn unsynced(zone: Zone) -> Snapshot {
        let soa = zone.soa(0);
        Snapshot { zone, namespaces: HashMap::new(), reverse: HashMap::new(), soa, synced: false }
    }

    /// The zone.
    pub fn zone(&self) -> &Zone {
        &self.zone
    }

    /// Whether both watches have listed once.
    pub fn synced(&self) -> bool {
        self.synced
    }

    /// The zone's SOA record, for the authority section of negative answers.
    pub fn soa(&self) -> &Record {
        &self.soa
    }

    /// Whether some Service lives in `namespace`.
    pub fn has_namespace(&self, namespace: &str) -> bool {
        self.namespaces.contains_key(namespace)
    }

    /// A Service by (lowercase) namespace and name.
    pub fn service(&self, namespace: &str, name: &str) -> Option<&ServiceRecord> {
        self.namespaces.get(namespace)?.get(name)
    }

    /// The names of a cluster IP or of a headless Service's endpoint.
    pub fn names_of(&self, ip: IpAddr) -> &[Name] {
        self.reverse.get(&ip).map(Vec::as_slice).unwrap_or_default()
    }

    /// How many Services the snapshot holds.
    pub fn service_count(&self) -> usize {
        self.namespaces.values().map(HashMap::len).sum()
    }
}

/// The writer's copy of the Services and EndpointSlices, by `(namespace, name)`.
#[derive(Debug, Default)]
pub struct Sources {
    /// The Services.
    pub services: HashMap<(String, String), ServiceSource>,
    /// The EndpointSlices.
    pub slices: HashMap<(String, String), SliceSource>,
}

impl Sources {
    /// Joins Services and their slices into a snapshot of `zone`; `serial` goes into the SOA record.
    pub fn snapshot(&self, zone: &Zone, serial: u32) -> Snapshot {
        let mut by_service: HashMap<(&str, &str), Vec<(&str, &SliceSource)>> = HashMap::new();
        for ((_, slice_name), slice) in &self.slices {
            let key = (slice.namespace.as_str(), slice.service.as_str());
            by_service.entry(key).or_default().push((slice_name.as_str(), slice));
        }
        let mut namespaces: HashMap<String, HashMap<String, ServiceRecord>> = HashMap::new();
        let mut reverse: HashMap<IpAddr, Vec<Name>> = HashMap::new();
        for service in self.services.values() {
            let Some(fqdn) = zone.service_name(&[&service.name, &service.namespace]) else {
                tracing::debug!(namespace = %service.namespace, service = %service.name, "not a DNS name");
                continue;
            };
            let mut endpoints: Vec<EndpointRecord> = Vec::new();
            if !matches!(service.kind, ServiceKind::ExternalName(_)) {
                let mut slices = by_service.remove(&(service.namespace.as_str(), service.name.as_str()));
                // Slices in a stable order, so that answers do not reorder with the hash map.
                if let Some(slices) = slices.as_mut() {
                    slices.sort_by_key(|(name, _)| *name);
                }
                for (_, slice) in slices.into_iter().flatten() {
                    for endpoint in slice.endpoints.iter().filter(|e| e.ready) {
                        for ip in &endpoint.ips {
                            if endpoints.iter().any(|e| e.ip == *ip) {
                                continue;
                            }
                            let label = endpoint.hostname.clone().unwrap_or_else(|| dashed(*ip));
                            let Ok(name) = Name::from_ascii(&label).and_then(|l| l.append_domain(&fqdn)) else {
                                continue;
                            };
                            endpoints.push(EndpointRecord { ip: *ip, label, fqdn: name, ports: slice.ports.clone() });
                        }
                    }
                }
            }
            match &service.kind {
                ServiceKind::ClusterIp(ips) => {
                    for ip in ips {
                        reverse.entry(*ip).or_default().push(fqdn.clone());
                    }
                }
                ServiceKind::Headless => {
                    for endpoint in &endpoints {
                        reverse.entry(endpoint.ip).or_default().push(endpoint.fqdn.clone());
                    }
                }
                ServiceKind::ExternalName(_) => {}
            }
            let record = ServiceRecord { fqdn, kind: service.kind.clone(), ports: service.ports.clone(), endpoints };
            namespaces.entry(service.namespace.clone()).or_default().insert(service.name.clone(), record);
        }
        for names in reverse.values_mut() {
            names.sort_by_key(|n| n.to_ascii());
            names.dedup();
        }
        Snapshot { soa: zone.soa(serial), zone: zone.clone(), namespaces, reverse, synced: true }
    }
}

/// The current snapshot, swapped whole by the one writer (the watch task).
#[derive(Debug)]
pub struct ClusterIndex {
    current: RwLock<Arc<Snapshot>>,
}

impl ClusterIndex {
    /// An index with an unsynced, empty snapshot.
    pub fn new(zone: Zone) -> ClusterIndex {
        ClusterIndex { current: RwLock::new(Arc::new(Snapshot::unsynced(zone))) }
    }

    /// The current snapshot. It may be a moment behind the API server, as any watch cache is.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Replaces the snapshot.
    pub fn publish(&self, snapshot: Snapshot) {
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(snapshot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(json: serde_json::Value) -> ServiceSource {
        let service: Service = serde_json::from_value(json).expect("service");
        ServiceSource::from_service(&service).expect("service source")
    }

    fn slice(json: serde_json::Value) -> SliceSource {
        let slice: EndpointSlice = serde_json::from_value(json).expect("slice");
        SliceSource::from_slice(&slice).expect("slice source")
    }

    #[test]
    fn a_service_becomes_cluster_ips_headless_or_an_external_name() {
        let web = service(serde_json::json!({"metadata": {"name": "Web", "namespace": "default"},
            "spec": {"clusterIP": "10.43.201.5", "clusterIPs": ["10.43.201.5", "fd00::5"],
                     "ports": [{"name": "HTTP", "port": 80}, {"port": 0}]}}));
        assert_eq!(web.name, "web");
        assert_eq!(web.kind, ServiceKind::ClusterIp(vec!["10.43.201.5".parse().unwrap(), "fd00::5".parse().unwrap()]));
        assert_eq!(web.ports, vec![PortView { name: "http".into(), protocol: "tcp".into(), port: 80 }]);
        let headless = service(serde_json::json!({"metadata": {"name": "db", "namespace": "default"},
            "spec": {"clusterIP": "None"}}));
        assert_eq!(headless.kind, ServiceKind::Headless);
        let external = service(serde_json::json!({"metadata": {"name": "ext", "namespace": "default"},
            "spec": {"type": "ExternalName", "externalName": "example.com"}}));
        assert_eq!(external.kind, ServiceKind::ExternalName(Name::from_ascii("example.com.").unwrap()));
    }

    #[test]
    fn a_slice_without_the_service_label_is_ignored() {
        let unlabelled: EndpointSlice = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "x", "namespace": "default"}, "addressType": "IPv4", "endpoints": []}))
        .expect("slice");
        assert!(SliceSource::from_slice(&unlabelled).is_none());
    }

    #[test]
    fn snapshots_join_ready_endpoints_to_their_service_once_per_address() {
        let zone = Zone::new("cluster.local").expect("zone");
        let mut sources = Sources::default();
        sources.services.insert(
            ("default".into(), "db".into()),
            service(serde_json::json!({"metadata": {"name": "db", "namespace": "default"},
                "spec": {"clusterIP": "None"}})),
        );
        let labels = serde_json::json!({"kubernetes.io/service-name": "db"});
        sources.slices.insert(
            ("default".into(), "db-1".into()),
            slice(serde_json::json!({"metadata": {"name": "db-1", "namespace": "default", "labels": labels},
                "addressType": "IPv4", "ports": [{"name": "pg", "port": 5432}],
                "endpoints": [
                    {"addresses": ["10.42.0.5"], "hostname": "db-0"},
                    {"addresses": ["10.42.0.6"], "conditions": {"ready": false}},
                    {"addresses": ["10.42.0.7"], "conditions": {"ready": true}}]})),
        );
        sources.slices.insert(
            ("default".into(), "db-2".into()),
            slice(serde_json::json!({"metadata": {"name": "db-2", "namespace": "default", "labels": labels},
                "addressType": "IPv4", "endpoints": [{"addresses": ["10.42.0.7"]}]})),
        );
        let snapshot = sources.snapshot(&zone, 7);
        assert!(snapshot.synced());
        let db = snapshot.service("default", "db").expect("db");
        let labels: Vec<&str> = db.endpoints.iter().map(|e| e.label.as_str()).collect();
        assert_eq!(labels, vec!["db-0", "10-42-0-7"]);
        assert_eq!(db.endpoints[0].fqdn.to_ascii(), "db-0.db.default.svc.cluster.local.");
        let names = snapshot.names_of("10.42.0.5".parse().unwrap());
        assert_eq!(names.iter().map(Name::to_ascii).collect::<Vec<_>>(), vec!["db-0.db.default.svc.cluster.local."]);
        assert!(snapshot.names_of("10.42.0.6".parse().unwrap()).is_empty());
        assert!(snapshot.has_namespace("default"));
        assert!(!snapshot.has_namespace("other"));
    }

    #[test]
    fn addresses_are_dashed_as_coredns_names_them() {
        assert_eq!(dashed("10.42.0.5".parse().unwrap()), "10-42-0-5");
        assert_eq!(dashed("fd00::5".parse().unwrap()), "fd00--5");
    }

    #[test]
    fn the_zone_is_matched_whatever_its_case_and_final_dot() {
        let zone = Zone::new("Cluster.Local.").expect("zone");
        assert_eq!(zone.name().to_ascii(), "cluster.local.");
        assert_eq!(zone.label_count(), 2);
        let inside = LowerName::new(&Name::from_ascii("WEB.default.svc.CLUSTER.local.").unwrap());
        assert!(zone.contains(&inside));
        assert!(!zone.contains(&LowerName::new(&Name::from_ascii("example.com.").unwrap())));
    }
}
