//! The runtime contract of a converted image: its user, ports, the paths that must stay
//! writable, and how to run it that way with docker and Kubernetes (a `securityContext`
//! that passes the Pod Security Standards "restricted" profile).

use std::fmt::Write as _;

use serde::Serialize;

pub use crate::analyze::contract::{Port, RuntimeContract};

/// How to run the converted image unprivileged.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Contract {
    /// User, ports, writable paths, read-only root, notes (flat in JSON).
    #[serde(flatten)]
    pub runtime: RuntimeContract,
    /// The image the commands run (the conversion's destination).
    pub image: String,
    /// The `docker run` command line.
    pub docker: String,
    /// The Kubernetes container settings: securityContext, ports, volumeMounts, volumes.
    pub kubernetes: serde_json::Value,
}

impl Contract {
    /// The contract, with the commands that run `image` that way.
    pub fn new(runtime: &RuntimeContract, image: &str) -> Contract {
        let mut contract = Contract {
            runtime: runtime.clone(),
            image: image.to_string(),
            docker: String::new(),
            kubernetes: serde_json::Value::Null,
        };
        contract.docker = contract.docker_command();
        contract.kubernetes = contract.kubernetes_json();
        contract
    }

    /// `docker run` flags that run the image as the contract says.
    pub fn docker_command(&self) -> String {
        let image = &self.image;
        let mut cmd = String::from("docker run --rm");
        if self.runtime.read_only_root_filesystem {
            cmd.push_str(" --read-only");
        }
        for w in &self.runtime.writable {
            match self.runtime.tmpfs_owner(w) {
                Some((uid, gid)) => {
                    let _ = write!(cmd, " --tmpfs {w}:uid={uid},gid={gid}");
                }
                None => {
                    let _ = write!(cmd, " --tmpfs {w}");
                }
            }
        }
        let _ = write!(
            cmd,
            " --user {}:{} --cap-drop ALL --security-opt no-new-privileges",
            self.runtime.uid, self.runtime.gid
        );
        for p in &self.runtime.ports {
            let suffix = if p.protocol == "tcp" {
                String::new()
            } else {
                format!("/{}", p.protocol)
            };
            let _ = write!(cmd, " -p {0}:{0}{suffix}", p.port);
        }
        let _ = write!(cmd, " {image}");
        cmd
    }

    /// The container part of a Kubernetes pod spec, as YAML.
    pub fn kubernetes_yaml(&self) -> String {
        let image = &self.image;
        let mut y = String::new();
        let _ = writeln!(
            y,
            "# unroot: the converted image's runtime contract (Pod Security Standards: restricted)"
        );
        // Volumes (persistent ones too) become the runtime group's, group-writable.
        let _ = writeln!(y, "securityContext:");
        let _ = writeln!(y, "  fsGroup: {}", self.runtime.gid);
        let _ = writeln!(y, "  fsGroupChangePolicy: OnRootMismatch");
        let _ = writeln!(y, "containers:");
        let _ = writeln!(y, "  - name: app");
        let _ = writeln!(y, "    image: {image}");
        let _ = writeln!(y, "    securityContext:");
        let _ = writeln!(y, "      runAsNonRoot: true");
        let _ = writeln!(y, "      runAsUser: {}", self.runtime.uid);
        let _ = writeln!(y, "      runAsGroup: {}", self.runtime.gid);
        let _ = writeln!(y, "      allowPrivilegeEscalation: false");
        let _ = writeln!(
            y,
            "      readOnlyRootFilesystem: {}",
            self.runtime.read_only_root_filesystem
        );
        let _ = writeln!(y, "      capabilities:");
        let _ = writeln!(y, "        drop: [\"ALL\"]");
        let _ = writeln!(y, "      seccompProfile:");
        let _ = writeln!(y, "        type: RuntimeDefault");
        if !self.runtime.ports.is_empty() {
            let _ = writeln!(y, "    ports:");
            for p in &self.runtime.ports {
                let _ = writeln!(y, "      - containerPort: {}", p.port);
                let _ = writeln!(y, "        protocol: {}", p.protocol.to_uppercase());
            }
        }
        if !self.runtime.writable.is_empty() {
            let _ = writeln!(y, "    volumeMounts:");
            for w in &self.runtime.writable {
                let _ = writeln!(y, "      - name: {}", volume_name(w));
                let _ = writeln!(y, "        mountPath: {w}");
            }
            let _ = writeln!(y, "volumes:");
            for w in &self.runtime.writable {
                let _ = writeln!(y, "  - name: {}", volume_name(w));
                let _ = writeln!(y, "    emptyDir: {{}}");
            }
        }
        y
    }

    /// The same as [`Contract::kubernetes_yaml`], as JSON.
    pub fn kubernetes_json(&self) -> serde_json::Value {
        serde_json::json!({
            "podSecurityContext": {
                "fsGroup": self.runtime.gid,
                "fsGroupChangePolicy": "OnRootMismatch",
            },
            "securityContext": {
                "runAsNonRoot": true,
                "runAsUser": self.runtime.uid,
                "runAsGroup": self.runtime.gid,
                "allowPrivilegeEscalation": false,
                "readOnlyRootFilesystem": self.runtime.read_only_root_filesystem,
                "capabilities": {"drop": ["ALL"]},
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "ports": self.runtime.ports.iter().map(|p| serde_json::json!({"containerPort": p.port, "protocol": p.protocol.to_uppercase()})).collect::<Vec<_>>(),
            "volumeMounts": self.runtime.writable.iter().map(|w| serde_json::json!({"name": volume_name(w), "mountPath": w})).collect::<Vec<_>>(),
            "volumes": self.runtime.writable.iter().map(|w| serde_json::json!({"name": volume_name(w), "emptyDir": {}})).collect::<Vec<_>>(),
        })
    }
}

/// A DNS-1123 label for a mount path: `/var/cache/nginx` -> `var-cache-nginx`.
pub fn volume_name(path: &str) -> String {
    let mut name: String = path
        .trim_matches('/')
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    while name.contains("--") {
        name = name.replace("--", "-");
    }
    let name = name.trim_matches('-');
    let name = if name.is_empty() { "root" } else { name };
    name.chars()
        .take(63)
        .collect::<String>()
        .trim_end_matches('-')
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_names_are_dns_labels() {
        assert_eq!(volume_name("/var/cache/nginx"), "var-cache-nginx");
        assert_eq!(volume_name("/tmp"), "tmp");
        assert_eq!(volume_name("/data/My_App..x"), "data-my-app-x");
        assert_eq!(volume_name(&format!("/{}", "a".repeat(100))).len(), 63);
    }

    #[test]
    fn docker_and_kubernetes() {
        let c = Contract::new(
            &RuntimeContract {
                uid: 101,
                gid: 101,
                ports: vec![Port {
                    port: 8080,
                    protocol: "tcp".into(),
                    moved_from: Some(80),
                }],
                writable: vec!["/tmp".into(), "/var/cache/nginx".into()],
                read_only_root_filesystem: true,
                notes: vec![],
            },
            "img",
        );
        assert_eq!(
            c.docker_command(),
            "docker run --rm --read-only --tmpfs /tmp --tmpfs /var/cache/nginx:uid=101,gid=0 --user 101:101 --cap-drop ALL --security-opt no-new-privileges -p 8080:8080 img"
        );
        let y = c.kubernetes_yaml();
        for line in [
            "runAsNonRoot: true",
            "runAsUser: 101",
            "allowPrivilegeEscalation: false",
            "drop: [\"ALL\"]",
            "type: RuntimeDefault",
            "mountPath: /var/cache/nginx",
            "emptyDir: {}",
        ] {
            assert!(y.contains(line), "{line} missing in\n{y}");
        }
        // The pod's part comes first, then the container's.
        assert!(y.contains("securityContext:\n  fsGroup: 101\n  fsGroupChangePolicy: OnRootMismatch\ncontainers:\n"), "{y}");
        assert_eq!(c.kubernetes_json()["podSecurityContext"]["fsGroup"], 101);
    }
}
