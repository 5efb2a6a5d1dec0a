//! A job as the store keeps it, and what makes two conversions the same: a job's key. A
//! job whose key is done is a no-op; a source digest that changes under a tag, another
//! recipe set, other options or another destination make another key.

use serde::Serialize;
use sqlx::Row;

use crate::model::{Digest, ImageRef};

use super::rules::Rule;

/// A job as stored.
#[derive(Clone, Debug, Serialize)]
pub struct Job {
    /// Its id.
    pub id: String,
    /// The source as the event named it: `registry/repository:tag@digest`.
    pub subject: String,
    /// The source's registry.
    pub registry: String,
    /// The source's repository.
    pub repository: String,
    /// The tag, when the event named one.
    pub tag: Option<String>,
    /// The digest, when the event gave one.
    pub digest: Option<String>,
    /// The rule's index in the rules file.
    pub rule: i64,
    /// Where the conversion goes.
    pub destination: String,
    /// `queued`, `running`, `done` or `failed`.
    pub state: String,
    /// How many times a worker started it.
    pub attempts: i64,
    /// When it was queued (ms since the epoch).
    pub created_ms: i64,
    /// When a worker last started it.
    pub started_ms: Option<i64>,
    /// When it ended.
    pub finished_ms: Option<i64>,
    /// The worker that last started it.
    pub worker: Option<String>,
    /// The source digest it converted (resolved from the tag when the event had none).
    pub source_digest: Option<String>,
    /// Its idempotency key.
    pub key: Option<String>,
    /// `converted`, or why nothing was pushed (`up to date`, `already converted`).
    pub outcome: Option<String>,
    /// The conversion's report (JSON), when it converted.
    pub report: Option<serde_json::Value>,
    /// Why it failed.
    pub error: Option<String>,
    /// What it met on its way (registry requests tried again), oldest first; read for
    /// one job, not for lists.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<JobEvent>,
}

impl Job {
    /// The source as a reference, from its stored parts.
    pub fn source_image(&self) -> Result<ImageRef, crate::error::Error> {
        let digest = self
            .digest
            .as_deref()
            .map(Digest::parse)
            .transpose()
            .map_err(|e| self.unreadable(e.to_string()))?;
        ImageRef::from_parts(
            &self.registry,
            &self.repository,
            self.tag.as_deref(),
            digest,
        )
        .map_err(|e| self.unreadable(e.to_string()))
    }

    /// The destination as a reference.
    pub fn destination_image(&self) -> Result<ImageRef, crate::error::Error> {
        ImageRef::parse(&self.destination).map_err(|e| self.unreadable(e.to_string()))
    }

    /// A stored job that does not read back: the hooks check every name before storing.
    fn unreadable(&self, message: String) -> crate::error::Error {
        crate::error::Error::Internal {
            location: self.subject.clone(),
            message: format!("job {} as stored: {message}", self.id),
        }
    }
}

/// A note of what a job met.
#[derive(Clone, Debug, Serialize)]
pub struct JobEvent {
    /// When (ms since the epoch).
    pub at_ms: i64,
    /// What.
    pub text: String,
}

pub(super) const JOB_COLUMNS: &str =
    "id, subject, registry, repository, tag, digest, rule, destination, \
    state, attempts, created_ms, started_ms, finished_ms, worker, source_digest, job_key, \
    outcome, report, error";

pub(super) fn job_of<R>(row: &R) -> Result<Job, sqlx::Error>
where
    R: Row,
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Option<String>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Option<i64>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    let report: Option<String> = row.try_get("report")?;
    Ok(Job {
        id: row.try_get("id")?,
        subject: row.try_get("subject")?,
        registry: row.try_get("registry")?,
        repository: row.try_get("repository")?,
        tag: row.try_get("tag")?,
        digest: row.try_get("digest")?,
        rule: row.try_get("rule")?,
        destination: row.try_get("destination")?,
        state: row.try_get("state")?,
        attempts: row.try_get("attempts")?,
        created_ms: row.try_get("created_ms")?,
        started_ms: row.try_get("started_ms")?,
        finished_ms: row.try_get("finished_ms")?,
        worker: row.try_get("worker")?,
        source_digest: row.try_get("source_digest")?,
        key: row.try_get("job_key")?,
        outcome: row.try_get("outcome")?,
        report: report.and_then(|r| serde_json::from_str(&r).ok()),
        error: row.try_get("error")?,
        events: Vec::new(),
    })
}

/// The idempotency key of converting `source` (a manifest or index digest) with the
/// recipe set `recipes` ([`Selection::digest`](crate::recipe::Selection::digest)) by
/// `rule` to `destination`.
pub fn key(source: &Digest, recipes: &Digest, rule: &Rule, destination: &str) -> Digest {
    let mut platforms = rule.platforms.clone();
    platforms.sort();
    let mut options = serde_json::json!({
        "platforms": platforms,
        "uid": rule.uid,
        "gid": rule.gid,
        "ports": rule.ports,
        "verify": rule.verify,
    });
    // Only when asked, so the keys of rules that do not learn stay what they were.
    if rule.learn {
        options["learn"] = true.into();
    }
    let mut text = Vec::new();
    for part in [
        source.to_string(),
        recipes.to_string(),
        options.to_string(),
        destination.to_string(),
    ] {
        text.extend_from_slice(&(part.len() as u64).to_be_bytes());
        text.extend_from_slice(part.as_bytes());
    }
    Digest::sha256_of(&text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::rules::ServeConfig;

    fn rules(extra: &str) -> ServeConfig {
        ServeConfig::parse(
            &format!(
                "listen = \"127.0.0.1:8686\"\nstate = \"sqlite:/tmp/s.db\"\nwebhook_token_file = \"/t\"\n[[rule]]\nsource = \"r.example/*\"\ndestination = \"{{registry}}/{{repository}}:{{tag}}-unprivileged\"\n{extra}"
            ),
            "rules.toml",
        )
        .unwrap()
    }

    #[test]
    fn keys_change_with_each_part_and_only_then() {
        let a = Digest::sha256_of(b"a");
        let b = Digest::sha256_of(b"b");
        let plain = rules("");
        let rule = &plain.rules[0];
        let k = key(&a, &b, rule, "r.example/app:1-unprivileged");
        assert_eq!(k, key(&a, &b, rule, "r.example/app:1-unprivileged"));
        assert_ne!(
            k,
            key(&b, &b, rule, "r.example/app:1-unprivileged"),
            "source"
        );
        assert_ne!(
            k,
            key(&a, &a, rule, "r.example/app:1-unprivileged"),
            "recipes"
        );
        assert_ne!(
            k,
            key(&a, &b, rule, "r.example/app:2-unprivileged"),
            "destination"
        );
        for extra in [
            "uid = 1000",
            "ports = [\"80:8000\"]",
            "verify = true",
            "platforms = [\"linux/arm64\"]",
        ] {
            let other = rules(extra);
            assert_ne!(
                k,
                key(&a, &b, &other.rules[0], "r.example/app:1-unprivileged"),
                "{extra}"
            );
        }
        // The order platforms are listed in is not an option.
        let ab = rules("platforms = [\"linux/amd64\", \"linux/arm64\"]");
        let ba = rules("platforms = [\"linux/arm64\", \"linux/amd64\"]");
        assert_eq!(
            key(&a, &b, &ab.rules[0], "d"),
            key(&a, &b, &ba.rules[0], "d")
        );
    }
}
