//! Unpacks an image's layers into a root filesystem for an OCI runtime, the way a runtime's
//! image store does: layers in order, whiteouts and opaque directories applied, owners
//! shifted into a user namespace's range (container id `n` is host id `base + n`).
//!
//! Invariant: nothing is created, changed or removed outside the root: every path's parent
//! is resolved inside the root (symlinks followed as the container would see them, `..`
//! stopping at the root), and the last component is never followed.

use std::ffi::{CString, OsStr};
use std::fs;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::layer::{Change, ImagePath, Kind, Meta};

/// The most symlinks followed resolving one path, as Linux does.
const MAX_HOPS: usize = 40;

/// The ids of the user namespace the root filesystem is for: container ids
/// `0..size` are host ids `base..base + size`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdMap {
    /// The host id of container id 0.
    pub base: u32,
    /// How many ids are mapped.
    pub size: u32,
}

/// What unpacking skipped, for the report.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// Device nodes (a user namespace cannot use them).
    pub devices: u64,
    /// Entries owned by ids the namespace does not map (unpacked as its root).
    pub unmapped: u64,
}

/// A root filesystem being unpacked.
pub struct Rootfs {
    root: PathBuf,
    ids: IdMap,
    /// What was skipped so far.
    pub skipped: Skipped,
}

impl Rootfs {
    /// Unpacks into `root` (an empty directory, made owned by the namespace's root).
    pub fn new(root: &Path, ids: IdMap) -> io::Result<Rootfs> {
        fs::create_dir_all(root)?;
        std::os::unix::fs::chown(root, Some(ids.base), Some(ids.base))?;
        fs::set_permissions(root, fs::Permissions::from_mode(0o755))?;
        Ok(Rootfs {
            root: root.to_path_buf(),
            ids,
            skipped: Skipped::default(),
        })
    }

    /// Applies one entry of a layer.
    pub fn apply(
        &mut self,
        path: &ImagePath,
        change: Change,
        body: &mut dyn Read,
    ) -> io::Result<()> {
        if path.is_root() {
            return Ok(());
        }
        let Some(parent) = path.parent() else {
            return Ok(());
        };
        let dir = self.dir(&parent)?;
        let name = OsStr::from_bytes(path.file_name());
        let target = dir.join(name);
        match change {
            Change::Whiteout => remove(&target),
            Change::Opaque => {
                if fs::symlink_metadata(&target).is_ok_and(|m| m.is_dir()) {
                    for child in fs::read_dir(&target)? {
                        remove(&child?.path())?;
                    }
                }
                Ok(())
            }
            Change::Put(meta) => self.put(&target, &meta, body),
        }
    }

    fn put(&mut self, target: &Path, meta: &Meta, body: &mut dyn Read) -> io::Result<()> {
        let existing = fs::symlink_metadata(target).ok();
        let keep_dir = meta.kind == Kind::Dir && existing.as_ref().is_some_and(|m| m.is_dir());
        if existing.is_some() && !keep_dir {
            remove(target)?;
        }
        match meta.kind {
            Kind::Dir => {
                if !keep_dir {
                    fs::create_dir(target)?;
                }
            }
            Kind::File => {
                let mut file = fs::File::create(target)?;
                io::copy(&mut body.take(meta.size), &mut file)?;
            }
            Kind::Symlink => {
                let link = OsStr::from_bytes(meta.link.as_deref().unwrap_or_default());
                std::os::unix::fs::symlink(link, target)?;
            }
            Kind::Hardlink => {
                let Some(source) = meta.hardlink_target() else {
                    return Ok(());
                };
                let Some(parent) = source.parent() else {
                    return Ok(());
                };
                let from = self
                    .dir(&parent)?
                    .join(OsStr::from_bytes(source.file_name()));
                // A link to a directory, or to nothing, is not one to make.
                if fs::symlink_metadata(&from).is_ok_and(|m| !m.is_dir()) {
                    fs::hard_link(&from, target)?;
                }
                return Ok(());
            }
            Kind::Fifo => {
                let c = CString::new(target.as_os_str().as_bytes())
                    .map_err(|_| io::Error::other("a path with a NUL byte"))?;
                // SAFETY: `c` is a valid NUL-terminated path for the duration of the call.
                if unsafe { libc::mkfifo(c.as_ptr(), 0o600) } != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            Kind::Char | Kind::Block => {
                self.skipped.devices += 1;
                return Ok(());
            }
        }
        let (uid, gid) = (self.host_id(meta.uid), self.host_id(meta.gid));
        std::os::unix::fs::lchown(target, Some(uid), Some(gid))?;
        if meta.kind != Kind::Symlink {
            // After the owner: chown clears setuid and setgid bits.
            fs::set_permissions(target, fs::Permissions::from_mode(meta.mode & 0o7777))?;
        }
        Ok(())
    }

    /// The host id of a container id (ids the namespace does not map become its root).
    fn host_id(&mut self, id: u64) -> u32 {
        match u32::try_from(id) {
            Ok(id) if id < self.ids.size => self.ids.base + id,
            _ => {
                self.skipped.unmapped += 1;
                self.ids.base
            }
        }
    }

    /// The host path of directory `dir` of the image, resolved inside the root and made
    /// (owned by the namespace's root, mode 0755) where it is missing.
    fn dir(&self, dir: &ImagePath) -> io::Result<PathBuf> {
        let mut todo: Vec<Vec<u8>> = dir.components().rev().map(<[u8]>::to_vec).collect();
        let mut at: Vec<Vec<u8>> = Vec::new();
        let mut hops = 0;
        while let Some(c) = todo.pop() {
            match c.as_slice() {
                b"." | b"" => continue,
                b".." => {
                    at.pop();
                    continue;
                }
                _ => {}
            }
            let host = self.host(&at).join(OsStr::from_bytes(&c));
            match fs::symlink_metadata(&host) {
                Ok(m) if m.file_type().is_symlink() => {
                    hops += 1;
                    if hops > MAX_HOPS {
                        return Err(io::Error::other(format!(
                            "too many levels of symbolic links below `{dir}`"
                        )));
                    }
                    let link = fs::read_link(&host)?;
                    let link = link.as_os_str().as_bytes();
                    if link.first() == Some(&b'/') {
                        at.clear();
                    }
                    for part in link.split(|&b| b == b'/').filter(|p| !p.is_empty()).rev() {
                        todo.push(part.to_vec());
                    }
                }
                Ok(m) if m.is_dir() => at.push(c),
                Ok(_) => {
                    // A file where a directory must be: a later layer replaces it.
                    remove(&host)?;
                    self.make_dir(&host)?;
                    at.push(c);
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    self.make_dir(&host)?;
                    at.push(c);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(self.host(&at))
    }

    fn make_dir(&self, host: &Path) -> io::Result<()> {
        fs::create_dir(host)?;
        std::os::unix::fs::lchown(host, Some(self.ids.base), Some(self.ids.base))
    }

    fn host(&self, components: &[Vec<u8>]) -> PathBuf {
        let mut p = self.root.clone();
        for c in components {
            p.push(OsStr::from_bytes(c));
        }
        p
    }
}

/// Removes a path whatever it is (a missing one is fine); never follows a symlink.
fn remove(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::os::unix::fs::MetadataExt;

    fn meta(kind: Kind, uid: u64, link: Option<&str>) -> Meta {
        Meta {
            kind,
            mode: if kind == Kind::Dir { 0o755 } else { 0o4755 },
            uid,
            gid: uid,
            size: 5,
            mtime: 0,
            link: link.map(|l| l.as_bytes().to_vec()),
            device: (0, 0),
            xattrs: BTreeMap::new(),
        }
    }

    #[test]
    fn layers_apply_inside_the_root_only() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        fs::create_dir(&outside).unwrap();
        let root = dir.path().join("rootfs");
        let mut fs_ = Rootfs::new(
            &root,
            IdMap {
                base: 100_000,
                size: 65536,
            },
        )
        .unwrap();
        let put = |r: &mut Rootfs, p: &str, m: Meta| {
            r.apply(&ImagePath::new(p), Change::Put(m), &mut &b"hello"[..])
                .unwrap()
        };
        put(&mut fs_, "/bin/app", meta(Kind::File, 1000, None));
        // Links that point out of the root, by absolute path and by `..`.
        put(
            &mut fs_,
            "/etc",
            meta(Kind::Symlink, 0, Some(outside.to_str().unwrap())),
        );
        put(
            &mut fs_,
            "/up",
            meta(Kind::Symlink, 0, Some("../../../../outside")),
        );
        put(&mut fs_, "/etc/passwd", meta(Kind::File, 0, None));
        put(&mut fs_, "/up/x", meta(Kind::File, 0, None));
        put(
            &mut fs_,
            "/bin/again",
            meta(Kind::Hardlink, 0, Some("bin/app")),
        );
        put(&mut fs_, "/dev/null", meta(Kind::Char, 0, None));
        assert_eq!(
            fs::read_dir(&outside).unwrap().count(),
            0,
            "wrote outside the root"
        );
        // The links were followed inside the root.
        let inside = root.join(outside.strip_prefix("/").unwrap()).join("passwd");
        assert_eq!(fs::read(inside).unwrap(), b"hello");
        assert_eq!(fs::read(root.join("outside/x")).unwrap(), b"hello");
        let app = fs::metadata(root.join("bin/app")).unwrap();
        assert_eq!(
            (app.uid(), app.gid(), app.mode() & 0o7777),
            (101_000, 101_000, 0o4755)
        );
        assert_eq!(
            app.ino(),
            fs::metadata(root.join("bin/again")).unwrap().ino()
        );
        assert_eq!(fs_.skipped.devices, 1);
        // A whiteout and an opaque directory of a later layer.
        fs_.apply(
            &ImagePath::new("/bin/app"),
            Change::Whiteout,
            &mut io::empty(),
        )
        .unwrap();
        assert!(!root.join("bin/app").exists());
        fs_.apply(
            &ImagePath::new("/outside"),
            Change::Opaque,
            &mut io::empty(),
        )
        .unwrap();
        assert!(!root.join("outside/x").exists());
        // An id the namespace does not map becomes its root.
        put(&mut fs_, "/high", meta(Kind::File, 200_000, None));
        assert_eq!(fs::metadata(root.join("high")).unwrap().uid(), 100_000);
        assert_eq!(fs_.skipped.unmapped, 2);
    }
}
