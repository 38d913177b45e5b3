//! Fetches the receipt of a document's review and checks it offline: the
//! checkpoint's signature against the log's key, and the inclusion proof
//! from the review's event to the signed root.
//!
//! ```sh
//! DOCVERIFY_EMAIL=ann@example.com DOCVERIFY_PASSWORD='…' \
//! DOCVERIFY_LOG_KEY='docverify/document-service+…' cargo run --example verify_receipt -- <document id>
//! ```
//!
//! Pin the log's key (`DOCVERIFY_LOG_KEY`, from `GetCheckpoint` once, kept
//! out of band): a receipt checked against a key fetched from the same
//! server proves nothing against that server. Without it, the example
//! fetches the key and says so.
#![allow(clippy::print_stdout)] // an example prints what it checked

mod common;

use docverify_client::proto::{audit::v1::GetCheckpointRequest, document::v1::GetReceiptRequest};
use prost::Message as _;
use shared::audit::{note::NoteVerifier, receipt};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let document_id = std::env::args()
        .nth(1)
        .ok_or("usage: verify_receipt <document id>")?;
    let (_session, mut clients) = common::sign_in("DOCVERIFY").await?;
    let key = match std::env::var("DOCVERIFY_LOG_KEY") {
        Ok(key) => key,
        Err(_) => {
            let key = clients
                .document_audit
                .get_checkpoint(GetCheckpointRequest {})
                .await?
                .into_inner()
                .verifier_key;
            println!("not pinned: using the key the server gives ({key}); set DOCVERIFY_LOG_KEY");
            key
        }
    };
    let fetched = clients
        .documents
        .get_receipt(GetReceiptRequest { document_id })
        .await?
        .into_inner()
        .receipt
        .ok_or("no receipt in the answer")?;
    // The same message in the verifier's types (another crate's stubs).
    let fetched = shared::proto::audit::v1::Receipt::decode(fetched.encode_to_vec().as_slice())?;
    let verifier = NoteVerifier::parse(&key)?;
    let verified = receipt::verify(&fetched, &verifier)?;
    println!(
        "verified: {} by {} is leaf {} of the log {} at size {}",
        verified.event["action"],
        verified.event["actor_email"],
        fetched.leaf_index,
        verified.checkpoint.origin,
        verified.checkpoint.size
    );
    Ok(())
}
