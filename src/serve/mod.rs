//! The registry automation bot (`unroot serve`): webhooks in, one conversion per pushed
//! image out. [`hooks`] turns what registries send into image events; [`rules`] reads the
//! rules file and routes each event to a destination, or says why it is not converted
//! (no rule, an excluded tag, the bot's own output); [`job`] says when two conversions are
//! the same.

pub mod hooks;
pub mod job;
pub mod rules;
