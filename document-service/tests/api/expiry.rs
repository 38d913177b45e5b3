//! ACCESS_TOKEN_TTL and REFRESH_TOKEN_TTL end to end: both services share
//! one manual clock, so expiry is tested by moving time, not by waiting.

use std::time::Duration;

use document_service::TokenValidation;
use shared::proto::document::v1::ListDocumentsRequest;
use tonic::Code;

use crate::helpers::*;

#[tokio::test]
async fn access_and_refresh_tokens_expire_at_their_configured_ttls() {
    let auth = auth::spawn_app_with(|c| {
        c.access_token_ttl = Duration::from_secs(120);
        c.refresh_token_ttl = Duration::from_secs(3600);
    })
    .await;
    let mut config = doc_config(&auth, TokenValidation::Local);
    config.clock = auth.clock.clock();
    let docs = spawn_docs(config).await;
    let list = |token: String| {
        let mut documents = docs.documents();
        async move {
            documents
                .list_documents(bearer(ListDocumentsRequest::default(), &token))
                .await
                .map(|_| ())
        }
    };

    let login = auth.user("ttl@example.com").await;
    assert_eq!(login.expires_in, 120, "expires_in reports ACCESS_TOKEN_TTL");
    list(login.access_token.clone()).await.unwrap();

    // Past the TTL and the 30 s leeway: refused by both services.
    auth.clock.advance(Duration::from_secs(120 + 31));
    assert_error(
        list(login.access_token.clone()).await,
        Code::Unauthenticated,
        "INVALID_TOKEN",
    );
    assert_error(
        auth.me(&login.access_token).await,
        Code::Unauthenticated,
        "INVALID_TOKEN",
    );
    // The refresh token still works and its access token is accepted.
    let refreshed = auth::refresh(&auth, &login.refresh_token).await.unwrap();
    list(refreshed.access_token.clone()).await.unwrap();

    // Within the refresh TTL (counted from the rotation) it rotates again;
    // past it, it is refused.
    auth.clock.advance(Duration::from_secs(3599));
    let again = auth::refresh(&auth, &refreshed.refresh_token)
        .await
        .unwrap();
    auth.clock.advance(Duration::from_secs(3601));
    assert_error(
        auth::refresh(&auth, &again.refresh_token).await,
        Code::Unauthenticated,
        "INVALID_REFRESH_TOKEN",
    );
}
