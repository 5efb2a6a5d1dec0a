//! What makes two conversions the same: a job's key. A job whose key is done is a no-op;
//! a source digest that changes under a tag, another recipe set, other options or another
//! destination make another key.

use crate::model::Digest;

use super::rules::Rule;

/// The idempotency key of converting `source` (a manifest or index digest) with the
/// recipe set `recipes` ([`Selection::digest`](crate::recipe::Selection::digest)) by
/// `rule` to `destination`.
pub fn key(source: &Digest, recipes: &Digest, rule: &Rule, destination: &str) -> Digest {
    let mut platforms = rule.platforms.clone();
    platforms.sort();
    let mut options = serde_json::json!({
        "platforms": platforms,
        "uid": rule.uid,
        "gid": rule.gid,
        "ports": rule.ports,
        "verify": rule.verify,
    });
    // Only when asked, so the keys of rules that do not learn stay what they were.
    if rule.learn {
        options["learn"] = true.into();
    }
    let mut text = Vec::new();
    for part in [
        source.to_string(),
        recipes.to_string(),
        options.to_string(),
        destination.to_string(),
    ] {
        text.extend_from_slice(&(part.len() as u64).to_be_bytes());
        text.extend_from_slice(part.as_bytes());
    }
    Digest::sha256_of(&text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::rules::ServeConfig;

    fn rules(extra: &str) -> ServeConfig {
        ServeConfig::parse(
            &format!(
                "listen = \"127.0.0.1:8686\"\nstate = \"sqlite:/tmp/s.db\"\nwebhook_token_file = \"/t\"\n[[rule]]\nsource = \"r.example/*\"\ndestination = \"{{registry}}/{{repository}}:{{tag}}-unprivileged\"\n{extra}"
            ),
            "rules.toml",
        )
        .unwrap()
    }

    #[test]
    fn keys_change_with_each_part_and_only_then() {
        let a = Digest::sha256_of(b"a");
        let b = Digest::sha256_of(b"b");
        let plain = rules("");
        let rule = &plain.rules[0];
        let k = key(&a, &b, rule, "r.example/app:1-unprivileged");
        assert_eq!(k, key(&a, &b, rule, "r.example/app:1-unprivileged"));
        assert_ne!(
            k,
            key(&b, &b, rule, "r.example/app:1-unprivileged"),
            "source"
        );
        assert_ne!(
            k,
            key(&a, &a, rule, "r.example/app:1-unprivileged"),
            "recipes"
        );
        assert_ne!(
            k,
            key(&a, &b, rule, "r.example/app:2-unprivileged"),
            "destination"
        );
        for extra in [
            "uid = 1000",
            "ports = [\"80:8000\"]",
            "verify = true",
            "platforms = [\"linux/arm64\"]",
        ] {
            let other = rules(extra);
            assert_ne!(
                k,
                key(&a, &b, &other.rules[0], "r.example/app:1-unprivileged"),
                "{extra}"
            );
        }
        // The order platforms are listed in is not an option.
        let ab = rules("platforms = [\"linux/amd64\", \"linux/arm64\"]");
        let ba = rules("platforms = [\"linux/arm64\", \"linux/amd64\"]");
        assert_eq!(
            key(&a, &b, &ab.rules[0], "d"),
            key(&a, &b, &ba.rules[0], "d")
        );
    }
}
