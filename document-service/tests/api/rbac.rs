//! The RBAC matrix: every RPC of both services, for every role and for no
//! token at all, checked over the wire against a matrix written out here,
//! apart from the policy table: a wrong entry in the table fails the test
//! (deriving the expectation from the table would pass it). Each call sends
//! an empty message: a refusal comes from the layer before any validation,
//! and anything else proves the layer let the call through.

use std::str::FromStr;

use bytes::{Buf, BufMut};
use document_service::TokenValidation;
use shared::policy::{self, Role};
use tonic::{
    Code, Request, Status,
    codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder},
    transport::Channel,
};

use crate::helpers::*;

/// Passes message bytes through untouched.
#[derive(Debug, Clone, Default)]
struct Raw;

impl Codec for Raw {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = Raw;
    type Decoder = Raw;
    fn encoder(&mut self) -> Raw {
        Raw
    }
    fn decoder(&mut self) -> Raw {
        Raw
    }
}

impl Encoder for Raw {
    type Item = Vec<u8>;
    type Error = Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for Raw {
    type Item = Vec<u8>;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        let bytes = src.copy_to_bytes(src.remaining()).to_vec();
        Ok(Some(bytes))
    }
}

/// The code of calling `path` with an empty message (first response only).
async fn call(channel: &Channel, path: &str, token: Option<&str>) -> Code {
    call_with(channel, path, token, Vec::new()).await
}

/// The code of calling `path` with `message` as the raw request bytes.
pub async fn call_with(
    channel: &Channel,
    path: &str,
    token: Option<&str>,
    message: Vec<u8>,
) -> Code {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await.unwrap();
    let mut request = Request::new(tokio_stream::once(message));
    if let Some(token) = token {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    let path = http::uri::PathAndQuery::from_str(path).unwrap();
    match grpc.streaming(request, path, Raw).await {
        Err(status) => status.code(),
        Ok(response) => match response.into_inner().message().await {
            Ok(_) => Code::Ok,
            Err(status) => status.code(),
        },
    }
}

/// Callers, in the order of each row's letters.
const CALLERS: [&str; 6] = [
    "anonymous",
    "user",
    "verifier",
    "auditor",
    "admin",
    "service",
];

/// What each caller gets: `p` passes the layer, `-` is UNAUTHENTICATED,
/// `x` is PERMISSION_DENIED. `service` is a service account's token
/// (IssueServiceToken), with the `service` role.
const EXPECTED: &[(&str, &str)] = &[
    ("/docverify.auth.v1.AuthService/Register", "pppppp"),
    ("/docverify.auth.v1.AuthService/Login", "pppppp"),
    ("/docverify.auth.v1.AuthService/RefreshToken", "pppppp"),
    ("/docverify.auth.v1.AuthService/Logout", "pppppp"),
    ("/docverify.auth.v1.AuthService/ValidateToken", "pppppp"),
    ("/docverify.auth.v1.AuthService/ListSigningKeys", "pppppp"),
    ("/docverify.auth.v1.AuthService/GetCurrentUser", "-ppppp"),
    ("/docverify.auth.v1.AuthService/ChangePassword", "-ppppp"),
    ("/docverify.auth.v1.UserService/ListUsers", "-xxppx"),
    ("/docverify.auth.v1.UserService/GetUser", "-xxppx"),
    ("/docverify.auth.v1.UserService/SetUserRoles", "-xxxpx"),
    ("/docverify.auth.v1.UserService/DisableUser", "-xxxpx"),
    ("/docverify.auth.v1.UserService/EnableUser", "-xxxpx"),
    ("/docverify.auth.v1.UserService/UnlockUser", "-xxxpx"),
    (
        "/docverify.document.v1.DocumentService/UploadDocument",
        "-ppxpx",
    ),
    (
        "/docverify.document.v1.DocumentService/GetDocument",
        "-ppppx",
    ),
    (
        "/docverify.document.v1.DocumentService/DownloadDocument",
        "-ppppx",
    ),
    (
        "/docverify.document.v1.DocumentService/ListDocuments",
        "-ppppx",
    ),
    (
        "/docverify.document.v1.DocumentService/VerifyDocument",
        "-xpxpx",
    ),
    (
        "/docverify.document.v1.DocumentService/RejectDocument",
        "-xpxpx",
    ),
    (
        "/docverify.document.v1.DocumentService/DeleteDocument",
        "-ppxpx",
    ),
    ("/docverify.audit.v1.AuditService/ListAuditEvents", "-xxppx"),
    (
        "/docverify.audit.v1.AuditService/VerifyAuditChain",
        "-xxppx",
    ),
    ("/docverify.audit.v1.AuditService/GetCheckpoint", "pppppp"),
    (
        "/docverify.audit.v1.AuditService/GetInclusionProof",
        "-xxppx",
    ),
    (
        "/docverify.audit.v1.AuditService/GetConsistencyProof",
        "-xxppx",
    ),
    (
        "/docverify.audit.v1.AuditService/WatchAuditEvents",
        "-xxppx",
    ),
    (
        "/docverify.document.v1.DocumentService/GetReceipt",
        "-ppppx",
    ),
    ("/grpc.health.v1.Health/Check", "pppppp"),
    ("/grpc.health.v1.Health/Watch", "pppppp"),
    (
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        "pppppp",
    ),
    (
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        "pppppp",
    ),
    ("/docverify.auth.v1.AuthService/ListSessions", "-ppppp"),
    ("/docverify.auth.v1.AuthService/RevokeSession", "-ppppp"),
    ("/docverify.auth.v1.AuthService/IssueServiceToken", "pppppp"),
    ("/docverify.auth.v1.UserService/ListUserSessions", "-xxxpx"),
    ("/docverify.auth.v1.UserService/RevokeUserSession", "-xxxpx"),
    (
        "/docverify.auth.v1.UserService/RevokeAllUserSessions",
        "-xxxpx",
    ),
    (
        "/docverify.auth.v1.RevocationService/WatchRevocations",
        "-xxxxp",
    ),
    (
        "/docverify.auth.v1.RevocationService/ListRevocationState",
        "-xxxxp",
    ),
    (
        "/docverify.auth.v1.ServiceAccountService/CreateServiceAccount",
        "-xxxpx",
    ),
    (
        "/docverify.auth.v1.ServiceAccountService/ListServiceAccounts",
        "-xxxpx",
    ),
    (
        "/docverify.auth.v1.ServiceAccountService/RotateServiceAccountSecret",
        "-xxxpx",
    ),
    (
        "/docverify.auth.v1.ServiceAccountService/RevokeServiceAccountSecret",
        "-xxxpx",
    ),
    (
        "/docverify.auth.v1.ServiceAccountService/DisableServiceAccount",
        "-xxxpx",
    ),
    // Last: an empty request is a valid one, and it ends every session of
    // the caller, so no later row could use their token.
    ("/docverify.auth.v1.AuthService/RevokeAllSessions", "-ppppp"),
];

#[test]
fn the_pinned_matrix_lists_every_served_rpc_once() {
    let mut pinned: Vec<&str> = EXPECTED.iter().map(|(path, _)| *path).collect();
    pinned.sort_unstable();
    let mut served = policy::served_methods();
    served.sort_unstable();
    assert_eq!(pinned, served, "a new RPC needs its row here");
    let names: Vec<&str> = Role::ALL.iter().map(|r| r.as_str()).collect();
    assert_eq!(CALLERS[1..], names[..], "one column per role");
}

async fn matrix(mode: TokenValidation) {
    let stack = spawn_stack(mode).await;
    let mut callers: Vec<(String, Option<Role>, Option<String>)> =
        vec![("anonymous".into(), None, None)];
    for role in Role::ALL {
        let token = if role == Role::Admin {
            stack.admin().await
        } else if role == Role::Service {
            stack.auth.service_token().await
        } else {
            let email = format!("{}@example.com", role.as_str());
            stack.user_with_roles(&email, &[role.as_str()]).await.0
        };
        callers.push((role.as_str().to_owned(), Some(role), Some(token)));
    }

    let mut checked = 0;
    for (path, row) in EXPECTED {
        let servers: Vec<&Channel> = if path.starts_with("/docverify.auth.") {
            vec![&stack.auth.channel]
        } else if path.starts_with("/docverify.document.") {
            vec![&stack.docs.channel]
        } else {
            vec![&stack.auth.channel, &stack.docs.channel]
        };
        for server in servers {
            for ((name, _, token), expected) in callers.iter().zip(row.chars()) {
                let code = call(server, path, token.as_deref()).await;
                let expected_refusal = match expected {
                    '-' => Some(Code::Unauthenticated),
                    'x' => Some(Code::PermissionDenied),
                    _ => None,
                };
                match expected_refusal {
                    Some(refusal) => assert_eq!(code, refusal, "{name} calling {path}"),
                    None => assert!(
                        !matches!(code, Code::Unauthenticated | Code::PermissionDenied),
                        "{name} calling {path} should pass the layer, got {code:?}"
                    ),
                }
                checked += 1;
            }
        }
    }
    assert!(checked >= 6 * 41, "{checked} calls checked");
}

#[tokio::test]
async fn rbac_matrix_with_local_verification() {
    matrix(TokenValidation::Local).await;
}

#[tokio::test]
async fn rbac_matrix_with_remote_validation() {
    matrix(TokenValidation::Remote).await;
}
