use document_service::TokenValidation;
use shared::proto::document::v1 as pb;
use tonic::Code;

use crate::helpers::*;

async fn list(
    stack: &Stack,
    token: &str,
    req: pb::ListDocumentsRequest,
) -> Result<pb::ListDocumentsResponse, tonic::Status> {
    stack
        .docs
        .documents()
        .list_documents(bearer(req, token))
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test]
async fn other_peoples_documents_do_not_exist() {
    let stack = spawn_stack(TokenValidation::Local).await;
    let (alice, _) = stack.user_with_roles("alice@example.com", &["user"]).await;
    let (bob, bob_id) = stack.user_with_roles("bob@example.com", &["user"]).await;
    let doc = stack.upload(&bob, "bob's lease", b"private").await.unwrap();

    assert_error(
        get(&stack, &alice, &doc.id).await,
        Code::NotFound,
        "NOT_FOUND",
    );
    assert_error(
        stack.download(&alice, &doc.id).await,
        Code::NotFound,
        "NOT_FOUND",
    );
    assert_error(
        delete(&stack, &alice, &doc.id).await,
        Code::NotFound,
        "NOT_FOUND",
    );
    // The refused delete changed nothing: the owner still has it all.
    let kept = get(&stack, &bob, &doc.id).await.unwrap();
    assert_eq!(kept.status, pb::DocumentStatus::Pending as i32);
    assert_eq!(stack.download(&bob, &doc.id).await.unwrap(), b"private");
    let missing = uuid::Uuid::now_v7().to_string();
    let a = assert_error(
        get(&stack, &alice, &doc.id).await,
        Code::NotFound,
        "NOT_FOUND",
    );
    let b = assert_error(
        get(&stack, &alice, &missing).await,
        Code::NotFound,
        "NOT_FOUND",
    );
    assert_eq!(
        a.message(),
        b.message(),
        "a hidden document looks like a missing one"
    );

    let mine = list(&stack, &alice, Default::default()).await.unwrap();
    assert!(mine.documents.is_empty());
    let theirs = list(
        &stack,
        &alice,
        pb::ListDocumentsRequest {
            owner_id: bob_id,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(
        theirs.documents.is_empty(),
        "asking for someone else's documents shows nothing"
    );

    let bad = assert_error(
        get(&stack, &alice, "nope").await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(violated_fields(&bad), vec!["document_id"]);
}

#[tokio::test]
async fn review_rules() {
    let stack = spawn_stack(TokenValidation::Local).await;
    let (owner, _) = stack.user_with_roles("own@example.com", &["user"]).await;
    let (verifier, _) = stack
        .user_with_roles("ver@example.com", &["verifier"])
        .await;
    let doc = stack.upload(&owner, "diploma", b"content").await.unwrap();

    // A reason is required to reject.
    let status = assert_error(
        reject(&stack, &verifier, &doc.id, "  ").await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(violated_fields(&status), vec!["reason"]);

    let rejected = reject(&stack, &verifier, &doc.id, "blurry scan")
        .await
        .unwrap();
    assert_eq!(rejected.status, pb::DocumentStatus::Rejected as i32);
    assert_eq!(rejected.review_note, "blurry scan");
    assert_error(
        verify(&stack, &verifier, &doc.id).await,
        Code::FailedPrecondition,
        "DOCUMENT_NOT_PENDING",
    );

    // Nobody reviews their own document.
    let own = stack.upload(&verifier, "my own", b"mine").await.unwrap();
    assert_error(
        verify(&stack, &verifier, &own.id).await,
        Code::PermissionDenied,
        "SELF_REVIEW",
    );

    let admin = stack.admin().await;
    let events = stack.doc_events(&admin, "document.rejected").await;
    assert_eq!(events.len(), 1);
    let details: serde_json::Value = serde_json::from_str(&events[0].details_json).unwrap();
    assert_eq!(details["reason"], "blurry scan");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_reviews_have_one_winner_and_one_event() {
    let stack = spawn_stack(TokenValidation::Local).await;
    let (owner, _) = stack.user_with_roles("o@example.com", &["user"]).await;
    let (v1, _) = stack.user_with_roles("v1@example.com", &["verifier"]).await;
    let (v2, _) = stack.user_with_roles("v2@example.com", &["verifier"]).await;
    let doc = stack.upload(&owner, "contract", b"terms").await.unwrap();
    let attempts = (0..12).map(|i| {
        let mut client = stack.docs.documents();
        let token = if i % 2 == 0 { v1.clone() } else { v2.clone() };
        let id = doc.id.clone();
        async move {
            if i % 3 == 0 {
                client
                    .reject_document(bearer(
                        pb::RejectDocumentRequest {
                            document_id: id,
                            reason: "no".into(),
                        },
                        &token,
                    ))
                    .await
                    .map(|_| ())
            } else {
                client
                    .verify_document(bearer(
                        pb::VerifyDocumentRequest {
                            document_id: id,
                            note: String::new(),
                        },
                        &token,
                    ))
                    .await
                    .map(|_| ())
            }
        }
    });
    let results = concurrently(attempts).await;
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        1,
        "{results:?}"
    );
    assert!(
        results
            .iter()
            .filter_map(|r| r.as_ref().err())
            .all(|s| s.code() == Code::FailedPrecondition)
    );
    let admin = stack.admin().await;
    let verified = stack.doc_events(&admin, "document.verified").await;
    let rejected = stack.doc_events(&admin, "document.rejected").await;
    assert_eq!(verified.len() + rejected.len(), 1);
    // The document ends as the one successful review left it, by its author.
    let (event, status) = match (verified.first(), rejected.first()) {
        (Some(e), None) => (e, pb::DocumentStatus::Verified),
        (None, Some(e)) => (e, pb::DocumentStatus::Rejected),
        other => panic!("one review event, got {other:?}"),
    };
    let reviewed = get(&stack, &admin, &doc.id).await.unwrap();
    assert_eq!(reviewed.status, status as i32);
    assert_eq!(reviewed.reviewed_by, event.actor_id);
}

#[tokio::test]
async fn delete_rules() {
    let stack = spawn_stack(TokenValidation::Local).await;
    let (owner, _) = stack.user_with_roles("del@example.com", &["user"]).await;
    let (verifier, _) = stack
        .user_with_roles("delver@example.com", &["verifier"])
        .await;
    let admin = stack.admin().await;

    let pending = stack.upload(&owner, "draft", b"one").await.unwrap();
    delete(&stack, &owner, &pending.id).await.unwrap();
    assert_error(
        get(&stack, &owner, &pending.id).await,
        Code::NotFound,
        "NOT_FOUND",
    );

    let reviewed = stack.upload(&owner, "final", b"two").await.unwrap();
    assert_error(
        delete(&stack, &verifier, &reviewed.id).await,
        Code::PermissionDenied,
        "PERMISSION_DENIED",
    );
    verify(&stack, &verifier, &reviewed.id).await.unwrap();
    assert_error(
        delete(&stack, &owner, &reviewed.id).await,
        Code::FailedPrecondition,
        "DOCUMENT_NOT_PENDING",
    );
    delete(&stack, &admin, &reviewed.id).await.unwrap();
    assert_eq!(
        count(&stack.docs.db, "document_chunks").await,
        0,
        "content goes with the row"
    );
    assert_eq!(stack.doc_events(&admin, "document.deleted").await.len(), 2);
}

#[tokio::test]
async fn listing_pages_filters_and_tokens() {
    let stack = spawn_stack(TokenValidation::Local).await;
    let (owner, _) = stack.user_with_roles("lister@example.com", &["user"]).await;
    let (other, _) = stack.user_with_roles("other@example.com", &["user"]).await;
    let (verifier, _) = stack.user_with_roles("lv@example.com", &["verifier"]).await;
    let mut ids = Vec::new();
    for i in 0..7 {
        ids.push(
            stack
                .upload(&owner, &format!("doc {i}"), b"x")
                .await
                .unwrap()
                .id,
        );
    }
    stack.upload(&other, "not yours", b"y").await.unwrap();
    verify(&stack, &verifier, &ids[2]).await.unwrap();

    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = list(
            &stack,
            &owner,
            pb::ListDocumentsRequest {
                page_size: 3,
                page_token: token,
                ..Default::default()
            },
        )
        .await
        .unwrap();
        assert!(page.documents.len() <= 3);
        seen.extend(page.documents.into_iter().map(|d| d.id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let mut newest_first = ids.clone();
    newest_first.reverse();
    assert_eq!(seen, newest_first);

    let all = list(&stack, &verifier, Default::default()).await.unwrap();
    assert_eq!(all.documents.len(), 8, "read_any sees everyone's");
    let verified = list(
        &stack,
        &verifier,
        pb::ListDocumentsRequest {
            status: pb::DocumentStatus::Verified as i32,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(verified.documents.len(), 1);

    let first = list(
        &stack,
        &owner,
        pb::ListDocumentsRequest {
            page_size: 1,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    // Another caller cannot use my page token, nor can I under other filters.
    let stolen = list(
        &stack,
        &other,
        pb::ListDocumentsRequest {
            page_size: 1,
            page_token: first.next_page_token.clone(),
            ..Default::default()
        },
    )
    .await;
    assert_error(stolen, Code::InvalidArgument, "INVALID_ARGUMENT");
    let refiltered = list(
        &stack,
        &owner,
        pb::ListDocumentsRequest {
            page_size: 1,
            page_token: first.next_page_token.clone(),
            status: pb::DocumentStatus::Pending as i32,
            ..Default::default()
        },
    )
    .await;
    assert_error(refiltered, Code::InvalidArgument, "INVALID_ARGUMENT");
    for (size, token, status, field) in [
        (-1, String::new(), 0, "page_size"),
        (0, "garbage!".to_owned(), 0, "page_token"),
        (0, String::new(), 99, "status"),
    ] {
        let bad = list(
            &stack,
            &owner,
            pb::ListDocumentsRequest {
                page_size: size,
                page_token: token,
                status,
                owner_id: String::new(),
            },
        )
        .await;
        let status = assert_error(bad, Code::InvalidArgument, "INVALID_ARGUMENT");
        assert_eq!(violated_fields(&status), vec![field]);
    }
    let huge = list(
        &stack,
        &owner,
        pb::ListDocumentsRequest {
            page_size: 1_000_000_000,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(huge.documents.len(), 7, "capped, not refused");
}
