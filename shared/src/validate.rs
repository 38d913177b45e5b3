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
}
