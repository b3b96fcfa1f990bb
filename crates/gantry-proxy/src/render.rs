//! The nftables text: a [`ServicePlan`] becomes its chains, affinity sets and map elements ([`ServiceRules`]);
//! [`full_sync`] and [`partial_sync`] turn those into one `nft -f -` transaction.
//!
//! Layout (`table ip <name>`): `services` dispatches on `ip daddr . l4proto . dport` through the `service-ips`
//! map, and on node addresses through `service-nodeports`; each service port has one flat `service-…` chain
//! (masquerade marks, then one `dnat ... numgen random mod N map` rule) instead of kube-proxy's per-endpoint
//! chains, which keeps a 1,000-Service table small enough to load in well under a second. Per-endpoint chains
//! and dynamic `affinity-…` sets exist only for sessionAffinity ClientIP, which needs `update @set`. Packets
//! for ports without endpoints are rejected (or dropped for a Local policy without local endpoints) in filter
//! chains through the `no-endpoint-*` maps; other addresses in the service ranges are dropped. Masquerading is
//! mark-based: rules `jump mark-for-masquerade`, `masquerading` in postrouting acts on the mark.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use sha2::{Digest, Sha256};

use crate::model::{Endpoint, NodeInfo, PortPlan, ServicePlan};

/// The default table name.
pub const DEFAULT_TABLE: &str = "gantry";

/// The packet mark bit that asks `masquerading` to masquerade (kube-proxy's).
const MASQUERADE_MARK: &str = "0x4000";

/// One element of a set or a map, as nft text.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Element {
    /// The set or map.
    pub collection: &'static str,
    /// The key (`10.43.0.1 . tcp . 443`).
    pub key: String,
    /// The value for a map (`goto service-…`), `None` for a set.
    pub value: Option<String>,
}

impl Element {
    fn text(&self) -> String {
        match &self.value {
            Some(value) => format!("{} : {}", self.key, value),
            None => self.key.clone(),
        }
    }
}

/// Everything one Service owns in the table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceRules {
    /// Chains by name, with their rules.
    pub chains: BTreeMap<String, Vec<String>>,
    /// ClientIP affinity sets by name, with their timeout in seconds.
    pub affinity_sets: BTreeMap<String, u32>,
    /// Elements of the shared sets and maps.
    pub elements: BTreeSet<Element>,
}

/// kube-proxy's chain-name base: `HASH8-ns/name/proto/port`, HASH8 being the first 8 base32 characters of the
/// SHA-256 of the rest. The `/` (never in a Kubernetes name) marks a Service's chains.
fn name_base(rest: &str) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let digest = Sha256::digest(rest.as_bytes());
    // Five bytes are exactly eight base32 characters.
    let bits = digest.iter().take(5).fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
    let mut out = String::with_capacity(rest.len() + 9);
    for i in (0..8).rev() {
        out.push(char::from(ALPHABET[((bits >> (i * 5)) & 31) as usize]));
    }
    out.push('-');
    out.push_str(rest);
    out
}

/// The name parts shared by a service port's chains.
fn port_base(plan: &ServicePlan, port: &PortPlan) -> String {
    format!("{}/{}/{}/{}", plan.key.namespace, plan.key.name, port.protocol.nft(), port.name)
}

/// The cluster-policy chain of a service port.
pub fn service_chain(plan: &ServicePlan, port: &PortPlan) -> String {
    format!("service-{}", name_base(&port_base(plan, port)))
}

fn local_chain(plan: &ServicePlan, port: &PortPlan) -> String {
    format!("local-{}", name_base(&port_base(plan, port)))
}

fn external_chain(plan: &ServicePlan, port: &PortPlan) -> String {
    format!("external-{}", name_base(&port_base(plan, port)))
}

fn endpoint_base(plan: &ServicePlan, port: &PortPlan, ep: &Endpoint) -> String {
    name_base(&format!("{}__{}/{}", port_base(plan, port), ep.ip, ep.port))
}

/// A load-balancing chain over `endpoints` (never empty).
fn balance(
    rules: &mut ServiceRules,
    plan: &ServicePlan,
    port: &PortPlan,
    chain: String,
    endpoints: &[Endpoint],
    node: &NodeInfo,
) {
    let proto = port.protocol.nft();
    let mut body = Vec::new();
    if let Some(pod_cidr) = node.pod_cidr {
        // ClusterIP traffic from outside this node's pods is masqueraded, so that replies come back through
        // this node to be un-DNATed.
        body.push(format!("ip daddr {} ip saddr != {pod_cidr} jump mark-for-masquerade", plan.cluster_ip));
    }
    if let Some(timeout) = port.affinity_timeout {
        let mut vmap = Vec::new();
        for (i, ep) in endpoints.iter().enumerate() {
            let base = endpoint_base(plan, port, ep);
            let ep_chain = format!("endpoint-{base}");
            let set = format!("affinity-{base}");
            body.push(format!("ip saddr @{set} goto {ep_chain}"));
            vmap.push(format!("{i} : goto {ep_chain}"));
            rules.affinity_sets.insert(set.clone(), timeout);
            rules.chains.insert(
                ep_chain,
                vec![
                    format!("ip saddr {} jump mark-for-masquerade", ep.ip),
                    format!("update @{set} {{ ip saddr }}"),
                    format!("meta l4proto {proto} dnat to {}:{}", ep.ip, ep.port),
                ],
            );
        }
        body.push(format!("numgen random mod {} vmap {{ {} }}", endpoints.len(), vmap.join(", ")));
    } else {
        // Hairpin: a backend reaching its own Service must see the reply come from the node.
        let ips: BTreeSet<String> = endpoints.iter().map(|e| e.ip.to_string()).collect();
        body.push(format!(
            "ip saddr {{ {} }} jump mark-for-masquerade",
            ips.into_iter().collect::<Vec<_>>().join(", ")
        ));
        match endpoints {
            [one] => body.push(format!("meta l4proto {proto} dnat to {}:{}", one.ip, one.port)),
            _ => {
                let map: Vec<String> =
                    endpoints.iter().enumerate().map(|(i, e)| format!("{i} : {} . {}", e.ip, e.port)).collect();
                body.push(format!(
                    "meta l4proto {proto} dnat ip addr . port to numgen random mod {} map {{ {} }}",
                    endpoints.len(),
                    map.join(", ")
                ));
            }
        }
    }
    rules.chains.insert(chain, body);
}

fn element(collection: &'static str, key: String, value: Option<String>) -> Element {
    Element { collection, key, value }
}

/// The chains, sets and elements of one Service.
pub fn service_rules(plan: &ServicePlan, node: &NodeInfo) -> ServiceRules {
    let mut rules = ServiceRules::default();
    rules.elements.insert(element("cluster-ips", plan.cluster_ip.to_string(), None));
    for port in &plan.ports {
        let proto = port.protocol.nft();
        let cluster_chain = (!port.cluster.is_empty()).then(|| service_chain(plan, port));
        let local = (!port.local.is_empty()).then(|| local_chain(plan, port));
        if let Some(chain) = &cluster_chain {
            balance(&mut rules, plan, port, chain.clone(), &port.cluster, node);
        }
        if let Some(chain) = &local {
            balance(&mut rules, plan, port, chain.clone(), &port.local, node);
        }
        let reject = || Some("goto reject-chain".to_string());
        let vip_key = format!("{} . {proto} . {}", plan.cluster_ip, port.port);
        let internal = if port.internal_local { local.as_ref() } else { cluster_chain.as_ref() };
        match internal {
            Some(chain) => rules.elements.insert(element("service-ips", vip_key, Some(format!("goto {chain}")))),
            None if port.has_endpoints => {
                rules.elements.insert(element("no-endpoint-services", vip_key, Some("drop".into())))
            }
            None => rules.elements.insert(element("no-endpoint-services", vip_key, reject())),
        };
        let Some(node_port) = port.node_port else { continue };
        let np_key = format!("{proto} . {node_port}");
        if !port.has_endpoints {
            rules.elements.insert(element("no-endpoint-nodeports", np_key, reject()));
            continue;
        }
        if !port.external_local {
            // Cluster policy needs no chain of its own: `services` marks the ports of `cluster-nodeports` for
            // masquerading, and the map goes straight to the service chain (a thousand fewer chains to load).
            if let Some(chain) = &cluster_chain {
                rules.elements.insert(element("cluster-nodeports", np_key.clone(), None));
                rules.elements.insert(element("service-nodeports", np_key, Some(format!("goto {chain}"))));
            }
            continue;
        }
        let external = external_chain(plan, port);
        let mut body = Vec::new();
        // Traffic from this node's pods or from the node itself is not "external": it may use any endpoint,
        // as kube-proxy short-circuits it.
        if let Some(short) = cluster_chain.as_ref().or(local.as_ref()) {
            if let Some(pod_cidr) = node.pod_cidr {
                body.push(format!("ip saddr {pod_cidr} goto {short}"));
            }
            body.push("fib saddr type local jump mark-for-masquerade".to_string());
            body.push(format!("fib saddr type local goto {short}"));
        }
        match &local {
            Some(chain) => body.push(format!("goto {chain}")),
            // What falls through is not DNATed and is dropped by nodeport-endpoints-check.
            None => {
                rules.elements.insert(element("no-endpoint-nodeports", np_key.clone(), Some("drop".into())));
            }
        }
        rules.chains.insert(external.clone(), body);
        rules.elements.insert(element("service-nodeports", np_key, Some(format!("goto {external}"))));
    }
    rules
}

/// The table's fixed part: sets, maps and base chains.
fn base_table(out: &mut String, table: &str, node: &NodeInfo) {
    let _ = writeln!(out, "table ip {table} {{");
    out.push_str(
        "  comment \"gantry service proxy\"
  set cluster-ips { type ipv4_addr; }
  set nodeport-ips { type ipv4_addr; }
  set cluster-nodeports { type inet_proto . inet_service; }
  map service-ips { type ipv4_addr . inet_proto . inet_service : verdict; }
  map service-nodeports { type inet_proto . inet_service : verdict; }
  map no-endpoint-services { type ipv4_addr . inet_proto . inet_service : verdict; }
  map no-endpoint-nodeports { type inet_proto . inet_service : verdict; }
  chain nat-prerouting { type nat hook prerouting priority dstnat; policy accept; jump services; }
  chain nat-output { type nat hook output priority -100; policy accept; jump services; }
  chain nat-postrouting { type nat hook postrouting priority srcnat; policy accept; jump masquerading; }
  chain filter-forward { type filter hook forward priority 0; policy accept; ct state new jump service-endpoints-check; ct state new jump cluster-ips-check; }
  chain filter-input { type filter hook input priority 0; policy accept; ct state new jump nodeport-endpoints-check; ct state new jump service-endpoints-check; }
  chain filter-output { type filter hook output priority 0; policy accept; ct state new jump service-endpoints-check; ct state new jump nodeport-endpoints-check; ct state new jump cluster-ips-check; }
  chain service-endpoints-check { ip daddr . meta l4proto . th dport vmap @no-endpoint-services; }
  chain nodeport-endpoints-check { ip daddr @nodeport-ips meta l4proto . th dport vmap @no-endpoint-nodeports; }
  chain reject-chain { reject; }
",
    );
    let _ = writeln!(out, "  chain mark-for-masquerade {{ meta mark set meta mark or {MASQUERADE_MARK}; }}");
    let _ = writeln!(
        out,
        "  chain masquerading {{ meta mark & {MASQUERADE_MARK} == 0 return; meta mark set meta mark xor {MASQUERADE_MARK}; masquerade fully-random; }}"
    );
    out.push_str(
        "  chain services {
    ip daddr . meta l4proto . th dport vmap @service-ips
    ip daddr @nodeport-ips meta l4proto . th dport @cluster-nodeports jump mark-for-masquerade
    ip daddr @nodeport-ips meta l4proto . th dport vmap @service-nodeports
  }
  chain cluster-ips-check {
    ip daddr @cluster-ips reject comment \"invalid port of a ClusterIP\"
",
    );
    for cidr in &node.service_cidrs {
        let _ = writeln!(out, "    ip daddr {cidr} drop comment \"unallocated ClusterIP\"");
    }
    out.push_str("  }\n}\n");
}

/// Writes `add element` lines, a batch per collection.
fn write_elements<'a>(out: &mut String, verb: &str, table: &str, elements: impl IntoIterator<Item = &'a Element>) {
    let mut by_collection: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for e in elements {
        let text = if verb == "delete" { e.key.clone() } else { e.text() };
        by_collection.entry(e.collection).or_default().push(text);
    }
    for (collection, items) in by_collection {
        for chunk in items.chunks(500) {
            let _ = writeln!(out, "{verb} element ip {table} {collection} {{ {} }}", chunk.join(", "));
        }
    }
}

fn write_set(out: &mut String, table: &str, name: &str, timeout: u32) {
    let _ = writeln!(out, "add set ip {table} {name} {{ type ipv4_addr; flags dynamic,timeout; timeout {timeout}s; }}");
}

/// One transaction that replaces the whole table atomically: no moment without rules, and nothing left of an
/// earlier layout. It also empties the affinity sets (clients may change backends once).
pub fn full_sync<'a>(table: &str, node: &NodeInfo, services: impl IntoIterator<Item = &'a ServiceRules>) -> String {
    let services: Vec<&ServiceRules> = services.into_iter().collect();
    let mut out = String::with_capacity(512 * services.len() + 4096);
    let _ = writeln!(out, "add table ip {table}");
    let _ = writeln!(out, "delete table ip {table}");
    base_table(&mut out, table, node);
    let node_ips: Vec<String> = node.node_ips.iter().map(|ip| ip.to_string()).collect();
    if !node_ips.is_empty() {
        let _ = writeln!(out, "add element ip {table} nodeport-ips {{ {} }}", node_ips.join(", "));
    }
    for rules in &services {
        for (set, timeout) in &rules.affinity_sets {
            write_set(&mut out, table, set, *timeout);
        }
    }
    // Every chain exists before a rule jumps to it.
    for rules in &services {
        for chain in rules.chains.keys() {
            let _ = writeln!(out, "add chain ip {table} {chain}");
        }
    }
    for rules in &services {
        for (chain, body) in &rules.chains {
            for rule in body {
                let _ = writeln!(out, "add rule ip {table} {chain} {rule}");
            }
        }
    }
    write_elements(&mut out, "add", table, services.iter().flat_map(|r| r.elements.iter()));
    out
}

/// One transaction that takes the table from the `old` rules of some Services to their `new` ones (`None`: the
/// Service has nothing in the table). Changed chains are rewritten (`add` + `flush`), elements diffed, chains
/// and affinity sets no longer wanted deleted; affinity sets that stay keep their entries. Empty when nothing
/// changes.
pub fn partial_sync(table: &str, changes: &[(Option<&ServiceRules>, Option<&ServiceRules>)]) -> String {
    let empty = ServiceRules::default();
    let mut new_sets = Vec::new();
    let mut declare = Vec::new();
    let mut rewrite = Vec::new();
    let mut removed_elements = Vec::new();
    let mut added_elements = Vec::new();
    let mut stale_chains = Vec::new();
    let mut stale_sets = Vec::new();
    for (old, new) in changes {
        let old = old.unwrap_or(&empty);
        let new = new.unwrap_or(&empty);
        if old == new {
            continue;
        }
        // A set is known by its name: a changed timeout applies from the next full sync.
        for (set, timeout) in &new.affinity_sets {
            if !old.affinity_sets.contains_key(set) {
                new_sets.push((set.as_str(), *timeout));
            }
        }
        for set in old.affinity_sets.keys() {
            if !new.affinity_sets.contains_key(set) {
                stale_sets.push(set.as_str());
            }
        }
        for (chain, body) in &new.chains {
            if old.chains.get(chain) != Some(body) {
                declare.push(chain.as_str());
                rewrite.push((chain.as_str(), body));
            }
        }
        for chain in old.chains.keys() {
            if !new.chains.contains_key(chain) {
                stale_chains.push(chain.as_str());
            }
        }
        removed_elements.extend(old.elements.difference(&new.elements));
        added_elements.extend(new.elements.difference(&old.elements));
    }
    let mut out = String::new();
    for (set, timeout) in &new_sets {
        write_set(&mut out, table, set, *timeout);
    }
    for chain in &declare {
        let _ = writeln!(out, "add chain ip {table} {chain}");
    }
    for (chain, body) in &rewrite {
        let _ = writeln!(out, "flush chain ip {table} {chain}");
        for rule in body.iter() {
            let _ = writeln!(out, "add rule ip {table} {chain} {rule}");
        }
    }
    // A key may move from one value to another: the old element goes first.
    write_elements(&mut out, "delete", table, removed_elements);
    write_elements(&mut out, "add", table, added_elements);
    for chain in &stale_chains {
        let _ = writeln!(out, "flush chain ip {table} {chain}");
    }
    for chain in &stale_chains {
        let _ = writeln!(out, "delete chain ip {table} {chain}");
    }
    for set in &stale_sets {
        let _ = writeln!(out, "delete set ip {table} {set}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Cidr, Protocol, ServiceKey};
    use crate::nft::NftCommand;
    use std::net::Ipv4Addr;

    fn node() -> NodeInfo {
        NodeInfo {
            name: "n1".into(),
            node_ips: vec![Ipv4Addr::new(192, 168, 1, 10)],
            pod_cidr: "10.42.0.0/24".parse::<Cidr>().ok(),
            service_cidrs: vec!["10.43.0.0/16".parse::<Cidr>().expect("cidr")],
        }
    }

    fn ep(last: u8) -> Endpoint {
        Endpoint { ip: Ipv4Addr::new(10, 42, 0, last), port: 8080 }
    }

    fn plan(name: &str, cluster: Vec<Endpoint>, edit: impl FnOnce(&mut PortPlan)) -> ServicePlan {
        let mut port = PortPlan {
            name: "http".into(),
            protocol: Protocol::Tcp,
            port: 80,
            node_port: None,
            has_endpoints: !cluster.is_empty(),
            cluster,
            local: Vec::new(),
            internal_local: false,
            external_local: false,
            affinity_timeout: None,
        };
        edit(&mut port);
        ServicePlan {
            key: ServiceKey { namespace: "ns".into(), name: name.into() },
            // Distinct Services need distinct ClusterIPs in one table.
            cluster_ip: Ipv4Addr::new(10, 43, 0, if name == "web" { 20 } else { 21 + name.len() as u8 }),
            ports: vec![port],
        }
    }

    fn values(rules: &ServiceRules, collection: &str) -> Vec<String> {
        rules.elements.iter().filter(|e| e.collection == collection).map(|e| e.text()).collect()
    }

    #[test]
    fn chain_names_carry_a_base32_hash_and_the_service_port() {
        let p = plan("web", vec![ep(2)], |_| {});
        let name = service_chain(&p, &p.ports[0]);
        let (prefix, rest) = name.split_at("service-".len());
        assert_eq!(prefix, "service-");
        let (hash, tail) = rest.split_at(8);
        assert!(hash.chars().all(|c| c.is_ascii_uppercase() || ('2'..='7').contains(&c)), "{hash}");
        assert_eq!(tail, "-ns/web/tcp/http");
        let other = plan("web2", vec![ep(2)], |_| {});
        assert_ne!(&service_chain(&other, &other.ports[0])["service-".len()..][..8], hash);
    }

    #[test]
    fn a_cluster_ip_port_gets_one_flat_chain_with_a_numgen_dnat() {
        let p = plan("web", vec![ep(2), ep(3)], |_| {});
        let rules = service_rules(&p, &node());
        assert_eq!(rules.chains.len(), 1);
        let (chain, body) = rules.chains.iter().next().expect("chain");
        assert_eq!(
            body,
            &vec![
                "ip daddr 10.43.0.20 ip saddr != 10.42.0.0/24 jump mark-for-masquerade".to_string(),
                "ip saddr { 10.42.0.2, 10.42.0.3 } jump mark-for-masquerade".to_string(),
                "meta l4proto tcp dnat ip addr . port to numgen random mod 2 map { 0 : 10.42.0.2 . 8080, 1 : 10.42.0.3 . 8080 }"
                    .to_string(),
            ]
        );
        assert_eq!(values(&rules, "service-ips"), [format!("10.43.0.20 . tcp . 80 : goto {chain}")]);
        assert_eq!(values(&rules, "cluster-ips"), ["10.43.0.20"]);
        assert!(rules.affinity_sets.is_empty());
    }

    #[test]
    fn a_port_without_endpoints_is_rejected_and_a_local_one_without_local_endpoints_dropped() {
        let none = service_rules(&plan("web", vec![], |p| p.node_port = Some(31000)), &node());
        assert!(none.chains.is_empty());
        assert_eq!(values(&none, "no-endpoint-services"), ["10.43.0.20 . tcp . 80 : goto reject-chain"]);
        assert_eq!(values(&none, "no-endpoint-nodeports"), ["tcp . 31000 : goto reject-chain"]);
        let local = service_rules(
            &plan("web", vec![], |p| {
                p.internal_local = true;
                p.has_endpoints = true;
            }),
            &node(),
        );
        assert_eq!(values(&local, "no-endpoint-services"), ["10.43.0.20 . tcp . 80 : drop"]);
        assert!(values(&local, "service-ips").is_empty());
    }

    #[test]
    fn client_ip_affinity_uses_endpoint_chains_and_dynamic_sets() {
        let rules = service_rules(&plan("sticky", vec![ep(2), ep(3)], |p| p.affinity_timeout = Some(60)), &node());
        assert_eq!(rules.affinity_sets.len(), 2);
        assert!(rules.affinity_sets.values().all(|t| *t == 60));
        assert_eq!(rules.chains.keys().filter(|c| c.starts_with("endpoint-")).count(), 2);
        let service = rules.chains.iter().find(|(c, _)| c.starts_with("service-")).map(|(_, b)| b).expect("chain");
        assert_eq!(service.iter().filter(|r| r.starts_with("ip saddr @affinity-")).count(), 2);
        assert!(service.last().is_some_and(|r| r.starts_with("numgen random mod 2 vmap")));
    }

    #[test]
    fn external_traffic_policy_local_short_circuits_pods_and_the_node() {
        let rules = service_rules(
            &plan("web", vec![ep(2)], |p| {
                p.node_port = Some(31000);
                p.external_local = true;
                p.local = vec![ep(2)];
            }),
            &node(),
        );
        let (name, body) = rules.chains.iter().find(|(c, _)| c.starts_with("external-")).expect("external chain");
        assert!(body[0].starts_with("ip saddr 10.42.0.0/24 goto service-"), "{body:?}");
        assert!(body.last().is_some_and(|r| r.starts_with("goto local-")), "{body:?}");
        assert_eq!(values(&rules, "service-nodeports"), [format!("tcp . 31000 : goto {name}")]);
    }

    #[test]
    fn a_partial_sync_of_unchanged_rules_is_empty() {
        let rules = service_rules(&plan("web", vec![ep(2)], |_| {}), &node());
        assert_eq!(partial_sync("t", &[(Some(&rules), Some(&rules))]), "");
    }

    #[test]
    fn a_partial_sync_rewrites_changed_chains_and_diffs_elements() {
        let old = service_rules(&plan("web", vec![ep(2)], |p| p.affinity_timeout = Some(60)), &node());
        let new = service_rules(&plan("web", vec![ep(3)], |p| p.affinity_timeout = Some(60)), &node());
        let text = partial_sync("t", &[(Some(&old), Some(&new))]);
        assert!(text.contains("flush chain ip t service-"), "{text}");
        assert!(text.contains("delete chain ip t endpoint-") && text.contains("__10.42.0.2/8080"), "{text}");
        assert!(text.contains("delete set ip t affinity-") && text.contains("add set ip t affinity-"), "{text}");
        assert!(!text.contains("cluster-ips"), "the ClusterIP element did not change: {text}");
        let gone = partial_sync("t", &[(Some(&new), None)]);
        assert!(gone.contains("delete element ip t cluster-ips { 10.43.0.20 }"), "{gone}");
    }

    #[tokio::test]
    async fn rendered_transactions_pass_nft_check() {
        let nft = NftCommand::default();
        if let Err(err) = nft.version().await {
            panic!("nft must be installed for this test (apt-get install nftables): {err}");
        }
        let table = format!("gantry-check-{}", std::process::id());
        let a = service_rules(&plan("web", vec![ep(2), ep(3)], |p| p.node_port = Some(31000)), &node());
        let b = service_rules(
            &plan("web", vec![ep(3)], |p| {
                p.node_port = Some(31000);
                p.affinity_timeout = Some(30);
            }),
            &node(),
        );
        let local = service_rules(
            &plan("loc", vec![ep(4)], |p| {
                p.node_port = Some(31001);
                p.external_local = true;
                p.internal_local = true;
                p.local = vec![ep(4)];
            }),
            &node(),
        );
        let empty = service_rules(&plan("empty", vec![], |p| p.node_port = Some(31002)), &node());
        let full = full_sync(&table, &node(), [&a, &local, &empty]);
        nft.check(&full).await.expect("full sync parses");
        let partial = partial_sync(&table, &[(Some(&a), Some(&b)), (Some(&empty), None)]);
        nft.check(&format!("{full}{partial}")).await.expect("partial sync parses on top of the full one");
        let back = partial_sync(&table, &[(Some(&b), Some(&a))]);
        nft.check(&format!("{full}{partial}{back}")).await.expect("and back");
        assert!(!nft.has_table(&table).await.expect("list"), "a check creates nothing");
    }
}
