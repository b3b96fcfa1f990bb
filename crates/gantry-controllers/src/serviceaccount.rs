//! The ServiceAccount controller: every active namespace has a `default` ServiceAccount, as
//! kube-controller-manager's serviceaccounts controller ensures.
//!
//! A namespace is synced when it appears or changes, and when one of its ServiceAccounts is deleted; a sync
//! creates the missing accounts. Namespaces that are not Active (Terminating) are left alone: their content
//! is on its way out.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::PostParams;
use kube::{Api, Client};
use tokio_util::sync::CancellationToken;

use crate::informer::{Change, Informer};
use crate::queue::{Requeue, WorkQueue, run_workers};

/// The ServiceAccount every active namespace gets.
pub const DEFAULT_SERVICE_ACCOUNT: &str = "default";

/// What can fail in a sync.
#[derive(Debug, thiserror::Error)]
#[error("creating ServiceAccount {namespace}/{name}: {source}")]
pub struct CreateError {
    /// The namespace.
    pub namespace: String,
    /// The ServiceAccount.
    pub name: String,
    /// The cause.
    #[source]
    pub source: kube::Error,
}

/// The controller.
pub struct ServiceAccountController {
    client: Client,
    namespaces: Arc<Informer<Namespace>>,
    accounts: Arc<Informer<ServiceAccount>>,
    queue: Arc<WorkQueue>,
}

fn is_active(ns: &Namespace) -> bool {
    ns.metadata.deletion_timestamp.is_none()
        && ns.status.as_ref().and_then(|s| s.phase.as_deref()).is_none_or(|p| p == "Active")
}

/// Whether the API refused a creation because the namespace is being deleted.
fn namespace_terminating(err: &kube::Error) -> bool {
    match err {
        kube::Error::Api(e) => {
            e.code == 403
                && (e.message.contains("because it is being terminated")
                    || e.details.as_ref().is_some_and(|d| d.causes.iter().any(|c| c.reason == "NamespaceTerminating")))
        }
        _ => false,
    }
}

impl ServiceAccountController {
    /// The controller, following namespaces and ServiceAccounts through the shared informers.
    pub fn new(
        client: Client,
        namespaces: Arc<Informer<Namespace>>,
        accounts: Arc<Informer<ServiceAccount>>,
    ) -> Arc<ServiceAccountController> {
        let controller = Arc::new(ServiceAccountController {
            client,
            namespaces: Arc::clone(&namespaces),
            accounts: Arc::clone(&accounts),
            queue: WorkQueue::new(),
        });
        let queue = Arc::clone(&controller.queue);
        namespaces.on_change(move |change| match change {
            Change::Added(ns) | Change::Updated { new: ns, .. } => {
                queue.add(ns.metadata.name.clone().unwrap_or_default());
            }
            Change::Deleted(_) => {}
        });
        let queue = Arc::clone(&controller.queue);
        accounts.on_change(move |change| {
            if let Change::Deleted(sa) = change {
                queue.add(sa.metadata.namespace.clone().unwrap_or_default());
            }
        });
        controller
    }

    /// Syncs namespaces with `workers` workers until `shutdown` (after the informers have synced).
    pub async fn run(self: Arc<Self>, workers: usize, shutdown: CancellationToken) {
        self.namespaces.wait_synced(&shutdown).await;
        self.accounts.wait_synced(&shutdown).await;
        let queue = Arc::clone(&self.queue);
        let controller = self;
        run_workers("serviceaccount", queue, workers, shutdown, move |key| {
            let controller = Arc::clone(&controller);
            async move { controller.sync(&key).await }
        })
        .await;
    }

    /// One sync of the namespace `namespace`: creates its missing ServiceAccounts.
    pub async fn sync(&self, namespace: &str) -> Result<Requeue, CreateError> {
        let Some(ns) = self.namespaces.get("", namespace) else {
            return Ok(Requeue::No);
        };
        if !is_active(&ns) {
            return Ok(Requeue::No);
        }
        for name in [DEFAULT_SERVICE_ACCOUNT] {
            if self.accounts.get(namespace, name).is_some() {
                continue;
            }
            let api: Api<ServiceAccount> = Api::namespaced(self.client.clone(), namespace);
            let account = ServiceAccount {
                metadata: ObjectMeta {
                    name: Some(name.to_string()),
                    namespace: Some(namespace.to_string()),
                    ..ObjectMeta::default()
                },
                ..ServiceAccount::default()
            };
            match api.create(&PostParams::default(), &account).await {
                Ok(_) => {}
                // Created meanwhile (the informer lags), or the namespace is going or gone.
                Err(kube::Error::Api(e)) if e.code == 409 || e.code == 404 => {}
                Err(err) if namespace_terminating(&err) => {}
                Err(source) => {
                    return Err(CreateError { namespace: namespace.to_string(), name: name.to_string(), source });
                }
            }
        }
        Ok(Requeue::No)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn ns(value: serde_json::Value) -> Namespace {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn a_refusal_because_the_namespace_is_terminating_is_recognised() {
        let status = |code: u16, cause: &str| {
            kube::Error::Api(
                serde_json::from_value::<kube::core::Status>(json!({"code": code, "message": "forbidden",
                    "reason": "Forbidden", "details": {"causes": [{"reason": cause}]}}))
                .unwrap()
                .boxed(),
            )
        };
        assert!(namespace_terminating(&status(403, "NamespaceTerminating")));
        assert!(!namespace_terminating(&status(403, "SomethingElse")));
        assert!(!namespace_terminating(&status(500, "NamespaceTerminating")));
    }

    #[test]
    fn only_active_namespaces_get_accounts() {
        assert!(is_active(&ns(json!({"metadata": {"name": "a"}, "status": {"phase": "Active"}}))));
        assert!(is_active(&ns(json!({"metadata": {"name": "a"}}))), "a namespace without status yet");
        assert!(!is_active(&ns(json!({"metadata": {"name": "a"}, "status": {"phase": "Terminating"}}))));
        assert!(!is_active(&ns(json!({"metadata": {"name": "a", "deletionTimestamp": "2026-01-01T00:00:00Z"},
                                      "status": {"phase": "Active"}}))));
    }
}
