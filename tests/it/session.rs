//! The library's `Session`, as a server would use it: per-registry credentials, one client
//! per registry reused across jobs, and jobs that stop when cancelled, whatever they are
//! waiting for.

use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use unroot::control::{Cancel, Silent};
use unroot::pipeline::{
    ConvertOptions, ConvertOutcome, ConvertRequest, PlanOptions, Session, SessionOptions,
};
use unroot::transport::auth::{Credentials, RegistryCredentials};
use unroot::transport::registry::RetryPolicy;
use unroot::Error;

use crate::faults::{Fault, FaultProxy, Rule};
use crate::support::{Registry, Scratch, TINY};

fn request(source: &str, destination: &str) -> ConvertRequest {
    ConvertRequest::new(
        source,
        &PlanOptions::default(),
        &ConvertOptions {
            destination: Some(destination.to_string()),
            ..Default::default()
        },
    )
    .unwrap()
}

/// A guard for tests of cancellation: how long a cancelled job may take to return before
/// the test calls it stuck. It is not a measure of speed: an uncancelled job here would
/// wait an hour.
const STUCK: Duration = Duration::from_secs(30);

/// Runs `request` in `session` on a thread, cancels it once the proxy has seen `seen`
/// requests matching `path`, and returns the job's result.
fn cancelled_during(
    session: &Session,
    proxy: &FaultProxy,
    path: &str,
    request: ConvertRequest,
) -> Result<ConvertOutcome, Error> {
    let cancel = Cancel::new();
    let job = session.job(Arc::new(Silent), cancel.clone());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(job.convert(&request));
    });
    // Wait until the fault was given, then cancel.
    for _ in 0..600 {
        if proxy
            .log()
            .iter()
            .any(|l| l.faulted && l.target.contains(path))
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        proxy
            .log()
            .iter()
            .any(|l| l.faulted && l.target.contains(path)),
        "the fault on {path} was never given: {:?}",
        proxy.log()
    );
    cancel.cancel();
    rx.recv_timeout(STUCK)
        .expect("a cancelled job returns instead of waiting on")
}

#[test]
fn a_cancelled_job_stops_in_a_retry_wait_and_at_a_silent_peer_even_mid_layer() {
    let s = Scratch::new();
    let registry = Registry::start();
    let src = s.build("img", "v1", TINY);
    registry.push(&src, "team/app:v1", None);
    let old = s.build("old", "v1", TINY);
    registry.push(&old, "dest/app:v1", None);
    let session = Session::new(SessionOptions {
        retry: RetryPolicy {
            retries: 3,
            ..Default::default()
        },
        ..Default::default()
    });

    // A registry that asks to wait 50 s before the manifest is tried again.
    let proxy = FaultProxy::start(&registry.addr);
    proxy.add(Rule::new("GET", "/manifests/v1", Fault::Status(503, Some("50"))).always());
    let result = cancelled_during(
        &session,
        &proxy,
        "/manifests/v1",
        request(&proxy.image("team/app:v1"), &proxy.image("dest/app:v1")),
    );
    assert!(matches!(result, Err(Error::Cancelled)), "{result:?}");

    // A registry that never answers a blob request.
    proxy.clear();
    proxy.add(Rule::new("GET", "/blobs/sha256:", Fault::Stall).always());
    let result = cancelled_during(
        &session,
        &proxy,
        "/blobs/sha256:",
        request(&proxy.image("team/app:v1"), &proxy.image("dest/app:v1")),
    );
    assert!(matches!(result, Err(Error::Cancelled)), "{result:?}");

    // A registry that goes silent in the middle of a layer: the layer's reader is stuck
    // in a read, and the job still stops.
    let big = s.build("big", "v1", &crate::faults::spec_with_large_layer());
    registry.push(&big, "team/big:v1", None);
    let layer = crate::faults::largest_layer(&registry.image("team/big:v1"));
    proxy.clear();
    proxy.add(
        Rule::new(
            "GET",
            &format!("/blobs/{layer}"),
            Fault::StallAfter(100_000),
        )
        .always(),
    );
    let result = cancelled_during(
        &session,
        &proxy,
        &format!("/blobs/{layer}"),
        request(&proxy.image("team/big:v1"), &proxy.image("dest/app:v1")),
    );
    assert!(matches!(result, Err(Error::Cancelled)), "{result:?}");
    assert_eq!(Error::Cancelled.exit_code(), 130);

    // The destination tag was never moved, and the session works on for the next job.
    let raw = |image: &str| {
        crate::support::skopeo(&["inspect", "--raw", "--tls-verify=false", image])
            .success()
            .stdout
    };
    let before = raw(&registry.image("dest/app:v1"));
    assert!(before.contains("layers"), "{before}");
    proxy.clear();
    let done = session
        .convert(&request(
            &proxy.image("team/app:v1"),
            &registry.image("dest/app:v2"),
        ))
        .unwrap();
    assert!(matches!(done, ConvertOutcome::Image(_)));
    assert!(registry.has_tag("dest/app:v2", None));
    let after = raw(&registry.image("dest/app:v1"));
    assert_eq!(
        before, after,
        "the cancelled jobs left dest/app:v1 as it was"
    );
}

#[test]
fn source_and_destination_get_their_own_credentials_and_clients_are_reused() {
    let s = Scratch::new();
    let source = Registry::start_with_auth("reader", "pw-src");
    let destination = Registry::start_with_auth("writer", "pw-dst");
    let src = s.build("img", "v1", TINY);
    source.push(&src, "team/app:v1", Some("reader:pw-src"));
    let creds = |c: &str| Credentials::parse(c).unwrap();
    let session = Session::new(SessionOptions {
        credentials: Arc::new(
            RegistryCredentials::new()
                .with(&source.addr, creds("reader:pw-src"))
                .with(&destination.addr, creds("writer:pw-dst")),
        ),
        ..Default::default()
    });
    for tag in ["v1", "v2"] {
        let outcome = session
            .convert(&request(
                &source.image("team/app:v1"),
                &destination.image(&format!("team/app:{tag}")),
            ))
            .unwrap();
        let ConvertOutcome::Image(converted) = outcome else {
            panic!("one image")
        };
        assert!(converted.written);
        assert!(destination.has_tag(&format!("team/app:{tag}"), Some("writer:pw-dst")));
    }
    // One client per registry, made once and reused by the second job.
    assert_eq!(session.registries().clients(), 2);

    // With the destination's credentials swapped for the source's, the push is refused
    // by name.
    let wrong = Session::new(SessionOptions {
        credentials: Arc::new(
            RegistryCredentials::new()
                .with(&source.addr, creds("reader:pw-src"))
                .with(&destination.addr, creds("reader:pw-src")),
        ),
        ..Default::default()
    });
    let error = wrong
        .convert(&request(
            &source.image("team/app:v1"),
            &destination.image("team/app:v3"),
        ))
        .unwrap_err();
    let text = error.to_string();
    assert!(
        text.contains(&destination.addr) && text.contains("credentials were not accepted"),
        "{text}"
    );
    assert!(!destination.has_tag("team/app:v3", Some("writer:pw-dst")));
}

/// A base layer with what a scan keeps: accounts, a config file, and code owned by a
/// non-root user (its body is kept to be re-owned in the new layer).
const SHARED_BASE: &str = r##"
[config]
Cmd = ["/usr/bin/app"]
ExposedPorts = ["80/tcp"]

[[layer]]
[[layer.entry]]
path = "/etc/passwd"
text = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n"
[[layer.entry]]
path = "/etc/group"
text = "root:x:0:\napp:x:1000:\n"
[[layer.entry]]
path = "/etc/app/app.conf"
text = "listen 80\n"
[[layer.entry]]
path = "/usr/bin/app"
text = "#!/bin/sh\n# the service, owned by its user and not group-writable\nexec sleep 1\n"
mode = 0o750
uid = 1000
gid = 1000
"##;

/// A session's layer cache: a base layer that two images share is read once, the second
/// image's scan of it comes from the cache, and what is written is what is written
/// without the cache, digest for digest.
#[test]
fn a_layer_cache_reads_a_shared_base_once_and_changes_no_digest() {
    use unroot::pipeline::{CacheStats, LayerCache};

    let s = Scratch::new();
    let registry = Registry::start();
    for (i, name) in ["one", "two"].iter().enumerate() {
        let spec = format!(
            "{SHARED_BASE}\n[[layer]]\n[[layer.entry]]\npath = \"/etc/image-id\"\ntext = \"{i}\\n\"\n"
        );
        let image = s.build(name, "v1", &spec);
        registry.push(&image, &format!("team/{name}:v1"), None);
    }
    let base = crate::faults::largest_layer(&registry.image("team/one:v1"));
    assert_eq!(
        base,
        crate::faults::largest_layer(&registry.image("team/two:v1")),
        "the two images share their base"
    );
    let digest_of = |outcome: ConvertOutcome| match outcome {
        ConvertOutcome::Image(image) => {
            let bodies = image.new_layer.as_ref().map_or(0, |l| l.content_bytes);
            assert!(bodies > 0, "the new layer re-owns /usr/bin/app");
            image.digest.to_string()
        }
        other => panic!("one image expected: {other:?}"),
    };

    // The source's name is in the image: every conversion reads it through the proxy.
    let proxy = FaultProxy::start(&registry.addr);
    let plain = Session::new(SessionOptions::default());
    let expected: Vec<String> = ["one", "two"]
        .iter()
        .map(|n| {
            let r = request(
                &proxy.image(&format!("team/{n}:v1")),
                &proxy.image(&format!("plain/{n}:v1")),
            );
            digest_of(plain.convert(&r).unwrap())
        })
        .collect();

    let cache = Arc::new(LayerCache::new(&s.tmp(), 64 << 20));
    let cached = Session::new(SessionOptions {
        layer_cache: Some(cache.clone()),
        ..Default::default()
    });
    let before = proxy.log().len();
    let got: Vec<String> = ["one", "two"]
        .iter()
        .map(|n| {
            let r = request(
                &proxy.image(&format!("team/{n}:v1")),
                &proxy.image(&format!("cached/{n}:v1")),
            );
            digest_of(cached.convert(&r).unwrap())
        })
        .collect();
    assert_eq!(got, expected, "the cache changes no digest");
    let base_reads = proxy.log()[before..]
        .iter()
        .filter(|l| l.method == "GET" && l.target.contains(&base))
        .count();
    assert_eq!(
        base_reads,
        1,
        "the shared base is downloaded once: {:?}",
        proxy.log()
    );
    let stats = cache.stats();
    assert_eq!(
        (stats.hits, stats.misses, stats.layers),
        (1, 3, 3),
        "the second image's base came from the cache: {stats:?}"
    );
    assert!(stats.bytes > 0 && stats.bytes <= stats.budget, "{stats:?}");

    // Converted again, both images come wholly from the cache, to the same digests.
    let again: Vec<String> = ["one", "two"]
        .iter()
        .map(|n| {
            let r = request(
                &proxy.image(&format!("team/{n}:v1")),
                &proxy.image(&format!("again/{n}:v1")),
            );
            digest_of(cached.convert(&r).unwrap())
        })
        .collect();
    assert_eq!(again, expected);
    assert_eq!(cache.stats(), CacheStats { hits: 5, ..stats });
    let blob_reads = proxy.log()[before..]
        .iter()
        .filter(|l| l.method == "GET" && l.target.contains("/blobs/sha256:"))
        .count();
    // Per conversion: the config; layers only the first two times (3 layers in all).
    assert_eq!(blob_reads, 4 + 3, "{:?}", proxy.log());
}
