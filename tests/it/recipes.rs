//! The recipe engine from the command line: user recipes, forcing and turning recipes off,
//! loud failures, syntax errors with positions, and `--dry-run`.

use crate::support::{files_below, Scratch};

/// A tiny service whose config a user recipe edits.
const SERVICE: &str = r##"
[config]
Cmd = ["/usr/bin/svc"]
ExposedPorts = ["70/tcp"]

[[layer]]
[[layer.entry]]
path = "/etc/passwd"
text = "root:x:0:0:root:/root:/bin/sh\nsvc:x:500:500::/nonexistent:/sbin/nologin\n"
[[layer.entry]]
path = "/usr/bin/svc"
text = "#!/bin/sh\n"
mode = 0o755
[[layer.entry]]
path = "/etc/svc/svc.conf"
text = "listen_port = 70 ; comment\nstate_dir = /var/state\nrun_as = root\n"
"##;

const RECIPE: &str = r#"
name = "svc"
summary = "a test service"
[match]
any = ["/usr/bin/svc"]
[service]
users = ["svc"]
[config]
entry = [{ path = "/etc/svc/svc.conf", base = "/etc/svc" }]
capture = ["/etc/svc/**"]
comment = ";"
[[ports]]
directive = "listen_port"
pattern = '^\s*listen_port\s*=\s*(?P<port>\d+)'
[[writable]]
what = "state"
kind = "dir"
config = '^\s*state_dir\s*=\s*(\S+)'
redirect = "/tmp/svc-state"
[[edit]]
name = "drop run_as"
kind = "remove"
pattern = '^\s*run_as\b'
[[env]]
name = "SVC_MODE"
value = "unprivileged"
"#;

fn setup(s: &Scratch) -> (String, String) {
    let src = s.build("img", "v1", SERVICE);
    let recipe = s.path("svc.toml");
    std::fs::write(&recipe, RECIPE).unwrap();
    (src, recipe.display().to_string())
}

#[test]
fn a_user_recipe_edits_moves_ports_redirects_and_sets_env() {
    let s = Scratch::new();
    let (src, recipe) = setup(&s);
    let dest = format!("oci:{}:out", s.path("out").display());
    let out = s
        .unroot(&[
            "convert", "-q", "--format", "json", &src, "--recipe", &recipe, "--to", &dest,
        ])
        .success();
    let report: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(report["conversion"]["recipes"], serde_json::json!(["svc"]));
    assert_eq!(
        report["conversion"]["user"], "500:500",
        "the recipe's preferred user"
    );
    let change = report["conversion"]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["path"] == "/etc/svc/svc.conf")
        .unwrap();
    let diff = change["diff"].as_str().unwrap();
    for line in [
        "-listen_port = 70 ; comment",
        "+listen_port = 8070 ; comment",
        "+state_dir = /tmp/svc-state",
        "+; run_as = root",
    ] {
        assert!(diff.lines().any(|l| l == line), "{line} not in\n{diff}");
    }
    let env = &report["conversion"]["config_changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["field"] == "Env")
        .unwrap()["after"];
    assert!(
        env.as_array()
            .unwrap()
            .iter()
            .any(|v| v == "SVC_MODE=unprivileged"),
        "{env}"
    );
}

#[test]
fn no_recipes_means_the_generic_conversion_only() {
    let s = Scratch::new();
    let (src, recipe) = setup(&s);
    let dest = format!("oci:{}:out", s.path("out").display());
    let out = s
        .unroot(&[
            "convert",
            "-q",
            "--format",
            "json",
            &src,
            "--recipe",
            &recipe,
            "--no-recipes",
            "--to",
            &dest,
        ])
        .success();
    let report: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    // `--no-recipes` turns the built-in ones off; the one asked for by name still applies.
    assert_eq!(report["conversion"]["recipes"], serde_json::json!(["svc"]));
    let out = s
        .unroot(&[
            "convert",
            "-q",
            "--format",
            "json",
            &src,
            "--no-recipes",
            "--to",
            &dest,
        ])
        .success();
    let report: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(report["conversion"]["recipes"], serde_json::json!([]));
    let changes = report["conversion"]["changes"].as_array().unwrap();
    // The generic conversion still ran (its changes are there); the recipe's edit is not.
    assert!(!changes.is_empty(), "{report:#}");
    assert!(
        changes.iter().all(|c| c["path"] != "/etc/svc/svc.conf"),
        "{report:#}"
    );
}

/// A recipe asked for by name whose service is not in the image is UR701: the conversion
/// stops (nothing written) and says to drop it; the analysis lists UR701 and no finding
/// about the absent service, and its RECIPES section does not claim the recipe matched.
#[test]
fn a_forced_recipe_that_finds_nothing_of_its_service_is_an_error() {
    let s = Scratch::new();
    let src = s.build("img", "v1", crate::support::TINY);
    let out = s
        .unroot(&[
            "convert",
            &src,
            "--recipe",
            "nginx",
            "--to",
            &format!("oci:{}", s.path("out").display()),
        ])
        .failure(1);
    assert_eq!(
        out.error_line(),
        format!("error: {src}: recipe `nginx` was asked for, but the image has none of its files (`/usr/sbin/nginx`, `/usr/local/nginx/sbin/nginx`, `/usr/local/sbin/nginx`)"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("hint: drop `--recipe nginx`"),
        "{}",
        out.stderr
    );
    assert!(!s.path("out").exists());
    let out = s
        .unroot(&[
            "analyze", "-q", &src, "--recipe", "nginx", "--format", "json",
        ])
        .success();
    let report: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let ids: Vec<&str> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"UR701"), "{ids:?}");
    assert!(
        !ids.contains(&"UR301") && !ids.contains(&"UR302"),
        "{ids:?}"
    );
    assert_eq!(
        report["recipes"],
        serde_json::json!([]),
        "{:#}",
        report["recipes"]
    );
}

#[test]
fn an_edit_that_matches_nothing_stops_the_conversion() {
    let s = Scratch::new();
    let spec = SERVICE.replace("run_as = root\\n", "");
    let src = s.build("img", "v1", &spec);
    let recipe = s.path("svc.toml");
    std::fs::write(&recipe, RECIPE).unwrap();
    let out = s
        .unroot(&[
            "convert",
            &src,
            "--recipe",
            recipe.to_str().unwrap(),
            "--to",
            &format!("oci:{}", s.path("out").display()),
        ])
        .failure(1);
    assert!(
        out.error_line()
            .ends_with("recipe `svc`: edit `drop run_as` matched nothing in `/etc/svc/svc.conf`"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("hint: the service's files differ from what the recipe expects"),
        "{}",
        out.stderr
    );
    assert!(!s.path("out").exists());
    assert_eq!(files_below(&s.tmp()), Vec::<String>::new());
    // The analysis reports it instead of stopping.
    let out = s
        .unroot(&["analyze", "-q", &src, "--recipe", recipe.to_str().unwrap()])
        .success();
    assert!(
        out.stdout.contains("UR701 recipe-does-not-apply"),
        "{}",
        out.stdout
    );
}

#[test]
fn recipe_errors_point_at_the_place() {
    let s = Scratch::new();
    let bad = s.path("bad.toml");
    std::fs::write(&bad, "name = \"x\"\nsummary = \"y\"\n[match]\nany = [\"/a\"]\n[[ports]]\ndirective = \"d\"\npattern = '(unclosed'\n").unwrap();
    let out = s
        .unroot(&["recipes", "check", bad.to_str().unwrap()])
        .failure(2);
    assert!(
        out.error_line().contains("`ports[0].pattern`: "),
        "{}",
        out.stderr
    );
    std::fs::write(&bad, "name = \"x\"\nsummary = \"y\"\n[match]\nany = [\"/a\"]\n[[edit]]\nname = \"e\"\nkind = \"replace\"\npattern = 'a'\nbogus = 1\n").unwrap();
    let out = s
        .unroot(&["recipes", "check", bad.to_str().unwrap()])
        .failure(2);
    assert!(
        out.error_line()
            .contains("TOML parse error at line 9, column 1"),
        "{}",
        out.stderr
    );
    assert!(
        out.error_line().contains("unknown field `bogus`"),
        "{}",
        out.stderr
    );
    let out = s
        .unroot(&["convert", "x", "--recipe", "no-such-recipe"])
        .failure(2);
    assert!(
        out.error_line().contains("no recipe `no-such-recipe`"),
        "{}",
        out.stderr
    );
    for name in ["nginx", "apache", "redis", "haproxy"] {
        let out = s.unroot(&["recipes", "show", name]).success();
        let file = s.path(&format!("{name}.toml"));
        std::fs::write(&file, out.stdout).unwrap();
        let out = s
            .unroot(&["recipes", "check", file.to_str().unwrap()])
            .success();
        assert!(
            out.stdout.starts_with(&format!("ok: recipe `{name}`")),
            "{}",
            out.stdout
        );
    }
    // One line per built-in recipe, by name: its summary and the files that make it match.
    let out = s.unroot(&["recipes", "list"]).success();
    let names: Vec<&str> = out
        .stdout
        .lines()
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    // Every recipe the binary ships (the unit tests pin the list itself).
    assert_eq!(names, unroot::recipe::builtin_names(), "{}", out.stdout);
    let nginx = out
        .stdout
        .lines()
        .find(|l| l.starts_with("nginx "))
        .unwrap();
    assert!(
        nginx.ends_with("nginx web server and reverse proxy (matches /usr/sbin/nginx, /usr/local/nginx/sbin/nginx, /usr/local/sbin/nginx)"),
        "{nginx}"
    );
}

#[test]
fn dry_run_shows_the_plan_and_writes_nothing() {
    let s = Scratch::new();
    let src = format!(
        "oci:{}/golden-images/nginx-debian/image:latest",
        env!("CARGO_MANIFEST_DIR")
    );
    let dest = format!("oci:{}:x", s.path("out").display());
    let plan = s
        .unroot(&["convert", "-q", "--dry-run", &src, "--to", &dest])
        .success();
    assert!(!s.path("out").exists(), "a dry run wrote the destination");
    assert!(
        plan.stdout
            .contains("--- a/etc/nginx/nginx.conf\n+++ b/etc/nginx/nginx.conf"),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout.contains("-pid /run/nginx.pid;\n"),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout.contains("+pid /tmp/nginx.pid;\n"),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout.contains("config    User: \"\" -> \"33:33\""),
        "{}",
        plan.stdout
    );
    // The digest it announces is the one the conversion writes.
    let output = |text: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix("  output "))
            .unwrap_or_else(|| panic!("no output digest in\n{text}"))
            .to_string()
    };
    let announced = output(&plan.stdout);
    let real = s.unroot(&["convert", "-q", &src, "--to", &dest]).success();
    assert!(
        output(&real.stdout) == announced && announced.starts_with("sha256:"),
        "{}\n{}",
        plan.stdout,
        real.stdout
    );
}
