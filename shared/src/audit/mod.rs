//! The audit trail: append-only, hash-chained, written in the same
//! transaction as the change it records.
//!
//! Threat model: someone with database access edits, inserts or deletes audit
//! rows to hide what was done. Triggers refuse UPDATE, DELETE (and, in
//! PostgreSQL, TRUNCATE) on `audit_events`, and the service refuses to start
//! when they are missing. Each row's `hash` is SHA-256 over the previous
//! row's hash and this row's fields in a fixed, length-prefixed encoding, so
//! an edit, insertion or deletion that got past the triggers breaks the chain
//! at that row, and `VerifyAuditChain` names it. Writers serialise on the
//! single-row `audit_head` (an UPDATE takes its row lock), which keeps the
//! sequence gapless and the chain linear under concurrency; a rolled-back
//! transaction takes its event and its sequence number with it.

mod action;
mod api;
mod event;
mod store;

pub use action::Action;
pub use api::AuditApi;
pub use event::{Actor, Event, Outcome};
pub use store::{ChainReport, append, check_triggers, hex, record, verify_chain};
