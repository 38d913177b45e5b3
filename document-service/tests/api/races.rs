//! document-service under concurrency and exhaustion: deletes racing
//! reviews and each other, chain verification while writes go on, downloads
//! of documents deleted mid-stream, readers that stop reading. Each test says
//! how it failed before the fix.

use std::{sync::Arc, time::Duration};

use document_service::TokenValidation;
use shared::proto::{
    audit::v1::VerifyAuditChainRequest,
    document::v1::{self as pb, document_service_client::DocumentServiceClient},
};
use tonic::{Code, transport::Channel};

use crate::helpers::*;

/// The owner deletes while a verifier rejects, twelve rounds. Before the
/// fix DeleteDocument read the row, checked it was pending, then deleted: on
/// PostgreSQL two of three races deleted a document that had just been
/// rejected (both calls succeeded). SQLite's single writer serialised them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_racing_a_review_has_one_winner() {
    let stack = Arc::new(spawn_stack(TokenValidation::Local).await);
    let (owner, _) = stack
        .user_with_roles("racing-owner@example.com", &["user"])
        .await;
    let (verifier, _) = stack
        .user_with_roles("racing-verifier@example.com", &["verifier"])
        .await;
    let admin = stack.admin().await;
    for round in 0..12 {
        let doc = stack
            .upload(&owner, &format!("race {round}"), b"content")
            .await
            .unwrap();
        let (s1, s2) = (stack.clone(), stack.clone());
        let (o, v, id1, id2) = (
            owner.clone(),
            verifier.clone(),
            doc.id.clone(),
            doc.id.clone(),
        );
        let deleting = tokio::spawn(async move { delete(&s1, &o, &id1).await });
        let rejecting = tokio::spawn(async move { reject(&s2, &v, &id2, "no").await });
        let deleted = deleting.await.unwrap();
        let rejected = rejecting.await.unwrap();
        match (&deleted, &rejected) {
            (Ok(()), Err(refused)) => {
                assert_eq!(refused.code(), Code::NotFound, "round {round}");
                assert_error(
                    get(&stack, &admin, &doc.id).await,
                    Code::NotFound,
                    "NOT_FOUND",
                );
            }
            (Err(refused), Ok(_)) => {
                assert_eq!(refused.code(), Code::FailedPrecondition, "round {round}");
                let kept = get(&stack, &admin, &doc.id).await.unwrap();
                assert_eq!(kept.status, pb::DocumentStatus::Rejected as i32);
            }
            other => panic!("round {round}: exactly one may win, got {other:?}"),
        }
    }
}

/// Four deletes of one document at once, eight rounds. Before the fix, on
/// PostgreSQL, several succeeded and wrote a `document.deleted` event each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_deletes_succeed_once_and_are_audited_once() {
    let stack = Arc::new(spawn_stack(TokenValidation::Local).await);
    let (owner, _) = stack
        .user_with_roles("deleter@example.com", &["user"])
        .await;
    let mut ids = Vec::new();
    for round in 0..8 {
        let doc = stack
            .upload(&owner, &format!("doomed {round}"), b"x")
            .await
            .unwrap();
        let deletes = (0..4).map(|_| {
            let (stack, owner, id) = (stack.clone(), owner.clone(), doc.id.clone());
            async move { delete(&stack, &owner, &id).await }
        });
        let results = concurrently(deletes).await;
        assert_eq!(
            results.iter().filter(|r| r.is_ok()).count(),
            1,
            "round {round}: {results:?}"
        );
        for refused in results.iter().filter_map(|r| r.as_ref().err()) {
            assert_eq!(refused.code(), Code::NotFound, "round {round}");
        }
        ids.push(doc.id);
    }
    let admin = stack.admin().await;
    let events = stack.doc_events(&admin, "document.deleted").await;
    for id in &ids {
        assert_eq!(
            events.iter().filter(|e| &e.target_id == id).count(),
            1,
            "one event for {id}"
        );
    }
}

/// 40 verifications while four clients upload. Before the fix the check
/// read the rows, then the head, in separate statements: 10 to 13 of 40
/// reported tampering on PostgreSQL, 2 to 9 on SQLite.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chain_verifies_while_writes_go_on() {
    let stack = Arc::new(spawn_stack(TokenValidation::Local).await);
    let (owner, _) = stack.user_with_roles("busy@example.com", &["user"]).await;
    let admin = stack.admin().await;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (stack, owner, stop) = (stack.clone(), owner.clone(), stop.clone());
            tokio::spawn(async move {
                let mut n = 0;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) && n < 400 {
                    stack
                        .upload(&owner, &format!("w{w} {n}"), b"load")
                        .await
                        .unwrap();
                    n += 1;
                }
                n
            })
        })
        .collect();
    let mut sizes = Vec::new();
    for _ in 0..40 {
        let report = stack
            .docs
            .audit()
            .verify_audit_chain(bearer(VerifyAuditChainRequest {}, &admin))
            .await
            .unwrap()
            .into_inner();
        assert!(
            report.valid,
            "an intact chain is reported intact: {report:?}"
        );
        sizes.push(report.events_checked);
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut uploads = 0;
    for writer in writers {
        uploads += writer.await.unwrap();
    }
    assert!(uploads > 0);
    assert!(
        sizes.windows(2).all(|w| w[0] <= w[1]),
        "sizes only grow: {sizes:?}"
    );
}

/// A document deleted while it downloads. Before the fix the stream ended
/// with OK and a truncated body, every time.
#[tokio::test]
async fn a_download_of_a_document_deleted_mid_stream_fails() {
    let stack = spawn_stack(TokenValidation::Local).await;
    let (owner, _) = stack
        .user_with_roles("vanishing@example.com", &["user"])
        .await;
    let admin = stack.admin().await;
    // Larger than what the client's flow-control windows let the server
    // send ahead, so most of it is still to be read after the delete.
    let content = vec![7u8; 12 * 1024 * 1024];
    let doc = upload(&stack.docs, &owner, "big", &content, 1024 * 1024)
        .await
        .unwrap();
    let mut stream = stack
        .docs
        .documents()
        .download_document(bearer(
            pb::DownloadDocumentRequest {
                document_id: doc.id.clone(),
            },
            &owner,
        ))
        .await
        .unwrap()
        .into_inner();
    let mut received = stream.message().await.unwrap().unwrap().chunk.len();
    delete(&stack, &admin, &doc.id).await.unwrap();
    let ended = loop {
        match stream.message().await {
            Ok(Some(message)) => received += message.chunk.len(),
            other => break other,
        }
    };
    assert_error(ended, Code::Aborted, "DOCUMENT_CHANGED");
    assert!(received < content.len());
}

/// Two downloads whose reader never reads, on a service with two unary
/// slots. Before the fix they held both slots for good: GetDocument and
/// every other RPC answered RESOURCE_EXHAUSTED. Now streams have their own
/// budget, and a stalled one is ended after the idle timeout, its slot freed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_that_stop_reading_are_cut_off() {
    let stack = spawn_stack_with(TokenValidation::Local, |c| {
        c.server.max_concurrent_requests = 2;
        c.server.max_streaming_calls_per_connection = 2;
        c.server.stream_idle_timeout = Duration::from_millis(500);
    })
    .await;
    let (owner, _) = stack
        .user_with_roles("stalled@example.com", &["user"])
        .await;
    let content = vec![1u8; 12 * 1024 * 1024];
    let doc = upload(&stack.docs, &owner, "stall", &content, 1024 * 1024)
        .await
        .unwrap();
    // One connection of our own, whose reads we control.
    let channel = Channel::from_shared(stack.docs.addr_url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let open = || {
        let mut client = DocumentServiceClient::new(channel.clone());
        let (id, owner) = (doc.id.clone(), owner.clone());
        async move {
            client
                .download_document(bearer(
                    pb::DownloadDocumentRequest { document_id: id },
                    &owner,
                ))
                .await
        }
    };
    let stalled = [open().await.unwrap(), open().await.unwrap()];
    assert_error(open().await, Code::ResourceExhausted, "TOO_MANY_STREAMS");
    // Unary calls are unaffected by the stalled streams.
    get(&stack, &owner, &doc.id).await.unwrap();
    get(&stack, &owner, &doc.id).await.unwrap();
    // Both stalled streams are ended after the idle timeout: two new ones
    // fit at once. One would not do: the first slot back may be the second
    // stream's, and reading the first before the server ends it resumes it
    // (it then ends OK, as CI once saw). A new stream cannot itself be cut
    // between the two opens, which take milliseconds, not the idle timeout.
    let started = std::time::Instant::now();
    let freed_after = loop {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the stalled streams' slots came back"
        );
        let first = open().await;
        let second = open().await;
        if first.is_ok() && second.is_ok() {
            break started.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    testkit::measured(format_args!(
        "both stalled downloads freed after {freed_after:?} (idle timeout 500 ms)"
    ));
    // A stalled reader that reads again learns why it was cut off.
    for stream in stalled {
        let mut stream = stream.into_inner();
        let ended = loop {
            match stream.message().await {
                Ok(Some(_)) => continue,
                other => break other,
            }
        };
        assert_error(ended, Code::DeadlineExceeded, "STREAM_STALLED");
    }
}
