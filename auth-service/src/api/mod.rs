//! auth-service's RPCs. [`auth`] and [`users`] implement the two gRPC
//! services: each method parses its request into a typed command (one
//! `TryFrom` that reports every bad field) and hands it to the function
//! named for the RPC. RPCs with more than a few lines of logic have a file
//! of their own, named for the RPC.

pub(crate) mod auth;
mod change_password;
mod login;
mod logout;
mod refresh_token;
mod register;
pub(crate) mod service_accounts;
mod sessions;
pub(crate) mod users;
