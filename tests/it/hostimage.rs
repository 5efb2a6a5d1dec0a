//! Builds realistic service images from this machine's Debian packages: the service's
//! binaries with the shared libraries `ldd` names, its config tree and data directories,
//! with their owners and modes, and the symlinks of the merged-/usr layout, into an image
//! spec (`host = ...` entries) the tests' image builder reads.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

#[derive(Debug, Clone)]
enum Item {
    Dir {
        mode: u32,
        uid: u32,
        gid: u32,
    },
    File {
        host: PathBuf,
        mode: u32,
        uid: u32,
        gid: u32,
    },
    Text {
        text: String,
        mode: u32,
        uid: u32,
        gid: u32,
    },
    Symlink {
        target: String,
    },
}

/// An image being assembled from host files.
#[derive(Default)]
pub struct HostImage {
    items: BTreeMap<String, Item>,
    config: String,
}

/// Normalizes `a/./b/../c` lexically (the image has no `..` to follow).
fn lexical(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
            _ => {}
        }
    }
    out
}

impl HostImage {
    pub fn new(config: &str) -> HostImage {
        HostImage {
            items: BTreeMap::new(),
            config: config.to_string(),
        }
    }

    fn key(path: &Path) -> String {
        path.to_string_lossy().into_owned()
    }

    /// Adds a host path as the image has it: every symlink met on the way, then the file or
    /// directory itself (a directory without its contents).
    pub fn path(&mut self, path: &str) -> PathBuf {
        let mut todo: VecDeque<PathBuf> = Path::new(path)
            .components()
            .skip(1)
            .map(|c| PathBuf::from(c.as_os_str()))
            .collect();
        let mut current = PathBuf::from("/");
        let mut hops = 0;
        while let Some(c) = todo.pop_front() {
            let next = current.join(&c);
            let meta = std::fs::symlink_metadata(&next).unwrap_or_else(|e| {
                panic!(
                    "{}: {e} (is the package installed? run ./scripts/test)",
                    next.display()
                )
            });
            if meta.file_type().is_symlink() {
                hops += 1;
                assert!(hops < 40, "symlink loop at {}", next.display());
                let target = std::fs::read_link(&next).unwrap();
                self.items.insert(
                    Self::key(&next),
                    Item::Symlink {
                        target: target.to_string_lossy().into_owned(),
                    },
                );
                let resolved = if target.is_absolute() {
                    target
                } else {
                    current.join(target)
                };
                let resolved = lexical(&resolved);
                let mut rest: VecDeque<PathBuf> = resolved
                    .components()
                    .skip(1)
                    .map(|c| PathBuf::from(c.as_os_str()))
                    .collect();
                rest.extend(todo.drain(..));
                todo = rest;
                current = PathBuf::from("/");
            } else {
                if meta.is_dir() {
                    self.items.entry(Self::key(&next)).or_insert(Item::Dir {
                        mode: meta.mode() & 0o7777,
                        uid: meta.uid(),
                        gid: meta.gid(),
                    });
                }
                current = next;
            }
        }
        let meta = std::fs::metadata(&current).unwrap();
        if meta.is_file() {
            self.items.insert(
                Self::key(&current),
                Item::File {
                    host: current.clone(),
                    mode: meta.mode() & 0o7777,
                    uid: meta.uid(),
                    gid: meta.gid(),
                },
            );
        }
        current
    }

    /// Adds a binary and every shared library it loads.
    pub fn binary(&mut self, path: &str) {
        self.path(path);
        let out = std::process::Command::new("ldd")
            .arg(path)
            .output()
            .expect("ldd runs");
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let lib = match line.split_once("=>") {
                Some((_, rest)) => rest.split_whitespace().next(),
                None => line
                    .split_whitespace()
                    .next()
                    .filter(|p| p.starts_with('/')),
            };
            if let Some(lib) = lib.filter(|l| l.starts_with('/')) {
                self.path(lib);
            }
        }
    }

    /// Adds a directory and everything below it.
    pub fn tree(&mut self, dir: &str) {
        let real = self.path(dir);
        let mut stack = vec![real];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                let p = e.path();
                let meta = std::fs::symlink_metadata(&p).unwrap();
                let key = Self::key(&p);
                if meta.file_type().is_symlink() {
                    let target = std::fs::read_link(&p).unwrap();
                    self.items.insert(
                        key,
                        Item::Symlink {
                            target: target.to_string_lossy().into_owned(),
                        },
                    );
                } else if meta.is_dir() {
                    self.items.insert(
                        key,
                        Item::Dir {
                            mode: meta.mode() & 0o7777,
                            uid: meta.uid(),
                            gid: meta.gid(),
                        },
                    );
                    stack.push(p);
                } else if meta.is_file() {
                    self.items.insert(
                        key,
                        Item::File {
                            host: p.clone(),
                            mode: meta.mode() & 0o7777,
                            uid: meta.uid(),
                            gid: meta.gid(),
                        },
                    );
                }
            }
        }
    }

    /// Adds a host file under another path.
    pub fn copy(&mut self, host: &str, to: &str, mode: u32) {
        self.items.insert(
            to.to_string(),
            Item::File {
                host: PathBuf::from(host),
                mode,
                uid: 0,
                gid: 0,
            },
        );
    }

    pub fn text(&mut self, path: &str, text: &str, mode: u32, uid: u32, gid: u32) {
        self.items.insert(
            path.to_string(),
            Item::Text {
                text: text.to_string(),
                mode,
                uid,
                gid,
            },
        );
    }

    pub fn dir(&mut self, path: &str, mode: u32, uid: u32, gid: u32) {
        self.items
            .insert(path.to_string(), Item::Dir { mode, uid, gid });
    }

    pub fn symlink(&mut self, path: &str, target: &str) {
        self.items.insert(
            path.to_string(),
            Item::Symlink {
                target: target.to_string(),
            },
        );
    }

    /// Busybox as /bin/sh and the few commands the entrypoint scripts use.
    pub fn busybox(&mut self, applets: &[&str]) {
        self.path("/usr/bin");
        self.copy("/bin/busybox", "/usr/bin/busybox", 0o755);
        for a in applets {
            self.symlink(&format!("/usr/bin/{a}"), "busybox");
        }
    }

    /// The account lines of this machine's /etc/passwd and /etc/group for these names
    /// (file owners in the image are the host's ids, so the accounts must match).
    pub fn accounts(&mut self, users: &[&str], groups: &[&str]) {
        let pick = |file: &str, names: &[&str]| -> String {
            std::fs::read_to_string(file)
                .unwrap()
                .lines()
                .filter(|l| names.contains(&l.split(':').next().unwrap_or_default()))
                .map(|l| format!("{l}\n"))
                .collect()
        };
        self.path("/etc");
        let passwd = pick("/etc/passwd", users);
        let group = pick("/etc/group", groups);
        self.text("/etc/passwd", &passwd, 0o644, 0, 0);
        self.text("/etc/group", &group, 0o644, 0, 0);
    }

    /// The usual directories of a Debian root filesystem.
    pub fn base(&mut self) {
        for d in [
            "/usr",
            "/usr/bin",
            "/usr/sbin",
            "/usr/lib",
            "/etc",
            "/var",
            "/var/log",
            "/var/lib",
        ] {
            self.dir(d, 0o755, 0, 0);
        }
        self.dir("/tmp", 0o1777, 0, 0);
        self.dir("/run", 0o755, 0, 0);
        self.dir("/run/lock", 0o1777, 0, 0);
        self.symlink("/var/run", "/run");
        self.symlink("/var/lock", "/run/lock");
        for l in ["bin", "sbin", "lib", "lib64"] {
            self.symlink(&format!("/{l}"), &format!("usr/{l}"));
        }
        // glibc loads it at run time (thread exit and cancellation): ldd does not list it.
        self.path("/usr/lib/x86_64-linux-gnu/libgcc_s.so.1");
    }

    /// The image spec (one layer, entries sorted so directories precede their contents).
    pub fn spec(&self) -> String {
        let mut s = format!("{}\n[[layer]]\n", self.config);
        let q = |v: &str| format!("{v:?}");
        for (path, item) in &self.items {
            let _ = writeln!(s, "[[layer.entry]]\npath = {}", q(path));
            let _ = match item {
                Item::Dir { mode, uid, gid } => {
                    writeln!(s, "type = \"dir\"\nmode = {mode}\nuid = {uid}\ngid = {gid}")
                }
                Item::File {
                    host,
                    mode,
                    uid,
                    gid,
                } => {
                    writeln!(
                        s,
                        "host = {}\nmode = {mode}\nuid = {uid}\ngid = {gid}",
                        q(&host.to_string_lossy())
                    )
                }
                Item::Text {
                    text,
                    mode,
                    uid,
                    gid,
                } => writeln!(
                    s,
                    "text = {}\nmode = {mode}\nuid = {uid}\ngid = {gid}",
                    q(text)
                ),
                Item::Symlink { target } => {
                    writeln!(s, "type = \"symlink\"\ntarget = {}", q(target))
                }
            };
        }
        s
    }
}
