//! Follows document-service's audit log as it grows: every event, then the
//! signed checkpoints that cover them. Stops after N events (the first
//! argument), or runs until interrupted.
//!
//! ```sh
//! DOCVERIFY_EMAIL=audrey@example.com DOCVERIFY_PASSWORD='…' cargo run --example watch_audit -- 10
//! ```
//!
//! The caller needs the `auditor` role. A stream lasts at most a few
//! minutes (the server ends it); this resumes after the last event seen.
#![allow(clippy::print_stdout)] // an example prints what it sees

mod common;

use docverify_client::proto::audit::v1::{
    WatchAuditEventsRequest, watch_audit_events_response::Message,
};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let limit: Option<usize> = std::env::args().nth(1).map(|n| n.parse()).transpose()?;
    let (_session, mut clients) = common::sign_in("DOCVERIFY").await?;
    let mut after = 0;
    let mut seen = 0;
    loop {
        let mut stream = clients
            .document_audit
            .watch_audit_events(WatchAuditEventsRequest {
                after_sequence: after,
                ..Default::default()
            })
            .await?
            .into_inner();
        while let Some(message) = stream.message().await? {
            match message.message {
                Some(Message::Event(event)) => {
                    println!(
                        "#{:<6} {:<24} {:<8} by {} on {}",
                        event.sequence,
                        event.action,
                        format!("{:?}", event.outcome()),
                        event.actor_email,
                        event.target_id
                    );
                    after = event.sequence;
                    seen += 1;
                    if limit.is_some_and(|limit| seen >= limit) {
                        return Ok(());
                    }
                }
                Some(Message::Checkpoint(checkpoint)) => {
                    println!("checkpoint: {} events, signed", checkpoint.tree_size);
                }
                None => {}
            }
        }
    }
}
