//! The offline tools of the audit log, as subcommands of every binary:
//! `receipt verify` checks a review's receipt with nothing but the log's
//! verifier key; `audit export` writes a log as JSON lines; `audit verify`
//! recomputes such an export and checks every checkpoint in it.

use std::{
    io::{BufRead, Write},
    path::PathBuf,
};

use base64::{Engine, engine::general_purpose::STANDARD};
use serde_json::{Value, json};

use super::{
    merkle::{self, Frontier},
    note::NoteVerifier,
    receipt,
};
use crate::{
    error::{Error, Result},
    proto::audit::v1::{
        self as pb, audit_service_client::AuditServiceClient, watch_audit_events_response::Message,
    },
};

#[derive(Debug, clap::Subcommand)]
pub enum Tool {
    /// Receipts of document reviews.
    #[command(subcommand)]
    Receipt(ReceiptCommand),
    /// A service's audit log: export it, verify an export.
    #[command(subcommand)]
    Audit(AuditCommand),
}

#[derive(Debug, clap::Subcommand)]
pub enum ReceiptCommand {
    /// Check a receipt offline: the checkpoint's signature, the inclusion
    /// proof, and (when given) the document and hash its event names.
    Verify {
        /// The receipt as JSON (VerifyDocument's answer or its `receipt`).
        file: PathBuf,
        /// The log's verifier key (GetCheckpoint's `verifier_key`).
        #[arg(long)]
        key: String,
        /// The document the receipt must be about.
        #[arg(long)]
        document_id: Option<String>,
        /// The document's SHA-256 (hex) that the review must name.
        #[arg(long)]
        sha256: Option<String>,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum AuditCommand {
    /// Write a service's log, events and checkpoints, as JSON lines, up to
    /// its latest checkpoint (needs `audit:read`).
    Export {
        /// The service (auth-service or document-service).
        #[arg(long, default_value = "http://127.0.0.1:50052")]
        addr: String,
        /// An access token with `audit:read`.
        #[arg(long, env = "DOCVERIFY_TOKEN", hide_env_values = true)]
        token: String,
        /// Start after this sequence.
        #[arg(long, default_value_t = 0)]
        after: i64,
        /// Where to write (standard output when unset).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Check an export offline: every event's place, every checkpoint's
    /// signature and root against the tree recomputed from the events.
    Verify {
        file: PathBuf,
        /// The log's verifier key.
        #[arg(long)]
        key: String,
    },
}

fn fail(message: impl Into<String>) -> Error {
    Error::internal(message.into())
}

fn say(line: &str) -> Result<()> {
    writeln!(std::io::stdout(), "{line}").map_err(Error::internal)
}

impl Tool {
    pub async fn run(self) -> Result<()> {
        match self {
            Tool::Receipt(ReceiptCommand::Verify {
                file,
                key,
                document_id,
                sha256,
            }) => verify_receipt(&file, &key, document_id.as_deref(), sha256.as_deref()),
            Tool::Audit(AuditCommand::Export {
                addr,
                token,
                after,
                out,
            }) => export(&addr, &token, after, out).await,
            Tool::Audit(AuditCommand::Verify { file, key }) => verify_export(&file, &key),
        }
    }
}

fn verify_receipt(
    file: &PathBuf,
    key: &str,
    document_id: Option<&str>,
    sha256: Option<&str>,
) -> Result<()> {
    let verifier = NoteVerifier::parse(key).map_err(fail)?;
    let text =
        std::fs::read_to_string(file).map_err(|e| fail(format!("{}: {e}", file.display())))?;
    let receipt = receipt::from_json(&text).map_err(fail)?;
    let verified = receipt::verify(&receipt, &verifier).map_err(fail)?;
    let event = &verified.event;
    let field = |name: &str| event.get(name).and_then(Value::as_str).unwrap_or_default();
    if let Some(id) = document_id
        && (field("target_type") != "document" || field("target_id") != id)
    {
        return Err(fail(format!(
            "the receipt is about {} {}, not document {id}",
            field("target_type"),
            field("target_id")
        )));
    }
    let hash = event
        .pointer("/details/sha256")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if let Some(expected) = sha256
        && !hash.eq_ignore_ascii_case(expected)
    {
        return Err(fail(format!(
            "the review names SHA-256 {hash}, not {expected}"
        )));
    }
    say(&format!(
        "OK: {} {} {} (sha256 {hash}) by {} ({}) at {}",
        field("action"),
        field("target_type"),
        field("target_id"),
        field("actor_email"),
        field("actor_id"),
        field("occurred_at"),
    ))?;
    say(&format!(
        "    leaf {} of {} in the log {} (checkpoint signed by its key)",
        receipt.leaf_index, verified.checkpoint.size, verified.checkpoint.origin
    ))
}

/// Events then the checkpoint that covers them, until the latest
/// checkpoint when the export began.
async fn export(addr: &str, token: &str, after: i64, out: Option<PathBuf>) -> Result<()> {
    let channel = tonic::transport::Endpoint::from_shared(addr.to_owned())
        .map_err(|e| fail(format!("--addr {addr}: {e}")))?
        .connect()
        .await
        .map_err(|e| fail(format!("cannot reach {addr}: {e}")))?;
    let mut client = AuditServiceClient::new(channel);
    let bearer: tonic::metadata::MetadataValue<_> = format!("Bearer {token}")
        .parse()
        .map_err(|_| fail("the token is not a header value"))?;
    let target = client
        .get_checkpoint(pb::GetCheckpointRequest {})
        .await
        .map_err(|s| fail(format!("GetCheckpoint: {}", s.message())))?
        .into_inner()
        .checkpoint
        .map_or(0, |c| c.tree_size);
    let mut request = tonic::Request::new(pb::WatchAuditEventsRequest {
        after_sequence: after,
        ..Default::default()
    });
    request.metadata_mut().insert("authorization", bearer);
    let mut stream = client
        .watch_audit_events(request)
        .await
        .map_err(|s| fail(format!("WatchAuditEvents: {}", s.message())))?
        .into_inner();
    let mut sink: Box<dyn Write> = match &out {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path).map_err(|e| fail(format!("{}: {e}", path.display())))?,
        )),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut done = after >= target;
    while !done {
        let Some(message) = stream
            .message()
            .await
            .map_err(|s| fail(format!("WatchAuditEvents: {}", s.message())))?
        else {
            break;
        };
        let line = match message.message {
            Some(Message::Event(event)) => json!({
                "event": { "sequence": event.sequence, "leaf": STANDARD.encode(&event.leaf) }
            }),
            Some(Message::Checkpoint(checkpoint)) => {
                done = checkpoint.tree_size >= target;
                json!({ "checkpoint": { "tree_size": checkpoint.tree_size, "note": checkpoint.note } })
            }
            None => continue,
        };
        writeln!(sink, "{line}").map_err(Error::internal)?;
    }
    sink.flush().map_err(Error::internal)
}

fn verify_export(file: &PathBuf, key: &str) -> Result<()> {
    let verifier = NoteVerifier::parse(key).map_err(fail)?;
    let reader = std::io::BufReader::new(
        std::fs::File::open(file).map_err(|e| fail(format!("{}: {e}", file.display())))?,
    );
    let mut frontier = Frontier::default();
    let mut sink = Vec::new();
    let (mut events, mut checkpoints) = (0u64, 0u64);
    for (n, line) in reader.lines().enumerate() {
        let line = line.map_err(Error::internal)?;
        let at = |why: String| fail(format!("line {}: {why}", n + 1));
        let value: Value = serde_json::from_str(&line).map_err(|e| at(e.to_string()))?;
        if let Some(event) = value.get("event") {
            let leaf = event
                .get("leaf")
                .and_then(Value::as_str)
                .and_then(|l| STANDARD.decode(l).ok())
                .ok_or_else(|| at("an event without its leaf".to_owned()))?;
            let parsed: Value =
                serde_json::from_slice(&leaf).map_err(|_| at("the leaf is not JSON".to_owned()))?;
            let sequence = parsed.get("sequence").and_then(Value::as_u64);
            if frontier.size() == 0 && events == 0 && sequence != Some(1) {
                return Err(at(
                    "an export verifies from the first event (export with --after 0)".to_owned(),
                ));
            }
            if sequence != Some(frontier.size() + 1) {
                return Err(at(format!(
                    "expected the event of sequence {}",
                    frontier.size() + 1
                )));
            }
            frontier.push(merkle::leaf_hash(&leaf), &mut sink);
            sink.clear();
            events += 1;
        } else if let Some(checkpoint) = value.get("checkpoint") {
            let note = checkpoint
                .get("note")
                .and_then(Value::as_str)
                .ok_or_else(|| at("a checkpoint without its note".to_owned()))?;
            let signed = verifier.open(note).map_err(at)?;
            if signed.size != frontier.size() || signed.root != frontier.root() {
                return Err(at(format!(
                    "the checkpoint of size {} does not match the events before it: the log was rewritten",
                    signed.size
                )));
            }
            checkpoints += 1;
        }
    }
    if checkpoints == 0 {
        return Err(fail("the export holds no checkpoint"));
    }
    say(&format!(
        "OK: {events} events; {checkpoints} checkpoints signed by {} all match them",
        verifier.name()
    ))
}
