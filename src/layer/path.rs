//! Paths inside an image, normalized.
//!
//! Invariant: an [`ImagePath`] is relative to the image root, has no empty, `.` or `..`
//! components and no trailing slash; the root itself is the empty path. Nothing built from
//! layer contents can name a place outside the image.

use std::fmt;

/// A normalized path inside an image, as raw bytes (file names need not be UTF-8).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ImagePath(Vec<u8>);

/// Why a tar entry name cannot be a path in the image.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// The name starts with `/`.
    #[error("entry `{0}` has an absolute path")]
    Absolute(String),
    /// The name has a `..` component.
    #[error("entry `{0}` has a `..` component that could escape the image root")]
    DotDot(String),
    /// The name has a NUL byte or is empty.
    #[error("entry `{0}` has an empty or invalid name")]
    Invalid(String),
}

impl ImagePath {
    /// The image root.
    pub fn root() -> ImagePath {
        ImagePath(Vec::new())
    }

    /// Normalizes a tar entry name: strips `./` and trailing slashes; refuses absolute
    /// names and `..` components.
    pub fn from_tar(raw: &[u8]) -> Result<ImagePath, PathError> {
        let lossy = || String::from_utf8_lossy(raw).into_owned();
        if raw.contains(&0) {
            return Err(PathError::Invalid(lossy()));
        }
        if raw.first() == Some(&b'/') {
            return Err(PathError::Absolute(lossy()));
        }
        let mut out: Vec<u8> = Vec::with_capacity(raw.len());
        for component in raw.split(|&b| b == b'/') {
            match component {
                b"" | b"." => continue,
                b".." => return Err(PathError::DotDot(lossy())),
                c => {
                    if !out.is_empty() {
                        out.push(b'/');
                    }
                    out.extend_from_slice(c);
                }
            }
        }
        Ok(ImagePath(out))
    }

    /// Normalizes an absolute or relative path as seen from inside the image: `..` at the
    /// root stays at the root, as the kernel does for `/..`.
    pub fn lexical(path: &[u8]) -> ImagePath {
        let mut parts: Vec<&[u8]> = Vec::new();
        for component in path.split(|&b| b == b'/') {
            match component {
                b"" | b"." => {}
                b".." => {
                    parts.pop();
                }
                c => parts.push(c),
            }
        }
        ImagePath(parts.join(&b'/'))
    }

    /// A path from a string such as `/etc/passwd`.
    pub fn new(path: &str) -> ImagePath {
        ImagePath::lexical(path.as_bytes())
    }

    /// Whether this is the root.
    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// The raw bytes, without a leading slash.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// `self/name`; `name` must be one component.
    pub fn join(&self, name: &[u8]) -> ImagePath {
        if self.0.is_empty() {
            return ImagePath(name.to_vec());
        }
        let mut v = self.0.clone();
        v.push(b'/');
        v.extend_from_slice(name);
        ImagePath(v)
    }

    /// The parent directory; `None` for the root.
    pub fn parent(&self) -> Option<ImagePath> {
        if self.0.is_empty() {
            return None;
        }
        Some(match self.0.iter().rposition(|&b| b == b'/') {
            Some(i) => ImagePath(self.0[..i].to_vec()),
            None => ImagePath::root(),
        })
    }

    /// The last component; empty for the root.
    pub fn file_name(&self) -> &[u8] {
        match self.0.iter().rposition(|&b| b == b'/') {
            Some(i) => &self.0[i + 1..],
            None => &self.0,
        }
    }

    /// The components, root first.
    pub fn components(&self) -> impl DoubleEndedIterator<Item = &[u8]> {
        self.0.split(|&b| b == b'/').filter(|c| !c.is_empty())
    }

    /// Whether `self` is strictly below `ancestor`.
    pub fn is_below(&self, ancestor: &ImagePath) -> bool {
        if ancestor.is_root() {
            return !self.is_root();
        }
        self.0.len() > ancestor.0.len()
            && self.0.starts_with(&ancestor.0)
            && self.0[ancestor.0.len()] == b'/'
    }

    /// The smallest and the first-past-the-end keys of the paths strictly below `self`, for
    /// range queries on sorted maps: every descendant `d` has `lo <= d < hi`.
    pub fn subtree_bounds(&self) -> (ImagePath, ImagePath) {
        if self.is_root() {
            // Every non-root path is below the root; no path starts with 0xff 0xff.
            return (ImagePath(vec![0]), ImagePath(vec![0xff; 2]));
        }
        let mut lo = self.0.clone();
        lo.push(b'/');
        let mut hi = self.0.clone();
        hi.push(b'/' + 1);
        (ImagePath(lo), ImagePath(hi))
    }

    /// As a string with a leading slash, invalid UTF-8 replaced (for display only).
    pub fn display(&self) -> String {
        format!("/{}", String::from_utf8_lossy(&self.0))
    }

    /// The path with a leading slash as raw bytes.
    pub fn to_absolute_bytes(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.0.len() + 1);
        v.push(b'/');
        v.extend_from_slice(&self.0);
        v
    }
}

impl fmt::Display for ImagePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display())
    }
}

impl fmt::Debug for ImagePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_tar_names() {
        assert_eq!(
            ImagePath::from_tar(b"./etc/passwd").unwrap(),
            ImagePath::new("/etc/passwd")
        );
        assert_eq!(
            ImagePath::from_tar(b"etc//nginx/").unwrap().display(),
            "/etc/nginx"
        );
        assert!(ImagePath::from_tar(b"./").unwrap().is_root());
    }

    #[test]
    fn refuses_escaping_names() {
        assert!(matches!(
            ImagePath::from_tar(b"../etc"),
            Err(PathError::DotDot(_))
        ));
        assert!(matches!(
            ImagePath::from_tar(b"a/../../b"),
            Err(PathError::DotDot(_))
        ));
        assert!(matches!(
            ImagePath::from_tar(b"/etc/passwd"),
            Err(PathError::Absolute(_))
        ));
        assert!(matches!(
            ImagePath::from_tar(b"a\0b"),
            Err(PathError::Invalid(_))
        ));
    }

    #[test]
    fn lexical_clamps_at_root() {
        assert_eq!(
            ImagePath::lexical(b"/../../etc/./x/../passwd").display(),
            "/etc/passwd"
        );
    }

    #[test]
    fn relations() {
        let etc = ImagePath::new("/etc");
        let passwd = ImagePath::new("/etc/passwd");
        assert!(passwd.is_below(&etc));
        assert!(!etc.is_below(&etc));
        assert!(!ImagePath::new("/etc-x").is_below(&etc));
        assert_eq!(passwd.parent().unwrap(), etc);
        assert_eq!(passwd.file_name(), b"passwd");
        let (lo, hi) = etc.subtree_bounds();
        assert!(lo <= passwd && passwd < hi);
        assert!(!(lo <= ImagePath::new("/etc-x") && ImagePath::new("/etc-x") < hi));
    }
}
