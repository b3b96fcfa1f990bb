//! The running proxy: watches Services and EndpointSlices, keeps an in-memory copy of what the table holds per
//! Service, and syncs: a full, atomic sync at start (and periodically), then debounced partial syncs of only the
//! Services whose Service or slices changed. A failed sync changes nothing (one `nft -f` transaction); it is
//! logged and retried with backoff, as a full sync.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::ServiceCIDR;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::conntrack::{ConntrackCommand, UdpPort, stale_flows, udp_ports};
use crate::model::{Cidr, NodeInfo, ServiceKey, plan_service};
use crate::nft::{NftCommand, NftError};
use crate::render::{DEFAULT_TABLE, ServiceRules, full_sync, partial_sync, service_rules};

/// How the proxy runs.
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    /// This Node's name (endpoints with this `nodeName` are local).
    pub node_name: String,
    /// The addresses NodePorts answer on.
    pub node_ips: Vec<Ipv4Addr>,
    /// This node's pod range: ClusterIP traffic from outside it is masqueraded.
    pub pod_cidr: Option<Cidr>,
    /// The service ranges known without asking the API (`--service-cluster-ip-range`); ServiceCIDR objects, if
    /// the API serves them, are added at start.
    pub service_cidrs: Vec<Cidr>,
    /// The nftables table (`ip` family).
    pub table: String,
    /// How to run nft.
    pub nft: NftCommand,
    /// How to run conntrack, to forget UDP flows whose endpoint is gone; `None`: never.
    pub conntrack: Option<ConntrackCommand>,
    /// How long events are coalesced before a partial sync.
    pub debounce: Duration,
    /// How often the whole table is rewritten (which also empties the ClientIP affinity sets).
    pub full_resync: Duration,
    /// The first retry delay after a failed sync; it doubles up to [`ProxyConfig::max_retry`].
    pub min_retry: Duration,
    /// The longest retry delay.
    pub max_retry: Duration,
    /// Where each completed sync is announced (benchmarks, tests); `None`: nowhere.
    pub reports: Option<broadcast::Sender<SyncReport>>,
}

impl ProxyConfig {
    /// The defaults for a node: table `gantry`, 50 ms debounce, hourly full resync, retries from 1 s to 30 s.
    pub fn new(node_name: impl Into<String>) -> ProxyConfig {
        ProxyConfig {
            node_name: node_name.into(),
            node_ips: Vec::new(),
            pod_cidr: None,
            service_cidrs: Vec::new(),
            table: DEFAULT_TABLE.to_string(),
            nft: NftCommand::default(),
            conntrack: Some(ConntrackCommand::default()),
            debounce: Duration::from_millis(50),
            full_resync: Duration::from_secs(3600),
            min_retry: Duration::from_secs(1),
            max_retry: Duration::from_secs(30),
            reports: None,
        }
    }
}

/// A sync that completed: its `nft` transaction was applied.
#[derive(Clone, Debug)]
pub struct SyncReport {
    /// Counts completed syncs from 1.
    pub sequence: u64,
    /// Whether it rewrote the whole table.
    pub full: bool,
    /// The Services it looked at (every Service for a full sync).
    pub services: Vec<ServiceKey>,
    /// How long rendering took.
    pub render: Duration,
    /// How long `nft` took.
    pub nft: Duration,
    /// When `nft` exited.
    pub completed: Instant,
}

/// Why the proxy could not run.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// `nft` is missing or does not run: the node gets no service rules.
    #[error("nft does not run (install the nftables package): {0}")]
    NftMissing(#[source] NftError),
}

/// Slices by (namespace, name), with the Service each belongs to.
type SliceKey = (String, String);

/// What a sync wants per Service it looks at (`None`: nothing in the table).
type Desired = Vec<(ServiceKey, Option<ServiceRules>)>;

struct State {
    node: NodeInfo,
    table: String,
    services: HashMap<ServiceKey, Service>,
    slices: HashMap<SliceKey, (Option<ServiceKey>, EndpointSlice)>,
    by_service: HashMap<ServiceKey, BTreeSet<SliceKey>>,
    /// What the table holds, per Service, after the last successful sync.
    applied: BTreeMap<ServiceKey, ServiceRules>,
    /// The UDP ports the table holds, per Service, for conntrack cleanup.
    udp: HashMap<ServiceKey, Vec<UdpPort>>,
    dirty: BTreeSet<ServiceKey>,
    service_buffer: Option<Vec<Service>>,
    slice_buffer: Option<Vec<EndpointSlice>>,
    services_listed: bool,
    slices_listed: bool,
    sequence: u64,
}

impl State {
    /// Nothing listed and nothing applied yet.
    fn new(node: NodeInfo, table: String) -> State {
        State {
            node,
            table,
            services: HashMap::new(),
            slices: HashMap::new(),
            by_service: HashMap::new(),
            applied: BTreeMap::new(),
            udp: HashMap::new(),
            dirty: BTreeSet::new(),
            service_buffer: None,
            slice_buffer: None,
            services_listed: false,
            slices_listed: false,
            sequence: 0,
        }
    }

    fn rules_for(&self, key: &ServiceKey) -> Option<ServiceRules> {
        let service = self.services.get(key)?;
        let slices = self.by_service.get(key).into_iter().flatten().filter_map(|k| self.slices.get(k)).map(|(_, s)| s);
        plan_service(service, slices, &self.node).map(|plan| service_rules(&plan, &self.node))
    }

    fn udp_for(&self, key: &ServiceKey) -> Vec<UdpPort> {
        let Some(service) = self.services.get(key) else { return Vec::new() };
        let slices = self.by_service.get(key).into_iter().flatten().filter_map(|k| self.slices.get(k)).map(|(_, s)| s);
        plan_service(service, slices, &self.node).map(|plan| udp_ports(&plan)).unwrap_or_default()
    }

    /// Records the UDP ports of the Services a sync wrote (all of them after a full sync) and returns the flows
    /// that no longer lead anywhere.
    fn take_stale_flows(&mut self, full: bool, keys: &[ServiceKey]) -> BTreeSet<crate::conntrack::StaleFlows> {
        let mut stale = BTreeSet::new();
        if full {
            let current: BTreeSet<&ServiceKey> = keys.iter().collect();
            let gone: Vec<ServiceKey> = self.udp.keys().filter(|k| !current.contains(k)).cloned().collect();
            for key in gone {
                if let Some(old) = self.udp.remove(&key) {
                    stale.extend(stale_flows(&old, &[]));
                }
            }
        }
        for key in keys {
            let new = self.udp_for(key);
            let old = self.udp.remove(key).unwrap_or_default();
            stale.extend(stale_flows(&old, &new));
            if !new.is_empty() {
                self.udp.insert(key.clone(), new);
            }
        }
        stale
    }

    fn insert_slice(&mut self, slice: EndpointSlice) {
        let key =
            (slice.metadata.namespace.clone().unwrap_or_default(), slice.metadata.name.clone().unwrap_or_default());
        self.remove_slice(&key);
        let owner = ServiceKey::of_slice(&slice);
        if let Some(owner) = &owner {
            self.by_service.entry(owner.clone()).or_default().insert(key.clone());
            self.dirty.insert(owner.clone());
        }
        self.slices.insert(key, (owner, slice));
    }

    fn remove_slice(&mut self, key: &SliceKey) {
        if let Some((Some(owner), _)) = self.slices.remove(key) {
            if let Some(set) = self.by_service.get_mut(&owner) {
                set.remove(key);
                if set.is_empty() {
                    self.by_service.remove(&owner);
                }
            }
            self.dirty.insert(owner);
        }
    }

    fn on_service(&mut self, event: Event<Service>) {
        match event {
            Event::Apply(service) => {
                let key = ServiceKey::of_service(&service);
                self.dirty.insert(key.clone());
                self.services.insert(key, service);
            }
            Event::Delete(service) => {
                let key = ServiceKey::of_service(&service);
                self.services.remove(&key);
                self.dirty.insert(key);
            }
            Event::Init => self.service_buffer = Some(Vec::new()),
            Event::InitApply(service) => self.service_buffer.get_or_insert_with(Vec::new).push(service),
            Event::InitDone => {
                let listed = self.service_buffer.take().unwrap_or_default();
                self.dirty.extend(self.services.keys().cloned());
                self.services = listed.into_iter().map(|s| (ServiceKey::of_service(&s), s)).collect();
                self.dirty.extend(self.services.keys().cloned());
                self.services_listed = true;
            }
        }
    }

    fn on_slice(&mut self, event: Event<EndpointSlice>) {
        match event {
            Event::Apply(slice) => self.insert_slice(slice),
            Event::Delete(slice) => {
                let key = (
                    slice.metadata.namespace.clone().unwrap_or_default(),
                    slice.metadata.name.clone().unwrap_or_default(),
                );
                self.remove_slice(&key);
            }
            Event::Init => self.slice_buffer = Some(Vec::new()),
            Event::InitApply(slice) => self.slice_buffer.get_or_insert_with(Vec::new).push(slice),
            Event::InitDone => {
                let listed = self.slice_buffer.take().unwrap_or_default();
                self.dirty.extend(self.by_service.keys().cloned());
                self.slices.clear();
                self.by_service.clear();
                for slice in listed {
                    self.insert_slice(slice);
                }
                self.slices_listed = true;
            }
        }
    }

    /// Renders the transaction of a sync: `(text, services looked at, new applied copies)`.
    fn render(&self, full: bool) -> (String, Vec<ServiceKey>, Desired) {
        if full {
            let mut keys: Vec<ServiceKey> = self.services.keys().cloned().collect();
            keys.sort();
            let desired: Desired = keys.iter().map(|k| (k.clone(), self.rules_for(k))).collect();
            let text = full_sync(&self.table, &self.node, desired.iter().filter_map(|(_, r)| r.as_ref()));
            return (text, keys, desired);
        }
        let keys: Vec<ServiceKey> = self.dirty.iter().cloned().collect();
        let desired: Desired = keys.iter().map(|k| (k.clone(), self.rules_for(k))).collect();
        let changes: Vec<(Option<&ServiceRules>, Option<&ServiceRules>)> =
            desired.iter().map(|(k, new)| (self.applied.get(k), new.as_ref())).collect();
        (partial_sync(&self.table, &changes), keys, desired)
    }

    fn commit(&mut self, full: bool, desired: Desired) {
        if full {
            self.applied.clear();
        }
        for (key, rules) in desired {
            match rules {
                Some(rules) => self.applied.insert(key, rules),
                None => self.applied.remove(&key),
            };
        }
    }
}

/// Reads the ServiceCIDR objects' IPv4 ranges; none when the API does not serve them (404) or fails.
async fn service_cidrs_from_api(client: &Client) -> Vec<Cidr> {
    let api: Api<ServiceCIDR> = Api::all(client.clone());
    match api.list(&Default::default()).await {
        Ok(list) => list
            .items
            .iter()
            .flat_map(|s| s.spec.as_ref().and_then(|spec| spec.cidrs.clone()).unwrap_or_default())
            .filter_map(|c| c.parse::<Cidr>().ok())
            .collect(),
        Err(kube::Error::Api(status)) if status.code == 404 => {
            tracing::debug!("the API serves no ServiceCIDRs: only the configured service ranges are dropped");
            Vec::new()
        }
        Err(err) => {
            tracing::warn!(error = %err, "listing ServiceCIDRs; only the configured service ranges are dropped");
            Vec::new()
        }
    }
}

async fn next_event<K, S>(stream: &mut S, name: &str) -> Option<Event<K>>
where
    S: Stream<Item = Result<Event<K>, watcher::Error>> + Unpin,
{
    loop {
        match stream.next().await? {
            Ok(event) => return Some(event),
            Err(err) => tracing::warn!(error = %err, watch = name, "watch failed; retrying"),
        }
    }
}

/// Runs the proxy until `shutdown`: fails at once only when `nft` does not run. The rules stay in place when it
/// stops (traffic keeps flowing across an agent restart); [`crate::remove_rules`] deletes them.
pub async fn run(client: Client, config: ProxyConfig, shutdown: CancellationToken) -> Result<(), ProxyError> {
    let version = config.nft.version().await.map_err(ProxyError::NftMissing)?;
    let mut service_cidrs = config.service_cidrs.clone();
    for cidr in service_cidrs_from_api(&client).await {
        if !service_cidrs.contains(&cidr) {
            service_cidrs.push(cidr);
        }
    }
    tracing::info!(
        table = %config.table,
        nft = %version,
        node = %config.node_name,
        service_cidrs = ?service_cidrs.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "service proxy starting"
    );
    let mut state = State::new(
        NodeInfo {
            name: config.node_name.clone(),
            node_ips: config.node_ips.clone(),
            pod_cidr: config.pod_cidr,
            service_cidrs,
        },
        config.table.clone(),
    );
    let mut services =
        watcher::watcher(Api::<Service>::all(client.clone()), watcher::Config::default()).default_backoff().boxed();
    let mut slices = watcher::watcher(Api::<EndpointSlice>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .boxed();

    let mut need_full = true;
    let mut sync_at: Option<tokio::time::Instant> = None;
    let mut not_before = tokio::time::Instant::now();
    let mut next_full = tokio::time::Instant::now() + config.full_resync;
    let mut retry = config.min_retry;
    let mut conntrack = config.conntrack.clone();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            event = next_event(&mut services, "services") => {
                let Some(event) = event else { break };
                state.on_service(event);
            }
            event = next_event(&mut slices, "endpointslices") => {
                let Some(event) = event else { break };
                state.on_slice(event);
            }
            _ = tokio::time::sleep_until(sync_at.unwrap_or(next_full)), if sync_at.is_some() => {
                sync_at = None;
                let full = need_full;
                let started = Instant::now();
                let (text, keys, desired) = state.render(full);
                let render = started.elapsed();
                if text.is_empty() {
                    state.dirty.clear();
                    continue;
                }
                let nft_started = Instant::now();
                match config.nft.apply(&text).await {
                    Ok(()) => {
                        let nft = nft_started.elapsed();
                        state.commit(full, desired);
                        state.dirty.clear();
                        // After the rules: a flow deleted earlier could be re-created through the old ones.
                        let stale = state.take_stale_flows(full, &keys);
                        let mut cannot_run = false;
                        if let Some(command) = &conntrack {
                            for flows in &stale {
                                match command.delete(flows).await {
                                    Ok(deleted) => tracing::debug!(?flows, deleted, "forgot stale UDP flows"),
                                    Err(err @ crate::conntrack::ConntrackError::Spawn { .. }) => {
                                        tracing::warn!(error = %err, "conntrack cannot run: stale UDP flows to removed endpoints last until they time out");
                                        cannot_run = true;
                                        break;
                                    }
                                    Err(err) => tracing::warn!(error = %err, "forgetting stale UDP flows"),
                                }
                            }
                        }
                        if cannot_run {
                            conntrack = None;
                        }
                        need_full = false;
                        retry = config.min_retry;
                        not_before = tokio::time::Instant::now();
                        state.sequence += 1;
                        tracing::debug!(full, services = keys.len(), ?render, ?nft, bytes = text.len(), "synced service rules");
                        if let Some(reports) = &config.reports {
                            let _ = reports.send(SyncReport {
                                sequence: state.sequence,
                                full,
                                services: keys,
                                render,
                                nft,
                                completed: Instant::now(),
                            });
                        }
                    }
                    Err(err) => {
                        tracing::error!(error = %err, full, retry_in = ?retry, "syncing service rules failed; the table is unchanged");
                        need_full = true;
                        not_before = tokio::time::Instant::now() + retry;
                        sync_at = Some(not_before);
                        retry = (retry * 2).min(config.max_retry);
                    }
                }
                continue;
            }
            _ = tokio::time::sleep_until(next_full) => {
                need_full = true;
                next_full = tokio::time::Instant::now() + config.full_resync;
            }
        }
        // Nothing is written before both lists are complete: a partial view would delete other Services' rules.
        let ready = state.services_listed && state.slices_listed;
        if ready && (need_full || !state.dirty.is_empty()) && sync_at.is_none() {
            sync_at = Some((tokio::time::Instant::now() + config.debounce).max(not_before));
        }
    }
    tracing::info!(table = %config.table, "service proxy stopped; its rules stay until reset");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ServicePort, ServiceSpec};
    use k8s_openapi::api::discovery::v1::{Endpoint, EndpointPort};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn state() -> State {
        State::new(NodeInfo { name: "n1".into(), ..NodeInfo::default() }, "t".into())
    }

    fn service(name: &str, ip: &str) -> Service {
        Service {
            metadata: ObjectMeta { namespace: Some("ns".into()), name: Some(name.into()), ..ObjectMeta::default() },
            spec: Some(ServiceSpec {
                cluster_ip: Some(ip.into()),
                ports: Some(vec![ServicePort { port: 80, ..ServicePort::default() }]),
                ..ServiceSpec::default()
            }),
            status: None,
        }
    }

    fn slice(service: &str, ip: &str) -> EndpointSlice {
        EndpointSlice {
            metadata: ObjectMeta {
                namespace: Some("ns".into()),
                name: Some(format!("{service}-x")),
                labels: Some([(crate::model::SERVICE_NAME_LABEL.to_string(), service.to_string())].into()),
                ..ObjectMeta::default()
            },
            address_type: "IPv4".into(),
            endpoints: vec![Endpoint { addresses: vec![ip.into()], ..Endpoint::default() }],
            ports: Some(vec![EndpointPort { port: Some(8080), ..EndpointPort::default() }]),
        }
    }

    fn key(name: &str) -> ServiceKey {
        ServiceKey { namespace: "ns".into(), name: name.into() }
    }

    #[test]
    fn the_first_lists_fill_the_state_and_mark_every_service() {
        let mut s = state();
        s.on_service(Event::Init);
        s.on_service(Event::InitApply(service("a", "10.43.0.1")));
        s.on_service(Event::InitApply(service("b", "10.43.0.2")));
        assert!(s.services.is_empty(), "nothing is used before the list is complete");
        s.on_service(Event::InitDone);
        s.on_slice(Event::Init);
        s.on_slice(Event::InitApply(slice("a", "10.42.0.2")));
        s.on_slice(Event::InitDone);
        assert!(s.services_listed && s.slices_listed);
        assert_eq!(s.dirty, [key("a"), key("b")].into());
        let (text, keys, desired) = s.render(true);
        assert_eq!(keys, [key("a"), key("b")]);
        assert!(text.contains("dnat to 10.42.0.2:8080"), "{text}");
        s.commit(true, desired);
        s.dirty.clear();
        assert_eq!(s.applied.len(), 2);
    }

    #[test]
    fn a_slice_change_resyncs_only_its_service() {
        let mut s = state();
        s.on_service(Event::Apply(service("a", "10.43.0.1")));
        s.on_service(Event::Apply(service("b", "10.43.0.2")));
        s.on_slice(Event::Apply(slice("a", "10.42.0.2")));
        let (_, _, desired) = s.render(true);
        s.commit(true, desired);
        s.dirty.clear();

        s.on_slice(Event::Apply(slice("a", "10.42.0.3")));
        assert_eq!(s.dirty, [key("a")].into());
        let (text, keys, desired) = s.render(false);
        assert_eq!(keys, [key("a")]);
        assert!(text.contains("flush chain ip t service-") && text.contains("10.42.0.3:8080"), "{text}");
        assert!(!text.contains("10.43.0.2"), "Service b is untouched: {text}");
        s.commit(false, desired);
        s.dirty.clear();

        s.on_slice(Event::Delete(slice("a", "10.42.0.3")));
        let (text, _, _) = s.render(false);
        assert!(text.contains("goto reject-chain") && text.contains("delete chain ip t service-"), "{text}");
    }
}
