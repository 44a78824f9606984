//! Passwords: a wrapper that never formats its content, and a process-wide list of every password
//! pgdeck has loaded so that anything it prints can be scrubbed as a last line of defence.

use std::borrow::Cow;
use std::fmt;
use std::sync::Mutex;

static KNOWN: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Shorter passwords are not scrubbed from free text: replacing every standalone "abc" would
/// garble output, and such passwords are still never formatted by pgdeck itself.
const MIN_SCRUB_LEN: usize = 4;

/// A password. `Debug` and `Display` print `***`; only `expose()` gives the value, for the
/// connection handshake and child-process environments.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        let value = value.into();
        remember(&value);
        Secret(value)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Remembers a password and the forms it takes in text pgdeck prints: escaped inside a JSON
/// string (`--json`, the journal) and percent-encoded in a URL (a hook echoing its database URL).
fn remember(value: &str) {
    remember_written(value);
    remember_written(
        &percent_encoding::utf8_percent_encode(value, percent_encoding::NON_ALPHANUMERIC)
            .to_string(),
    );
}

/// Remembers a password as it was written where pgdeck read it (percent-encoded in a database
/// URL, maybe differently from how pgdeck would encode it), and that form inside a JSON string.
pub fn remember_written(form: &str) {
    if form.len() < MIN_SCRUB_LEN {
        return;
    }
    let mut known = KNOWN
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let json = serde_json::to_string(form).unwrap_or_default();
    let json = json
        .strip_prefix('"')
        .and_then(|j| j.strip_suffix('"'))
        .unwrap_or(form)
        .to_owned();
    for form in [form.to_owned(), json] {
        if !known.contains(&form) {
            known.push(form);
        }
    }
    // Longest first: a form that contains another is replaced whole.
    known.sort_by_key(|k| std::cmp::Reverse(k.len()));
}

/// Replaces every standalone occurrence of a known password in `text` with `***`. "Standalone"
/// means not glued to letters, digits or `_` on either side, so a password that is also a common
/// word does not mangle longer words that contain it.
pub fn scrub(text: &str) -> Cow<'_, str> {
    let known = KNOWN
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut out = Cow::Borrowed(text);
    for secret in known.iter() {
        if out.contains(secret.as_str()) {
            out = Cow::Owned(replace_standalone(&out, secret));
        }
    }
    out
}

/// Whether `text` holds any password pgdeck has loaded (anywhere, not only standalone).
pub fn holds_known(text: &str) -> bool {
    let known = KNOWN
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    known.iter().any(|s| text.contains(s.as_str()))
}

fn replace_standalone(text: &str, needle: &str) -> String {
    let is_word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(needle) {
        let before = rest[..at]
            .chars()
            .next_back()
            .or_else(|| out.chars().next_back());
        let after = rest[at + needle.len()..].chars().next();
        out.push_str(&rest[..at]);
        if is_word(before) || is_word(after) {
            out.push_str(needle);
        } else {
            out.push_str("***");
        }
        rest = &rest[at + needle.len()..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_never_formats_its_value() {
        let s = Secret::new("hunter2-very-secret");
        assert_eq!(format!("{s} {s:?}"), "*** ***");
        assert_eq!(s.expose(), "hunter2-very-secret");
    }

    #[test]
    fn scrub_replaces_standalone_passwords_only() {
        Secret::new("s3cr3t-pw");
        Secret::new("postgres");
        assert_eq!(
            scrub("auth failed: s3cr3t-pw was rejected"),
            "auth failed: *** was rejected"
        );
        assert_eq!(scrub("postgresql://postgres@host"), "postgresql://***@host");
    }

    #[test]
    fn a_password_is_scrubbed_percent_encoded_and_inside_json_strings() {
        Secret::new("p@ss/w0rd-scrub");
        assert_eq!(
            scrub("url=postgresql://app:p%40ss%2Fw0rd%2Dscrub@db/app"),
            "url=postgresql://app:***@db/app"
        );
        // Written as the operator wrote it, encoded otherwise than pgdeck would.
        remember_written("p%40ss%2fw0rd-scrub");
        assert_eq!(scrub("app:p%40ss%2fw0rd-scrub@db"), "app:***@db");
        Secret::new("qu\"ote\\x9-scrub");
        let json = serde_json::json!({ "output": "qu\"ote\\x9-scrub\n" }).to_string();
        assert_eq!(scrub(&json), r#"{"output":"***\n"}"#);
    }
}
