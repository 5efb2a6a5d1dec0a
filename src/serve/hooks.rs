//! Webhook payloads -> image events: what a registry says was pushed, normalised to
//! (registry, repository, tag?, digest?), and what the bot ignores, with why.
//!
//! A payload that cannot be parsed is an error (the hook answers 400 and queues nothing);
//! a payload that parses may still hold nothing to convert (blob pushes, pulls, deletes,
//! the bot's own pushes): those are [`Hooked::Ignored`], counted, never queued.

use serde::Deserialize;

use crate::model::digest::Digest;
use crate::model::media;
use crate::model::reference::{ImageRef, ReferenceError};

/// An image a registry says was pushed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageEvent {
    /// The image: the registry's host (and port) as clients address it, the repository,
    /// the tag pushed when the push named one, the manifest's digest when the sender gives
    /// it (tags without one are resolved by the bot). At least a tag or a digest.
    pub image: ImageRef,
    /// The manifest's media type, when the sender gives it: an index's children are
    /// pushed before the index, by digest, and are converted as part of it.
    pub media_type: Option<String>,
}

impl ImageEvent {
    /// An event from the parts a sender gave, each checked against the distribution
    /// grammar (host, repository path, tag `[\w][\w.-]{0,127}`, digest `algorithm:hex`)
    /// before anything is stored: a name no registry would accept is refused at the door.
    pub fn new(
        registry: &str,
        repository: &str,
        tag: Option<&str>,
        digest: Option<Digest>,
        media_type: Option<String>,
    ) -> Result<ImageEvent, ReferenceError> {
        Ok(ImageEvent {
            image: ImageRef::from_parts(registry, repository, tag, digest)?,
            media_type,
        })
    }

    /// Whether this is a manifest pushed by digest alone that is not an index: most often
    /// a child of a multi-platform push, whose index (with the tag) follows.
    pub fn is_untagged_image_manifest(&self) -> bool {
        self.image.tag().is_none()
            && self
                .media_type
                .as_deref()
                .is_some_and(|m| m != media::OCI_INDEX && m != media::DOCKER_MANIFEST_LIST)
    }
}

/// What one event of a payload comes to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Hooked {
    /// An image to look at.
    Image(ImageEvent),
    /// Nothing to do, and why (`blob push`, `pull`, `the bot's own push`).
    Ignored(String),
}

/// A payload that cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("{sender} payload: {reason}")]
pub struct HookError {
    /// Which hook: `distribution`, `generic`.
    pub sender: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

fn bad(sender: &'static str, reason: impl Into<String>) -> HookError {
    HookError {
        sender,
        reason: reason.into(),
    }
}

mod vendors;
pub use vendors::{dockerhub, github, github_signature_ok, harbor, quay};

/// The user agent of the bot's own registry requests starts with this.
const OWN_AGENT: &str = "unroot/";

#[derive(Deserialize)]
struct Envelope {
    events: Vec<DistributionEvent>,
}

#[derive(Deserialize)]
struct DistributionEvent {
    action: String,
    #[serde(default)]
    target: Target,
    #[serde(default)]
    request: Request,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Target {
    #[serde(default)]
    media_type: String,
    #[serde(default)]
    digest: String,
    #[serde(default)]
    repository: String,
    #[serde(default)]
    url: String,
    #[serde(default)]
    tag: String,
}

#[derive(Default, Deserialize)]
struct Request {
    #[serde(default)]
    host: String,
    #[serde(default)]
    useragent: String,
}

/// Whether a media type is a manifest's (the rest are blobs: layers and configs).
fn is_manifest(media_type: &str) -> bool {
    media::ACCEPTED_MANIFESTS.contains(&media_type)
        || media_type == media::DOCKER_SCHEMA1
        || media_type == media::DOCKER_SCHEMA1_SIGNED
}

/// The host (and port) of an absolute URL: `http://127.0.0.1:5000/v2/...` ->
/// `127.0.0.1:5000`.
fn url_host(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))?;
    let host = rest.split('/').next().unwrap_or_default();
    (!host.is_empty()).then_some(host)
}

/// The CNCF distribution registry's notifications: an envelope
/// (`application/vnd.docker.distribution.events.v1+json` from distribution 2.x, `v2` from
/// 3.x, the same shape) of several events, manifest and
/// blob pushes, pulls and deletes. The registry's address comes from the target's URL (as
/// the registry was asked), else from the request's `Host`.
pub fn distribution(body: &[u8]) -> Result<Vec<Hooked>, HookError> {
    const SENDER: &str = "distribution";
    let envelope: Envelope = serde_json::from_slice(body)
        .map_err(|e| bad(SENDER, format!("not an envelope of events: {e}")))?;
    envelope
        .events
        .into_iter()
        .enumerate()
        .map(|(i, e)| {
            let at = |reason: String| bad(SENDER, format!("events[{i}]: {reason}"));
            match e.action.as_str() {
                "push" => {}
                "pull" | "delete" | "mount" => return Ok(Hooked::Ignored(e.action)),
                other => return Err(at(format!("unknown action `{other}`"))),
            }
            let t = e.target;
            if !is_manifest(&t.media_type) {
                return Ok(Hooked::Ignored("blob push".into()));
            }
            if e.request.useragent.starts_with(OWN_AGENT) {
                return Ok(Hooked::Ignored("the bot's own push".into()));
            }
            if t.repository.is_empty() {
                return Err(at("the target has no repository".into()));
            }
            let registry = url_host(&t.url)
                .map(str::to_string)
                .or_else(|| (!e.request.host.is_empty()).then_some(e.request.host))
                .ok_or_else(
                    || at("neither the target's url nor the request names a host".into()),
                )?;
            let digest = match t.digest.as_str() {
                "" => None,
                d => Some(Digest::parse(d).map_err(|err| at(err.to_string()))?),
            };
            let tag = (!t.tag.is_empty()).then_some(t.tag.as_str());
            if tag.is_none() && digest.is_none() {
                return Err(at("the target has neither a tag nor a digest".into()));
            }
            ImageEvent::new(&registry, &t.repository, tag, digest, Some(t.media_type))
                .map(Hooked::Image)
                .map_err(|e| at(e.to_string()))
        })
        .collect()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Generic {
    image: String,
}

/// The generic hook: `{"image": "host/repo:tag"}` (or `host/repo@sha256:...`).
pub fn generic(body: &[u8]) -> Result<Vec<Hooked>, HookError> {
    const SENDER: &str = "generic";
    let g: Generic = serde_json::from_slice(body).map_err(|e| {
        bad(
            SENDER,
            format!("expected {{\"image\": \"HOST/REPOSITORY:TAG\"}}: {e}"),
        )
    })?;
    let r = ImageRef::parse(&g.image).map_err(|e| bad(SENDER, e.to_string()))?;
    if r.tag().is_none() && r.digest().is_none() {
        return Err(bad(
            SENDER,
            format!("`{}` names neither a tag nor a digest", g.image),
        ));
    }
    Ok(vec![Hooked::Image(image_of(SENDER, &r, None, None)?)])
}

/// A reference as senders write it, host first: `harbor.example/library/nginx:1`.
fn reference_image(sender: &'static str, reference: &str) -> Result<ImageRef, HookError> {
    ImageRef::parse(reference).map_err(|e| bad(sender, e.to_string()))
}

/// The event for a reference, with the tag and digest a sender gave beside it (checked
/// as the reference's own are).
fn image_of(
    sender: &'static str,
    r: &ImageRef,
    tag: Option<String>,
    digest: Option<Digest>,
) -> Result<ImageEvent, HookError> {
    ImageEvent::new(
        r.registry(),
        r.repository(),
        tag.as_deref().or(r.tag()),
        digest.or_else(|| r.digest().cloned()),
        None,
    )
    .map_err(|e| bad(sender, e.to_string()))
}

fn digest_field(sender: &'static str, d: &str) -> Result<Option<Digest>, HookError> {
    match d {
        "" => Ok(None),
        d => Digest::parse(d)
            .map(Some)
            .map_err(|e| bad(sender, e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D1: &str = "sha256:fc6a51919cfeb2e6763f62b6d9e8815acbf7cd2e476ea353743570610737b752";
    const D2: &str = "sha256:6dcbc3ca2df9dda7c6b0b3d1b6ce4eee19c0cda1b36e3f2f80a8b14ba8b97a3d";

    fn envelope(events: &[serde_json::Value]) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({ "events": events })).unwrap()
    }

    fn push(media_type: &str, digest: &str, tag: Option<&str>, agent: &str) -> serde_json::Value {
        let mut target = serde_json::json!({
            "mediaType": media_type,
            "size": 528,
            "digest": digest,
            "length": 528,
            "repository": "library/app",
            "url": format!("http://127.0.0.1:5000/v2/library/app/manifests/{digest}"),
        });
        if let Some(t) = tag {
            target["tag"] = t.into();
        }
        serde_json::json!({
            "id": "0f6fbc43-5e0e-4bbf-b6a0-2bdc5b0e1c5e",
            "timestamp": "2026-12-02T10:00:00.0Z",
            "action": "push",
            "target": target,
            "request": {"id": "r", "addr": "127.0.0.1:40000", "host": "localhost:5000", "method": "PUT", "useragent": agent},
            "actor": {},
            "source": {"addr": "host:5000", "instanceID": "i"}
        })
    }

    #[test]
    fn distribution_envelopes_give_manifest_pushes_and_say_why_the_rest_is_ignored() {
        let body = envelope(&[
            push(media::OCI_LAYER_GZIP, D2, None, "skopeo/1.9"),
            push(media::OCI_MANIFEST, D1, None, "skopeo/1.9"),
            push(media::OCI_INDEX, D2, Some("1.4"), "skopeo/1.9"),
            push(
                media::OCI_MANIFEST,
                D1,
                Some("1.4-unprivileged"),
                "unroot/0.1.0",
            ),
            serde_json::json!({"action": "pull", "target": {"mediaType": media::OCI_MANIFEST}}),
        ]);
        let got = distribution(&body).unwrap();
        assert_eq!(got[0], Hooked::Ignored("blob push".into()));
        let Hooked::Image(child) = &got[1] else {
            panic!("{got:?}")
        };
        assert!(child.is_untagged_image_manifest());
        assert_eq!(
            got[2],
            Hooked::Image(
                ImageEvent::new(
                    "127.0.0.1:5000",
                    "library/app",
                    Some("1.4"),
                    Some(Digest::parse(D2).unwrap()),
                    Some(media::OCI_INDEX.into()),
                )
                .unwrap()
            )
        );
        let Hooked::Image(index) = &got[2] else {
            unreachable!()
        };
        assert!(!index.is_untagged_image_manifest());
        assert_eq!(got[3], Hooked::Ignored("the bot's own push".into()));
        assert_eq!(got[4], Hooked::Ignored("pull".into()));
    }

    #[test]
    fn the_host_comes_from_the_request_when_the_url_has_none() {
        let mut e = push(media::DOCKER_MANIFEST, D1, Some("v1"), "docker/27");
        e["target"]["url"] = "".into();
        let got = distribution(&envelope(&[e])).unwrap();
        let Hooked::Image(image) = &got[0] else {
            panic!("{got:?}")
        };
        assert_eq!(image.image.registry(), "localhost:5000");
    }

    #[test]
    fn unreadable_payloads_are_errors_with_the_reason() {
        let cases: [(&[u8], &str); 4] = [
            (
                b"not json",
                "distribution payload: not an envelope of events",
            ),
            (
                b"{\"events\": [{\"action\": \"teleport\"}]}",
                "events[0]: unknown action `teleport`",
            ),
            (
                &envelope(&[{
                    let mut e = push(media::OCI_MANIFEST, "sha256:xyz", Some("t"), "a");
                    e["target"]["repository"] = "r".into();
                    e
                }]),
                "events[0]: ",
            ),
            (
                &envelope(&[{
                    let mut e = push(media::OCI_MANIFEST, D1, None, "a");
                    e["target"]["url"] = "".into();
                    e["request"]["host"] = "".into();
                    e
                }]),
                "neither the target's url nor the request names a host",
            ),
        ];
        for (body, want) in cases {
            let err = distribution(body).unwrap_err().to_string();
            assert!(err.contains(want), "{err:?} lacks {want:?}");
        }
    }

    /// Names no registry would take are refused by every hook, whichever field holds
    /// them, before anything is stored.
    #[test]
    fn names_outside_the_distribution_grammar_are_refused_by_every_hook() {
        let long_tag = "t".repeat(300);
        let bad: [(&str, &str, &str); 7] = [
            ("library/..", "1", "path component `..`"),
            ("library/nginx@sha256:zzzz", "1", "invalid separator `@`"),
            ("library/UPPER", "1", "must be lowercase"),
            ("library/ok", &long_tag, "must be 1-128 characters"),
            ("library/ok", "a\r\nX-Injected: 1", "the character '\\r'"),
            ("library/o\0k", "1", "the character '\\0'"),
            ("library/ok", ".hidden", "not starting with `.`"),
        ];
        for (repository, tag, want) in bad {
            let mut e = push(media::OCI_MANIFEST, D1, None, "a");
            e["target"]["repository"] = repository.into();
            e["target"]["tag"] = tag.into();
            let err = distribution(&envelope(&[e])).unwrap_err().to_string();
            assert!(err.contains(want), "distribution {repository} {tag}: {err}");

            let body = serde_json::json!({ "image": format!("127.0.0.1:5000/{repository}:{tag}") });
            let err = generic(body.to_string().as_bytes())
                .unwrap_err()
                .to_string();
            assert!(
                err.starts_with("generic payload: "),
                "generic {repository} {tag}: {err}"
            );

            // Harbor gives the tag beside the reference: it is checked as the
            // reference's own would be.
            let body = serde_json::json!({"type": "PUSH_ARTIFACT", "event_data": {"resources": [
                {"digest": D1, "tag": tag, "resource_url": "harbor.example/library/ok"}]}});
            let harbor_result = harbor(body.to_string().as_bytes());
            if repository == "library/ok" {
                let err = harbor_result.unwrap_err().to_string();
                assert!(err.contains(want), "harbor {tag}: {err}");
            }
        }
        // A digest of the wrong length, in the field of its own.
        let e = push(media::OCI_MANIFEST, "sha256:abcd", Some("1"), "a");
        let err = distribution(&envelope(&[e])).unwrap_err().to_string();
        assert!(err.contains("wrong length for the algorithm"), "{err}");
        // And the names the grammar allows still pass.
        let mut e = push(media::OCI_MANIFEST, D1, Some("v1.2_rc-3"), "a");
        e["target"]["repository"] = "team/my-app__x.y".into();
        assert!(matches!(
            distribution(&envelope(&[e])).unwrap()[..],
            [Hooked::Image(_)]
        ));
    }

    #[test]
    fn generic_hooks_name_an_image_with_a_tag_or_a_digest() {
        let got = generic(br#"{"image": "registry.example:5000/team/app:2.1"}"#).unwrap();
        assert_eq!(
            got,
            [Hooked::Image(
                ImageEvent::new("registry.example:5000", "team/app", Some("2.1"), None, None)
                    .unwrap()
            )]
        );
        let by_digest = format!(r#"{{"image": "registry.example:5000/team/app@{D1}"}}"#);
        let Hooked::Image(e) = &generic(by_digest.as_bytes()).unwrap()[0] else {
            unreachable!()
        };
        assert_eq!(e.image.digest(), Some(&Digest::parse(D1).unwrap()));
        for (body, want) in [
            (&br#"{"img": "x"}"#[..], "expected {\"image\""),
            (
                br#"{"image": "registry.example/Team/app:1"}"#,
                "generic payload: ",
            ),
        ] {
            let err = generic(body).unwrap_err().to_string();
            assert!(err.contains(want), "{err:?} lacks {want:?}");
        }
    }
}
