//! document-service over the wire, beside a real auth-service: one test
//! binary. Each test starts both services on port 0 with fresh databases:
//! SQLite by default, PostgreSQL when DOCVERIFY_TEST_POSTGRES is set.

mod audit;
mod helpers;
mod keys;
mod rbac;
mod story;
mod uploads;
mod workflow;
