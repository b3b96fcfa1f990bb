//! The probe workers of one running container, as the kubelet's prober workers behave: one task per configured
//! probe, liveness and readiness held back until the startup probe has succeeded, results counted against
//! `successThreshold` and `failureThreshold`, and a restart asked for when liveness or startup fails for good.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use gantry_runtime::RuntimeService;
use k8s_openapi::api::core::v1::{Container, Probe};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::{ProbeResult, ProbeTarget, ProbeTiming, probe_once};

/// Which of a container's probes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProbeKind {
    /// `startupProbe`: holds the other probes back until it succeeds; its failure restarts the container.
    Startup,
    /// `livenessProbe`: its failure restarts the container.
    Liveness,
    /// `readinessProbe`: decides whether the container is ready.
    Readiness,
}

impl ProbeKind {
    /// The name events give it (`Liveness`).
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeKind::Startup => "Startup",
            ProbeKind::Liveness => "Liveness",
            ProbeKind::Readiness => "Readiness",
        }
    }
}

impl std::fmt::Display for ProbeKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the pod worker must do after a probe attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeAction {
    /// Nothing beyond reporting it.
    None,
    /// Liveness or startup failed `failureThreshold` times in a row: restart the container. That probe no longer
    /// runs for this container.
    Restart {
        /// The probe's own `terminationGracePeriodSeconds`, which replaces the pod's for this kill when set.
        termination_grace_period_seconds: Option<i64>,
    },
}

/// One probe attempt worth reporting: every failed or errored attempt (successes are not reported).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeEvent {
    /// The container's name.
    pub container: String,
    /// Which probe.
    pub kind: ProbeKind,
    /// The attempt's result: [`ProbeResult::Failure`] or [`ProbeResult::Unknown`].
    pub result: ProbeResult,
    /// What to do about it.
    pub action: ProbeAction,
}

impl ProbeEvent {
    /// The message of the `Unhealthy` Warning event, as the kubelet words it ("Liveness probe failed: ...").
    pub fn message(&self) -> String {
        match &self.result {
            ProbeResult::Failure(message) => format!("{} probe failed: {message}", self.kind),
            ProbeResult::Unknown(error) => {
                format!("{} probe errored and resulted in unknown state: {error}", self.kind)
            }
            ProbeResult::Success => format!("{} probe succeeded", self.kind),
        }
    }

    /// For a restart, the message of the `Killing` event ("Container app failed liveness probe, will be
    /// restarted").
    pub fn restart_message(&self) -> Option<String> {
        matches!(self.action, ProbeAction::Restart { .. }).then(|| {
            format!(
                "Container {} failed {} probe, will be restarted",
                self.container,
                self.kind.as_str().to_ascii_lowercase()
            )
        })
    }
}

/// What the probes say about a container.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProbeStatus {
    /// The startup probe succeeded (always true without one).
    pub started: bool,
    /// Started, and the readiness probe's result is a success (without a readiness probe: started).
    pub ready: bool,
}

/// The probes of one running container. Its tasks end when it is dropped.
pub struct ContainerProbes {
    status: watch::Receiver<ProbeStatus>,
    // Held so that `changed` never sees a closed channel while the value lives.
    _publisher: Arc<watch::Sender<ProbeStatus>>,
    cancel: CancellationToken,
    tasks: Vec<(ProbeKind, JoinHandle<()>)>,
}

impl ContainerProbes {
    /// Starts probing `container` (running since `started_at`; initial delays count from then), reporting failed
    /// attempts on `events`. Must be called within a Tokio runtime.
    pub fn start(
        runtime: Arc<dyn RuntimeService>,
        container: &Container,
        target: ProbeTarget,
        started_at: Instant,
        events: mpsc::UnboundedSender<ProbeEvent>,
    ) -> ContainerProbes {
        let has_startup = container.startup_probe.is_some();
        let has_readiness = container.readiness_probe.is_some();
        let initial = ProbeStatus { started: !has_startup, ready: !has_startup && !has_readiness };
        let (publisher, status) = watch::channel(initial);
        let publisher = Arc::new(publisher);
        let cancel = CancellationToken::new();
        let target = Arc::new(target);
        let probes = [
            (ProbeKind::Startup, &container.startup_probe),
            (ProbeKind::Liveness, &container.liveness_probe),
            (ProbeKind::Readiness, &container.readiness_probe),
        ];
        let tasks = probes
            .into_iter()
            .filter_map(|(kind, probe)| Some((kind, probe.clone()?)))
            .map(|(kind, mut probe)| {
                if let Some(command) = probe.exec.as_mut().and_then(|e| e.command.as_mut()) {
                    *command = expand_static(command, container);
                }
                let worker = Worker {
                    kind,
                    timing: ProbeTiming::of(&probe),
                    probe,
                    runtime: runtime.clone(),
                    target: target.clone(),
                    container: container.name.clone(),
                    events: events.clone(),
                    status: publisher.clone(),
                    started_at,
                    has_readiness,
                };
                let cancel = cancel.clone();
                let span = tracing::debug_span!("probe", container = %container.name, kind = %kind);
                let task = tokio::spawn(
                    async move {
                        tokio::select! {
                            _ = cancel.cancelled() => {}
                            _ = worker.run() => {}
                        }
                    }
                    .instrument(span),
                );
                (kind, task)
            })
            .collect();
        ContainerProbes { status, _publisher: publisher, cancel, tasks }
    }

    /// Whether the container is ready: started, and its readiness probe succeeded (true once started without a
    /// readiness probe).
    pub fn ready(&self) -> bool {
        self.status.borrow().ready
    }

    /// Whether the container has started: its startup probe succeeded (true without one).
    pub fn started(&self) -> bool {
        self.status.borrow().started
    }

    /// Both results at once.
    pub fn status(&self) -> ProbeStatus {
        *self.status.borrow()
    }

    /// A receiver of the results, for a pod worker that selects over several containers.
    pub fn watch(&self) -> watch::Receiver<ProbeStatus> {
        self.status.clone()
    }

    /// Resolves once the results changed since this was last called (or since the start); returns them.
    pub async fn changed(&mut self) -> ProbeStatus {
        // The sender lives as long as `self`: the channel cannot close under this borrow.
        if self.status.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
        *self.status.borrow_and_update()
    }

    /// The pod is being deleted: liveness and startup probes stop (a container on its way out is not
    /// restarted), readiness keeps running until the container stops, as the kubelet does.
    pub fn pod_terminating(&self) {
        for (kind, task) in &self.tasks {
            if *kind != ProbeKind::Readiness {
                task.abort();
            }
        }
    }

    /// Ends the probing (the same as dropping it).
    pub fn stop(self) {}
}

impl Drop for ContainerProbes {
    fn drop(&mut self) {
        self.cancel.cancel();
        for (_, task) in &self.tasks {
            task.abort();
        }
    }
}

/// The point in Tokio's clock of a wall-clock time in nanoseconds since the epoch (a container's
/// `started_at` as the runtime reports it); now when that time is in the future.
pub fn instant_from_unix_nanos(nanos: i64) -> Instant {
    let now = Instant::now();
    let at = UNIX_EPOCH + Duration::from_nanos(u64::try_from(nanos).unwrap_or(0));
    let ago = SystemTime::now().duration_since(at).unwrap_or(Duration::ZERO);
    now.checked_sub(ago).unwrap_or(now)
}

/// `$(VAR)` references in an exec probe's command replaced by the container's literal `env` values, as the
/// kubelet expands them (values from `valueFrom` are not known here and stay unexpanded; `$$` escapes a `$`).
fn expand_static(command: &[String], container: &Container) -> Vec<String> {
    let env: Vec<(&str, &str)> =
        container.env.iter().flatten().filter_map(|var| Some((var.name.as_str(), var.value.as_deref()?))).collect();
    // The last definition of a name wins, as in the container's environment.
    let lookup = |name: &str| env.iter().rev().find(|(n, _)| *n == name).map(|(_, v)| *v);
    command.iter().map(|arg| expand(arg, &lookup)).collect()
}

fn expand<'a>(input: &str, lookup: &dyn Fn(&str) -> Option<&'a str>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(reference) = after.strip_prefix('(')
            && let Some(end) = reference.find(')')
        {
            let name = &reference[..end];
            match lookup(name) {
                Some(value) => out.push_str(value),
                None => {
                    out.push_str("$(");
                    out.push_str(name);
                    out.push(')');
                }
            }
            rest = &reference[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

struct Worker {
    kind: ProbeKind,
    probe: Probe,
    timing: ProbeTiming,
    runtime: Arc<dyn RuntimeService>,
    target: Arc<ProbeTarget>,
    container: String,
    events: mpsc::UnboundedSender<ProbeEvent>,
    status: Arc<watch::Sender<ProbeStatus>>,
    started_at: Instant,
    has_readiness: bool,
}

impl Worker {
    async fn run(self) {
        if self.kind != ProbeKind::Startup {
            let mut status = self.status.subscribe();
            if status.wait_for(|s| s.started).await.is_err() {
                return;
            }
        }
        tokio::time::sleep_until(self.started_at + self.timing.initial_delay).await;
        // Liveness and startup must succeed once to count (their successThreshold is 1 by validation).
        let success_threshold = if self.kind == ProbeKind::Readiness { self.timing.success_threshold } else { 1 };
        let mut ticker = tokio::time::interval(self.timing.period);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
        let mut last_success = None;
        let mut run = 0u32;
        loop {
            ticker.tick().await;
            let result = probe_once(self.runtime.as_ref(), &self.probe, &self.target).await;
            let success = match &result {
                ProbeResult::Success => true,
                ProbeResult::Failure(message) => {
                    tracing::debug!(%message, "probe failed");
                    false
                }
                ProbeResult::Unknown(error) => {
                    // An attempt that could not be made is reported and not counted, as the kubelet does.
                    tracing::debug!(%error, "probe errored");
                    self.report(result, ProbeAction::None);
                    continue;
                }
            };
            if last_success == Some(success) {
                run = run.saturating_add(1);
            } else {
                last_success = Some(success);
                run = 1;
            }
            let reached = run >= if success { success_threshold } else { self.timing.failure_threshold };
            match (self.kind, success) {
                (ProbeKind::Readiness, _) => {
                    if reached {
                        self.status.send_if_modified(|s| std::mem::replace(&mut s.ready, success) != success);
                    }
                    if !success {
                        self.report(result, ProbeAction::None);
                    }
                }
                (ProbeKind::Startup, true) => {
                    let ready = !self.has_readiness;
                    self.status.send_modify(|s| *s = ProbeStatus { started: true, ready });
                    return;
                }
                (ProbeKind::Liveness, true) => {}
                (ProbeKind::Startup | ProbeKind::Liveness, false) if reached => {
                    let grace = self.probe.termination_grace_period_seconds;
                    tracing::info!(failures = run, "probe failed past its threshold: the container must restart");
                    self.report(result, ProbeAction::Restart { termination_grace_period_seconds: grace });
                    return;
                }
                (ProbeKind::Startup | ProbeKind::Liveness, false) => self.report(result, ProbeAction::None),
            }
        }
    }

    fn report(&self, result: ProbeResult, action: ProbeAction) {
        let event = ProbeEvent { container: self.container.clone(), kind: self.kind, result, action };
        // A pod worker that stopped listening no longer cares.
        let _ = self.events.send(event);
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::EnvVar;

    use super::*;

    #[test]
    fn exec_commands_expand_literal_env_references_only() {
        let var = |name: &str, value: Option<&str>| EnvVar {
            name: name.into(),
            value: value.map(str::to_string),
            ..Default::default()
        };
        let container = Container {
            env: Some(vec![var("PORT", Some("80")), var("SECRET", None), var("PORT", Some("8080"))]),
            ..Default::default()
        };
        let command = ["check $(PORT) $(SECRET) $(NONE) $$(PORT) $ $(open", "$(PORT)/x"].map(String::from);
        assert_eq!(expand_static(&command, &container), ["check 8080 $(SECRET) $(NONE) $(PORT) $ $(open", "8080/x"]);
    }
}
