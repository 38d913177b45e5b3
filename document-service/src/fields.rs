//! Validated values parsed from requests once, at the boundary.

use shared::{Result, validate};
use uuid::Uuid;

const MAX_NOTE_CHARS: usize = 2000;

/// A document id field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DocumentId(pub Uuid);

impl DocumentId {
    pub(crate) fn parse(raw: &str) -> Result<Self> {
        validate::uuid("document_id", raw).map(Self)
    }
}

/// A reviewer's note or rejection reason: trimmed, at most 2000
/// characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Note(String);

impl Note {
    pub(crate) fn parse(field: &str, raw: &str, required: bool) -> Result<Self> {
        validate::text(field, raw, required, MAX_NOTE_CHARS).map(Self)
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}
