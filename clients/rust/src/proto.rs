//! The stubs and messages generated from `proto/` (clients only).
#![allow(
    missing_debug_implementations,
    unreachable_pub,
    clippy::all,
    clippy::pedantic
)]

pub mod auth {
    pub mod v1 {
        tonic::include_proto!("docverify.auth.v1");
    }
}

pub mod document {
    pub mod v1 {
        tonic::include_proto!("docverify.document.v1");
    }
}

pub mod audit {
    pub mod v1 {
        tonic::include_proto!("docverify.audit.v1");
    }
}
