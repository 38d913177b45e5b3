//! The client crate against the real auth-service (on port 0, a fresh
//! database): the token renewed before it expires by one call for all
//! concurrent callers, a refused call renewed and sent once more, a service
//! account renewing with its secret.
#![allow(clippy::disallowed_methods)] // the test waits in real time, as clients do

use std::time::Duration;

use docverify_client::{
    Clients, Session,
    proto::auth::v1::{
        GetCurrentUserRequest, ListRevocationStateRequest, RevokeAllUserSessionsRequest,
    },
};
use testkit::auth;

/// Short enough that the test sees renewals: one is due 1.6 s after each.
const TTL: Duration = Duration::from_secs(2);

fn clients_of(app: &auth::TestApp, session: &Session) -> Clients {
    // document-service is not needed here: the auth channel stands in.
    Clients::new(session, app.channel.clone(), app.channel.clone())
}

/// 32 callers call together every 100 ms for three lifetimes of the
/// token. Every call must succeed, and the token is renewed once per
/// lifetime, not once per caller: refresh tokens rotate, and auth-service
/// takes a refresh token presented twice for a stolen one and revokes the
/// session. Tried on broken clients, each failing on every run: renewing
/// without the lock (UNAUTHENTICATED: reuse detected), and renewing under
/// the lock without checking whether a waiter's token was renewed meanwhile
/// (dozens of renewals). auth-service counts the refreshes it granted, and
/// so does the session: the two agree.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_token_is_renewed_before_it_expires_once_for_all_concurrent_callers() {
    let app = auth::spawn_app_with(|c| c.access_token_ttl = TTL).await;
    let user = app.register("renew@example.com").await;
    let session = Session::login(app.channel.clone(), "renew@example.com", auth::PASSWORD)
        .await
        .unwrap();
    let clients = clients_of(&app, &session);
    let start = tokio::time::Instant::now();
    let until = start + TTL * 3;
    // The callers call together, on every tick: at the first tick after a
    // renewal falls due, 32 calls find it due at once.
    let tick = Duration::from_millis(100);
    let callers = (0..32).map(|_| {
        let mut auth = clients.auth.clone();
        tokio::spawn(async move {
            let mut calls = 0u32;
            while tokio::time::Instant::now() < until {
                let me = auth.get_current_user(GetCurrentUserRequest {}).await;
                let me = me.unwrap_or_else(|s| panic!("call {calls} refused: {s:?}"));
                assert_eq!(me.into_inner().user.unwrap().email, "renew@example.com");
                calls += 1;
                let ticks = start.elapsed().as_millis() / tick.as_millis() + 1;
                tokio::time::sleep_until(start + tick * ticks as u32).await;
            }
            calls
        })
    });
    let callers: Vec<_> = callers.collect();
    let mut calls = 0;
    for caller in callers {
        calls += caller.await.unwrap();
    }
    let renewals = session.renewals();
    testkit::measured(format_args!(
        "{calls} calls by 32 callers over {:?}: {renewals} renewals",
        TTL * 3
    ));
    assert!(
        (2..=3).contains(&renewals),
        "one renewal per {TTL:?} lifetime (renewed at 80%), not {renewals}"
    );
    let admin = app.admin().await.access_token;
    let refreshed = app.events(&admin, "token.refreshed").await;
    let by_user = refreshed.iter().filter(|e| e.actor_id == user.id).count() as u64;
    assert_eq!(by_user, renewals, "auth-service granted as many refreshes");
}

/// A call refused with UNAUTHENTICATED renews the token and is sent once
/// more; when the session itself is revoked, the renewal fails and the
/// caller gets the UNAUTHENTICATED, after one try, not a loop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_call_is_renewed_and_sent_once_more() {
    let app = auth::spawn_app().await;
    let user = app.register("retry@example.com").await;
    let login = app
        .login("retry@example.com", auth::PASSWORD)
        .await
        .unwrap();
    // A token auth-service no longer accepts, with life left on the
    // client's clock: only the refusal can make the client renew it.
    let session =
        Session::from_tokens(app.channel.clone(), "not-a-token", login.refresh_token, 900).unwrap();
    let mut clients = clients_of(&app, &session);
    let me = clients
        .auth
        .get_current_user(GetCurrentUserRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(me.user.unwrap().id, user.id);
    assert_eq!(session.renewals(), 1);

    let admin = Session::login(app.channel.clone(), auth::ADMIN_EMAIL, auth::ADMIN_PASSWORD)
        .await
        .unwrap();
    clients_of(&app, &admin)
        .users
        .revoke_all_user_sessions(RevokeAllUserSessionsRequest {
            user_id: user.id.clone(),
        })
        .await
        .unwrap();
    let refused = clients
        .auth
        .get_current_user(GetCurrentUserRequest {})
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused:?}");
    assert_eq!(
        session.renewals(),
        1,
        "the revoked refresh token renewed nothing"
    );
}

/// A service account's session renews by asking for a new token with its
/// secret (it has no refresh token), and calls what the service role may.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_account_renews_with_its_secret() {
    let app = auth::spawn_app_with(|c| c.access_token_ttl = TTL).await;
    let (client_id, secret) = app.service_credentials();
    let session = Session::service_account(app.channel.clone(), &client_id, &secret)
        .await
        .unwrap();
    let mut clients = clients_of(&app, &session);
    let first = session.access_token().await.unwrap();
    for _ in 0..2 {
        clients
            .revocations
            .list_revocation_state(ListRevocationStateRequest {
                page_size: 10,
                page_token: String::new(),
            })
            .await
            .unwrap();
        tokio::time::sleep(TTL).await;
    }
    assert!(session.renewals() >= 1, "renewed after a lifetime");
    assert_ne!(session.access_token().await.unwrap(), first);
}
