//! The recipes that were learned, then reviewed (`recipes/tinyproxy.toml`, `nsd.toml`,
//! `dnsmasq.toml`, `knot.toml`), proven like the others: an image of the daemon is
//! converted with the built-in recipes and no tracing, the recipe applies, no error is
//! left, `unroot verify --arbitrary-uid` passes, and the service answers with its own
//! protocol on its moved port as its user and as an arbitrary UID in group 0 (read-only
//! root, the contract's writable mounts). Each image differs from the one it was learned
//! from where the review generalised the recipe (a config with no `username:`, no
//! `pid-file=`, a `listen:` list), so the reviewed part is what is run.

use crate::learn::{self, Probe};
use crate::support::Scratch;

/// Converts with the built-in recipes, checks the report and `verify`, runs the result
/// both ways; returns the conversion's report.
fn prove_recipe(
    recipe: &str,
    image: crate::hostimage::HostImage,
    probe: Probe,
    port: u16,
) -> serde_json::Value {
    let s = Scratch::new();
    let layout = s.path("img");
    let src = format!("oci:{}:original", layout.display());
    crate::support::build(&image.spec(), &src);
    let dest = format!("oci:{}:unprivileged", layout.display());
    let out = s
        .unroot(&["convert", "-q", "--format", "json", &src, "--to", &dest])
        .success();
    let report: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        report["conversion"]["recipes"],
        serde_json::json!([recipe]),
        "{recipe}: {report:#}"
    );
    let left: Vec<&serde_json::Value> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["severity"] == "error")
        .collect();
    assert!(left.is_empty(), "{recipe}: errors remain: {left:#?}");
    assert!(
        report["destination"]["learned"].is_null(),
        "{recipe}: no tracing"
    );

    let (code, verified) = crate::runtime::verify(&s, &dest);
    assert_eq!(code, 0, "{recipe}: unroot verify: {verified:#}");

    learn::answers_both_ways(recipe, &s, "unprivileged", &report, probe, port);
    eprintln!(
        "{recipe}: new layer {} bytes",
        report["destination"]["new_layer"]["size"]
    );
    report
}

/// The diff of a file the conversion edited, from the report.
fn diff_of(report: &serde_json::Value, path: &str) -> String {
    report["conversion"]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["path"] == path)
        .and_then(|c| c["diff"].as_str())
        .unwrap_or_else(|| panic!("{path} not edited: {report:#}"))
        .to_string()
}

/// Why the conversion changed a path, from the report.
fn reason_of(report: &serde_json::Value, path: &str) -> String {
    report["conversion"]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["path"] == path)
        .and_then(|c| c["reason"].as_str())
        .unwrap_or_else(|| panic!("{path} not changed: {report:#}"))
        .to_string()
}

/// Debian's tinyproxy config with `Port 80`: the port moves, the pid file goes to /tmp
/// and the log file to stderr, in the config itself.
#[test]
fn tinyproxy_recipe() {
    let report = prove_recipe(
        "tinyproxy",
        learn::tinyproxy(),
        Probe::HttpProxy("Tinyproxy"),
        8080,
    );
    let diff = diff_of(&report, "/etc/tinyproxy/tinyproxy.conf");
    for line in [
        "+Port 8080",
        "+PidFile \"/tmp/tinyproxy.pid\"",
        "+LogFile \"/dev/stderr\"",
    ] {
        assert!(diff.lines().any(|l| l == line), "{line}: {diff}");
    }
}

/// nsd with `ip-address: 0.0.0.0@53` and no `username:` line: the address's port moves,
/// `username: ""` is added to `server:`, the server key and certificate (root 0600)
/// become readable.
#[test]
fn nsd_recipe_address_at_port_and_no_username() {
    let conf = learn::NSD_CONF
        .replace("  port: 53\n", "  ip-address: 0.0.0.0@53\n")
        .replace("  username: nsd\n", "");
    assert_ne!(conf, learn::NSD_CONF);
    let report = prove_recipe(
        "nsd",
        learn::nsd_with(&conf),
        Probe::Dns("www.unroot.test"),
        8053,
    );
    let diff = diff_of(&report, "/etc/nsd/nsd.conf");
    for line in ["+  ip-address: 0.0.0.0@8053", "+  username: \"\""] {
        assert!(diff.lines().any(|l| l == line), "{line}: {diff}");
    }
    for key in ["/etc/nsd/nsd_server.key", "/etc/nsd/nsd_server.pem"] {
        assert_eq!(reason_of(&report, key), "readable", "{key}");
    }
}

/// dnsmasq with no `pid-file=` line: one pointing at /tmp is added (its compiled-in pid
/// file is in root's /run/dnsmasq).
#[test]
fn dnsmasq_recipe_no_pid_file_line() {
    let conf = learn::DNSMASQ_CONF.replace("pid-file=/run/dnsmasq/dnsmasq.pid\n", "");
    assert_ne!(conf, learn::DNSMASQ_CONF);
    let report = prove_recipe(
        "dnsmasq",
        learn::dnsmasq_with(&conf),
        Probe::Dns("www.unroot.test"),
        8053,
    );
    let diff = diff_of(&report, "/etc/dnsmasq.conf");
    assert!(
        diff.lines().any(|l| l == "+pid-file=/tmp/dnsmasq.pid"),
        "{diff}"
    );
}

/// Knot with a `listen:` list of two addresses: both move; its config and zone, readable
/// by its group only, become readable as an arbitrary UID in group 0.
#[test]
fn knot_recipe_listen_list() {
    let conf = learn::KNOT_CONF.replace(
        "    listen: 0.0.0.0@53\n",
        "    listen: [ 0.0.0.0@53, ::@53 ]\n",
    );
    assert_ne!(conf, learn::KNOT_CONF);
    let report = prove_recipe(
        "knot",
        learn::knot_with(&conf),
        Probe::Dns("www.unroot.test"),
        8053,
    );
    let diff = diff_of(&report, "/etc/knot/knot.conf");
    assert!(
        diff.lines()
            .any(|l| l == "+    listen: [ 0.0.0.0@8053, ::@8053 ]"),
        "{diff}"
    );
    assert_eq!(
        reason_of(&report, "/var/lib/knot/unroot.test.zone"),
        "readable"
    );
}
