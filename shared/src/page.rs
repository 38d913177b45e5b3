//! Pagination after AIP-158: `int32 page_size` (0 means the default, larger
//! than the maximum is capped, negative is invalid) and an opaque
//! `page_token`.
//!
//! A page token is a keyset cursor sealed with an HMAC over the cursor and a
//! scope string (the caller and the filters). A caller can neither forge a
//! cursor nor replay a token under other filters or as another user: either
//! is INVALID_ARGUMENT. The MAC key is shared by all replicas (kept in the
//! service's database), so any replica continues any page.

use std::sync::Arc;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::error::{Error, Result};

pub const DEFAULT_PAGE_SIZE: u32 = 50;
pub const MAX_PAGE_SIZE: u32 = 500;
const MAC_BYTES: usize = 16;
const MAX_TOKEN_CHARS: usize = 256;

/// A validated AIP-158 page size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageSize(u32);

impl PageSize {
    pub fn parse(raw: i32) -> Result<Self> {
        match raw {
            0 => Ok(Self(DEFAULT_PAGE_SIZE)),
            n if n < 0 => Err(Error::invalid("page_size", "must not be negative")),
            n => Ok(Self(n.unsigned_abs().min(MAX_PAGE_SIZE))),
        }
    }

    pub fn get(self) -> u32 {
        self.0
    }

    /// The rows to fetch: one more than a page, to tell whether another follows.
    pub fn fetch(self) -> u32 {
        self.0 + 1
    }
}

/// Seals and opens page tokens.
#[derive(Clone)]
pub struct PageTokens {
    key: Arc<[u8]>,
}

impl std::fmt::Debug for PageTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PageTokens")
    }
}

impl PageTokens {
    pub fn new(key: &[u8]) -> Self {
        Self { key: key.into() }
    }

    fn mac(&self, scope: &str, cursor: &[u8]) -> [u8; MAC_BYTES] {
        #[allow(clippy::expect_used)] // HMAC takes keys of any length.
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC accepts any key");
        mac.update(&(scope.len() as u64).to_be_bytes());
        mac.update(scope.as_bytes());
        mac.update(cursor);
        let full = mac.finalize().into_bytes();
        let mut out = [0u8; MAC_BYTES];
        out.copy_from_slice(&full[..MAC_BYTES]);
        out
    }

    pub fn seal(&self, scope: &str, cursor: &[u8]) -> String {
        let mut bytes = cursor.to_vec();
        bytes.extend_from_slice(&self.mac(scope, cursor));
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// Trims `rows` (fetched with [`PageSize::fetch`]) to one page and
    /// returns the token of the next page (empty on the last one), sealing
    /// the cursor of the page's last row.
    pub fn next_page<T>(
        &self,
        scope: &str,
        rows: &mut Vec<T>,
        size: PageSize,
        cursor: impl Fn(&T) -> Vec<u8>,
    ) -> String {
        let size = size.get() as usize;
        if rows.len() <= size {
            return String::new();
        }
        rows.truncate(size);
        rows.last()
            .map(|row| self.seal(scope, &cursor(row)))
            .unwrap_or_default()
    }

    /// The UUID cursor in `token` (keyset on a UUIDv7 id), or `None` for the
    /// first page.
    pub fn open_uuid(&self, scope: &str, token: &str) -> Result<Option<uuid::Uuid>> {
        self.open(scope, token)?
            .map(|cursor| {
                uuid::Uuid::from_slice(&cursor)
                    .map_err(|_| Error::invalid("page_token", "malformed"))
            })
            .transpose()
    }

    /// The cursor in `token`, or `None` for the first page.
    pub fn open(&self, scope: &str, token: &str) -> Result<Option<Vec<u8>>> {
        if token.is_empty() {
            return Ok(None);
        }
        let invalid = || Error::invalid("page_token", "malformed or not issued for this request");
        if token.len() > MAX_TOKEN_CHARS {
            return Err(invalid());
        }
        let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid())?;
        if bytes.len() < MAC_BYTES {
            return Err(invalid());
        }
        let (cursor, mac) = bytes.split_at(bytes.len() - MAC_BYTES);
        let expected = self.mac(scope, cursor);
        // Constant time: a MAC compared byte by byte leaks how much matched.
        let diff = expected
            .iter()
            .zip(mac)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if diff != 0 {
            return Err(invalid());
        }
        Ok(Some(cursor.to_vec()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(tokens: &PageTokens, token: &str) -> bool {
        matches!(tokens.open("scope", token), Err(Error::InvalidArgument(_)))
    }

    #[test]
    fn a_sealed_cursor_opens_only_untouched_and_in_its_scope() {
        let tokens = PageTokens::new(b"key");
        let token = tokens.seal("scope", b"cursor");
        assert_eq!(
            tokens.open("scope", &token).unwrap(),
            Some(b"cursor".to_vec())
        );
        assert!(matches!(
            tokens.open("other", &token),
            Err(Error::InvalidArgument(_))
        ));
        // Two MAC bytes changed by the same bits: a comparison that let
        // differences cancel out would take it.
        let mut bytes = URL_SAFE_NO_PAD.decode(&token).unwrap();
        let n = bytes.len();
        bytes[n - 1] ^= 1;
        bytes[n - 2] ^= 1;
        assert!(refused(&tokens, &URL_SAFE_NO_PAD.encode(&bytes)));
    }

    #[test]
    fn short_long_and_undecodable_tokens_are_refused_not_panics() {
        let tokens = PageTokens::new(b"key");
        // 3 and 15 bytes: shorter than a MAC.
        for short in ["AAAA", "AAAAAAAAAAAAAAAAAAAA"] {
            assert!(refused(&tokens, short), "{short:?}");
        }
        assert!(refused(&tokens, &"A".repeat(MAX_TOKEN_CHARS + 1)));
        assert!(refused(&tokens, "not base64!"));
        assert_eq!(
            tokens.open("scope", "").unwrap(),
            None,
            "empty: the first page"
        );
    }
}
