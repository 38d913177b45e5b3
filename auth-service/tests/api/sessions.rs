use tonic::Code;

use crate::helpers::*;
use shared::proto::auth::v1 as pb;

#[tokio::test]
async fn refresh_rotates_and_reuse_revokes_the_family() {
    let app = spawn_app().await;
    let first = app.user("hana@example.com").await;
    let second = refresh(&app, &first.refresh_token).await.unwrap();
    assert_ne!(second.refresh_token, first.refresh_token);
    app.me(&second.access_token).await.unwrap();
    let third = refresh(&app, &second.refresh_token).await.unwrap();

    // Replaying a spent token is theft: the whole family dies, newest included.
    assert_error(
        refresh(&app, &first.refresh_token).await,
        Code::Unauthenticated,
        "INVALID_REFRESH_TOKEN",
    );
    assert_error(
        refresh(&app, &third.refresh_token).await,
        Code::Unauthenticated,
        "INVALID_REFRESH_TOKEN",
    );

    // Another login is another family, unaffected.
    let other = app.login("hana@example.com", PASSWORD).await.unwrap();
    refresh(&app, &other.refresh_token).await.unwrap();

    let admin = app.admin().await;
    let reuse = app
        .events(&admin.access_token, "token.reuse_detected")
        .await;
    assert_eq!(reuse.len(), 1);
    assert_eq!(
        reuse[0].outcome,
        shared::proto::audit::v1::AuditOutcome::Denied as i32
    );
    assert_eq!(
        app.events(&admin.access_token, "token.refreshed")
            .await
            .len(),
        3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_uses_of_one_token_have_one_winner() {
    let app = spawn_app().await;
    let login = app.user("ivan@example.com").await;
    let attempts = (0..8).map(|_| {
        let mut client = app.auth();
        let token = login.refresh_token.clone();
        async move {
            client
                .refresh_token(pb::RefreshTokenRequest {
                    refresh_token: token,
                })
                .await
        }
    });
    let results = concurrently(attempts).await;
    let winners: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(winners.len(), 1, "exactly one use succeeds");
    // The losers took the reuse path: the winner's new token is revoked too.
    let newest = winners[0].get_ref().refresh_token.clone();
    assert_error(
        refresh(&app, &newest).await,
        Code::Unauthenticated,
        "INVALID_REFRESH_TOKEN",
    );
}

#[tokio::test]
async fn logout_revokes_the_family() {
    let app = spawn_app().await;
    let login = app.user("judy@example.com").await;
    let other_device = app.login("judy@example.com", PASSWORD).await.unwrap();
    let rotated = refresh(&app, &login.refresh_token).await.unwrap();
    app.auth()
        .logout(pb::LogoutRequest {
            refresh_token: rotated.refresh_token.clone(),
        })
        .await
        .unwrap();
    assert_error(
        refresh(&app, &rotated.refresh_token).await,
        Code::Unauthenticated,
        "INVALID_REFRESH_TOKEN",
    );
    // Only that session ended: the other device's family lives on.
    refresh(&app, &other_device.refresh_token)
        .await
        .expect("another session survives a logout");
    // Logging out with an unknown token reveals nothing and changes nothing.
    app.auth()
        .logout(pb::LogoutRequest {
            refresh_token: "unknown".into(),
        })
        .await
        .unwrap();
    let admin = app.admin().await;
    assert_eq!(
        app.events(&admin.access_token, "auth.logout").await.len(),
        1
    );
}

#[tokio::test]
async fn refresh_and_access_tokens_are_not_interchangeable() {
    let app = spawn_app().await;
    let login = app.user("karl@example.com").await;
    assert_error(
        app.me(&login.refresh_token).await,
        Code::Unauthenticated,
        "INVALID_TOKEN",
    );
    assert_error(
        refresh(&app, &login.access_token).await,
        Code::Unauthenticated,
        "INVALID_REFRESH_TOKEN",
    );
    assert_error(
        refresh(&app, "").await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
}

#[tokio::test]
async fn change_password_revokes_every_session() {
    let app = spawn_app().await;
    let email = "lena@example.com";
    let first = app.user(email).await;
    let second = app.login(email, PASSWORD).await.unwrap();
    let new_password = "saffron tugboat orbit meadowlark";

    let wrong = app
        .auth()
        .change_password(bearer(
            pb::ChangePasswordRequest {
                current_password: "not my password at all".into(),
                new_password: new_password.into(),
            },
            &first.access_token,
        ))
        .await;
    assert_error(wrong, Code::Unauthenticated, "INVALID_CREDENTIALS");

    app.auth()
        .change_password(bearer(
            pb::ChangePasswordRequest {
                current_password: PASSWORD.into(),
                new_password: new_password.into(),
            },
            &first.access_token,
        ))
        .await
        .unwrap();
    for session in [&first, &second] {
        assert_error(
            refresh(&app, &session.refresh_token).await,
            Code::Unauthenticated,
            "INVALID_REFRESH_TOKEN",
        );
        // auth-service checks the token generation: old access tokens die at once.
        assert_error(
            app.me(&session.access_token).await,
            Code::Unauthenticated,
            "INVALID_TOKEN",
        );
    }
    assert_error(
        app.login(email, PASSWORD).await,
        Code::Unauthenticated,
        "INVALID_CREDENTIALS",
    );
    let fresh = app.login(email, new_password).await.unwrap();
    app.me(&fresh.access_token).await.unwrap();

    let validate = app
        .auth()
        .validate_token(pb::ValidateTokenRequest {
            access_token: first.access_token.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        !validate.active,
        "a token from before the password change is inactive"
    );
    // Both sessions' live refresh tokens were revoked, not only outlived by
    // the session epoch (mutation testing found that nothing checked it).
    let admin = app.admin().await;
    let changed = app
        .events(&admin.access_token, "user.password_changed")
        .await
        .into_iter()
        .find(|e| e.details_json.contains("revoked_refresh_tokens"))
        .expect("the successful change is audited");
    let details: serde_json::Value = serde_json::from_str(&changed.details_json).unwrap();
    assert_eq!(details["revoked_refresh_tokens"], 2, "{details}");
}

/// Refresh tokens are stored only as SHA-256 hashes: the table holds the
/// hash of each token handed out and never the token itself (read straight
/// from the database, as someone with a copy of it would).
#[tokio::test]
async fn refresh_tokens_are_stored_only_as_hashes() {
    use sha2::{Digest, Sha256};
    use sqlx::Connection;
    let app = spawn_app().await;
    let login = app.user("hash@example.com").await;
    let rotated = refresh(&app, &login.refresh_token).await.unwrap();
    let query = "SELECT token_hash FROM refresh_tokens";
    let hashes: Vec<Vec<u8>> = if app.db.is_postgres() {
        let mut c = sqlx::PgConnection::connect(&app.db.url).await.unwrap();
        sqlx::query_scalar(query).fetch_all(&mut c).await.unwrap()
    } else {
        let mut c = sqlx::SqliteConnection::connect(&app.db.url).await.unwrap();
        sqlx::query_scalar(query).fetch_all(&mut c).await.unwrap()
    };
    assert_eq!(hashes.len(), 2, "the first token and its successor");
    for token in [&login.refresh_token, &rotated.refresh_token] {
        let digest = Sha256::digest(token.as_bytes()).to_vec();
        assert!(hashes.contains(&digest), "the hash of each token is kept");
        for stored in &hashes {
            assert!(
                !String::from_utf8_lossy(stored).contains(token.as_str()),
                "a token is stored in the clear"
            );
        }
    }
}
