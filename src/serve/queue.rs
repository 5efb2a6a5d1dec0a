//! The queue's side of the process: the worker that takes jobs from apalis's queue, and
//! what wakes it. An idle worker looks at the queue every quarter second, at once when
//! this process queued a job, and on PostgreSQL at once when any replica did (the
//! queue's own `NOTIFY` on insert, heard through `LISTEN`): a queued job starts within
//! moments on whichever replica is idle, not at its next heartbeat.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use apalis::layers::WorkerBuilderExt;
use apalis::prelude::{
    BoxDynError, Data, PollSnapshot, PollStrategy, PollWith, TaskId, WorkerBuilder,
};
use tokio::runtime::Handle;
use tokio::sync::mpsc;

use super::bot::{Bot, Nudge};
use super::store::{Db, Ticket, QUEUE};
use super::worker;

/// How often an idle worker looks at the queue without being told to.
const POLL: Duration = Duration::from_millis(250);

/// The channel the queue's inserts are announced on (apalis's trigger on its jobs table).
const INSERTS: &str = "apalis::job::insert";

/// When the worker looks at the queue: every [`POLL`], and whenever nudged. (The queue
/// crate's interval strategy re-arms its timer without polling it, so after an empty
/// fetch nothing woke the worker until its heartbeat: seconds of delay per job.)
struct Prompt {
    sleep: Pin<Box<tokio::time::Sleep>>,
    nudges: mpsc::Receiver<()>,
}

impl PollStrategy for Prompt {
    fn poll_drive(&mut self, cx: &mut Context<'_>, _: &PollSnapshot) -> Poll<Option<()>> {
        let mut due = false;
        // Drained to Pending, so the next nudge wakes this task.
        while let Poll::Ready(Some(())) = self.nudges.poll_recv(cx) {
            due = true;
        }
        if self.sleep.as_mut().poll(cx).is_ready() {
            due = true;
        }
        if due {
            // Re-armed and polled, so the next tick wakes this task too.
            self.sleep
                .as_mut()
                .reset(tokio::time::Instant::now() + POLL);
            let _ = self.sleep.as_mut().poll(cx);
            return Poll::Ready(Some(()));
        }
        Poll::Pending
    }
}

/// Hears the queue's inserts on PostgreSQL, whichever replica made them, and nudges the
/// worker; reconnects after a lost connection (the poll covers the gap).
async fn hear_inserts(pool: sqlx::PgPool, nudge: Nudge) {
    loop {
        let listener = async {
            let mut listener = sqlx::postgres::PgListener::connect_with(&pool).await?;
            listener.listen(INSERTS).await?;
            loop {
                listener.recv().await?;
                let _ = nudge.try_send(());
            }
            #[allow(unreachable_code)]
            Ok::<(), sqlx::Error>(())
        };
        if let Err(e) = listener.await {
            tracing::warn!(error = %e, "not hearing the queue's inserts; polling meanwhile");
        }
        if nudge.is_closed() {
            return;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// Takes jobs from the queue until told to stop.
/// Its error is the queue crate's, as it says it.
pub async fn run_workers(
    bot: Arc<Bot>,
    concurrency: usize,
    heartbeat: Duration,
    nudges: mpsc::Receiver<()>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(), String> {
    let signal = async move {
        let _ = stop.wait_for(|s| *s).await;
        Ok::<(), std::io::Error>(())
    };
    let prompt = Prompt {
        sleep: Box::pin(tokio::time::sleep(POLL)),
        nudges,
    };
    let concurrency = concurrency.max(1);
    // The same worker on either backend: the two crates mirror each other's API.
    macro_rules! work {
        ($backend:ident, $storage:ident, $pool:expr) => {{
            let config = $backend::Config::default()
                .queue(QUEUE)
                .heartbeat_interval(heartbeat)
                .missed_heartbeats(3)
                .batch_size(1);
            let storage = $backend::$storage::<Ticket>::new($pool).with_config(config);
            WorkerBuilder::new(bot.worker.as_str())
                .backend(PollWith::new(storage, prompt))
                .concurrency(concurrency)
                .data(bot.clone())
                .build(take)
                .run_until(signal)
                .await
        }};
    }
    let result = match &bot.db {
        Db::Sqlite(pool) => work!(apalis_sqlite, SqliteStorage, pool),
        Db::Postgres(pool) => {
            let heard = tokio::spawn(hear_inserts(pool.clone(), bot.nudge.clone()));
            let result = work!(apalis_postgres, PostgresStorage, pool);
            heard.abort();
            result
        }
    };
    result.map_err(|e| e.to_string())
}

/// One queue entry: start its job (unless it is stale or the bot is stopping), run it on
/// a blocking thread, record the end.
async fn take(ticket: Ticket, id: TaskId, bot: Data<Arc<Bot>>) -> Result<(), BoxDynError> {
    let bot: Arc<Bot> = (*bot).clone();
    let Some(job) = bot
        .db
        .start(&ticket.job, &id.to_string(), &bot.worker)
        .await?
    else {
        return Ok(());
    };
    let Some(admitted) = bot.admit(&job.id) else {
        // Released once the running jobs are: released now, it would be handed out again
        // at once, and again, until the bot stops.
        bot.parked.fetch_add(1, Ordering::SeqCst);
        let _ = bot.drained.subscribe().wait_for(|d| *d).await;
        let released = bot.db.release(&job.id).await;
        bot.parked.fetch_sub(1, Ordering::SeqCst);
        released?;
        tracing::info!(job = %job.id, source = %job.subject, "job released: the bot is stopping");
        return Ok(());
    };
    let handle = Handle::current();
    tokio::task::spawn_blocking(move || worker::run(&bot, &handle, &job, admitted)).await??;
    Ok(())
}
