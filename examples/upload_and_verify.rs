//! Uploads a document as one user and verifies it as another (a verifier),
//! printing the receipt that proves the review is in the audit log.
//!
//! ```sh
//! DOCVERIFY_EMAIL=ann@example.com DOCVERIFY_PASSWORD='…' \
//! DOCVERIFY_VERIFIER_EMAIL=vera@example.com DOCVERIFY_VERIFIER_PASSWORD='…' \
//!   cargo run --example upload_and_verify -- contract.pdf
//! ```
//!
//! Without a file, it uploads a small generated PDF-like document.
#![allow(clippy::print_stdout)] // an example prints what it did

mod common;

use docverify_client::proto::document::v1::{
    DocumentMetadata, UploadDocumentRequest, VerifyDocumentRequest,
    upload_document_request::Payload,
};

/// The upload is streamed in pieces of this size.
const CHUNK: usize = 64 * 1024;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args().nth(1);
    let (content, filename) = match &path {
        Some(path) => (
            std::fs::read(path)?,
            path.rsplit('/').next().unwrap_or(path).to_owned(),
        ),
        None => (
            b"%PDF-1.7\n% docverify example\n".to_vec(),
            "example.pdf".to_owned(),
        ),
    };
    let (_uploader, mut as_uploader) = common::sign_in("DOCVERIFY").await?;
    let mut messages = vec![UploadDocumentRequest {
        payload: Some(Payload::Metadata(DocumentMetadata {
            title: filename.clone(),
            filename,
            content_type: "application/pdf".to_owned(),
        })),
    }];
    messages.extend(content.chunks(CHUNK).map(|piece| UploadDocumentRequest {
        payload: Some(Payload::Chunk(piece.to_vec())),
    }));
    let document = as_uploader
        .documents
        .upload_document(tokio_stream::iter(messages))
        .await?
        .into_inner()
        .document
        .ok_or("no document in the answer")?;
    println!(
        "uploaded {} ({} B, sha256 {})",
        document.id, document.size_bytes, document.sha256
    );

    let (_verifier, mut as_verifier) = common::sign_in("DOCVERIFY_VERIFIER").await?;
    let verified = as_verifier
        .documents
        .verify_document(VerifyDocumentRequest {
            document_id: document.id.clone(),
            note: "checked by the upload_and_verify example".to_owned(),
        })
        .await?
        .into_inner();
    let reviewed = verified.document.ok_or("no document in the answer")?;
    println!(
        "verified by {}: {:?}",
        reviewed.reviewed_by,
        reviewed.status()
    );
    match verified.receipt {
        Some(receipt) => println!(
            "receipt: leaf {} of a tree of {} (check it: cargo run --example verify_receipt -- {})",
            receipt.leaf_index, receipt.tree_size, document.id
        ),
        None => println!("the receipt is not ready yet: GetReceipt gives it shortly"),
    }
    Ok(())
}
