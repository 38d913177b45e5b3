//! What every document-service handler shares.

use std::sync::Arc;

use shared::{audit::Log, clock::Clock, db::Db, page::PageTokens};

#[derive(Debug)]
pub(crate) struct State {
    pub db: Db,
    pub clock: Clock,
    pub page_tokens: PageTokens,
    pub max_document_bytes: u64,
    /// REQUEST_TIMEOUT: a review's wait for its receipt stays within it.
    pub request_timeout: std::time::Duration,
    /// The audit log, for receipts.
    pub audit: Arc<Log>,
}
