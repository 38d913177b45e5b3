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
    let app = spawn_app().await;
    let login = app.user("hash@example.com").await;
    let rotated = refresh(&app, &login.refresh_token).await.unwrap();
    let hashes = app.db.bytes("SELECT token_hash FROM refresh_tokens").await;
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

/// A client whose `user-agent` says `agent`.
async fn client_as(
    app: &TestApp,
    agent: &str,
) -> pb::auth_service_client::AuthServiceClient<tonic::transport::Channel> {
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", app.addr))
        .unwrap()
        .user_agent(agent)
        .unwrap()
        .connect()
        .await
        .unwrap();
    pb::auth_service_client::AuthServiceClient::new(channel)
}

async fn login_as(app: &TestApp, agent: &str, email: &str) -> pb::LoginResponse {
    client_as(app, agent)
        .await
        .login(pb::LoginRequest {
            email: email.to_owned(),
            password: PASSWORD.to_owned(),
        })
        .await
        .unwrap()
        .into_inner()
}

async fn sessions(app: &TestApp, token: &str) -> Vec<pb::Session> {
    app.auth()
        .list_sessions(bearer(pb::ListSessionsRequest::default(), token))
        .await
        .unwrap()
        .into_inner()
        .sessions
}

async fn active(app: &TestApp, token: &str) -> bool {
    app.auth()
        .validate_token(pb::ValidateTokenRequest {
            access_token: token.to_owned(),
        })
        .await
        .unwrap()
        .into_inner()
        .active
}

/// A person sees their sessions (where from, which is this one) and ends
/// one, all others, or all: each ended session's refresh token and access
/// token stop working, the others go on.
#[tokio::test]
async fn a_person_sees_and_ends_their_sessions() {
    let app = spawn_app().await;
    app.register("sal@example.com").await;
    let laptop = login_as(&app, "laptop/2.0", "sal@example.com").await;
    let phone = login_as(&app, "phone/1.0", "sal@example.com").await;
    let tablet = login_as(&app, "tablet/3.0", "sal@example.com").await;
    // Refreshed from the phone: its session shows when it was last used.
    let phone = client_as(&app, "phone/1.0")
        .await
        .refresh_token(pb::RefreshTokenRequest {
            refresh_token: phone.refresh_token,
        })
        .await
        .unwrap()
        .into_inner();

    let seen = sessions(&app, &laptop.access_token).await;
    assert_eq!(seen.len(), 3);
    let current: Vec<&pb::Session> = seen.iter().filter(|s| s.current).collect();
    assert_eq!(current.len(), 1);
    assert!(current[0].user_agent.contains("laptop/2.0"), "{current:?}");
    assert_eq!(current[0].client_address, "127.0.0.1");
    assert!(current[0].last_used_at.is_none());
    // Newest first.
    assert!(seen[0].user_agent.contains("tablet/3.0"));
    assert!(seen[1].user_agent.contains("phone/1.0") && seen[1].last_used_at.is_some());
    let phone_session = seen[1].id.clone();

    // Another person cannot end Sal's session, nor see it exists.
    let eve = app.user("eve@example.com").await;
    assert_error(
        app.auth()
            .revoke_session(bearer(
                pb::RevokeSessionRequest {
                    session_id: phone_session.clone(),
                },
                &eve.access_token,
            ))
            .await,
        Code::NotFound,
        "NOT_FOUND",
    );
    assert!(active(&app, &phone.access_token).await);

    // Sal ends the phone's session from the laptop.
    app.auth()
        .revoke_session(bearer(
            pb::RevokeSessionRequest {
                session_id: phone_session.clone(),
            },
            &laptop.access_token,
        ))
        .await
        .unwrap();
    assert!(
        !active(&app, &phone.access_token).await,
        "its access token is revoked"
    );
    assert_error(
        refresh(&app, &phone.refresh_token).await,
        Code::Unauthenticated,
        "INVALID_REFRESH_TOKEN",
    );
    assert!(active(&app, &laptop.access_token).await && active(&app, &tablet.access_token).await);
    assert_error(
        app.auth()
            .revoke_session(bearer(
                pb::RevokeSessionRequest {
                    session_id: phone_session,
                },
                &laptop.access_token,
            ))
            .await,
        Code::NotFound,
        "NOT_FOUND",
    );

    // All others: the tablet ends, the laptop stays and still refreshes.
    let ended = app
        .auth()
        .revoke_all_sessions(bearer(
            pb::RevokeAllSessionsRequest { keep_current: true },
            &laptop.access_token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ended.revoked_sessions, 1);
    assert!(!active(&app, &tablet.access_token).await);
    assert!(active(&app, &laptop.access_token).await);
    let laptop = refresh(&app, &laptop.refresh_token).await.unwrap();
    assert_eq!(sessions(&app, &laptop.access_token).await.len(), 1);

    // All: the laptop's own token ends too.
    app.auth()
        .revoke_all_sessions(bearer(
            pb::RevokeAllSessionsRequest::default(),
            &laptop.access_token,
        ))
        .await
        .unwrap();
    assert!(!active(&app, &laptop.access_token).await);
    assert_error(
        refresh(&app, &laptop.refresh_token).await,
        Code::Unauthenticated,
        "INVALID_REFRESH_TOKEN",
    );
    assert!(active(&app, &eve.access_token).await, "nobody else's");

    let admin = app.admin().await.access_token;
    assert_eq!(app.events(&admin, "session.revoked").await.len(), 1);
    assert_eq!(app.events(&admin, "session.all_revoked").await.len(), 2);
}

/// An admin sees and ends any user's sessions.
#[tokio::test]
async fn an_admin_ends_anyones_sessions() {
    let app = spawn_app().await;
    let admin = app.admin().await.access_token;
    let kim = app.user("kim@example.com").await;
    let kim_id = kim.user.clone().unwrap().id;
    let second = app.login("kim@example.com", PASSWORD).await.unwrap();
    let listed = app
        .users()
        .list_user_sessions(bearer(
            pb::ListUserSessionsRequest {
                user_id: kim_id.clone(),
                page_size: 1,
                ..Default::default()
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.sessions.len(), 1, "paged");
    assert!(!listed.next_page_token.is_empty());
    assert!(!listed.sessions[0].current, "not the admin's session");
    app.users()
        .revoke_user_session(bearer(
            pb::RevokeUserSessionRequest {
                user_id: kim_id.clone(),
                session_id: listed.sessions[0].id.clone(),
            },
            &admin,
        ))
        .await
        .unwrap();
    assert!(
        !active(&app, &second.access_token).await,
        "the newest session ended"
    );
    assert!(active(&app, &kim.access_token).await);
    let ended = app
        .users()
        .revoke_all_user_sessions(bearer(
            pb::RevokeAllUserSessionsRequest {
                user_id: kim_id.clone(),
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ended.revoked_sessions, 1);
    assert!(!active(&app, &kim.access_token).await);
    assert_error(
        app.users()
            .list_user_sessions(bearer(
                pb::ListUserSessionsRequest {
                    user_id: uuid::Uuid::now_v7().to_string(),
                    ..Default::default()
                },
                &admin,
            ))
            .await,
        Code::NotFound,
        "NOT_FOUND",
    );
}
