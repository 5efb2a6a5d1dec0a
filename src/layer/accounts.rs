//! The account files of an image (`/etc/passwd`, `/etc/group`), read from the merged view
//! through symlinks, and the image's `User` looked up in them.

use super::merged::ResolveError;
use super::{Content, ImagePath, Kind, MergedView};

/// Why the account files cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccountsError {
    /// The path sits behind a symlink loop.
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    /// The file is larger than unroot reads.
    #[error("`{0}` is larger than 1 MiB, too large to edit")]
    TooLarge(String),
    /// The file is not a regular file.
    #[error("`{path}` is a {kind}, not a regular file, so it cannot be edited")]
    NotAFile {
        /// The path.
        path: String,
        /// What it is.
        kind: &'static str,
    },
}

/// The account files of an image, read through symlinks.
#[derive(Clone, Debug, Default)]
pub struct Accounts {
    /// Where `/etc/passwd` leads.
    pub passwd_path: ImagePath,
    /// Its bytes, when it exists.
    pub passwd_text: Option<Vec<u8>>,
    /// Its entries.
    pub passwd: Vec<PasswdEntry>,
    /// Where `/etc/group` leads.
    pub group_path: ImagePath,
    /// Its bytes, when it exists.
    pub group_text: Option<Vec<u8>>,
    /// Its entries.
    pub groups: Vec<GroupEntry>,
}

impl Accounts {
    /// Reads `/etc/passwd` and `/etc/group` from the merged view (their bodies must have
    /// been kept while scanning).
    pub fn read(view: &MergedView) -> Result<Accounts, AccountsError> {
        let (passwd_path, passwd_text) = read_text(view, "/etc/passwd")?;
        let (group_path, group_text) = read_text(view, "/etc/group")?;
        Ok(Accounts {
            passwd: passwd_text.as_deref().map(parse_passwd).unwrap_or_default(),
            groups: group_text.as_deref().map(parse_group).unwrap_or_default(),
            passwd_path,
            passwd_text,
            group_path,
            group_text,
        })
    }
}

fn read_text(view: &MergedView, path: &str) -> Result<(ImagePath, Option<Vec<u8>>), AccountsError> {
    let resolved = view.resolve(&ImagePath::new(path))?;
    let Some(node) = view.get(&resolved) else {
        return Ok((resolved, None));
    };
    if node.meta.kind != Kind::File {
        return Err(AccountsError::NotAFile {
            path: resolved.display(),
            kind: node.meta.kind.name(),
        });
    }
    match &node.content {
        Some(Content::Bytes(b)) => Ok((resolved, Some(b.as_ref().clone()))),
        Some(Content::TooLarge) => Err(AccountsError::TooLarge(resolved.display())),
        _ => Ok((resolved, None)),
    }
}

/// One line of `/etc/passwd`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PasswdEntry {
    /// Login name.
    pub name: String,
    /// Password field (`x` when shadowed).
    pub password: String,
    /// User id.
    pub uid: u64,
    /// Primary group id.
    pub gid: u64,
    /// Home directory.
    pub home: String,
    /// Login shell.
    pub shell: String,
}

/// One line of `/etc/group`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupEntry {
    /// Group name.
    pub name: String,
    /// Group id.
    pub gid: u64,
}

/// Parses `/etc/passwd`, skipping lines that are not `name:pw:uid:gid:gecos:home:shell`.
pub fn parse_passwd(text: &[u8]) -> Vec<PasswdEntry> {
    String::from_utf8_lossy(text)
        .lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() < 7 || f[0].is_empty() || f[0].starts_with('#') {
                return None;
            }
            Some(PasswdEntry {
                name: f[0].to_string(),
                password: f[1].to_string(),
                uid: f[2].parse().ok()?,
                gid: f[3].parse().ok()?,
                home: f[5].to_string(),
                shell: f[6].to_string(),
            })
        })
        .collect()
}

/// Parses `/etc/group`.
pub fn parse_group(text: &[u8]) -> Vec<GroupEntry> {
    String::from_utf8_lossy(text)
        .lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() < 3 || f[0].is_empty() || f[0].starts_with('#') {
                return None;
            }
            Some(GroupEntry {
                name: f[0].to_string(),
                gid: f[2].parse().ok()?,
            })
        })
        .collect()
}

/// What the image's `User` names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageUser {
    /// The user id, when it is numeric or found in `/etc/passwd`.
    pub uid: Option<u64>,
    /// The group id, when given or known from `/etc/passwd`.
    pub gid: Option<u64>,
    /// The name, when the user part was a name.
    pub name: Option<String>,
}

/// Interprets a config `User` (`name`, `uid`, `name:group`, `uid:gid`; empty = root).
pub fn resolve_user(
    user: Option<&str>,
    passwd: &[PasswdEntry],
    groups: &[GroupEntry],
) -> ImageUser {
    let Some(user) = user.filter(|u| !u.is_empty()) else {
        return ImageUser {
            uid: Some(0),
            gid: Some(0),
            name: None,
        };
    };
    let (u, g) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let (uid, name, primary) = match u.parse::<u64>() {
        Ok(uid) => (
            Some(uid),
            None,
            passwd.iter().find(|p| p.uid == uid).map(|p| p.gid),
        ),
        Err(_) => {
            let entry = passwd.iter().find(|p| p.name == u);
            (
                entry.map(|p| p.uid),
                Some(u.to_string()),
                entry.map(|p| p.gid),
            )
        }
    };
    let gid = match g {
        Some(g) => g
            .parse::<u64>()
            .ok()
            .or_else(|| groups.iter().find(|e| e.name == g).map(|e| e.gid)),
        None => primary,
    };
    ImageUser { uid, gid, name }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &[u8] = b"root:x:0:0:root:/root:/bin/bash\n# comment\nnginx:x:101:101:nginx user:/nonexistent:/bin/false\nbroken line\n";
    const GROUP: &[u8] = b"root:x:0:\nnginx:x:101:\nstaff:x:50:a,b\n";

    #[test]
    fn parses_and_resolves() {
        let p = parse_passwd(PASSWD);
        let g = parse_group(GROUP);
        assert_eq!(p.len(), 2);
        assert_eq!(g.len(), 3);
        let r = |u: &str| resolve_user(Some(u), &p, &g);
        assert_eq!(
            r("nginx"),
            ImageUser {
                uid: Some(101),
                gid: Some(101),
                name: Some("nginx".into())
            }
        );
        assert_eq!(r("nginx:staff").gid, Some(50));
        assert_eq!(r("1000").uid, Some(1000));
        assert_eq!(r("1000").gid, None);
        assert_eq!(r("101:0").gid, Some(0));
        assert_eq!(r("ghost").uid, None);
        assert_eq!(resolve_user(None, &p, &g).uid, Some(0));
        assert_eq!(resolve_user(Some(""), &p, &g).uid, Some(0));
    }
}
