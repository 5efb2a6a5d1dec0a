//! A registry's authentication as it says it: the challenge it answers with
//! (`WWW-Authenticate`), the scopes a request needs, and what a client keeps of it (the
//! challenge, the bearer tokens by scope). The requests that answer it are the client's
//! ([`super::auth`]).

use std::collections::HashMap;
use std::time::Instant;

use reqwest::header::HeaderMap;

/// What the client learned of the registry's authentication.
#[derive(Default)]
pub(super) struct AuthState {
    pub(super) challenge: Option<Challenge>,
    /// Bearer tokens by the scopes they were asked for, with the time to renew them.
    pub(super) tokens: HashMap<String, (String, Instant)>,
}

/// How a registry asks for credentials.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
    },
}

/// The access a request needs, as token scopes.
pub(super) fn pull(repo: &str) -> String {
    format!("repository:{repo}:pull")
}

/// Push access (with pull, which a push needs to check what is there).
pub(super) fn push(repo: &str) -> String {
    format!("repository:{repo}:pull,push")
}

/// The first challenge of `WWW-Authenticate` that unroot can answer.
pub(super) fn parse_challenge(headers: &HeaderMap) -> Option<Challenge> {
    for value in headers.get_all("www-authenticate") {
        let Ok(value) = value.to_str() else { continue };
        let (scheme, params) = value.trim().split_once(' ').unwrap_or((value.trim(), ""));
        if scheme.eq_ignore_ascii_case("basic") {
            return Some(Challenge::Basic);
        }
        if scheme.eq_ignore_ascii_case("bearer") {
            let params = auth_params(params);
            let realm = params.get("realm")?.clone();
            return Some(Challenge::Bearer {
                realm,
                service: params.get("service").cloned(),
            });
        }
    }
    None
}

/// `key="value", key=value` pairs of a challenge; values may hold commas inside quotes.
fn auth_params(s: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        let Some((key, after)) = rest.split_once('=') else {
            break;
        };
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let after = after.trim_start();
        let (value, remaining) = if let Some(quoted) = after.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = quoted.char_indices();
            let mut end = quoted.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, next)) = chars.next() {
                            value.push(next);
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => value.push(c),
                }
            }
            (value, &quoted[end..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_string(), &after[end..])
        };
        out.insert(key, value);
        rest = remaining.trim_start().trim_start_matches(',').trim_start();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_parse_with_commas_in_quotes() {
        let p = auth_params(
            r#"realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push""#,
        );
        assert_eq!(p["realm"], "https://auth.example/token");
        assert_eq!(p["service"], "registry.example");
        assert_eq!(p["scope"], "repository:a/b:pull,push");
        let p = auth_params(r#"realm=https://x/t, service="s\"q""#);
        assert_eq!(p["realm"], "https://x/t");
        assert_eq!(p["service"], "s\"q");
    }

    #[test]
    fn the_first_answerable_challenge_wins() {
        let mut h = HeaderMap::new();
        h.append("www-authenticate", "Negotiate".parse().unwrap());
        h.append(
            "www-authenticate",
            r#"Bearer realm="https://t/token",service="r""#.parse().unwrap(),
        );
        assert_eq!(
            parse_challenge(&h),
            Some(Challenge::Bearer {
                realm: "https://t/token".into(),
                service: Some("r".into())
            })
        );
        let mut h = HeaderMap::new();
        h.insert("www-authenticate", r#"basic realm="x""#.parse().unwrap());
        assert_eq!(parse_challenge(&h), Some(Challenge::Basic));
    }
}
