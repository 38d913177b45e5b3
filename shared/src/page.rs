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

/// Validates an AIP-158 page size.
pub fn page_size(raw: i32) -> Result<u32> {
    match raw {
        0 => Ok(DEFAULT_PAGE_SIZE),
        n if n < 0 => Err(Error::invalid("page_size", "must not be negative")),
        n => Ok(n.unsigned_abs().min(MAX_PAGE_SIZE)),
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
