//! A pod's status as the kubelet writes it, computed from what the runtime reports about its containers and
//! what the pod worker decided (why a container waits, whether it is ready): container states with reasons,
//! restart counts and last states, the pod's phase, and its conditions.

use std::collections::BTreeMap;

use gantry_runtime::cri::{ContainerState, ContainerStatus as RuntimeStatus};
use k8s_openapi::api::core::v1::{
    Container, ContainerState as ApiState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    ContainerStatus, HostIP, Pod, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// The scheme of container IDs in pod status (`gantry://<id>`), as `containerd://` is containerd's.
pub const CONTAINER_ID_SCHEME: &str = "gantry://";

/// What the worker knows about one container of the pod.
#[derive(Clone, Debug, Default)]
pub struct ContainerView {
    /// The runtime's newest instance of the container.
    pub latest: Option<RuntimeStatus>,
    /// The instance before it, for `lastState`.
    pub previous: Option<RuntimeStatus>,
    /// Why the container waits, when the worker holds it back (`CrashLoopBackOff`, `ErrImagePull`, ...).
    pub waiting: Option<(String, String)>,
    /// The readiness probe's verdict (true without a probe once running).
    pub ready: bool,
    /// The startup probe's verdict (true without a probe once running).
    pub started: bool,
    /// The termination message of the newest instance, once it exited.
    pub message: Option<String>,
    /// The termination message of the instance before it.
    pub previous_message: Option<String>,
}

fn time(unix_nanos: i64) -> Option<Time> {
    (unix_nanos > 0).then(|| jiff::Timestamp::from_nanosecond(i128::from(unix_nanos)).ok().map(Time)).flatten()
}

fn terminated(status: &RuntimeStatus, message: Option<&String>) -> ContainerStateTerminated {
    ContainerStateTerminated {
        exit_code: status.exit_code,
        reason: Some(if status.reason.is_empty() {
            if status.exit_code == 0 { "Completed".into() } else { "Error".into() }
        } else {
            status.reason.clone()
        }),
        message: message.filter(|m| !m.is_empty()).cloned(),
        started_at: time(status.started_at),
        finished_at: time(status.finished_at),
        container_id: Some(format!("{CONTAINER_ID_SCHEME}{}", status.id)),
        signal: None,
    }
}

fn waiting(reason: &str, message: Option<&str>) -> ApiState {
    ApiState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(reason.to_string()),
            message: message.filter(|m| !m.is_empty()).map(str::to_string),
        }),
        ..Default::default()
    }
}

/// One container's status. `default_waiting` is the reason for a container that has no instance yet
/// (`ContainerCreating`, or `PodInitializing` for app containers while init containers run).
pub fn container_status(container: &Container, view: &ContainerView, default_waiting: &str) -> ContainerStatus {
    let last_of = |status: Option<&RuntimeStatus>, message: Option<&String>| ApiState {
        terminated: status.filter(|s| s.state == ContainerState::Exited).map(|s| terminated(s, message)),
        ..Default::default()
    };
    let (state, last_state) = match &view.latest {
        None => {
            let (reason, message) =
                view.waiting.clone().unwrap_or_else(|| (default_waiting.to_string(), String::new()));
            (waiting(&reason, Some(&message)), ApiState::default())
        }
        Some(latest) => match latest.state {
            ContainerState::Running => (
                ApiState {
                    running: Some(ContainerStateRunning { started_at: time(latest.started_at) }),
                    ..Default::default()
                },
                last_of(view.previous.as_ref(), view.previous_message.as_ref()),
            ),
            ContainerState::Exited => match &view.waiting {
                // It exited and will run again: it waits, and the run that ended is its last state.
                Some((reason, message)) => {
                    (waiting(reason, Some(message)), last_of(Some(latest), view.message.as_ref()))
                }
                None => (
                    ApiState { terminated: Some(terminated(latest, view.message.as_ref())), ..Default::default() },
                    last_of(view.previous.as_ref(), view.previous_message.as_ref()),
                ),
            },
            ContainerState::Created | ContainerState::Unknown => {
                let (reason, message) =
                    view.waiting.clone().unwrap_or_else(|| ("ContainerCreating".to_string(), String::new()));
                (waiting(&reason, Some(&message)), last_of(view.previous.as_ref(), view.previous_message.as_ref()))
            }
        },
    };
    let running = view.latest.as_ref().is_some_and(|l| l.state == ContainerState::Running);
    ContainerStatus {
        name: container.name.clone(),
        image: container.image.clone().unwrap_or_default(),
        image_id: view.latest.as_ref().map(|l| l.image_ref.clone()).unwrap_or_default(),
        container_id: view.latest.as_ref().map(|l| format!("{CONTAINER_ID_SCHEME}{}", l.id)),
        restart_count: view.latest.as_ref().map(|l| l.attempt as i32).unwrap_or(0),
        ready: running && view.ready,
        started: Some(running && view.started),
        state: Some(state),
        last_state: Some(last_state),
        ..Default::default()
    }
}

/// The pod's phase from its containers' statuses, as the kubelet decides it.
pub fn phase(pod: &Pod, init: &[ContainerStatus], containers: &[ContainerStatus]) -> &'static str {
    let policy = pod.spec.as_ref().and_then(|s| s.restart_policy.as_deref()).unwrap_or("Always");
    let exited = |s: &ContainerStatus| s.state.as_ref().and_then(|st| st.terminated.as_ref()).map(|t| t.exit_code);
    // Init containers: one that failed for good fails the pod; one not done yet keeps it pending.
    for status in init {
        match exited(status) {
            Some(0) => {}
            Some(_) if policy == "Never" => return "Failed",
            _ => {
                // Init done already shows as running app containers (their records can outlive the init ones).
                if containers.iter().any(|c| c.container_id.is_some()) {
                    break;
                }
                return "Pending";
            }
        }
    }
    let (mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0);
    for status in containers {
        let state = status.state.as_ref();
        if state.and_then(|s| s.running.as_ref()).is_some() {
            running += 1;
        } else if let Some(code) = exited(status) {
            stopped += 1;
            if code == 0 {
                succeeded += 1;
            }
        } else if status.last_state.as_ref().and_then(|s| s.terminated.as_ref()).is_some() {
            stopped += 1;
        } else {
            waiting += 1;
        }
    }
    if waiting > 0 {
        return "Pending";
    }
    if running > 0 {
        return "Running";
    }
    if stopped == 0 {
        return "Pending";
    }
    match policy {
        "Always" => "Running",
        _ if stopped == succeeded && containers.iter().all(|c| exited(c).is_some()) => "Succeeded",
        "OnFailure" => "Running",
        _ => "Failed",
    }
}

fn condition(type_: &str, ok: bool, reason: Option<&str>, message: Option<String>) -> PodCondition {
    PodCondition {
        type_: type_.to_string(),
        status: if ok { "True".into() } else { "False".into() },
        reason: reason.filter(|_| !ok).map(str::to_string),
        message: message.filter(|_| !ok),
        ..Default::default()
    }
}

/// Everything the worker contributes to a pod's status.
pub struct StatusInputs<'a> {
    /// Init containers' views by name.
    pub init: &'a BTreeMap<String, ContainerView>,
    /// App containers' views by name.
    pub containers: &'a BTreeMap<String, ContainerView>,
    /// The sandbox is up (its network ready).
    pub sandbox_ready: bool,
    /// Pod IPs, first the primary.
    pub pod_ips: &'a [String],
    /// Node IPs.
    pub host_ips: &'a [String],
    /// The QoS class's name.
    pub qos_class: &'a str,
    /// The phase decided already (a pod that ended stays ended).
    pub terminal_phase: Option<&'a str>,
}

/// The full status the agent writes, keeping conditions others own (PodScheduled, DisruptionTarget, readiness
/// gates) and transition times of conditions that did not change.
pub fn pod_status(pod: &Pod, inputs: &StatusInputs<'_>, now: &Time) -> PodStatus {
    let spec = pod.spec.clone().unwrap_or_default();
    let old = pod.status.clone().unwrap_or_default();
    let init_done_already =
        spec.containers.iter().any(|c| inputs.containers.get(&c.name).is_some_and(|v| v.latest.is_some()));
    let init: Vec<ContainerStatus> = spec
        .init_containers
        .iter()
        .flatten()
        .map(|c| container_status(c, inputs.init.get(&c.name).unwrap_or(&ContainerView::default()), "PodInitializing"))
        .collect();
    let app_waiting = if spec.init_containers.as_ref().is_some_and(|i| !i.is_empty()) && !init_done_already {
        "PodInitializing"
    } else {
        "ContainerCreating"
    };
    let containers: Vec<ContainerStatus> = spec
        .containers
        .iter()
        .map(|c| container_status(c, inputs.containers.get(&c.name).unwrap_or(&ContainerView::default()), app_waiting))
        .collect();
    let phase = inputs.terminal_phase.unwrap_or_else(|| phase(pod, &init, &containers));
    let terminal = phase == "Succeeded" || phase == "Failed";

    let incomplete: Vec<&str> = init
        .iter()
        .filter(|s| {
            // A sidecar (restartPolicy Always) is done initialising once it runs.
            let sidecar = spec
                .init_containers
                .iter()
                .flatten()
                .any(|c| c.name == s.name && c.restart_policy.as_deref() == Some("Always"));
            let running = s.state.as_ref().is_some_and(|st| st.running.is_some());
            let done_by_running = init_done_already || (sidecar && running);
            !done_by_running && s.state.as_ref().and_then(|st| st.terminated.as_ref()).is_none_or(|t| t.exit_code != 0)
        })
        .map(|s| s.name.as_str())
        .collect();
    let unready: Vec<&str> = containers.iter().filter(|s| !s.ready).map(|s| s.name.as_str()).collect();
    let list = |names: &[&str]| format!("[{}]", names.join(" "));
    let initialized = incomplete.is_empty();
    let containers_ready = unready.is_empty() && !terminal;
    let gates_ready = spec
        .readiness_gates
        .iter()
        .flatten()
        .all(|gate| old.conditions.iter().flatten().any(|c| c.type_ == gate.condition_type && c.status == "True"));
    let not_ready_reason = if terminal { "PodCompleted" } else { "ContainersNotReady" };
    let ours = [
        condition("PodReadyToStartContainers", inputs.sandbox_ready, None, None),
        condition(
            "Initialized",
            initialized,
            Some("ContainersNotInitialized"),
            Some(format!("containers with incomplete status: {}", list(&incomplete))),
        ),
        condition(
            "ContainersReady",
            containers_ready,
            Some(not_ready_reason),
            (!terminal).then(|| format!("containers with unready status: {}", list(&unready))),
        ),
        if containers_ready && !gates_ready {
            condition(
                "Ready",
                false,
                Some("ReadinessGatesNotReady"),
                Some("the status of pod readiness gate is not set to true".into()),
            )
        } else {
            condition(
                "Ready",
                containers_ready,
                Some(not_ready_reason),
                (!terminal).then(|| format!("containers with unready status: {}", list(&unready))),
            )
        },
    ];
    let mut conditions: Vec<PodCondition> =
        old.conditions.iter().flatten().filter(|c| !ours.iter().any(|o| o.type_ == c.type_)).cloned().collect();
    for mut condition in ours {
        let previous = old.conditions.iter().flatten().find(|c| c.type_ == condition.type_);
        condition.last_transition_time = match previous {
            Some(p) if p.status == condition.status => p.last_transition_time.clone(),
            _ => Some(now.clone()),
        };
        conditions.push(condition);
    }
    // A pod bound without the scheduler (nodeName set at creation) is scheduled all the same, as the kubelet says.
    if !conditions.iter().any(|c| c.type_ == "PodScheduled") {
        conditions.push(PodCondition {
            type_: "PodScheduled".into(),
            status: "True".into(),
            last_transition_time: Some(now.clone()),
            ..Default::default()
        });
    }
    let order = ["PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled"];
    conditions.sort_by_key(|c| order.iter().position(|o| *o == c.type_).unwrap_or(order.len()));

    PodStatus {
        phase: Some(phase.to_string()),
        conditions: Some(conditions),
        host_ip: inputs.host_ips.first().cloned(),
        host_ips: (!inputs.host_ips.is_empty())
            .then(|| inputs.host_ips.iter().map(|ip| HostIP { ip: ip.clone() }).collect()),
        pod_ip: inputs.pod_ips.first().cloned(),
        pod_ips: (!inputs.pod_ips.is_empty())
            .then(|| inputs.pod_ips.iter().map(|ip| PodIP { ip: ip.clone() }).collect()),
        start_time: old.start_time.clone().or_else(|| Some(now.clone())),
        qos_class: Some(inputs.qos_class.to_string()),
        init_container_statuses: (!init.is_empty()).then_some(init),
        container_statuses: Some(containers),
        ..old
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runtime_status(name: &str, state: ContainerState, attempt: u32, exit_code: i32) -> RuntimeStatus {
        RuntimeStatus {
            id: format!("{name}{attempt}"),
            sandbox_id: "s".into(),
            name: name.into(),
            attempt,
            state,
            created_at: 1_700_000_000_000_000_000,
            started_at: 1_700_000_001_000_000_000,
            finished_at: if state == ContainerState::Exited { 1_700_000_002_000_000_000 } else { 0 },
            exit_code,
            reason: String::new(),
            message: String::new(),
            image: "busybox".into(),
            image_ref: "sha256:abc".into(),
            log_path: Default::default(),
            pid: None,
            labels: Default::default(),
            annotations: Default::default(),
        }
    }

    fn pod(policy: &str, containers: &[&str], init: &[&str]) -> Pod {
        let list = |names: &[&str]| {
            names.iter().map(|n| serde_json::json!({"name": n, "image": "busybox"})).collect::<Vec<_>>()
        };
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "default", "uid": "u"},
            "spec": {"restartPolicy": policy, "containers": list(containers), "initContainers": list(init)},
            "status": {"conditions": [{"type": "PodScheduled", "status": "True"}]}
        }))
        .expect("pod")
    }

    fn view(status: Option<RuntimeStatus>) -> ContainerView {
        ContainerView { latest: status, ready: true, started: true, ..Default::default() }
    }

    fn now() -> Time {
        Time(jiff::Timestamp::now())
    }

    fn status_of(
        pod: &Pod,
        init: &BTreeMap<String, ContainerView>,
        containers: &BTreeMap<String, ContainerView>,
    ) -> PodStatus {
        let inputs = StatusInputs {
            init,
            containers,
            sandbox_ready: true,
            pod_ips: &["10.1.0.5".to_string()],
            host_ips: &["192.168.1.2".to_string()],
            qos_class: "BestEffort",
            terminal_phase: None,
        };
        pod_status(pod, &inputs, &now())
    }

    #[test]
    fn a_running_ready_pod_is_running_and_ready_with_its_ips() {
        let p = pod("Always", &["a"], &[]);
        let containers =
            BTreeMap::from([("a".to_string(), view(Some(runtime_status("a", ContainerState::Running, 0, 0))))]);
        let status = status_of(&p, &BTreeMap::new(), &containers);
        assert_eq!(status.phase.as_deref(), Some("Running"));
        let conditions = status.conditions.expect("conditions");
        let ready = conditions.iter().find(|c| c.type_ == "Ready").expect("Ready");
        assert_eq!(ready.status, "True");
        assert!(conditions.iter().any(|c| c.type_ == "PodScheduled"), "conditions of others are kept");
        assert_eq!((status.pod_ip.as_deref(), status.host_ip.as_deref()), (Some("10.1.0.5"), Some("192.168.1.2")));
        let c = &status.container_statuses.expect("statuses")[0];
        assert_eq!(c.container_id.as_deref(), Some("gantry://a0"));
        assert!(c.ready && c.started == Some(true));
    }

    #[test]
    fn a_crashing_container_waits_in_back_off_with_its_last_run_as_last_state() {
        let p = pod("Always", &["a"], &[]);
        let mut v = view(Some(runtime_status("a", ContainerState::Exited, 3, 1)));
        v.waiting = Some(("CrashLoopBackOff".into(), "back-off 40s restarting failed container".into()));
        let status = status_of(&p, &BTreeMap::new(), &BTreeMap::from([("a".to_string(), v)]));
        assert_eq!(status.phase.as_deref(), Some("Running"), "restartPolicy Always keeps it running");
        let c = &status.container_statuses.expect("statuses")[0];
        assert_eq!(c.restart_count, 3);
        let waiting = c.state.as_ref().and_then(|s| s.waiting.as_ref()).expect("waiting");
        assert_eq!(waiting.reason.as_deref(), Some("CrashLoopBackOff"));
        let last = c.last_state.as_ref().and_then(|s| s.terminated.as_ref()).expect("last state");
        assert_eq!((last.exit_code, last.reason.as_deref()), (1, Some("Error")));
        assert!(!c.ready);
    }

    #[test]
    fn phases_follow_the_restart_policy() {
        let exited = |code| view(Some(runtime_status("a", ContainerState::Exited, 0, code)));
        for (policy, code, expected) in
            [("Never", 0, "Succeeded"), ("Never", 2, "Failed"), ("OnFailure", 0, "Succeeded"), ("Always", 0, "Running")]
        {
            let p = pod(policy, &["a"], &[]);
            let status = status_of(&p, &BTreeMap::new(), &BTreeMap::from([("a".to_string(), exited(code))]));
            assert_eq!(status.phase.as_deref(), Some(expected), "{policy} exit {code}");
        }
        let p = pod("Always", &["a"], &[]);
        let status = status_of(&p, &BTreeMap::new(), &BTreeMap::from([("a".to_string(), view(None))]));
        assert_eq!(status.phase.as_deref(), Some("Pending"));
    }

    #[test]
    fn init_containers_hold_the_pod_pending_and_app_containers_in_pod_initializing() {
        let p = pod("Always", &["a"], &["setup"]);
        let init =
            BTreeMap::from([("setup".to_string(), view(Some(runtime_status("setup", ContainerState::Running, 0, 0))))]);
        let status = status_of(&p, &init, &BTreeMap::new());
        assert_eq!(status.phase.as_deref(), Some("Pending"));
        let app = &status.container_statuses.expect("statuses")[0];
        let reason = app.state.as_ref().and_then(|s| s.waiting.as_ref()).and_then(|w| w.reason.as_deref());
        assert_eq!(reason, Some("PodInitializing"));
        let initialized =
            status.conditions.expect("conditions").into_iter().find(|c| c.type_ == "Initialized").expect("Initialized");
        assert_eq!(
            (initialized.status.as_str(), initialized.message.as_deref()),
            ("False", Some("containers with incomplete status: [setup]"))
        );

        let failed =
            BTreeMap::from([("setup".to_string(), view(Some(runtime_status("setup", ContainerState::Exited, 0, 1))))]);
        let never = pod("Never", &["a"], &["setup"]);
        assert_eq!(status_of(&never, &failed, &BTreeMap::new()).phase.as_deref(), Some("Failed"));
    }

    #[test]
    fn transition_times_stay_while_a_condition_holds() {
        let mut p = pod("Always", &["a"], &[]);
        let containers =
            BTreeMap::from([("a".to_string(), view(Some(runtime_status("a", ContainerState::Running, 0, 0))))]);
        let first = status_of(&p, &BTreeMap::new(), &containers);
        p.status = Some(first.clone());
        let second = status_of(&p, &BTreeMap::new(), &containers);
        let times =
            |s: &PodStatus| s.conditions.iter().flatten().map(|c| c.last_transition_time.clone()).collect::<Vec<_>>();
        assert_eq!(times(&first), times(&second));
    }
}
