use tonic::Code;

use crate::helpers::*;
use shared::{db::Db, on_dialect};

async fn raw_db(app: &TestApp) -> Db {
    Db::connect(&app.db.url, &Default::default()).await.unwrap()
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
    assert!(update.is_err(), "UPDATE must be refused by the database");
    let delete = on_dialect!(db.writer(), p => sqlx::query("DELETE FROM audit_events").execute(p).await.map(|_| ()));
    assert!(delete.is_err(), "DELETE must be refused by the database");
    if app.db.is_postgres() {
        let truncate = on_dialect!(db.writer(), p => sqlx::query("TRUNCATE audit_events").execute(p).await.map(|_| ()));
        assert!(
            truncate.is_err(),
            "TRUNCATE must be refused by the database"
        );
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
        sqlx::query("UPDATE audit_events SET actor_email = 'someone-else@example.com' WHERE sequence = $1")
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
    app.register("walt@example.com").await;
    let admin = app.admin().await;
    let before = app.events(&admin.access_token, "").await.len();
    // A duplicate registration fails inside its transaction after the
    // audit append would have happened: nothing may remain.
    let dup = app
        .auth()
        .register(shared::proto::auth::v1::RegisterRequest {
            email: "walt@example.com".into(),
            password: PASSWORD.into(),
            display_name: "Walt".into(),
        })
        .await;
    assert_error(dup, Code::AlreadyExists, "EMAIL_TAKEN");
    let after = app.events(&admin.access_token, "").await;
    assert_eq!(after.len(), before, "the failed registration left no event");
    // Nor did it burn a sequence number: the next event follows on directly.
    app.admin().await;
    let latest = app.events(&admin.access_token, "").await;
    assert_eq!(latest[0].sequence, after[0].sequence + 1);
    assert!(app.verify_chain(&admin.access_token).await.valid);
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
