//! The image config, edited as JSON so that unknown fields and key order survive.
//!
//! Invariant: [`ImageConfig::to_bytes`] of an unedited config keeps every field of the
//! source; edits touch only the keys they name.

use serde_json::{Map, Value};

use super::digest::Digest;

/// An image config (`application/vnd.oci.image.config.v1+json` or Docker's).
#[derive(Clone, Debug, PartialEq)]
pub struct ImageConfig {
    root: Map<String, Value>,
}

/// Why config bytes cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the image config is not valid: {0}")]
pub struct ConfigError(pub String);

impl ImageConfig {
    /// Parses config bytes.
    pub fn parse(bytes: &[u8]) -> Result<ImageConfig, ConfigError> {
        let value: Value = serde_json::from_slice(bytes).map_err(|e| ConfigError(e.to_string()))?;
        match value {
            Value::Object(root) => {
                let config = ImageConfig { root };
                config.diff_ids()?;
                Ok(config)
            }
            _ => Err(ConfigError("expected a JSON object".into())),
        }
    }

    /// Compact JSON bytes, keys in their original order.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(&self.root).expect("a JSON map always serializes")
    }

    fn str_field(&self, key: &str) -> Option<&str> {
        self.root.get(key).and_then(Value::as_str)
    }

    /// `os`, e.g. `linux`.
    pub fn os(&self) -> Option<&str> {
        self.str_field("os")
    }

    /// `architecture`, e.g. `amd64`.
    pub fn architecture(&self) -> Option<&str> {
        self.str_field("architecture")
    }

    /// `variant`, e.g. `v8` (ARM).
    pub fn variant(&self) -> Option<&str> {
        self.str_field("variant")
    }

    /// `created`, an RFC 3339 time.
    pub fn created(&self) -> Option<&str> {
        self.str_field("created")
    }

    fn exec_config(&self) -> Option<&Map<String, Value>> {
        self.root.get("config").and_then(Value::as_object)
    }

    fn exec_config_mut(&mut self) -> &mut Map<String, Value> {
        let entry = self
            .root
            .entry("config")
            .or_insert_with(|| Value::Object(Map::new()));
        if !entry.is_object() {
            *entry = Value::Object(Map::new());
        }
        entry.as_object_mut().expect("just made an object")
    }

    /// `config.User`; `None` when absent or empty.
    pub fn user(&self) -> Option<&str> {
        self.exec_config()
            .and_then(|c| c.get("User"))
            .and_then(Value::as_str)
            .filter(|u| !u.is_empty())
    }

    /// Sets `config.User`.
    pub fn set_user(&mut self, user: &str) {
        self.exec_config_mut()
            .insert("User".into(), Value::String(user.to_string()));
    }

    /// `config.Env`, `KEY=value` strings.
    pub fn env(&self) -> Vec<String> {
        self.string_list("Env")
    }

    /// Replaces `config.Env`.
    pub fn set_env(&mut self, env: Vec<String>) {
        self.exec_config_mut().insert(
            "Env".into(),
            Value::Array(env.into_iter().map(Value::String).collect()),
        );
    }

    /// `config.Entrypoint`.
    pub fn entrypoint(&self) -> Vec<String> {
        self.string_list("Entrypoint")
    }

    /// `config.Cmd`.
    pub fn cmd(&self) -> Vec<String> {
        self.string_list("Cmd")
    }

    /// Replaces `config.Entrypoint` or `config.Cmd` (`field`).
    pub fn set_command(&mut self, field: &str, args: Vec<String>) {
        self.exec_config_mut().insert(
            field.into(),
            Value::Array(args.into_iter().map(Value::String).collect()),
        );
    }

    /// `config.WorkingDir`.
    pub fn working_dir(&self) -> Option<&str> {
        self.exec_config()
            .and_then(|c| c.get("WorkingDir"))
            .and_then(Value::as_str)
            .filter(|w| !w.is_empty())
    }

    fn string_list(&self, key: &str) -> Vec<String> {
        self.exec_config()
            .and_then(|c| c.get(key))
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn key_set(&self, key: &str) -> Vec<String> {
        self.exec_config()
            .and_then(|c| c.get(key))
            .and_then(Value::as_object)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// `config.ExposedPorts` keys, e.g. `80/tcp`, in their order.
    pub fn exposed_ports(&self) -> Vec<String> {
        self.key_set("ExposedPorts")
    }

    /// Replaces `config.ExposedPorts` with these keys, in this order.
    pub fn set_exposed_ports(&mut self, ports: Vec<String>) {
        self.set_key_set("ExposedPorts", ports);
    }

    /// Replaces `config.Volumes` with these paths, in this order.
    pub fn set_volumes(&mut self, volumes: Vec<String>) {
        self.set_key_set("Volumes", volumes);
    }

    fn set_key_set(&mut self, key: &str, keys: Vec<String>) {
        let map: Map<String, Value> = keys
            .into_iter()
            .map(|p| (p, Value::Object(Map::new())))
            .collect();
        self.exec_config_mut()
            .insert(key.into(), Value::Object(map));
    }

    /// `config.Volumes` keys, absolute paths.
    pub fn volumes(&self) -> Vec<String> {
        self.key_set("Volumes")
    }

    /// `config.Labels`.
    pub fn labels(&self) -> Vec<(String, String)> {
        self.exec_config()
            .and_then(|c| c.get("Labels"))
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The `comment` of each history entry that has one, oldest first.
    pub fn history_comments(&self) -> Vec<String> {
        self.root
            .get("history")
            .and_then(Value::as_array)
            .map(|h| {
                h.iter()
                    .filter_map(|e| e.get("comment").and_then(Value::as_str).map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The `created_by` of each history entry, oldest first.
    pub fn history_created_by(&self) -> Vec<String> {
        self.root
            .get("history")
            .and_then(Value::as_array)
            .map(|h| {
                h.iter()
                    .filter_map(|e| {
                        e.get("created_by")
                            .and_then(Value::as_str)
                            .map(String::from)
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// `rootfs.diff_ids`, one per layer, base first.
    pub fn diff_ids(&self) -> Result<Vec<Digest>, ConfigError> {
        let Some(rootfs) = self.root.get("rootfs") else {
            return Ok(Vec::new());
        };
        let ids = rootfs
            .get("diff_ids")
            .and_then(Value::as_array)
            .ok_or_else(|| ConfigError("`rootfs.diff_ids` is missing or not a list".into()))?;
        ids.iter()
            .map(|v| {
                let s = v
                    .as_str()
                    .ok_or_else(|| ConfigError("a diff_id is not a string".into()))?;
                Digest::parse(s).map_err(|e| ConfigError(e.to_string()))
            })
            .collect()
    }

    /// Replaces the diff_id of layer `index` (a rewritten layer).
    pub fn set_diff_id(&mut self, index: usize, diff_id: &Digest) {
        if let Some(slot) = self
            .root
            .get_mut("rootfs")
            .and_then(|r| r.get_mut("diff_ids"))
            .and_then(Value::as_array_mut)
            .and_then(|ids| ids.get_mut(index))
        {
            *slot = Value::String(diff_id.to_string());
        }
    }

    /// Appends a history entry for a change without a layer (`empty_layer`), and sets
    /// `created`.
    pub fn push_history_only(&mut self, created: &str, created_by: &str, comment: &str) {
        let mut entry = Map::new();
        entry.insert("created".into(), Value::String(created.into()));
        entry.insert("created_by".into(), Value::String(created_by.into()));
        entry.insert("comment".into(), Value::String(comment.into()));
        entry.insert("empty_layer".into(), Value::Bool(true));
        self.push_history(entry, created);
    }

    fn push_history(&mut self, entry: Map<String, Value>, created: &str) {
        let history = self
            .root
            .entry("history")
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Some(h) = history.as_array_mut() {
            h.push(Value::Object(entry));
        }
        self.root
            .insert("created".into(), Value::String(created.into()));
    }

    /// Appends a layer: its diff_id and a history entry, and sets `created`.
    pub fn push_layer(&mut self, diff_id: &Digest, created: &str, created_by: &str, comment: &str) {
        let rootfs = self.root.entry("rootfs").or_insert_with(|| {
            let mut m = Map::new();
            m.insert("type".into(), Value::String("layers".into()));
            m.insert("diff_ids".into(), Value::Array(Vec::new()));
            Value::Object(m)
        });
        if let Some(ids) = rootfs
            .as_object_mut()
            .and_then(|r| r.get_mut("diff_ids"))
            .and_then(Value::as_array_mut)
        {
            ids.push(Value::String(diff_id.to_string()));
        }
        let mut entry = Map::new();
        entry.insert("created".into(), Value::String(created.into()));
        entry.insert("created_by".into(), Value::String(created_by.into()));
        entry.insert("comment".into(), Value::String(comment.into()));
        self.push_history(entry, created);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_unknown_fields_and_order() {
        let raw = br#"{"zzz":1,"architecture":"amd64","config":{"Healthcheck":{"Test":["CMD","true"]},"User":"nginx","Env":["A=1"]},"rootfs":{"type":"layers","diff_ids":[]},"os":"linux"}"#;
        let mut c = ImageConfig::parse(raw).unwrap();
        assert_eq!(c.user(), Some("nginx"));
        c.set_user("101:101");
        let out = String::from_utf8(c.to_bytes()).unwrap();
        assert_eq!(
            out,
            r#"{"zzz":1,"architecture":"amd64","config":{"Healthcheck":{"Test":["CMD","true"]},"User":"101:101","Env":["A=1"]},"rootfs":{"type":"layers","diff_ids":[]},"os":"linux"}"#
        );
    }

    #[test]
    fn pushes_layers_and_history() {
        let mut c = ImageConfig::parse(br#"{"os":"linux"}"#).unwrap();
        let d = Digest::sha256_of(b"x");
        c.push_layer(&d, "1970-01-01T00:00:00Z", "unroot", "note");
        assert_eq!(c.diff_ids().unwrap(), vec![d]);
        assert_eq!(c.created(), Some("1970-01-01T00:00:00Z"));
    }

    #[test]
    fn rejects_bad_diff_ids() {
        let e = ImageConfig::parse(br#"{"rootfs":{"diff_ids":["nope"]}}"#).unwrap_err();
        assert!(
            e.0.contains("`nope`") && e.0.contains("expected `algorithm:hex`"),
            "{e:?}"
        );
        let e = ImageConfig::parse(br#"{"rootfs":{"diff_ids":[7]}}"#).unwrap_err();
        assert_eq!(e.0, "a diff_id is not a string");
        let e = ImageConfig::parse(b"[]").unwrap_err();
        assert_eq!(e.0, "expected a JSON object");
    }
}
