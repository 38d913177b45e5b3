use tonic::Code;

use crate::helpers::*;
use shared::{db::Db, on_dialect};

async fn raw_db(app: &TestApp) -> Db {
    Db::connect(&app.db.url, &Default::default()).await.unwrap()
}

/// Asserts that `result` is the append-only trigger's own refusal, not
/// just any SQL error (a typo in the statement would be one too).
#[track_caller]
fn refused_as_append_only(result: Result<(), sqlx::Error>, what: &str) {
    let error = result.expect_err(what);
    let message = error
        .as_database_error()
        .map(|e| e.message().to_owned())
        .unwrap_or_default();
    assert!(
        message.contains("audit_events is append-only"),
        "{what}: refused by the trigger, got {error:?}"
    );
}

#[tokio::test]
async fn the_chain_is_valid_and_append_only() {
    let app = spawn_app().await;
    app.user("tess@example.com").await;
    let _ = app.login("tess@example.com", "wrong wrong wrong").await;
    let admin = app.admin().await;
    let report = app.verify_chain(&admin.access_token).await;
    assert!(report.valid, "{report:?}");
    assert!(report.events_checked >= 4, "{report:?}");
    assert_eq!(report.first_invalid_sequence, 0);

    let events = app.events(&admin.access_token, "").await;
    let sequences: Vec<i64> = events.iter().map(|e| e.sequence).collect();
    let mut expected: Vec<i64> = (1..=events.len() as i64).collect();
    expected.reverse();
    assert_eq!(sequences, expected, "gapless, newest first");
    let registered = events
        .iter()
        .find(|e| e.action == "user.registered" && e.actor_email == "tess@example.com")
        .unwrap();
    assert!(!registered.request_id.is_empty());
    assert_eq!(registered.client_addr, "127.0.0.1");

    let db = raw_db(&app).await;
    let update = on_dialect!(db.writer(), p => sqlx::query("UPDATE audit_events SET action = 'x'").execute(p).await.map(|_| ()));
    refused_as_append_only(update, "UPDATE");
    let delete = on_dialect!(db.writer(), p => sqlx::query("DELETE FROM audit_events").execute(p).await.map(|_| ()));
    refused_as_append_only(delete, "DELETE");
    if app.db.is_postgres() {
        let truncate = on_dialect!(db.writer(), p => sqlx::query("TRUNCATE audit_events CASCADE").execute(p).await.map(|_| ()));
        refused_as_append_only(truncate, "TRUNCATE");
    }
    db.close().await;
}

#[tokio::test]
async fn tampering_is_found_and_named() {
    let mut app = spawn_app().await;
    app.user("uma@example.com").await;
    app.user("vic@example.com").await;
    let admin = app.admin().await;
    let target = app
        .events(&admin.access_token, "user.registered")
        .await
        .last()
        .unwrap()
        .sequence
        + 1;

    // Behind the service's back: drop the trigger, edit a row, put it back.
    let db = raw_db(&app).await;
    let sqlite_trigger = "CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events \
                          BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END";
    let pg_trigger = "CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events \
                      FOR EACH ROW EXECUTE FUNCTION audit_events_append_only()";
    let drop = if app.db.is_postgres() {
        "DROP TRIGGER audit_events_no_update ON audit_events"
    } else {
        "DROP TRIGGER audit_events_no_update"
    };
    on_dialect!(db.writer(), p => {
        sqlx::query(sqlx::AssertSqlSafe(drop)).execute(p).await.unwrap();
        sqlx::query("UPDATE audit_events SET actor_email = 'someone-else@example.com' \
                     WHERE position = (SELECT position FROM audit_leaves WHERE sequence = $1)")
            .bind(target)
            .execute(p)
            .await
            .unwrap();
    });
    let report = app.verify_chain(&admin.access_token).await;
    assert!(!report.valid);
    assert_eq!(report.first_invalid_sequence, target);

    // With the trigger gone, the service refuses to start.
    app.stop().await;
    let url = app.db.url.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut config = <auth_service::Config as clap::FromArgMatches>::from_arg_matches(
        &<auth_service::Config as clap::Args>::augment_args(clap::Command::new("t"))
            .get_matches_from(["t"]),
    )
    .unwrap();
    config.database_url = url;
    let refused = auth_service::serve(config, listener, std::future::pending()).await;
    let message = format!("{:?}", refused.expect_err("must refuse to serve"));
    assert!(message.contains("audit_events_no_update"), "{message}");

    let create = if app.db.is_postgres() {
        pg_trigger
    } else {
        sqlite_trigger
    };
    on_dialect!(db.writer(), p => sqlx::query(sqlx::AssertSqlSafe(create)).execute(p).await.map(|_| ())).unwrap();
    db.close().await;
}

#[tokio::test]
async fn a_rolled_back_change_leaves_no_event() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let before = app.events(&admin.access_token, "").await;
    // A failure injected after the append has written everything (the
    // event row and its place in the sequencer's queue), before the commit:
    // the queue's insert fails for this one registration.
    let db = raw_db(&app).await;
    let inject: &[&str] = if app.db.is_postgres() {
        &[
            "CREATE FUNCTION fail_doomed() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
             IF (SELECT actor_email FROM audit_events WHERE position = NEW.position) = 'doomed@example.com' \
             THEN RAISE EXCEPTION 'injected failure'; END IF; RETURN NEW; END $$",
            "CREATE TRIGGER fail_doomed AFTER INSERT ON audit_pending \
             FOR EACH ROW EXECUTE FUNCTION fail_doomed()",
        ]
    } else {
        &["CREATE TRIGGER fail_doomed AFTER INSERT ON audit_pending \
           WHEN (SELECT actor_email FROM audit_events WHERE position = NEW.position) = 'doomed@example.com' \
           BEGIN SELECT RAISE(ABORT, 'injected failure'); END"]
    };
    for statement in inject {
        on_dialect!(db.writer(), p => sqlx::query(sqlx::AssertSqlSafe(*statement)).execute(p).await.map(|_| ())).unwrap();
    }
    let doomed = app
        .auth()
        .register(shared::proto::auth::v1::RegisterRequest {
            email: "doomed@example.com".into(),
            password: PASSWORD.into(),
            display_name: "Doomed".into(),
        })
        .await;
    assert_error(doomed, Code::Internal, "INTERNAL");
    let after = app.events(&admin.access_token, "").await;
    assert_eq!(
        after.len(),
        before.len(),
        "the failed registration left no event"
    );
    // Nor did it burn a sequence number: the next event follows on directly.
    app.register("walt@example.com").await;
    let latest = app.events(&admin.access_token, "user.registered").await;
    assert_eq!(latest[0].actor_email, "walt@example.com");
    assert_eq!(latest[0].sequence, after[0].sequence + 1);
    assert!(app.verify_chain(&admin.access_token).await.valid);
    let drop: &[&str] = if app.db.is_postgres() {
        &[
            "DROP TRIGGER fail_doomed ON audit_pending",
            "DROP FUNCTION fail_doomed",
        ]
    } else {
        &["DROP TRIGGER fail_doomed"]
    };
    for statement in drop {
        on_dialect!(db.writer(), p => sqlx::query(sqlx::AssertSqlSafe(*statement)).execute(p).await.map(|_| ())).unwrap();
    }
    assert_error(
        app.login("doomed@example.com", PASSWORD).await,
        Code::Unauthenticated,
        "INVALID_CREDENTIALS",
    );
    db.close().await;
}

#[tokio::test]
async fn migrations_apply_from_empty_and_refuse_a_newer_schema() {
    let app = spawn_app().await;
    let db = raw_db(&app).await;
    // Applying again is a no-op.
    db.migrate(auth_service::SERVICE.migrations).await.unwrap();
    on_dialect!(db.writer(), p => sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (99990101000000, 'from the future', TRUE, $1, 0)",
    )
    .bind(vec![0u8; 48])
    .execute(p)
    .await
    .map(|_| ()))
    .unwrap();
    let refused = db
        .migrate(auth_service::SERVICE.migrations)
        .await
        .expect_err("newer schema");
    assert!(format!("{refused:?}").contains("newer"), "{refused:?}");
    db.close().await;
}

/// ListAuditEvents pages with sealed tokens (tampered, replayed under other
/// filters or by another caller: INVALID_ARGUMENT) and filters by actor and
/// by time (the service's clock is moved between two batches of events).
#[tokio::test]
async fn audit_listing_pages_and_filters() {
    use shared::proto::audit::v1::ListAuditEventsRequest;
    let app = spawn_app().await;
    let admin = app.admin().await;
    let auditor = app.user("auditor@example.com").await;
    let auditor_id = auditor.user.as_ref().unwrap().id.clone();
    set_roles(&app, &admin.access_token, &auditor_id, &["auditor"])
        .await
        .unwrap();
    for i in 0..4 {
        app.register(&format!("early{i}@example.com")).await;
    }
    app.clock.advance(std::time::Duration::from_secs(3600));
    let boundary = app.clock.now();
    for i in 0..3 {
        app.register(&format!("late{i}@example.com")).await;
    }
    // An hour on, the earlier access tokens have expired.
    let admin = app.admin().await;
    let auditor = app.login("auditor@example.com", PASSWORD).await.unwrap();
    let list = |token: String, req: ListAuditEventsRequest| {
        let mut audit = app.audit();
        async move {
            audit
                .list_audit_events(bearer(req, &token))
                .await
                .map(|r| r.into_inner())
        }
    };
    let registered = |page_token: String| ListAuditEventsRequest {
        action: "user.registered".into(),
        page_size: 3,
        page_token,
        ..Default::default()
    };

    // Real paging: pages of 3, newest first, no overlap, nothing missed.
    let all = app.events(&admin.access_token, "user.registered").await;
    let mut paged = Vec::new();
    let mut token = String::new();
    let mut first_token = None;
    loop {
        let page = list(admin.access_token.clone(), registered(token))
            .await
            .unwrap();
        assert!(page.events.len() <= 3);
        paged.extend(page.events.iter().map(|e| e.sequence));
        if page.next_page_token.is_empty() {
            break;
        }
        first_token.get_or_insert(page.next_page_token.clone());
        token = page.next_page_token;
    }
    let expected: Vec<i64> = all.iter().map(|e| e.sequence).collect();
    assert_eq!(paged, expected, "the pages add up to the whole list");
    assert!(expected.len() >= 9, "{}", expected.len());
    let token = first_token.unwrap();

    // Tampered, replayed under another filter, replayed by another caller.
    let mut tampered = token.clone().into_bytes();
    tampered[2] = if tampered[2] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    let bad = assert_error(
        list(admin.access_token.clone(), registered(tampered)).await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(violated_fields(&bad), ["page_token"]);
    let other_filter = ListAuditEventsRequest {
        action: "auth.login_succeeded".into(),
        ..registered(token.clone())
    };
    assert_error(
        list(admin.access_token.clone(), other_filter).await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_error(
        list(auditor.access_token.clone(), registered(token)).await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );

    // By actor: only that user's events.
    let by_actor = list(
        admin.access_token.clone(),
        ListAuditEventsRequest {
            actor_id: auditor_id.clone(),
            page_size: 100,
            ..Default::default()
        },
    )
    .await
    .unwrap()
    .events;
    assert!(!by_actor.is_empty());
    assert!(by_actor.iter().all(|e| e.actor_id == auditor_id));

    // By time: `since` includes the boundary, `until` excludes it.
    let registered_in = |since, until| ListAuditEventsRequest {
        action: "user.registered".into(),
        page_size: 100,
        since,
        until,
        ..Default::default()
    };
    let late = list(
        admin.access_token.clone(),
        registered_in(Some(boundary.to_proto()), None),
    )
    .await
    .unwrap()
    .events;
    let emails: Vec<&str> = late.iter().map(|e| e.actor_email.as_str()).collect();
    assert_eq!(
        emails,
        [
            "late2@example.com",
            "late1@example.com",
            "late0@example.com"
        ]
    );
    let early = list(
        admin.access_token.clone(),
        registered_in(None, Some(boundary.to_proto())),
    )
    .await
    .unwrap()
    .events;
    assert_eq!(early.len(), all.len() - 3);
    assert!(early.iter().all(|e| !e.actor_email.starts_with("late")));
}

/// Rows added or removed behind the service's back. The triggers allow
/// INSERT (the log is append-only, not closed), so a forged row is not
/// hidden: it becomes the newest leaf, after everything already in the
/// log, in the open. A removed row leaves a hole in the sequence that
/// VerifyAuditChain names.
#[tokio::test]
async fn inserted_rows_join_the_log_in_the_open_and_removed_ones_are_named() {
    let app = spawn_app().await;
    app.user("rhea@example.com").await;
    let admin = app.admin().await;
    assert!(app.verify_chain(&admin.access_token).await.valid);
    let before = app.events(&admin.access_token, "").await;
    let db = raw_db(&app).await;

    let forged = "INSERT INTO audit_events (id, occurred_at, actor_id, actor_email, action, \
                  target_type, target_id, outcome, request_id, client_addr, details) \
                  SELECT $2, occurred_at, actor_id, actor_email, action, target_type, \
                  target_id, outcome, request_id, client_addr, details \
                  FROM audit_events WHERE position = (SELECT position FROM audit_leaves WHERE sequence = $1)";
    // A copy of the first event with a fresh id (ids are unique).
    on_dialect!(db.writer(), p => {
        sqlx::query(forged)
            .bind(1_i64)
            .bind(uuid::Uuid::now_v7())
            .execute(p)
            .await
            .unwrap();
    });
    let report = app.verify_chain(&admin.access_token).await;
    assert!(report.valid, "{report:?}");
    let after = app.events(&admin.access_token, "").await;
    assert_eq!(after.len(), before.len() + 1);
    assert_eq!(
        after[0].sequence,
        before.len() as i64 + 1,
        "the copy is the newest leaf, not where it pretends to be"
    );

    // Remove the second event (its leaf and the row, triggers dropped).
    let drops: &[&str] = if app.db.is_postgres() {
        &[
            "DROP TRIGGER audit_events_no_delete ON audit_events",
            "DROP TRIGGER audit_leaves_no_delete ON audit_leaves",
        ]
    } else {
        &[
            "DROP TRIGGER audit_events_no_delete",
            "DROP TRIGGER audit_leaves_no_delete",
        ]
    };
    for drop in drops {
        on_dialect!(db.writer(), p => sqlx::query(sqlx::AssertSqlSafe(*drop)).execute(p).await.map(|_| ())).unwrap();
    }
    on_dialect!(db.writer(), p => {
        let position: i64 = sqlx::query_scalar("SELECT position FROM audit_leaves WHERE sequence = 2")
            .fetch_one(&mut *p.acquire().await.unwrap())
            .await
            .unwrap();
        sqlx::query("DELETE FROM audit_leaves WHERE sequence = 2").execute(p).await.unwrap();
        sqlx::query("DELETE FROM audit_events WHERE position = $1").bind(position).execute(p).await.unwrap();
    });
    let report = app.verify_chain(&admin.access_token).await;
    assert!(!report.valid, "a removed event is found: {report:?}");
    assert_eq!(report.first_invalid_sequence, 2);
    db.close().await;
}
