//! Leader election on a `coordination.k8s.io/v1` Lease, with client-go's semantics, for components of which
//! several copies run but only one may act (the scheduler, the controller manager).
//!
//! A candidate takes the Lease when it does not exist or when its holder has not renewed it for
//! `lease_duration`, as observed on the candidate's own clock (never by comparing timestamps written by other
//! machines: clocks differ). The holder renews every `retry_period`; if it cannot renew within
//! `renew_deadline` it steps down. Every write is a compare-and-swap on the Lease's resourceVersion, so two
//! candidates never both win. On shutdown the holder releases the Lease, so a successor need not wait.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Api;
use kube::api::PostParams;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Timing of an election (client-go's defaults: 15 s, 10 s, 2 s).
#[derive(Clone, Copy, Debug)]
pub struct ElectionConfig {
    /// How long a Lease stays valid without renewal.
    pub lease_duration: Duration,
    /// How long a leader keeps trying to renew before it steps down (less than `lease_duration`).
    pub renew_deadline: Duration,
    /// How often candidates try and leaders renew.
    pub retry_period: Duration,
}

impl Default for ElectionConfig {
    fn default() -> Self {
        ElectionConfig {
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// A candidate for one Lease.
pub struct LeaderElector {
    leases: Api<Lease>,
    name: String,
    identity: String,
    config: ElectionConfig,
    leading: watch::Sender<bool>,
}

/// What the candidate last saw of the Lease, timed on its own clock.
struct Observed {
    holder: Option<String>,
    resource_version: Option<String>,
    changed_at: Instant,
}

fn now_micro() -> MicroTime {
    MicroTime(jiff::Timestamp::now())
}

impl LeaderElector {
    /// A candidate named `identity` for the Lease `namespace/name`.
    pub fn new(client: kube::Client, namespace: &str, name: &str, identity: &str, config: ElectionConfig) -> Self {
        LeaderElector {
            leases: Api::namespaced(client, namespace),
            name: name.to_string(),
            identity: identity.to_string(),
            config,
            leading: watch::channel(false).0,
        }
    }

    /// Whether this candidate leads now, and every change of that.
    pub fn leading(&self) -> watch::Receiver<bool> {
        self.leading.subscribe()
    }

    /// Campaigns, leads and renews until `shutdown`; then releases the Lease if it holds it.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut observed: Option<Observed> = None;
        let mut last_renewed: Option<Instant> = None;
        loop {
            let attempt = self.try_acquire_or_renew(&mut observed).await;
            let now = Instant::now();
            match attempt {
                Ok(true) => {
                    last_renewed = Some(now);
                    if !*self.leading.borrow() {
                        tracing::info!(lease = %self.name, identity = %self.identity, "became the leader");
                    }
                    self.leading.send_replace(true);
                }
                Ok(false) => {
                    if *self.leading.borrow() {
                        tracing::warn!(lease = %self.name, identity = %self.identity, "lost the lease");
                    }
                    last_renewed = None;
                    self.leading.send_replace(false);
                }
                Err(err) => {
                    tracing::warn!(lease = %self.name, error = %err, "leader election: cannot reach the Lease");
                    // A leader that cannot renew steps down before its Lease can expire for others.
                    if last_renewed.is_some_and(|t| now.duration_since(t) >= self.config.renew_deadline) {
                        last_renewed = None;
                        self.leading.send_replace(false);
                    }
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(self.config.retry_period) => {}
            }
        }
        if *self.leading.borrow() {
            self.leading.send_replace(false);
            if let Err(err) = self.release().await {
                tracing::warn!(lease = %self.name, error = %err, "could not release the lease");
            }
        }
    }

    /// One round: returns whether this candidate holds the Lease afterwards.
    async fn try_acquire_or_renew(&self, observed: &mut Option<Observed>) -> Result<bool, kube::Error> {
        let now = Instant::now();
        let current = match self.leases.get_opt(&self.name).await? {
            Some(lease) => lease,
            None => {
                let lease = Lease {
                    metadata: ObjectMeta { name: Some(self.name.clone()), ..Default::default() },
                    spec: Some(LeaseSpec {
                        holder_identity: Some(self.identity.clone()),
                        lease_duration_seconds: Some(self.config.lease_duration.as_secs() as i32),
                        acquire_time: Some(now_micro()),
                        renew_time: Some(now_micro()),
                        lease_transitions: Some(0),
                        ..Default::default()
                    }),
                };
                return match self.leases.create(&PostParams::default(), &lease).await {
                    Ok(created) => {
                        *observed = Some(Observed::of(&created, now));
                        Ok(true)
                    }
                    // Someone else created it first.
                    Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
                    Err(err) => Err(err),
                };
            }
        };
        let spec = current.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        // Track when we last saw the Lease change, on our own clock.
        let changed = match observed.as_ref() {
            Some(o) => o.resource_version != current.metadata.resource_version || o.holder != holder,
            None => true,
        };
        if changed {
            *observed = Some(Observed::of(&current, now));
        }
        let seen_at = observed.as_ref().map_or(now, |o| o.changed_at);
        let duration = spec
            .lease_duration_seconds
            .map(|s| Duration::from_secs(s.max(0) as u64))
            .unwrap_or(self.config.lease_duration);
        let ours = holder.as_deref() == Some(self.identity.as_str());
        let expired = holder.is_none() || now.duration_since(seen_at) >= duration;
        if !ours && !expired {
            return Ok(false);
        }
        let mut updated = current.clone();
        let mut new_spec = spec.clone();
        if !ours {
            new_spec.holder_identity = Some(self.identity.clone());
            new_spec.acquire_time = Some(now_micro());
            new_spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        new_spec.lease_duration_seconds = Some(self.config.lease_duration.as_secs() as i32);
        new_spec.renew_time = Some(now_micro());
        updated.spec = Some(new_spec);
        // The resourceVersion from the read makes this a compare-and-swap.
        match self.leases.replace(&self.name, &PostParams::default(), &updated).await {
            Ok(written) => {
                *observed = Some(Observed::of(&written, now));
                Ok(true)
            }
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(err) => Err(err),
        }
    }

    async fn release(&self) -> Result<(), kube::Error> {
        let Some(mut lease) = self.leases.get_opt(&self.name).await? else { return Ok(()) };
        let Some(spec) = lease.spec.as_mut() else { return Ok(()) };
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(now_micro());
        match self.leases.replace(&self.name, &PostParams::default(), &lease).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
            Err(err) => Err(err),
        }
    }
}

impl Observed {
    fn of(lease: &Lease, at: Instant) -> Observed {
        Observed {
            holder: lease.spec.as_ref().and_then(|s| s.holder_identity.clone()).filter(|h| !h.is_empty()),
            resource_version: lease.metadata.resource_version.clone(),
            changed_at: at,
        }
    }
}
