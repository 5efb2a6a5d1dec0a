//! Registries (`docker://REF`): manifests as exact bytes, blobs as streams, blob mounts,
//! and streamed uploads, through the distribution API client of a [`RegistryPool`].

use std::io::{self, Read};
use std::sync::Arc;

use reqwest::blocking::Response;
use reqwest::header::HeaderMap;

use crate::control::Control;
use crate::model::{media, Descriptor, Digest, ImageLocation, ImageRef};

use super::{BlobProvider, BlobReader, OutputImage, RawManifest, Sink, Source, TransportError};

mod auth;
mod challenge;
mod client;
mod download;
pub mod listing;
mod pace;
mod pool;
mod retry;
mod upload;

use client::{Call, Client};
pub use pace::{Pace, TooSlow};
pub use pool::RegistryPool;
pub use retry::RetryPolicy;

/// How many blobs are checked (and mounted) at once.
const PARALLEL_CHECKS: usize = 4;

/// A registry repository with its client, as one job uses it.
struct Remote {
    client: Arc<Client>,
    image: ImageRef,
    call: Call,
}

impl Remote {
    fn new(
        pool: &RegistryPool,
        location: ImageLocation,
        image: ImageRef,
        control: &Control,
    ) -> Result<Remote, TransportError> {
        let call = Call {
            location,
            control: control.clone(),
        };
        let client = pool.client(
            image.registry(),
            image.repository(),
            image.is_loopback(),
            &call,
        )?;
        Ok(Remote {
            client,
            image,
            call,
        })
    }

    fn repo(&self) -> &str {
        self.image.repository()
    }

    fn location(&self) -> &ImageLocation {
        &self.call.location
    }

    /// A manifest by tag or digest, checked against the digest when one is asked for.
    fn fetch_manifest(
        &self,
        reference: &str,
        pinned: Option<&Digest>,
        what: &str,
    ) -> Result<RawManifest, TransportError> {
        let (bytes, media_type) = self.client.manifest(
            &self.call,
            self.repo(),
            reference,
            media::ACCEPTED_MANIFESTS,
            what,
        )?;
        let digest = match pinned {
            Some(d) => {
                let mut hasher = crate::model::digest::Hasher::new(d.algorithm());
                hasher.update(&bytes);
                let actual = hasher.finish();
                if actual != *d {
                    return Err(TransportError::Corrupt {
                        location: self.location().to_string(),
                        mismatch: crate::model::digest::DigestMismatch::Digest {
                            expected: d.clone(),
                            actual,
                        },
                        local: false,
                    });
                }
                actual
            }
            None => Digest::sha256_of(&bytes),
        };
        Ok(RawManifest {
            bytes,
            media_type: media_type
                .map(|m| m.split(';').next().unwrap_or_default().trim().to_string()),
            digest,
        })
    }
}

/// Reads an image from a registry.
pub struct RegistrySource {
    remote: Remote,
}

impl RegistrySource {
    /// A source for `image`, through the pool's client for its registry; `control` is the
    /// job's (retries are announced to its events, waits end when it is cancelled).
    pub fn new(
        pool: &RegistryPool,
        location: ImageLocation,
        image: ImageRef,
        control: &Control,
    ) -> Result<RegistrySource, TransportError> {
        Ok(RegistrySource {
            remote: Remote::new(pool, location, image, control)?,
        })
    }
}

impl Source for RegistrySource {
    fn location(&self) -> &ImageLocation {
        self.remote.location()
    }

    fn manifest(&mut self) -> Result<RawManifest, TransportError> {
        let image = &self.remote.image;
        match (image.tag(), image.digest()) {
            (_, Some(d)) => {
                self.remote
                    .fetch_manifest(&d.to_string(), Some(d), &format!("manifest {d}"))
            }
            (Some(t), None) => self.remote.fetch_manifest(t, None, &format!("tag `{t}`")),
            (None, None) => self.remote.fetch_manifest("latest", None, "tag `latest`"),
        }
    }

    fn manifest_by_digest(&mut self, desc: &Descriptor) -> Result<RawManifest, TransportError> {
        self.remote.fetch_manifest(
            &desc.digest.to_string(),
            Some(&desc.digest),
            &format!("manifest {}", desc.digest),
        )
    }

    fn blob(&mut self, desc: &Descriptor) -> Result<BlobReader, TransportError> {
        self.remote
            .client
            .blob(&self.remote.call, self.remote.repo(), desc)
    }

    fn is_local(&self) -> bool {
        false
    }
}

/// Writes an image to a registry: blobs (skipping those present, mounting those of the
/// same registry), then the config, then the manifests by digest, and the tag last.
pub struct RegistrySink {
    remote: Remote,
    /// Manifests and indexes pushed by digest, to tag at the commit.
    pushed: std::collections::BTreeMap<Digest, Vec<u8>>,
    /// Blobs known to be in the destination repository (found or mounted).
    present: std::collections::BTreeSet<Digest>,
}

impl RegistrySink {
    /// A sink for `image`, through the pool's client for its registry.
    pub fn new(
        pool: &RegistryPool,
        location: ImageLocation,
        image: ImageRef,
        control: &Control,
    ) -> Result<RegistrySink, TransportError> {
        Ok(RegistrySink {
            remote: Remote::new(pool, location, image, control)?,
            pushed: Default::default(),
            present: Default::default(),
        })
    }

    /// Checks that the destination takes pushes, before anything is read for it.
    pub fn check_push(&self) -> Result<(), TransportError> {
        self.remote
            .client
            .check_push(&self.remote.call, self.remote.repo())
    }

    fn push_manifest(
        &self,
        reference: &str,
        bytes: &[u8],
        desc: &Descriptor,
    ) -> Result<(), TransportError> {
        self.remote.client.put_manifest(
            &self.remote.call,
            self.remote.repo(),
            reference,
            bytes,
            &desc.media_type,
        )
    }
}

impl RegistrySink {
    /// The repository of `origin` to mount blobs from: one on the same registry.
    fn mount_source(&self, origin: &ImageLocation) -> Option<String> {
        match origin {
            ImageLocation::Registry(r)
                if r.registry() == self.remote.image.registry()
                    && r.repository() != self.remote.repo() =>
            {
                Some(r.repository().to_string())
            }
            _ => None,
        }
    }

    /// For each blob (and whether it may be mounted), whether it still has to be
    /// uploaded: asked a few at a time, those found or mounted remembered.
    fn check(
        &mut self,
        wanted: &[(&Descriptor, bool)],
        mount_from: Option<&str>,
    ) -> Result<Vec<bool>, TransportError> {
        let (client, call) = (&self.remote.client, &self.remote.call);
        let repo = self.remote.repo();
        let present = &self.present;
        let missing = std::thread::scope(|scope| -> Result<Vec<bool>, TransportError> {
            let mut missing = Vec::with_capacity(wanted.len());
            for batch in wanted.chunks(PARALLEL_CHECKS) {
                let checks: Vec<_> = batch
                    .iter()
                    .map(|&(desc, mountable)| {
                        let known = present.contains(&desc.digest);
                        let from = mount_from.filter(|_| mountable);
                        scope.spawn(move || -> Result<bool, TransportError> {
                            if known || client.blob_exists(call, repo, &desc.digest)? {
                                return Ok(false);
                            }
                            if let Some(from) = from {
                                if client.mount(call, repo, &desc.digest, from)? {
                                    return Ok(false);
                                }
                            }
                            Ok(true)
                        })
                    })
                    .collect();
                for check in checks {
                    missing.push(check.join().map_err(|panic| TransportError::Internal {
                        message: crate::control::panic_message(&*panic),
                    })??);
                }
            }
            Ok(missing)
        })?;
        for ((desc, _), missing) in wanted.iter().zip(&missing) {
            if !missing {
                self.present.insert(desc.digest.clone());
            }
        }
        Ok(missing)
    }
}

impl Sink for RegistrySink {
    fn can_reuse_blobs_of(&self, source: &ImageLocation) -> bool {
        matches!(source, ImageLocation::Registry(r) if r.registry() == self.remote.image.registry())
    }

    fn prepare(
        &mut self,
        blobs: &[Descriptor],
        origin: &ImageLocation,
    ) -> Result<(), TransportError> {
        let mount_from = self.mount_source(origin);
        let wanted: Vec<(&Descriptor, bool)> = blobs.iter().map(|d| (d, true)).collect();
        self.check(&wanted, mount_from.as_deref())?;
        Ok(())
    }

    fn put_image(
        &mut self,
        image: &OutputImage,
        blobs: &mut dyn BlobProvider,
    ) -> Result<(), TransportError> {
        // Which blobs the destination lacks (those found by `prepare` are not asked for
        // again), mounting those the source repository has; then the rest is uploaded.
        let mount_from = self.mount_source(blobs.origin());
        let mut wanted: Vec<(&Descriptor, bool)> = image
            .layers
            .iter()
            .map(|l| (&l.desc, !blobs.is_new(&l.desc)))
            .collect();
        wanted.push((&image.config_desc, false));
        let missing = self.check(&wanted, mount_from.as_deref())?;
        let (client, call) = (&self.remote.client, &self.remote.call);
        let repo = self.remote.repo();
        for (layer, missing) in image.layers.iter().zip(&missing) {
            if *missing {
                client.upload(call, repo, &layer.desc, &mut || blobs.open(&layer.desc))?;
            }
        }
        if missing.last() == Some(&true) {
            client.upload(call, repo, &image.config_desc, &mut || {
                Ok(Box::new(io::Cursor::new(image.config.clone())))
            })?;
        }
        let digest = image.manifest_desc.digest.to_string();
        self.push_manifest(&digest, &image.manifest, &image.manifest_desc)?;
        self.pushed
            .insert(image.manifest_desc.digest.clone(), image.manifest.clone());
        Ok(())
    }

    fn put_index(&mut self, index: &[u8], desc: &Descriptor) -> Result<(), TransportError> {
        self.push_manifest(&desc.digest.to_string(), index, desc)?;
        self.pushed.insert(desc.digest.clone(), index.to_vec());
        Ok(())
    }

    fn commit(&mut self, top: &Descriptor) -> Result<Digest, TransportError> {
        let r = &self.remote;
        let refused = |reason: String| TransportError::Refused {
            location: r.location().to_string(),
            reason,
        };
        let bytes = self.pushed.get(&top.digest).cloned().ok_or_else(|| {
            refused(format!(
                "{} was not written before being tagged",
                top.digest
            ))
        })?;
        if let Some(d) = r.image.digest().filter(|d| **d != top.digest) {
            return Err(refused(format!(
                "the destination pins {d}, but the converted image is {}",
                top.digest
            )));
        }
        match (r.image.tag(), r.image.digest()) {
            (Some(tag), _) => self.push_manifest(tag, &bytes, top)?,
            (None, None) => self.push_manifest("latest", &bytes, top)?,
            // A destination pinned by digest gets nothing more (the manifest is there).
            (None, Some(_)) => {}
        }
        Ok(top.digest.clone())
    }
}

fn header_str(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

fn read_capped(response: Response, cap: u64) -> Result<Vec<u8>, reqwest::Error> {
    let mut bytes = Vec::new();
    let mut limited = response.take(cap);
    match limited.read_to_end(&mut bytes) {
        Ok(_) => Ok(bytes),
        Err(e) => match e
            .into_inner()
            .map(|inner| inner.downcast::<reqwest::Error>())
        {
            Some(Ok(e)) => Err(*e),
            // Errors of the body are reqwest's; anything else ends the body as read.
            _ => Ok(bytes),
        },
    }
}

/// The registry's error envelope: `{"errors": [{"code": ..., "message": ...}]}`.
fn parse_errors(body: &[u8]) -> Vec<(String, String)> {
    let value: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    value["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .map(|e| {
                    (
                        e["code"].as_str().unwrap_or("UNKNOWN").to_string(),
                        one_line(e["message"].as_str().unwrap_or_default()),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The first line of a registry's words, cut at 300 bytes.
fn one_line(s: &str) -> String {
    let s = s.trim();
    let s = s.lines().next().unwrap_or_default();
    if s.len() > 300 {
        let cut = s
            .char_indices()
            .take_while(|(i, _)| *i < 300)
            .last()
            .map_or(0, |(i, _)| i);
        format!("{}...", &s[..cut])
    } else if s.is_empty() {
        "(no message)".to_string()
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_envelopes_parse() {
        let e = parse_errors(br#"{"errors":[{"code":"DENIED","message":"no\nway"}]}"#);
        assert_eq!(e, vec![("DENIED".to_string(), "no".to_string())]);
        assert!(parse_errors(b"<html>").is_empty());
        assert_eq!(
            one_line(&"x".repeat(400)),
            format!("{}...", "x".repeat(299))
        );
        assert_eq!(one_line("  "), "(no message)");
    }
}
