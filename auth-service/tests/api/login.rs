use std::time::Duration;

use tonic::Code;
use tonic_types::StatusExt;

use crate::helpers::*;
use shared::proto::auth::v1 as pb;

#[tokio::test]
async fn wrong_password_and_unknown_email_look_alike() {
    let app = spawn_app().await;
    app.register("dave@example.com").await;
    let wrong = assert_error(
        app.login("dave@example.com", "not the right passphrase")
            .await,
        Code::Unauthenticated,
        "INVALID_CREDENTIALS",
    );
    let unknown = assert_error(
        app.login("nobody@example.com", "not the right passphrase")
            .await,
        Code::Unauthenticated,
        "INVALID_CREDENTIALS",
    );
    assert_eq!(wrong.message(), unknown.message());
}

#[tokio::test]
async fn throttling_after_five_failures_with_retry_info() {
    let app = spawn_app().await;
    let email = "erin@example.com";
    app.register(email).await;
    for _ in 0..5 {
        assert_error(
            app.login(email, "wrong wrong wrong").await,
            Code::Unauthenticated,
            "INVALID_CREDENTIALS",
        );
    }
    // Even the right password is refused while throttled.
    let status = assert_error(
        app.login(email, PASSWORD).await,
        Code::ResourceExhausted,
        "LOGIN_THROTTLED",
    );
    let retry = status
        .get_error_details()
        .retry_info()
        .unwrap()
        .retry_delay
        .unwrap();
    assert!(
        retry <= Duration::from_secs(60) && retry > Duration::from_secs(50),
        "{retry:?}"
    );

    // Refused attempts do not extend the delay.
    app.clock.advance(Duration::from_secs(30));
    let status = assert_error(
        app.login(email, PASSWORD).await,
        Code::ResourceExhausted,
        "LOGIN_THROTTLED",
    );
    let retry = status
        .get_error_details()
        .retry_info()
        .unwrap()
        .retry_delay
        .unwrap();
    assert!(retry <= Duration::from_secs(30), "{retry:?}");

    // After the delay one more guess is checked; failing doubles the delay.
    app.clock.advance(Duration::from_secs(31));
    assert_error(
        app.login(email, "wrong again wrong").await,
        Code::Unauthenticated,
        "INVALID_CREDENTIALS",
    );
    let status = assert_error(
        app.login(email, PASSWORD).await,
        Code::ResourceExhausted,
        "LOGIN_THROTTLED",
    );
    let retry = status
        .get_error_details()
        .retry_info()
        .unwrap()
        .retry_delay
        .unwrap();
    assert!(
        retry > Duration::from_secs(110) && retry <= Duration::from_secs(120),
        "{retry:?}"
    );

    // Never permanent, capped at 15 minutes: wait it out and log in.
    app.clock.advance(Duration::from_secs(121));
    app.login(email, PASSWORD).await.unwrap();
    // Success reset the counter: five more failures are allowed again.
    for _ in 0..5 {
        assert_error(
            app.login(email, "wrong wrong wrong").await,
            Code::Unauthenticated,
            "INVALID_CREDENTIALS",
        );
    }
    assert_error(
        app.login(email, PASSWORD).await,
        Code::ResourceExhausted,
        "LOGIN_THROTTLED",
    );

    let admin = app.admin().await;
    assert!(
        !app.events(&admin.access_token, "auth.login_throttled")
            .await
            .is_empty()
    );
    assert_eq!(
        app.events(&admin.access_token, "auth.login_failed")
            .await
            .len(),
        11
    );
}

#[tokio::test]
async fn unknown_emails_are_throttled_too() {
    let app = spawn_app().await;
    for _ in 0..5 {
        assert_error(
            app.login("ghost@example.com", "whatever it is").await,
            Code::Unauthenticated,
            "INVALID_CREDENTIALS",
        );
    }
    assert_error(
        app.login("ghost@example.com", "whatever it is").await,
        Code::ResourceExhausted,
        "LOGIN_THROTTLED",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_guesses_never_exceed_the_allowance() {
    let app = spawn_app().await;
    let email = "frank@example.com";
    app.register(email).await;
    let guesses = (0..50).map(|i| {
        let mut client = app.auth();
        async move {
            client
                .login(shared::proto::auth::v1::LoginRequest {
                    email: email.to_owned(),
                    password: format!("wrong guess number {i}"),
                })
                .await
        }
    });
    let results = concurrently(guesses).await;
    let checked = results
        .iter()
        .filter(|r| {
            r.as_ref()
                .err()
                .is_some_and(|s| s.code() == Code::Unauthenticated)
        })
        .count();
    let throttled = results
        .iter()
        .filter(|r| {
            r.as_ref()
                .err()
                .is_some_and(|s| s.code() == Code::ResourceExhausted)
        })
        .count();
    assert_eq!(
        checked, 5,
        "exactly the allowed attempts reached the hash check"
    );
    assert_eq!(throttled, 45);
}

#[tokio::test]
async fn unlock_user_clears_throttling() {
    let app = spawn_app().await;
    let email = "gina@example.com";
    let user = app.register(email).await;
    for _ in 0..5 {
        let _ = app.login(email, "wrong wrong wrong").await;
    }
    assert_error(
        app.login(email, PASSWORD).await,
        Code::ResourceExhausted,
        "LOGIN_THROTTLED",
    );
    let admin = app.admin().await;
    app.users()
        .unlock_user(bearer(
            shared::proto::auth::v1::UnlockUserRequest {
                user_id: user.id.clone(),
            },
            &admin.access_token,
        ))
        .await
        .unwrap();
    app.login(email, PASSWORD).await.unwrap();
    let events = app.events(&admin.access_token, "user.unlocked").await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].target_id, user.id);
}

#[tokio::test]
async fn wrong_password_and_unknown_email_take_about_the_same_time() {
    let app = spawn_app().await;
    let tries = 24;
    for i in 0..tries {
        app.register(&format!("timed{i}@example.com")).await;
    }
    // A real difference shows in every round; other tests sharing the two
    // cores can skew one round, so a second round is allowed.
    let mut ratios = Vec::new();
    for round in 0..2 {
        let ratio = timing_round(&app, round, tries).await;
        ratios.push(ratio);
        if ratio <= 1.25 {
            return;
        }
    }
    panic!("wrong password and unknown email differ by more than 25% in every round: {ratios:?}");
}

/// The ratio of the median login times (slower / faster) of `tries` wrong
/// passwords and `tries` unknown emails, interleaved in alternating order so
/// that both kinds see the same load.
async fn timing_round(app: &TestApp, round: usize, tries: usize) -> f64 {
    let time = |email: String| {
        let mut client = app.auth();
        async move {
            let started = std::time::Instant::now();
            let result = client
                .login(shared::proto::auth::v1::LoginRequest {
                    email,
                    password: "definitely not it".into(),
                })
                .await;
            let status = result.expect_err("wrong either way");
            assert_eq!(status.code(), Code::Unauthenticated);
            (started.elapsed(), status.message().to_owned())
        }
    };
    let (mut known, mut unknown) = (Vec::new(), Vec::new());
    for i in 0..tries {
        // Fewer than five failures per email: throttling never kicks in.
        let (k, u) = (
            format!("timed{i}@example.com"),
            format!("ghost{round}-{i}@example.com"),
        );
        if i % 2 == 0 {
            known.push(time(k).await);
            unknown.push(time(u).await);
        } else {
            unknown.push(time(u).await);
            known.push(time(k).await);
        }
    }
    assert!(
        known.iter().chain(&unknown).all(|(_, m)| *m == known[0].1),
        "same message"
    );
    let median = |v: &mut Vec<(Duration, String)>| {
        v.sort_by_key(|(d, _)| *d);
        v[v.len() / 2].0.as_secs_f64()
    };
    let (k, u) = (median(&mut known), median(&mut unknown));
    let ratio = k.max(u) / k.min(u);
    testkit::measured(format_args!(
        "median wrong password {:.1} ms, unknown email {:.1} ms, ratio {ratio:.2}",
        k * 1e3,
        u * 1e3
    ));
    ratio
}

/// The lock doubles with each further failure up to its 15-minute cap;
/// ChangePassword's current-password check counts against the same
/// throttle (a stolen access token is no way around it); and the count
/// survives a restart (it lives in the database).
#[tokio::test]
async fn throttling_doubles_to_its_cap_covers_change_password_and_survives_a_restart() {
    let mut app = spawn_app().await;
    let email = "gwen@example.com";
    let session = app.user(email).await;
    let retry_after = |status: tonic::Status| {
        status
            .get_error_details()
            .retry_info()
            .unwrap()
            .retry_delay
            .unwrap()
    };
    // Four failures by login, the fifth by ChangePassword.
    for _ in 0..4 {
        assert_error(
            app.login(email, "wrong wrong wrong").await,
            Code::Unauthenticated,
            "INVALID_CREDENTIALS",
        );
    }
    let change = |current: &str| {
        let mut auth = app.auth();
        let request = bearer(
            pb::ChangePasswordRequest {
                current_password: current.into(),
                new_password: "quasar tundra fiddle marmalade".into(),
            },
            &session.access_token,
        );
        async move { auth.change_password(request).await }
    };
    assert_error(
        change("wrong wrong wrong").await,
        Code::Unauthenticated,
        "INVALID_CREDENTIALS",
    );
    let locked = assert_error(
        change(PASSWORD).await,
        Code::ResourceExhausted,
        "LOGIN_THROTTLED",
    );
    assert!(retry_after(locked) <= Duration::from_secs(60));

    app.restart().await;
    let locked = assert_error(
        app.login(email, PASSWORD).await,
        Code::ResourceExhausted,
        "LOGIN_THROTTLED",
    );
    assert!(
        retry_after(locked) > Duration::from_secs(50),
        "the lock outlived the restart"
    );

    // Each further failure doubles the lock: 2, 4, 8 minutes, then the cap.
    let mut lock = Duration::from_secs(60);
    for expected in [120, 240, 480, 900, 900] {
        app.clock.advance(lock + Duration::from_secs(1));
        assert_error(
            app.login(email, "wrong wrong wrong").await,
            Code::Unauthenticated,
            "INVALID_CREDENTIALS",
        );
        lock = retry_after(assert_error(
            app.login(email, PASSWORD).await,
            Code::ResourceExhausted,
            "LOGIN_THROTTLED",
        ));
        let expected = Duration::from_secs(expected);
        assert!(
            lock <= expected && lock > expected - Duration::from_secs(5),
            "expected about {expected:?}, got {lock:?}"
        );
    }
    // The lock ends exactly when RetryInfo said (mutation testing found
    // that a lock lasting one instant longer passed every test).
    app.clock.advance(lock);
    app.login(email, PASSWORD).await.unwrap();
}
