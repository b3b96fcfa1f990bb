//! Answering one question from a [`Snapshot`], as CoreDNS's kubernetes plugin answers it.
//!
//! Names under the zone (relative labels read right to left):
//! - `svc`, `<ns>.svc` (a namespace with Services), `_<proto>.<svc>.<ns>.svc`: empty non-terminals, NODATA.
//! - `<svc>.<ns>.svc`: A/AAAA of the cluster IPs, or of the ready endpoints when headless; CNAME for an
//!   ExternalName; SRV for every port.
//! - `<endpoint>.<svc>.<ns>.svc`: the endpoint named by its hostname or dashed address.
//! - `_<port>._<proto>.<svc>.<ns>.svc`: SRV for a named port, with the targets' addresses in Additional.
//! - `<a-b-c-d>.<ns>.pod`: the address itself, echoed (CoreDNS's `pods insecure`).
//! - `dns-version`: TXT `1.1.0`; the apex: SOA.
//!
//! A name that exists without records of the asked type is NODATA (NOERROR, empty); an unknown one NXDOMAIN.
//! PTR questions for cluster IPs and headless endpoints are answered; every other name outside the zone, and
//! every PTR miss, goes to the node's resolvers.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hickory_server::proto::rr::rdata::{A, AAAA, CNAME, PTR, SRV, TXT};
use hickory_server::proto::rr::{LowerName, Name, RData, Record, RecordType};

use crate::index::{ServiceKind, ServiceRecord, Snapshot, TTL};

/// The schema version `dns-version.<zone>` answers with (the Kubernetes DNS specification's).
pub const SCHEMA_VERSION: &str = "1.1.0";

/// What to do with a question.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    /// Authoritative records.
    Answer {
        /// The answer section.
        answers: Vec<Record>,
        /// The additional section (the addresses of SRV targets).
        additionals: Vec<Record>,
    },
    /// The name exists without records of that type.
    NoData,
    /// The name does not exist.
    NxDomain,
    /// The index has not listed the cluster yet: the answer would be a guess.
    NotReady,
    /// Not this server's to answer: ask the node's resolvers.
    Forward,
}

fn answer(answers: Vec<Record>) -> Outcome {
    if answers.is_empty() { Outcome::NoData } else { Outcome::Answer { answers, additionals: Vec::new() } }
}

fn address_record(owner: &Name, ip: IpAddr) -> Record {
    let data = match ip {
        IpAddr::V4(v4) => RData::A(A(v4)),
        IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
    };
    Record::from_rdata(owner.clone(), TTL, data)
}

/// The address records of `ips` that match `qtype` (A for IPv4, AAAA for IPv6).
fn addresses(owner: &Name, qtype: RecordType, ips: impl IntoIterator<Item = IpAddr>) -> Vec<Record> {
    ips.into_iter()
        .filter(|ip| matches!((qtype, ip), (RecordType::A, IpAddr::V4(_)) | (RecordType::AAAA, IpAddr::V6(_))))
        .map(|ip| address_record(owner, ip))
        .collect()
}

/// Answers `qtype` for `name` (`lower` is its lowercase form, which is what is matched; `name` is echoed as the
/// owner of direct answers, so that the client sees the case it asked in).
pub fn lookup(snapshot: &Snapshot, name: &Name, lower: &LowerName, qtype: RecordType) -> Outcome {
    let zone = snapshot.zone();
    if !zone.contains(lower) {
        if qtype == RecordType::PTR
            && let Some(ip) = reverse_address(lower)
            && !snapshot.names_of(ip).is_empty()
        {
            let answers = snapshot
                .names_of(ip)
                .iter()
                .map(|target| Record::from_rdata(name.clone(), TTL, RData::PTR(PTR(target.clone()))))
                .collect();
            return Outcome::Answer { answers, additionals: Vec::new() };
        }
        return Outcome::Forward;
    }
    if !snapshot.synced() {
        return Outcome::NotReady;
    }
    let labels: Vec<&[u8]> = lower.iter().collect();
    let relative = &labels[..labels.len().saturating_sub(zone.label_count())];
    let Some(relative) = relative.iter().map(|l| std::str::from_utf8(l).ok()).collect::<Option<Vec<&str>>>() else {
        return Outcome::NxDomain;
    };
    match relative.as_slice() {
        [] => match qtype {
            RecordType::SOA => answer(vec![snapshot.soa().clone()]),
            _ => Outcome::NoData,
        },
        ["dns-version"] => match qtype {
            RecordType::TXT => {
                answer(vec![Record::from_rdata(name.clone(), TTL, RData::TXT(TXT::new(vec![SCHEMA_VERSION.into()])))])
            }
            _ => Outcome::NoData,
        },
        ["svc"] | ["pod"] => Outcome::NoData,
        [namespace, "svc"] => {
            if snapshot.has_namespace(namespace) {
                Outcome::NoData
            } else {
                Outcome::NxDomain
            }
        }
        [service, namespace, "svc"] => match snapshot.service(namespace, service) {
            None => Outcome::NxDomain,
            Some(record) => service_answer(record, name, qtype),
        },
        [first, service, namespace, "svc"] => match snapshot.service(namespace, service) {
            None => Outcome::NxDomain,
            Some(_) if first.starts_with('_') => Outcome::NoData,
            Some(record) => endpoint_answer(record, first, name, qtype),
        },
        [port, protocol, service, namespace, "svc"] => match snapshot.service(namespace, service) {
            None => Outcome::NxDomain,
            Some(record) => {
                let (Some(port), Some(protocol)) = (port.strip_prefix('_'), protocol.strip_prefix('_')) else {
                    return Outcome::NxDomain;
                };
                srv_answer(record, name, qtype, Some((port, protocol)))
            }
        },
        [_namespace, "pod"] => Outcome::NoData,
        [address, _namespace, "pod"] => match pod_address(address) {
            None => Outcome::NxDomain,
            Some(ip) => answer(addresses(name, qtype, [ip])),
        },
        _ => Outcome::NxDomain,
    }
}

fn service_answer(record: &ServiceRecord, name: &Name, qtype: RecordType) -> Outcome {
    match (&record.kind, qtype) {
        (ServiceKind::ExternalName(target), _) => {
            answer(vec![Record::from_rdata(name.clone(), TTL, RData::CNAME(CNAME(target.clone())))])
        }
        (_, RecordType::SRV) => srv_answer(record, name, qtype, None),
        (ServiceKind::ClusterIp(ips), _) => answer(addresses(name, qtype, ips.iter().copied())),
        (ServiceKind::Headless, _) => answer(addresses(name, qtype, record.endpoints.iter().map(|e| e.ip))),
    }
}

fn endpoint_answer(record: &ServiceRecord, label: &str, name: &Name, qtype: RecordType) -> Outcome {
    let mut matching = record.endpoints.iter().filter(|e| e.label == label).peekable();
    if matching.peek().is_none() {
        return Outcome::NxDomain;
    }
    answer(addresses(name, qtype, matching.map(|e| e.ip)))
}

/// SRV records for the Service's ports (`wanted` = (port name, protocol), or every port), CoreDNS's way:
/// priority 0, the weight 100 shared between the records, the Service's name (cluster IPs) or each endpoint's
/// name (headless) as the target, whose addresses go in Additional.
fn srv_answer(record: &ServiceRecord, name: &Name, qtype: RecordType, wanted: Option<(&str, &str)>) -> Outcome {
    let matches = |p: &crate::index::PortView| match wanted {
        Some((port, protocol)) => !p.name.is_empty() && p.name == port && p.protocol == protocol,
        None => true,
    };
    // (port, target, target's addresses)
    let mut targets: Vec<(u16, Name, Vec<IpAddr>)> = Vec::new();
    match &record.kind {
        ServiceKind::ClusterIp(ips) => {
            for port in record.ports.iter().filter(|p| matches(p)) {
                targets.push((port.port, record.fqdn.clone(), ips.clone()));
            }
        }
        ServiceKind::ExternalName(target) => {
            for port in record.ports.iter().filter(|p| matches(p)) {
                targets.push((port.port, target.clone(), Vec::new()));
            }
        }
        ServiceKind::Headless => {
            for endpoint in &record.endpoints {
                for port in endpoint.ports.iter().filter(|p| matches(p)) {
                    targets.push((port.port, endpoint.fqdn.clone(), vec![endpoint.ip]));
                }
            }
        }
    }
    if targets.is_empty() {
        // A port name the Service does not have is no name at all; a headless Service without ready endpoints
        // still has the port.
        let known = match &record.kind {
            ServiceKind::Headless => wanted.is_none() || record.ports.iter().any(matches),
            _ => wanted.is_none(),
        };
        return if known { Outcome::NoData } else { Outcome::NxDomain };
    }
    if qtype != RecordType::SRV {
        return Outcome::NoData;
    }
    let weight = u16::try_from(100 / targets.len()).unwrap_or(1).max(1);
    let mut answers = Vec::with_capacity(targets.len());
    let mut additionals = Vec::new();
    for (port, target, ips) in targets {
        for ip in &ips {
            let extra = address_record(&target, *ip);
            if !additionals.contains(&extra) {
                additionals.push(extra);
            }
        }
        answers.push(Record::from_rdata(name.clone(), TTL, RData::SRV(SRV::new(0, weight, port, target))));
    }
    Outcome::Answer { answers, additionals }
}

/// `1-2-3-4` or `fd00--5` as an address.
fn pod_address(label: &str) -> Option<IpAddr> {
    if let Ok(v4) = label.replace('-', ".").parse::<Ipv4Addr>() {
        return Some(IpAddr::V4(v4));
    }
    label.replace('-', ":").parse::<Ipv6Addr>().ok().map(IpAddr::V6)
}

/// The address a reverse name (`4.3.2.1.in-addr.arpa.`, 32 nibbles of `ip6.arpa.`) stands for.
fn reverse_address(name: &LowerName) -> Option<IpAddr> {
    let labels: Vec<&str> = name.iter().map(|l| std::str::from_utf8(l).ok()).collect::<Option<_>>()?;
    match labels.as_slice() {
        [d, c, b, a, "in-addr", "arpa"] => {
            let octet = |s: &str| s.parse::<u8>().ok();
            Some(IpAddr::V4(Ipv4Addr::new(octet(a)?, octet(b)?, octet(c)?, octet(d)?)))
        }
        [nibbles @ .., "ip6", "arpa"] if nibbles.len() == 32 => {
            let mut value: u128 = 0;
            for nibble in nibbles.iter().rev() {
                let digit = u8::from_str_radix(nibble, 16).ok().filter(|_| nibble.len() == 1)?;
                value = (value << 4) | u128::from(digit);
            }
            Some(IpAddr::V6(Ipv6Addr::from(value)))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::{ClusterIndex, ServiceSource, SliceSource, Sources, Zone};
    use k8s_openapi::api::core::v1::Service;
    use k8s_openapi::api::discovery::v1::EndpointSlice;

    fn sources() -> Sources {
        let mut sources = Sources::default();
        let services = serde_json::json!([
            {"metadata": {"name": "web", "namespace": "default"},
             "spec": {"clusterIP": "10.43.201.5", "ports": [{"name": "http", "port": 80}, {"name": "dns", "port": 53, "protocol": "UDP"}]}},
            {"metadata": {"name": "db", "namespace": "default"},
             "spec": {"clusterIP": "None", "ports": [{"name": "pg", "port": 5432}]}},
            {"metadata": {"name": "empty", "namespace": "default"}, "spec": {"clusterIP": "None"}},
            {"metadata": {"name": "ext", "namespace": "default"},
             "spec": {"type": "ExternalName", "externalName": "example.com"}},
        ]);
        for service in services.as_array().expect("array") {
            let service: Service = serde_json::from_value(service.clone()).expect("service");
            let source = ServiceSource::from_service(&service).expect("source");
            sources.services.insert((source.namespace.clone(), source.name.clone()), source);
        }
        let slice: EndpointSlice = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "db-abc", "namespace": "default", "labels": {"kubernetes.io/service-name": "db"}},
            "addressType": "IPv4", "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}],
            "endpoints": [{"addresses": ["10.42.0.5"], "hostname": "db-0"}, {"addresses": ["10.42.1.7"]},
                          {"addresses": ["10.42.1.8"], "conditions": {"ready": false}}]}))
        .expect("slice");
        sources.slices.insert(("default".into(), "db-abc".into()), SliceSource::from_slice(&slice).expect("slice"));
        sources
    }

    fn snapshot() -> Snapshot {
        sources().snapshot(&Zone::new("cluster.local").expect("zone"), 1)
    }

    fn ask(snapshot: &Snapshot, name: &str, qtype: RecordType) -> Outcome {
        let name = Name::from_ascii(name).expect("name");
        lookup(snapshot, &name, &LowerName::new(&name), qtype)
    }

    fn data(outcome: &Outcome) -> Vec<String> {
        match outcome {
            Outcome::Answer { answers, .. } => answers.iter().map(|r| r.data.to_string()).collect(),
            other => panic!("expected an answer, got {other:?}"),
        }
    }

    #[test]
    fn a_cluster_ip_service_answers_a_and_has_no_aaaa() {
        let s = snapshot();
        assert_eq!(data(&ask(&s, "web.default.svc.cluster.local.", RecordType::A)), vec!["10.43.201.5"]);
        assert_eq!(ask(&s, "web.default.svc.cluster.local.", RecordType::AAAA), Outcome::NoData);
        assert_eq!(ask(&s, "web.default.svc.cluster.local.", RecordType::TXT), Outcome::NoData);
    }

    #[test]
    fn names_match_whatever_their_case_and_the_answer_echoes_the_question() {
        let s = snapshot();
        let outcome = ask(&s, "WEB.Default.SVC.cluster.LOCAL.", RecordType::A);
        let Outcome::Answer { answers, .. } = &outcome else { panic!("expected an answer, got {outcome:?}") };
        assert_eq!(answers[0].name.to_ascii(), "WEB.Default.SVC.cluster.LOCAL.");
        assert_eq!(answers[0].ttl, TTL);
    }

    #[test]
    fn a_headless_service_answers_every_ready_endpoint_and_nodata_when_none_is_ready() {
        let s = snapshot();
        assert_eq!(data(&ask(&s, "db.default.svc.cluster.local.", RecordType::A)), vec!["10.42.0.5", "10.42.1.7"]);
        assert_eq!(ask(&s, "empty.default.svc.cluster.local.", RecordType::A), Outcome::NoData);
    }

    #[test]
    fn endpoints_resolve_by_hostname_or_dashed_address() {
        let s = snapshot();
        assert_eq!(data(&ask(&s, "db-0.db.default.svc.cluster.local.", RecordType::A)), vec!["10.42.0.5"]);
        assert_eq!(data(&ask(&s, "10-42-1-7.db.default.svc.cluster.local.", RecordType::A)), vec!["10.42.1.7"]);
        assert_eq!(ask(&s, "db-9.db.default.svc.cluster.local.", RecordType::A), Outcome::NxDomain);
        assert_eq!(ask(&s, "10-42-1-8.db.default.svc.cluster.local.", RecordType::A), Outcome::NxDomain);
    }

    #[test]
    fn srv_records_name_the_service_for_cluster_ips_with_its_address_in_additional() {
        let s = snapshot();
        let outcome = ask(&s, "_http._tcp.web.default.svc.cluster.local.", RecordType::SRV);
        assert_eq!(data(&outcome), vec!["0 100 80 web.default.svc.cluster.local."]);
        let Outcome::Answer { additionals, .. } = outcome else { unreachable!() };
        assert_eq!(additionals.len(), 1);
        assert_eq!(additionals[0].name.to_ascii(), "web.default.svc.cluster.local.");
        assert_eq!(additionals[0].data.to_string(), "10.43.201.5");
        assert_eq!(data(&ask(&s, "_dns._udp.web.default.svc.cluster.local.", RecordType::SRV)).len(), 1);
        // The port exists over UDP only; another port name does not exist at all.
        assert_eq!(ask(&s, "_dns._tcp.web.default.svc.cluster.local.", RecordType::SRV), Outcome::NxDomain);
        assert_eq!(ask(&s, "_ftp._tcp.web.default.svc.cluster.local.", RecordType::SRV), Outcome::NxDomain);
        assert_eq!(ask(&s, "_http._tcp.web.default.svc.cluster.local.", RecordType::A), Outcome::NoData);
        assert_eq!(ask(&s, "_tcp.web.default.svc.cluster.local.", RecordType::SRV), Outcome::NoData);
    }

    #[test]
    fn srv_records_of_a_headless_service_name_each_ready_endpoint() {
        let s = snapshot();
        let outcome = ask(&s, "_pg._tcp.db.default.svc.cluster.local.", RecordType::SRV);
        assert_eq!(
            data(&outcome),
            vec!["0 50 5432 db-0.db.default.svc.cluster.local.", "0 50 5432 10-42-1-7.db.default.svc.cluster.local."]
        );
        let Outcome::Answer { additionals, .. } = outcome else { unreachable!() };
        assert_eq!(additionals.iter().map(|r| r.data.to_string()).collect::<Vec<_>>(), vec!["10.42.0.5", "10.42.1.7"]);
        assert_eq!(data(&ask(&s, "web.default.svc.cluster.local.", RecordType::SRV)).len(), 2);
    }

    #[test]
    fn an_external_name_is_a_cname() {
        let s = snapshot();
        assert_eq!(data(&ask(&s, "ext.default.svc.cluster.local.", RecordType::A)), vec!["example.com."]);
    }

    #[test]
    fn pod_names_echo_their_address() {
        let s = snapshot();
        assert_eq!(data(&ask(&s, "10-42-0-9.any.pod.cluster.local.", RecordType::A)), vec!["10.42.0.9"]);
        assert_eq!(data(&ask(&s, "fd00--9.any.pod.cluster.local.", RecordType::AAAA)), vec!["fd00::9"]);
        assert_eq!(ask(&s, "10-42-0-9.any.pod.cluster.local.", RecordType::AAAA), Outcome::NoData);
        assert_eq!(ask(&s, "not-an-ip.any.pod.cluster.local.", RecordType::A), Outcome::NxDomain);
    }

    #[test]
    fn empty_non_terminals_are_nodata_and_unknown_names_nxdomain() {
        let s = snapshot();
        assert_eq!(ask(&s, "svc.cluster.local.", RecordType::A), Outcome::NoData);
        assert_eq!(ask(&s, "default.svc.cluster.local.", RecordType::A), Outcome::NoData);
        assert_eq!(ask(&s, "nowhere.svc.cluster.local.", RecordType::A), Outcome::NxDomain);
        assert_eq!(ask(&s, "missing.default.svc.cluster.local.", RecordType::A), Outcome::NxDomain);
        assert_eq!(ask(&s, "web.nowhere.svc.cluster.local.", RecordType::A), Outcome::NxDomain);
        assert_eq!(ask(&s, "a.b.c.d.e.f.svc.cluster.local.", RecordType::A), Outcome::NxDomain);
        assert_eq!(ask(&s, "other.cluster.local.", RecordType::A), Outcome::NxDomain);
        assert_eq!(ask(&s, "cluster.local.", RecordType::A), Outcome::NoData);
    }

    #[test]
    fn the_apex_has_a_soa_and_dns_version_a_txt() {
        let s = snapshot();
        let soa = data(&ask(&s, "cluster.local.", RecordType::SOA));
        assert!(soa[0].starts_with("ns.dns.cluster.local. hostmaster.cluster.local. 1 "), "{soa:?}");
        assert_eq!(data(&ask(&s, "dns-version.cluster.local.", RecordType::TXT)), vec!["1.1.0"]);
    }

    #[test]
    fn cluster_ips_and_headless_endpoints_have_ptr_records_and_other_addresses_are_forwarded() {
        let s = snapshot();
        assert_eq!(
            data(&ask(&s, "5.201.43.10.in-addr.arpa.", RecordType::PTR)),
            vec!["web.default.svc.cluster.local."]
        );
        assert_eq!(
            data(&ask(&s, "5.0.42.10.in-addr.arpa.", RecordType::PTR)),
            vec!["db-0.db.default.svc.cluster.local."]
        );
        assert_eq!(ask(&s, "9.9.9.9.in-addr.arpa.", RecordType::PTR), Outcome::Forward);
    }

    #[test]
    fn ipv6_reverse_names_are_read_nibble_by_nibble() {
        let name = LowerName::new(
            &Name::from_ascii("5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa.").unwrap(),
        );
        assert_eq!(reverse_address(&name), Some("fd00::5".parse().unwrap()));
    }

    #[test]
    fn names_outside_the_zone_are_forwarded() {
        let s = snapshot();
        assert_eq!(ask(&s, "example.com.", RecordType::A), Outcome::Forward);
        assert_eq!(ask(&s, "local.", RecordType::A), Outcome::Forward);
    }

    #[test]
    fn the_zone_is_not_answered_before_the_first_list() {
        let index = ClusterIndex::new(Zone::new("cluster.local").expect("zone"));
        let s = index.snapshot();
        assert_eq!(ask(&s, "web.default.svc.cluster.local.", RecordType::A), Outcome::NotReady);
        assert_eq!(ask(&s, "example.com.", RecordType::A), Outcome::Forward);
        index.publish(sources().snapshot(&Zone::new("cluster.local").expect("zone"), 2));
        assert_eq!(data(&ask(&index.snapshot(), "web.default.svc.cluster.local.", RecordType::A)).len(), 1);
    }

    #[test]
    fn another_cluster_domain_is_served_instead() {
        let s = sources().snapshot(&Zone::new("corp.example").expect("zone"), 1);
        assert_eq!(data(&ask(&s, "web.default.svc.corp.example.", RecordType::A)), vec!["10.43.201.5"]);
        assert_eq!(ask(&s, "web.default.svc.cluster.local.", RecordType::A), Outcome::Forward);
    }
}
