//! `rollout status`: kubectl's rollout messages for Deployments and DaemonSets, printed as they change until
//! the rollout is done (or once with `--watch=false`).

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::config::Context;
use crate::delete::parse_duration;
use crate::{CtlError, Result};

/// `rollout` verbs.
#[derive(clap::Subcommand, Debug)]
pub enum RolloutCommand {
    /// Show the status of the rollout.
    Status(StatusArgs),
}

/// `rollout status TYPE/NAME` (or `TYPE NAME`).
#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    /// deployment/NAME, daemonset/NAME, or TYPE followed by NAME.
    pub target: String,
    /// The name, when the type is given alone.
    pub name: Option<String>,
    /// Give up after this long (e.g. 2m); 0 waits for ever.
    #[arg(long, default_value = "0s")]
    pub timeout: String,
    /// Watch until the rollout is done.
    #[arg(short = 'w', long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1,
          default_missing_value = "true")]
    pub watch: bool,
}

/// Where a rollout stands: kubectl's message, and whether it is done.
#[derive(Debug, PartialEq, Eq)]
pub struct Progress {
    /// The message, with its final newline.
    pub message: String,
    /// Whether the rollout is complete.
    pub done: bool,
}

fn int(value: &Value) -> i64 {
    value.as_i64().unwrap_or(0)
}

/// A Deployment's rollout, in kubectl's words; the error when it exceeded its progress deadline.
pub fn deployment_status(deployment: &Value) -> Result<Progress> {
    let name = deployment["metadata"]["name"].as_str().unwrap_or("");
    let status = &deployment["status"];
    if int(&deployment["metadata"]["generation"]) > int(&status["observedGeneration"]) {
        return Ok(Progress { message: "Waiting for deployment spec update to be observed...\n".into(), done: false });
    }
    let progressing = status["conditions"].as_array().into_iter().flatten().find(|c| c["type"] == "Progressing");
    if progressing.is_some_and(|c| c["reason"] == "ProgressDeadlineExceeded") {
        return Err(CtlError::ProgressDeadline(name.to_string()));
    }
    let updated = int(&status["updatedReplicas"]);
    let replicas = int(&status["replicas"]);
    let available = int(&status["availableReplicas"]);
    let message = if let Some(wanted) = deployment["spec"]["replicas"].as_i64().filter(|w| updated < *w) {
        format!(
            "Waiting for deployment \"{name}\" rollout to finish: {updated} out of {wanted} new replicas have been \
             updated...\n"
        )
    } else if replicas > updated {
        format!(
            "Waiting for deployment \"{name}\" rollout to finish: {} old replicas are pending termination...\n",
            replicas - updated
        )
    } else if available < updated {
        format!(
            "Waiting for deployment \"{name}\" rollout to finish: {available} of {updated} updated replicas are available...\n"
        )
    } else {
        return Ok(Progress { message: format!("deployment \"{name}\" successfully rolled out\n"), done: true });
    };
    Ok(Progress { message, done: false })
}

/// A DaemonSet's rollout, in kubectl's words.
pub fn daemonset_status(daemonset: &Value) -> Result<Progress> {
    let name = daemonset["metadata"]["name"].as_str().unwrap_or("");
    if daemonset["spec"]["updateStrategy"]["type"] == "OnDelete" {
        return Err(CtlError::Usage("rollout status is only available for RollingUpdate strategy type".into()));
    }
    let status = &daemonset["status"];
    if int(&daemonset["metadata"]["generation"]) > int(&status["observedGeneration"]) {
        return Ok(Progress { message: "Waiting for daemon set spec update to be observed...\n".into(), done: false });
    }
    let desired = int(&status["desiredNumberScheduled"]);
    let updated = int(&status["updatedNumberScheduled"]);
    let available = int(&status["numberAvailable"]);
    let message = if updated < desired {
        format!(
            "Waiting for daemon set \"{name}\" rollout to finish: {updated} out of {desired} new pods have been updated...\n"
        )
    } else if available < desired {
        format!(
            "Waiting for daemon set \"{name}\" rollout to finish: {available} of {desired} updated pods are available...\n"
        )
    } else {
        return Ok(Progress { message: format!("daemon set \"{name}\" successfully rolled out\n"), done: true });
    };
    Ok(Progress { message, done: false })
}

/// Runs `rollout`.
pub async fn run(cx: &Context, command: RolloutCommand) -> Result<()> {
    let RolloutCommand::Status(args) = command;
    let (kind, name) = match (args.target.split_once('/'), &args.name) {
        (Some((kind, name)), None) => (kind.to_string(), name.to_string()),
        (None, Some(name)) => (args.target.clone(), name.clone()),
        _ => return Err(CtlError::Usage("required resource not specified".to_string())),
    };
    let resource = cx.resolve(&kind).await?;
    let check: fn(&Value) -> Result<Progress> = match (resource.group.as_str(), resource.kind.as_str()) {
        ("apps", "Deployment") => deployment_status,
        ("apps", "DaemonSet") => daemonset_status,
        _ => {
            return Err(CtlError::Usage(format!("no status viewer has been implemented for {}", resource.kind)));
        }
    };
    let timeout = parse_duration(&args.timeout)?;
    let deadline = (!timeout.is_zero()).then(|| Instant::now() + timeout);
    let path = resource.object_path(&cx.namespace, &name);
    let mut last = String::new();
    loop {
        let object = cx.get_json(&path).await?;
        let progress = check(&object)?;
        if progress.message != last {
            print!("{}", progress.message);
            last = progress.message;
        }
        if progress.done || !args.watch {
            return Ok(());
        }
        if deadline.is_some_and(|d| Instant::now() > d) {
            return Err(CtlError::Timeout);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment(spec_replicas: i64, status: Value) -> Value {
        json!({"metadata": {"name": "web", "generation": 2}, "spec": {"replicas": spec_replicas}, "status": status})
    }

    #[test]
    fn deployment_messages_follow_the_rollout_word_for_word() {
        let unobserved = deployment(3, json!({"observedGeneration": 1}));
        assert_eq!(
            deployment_status(&unobserved).expect("status").message,
            "Waiting for deployment spec update to be observed...\n"
        );
        let updating = deployment(3, json!({"observedGeneration": 2, "updatedReplicas": 1, "replicas": 3}));
        assert_eq!(
            deployment_status(&updating).expect("status").message,
            "Waiting for deployment \"web\" rollout to finish: 1 out of 3 new replicas have been updated...\n"
        );
        let old = deployment(3, json!({"observedGeneration": 2, "updatedReplicas": 3, "replicas": 4}));
        assert_eq!(
            deployment_status(&old).expect("status").message,
            "Waiting for deployment \"web\" rollout to finish: 1 old replicas are pending termination...\n"
        );
        let available = deployment(
            3,
            json!({"observedGeneration": 2, "updatedReplicas": 3, "replicas": 3,
            "availableReplicas": 1}),
        );
        assert_eq!(
            deployment_status(&available).expect("status").message,
            "Waiting for deployment \"web\" rollout to finish: 1 of 3 updated replicas are available...\n"
        );
        let done = deployment(
            3,
            json!({"observedGeneration": 2, "updatedReplicas": 3, "replicas": 3,
            "availableReplicas": 3}),
        );
        assert_eq!(
            deployment_status(&done).expect("status"),
            Progress { message: "deployment \"web\" successfully rolled out\n".into(), done: true }
        );
    }

    #[test]
    fn a_deployment_past_its_progress_deadline_is_an_error() {
        let stuck = deployment(
            3,
            json!({"observedGeneration": 2, "conditions": [
            {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}]}),
        );
        let err = deployment_status(&stuck).expect_err("deadline");
        assert_eq!(err.to_string(), "deployment \"web\" exceeded its progress deadline");
    }

    #[test]
    fn daemonset_messages_count_pods() {
        let ds = json!({"metadata": {"name": "agent", "generation": 1}, "spec": {}, "status": {
            "observedGeneration": 1, "desiredNumberScheduled": 2, "updatedNumberScheduled": 2, "numberAvailable": 1}});
        assert_eq!(
            daemonset_status(&ds).expect("status").message,
            "Waiting for daemon set \"agent\" rollout to finish: 1 of 2 updated pods are available...\n"
        );
    }
}
