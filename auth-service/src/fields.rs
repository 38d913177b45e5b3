//! Validated values parsed from requests once, at the boundary: handlers only
//! ever see an [`Email`] or [`NewPassword`] that passed these checks.

use shared::{Error, Result};

/// Anything longer is refused before any hashing work.
pub const MAX_PASSWORD_BYTES: usize = 1024;
pub const MIN_PASSWORD_CHARS: usize = 12;
pub const MAX_PASSWORD_CHARS: usize = 128;
const MAX_EMAIL_LEN: usize = 254;
const MAX_LOCAL_LEN: usize = 64;
const MAX_DISPLAY_NAME_CHARS: usize = 100;

/// A trimmed, lower-cased, plausible email address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(field: &str, raw: &str) -> Result<Self> {
        let email = raw.trim().to_lowercase();
        let bad = |why: &str| Error::invalid(field, why.to_owned());
        if email.is_empty() {
            return Err(bad("is required"));
        }
        if email.len() > MAX_EMAIL_LEN {
            return Err(bad("must be at most 254 characters"));
        }
        let (local, domain) = email
            .rsplit_once('@')
            .ok_or_else(|| bad("must be an email address"))?;
        let local_ok = !local.is_empty()
            && local.len() <= MAX_LOCAL_LEN
            && !local.starts_with('.')
            && !local.ends_with('.')
            && !local.contains("..")
            && local
                .chars()
                .all(|c| c.is_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c));
        let domain_ok = !domain.is_empty()
            && domain.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label.chars().all(|c| c.is_alphanumeric() || c == '-')
            });
        if !local_ok || !domain_ok {
            return Err(bad("must be an email address"));
        }
        Ok(Self(email))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A password that meets the length rules (NIST SP 800-63B: 12 to 128
/// characters, no composition rules, no truncation). Whether it is commonly
/// used is checked in [`crate::password`], off the async runtime.
#[derive(Clone)]
pub struct NewPassword(String);

impl std::fmt::Debug for NewPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NewPassword(***)")
    }
}

impl NewPassword {
    pub fn parse(field: &str, raw: &str, email: Option<&Email>) -> Result<Self> {
        let bad = |why: String| Error::invalid(field, why);
        if raw.len() > MAX_PASSWORD_BYTES {
            return Err(bad(format!(
                "must be at most {MAX_PASSWORD_CHARS} characters"
            )));
        }
        let chars = raw.chars().count();
        if chars < MIN_PASSWORD_CHARS {
            return Err(bad(format!(
                "must be at least {MIN_PASSWORD_CHARS} characters"
            )));
        }
        if chars > MAX_PASSWORD_CHARS {
            return Err(bad(format!(
                "must be at most {MAX_PASSWORD_CHARS} characters"
            )));
        }
        if raw.contains('\0') {
            return Err(bad("must not contain NUL characters".to_owned()));
        }
        if email.is_some_and(|e| raw.trim().eq_ignore_ascii_case(e.as_str())) {
            return Err(bad("must not be the email address".to_owned()));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// A password presented to log in: only bounded, never judged (a wrong
/// password is simply wrong).
pub fn presented_password(field: &str, raw: &str) -> Result<String> {
    if raw.is_empty() {
        return Err(Error::invalid(field, "is required"));
    }
    if raw.len() > MAX_PASSWORD_BYTES {
        return Err(Error::invalid(
            field,
            format!("must be at most {MAX_PASSWORD_CHARS} characters"),
        ));
    }
    Ok(raw.to_owned())
}

pub fn display_name(field: &str, raw: &str) -> Result<String> {
    shared::validate::text(field, raw, true, MAX_DISPLAY_NAME_CHARS)
}
