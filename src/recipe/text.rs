//! Text of config files: code and comments of a line, indentation, replacing one group
//! of every match, and log destinations that are streams.

use regex::bytes::{Captures, Regex};

/// Splits a line into its code and the rest (comment and line end).
pub(super) fn split_code<'a>(line: &'a [u8], comment: Option<&str>) -> (&'a [u8], &'a [u8]) {
    let body_end = line.len()
        - line
            .iter()
            .rev()
            .take_while(|&&b| b == b'\n' || b == b'\r')
            .count();
    let cut = match comment.map(str::as_bytes) {
        Some(c) => {
            let first = line
                .iter()
                .position(|b| !b.is_ascii_whitespace())
                .unwrap_or(body_end);
            if line[first..].starts_with(c) {
                0
            } else {
                line[..body_end]
                    .windows(c.len() + 1)
                    .position(|w| w[0].is_ascii_whitespace() && &w[1..] == c)
                    .unwrap_or(body_end)
            }
        }
        None => body_end,
    };
    line.split_at(cut)
}

/// The leading blanks of a line.
pub(super) fn indentation(line: &[u8]) -> Vec<u8> {
    line.iter()
        .take_while(|&&b| b == b' ' || b == b'\t')
        .copied()
        .collect()
}

/// Replaces group `group` of every match of `regex` in `code` by what `f` returns for
/// its text (`None`: leave it).
pub(super) fn replace_group(
    code: &[u8],
    regex: &Regex,
    group: usize,
    mut f: impl FnMut(&Captures<'_>, &[u8]) -> Option<Vec<u8>>,
) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut last = 0;
    let mut any = false;
    for caps in regex.captures_iter(code) {
        let Some(m) = caps.get(group) else { continue };
        if let Some(new) = f(&caps, m.as_bytes()) {
            out.extend_from_slice(&code[last..m.start()]);
            out.extend_from_slice(&new);
            last = m.end();
            any = true;
        }
    }
    if !any {
        return None;
    }
    out.extend_from_slice(&code[last..]);
    Some(out)
}

/// Whether a log destination is a stream (the standard streams, syslog, a pipe, Redis's
/// `""` for stdout), not a file.
pub fn is_stream(value: &str) -> bool {
    matches!(value, "off" | "stderr" | "stdout" | "\"\"" | "")
        || value.starts_with("syslog:")
        || value.starts_with('|')
        || value.starts_with("/dev/std")
        || value.starts_with("/dev/fd/")
        || value.starts_with("/proc/self/fd/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_and_comments() {
        assert_eq!(
            split_code(b"listen 80; # web\n", Some("#")),
            (&b"listen 80;"[..], &b" # web\n"[..])
        );
        assert_eq!(
            split_code(b"  # listen 80;\n", Some("#")),
            (&b""[..], &b"  # listen 80;\n"[..])
        );
        assert_eq!(
            split_code(b"root /a#b;", Some("#")),
            (&b"root /a#b;"[..], &b""[..])
        );
        assert_eq!(split_code(b"x\r\n", None), (&b"x"[..], &b"\r\n"[..]));
    }

    #[test]
    fn replaces_only_the_group() {
        let re = Regex::new(r"listen\s+(?:\S*:)?(\d+)").unwrap();
        let out = replace_group(b"listen [::]:80; listen 81;", &re, 1, |_, p| {
            (p == b"80").then(|| b"8080".to_vec())
        });
        assert_eq!(out.unwrap(), b"listen [::]:8080; listen 81;");
        assert_eq!(replace_group(b"nothing", &re, 1, |_, _| Some(vec![])), None);
    }
}
