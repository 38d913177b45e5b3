//! The revocation feed as its subscribers see it (gapless, heartbeats,
//! cursors no longer kept, the snapshot), and the service accounts that
//! read it.

use std::time::Duration;

use shared::proto::auth::v1::{
    self as pb, revocation_service_client::RevocationServiceClient,
    service_account_service_client::ServiceAccountServiceClient,
    watch_revocations_response::Message,
};
use tonic::{Code, transport::Channel};

use crate::helpers::*;

fn feed(app: &TestApp) -> RevocationServiceClient<Channel> {
    RevocationServiceClient::new(app.channel.clone())
}

fn accounts(app: &TestApp) -> ServiceAccountServiceClient<Channel> {
    ServiceAccountServiceClient::new(app.channel.clone())
}

/// The facts after `after` until the first heartbeat that vouches for
/// `until` or later, and that heartbeat. An earlier heartbeat is right too
/// (the replica had not read the newest facts yet), so it is read past.
async fn read_feed(
    app: &TestApp,
    token: &str,
    after: u64,
    until: u64,
) -> Result<(Vec<pb::RevocationEvent>, pb::RevocationHeartbeat), tonic::Status> {
    let mut stream = feed(app)
        .watch_revocations(bearer(
            pb::WatchRevocationsRequest {
                after_cursor: after,
            },
            token,
        ))
        .await?
        .into_inner();
    let mut events = Vec::new();
    loop {
        let message = tokio::time::timeout(Duration::from_secs(5), stream.message())
            .await
            .expect("a heartbeat at least every second")?
            .expect("the feed does not end");
        match message.message.unwrap() {
            Message::Event(event) => events.push(event),
            Message::Heartbeat(beat) if beat.cursor >= until => return Ok((events, beat)),
            Message::Heartbeat(_) => {}
        }
    }
}

/// The feed from its first fact, as `token` sees it.
async fn watch_from_start(
    app: &TestApp,
    token: &str,
) -> tonic::Streaming<pb::WatchRevocationsResponse> {
    feed(app)
        .watch_revocations(bearer(
            pb::WatchRevocationsRequest { after_cursor: 0 },
            token,
        ))
        .await
        .unwrap()
        .into_inner()
}

async fn disable(app: &TestApp, admin: &str, user_id: &str, disabled: bool) {
    let mut users = app.users();
    if disabled {
        users
            .disable_user(bearer(
                pb::DisableUserRequest {
                    user_id: user_id.into(),
                },
                admin,
            ))
            .await
            .unwrap();
    } else {
        users
            .enable_user(bearer(
                pb::EnableUserRequest {
                    user_id: user_id.into(),
                },
                admin,
            ))
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn the_feed_serves_facts_in_order_then_heartbeats() {
    let app = spawn_app().await;
    let service = app.service_token().await;
    let admin = app.admin().await.access_token;
    let ann = app.user("ann@example.com").await;
    let ann_id = ann.user.clone().unwrap().id;
    disable(&app, &admin, &ann_id, true).await;
    disable(&app, &admin, &ann_id, false).await;
    app.auth()
        .logout(pb::LogoutRequest {
            refresh_token: app
                .login("ann@example.com", PASSWORD)
                .await
                .unwrap()
                .refresh_token,
        })
        .await
        .unwrap();

    let (events, beat) = read_feed(&app, &service, 0, 3).await.unwrap();
    let cursors: Vec<u64> = events.iter().map(|e| e.cursor).collect();
    assert_eq!(cursors, [1, 2, 3]);
    let kinds: Vec<pb::RevocationKind> = events.iter().map(|e| e.kind()).collect();
    assert_eq!(
        kinds,
        [
            pb::RevocationKind::UserDisabled,
            pb::RevocationKind::UserEnabled,
            pb::RevocationKind::SessionRevoked
        ]
    );
    assert!(events[0].disabled && !events[1].disabled);
    assert_eq!(events[0].token_generation, events[1].token_generation);
    assert!(events.iter().all(|e| e.principal_id == ann_id));
    assert!(!events[2].session_id.is_empty() && events[0].session_id.is_empty());
    assert_eq!((beat.cursor, beat.oldest_cursor), (3, 1));

    // From the middle: only what follows.
    let (events, beat) = read_feed(&app, &service, 2, 3).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(beat.cursor, 3);

    // A cursor never issued is refused; the subscriber must resync.
    assert_error(
        read_feed(&app, &service, 99, 0).await,
        Code::FailedPrecondition,
        "REVOCATION_CURSOR_EXPIRED",
    );

    // The snapshot: the newest fact of Ann (enabled), and her session.
    let mut page_token = String::new();
    let mut snapshot = Vec::new();
    loop {
        let page = feed(&app)
            .list_revocation_state(bearer(
                pb::ListRevocationStateRequest {
                    page_size: 1,
                    page_token: page_token.clone(),
                },
                &service,
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(page.cursor, 3, "the same cursor on every page");
        assert_eq!(page.events.len(), 1, "pages of the size asked for");
        snapshot.extend(page.events);
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    let cursors: Vec<u64> = snapshot.iter().map(|e| e.cursor).collect();
    assert_eq!(cursors, [2, 3]);

    // People cannot read the feed, admins included.
    assert_error(
        read_feed(&app, &admin, 0, 0).await,
        Code::PermissionDenied,
        "PERMISSION_DENIED",
    );
}

/// Facts past the retention are pruned (at start, and every minute); a
/// subscriber whose cursor went with them is told to resync, and the
/// snapshot no longer holds them.
#[tokio::test]
async fn pruned_facts_make_old_cursors_resync() {
    let mut app = spawn_app_with(|c| {
        c.access_token_ttl = Duration::from_secs(60);
        c.revocation_retention = Duration::from_secs(90);
    })
    .await;
    let admin = app.admin().await.access_token;
    let bo = app.user("bo@example.com").await.user.unwrap().id;
    disable(&app, &admin, &bo, true).await;
    disable(&app, &admin, &bo, false).await;
    app.clock.advance(Duration::from_secs(91));
    app.restart().await;
    let service = app.service_token().await;
    assert_error(
        read_feed(&app, &service, 0, 0).await,
        Code::FailedPrecondition,
        "REVOCATION_CURSOR_EXPIRED",
    );
    let snapshot = feed(&app)
        .list_revocation_state(bearer(pb::ListRevocationStateRequest::default(), &service))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((snapshot.events.len(), snapshot.cursor), (0, 2));
    let (events, beat) = read_feed(&app, &service, snapshot.cursor, 2).await.unwrap();
    assert!(events.is_empty());
    assert_eq!((beat.cursor, beat.oldest_cursor), (2, 3));
    // A retention shorter than a token's life is refused at start.
    app.stop().await;
    app.config_mut().revocation_retention = Duration::from_secs(60);
    let config = app.config_mut().clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let error = auth_service::serve(config, listener, async {})
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("REVOCATION_RETENTION"),
        "{error}"
    );
}

/// Concurrent changes (on PostgreSQL through two replicas) each get a
/// cursor, and the cursors are 1..=N with no gap and no repeat. A cursor
/// taken as MAX(seq) + 1 without the head's row lock repeats under this
/// load (PostgreSQL, READ COMMITTED): a primary-key failure, tried and seen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cursors_are_gapless_under_concurrent_changes() {
    const USERS: usize = 12;
    let a = spawn_app().await;
    let url = a.db.url.clone();
    let b = if a.db.is_postgres() {
        Some(spawn_app_with(move |c| c.database_url = url).await)
    } else {
        None
    };
    let admin_a = a.admin().await.access_token;
    let (b_channel, admin_b) = match &b {
        Some(b) => (b.channel.clone(), b.admin().await.access_token),
        None => (a.channel.clone(), admin_a.clone()),
    };
    let mut ids = Vec::new();
    for i in 0..USERS {
        ids.push(a.register(&format!("g{i}@example.com")).await.id);
    }
    let calls = ids.iter().enumerate().flat_map(|(i, id)| {
        let (channel, admin) = if i % 2 == 0 {
            (a.channel.clone(), admin_a.clone())
        } else {
            (b_channel.clone(), admin_b.clone())
        };
        [true, false].map(|roles| {
            let (channel, admin, id) = (channel.clone(), admin.clone(), id.clone());
            async move {
                let mut users = pb::user_service_client::UserServiceClient::new(channel);
                if roles {
                    users
                        .set_user_roles(bearer(
                            pb::SetUserRolesRequest {
                                user_id: id,
                                roles: vec!["verifier".into()],
                            },
                            &admin,
                        ))
                        .await
                        .map(|_| ())
                } else {
                    users
                        .disable_user(bearer(pb::DisableUserRequest { user_id: id }, &admin))
                        .await
                        .map(|_| ())
                }
            }
        })
    });
    for result in concurrently(calls).await {
        result.unwrap();
    }
    let service = a.service_token().await;
    let (events, beat) = read_feed(&a, &service, 0, 2 * USERS as u64).await.unwrap();
    let cursors: Vec<u64> = events.iter().map(|e| e.cursor).collect();
    let expected: Vec<u64> = (1..=2 * USERS as u64).collect();
    assert_eq!(cursors, expected);
    assert_eq!(beat.cursor, 2 * USERS as u64);
}

#[tokio::test]
async fn service_accounts_issue_rotate_and_revoke() {
    let app = spawn_app().await;
    let admin = app.admin().await.access_token;
    let create = |name: &str, roles: &[&str]| {
        let mut client = accounts(&app);
        let request = bearer(
            pb::CreateServiceAccountRequest {
                name: name.to_owned(),
                roles: roles.iter().map(|r| r.to_string()).collect(),
            },
            &admin,
        );
        async move {
            client
                .create_service_account(request)
                .await
                .map(|r| r.into_inner())
        }
    };
    let bad = assert_error(
        create("Not OK", &[]).await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(violated_fields(&bad), ["name", "roles"]);
    let created = create("indexer", &["service", "auditor"]).await.unwrap();
    assert_error(
        create("indexer", &["service"]).await,
        Code::AlreadyExists,
        "SERVICE_ACCOUNT_NAME_TAKEN",
    );
    let account = created.account.unwrap();
    assert_eq!(account.roles, ["auditor", "service"]);
    assert_eq!(account.secrets.len(), 1);
    let first = created.client_secret;
    assert!(first.starts_with("dvs_") && first.len() > 40);

    let issue = |secret: &str| {
        let mut client = app.auth();
        let request = pb::IssueServiceTokenRequest {
            client_id: account.client_id.clone(),
            client_secret: secret.to_owned(),
        };
        async move {
            client
                .issue_service_token(request)
                .await
                .map(|r| r.into_inner())
        }
    };
    let validate = |token: String| {
        let mut client = app.auth();
        async move {
            client
                .validate_token(pb::ValidateTokenRequest {
                    access_token: token,
                })
                .await
                .unwrap()
                .into_inner()
        }
    };
    let token = issue(&first).await.unwrap();
    assert_eq!(token.token_type, "Bearer");
    let seen = validate(token.access_token.clone()).await;
    assert!(seen.active);
    assert_eq!(seen.user_id, account.client_id);
    assert_eq!(seen.email, "service:indexer");
    assert_eq!(seen.session_id, "");
    // Its roles work: the feed, and the auditor's reads.
    read_feed(&app, &token.access_token, 0, 0).await.unwrap();
    app.users()
        .list_users(bearer(pb::ListUsersRequest::default(), &token.access_token))
        .await
        .unwrap();
    assert_error(
        issue("dvs_wrong").await,
        Code::Unauthenticated,
        "INVALID_CLIENT",
    );
    let bad = assert_error(
        app.auth()
            .issue_service_token(pb::IssueServiceTokenRequest::default())
            .await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(violated_fields(&bad), ["client_id", "client_secret"]);

    // Rotation: the new secret and the previous one both work...
    let rotate = || {
        let mut client = accounts(&app);
        let request = bearer(
            pb::RotateServiceAccountSecretRequest {
                client_id: account.client_id.clone(),
            },
            &admin,
        );
        async move {
            client
                .rotate_service_account_secret(request)
                .await
                .unwrap()
                .into_inner()
        }
    };
    let second = rotate().await;
    assert_eq!(second.account.unwrap().secrets.len(), 2);
    issue(&first).await.unwrap();
    issue(&second.client_secret).await.unwrap();
    // ...and a third retires the first.
    let third = rotate().await;
    let valid = third.account.unwrap().secrets;
    assert_eq!(valid.len(), 2);
    assert_error(issue(&first).await, Code::Unauthenticated, "INVALID_CLIENT");
    issue(&second.client_secret).await.unwrap();

    // Revoking a secret revokes the tokens issued so far.
    let before = issue(&third.client_secret).await.unwrap().access_token;
    accounts(&app)
        .revoke_service_account_secret(bearer(
            pb::RevokeServiceAccountSecretRequest {
                client_id: account.client_id.clone(),
                secret_id: valid[1].id.clone(),
            },
            &admin,
        ))
        .await
        .unwrap();
    assert!(!validate(before).await.active);
    assert!(!validate(token.access_token).await.active);
    assert_error(
        issue(&second.client_secret).await,
        Code::Unauthenticated,
        "INVALID_CLIENT",
    );
    let after = issue(&third.client_secret).await.unwrap().access_token;
    assert!(validate(after.clone()).await.active);

    // Disabled: no more tokens, and its tokens refused.
    accounts(&app)
        .disable_service_account(bearer(
            pb::DisableServiceAccountRequest {
                client_id: account.client_id.clone(),
            },
            &admin,
        ))
        .await
        .unwrap();
    assert!(!validate(after).await.active);
    assert_error(
        issue(&third.client_secret).await,
        Code::Unauthenticated,
        "INVALID_CLIENT",
    );

    // Secrets are kept as SHA-256 hashes only.
    use sha2::{Digest, Sha256};
    let stored = app
        .db
        .bytes("SELECT secret_hash FROM service_account_secrets")
        .await;
    assert_eq!(stored.len(), 4, "the bootstrapped one and three");
    for secret in [&first, &second.client_secret, &third.client_secret] {
        assert!(stored.contains(&Sha256::digest(secret.as_bytes()).to_vec()));
        assert!(
            !stored
                .iter()
                .any(|h| String::from_utf8_lossy(h).contains(secret.as_str()))
        );
    }
    for action in [
        "service_account.created",
        "service_account.secret_added",
        "service_account.secret_revoked",
        "service_account.disabled",
        "service_account.token_issued",
    ] {
        assert!(
            !app.events(&admin, action).await.is_empty(),
            "{action} audited"
        );
    }
}

/// `GetCurrentUser` answers from a cache; a role change made through
/// another replica is never hidden by it, even while this replica has not
/// read the change from the log: a token of the new generation is not
/// answered from an entry read at the old one. Replica A here never polls
/// again after its start (and trusts that for an hour), so only the
/// generation can tell it; with the cache keyed by user alone, A answered
/// the old roles (tried). PostgreSQL only: replicas share a database there.
#[tokio::test]
async fn a_change_through_another_replica_is_never_hidden_by_the_cache() {
    let a = spawn_app_with(|c| {
        c.revocation_poll_interval = Duration::from_secs(3600);
        c.revocation_max_staleness = Duration::from_secs(3600);
    })
    .await;
    if a.db
        .skips_without_postgres("GetCurrentUser's cache across replicas")
    {
        return;
    }
    let b = a.spawn_replica().await;
    let cam = a.user("cam@example.com").await;
    assert_eq!(a.me(&cam.access_token).await.unwrap().roles, ["user"]);
    // Cached on A now; B changes the roles, and A is not told.
    let admin = b.admin().await.access_token;
    set_roles(&b, &admin, &cam.user.unwrap().id, &["verifier"])
        .await
        .unwrap();
    let fresh = b.login("cam@example.com", PASSWORD).await.unwrap();
    assert_eq!(a.me(&fresh.access_token).await.unwrap().roles, ["verifier"]);
}

/// A feed stream is authorised when it opens; it ends (OK: "reconnect")
/// as soon as a fact revokes its own subscriber, and the reconnect, with
/// the old token or a new one, is refused.
#[tokio::test]
async fn a_revoked_subscriber_loses_its_stream() {
    let app = spawn_app().await;
    let admin = app.admin().await.access_token;
    let created = accounts(&app)
        .create_service_account(bearer(
            pb::CreateServiceAccountRequest {
                name: "mirror".to_owned(),
                roles: vec!["service".to_owned()],
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    let client_id = created.account.unwrap().client_id;
    let token = app
        .auth()
        .issue_service_token(pb::IssueServiceTokenRequest {
            client_id: client_id.clone(),
            client_secret: created.client_secret.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .access_token;
    let mut stream = watch_from_start(&app, &token).await;
    // Heartbeats flow...
    stream.message().await.unwrap().unwrap();
    accounts(&app)
        .disable_service_account(bearer(
            pb::DisableServiceAccountRequest {
                client_id: client_id.clone(),
            },
            &admin,
        ))
        .await
        .unwrap();
    // ...until the fact that revokes the subscriber, then the end.
    let ended = tokio::time::timeout(Duration::from_secs(2), async {
        while let Some(message) = stream.message().await.unwrap() {
            if let Some(Message::Event(event)) = message.message {
                assert_eq!(event.principal_id, client_id);
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the stream of a disabled account ended");
    assert_error(
        read_feed(&app, &token, 0, 0).await,
        Code::Unauthenticated,
        "INVALID_TOKEN",
    );
    assert_error(
        app.auth()
            .issue_service_token(pb::IssueServiceTokenRequest {
                client_id,
                client_secret: created.client_secret,
            })
            .await,
        Code::Unauthenticated,
        "INVALID_CLIENT",
    );
}

/// With REVOCATION_MAX_STALENESS at zero the state in memory is never
/// trusted: each token check reads its principal and its session from the
/// database, and still refuses what was revoked and accepts the rest (a
/// service account, a session beside one that ended, a new generation).
/// Nothing reached this path before: either query replaced by a constant
/// survived mutation testing.
#[tokio::test]
async fn without_fresh_state_the_database_decides_each_token() {
    let app = spawn_app_with(|c| c.revocation_max_staleness = Duration::ZERO).await;
    let admin = app.admin().await.access_token;
    let service = app.service_token().await;
    feed(&app)
        .list_revocation_state(bearer(pb::ListRevocationStateRequest::default(), &service))
        .await
        .unwrap();
    let ann = app.user("ann@example.com").await;
    let ann_id = ann.user.clone().unwrap().id;
    let other = app.login("ann@example.com", PASSWORD).await.unwrap();
    assert_eq!(app.me(&ann.access_token).await.unwrap().id, ann_id);

    app.auth()
        .logout(pb::LogoutRequest {
            refresh_token: ann.refresh_token.clone(),
        })
        .await
        .unwrap();
    assert_error(
        app.me(&ann.access_token).await,
        Code::Unauthenticated,
        "INVALID_TOKEN",
    );
    assert_eq!(app.me(&other.access_token).await.unwrap().id, ann_id);

    set_roles(&app, &admin, &ann_id, &["verifier"])
        .await
        .unwrap();
    assert_error(
        app.me(&other.access_token).await,
        Code::Unauthenticated,
        "INVALID_TOKEN",
    );
    let promoted = app.login("ann@example.com", PASSWORD).await.unwrap();
    assert_eq!(
        app.me(&promoted.access_token).await.unwrap().roles,
        ["verifier"]
    );

    disable(&app, &admin, &ann_id, true).await;
    assert_error(
        app.me(&promoted.access_token).await,
        Code::Unauthenticated,
        "INVALID_TOKEN",
    );
    // A well-signed token of nobody the database knows.
    let stranger = app.sign(&app.claims(&uuid::Uuid::now_v7().to_string(), &["user"]));
    assert_error(
        app.me(&stranger).await,
        Code::Unauthenticated,
        "INVALID_TOKEN",
    );
}

/// Heartbeats come at least every second however seldom the replica polls
/// its log: one vouches for state read within five poll intervals (at
/// least 500 ms). With the window a fifth of the interval instead (tried),
/// they stopped for some 3 s after each poll at this interval.
#[tokio::test]
async fn heartbeats_keep_their_pace_between_slow_polls() {
    let app = spawn_app_with(|c| {
        c.revocation_poll_interval = Duration::from_secs(4);
        c.revocation_max_staleness = Duration::from_secs(20);
    })
    .await;
    let service = app.service_token().await;
    let mut stream = watch_from_start(&app, &service).await;
    let start = std::time::Instant::now();
    let mut last = start;
    let mut longest = Duration::ZERO;
    while start.elapsed() < Duration::from_secs(6) {
        let message = tokio::time::timeout(Duration::from_secs(5), stream.message())
            .await
            .expect("a heartbeat within 5 s")
            .unwrap()
            .unwrap();
        assert!(matches!(message.message, Some(Message::Heartbeat(_))));
        longest = longest.max(last.elapsed());
        last = std::time::Instant::now();
    }
    testkit::measured(format_args!(
        "longest gap between heartbeats over 6 s, polls every 4 s: {longest:?}"
    ));
    assert!(longest < Duration::from_secs(2), "{longest:?}");
}

/// A heartbeat says the replica read its log lately. While the database is
/// out, the heartbeats stop (so subscribers go stale and fail safe) and
/// they resume when it is back. Heartbeats sent whatever the state's age
/// (tried: `||` for `&&`) vouched on through the outage. PostgreSQL only:
/// the outage is a database that refuses connections.
#[tokio::test]
async fn heartbeats_stop_while_the_log_cannot_be_read() {
    let app = spawn_app().await;
    if app
        .db
        .skips_without_postgres("an outage of the revocation log")
    {
        return;
    }
    let service = app.service_token().await;
    let mut stream = watch_from_start(&app, &service).await;
    let wait = Duration::from_secs(5);
    let first = tokio::time::timeout(wait, stream.message()).await;
    assert!(first.unwrap().unwrap().is_some(), "heartbeats flow");
    app.db.set_reachable(false).await;
    let outage = std::time::Instant::now();
    // What was read just before the outage vouches for 500 ms more.
    let mut last = outage;
    while outage.elapsed() < Duration::from_secs(3) {
        let step = tokio::time::timeout(Duration::from_millis(250), stream.message()).await;
        if let Ok(message) = step {
            assert!(message.unwrap().is_some(), "the feed ends not in an outage");
            last = std::time::Instant::now();
        }
    }
    let vouched = last - outage;
    testkit::measured(format_args!(
        "heartbeats went on for {vouched:?} into the outage"
    ));
    assert!(vouched < Duration::from_millis(1500), "{vouched:?}");
    app.db.set_reachable(true).await;
    let resumed = tokio::time::timeout(wait, stream.message()).await;
    assert!(
        resumed
            .expect("heartbeats resume after the outage")
            .unwrap()
            .is_some(),
        "the feed goes on"
    );
}

/// More facts than one poll reads (1000) before a replica starts: it
/// reads them all before it trusts its state, so a user disabled by the
/// newest fact is refused at once. Confirming the state after a full
/// first batch (tried: `<=` for `<`) accepted her token until the next
/// poll, an hour later here. The same changes make more audit events than
/// the chain check reads at once, and all of them are checked (stopping
/// after the first batch was tried too).
#[tokio::test]
async fn a_log_longer_than_one_batch_is_read_to_its_end() {
    let mut app = spawn_app_with(|c| {
        c.revocation_poll_interval = Duration::from_secs(3600);
        c.revocation_max_staleness = Duration::from_secs(3600);
    })
    .await;
    let admin = app.admin().await.access_token;
    let bo = app.user("bo@example.com").await.user.unwrap().id;
    let ann = app.user("ann@example.com").await;
    let started = std::time::Instant::now();
    for _ in 0..500 {
        disable(&app, &admin, &bo, true).await;
        disable(&app, &admin, &bo, false).await;
    }
    testkit::measured(format_args!(
        "1000 audited changes, one at a time: {:?}",
        started.elapsed()
    ));
    disable(&app, &admin, &ann.user.unwrap().id, true).await;
    app.restart().await;
    let service = app.service_token().await;
    // The first heartbeat comes once the replica trusts its state.
    let (_, beat) = read_feed(&app, &service, 1001, 1001).await.unwrap();
    assert_eq!(beat.cursor, 1001);
    assert_error(
        app.me(&ann.access_token).await,
        Code::Unauthenticated,
        "INVALID_TOKEN",
    );
    let report = app.verify_chain(&admin).await;
    assert!(report.valid, "{report:?}");
    assert!(report.events_checked > 1001, "{report:?}");
}
