//! Where the bot keeps its state, as the rules file names it: an SQLite file or a
//! PostgreSQL URL. A URL's passwords (its user-info, a `password=` parameter) are never
//! shown: the store is displayed with them redacted, and they are registered as secrets so
//! that a driver's error that echoes one is redacted too.

use std::path::PathBuf;

/// Where the bot keeps its queue and what it has done.
#[derive(Clone, PartialEq, Eq)]
pub enum StateStore {
    /// An embedded SQLite file (one machine).
    Sqlite(PathBuf),
    /// A PostgreSQL database shared by several replicas; the URL as given.
    Postgres(String),
}

impl StateStore {
    pub(super) fn parse(s: &str) -> Result<StateStore, String> {
        if let Some(path) = s.strip_prefix("sqlite:") {
            let path = path.strip_prefix("//").unwrap_or(path);
            if path.is_empty() {
                return Err(
                    "`state = \"sqlite:\"` needs a file: `sqlite:/var/lib/unroot/state.db`".into(),
                );
            }
            return Ok(StateStore::Sqlite(PathBuf::from(path)));
        }
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            // Whatever text may carry it later (a driver's error) has it redacted.
            for password in postgres_passwords(s) {
                crate::control::secrets::register(&password);
                crate::control::secrets::register(&percent_decoded(&password));
            }
            return Ok(StateStore::Postgres(s.to_string()));
        }
        Err(format!(
            "`state = \"{s}\"`: write `sqlite:/PATH/state.db` or `postgres://USER:PASSWORD@HOST/DB`"
        ))
    }
}

impl std::fmt::Display for StateStore {
    /// The store as it may be logged: a PostgreSQL URL with its password (in the user-info
    /// or a `password=` parameter) replaced by `<redacted>`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StateStore::Sqlite(p) => write!(f, "sqlite:{}", p.display()),
            StateStore::Postgres(url) => {
                let mut shown = url.clone();
                for password in postgres_passwords(url) {
                    shown = shown.replace(&password, crate::control::secrets::REDACTED);
                }
                f.write_str(&shown)
            }
        }
    }
}

impl std::fmt::Debug for StateStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StateStore({self})")
    }
}

/// The passwords a PostgreSQL URL holds, as written: the user-info's after its `:`
/// (`postgres://USER:PASSWORD@HOST/DB`) and any `password=` parameter's value.
fn postgres_passwords(url: &str) -> Vec<String> {
    let mut out = Vec::new();
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let (authority, query) = match rest.split_once('?') {
        Some((a, q)) => (a, Some(q)),
        None => (rest, None),
    };
    let authority = authority.split('/').next().unwrap_or_default();
    if let Some((userinfo, _host)) = authority.rsplit_once('@') {
        if let Some((_user, password)) = userinfo.split_once(':') {
            if !password.is_empty() {
                out.push(password.to_string());
            }
        }
    }
    for pair in query.unwrap_or_default().split('&') {
        if let Some(("password", value)) = pair.split_once('=') {
            if !value.is_empty() {
                out.push(value.to_string());
            }
        }
    }
    out
}

/// `%XX` escapes decoded (a URL's user-info spells `@` and `:` so).
fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_url_is_shown_without_its_passwords() {
        for (url, shown) in [
            (
                "postgres://bot:pa%40ss-w0rd@127.0.0.1:5059/unroot",
                "postgres://bot:<redacted>@127.0.0.1:5059/unroot",
            ),
            (
                "postgresql://127.0.0.1/unroot?user=bot&password=hunter22",
                "postgresql://127.0.0.1/unroot?user=bot&password=<redacted>",
            ),
            ("postgres://bot@db/unroot", "postgres://bot@db/unroot"),
        ] {
            let store = StateStore::parse(url).unwrap();
            assert_eq!(store.to_string(), shown);
            assert_eq!(format!("{store:?}"), format!("StateStore({shown})"));
        }
        // Registered, decoded too: a driver's error that echoes it is redacted.
        assert_eq!(
            crate::control::secrets::redact("password pa@ss-w0rd refused"),
            "password <redacted> refused"
        );
    }
}
