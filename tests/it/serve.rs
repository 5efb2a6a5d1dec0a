//! The registry bot's parts against the real distribution registry: what it sends when
//! images are pushed.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use unroot::serve::hooks::{self, Hooked, ImageEvent};

use crate::support::{sample_spec, skopeo, Registry, Scratch};

/// One HTTP request as received: its headers (lower-case names) and body.
pub(crate) struct Received {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// Accepts HTTP/1.1 POSTs on 127.0.0.1, answers each `200`, and hands them over.
pub(crate) fn receiver() -> (String, mpsc::Receiver<Received>) {
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
    let digest = registry.push_digest(&src, "library/app:1.4", s.dir.path());

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
    assert_eq!(image.image.registry(), registry.addr);
    assert_eq!(image.image.repository(), "library/app");
    assert_eq!(image.image.tag(), Some("1.4"));
    assert_eq!(image.image.digest().map(|d| d.to_string()), Some(digest));
    assert!(!image.is_untagged_image_manifest());
    // The layers and the config were pushed first: blob pushes, each ignored.
    assert!(!ignored.is_empty(), "no blob push announced");
    assert!(ignored.iter().all(|why| why == "blob push"), "{ignored:?}");
}

/// A free port on 127.0.0.1.
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One HTTP/1.1 request to `addr`; the status and the body.
pub(crate) fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    let mut conn = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    conn.write_all(request.as_bytes()).unwrap();
    // A server that refuses a body (413) may close before reading all of it.
    let _ = conn.write_all(body);
    let mut response = Vec::new();
    conn.read_to_end(&mut response).unwrap();
    let text = String::from_utf8_lossy(&response).to_string();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {text}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// `unroot serve` started on a rules file, stopped (SIGTERM) when dropped.
pub(crate) struct Bot {
    child: Child,
    /// `127.0.0.1:PORT`.
    pub addr: String,
    /// The hooks' secret.
    pub token: String,
    /// Its log (stderr).
    pub log: PathBuf,
}

pub(crate) const TOKEN: &str = "test-hook-secret-0123456789";

impl Bot {
    /// Writes the token file and `rules` (with `listen` and `webhook_token_file` put
    /// first) into `dir`, starts the bot and waits for `/healthz`.
    pub fn start(dir: &std::path::Path, name: &str, port: u16, rules: &str, args: &[&str]) -> Bot {
        let token_file = dir.join("hook-token");
        std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
        let addr = format!("127.0.0.1:{port}");
        let config = dir.join(format!("{name}.toml"));
        std::fs::write(
            &config,
            format!(
                "listen = \"{addr}\"\nwebhook_token_file = \"{}\"\n{rules}",
                token_file.display()
            ),
        )
        .unwrap();
        let log = dir.join(format!("{name}.log"));
        // A short heartbeat, so that a killed replica's jobs move on soon, unless the
        // test sets its own.
        let heartbeat: &[&str] = if args.contains(&"--heartbeat") {
            &[]
        } else {
            &["--heartbeat", "2"]
        };
        let child = Command::new(env!("CARGO_BIN_EXE_unroot"))
            .args(["serve", "-c", config.to_str().unwrap()])
            .args(heartbeat)
            .args(args)
            .current_dir(dir)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start unroot serve");
        let mut bot = Bot {
            child,
            addr,
            token: TOKEN.to_string(),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = bot.child.try_wait() {
                panic!("unroot serve exited ({status}):\n{}", bot.log_text());
            }
            if TcpStream::connect(&bot.addr).is_ok() && bot.get("/healthz").0 == 200 {
                return bot;
            }
            assert!(
                Instant::now() < deadline,
                "no /healthz in 30 s:\n{}",
                bot.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn get(&self, path: &str) -> (u16, String) {
        http(&self.addr, "GET", path, &[], b"")
    }

    /// GETs `path` with the secret.
    pub fn get_authorized(&self, path: &str) -> (u16, String) {
        let auth = format!("Bearer {}", self.token);
        http(&self.addr, "GET", path, &[("Authorization", &auth)], b"")
    }

    /// POSTs `body` to `/hooks/HOOK` with the secret.
    pub fn hook(&self, hook: &str, body: &str) -> (u16, serde_json::Value) {
        let auth = format!("Bearer {}", self.token);
        let (status, text) = http(
            &self.addr,
            "POST",
            &format!("/hooks/{hook}"),
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/json"),
            ],
            body.as_bytes(),
        );
        (
            status,
            serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
        )
    }

    /// The jobs, newest first.
    pub fn jobs(&self) -> Vec<serde_json::Value> {
        let (status, text) = self.get_authorized("/jobs?limit=1000");
        assert_eq!(status, 200, "{text}");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        v["jobs"].as_array().unwrap().clone()
    }

    /// Waits until `n` jobs exist and none is queued or running; returns them.
    pub fn wait_jobs_ended(&self, n: usize, within: Duration) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + within;
        loop {
            let jobs = self.jobs();
            let live = jobs
                .iter()
                .filter(|j| j["state"] == "queued" || j["state"] == "running")
                .count();
            if jobs.len() >= n && live == 0 {
                return jobs;
            }
            assert!(
                Instant::now() < deadline,
                "jobs did not end in {within:?}: {jobs:#?}\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Sends SIGTERM and waits for the exit; its status code.
    pub fn stop(&mut self) -> Option<i32> {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        self.child.wait().ok().and_then(|s| s.code())
    }
}

impl Drop for Bot {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How many manifest pushes to `repository` with a tag ending in `suffix` the registry
/// announced (read from its envelopes as they are, whoever pushed), from what `rx`
/// received until it was quiet for `quiet`.
fn pushes_seen(
    rx: &mpsc::Receiver<Received>,
    repository: &str,
    suffix: &str,
    quiet: Duration,
) -> usize {
    let mut n = 0;
    while let Ok(r) = rx.recv_timeout(quiet) {
        let envelope: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        for e in envelope["events"].as_array().unwrap() {
            let target = &e["target"];
            if e["action"] == "push"
                && target["repository"] == repository
                && target["tag"].as_str().is_some_and(|t| t.ends_with(suffix))
            {
                n += 1;
            }
        }
    }
    n
}

/// How many times the registry announced each converted tag (`REPO:TAG-unprivileged`)
/// pushed, from what `rx` received until it was quiet for 3 s.
fn twin_pushes(rx: &mpsc::Receiver<Received>) -> std::collections::BTreeMap<String, usize> {
    let mut pushes = std::collections::BTreeMap::new();
    while let Ok(r) = rx.recv_timeout(Duration::from_secs(3)) {
        let envelope: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        for e in envelope["events"].as_array().unwrap() {
            let tag = e["target"]["tag"].as_str().unwrap_or_default();
            if e["action"] == "push" && tag.ends_with("-unprivileged") {
                let repository = e["target"]["repository"].as_str().unwrap();
                *pushes.entry(format!("{repository}:{tag}")).or_insert(0) += 1;
            }
        }
    }
    pushes
}

/// The end-to-end test of the bot: the real registry notifies it of a push, it converts
/// the image once to the rule's destination, the result runs and names its source; a
/// duplicated, replayed or tag-only notification converts nothing again (the registry's
/// own notifications count the pushes); its own push, a wrong secret and garbage are
/// refused or ignored.
#[test]
fn a_pushed_image_is_converted_once_by_the_bot_and_runs() {
    let s = Scratch::new();
    let port = free_port();
    let hook_url = format!("http://127.0.0.1:{port}/hooks/distribution");
    let (count_url, counted) = receiver();
    let registry = Registry::start_notifying_all(&[(&hook_url, TOKEN), (&count_url, "counter")]);
    let rules = format!(
        "state = \"sqlite:{}\"\n\n[[rule]]\nsource = \"{}/library/*\"\nexclude_tags = [\"*-unprivileged\"]\ndestination = \"{{registry}}/{{repository}}:{{tag}}-unprivileged\"\n",
        s.path("state/bot.db").display(),
        registry.addr
    );
    let mut bot = Bot::start(s.dir.path(), "bot", port, &rules, &[]);

    let src = s.build("img", "latest", crate::runtime::WEB);
    let digest = registry.push_digest(&src, "library/web:1.0", s.dir.path());

    let jobs = bot.wait_jobs_ended(1, Duration::from_secs(180));
    assert_eq!(jobs.len(), 1, "{jobs:#?}");
    let job = &jobs[0];
    assert_eq!(job["state"], "done", "{job:#}\n{}", bot.log_text());
    assert_eq!(job["outcome"], "converted");
    assert_eq!(job["source_digest"], digest.as_str());
    assert_eq!(
        job["destination"],
        format!("{}/library/web:1.0-unprivileged", registry.addr)
    );
    assert!(job["report"]["findings"].is_array(), "{job:#}");
    let (status, one) = bot.get_authorized(&format!("/jobs/{}", job["id"].as_str().unwrap()));
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&one).unwrap()["id"],
        job["id"]
    );

    // The converted twin names its source and recipe set, and runs.
    let converted = registry.image("library/web:1.0-unprivileged");
    let raw = skopeo(&["inspect", "--raw", "--tls-verify=false", &converted]).success();
    let manifest: serde_json::Value = serde_json::from_str(&raw.stdout).unwrap();
    assert_eq!(
        manifest["annotations"]["org.opencontainers.image.base.digest"],
        digest.as_str()
    );
    assert!(manifest["annotations"]["dev.unroot.recipes.digest"]
        .as_str()
        .is_some_and(|d| d.starts_with("sha256:")));
    let (code, report) = crate::runtime::verify(&s, &converted);
    assert_eq!(code, 0, "{report:#}");

    // The same push notified again (replayed), twice at once (duplicated), and by tag
    // alone: each is a job that finds the conversion done.
    let envelope = serde_json::json!({ "events": [{
        "id": "replayed-1",
        "action": "push",
        "target": {
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": digest,
            "repository": "library/web",
            "tag": "1.0",
        },
        "request": { "host": registry.addr, "useragent": "skopeo/1.9" },
    }]})
    .to_string();
    for _ in 0..2 {
        let (status, answer) = bot.hook("distribution", &envelope);
        assert_eq!(status, 202, "{answer}");
    }
    let generic = format!("{{\"image\": \"{}/library/web:1.0\"}}", registry.addr);
    let (status, answer) = bot.hook("generic", &generic);
    assert_eq!(status, 202, "{answer}");
    let jobs = bot.wait_jobs_ended(2, Duration::from_secs(120));
    for job in &jobs[..jobs.len() - 1] {
        assert_eq!(job["state"], "done", "{job:#}");
        assert_eq!(job["outcome"], "up to date", "{job:#}");
        assert_eq!(job["source_digest"], digest.as_str());
    }
    assert_eq!(
        pushes_seen(
            &counted,
            "library/web",
            "-unprivileged",
            Duration::from_secs(3)
        ),
        1,
        "the converted tag was pushed once"
    );

    // The bot's own push was announced to it, and ignored.
    let (_, metrics) = bot.get("/metrics");
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("unroot_events_ignored_total{reason=\"the bot's own push\"}")),
        "{metrics}"
    );
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("unroot_events_received_total{hook=\"distribution\"}")),
        "{metrics}"
    );

    // The same image under another tag: a new conversion whose layers all come from the
    // bot's layer cache (none is read again), and its twin runs too.
    let layers = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &registry.image("library/web:1.0"),
    ])
    .success();
    let layers = serde_json::from_str::<serde_json::Value>(&layers.stdout).unwrap()["layers"]
        .as_array()
        .unwrap()
        .len() as u64;
    let cache_counter = |metrics: &str, name: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {metrics}"))
    };
    let hits_before = cache_counter(&metrics, "unroot_layer_cache_hits_total");
    let ended = bot.jobs().len() + 1;
    registry.push(&src, "library/web:1.1", None);
    let jobs = bot.wait_jobs_ended(ended, Duration::from_secs(120));
    let again = jobs
        .iter()
        .find(|j| j["tag"] == "1.1")
        .expect("a job for 1.1");
    assert_eq!(
        again["outcome"],
        "converted",
        "{again:#}\n{}",
        bot.log_text()
    );
    let (_, metrics) = bot.get("/metrics");
    assert_eq!(
        cache_counter(&metrics, "unroot_layer_cache_hits_total") - hits_before,
        layers,
        "{metrics}"
    );
    let (code, report) =
        crate::runtime::verify(&s, &registry.image("library/web:1.1-unprivileged"));
    assert_eq!(code, 0, "{report:#}");

    // A wrong secret: 401; garbage with the right one: 400; neither queues anything.
    let before = bot.jobs().len();
    let (status, _) = http(
        &bot.addr,
        "POST",
        "/hooks/generic",
        &[("Authorization", "Bearer wrong-secret-000000000")],
        generic.as_bytes(),
    );
    assert_eq!(status, 401);
    let (status, _) = http(&bot.addr, "POST", "/hooks/generic", &[], generic.as_bytes());
    assert_eq!(status, 401);
    let (status, answer) = bot.hook("distribution", "{\"events\": [{\"action\": ");
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .is_some_and(|e| e.contains("distribution")),
        "{answer}"
    );
    assert_eq!(bot.jobs().len(), before);
    assert_eq!(bot.get("/readyz").0, 200);

    // A multi-platform push: the children's notifications come first, by digest; one job,
    // for the index, converts every platform.
    let layout = crate::platforms::multi_platform_layout(&s);
    skopeo(&[
        "copy",
        "--quiet",
        "--all",
        "--dest-tls-verify=false",
        &format!("oci:{}:multi", layout.display()),
        &registry.image("library/multi:v1"),
    ])
    .success();
    let jobs = bot.wait_jobs_ended(before + 1, Duration::from_secs(120));
    let multi: Vec<_> = jobs
        .iter()
        .filter(|j| j["repository"] == "library/multi")
        .collect();
    assert_eq!(multi.len(), 1, "{multi:#?}");
    assert_eq!(multi[0]["state"], "done", "{:#}", multi[0]);
    assert_eq!(multi[0]["tag"], "v1");
    let raw = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &registry.image("library/multi:v1-unprivileged"),
    ])
    .success();
    let index: serde_json::Value = serde_json::from_str(&raw.stdout).unwrap();
    assert_eq!(
        index["manifests"].as_array().map(Vec::len),
        Some(2),
        "{index:#}"
    );
    let (_, metrics) = bot.get("/metrics");
    let children: u64 = metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix("unroot_events_ignored_total{reason=\"an index's child (converted with its index)\"} ")
        })
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(children >= 2, "{metrics}");

    assert_eq!(bot.stop(), Some(0), "{}", bot.log_text());
}

/// The state store's password never reaches the log: a real PostgreSQL that wants it
/// (SCRAM), a bot that logs in with it and works, and a log with `<redacted>` where the
/// URL's password was.
#[test]
fn the_postgresql_password_is_not_in_the_log() {
    let s = Scratch::new();
    let password = "Unroot-pg-s3cret-4242";
    let pg = crate::support::Postgres::start_with_password("bot", password);
    let registry = Registry::start();
    registry.push(
        &s.build("tiny", "1", crate::support::TINY),
        "library/tiny:1",
        None,
    );
    let rules = format!(
        "state = \"{}\"\n\n[[rule]]\nsource = \"{}/library/*\"\ndestination = \"{{registry}}/{{repository}}:{{tag}}-unprivileged\"\n",
        pg.url, registry.addr
    );
    assert!(rules.contains(password));
    let bot = Bot::start(s.dir.path(), "bot", free_port(), &rules, &[]);
    // It logged in: the first reconcile's job is done.
    let jobs = bot.wait_jobs_ended(1, Duration::from_secs(60));
    assert_eq!(jobs[0]["state"], "done", "{:#}", jobs[0]);
    let log = bot.log_text();
    assert!(!log.contains(password), "{log}");
    assert!(
        log.contains("postgres://bot:<redacted>@127.0.0.1:"),
        "the store is named: {log}"
    );
}

/// Three replicas on one real PostgreSQL share the queue: every push reaches all three
/// (the registry notifies each), and each of 50 images is converted and pushed once. The
/// replica running the slow conversion is killed with SIGKILL mid-way; after its heartbeats
/// stop another replica finishes that job, and every converted tag's blobs are there.
#[test]
fn three_replicas_on_postgresql_convert_fifty_pushes_once_and_survive_a_kill() {
    let s = Scratch::new();
    let pg = crate::support::Postgres::start();
    let ports = [free_port(), free_port(), free_port()];
    let urls: Vec<String> = ports
        .iter()
        .map(|p| format!("http://127.0.0.1:{p}/hooks/distribution"))
        .collect();
    let (count_url, counted) = receiver();
    let mut endpoints: Vec<(&str, &str)> = urls.iter().map(|u| (u.as_str(), TOKEN)).collect();
    endpoints.push((&count_url, "counter"));
    let registry = Registry::start_notifying_all(&endpoints);
    let rules = format!(
        "state = \"{}\"\n\n[[rule]]\nsource = \"{}/library/*\"\nexclude_tags = [\"*-unprivileged\"]\ndestination = \"{{registry}}/{{repository}}:{{tag}}-unprivileged\"\n",
        pg.url, registry.addr
    );
    let mut bots: Vec<Option<Bot>> = ports
        .iter()
        .enumerate()
        .map(|(i, port)| {
            Some(Bot::start(
                s.dir.path(),
                &format!("replica{i}"),
                *port,
                &rules,
                &["--concurrency", "2"],
            ))
        })
        .collect();
    // The reconcile at start is done by one replica for all.
    let deadline = Instant::now() + Duration::from_secs(60);
    let passes = loop {
        let logs: Vec<String> = bots
            .iter()
            .map(|b| b.as_ref().unwrap().log_text())
            .collect();
        if logs
            .iter()
            .all(|l| l.contains("reconciled tags=") || l.contains("reconcile skipped"))
        {
            break logs
                .iter()
                .filter(|l| l.contains("reconciled tags="))
                .count();
        }
        assert!(Instant::now() < deadline, "{logs:#?}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(passes, 1, "one replica reconciles");

    let started = Instant::now();
    // The slow one: a 64 MiB layer, stored uncompressed so that building it is quick,
    // read and hashed by the conversion.
    let big = format!(
        "{}\n[[layer]]\ncompression = \"none\"\n[[layer.entry]]\npath = \"/srv\"\ntype = \"dir\"\n[[layer.entry]]\npath = \"/srv/blob\"\nsize = {}\n",
        crate::support::TINY,
        64 << 20
    );
    skopeo(&[
        "copy",
        "--quiet",
        "--dest-tls-verify=false",
        &s.build("big", "1", &big),
        &registry.image("library/big:1"),
    ])
    .success();

    // Kill the replica that runs it, while it runs.
    let deadline = Instant::now() + Duration::from_secs(120);
    let (killed_worker, killed) = loop {
        let jobs = bots[0].as_ref().unwrap().jobs();
        let running = jobs.iter().find(|j| {
            j["state"] == "running" && j["subject"].as_str().unwrap().contains("/library/big:1")
        });
        if let Some(job) = running {
            let worker = job["worker"].as_str().unwrap().to_string();
            let pid: u32 = worker.split('-').nth(2).unwrap().parse().unwrap();
            let i = bots
                .iter()
                .position(|b| b.as_ref().is_some_and(|b| b.child.id() == pid))
                .expect("the worker is a replica");
            break (worker, i);
        }
        assert!(
            Instant::now() < deadline,
            "the big job never ran: {jobs:#?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    eprintln!("killing replica {killed} after {:?}", started.elapsed());
    let mut victim = bots[killed].take().unwrap();
    victim.child.kill().unwrap();
    victim.child.wait().unwrap();
    let survivor = bots.iter().flatten().next().unwrap();

    // 49 more images, each its own repository.
    for i in 0..49 {
        let spec = format!(
            "{}[[layer.entry]]\npath = \"/etc/build-id\"\ntext = \"{i}\\n\"\n",
            crate::support::TINY
        );
        skopeo(&[
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
            &s.build(&format!("app{i}"), "1", &spec),
            &registry.image(&format!("library/app{i}:1")),
        ])
        .success();
    }

    eprintln!("pushed after {:?}", started.elapsed());
    // Every image converted; nothing live.
    let deadline = Instant::now() + Duration::from_secs(300);
    let jobs = loop {
        let jobs = survivor.jobs();
        let done: std::collections::BTreeSet<&str> = jobs
            .iter()
            .filter(|j| j["state"] == "done")
            .map(|j| j["destination"].as_str().unwrap())
            .collect();
        let live = jobs
            .iter()
            .any(|j| j["state"] == "queued" || j["state"] == "running");
        if done.len() == 50 && !live {
            break jobs;
        }
        assert!(
            Instant::now() < deadline,
            "{} of 50 converted in 300 s: {jobs:#?}\n{}",
            done.len(),
            survivor.log_text()
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    eprintln!("all converted after {:?}", started.elapsed());
    assert!(jobs.iter().all(|j| j["state"] == "done"), "{jobs:#?}");
    // The job gauges are the store's, the same on every replica.
    let done_in_store = jobs.iter().filter(|j| j["state"] == "done").count();
    for bot in bots.iter().flatten() {
        let (_, metrics) = bot.get("/metrics");
        for (state, n) in [("done", done_in_store), ("queued", 0), ("running", 0)] {
            let line = format!("unroot_jobs{{state=\"{state}\"}} {n}\n");
            assert!(metrics.contains(&line), "{line} missing in\n{metrics}");
        }
    }

    // The killed replica's job was finished by another one.
    let big_jobs: Vec<_> = jobs
        .iter()
        .filter(|j| j["subject"].as_str().unwrap().contains("/library/big:1"))
        .collect();
    let taken_over = big_jobs
        .iter()
        .find(|j| j["attempts"].as_i64() >= Some(2))
        .unwrap_or_else(|| panic!("no job of the big image was started twice: {big_jobs:#?}"));
    assert_ne!(taken_over["worker"], killed_worker.as_str());

    // Each converted tag was pushed once, and its blobs are all there.
    let pushes = twin_pushes(&counted);
    assert_eq!(pushes.len(), 50, "{pushes:?}");
    assert!(pushes.values().all(|n| *n == 1), "{pushes:?}");
    std::fs::create_dir_all(s.path("out")).unwrap();
    for name in pushes.keys() {
        let out = s.path(&format!("out/{}", name.replace(['/', ':'], "_")));
        skopeo(&[
            "copy",
            "--quiet",
            "--src-tls-verify=false",
            &registry.image(name),
            &format!("oci:{}:x", out.display()),
        ])
        .success();
    }
    drop(bots);
}

/// The registry down for 30 s: the job meets refused connections, tries again with
/// backoff, and converts once the registry is back. An image that does not exist fails its
/// job with the reason, kept; `POST /jobs/ID/retry` (with the secret) runs it again once
/// the image is there.
#[test]
fn jobs_outlast_a_registry_down_for_30_s_and_failed_ones_are_retried_on_request() {
    let s = Scratch::new();
    let mut registry = Registry::start();
    let port = free_port();
    let rules = format!(
        "state = \"sqlite:{}\"\n\n[[rule]]\nsource = \"{}/library/*\"\ndestination = \"{{registry}}/{{repository}}:{{tag}}-unprivileged\"\n",
        s.path("state.db").display(),
        registry.addr
    );
    let bot = Bot::start(s.dir.path(), "bot", port, &rules, &["--retries", "1"]);
    let src = s.build("img", "1", crate::support::TINY);
    registry.push(&src, "library/app:1", None);

    registry.stop();
    let down = Instant::now();
    let (status, answer) = bot.hook(
        "generic",
        &format!("{{\"image\": \"{}/library/app:1\"}}", registry.addr),
    );
    assert_eq!(status, 202, "{answer}");
    // The job has met the closed port before the registry comes back.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !bot.log_text().contains("trying again") {
        assert!(Instant::now() < deadline, "{}", bot.log_text());
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(30).saturating_sub(down.elapsed()));
    registry.start_again();
    let jobs = bot.wait_jobs_ended(1, Duration::from_secs(120));
    assert_eq!(
        jobs[0]["state"],
        "done",
        "{:#}\n{}",
        jobs[0],
        bot.log_text()
    );
    assert_eq!(jobs[0]["outcome"], "converted");
    assert!(registry.has_tag("library/app:1-unprivileged", None));
    let (_, metrics) = bot.get("/metrics");
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("unroot_registry_errors_total{kind=\"unreachable\"}")),
        "{metrics}"
    );

    // No such image: failed, with the registry's answer.
    let (status, _) = bot.hook(
        "generic",
        &format!("{{\"image\": \"{}/library/late:2\"}}", registry.addr),
    );
    assert_eq!(status, 202);
    let jobs = bot.wait_jobs_ended(2, Duration::from_secs(60));
    let failed = &jobs[0];
    assert_eq!(failed["state"], "failed", "{failed:#}");
    assert!(
        failed["error"]
            .as_str()
            .is_some_and(|e| e.contains("library/late")),
        "{failed:#}"
    );
    let id = failed["id"].as_str().unwrap();
    let retry = format!("/jobs/{id}/retry");
    let (status, _) = http(&bot.addr, "POST", &retry, &[], b"");
    assert_eq!(status, 401, "retrying needs the secret");
    registry.push(&src, "library/late:2", None);
    let auth = format!("Bearer {TOKEN}");
    let (status, answer) = http(&bot.addr, "POST", &retry, &[("Authorization", &auth)], b"");
    assert_eq!(status, 202, "{answer}");
    let (status, _) = http(&bot.addr, "POST", &retry, &[("Authorization", &auth)], b"");
    assert_eq!(status, 409, "only a failed job is retried");
    let jobs = bot.wait_jobs_ended(2, Duration::from_secs(60));
    let retried = jobs.iter().find(|j| j["id"] == id).unwrap();
    assert_eq!(retried["state"], "done", "{retried:#}");
    assert_eq!(retried["outcome"], "converted");
    assert_eq!(retried["error"], serde_json::Value::Null);
    assert!(registry.has_tag("library/late:2-unprivileged", None));
}

/// `unroot serve --once` (for cron) lists the watched repositories' tags, converts the
/// ones without an up-to-date twin and exits 0; a second pass converts nothing, and
/// neither does one after the state store was lost (the registry is the record). Logs are
/// JSON lines with `--log-format json`.
#[test]
fn serve_once_reconciles_from_the_registry_and_a_lost_state_store_costs_only_time() {
    let s = Scratch::new();
    let registry = Registry::start();
    let src = s.build("img", "1", crate::support::TINY);
    for tag in [
        "library/app:1",
        "library/app:2",
        "library/tool:1",
        "other/app:1",
    ] {
        registry.push(&src, tag, None);
    }
    std::fs::write(s.path("hook-token"), format!("{TOKEN}\n")).unwrap();
    let state = s.path("state.db");
    std::fs::write(
        s.path("rules.toml"),
        format!(
            "listen = \"127.0.0.1:{}\"\nwebhook_token_file = \"{}\"\nstate = \"sqlite:{}\"\n\n[[rule]]\nsource = \"{}/library/*\"\nexclude_tags = [\"2\"]\ndestination = \"{{registry}}/{{repository}}:{{tag}}-unprivileged\"\n",
            free_port(),
            s.path("hook-token").display(),
            state.display(),
            registry.addr
        ),
    )
    .unwrap();
    let once = || {
        let out = Command::new(env!("CARGO_BIN_EXE_unroot"))
            .args(["serve", "--once", "--log-format", "json", "-c"])
            .arg(s.path("rules.toml"))
            .env("RUST_LOG", "info")
            .output()
            .unwrap();
        let log = String::from_utf8_lossy(&out.stderr).to_string();
        assert_eq!(out.status.code(), Some(0), "{log}");
        assert!(!log.contains(TOKEN), "the secret is logged: {log}");
        let lines: Vec<serde_json::Value> = log
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        let summary = lines
            .iter()
            .find(|l| l["fields"]["message"] == "reconciled")
            .unwrap_or_else(|| panic!("no summary: {log}"))["fields"]
            .clone();
        (summary["queued"].as_u64(), summary["up_to_date"].as_u64())
    };
    assert_eq!(once(), (Some(2), Some(0)));
    for tag in ["library/app:1", "library/tool:1"] {
        assert!(
            registry.has_tag(&format!("{tag}-unprivileged"), None),
            "{tag}"
        );
    }
    assert!(
        !registry.has_tag("library/app:2-unprivileged", None),
        "an excluded tag"
    );
    assert!(
        !registry.has_tag("other/app:1-unprivileged", None),
        "not watched"
    );
    assert_eq!(once(), (Some(0), Some(2)));
    // The whole store lost: the file and its write-ahead log.
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", state.display()));
    }
    assert!(!state.exists());
    assert_eq!(once(), (Some(0), Some(2)));
}

/// A spec whose conversion takes a while: a 64 MiB layer, stored uncompressed so that
/// building it is quick, read and hashed by the conversion.
fn slow_spec() -> String {
    spec_with_blob(64 << 20)
}

/// TINY with a layer holding `size` bytes, uncompressed.
fn spec_with_blob(size: usize) -> String {
    format!(
        "{}\n[[layer]]\ncompression = \"none\"\n[[layer.entry]]\npath = \"/srv\"\ntype = \"dir\"\n[[layer.entry]]\npath = \"/srv/blob\"\nsize = {}\n",
        crate::support::TINY,
        size
    )
}

/// Waits until a job whose subject contains `name` is running; returns it.
fn wait_running(bot: &Bot, name: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let jobs = bot.jobs();
        if let Some(job) = jobs
            .iter()
            .find(|j| j["state"] == "running" && j["subject"].as_str().unwrap().contains(name))
        {
            return job.clone();
        }
        assert!(
            Instant::now() < deadline,
            "{name} never ran: {jobs:#?}\n{}",
            bot.log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// SIGTERM: the bot stops taking hooks, a running job finishes within the grace period;
/// with no grace left, it is stopped and put back in the queue, and the next start
/// finishes it. Either way the process exits 0.
#[test]
fn sigterm_lets_running_jobs_finish_within_the_grace_period_and_releases_the_rest() {
    let s = Scratch::new();
    let registry = Registry::start();
    let src = s.build("slow", "1", &slow_spec());
    registry.push(&src, "library/slow:1", None);
    registry.push(&src, "library/slow:2", None);
    let rules = format!(
        "state = \"sqlite:{}\"\n\n[[rule]]\nsource = \"{}/library/*\"\ndestination = \"{{registry}}/{{repository}}:{{tag}}-unprivileged\"\n",
        s.path("state.db").display(),
        registry.addr
    );
    let no_reconcile = ["--reconcile-every", "0"];

    // A grace long enough: the job ends done before the process exits.
    let mut bot = Bot::start(
        s.dir.path(),
        "patient",
        free_port(),
        &rules,
        &[&no_reconcile[..], &["--grace", "120"]].concat(),
    );
    let image = format!("{{\"image\": \"{}/library/slow:1\"}}", registry.addr);
    assert_eq!(bot.hook("generic", &image).0, 202);
    wait_running(&bot, "slow:1");
    assert_eq!(bot.stop(), Some(0), "{}", bot.log_text());
    assert!(
        registry.has_tag("library/slow:1-unprivileged", None),
        "{}",
        bot.log_text()
    );

    // No grace: the job is stopped, nothing is pushed, it is queued again.
    let mut bot = Bot::start(
        s.dir.path(),
        "hasty",
        free_port(),
        &rules,
        &[&no_reconcile[..], &["--grace", "0"]].concat(),
    );
    let image = format!("{{\"image\": \"{}/library/slow:2\"}}", registry.addr);
    assert_eq!(bot.hook("generic", &image).0, 202);
    let job = wait_running(&bot, "slow:2");
    assert_eq!(bot.stop(), Some(0), "{}", bot.log_text());
    assert!(
        bot.log_text().contains("job released"),
        "{}",
        bot.log_text()
    );
    assert!(!registry.has_tag("library/slow:2-unprivileged", None));

    let bot = Bot::start(s.dir.path(), "next", free_port(), &rules, &no_reconcile);
    let jobs = bot.wait_jobs_ended(2, Duration::from_secs(120));
    let finished = jobs.iter().find(|j| j["id"] == job["id"]).unwrap();
    assert_eq!(
        finished["state"],
        "done",
        "{finished:#}\n{}",
        bot.log_text()
    );
    assert_eq!(finished["outcome"], "converted");
    assert_eq!(finished["attempts"], 2);
    assert!(registry.has_tag("library/slow:2-unprivileged", None));
    let first = jobs.iter().find(|j| j["id"] != job["id"]).unwrap();
    assert_eq!(first["state"], "done");
    assert_eq!(first["attempts"], 1);
}

/// With `verify = true` a job runs the converted image before pushing it: one that serves
/// is pushed; one that does not fails its job with the reasons, and nothing is pushed.
#[test]
fn a_rule_with_verify_pushes_only_images_that_run() {
    let s = Scratch::new();
    let registry = Registry::start();
    registry.push(
        &s.build("web", "1", crate::runtime::WEB),
        "library/web:1",
        None,
    );
    registry.push(
        &s.build("tiny", "1", crate::support::TINY),
        "library/tiny:1",
        None,
    );
    let rules = format!(
        "state = \"sqlite:{}\"\n\n[[rule]]\nsource = \"{}/library/*\"\ndestination = \"{{registry}}/{{repository}}:{{tag}}-unprivileged\"\nverify = true\n",
        s.path("state.db").display(),
        registry.addr
    );
    let bot = Bot::start(s.dir.path(), "bot", free_port(), &rules, &[]);
    // The first reconcile finds both.
    let jobs = bot.wait_jobs_ended(2, Duration::from_secs(180));
    let job = |name: &str| {
        jobs.iter()
            .find(|j| j["repository"] == format!("library/{name}"))
            .unwrap_or_else(|| panic!("no job for {name}: {jobs:#?}"))
    };
    assert_eq!(
        job("web")["state"],
        "done",
        "{:#}\n{}",
        job("web"),
        bot.log_text()
    );
    assert!(registry.has_tag("library/web:1-unprivileged", None));
    let failed = job("tiny");
    assert_eq!(failed["state"], "failed", "{failed:#}");
    assert!(
        failed["error"]
            .as_str()
            .is_some_and(|e| e.contains("verif")),
        "{failed:#}"
    );
    assert!(!registry.has_tag("library/tiny:1-unprivileged", None));
}

/// With `learn = true` a job learns what the image needs by running it (as `convert
/// --learn` does): dropbear, which no recipe knows (its port an argument, its host key
/// root 0600), is pushed as the image whose twin served, and the job's report lists what
/// was learned with its evidence.
#[test]
fn a_rule_with_learn_pushes_what_it_learned_and_proved() {
    let s = Scratch::new();
    let registry = Registry::start();
    let src = format!("oci:{}:1", s.path("dropbear").display());
    crate::support::build(&crate::learn::dropbear(&s).spec(), &src);
    registry.push(&src, "library/dropbear:1", None);
    let rules = format!(
        "state = \"sqlite:{}\"\n\n[[rule]]\nsource = \"{}/library/*\"\ndestination = \"{{registry}}/{{repository}}:{{tag}}-unprivileged\"\nlearn = true\n",
        s.path("state.db").display(),
        registry.addr
    );
    let bot = Bot::start(s.dir.path(), "bot", free_port(), &rules, &[]);
    let jobs = bot.wait_jobs_ended(1, Duration::from_secs(300));
    assert_eq!(
        jobs[0]["state"],
        "done",
        "{:#}\n{}",
        jobs[0],
        bot.log_text()
    );
    assert!(registry.has_tag("library/dropbear:1-unprivileged", None));
    let (status, text) = bot.get_authorized(&format!("/jobs/{}", jobs[0]["id"].as_str().unwrap()));
    assert_eq!(status, 200, "{text}");
    let job: serde_json::Value = serde_json::from_str(&text).unwrap();
    let learned = &job["report"]["destination"]["learned"];
    assert!(learned["rounds"].as_u64().unwrap() >= 1, "{job:#}");
    let changes = learned["changes"].to_string();
    for want in ["22", "/etc/dropbear/dropbear_ed25519_host_key"] {
        assert!(changes.contains(want), "{want}: {changes}");
    }
}

/// The hooks over HTTP: GitHub's signature is checked (401 when it does not match the
/// body), Harbor's auth header may be the bare token, an unknown hook is 404, a body
/// over 1 MiB is 413, and each answer says what was queued and why the rest was not.
#[test]
fn hooks_check_their_sender_s_secret_and_size() {
    use hmac::Mac;
    let s = Scratch::new();
    let rules = format!(
        "state = \"sqlite:{}\"\n\n[[rule]]\nsource = \"ghcr.io/owner/*\"\ndestination = \"ghcr.io/owner/unprivileged/{{name}}:{{tag}}\"\n",
        s.path("state.db").display(),
    );
    let bot = Bot::start(
        s.dir.path(),
        "bot",
        free_port(),
        &rules,
        &[
            "--reconcile-every",
            "0",
            "--job-retries",
            "0",
            "--retries",
            "0",
        ],
    );
    let digest = format!("sha256:{}", "a".repeat(64));
    let body = serde_json::json!({
        "action": "published",
        "registry_package": {
            "name": "app", "namespace": "owner", "package_type": "CONTAINER",
            "package_version": {
                "version": digest,
                "package_url": "ghcr.io/owner/app:2.0",
                "container_metadata": {"tag": {"name": "2.0", "digest": digest}}
            }
        }
    })
    .to_string();
    let sign = |body: &str| {
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(TOKEN.as_bytes()).unwrap();
        mac.update(body.as_bytes());
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    };
    let github = |signature: &str, body: &str| {
        http(
            &bot.addr,
            "POST",
            "/hooks/github",
            &[
                ("X-GitHub-Event", "registry_package"),
                ("X-Hub-Signature-256", signature),
            ],
            body.as_bytes(),
        )
    };
    let (status, answer) = github(&sign(&body), &body);
    assert_eq!(status, 202, "{answer}");
    let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(
        answer["queued"].as_array().map(Vec::len),
        Some(1),
        "{answer}"
    );
    assert_eq!(
        answer["queued"][0]["source"],
        format!("ghcr.io/owner/app:2.0@{digest}")
    );
    let tampered = body.replace("2.0", "6.6");
    assert_eq!(github(&sign(&body), &tampered).0, 401);

    // Harbor, with the bare token as its auth header; the repository is watched by no rule.
    let harbor = serde_json::json!({"type": "PUSH_ARTIFACT", "occur_at": 1, "operator": "admin", "event_data": {
        "resources": [{"digest": digest, "tag": "1.0", "resource_url": "harbor.example/library/app:1.0"}],
        "repository": {"name": "app", "namespace": "library", "repo_full_name": "library/app"}}})
    .to_string();
    let (status, answer) = http(
        &bot.addr,
        "POST",
        "/hooks/harbor",
        &[("Authorization", TOKEN)],
        harbor.as_bytes(),
    );
    assert_eq!(status, 202, "{answer}");
    let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(answer["queued"], serde_json::json!([]));
    assert_eq!(
        answer["ignored"][0]["reason"],
        "no rule watches the repository"
    );

    assert_eq!(bot.hook("gitlab", "{}").0, 404);
    let huge = format!("{{\"image\": \"{}\"}}", "x".repeat(2 << 20));
    assert_eq!(bot.hook("generic", &huge).0, 413);
    let (status, answer) = bot.hook("generic", "{\"image\": \"not a reference!\"}");
    assert_eq!(status, 400, "{answer}");
    assert_eq!(bot.jobs().len(), 1);
}

/// A 429 with `Retry-After` that one job gets holds every job's requests to that
/// registry until the time is up: the registry's wish is honoured across jobs.
#[test]
fn a_registry_s_retry_after_holds_every_job() {
    use crate::faults::{Fault, FaultProxy, Rule};
    let s = Scratch::new();
    let registry = Registry::start();
    let src = s.build("img", "1", crate::support::TINY);
    registry.push(&src, "library/app1:1", None);
    registry.push(&src, "library/app2:1", None);
    let proxy = FaultProxy::start(&registry.addr);
    let rules = format!(
        "state = \"sqlite:{}\"\n\n[[rule]]\nsource = \"{}/library/*\"\ndestination = \"{{registry}}/{{repository}}:{{tag}}-unprivileged\"\n",
        s.path("state.db").display(),
        proxy.addr
    );
    let bot = Bot::start(
        s.dir.path(),
        "bot",
        free_port(),
        &rules,
        &["--reconcile-every", "0", "--concurrency", "2"],
    );
    proxy.add(Rule::new(
        "GET",
        "/library/app1/manifests/",
        Fault::Status(429, Some("4")),
    ));
    let hook = |repo: &str| {
        let body = format!("{{\"image\": \"{}/library/{repo}:1\"}}", proxy.addr);
        assert_eq!(bot.hook("generic", &body).0, 202);
    };
    hook("app1");
    let deadline = Instant::now() + Duration::from_secs(30);
    let limited = loop {
        if let Some(l) = proxy.log().into_iter().find(|l| l.faulted) {
            break l;
        }
        assert!(Instant::now() < deadline, "no 429 given: {:?}", proxy.log());
        std::thread::sleep(Duration::from_millis(20));
    };
    std::thread::sleep(Duration::from_millis(500));
    hook("app2");
    let jobs = bot.wait_jobs_ended(2, Duration::from_secs(60));
    assert!(jobs.iter().all(|j| j["state"] == "done"), "{jobs:#?}");
    let first_of_app2 = proxy
        .log()
        .into_iter()
        .filter(|l| l.target.contains("/library/app2"))
        .map(|l| l.at)
        .min()
        .expect("app2 was read");
    let waited = first_of_app2.duration_since(limited.at);
    assert!(
        waited >= Duration::from_millis(3500),
        "the second job asked {waited:?} after the 429 that asked for 4 s"
    );
}

/// `[registries."HOST"]`: the credentials of a registry that needs them come from the auth
/// file named there, and `concurrency = 1` lets one job at a time touch it, whatever
/// `--concurrency` allows.
#[test]
fn per_registry_credentials_and_concurrency_come_from_the_rules_file() {
    use base64::Engine;
    let s = Scratch::new();
    let registry = Registry::start_with_auth("bot", "s3cret-pass");
    let src = s.build("img", "1", &spec_with_blob(8 << 20));
    for repo in ["a", "b", "c"] {
        registry.push(&src, &format!("library/{repo}:1"), Some("bot:s3cret-pass"));
    }
    let auth = base64::engine::general_purpose::STANDARD.encode("bot:s3cret-pass");
    std::fs::write(
        s.path("auth.json"),
        format!(
            "{{\"auths\": {{\"{}\": {{\"auth\": \"{auth}\"}}}}}}",
            registry.addr
        ),
    )
    .unwrap();
    let rules = format!(
        "state = \"sqlite:{}\"\n\n[[rule]]\nsource = \"{r}/library/*\"\ndestination = \"{{registry}}/{{repository}}:{{tag}}-unprivileged\"\n\n[registries.\"{r}\"]\nconcurrency = 1\nauth_file = \"{}\"\n",
        s.path("state.db").display(),
        s.path("auth.json").display(),
        r = registry.addr,
    );
    let bot = Bot::start(
        s.dir.path(),
        "bot",
        free_port(),
        &rules,
        &["--concurrency", "3", "--reconcile-every", "0"],
    );
    // The three at once, in one envelope.
    let raw = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        "--creds",
        "bot:s3cret-pass",
        &registry.image("library/a:1"),
    ])
    .success();
    let digest = unroot::model::Digest::sha256_of(raw.stdout.as_bytes()).to_string();
    let events: Vec<_> = ["a", "b", "c"]
        .iter()
        .map(|repo| {
            serde_json::json!({
                "action": "push",
                "target": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest,
                           "repository": format!("library/{repo}"), "tag": "1"},
                "request": {"host": registry.addr, "useragent": "skopeo/1.9"},
            })
        })
        .collect();
    let envelope = serde_json::json!({ "events": events }).to_string();
    let (status, answer) = bot.hook("distribution", &envelope);
    assert_eq!(status, 202, "{answer}");
    let jobs = bot.wait_jobs_ended(3, Duration::from_secs(120));
    assert!(
        jobs.iter()
            .all(|j| j["state"] == "done" && j["outcome"] == "converted"),
        "{jobs:#?}\n{}",
        bot.log_text()
    );
    for repo in ["a", "b", "c"] {
        assert!(registry.has_tag(
            &format!("library/{repo}:1-unprivileged"),
            Some("bot:s3cret-pass")
        ));
    }
    // Never two conversions at once.
    let log = bot.log_text();
    let mut active = 0;
    for line in log.lines() {
        if line.contains(" converting ") {
            active += 1;
            assert_eq!(active, 1, "two jobs at once:\n{log}");
        } else if line.contains(" conversion ended ") {
            active -= 1;
        }
    }
    assert!(log.contains("waiting for a slot of the registry"), "{log}");
    assert!(!log.contains("s3cret-pass"), "{log}");
}

/// The door on a real PostgreSQL store: a repository, tag or digest no registry would take
/// is 400 with the reason from every hook (a NUL byte too, which PostgreSQL's text refuses
/// and a registry would retry forever on a 5xx), an envelope of more events than the cap is
/// 413, and none of them is ever a job; the job list needs the secret, the probes and the
/// metrics do not.
#[test]
fn bad_names_are_refused_at_the_door_and_the_job_list_needs_the_secret() {
    let s = Scratch::new();
    let pg = crate::support::Postgres::start();
    let registry = Registry::start();
    let rules = format!(
        "state = \"{}\"\n\n[[rule]]\nsource = \"{}/library/*\"\ndestination = \"{{registry}}/{{repository}}:{{tag}}-unprivileged\"\n",
        pg.url, registry.addr
    );
    let bot = Bot::start(
        s.dir.path(),
        "bot",
        free_port(),
        &rules,
        &["--reconcile-every", "0"],
    );
    let digest = format!("sha256:{}", "a".repeat(64));
    let push = |repository: &str, tag: &str, digest: &str| {
        serde_json::json!({
            "action": "push",
            "target": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest,
                       "repository": repository, "tag": tag},
            "request": {"host": registry.addr, "useragent": "skopeo/1.9"},
        })
    };
    let long_tag = "t".repeat(300);
    let bad = [
        ("library/..", "1", digest.as_str(), "`..`"),
        ("library/nginx@sha256:zzzz", "1", &digest, "`@`"),
        ("library/UPPER", "1", &digest, "must be lowercase"),
        ("library/web", &long_tag, &digest, "1-128 characters"),
        ("library/web", "1\r\nX: y", &digest, "'\\r'"),
        ("library/w\0eb", "1", &digest, "'\\0'"),
        ("library/web", "1", "sha256:abcd", "wrong length"),
    ];
    for (repository, tag, digest, why) in bad {
        let envelope = serde_json::json!({ "events": [push(repository, tag, digest)] }).to_string();
        let (status, answer) = bot.hook("distribution", &envelope);
        assert_eq!(status, 400, "{repository:?} {tag:?} {digest}: {answer}");
        let reason = answer["error"].as_str().unwrap_or_default();
        assert!(reason.contains(why), "{reason} lacks {why}");
        if repository != "library/web" || tag != "1" {
            let generic =
                serde_json::json!({ "image": format!("{}/{repository}:{tag}", registry.addr) });
            let (status, answer) = bot.hook("generic", &generic.to_string());
            assert_eq!(status, 400, "generic {repository:?} {tag:?}: {answer}");
        }
    }
    // One bad event spoils its envelope: the good one beside it is not stored either.
    let mixed = serde_json::json!({ "events": [push("library/web", "1", &digest), push("library/..", "1", &digest)] });
    assert_eq!(bot.hook("distribution", &mixed.to_string()).0, 400);

    // The cap: 100 events are taken (for a repository no rule watches: nothing to run),
    // 101 are refused whole.
    let events = |n: usize| {
        let events: Vec<_> = (0..n)
            .map(|i| push("unwatched/app", &format!("t{i}"), &digest))
            .collect();
        serde_json::json!({ "events": events }).to_string()
    };
    let (status, answer) = bot.hook("distribution", &events(100));
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["ignored"].as_array().map(Vec::len), Some(100));
    let (status, answer) = bot.hook("distribution", &events(101));
    assert_eq!(status, 413, "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains("at most 100"),
        "{answer}"
    );

    // Nothing was stored.
    assert_eq!(bot.jobs(), Vec::<serde_json::Value>::new());
    let (_, metrics) = bot.get("/metrics");
    assert!(
        metrics.contains("unroot_hook_rejected_total{status=\"400\"} 14"),
        "{metrics}"
    );
    assert!(
        metrics.contains("unroot_hook_rejected_total{status=\"413\"} 1"),
        "{metrics}"
    );

    // The secret for the job list and each job; none for the probes and the metrics.
    let good = serde_json::json!({ "events": [push("library/web", "1", &digest)] });
    let (status, answer) = bot.hook("distribution", &good.to_string());
    assert_eq!(status, 202, "{answer}");
    let id = answer["queued"][0]["job"].as_str().unwrap().to_string();
    for path in [
        "/jobs".to_string(),
        format!("/jobs/{id}"),
        "/jobs?token=wrong".into(),
    ] {
        let (status, body) = bot.get(&path);
        assert_eq!(status, 401, "{path}: {body}");
        assert!(!body.contains("library/web"), "{path}: {body}");
    }
    assert_eq!(bot.get_authorized(&format!("/jobs/{id}")).0, 200);
    assert_eq!(bot.get(&format!("/jobs?token={TOKEN}")).0, 200);
    for open in ["/healthz", "/readyz", "/metrics"] {
        assert_eq!(bot.get(open).0, 200, "{open}");
    }
}

/// Two replicas on one PostgreSQL, notified by the registry of every push (by digest and
/// tag) and sent the same push by tag alone through `/hooks/generic` at once: two jobs of
/// different subjects and the same key, on two replicas. One converts and pushes; the
/// other waits for its claim and ends "up to date". Each of 20 twins is PUT once, as the
/// registry's own notifications count them.
#[test]
fn a_push_announced_by_digest_and_by_tag_at_once_is_converted_once() {
    let s = Scratch::new();
    let pg = crate::support::Postgres::start();
    let ports = [free_port(), free_port()];
    let urls: Vec<String> = ports
        .iter()
        .map(|p| format!("http://127.0.0.1:{p}/hooks/distribution"))
        .collect();
    let (count_url, counted) = receiver();
    let mut endpoints: Vec<(&str, &str)> = urls.iter().map(|u| (u.as_str(), TOKEN)).collect();
    endpoints.push((&count_url, "counter"));
    let registry = Registry::start_notifying_all(&endpoints);
    let rules = format!(
        "state = \"{}\"\n\n[[rule]]\nsource = \"{}/library/*\"\nexclude_tags = [\"*-unprivileged\"]\ndestination = \"{{registry}}/{{repository}}:{{tag}}-unprivileged\"\n",
        pg.url, registry.addr
    );
    let bots: Vec<Bot> = ports
        .iter()
        .enumerate()
        .map(|(i, port)| {
            Bot::start(
                s.dir.path(),
                &format!("replica{i}"),
                *port,
                &rules,
                &["--concurrency", "2", "--reconcile-every", "0"],
            )
        })
        .collect();
    let images: Vec<String> = (0..20)
        .map(|i| {
            let spec = format!(
                "{}[[layer.entry]]\npath = \"/etc/build-id\"\ntext = \"race {i}\\n\"\n",
                crate::support::TINY
            );
            s.build(&format!("race{i}"), "1", &spec)
        })
        .collect();
    for (i, image) in images.iter().enumerate() {
        let name = format!("library/race{i}:1");
        skopeo(&[
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
            image,
            &registry.image(&name),
        ])
        .success();
        let by_tag = format!("{{\"image\": \"{}/{name}\"}}", registry.addr);
        std::thread::scope(|scope| {
            for bot in &bots {
                let by_tag = &by_tag;
                scope.spawn(move || {
                    let (status, answer) = bot.hook("generic", by_tag);
                    assert_eq!(status, 202, "{answer}");
                });
            }
        });
    }

    // Both jobs of every image end: one converted, one up to date, the same key.
    let deadline = Instant::now() + Duration::from_secs(300);
    let jobs = loop {
        let jobs = bots[0].jobs();
        let ended = jobs
            .iter()
            .filter(|j| j["state"] == "done" || j["state"] == "failed")
            .count();
        if ended >= 40
            && !jobs
                .iter()
                .any(|j| j["state"] == "queued" || j["state"] == "running")
        {
            break jobs;
        }
        assert!(
            Instant::now() < deadline,
            "{ended} of 40 jobs ended in 300 s: {jobs:#?}\n{}\n{}",
            bots[0].log_text(),
            bots[1].log_text()
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    let mut by_key: std::collections::BTreeMap<&str, Vec<&serde_json::Value>> = Default::default();
    for j in &jobs {
        assert_eq!(j["state"], "done", "{j:#}");
        by_key
            .entry(j["key"].as_str().unwrap())
            .or_default()
            .push(j);
    }
    assert_eq!(by_key.len(), 20, "{jobs:#?}");
    let mut tag_only = 0;
    for (key, jobs) in &by_key {
        let converted = jobs.iter().filter(|j| j["outcome"] == "converted").count();
        assert_eq!(converted, 1, "{key}: {jobs:#?}");
        assert!(
            jobs.iter()
                .all(|j| j["outcome"] == "converted" || j["outcome"] == "up to date"),
            "{jobs:#?}"
        );
        tag_only += jobs
            .iter()
            .filter(|j| !j["subject"].as_str().unwrap().contains('@'))
            .count();
    }
    assert_eq!(tag_only, 20, "every push had its tag-only job: {jobs:#?}");
    let waited = bots
        .iter()
        .map(|b| {
            b.log_text()
                .matches("waiting: another job converts the same")
                .count()
        })
        .sum::<usize>();
    eprintln!("{} jobs, {waited} waited for another's claim", jobs.len());

    // The registry's count: every twin PUT once.
    let pushes = twin_pushes(&counted);
    assert_eq!(pushes.len(), 20, "{pushes:?}");
    assert!(
        pushes.values().all(|n| *n == 1),
        "a twin PUT more than once: {pushes:?}"
    );
}

/// The door against slow clients: 100 connections that drip their headers a byte a
/// second, 100 that send headers and then drip the body, and 20 that connect and say
/// nothing. While they are connected `/healthz` answers; the header drippers and the
/// silent ones are disconnected after `--header-timeout`, the body drippers answered 408;
/// connections over `--max-connections` are answered 503 at once. On the old door all
/// were still open after 60 s.
#[test]
fn slow_clients_are_disconnected_and_health_answers_meanwhile() {
    let s = Scratch::new();
    let rules = format!(
        "state = \"sqlite:{}\"\n\n[[rule]]\nsource = \"127.0.0.1:1/library/*\"\ndestination = \"{{registry}}/{{repository}}:{{tag}}-unprivileged\"\n",
        s.path("state.db").display(),
    );
    let bot = Bot::start(
        s.dir.path(),
        "bot",
        free_port(),
        &rules,
        &[
            "--reconcile-every",
            "0",
            "--header-timeout",
            "2s",
            "--body-timeout",
            "3s",
            "--max-connections",
            "230",
        ],
    );
    let connect = || {
        let c = TcpStream::connect(&bot.addr).unwrap();
        c.set_nonblocking(true).unwrap();
        c
    };
    let header_drip =
        "POST /hooks/generic HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\r\n";
    let body_head = format!(
        "POST /hooks/generic HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: 4000\r\n\r\n"
    );
    // (connection, what it drips, how far it got, what it was answered, closed)
    struct Slow {
        conn: TcpStream,
        drip: Vec<u8>,
        sent: usize,
        answer: Vec<u8>,
        closed: bool,
    }
    let mut slow: Vec<Slow> = Vec::new();
    for _ in 0..100 {
        slow.push(Slow {
            conn: connect(),
            drip: header_drip.as_bytes().to_vec(),
            sent: 0,
            answer: vec![],
            closed: false,
        });
    }
    for _ in 0..100 {
        let mut conn = connect();
        conn.set_nonblocking(false).unwrap();
        conn.write_all(body_head.as_bytes()).unwrap();
        conn.set_nonblocking(true).unwrap();
        slow.push(Slow {
            conn,
            drip: vec![b' '; 4000],
            sent: 0,
            answer: vec![],
            closed: false,
        });
    }
    for _ in 0..20 {
        slow.push(Slow {
            conn: connect(),
            drip: vec![],
            sent: 0,
            answer: vec![],
            closed: false,
        });
    }
    // One step: a byte more from each dripper, and what the bot said or whether it closed.
    let step = |slow: &mut Vec<Slow>| {
        for c in slow.iter_mut().filter(|c| !c.closed) {
            if c.sent < c.drip.len() {
                match c.conn.write(&c.drip[c.sent..c.sent + 1]) {
                    Ok(n) => c.sent += n,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(_) => c.closed = true,
                }
            }
            let mut buf = [0u8; 4096];
            loop {
                match c.conn.read(&mut buf) {
                    Ok(0) => {
                        c.closed = true;
                        break;
                    }
                    Ok(n) => c.answer.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(_) => {
                        c.closed = true;
                        break;
                    }
                }
            }
        }
    };
    step(&mut slow);
    // All 220 connected and dripping: the probe answers (its latency is printed; the
    // bench reports it).
    let mut worst = Duration::ZERO;
    for _ in 0..10 {
        let t = Instant::now();
        assert_eq!(bot.get("/healthz").0, 200);
        worst = worst.max(t.elapsed());
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("/healthz with 220 slow clients connected: at worst {worst:?}");
    // Over the cap: answered 503 and closed.
    let mut over = Vec::new();
    for _ in 0..30 {
        over.push(TcpStream::connect(&bot.addr).unwrap());
    }
    let busy = over
        .iter_mut()
        .map(|c| {
            c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut text = String::new();
            let _ = c.read_to_string(&mut text);
            text
        })
        .filter(|text| text.starts_with("HTTP/1.1 503"))
        .count();
    assert!(
        busy >= 20,
        "{busy} of 30 connections over the cap answered 503"
    );

    let deadline = Instant::now() + Duration::from_secs(40);
    while slow.iter().any(|c| !c.closed) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_secs(1));
        step(&mut slow);
    }
    let open = slow.iter().filter(|c| !c.closed).count();
    assert_eq!(
        open, 0,
        "{open} of 220 slow connections still open after 40 s"
    );
    let timed_out = slow[100..200]
        .iter()
        .filter(|c| c.answer.starts_with(b"HTTP/1.1 408"))
        .count();
    assert_eq!(timed_out, 100, "every body dripper is answered 408");
    assert!(
        slow[..100].iter().all(|c| c.sent < c.drip.len()),
        "header drippers were cut off before their headers were in"
    );
    // Nothing of it was a job, and the door still works.
    assert_eq!(bot.get("/healthz").0, 200);
    assert!(bot.jobs().is_empty());
}

/// Idle replicas on PostgreSQL start a queued job at once, not at their next heartbeat:
/// with a 30 s heartbeat, every one of ten jobs, each queued once the replicas are idle,
/// starts within a tenth of it (the latencies are printed; `benches/serve.sh` measures
/// event-to-twin), and `/metrics` has the event-to-twin histogram.
#[test]
fn idle_replicas_pick_a_queued_job_up_at_once() {
    let s = Scratch::new();
    let pg = crate::support::Postgres::start();
    let registry = Registry::start();
    let src = s.build("tiny", "1", crate::support::TINY);
    for i in 0..10 {
        registry.push(&src, &format!("library/tiny:{i}"), None);
    }
    let rules = format!(
        "state = \"{}\"\n\n[[rule]]\nsource = \"{}/library/*\"\ndestination = \"{{registry}}/{{repository}}:{{tag}}-unprivileged\"\n",
        pg.url, registry.addr
    );
    let args = ["--reconcile-every", "0", "--heartbeat", "30s"];
    let bots = [
        Bot::start(s.dir.path(), "a", free_port(), &rules, &args),
        Bot::start(s.dir.path(), "b", free_port(), &rules, &args),
    ];
    let mut waits = Vec::new();
    for i in 0..10 {
        // Idle: nothing queued, the last job long done.
        std::thread::sleep(Duration::from_millis(1500));
        let image = format!("{{\"image\": \"{}/library/tiny:{i}\"}}", registry.addr);
        let (status, answer) = bots[i % 2].hook("generic", &image);
        assert_eq!(status, 202, "{answer}");
        let jobs = bots[0].wait_jobs_ended(i + 1, Duration::from_secs(60));
        let job = jobs
            .iter()
            .find(|j| j["id"] == answer["queued"][0]["job"])
            .unwrap();
        assert_eq!(job["state"], "done", "{job:#}");
        waits.push(job["started_ms"].as_i64().unwrap() - job["created_ms"].as_i64().unwrap());
    }
    eprintln!("queued -> started (ms): {waits:?}");
    assert!(
        waits.iter().all(|ms| *ms < 3000),
        "a job waited for a heartbeat: {waits:?}"
    );
    // Each replica counts the twins it pushed: ten in all.
    let twins: u64 = bots
        .iter()
        .map(|b| {
            let (_, metrics) = b.get("/metrics");
            metrics
                .lines()
                .find_map(|l| l.strip_prefix("unroot_event_to_twin_seconds_count "))
                .unwrap_or_else(|| panic!("no event-to-twin histogram:\n{metrics}"))
                .parse::<u64>()
                .unwrap()
        })
        .sum();
    assert_eq!(twins, 10);
}

/// A job's registry waits are bounded and said: behind a registry that accepts and never
/// answers, the job's manifest request is tried again within the retry budget, then the
/// job fails with the reason, and `GET /jobs/ID` lists each retry as one of its events.
#[test]
fn a_job_s_retries_share_a_budget_and_are_its_events() {
    use crate::faults::{Fault, FaultProxy, Rule};
    let s = Scratch::new();
    let registry = Registry::start();
    registry.push(
        &s.build("tiny", "1", crate::support::TINY),
        "library/tiny:1",
        None,
    );
    let proxy = FaultProxy::start(&registry.addr);
    proxy.add(Rule::new("GET", "/manifests/1", Fault::Stall).always());
    let rules = format!(
        "state = \"sqlite:{}\"\n\n[[rule]]\nsource = \"{}/library/*\"\ndestination = \"{}/{{repository}}:{{tag}}-unprivileged\"\n",
        s.path("state.db").display(),
        proxy.addr,
        registry.addr
    );
    let bot = Bot::start(
        s.dir.path(),
        "bot",
        free_port(),
        &rules,
        &[
            "--reconcile-every",
            "0",
            "--job-retries",
            "0",
            "--retries",
            "10",
            "--read-timeout",
            "1s",
            "--retry-budget",
            "4s",
        ],
    );
    let image = format!("{{\"image\": \"{}/library/tiny:1\"}}", proxy.addr);
    let (status, answer) = bot.hook("generic", &image);
    assert_eq!(status, 202, "{answer}");
    let jobs = bot.wait_jobs_ended(1, Duration::from_secs(60));
    assert_eq!(jobs[0]["state"], "failed", "{:#}", jobs[0]);
    let error = jobs[0]["error"].as_str().unwrap();
    assert!(error.contains("retry budget"), "{error}");
    let (status, text) = bot.get_authorized(&format!("/jobs/{}", jobs[0]["id"].as_str().unwrap()));
    assert_eq!(status, 200, "{text}");
    let job: serde_json::Value = serde_json::from_str(&text).unwrap();
    let events = job["events"]
        .as_array()
        .unwrap_or_else(|| panic!("{job:#}"));
    assert!(!events.is_empty(), "{job:#}");
    assert!(
        events
            .iter()
            .all(|e| e["text"].as_str().unwrap().contains("trying again in")
                && e["at_ms"].as_i64().is_some()),
        "{job:#}"
    );
    assert!(
        events.len() < 10,
        "the budget, not the retries, ended it: {job:#}"
    );
    // The list stays short: events are read for one job.
    assert!(bot.jobs()[0].get("events").is_none());
}
