//! Receipts: an event's leaf, its inclusion proof and the signed checkpoint
//! it is proven against, made by a service and checked offline by anyone
//! holding the log's verifier key.

use std::time::Duration;

use base64::{Engine, engine::general_purpose::STANDARD};
use serde::Deserialize;
use serde_json::Value;

use super::{
    Log,
    api::inclusion_proof,
    merkle::{self, Hash},
    note::{Checkpoint, NoteVerifier},
};
use crate::{error::Result, proto::audit::v1 as pb};

/// The receipt of the event at `position` against the latest checkpoint,
/// waiting up to `wait` for the sequencer; None if it is still pending.
pub async fn receipt(log: &Log, position: i64, wait: Duration) -> Result<Option<pb::Receipt>> {
    let Some(sequence) = log.sequenced(position, wait).await? else {
        return Ok(None);
    };
    let proof = inclusion_proof(log, sequence, 0).await?;
    Ok(Some(pb::Receipt {
        leaf: proof.leaf,
        leaf_index: proof.leaf_index,
        tree_size: proof.tree_size,
        inclusion_proof: proof.audit_path,
        checkpoint: proof.checkpoint.map(|c| c.note).unwrap_or_default(),
    }))
}

/// What a receipt proves once checked: this event is in the log that
/// signed this checkpoint.
#[derive(Debug, Clone)]
pub struct Verified {
    pub checkpoint: Checkpoint,
    pub event: Value,
}

/// Checks `receipt` with the log's key: the note's signature, the proof
/// from the leaf to the signed root, and that the leaf names its own place.
pub fn verify(
    receipt: &pb::Receipt,
    verifier: &NoteVerifier,
) -> std::result::Result<Verified, String> {
    let checkpoint = verifier.open(&receipt.checkpoint)?;
    let (index, size) = (
        u64::try_from(receipt.leaf_index).map_err(|_| "negative leaf index")?,
        u64::try_from(receipt.tree_size).map_err(|_| "negative tree size")?,
    );
    if checkpoint.size != size {
        return Err(format!(
            "the receipt is for a tree of {size} leaves, its checkpoint is of {}",
            checkpoint.size
        ));
    }
    let path = receipt
        .inclusion_proof
        .iter()
        .map(|h| Hash::try_from(h.as_slice()))
        .collect::<std::result::Result<Vec<Hash>, _>>()
        .map_err(|_| "a proof hash is not 32 bytes")?;
    let leaf = merkle::leaf_hash(&receipt.leaf);
    if !merkle::verify_inclusion(&leaf, index, size, &path, &checkpoint.root) {
        return Err("the inclusion proof does not lead to the checkpoint's root".to_owned());
    }
    let event: Value = serde_json::from_slice(&receipt.leaf).map_err(|_| "the leaf is not JSON")?;
    if event.get("sequence").and_then(Value::as_u64) != Some(index + 1) {
        return Err("the leaf's sequence is not its place in the tree".to_owned());
    }
    Ok(Verified { checkpoint, event })
}

/// A receipt as JSON: the proto3 JSON mapping (what grpcurl and buf curl
/// print: camelCase, int64 as strings, bytes in base64) or snake_case.
#[derive(Debug, Deserialize)]
struct ReceiptJson {
    leaf: String,
    #[serde(alias = "leafIndex", deserialize_with = "int64")]
    leaf_index: i64,
    #[serde(alias = "treeSize", deserialize_with = "int64")]
    tree_size: i64,
    #[serde(alias = "inclusionProof", default)]
    inclusion_proof: Vec<String>,
    checkpoint: String,
}

fn int64<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<i64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Int {
        Number(i64),
        Text(String),
    }
    match Int::deserialize(d)? {
        Int::Number(n) => Ok(n),
        Int::Text(s) => s.parse().map_err(serde::de::Error::custom),
    }
}

/// Reads a receipt from its JSON (the `receipt` field of VerifyDocument's
/// answer as grpcurl prints it, or that whole answer).
pub fn from_json(text: &str) -> std::result::Result<pb::Receipt, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let value = value.get("receipt").cloned().unwrap_or(value);
    let json: ReceiptJson =
        serde_json::from_value(value).map_err(|e| format!("not a receipt: {e}"))?;
    let bytes = |s: &str| {
        STANDARD
            .decode(s)
            .map_err(|_| "a bytes field is not base64".to_owned())
    };
    Ok(pb::Receipt {
        leaf: bytes(&json.leaf)?,
        leaf_index: json.leaf_index,
        tree_size: json.tree_size,
        inclusion_proof: json
            .inclusion_proof
            .iter()
            .map(|h| bytes(h))
            .collect::<std::result::Result<_, _>>()?,
        checkpoint: json.checkpoint,
    })
}

/// A receipt in the proto3 JSON mapping, for files and for `from_json`.
pub fn to_json(receipt: &pb::Receipt) -> Value {
    serde_json::json!({
        "leaf": STANDARD.encode(&receipt.leaf),
        "leafIndex": receipt.leaf_index.to_string(),
        "treeSize": receipt.tree_size.to_string(),
        "inclusionProof": receipt.inclusion_proof.iter().map(|h| STANDARD.encode(h)).collect::<Vec<_>>(),
        "checkpoint": receipt.checkpoint,
    })
}
