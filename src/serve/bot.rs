//! What every job of this process shares ([`Bot`]), and the running set a stop waits
//! for: jobs are admitted to it under the lock the stop takes, and leave it once their
//! end is recorded.

use crate::control::Locked;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

use crate::control::Cancel;
use crate::pipeline::Session;

use super::hooks::ImageEvent;
use super::metrics::Metrics;
use super::rules::ServeConfig;
use super::store::{Db, Enqueued, StoreError};

/// A way to wake the queue's worker: a job was queued.
pub type Nudge = mpsc::Sender<()>;

/// A nudge and what it wakes.
pub fn nudge() -> (Nudge, mpsc::Receiver<()>) {
    // One pending nudge is as good as many.
    mpsc::channel(1)
}

/// What every job of this process shares.
pub struct Bot {
    /// The rules file.
    pub config: ServeConfig,
    /// The state store.
    pub db: Db,
    /// The registry pool and work directory.
    pub session: Session,
    /// The counters.
    pub metrics: Arc<Metrics>,
    /// The secret hooks must present.
    pub token: String,
    /// This replica's worker name.
    pub worker: String,
    /// The jobs running here, each with its token.
    pub running: Mutex<HashMap<String, Cancel>>,
    /// Set once a stop was asked for: jobs starting now are released, not run.
    pub stopping: AtomicBool,
    /// Set once the jobs that were running have ended or been released: the jobs that
    /// started after the stop, parked until then, are released now.
    pub drained: tokio::sync::watch::Sender<bool>,
    /// How many jobs wait for `drained` to be released.
    pub parked: std::sync::atomic::AtomicUsize,
    /// How many times a registry failure that may pass is tried again in a job, and the
    /// first wait (doubling, at most a minute).
    pub job_retries: (u32, Duration),
    /// Wakes this process's queue worker: a job was queued.
    pub nudge: Nudge,
    /// The job slots of registries with a `concurrency` limit.
    pub slots: std::collections::BTreeMap<String, Arc<tokio::sync::Semaphore>>,
}

/// A job in the running set; leaving it (on drop) is what a stopping bot waits for, so
/// it is dropped only once the job's end is recorded.
pub struct Admitted {
    bot: Arc<Bot>,
    id: String,
    /// The job's token, cancelled when the stop's grace period is over.
    pub cancel: Cancel,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.bot.running.locked().remove(&self.id);
    }
}

impl Bot {
    /// Admits a started job into the running set, or says the bot is stopping. The
    /// check and the entry happen under the lock the stop takes to set `stopping`, so a
    /// job is either seen by the stop's grace period (and stopped when it is over) or
    /// told to go back to the queue: none starts behind the stop's back.
    pub fn admit(self: &Arc<Self>, id: &str) -> Option<Admitted> {
        let mut running = self.running.locked();
        if self.stopping.load(Ordering::SeqCst) {
            return None;
        }
        let cancel = Cancel::new();
        running.insert(id.to_string(), cancel.clone());
        Some(Admitted {
            bot: self.clone(),
            id: id.to_string(),
            cancel,
        })
    }

    /// Stores and queues a job for `event` (as [`Db::enqueue`]) and wakes the queue's
    /// worker when it is new.
    pub async fn enqueue(
        &self,
        event: &ImageEvent,
        rule: usize,
        destination: &str,
    ) -> Result<Enqueued, StoreError> {
        let enqueued = self.db.enqueue(event, rule, destination).await?;
        if matches!(enqueued, Enqueued::New(_)) {
            let _ = self.nudge.try_send(());
        }
        Ok(enqueued)
    }

    /// Queues a failed job again (as [`Db::retry`]) and wakes the queue's worker.
    pub async fn retry(&self, id: &str) -> Result<bool, StoreError> {
        let queued = self.db.retry(id).await?;
        if queued {
            let _ = self.nudge.try_send(());
        }
        Ok(queued)
    }

    /// Says the bot is stopping: no job is admitted after this returns.
    pub fn stop_admitting(&self) {
        let _running = self.running.locked();
        self.stopping.store(true, Ordering::SeqCst);
    }
}
