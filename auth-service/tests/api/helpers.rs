//! The shared test kit, as auth-service's tests use it.

pub(crate) use testkit::{assert_error, auth::*, bearer, concurrently, violated_fields};
