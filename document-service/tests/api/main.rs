//! document-service over the wire, beside a real auth-service: one test
//! binary. Each test starts both services on port 0 with fresh databases:
//! SQLite by default, PostgreSQL when DOCVERIFY_TEST_POSTGRES is set.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed step fails the test
#![allow(clippy::disallowed_methods)] // tests wait for real servers in real time

mod audit;
mod bad_input;
mod compose;
mod deployment;
mod expiry;
mod faults;
mod helpers;
mod keys;
mod kubernetes;
mod process;
mod races;
pub mod rbac;
mod readme;
mod reflection;
mod revocation;
mod story;
mod traces;
mod uploads;
mod workflow;
