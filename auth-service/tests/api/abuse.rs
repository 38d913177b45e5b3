//! Abuse controls on the public RPCs, over the wire: token buckets per client
//! address, the escalating per-address penalty for failed logins, and client
//! addresses behind trusted proxies. Other addresses are real ones: the
//! whole 127.0.0.0/8 is this machine's, so a client bound to 127.0.0.2 is
//! another client.

use std::{net::IpAddr, time::Duration};

use serde_json::Value;
use shared::proto::auth::v1::{self as pb, auth_service_client::AuthServiceClient};
use tonic::{Status, transport::Channel};
use tonic_types::StatusExt;

use crate::helpers::*;

const SPRAYED: &str = "Winter2026!Winter2026!";

/// A client whose connections come from `local` (a loopback address).
async fn client_from(app: &TestApp, local: &str) -> AuthServiceClient<Channel> {
    let channel = Channel::from_shared(format!("http://{}", app.addr))
        .unwrap()
        .local_address(Some(local.parse::<IpAddr>().unwrap()))
        .connect()
        .await
        .unwrap();
    AuthServiceClient::new(channel)
}

async fn login_as(
    client: &mut AuthServiceClient<Channel>,
    email: &str,
    password: &str,
    forwarded_for: Option<&str>,
) -> Result<pb::LoginResponse, Status> {
    let mut request = tonic::Request::new(pb::LoginRequest {
        email: email.into(),
        password: password.into(),
    });
    if let Some(hop) = forwarded_for {
        request
            .metadata_mut()
            .insert("x-forwarded-for", hop.parse().unwrap());
    }
    client.login(request).await.map(tonic::Response::into_inner)
}

fn reason(status: &Status) -> String {
    status
        .get_error_details()
        .error_info()
        .map(|i| i.reason.clone())
        .unwrap_or_default()
}

/// One password tried against 200 emails from one address, as fast as the
/// client can. Before this, every attempt reached the hash check: no email
/// failed more than once, so no email's throttle ever tripped.
#[tokio::test]
async fn spraying_from_one_address_is_slowed_to_a_crawl() {
    let app = spawn_app_with(|c| {
        c.rate_limit_login = "5/1s:10".parse().unwrap();
        c.address_max_failures = 10;
        c.address_max_lock = Duration::from_secs(300);
    })
    .await;
    let victim = app.register("victim@example.com").await;
    let mut attacker = client_from(&app, "127.0.0.1").await;
    let started = std::time::Instant::now();
    let (mut checked, mut limited, mut penalised) = (0, 0, 0);
    for i in 0..200 {
        match login_as(
            &mut attacker,
            &format!("target{i}@example.com"),
            SPRAYED,
            None,
        )
        .await
        {
            Err(s) if reason(&s) == "INVALID_CREDENTIALS" => checked += 1,
            Err(s) if reason(&s) == "RATE_LIMITED" => {
                let details = s.get_error_details();
                assert!(details.retry_info().is_some());
                let quota = details
                    .quota_failure()
                    .expect("a QuotaFailure names the limit");
                assert!(quota.violations[0].description.contains("Login"));
                limited += 1;
            }
            Err(s) if reason(&s) == "ADDRESS_THROTTLED" => {
                assert!(s.get_error_details().retry_info().is_some());
                penalised += 1;
            }
            other => panic!("attempt {i}: {other:?}"),
        }
    }
    let elapsed = started.elapsed();
    testkit::measured(format_args!(
        "spray of 200 in {elapsed:?}: {checked} password checks, {limited} rate-limited, {penalised} refused for the address"
    ));
    // Ten failures across any emails lock the address; the bucket admits at
    // most its burst plus its rate over the time taken.
    assert_eq!(checked, 10, "the address is locked after its allowance");
    let admitted = checked + penalised;
    let allowed = 10.0 + 5.0 * elapsed.as_secs_f64() + 1.0;
    assert!(
        f64::from(admitted) <= allowed,
        "{admitted} admitted, at most {allowed}"
    );
    assert!(limited > 0);

    // The right password from the same address is refused while it is
    // locked, and works once the lock is over; that resets the address.
    tokio::time::sleep(Duration::from_millis(400)).await; // a token back in the bucket
    assert_eq!(
        reason(
            &login_as(&mut attacker, "victim@example.com", PASSWORD, None)
                .await
                .unwrap_err()
        ),
        "ADDRESS_THROTTLED"
    );
    app.clock.advance(Duration::from_secs(31));
    tokio::time::sleep(Duration::from_millis(400)).await; // a token back in the bucket
    login_as(&mut attacker, &victim.email, PASSWORD, None)
        .await
        .expect("a user on the address with the right password gets in");
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        reason(
            &login_as(&mut attacker, "target0@example.com", SPRAYED, None)
                .await
                .unwrap_err()
        ),
        "INVALID_CREDENTIALS",
        "the success reset the address"
    );

    // The refusals are evidence, bounded: one event for the window of the
    // address's lock (with its count), one for the bucket's first refusal.
    let admin = app.admin().await;
    let throttled = app
        .events(&admin.access_token, "auth.address_throttled")
        .await;
    assert_eq!(throttled.len(), 1);
    let details: Value = serde_json::from_str(&throttled[0].details_json).unwrap();
    assert_eq!(details["refused_attempts"], penalised + 1);
    assert_eq!(throttled[0].target_id, "127.0.0.1");
    let rate_limited = app.events(&admin.access_token, "auth.rate_limited").await;
    assert_eq!(
        rate_limited.len(),
        1,
        "the first refusal at once, the rest counted"
    );
}

/// The escalation doubles while failures go on, up to the cap.
#[tokio::test]
async fn the_address_penalty_escalates() {
    let app = spawn_app_with(|c| {
        c.address_max_failures = 3;
        c.address_max_lock = Duration::from_secs(120);
    })
    .await;
    let mut client = client_from(&app, "127.0.0.1").await;
    for i in 0..3 {
        login_as(&mut client, &format!("e{i}@example.com"), SPRAYED, None)
            .await
            .unwrap_err();
    }
    let mut waits = Vec::new();
    for round in 0..4 {
        let refused = login_as(&mut client, "next@example.com", SPRAYED, None)
            .await
            .unwrap_err();
        assert_eq!(reason(&refused), "ADDRESS_THROTTLED", "round {round}");
        let wait = refused
            .get_error_details()
            .retry_info()
            .and_then(|r| r.retry_delay)
            .unwrap();
        waits.push(wait.as_secs());
        app.clock.advance(wait + Duration::from_secs(1));
        // One more failure after the lock: a longer lock.
        assert_eq!(
            reason(
                &login_as(&mut client, &format!("r{round}@example.com"), SPRAYED, None)
                    .await
                    .unwrap_err()
            ),
            "INVALID_CREDENTIALS"
        );
    }
    assert_eq!(waits, vec![30, 60, 120, 120], "30 s, doubling, capped");
}

/// Registrations beyond the bucket are refused in the layer: no hash, no
/// row. Another address is unaffected.
#[tokio::test]
async fn registrations_beyond_the_limit_cost_nothing() {
    let app = spawn_app_with(|c| c.rate_limit_register = "1/1h:3".parse().unwrap()).await;
    let mut flood = client_from(&app, "127.0.0.1").await;
    let register = |i: usize| pb::RegisterRequest {
        email: format!("bot{i}@example.com"),
        password: PASSWORD.into(),
        display_name: "Bot".into(),
    };
    let mut refused = 0;
    for i in 0..10 {
        match flood.register(register(i)).await {
            Ok(_) => {}
            Err(s) => {
                assert_eq!(reason(&s), "RATE_LIMITED");
                refused += 1;
            }
        }
    }
    assert_eq!(refused, 7);
    let mut other = client_from(&app, "127.0.0.2").await;
    other
        .register(register(100))
        .await
        .expect("another address registers");
    assert_eq!(
        users_in(&app).await,
        1 + 3 + 1,
        "admin, three bots, the other"
    );
}

/// Forwarded headers move the limit only when the direct peer is a trusted
/// proxy; then the forwarded address is the client for the limits, the
/// audit trail and the logs.
#[tokio::test]
async fn forwarded_headers_count_only_from_trusted_proxies() {
    let untrusted = spawn_app_with(|c| c.rate_limit_login = "1/1h:2".parse().unwrap()).await;
    let mut client = client_from(&untrusted, "127.0.0.1").await;
    let mut outcomes = Vec::new();
    for i in 0..4 {
        // A fresh spoofed address every time: ignored.
        let spoofed = format!("198.51.100.{i}");
        let answer = login_as(&mut client, "spoof@example.com", SPRAYED, Some(&spoofed)).await;
        outcomes.push(reason(&answer.unwrap_err()));
    }
    assert_eq!(
        outcomes,
        [
            "INVALID_CREDENTIALS",
            "INVALID_CREDENTIALS",
            "RATE_LIMITED",
            "RATE_LIMITED"
        ]
    );

    let behind_proxy = spawn_app_with(|c| {
        c.rate_limit_login = "1/1h:2".parse().unwrap();
        c.server.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await;
    let mut proxy = client_from(&behind_proxy, "127.0.0.1").await;
    for hop in ["203.0.113.1", "203.0.113.1", "10.9.9.9, 203.0.113.2"] {
        let answer = login_as(&mut proxy, "proxied@example.com", SPRAYED, Some(hop)).await;
        assert_eq!(reason(&answer.unwrap_err()), "INVALID_CREDENTIALS", "{hop}");
    }
    let third = login_as(
        &mut proxy,
        "proxied@example.com",
        SPRAYED,
        Some("203.0.113.1"),
    )
    .await;
    assert_eq!(
        reason(&third.unwrap_err()),
        "RATE_LIMITED",
        "203.0.113.1's own bucket"
    );
    let admin = behind_proxy.admin().await;
    let failed = behind_proxy
        .events(&admin.access_token, "auth.login_failed")
        .await;
    let mut addresses: Vec<_> = failed.iter().map(|e| e.client_addr.clone()).collect();
    addresses.sort();
    assert_eq!(addresses, ["203.0.113.1", "203.0.113.1", "203.0.113.2"]);
}

/// Two replicas on one database: the per-address penalty is kept in the
/// database and holds across them; the token buckets are each replica's
/// own (the README gives the cluster-wide rate as N times the setting).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_address_penalty_holds_across_replicas_and_buckets_do_not() {
    let a = spawn_app_with(|c| {
        c.address_max_failures = 4;
        c.rate_limit_login = "1/1h:6".parse().unwrap();
    })
    .await;
    let url = a.db.url.clone();
    let b = spawn_app_with(move |c| {
        c.database_url = url;
        c.address_max_failures = 4;
        c.rate_limit_login = "1/1h:6".parse().unwrap();
    })
    .await;
    let mut via_a = client_from(&a, "127.0.0.3").await;
    let mut via_b = client_from(&b, "127.0.0.3").await;
    for i in 0..4 {
        login_as(&mut via_a, &format!("x{i}@example.com"), SPRAYED, None)
            .await
            .unwrap_err();
    }
    assert_eq!(
        reason(
            &login_as(&mut via_b, "y@example.com", SPRAYED, None)
                .await
                .unwrap_err()
        ),
        "ADDRESS_THROTTLED",
        "the penalty is cluster-wide"
    );
    // A's bucket for this address: 4 taken, 2 left, then empty.
    for _ in 0..2 {
        assert_eq!(
            reason(
                &login_as(&mut via_a, "z@example.com", SPRAYED, None)
                    .await
                    .unwrap_err()
            ),
            "ADDRESS_THROTTLED"
        );
    }
    assert_eq!(
        reason(
            &login_as(&mut via_a, "z@example.com", SPRAYED, None)
                .await
                .unwrap_err()
        ),
        "RATE_LIMITED"
    );
    // B's bucket is its own: still tokens there.
    assert_eq!(
        reason(
            &login_as(&mut via_b, "z@example.com", SPRAYED, None)
                .await
                .unwrap_err()
        ),
        "ADDRESS_THROTTLED"
    );
}

async fn users_in(app: &TestApp) -> i64 {
    let db = shared::db::Db::connect(&app.db.url, &Default::default())
        .await
        .unwrap();
    let n = shared::on_dialect!(db.reader(), p => sqlx::query_scalar("SELECT COUNT(*) FROM users").fetch_one(p).await.unwrap());
    db.close().await;
    n
}
