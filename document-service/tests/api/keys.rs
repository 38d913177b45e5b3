use std::time::Duration;

use document_service::TokenValidation;
use shared::proto::document::v1::ListDocumentsRequest;
use tonic::Code;

use crate::helpers::*;

async fn list_code(docs: &DocApp, token: &str) -> Code {
    match docs
        .documents()
        .list_documents(bearer(ListDocumentsRequest::default(), token))
        .await
    {
        Ok(_) => Code::Ok,
        Err(status) => status.code(),
    }
}

#[tokio::test]
async fn fails_closed_until_keys_arrive_then_survives_auth_outage() {
    // An address where nothing listens yet.
    let reserved = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let auth_addr = reserved.local_addr().unwrap();
    drop(reserved);
    let docs = spawn_docs(doc_config(
        format!("http://{auth_addr}"),
        TokenValidation::Local,
    ))
    .await;
    let junk = "eyJhbGciOiJFZERTQSIsInR5cCI6ImF0K2p3dCIsImtpZCI6IngifQ.e30.AA";
    assert_eq!(
        list_code(&docs, junk).await,
        Code::Unavailable,
        "no keys yet: fail closed"
    );

    // auth-service comes up on that address; the keys arrive by themselves.
    let mut auth = auth::spawn_app_on(auth_addr).await;
    let token = auth.user("keys@example.com").await.access_token;
    let mut code = Code::Unavailable;
    for _ in 0..100 {
        code = list_code(&docs, &token).await;
        if code == Code::Ok {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(code, Code::Ok);

    // auth-service goes away: tokens still verify with the cached keys.
    auth.stop().await;
    assert_eq!(list_code(&docs, &token).await, Code::Ok);
    assert_eq!(list_code(&docs, junk).await, Code::Unauthenticated);
}

#[tokio::test]
async fn remote_validation_needs_auth_service() {
    let mut stack = spawn_stack(TokenValidation::Remote).await;
    let login = stack.auth.user("remote@example.com").await;
    assert_eq!(list_code(&stack.docs, &login.access_token).await, Code::Ok);
    // Remote mode sees a disabled user at once.
    let admin = stack.admin().await;
    stack
        .auth
        .users()
        .disable_user(bearer(
            shared::proto::auth::v1::DisableUserRequest {
                user_id: login.user.unwrap().id,
            },
            &admin,
        ))
        .await
        .unwrap();
    assert_eq!(
        list_code(&stack.docs, &login.access_token).await,
        Code::Unauthenticated
    );
    stack.auth.stop().await;
    assert_eq!(list_code(&stack.docs, &admin).await, Code::Unavailable);
}
