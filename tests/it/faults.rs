//! Registry faults a real registry does not produce on its own: a proxy in front of the real
//! `distribution` registry answers chosen requests with 429/5xx/413 or cuts a blob download
//! short, and logs every request. unroot must retry, resume and fall back, and end with the
//! same image a clean run gives, or fail clearly with the destination tag untouched.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use crate::support::{skopeo, Registry, Scratch, TokenServer, TINY};

/// What the proxy does instead of forwarding.
#[derive(Clone, Copy, Debug)]
pub enum Fault {
    /// Answers with this status (and `Retry-After`), after reading the request body.
    Status(u16, Option<&'static str>),
    /// Forwards, but closes the connection after this many bytes of the answer's body.
    CutAfter(usize),
    /// Reads the request and never answers (the connection stays open until the proxy's
    /// test ends).
    Stall,
    /// Forwards, but goes silent after this many bytes of the answer's body.
    StallAfter(usize),
    /// Forwards, but sends the answer's body one byte every this many milliseconds.
    Trickle(u64),
    /// Answers 403 with an error message that echoes the request's `Authorization` header
    /// (requests without one are forwarded), as careless registries do.
    EchoAuthorization,
}

/// Which requests get a fault, and how many times.
#[derive(Clone, Debug)]
pub struct Rule {
    method: &'static str,
    path: String,
    min_body: u64,
    times: usize,
    fault: Fault,
}

impl Rule {
    /// The next request with `method` whose target contains `path` gets `fault`, once.
    pub fn new(method: &'static str, path: &str, fault: Fault) -> Rule {
        Rule {
            method,
            path: path.to_string(),
            min_body: 0,
            times: 1,
            fault,
        }
    }

    /// Only requests with a body of at least `n` bytes.
    pub fn min_body(mut self, n: u64) -> Rule {
        self.min_body = n;
        self
    }

    /// Every matching request, not once.
    pub fn always(mut self) -> Rule {
        self.times = usize::MAX;
        self
    }
}

/// One request the proxy saw.
#[derive(Clone, Debug)]
pub struct Logged {
    pub method: String,
    pub target: String,
    pub range: Option<String>,
    pub body: u64,
    pub status: u16,
    pub faulted: bool,
    /// When its head was read.
    pub at: std::time::Instant,
}

#[derive(Default)]
struct State {
    rules: Vec<Rule>,
    log: Vec<Logged>,
}

/// A fault-injecting HTTP/1.1 proxy in front of a registry, one request per connection.
pub struct FaultProxy {
    pub addr: String,
    state: Arc<Mutex<State>>,
}

impl FaultProxy {
    pub fn start(upstream: &str) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("free port");
        let addr = listener.local_addr().unwrap().to_string();
        let state: Arc<Mutex<State>> = Arc::default();
        let shared = state.clone();
        let upstream = upstream.to_string();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let state = shared.clone();
                let upstream = upstream.clone();
                std::thread::spawn(move || {
                    let _ = serve(stream, &upstream, &state);
                });
            }
        });
        FaultProxy { addr, state }
    }

    pub fn add(&self, rule: Rule) {
        self.state.lock().unwrap().rules.push(rule);
    }

    pub fn clear(&self) {
        let mut state = self.state.lock().unwrap();
        state.rules.clear();
        state.log.clear();
    }

    pub fn log(&self) -> Vec<Logged> {
        self.state.lock().unwrap().log.clone()
    }

    /// Rules with faults still to give (a once-rule that was never met).
    pub fn unmet(&self) -> Vec<Rule> {
        self.state
            .lock()
            .unwrap()
            .rules
            .iter()
            .filter(|r| r.times > 0 && r.times != usize::MAX)
            .cloned()
            .collect()
    }

    pub fn image(&self, repo_tag: &str) -> String {
        format!("docker://{}/{repo_tag}", self.addr)
    }
}

fn read_head(reader: &mut impl BufRead) -> std::io::Result<(String, Vec<(String, String)>)> {
    let mut first = String::new();
    reader.read_line(&mut first)?;
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    Ok((first.trim_end().to_string(), headers))
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn serve(client: TcpStream, upstream: &str, state: &Mutex<State>) -> std::io::Result<()> {
    let mut reader = BufReader::new(client.try_clone()?);
    let mut client = client;
    // A TLS handshake (unroot asks whether the registry speaks HTTPS): answer in plain
    // HTTP at once, as a plain-HTTP server does.
    if reader.fill_buf()?.first() == Some(&0x16) {
        client.write_all(b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n")?;
        return client.shutdown(Shutdown::Both);
    }
    let (request_line, headers) = read_head(&mut reader)?;
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let target = parts.next().unwrap_or_default().to_string();
    assert!(
        header(&headers, "transfer-encoding").is_none(),
        "the proxy handles sized bodies only: {request_line}"
    );
    let body: u64 = header(&headers, "content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let authorization = header(&headers, "authorization").map(str::to_string);
    let fault = {
        let mut state = state.lock().unwrap();
        let rule = state.rules.iter_mut().find(|r| {
            r.times > 0
                && r.method == method
                && target.contains(&r.path)
                && body >= r.min_body
                && (!matches!(r.fault, Fault::EchoAuthorization) || authorization.is_some())
        });
        rule.map(|r| {
            if r.times != usize::MAX {
                r.times -= 1;
            }
            r.fault
        })
    };
    let mut logged = Logged {
        method: method.clone(),
        target: target.clone(),
        range: header(&headers, "range").map(str::to_string),
        body,
        status: 0,
        faulted: fault.is_some(),
        at: std::time::Instant::now(),
    };
    if let (Some(Fault::EchoAuthorization), Some(auth)) = (fault, &authorization) {
        std::io::copy(&mut (&mut reader).take(body), &mut std::io::sink())?;
        let text = format!(
            r#"{{"errors":[{{"code":"DENIED","message":"not allowed for Authorization: {auth}"}}]}}"#
        );
        client.write_all(
            format!(
                "HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                text.len()
            )
            .as_bytes(),
        )?;
        logged.status = 403;
        state.lock().unwrap().log.push(logged);
        return Ok(());
    }
    if let Some(Fault::Stall) = fault {
        state.lock().unwrap().log.push(logged);
        // Hold the connection: a peer that went silent.
        std::thread::sleep(std::time::Duration::from_secs(3600));
        return Ok(());
    }
    if let Some(Fault::Status(code, retry_after)) = fault {
        std::io::copy(&mut (&mut reader).take(body), &mut std::io::sink())?;
        let error = if code == 404 {
            "NAME_UNKNOWN"
        } else {
            "UNAVAILABLE"
        };
        let text = format!(r#"{{"errors":[{{"code":"{error}","message":"injected {code}"}}]}}"#);
        let mut head = format!(
            "HTTP/1.1 {code} Injected\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
            text.len()
        );
        if let Some(after) = retry_after {
            head.push_str(&format!("Retry-After: {after}\r\n"));
        }
        head.push_str("\r\n");
        client.write_all(head.as_bytes())?;
        client.write_all(text.as_bytes())?;
        logged.status = code;
        state.lock().unwrap().log.push(logged);
        return Ok(());
    }
    let mut up = TcpStream::connect(upstream)?;
    let mut head = format!("{request_line}\r\n");
    for (k, v) in &headers {
        if !k.eq_ignore_ascii_case("connection") && !k.eq_ignore_ascii_case("keep-alive") {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
    }
    head.push_str("Connection: close\r\n\r\n");
    up.write_all(head.as_bytes())?;
    std::io::copy(&mut (&mut reader).take(body), &mut up)?;
    let mut up_reader = BufReader::new(up);
    let (status_line, response_headers) = read_head(&mut up_reader)?;
    logged.status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    state.lock().unwrap().log.push(logged);
    let mut response_head = format!("{status_line}\r\n");
    for (k, v) in &response_headers {
        response_head.push_str(&format!("{k}: {v}\r\n"));
    }
    response_head.push_str("\r\n");
    client.write_all(response_head.as_bytes())?;
    match fault {
        Some(Fault::CutAfter(n)) => {
            std::io::copy(&mut (&mut up_reader).take(n as u64), &mut client)?;
            client.flush()?;
            client.shutdown(Shutdown::Both)?;
        }
        Some(Fault::Trickle(ms)) => {
            client.flush()?;
            let mut byte = [0u8; 1];
            while up_reader.read(&mut byte)? == 1 {
                std::thread::sleep(std::time::Duration::from_millis(ms));
                client.write_all(&byte)?;
                client.flush()?;
            }
        }
        Some(Fault::StallAfter(n)) => {
            std::io::copy(&mut (&mut up_reader).take(n as u64), &mut client)?;
            client.flush()?;
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
        _ => {
            std::io::copy(&mut up_reader, &mut client)?;
        }
    }
    Ok(())
}

/// TINY with a large file, so that its layer is worth resuming.
pub fn spec_with_large_layer() -> String {
    format!("{TINY}\n[[layer]]\n[[layer.entry]]\npath = \"/usr\"\ntype = \"dir\"\n[[layer.entry]]\npath = \"/usr/lib\"\ntype = \"dir\"\n[[layer.entry]]\npath = \"/usr/lib/big.so\"\nsize = 4000000\nmode = 0o755\n")
}

fn manifest(image: &str, creds: Option<&str>) -> serde_json::Value {
    let mut args = vec!["inspect", "--raw", "--tls-verify=false"];
    if let Some(c) = creds {
        args.push("--creds");
        args.push(c);
    }
    args.push(image);
    serde_json::from_str(&skopeo(&args).success().stdout).unwrap()
}

/// The digests of the config and layers: what the image is, without the annotations that
/// name where it came from.
fn content(image: &str) -> Vec<String> {
    let m = manifest(image, None);
    std::iter::once(&m["config"])
        .chain(m["layers"].as_array().unwrap())
        .map(|d| d["digest"].as_str().unwrap().to_string())
        .collect()
}

pub fn largest_layer(image: &str) -> String {
    let m = manifest(image, None);
    m["layers"]
        .as_array()
        .unwrap()
        .iter()
        .max_by_key(|l| l["size"].as_u64().unwrap())
        .unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn transient_failures_are_retried_and_give_the_same_image() {
    let s = Scratch::new();
    let registry = Registry::start();
    let src = s.build("img", "v1", &spec_with_large_layer());
    registry.push(&src, "team/app:v1", None);
    s.unroot(&[
        "convert",
        "-q",
        &registry.image("team/app:v1"),
        "--to",
        &registry.image("clean/app:v1"),
    ])
    .success();

    let proxy = FaultProxy::start(&registry.addr);
    let layer = largest_layer(&registry.image("team/app:v1"));
    proxy.add(Rule::new(
        "GET",
        "/manifests/v1",
        Fault::Status(503, Some("1")),
    ));
    proxy.add(Rule::new(
        "GET",
        &format!("/blobs/{layer}"),
        Fault::CutAfter(100_000),
    ));
    // Two: the push check's upload (started and cancelled before any layer is read), and
    // an upload or mount of the conversion.
    for _ in 0..2 {
        proxy.add(Rule::new(
            "POST",
            "/blobs/uploads/",
            Fault::Status(500, None),
        ));
    }
    proxy.add(Rule::new("PUT", "/blobs/uploads/", Fault::Status(429, Some("0"))).min_body(1));
    proxy.add(Rule::new("PUT", "/manifests/", Fault::Status(502, None)));
    proxy.add(Rule::new("HEAD", "/blobs/", Fault::Status(504, None)));
    let out = s
        .unroot(&[
            "convert",
            &proxy.image("team/app:v1"),
            "--to",
            &proxy.image("faulty/app:v1"),
        ])
        .success();
    assert!(
        proxy.unmet().is_empty(),
        "faults not met: {:?}",
        proxy.unmet()
    );
    assert_eq!(proxy.log().iter().filter(|l| l.faulted).count(), 7);
    // The push check's upload was cancelled, not left to expire.
    assert!(
        proxy
            .log()
            .iter()
            .any(|l| l.method == "DELETE" && l.target.contains("/faulty/app/blobs/uploads/")),
        "{:?}",
        proxy.log()
    );
    assert!(out.stderr.contains("trying again in"), "{}", out.stderr);
    assert!(out.stderr.contains("resuming"), "{}", out.stderr);
    // The cut download went on from where it stopped, not from the start.
    let resumed: Vec<_> = proxy
        .log()
        .into_iter()
        .filter(|l| l.target.contains(&layer) && l.method == "GET" && l.range.is_some())
        .collect();
    assert_eq!(resumed.len(), 1, "{:?}", proxy.log());
    assert_eq!(resumed[0].range.as_deref(), Some("bytes=100000-"));
    assert_eq!(resumed[0].status, 206);
    assert_eq!(
        content(&registry.image("faulty/app:v1")),
        content(&registry.image("clean/app:v1"))
    );
}

#[test]
fn a_registry_that_keeps_failing_leaves_the_tag_as_it_was() {
    let s = Scratch::new();
    let registry = Registry::start();
    let src = s.build("img", "v1", &spec_with_large_layer());
    registry.push(&src, "team/app:v1", None);
    // The destination tag exists already and must keep its image.
    let old = s.build("old", "v1", TINY);
    registry.push(&old, "dest/app:v1", None);
    let before = manifest(&registry.image("dest/app:v1"), None);

    let proxy = FaultProxy::start(&registry.addr);
    proxy.add(Rule::new("PUT", "/manifests/v1", Fault::Status(503, None)).always());
    let out = s
        .unroot(&[
            "convert",
            "--retries",
            "1",
            &proxy.image("team/app:v1"),
            "--to",
            &proxy.image("dest/app:v1"),
        ])
        .failure(1);
    let line = out.error_line();
    assert!(line.contains("HTTP 503 to manifest upload"), "{line}");
    assert!(line.contains("(gave up after 2 attempts in "), "{line}");
    assert!(out.stderr.contains("hint: "), "{}", out.stderr);
    assert_eq!(manifest(&registry.image("dest/app:v1"), None), before);

    // A registry asking for a longer wait than unroot gives is given up on at once.
    proxy.clear();
    proxy.add(Rule::new("GET", "/manifests/v1", Fault::Status(429, Some("3600"))).always());
    let out = s
        .unroot(&["analyze", &proxy.image("team/app:v1")])
        .failure(1);
    let line = out.error_line();
    assert!(line.contains("HTTP 429"), "{line}");
    assert!(line.contains("it asked to wait 3600 s more"), "{line}");
    assert_eq!(proxy.log().len(), 1, "{:?}", proxy.log());

    // A registry that does not create repositories on push says so.
    proxy.clear();
    proxy.add(Rule::new("POST", "/v2/nowhere/", Fault::Status(404, None)).always());
    let out = s
        .unroot(&[
            "convert",
            &proxy.image("team/app:v1"),
            "--to",
            &proxy.image("nowhere/app:v1"),
        ])
        .failure(1);
    assert!(
        out.error_line()
            .contains("the registry has no repository `nowhere/app`"),
        "{}",
        out.stderr
    );
    assert!(!registry.has_tag("nowhere/app:v1", None));

    // Failures that retrying does not fix are not retried.
    proxy.clear();
    let out = s
        .unroot(&["analyze", &proxy.image("team/none:v1")])
        .failure(1);
    assert!(out.error_line().contains("not found"), "{}", out.stderr);
    assert_eq!(proxy.log().len(), 1, "{:?}", proxy.log());
}

#[test]
fn a_registry_refusing_single_uploads_gets_chunks() {
    let s = Scratch::new();
    let registry = Registry::start();
    let src = s.build("img", "v1", &spec_with_large_layer());
    let proxy = FaultProxy::start(&registry.addr);
    proxy.add(
        Rule::new("PUT", "/blobs/uploads/", Fault::Status(413, None))
            .min_body(1)
            .always(),
    );
    // The switch to chunks is not a retry: it happens with retries off too.
    let out = s
        .unroot(&[
            "convert",
            "--retries",
            "0",
            &src,
            "--to",
            &proxy.image("app:v1"),
        ])
        .success();
    assert!(out.stderr.contains("uploading in chunks"), "{}", out.stderr);
    let log = proxy.log();
    let patches = log.iter().filter(|l| l.method == "PATCH").count();
    // Every blob (two layers, the new layer, the config) went up in chunks.
    assert_eq!(patches, 4, "{log:?}");
    assert!(log
        .iter()
        .filter(|l| l.method == "PATCH")
        .all(|l| l.status == 202));
    // The same image as a clean upload, and every blob is readable.
    s.unroot(&["convert", "-q", &src, "--to", &registry.image("clean:v1")])
        .success();
    assert_eq!(
        content(&registry.image("app:v1")),
        content(&registry.image("clean:v1"))
    );
    registry.copy_out("app:v1", &s.path("copy"));
}

/// Converting to another repository of the same registry mounts the base layers: no byte
/// of them is uploaded, with plain access and with bearer tokens (which must then carry
/// pull on the source and push on the destination).
#[test]
fn base_layers_are_mounted_not_copied() {
    let s = Scratch::new();
    let src = s.build("img", "v1", &spec_with_large_layer());
    let tokens = TokenServer::start("erin", "mount-pw");
    let plain = Registry::start();
    let with_tokens = Registry::start_with_tokens(&tokens);
    for (registry, creds) in [(&plain, None), (&with_tokens, Some("erin:mount-pw"))] {
        registry.push(&src, "team/app:v1", creds);
        let base: Vec<String> = manifest(&registry.image("team/app:v1"), creds)["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["digest"].as_str().unwrap().to_string())
            .collect();
        let proxy = FaultProxy::start(&registry.addr);
        let mut args = vec![
            "convert".to_string(),
            "-q".to_string(),
            proxy.image("team/app:v1"),
            "--to".to_string(),
            proxy.image("other/app:v1"),
        ];
        if let Some(c) = creds {
            args.extend(["--creds".to_string(), c.to_string()]);
        }
        s.unroot(&args.iter().map(String::as_str).collect::<Vec<_>>())
            .success();
        let log = proxy.log();
        for digest in &base {
            assert!(
                log.iter().any(|l| l.method == "POST"
                    && l.target
                        .contains(&format!("mount={}", digest.replace(':', "%3A")))
                    && l.status == 201),
                "{digest} was not mounted: {log:?}"
            );
            assert!(
                !log.iter()
                    .any(|l| l.target.contains(&digest.replace(':', "%3A")) && l.body > 0),
                "{digest} was uploaded: {log:?}"
            );
            let downloads = log
                .iter()
                .filter(|l| l.method == "GET" && l.target.ends_with(&format!("/blobs/{digest}")))
                .count();
            assert_eq!(downloads, 1, "{digest} was read {downloads} times: {log:?}");
        }
        let converted = manifest(&registry.image("other/app:v1"), creds);
        assert_eq!(
            converted["layers"].as_array().unwrap().len(),
            base.len() + 1
        );
    }
}

/// To another registry, the base layers must be copied: each is downloaded once, for the
/// analysis, and uploaded from the copy kept while it streamed past.
#[test]
fn a_layer_is_downloaded_once_when_copied_to_another_registry() {
    let s = Scratch::new();
    let src = s.build("img", "v1", &spec_with_large_layer());
    let from = Registry::start();
    let to = Registry::start();
    from.push(&src, "team/app:v1", None);
    let proxy = FaultProxy::start(&from.addr);
    s.unroot(&[
        "convert",
        "-q",
        &proxy.image("team/app:v1"),
        "--to",
        &to.image("app:v1"),
    ])
    .success();
    let log = proxy.log();
    for digest in content(&from.image("team/app:v1")).iter().skip(1) {
        let downloads = log
            .iter()
            .filter(|l| l.method == "GET" && l.target.ends_with(&format!("/blobs/{digest}")))
            .count();
        assert_eq!(downloads, 1, "{digest} was read {downloads} times: {log:?}");
    }
    let copied = content(&to.image("app:v1"));
    assert_eq!(copied[1..3], content(&from.image("team/app:v1"))[1..3]);
}

#[test]
fn secrets_a_registry_echoes_are_not_printed() {
    use base64::Engine;
    let s = Scratch::new();
    let registry = Registry::start_with_auth("henry", "echoed-password");
    let src = s.build("img", "v1", TINY);
    registry.push(&src, "app:v1", Some("henry:echoed-password"));
    let proxy = FaultProxy::start(&registry.addr);
    proxy.add(Rule::new("GET", "/manifests/v1", Fault::EchoAuthorization).always());
    let out = s
        .unroot(&[
            "analyze",
            "--creds",
            "henry:echoed-password",
            &proxy.image("app:v1"),
        ])
        .failure(1);
    let basic = base64::engine::general_purpose::STANDARD.encode("henry:echoed-password");
    assert!(
        proxy.log().iter().any(|l| l.faulted),
        "the registry echoed: {:?}",
        proxy.log()
    );
    assert!(
        !out.stderr.contains("echoed-password") && !out.stderr.contains(&basic),
        "{}",
        out.stderr
    );
    assert!(
        out.error_line()
            .contains("access denied: not allowed for Authorization: Basic <redacted>"),
        "{}",
        out.stderr
    );
}

/// Runs unroot with `args`, killing it if it runs past a guard that only a hang reaches
/// (the cases below end in seconds when the limits work, in minutes when they do not).
fn run_guarded(s: &Scratch, args: &[&str]) -> crate::support::Output {
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_unroot"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", s.dir.path())
        .env("TMPDIR", s.tmp())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let end = std::time::Instant::now() + std::time::Duration::from_secs(90);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > end {
            let _ = child.kill();
            panic!("unroot {args:?} did not give up");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    crate::support::Output::of(child.wait_with_output().unwrap())
}

#[test]
fn slow_and_silent_registries_are_given_up_on() {
    let s = Scratch::new();
    let registry = Registry::start();
    let src = s.build("img", "v1", TINY);
    registry.push(&src, "team/app:v1", None);
    let proxy = FaultProxy::start(&registry.addr);

    // A manifest one byte every 200 ms: below the speed floor.
    proxy.add(Rule::new("GET", "/manifests/v1", Fault::Trickle(200)).always());
    let out = run_guarded(
        &s,
        &[
            "analyze",
            "--retries",
            "0",
            "--speed-limit",
            "100",
            "--speed-time",
            "2",
            &proxy.image("team/app:v1"),
        ],
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.error_line()
            .contains("the transfer was slower than 100 B/s for 2 s"),
        "{}",
        out.stderr
    );

    // Above the floor but never done: the request's deadline.
    proxy.clear();
    proxy.add(Rule::new("GET", "/manifests/v1", Fault::Trickle(100)).always());
    let out = run_guarded(
        &s,
        &[
            "analyze",
            "--retries",
            "0",
            "--speed-limit",
            "1",
            "--request-deadline",
            "2",
            &proxy.image("team/app:v1"),
        ],
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.error_line().contains("no whole answer within 2 s"),
        "{}",
        out.stderr
    );

    // A peer that never answers: the read timeout, per attempt.
    proxy.clear();
    proxy.add(Rule::new("GET", "/manifests/v1", Fault::Stall).always());
    let out = run_guarded(
        &s,
        &[
            "analyze",
            "--retries",
            "1",
            "--read-timeout",
            "2",
            &proxy.image("team/app:v1"),
        ],
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.error_line().contains("timed out"), "{}", out.stderr);
    assert!(
        out.error_line().contains("gave up after 2 attempts"),
        "{}",
        out.stderr
    );

    // The same peer with ten retries allowed: their attempts share the retry budget, so
    // the run gives up after the second (2 s, a wait of 1 s, 2 s: another wait would pass
    // 5 s), not after eleven; each retry is said on stderr, even with -q.
    let out = run_guarded(
        &s,
        &[
            "analyze",
            "-q",
            "--retries",
            "10",
            "--read-timeout",
            "2",
            "--retry-budget",
            "5s",
            &proxy.image("team/app:v1"),
        ],
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    let line = out.error_line();
    assert!(
        line.contains("gave up after 2 attempts in "),
        "{}",
        out.stderr
    );
    assert!(
        line.contains(" s; another would pass the 5 s retry budget"),
        "{}",
        out.stderr
    );
    let retries: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.contains("trying again in"))
        .collect();
    assert_eq!(retries.len(), 1, "{}", out.stderr);
    assert!(retries[0].contains("(attempt 2 of 11)"), "{}", out.stderr);
    let stalled = proxy
        .log()
        .iter()
        .filter(|l| l.faulted && l.target.contains("/manifests/v1"))
        .count();
    assert!(stalled >= 2, "{stalled}");
}
