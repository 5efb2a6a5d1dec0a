//! The registry automation bot (`unroot serve`): webhooks in, one conversion per pushed
//! image out. [`hooks`] turns what registries send into image events; [`rules`] reads the
//! rules file and routes each event to a destination, or says why it is not converted
//! (no rule, an excluded tag, the bot's own output); [`job`] says when two conversions are
//! the same; [`plan`] plans a job's conversion and checks whether it is done; [`store`] keeps the jobs and the queue (SQLite or PostgreSQL); [`queue`] takes jobs from the queue and
//! wakes at once when one is queued; [`worker`] runs one job; [`reconcile`] finds what webhooks missed; [`door`] accepts connections
//! within its timeouts and cap; [`server`] routes the HTTP side and runs the process's life.

pub mod door;
pub mod hooks;
pub mod job;
pub mod metrics;
pub mod plan;
pub mod queue;
pub mod reconcile;
pub mod rules;
pub mod server;
pub mod store;
pub mod worker;
