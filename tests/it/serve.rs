//! The registry bot's parts against the real distribution registry: what it sends when
//! images are pushed.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use unroot::serve::hooks::{self, Hooked, ImageEvent};

use crate::support::{sample_spec, skopeo, Registry, Scratch};

/// One HTTP request as received: its headers (lower-case names) and body.
struct Received {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// Accepts HTTP/1.1 POSTs on 127.0.0.1, answers each `200`, and hands them over.
fn receiver() -> (String, mpsc::Receiver<Received>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "http://{}/hooks/distribution",
        listener.local_addr().unwrap()
    );
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let mut reader = BufReader::new(conn);
            let mut headers = Vec::new();
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                continue;
            }
            loop {
                line.clear();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                    break;
                }
                if let Some((k, v)) = line.trim_end().split_once(':') {
                    headers.push((k.to_ascii_lowercase(), v.trim().to_string()));
                }
            }
            let len: usize = headers
                .iter()
                .find(|(k, _)| k == "content-length")
                .and_then(|(_, v)| v.parse().ok())
                .unwrap_or(0);
            let mut body = vec![0; len];
            if reader.read_exact(&mut body).is_err() {
                continue;
            }
            let _ = reader
                .get_mut()
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            if tx.send(Received { headers, body }).is_err() {
                return;
            }
        }
    });
    (url, rx)
}

/// A push of one image reaches the hook as envelopes the distribution parser reads: the
/// manifest push with its tag and digest, at the registry's address, blob pushes ignored,
/// the hook's secret in the request.
#[test]
fn the_registry_s_notifications_of_a_push_parse_to_one_image_event() {
    let (url, rx) = receiver();
    let registry = Registry::start_notifying(&url, "hook-secret");
    let s = Scratch::new();
    let src = s.build("img", "latest", &sample_spec());
    let digest_file = s.path("digest");
    skopeo(&[
        "copy",
        "--quiet",
        "--dest-tls-verify=false",
        "--digestfile",
        digest_file.to_str().unwrap(),
        &src,
        &registry.image("library/app:1.4"),
    ])
    .success();
    let digest = std::fs::read_to_string(&digest_file).unwrap();

    let mut images: Vec<ImageEvent> = Vec::new();
    let mut ignored: Vec<String> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while images.is_empty() && Instant::now() < deadline {
        let Ok(r) = rx.recv_timeout(Duration::from_millis(500)) else {
            continue;
        };
        let header = |name: &str| {
            r.headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(header("authorization"), Some("Bearer hook-secret"));
        // distribution 2.x says `events.v1+json`, 3.x `events.v2+json`: one envelope format.
        let kind = header("content-type").unwrap_or_default();
        assert!(
            kind.starts_with("application/vnd.docker.distribution.events.v")
                && kind.ends_with("+json"),
            "{kind}"
        );
        for h in hooks::distribution(&r.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&r.body)))
        {
            match h {
                Hooked::Image(i) => images.push(i),
                Hooked::Ignored(why) => ignored.push(why),
            }
        }
    }
    assert_eq!(images.len(), 1, "{images:?}");
    let image = &images[0];
    assert_eq!(image.registry, registry.addr);
    assert_eq!(image.repository, "library/app");
    assert_eq!(image.tag.as_deref(), Some("1.4"));
    assert_eq!(image.digest.as_ref().map(|d| d.to_string()), Some(digest));
    assert!(!image.is_untagged_image_manifest());
    assert!(ignored.iter().all(|why| why == "blob push"), "{ignored:?}");
}
