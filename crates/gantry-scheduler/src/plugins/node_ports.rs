//! NodePorts: a pod asking for host ports fits only nodes where those ports are free, as kube-scheduler's
//! plugin of the same name decides. `0.0.0.0` (or no host IP) binds every address, so it conflicts with the
//! same protocol and port on any IP, and any IP conflicts with it.

use crate::framework::{CycleState, Filter, Plugin, PreFilter, Status};
use crate::snapshot::{HostPort, NodeInfo, PodInfo, Snapshot};

/// The reason given for a node where a wanted port is taken.
pub const ERR_REASON: &str = "node(s) didn't have free ports for the requested pod ports";

const STATE_KEY: &str = "PreFilterNodePorts";
const BIND_ALL: &str = "0.0.0.0";

/// The host ports the pod wants, computed once per cycle.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WantedPorts(pub Vec<HostPort>);

/// Filters out nodes where one of the pod's host ports is already used.
#[derive(Clone, Copy, Debug, Default)]
pub struct NodePorts;

impl NodePorts {
    /// The plugin (it takes no arguments).
    pub fn new() -> NodePorts {
        NodePorts
    }
}

impl Plugin for NodePorts {
    fn name(&self) -> &'static str {
        "NodePorts"
    }
}

/// The host ports of the pod's sidecars (init containers with `restartPolicy: Always`, which run as long as
/// the pod) and regular containers, as kube-scheduler counts them; other init containers have exited before
/// the pod runs, and ports without a host port bind nothing on the node.
pub fn wanted_ports(pod: &PodInfo) -> Vec<HostPort> {
    let Some(spec) = &pod.pod.spec else { return Vec::new() };
    let sidecars = spec.init_containers.iter().flatten().filter(|c| c.restart_policy.as_deref() == Some("Always"));
    sidecars
        .chain(&spec.containers)
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            let host_port = p.host_port.filter(|h| *h > 0)?;
            Some((p.host_ip.clone().unwrap_or_default(), p.protocol.clone().unwrap_or_default(), host_port))
        })
        .collect()
}

/// An empty IP binds every address and an empty protocol is TCP, as the API defaults them.
fn sanitize((ip, protocol, port): &HostPort) -> (&str, &str, i32) {
    let ip = if ip.is_empty() { BIND_ALL } else { ip.as_str() };
    let protocol = if protocol.is_empty() { "TCP" } else { protocol.as_str() };
    (ip, protocol, *port)
}

/// Whether `wanted` collides with a port in `used`.
pub fn conflicts(used: &[HostPort], wanted: &HostPort) -> bool {
    let (ip, protocol, port) = sanitize(wanted);
    if port <= 0 {
        return false;
    }
    used.iter().map(sanitize).any(|(used_ip, used_protocol, used_port)| {
        used_port == port && used_protocol == protocol && (ip == BIND_ALL || used_ip == BIND_ALL || used_ip == ip)
    })
}

impl PreFilter for NodePorts {
    fn pre_filter(&self, state: &mut CycleState, pod: &PodInfo, _snapshot: &Snapshot) -> Status {
        let wanted = wanted_ports(pod);
        if wanted.is_empty() {
            return Status::skip();
        }
        state.write(STATE_KEY, WantedPorts(wanted));
        Status::success()
    }
}

impl Filter for NodePorts {
    fn filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        // Without PreFilter in the profile, the ports are computed here instead.
        let computed;
        let wanted = match state.read::<WantedPorts>(STATE_KEY) {
            Some(w) => &w.0,
            None => {
                computed = wanted_ports(pod);
                &computed
            }
        };
        if wanted.iter().any(|w| conflicts(&node.used_ports, w)) {
            Status::unschedulable(ERR_REASON)
        } else {
            Status::success()
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::Arc;

    use k8s_openapi::api::core::v1::{Node, Pod};
    use serde_json::{Value, json};

    use super::*;
    use crate::framework::{Code, Decision, PluginSet, Profile};

    fn pod(name: &str, ports: Value) -> PodInfo {
        let pod: Pod = serde_json::from_value(json!({"metadata": {"name": name, "namespace": "d", "uid": name},
            "spec": {"containers": [{"name": "c", "image": "nginx", "ports": ports}]}}))
        .unwrap();
        PodInfo::new(Arc::new(pod))
    }

    fn node(name: &str, placed: Vec<PodInfo>) -> NodeInfo {
        let node: Node = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
        let mut info = NodeInfo::new(Arc::new(node));
        for p in placed {
            info.add_pod(Arc::new(p));
        }
        info
    }

    fn port(ip: &str, protocol: &str, port: i32) -> HostPort {
        (ip.to_string(), protocol.to_string(), port)
    }

    fn run(wanted: Value, used: Value) -> Status {
        let pod = pod("new", wanted);
        let mut state = CycleState::default();
        let pre = NodePorts.pre_filter(&mut state, &pod, &Snapshot::default());
        if pre.code == Code::Skip {
            return pre;
        }
        NodePorts.filter(&state, &pod, &node("n", vec![self::pod("old", used)]))
    }

    #[test]
    fn a_pod_without_host_ports_skips_the_filter() {
        let status = run(json!([{"containerPort": 80}]), json!([{"containerPort": 80, "hostPort": 80}]));
        assert_eq!(status.code, Code::Skip);
    }

    #[test]
    fn the_same_port_and_protocol_on_any_address_conflicts() {
        let status =
            run(json!([{"containerPort": 80, "hostPort": 8080}]), json!([{"containerPort": 1, "hostPort": 8080}]));
        assert_eq!(status, Status::unschedulable(ERR_REASON));
    }

    #[test]
    fn another_protocol_on_the_same_port_is_free() {
        let status = run(
            json!([{"containerPort": 53, "hostPort": 53, "protocol": "UDP"}]),
            json!([{"containerPort": 53, "hostPort": 53}]),
        );
        assert!(status.is_success());
    }

    #[test]
    fn distinct_specific_addresses_do_not_conflict() {
        let status = run(
            json!([{"containerPort": 80, "hostPort": 80, "hostIP": "10.0.0.1"}]),
            json!([{"containerPort": 80, "hostPort": 80, "hostIP": "10.0.0.2"}]),
        );
        assert!(status.is_success());
    }

    #[test]
    fn a_specific_address_conflicts_with_a_wildcard_in_use() {
        let status = run(
            json!([{"containerPort": 80, "hostPort": 80, "hostIP": "10.0.0.1"}]),
            json!([{"containerPort": 80, "hostPort": 80, "hostIP": "0.0.0.0"}]),
        );
        assert_eq!(status.code, Code::Unschedulable);
    }

    #[test]
    fn a_wildcard_conflicts_with_a_specific_address_in_use() {
        let status = run(
            json!([{"containerPort": 80, "hostPort": 80}]),
            json!([{"containerPort": 80, "hostPort": 80, "hostIP": "10.0.0.1"}]),
        );
        assert_eq!(status.code, Code::Unschedulable);
    }

    #[test]
    fn conflicts_treat_empty_fields_as_their_defaults() {
        assert!(conflicts(&[port("", "", 80)], &port("127.0.0.1", "TCP", 80)));
        assert!(!conflicts(&[port("", "", 80)], &port("127.0.0.1", "SCTP", 80)));
        assert!(!conflicts(&[port("", "TCP", 80)], &port("", "TCP", 0)));
    }

    #[test]
    fn sidecar_ports_are_wanted_and_plain_init_container_ports_are_not() {
        let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "p", "namespace": "d"},
            "spec": {"containers": [{"name": "c", "image": "app", "ports": [{"containerPort": 80, "hostPort": 80}]}],
                     "initContainers": [
                         {"name": "setup", "image": "app", "ports": [{"containerPort": 1, "hostPort": 1}]},
                         {"name": "proxy", "image": "app", "restartPolicy": "Always",
                          "ports": [{"containerPort": 2, "hostPort": 2, "protocol": "UDP"}]}]}}))
        .unwrap();
        let wanted = wanted_ports(&PodInfo::new(Arc::new(pod)));
        assert_eq!(wanted, vec![port("", "UDP", 2), port("", "", 80)]);
    }

    #[test]
    fn filter_without_pre_filter_still_sees_the_ports() {
        let pod = pod("new", json!([{"containerPort": 80, "hostPort": 80}]));
        let node = node("n", vec![self::pod("old", json!([{"containerPort": 80, "hostPort": 80}]))]);
        assert_eq!(NodePorts.filter(&CycleState::default(), &pod, &node).code, Code::Unschedulable);
    }

    #[test]
    fn a_profile_places_the_pod_where_its_port_is_free() {
        let used = json!([{"containerPort": 80, "hostPort": 80}]);
        let profile = Profile {
            scheduler_name: "default-scheduler".into(),
            plugins: PluginSet {
                pre_filter: vec![Arc::new(NodePorts)],
                filter: vec![Arc::new(NodePorts)],
                ..Default::default()
            },
        };
        let busy = Arc::new(node("busy", vec![pod("old", used.clone())]));
        let snapshot = Snapshot::new(vec![Arc::clone(&busy), Arc::new(node("free", vec![]))]);
        let (decision, _) = profile.schedule(&pod("new", used.clone()), &snapshot, 0);
        let Decision::Place { node, .. } = decision else { panic!("not placed") };
        assert_eq!(node, "free");
        let (decision, _) = profile.schedule(&pod("new", used), &Snapshot::new(vec![busy]), 0);
        let Decision::Unschedulable { message, .. } = decision else { panic!("placed") };
        assert_eq!(message, "0/1 nodes are available: 1 node(s) didn't have free ports for the requested pod ports.");
    }
}
