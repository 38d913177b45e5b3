use document_service::TokenValidation;
use shared::{db::Db, on_dialect, proto::audit::v1::VerifyAuditChainRequest};

use crate::helpers::*;

#[tokio::test]
async fn the_document_trail_is_append_only_and_tamper_evident() {
    let stack = spawn_stack(TokenValidation::Local).await;
    let (owner, _) = stack.user_with_roles("trail@example.com", &["user"]).await;
    for i in 0..3 {
        stack
            .upload(&owner, &format!("doc {i}"), b"abc")
            .await
            .unwrap();
    }
    // A denial is audited too.
    let denied = stack
        .docs
        .documents()
        .verify_document(bearer(Default::default(), &owner))
        .await;
    assert_error(denied, tonic::Code::PermissionDenied, "PERMISSION_DENIED");
    let admin = stack.admin().await;
    let denials = stack.doc_events(&admin, "authz.denied").await;
    assert_eq!(denials.len(), 1);
    assert_eq!(
        denials[0].target_id,
        "/docverify.document.v1.DocumentService/VerifyDocument"
    );
    assert_eq!(denials[0].actor_email, "trail@example.com");

    let verify = || {
        let mut client = stack.docs.audit();
        let token = admin.clone();
        async move {
            client
                .verify_audit_chain(bearer(VerifyAuditChainRequest {}, &token))
                .await
                .unwrap()
                .into_inner()
        }
    };
    let report = verify().await;
    assert!(report.valid);
    assert_eq!(report.events_checked, 4);

    let db = Db::connect(&stack.docs.db.url, &Default::default())
        .await
        .unwrap();
    let refused = on_dialect!(db.writer(), p => sqlx::query("DELETE FROM audit_events WHERE sequence = 4").execute(p).await.map(|_| ()));
    assert!(refused.is_err(), "DELETE must be refused");
    let drop = if stack.docs.db.is_postgres() {
        "DROP TRIGGER audit_events_no_delete ON audit_events"
    } else {
        "DROP TRIGGER audit_events_no_delete"
    };
    on_dialect!(db.writer(), p => {
        sqlx::query(sqlx::AssertSqlSafe(drop)).execute(p).await.unwrap();
        sqlx::query("DELETE FROM audit_events WHERE sequence = 2").execute(p).await.unwrap();
    });
    let report = verify().await;
    assert!(!report.valid);
    assert_eq!(report.first_invalid_sequence, 2, "the gap is named");
    db.close().await;
}
