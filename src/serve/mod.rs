//! The registry automation bot (`unroot serve`): webhooks in, one conversion per pushed
//! image out.
//!
//! - [`door`] accepts connections within its timeouts and cap; [`http`] routes the hooks,
//!   probes, metrics and job list.
//! - [`hooks`] turns what registries send into image events; [`rules`] reads the rules
//!   file and routes each event to a destination, or says why it is not converted (no
//!   rule, an excluded tag, the bot's own output); [`state`] is where the state lives.
//! - [`store`] keeps the jobs and the queue (SQLite or PostgreSQL), and the claims
//!   replicas decide by; [`job`] is a job as stored and what makes two conversions the
//!   same.
//! - [`bot`] is what every job shares, and the running set a stop waits for; [`queue`]
//!   takes jobs from the queue, woken at once when one is queued; [`worker`] runs one; [`plan`] plans its conversion and checks whether it is done;
//!   [`reconcile`] finds what webhooks missed; [`metrics`] counts.
//! - [`server`] runs the process's life: start, serve, stop in order.

pub mod bot;
pub mod door;
pub mod hooks;
pub mod http;
pub mod job;
pub mod metrics;
pub mod plan;
pub mod queue;
pub mod reconcile;
pub mod rules;
pub mod server;
pub mod state;
pub mod store;
pub mod worker;
