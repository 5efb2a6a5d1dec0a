//! Each recipe, proven by running: realistic images assembled from this machine's Debian
//! packages are converted, then run with runc in a user namespace as the image's numeric
//! non-root user, with no effective capabilities, `ip_unprivileged_port_start` at 1024, a
//! read-only root filesystem and a tmpfs on /tmp; a request to the moved port must answer.
//! Also as an arbitrary UID in group 0 (OpenShift). The original, run the same way, must
//! not answer: the conversion is what makes the difference.

use std::time::{Duration, Instant};

use crate::hostimage::HostImage;
use crate::runtime::{unique, Bundle, Container, HOST_BASE};
use crate::support::Scratch;

/// How to ask a service whether it works.
enum Probe {
    /// `GET /` answers and the body contains the text.
    Http { port: u16, expect: &'static str },
    /// `redis-cli ping` answers `PONG`.
    Redis { port: u16 },
    /// `mosquitto_pub` connects and publishes.
    Mqtt { port: u16 },
    /// `psql` runs a query.
    Postgres { port: u16 },
    /// `mariadb-admin ping` over TCP.
    Mariadb { port: u16 },
    /// A FastCGI request (`cgi-fcgi`) for a script; the output contains the text.
    FastCgi {
        port: u16,
        script: &'static str,
        expect: &'static str,
    },
}

impl Probe {
    fn port(&self) -> u16 {
        match self {
            Probe::Http { port, .. }
            | Probe::Redis { port }
            | Probe::Mqtt { port }
            | Probe::Postgres { port }
            | Probe::Mariadb { port }
            | Probe::FastCgi { port, .. } => *port,
        }
    }

    /// Asks once on `port`.
    fn ask(&self, c: &Container, port: u16) -> Result<(), String> {
        if !c.alive() {
            return Err("the container is not running".into());
        }
        let p = port.to_string();
        let out = match self {
            Probe::Http { .. } => c.in_netns(&[
                "curl",
                "-sS",
                "--max-time",
                "2",
                &format!("http://127.0.0.1:{p}/"),
            ]),
            Probe::Redis { .. } => c.in_netns(&["redis-cli", "-p", &p, "ping"]),
            Probe::Mqtt { .. } => c.in_netns(&[
                "mosquitto_pub",
                "-h",
                "127.0.0.1",
                "-p",
                &p,
                "-t",
                "unroot",
                "-m",
                "hello",
                "-q",
                "1",
            ]),
            Probe::Postgres { .. } => c.in_netns(&[
                "psql",
                "-h",
                "127.0.0.1",
                "-p",
                &p,
                "-U",
                "postgres",
                "-tAc",
                "select 'answered by ' || version()",
            ]),
            Probe::Mariadb { .. } => c.in_netns(&[
                "mariadb-admin",
                "--protocol=tcp",
                "-h",
                "127.0.0.1",
                "-P",
                &p,
                "-u",
                "root",
                "--connect-timeout=2",
                "ping",
            ]),
            Probe::FastCgi { script, .. } => c.in_netns(&[
                "env",
                "REQUEST_METHOD=GET",
                &format!("SCRIPT_FILENAME={script}"),
                "SCRIPT_NAME=/index.php",
                "timeout",
                "3",
                "cgi-fcgi",
                "-bind",
                "-connect",
                &format!("127.0.0.1:{p}"),
            ]),
        };
        let want = match self {
            Probe::Http { expect, .. } => expect,
            Probe::Redis { .. } => "PONG",
            Probe::Mqtt { .. } => "",
            Probe::Postgres { .. } => "answered by PostgreSQL",
            Probe::Mariadb { .. } => "mysqld is alive",
            Probe::FastCgi { expect, .. } => expect,
        };
        if out.code == 0 && out.stdout.contains(want) {
            Ok(())
        } else {
            Err(format!(
                "exit {}: {}{}",
                out.code,
                out.stdout.chars().take(200).collect::<String>(),
                out.stderr
            ))
        }
    }

    /// Asks until it answers (the service may still be starting), for at most 15 s.
    fn answers(&self, c: &Container, port: u16) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            match self.ask(c, port) {
                Ok(()) => return Ok(()),
                Err(e) if Instant::now() > deadline || !c.alive() => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(150)),
            }
        }
    }
}

/// Converts the image, runs the original and the result, and returns the new layer's size
/// and the conversion's report.
fn prove(
    name: &str,
    image: HostImage,
    probe: Probe,
    moved_from: u16,
    uid: u32,
) -> (u64, serde_json::Value) {
    let s = Scratch::new();
    let layout = s.path("img");
    let src = format!("oci:{}:original", layout.display());
    crate::support::build(&image.spec(), &src);
    let out = s
        .unroot(&[
            "convert",
            "-q",
            "--format",
            "json",
            &src,
            "--to",
            &format!("oci:{}:unprivileged", layout.display()),
        ])
        .success();
    let report: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let left: Vec<&serde_json::Value> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["severity"] == "error")
        .collect();
    assert!(
        left.is_empty(),
        "{name}: errors remain after conversion: {left:#?}"
    );
    assert!(
        report["conversion"]["recipes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r == name),
        "{name}: the recipe did not apply"
    );
    assert_eq!(report["contract"]["uid"], uid, "{name}: runtime user");
    let (before, after) = (
        layer_digests(&layout, "original"),
        layer_digests(&layout, "unprivileged"),
    );
    assert_eq!(after.len(), before.len() + 1, "{name}: one new layer");
    assert_eq!(
        after[..before.len()],
        before[..],
        "{name}: the original layers, unchanged"
    );

    // The contract's writable directories, mounted as its docker command does.
    let writable: Vec<String> = report["contract"]["writable"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap().to_string())
        .collect();

    // The original, run the same way (its own user, no capabilities, read-only root, the
    // same writable mounts), answers on neither port.
    let original = Bundle::new(&s, &layout, "original", "orig", None);
    original.mount_writable(&writable, 0);
    let c = original.start(&unique("orig", &s));
    std::thread::sleep(Duration::from_millis(1500));
    for port in [moved_from, probe.port()] {
        assert!(
            probe.ask(&c, port).is_err(),
            "{name}: the original answers on {port}: the test proves nothing"
        );
    }
    drop(c);

    // Plain: the converted image as its user with its root filesystem writable and no
    // mounts, as `docker run` without hardening flags runs it.
    let plain = Bundle::new(&s, &layout, "unprivileged", "plain", None);
    plain.writable_root();
    let c = plain.start(&unique("plain", &s));
    if let Err(e) = probe.answers(&c, probe.port()) {
        drop(c);
        let out = plain.run_to_exit(&unique("diag", &s));
        panic!("{name}: the converted image, run plain, does not answer on {}: {e}\nrun in the foreground it printed:\n{}\n{}", probe.port(), out.stdout, out.stderr);
    }
    drop(c);

    // Read-only: it answers on the moved port, as its numeric non-root user, with the
    // root filesystem read-only and the contract's writable mounts.
    let converted = Bundle::new(&s, &layout, "unprivileged", "conv", None);
    converted.mount_writable(&writable, uid);
    let c = converted.start(&unique("conv", &s));
    if let Err(e) = probe.answers(&c, probe.port()) {
        drop(c);
        let out = converted.run_to_exit(&unique("diag", &s));
        panic!("{name}: the converted image does not answer on {}: {e}\nrun in the foreground it printed:\n{}\n{}", probe.port(), out.stdout, out.stderr);
    }
    assert_eq!(c.host_uid(), HOST_BASE + uid, "{name}: runs as uid {uid}");
    drop(c);

    // An arbitrary UID in group 0, as OpenShift runs images.
    let arbitrary = Bundle::new(&s, &layout, "unprivileged", "any", Some((54321, 0)));
    arbitrary.mount_writable(&writable, uid);
    let c = arbitrary.start(&unique("any", &s));
    if let Err(e) = probe.answers(&c, probe.port()) {
        drop(c);
        let out = arbitrary.run_to_exit(&unique("diag", &s));
        panic!("{name}: the converted image does not answer as uid 54321 gid 0: {e}\nrun in the foreground it printed:\n{}\n{}", out.stdout, out.stderr);
    }
    drop(c);

    // `unroot verify` agrees: the converted image serves as its user and as an arbitrary
    // UID in group 0; the original does not.
    let converted = format!("oci:{}:unprivileged", layout.display());
    let (code, verified) = crate::runtime::verify(&s, &converted);
    assert_eq!(code, 0, "{name}: unroot verify: {verified:#}");
    assert!(
        verified["runs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["listening"]
                .as_array()
                .unwrap()
                .contains(&probe.port().into())),
        "{name}: {verified:#}"
    );
    let (code, verified) = crate::runtime::verify(&s, &src);
    assert_eq!(
        code, 5,
        "{name}: unroot verify of the original: {verified:#}"
    );

    (
        report["destination"]["new_layer"]["size"].as_u64().unwrap(),
        report,
    )
}

/// The layer digests of a tagged image in a layout.
fn layer_digests(layout: &std::path::Path, tag: &str) -> Vec<String> {
    crate::support::layout_manifest(layout, Some(tag))["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect()
}

pub(crate) fn host_uid(user: &str) -> u32 {
    std::fs::read_to_string("/etc/passwd")
        .unwrap()
        .lines()
        .find(|l| l.starts_with(&format!("{user}:")))
        .and_then(|l| l.split(':').nth(2)?.parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "no user `{user}` on this machine: run ./scripts/test, which installs the packages"
            )
        })
}

/// nginx as Debian packages it: `user www-data;`, /run/nginx.pid, sites-enabled, temp files
/// in /var/lib/nginx, logs as files.
#[test]
fn nginx_debian_layout() {
    let mut i = HostImage::new(
        r#"[config]
Env = ["PATH=/usr/sbin:/usr/bin"]
Cmd = ["nginx", "-g", "daemon off;"]
ExposedPorts = ["80/tcp"]
"#,
    );
    i.base();
    i.binary("/usr/sbin/nginx");
    i.tree("/etc/nginx");
    i.tree("/usr/share/nginx");
    for e in std::fs::read_dir("/usr/lib/nginx/modules")
        .unwrap()
        .flatten()
    {
        i.binary(&e.path().to_string_lossy());
    }
    // The nginx package's page (Apache's package puts an index.html there too).
    i.path("/var/www/html/index.nginx-debian.html");
    i.dir("/var/lib/nginx", 0o755, 0, 0);
    i.dir("/var/log/nginx", 0o755, 0, 4);
    i.accounts(&["root", "www-data"], &["root", "adm", "www-data"]);
    let (size, _) = prove(
        "nginx",
        i,
        Probe::Http {
            port: 8080,
            expect: "Welcome to nginx!",
        },
        80,
        33,
    );
    eprintln!("nginx (Debian layout): new layer {size} bytes");
}

/// nginx in the official image's layout: `user nginx;`, /var/run/nginx.pid, conf.d, logs
/// linked to the standard streams, /var/cache/nginx.
#[test]
fn nginx_official_layout() {
    let mut i = HostImage::new(
        r#"[config]
Env = ["PATH=/usr/sbin:/usr/bin"]
Cmd = ["nginx", "-g", "daemon off;"]
ExposedPorts = ["80/tcp"]
StopSignal = "SIGQUIT"
"#,
    );
    i.base();
    i.binary("/usr/sbin/nginx");
    i.path("/etc/nginx/mime.types");
    i.text(
        "/etc/nginx/nginx.conf",
        "\nuser  nginx;\nworker_processes  auto;\n\nerror_log  /var/log/nginx/error.log notice;\npid        /var/run/nginx.pid;\n\n\nevents {\n    worker_connections  1024;\n}\n\n\nhttp {\n    include       /etc/nginx/mime.types;\n    default_type  application/octet-stream;\n\n    log_format  main  '$remote_addr - $remote_user [$time_local] \"$request\" '\n                      '$status $body_bytes_sent \"$http_referer\" '\n                      '\"$http_user_agent\" \"$http_x_forwarded_for\"';\n\n    access_log  /var/log/nginx/access.log  main;\n\n    sendfile        on;\n    keepalive_timeout  65;\n\n    include /etc/nginx/conf.d/*.conf;\n}\n",
        0o644,
        0,
        0,
    );
    i.text(
        "/etc/nginx/conf.d/default.conf",
        "server {\n    listen       80;\n    listen  [::]:80;\n    server_name  localhost;\n\n    location / {\n        root   /usr/share/nginx/html;\n        index  index.html index.htm;\n    }\n}\n",
        0o644,
        0,
        0,
    );
    i.text(
        "/usr/share/nginx/html/index.html",
        "<h1>Welcome to nginx, official layout!</h1>\n",
        0o644,
        0,
        0,
    );
    i.dir("/var/cache/nginx", 0o755, 0, 0);
    i.dir("/var/log/nginx", 0o755, 0, 0);
    i.symlink("/var/log/nginx/access.log", "/dev/stdout");
    i.symlink("/var/log/nginx/error.log", "/dev/stderr");
    i.text(
        "/etc/passwd",
        "root:x:0:0:root:/root:/bin/sh\nnginx:x:101:101:nginx user:/nonexistent:/bin/false\n",
        0o644,
        0,
        0,
    );
    i.text("/etc/group", "root:x:0:\nnginx:x:101:\n", 0o644, 0, 0);
    let (size, _) = prove(
        "nginx",
        i,
        Probe::Http {
            port: 8080,
            expect: "official layout",
        },
        80,
        101,
    );
    eprintln!("nginx (official layout): new layer {size} bytes");
}

/// Apache as Debian packages it, started the way Debian-based images do (a foreground
/// script that reads /etc/apache2/envvars).
#[test]
fn apache_debian_layout() {
    let mut i = apache_debian_image(r#"Cmd = ["apache2-foreground"]"#);
    i.busybox(&["sh", "mkdir", "rm"]);
    i.text(
        "/usr/local/bin/apache2-foreground",
        "#!/bin/sh\nset -e\n. /etc/apache2/envvars\nmkdir -p \"$APACHE_RUN_DIR\" \"$APACHE_LOCK_DIR\"\nrm -f \"$APACHE_PID_FILE\"\nexec apache2 -DFOREGROUND \"$@\"\n",
        0o755,
        0,
        0,
    );
    i.symlink(
        "/usr/sbin/apache2-foreground",
        "/usr/local/bin/apache2-foreground",
    );
    let (size, _) = prove(
        "apache",
        i,
        Probe::Http {
            port: 8080,
            expect: "Apache2 Debian Default Page",
        },
        80,
        33,
    );
    eprintln!("apache (Debian layout): new layer {size} bytes");
}

/// Debian's Apache started the way most Dockerfiles built on Debian's package start it:
/// `apache2ctl -D FOREGROUND`, whose script creates the run and lock directories and chowns
/// them to www-data (which an arbitrary UID may not do).
#[test]
fn apache_debian_apache2ctl() {
    let mut i = apache_debian_image(r#"Cmd = ["apache2ctl", "-D", "FOREGROUND"]"#);
    i.path("/usr/sbin/apache2ctl");
    i.busybox(&[
        "sh", "mkdir", "rm", "stat", "mktemp", "chmod", "chown", "mv", "rmdir", "id",
    ]);
    let (size, report) = prove(
        "apache",
        i,
        Probe::Http {
            port: 8080,
            expect: "Apache2 Debian Default Page",
        },
        80,
        33,
    );
    let ctl = crate::support::change_of(&report, "/usr/sbin/apache2ctl");
    assert!(
        ctl["diff"]
            .as_str()
            .unwrap()
            .contains("+        [ \"$(id -u)\" != 0 ] || chown $OWNER $TMPNAME || exit 1"),
        "{ctl:#}"
    );
    eprintln!("apache (Debian, apache2ctl): new layer {size} bytes");
}

/// Debian's apache2 package as an image holds it: the server, every module, /etc/apache2,
/// the default page, log directory and accounts; `cmd` is the config's Cmd line.
fn apache_debian_image(cmd: &str) -> HostImage {
    let mut i = HostImage::new(&format!(
        "[config]\nEnv = [\"PATH=/usr/sbin:/usr/bin\"]\n{cmd}\nExposedPorts = [\"80/tcp\"]\nStopSignal = \"SIGWINCH\"\n"
    ));
    i.base();
    i.binary("/usr/sbin/apache2");
    i.tree("/etc/apache2");
    i.path("/usr/lib/apache2/modules");
    for e in std::fs::read_dir("/usr/lib/apache2/modules")
        .unwrap()
        .flatten()
    {
        i.binary(&e.path().to_string_lossy());
    }
    i.path("/etc/mime.types");
    i.tree("/var/www/html");
    i.dir("/var/log/apache2", 0o750, 0, 4);
    i.accounts(&["root", "www-data"], &["root", "adm", "www-data"]);
    i
}

/// Apache in the official httpd image's layout: /usr/local/apache2, `httpd-foreground`,
/// `User daemon`, logs to /proc/self/fd, the pid file in logs/.
#[test]
fn apache_official_layout() {
    let mut i = HostImage::new(
        r#"[config]
Env = ["PATH=/usr/local/apache2/bin:/usr/bin"]
Cmd = ["httpd-foreground"]
ExposedPorts = ["80/tcp"]
StopSignal = "SIGWINCH"
WorkingDir = "/usr/local/apache2"
"#,
    );
    i.base();
    // This machine's apache2 binary stands in for the official build; its compiled-in
    // server root differs, so httpd-foreground names the official one.
    i.binary("/usr/sbin/apache2");
    i.copy("/usr/sbin/apache2", "/usr/local/apache2/bin/httpd", 0o755);
    let modules = ["mpm_event", "authz_core", "authz_host", "mime", "dir"];
    for m in modules {
        let host = format!("/usr/lib/apache2/modules/mod_{m}.so");
        i.binary(&host);
        i.copy(
            &host,
            &format!("/usr/local/apache2/modules/mod_{m}.so"),
            0o644,
        );
    }
    let load: String = modules
        .iter()
        .map(|m| format!("LoadModule {m}_module modules/mod_{m}.so\n"))
        .collect();
    i.text(
        "/usr/local/apache2/conf/httpd.conf",
        &format!(
            "ServerRoot \"/usr/local/apache2\"\nListen 80\n{load}<IfModule unixd_module>\nUser daemon\nGroup daemon\n</IfModule>\nServerAdmin you@example.com\nServerName localhost\n<Directory />\n    AllowOverride none\n    Require all denied\n</Directory>\nDocumentRoot \"/usr/local/apache2/htdocs\"\n<Directory \"/usr/local/apache2/htdocs\">\n    Require all granted\n</Directory>\nDirectoryIndex index.html\nErrorLog /proc/self/fd/2\nLogLevel warn\nLogFormat \"%h %l %u %t \\\"%r\\\" %>s %b\" common\nCustomLog /proc/self/fd/1 common\nTypesConfig conf/mime.types\n"
        ),
        0o644,
        0,
        0,
    );
    i.copy(
        "/etc/mime.types",
        "/usr/local/apache2/conf/mime.types",
        0o644,
    );
    i.text(
        "/usr/local/apache2/htdocs/index.html",
        "<html><body><h1>It works!</h1></body></html>\n",
        0o644,
        0,
        0,
    );
    i.dir("/usr/local/apache2/logs", 0o755, 0, 0);
    i.busybox(&["sh", "rm"]);
    i.text(
        "/usr/local/apache2/bin/httpd-foreground",
        "#!/bin/sh\nset -e\nrm -f /usr/local/apache2/logs/httpd.pid\nexec /usr/local/apache2/bin/httpd -d /usr/local/apache2 -f conf/httpd.conf -DFOREGROUND \"$@\"\n",
        0o755,
        0,
        0,
    );
    i.text(
        "/etc/passwd",
        "root:x:0:0:root:/root:/bin/sh\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n",
        0o644,
        0,
        0,
    );
    i.text("/etc/group", "root:x:0:\ndaemon:x:1:\n", 0o644, 0, 0);
    let (size, _) = prove(
        "apache",
        i,
        Probe::Http {
            port: 8080,
            expect: "It works!",
        },
        80,
        1,
    );
    eprintln!("apache (official httpd layout): new layer {size} bytes");
}

/// Redis as Debian packages it: daemonized, pid in /run/redis, a log file in /var/log/redis,
/// the config readable by the redis account only.
#[test]
fn redis_debian() {
    let mut i = HostImage::new(
        r#"[config]
Env = ["PATH=/usr/sbin:/usr/bin"]
Cmd = ["redis-server", "/etc/redis/redis.conf"]
ExposedPorts = ["6379/tcp"]
"#,
    );
    i.base();
    i.binary("/usr/bin/redis-server");
    i.tree("/etc/redis");
    i.path("/var/lib/redis");
    i.path("/var/log/redis");
    i.accounts(&["root", "redis"], &["root", "adm", "redis"]);
    let (size, _) = prove(
        "redis",
        i,
        Probe::Redis { port: 6379 },
        6379,
        host_uid("redis"),
    );
    eprintln!("redis (Debian): new layer {size} bytes");
}

/// HAProxy as Debian packages it (chroot, user and group, daemon, a stats socket in
/// /run/haproxy) with a frontend on port 80.
#[test]
fn haproxy_debian() {
    let mut i = HostImage::new(
        r#"[config]
Env = ["PATH=/usr/sbin:/usr/bin"]
Cmd = ["haproxy", "-f", "/etc/haproxy/haproxy.cfg"]
ExposedPorts = ["80/tcp"]
StopSignal = "SIGUSR1"
"#,
    );
    i.base();
    i.binary("/usr/sbin/haproxy");
    i.tree("/etc/haproxy");
    let cfg = std::fs::read_to_string("/etc/haproxy/haproxy.cfg").unwrap()
        + "\nfrontend web\n\tbind :80\n\tmode http\n\thttp-request return status 200 content-type text/plain string \"hello from haproxy\"\n";
    i.text("/etc/haproxy/haproxy.cfg", &cfg, 0o644, 0, 0);
    i.tree("/var/lib/haproxy");
    i.accounts(&["root", "haproxy"], &["root", "haproxy"]);
    let (size, _) = prove(
        "haproxy",
        i,
        Probe::Http {
            port: 8080,
            expect: "hello from haproxy",
        },
        80,
        host_uid("haproxy"),
    );
    eprintln!("haproxy (Debian): new layer {size} bytes");
}

/// Converts an image no recipe knows and proves it with `unroot verify`: no error remains,
/// the converted image serves on `port` as `uid` and as an arbitrary UID in group 0, and
/// the original fails. Returns the conversion's report.
fn prove_generic(image: HostImage, uid: u32, port: u16) -> serde_json::Value {
    prove_converted(image, uid, port, &["--no-recipes"], &[])
}

/// [`prove_generic`], with `convert` given `args` and the recipes that must apply.
fn prove_converted(
    image: HostImage,
    uid: u32,
    port: u16,
    args: &[&str],
    recipes: &[&str],
) -> serde_json::Value {
    let s = Scratch::new();
    let layout = s.path("img");
    let src = format!("oci:{}:original", layout.display());
    crate::support::build(&image.spec(), &src);
    let converted = format!("oci:{}:unprivileged", layout.display());
    let mut convert = vec!["convert", "-q", "--format", "json"];
    convert.extend_from_slice(args);
    convert.extend_from_slice(&[&src, "--to", &converted]);
    let out = s.unroot(&convert).success();
    let report: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(report["contract"]["uid"], uid, "{report:#}");
    let applied: Vec<&str> = report["conversion"]["recipes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert_eq!(applied, recipes, "{report:#}");
    let errors: Vec<&serde_json::Value> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["severity"] == "error")
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
    let (code, verified) = crate::runtime::verify(&s, &converted);
    assert_eq!(code, 0, "{verified:#}");
    for run in verified["runs"].as_array().unwrap() {
        assert_eq!(run["listening"], serde_json::json!([port]), "{run:#}");
    }
    assert_eq!(verified["runs"][0]["uid"], uid);
    let (code, verified) = crate::runtime::verify(&s, &src);
    assert_eq!(code, 5, "the original passes: {verified:#}");
    report
}

/// memcached as the official image's Dockerfile runs it, but left as root: `memcached`
/// with no `-u`, which as root refuses to start. The memcached recipe names its account.
#[test]
fn memcached_recipe_names_the_account() {
    let mut i = HostImage::new(
        r#"[config]
Env = ["PATH=/usr/bin"]
Cmd = ["memcached"]
ExposedPorts = ["11211/tcp"]
"#,
    );
    i.base();
    i.binary("/usr/bin/memcached");
    i.accounts(&["root", "memcache"], &["root", "memcache"]);
    let report = prove_converted(i, host_uid("memcache"), 11211, &[], &["memcached"]);
    assert_eq!(
        report["conversion"]["user_reason"],
        "`memcache`, the service account of the memcached recipe"
    );
    eprintln!(
        "memcached (recipe): new layer {} bytes",
        report["conversion"]["content_bytes"]
    );
}

/// memcached as Debian runs it (`memcached -u memcache`), with no recipe: the generic
/// conversion runs it as the user its command names; the original (root, dropping to
/// memcache, which needs capabilities) does not serve.
#[test]
fn memcached_runs_as_the_user_its_command_names() {
    let mut i = HostImage::new(
        r#"[config]
Env = ["PATH=/usr/bin"]
Cmd = ["memcached", "-u", "memcache", "-p", "11211", "-l", "0.0.0.0"]
ExposedPorts = ["11211/tcp"]
"#,
    );
    i.base();
    i.binary("/usr/bin/memcached");
    i.accounts(&["root", "memcache"], &["root", "memcache"]);
    let report = prove_generic(i, host_uid("memcache"), 11211);
    assert_eq!(
        report["conversion"]["user_reason"],
        "`memcache`, the user the command switches to (`-u memcache`)"
    );
}

/// An image whose command drops privileges itself (`setpriv --reuid=1000 ...`, which needs
/// root), with no recipe: the user it drops to becomes the image's, and the drop goes.
#[test]
fn a_setpriv_drop_becomes_the_user_and_goes() {
    let mut i = HostImage::new(
        r#"[config]
Env = ["PATH=/usr/bin"]
Cmd = ["setpriv", "--reuid=1000", "--regid=1000", "--clear-groups", "busybox", "httpd", "-f", "-p", "80", "-h", "/srv/www"]
ExposedPorts = ["80/tcp"]
"#,
    );
    i.base();
    i.binary("/usr/bin/setpriv");
    i.busybox(&[]);
    i.text(
        "/etc/passwd",
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/srv:/bin/sh\n",
        0o644,
        0,
        0,
    );
    i.text("/etc/group", "root:x:0:\napp:x:1000:\n", 0o644, 0, 0);
    i.text("/srv/www/index.html", "hello\n", 0o644, 0, 0);
    let report = prove_generic(i, 1000, 8080);
    assert_eq!(
        report["conversion"]["user_reason"],
        "`app`, the user the command switches to (`setpriv --reuid=1000`)"
    );
    let cmd = report["conversion"]["config_changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["field"] == "Cmd")
        .unwrap_or_else(|| panic!("{report:#}"));
    assert_eq!(
        cmd["after"],
        serde_json::json!(["busybox", "httpd", "-f", "-p", "8080", "-h", "/srv/www"])
    );
}

/// Python's `http.server` on port 80, the port a positional argument of the command
/// (`python3 -m http.server 80`), with no recipe: the argument moves with ExposedPorts, and
/// the server answers as the fallback user and as an arbitrary UID.
#[test]
fn python_http_server_port_argument_moves() {
    let mut i = HostImage::new(
        r#"[config]
Env = ["PATH=/usr/bin"]
Cmd = ["python3", "-m", "http.server", "80", "--directory", "/srv"]
ExposedPorts = ["80/tcp"]
"#,
    );
    i.base();
    i.binary("/usr/bin/python3");
    // The standard library modules the server imports, as this machine's Python loads them.
    let out = std::process::Command::new("/usr/bin/python3")
        .args([
            "-c",
            "import argparse, contextlib, encodings.idna, http.server, runpy, sys\n\
             for m in list(sys.modules.values()):\n    print(getattr(m, '__file__', None) or '')",
        ])
        .output()
        .expect("python3 runs (run ./scripts/test)");
    assert!(out.status.success(), "{out:?}");
    for f in String::from_utf8(out.stdout).unwrap().lines() {
        if f.starts_with("/usr/lib/python3") && !f.contains("-packages/") {
            i.binary(f);
        }
    }
    // The server looks its address up (`getfqdn`) before it listens.
    i.text(
        "/etc/hosts",
        "127.0.0.1 localhost\n::1 localhost\n",
        0o644,
        0,
        0,
    );
    i.text("/srv/index.html", "hello from python\n", 0o644, 0, 0);
    let report = prove_generic(i, 65532, 8080);
    let cmd = report["conversion"]["config_changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["field"] == "Cmd")
        .unwrap_or_else(|| panic!("{report:#}"));
    assert_eq!(
        cmd["after"],
        serde_json::json!([
            "python3",
            "-m",
            "http.server",
            "8080",
            "--directory",
            "/srv"
        ])
    );
}

/// lighttpd as Debian packages it: `server.port = 80`, the pid file in /run, logs and
/// uploads in www-data's directories (the package's own config includes Perl scripts; this
/// one has the same directives without them).
#[test]
fn lighttpd_debian() {
    let mut i = HostImage::new(
        r#"[config]
Env = ["PATH=/usr/sbin:/usr/bin"]
Cmd = ["lighttpd", "-D", "-f", "/etc/lighttpd/lighttpd.conf"]
ExposedPorts = ["80/tcp"]
"#,
    );
    i.base();
    i.binary("/usr/sbin/lighttpd");
    i.text(
        "/etc/lighttpd/lighttpd.conf",
        r#"server.modules = ( "mod_indexfile", "mod_access", "mod_staticfile" )
server.document-root        = "/var/www/html"
server.upload-dirs          = ( "/var/cache/lighttpd/uploads" )
server.errorlog             = "/var/log/lighttpd/error.log"
server.pid-file             = "/run/lighttpd.pid"
server.username             = "www-data"
server.groupname            = "www-data"
server.port                 = 80
index-file.names            = ( "index.html" )
mimetype.assign             = ( ".html" => "text/html" )
include "/etc/lighttpd/conf-enabled/*.conf"
"#,
        0o644,
        0,
        0,
    );
    i.text(
        "/etc/lighttpd/conf-enabled/10-local.conf",
        "url.access-deny = ( \"~\", \".inc\" )\n",
        0o644,
        0,
        0,
    );
    i.text(
        "/var/www/html/index.html",
        "hello from lighttpd\n",
        0o644,
        0,
        0,
    );
    let www = host_uid("www-data");
    i.dir("/run", 0o755, 0, 0);
    i.dir("/var/log/lighttpd", 0o750, www, www);
    i.dir("/var/cache/lighttpd", 0o755, www, www);
    i.dir("/var/cache/lighttpd/uploads", 0o750, www, www);
    i.accounts(&["root", "www-data"], &["root", "www-data"]);
    let (size, _) = prove(
        "lighttpd",
        i,
        Probe::Http {
            port: 8080,
            expect: "hello from lighttpd",
        },
        80,
        www,
    );
    eprintln!("lighttpd (Debian): new layer {size} bytes");
}

/// Mosquitto as Debian packages it (pid file in /run/mosquitto, a log file, persistence in
/// /var/lib/mosquitto, conf.d included), with a listener on a privileged port.
#[test]
fn mosquitto_debian() {
    let mut i = HostImage::new(
        r#"[config]
Env = ["PATH=/usr/sbin:/usr/bin"]
Cmd = ["mosquitto", "-c", "/etc/mosquitto/mosquitto.conf"]
ExposedPorts = ["183/tcp"]
"#,
    );
    i.base();
    i.binary("/usr/sbin/mosquitto");
    i.tree("/etc/mosquitto");
    i.text(
        "/etc/mosquitto/conf.d/listener.conf",
        "listener 183 0.0.0.0\nallow_anonymous true\n",
        0o644,
        0,
        0,
    );
    i.path("/var/lib/mosquitto");
    i.path("/var/log/mosquitto");
    i.accounts(&["root", "mosquitto"], &["root", "mosquitto"]);
    let (size, _) = prove(
        "mosquitto",
        i,
        Probe::Mqtt { port: 8183 },
        183,
        host_uid("mosquitto"),
    );
    eprintln!("mosquitto (Debian): new layer {size} bytes");
}

/// Squid as Debian packages it (its pid file and logs at their compiled-in places in /run
/// and /var/log/squid, run as proxy), with `http_port` on a privileged port; asked for a
/// page it cannot fetch, it answers with its own error page.
#[test]
fn squid_debian() {
    let mut i = HostImage::new(
        r#"[config]
Env = ["PATH=/usr/sbin:/usr/bin"]
Cmd = ["squid", "-N", "-f", "/etc/squid/squid.conf"]
ExposedPorts = ["80/tcp"]
"#,
    );
    i.base();
    i.binary("/usr/sbin/squid");
    i.tree("/etc/squid");
    let cfg = std::fs::read_to_string("/etc/squid/squid.conf")
        .unwrap()
        .replace("\nhttp_port 3128", "\nhttp_port 80");
    i.text("/etc/squid/squid.conf", &cfg, 0o644, 0, 0);
    i.path("/usr/lib/squid");
    for helper in std::fs::read_dir("/usr/lib/squid").unwrap().flatten() {
        i.binary(&helper.path().to_string_lossy());
    }
    i.tree("/usr/share/squid");
    i.tree("/usr/share/squid-langpack");
    i.path("/var/log/squid");
    i.path("/var/spool/squid");
    i.accounts(&["root", "proxy"], &["root", "proxy"]);
    let (size, _) = prove(
        "squid",
        i,
        Probe::Http {
            port: 8080,
            expect: "squid",
        },
        80,
        host_uid("proxy"),
    );
    eprintln!("squid (Debian): new layer {size} bytes");
}

/// PostgreSQL in the official image's style: Debian's server binaries, `PGDATA` a volume
/// the root entrypoint chowns and `chmod 1777`s in the image, an entrypoint that drops to
/// postgres with gosu when it runs as root, creates and initdb's the data directory at
/// start, and gives an account-less UID one through nss_wrapper (initdb needs a name).
#[test]
fn postgresql_official_style() {
    let pg = host_uid("postgres");
    let bin = "/usr/lib/postgresql/15/bin";
    let mut i = HostImage::new(&format!(
        r#"[config]
Env = ["PATH={bin}:/usr/local/bin:/usr/bin", "TZ=UTC", "PGDATA=/var/lib/postgresql/data", "NSS_WRAPPER_LIB=/usr/lib/x86_64-linux-gnu/libnss_wrapper.so"]
Entrypoint = ["docker-entrypoint.sh"]
Cmd = ["postgres"]
ExposedPorts = ["5432/tcp"]
Volumes = ["/var/lib/postgresql/data"]
StopSignal = "SIGINT"
"#
    ));
    i.base();
    for b in ["postgres", "initdb"] {
        i.binary(&format!("{bin}/{b}"));
    }
    // The modules initdb loads (PL/pgSQL, the text search dictionaries); not the others,
    // LLVM's JIT among them.
    for m in ["plpgsql", "dict_snowball"] {
        i.binary(&format!("/usr/lib/postgresql/15/lib/{m}.so"));
    }
    i.tree("/usr/share/postgresql/15");
    i.path("/usr/share/zoneinfo/UTC");
    i.binary("/usr/sbin/gosu");
    i.binary("/usr/lib/x86_64-linux-gnu/libnss_wrapper.so");
    i.busybox(&["sh", "id", "mkdir", "chown", "chmod", "mktemp", "echo"]);
    i.text(
        "/usr/local/bin/docker-entrypoint.sh",
        r#"#!/bin/sh
set -e
if [ "$1" = postgres ] && [ "$(id -u)" = 0 ]; then
    # As root: make the directories postgres's, then start again as postgres.
    mkdir -p "$PGDATA" /var/run/postgresql
    chown -R postgres:postgres "$PGDATA" /var/run/postgresql
    chmod 700 "$PGDATA"
    exec gosu postgres "$0" "$@"
fi
if [ "$1" = postgres ]; then
    mkdir -p "$PGDATA"
    chmod 700 "$PGDATA" 2>/dev/null || :
    # initdb asks for the name of the user it runs as: a UID with no account gets one.
    if ! id -un >/dev/null 2>&1 && [ -e "$NSS_WRAPPER_LIB" ]; then
        NSS_WRAPPER_PASSWD="$(mktemp)"
        NSS_WRAPPER_GROUP="$(mktemp)"
        echo "postgres:x:$(id -u):$(id -g):PostgreSQL:$PGDATA:/bin/false" > "$NSS_WRAPPER_PASSWD"
        echo "postgres:x:$(id -g):" > "$NSS_WRAPPER_GROUP"
        export LD_PRELOAD="$NSS_WRAPPER_LIB" NSS_WRAPPER_PASSWD NSS_WRAPPER_GROUP
    fi
    if [ ! -s "$PGDATA/PG_VERSION" ]; then
        initdb --username=postgres --auth=trust --pgdata="$PGDATA"
        echo "listen_addresses = '*'" >> "$PGDATA/postgresql.conf"
        echo "host all all all trust" >> "$PGDATA/pg_hba.conf"
    fi
fi
exec "$@"
"#,
        0o755,
        0,
        0,
    );
    i.dir("/var/lib/postgresql", 0o755, pg, pg);
    i.dir("/var/lib/postgresql/data", 0o1777, pg, pg);
    i.dir("/run/postgresql", 0o3777, pg, pg);
    i.accounts(&["root", "postgres"], &["root", "postgres"]);
    let (size, report) = prove("postgresql", i, Probe::Postgres { port: 5432 }, 5432, pg);
    // The data directory keeps its owner and the mode the server requires; its parent is
    // the mount (and the volume), where an arbitrary UID creates it.
    let change = |path: &str| crate::support::change_of(&report, path);
    assert_eq!(
        change("/var/lib/postgresql/data")["after"],
        format!("{pg}:0 0700")
    );
    assert_eq!(
        change("/var/lib/postgresql")["after"],
        format!("{pg}:0 0775")
    );
    let volumes = report["conversion"]["config_changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["field"] == "Volumes")
        .unwrap_or_else(|| panic!("{report:#}"))
        .clone();
    assert_eq!(volumes["after"], serde_json::json!(["/var/lib/postgresql"]));
    assert!(
        report["contract"]["notes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n.as_str().unwrap().contains("must own with mode 0700")),
        "{report:#}"
    );
    eprintln!("postgresql (official style): new layer {size} bytes");
}

/// MariaDB in the official image's style, from Debian's package: my.cnf with its include
/// directories, the socket and pid file in /run/mysqld, `/var/lib/mysql` a volume, an
/// entrypoint that drops from root to mysql with gosu and runs mariadb-install-db at the
/// first start.
#[test]
fn mariadb_official_style() {
    let my = host_uid("mysql");
    let mut i = HostImage::new(
        r#"[config]
Env = ["PATH=/usr/local/bin:/usr/sbin:/usr/bin"]
Entrypoint = ["docker-entrypoint.sh"]
Cmd = ["mariadbd"]
ExposedPorts = ["3306/tcp"]
Volumes = ["/var/lib/mysql"]
"#,
    );
    i.base();
    for b in [
        "/usr/sbin/mariadbd",
        "/usr/bin/my_print_defaults",
        "/usr/sbin/gosu",
    ] {
        i.binary(b);
    }
    i.path("/usr/bin/mariadb-install-db");
    i.tree("/etc/mysql");
    i.path("/etc/alternatives/my.cnf");
    for d in ["english", "charsets"] {
        i.tree(&format!("/usr/share/mysql/{d}"));
    }
    for f in std::fs::read_dir("/usr/share/mysql").unwrap().flatten() {
        if f.path().extension().is_some_and(|x| x == "sql") {
            i.path(&f.path().to_string_lossy());
        }
    }
    i.busybox(&[
        "sh", "id", "mkdir", "chown", "chmod", "cat", "sed", "dirname", "basename", "hostname",
        "rm", "test", "echo", "grep", "tr", "cut", "head",
    ]);
    i.text(
        "/usr/local/bin/docker-entrypoint.sh",
        r#"#!/bin/sh
set -e
if [ "$1" = mariadbd ] && [ "$(id -u)" = 0 ]; then
    # As root: make the directories mysql's, then start again as mysql.
    mkdir -p /var/lib/mysql /run/mysqld
    chown -R mysql:mysql /var/lib/mysql /run/mysqld
    exec gosu mysql "$0" "$@"
fi
if [ "$1" = mariadbd ] && [ ! -d /var/lib/mysql/mysql ]; then
    mariadb-install-db --datadir=/var/lib/mysql --skip-test-db --skip-name-resolve \
        --auth-root-authentication-method=normal --cross-bootstrap > /dev/null
fi
exec "$@"
"#,
        0o755,
        0,
        0,
    );
    i.dir("/var/lib/mysql", 0o1777, my, my);
    i.dir("/run/mysqld", 0o1777, my, my);
    i.accounts(&["root", "mysql"], &["root", "mysql"]);
    let (size, _) = prove("mariadb", i, Probe::Mariadb { port: 3306 }, 3306, my);
    eprintln!("mariadb (official style): new layer {size} bytes");
}

/// Caddy in the official image's layout: the Caddyfile's `:80` site serving
/// /usr/share/caddy, `XDG_DATA_HOME=/data` and `XDG_CONFIG_HOME=/config` as volumes (the
/// official image also exposes 443, which only a site with a certificate listens on).
#[test]
fn caddy_official_layout() {
    let mut i = HostImage::new(
        r#"[config]
Env = ["PATH=/usr/bin", "XDG_CONFIG_HOME=/config", "XDG_DATA_HOME=/data"]
Cmd = ["caddy", "run", "--config", "/etc/caddy/Caddyfile", "--adapter", "caddyfile"]
ExposedPorts = ["80/tcp"]
Volumes = ["/config", "/data"]
WorkingDir = "/srv"
"#,
    );
    i.base();
    i.binary("/usr/bin/caddy");
    i.path("/etc/caddy/Caddyfile");
    i.tree("/usr/share/caddy");
    i.path("/etc/ssl/certs/ca-certificates.crt");
    for d in ["/config", "/data", "/srv"] {
        i.dir(d, 0o755, 0, 0);
    }
    i.text(
        "/etc/passwd",
        "root:x:0:0:root:/root:/bin/sh\n",
        0o644,
        0,
        0,
    );
    i.text("/etc/group", "root:x:0:\n", 0o644, 0, 0);
    // The admin endpoint listens on localhost:2019: the name must resolve offline.
    i.text(
        "/etc/hosts",
        "127.0.0.1 localhost\n::1 localhost\n",
        0o644,
        0,
        0,
    );
    i.text("/etc/nsswitch.conf", "hosts: files dns\n", 0o644, 0, 0);
    let (size, _) = prove(
        "caddy",
        i,
        Probe::Http {
            port: 8080,
            expect: "Caddy works!",
        },
        80,
        65532,
    );
    eprintln!("caddy (official layout): new layer {size} bytes");
}

/// PHP-FPM from Debian's package, in the official image's way: pool.d with a
/// `zz-docker.conf` that listens on 9000, the pid file in /run/php, the log in /var/log;
/// asked over FastCGI for a script, it runs it.
#[test]
fn php_fpm_debian() {
    let mut i = HostImage::new(
        r#"[config]
Env = ["PATH=/usr/sbin:/usr/bin"]
Cmd = ["php-fpm8.2", "--nodaemonize", "--fpm-config", "/etc/php/8.2/fpm/php-fpm.conf"]
ExposedPorts = ["9000/tcp"]
StopSignal = "SIGQUIT"
WorkingDir = "/var/www/html"
"#,
    );
    i.base();
    i.binary("/usr/sbin/php-fpm8.2");
    i.tree("/etc/php/8.2/fpm");
    i.tree("/etc/php/8.2/mods-available");
    i.path("/usr/lib/php/20220829");
    for e in std::fs::read_dir("/usr/lib/php/20220829")
        .unwrap()
        .flatten()
    {
        i.binary(&e.path().to_string_lossy());
    }
    i.text(
        "/etc/php/8.2/fpm/pool.d/zz-docker.conf",
        "[global]\ndaemonize = no\n\n[www]\nlisten = 9000\n",
        0o644,
        0,
        0,
    );
    i.text(
        "/var/www/html/index.php",
        "<?php echo 'hello from php-fpm ' . PHP_VERSION;\n",
        0o644,
        0,
        0,
    );
    // No /run/php: the package leaves it to tmpfiles.d, which images do not run.
    i.accounts(&["root", "www-data"], &["root", "www-data"]);
    let (size, report) = prove(
        "php-fpm",
        i,
        Probe::FastCgi {
            port: 9000,
            script: "/var/www/html/index.php",
            expect: "hello from php-fpm",
        },
        9000,
        33,
    );
    // The pools' socket directory stays where web servers look for it: created, writable,
    // and a writable mount of the contract.
    let run = crate::support::change_of(&report, "/run/php");
    assert_eq!(run["reason"], "created-dir", "{run:#}");
    assert_eq!(run["after"], "33:0 0775");
    assert!(
        report["contract"]["writable"]
            .as_array()
            .unwrap()
            .contains(&"/run/php".into()),
        "{report:#}"
    );
    eprintln!("php-fpm (Debian): new layer {size} bytes");
}
