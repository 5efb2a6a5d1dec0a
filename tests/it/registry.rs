//! Registries as sources and destinations: base layers reused, authentication (htpasswd,
//! bearer tokens, credential helpers, identity tokens, broken auth files), Docker media
//! types, and multi-platform images written index last.

use crate::support::{sample_spec, Registry, Scratch, TINY};
use crate::transports::{check_converted_sample, inspect, raw_manifest};

#[test]
fn registry_to_new_repository_reuses_base_layers() {
    let s = Scratch::new();
    let registry = Registry::start();
    let src = s.build("img", "v1", &sample_spec());
    registry.push(&src, "team/sample:v1", None);
    let out = s
        .unroot(&[
            "convert",
            &registry.image("team/sample:v1"),
            "--to",
            &registry.image("other/sample:v1"),
        ])
        .success();
    assert!(
        out.stderr.contains("reading layer 1/2"),
        "progress on stderr: {}",
        out.stderr
    );
    check_converted_sample(
        &registry.image("team/sample:v1"),
        &registry.image("other/sample:v1"),
    );
    let manifest = raw_manifest(&registry.image("other/sample:v1"));
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    let source_digest = inspect(&registry.image("team/sample:v1"))["Digest"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        manifest["annotations"]["org.opencontainers.image.base.digest"],
        source_digest.as_str()
    );
    assert_eq!(
        manifest["annotations"]["org.opencontainers.image.base.name"],
        format!("{}/team/sample:v1", registry.addr).as_str()
    );
    // The recipe set is named too: another set, another value.
    let recipes = manifest["annotations"]["dev.unroot.recipes.digest"]
        .as_str()
        .unwrap_or_else(|| panic!("{manifest:#}"))
        .to_string();
    assert!(recipes.starts_with("sha256:"), "{recipes}");
    s.unroot(&[
        "convert",
        "-q",
        "--no-recipes",
        &registry.image("team/sample:v1"),
        "--to",
        &registry.image("other/sample:v1-generic"),
    ])
    .success();
    let generic = raw_manifest(&registry.image("other/sample:v1-generic"));
    assert_ne!(
        generic["annotations"]["dev.unroot.recipes.digest"],
        recipes.as_str()
    );
    // skopeo copies it out again (every blob is there).
    registry.copy_out("other/sample:v1", &s.path("copy"));
    // The default destination is the same repository with `-unprivileged`.
    s.unroot(&["convert", "-q", &registry.image("team/sample:v1")])
        .success();
    assert!(registry.has_tag("team/sample:v1-unprivileged", None));
}

#[test]
fn registry_to_layout_and_layout_to_registry() {
    let s = Scratch::new();
    let registry = Registry::start();
    let src = s.build("img", "v1", &sample_spec());
    registry.push(&src, "sample:v1", None);
    let dest = format!("oci:{}:x", s.path("out").display());
    s.unroot(&["convert", "-q", &registry.image("sample:v1"), "--to", &dest])
        .success();
    check_converted_sample(&src, &dest);
    s.unroot(&["convert", "-q", &src, "--to", &registry.image("pushed:v1")])
        .success();
    check_converted_sample(&src, &registry.image("pushed:v1"));
}

#[test]
fn registry_with_authentication() {
    let s = Scratch::new();
    let registry = Registry::start_with_auth("bob", "pw-for-bob");
    let src = s.build("img", "v1", &sample_spec());
    registry.push(&src, "sample:v1", Some("bob:pw-for-bob"));

    // --creds
    s.unroot(&[
        "convert",
        "-q",
        &registry.image("sample:v1"),
        "--creds",
        "bob:pw-for-bob",
    ])
    .success();
    assert!(registry.has_tag("sample:v1-unprivileged", Some("bob:pw-for-bob")));

    // $REGISTRY_AUTH_FILE (podman's format)
    use base64::Engine;
    let auth = base64::engine::general_purpose::STANDARD.encode("bob:pw-for-bob");
    let file = s.path("auth.json");
    std::fs::write(
        &file,
        format!(r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}}}}"#, registry.addr),
    )
    .unwrap();
    s.unroot_env(
        &[
            "convert",
            "-q",
            &registry.image("sample:v1"),
            "--to",
            &registry.image("sample:from-auth-file"),
        ],
        &[("REGISTRY_AUTH_FILE", file.to_str().unwrap())],
    )
    .success();
    assert!(registry.has_tag("sample:from-auth-file", Some("bob:pw-for-bob")));

    // ~/.docker/config.json (HOME is the scratch directory)
    std::fs::create_dir_all(s.path(".docker")).unwrap();
    std::fs::write(
        s.path(".docker/config.json"),
        format!(
            r#"{{"auths":{{"http://{}":{{"auth":"{auth}"}}}}}}"#,
            registry.addr
        ),
    )
    .unwrap();
    let out = s
        .unroot(&[
            "convert",
            &registry.image("sample:v1"),
            "--to",
            &registry.image("sample:from-docker"),
        ])
        .success();
    assert!(!out.stdout.contains("pw-for-bob") && !out.stderr.contains("pw-for-bob"));
    assert!(registry.has_tag("sample:from-docker", Some("bob:pw-for-bob")));
}

#[test]
fn docker_format_images_from_a_registry() {
    // Docker schema 2 manifest and media types, pushed straight to the registry.
    let s = Scratch::new();
    let registry = Registry::start();
    let spec = sample_spec().replace("format = \"oci\"", "format = \"docker\"");
    crate::support::build(&spec, &registry.image("docker-format:v1"));
    let manifest = raw_manifest(&registry.image("docker-format:v1"));
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    s.unroot(&["convert", "-q", &registry.image("docker-format:v1")])
        .success();
    check_converted_sample(
        &registry.image("docker-format:v1"),
        &registry.image("docker-format:v1-unprivileged"),
    );
    let converted = raw_manifest(&registry.image("docker-format:v1-unprivileged"));
    for layer in converted["layers"].as_array().unwrap() {
        assert_eq!(
            layer["mediaType"],
            "application/vnd.oci.image.layer.v1.tar+gzip"
        );
    }
}

#[test]
fn credential_helper() {
    let s = Scratch::new();
    let registry = Registry::start_with_auth("carol", "helper-pw");
    let src = s.build("img", "v1", &sample_spec());
    registry.push(&src, "sample:v1", Some("carol:helper-pw"));
    let bin = s.path("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let helper = bin.join("docker-credential-fake");
    std::fs::write(
        &helper,
        "#!/bin/sh\nread server\necho \"{\\\"ServerURL\\\":\\\"$server\\\",\\\"Username\\\":\\\"carol\\\",\\\"Secret\\\":\\\"helper-pw\\\"}\"\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::create_dir_all(s.path(".docker")).unwrap();
    std::fs::write(
        s.path(".docker/config.json"),
        format!(r#"{{"credHelpers":{{"{}":"fake"}}}}"#, registry.addr),
    )
    .unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    s.unroot_env(
        &["convert", "-q", &registry.image("sample:v1")],
        &[("PATH", &path)],
    )
    .success();
    assert!(registry.has_tag("sample:v1-unprivileged", Some("carol:helper-pw")));
}

#[test]
fn registry_with_bearer_tokens() {
    let s = Scratch::new();
    let tokens = crate::support::TokenServer::start("dave", "token-pw");
    let registry = Registry::start_with_tokens(&tokens);
    let src = s.build("img", "v1", &sample_spec());
    registry.push(&src, "team/sample:v1", Some("dave:token-pw"));

    // Without credentials the token server refuses: a clear 401.
    let out = s
        .unroot(&["convert", &registry.image("team/sample:v1")])
        .failure(1);
    assert!(
        out.error_line().contains("(HTTP 401 unauthorized)"),
        "{}",
        out.stderr
    );

    // With them: the token dance, to the same repository and to another one.
    s.unroot(&[
        "convert",
        "-q",
        &registry.image("team/sample:v1"),
        "--creds",
        "dave:token-pw",
    ])
    .success();
    s.unroot(&[
        "convert",
        "-q",
        &registry.image("team/sample:v1"),
        "--creds",
        "dave:token-pw",
        "--to",
        &registry.image("other/sample:v1"),
    ])
    .success();
    for tag in ["team/sample:v1-unprivileged", "other/sample:v1"] {
        assert!(registry.has_tag(tag, Some("dave:token-pw")), "{tag}");
    }
}

#[test]
fn a_broken_auth_file_is_a_local_error_that_names_it() {
    let s = Scratch::new();
    let registry = Registry::start();
    let src = s.build("img", "v1", TINY);
    registry.push(&src, "app:v1", None);
    let auth = s.path("auth.json");
    std::fs::write(&auth, "{not json").unwrap();
    let out = s
        .unroot_env(
            &["analyze", &registry.image("app:v1")],
            &[("REGISTRY_AUTH_FILE", auth.to_str().unwrap())],
        )
        .failure(3);
    let line = out.error_line();
    assert!(
        line.contains(&format!("no credentials for {}", registry.addr))
            && line.contains(&format!("auth file `{}` is not valid", auth.display())),
        "{line}"
    );
    assert!(
        out.stderr
            .contains("point `REGISTRY_AUTH_FILE` at another file"),
        "{}",
        out.stderr
    );
}

/// An identity token in an auth file (what `docker login` stores for registries that use
/// OAuth2 refresh tokens) is exchanged at the token service with the OAuth2 form.
#[test]
fn identity_tokens_from_auth_files() {
    let s = Scratch::new();
    let tokens = crate::support::TokenServer::start("frank", "refresh-me");
    let registry = Registry::start_with_tokens(&tokens);
    let src = s.build("img", "v1", &sample_spec());
    registry.push(&src, "team/sample:v1", Some("frank:refresh-me"));
    let auth_file = |token: &str| {
        let path = s.path(&format!("auth-{token}.json"));
        std::fs::write(
            &path,
            serde_json::json!({"auths": {registry.addr.as_str(): {
                "auth": "MDAwMDAwMDAtMDAwMC0wMDAwLTAwMDAtMDAwMDAwMDAwMDAwOg==",
                "identitytoken": token,
            }}})
            .to_string(),
        )
        .unwrap();
        path.display().to_string()
    };
    let good = auth_file("refresh-me");
    s.unroot_env(
        &["convert", "-q", &registry.image("team/sample:v1")],
        &[("REGISTRY_AUTH_FILE", &good)],
    )
    .success();
    assert!(registry.has_tag("team/sample:v1-unprivileged", Some("frank:refresh-me")));
    let bad = auth_file("expired");
    let out = s
        .unroot_env(
            &["analyze", &registry.image("team/sample:v1")],
            &[("REGISTRY_AUTH_FILE", &bad)],
        )
        .failure(1);
    assert!(
        out.error_line()
            .contains("the credentials were not accepted"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("expired"), "{}", out.stderr);
}

#[test]
fn credentials_never_go_to_a_plain_http_token_service() {
    let s = Scratch::new();
    let tokens = crate::support::TokenServer::start("gina", "secret-pw");
    // The registry speaks HTTPS with a certificate this run trusts; its token service is
    // plain HTTP (the test token server's realm is `http://`).
    let (registry, ca) = Registry::start_trusted_tls_with_tokens("127.0.0.4", &tokens);
    let src = s.build("img", "v1", TINY);
    crate::support::skopeo(&[
        "copy",
        "--quiet",
        "--dest-tls-verify=false",
        "--dest-creds",
        "gina:secret-pw",
        &src,
        &registry.image("app:v1"),
    ])
    .success();
    let trust = [("SSL_CERT_FILE", ca.to_str().unwrap())];
    let out = s
        .unroot_env(
            &[
                "analyze",
                "--creds",
                "gina:secret-pw",
                &registry.image("app:v1"),
            ],
            &trust,
        )
        .failure(1);
    assert_eq!(
        out.error_line(),
        format!(
            "error: {} sends logins to the token service `{}`, which is not HTTPS: the credentials were not sent",
            registry.addr, tokens.realm
        )
    );
    assert!(
        out.stderr.contains("`--tls-verify=false`"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("secret-pw"));
    // Opting out of TLS for the host allows it.
    s.unroot_env(
        &[
            "analyze",
            "-q",
            "--creds",
            "gina:secret-pw",
            "--tls-verify=false",
            &registry.image("app:v1"),
        ],
        &trust,
    )
    .success();
}
