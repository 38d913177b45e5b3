//! Bad input on every RPC: undecodable messages, strings that are not UTF-8,
//! NUL bytes, junk in metadata, and random requests. The answer is always a
//! clear client error, never INTERNAL and never a panic.

use document_service::TokenValidation;
use proptest::{prelude::*, strategy::ValueTree, test_runner::TestRunner};
use shared::{
    policy,
    proto::{auth::v1 as auth_pb, document::v1 as pb},
};
use tonic::{Code, metadata::MetadataValue};

use crate::{helpers::*, rbac::call_with};

#[tokio::test]
async fn undecodable_requests_are_invalid_argument_on_every_rpc() {
    let stack = spawn_stack(TokenValidation::Local).await;
    let admin = stack.admin().await;
    let service = stack.auth.service_token().await;
    // Field 1, length-delimited, two bytes that are not UTF-8.
    let not_utf8 = vec![0x0a, 0x02, 0xff, 0xfe];
    // A length that runs past the end of the message.
    let truncated = vec![0x0a, 0x7f, 0x41];
    for path in policy::served_methods()
        .into_iter()
        .filter(|p| p.starts_with("/docverify."))
    {
        let channel = if path.starts_with("/docverify.auth.") {
            &stack.auth.channel
        } else {
            &stack.docs.channel
        };
        for (what, body) in [("not UTF-8", &not_utf8), ("truncated", &truncated)] {
            // The feed is for services only: the admin would be refused first.
            let token = if path.starts_with("/docverify.auth.v1.RevocationService/") {
                &service
            } else {
                &admin
            };
            let code = call_with(channel, &path, Some(token), body.clone()).await;
            assert!(
                !matches!(code, Code::Internal | Code::Unknown),
                "{path} with a {what} message: {code:?}"
            );
            // Messages without fields skip unknown data; all others refuse it.
            let empty_message = [
                "GetCurrentUser",
                "ListSigningKeys",
                "VerifyAuditChain",
                "GetCheckpoint",
            ]
            .iter()
            .any(|m| path.ends_with(m));
            if !empty_message || what == "truncated" {
                assert_eq!(code, Code::InvalidArgument, "{path} with a {what} message");
            }
        }
    }
}

#[tokio::test]
async fn nul_bytes_and_junk_metadata() {
    let stack = spawn_stack(TokenValidation::Local).await;
    let (token, _) = stack
        .user_with_roles("nul@example.com", &["verifier"])
        .await;
    let register = stack
        .auth
        .auth()
        .register(auth_pb::RegisterRequest {
            email: "a\0b@example.com".into(),
            password: "quartz\0violin meadow lantern".into(),
            display_name: "Nul\0Name".into(),
        })
        .await;
    let status = assert_error(register, Code::InvalidArgument, "INVALID_ARGUMENT");
    let mut fields = violated_fields(&status);
    fields.sort();
    assert_eq!(fields, vec!["display_name", "email", "password"]);

    let upload = upload(&stack.docs, &token, "title\0with nul", b"x", 1024).await;
    let status = assert_error(upload, Code::InvalidArgument, "INVALID_ARGUMENT");
    assert_eq!(
        violated_fields(&status),
        vec!["metadata.title", "metadata.filename"]
    );
    let reject = stack
        .docs
        .documents()
        .reject_document(bearer(
            pb::RejectDocumentRequest {
                document_id: uuid::Uuid::now_v7().to_string(),
                reason: "bad\0reason".into(),
            },
            &token,
        ))
        .await;
    assert_eq!(
        violated_fields(&assert_error(
            reject,
            Code::InvalidArgument,
            "INVALID_ARGUMENT"
        )),
        vec!["reason"]
    );

    // An authorization header that is not text is no credential at all.
    let mut request = tonic::Request::new(pb::ListDocumentsRequest::default());
    request.metadata_mut().insert(
        "authorization",
        MetadataValue::try_from(&b"Bearer \xff\xfe"[..]).unwrap(),
    );
    assert_error(
        stack.docs.documents().list_documents(request).await,
        Code::Unauthenticated,
        "MISSING_TOKEN",
    );
    // A request id that is not sane is replaced, not echoed.
    let mut request = bearer(pb::ListDocumentsRequest::default(), &token);
    request.metadata_mut().insert(
        "x-request-id",
        MetadataValue::try_from(&b"\xffid with spaces"[..]).unwrap(),
    );
    let response = stack
        .docs
        .documents()
        .list_documents(request)
        .await
        .unwrap();
    let echoed = response
        .metadata()
        .get("x-request-id")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(echoed.len(), 36, "a fresh UUID: {echoed}");
    let mut request = bearer(pb::ListDocumentsRequest::default(), &token);
    request
        .metadata_mut()
        .insert("x-request-id", "client-chosen-42".parse().unwrap());
    let response = stack
        .docs
        .documents()
        .list_documents(request)
        .await
        .unwrap();
    assert_eq!(
        response.metadata().get("x-request-id").unwrap(),
        "client-chosen-42"
    );
}

/// Random text: empty, huge, control characters, any Unicode.
fn junk() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "\\PC{0,64}",
        ".{0,16}",
        "[\\x00-\\x1f]{1,8}",
        proptest::collection::vec(any::<char>(), 0..300).prop_map(|c| c.into_iter().collect()),
        Just("x".repeat(10_000)),
    ]
}

#[tokio::test]
async fn random_requests_never_meet_an_internal_error() {
    let stack = spawn_stack(TokenValidation::Local).await;
    let (token, _) = stack
        .user_with_roles("fuzzed@example.com", &["verifier"])
        .await;
    let admin = stack.admin().await;
    let mut runner = TestRunner::deterministic();
    let strategy = (junk(), junk(), junk(), any::<i32>(), any::<i32>());
    for _ in 0..48 {
        let (a, b, c, n, m) = strategy.new_tree(&mut runner).unwrap().current();
        let codes = [
            stack
                .auth
                .auth()
                .register(auth_pb::RegisterRequest {
                    email: a.clone(),
                    password: b.clone(),
                    display_name: c.clone(),
                })
                .await
                .err()
                .map(|s| s.code()),
            stack
                .auth
                .auth()
                .login(auth_pb::LoginRequest {
                    email: a.clone(),
                    password: b.clone(),
                })
                .await
                .err()
                .map(|s| s.code()),
            stack
                .auth
                .auth()
                .refresh_token(auth_pb::RefreshTokenRequest {
                    refresh_token: a.clone(),
                })
                .await
                .err()
                .map(|s| s.code()),
            stack
                .auth
                .auth()
                .validate_token(auth_pb::ValidateTokenRequest {
                    access_token: b.clone(),
                })
                .await
                .err()
                .map(|s| s.code()),
            stack
                .auth
                .users()
                .list_users(bearer(
                    auth_pb::ListUsersRequest {
                        page_size: n,
                        page_token: c.clone(),
                    },
                    &admin,
                ))
                .await
                .err()
                .map(|s| s.code()),
            stack
                .auth
                .users()
                .set_user_roles(bearer(
                    auth_pb::SetUserRolesRequest {
                        user_id: a.clone(),
                        roles: vec![b.clone()],
                    },
                    &admin,
                ))
                .await
                .err()
                .map(|s| s.code()),
            stack
                .docs
                .documents()
                .list_documents(bearer(
                    pb::ListDocumentsRequest {
                        page_size: n,
                        page_token: a.clone(),
                        status: m,
                        owner_id: b.clone(),
                    },
                    &token,
                ))
                .await
                .err()
                .map(|s| s.code()),
            stack
                .docs
                .documents()
                .reject_document(bearer(
                    pb::RejectDocumentRequest {
                        document_id: a.clone(),
                        reason: c.clone(),
                    },
                    &token,
                ))
                .await
                .err()
                .map(|s| s.code()),
            upload(&stack.docs, &token, &a, c.as_bytes(), 512)
                .await
                .err()
                .map(|s| s.code()),
        ];
        for code in codes.into_iter().flatten() {
            assert!(
                !matches!(code, Code::Internal | Code::Unknown),
                "{code:?} for {a:?} / {b:?} / {c:?} / {n} / {m}"
            );
        }
    }
}
