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

#[cfg(test)]
mod tests {
    use super::*;

    /// The refusal as clients read it: the error's own message, which names
    /// the field.
    fn refused<T: std::fmt::Debug>(parsed: Result<T>) -> String {
        parsed.unwrap_err().to_string()
    }

    fn email(raw: &str) -> Result<Email> {
        Email::parse("email", raw)
    }

    #[test]
    fn emails_are_trimmed_lower_cased_and_plausible() {
        let parsed = email("  Ann.Lee+docs@Example.COM \n").unwrap();
        assert_eq!(parsed.as_str(), "ann.lee+docs@example.com");
        for good in [
            "a@b",
            "jörg@exämple.de",
            "o'brien!#$%&*/=?^_`{|}~-@my-host.example",
            "x@1.2.3.4",
        ] {
            assert_eq!(email(good).unwrap().as_str(), good);
        }
        assert_eq!(refused(email("")), "invalid argument: email: is required");
        assert_eq!(
            refused(email(" \t ")),
            "invalid argument: email: is required"
        );
        // Each of these breaks one rule and keeps every other.
        for bad in [
            "no-at-sign.example",
            "@example.com",
            ".ann@example.com",
            "ann.@example.com",
            "an..n@example.com",
            "an n@example.com",
            "an,n@example.com",
            "a@b@example.com",
            "ann@",
            "ann@.example",
            "ann@example.",
            "ann@exa..mple",
            "ann@-example.com",
            "ann@example-.com",
            "ann@exa_mple.com",
            "ann@exa+mple.com",
        ] {
            assert_eq!(
                refused(email(bad)),
                "invalid argument: email: must be an email address",
                "{bad}"
            );
        }
    }

    #[test]
    fn email_lengths_are_bounded_at_the_limits() {
        let local = |n| "l".repeat(n);
        let label = |n| "d".repeat(n);
        assert!(email(&format!("{}@x.example", local(64))).is_ok());
        assert!(email(&format!("{}@x.example", local(65))).is_err());
        assert!(email(&format!("a@{}.example", label(63))).is_ok());
        assert!(email(&format!("a@{}.example", label(64))).is_err());
        // 64 + 1 + 63 + 1 + 63 + 1 + 61 = 254 bytes, every part within its own limit.
        let longest = format!("{}@{}.{}.{}", local(64), label(63), label(63), label(61));
        assert_eq!(longest.len(), 254);
        assert_eq!(email(&longest).unwrap().as_str(), longest);
        let too_long = format!("{longest}d");
        assert_eq!(
            refused(email(&too_long)),
            "invalid argument: email: must be at most 254 characters"
        );
    }

    #[test]
    fn new_passwords_are_12_to_128_characters_not_bytes() {
        let parse = |raw: &str| NewPassword::parse("password", raw);
        for n in [12, 13, 128] {
            let raw = "p".repeat(n);
            assert_eq!(parse(&raw).unwrap().expose(), raw);
        }
        // Two bytes a character: 11 are 22 bytes and still too few.
        assert_eq!(parse(&"é".repeat(12)).unwrap().expose(), "é".repeat(12));
        let short = "invalid argument: password: must be at least 12 characters";
        assert_eq!(refused(parse(&"é".repeat(11))), short);
        assert_eq!(refused(parse(&"p".repeat(11))), short);
        assert_eq!(refused(parse("")), short);
        let long = "invalid argument: password: must be at most 128 characters";
        assert_eq!(refused(parse(&"p".repeat(129))), long);
        // Over the byte bound, the same refusal (that check only spares
        // counting the characters of a huge input, so `>` against `>=`
        // there is equivalent).
        assert_eq!(refused(parse(&"p".repeat(MAX_PASSWORD_BYTES + 1))), long);
        assert_eq!(
            refused(parse("twelve chars\0here")),
            "invalid argument: password: must not contain NUL characters"
        );
    }

    #[test]
    fn a_new_password_is_not_the_email_in_any_case() {
        let address = email("long.address@example.com").unwrap();
        let same = NewPassword::parse("new_password", " Long.Address@Example.COM ").unwrap();
        assert_eq!(
            refused(same.not_email("new_password", &address)),
            "invalid argument: new_password: must not be the email address"
        );
        let other = NewPassword::parse("new_password", "long.address@example.org").unwrap();
        let kept = other.not_email("new_password", &address).unwrap();
        assert_eq!(kept.expose(), "long.address@example.org");
    }

    #[test]
    fn login_passwords_are_only_bounded() {
        let parse = |raw: &str| Password::parse("password", raw);
        assert_eq!(parse("x").unwrap().expose(), "x");
        let longest = "p".repeat(MAX_PASSWORD_BYTES);
        assert_eq!(parse(&longest).unwrap().expose(), longest);
        assert_eq!(
            refused(parse(&format!("{longest}p"))),
            "invalid argument: password: must be at most 128 characters"
        );
        assert_eq!(
            refused(parse("")),
            "invalid argument: password: is required"
        );
    }

    #[test]
    fn refresh_tokens_longer_than_ours_are_kept_as_none() {
        let parse = |raw: &str| RefreshToken::parse("refresh_token", raw);
        let longest = "r".repeat(MAX_REFRESH_TOKEN_CHARS);
        assert_eq!(parse(&longest).unwrap().expose(), Some(longest.as_str()));
        assert_eq!(parse(&format!("{longest}r")).unwrap().expose(), None);
        assert_eq!(
            refused(parse("")),
            "invalid argument: refresh_token: is required"
        );
    }

    #[test]
    fn display_names_are_trimmed() {
        let name = DisplayName::parse("display_name", "  Ann Lee ").unwrap();
        assert_eq!(name.as_str(), "Ann Lee");
        assert_eq!(
            refused(DisplayName::parse("display_name", "  ")),
            "invalid argument: display_name: is required"
        );
    }
}
