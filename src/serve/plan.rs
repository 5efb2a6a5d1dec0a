//! A job's conversion planned: the source pinned to the digest its tag names now, the
//! request, its idempotency key, and the one check of whether it is done already (in the
//! state store under its key, or at the destination, whose manifest carries the source
//! digest and the recipe set). The worker and the reconcile both plan this way.

use std::time::Duration;

use tokio::runtime::Handle;

use crate::error::Error;
use crate::model::{Digest, ImageLocation, ImageRef};
use crate::pipeline::{
    ConvertOptions, ConvertRequest, ImageRequest, LearnOptions, PlanOptions, Session, VerifyOptions,
};

use super::bot::Bot;
use super::rules::Rule;
use super::store::StoreError;

/// Why planning or running a job stopped: the state store, or the conversion.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// The state store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The conversion (or resolving its source) failed.
    #[error(transparent)]
    Convert(#[from] Error),
}

/// A job's conversion, decided before anything is read but the source's manifest.
pub struct Planned {
    /// The conversion of the source pinned by digest.
    pub request: ConvertRequest,
    /// The source's digest.
    pub digest: Digest,
    /// The idempotency key.
    pub key: String,
    /// The recipe set's digest.
    pub recipes: Digest,
    /// The source as given, with the digest it was resolved to.
    pub source: ImageRef,
}

impl Planned {
    /// The digest of this conversion's twin when it is done already: recorded under its
    /// key in the state store, else found at the destination (the registry as the
    /// record, so a lost store costs only this look).
    pub fn twin(
        &self,
        bot: &Bot,
        handle: &Handle,
        session: &Session,
    ) -> Result<Option<String>, Failure> {
        if let Some(done) = handle.block_on(bot.db.conversion(&self.key))? {
            return Ok(Some(done));
        }
        Ok(session
            .twin_at(&self.request.destination, &self.digest, &self.recipes)?
            .map(|d| d.to_string()))
    }
}

/// Plans converting `source` to `destination` by `rule`. A source without a digest has
/// its tag resolved once, here: the conversion reads that digest, whatever the tag names
/// by then.
pub fn plan(
    session: &Session,
    rule: &Rule,
    source: &ImageRef,
    destination: &ImageRef,
) -> Result<Planned, Error> {
    let digest = session.digest_of(source)?;
    let options = plan_options(rule);
    let image = ImageRequest::of(
        ImageLocation::Registry(source.with_digest(digest.clone())),
        &options,
    )?;
    let request = ConvertRequest::to(
        image,
        ImageLocation::Registry(destination.clone()),
        &options,
        &convert_options(rule),
    )?;
    let recipes = request.image.recipes.digest();
    let key = super::job::key(&digest, &recipes, rule, &destination.to_string()).to_string();
    Ok(Planned {
        source: source.resolved_to(digest.clone()),
        request,
        digest,
        key,
        recipes,
    })
}

fn plan_options(rule: &Rule) -> PlanOptions {
    PlanOptions {
        uid: rule.uid.map(u64::from),
        gid: rule.gid.map(u64::from),
        ports: rule.ports.clone(),
        recipes: rule.recipes.clone(),
        no_recipes: false,
        platform: match rule.platforms.as_slice() {
            [one] => Some(one.clone()),
            _ => None,
        },
    }
}

/// How the bot runs a converted image before pushing it (`verify = true`) or learns it
/// (`learn = true`): as an arbitrary UID too, for at most 30 s, settled after 3 s, under
/// runc.
fn run_options(trace: bool) -> VerifyOptions {
    VerifyOptions {
        arbitrary_uid: true,
        timeout: Duration::from_secs(30),
        settle: Duration::from_secs(3),
        runtime: "runc".to_string(),
        probe: None,
        trace,
    }
}

fn convert_options(rule: &Rule) -> ConvertOptions {
    ConvertOptions {
        destination: None,
        source_date_epoch: None,
        remap_ids: false,
        dry_run: false,
        replace: false,
        verify: rule.verify.then(|| run_options(false)),
        learn: rule.learn.then(|| LearnOptions::new(run_options(true))),
    }
}
