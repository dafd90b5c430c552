//! API keys and their scopes. A key is sent as `Authorization: Bearer <key>` (or
//! `X-Api-Key: <key>`) and is compared with every configured key in constant time. Scopes
//! nest: `read` sees jobs and metrics, `submit` also starts jobs, `operator` may do anything.

use std::fmt;
use std::str::FromStr;

use axum::http::{HeaderMap, StatusCode, header};

use crate::error::ApiError;

/// What a key may do; each scope includes the ones before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    /// `GET /jobs`, `GET /jobs/{id}`, `GET /metrics`.
    Read,
    /// `read`, and `POST /process`.
    Submit,
    /// Everything, operator-only endpoints included.
    Operator,
}

impl Scope {
    /// The scope's name as keys are configured.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Submit => "submit",
            Scope::Operator => "operator",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scope {
    type Err = KeyError;

    fn from_str(s: &str) -> Result<Self, KeyError> {
        match s {
            "read" => Ok(Scope::Read),
            "submit" => Ok(Scope::Submit),
            "operator" => Ok(Scope::Operator),
            other => Err(KeyError(format!("unknown scope {other:?} (expected read, submit or operator)"))),
        }
    }
}

/// A key list that cannot be read; the message never holds a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct KeyError(String);

/// The configured keys. Its `Debug` shows how many keys each scope has, never a key.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ApiKeys {
    keys: Vec<(Scope, Box<[u8]>)>,
}

impl fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = |s: Scope| self.keys.iter().filter(|(scope, _)| *scope == s).count();
        f.debug_struct("ApiKeys")
            .field("read", &count(Scope::Read))
            .field("submit", &count(Scope::Submit))
            .field("operator", &count(Scope::Operator))
            .finish()
    }
}

impl ApiKeys {
    /// No keys.
    pub fn none() -> Self {
        Self::default()
    }

    /// Whether no key is configured.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Adds the comma-separated `scope:key` entries of `list` (`IMGPIPE_API_KEYS`).
    ///
    /// # Errors
    /// An entry without a known scope or with an empty key, or a key given twice.
    pub fn add_list(&mut self, list: &str) -> Result<(), KeyError> {
        for (n, entry) in list.split(',').enumerate() {
            self.add_entry(entry).map_err(|e| KeyError(format!("entry {}: {e}", n + 1)))?;
        }
        Ok(())
    }

    /// Adds the `scope:key` lines of a key file; blank lines and `#` comments are skipped.
    ///
    /// # Errors
    /// As [`ApiKeys::add_list`], naming the line.
    pub fn add_file_text(&mut self, text: &str) -> Result<(), KeyError> {
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            self.add_entry(line).map_err(|e| KeyError(format!("line {}: {e}", n + 1)))?;
        }
        Ok(())
    }

    fn add_entry(&mut self, entry: &str) -> Result<(), KeyError> {
        let entry = entry.trim();
        if entry.is_empty() {
            return Ok(());
        }
        let Some((scope, key)) = entry.split_once(':') else {
            return Err(KeyError("expected scope:key".into()));
        };
        let scope: Scope = scope.trim().parse()?;
        let key = key.trim();
        if key.is_empty() {
            return Err(KeyError(format!("the {scope} key is empty")));
        }
        if key.bytes().any(|b| !b.is_ascii_graphic()) {
            return Err(KeyError(format!("the {scope} key holds a space or a character headers cannot carry")));
        }
        if self.keys.iter().any(|(_, k)| **k == *key.as_bytes()) {
            return Err(KeyError("a key is given twice".into()));
        }
        self.keys.push((scope, key.as_bytes().into()));
        Ok(())
    }

    /// The scope of `presented`, if it is one of the keys. Every key is compared, each in
    /// time that depends on the lengths only, so the answer's timing does not tell how
    /// much of a key was right.
    pub fn scope_of(&self, presented: &[u8]) -> Option<Scope> {
        let mut found = None;
        for (scope, key) in &self.keys {
            let equal = constant_time_eq(key, presented);
            found = if equal { Some(*scope) } else { found };
        }
        found
    }
}

/// Compares `a` and `b` touching every byte of the longer, without an early exit.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = u8::from(a.len() != b.len());
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= std::hint::black_box(x ^ y);
    }
    std::hint::black_box(diff) == 0
}

/// The key a request carries: `Authorization: Bearer <key>`, else `X-Api-Key`.
pub fn presented_key(headers: &HeaderMap) -> Option<&[u8]> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let value = value.as_bytes();
        let (scheme, rest) = value.split_at(value.iter().position(|&b| b == b' ').unwrap_or(value.len()));
        if scheme.eq_ignore_ascii_case(b"bearer") {
            return Some(rest.trim_ascii()).filter(|k| !k.is_empty());
        }
        return None;
    }
    headers.get("x-api-key").map(|v| v.as_bytes().trim_ascii()).filter(|k| !k.is_empty())
}

/// Whether a request with these headers may do what needs `needed`: `Ok` when `keys` is
/// `None` (authentication is off) or the request's key has the scope.
///
/// # Errors
/// 401 without a known key (its response carries `WWW-Authenticate: Bearer`), 403 with a
/// key of a narrower scope.
pub fn authorize(keys: Option<&ApiKeys>, headers: &HeaderMap, needed: Scope) -> Result<(), ApiError> {
    let Some(keys) = keys else { return Ok(()) };
    match presented_key(headers).and_then(|k| keys.scope_of(k)) {
        Some(scope) if scope >= needed => Ok(()),
        Some(scope) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "InsufficientScope",
            format!("this key's scope is {scope}; this request needs {needed}"),
        )),
        None => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "send an API key as `Authorization: Bearer <key>` or `X-Api-Key: <key>`",
        )),
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn keys(list: &str) -> ApiKeys {
        let mut keys = ApiKeys::none();
        keys.add_list(list).expect("valid keys");
        keys
    }

    #[test]
    fn keys_are_read_with_their_scopes() {
        let k = keys("read:r-key, submit:s-key,operator:o-key,");
        assert_eq!(k.scope_of(b"r-key"), Some(Scope::Read));
        assert_eq!(k.scope_of(b"s-key"), Some(Scope::Submit));
        assert_eq!(k.scope_of(b"o-key"), Some(Scope::Operator));
        for wrong in [&b"r-ke"[..], b"r-keyy", b"", b"R-KEY", b"read:r-key"] {
            assert_eq!(k.scope_of(wrong), None, "{wrong:?}");
        }
        let mut file = ApiKeys::none();
        file.add_file_text("# the team's keys\n\nread:a1\n  submit:b2  \n").expect("valid file");
        assert_eq!((file.scope_of(b"a1"), file.scope_of(b"b2")), (Some(Scope::Read), Some(Scope::Submit)));
    }

    #[test]
    fn bad_entries_are_refused_without_echoing_keys() {
        for (list, why) in [
            ("admin:secret1", "unknown scope"),
            ("secret1", "scope:key"),
            ("read:", "empty"),
            ("read:sec ret1", "space"),
            ("read:secret1,submit:secret1", "twice"),
        ] {
            let err = ApiKeys::none().add_list(list).expect_err(list).to_string();
            assert!(err.contains(why), "{list}: {err}");
            assert!(!err.contains("secret1"), "{list}: {err}");
        }
        let err = ApiKeys::none().add_file_text("# ok\nread:a\nwrite:b\n").expect_err("bad scope").to_string();
        assert!(err.starts_with("line 3:"), "{err}");
        assert_eq!(format!("{:?}", keys("read:secret1")), "ApiKeys { read: 1, submit: 0, operator: 0 }");
    }

    #[test]
    fn keys_come_as_bearer_tokens_or_x_api_key() {
        let with = |name: &'static str, value: &str| {
            let mut h = HeaderMap::new();
            h.insert(name, HeaderValue::from_str(value).expect("header"));
            h
        };
        assert_eq!(presented_key(&with("authorization", "Bearer abc")), Some(&b"abc"[..]));
        assert_eq!(presented_key(&with("authorization", "bearer  abc ")), Some(&b"abc"[..]));
        assert_eq!(presented_key(&with("authorization", "Basic abc")), None);
        assert_eq!(presented_key(&with("authorization", "Bearer")), None);
        assert_eq!(presented_key(&with("x-api-key", "abc")), Some(&b"abc"[..]));
        assert_eq!(presented_key(&HeaderMap::new()), None);
    }

    #[test]
    fn scopes_nest() {
        let k = keys("read:r,submit:s,operator:o");
        let bearer = |key: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::AUTHORIZATION, HeaderValue::from_str(&format!("Bearer {key}")).expect("header"));
            h
        };
        let status = |key: &str, needed| authorize(Some(&k), &bearer(key), needed).err().map(|e| e.status);
        assert_eq!(status("r", Scope::Read), None);
        assert_eq!(status("r", Scope::Submit), Some(StatusCode::FORBIDDEN));
        assert_eq!(status("s", Scope::Submit), None);
        assert_eq!(status("s", Scope::Operator), Some(StatusCode::FORBIDDEN));
        assert_eq!(status("o", Scope::Operator), None);
        assert_eq!(status("x", Scope::Read), Some(StatusCode::UNAUTHORIZED));
        assert!(authorize(None, &HeaderMap::new(), Scope::Operator).is_ok(), "no keys: authentication is off");
    }
}
