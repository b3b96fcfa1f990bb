//! Background upkeep that keeps the database bounded: WAL checkpoints and automatic compaction.
//!
//! Checkpoints are PASSIVE (they copy what they can and never wait for the writer), on a connection of their
//! own, so a commit never pays for one. Only when the WAL has grown past a limit anyway (a reader pinned an old
//! snapshot for a long time) does a TRUNCATE checkpoint wait briefly for the writer to reset it.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use super::CompactionPolicy;
use super::schema::{Durability, connect};
use super::watch::Hub;
use super::writer::Command;
use crate::Revision;

pub(crate) struct Maintenance {
    pub path: PathBuf,
    pub durability: Durability,
    pub hub: Arc<Hub>,
    pub commands: mpsc::Sender<Command>,
    pub policy: Option<CompactionPolicy>,
    pub checkpoint_interval: Duration,
    pub wal_truncate_bytes: u64,
}

impl Maintenance {
    /// Runs until `stop` is dropped.
    pub fn run(self, stop: std::sync::mpsc::Receiver<()>) {
        let mut conn = None;
        // (when, revision then): compaction by age needs to know which revision was current a while ago.
        let mut samples: VecDeque<(Instant, Revision)> = VecDeque::new();
        let mut next_compaction = Instant::now();
        let tick = match &self.policy {
            Some(policy) => self.checkpoint_interval.min(policy.interval),
            None => self.checkpoint_interval,
        };
        loop {
            match stop.recv_timeout(tick) {
                Err(RecvTimeoutError::Timeout) => {}
                Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
            }
            if conn.is_none() {
                conn = match connect(&self.path, self.durability) {
                    Ok(c) => Some(c),
                    Err(err) => {
                        tracing::warn!(error = %err, "checkpoint connection failed");
                        None
                    }
                };
            }
            if let Some(conn) = &conn {
                self.checkpoint(conn);
            }
            if let Some(policy) = &self.policy
                && Instant::now() >= next_compaction
            {
                next_compaction = Instant::now() + policy.interval;
                let now = Instant::now();
                samples.push_back((now, self.hub.revision()));
                if let Some(target) = compaction_target(policy, &mut samples, now) {
                    self.compact(target);
                }
            }
        }
    }

    fn checkpoint(&self, conn: &Connection) {
        let passive = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
            Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?, row.get::<_, i64>(2)?))
        });
        if let Err(err) = passive {
            tracing::debug!(error = %err, "passive checkpoint failed");
            return;
        }
        let wal = {
            let mut name = self.path.clone().into_os_string();
            name.push("-wal");
            PathBuf::from(name)
        };
        let size = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
        if size > self.wal_truncate_bytes {
            let started = Instant::now();
            match conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| row.get::<_, i64>(0)) {
                Ok(_) => {
                    tracing::info!(wal_bytes = size, took = ?started.elapsed(), "WAL truncated")
                }
                Err(err) => tracing::warn!(error = %err, wal_bytes = size, "WAL truncate failed"),
            }
        }
    }

    fn compact(&self, target: Revision) {
        if target <= self.hub.compacted() {
            return;
        }
        let (reply, answer) = oneshot::channel();
        if self.commands.blocking_send(Command::Compact { revision: target, reply }).is_err() {
            return;
        }
        match answer.blocking_recv() {
            Ok(Ok(())) => tracing::debug!(revision = target, "compacted"),
            Ok(Err(err)) => {
                tracing::warn!(error = %err, revision = target, "automatic compaction failed")
            }
            Err(_) => {}
        }
    }
}

/// The revision to compact to now, if any: the older of "`keep_revisions` back" and "current `min_age` ago".
/// Drops samples that no longer matter.
fn compaction_target(
    policy: &CompactionPolicy,
    samples: &mut VecDeque<(Instant, Revision)>,
    now: Instant,
) -> Option<Revision> {
    let (_, current) = *samples.back()?;
    let by_count = current - policy.keep_revisions;
    // The newest sample at least `min_age` old: everything since it is young enough to keep.
    let cutoff = now.checked_sub(policy.min_age)?;
    let old_enough = samples.iter().rposition(|(when, _)| *when <= cutoff)?;
    let by_age = samples[old_enough].1;
    samples.drain(..old_enough);
    let target = by_count.min(by_age);
    (target > 0).then_some(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(keep: Revision, min_age: u64) -> CompactionPolicy {
        CompactionPolicy { keep_revisions: keep, min_age: Duration::from_secs(min_age), interval: Duration::ZERO }
    }

    #[test]
    fn compaction_waits_until_history_is_old_enough() {
        let start = Instant::now();
        let mut samples = VecDeque::from([(start, 5_000)]);
        assert_eq!(compaction_target(&policy(100, 60), &mut samples, start + Duration::from_secs(10)), None);
    }

    #[test]
    fn compaction_keeps_the_older_of_count_and_age() {
        let start = Instant::now();
        let mut samples = VecDeque::from([
            (start, 1_000),
            (start + Duration::from_secs(30), 2_000),
            (start + Duration::from_secs(90), 9_000),
        ]);
        // 60 s before the last sample is after the second sample: age allows 2,000; count allows 8,900.
        let target = compaction_target(&policy(100, 60), &mut samples, start + Duration::from_secs(90));
        assert_eq!(target, Some(2_000));
        assert_eq!(samples.len(), 2, "samples older than the one used are dropped");
        // With a large keep count, the count rule wins.
        let target = compaction_target(&policy(8_500, 60), &mut samples, start + Duration::from_secs(90));
        assert_eq!(target, Some(500));
    }
}
