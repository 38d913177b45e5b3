//! document-service's RPCs. [`documents`] implements the gRPC service: each
//! method parses its request into a typed command (one `TryFrom` that
//! reports every bad field) and hands it to the function named for the RPC.
//! RPCs with more than a few lines of logic have a file of their own, named
//! for the RPC.

mod delete;
pub(crate) mod documents;
mod download;
mod list;
mod review;
mod upload;
