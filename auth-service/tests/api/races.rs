//! Races between security events, with real concurrent clients on both
//! databases. Each test repeats its race for several rounds; the comment of
//! each says how it failed before the fix. The single SQLite writer
//! serialises transactions, so some of these races exist only on PostgreSQL
//! (said where so): there the CI run with DOCVERIFY_TEST_POSTGRES is the one
//! that proves them.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use serde_json::Value;
use shared::proto::auth::v1 as pb;
use tonic::Code;

use crate::helpers::*;

const NEW_PASSWORD: &str = "orchid glacier tambourine nebula";

/// Waits until `done` holds, for at most 20 s.
async fn until(mut done: impl FnMut() -> bool) {
    for _ in 0..2000 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition not reached within 20 s");
}

/// Logins with the old password race a password change (and, every other
/// round, a disable). Before the fix a login read the user, hashed for
/// ~20 ms and minted a refresh token without reading the user again: with six
/// clients, several sessions survived the change in every round, on both
/// databases, and kept refreshing for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_in_flight_do_not_outlive_a_password_change_or_disable() {
    let app = Arc::new(spawn_app().await);
    let admin = app.admin().await;
    for round in 0..6 {
        let email = format!("racer{round}@example.com");
        let owner = app.user(&email).await;
        let stop = Arc::new(AtomicBool::new(false));
        let succeeded = Arc::new(AtomicUsize::new(0));
        let clients = (0..6).map(|_| {
            let (app, email, stop, succeeded) =
                (app.clone(), email.clone(), stop.clone(), succeeded.clone());
            async move {
                let mut sessions = Vec::new();
                while !stop.load(Ordering::SeqCst) && sessions.len() < 200 {
                    match app.login(&email, PASSWORD).await {
                        Ok(login) => {
                            succeeded.fetch_add(1, Ordering::SeqCst);
                            sessions.push(login);
                        }
                        Err(status) if status.code() == Code::ResourceExhausted => {}
                        Err(_) => break,
                    }
                }
                sessions
            }
        });
        let clients: Vec<_> = clients.map(tokio::spawn).collect();
        until(|| succeeded.load(Ordering::SeqCst) >= 6).await;
        if round % 2 == 0 {
            // Six logins in flight hold five claims on the email's throttle
            // at once, which locks it until one of them succeeds: a
            // ChangePassword (a password check too) arriving then is
            // refused for a moment, as a seventh login would be.
            loop {
                let changed = app
                    .auth()
                    .change_password(bearer(
                        pb::ChangePasswordRequest {
                            current_password: PASSWORD.into(),
                            new_password: NEW_PASSWORD.into(),
                        },
                        &owner.access_token,
                    ))
                    .await;
                match changed {
                    Err(status) if status.code() == Code::ResourceExhausted => {
                        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    }
                    changed => {
                        changed.unwrap();
                        break;
                    }
                }
            }
        } else {
            app.users()
                .disable_user(bearer(
                    pb::DisableUserRequest {
                        user_id: owner.user.as_ref().unwrap().id.clone(),
                    },
                    &admin.access_token,
                ))
                .await
                .unwrap();
        }
        stop.store(true, Ordering::SeqCst);
        let mut sessions = Vec::new();
        for client in clients {
            sessions.extend(client.await.unwrap());
        }
        let mut survivors = 0;
        for session in &sessions {
            if refresh(&app, &session.refresh_token).await.is_ok() {
                survivors += 1;
            }
            assert!(app.me(&session.access_token).await.is_err());
        }
        assert_eq!(
            survivors,
            0,
            "round {round}: {survivors} of {} sessions outlived the change",
            sessions.len()
        );
    }
}

/// The holder refreshes in a loop while a replay of a spent token revokes
/// the family. Before the fix, on PostgreSQL, the revoking UPDATE did not
/// see the successor a concurrent refresh inserted and committed just after:
/// the loop kept a live token in most of eight rounds. SQLite's single
/// writer serialises the two, so there it passed before too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_in_flight_does_not_escape_the_revocation_of_its_family() {
    let app = Arc::new(spawn_app().await);
    for round in 0..8 {
        let first = app.user(&format!("looper{round}@example.com")).await;
        let second = refresh(&app, &first.refresh_token).await.unwrap();
        let refreshes = Arc::new(AtomicUsize::new(0));
        let looper = {
            let (app, refreshes) = (app.clone(), refreshes.clone());
            let mut current = second.refresh_token.clone();
            tokio::spawn(async move {
                for _ in 0..500 {
                    match refresh(&app, &current).await {
                        Ok(next) => {
                            current = next.refresh_token;
                            refreshes.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(_) => return (current, true),
                    }
                }
                (current, false)
            })
        };
        until(|| refreshes.load(Ordering::SeqCst) >= 2).await;
        // The replay: the family is revoked, whatever the loop does.
        assert_error(
            refresh(&app, &first.refresh_token).await,
            Code::Unauthenticated,
            "INVALID_REFRESH_TOKEN",
        );
        let (last, stopped) = looper.await.unwrap();
        assert!(
            stopped,
            "round {round}: the loop kept refreshing after the revocation"
        );
        assert_error(
            refresh(&app, &last).await,
            Code::Unauthenticated,
            "INVALID_REFRESH_TOKEN",
        );
    }
}

/// The holder refreshes in a loop while the session is ended from another
/// device (RevokeSession): the loop stops, and no access token it got, the
/// last one included, is still accepted. The family's row lock orders the
/// refresh and the revocation; the session fact covers the access tokens a
/// refresh minted just before. Repeated: the race is on PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_in_flight_does_not_outlive_the_end_of_its_session() {
    let app = Arc::new(spawn_app().await);
    for round in 0..6 {
        let email = format!("ender{round}@example.com");
        let first = app.user(&email).await;
        let other = app.login(&email, PASSWORD).await.unwrap();
        let session = app
            .auth()
            .list_sessions(bearer(
                pb::ListSessionsRequest::default(),
                &first.access_token,
            ))
            .await
            .unwrap()
            .into_inner()
            .sessions
            .into_iter()
            .find(|s| s.current)
            .unwrap()
            .id;
        let refreshes = Arc::new(AtomicUsize::new(0));
        let looper = {
            let (app, refreshes) = (app.clone(), refreshes.clone());
            let (mut current, mut access) =
                (first.refresh_token.clone(), first.access_token.clone());
            tokio::spawn(async move {
                for _ in 0..500 {
                    match refresh(&app, &current).await {
                        Ok(next) => {
                            (current, access) = (next.refresh_token, next.access_token);
                            refreshes.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(_) => return (access, true),
                    }
                }
                (access, false)
            })
        };
        until(|| refreshes.load(Ordering::SeqCst) >= 2).await;
        app.auth()
            .revoke_session(bearer(
                pb::RevokeSessionRequest {
                    session_id: session,
                },
                &other.access_token,
            ))
            .await
            .unwrap();
        let (last_access, stopped) = looper.await.unwrap();
        assert!(
            stopped,
            "round {round}: the loop kept refreshing after the session ended"
        );
        let active = app
            .auth()
            .validate_token(pb::ValidateTokenRequest {
                access_token: last_access,
            })
            .await
            .unwrap()
            .into_inner()
            .active;
        assert!(
            !active,
            "round {round}: the last access token of the ended session still works"
        );
    }
}

/// Two admins demote each other at the same moment. Before the fix only
/// self-demotion was refused: both calls succeeded and no admin was left,
/// every round, on both databases.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_admins_demoting_each_other_at_once_leave_one() {
    let app = Arc::new(spawn_app().await);
    let mut survivor = (ADMIN_EMAIL.to_owned(), ADMIN_PASSWORD);
    for round in 0..5 {
        let admin = app.login(&survivor.0, survivor.1).await.unwrap();
        let email = format!("coadmin{round}@example.com");
        let other = app.register(&email).await;
        set_roles(&app, &admin.access_token, &other.id, &["admin"])
            .await
            .unwrap();
        let other_login = app.login(&email, PASSWORD).await.unwrap();
        let admin_id = admin.user.as_ref().unwrap().id.clone();
        let results = concurrently([
            demote(app.clone(), admin.access_token.clone(), other.id.clone()),
            demote(app.clone(), other_login.access_token.clone(), admin_id),
        ])
        .await;
        let wins = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(wins, 1, "round {round}: exactly one demotion wins");
        for refused in results.iter().filter_map(|r| r.as_ref().err()) {
            assert!(
                matches!(
                    refused.code(),
                    Code::FailedPrecondition | Code::Unauthenticated
                ),
                "round {round}: {refused:?}"
            );
        }
        if results[1].is_ok() {
            survivor = (email, PASSWORD);
        }
        let remaining = app.login(&survivor.0, survivor.1).await.unwrap();
        assert_eq!(
            admin_count(&app, &remaining.access_token).await,
            1,
            "round {round}: one admin is left"
        );
    }
}

/// Concurrent role changes of one user: each event's `old_roles` must be the
/// roles the change replaced, so the events chain. Before the fix the old
/// roles were read without a lock: on PostgreSQL several events named the
/// same `old_roles`. (SQLite's single writer serialised them already.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_role_changes_record_the_roles_they_replaced() {
    let app = Arc::new(spawn_app().await);
    let admin = app.admin().await;
    for round in 0..4 {
        let user = app.register(&format!("shifty{round}@example.com")).await;
        const SETS: [&[&str]; 6] = [
            &["verifier"],
            &["auditor"],
            &["user", "auditor"],
            &["verifier", "auditor"],
            &["user"],
            &["admin"],
        ];
        let changes = SETS.iter().map(|roles| {
            let (app, token, id) = (app.clone(), admin.access_token.clone(), user.id.clone());
            async move { set_roles(&app, &token, &id, roles).await }
        });
        for result in concurrently(changes).await {
            result.unwrap();
        }
        let mut events: Vec<_> = app
            .events(&admin.access_token, "user.roles_changed")
            .await
            .into_iter()
            .filter(|e| e.target_id == user.id)
            .collect();
        events.sort_by_key(|e| e.sequence);
        assert_eq!(events.len(), 6);
        let mut previous = Value::from(vec!["user"]);
        for event in &events {
            let details: Value = serde_json::from_str(&event.details_json).unwrap();
            assert_eq!(
                details["old_roles"], previous,
                "round {round}: {}",
                event.details_json
            );
            previous = details["new_roles"].clone();
        }
    }
}

/// A family whose user was disabled behind the service's back (no session
/// revocation) is revoked at its next refresh, and that revocation is
/// audited like every other. Before the fix it was revoked silently.
#[tokio::test]
async fn every_revocation_is_audited_even_one_found_at_refresh() {
    let app = spawn_app().await;
    let login = app.user("sleeper@example.com").await;
    let id = login.user.as_ref().unwrap().id.clone();
    set_disabled_in_database(&app, &id).await;
    assert_error(
        refresh(&app, &login.refresh_token).await,
        Code::Unauthenticated,
        "INVALID_REFRESH_TOKEN",
    );
    let admin = app.admin().await;
    let revoked = app
        .events(&admin.access_token, "token.family_revoked")
        .await;
    assert_eq!(revoked.len(), 1);
    let details: Value = serde_json::from_str(&revoked[0].details_json).unwrap();
    assert_eq!(details["reason"], "user_disabled");
}

/// A refresh and a logout of one token at once, five rounds: if the refresh
/// wins, the successor it minted is revoked with the family. Before the
/// family row, on PostgreSQL, the logout's UPDATE could miss a successor
/// committed just after its snapshot. (SQLite's single writer serialised
/// the two already.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_logouts_and_refreshes_leave_nothing_alive() {
    let app = Arc::new(spawn_app().await);
    for round in 0..5 {
        let login = app.user(&format!("leaver{round}@example.com")).await;
        let token = login.refresh_token.clone();
        let (a, b) = (app.clone(), app.clone());
        let (t1, t2) = (token.clone(), token.clone());
        let refreshing = tokio::spawn(async move { refresh(&a, &t1).await });
        let logging_out = tokio::spawn(async move {
            b.auth()
                .logout(pb::LogoutRequest { refresh_token: t2 })
                .await
        });
        let refreshed = refreshing.await.unwrap();
        logging_out.await.unwrap().unwrap();
        if let Ok(next) = refreshed {
            assert_error(
                refresh(&app, &next.refresh_token).await,
                Code::Unauthenticated,
                "INVALID_REFRESH_TOKEN",
            );
        }
    }
}

async fn demote(
    app: Arc<TestApp>,
    token: String,
    target: String,
) -> Result<pb::User, tonic::Status> {
    set_roles(&app, &token, &target, &["user"]).await
}

async fn admin_count(app: &TestApp, token: &str) -> usize {
    app.users()
        .list_users(bearer(
            pb::ListUsersRequest {
                page_size: 100,
                page_token: String::new(),
            },
            token,
        ))
        .await
        .unwrap()
        .into_inner()
        .users
        .iter()
        .filter(|u| !u.disabled && u.roles.iter().any(|r| r == "admin"))
        .count()
}

/// What a careless operator or a restored backup might do.
async fn set_disabled_in_database(app: &TestApp, id: &str) {
    let id = uuid::Uuid::parse_str(id).unwrap();
    if app.db.is_postgres() {
        let mut c = <sqlx::PgConnection as sqlx::Connection>::connect(&app.db.url)
            .await
            .unwrap();
        sqlx::query("UPDATE users SET disabled = TRUE WHERE id = $1")
            .bind(id)
            .execute(&mut c)
            .await
            .unwrap();
    } else {
        let mut c = <sqlx::SqliteConnection as sqlx::Connection>::connect(&app.db.url)
            .await
            .unwrap();
        sqlx::query("UPDATE users SET disabled = 1 WHERE id = $1")
            .bind(id)
            .execute(&mut c)
            .await
            .unwrap();
    }
}
