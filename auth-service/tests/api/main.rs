//! auth-service over the wire: one test binary (each links the whole world).
//! Every test starts the real service on port 0 with a fresh database:
//! SQLite by default, PostgreSQL when DOCVERIFY_TEST_POSTGRES is set.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed step fails the test
#![allow(clippy::disallowed_methods)] // tests wait for real servers in real time

mod abuse;
mod audit;
mod exhaustion;
mod helpers;
mod login;
mod process;
mod races;
mod register;
mod replicas;
mod revocations;
mod sessions;
mod tokens;
mod users;
