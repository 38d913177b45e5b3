//! Validated values parsed from requests once, at the boundary: handlers only
//! ever see an [`Email`], a [`NewPassword`] or a [`Password`] that passed
//! these checks. Passwords are [`SecretString`]s: their `Debug` prints
//! nothing and their memory is zeroed when dropped.

use secrecy::{ExposeSecret, SecretString};
use shared::{Error, Result};

/// Anything longer is refused before any hashing work.
pub const MAX_PASSWORD_BYTES: usize = 1024;
pub const MIN_PASSWORD_CHARS: usize = 12;
pub const MAX_PASSWORD_CHARS: usize = 128;
const MAX_EMAIL_LEN: usize = 254;
const MAX_LOCAL_LEN: usize = 64;
const MAX_DISPLAY_NAME_CHARS: usize = 100;
/// Refresh tokens are 43 characters; a longer one cannot be ours.
const MAX_REFRESH_TOKEN_CHARS: usize = 256;

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
#[derive(Debug, Clone)]
pub struct NewPassword(SecretString);

impl NewPassword {
    pub fn parse(field: &str, raw: &str) -> Result<Self> {
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
        Ok(Self(raw.into()))
    }

    /// Refuses the account's own email as its password.
    pub fn not_email(self, field: &str, email: &Email) -> Result<Self> {
        if self.expose().trim().eq_ignore_ascii_case(email.as_str()) {
            return Err(Error::invalid(field, "must not be the email address"));
        }
        Ok(self)
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

/// A password presented to log in: only bounded, never judged (a wrong
/// password is simply wrong).
#[derive(Debug, Clone)]
pub struct Password(SecretString);

impl Password {
    pub fn parse(field: &str, raw: &str) -> Result<Self> {
        if raw.is_empty() {
            return Err(Error::invalid(field, "is required"));
        }
        if raw.len() > MAX_PASSWORD_BYTES {
            return Err(Error::invalid(
                field,
                format!("must be at most {MAX_PASSWORD_CHARS} characters"),
            ));
        }
        Ok(Self(raw.into()))
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

/// A refresh token as presented: `None` when it is too long to be one of
/// ours (RefreshToken refuses it, Logout has nothing to revoke).
#[derive(Debug, Clone)]
pub struct RefreshToken(Option<SecretString>);

impl RefreshToken {
    pub fn parse(field: &str, raw: &str) -> Result<Self> {
        if raw.is_empty() {
            return Err(Error::invalid(field, "is required"));
        }
        Ok(Self(
            (raw.len() <= MAX_REFRESH_TOKEN_CHARS).then(|| raw.into()),
        ))
    }

    /// The token, if it could be one of ours.
    pub fn expose(&self) -> Option<&str> {
        self.0.as_ref().map(ExposeSecret::expose_secret)
    }
}

/// A display name: trimmed, 1 to 100 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisplayName(String);

impl DisplayName {
    pub fn parse(field: &str, raw: &str) -> Result<Self> {
        shared::validate::text(field, raw, true, MAX_DISPLAY_NAME_CHARS).map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}
