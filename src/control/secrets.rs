//! Secrets this process holds (passwords, tokens, and the forms they are sent in), so that
//! no text it prints or logs carries one, wherever the text came from: a registry that
//! echoes the `Authorization` header in its error still gets `<redacted>` printed.
//!
//! Invariant: once registered, a secret is redacted from every text passed to [`redact`]
//! for the rest of the process.

use crate::control::Locked;
use std::sync::Mutex;

/// What stands where a secret was.
pub const REDACTED: &str = "<redacted>";

/// Secrets shorter than this are not registered: replacing every occurrence of two letters
/// would garble messages more than it protects.
const SHORTEST: usize = 4;

static SECRETS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Registers a secret (and, by the caller, each form it is sent in).
pub fn register(secret: &str) {
    if secret.len() < SHORTEST {
        return;
    }
    let mut secrets = SECRETS.locked();
    if !secrets.iter().any(|s| s == secret) {
        secrets.push(secret.to_string());
        // Longest first, so a secret that contains another is replaced whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }
}

/// `text` with every registered secret replaced by [`REDACTED`].
pub fn redact(text: &str) -> String {
    let secrets = SECRETS.locked();
    let mut out = text.to_string();
    for s in secrets.iter() {
        if out.contains(s.as_str()) {
            out = out.replace(s.as_str(), REDACTED);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_secrets_never_come_out() {
        register("s3cr3t-password");
        register("s3cr3t");
        register("ab");
        assert_eq!(
            redact("denied: Basic s3cr3t-password and s3cr3t, ab"),
            "denied: Basic <redacted> and <redacted>, ab"
        );
    }
}
