//! The RBAC matrix: every RPC of both services, for every role and for no
//! token at all, against what the policy table says, checked over the wire.
//! Each call sends an empty message: a refusal comes from the layer before
//! any validation, and anything else proves the layer let the call through.

use std::str::FromStr;

use bytes::{Buf, BufMut};
use document_service::TokenValidation;
use shared::policy::{self, Access, Permissions, Role};
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

async fn matrix(mode: TokenValidation) {
    let stack = spawn_stack(mode).await;
    let mut callers: Vec<(String, Option<Role>, Option<String>)> =
        vec![("anonymous".into(), None, None)];
    for role in Role::ALL {
        let token = if role == Role::Admin {
            stack.admin().await
        } else {
            let email = format!("{}@example.com", role.as_str());
            stack.user_with_roles(&email, &[role.as_str()]).await.0
        };
        callers.push((role.as_str().to_owned(), Some(role), Some(token)));
    }

    let mut checked = 0;
    for path in policy::served_methods() {
        let access = policy::access(&path).unwrap();
        let servers: Vec<&Channel> = if path.starts_with("/docverify.auth.") {
            vec![&stack.auth.channel]
        } else if path.starts_with("/docverify.document.") {
            vec![&stack.docs.channel]
        } else {
            vec![&stack.auth.channel, &stack.docs.channel]
        };
        for server in servers {
            for (name, role, token) in &callers {
                let code = call(server, &path, token.as_deref()).await;
                let expected_refusal = match (access, role) {
                    (Access::Public, _) => None,
                    (_, None) => Some(Code::Unauthenticated),
                    (access, Some(role)) if !access.allows(Permissions::of_roles(&[*role])) => {
                        Some(Code::PermissionDenied)
                    }
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
    assert!(checked >= 5 * 27, "{checked} calls checked");
}

#[tokio::test]
async fn rbac_matrix_with_local_verification() {
    matrix(TokenValidation::Local).await;
}

#[tokio::test]
async fn rbac_matrix_with_remote_validation() {
    matrix(TokenValidation::Remote).await;
}
