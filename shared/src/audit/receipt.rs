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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::note::NoteSigner;

    /// A log of three events, signed as `test-log`, and its verifier.
    struct Three {
        leaves: Vec<Vec<u8>>,
        signer: NoteSigner,
        verifier: NoteVerifier,
    }

    impl Three {
        fn new() -> Self {
            let signer = NoteSigner::new("test-log", &[7; 32]);
            let verifier = NoteVerifier::parse(&signer.verifier_key()).unwrap();
            let leaves = (1..=3)
                .map(|sequence| {
                    serde_json::to_vec(&serde_json::json!({"sequence": sequence, "action": "a"}))
                        .unwrap()
                })
                .collect();
            Self {
                leaves,
                signer,
                verifier,
            }
        }

        fn hash(&self, index: usize) -> Hash {
            merkle::leaf_hash(&self.leaves[index])
        }

        fn checkpoint(&self, size: u64, root: Hash) -> String {
            self.signer.sign(&Checkpoint {
                origin: "test-log".into(),
                size,
                root,
            })
        }

        /// The receipt of the event at `index` (0 or 2) in the tree of
        /// three: root = node(node(l0, l1), l2).
        fn receipt(&self, index: usize) -> pb::Receipt {
            let left = merkle::node_hash(&self.hash(0), &self.hash(1));
            let root = merkle::node_hash(&left, &self.hash(2));
            let path = match index {
                0 => vec![self.hash(1), self.hash(2)],
                _ => vec![left],
            };
            pb::Receipt {
                leaf: self.leaves[index].clone(),
                leaf_index: index as i64,
                tree_size: 3,
                inclusion_proof: path.iter().map(|h| h.to_vec()).collect(),
                checkpoint: self.checkpoint(3, root),
            }
        }
    }

    #[test]
    fn a_receipt_proves_its_event_in_the_signed_tree() {
        let log = Three::new();
        for index in [0, 2] {
            let verified = verify(&log.receipt(index), &log.verifier).unwrap();
            assert_eq!(verified.checkpoint.size, 3);
            assert_eq!(verified.event["sequence"], index as u64 + 1);
        }
    }

    #[test]
    fn a_receipt_altered_anywhere_is_refused() {
        let log = Three::new();
        let refused = |change: &dyn Fn(&mut pb::Receipt)| {
            let mut receipt = log.receipt(2);
            change(&mut receipt);
            verify(&receipt, &log.verifier).expect_err("altered")
        };
        let size = refused(&|r| r.tree_size = 4);
        assert!(size.contains("tree of 4 leaves"), "{size}");
        let leaf = refused(&|r| r.leaf = br#"{"sequence":3,"action":"b"}"#.to_vec());
        assert!(leaf.contains("inclusion proof"), "{leaf}");
        refused(&|r| r.inclusion_proof[0][0] ^= 1);
        refused(&|r| r.inclusion_proof[0].truncate(31));
        refused(&|r| r.leaf_index = -1);
        refused(&|r| r.leaf_index = 1);
        refused(&|r| r.checkpoint = r.checkpoint.replace("test-log", "other-log"));
    }

    #[test]
    fn a_leaf_must_name_its_own_place() {
        // A correct proof of a leaf whose sequence is not its index + 1: an
        // event moved to another place in the log.
        let mut log = Three::new();
        log.leaves[2] = br#"{"sequence":7,"action":"a"}"#.to_vec();
        let error = verify(&log.receipt(2), &log.verifier).expect_err("misplaced");
        assert!(error.contains("sequence"), "{error}");
        log.leaves[0] = br#"{"sequence":2,"action":"a"}"#.to_vec();
        assert!(verify(&log.receipt(0), &log.verifier).is_err());
    }

    #[test]
    fn receipts_read_back_from_either_json_spelling() {
        let log = Three::new();
        let receipt = log.receipt(0);
        let json = to_json(&receipt);
        assert_eq!(json["leafIndex"], "0");
        assert_eq!(json["treeSize"], "3");
        assert_eq!(from_json(&json.to_string()).unwrap(), receipt);
        // The whole VerifyDocument answer, as grpcurl prints it.
        let answer = serde_json::json!({ "receipt": json }).to_string();
        assert_eq!(from_json(&answer).unwrap(), receipt);
        // snake_case with numbers.
        let snake = serde_json::json!({
            "leaf": json["leaf"], "leaf_index": 0, "tree_size": 3,
            "inclusion_proof": json["inclusionProof"], "checkpoint": json["checkpoint"],
        });
        assert_eq!(from_json(&snake.to_string()).unwrap(), receipt);
        let mut bad = json.clone();
        bad["treeSize"] = "three".into();
        assert!(from_json(&bad.to_string()).is_err());
        assert!(from_json("not json").is_err());
    }
}
