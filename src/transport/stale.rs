//! Temporary files and directories unroot makes next to what it writes carry the id of
//! the process that made them (`.unroot-staging-<pid>-...`), so that what a killed run left
//! behind is recognisable as stale, and removed by the next run that writes there.
//!
//! Invariant: only names of this form whose process is gone are ever removed.

use std::path::Path;

/// The prefix of this process's temporary names of `kind`: `.unroot-<kind>-<pid>-`.
pub fn prefix(kind: &str) -> String {
    format!(".unroot-{kind}-{}-", std::process::id())
}

/// The pid in a temporary name of unroot's (`.unroot-<kind>-<pid>-...`).
fn owner(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(".unroot-")?;
    let (kind, rest) = rest.split_once('-')?;
    if kind.is_empty() || !kind.bytes().all(|b| b.is_ascii_lowercase()) {
        return None;
    }
    let (pid, _) = rest.split_once('-')?;
    pid.parse().ok()
}

/// Whether a process with this id exists (a pid reused by another process counts as
/// alive: nothing of a live process is ever removed).
fn alive(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 only asks whether the process exists; nothing is sent.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

/// Removes what killed runs left in `dir`: temporary names of unroot's whose process is
/// gone. Failures are ignored (another run may be removing the same thing).
pub fn sweep(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(owner) else {
            continue;
        };
        if pid == std::process::id() || alive(pid) {
            continue;
        }
        let path = entry.path();
        let _ = match entry.file_type() {
            Ok(t) if t.is_dir() => std::fs::remove_dir_all(&path),
            _ => std::fs::remove_file(&path),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_leftovers_of_dead_processes_go() {
        let dir = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let me = std::process::id();
        let names = [
            format!(".unroot-staging-{dead}-abc"),
            format!(".unroot-tmp-{dead}-x.tar.tmp"),
            format!(".unroot-staging-{me}-abc"),
            ".unroot-staging-1-abc".to_string(),
            ".unroot-staging-abc".to_string(),
            "keep-me".to_string(),
        ];
        for n in &names {
            std::fs::create_dir(dir.path().join(n)).unwrap();
        }
        std::fs::write(dir.path().join(format!(".unroot-layer-{dead}-f")), b"x").unwrap();
        sweep(dir.path());
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        // Ours, pid 1's (alive), and names that are not unroot's stay.
        assert_eq!(
            left,
            [
                ".unroot-staging-1-abc".to_string(),
                format!(".unroot-staging-{me}-abc"),
                ".unroot-staging-abc".to_string(),
                "keep-me".to_string(),
            ]
        );
        assert!(prefix("tmp").starts_with(&format!(".unroot-tmp-{me}-")));
    }
}
