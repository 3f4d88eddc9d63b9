//! The parsers of `disk_encryption`: pure functions from the text of
//! `/proc/self/mountinfo`, `/proc/swaps` and sysfs `dev` files to facts.
//! Compiled and tested on every OS; they read nothing themselves.

use super::{MountEntry, SwapEntry};

/// `id parent major:minor root mount-point options [optional…] - fstype source super-options`.
pub fn parse_mountinfo(text: &str) -> Result<Vec<MountEntry>, String> {
    let mut mounts = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = || {
            format!(
                "mountinfo line {} is not in the proc(5) format: {line:?}",
                index + 1
            )
        };
        let fields: Vec<&str> = line.split(' ').collect();
        let separator = fields.iter().position(|f| *f == "-").ok_or_else(bad)?;
        if separator < 6 || fields.len() < separator + 3 {
            return Err(bad());
        }
        let (major, minor) = parse_major_minor(fields[2]).ok_or_else(bad)?;
        mounts.push(MountEntry {
            major,
            minor,
            root: unescape_octal(fields[3]),
            mount_point: unescape_octal(fields[4]),
            fs_type: fields[separator + 1].to_owned(),
            source: unescape_octal(fields[separator + 2]),
        });
    }
    Ok(mounts)
}

/// Parses `/proc/swaps`: a header line, then `Filename Type Size Used Priority`.
pub fn parse_swaps(text: &str) -> Vec<SwapEntry> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let path = unescape_octal(fields.next()?);
            let kind = fields.next()?.to_owned();
            Some(SwapEntry { path, kind })
        })
        .collect()
}

pub(super) fn parse_major_minor(text: &str) -> Option<(u32, u32)> {
    let (major, minor) = text.trim().split_once(':')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// The kernel escapes space, tab, newline and backslash in these files as
/// `\040`, `\011`, `\012`, `\134`.
pub(super) fn unescape_octal(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match (bytes[i], octal) {
            (b'\\', Some(digits)) => {
                let value = digits
                    .iter()
                    .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
                out.push(u8::try_from(value).unwrap_or(b'?'));
                i += 4;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
