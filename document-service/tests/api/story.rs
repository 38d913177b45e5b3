use document_service::TokenValidation;
use shared::proto::{audit::v1::ListAuditEventsRequest, document::v1 as pb};

use crate::helpers::*;

/// A user uploads, an admin makes someone a verifier, the verifier verifies,
/// and an auditor finds out who verified it, when, and what was done.
async fn whole_story(mode: TokenValidation) {
    let stack = spawn_stack(mode).await;
    let (owner, owner_id) = stack.user_with_roles("owner@example.com", &["user"]).await;
    let content: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let doc = stack
        .upload(&owner, "passport scan", &content)
        .await
        .unwrap();
    assert_eq!(doc.owner_id, owner_id);
    assert_eq!(doc.size_bytes, content.len() as i64);
    assert_eq!(doc.sha256, sha256_hex(&content));
    assert_eq!(doc.status, pb::DocumentStatus::Pending as i32);

    let (verifier, verifier_id) = stack
        .user_with_roles("verifier@example.com", &["verifier"])
        .await;
    let verified = stack
        .docs
        .documents()
        .verify_document(bearer(
            pb::VerifyDocumentRequest {
                document_id: doc.id.clone(),
                note: "matches the register".into(),
            },
            &verifier,
        ))
        .await
        .unwrap()
        .into_inner()
        .document
        .unwrap();
    assert_eq!(verified.status, pb::DocumentStatus::Verified as i32);
    assert_eq!(verified.reviewed_by, verifier_id);
    assert!(verified.reviewed_at.is_some());

    let (auditor, _) = stack
        .user_with_roles("auditor@example.com", &["auditor"])
        .await;
    let trail = stack
        .docs
        .audit()
        .list_audit_events(bearer(
            ListAuditEventsRequest {
                target_id: doc.id.clone(),
                ..Default::default()
            },
            &auditor,
        ))
        .await
        .unwrap()
        .into_inner()
        .events;
    let actions: Vec<&str> = trail.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        vec!["document.verified", "document.uploaded"],
        "newest first"
    );
    let who = &trail[0];
    assert_eq!(who.actor_id, verifier_id);
    assert_eq!(who.actor_email, "verifier@example.com");
    assert!(who.occurred_at.is_some());
    let details: serde_json::Value = serde_json::from_str(&who.details_json).unwrap();
    assert_eq!(details["note"], "matches the register");
    let chain = verified_log(&stack.docs.channel, &auditor).await;
    assert!(chain.valid && chain.events_checked >= 2, "{chain:?}");

    let downloaded = stack.download(&owner, &doc.id).await.unwrap();
    assert_eq!(downloaded, content);
    assert_eq!(sha256_hex(&downloaded), doc.sha256);
    // The auditor reads any document too, and changes nothing.
    assert_eq!(
        stack.download(&auditor, &doc.id).await.unwrap().len(),
        content.len()
    );
}

#[tokio::test]
async fn story_with_local_token_verification() {
    whole_story(TokenValidation::Local).await;
}

#[tokio::test]
async fn story_with_remote_token_validation() {
    whole_story(TokenValidation::Remote).await;
}
