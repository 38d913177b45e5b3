//! Field checks shared by both services' request parsing. Each failure names
//! the proto field, so the client gets a `BadRequest` field violation.

use uuid::Uuid;

use crate::error::{Error, Result};

/// Parses a UUID field; a malformed id is INVALID_ARGUMENT.
pub fn uuid(field: &str, raw: &str) -> Result<Uuid> {
    if raw.is_empty() {
        return Err(Error::invalid(field, "is required"));
    }
    if raw.len() != 36 {
        return Err(Error::invalid(field, "must be a UUID"));
    }
    Uuid::parse_str(raw).map_err(|_| Error::invalid(field, "must be a UUID"))
}

/// A free-text field: trimmed, within `max` characters, without control
/// characters (NUL among them).
pub fn text(field: &str, raw: &str, required: bool, max: usize) -> Result<String> {
    let value = raw.trim();
    if required && value.is_empty() {
        return Err(Error::invalid(field, "is required"));
    }
    if value.chars().count() > max {
        return Err(Error::invalid(
            field,
            format!("must be at most {max} characters"),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(Error::invalid(field, "must not contain control characters"));
    }
    Ok(value.to_owned())
}

/// A user id field (`user_id`, `owner_id`, `actor_id`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UserId(pub Uuid);

impl UserId {
    pub fn parse(field: &str, raw: &str) -> Result<Self> {
        uuid(field, raw).map(Self)
    }

    /// Empty means "any".
    pub fn parse_optional(field: &str, raw: &str) -> Result<Option<Self>> {
        if raw.is_empty() {
            return Ok(None);
        }
        Self::parse(field, raw).map(Some)
    }
}

/// Collects the violations of several fields into one INVALID_ARGUMENT.
#[derive(Debug, Default)]
pub struct Violations {
    fields: Vec<tonic_types::FieldViolation>,
    other: Option<Error>,
}

impl Violations {
    /// Keeps `Ok` values and remembers field violations.
    pub fn check<T>(&mut self, result: Result<T>) -> Option<T> {
        match result {
            Ok(v) => Some(v),
            Err(Error::InvalidArgument(v)) => {
                self.fields.extend(v);
                None
            }
            Err(e) => {
                self.other.get_or_insert(e);
                None
            }
        }
    }

    pub fn into_result(self) -> Result<()> {
        match (self.other, self.fields.is_empty()) {
            (Some(e), _) => Err(e),
            (None, true) => Ok(()),
            (None, false) => Err(Error::InvalidArgument(self.fields)),
        }
    }

    /// The error of the fields checked, once at least one failed.
    fn into_error(self) -> Error {
        self.into_result()
            .err()
            .unwrap_or_else(|| Error::internal("no field failed"))
    }
}

/// Several fields parsed at once: every field's violation is reported, not
/// only the first. `(Email::parse(..), NewPassword::parse(..)).all()?` gives
/// the parsed tuple.
pub trait AllFields {
    type Parsed;
    fn all(self) -> Result<Self::Parsed>;
}

macro_rules! all_fields {
    ($($t:ident $v:ident),+) => {
        impl<$($t),+> AllFields for ($(Result<$t>,)+) {
            type Parsed = ($($t,)+);
            fn all(self) -> Result<Self::Parsed> {
                match self {
                    ($(Ok($v),)+) => Ok(($($v,)+)),
                    ($($v,)+) => {
                        let mut violations = Violations::default();
                        $(violations.check($v);)+
                        Err(violations.into_error())
                    }
                }
            }
        }
    };
}

all_fields!(A a, B b);
all_fields!(A a, B b, C c);
all_fields!(A a, B b, C c, D d);
all_fields!(A a, B b, C c, D d, E e);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bad_field_is_reported_at_once() {
        let parsed = (
            text("title", "", true, 10),
            uuid("user_id", "nope"),
            text("note", "fine", false, 10),
        )
            .all();
        let Err(Error::InvalidArgument(violations)) = parsed else {
            panic!("expected INVALID_ARGUMENT, got {parsed:?}");
        };
        let fields: Vec<_> = violations.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(fields, ["title", "user_id"]);
        let ok = (text("a", "x", true, 10), text("b", "y", true, 10)).all();
        assert_eq!(ok.ok(), Some(("x".to_owned(), "y".to_owned())));
    }
}
