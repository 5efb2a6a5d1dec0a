//! Webhooks get lost (distribution keeps them in memory, GitHub never sends one again), so
//! the bot also looks for itself: it lists each watched repository's tags and queues every
//! tag whose current digest has no up-to-date converted twin, in the state store or at
//! the destination.

use std::sync::atomic::Ordering;

use tokio::runtime::Handle;

use crate::model::ImageRef;

use super::bot::Bot;
use super::hooks::ImageEvent;
use super::plan::plan;
use super::rules::Route;
use super::store::Enqueued;

/// What one pass found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reconciled {
    /// Tags looked at.
    pub tags: usize,
    /// Tags queued (no up-to-date twin).
    pub queued: usize,
    /// Tags whose twin is up to date.
    pub up_to_date: usize,
    /// What could not be listed or resolved, one line each.
    pub errors: Vec<String>,
}

/// Whether a repository pattern is a glob rather than one name.
fn is_glob(pattern: &str) -> bool {
    pattern.contains(['*', '?', '[', '{'])
}

/// One pass over every rule's repositories. Runs on a blocking thread.
pub fn reconcile(bot: &Bot, handle: &Handle) -> Reconciled {
    let mut out = Reconciled::default();
    let session = &bot.session;
    for (index, rule) in bot.config.rules.iter().enumerate() {
        let Some((registry, pattern)) = rule.watched() else {
            continue;
        };
        let repositories = if is_glob(pattern) {
            match session.repositories(registry) {
                Ok(all) => all,
                Err(e) => {
                    out.errors.push(format!(
                        "rule {index}: listing {registry}'s repositories: {e}"
                    ));
                    continue;
                }
            }
        } else {
            vec![pattern.to_string()]
        };
        for repository in repositories {
            if bot.stopping.load(Ordering::SeqCst) {
                return out;
            }
            let watched = |tag: Option<&str>| matches!(bot.config.route_name(registry, &repository, tag), Route::Convert(r) if std::ptr::eq(r, rule));
            if !watched(None) {
                continue;
            }
            let tags = match session.tags(registry, &repository) {
                Ok(tags) => tags,
                Err(e) => {
                    out.errors
                        .push(format!("{registry}/{repository}: listing tags: {e}"));
                    continue;
                }
            };
            for tag in tags {
                if !watched(Some(&tag)) {
                    continue;
                }
                out.tags += 1;
                let destination = rule.destination_for(registry, &repository, &tag);
                let named = format!("{registry}/{repository}:{tag}");
                let refs = ImageRef::from_parts(registry, &repository, Some(&tag), None)
                    .and_then(|source| Ok((source, ImageRef::parse(&destination)?)));
                let planned = match refs {
                    Ok((source, destination)) => {
                        plan(session, rule, &source, &destination).map_err(|e| e.to_string())
                    }
                    // A tag the registry lists that no reference may hold.
                    Err(e) => Err(e.to_string()),
                };
                let planned = match planned {
                    Ok(p) => p,
                    Err(e) => {
                        out.errors.push(format!("{named}: {e}"));
                        continue;
                    }
                };
                match planned.twin(bot, handle, session) {
                    Ok(Some(_)) => {
                        out.up_to_date += 1;
                        continue;
                    }
                    Ok(None) => {}
                    // The store failed: the rest would too.
                    Err(super::plan::Failure::Store(e)) => {
                        out.errors.push(e.to_string());
                        return out;
                    }
                    // The destination cannot be read: converting tells more.
                    Err(super::plan::Failure::Convert(_)) => {}
                }
                let event = ImageEvent {
                    image: planned.source.clone(),
                    media_type: None,
                };
                match handle.block_on(bot.enqueue(&event, index, &destination)) {
                    Ok(Enqueued::New(id)) => {
                        out.queued += 1;
                        bot.metrics.queued();
                        tracing::info!(job = %id, source = %named, "queued by reconcile: no up-to-date twin");
                    }
                    Ok(Enqueued::Duplicate) => bot.metrics.deduplicated(),
                    Err(e) => {
                        out.errors.push(e.to_string());
                        return out;
                    }
                }
            }
        }
    }
    out
}
