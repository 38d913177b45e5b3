//! Code generated from `proto/`, and the descriptor set that reflection serves.
#![allow(missing_debug_implementations, clippy::all, clippy::pedantic)]

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

/// Every docverify service, message and its imports, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("docverify_descriptor");
