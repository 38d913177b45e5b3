//! The audit trail as a transparency log.
//!
//! A request's transaction inserts its event (append-only) and commits: the
//! change and its event are atomic, and no writer waits on another's audit
//! row. A trigger queues the event; the sequencer ([`Log`]) makes queued
//! events leaves of an RFC 9162 Merkle tree in batches and signs a C2SP
//! checkpoint of each new size. Anyone with the log's verifier key can then
//! check one event (an inclusion proof, or a review's receipt) or that the
//! log only grew (a consistency proof) without reading the rest.
//!
//! Threat model: someone with database access edits, inserts or deletes
//! rows to hide what was done. Triggers refuse UPDATE, DELETE (and, in
//! PostgreSQL, TRUNCATE) on every table of the log, and the service refuses
//! to start when they are missing. An edit that gets past them changes a
//! leaf, which `VerifyAuditChain` finds against the stored tree and the
//! signed checkpoints; a rebuilt log needs the signing key, and even then
//! contradicts any checkpoint published off the box before the rewrite.
//!
//! | concept | where |
//! |---|---|
//! | writing an event in the caller's transaction | [`store`] |
//! | tree arithmetic, proofs and their checks | [`merkle`] |
//! | checkpoints as signed notes, verifier keys | [`note`] |
//! | the sequencer, one batch per transaction | [`Log`] (`log.rs`) |
//! | the RPCs | [`AuditApi`] (`api.rs`), the tree recomputed in `verify.rs` |
//! | receipts and the offline tools | [`receipt`], [`Tool`] |

mod action;
mod api;
mod event;
mod log;
pub mod merkle;
pub mod note;
pub mod receipt;
mod store;
mod tool;
mod verify;

pub use action::Action;
pub use api::AuditApi;
pub use event::{Actor, Event, Outcome};
pub use log::{Log, log_name};
pub use store::{append, check_triggers, hex, latest_about, record};
pub use tool::Tool;
