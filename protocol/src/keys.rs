//! Which object keys and bucket names every backend carries unchanged, and the MIME type
//! a key's extension suggests. Checked at intake (a 400) and by every blob store.

/// A key or bucket name no backend should carry.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid name {name:?}: {reason}")]
pub struct KeyError {
    /// The offending key or bucket.
    pub name: String,
    /// Which rule it breaks.
    pub reason: &'static str,
}

/// The longest key accepted, in bytes (S3's limit).
pub const MAX_KEY_BYTES: usize = 1024;

/// Checks an object key: non-empty, at most [`MAX_KEY_BYTES`], no leading `/`, no `..`
/// segment, and only characters every backend and message carries unchanged: no control
/// character (C0, DEL or C1: a newline or a NUL in a key could forge a log line or cut a
/// path), no backslash (a path separator elsewhere), no Unicode noncharacter (SQS refuses
/// U+FFFE and U+FFFF in a message body, and the others are not for interchange).
///
/// # Errors
/// [`KeyError`] saying which rule the key breaks.
pub fn validate_key(key: &str) -> Result<(), KeyError> {
    let reason = if key.is_empty() {
        Some("key is empty")
    } else if key.len() > MAX_KEY_BYTES {
        Some("key is longer than 1024 bytes")
    } else if key.starts_with('/') {
        Some("key starts with '/'")
    } else if key.chars().any(char::is_control) {
        Some("key contains a control character")
    } else if key.contains('\\') {
        Some("key contains a backslash")
    } else if key.chars().any(is_noncharacter) {
        Some("key contains a Unicode noncharacter")
    } else if key.split('/').any(|s| s == "..") {
        Some("key contains a '..' segment")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(KeyError { name: key.into(), reason }),
        None => Ok(()),
    }
}

/// U+FDD0–U+FDEF and the last two code points of every plane (U+FFFE, U+FFFF, U+1FFFE, ...).
fn is_noncharacter(c: char) -> bool {
    let c = u32::from(c);
    (0xFDD0..=0xFDEF).contains(&c) || c & 0xFFFE == 0xFFFE
}

/// Checks a bucket name by S3's rules: 3–63 of `a-z 0-9 . -`, starting and ending with a letter or digit.
///
/// # Errors
/// [`KeyError`].
pub fn validate_bucket(bucket: &str) -> Result<(), KeyError> {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = bucket.as_bytes();
    let ok = (3..=63).contains(&bytes.len())
        && bytes.iter().all(|&b| alnum(b) || b == b'.' || b == b'-')
        && bytes.first().copied().is_some_and(alnum)
        && bytes.last().copied().is_some_and(alnum)
        && !bucket.contains("..");
    if ok {
        Ok(())
    } else {
        Err(KeyError { name: bucket.into(), reason: "bucket names are 3-63 characters of a-z, 0-9, '.' and '-'" })
    }
}

/// A MIME type from a key's extension, for objects stored without one.
pub fn guess_content_type(key: &str) -> &'static str {
    let ext = key.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase()).unwrap_or_default();
    match ext.as_str() {
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "webp" => "image/webp",
        "gif" => "image/gif",
        "avif" => "image/avif",
        "bmp" => "image/bmp",
        "tif" | "tiff" => "image/tiff",
        "heic" => "image/heic",
        "json" => "application/json",
        "txt" => "text/plain",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_checked() {
        let longest = "x".repeat(1024);
        let good_keys = [
            "a.jpg",
            "dir/sub/a b.jpg",
            "..a/b..",
            longest.as_str(),
            "caf\u{e9}/\u{65e5}\u{672c}.jpg",
            "emoji-\u{1F600}.png",
            "last-bmp-\u{FFFD}.jpg",
            "after-surrogates-\u{E000}.jpg",
            "plane-16-\u{10FFFD}.jpg",
            "a+b=c&d;e,f@g#h(i)[j]{k}~'!$%.jpg",
        ];
        for good in good_keys {
            assert!(validate_key(good).is_ok(), "{good}");
        }
        let long = "x".repeat(1025);
        let bad_keys = [
            "",
            "/abs.jpg",
            "a/../b",
            "..",
            "../x",
            "a/..",
            "nul\0.jpg",
            long.as_str(),
            "line\nbreak.jpg",
            "cr\r.jpg",
            "tab\t.jpg",
            "esc\u{1b}[31m.jpg",
            "del\u{7f}.jpg",
            "c1-\u{85}.jpg",
            "c1-\u{9f}.jpg",
            "back\\slash.jpg",
            "dir\\..\\x.jpg",
            "nonchar-\u{FFFE}.jpg",
            "nonchar-\u{FFFF}.jpg",
            "nonchar-\u{FDD0}.jpg",
            "nonchar-\u{FDEF}.jpg",
            "nonchar-\u{1FFFE}.jpg",
            "nonchar-\u{10FFFF}.jpg",
        ];
        for bad in bad_keys {
            assert!(validate_key(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn buckets_are_checked() {
        for good in ["original", "resized", "my.bucket-1"] {
            assert!(validate_bucket(good).is_ok(), "{good}");
        }
        for bad in ["", "ab", "Upper", "-lead", "trail.", "a..b", "under_score", "../etc"] {
            assert!(validate_bucket(bad).is_err(), "{bad}");
        }
    }
}
