//! The payloads of registries with webhooks of their own: Harbor, GitHub (with its
//! signature), Docker Hub and Quay.

use serde::Deserialize;

use super::{bad, digest_field, image_of, reference_image, HookError, Hooked};

#[derive(Deserialize)]
struct HarborData {
    #[serde(default)]
    resources: Vec<HarborResource>,
}

#[derive(Deserialize)]
struct HarborResource {
    #[serde(default)]
    digest: String,
    #[serde(default)]
    tag: String,
    resource_url: String,
}

/// Harbor's `PUSH_ARTIFACT` in its default JSON (`type`, `event_data`) or as a CloudEvent
/// (`type = "harbor.artifact.pushed"`, `data`). Each resource is a reference with its host
/// (`harbor.example/library/nginx:latest`) and digest. Other event types are ignored.
pub fn harbor(body: &[u8]) -> Result<Vec<Hooked>, HookError> {
    const SENDER: &str = "harbor";
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| bad(SENDER, format!("not JSON: {e}")))?;
    let kind = v["type"]
        .as_str()
        .ok_or_else(|| bad(SENDER, "no `type`: neither Harbor's JSON nor a CloudEvent"))?;
    let data = match kind {
        "PUSH_ARTIFACT" => &v["event_data"],
        "harbor.artifact.pushed" => &v["data"],
        other => return Ok(vec![Hooked::Ignored(format!("harbor event `{other}`"))]),
    };
    let data: HarborData = serde_json::from_value(data.clone())
        .map_err(|e| bad(SENDER, format!("the event's data: {e}")))?;
    data.resources
        .iter()
        .map(|r| {
            let image = reference_image(SENDER, &r.resource_url)?;
            let tag = (!r.tag.is_empty()).then(|| r.tag.clone());
            Ok(Hooked::Image(image_of(
                SENDER,
                &image,
                tag,
                digest_field(SENDER, &r.digest)?,
            )?))
        })
        .collect()
}

/// GitHub's `registry_package` event (the `X-GitHub-Event` header), action `published`, for
/// container packages: `package_version.package_url` is the reference
/// (`ghcr.io/owner/app:1.0`), `container_metadata.tag` its tag and digest.
pub fn github(event: &str, body: &[u8]) -> Result<Vec<Hooked>, HookError> {
    const SENDER: &str = "github";
    if event == "ping" {
        return Ok(vec![Hooked::Ignored("github ping".into())]);
    }
    if event != "registry_package" && event != "package" {
        return Ok(vec![Hooked::Ignored(format!("github event `{event}`"))]);
    }
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| bad(SENDER, format!("not JSON: {e}")))?;
    if v["action"] != "published" {
        return Ok(vec![Hooked::Ignored(format!(
            "github package action `{}`",
            v["action"].as_str().unwrap_or("")
        ))]);
    }
    let package = if v["registry_package"].is_object() {
        &v["registry_package"]
    } else {
        &v["package"]
    };
    let kind = package["package_type"]
        .as_str()
        .or(package["ecosystem"].as_str())
        .unwrap_or("");
    if !kind.eq_ignore_ascii_case("container") && !kind.eq_ignore_ascii_case("docker") {
        return Ok(vec![Hooked::Ignored(format!(
            "github package of type `{kind}`"
        ))]);
    }
    let version = &package["package_version"];
    let url = version["package_url"]
        .as_str()
        .ok_or_else(|| bad(SENDER, "the package version has no `package_url`"))?;
    let image = reference_image(SENDER, url)?;
    let tag = version["container_metadata"]["tag"]["name"]
        .as_str()
        .filter(|t| !t.is_empty())
        .map(str::to_string);
    let digest = version["container_metadata"]["tag"]["digest"]
        .as_str()
        .or(version["version"]
            .as_str()
            .filter(|v| v.starts_with("sha256:")))
        .unwrap_or("");
    Ok(vec![Hooked::Image(image_of(
        SENDER,
        &image,
        tag,
        digest_field(SENDER, digest)?,
    )?)])
}

/// Docker Hub's webhook: `repository.repo_name` and `push_data.tag`, no digest (the bot
/// resolves it).
pub fn dockerhub(body: &[u8]) -> Result<Vec<Hooked>, HookError> {
    const SENDER: &str = "dockerhub";
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| bad(SENDER, format!("not JSON: {e}")))?;
    let repo = v["repository"]["repo_name"]
        .as_str()
        .ok_or_else(|| bad(SENDER, "no `repository.repo_name`"))?;
    let tag = v["push_data"]["tag"]
        .as_str()
        .filter(|t| !t.is_empty())
        .ok_or_else(|| bad(SENDER, "no `push_data.tag`"))?;
    let image = reference_image(SENDER, &format!("docker.io/{repo}:{tag}"))?;
    Ok(vec![Hooked::Image(image_of(SENDER, &image, None, None)?)])
}

/// Quay's `repo_push`: `docker_url` (`quay.io/org/repo`) and `updated_tags`, no digests.
pub fn quay(body: &[u8]) -> Result<Vec<Hooked>, HookError> {
    const SENDER: &str = "quay";
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| bad(SENDER, format!("not JSON: {e}")))?;
    let url = v["docker_url"]
        .as_str()
        .ok_or_else(|| bad(SENDER, "no `docker_url`: not a repo_push notification"))?;
    let tags = v["updated_tags"]
        .as_array()
        .ok_or_else(|| bad(SENDER, "no `updated_tags`"))?;
    tags.iter()
        .map(|t| {
            let t = t
                .as_str()
                .ok_or_else(|| bad(SENDER, "`updated_tags` holds a non-string"))?;
            let image = reference_image(SENDER, &format!("{url}:{t}"))?;
            Ok(Hooked::Image(image_of(SENDER, &image, None, None)?))
        })
        .collect()
}

/// Checks GitHub's `X-Hub-Signature-256` header (`sha256=HEX`, the HMAC-SHA256 of the
/// body under the webhook's secret), in constant time.
pub fn github_signature_ok(secret: &[u8], body: &[u8], header: &str) -> bool {
    use hmac::Mac;
    let Some(hex_sig) = header.trim().strip_prefix("sha256=") else {
        return false;
    };
    let Ok(sig) = hex::decode(hex_sig) else {
        return false;
    };
    let Ok(mut mac) = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
}

#[cfg(test)]
mod tests {
    use super::super::ImageEvent;
    use super::*;
    use crate::model::Digest;

    const D1: &str = "sha256:fc6a51919cfeb2e6763f62b6d9e8815acbf7cd2e476ea353743570610737b752";

    fn image(registry: &str, repository: &str, tag: &str, digest: Option<&str>) -> Hooked {
        Hooked::Image(
            ImageEvent::new(
                registry,
                repository,
                Some(tag),
                digest.map(|d| Digest::parse(d).unwrap()),
                None,
            )
            .unwrap(),
        )
    }

    #[test]
    fn github_signatures_are_checked() {
        // GitHub's documented example: secret "It's a Secret to Everybody", body "Hello, World!".
        let header = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert!(github_signature_ok(
            b"It's a Secret to Everybody",
            b"Hello, World!",
            header
        ));
        assert!(!github_signature_ok(
            b"It's a Secret to Everybody",
            b"Hello, World?",
            header
        ));
        assert!(!github_signature_ok(
            b"another secret",
            b"Hello, World!",
            header
        ));
        assert!(!github_signature_ok(
            b"It's a Secret to Everybody",
            b"Hello, World!",
            &header[7..]
        ));
        assert!(!github_signature_ok(b"s", b"b", "sha256=zz"));
    }

    #[test]
    fn harbor_pushes_in_both_formats() {
        let data = serde_json::json!({
            "resources": [{"digest": D1, "tag": "1.4", "resource_url": "harbor.example/library/app:1.4"}],
            "repository": {"name": "app", "namespace": "library", "repo_full_name": "library/app", "repo_type": "private"}
        });
        let plain = serde_json::json!({"type": "PUSH_ARTIFACT", "occur_at": 1, "operator": "admin", "event_data": data});
        let cloud = serde_json::json!({"specversion": "1.0", "id": "x", "source": "/projects/1/webhook/policies/1",
            "type": "harbor.artifact.pushed", "datacontenttype": "application/json", "data": data});
        let want = vec![image("harbor.example", "library/app", "1.4", Some(D1))];
        for body in [plain, cloud] {
            assert_eq!(harbor(&serde_json::to_vec(&body).unwrap()).unwrap(), want);
        }
        let pulled = br#"{"type": "PULL_ARTIFACT", "event_data": {}}"#;
        assert_eq!(
            harbor(pulled).unwrap(),
            [Hooked::Ignored("harbor event `PULL_ARTIFACT`".into())]
        );
        assert!(harbor(br#"{"event_data": {}}"#)
            .unwrap_err()
            .to_string()
            .contains("no `type`"));
    }

    #[test]
    fn github_container_packages_published() {
        let body = serde_json::json!({
            "action": "published",
            "registry_package": {
                "name": "app", "namespace": "owner", "ecosystem": "CONTAINER", "package_type": "CONTAINER",
                "package_version": {
                    "version": D1,
                    "package_url": "ghcr.io/owner/app:2.0",
                    "container_metadata": {"tag": {"name": "2.0", "digest": D1}}
                }
            }
        });
        let body = serde_json::to_vec(&body).unwrap();
        assert_eq!(
            github("registry_package", &body).unwrap(),
            [image("ghcr.io", "owner/app", "2.0", Some(D1))]
        );
        assert_eq!(
            github("ping", b"{}").unwrap(),
            [Hooked::Ignored("github ping".into())]
        );
        let npm = String::from_utf8(body).unwrap().replace("CONTAINER", "npm");
        assert_eq!(
            github("registry_package", npm.as_bytes()).unwrap(),
            [Hooked::Ignored("github package of type `npm`".into())]
        );
    }

    #[test]
    fn dockerhub_and_quay_name_tags_without_digests() {
        let hub = br#"{"callback_url": "https://registry.hub.docker.com/u/owner/app/hook/x/",
            "push_data": {"pushed_at": 1, "pusher": "owner", "tag": "latest"},
            "repository": {"repo_name": "owner/app", "namespace": "owner", "name": "app"}}"#;
        assert_eq!(
            dockerhub(hub).unwrap(),
            [image("docker.io", "owner/app", "latest", None)]
        );
        let q = br#"{"repository": "org/app", "namespace": "org", "name": "app",
            "docker_url": "quay.io/org/app", "homepage": "https://quay.io/repository/org/app",
            "updated_tags": ["1.0", "latest"]}"#;
        assert_eq!(
            quay(q).unwrap(),
            [
                image("quay.io", "org/app", "1.0", None),
                image("quay.io", "org/app", "latest", None)
            ]
        );
        assert!(quay(b"{}")
            .unwrap_err()
            .to_string()
            .contains("no `docker_url`"));
        assert!(dockerhub(br#"{"repository": {"repo_name": "a/b"}}"#)
            .unwrap_err()
            .to_string()
            .contains("no `push_data.tag`"));
    }
}
