use std::time::Duration;

use document_service::TokenValidation;
use shared::proto::document::v1 as pb;
use tonic::{Code, Request};

use crate::helpers::*;

#[tokio::test]
async fn over_the_limit_is_resource_exhausted_and_leaves_nothing() {
    let stack = spawn_stack_with(TokenValidation::Local, |c| {
        c.max_document_bytes = 1024 * 1024
    })
    .await;
    let (owner, _) = stack.user_with_roles("big@example.com", &["user"]).await;
    let exactly = vec![1u8; 1024 * 1024];
    stack
        .upload(&owner, "exactly the limit", &exactly)
        .await
        .unwrap();
    let over = vec![2u8; 1024 * 1024 + 1];
    assert_error(
        stack.upload(&owner, "one byte over", &over).await,
        Code::ResourceExhausted,
        "DOCUMENT_TOO_LARGE",
    );
    assert_eq!(count(&stack.docs.db, "documents").await, 1);
    assert_eq!(
        count(&stack.docs.db, "document_chunks").await,
        4,
        "1 MiB in 256 KiB chunks"
    );
    let admin = stack.admin().await;
    assert_eq!(stack.doc_events(&admin, "document.uploaded").await.len(), 1);
}

/// An upload cut off mid-stream leaves nothing. It is cut off by its
/// deadline while the client still holds the stream open. When the
/// client's timer fires before the server's, its HTTP/2 stack resets the
/// stream with CANCEL, between two messages; tonic reads that as the
/// stream's clean end, and before the layer made it an error
/// (`body::Resettable`) the half upload was stored now and then (in CI,
/// and here 2 runs in 3 beside another upload test).
#[tokio::test]
async fn an_upload_cut_off_mid_stream_leaves_nothing() {
    let stack = spawn_stack(TokenValidation::Local).await;
    let (owner, _) = stack.user_with_roles("cancel@example.com", &["user"]).await;
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let mut request = Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {owner}").parse().unwrap());
    request.set_timeout(Duration::from_millis(300));
    let mut client = stack.docs.documents();
    let call = tokio::spawn(async move { client.upload_document(request).await });
    tx.send(metadata("half")).await.unwrap();
    for _ in 0..8 {
        tx.send(chunk(&[9u8; 64 * 1024])).await.unwrap();
    }
    let cut = call
        .await
        .unwrap()
        .expect_err("the deadline cuts the upload off");
    assert!(
        matches!(cut.code(), Code::DeadlineExceeded | Code::Cancelled),
        "{cut:?}"
    );
    // The client gave up at its deadline; the server cuts the stream at its
    // own (it resets it, and the body's receiver is dropped): until then,
    // keep the stream open and growing so that it cannot end cleanly.
    let reset = tokio::time::timeout(Duration::from_secs(10), async {
        while tx.send(chunk(&[9u8; 64 * 1024])).await.is_ok() {}
    })
    .await;
    assert!(reset.is_ok(), "the server cut the stream off");
    stack.upload(&owner, "whole", b"complete").await.unwrap();
    for _ in 0..20 {
        assert_eq!(count(&stack.docs.db, "documents").await, 1);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(count(&stack.docs.db, "document_chunks").await, 1);
    let admin = stack.admin().await;
    assert_eq!(stack.doc_events(&admin, "document.uploaded").await.len(), 1);
}

#[tokio::test]
async fn sixteen_mebibytes_round_trip() {
    let stack = spawn_stack(TokenValidation::Local).await;
    let (owner, _) = stack.user_with_roles("large@example.com", &["user"]).await;
    let content: Vec<u8> = (0..16 * 1024 * 1024u32)
        .map(|i| (i ^ (i >> 8)) as u8)
        .collect();
    let doc = upload(&stack.docs, &owner, "sixteen", &content, 1024 * 1024)
        .await
        .unwrap();
    assert_eq!(doc.size_bytes, 16 * 1024 * 1024);
    assert_eq!(doc.sha256, sha256_hex(&content));
    let back = stack.download(&owner, &doc.id).await.unwrap();
    assert!(back == content, "same bytes back");
    // The server spools uploads to a file and streams downloads a chunk at
    // a time; the benchmark measures the memory this keeps bounded.
}

/// Sizes on each side of the spool's switch from memory to a file (one
/// stored chunk, 256 KiB), sent in pieces that straddle it or not, come
/// back byte for byte.
#[tokio::test]
async fn sizes_around_the_in_memory_spool_round_trip() {
    let stack = spawn_stack(TokenValidation::Local).await;
    let (owner, _) = stack.user_with_roles("edges@example.com", &["user"]).await;
    let chunk = 256 * 1024;
    for (size, piece) in [
        (1, 1024),
        (chunk - 1, 1000),
        (chunk, 64 * 1024),
        (chunk, 1000),
        (chunk + 1, 64 * 1024),
        (2 * chunk + 3, 1000),
    ] {
        let content: Vec<u8> = (0..size).map(|i| (i * 7 + i / 251) as u8).collect();
        let doc = upload(&stack.docs, &owner, "edge", &content, piece)
            .await
            .unwrap();
        assert_eq!(doc.size_bytes, size as i64);
        assert_eq!(doc.sha256, sha256_hex(&content), "{size} in {piece}");
        let back = stack.download(&owner, &doc.id).await.unwrap();
        assert!(back == content, "{size} bytes in pieces of {piece}");
    }
}

#[tokio::test]
async fn upload_metadata_is_validated() {
    let stack = spawn_stack(TokenValidation::Local).await;
    let (owner, _) = stack.user_with_roles("meta@example.com", &["user"]).await;
    let send = |messages: Vec<pb::UploadDocumentRequest>| {
        let mut client = stack.docs.documents();
        let token = owner.clone();
        async move {
            let mut request = Request::new(tokio_stream::iter(messages));
            request
                .metadata_mut()
                .insert("authorization", format!("Bearer {token}").parse().unwrap());
            client.upload_document(request).await
        }
    };
    let no_metadata = send(vec![chunk(b"data first")]).await;
    assert_eq!(
        violated_fields(&assert_error(
            no_metadata,
            Code::InvalidArgument,
            "INVALID_ARGUMENT"
        )),
        vec!["metadata"]
    );
    let path = send(vec![pb::UploadDocumentRequest {
        payload: Some(pb::upload_document_request::Payload::Metadata(
            pb::DocumentMetadata {
                title: "".into(),
                filename: "../../etc/passwd".into(),
                content_type: "not a type".into(),
            },
        )),
    }])
    .await;
    let status = assert_error(path, Code::InvalidArgument, "INVALID_ARGUMENT");
    let mut fields = violated_fields(&status);
    fields.sort();
    assert_eq!(
        fields,
        vec![
            "metadata.content_type",
            "metadata.filename",
            "metadata.title"
        ]
    );
    let twice = send(vec![metadata("a"), chunk(b"x"), metadata("b")]).await;
    assert_error(twice, Code::InvalidArgument, "INVALID_ARGUMENT");
    assert_eq!(count(&stack.docs.db, "documents").await, 0);
}
