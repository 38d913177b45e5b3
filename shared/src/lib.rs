//! What both docverify services share: the gRPC contract, the policy table,
//! the identity layer, the one error mapping, the audit trail and the storage
//! helpers. See `shared/DESIGN.md` for the invariants these modules keep.

pub mod audit;
mod catalogue;
pub mod cli;
pub mod client;
pub mod clock;
pub mod codec;
pub mod config;
pub mod db;
pub mod error;
pub mod identity;
pub mod layer;
pub mod metrics;
pub mod page;
pub mod policy;
pub mod proto;
pub mod revocation;
pub mod server;
pub mod service;
pub mod telemetry;
pub mod token;
pub mod validate;

pub use error::{Error, Reason, Result};
