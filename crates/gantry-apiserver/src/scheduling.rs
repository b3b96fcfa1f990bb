//! The scheduler's account of its decisions (`gantry why`), served at
//! `GET /gantry/v1/namespaces/{namespace}/pods/{name}/scheduling`.
//!
//! The API server does not know the scheduler: it serves whatever document a [`SchedulingExplainer`] gives,
//! and `gantry server` installs one once its in-process scheduler has started. The path is outside `/api` and
//! `/apis` because the answer is not a stored object: it has no resourceVersion, cannot be watched, and lives
//! only in the memory of the scheduler that made the decision.

use std::sync::Arc;

use http::Method;
use serde_json::Value;

use crate::api::{Api, Reply};
use crate::status::{ApiError, ApiResult};

/// The prefix of Gantry's own (non-Kubernetes) paths.
pub const PREFIX: &str = "/gantry/";

/// Answers for the scheduler running in this process.
pub trait SchedulingExplainer: Send + Sync {
    /// The last scheduling attempt of pod `namespace/name`, as the JSON document clients parse, if the
    /// scheduler still remembers one.
    fn last_attempt(&self, namespace: &str, name: &str) -> Option<Value>;

    /// How many pods' last attempts the scheduler remembers (older ones are forgotten), for telling a client
    /// why there is no answer.
    fn attempts_kept(&self) -> usize;
}

/// [`Api::set_scheduling_explainer`] was called twice.
#[derive(Debug, thiserror::Error)]
#[error("a scheduling explainer is already installed")]
pub struct ExplainerAlreadySet;

impl Api {
    /// Installs the answerer of scheduling questions; until then (and forever when no scheduler runs in this
    /// process) they are answered 503.
    pub fn set_scheduling_explainer(&self, explainer: Arc<dyn SchedulingExplainer>) -> Result<(), ExplainerAlreadySet> {
        self.explainer.set(explainer).map_err(|_| ExplainerAlreadySet)
    }

    /// Serves a path under [`PREFIX`].
    pub(crate) async fn gantry_path(&self, method: &Method, path: &str) -> ApiResult<Reply> {
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        let ["gantry", "v1", "namespaces", namespace, "pods", name, "scheduling"] = parts.as_slice() else {
            return Err(ApiError::no_route());
        };
        if namespace.is_empty() || name.is_empty() {
            return Err(ApiError::no_route());
        }
        if method != Method::GET {
            return Err(ApiError::method_not_allowed(format!("{method} is not allowed on {path}; use GET")));
        }
        let Some(explainer) = self.explainer.get() else {
            let mut e = ApiError::unavailable(
                "no scheduler runs in this API server's process (it was started with --disable-scheduler, or its \
                 scheduler has not started yet); a standalone `gantry scheduler` keeps its decisions to itself",
            );
            e.retry_after = None;
            return Err(e);
        };
        if let Some(doc) = explainer.last_attempt(namespace, name) {
            return Ok(Reply::json(200, &doc));
        }
        let pods = self.registry.by_plural("", "v1", "pods").ok_or_else(ApiError::no_route)?;
        let key = pods.key(Some(namespace), name);
        self.store.get(key.as_bytes()).await.map_err(|e| ApiError::from_store(e, pods, name))?;
        let mut e = ApiError::not_found(pods, name);
        e.message = format!(
            "no scheduling attempt of pod {namespace}/{name} is recorded by this server's scheduler: it may have \
             been scheduled before this scheduler started, by another server's scheduler (the one holding the \
             scheduler lease), or before the last {} attempts this scheduler keeps, or created with \
             spec.nodeName set",
            explainer.attempts_kept()
        );
        Err(e)
    }
}
