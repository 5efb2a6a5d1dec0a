//! Entrypoint scripts: the shell script an image's command runs (`docker-entrypoint.sh`)
//! often starts the service itself (`exec httpd -p 80`). Its listen ports move as those of
//! the command line do, line by line, and each move is reported with the script's path and
//! line.

use crate::layer::{Content, ImagePath, MergedView};
use crate::model::command::{port_args, rewrite};
use crate::model::ImageConfig;

/// The most bytes of a script that is read.
pub const SCRIPT_CAP: u64 = 64 * 1024;

/// The search path when the config sets none.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Shells that run a script given as their first argument.
const SHELLS: &[&str] = &["sh", "bash", "dash", "ash"];

/// The paths the command's script may be at: the program of `Entrypoint` (else `Cmd`), as
/// given or found on `PATH`, and a script a shell is given (`sh /entrypoint.sh`).
pub fn candidates(config: &ImageConfig) -> Vec<ImagePath> {
    let mut args = config.entrypoint();
    if args.is_empty() {
        args = config.cmd();
    }
    let mut programs: Vec<&str> = Vec::new();
    if let Some(first) = args.first() {
        programs.push(first);
        let name = first.rsplit('/').next().unwrap_or(first);
        if SHELLS.contains(&name) {
            if let Some(script) = args.get(1).filter(|a| !a.starts_with('-')) {
                programs.push(script);
            }
        }
    }
    let path_var = config
        .env()
        .iter()
        .find_map(|e| e.strip_prefix("PATH=").map(String::from))
        .unwrap_or_else(|| DEFAULT_PATH.to_string());
    let workdir = config.working_dir().unwrap_or("/").to_string();
    let mut out = Vec::new();
    for p in programs {
        if p.starts_with('/') {
            out.push(ImagePath::new(p));
        } else if p.contains('/') {
            out.push(ImagePath::new(&format!("{workdir}/{p}")));
        } else {
            out.extend(
                path_var
                    .split(':')
                    .filter(|d| !d.is_empty())
                    .map(|d| ImagePath::new(&format!("{d}/{p}"))),
            );
        }
    }
    out
}

/// A port moved in a script.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScriptMove {
    /// The line (1-based).
    pub line: usize,
    /// The port before.
    pub from: u16,
    /// After.
    pub to: u16,
    /// The line before, trimmed.
    pub before: String,
    /// After, trimmed.
    pub after: String,
}

/// A script of the command with its listen ports: the file, its text with the ports moved
/// by `map`, and each move (with the ports `map` leaves, `from == to`).
pub struct Script {
    /// Where it is (links resolved).
    pub path: ImagePath,
    /// Its layer.
    pub layer: usize,
    /// Its text as it was.
    pub original: Vec<u8>,
    /// Its text with the ports moved.
    pub text: Vec<u8>,
    /// Each port found, moved or not.
    pub moves: Vec<ScriptMove>,
}

/// The first shell script among the command's candidates that the scan kept, with the
/// listen ports of its lines (a bare number counts when it is in `exposed`).
pub fn command_script(
    view: &MergedView,
    config: &ImageConfig,
    exposed: &[u16],
    map: impl Fn(u16) -> Option<u16>,
) -> Option<Script> {
    for candidate in candidates(config) {
        let Ok(path) = view.resolve(&candidate) else {
            continue;
        };
        let Some(node) = view.get(&path) else {
            continue;
        };
        let Some(Content::Bytes(bytes)) = &node.content else {
            continue;
        };
        let Ok(text) = std::str::from_utf8(bytes) else {
            continue;
        };
        let shebang = text.lines().next().unwrap_or_default();
        let is_shell = shebang.starts_with("#!")
            && SHELLS.iter().any(|s| {
                shebang
                    .split_whitespace()
                    .any(|w| w.ends_with(&format!("/{s}")) || w == *s)
            });
        if !is_shell {
            continue;
        }
        let mut out = String::with_capacity(text.len());
        let mut moves = Vec::new();
        for (n, line) in text.split_inclusive('\n').enumerate() {
            let code = line.trim_start();
            if code.starts_with('#') {
                out.push_str(line);
                continue;
            }
            let args = vec!["sh".to_string(), "-c".to_string(), line.to_string()];
            let found = port_args(&args, exposed);
            let (new, moved) = rewrite(&args, &found, &map);
            for f in &found {
                let to = moved
                    .iter()
                    .find(|(_, from, _)| *from == f.port)
                    .map_or(f.port, |m| m.2);
                moves.push(ScriptMove {
                    line: n + 1,
                    from: f.port,
                    to,
                    before: line.trim().to_string(),
                    after: new[2].trim().to_string(),
                });
            }
            out.push_str(&new[2]);
        }
        return Some(Script {
            path,
            layer: node.layer,
            original: bytes.to_vec(),
            text: out.into_bytes(),
            moves,
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn where_the_command_script_may_be() {
        let config = |json: &str| ImageConfig::parse(json.as_bytes()).unwrap();
        let c = config(
            r#"{"config": {"Entrypoint": ["docker-entrypoint.sh"], "Cmd": ["httpd"], "Env": ["PATH=/usr/local/bin:/bin"]}}"#,
        );
        let paths: Vec<String> = candidates(&c).iter().map(|p| p.display()).collect();
        assert_eq!(
            paths,
            [
                "/usr/local/bin/docker-entrypoint.sh",
                "/bin/docker-entrypoint.sh"
            ]
        );
        let c = config(r#"{"config": {"Cmd": ["/bin/sh", "/start.sh", "--fast"]}}"#);
        let paths: Vec<String> = candidates(&c).iter().map(|p| p.display()).collect();
        assert_eq!(paths, ["/bin/sh", "/start.sh"]);
        let c = config(r#"{"config": {"Cmd": ["./run"], "WorkingDir": "/app"}}"#);
        let paths: Vec<String> = candidates(&c).iter().map(|p| p.display()).collect();
        assert_eq!(paths, ["/app/run"]);
    }
}
