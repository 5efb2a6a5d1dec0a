//! The runtime contract of a converted image: its user, ports, the paths that must stay
//! writable, and how to run it that way with docker and Kubernetes (a `securityContext`
//! that passes the Pod Security Standards "restricted" profile).

use std::fmt::Write as _;

use serde::Serialize;

pub use crate::analyze::contract::{Port, RuntimeContract};
use crate::model::ImageLocation;
use crate::pipeline::RunTarget;

/// How to run the converted image unprivileged.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Contract {
    /// User, ports, writable paths, read-only root, notes (flat in JSON).
    #[serde(flatten)]
    pub runtime: RuntimeContract,
    /// The image the commands run: a registry reference (pinned by digest once pushed),
    /// the local name a local output is loaded as, or `IMAGE` when there is none.
    pub image: String,
    /// The commands that run it with docker (a local output loaded first), joined by
    /// ` && `.
    pub docker: String,
    /// The same with podman.
    pub podman: String,
    /// The Kubernetes container settings: securityContext, ports, volumeMounts, volumes.
    pub kubernetes: serde_json::Value,
    #[serde(skip)]
    target: Target,
    /// For an image not written yet (an analysis, a dry run): where `unroot convert`
    /// writes it, which the commands and manifests say before they name it.
    #[serde(skip)]
    pending: Option<String>,
}

/// Where the image is, as the commands need it.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Target {
    /// In a registry: pulled as it is.
    Registry { reference: String, name: String },
    /// Written locally: loaded first, then run by a local name.
    Local {
        /// `localhost/NAME:TAG`, or the archive's `RepoTags` entry.
        reference: String,
        name: String,
        docker_load: String,
        podman_load: String,
    },
    /// Nothing to name (the destination could not be worked out).
    Unknown,
}

/// What `--emit k8s` prints.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KubernetesOptions {
    /// A Pod rather than a Deployment.
    pub pod: bool,
    /// `hostUsers: false`: the pod in a user namespace (Kubernetes 1.33 and later).
    pub user_namespace: bool,
    /// A NetworkPolicy that lets in only the contract's ports.
    pub network_policy: bool,
}

impl Contract {
    /// The contract, with the commands that run `target` that way.
    pub fn new(runtime: &RuntimeContract, run: &RunTarget) -> Contract {
        let target = Target::of(run);
        let pending = match &run.location {
            Some(location) if !run.written => Some(location.to_string()),
            _ => None,
        };
        let image = match &target {
            Target::Registry { reference, .. } | Target::Local { reference, .. } => {
                reference.clone()
            }
            Target::Unknown => "IMAGE".to_string(),
        };
        let mut contract = Contract {
            runtime: runtime.clone(),
            image,
            docker: String::new(),
            podman: String::new(),
            kubernetes: serde_json::Value::Null,
            target,
            pending,
        };
        contract.docker = contract.commands("docker").join(" && ");
        contract.podman = contract.commands("podman").join(" && ");
        contract.kubernetes = contract.kubernetes_json();
        contract
    }

    /// The commands that run the image with `engine` (`docker` or `podman`), in order:
    /// for a local output, the one that loads it, then `ENGINE run`.
    pub fn commands(&self, engine: &str) -> Vec<String> {
        let mut out = Vec::new();
        if let Target::Local {
            docker_load,
            podman_load,
            ..
        } = &self.target
        {
            out.push(
                if engine == "podman" {
                    podman_load
                } else {
                    docker_load
                }
                .clone(),
            );
        }
        out.push(self.run_command(engine));
        out
    }

    /// Where `unroot convert` writes the image, when it is not written yet (an analysis,
    /// a dry run): the commands and manifests that name it say so first.
    pub fn pending(&self) -> Option<String> {
        self.pending
            .as_ref()
            .map(|to| format!("not written yet: `unroot convert` writes the image to {to}"))
    }

    /// `docker run` flags that run the image as the contract says.
    pub fn docker_command(&self) -> String {
        self.run_command("docker")
    }

    fn run_command(&self, engine: &str) -> String {
        let mut cmd = format!("{engine} run --rm");
        if self.runtime.read_only_root_filesystem {
            cmd.push_str(" --read-only");
            if engine == "podman" {
                // podman's --read-only also mounts writable tmpfs on /run, /tmp and
                // /var/tmp; the contract lists what must be writable.
                cmd.push_str(" --read-only-tmpfs=false");
            }
        }
        for w in &self.runtime.writable {
            match self.runtime.tmpfs_owner(w) {
                // podman has no uid= and gid= options; `U` makes it the --user's.
                Some(_) if engine == "podman" => {
                    let _ = write!(cmd, " --tmpfs {}", sh(&format!("{w}:U")));
                }
                Some((uid, gid)) => {
                    let _ = write!(cmd, " --tmpfs {}", sh(&format!("{w}:uid={uid},gid={gid}")));
                }
                None => {
                    let _ = write!(cmd, " --tmpfs {}", sh(w));
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
        let _ = write!(cmd, " {}", sh(&self.image));
        cmd
    }

    /// A complete manifest `kubectl apply -f -` takes: a Deployment (or a Pod) whose
    /// pod passes the Pod Security Standards "restricted" profile, and optionally a
    /// NetworkPolicy.
    pub fn kubernetes_manifest(&self, options: &KubernetesOptions) -> String {
        let name = match &self.target {
            Target::Registry { name, .. } | Target::Local { name, .. } => name.as_str(),
            Target::Unknown => "app",
        };
        let mut y = String::new();
        let _ = writeln!(
            y,
            "# unroot: {} run unprivileged (Pod Security Standards \"restricted\")",
            self.image
        );
        if let Some(location) = &self.pending {
            let _ = writeln!(
                y,
                "# Not written yet: `unroot convert` writes the image to\n#   {location}\n# first."
            );
        }
        match &self.target {
            Target::Registry { .. } if self.pending.is_some() => {
                let _ = writeln!(
                    y,
                    "# Once it is pushed, pin the image below by digest (`unroot convert` prints\n# the reference pinned)."
                );
            }
            Target::Registry { .. } => {}
            Target::Local { .. } if self.pending.is_some() => {
                let _ = writeln!(
                    y,
                    "# Then push it to a registry the cluster pulls from (skopeo copy), and put that\n# reference in place of REGISTRY.EXAMPLE below."
                );
            }
            Target::Local { .. } => {
                let _ = writeln!(
                    y,
                    "# The image was written locally: push it to a registry the cluster pulls from\n# (skopeo copy), and put that reference in place of REGISTRY.EXAMPLE below."
                );
            }
            Target::Unknown => {
                let _ = writeln!(
                    y,
                    "# Put the converted image's reference in place of IMAGE below."
                );
            }
        }
        let image = match &self.target {
            Target::Registry { reference, .. } => reference.clone(),
            Target::Local { name, .. } => format!("REGISTRY.EXAMPLE/{name}:unprivileged"),
            Target::Unknown => "IMAGE".to_string(),
        };
        let labels = |y: &mut String, indent: &str| {
            let _ = writeln!(
                y,
                "{indent}labels:\n{indent}  app.kubernetes.io/name: {name}"
            );
        };
        // The pod's spec, at `indent`.
        let pod = |indent: &str| -> String {
            let i = indent;
            let r = &self.runtime;
            let mut p = String::new();
            let _ = writeln!(p, "{i}automountServiceAccountToken: false");
            if options.user_namespace {
                let _ = writeln!(p, "{i}hostUsers: false");
            }
            let _ = writeln!(p, "{i}securityContext:");
            let _ = writeln!(p, "{i}  runAsNonRoot: true");
            let _ = writeln!(p, "{i}  runAsUser: {}", r.uid);
            let _ = writeln!(p, "{i}  runAsGroup: {}", r.gid);
            // Volumes (persistent ones too) become the runtime group's, group-writable.
            let _ = writeln!(p, "{i}  fsGroup: {}", r.gid);
            let _ = writeln!(p, "{i}  fsGroupChangePolicy: OnRootMismatch");
            let _ = writeln!(p, "{i}  seccompProfile:\n{i}    type: RuntimeDefault");
            let _ = writeln!(p, "{i}containers:");
            let _ = writeln!(p, "{i}  - name: {name}");
            let _ = writeln!(p, "{i}    image: {}", yaml_str(&image));
            let _ = writeln!(p, "{i}    imagePullPolicy: Always");
            let _ = writeln!(p, "{i}    securityContext:");
            let _ = writeln!(p, "{i}      runAsNonRoot: true");
            let _ = writeln!(p, "{i}      runAsUser: {}", r.uid);
            let _ = writeln!(p, "{i}      runAsGroup: {}", r.gid);
            let _ = writeln!(p, "{i}      allowPrivilegeEscalation: false");
            let _ = writeln!(
                p,
                "{i}      readOnlyRootFilesystem: {}",
                r.read_only_root_filesystem
            );
            let _ = writeln!(p, "{i}      capabilities:\n{i}        drop: [\"ALL\"]");
            let _ = writeln!(
                p,
                "{i}      seccompProfile:\n{i}        type: RuntimeDefault"
            );
            if !r.ports.is_empty() {
                let _ = writeln!(p, "{i}    ports:");
                for port in &r.ports {
                    let _ = writeln!(p, "{i}      - containerPort: {}", port.port);
                    let _ = writeln!(p, "{i}        protocol: {}", port.protocol.to_uppercase());
                }
            }
            if !r.writable.is_empty() {
                let _ = writeln!(p, "{i}    volumeMounts:");
                for w in &r.writable {
                    let _ = writeln!(p, "{i}      - name: {}", volume_name(w));
                    let _ = writeln!(p, "{i}        mountPath: {}", yaml_str(w));
                }
                let _ = writeln!(p, "{i}volumes:");
                for w in &r.writable {
                    let _ = writeln!(p, "{i}  - name: {}", volume_name(w));
                    let _ = writeln!(p, "{i}    emptyDir: {{}}");
                }
            }
            p
        };
        if options.pod {
            let _ = writeln!(y, "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}");
            labels(&mut y, "  ");
            let _ = writeln!(y, "spec:");
            y.push_str(&pod("  "));
        } else {
            let _ = writeln!(
                y,
                "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}"
            );
            labels(&mut y, "  ");
            let _ = writeln!(
                y,
                "spec:\n  replicas: 1\n  selector:\n    matchLabels:\n      app.kubernetes.io/name: {name}\n  template:\n    metadata:"
            );
            labels(&mut y, "      ");
            let _ = writeln!(y, "    spec:");
            y.push_str(&pod("      "));
        }
        if options.network_policy {
            let _ = writeln!(
                y,
                "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: {name}\nspec:\n  podSelector:\n    matchLabels:\n      app.kubernetes.io/name: {name}\n  policyTypes: [\"Ingress\"]"
            );
            if self.runtime.ports.is_empty() {
                let _ = writeln!(y, "  ingress: []");
            } else {
                let _ = writeln!(y, "  ingress:\n    - ports:");
                for port in &self.runtime.ports {
                    let _ = writeln!(
                        y,
                        "        - port: {}\n          protocol: {}",
                        port.port,
                        port.protocol.to_uppercase()
                    );
                }
            }
        }
        y
    }

    /// The container part of a Kubernetes pod spec, as JSON.
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

impl Target {
    fn of(target: &RunTarget) -> Target {
        let Some(location) = &target.location else {
            return Target::Unknown;
        };
        // The last part of a path or repository, as a DNS label; a layout directory named
        // for what it is (`.../nginx/image`) is named by the directory that holds it.
        let label = |s: &str| {
            let base = crate::model::location::naming_part(s);
            volume_name(base.strip_suffix(".tar").unwrap_or(base))
        };
        let local = |name: String, tag: Option<&str>| {
            format!("localhost/{name}:{}", tag.unwrap_or("latest"))
        };
        match location {
            ImageLocation::Registry(r) => {
                let reference = match (&target.digest, r.tag()) {
                    (Some(d), Some(tag)) => format!("{}:{tag}@{d}", r.name()),
                    (Some(d), None) => format!("{}@{d}", r.name()),
                    (None, _) => r.to_string(),
                };
                Target::Registry {
                    reference,
                    name: label(r.repository()),
                }
            }
            ImageLocation::OciLayout { dir, tag }
            | ImageLocation::OciArchive { file: dir, tag } => {
                let name = label(&dir.to_string_lossy());
                let reference = local(name.clone(), tag.as_deref());
                let from = sh(&location.to_string());
                Target::Local {
                    docker_load: format!("skopeo copy {from} docker-daemon:{reference}"),
                    podman_load: format!("skopeo copy {from} containers-storage:{reference}"),
                    reference,
                    name,
                }
            }
            ImageLocation::DockerArchive { file, reference } => {
                let name = label(&file.to_string_lossy());
                let from = sh(&location.to_string());
                match reference {
                    // `docker load` names it by its RepoTags.
                    Some(tagged) => Target::Local {
                        docker_load: format!("docker load -i {}", sh(&file.to_string_lossy())),
                        podman_load: format!("skopeo copy {from} containers-storage:{tagged}"),
                        reference: tagged.clone(),
                        name,
                    },
                    None => {
                        let reference = local(name.clone(), None);
                        Target::Local {
                            docker_load: format!("skopeo copy {from} docker-daemon:{reference}"),
                            podman_load: format!(
                                "skopeo copy {from} containers-storage:{reference}"
                            ),
                            reference,
                            name,
                        }
                    }
                }
            }
        }
    }
}

/// A word for a POSIX shell: as it is when it needs no quoting, else in single quotes.
fn sh(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_./:@%+=,-".contains(&b));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// A YAML scalar: plain when that reads back as the same string, else double-quoted.
fn yaml_str(s: &str) -> String {
    let plain = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_./:@-".contains(&b))
        && !s.contains(": ")
        && s.parse::<f64>().is_err()
        && !matches!(
            s,
            "true" | "false" | "null" | "yes" | "no" | "on" | "off" | "~"
        );
    if plain {
        s.to_string()
    } else {
        serde_json::to_string(s).expect("a string serializes")
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

    fn nginx(target: RunTarget) -> Contract {
        Contract::new(
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
            &target,
        )
    }

    #[test]
    fn commands_load_a_local_output_first_and_pin_a_pushed_one() {
        let at = |s: &str, digest: Option<&str>| RunTarget {
            location: Some(ImageLocation::parse(s).unwrap()),
            digest: digest.map(|d| d.parse().unwrap()),
            written: true,
        };
        let d = "sha256:4ca38258114b577400c6645408f5d047e3d107a2f149144bc39b4775be4bec8d";
        let c = nginx(at("registry.example/web/nginx:1.27-unprivileged", Some(d)));
        assert_eq!(
            c.image,
            format!("registry.example/web/nginx:1.27-unprivileged@{d}")
        );
        assert_eq!(
            c.commands("docker"),
            [format!("docker run --rm --read-only --tmpfs /tmp --tmpfs /var/cache/nginx:uid=101,gid=0 --user 101:101 --cap-drop ALL --security-opt no-new-privileges -p 8080:8080 {}", c.image)]
        );
        let c = nginx(at("oci:/out/my nginx:v1", None));
        assert_eq!(c.image, "localhost/my-nginx:v1");
        assert_eq!(
            c.commands("podman"),
            [
                "skopeo copy 'oci:/out/my nginx:v1' containers-storage:localhost/my-nginx:v1".to_string(),
                "podman run --rm --read-only --read-only-tmpfs=false --tmpfs /tmp --tmpfs /var/cache/nginx:U --user 101:101 --cap-drop ALL --security-opt no-new-privileges -p 8080:8080 localhost/my-nginx:v1".to_string(),
            ]
        );
        assert!(c.docker.starts_with("skopeo copy 'oci:/out/my nginx:v1' docker-daemon:localhost/my-nginx:v1 && docker run "), "{}", c.docker);
        // A directory named for what it is: the one that holds it names the image.
        let c = nginx(at("oci:golden-images/nginx-official/image:latest", None));
        assert_eq!(c.image, "localhost/nginx-official:latest");
        let c = nginx(at("oci:image/:v2", None));
        assert_eq!(c.image, "localhost/image:v2");
        let c = nginx(at("docker-archive:/out/web.tar:web:1", None));
        assert_eq!(c.commands("docker")[0], "docker load -i /out/web.tar");
        assert_eq!(c.image, "web:1");
        let c = nginx(RunTarget {
            location: None,
            digest: None,
            written: false,
        });
        assert_eq!(c.commands("docker").len(), 1);
        assert!(c
            .kubernetes_manifest(&Default::default())
            .contains("image: IMAGE\n"));
    }

    #[test]
    fn the_manifest_is_a_deployment_or_a_pod_with_both_security_contexts() {
        let c = nginx(RunTarget {
            location: Some(ImageLocation::parse("oci:/out/web:v1").unwrap()),
            digest: None,
            written: true,
        });
        let y = c.kubernetes_manifest(&KubernetesOptions {
            pod: false,
            user_namespace: true,
            network_policy: true,
        });
        for line in [
            "kind: Deployment",
            "      hostUsers: false",
            "      automountServiceAccountToken: false",
            "      securityContext:\n        runAsNonRoot: true\n        runAsUser: 101\n        runAsGroup: 101\n        fsGroup: 101\n",
            "          image: REGISTRY.EXAMPLE/web:unprivileged\n",
            "            allowPrivilegeEscalation: false",
            "            readOnlyRootFilesystem: true",
            "              drop: [\"ALL\"]",
            "            - containerPort: 8080\n              protocol: TCP",
            "              mountPath: /var/cache/nginx",
            "          emptyDir: {}",
            "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy",
            "        - port: 8080\n          protocol: TCP",
        ] {
            assert!(y.contains(line), "{line} missing in\n{y}");
        }
        assert!(
            y.contains("push it to a registry"),
            "a placeholder is marked:\n{y}"
        );
        let pod = c.kubernetes_manifest(&KubernetesOptions {
            pod: true,
            ..Default::default()
        });
        assert!(pod.contains("apiVersion: v1\nkind: Pod\n"), "{pod}");
        assert!(
            pod.contains("\n  securityContext:\n    runAsNonRoot: true"),
            "{pod}"
        );
        assert!(
            !pod.contains("hostUsers") && !pod.contains("NetworkPolicy"),
            "{pod}"
        );
        assert_eq!(c.kubernetes_json()["podSecurityContext"]["fsGroup"], 101);
    }

    /// The whole Pod manifest of an analysis, whose image is not written yet: said first,
    /// with how to pin it once pushed.
    #[test]
    fn the_pod_manifest_of_an_analysis_in_full() {
        let c = nginx(RunTarget {
            location: Some(
                ImageLocation::parse("registry.example/web/nginx:1.27-unprivileged").unwrap(),
            ),
            digest: None,
            written: false,
        });
        let y = c.kubernetes_manifest(&KubernetesOptions {
            pod: true,
            ..Default::default()
        });
        assert_eq!(
            y,
            concat!(
            "# unroot: registry.example/web/nginx:1.27-unprivileged run unprivileged (Pod Security Standards \"restricted\")\n",
            "# Not written yet: `unroot convert` writes the image to\n",
            "#   docker://registry.example/web/nginx:1.27-unprivileged\n",
            "# first.\n",
            "# Once it is pushed, pin the image below by digest (`unroot convert` prints\n",
            "# the reference pinned).\n",
            "apiVersion: v1\n",
            "kind: Pod\n",
            "metadata:\n",
            "  name: nginx\n",
            "  labels:\n",
            "    app.kubernetes.io/name: nginx\n",
            "spec:\n",
            "  automountServiceAccountToken: false\n",
            "  securityContext:\n",
            "    runAsNonRoot: true\n",
            "    runAsUser: 101\n",
            "    runAsGroup: 101\n",
            "    fsGroup: 101\n",
            "    fsGroupChangePolicy: OnRootMismatch\n",
            "    seccompProfile:\n",
            "      type: RuntimeDefault\n",
            "  containers:\n",
            "    - name: nginx\n",
            "      image: registry.example/web/nginx:1.27-unprivileged\n",
            "      imagePullPolicy: Always\n",
            "      securityContext:\n",
            "        runAsNonRoot: true\n",
            "        runAsUser: 101\n",
            "        runAsGroup: 101\n",
            "        allowPrivilegeEscalation: false\n",
            "        readOnlyRootFilesystem: true\n",
            "        capabilities:\n",
            "          drop: [\"ALL\"]\n",
            "        seccompProfile:\n",
            "          type: RuntimeDefault\n",
            "      ports:\n",
            "        - containerPort: 8080\n",
            "          protocol: TCP\n",
            "      volumeMounts:\n",
            "        - name: tmp\n",
            "          mountPath: /tmp\n",
            "        - name: var-cache-nginx\n",
            "          mountPath: /var/cache/nginx\n",
            "  volumes:\n",
            "    - name: tmp\n",
            "      emptyDir: {}\n",
            "    - name: var-cache-nginx\n",
            "      emptyDir: {}\n",
        )
        );
    }

    #[test]
    fn shell_words_and_yaml_scalars_are_quoted_when_they_must_be() {
        assert_eq!(sh("oci:/a/b:v1"), "oci:/a/b:v1");
        assert_eq!(sh("it's here"), "'it'\\''s here'");
        assert_eq!(yaml_str("/var/cache/nginx"), "/var/cache/nginx");
        assert_eq!(yaml_str("true"), "\"true\"");
        assert_eq!(yaml_str("a #b"), "\"a #b\"");
    }
}
