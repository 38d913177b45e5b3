//! What the services' black-box tests share, kept out of the production
//! crates (a dev-dependency of each test suite):
//!
//! - [`db`]: a fresh, empty database per test (SQLite, or PostgreSQL when
//!   `DOCVERIFY_TEST_POSTGRES` names a server), dropped afterwards.
//! - [`auth`]: the real auth-service on port 0 with a known signing key,
//!   a manual clock and a bootstrap admin, and its clients.
//! - [`grpc`]: calling as a client would, and asserting on the answers.
//! - [`process`]: the service binaries as child processes.
//! - [`proxy`]: a TCP proxy whose connections a test cuts.
//! - [`served`]: a service running in the test's process, and its trail.
// Tests wait for real servers in real time.
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed step fails the test

pub mod auth;
pub mod db;
pub mod grpc;
pub mod process;
pub mod proxy;
pub mod served;

pub use db::{POSTGRES_ENV, TestDb};
pub use grpc::{assert_error, bearer, concurrently, connect_when_ready, http1, violated_fields};
pub use process::Process;
pub use proxy::Proxy;
pub use served::{Served, audit_events, verified_log};

/// Prints a measured figure where the test run's output shows it, passing
/// tests included (straight to stderr: the harness captures only
/// `eprintln!`), so that CI's log carries every figure a test asserts on.
pub fn measured(figure: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "MEASURED: {figure}");
}
