//! Faults: the database going away under load, document-service killed with
//! SIGKILL mid-write, and 32 clients at once. The chain and the documents
//! must come out consistent.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use document_service::TokenValidation;
use shared::proto::{
    audit::v1::{AuditEvent, ListAuditEventsRequest, audit_service_client::AuditServiceClient},
    auth::v1 as auth_pb,
    document::v1::{self as pb, document_service_client::DocumentServiceClient},
};
use testkit::{Process, TestDb};
use tonic::{Code, Request, transport::Channel};

use crate::helpers::*;

/// Every audit event of a service, oldest first, through the API.
async fn all_events(channel: &Channel, token: &str) -> Vec<AuditEvent> {
    let mut client = AuditServiceClient::new(channel.clone());
    let mut events = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .list_audit_events(bearer(
                ListAuditEventsRequest {
                    page_size: 500,
                    page_token,
                    ..Default::default()
                },
                token,
            ))
            .await
            .unwrap()
            .into_inner();
        events.extend(page.events);
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    events.reverse();
    events
}

async fn assert_chain_valid_and_gapless(channel: &Channel, token: &str) -> Vec<AuditEvent> {
    let report = verified_log(channel, token).await;
    assert!(report.valid, "{report:?}");
    let mut events = all_events(channel, token).await;
    // Events are sequenced in the order they committed, which concurrent
    // writers need not share with the order they were inserted in.
    events.sort_by_key(|e| e.sequence);
    let sequences: Vec<i64> = events.iter().map(|e| e.sequence).collect();
    assert_eq!(
        sequences,
        (1..=events.len() as i64).collect::<Vec<_>>(),
        "gapless"
    );
    assert_eq!(report.events_checked, events.len() as i64);
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_two_clients_keep_both_chains_valid_and_gapless() {
    let stack = spawn_stack(TokenValidation::Local).await;
    let admin = stack.admin().await;
    let (verifier, _) = stack
        .user_with_roles("v32@example.com", &["verifier"])
        .await;
    let mut users = Vec::new();
    for i in 0..8 {
        users.push(
            stack
                .user_with_roles(&format!("u32-{i}@example.com"), &["user"])
                .await,
        );
    }
    // Each client on a connection of its own (one shared HTTP/2 connection
    // would multiplex them all over one socket and one server task).
    let clients = (0..32).map(|i| {
        let docs = Channel::from_shared(stack.docs.addr_url())
            .unwrap()
            .connect_lazy();
        let auth = Channel::from_shared(format!("http://{}", stack.auth.addr))
            .unwrap()
            .connect_lazy();
        let (token, user_id) = users[i % users.len()].clone();
        let (verifier, admin) = (verifier.clone(), admin.clone());
        async move {
            let mut documents = DocumentServiceClient::new(docs);
            for round in 0..3 {
                match i % 4 {
                    // Role changes on the auth side.
                    0 => {
                        let roles = if round % 2 == 0 {
                            vec!["user".to_owned(), "auditor".to_owned()]
                        } else {
                            vec!["user".to_owned()]
                        };
                        auth_pb::user_service_client::UserServiceClient::new(auth.clone())
                            .set_user_roles(bearer(
                                auth_pb::SetUserRolesRequest {
                                    user_id: user_id.clone(),
                                    roles,
                                },
                                &admin,
                            ))
                            .await
                            .unwrap();
                    }
                    // Reviews of whatever is pending (races are expected).
                    1 => {
                        let pending = documents
                            .list_documents(bearer(
                                pb::ListDocumentsRequest {
                                    status: pb::DocumentStatus::Pending as i32,
                                    page_size: 5,
                                    ..Default::default()
                                },
                                &verifier,
                            ))
                            .await
                            .unwrap()
                            .into_inner()
                            .documents;
                        for doc in pending {
                            let result = documents
                                .verify_document(bearer(
                                    pb::VerifyDocumentRequest {
                                        document_id: doc.id,
                                        note: String::new(),
                                    },
                                    &verifier,
                                ))
                                .await;
                            if let Err(status) = result {
                                assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
                            }
                        }
                    }
                    // Uploads.
                    _ => {
                        let mut request = Request::new(tokio_stream::iter(vec![
                            metadata("busy"),
                            chunk(&[i as u8; 4096]),
                        ]));
                        request
                            .metadata_mut()
                            .insert("authorization", format!("Bearer {token}").parse().unwrap());
                        documents.upload_document(request).await.unwrap();
                    }
                }
            }
        }
    });
    concurrently(clients).await;

    let doc_events = assert_chain_valid_and_gapless(&stack.docs.channel, &admin).await;
    assert_chain_valid_and_gapless(&stack.auth.channel, &admin).await;
    // Every review happened once, and each left one event.
    let all = DocumentServiceClient::new(stack.docs.channel.clone())
        .list_documents(bearer(
            pb::ListDocumentsRequest {
                page_size: 500,
                ..Default::default()
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner()
        .documents;
    assert_eq!(all.len(), 16 * 3);
    for doc in &all {
        let verified = doc_events
            .iter()
            .filter(|e| e.action == "document.verified" && e.target_id == doc.id)
            .count();
        let expected = usize::from(doc.status == pb::DocumentStatus::Verified as i32);
        assert_eq!(verified, expected, "document {} ({})", doc.id, doc.status);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_dash_nine_mid_write_keeps_the_invariants() {
    let auth = auth::spawn_app().await;
    let admin = auth.admin().await.access_token;
    let owner = auth.user("k9owner@example.com").await.access_token;
    let verifier = {
        let user = auth.register("k9verifier@example.com").await;
        auth.users()
            .set_user_roles(bearer(
                auth_pb::SetUserRolesRequest {
                    user_id: user.id,
                    roles: vec!["verifier".into()],
                },
                &admin,
            ))
            .await
            .unwrap();
        auth.login("k9verifier@example.com", PASSWORD)
            .await
            .unwrap()
            .access_token
    };
    let db = TestDb::fresh("dockill").await;
    let env = |db: &TestDb| {
        vec![
            ("DOCUMENT_LISTEN_ADDR", "127.0.0.1:0".to_owned()),
            ("DOCUMENT_DATABASE_URL", db.url.clone()),
            ("AUTH_SERVICE_URL", format!("http://{}", auth.addr)),
        ]
    };
    let bin = env!("CARGO_BIN_EXE_document-service");
    let mut docs = Process::start(bin.as_ref(), &[], &env(&db), "document-service").await;
    let channel = connect_when_ready(docs.addr).await;

    let stop = Arc::new(AtomicBool::new(false));
    // Uploads sent and not yet answered, and uploads that completed: the
    // kill comes when some have completed and others are provably in flight.
    let in_flight = Arc::new(AtomicUsize::new(0));
    let completed = Arc::new(AtomicUsize::new(0));
    let started = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..8)
        .map(|i| {
            let channel = channel.clone();
            let stop = stop.clone();
            let (in_flight, completed, started) =
                (in_flight.clone(), completed.clone(), started.clone());
            let (owner, verifier) = (owner.clone(), verifier.clone());
            async move {
                let mut documents = DocumentServiceClient::new(channel);
                while !stop.load(Ordering::Relaxed) {
                    if i % 2 == 0 {
                        let content: Vec<u8> = (0..300_000u32).map(|b| (b % 251) as u8).collect();
                        let mut messages = vec![metadata("crash")];
                        messages.extend(content.chunks(64 * 1024).map(chunk));
                        let mut request = Request::new(tokio_stream::iter(messages));
                        request
                            .metadata_mut()
                            .insert("authorization", format!("Bearer {owner}").parse().unwrap());
                        started.fetch_add(1, Ordering::SeqCst);
                        in_flight.fetch_add(1, Ordering::SeqCst);
                        let uploaded = documents.upload_document(request).await;
                        in_flight.fetch_sub(1, Ordering::SeqCst);
                        if uploaded.is_err() {
                            return;
                        }
                        completed.fetch_add(1, Ordering::SeqCst);
                    } else {
                        let Ok(page) = documents
                            .list_documents(bearer(
                                pb::ListDocumentsRequest {
                                    status: pb::DocumentStatus::Pending as i32,
                                    ..Default::default()
                                },
                                &verifier,
                            ))
                            .await
                        else {
                            return;
                        };
                        for doc in page.into_inner().documents.into_iter().take(2) {
                            let _ = documents
                                .verify_document(bearer(
                                    pb::VerifyDocumentRequest {
                                        document_id: doc.id,
                                        note: "ok".into(),
                                    },
                                    &verifier,
                                ))
                                .await;
                        }
                    }
                }
            }
        })
        .collect();
    let running = tokio::spawn(concurrently(workers));
    let waiting = Instant::now();
    while !(completed.load(Ordering::SeqCst) >= 4 && in_flight.load(Ordering::SeqCst) >= 2) {
        assert!(
            waiting.elapsed() < Duration::from_secs(30),
            "writes never got going"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    docs.kill();
    let started_by_kill = started.load(Ordering::SeqCst);
    stop.store(true, Ordering::Relaxed);
    let _ = running.await;

    // Restart on the same database and check what survived.
    let docs = Process::start(bin.as_ref(), &[], &env(&db), "document-service").await;
    let channel = connect_when_ready(docs.addr).await;
    let events = assert_chain_valid_and_gapless(&channel, &admin).await;
    let all = DocumentServiceClient::new(channel.clone())
        .list_documents(bearer(
            pb::ListDocumentsRequest {
                page_size: 500,
                ..Default::default()
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner()
        .documents;
    assert!(!all.is_empty(), "some uploads completed before the kill");
    // Uploads answered OK are there; those cut off by the kill may or may
    // not have committed, but none is there in part (checked below).
    let answered = completed.load(Ordering::SeqCst);
    assert!(
        all.len() >= answered && all.len() <= started_by_kill,
        "{} stored, {answered} answered, {started_by_kill} started by the kill",
        all.len()
    );
    for doc in &all {
        let uploaded = events
            .iter()
            .filter(|e| e.action == "document.uploaded" && e.target_id == doc.id)
            .count();
        assert_eq!(uploaded, 1, "one upload event per document");
        let reviewed = events
            .iter()
            .filter(|e| e.action == "document.verified" && e.target_id == doc.id)
            .count();
        let is_verified = doc.status == pb::DocumentStatus::Verified as i32;
        assert_eq!(
            reviewed,
            usize::from(is_verified),
            "a reviewed state has exactly one event"
        );
        // No half-written document: the content is whole and matches.
        let mut stream = DocumentServiceClient::new(channel.clone())
            .download_document(bearer(
                pb::DownloadDocumentRequest {
                    document_id: doc.id.clone(),
                },
                &admin,
            ))
            .await
            .unwrap()
            .into_inner();
        let mut content = Vec::new();
        while let Some(message) = stream.message().await.unwrap() {
            content.extend(message.chunk);
        }
        assert_eq!(content.len() as i64, doc.size_bytes);
        assert_eq!(sha256_hex(&content), doc.sha256);
    }
    // No event stands for a change that is not there.
    for event in events.iter().filter(|e| e.action.starts_with("document.")) {
        let doc = all.iter().find(|d| d.id == event.target_id);
        assert!(
            doc.is_some(),
            "{} names a document that does not exist",
            event.action
        );
        if event.action == "document.verified" {
            assert_eq!(doc.unwrap().status, pb::DocumentStatus::Verified as i32);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_answers_unavailable_and_heals_without_restart() {
    let Some(stack) = spawn_postgres_stack("a database outage under load", |c| {
        c.server.health_check_interval = Duration::from_millis(200)
    })
    .await
    else {
        return;
    };
    let (token, _) = stack.user_with_roles("outage@example.com", &["user"]).await;
    let doc = stack.upload(&token, "before", b"data").await.unwrap();

    let call = |channel: Channel, token: String, id: String, kind: usize| async move {
        let mut documents = DocumentServiceClient::new(channel);
        let deadline = Duration::from_secs(5);
        let started = Instant::now();
        let result = match kind % 3 {
            0 => {
                let mut r = bearer(pb::GetDocumentRequest { document_id: id }, &token);
                r.set_timeout(deadline);
                documents.get_document(r).await.map(|_| ())
            }
            1 => {
                let mut r = bearer(pb::ListDocumentsRequest::default(), &token);
                r.set_timeout(deadline);
                documents.list_documents(r).await.map(|_| ())
            }
            _ => {
                let mut r = Request::new(tokio_stream::iter(vec![metadata("during"), chunk(b"x")]));
                r.metadata_mut()
                    .insert("authorization", format!("Bearer {token}").parse().unwrap());
                r.set_timeout(deadline);
                documents.upload_document(r).await.map(|_| ())
            }
        };
        (result.err().map(|s| s.code()), started.elapsed())
    };

    stack.docs.db.set_reachable(false).await;
    let mut codes = Vec::new();
    for round in 0..6 {
        let calls = (0..6).map(|k| {
            call(
                stack.docs.channel.clone(),
                token.clone(),
                doc.id.clone(),
                k + round,
            )
        });
        for (code, took) in concurrently(calls).await {
            assert!(
                took < Duration::from_secs(6),
                "no hang past the deadline: {took:?}"
            );
            codes.push(code);
        }
    }
    assert!(
        codes.iter().all(|c| *c == Some(Code::Unavailable)),
        "every call during the outage is UNAVAILABLE: {codes:?}"
    );
    // The calls above fail in milliseconds, which may be before health's
    // next probe (every 200 ms here): health must follow within a few
    // probes, not at once.
    use tonic_health::pb::{
        HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
    };
    let outage = Instant::now();
    loop {
        let health = HealthClient::new(stack.docs.channel.clone())
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        if health == ServingStatus::NotServing as i32 {
            break;
        }
        assert!(
            outage.elapsed() < Duration::from_secs(5),
            "health reports NOT_SERVING within 5 s of the outage"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    stack.docs.db.set_reachable(true).await;
    let back = Instant::now();
    loop {
        let calls =
            (0..3).map(|k| call(stack.docs.channel.clone(), token.clone(), doc.id.clone(), k));
        if concurrently(calls)
            .await
            .iter()
            .all(|(code, _)| code.is_none())
        {
            break;
        }
        assert!(
            back.elapsed() < Duration::from_secs(5),
            "everything succeeds within 5 s of the database coming back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
