//! The audit trail as a transparency log, checked from outside: proofs are
//! verified here by an implementation of the test's own (RFC 9162's
//! recursive definitions and the signed-note format, written afresh), not
//! by the code that made them.

use std::time::Duration;

use base64::{Engine, engine::general_purpose::STANDARD};
use document_service::TokenValidation;
use sha2::{Digest, Sha256};
use shared::{
    db::Db,
    on_dialect,
    proto::audit::v1::{
        self as apb, GetCheckpointRequest, GetConsistencyProofRequest, GetInclusionProofRequest,
        WatchAuditEventsRequest, watch_audit_events_response::Message,
    },
};

use crate::helpers::*;

type Hash = [u8; 32];

/// The test's own verifier: a log's key and RFC 9162 from its definitions.
struct Outsider {
    name: String,
    id: [u8; 4],
    key: ed25519_dalek::VerifyingKey,
}

fn node(l: &Hash, r: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(l);
    h.update(r);
    h.finalize().into()
}

fn leaf_hash(leaf: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(leaf);
    h.finalize().into()
}

fn largest_power_below(n: u64) -> u64 {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

fn hashes(raw: &[Vec<u8>]) -> Vec<Hash> {
    raw.iter()
        .map(|h| h.as_slice().try_into().unwrap())
        .collect()
}

/// The root that PATH(m, D[n]) leads to, consuming `path` from its end
/// (the top of the tree) down.
fn root_from_path(leaf: Hash, m: u64, n: u64, path: &mut Vec<Hash>) -> Option<Hash> {
    if n == 1 {
        return Some(leaf);
    }
    let k = largest_power_below(n);
    let sibling = path.pop()?;
    Some(if m < k {
        node(&root_from_path(leaf, m, k, path)?, &sibling)
    } else {
        node(&sibling, &root_from_path(leaf, m - k, n - k, path)?)
    })
}

/// The (old, new) roots that SUBPROOF(m, D[n], b) proves.
fn roots_from_subproof(
    m: u64,
    n: u64,
    whole: bool,
    old_root: &Hash,
    proof: &mut Vec<Hash>,
) -> Option<(Hash, Hash)> {
    if m == n {
        return if whole {
            Some((*old_root, *old_root))
        } else {
            let h = proof.pop()?;
            Some((h, h))
        };
    }
    let k = largest_power_below(n);
    if m <= k {
        let right = proof.pop()?;
        let (old, new) = roots_from_subproof(m, k, whole, old_root, proof)?;
        Some((old, node(&new, &right)))
    } else {
        let left = proof.pop()?;
        let (old, new) = roots_from_subproof(m - k, n - k, false, old_root, proof)?;
        Some((node(&left, &old), node(&left, &new)))
    }
}

impl Outsider {
    fn new(vkey: &str) -> Self {
        let parts: Vec<&str> = vkey.splitn(3, '+').collect();
        assert_eq!(parts.len(), 3, "{vkey}");
        let key = STANDARD.decode(parts[2]).unwrap();
        assert_eq!(key[0], 1, "Ed25519");
        let key = ed25519_dalek::VerifyingKey::from_bytes(&key[1..].try_into().unwrap()).unwrap();
        let mut h = Sha256::new();
        h.update(parts[0].as_bytes());
        h.update(b"\n\x01");
        h.update(key.as_bytes());
        let id: [u8; 4] = h.finalize()[..4].try_into().unwrap();
        assert_eq!(
            parts[1],
            id.iter().map(|b| format!("{b:02x}")).collect::<String>()
        );
        Self {
            name: parts[0].to_owned(),
            id,
            key,
        }
    }

    /// (size, root) of a checkpoint note signed by this key; None otherwise.
    fn open(&self, note: &str) -> Option<(u64, Hash)> {
        let (text, sigs) = note.split_once("\n\n")?;
        let text = format!("{text}\n");
        let signed = sigs.lines().any(|line| {
            let Some((name, sig)) = line
                .strip_prefix("\u{2014} ")
                .and_then(|l| l.split_once(' '))
            else {
                return false;
            };
            let sig = STANDARD.decode(sig).unwrap_or_default();
            name == self.name
                && sig.len() == 68
                && sig[..4] == self.id
                && self
                    .key
                    .verify_strict(
                        text.as_bytes(),
                        &ed25519_dalek::Signature::from_slice(&sig[4..]).unwrap(),
                    )
                    .is_ok()
        });
        let lines: Vec<&str> = text.lines().collect();
        (signed && lines.len() == 3 && lines[0] == self.name).then(|| {
            (
                lines[1].parse().unwrap(),
                STANDARD.decode(lines[2]).unwrap().try_into().unwrap(),
            )
        })
    }

    /// Whether `receipt` proves its leaf in the log its checkpoint signs.
    fn proves(&self, receipt: &apb::Receipt) -> bool {
        self.included(
            &receipt.leaf,
            receipt.leaf_index as u64,
            &receipt.checkpoint,
            &receipt.inclusion_proof,
        )
    }

    fn included(&self, leaf: &[u8], index: u64, note: &str, path: &[Vec<u8>]) -> bool {
        let Some((size, root)) = self.open(note) else {
            return false;
        };
        let mut path = hashes(path);
        root_from_path(leaf_hash(leaf), index, size, &mut path) == Some(root) && path.is_empty()
    }

    fn consistent(&self, first: &str, second: &str, proof: &[Vec<u8>]) -> bool {
        let (Some((m, old)), Some((n, new))) = (self.open(first), self.open(second)) else {
            return false;
        };
        if m == n {
            return old == new && proof.is_empty();
        }
        let mut proof = hashes(proof);
        roots_from_subproof(m, n, true, &old, &mut proof) == Some((old, new)) && proof.is_empty()
    }
}

async fn checkpoint(docs: &DocApp) -> (apb::Checkpoint, String) {
    let answer = docs
        .audit()
        .get_checkpoint(GetCheckpointRequest {})
        .await
        .unwrap()
        .into_inner();
    (answer.checkpoint.unwrap(), answer.verifier_key)
}

/// The proof that the log of size `first` is a prefix of that of `second`,
/// checked to come with those two checkpoints (none for the empty first).
async fn consistency(docs: &DocApp, token: &str, first: i64, second: i64) -> Vec<Vec<u8>> {
    let answer = docs
        .audit()
        .get_consistency_proof(bearer(
            GetConsistencyProofRequest {
                first_size: first,
                second_size: second,
            },
            token,
        ))
        .await
        .unwrap()
        .into_inner();
    let size = |c: Option<apb::Checkpoint>| c.map(|c| c.tree_size);
    assert_eq!(size(answer.first), (first > 0).then_some(first));
    assert_eq!(size(answer.second), Some(second));
    answer.proof
}

async fn raw_db(docs: &DocApp) -> Db {
    Db::connect(&docs.db.url, &Default::default())
        .await
        .unwrap()
}

async fn exec(db: &Db, statements: &[&str]) {
    for statement in statements {
        on_dialect!(db.writer(), p => sqlx::query(sqlx::AssertSqlSafe(*statement)).execute(p).await.map(|_| ()))
            .unwrap_or_else(|e| panic!("{statement}: {e}"));
    }
}

fn drop_trigger(pg: bool, trigger: &str, table: &str) -> String {
    if pg {
        format!("DROP TRIGGER {trigger} ON {table}")
    } else {
        format!("DROP TRIGGER {trigger}")
    }
}

/// One small upload through `client`.
async fn upload_with(
    client: &mut shared::proto::document::v1::document_service_client::DocumentServiceClient<
        tonic::transport::Channel,
    >,
    token: &str,
    title: &str,
) {
    let messages = vec![metadata(title), chunk(b"small")];
    client
        .upload_document(bearer(tokio_stream::iter(messages), token))
        .await
        .unwrap();
}

/// A review's receipt proves, with nothing but the published key, that this
/// document (by id and SHA-256) was verified by whom and when; the shipped
/// binary checks it offline, and refuses it for another document or hash,
/// or with one byte of the leaf changed.
#[tokio::test]
async fn a_review_receipt_proves_the_decision_offline() {
    let stack = spawn_stack(TokenValidation::Local).await;
    let (owner, _) = stack.user_with_roles("owner@example.com", &["user"]).await;
    let (verifier, verifier_id) = stack
        .user_with_roles("vera@example.com", &["verifier"])
        .await;
    let content = b"the signed contract";
    let doc = stack.upload(&owner, "contract", content).await.unwrap();
    let answer = stack
        .docs
        .documents()
        .verify_document(bearer(
            shared::proto::document::v1::VerifyDocumentRequest {
                document_id: doc.id.clone(),
                note: "signatures match".into(),
            },
            &verifier,
        ))
        .await
        .unwrap()
        .into_inner();
    let receipt = answer.receipt.expect("a receipt with the review");
    let (_, vkey) = checkpoint(&stack.docs).await;
    let outsider = Outsider::new(&vkey);
    assert!(outsider.proves(&receipt));
    let event: serde_json::Value = serde_json::from_slice(&receipt.leaf).unwrap();
    assert_eq!(event["action"], "document.verified");
    assert_eq!(event["target_id"], doc.id.as_str());
    assert_eq!(event["details"]["sha256"], sha256_hex(content).as_str());
    assert_eq!(event["details"]["note"], "signatures match");
    assert_eq!(event["actor_id"], verifier_id.as_str());
    assert_eq!(event["actor_email"], "vera@example.com");
    assert_eq!(event["sequence"], receipt.leaf_index + 1);
    assert!(event["occurred_at"].as_str().unwrap().ends_with('Z'));
    // Canonical JSON: what was hashed is what a client re-serialises.
    assert_eq!(
        receipt.leaf,
        serde_json_canonicalizer::to_vec(&event).unwrap()
    );
    let mut forged = receipt.leaf.clone();
    let at = forged.iter().position(|&b| b == b'v').unwrap();
    forged[at] = b'w';
    assert!(!outsider.included(
        &forged,
        receipt.leaf_index as u64,
        &receipt.checkpoint,
        &receipt.inclusion_proof
    ));

    // GetReceipt gives a receipt of the same event later, to anyone who may
    // see the document; the owner included.
    let later = stack
        .docs
        .documents()
        .get_receipt(bearer(
            shared::proto::document::v1::GetReceiptRequest {
                document_id: doc.id.clone(),
            },
            &owner,
        ))
        .await
        .unwrap()
        .into_inner()
        .receipt
        .unwrap();
    assert_eq!(later.leaf, receipt.leaf);
    assert!(outsider.included(
        &later.leaf,
        later.leaf_index as u64,
        &later.checkpoint,
        &later.inclusion_proof
    ));

    // The shipped binary, offline, with the receipt as grpcurl prints it.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("receipt.json");
    std::fs::write(&file, shared::audit::receipt::to_json(&receipt).to_string()).unwrap();
    let bin = env!("CARGO_BIN_EXE_document-service");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(bin)
            .args(["receipt", "verify"])
            .arg(&file)
            .args(["--key", &vkey])
            .args(args)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let sha = sha256_hex(content);
    let (ok, out) = run(&["--document-id", &doc.id, "--sha256", &sha]);
    assert!(ok, "{out}");
    assert!(
        out.contains("document.verified") && out.contains("vera@example.com"),
        "{out}"
    );
    let (ok, out) = run(&["--sha256", &sha256_hex(b"other bytes")]);
    assert!(!ok, "another hash is refused: {out}");
    let (ok, out) = run(&["--document-id", &uuid::Uuid::now_v7().to_string()]);
    assert!(!ok, "another document is refused: {out}");
    let other_key = shared::audit::note::NoteSigner::new(outsider.name.as_str(), &[7; 32]);
    let out = std::process::Command::new(bin)
        .args(["receipt", "verify"])
        .arg(&file)
        .args(["--key", &other_key.verifier_key()])
        .output()
        .unwrap();
    assert!(!out.status.success(), "another key is refused");
}

/// Checkpoints only grow: consistency proofs between every pair of the
/// first few checkpoints verify (outside), a forked log (newest entries
/// removed and replaced, re-signed with the log's own key) cannot prove
/// itself consistent with a checkpoint published before the fork, and an
/// edited event or a removed one is named by VerifyAuditChain.
#[tokio::test]
async fn tampering_forks_and_removals_are_detected() {
    let stack = spawn_stack(TokenValidation::Local).await;
    let admin = stack.admin().await;
    let (owner, _) = stack.user_with_roles("trail@example.com", &["user"]).await;
    let (_, vkey) = checkpoint(&stack.docs).await;
    let outsider = Outsider::new(&vkey);
    let mut notes = Vec::new();
    for i in 0..5 {
        stack
            .upload(&owner, &format!("doc {i}"), b"abc")
            .await
            .unwrap();
        let report = verified_log(&stack.docs.channel, &admin).await;
        assert!(report.valid, "{report:?}");
        notes.push(checkpoint(&stack.docs).await.0);
    }
    for a in &notes {
        for b in notes.iter().filter(|b| b.tree_size >= a.tree_size) {
            let proof = consistency(&stack.docs, &admin, a.tree_size, b.tree_size).await;
            assert!(
                outsider.consistent(&a.note, &b.note, &proof),
                "{} -> {}",
                a.tree_size,
                b.tree_size
            );
        }
    }
    let published = notes[2].clone();

    let db = raw_db(&stack.docs).await;
    let pg = stack.docs.db.is_postgres();
    // Append-only, every table of the log.
    for (table, column) in [
        ("audit_events", "actor_email"),
        ("audit_leaves", "sequenced_at"),
        ("audit_nodes", "hash"),
        ("audit_checkpoints", "note"),
    ] {
        for statement in [
            format!("UPDATE {table} SET {column} = {column}"),
            format!("DELETE FROM {table}"),
        ] {
            let refused = on_dialect!(db.writer(), p => sqlx::query(sqlx::AssertSqlSafe(statement.clone())).execute(p).await.map(|_| ()));
            let message = refused.expect_err(&statement).to_string();
            assert!(
                message.contains(&format!("{table} is append-only")),
                "{statement}: {message}"
            );
        }
    }

    // An edited event is named by its sequence.
    exec(
        &db,
        &[&drop_trigger(pg, "audit_events_no_update", "audit_events")],
    )
    .await;
    exec(
        &db,
        &[
            "UPDATE audit_events SET actor_email = 'someone@example.com' \
           WHERE position = (SELECT position FROM audit_leaves WHERE sequence = 3)",
        ],
    )
    .await;
    let report = verified_log(&stack.docs.channel, &admin).await;
    assert!(!report.valid);
    assert_eq!(report.first_invalid_sequence, 3, "{report:?}");
    exec(
        &db,
        &["UPDATE audit_events SET actor_email = 'trail@example.com' \
           WHERE position = (SELECT position FROM audit_leaves WHERE sequence = 3)"],
    )
    .await;
    let report = verified_log(&stack.docs.channel, &admin).await;
    assert!(report.valid);
    let count = async |sql: &'static str| -> i64 {
        on_dialect!(db.writer(), p => sqlx::query_scalar(sql).fetch_one(p).await.unwrap())
    };
    assert_eq!(
        report.checkpoints_checked,
        count("SELECT COUNT(*) FROM audit_checkpoints WHERE tree_size > 0").await,
        "every stored checkpoint is checked: {report:?}"
    );

    // A stored inner node altered (node 1/1 covers sequences 3 and 4) is
    // named by the first event under it.
    exec(
        &db,
        &[
            &drop_trigger(pg, "audit_nodes_no_update", "audit_nodes"),
            "CREATE TABLE saved AS SELECT hash FROM audit_nodes WHERE level = 1 AND idx = 1",
            "UPDATE audit_nodes SET hash = (SELECT hash FROM audit_nodes WHERE level = 1 AND idx = 0) \
             WHERE level = 1 AND idx = 1",
        ],
    )
    .await;
    let report = verified_log(&stack.docs.channel, &admin).await;
    assert!(!report.valid);
    assert_eq!(report.first_invalid_sequence, 3, "{report:?}");
    assert!(report.problem.contains("node 1/1"), "{report:?}");
    exec(
        &db,
        &[
            "UPDATE audit_nodes SET hash = (SELECT hash FROM saved) WHERE level = 1 AND idx = 1",
            "DROP TABLE saved",
        ],
    )
    .await;
    assert!(verified_log(&stack.docs.channel, &admin).await.valid);

    // The first checkpoint's note replaced by the latest one (a signature
    // that checks, over another tree) is named by the first event after it.
    let first = count("SELECT MIN(tree_size) FROM audit_checkpoints WHERE tree_size > 0").await;
    let latest = count("SELECT MAX(tree_size) FROM audit_checkpoints").await;
    assert!(latest > first, "five uploads make several checkpoints");
    let swap = format!(
        "UPDATE audit_checkpoints SET note = (SELECT note FROM audit_checkpoints \
         WHERE tree_size = {latest}) WHERE tree_size = {first}"
    );
    exec(
        &db,
        &[
            &drop_trigger(pg, "audit_checkpoints_no_update", "audit_checkpoints"),
            "CREATE TABLE saved AS SELECT note FROM audit_checkpoints \
             WHERE tree_size = (SELECT MIN(tree_size) FROM audit_checkpoints WHERE tree_size > 0)",
            &swap,
        ],
    )
    .await;
    let report = verified_log(&stack.docs.channel, &admin).await;
    assert!(!report.valid);
    assert_eq!(report.first_invalid_sequence, first + 1, "{report:?}");
    assert!(
        report
            .problem
            .contains(&format!("checkpoint of size {first}")),
        "{report:?}"
    );
    let restore = format!(
        "UPDATE audit_checkpoints SET note = (SELECT note FROM saved) WHERE tree_size = {first}"
    );
    exec(&db, &[&restore, "DROP TABLE saved"]).await;
    assert!(verified_log(&stack.docs.channel, &admin).await.valid);
    // Its stored root alone altered, the note intact: refused all the same.
    let swap = format!(
        "UPDATE audit_checkpoints SET root_hash = (SELECT root_hash FROM audit_checkpoints \
         WHERE tree_size = {latest}) WHERE tree_size = {first}"
    );
    let save = format!(
        "CREATE TABLE saved AS SELECT root_hash FROM audit_checkpoints WHERE tree_size = {first}"
    );
    exec(&db, &[&save, &swap]).await;
    let report = verified_log(&stack.docs.channel, &admin).await;
    assert!(!report.valid);
    assert_eq!(report.first_invalid_sequence, first + 1, "{report:?}");
    let restore = format!(
        "UPDATE audit_checkpoints SET root_hash = (SELECT root_hash FROM saved) \
         WHERE tree_size = {first}"
    );
    exec(&db, &[&restore, "DROP TABLE saved"]).await;
    assert!(verified_log(&stack.docs.channel, &admin).await.valid);

    // A fork: the newest events removed with their leaves, nodes and
    // checkpoints, and another event sequenced in their place, signed with
    // the log's own key (the forger has the database and the key).
    for (trigger, table) in [
        ("audit_events_no_delete", "audit_events"),
        ("audit_leaves_no_delete", "audit_leaves"),
        ("audit_nodes_no_delete", "audit_nodes"),
        ("audit_checkpoints_no_delete", "audit_checkpoints"),
    ] {
        exec(&db, &[&drop_trigger(pg, trigger, table)]).await;
    }
    let cut = published.tree_size - 1;
    let statements = [
        format!("CREATE TABLE doomed AS SELECT position FROM audit_leaves WHERE sequence > {cut}"),
        format!("DELETE FROM audit_leaves WHERE sequence > {cut}"),
        "DELETE FROM audit_events WHERE position IN (SELECT position FROM doomed)".to_owned(),
        format!("DELETE FROM audit_nodes WHERE ((idx + 1) << level) > {cut}"),
        format!("DELETE FROM audit_checkpoints WHERE tree_size > {cut}"),
        "DROP TABLE doomed".to_owned(),
    ];
    let statements: Vec<&str> = statements.iter().map(String::as_str).collect();
    exec(&db, &statements).await;
    let forger = shared::identity::RequestContext {
        request_id: "forged".into(),
        ..Default::default()
    };
    let forged = shared::audit::Event::new(
        shared::audit::Action::DocumentVerified,
        shared::audit::Actor {
            id: None,
            email: "forger@example.com".into(),
        },
        "document",
        "forged",
    );
    shared::audit::record(
        &db,
        &forger,
        shared::db::Timestamp::from_unix_micros(0),
        forged,
    )
    .await
    .unwrap();
    // The pending events are sequenced again: the forged one among them.
    let report = verified_log(&stack.docs.channel, &admin).await;
    assert!(
        report.valid,
        "the rebuilt log is consistent in itself: {report:?}"
    );
    let (forked, _) = checkpoint(&stack.docs).await;
    assert!(forked.tree_size >= published.tree_size);
    let proof = stack
        .docs
        .audit()
        .get_consistency_proof(bearer(
            GetConsistencyProofRequest {
                first_size: published.tree_size,
                second_size: forked.tree_size,
            },
            &admin,
        ))
        .await;
    let detected = match proof {
        Ok(p) => !outsider.consistent(&published.note, &forked.note, &p.into_inner().proof),
        Err(status) => status.code() == tonic::Code::NotFound,
    };
    assert!(
        detected,
        "a checkpoint published before the fork contradicts the forked log"
    );

    // The newest event removed, its checkpoint kept: the checkpoint is
    // named, with the first event it lacks.
    let size = count("SELECT MAX(tree_size) FROM audit_checkpoints").await;
    exec(
        &db,
        &[&format!("DELETE FROM audit_leaves WHERE sequence = {size}")],
    )
    .await;
    let report = verified_log(&stack.docs.channel, &admin).await;
    assert!(!report.valid);
    assert_eq!(report.first_invalid_sequence, size, "{report:?}");
    assert!(
        report.problem.contains("has no events to match"),
        "{report:?}"
    );
    // And with the checkpoints that cover it gone too, the event is still
    // counted: neither in the log nor queued for it.
    exec(
        &db,
        &[&format!(
            "DELETE FROM audit_checkpoints WHERE tree_size >= {size}"
        )],
    )
    .await;
    let covered = count("SELECT MAX(tree_size) FROM audit_checkpoints").await;
    let report = verified_log(&stack.docs.channel, &admin).await;
    assert!(!report.valid);
    assert_eq!(report.first_invalid_sequence, covered + 1, "{report:?}");
    assert!(
        report.problem.contains("1 event(s) are neither"),
        "{report:?}"
    );

    // A removed event leaves a hole that is named.
    exec(
        &db,
        &[
            "DELETE FROM audit_leaves WHERE sequence = 2",
            "DELETE FROM audit_events WHERE position NOT IN (SELECT position FROM audit_leaves) \
             AND position NOT IN (SELECT position FROM audit_pending)",
        ],
    )
    .await;
    let report = verified_log(&stack.docs.channel, &admin).await;
    assert!(!report.valid);
    assert_eq!(report.first_invalid_sequence, 2, "{report:?}");
    db.close().await;
}

/// A WatchAuditEvents stream of `docs`' log, opened with `token`.
async fn open_watch(
    docs: &DocApp,
    token: &str,
    request: WatchAuditEventsRequest,
) -> tonic::Streaming<apb::WatchAuditEventsResponse> {
    docs.audit()
        .watch_audit_events(bearer(request, token))
        .await
        .unwrap()
        .into_inner()
}

/// WatchAuditEvents exports the log without a miss or a repeat while
/// writers run, resumes from any sequence, filters, and each batch comes
/// with a checkpoint that covers it; bad arguments are INVALID_ARGUMENT.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watch_exports_every_event_once_and_resumes() {
    let stack = spawn_stack(TokenValidation::Local).await;
    let admin = stack.admin().await;
    let (owner, _) = stack.user_with_roles("watch@example.com", &["user"]).await;
    let mut watch = open_watch(&stack.docs, &admin, WatchAuditEventsRequest::default()).await;
    // In waves that fit the per-connection budget of streaming calls.
    for wave in 0..2 {
        let uploads = (0..12).map(|i| {
            let (mut client, owner) = (stack.docs.documents(), owner.clone());
            async move { upload_with(&mut client, &owner, &format!("w{wave}.{i}")).await }
        });
        concurrently(uploads).await;
    }
    let mut seen = Vec::new();
    let mut covered = 0;
    while covered < 24 || seen.len() < 24 {
        let message = tokio::time::timeout(Duration::from_secs(10), watch.message())
            .await
            .expect("the watch keeps up")
            .unwrap()
            .unwrap();
        match message.message.unwrap() {
            Message::Event(e) => {
                assert!(!e.pending && !e.leaf.is_empty());
                seen.push(e.sequence);
            }
            Message::Checkpoint(c) => {
                assert!(c.tree_size >= seen.last().copied().unwrap_or(0));
                covered = c.tree_size;
            }
        }
    }
    let expected: Vec<i64> = (1..=seen.len() as i64).collect();
    assert_eq!(seen, expected, "every event once, in sequence order");

    let mut resumed = open_watch(
        &stack.docs,
        &admin,
        WatchAuditEventsRequest {
            after_sequence: 10,
            action: "document.uploaded".into(),
            ..Default::default()
        },
    )
    .await;
    let mut after = Vec::new();
    while let Message::Event(e) = resumed.message().await.unwrap().unwrap().message.unwrap() {
        assert_eq!(e.action, "document.uploaded");
        after.push(e.sequence);
    }
    assert_eq!(after, (11..=24).collect::<Vec<i64>>());

    // From the head, nothing comes until the log grows (no checkpoint of
    // what the caller has already), then the new event, first.
    let (head, _) = checkpoint(&stack.docs).await;
    let from_head = WatchAuditEventsRequest {
        after_sequence: head.tree_size,
        ..Default::default()
    };
    let mut at_head = open_watch(&stack.docs, &admin, from_head).await;
    let quiet = tokio::time::timeout(Duration::from_millis(300), at_head.message()).await;
    assert!(quiet.is_err(), "nothing new yet: {quiet:?}");
    upload_with(&mut stack.docs.documents(), &owner, "past the head").await;
    let first = at_head.message().await.unwrap().unwrap().message.unwrap();
    let Message::Event(event) = first else {
        panic!("the new event first: {first:?}");
    };
    assert_eq!(event.sequence, head.tree_size + 1);

    let mut audit = stack.docs.audit();
    for (request, field) in [
        (
            WatchAuditEventsRequest {
                after_sequence: -1,
                ..Default::default()
            },
            "after_sequence",
        ),
        (
            WatchAuditEventsRequest {
                after_sequence: 1 << 40,
                ..Default::default()
            },
            "after_sequence",
        ),
        (
            WatchAuditEventsRequest {
                actor_id: "nope".into(),
                ..Default::default()
            },
            "actor_id",
        ),
    ] {
        let bad = assert_error(
            audit
                .watch_audit_events(bearer(request, &admin))
                .await
                .map(|_| ()),
            tonic::Code::InvalidArgument,
            "INVALID_ARGUMENT",
        );
        assert_eq!(violated_fields(&bad), [field]);
    }
    for (sequence, tree_size, field) in [
        (0, 0, "sequence"),
        (-3, 0, "sequence"),
        (1, -1, "tree_size"),
    ] {
        let bad = assert_error(
            audit
                .get_inclusion_proof(bearer(
                    GetInclusionProofRequest {
                        sequence,
                        tree_size,
                    },
                    &admin,
                ))
                .await,
            tonic::Code::InvalidArgument,
            "INVALID_ARGUMENT",
        );
        assert_eq!(violated_fields(&bad), [field]);
    }
    assert_error(
        audit
            .get_inclusion_proof(bearer(
                GetInclusionProofRequest {
                    sequence: 1 << 40,
                    tree_size: 0,
                },
                &admin,
            ))
            .await,
        tonic::Code::NotFound,
        "NOT_FOUND",
    );
    assert_error(
        audit
            .get_consistency_proof(bearer(
                GetConsistencyProofRequest {
                    first_size: 1,
                    second_size: 1 << 40,
                },
                &admin,
            ))
            .await,
        tonic::Code::NotFound,
        "NOT_FOUND",
    );
    // Before any lookup: with (5, 3) the answer used to depend on whether
    // a batch had happened to stop at size 3 (NOT_FOUND, or this).
    let inverted = assert_error(
        audit
            .get_consistency_proof(bearer(
                GetConsistencyProofRequest {
                    first_size: 5,
                    second_size: 3,
                },
                &admin,
            ))
            .await,
        tonic::Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(violated_fields(&inverted), ["first_size"]);
    let proof = audit
        .get_inclusion_proof(bearer(
            GetInclusionProofRequest {
                sequence: 7,
                tree_size: 0,
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    let (_, vkey) = checkpoint(&stack.docs).await;
    assert!(Outsider::new(&vkey).included(
        &proof.leaf,
        proof.leaf_index as u64,
        &proof.checkpoint.unwrap().note,
        &proof.audit_path
    ));
}

/// Checks `docs`' log whole (its chain and tree), and that a watch from
/// the start exports its events in sequence, each once with no gap, up to
/// the latest checkpoint (in batches of up to 500); how many there are.
async fn gapless_log(docs: &DocApp, admin: &str) -> i64 {
    let report = verified_log(&docs.channel, admin).await;
    assert!(report.valid, "{report:?}");
    let (latest, _) = checkpoint(docs).await;
    let mut watch = open_watch(docs, admin, WatchAuditEventsRequest::default()).await;
    let mut seen = Vec::new();
    while seen.len() < latest.tree_size as usize {
        let message = tokio::time::timeout(Duration::from_secs(10), watch.message())
            .await
            .expect("the watch keeps up")
            .unwrap()
            .unwrap();
        if let Some(Message::Event(e)) = message.message {
            seen.push(e.sequence);
        }
    }
    let n = latest.tree_size;
    assert_eq!(seen, (1..=n).collect::<Vec<_>>(), "each once, in order");
    n
}

/// Three replicas writing at once make one log: every event sequenced
/// exactly once, and each stored checkpoint consistent with the next (a
/// proof per pair, verified outside). On PostgreSQL the replicas contend
/// for the sequencer lock; on SQLite they share the file's one writer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_writing_at_once_make_one_consistent_log() {
    let stack = spawn_stack(TokenValidation::Local).await;
    let mut replicas = vec![];
    for _ in 0..2 {
        let config = doc_config(&stack.auth, TokenValidation::Local);
        replicas.push(spawn_docs_on(config, stack.docs.db.another_handle()).await);
    }
    let admin = stack.admin().await;
    let (owner, _) = stack.user_with_roles("many@example.com", &["user"]).await;
    let all: Vec<&DocApp> = std::iter::once(&stack.docs)
        .chain(replicas.iter())
        .collect();
    for wave in 0..5 {
        let uploads = (0..12).map(|i| {
            let (mut client, owner) = (all[i % 3].documents(), owner.clone());
            async move { upload_with(&mut client, &owner, &format!("r{wave}.{i}")).await }
        });
        concurrently(uploads).await;
    }
    let events = gapless_log(&stack.docs, &admin).await;
    let uploaded = audit_events(&stack.docs.channel, &admin, "document.uploaded").await;
    assert_eq!(uploaded.len(), 60);

    let db = raw_db(&stack.docs).await;
    let notes: Vec<(i64, String)> = on_dialect!(db.reader(), p => sqlx::query_as(
        "SELECT tree_size, note FROM audit_checkpoints WHERE tree_size > 0 ORDER BY tree_size")
        .fetch_all(p).await.unwrap());
    db.close().await;
    assert!(notes.len() >= 2, "{}", notes.len());
    let (_, vkey) = checkpoint(&stack.docs).await;
    let outsider = Outsider::new(&vkey);
    for pair in notes.windows(2) {
        let proof = consistency(&stack.docs, &admin, pair[0].0, pair[1].0).await;
        assert!(
            outsider.consistent(&pair[0].1, &pair[1].1, &proof),
            "{} -> {}",
            pair[0].0,
            pair[1].0
        );
    }
    testkit::measured(format_args!(
        "{} checkpoints for {} events written by 3 replicas at once",
        notes.len(),
        events
    ));
}

/// A database of the version before the log: its hash-chained events become
/// the log's first leaves, each with the sequence it had, in that order,
/// whatever order the rows are stored in; nothing is lost.
#[tokio::test]
async fn chained_events_of_the_previous_version_become_the_first_leaves_in_order() {
    let db = TestDb::fresh("legacy").await;
    let dialect = if db.is_postgres() {
        "postgres"
    } else {
        "sqlite"
    };
    let source = format!(
        "{}/../migrations/document/{dialect}",
        env!("CARGO_MANIFEST_DIR")
    );
    let before = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(&source).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.as_str() < "20261203000001" {
            std::fs::copy(&path, before.path().join(&name)).unwrap();
        }
    }
    let migrator = sqlx::migrate::Migrator::new(before.path()).await.unwrap();
    let raw = Db::connect(&db.url, &Default::default()).await.unwrap();
    on_dialect!(raw.writer(), p => migrator.run(p).await.unwrap());
    let insert = "INSERT INTO audit_events (sequence, id, occurred_at, actor_id, actor_email, action, \
                  target_type, target_id, outcome, request_id, client_addr, details, prev_hash, hash) \
                  VALUES ($1, $2, $3, NULL, $4, 'document.uploaded', 'document', $5, 'success', 'r', \
                  '127.0.0.1', $6, 'p', 'h')";
    // Stored newest first, so that their order can only come from `sequence`.
    for sequence in (1..=5_i64).rev() {
        on_dialect!(raw.writer(), p => sqlx::query(insert)
            .bind(sequence)
            .bind(uuid::Uuid::now_v7())
            .bind(shared::db::Timestamp::from_unix_micros(1_700_000_000_000_000 + sequence))
            .bind(format!("old{sequence}@example.com"))
            .bind(format!("doc-{sequence}"))
            .bind(sqlx::types::Json(serde_json::json!({ "legacy": sequence })))
            .execute(p)
            .await
            .map(|_| ())
            .unwrap());
    }
    raw.close().await;

    let auth = auth::spawn_app().await;
    let docs = spawn_docs_on(doc_config(&auth, TokenValidation::Local), db).await;
    let admin = auth.admin().await.access_token;
    let owner = auth.user("new@example.com").await.access_token;
    upload(&docs, &owner, "after the upgrade", b"new", 1024)
        .await
        .unwrap();
    let report = verified_log(&docs.channel, &admin).await;
    assert!(report.valid, "{report:?}");
    let mut events = audit_events(&docs.channel, &admin, "document.uploaded").await;
    events.sort_by_key(|e| e.sequence);
    let newest = events.pop().unwrap();
    assert_eq!(
        (newest.sequence, newest.actor_email.as_str()),
        (6, "new@example.com"),
        "the next event follows them"
    );
    let kept: Vec<(i64, String)> = events
        .iter()
        .map(|e| (e.sequence, e.actor_email.clone()))
        .collect();
    let expected: Vec<(i64, String)> = (1..=5)
        .map(|s| (s, format!("old{s}@example.com")))
        .collect();
    assert_eq!(kept, expected);
    let (_, vkey) = checkpoint(&docs).await;
    let proof = docs
        .audit()
        .get_inclusion_proof(bearer(
            GetInclusionProofRequest {
                sequence: 3,
                tree_size: 0,
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    let leaf: serde_json::Value = serde_json::from_slice(&proof.leaf).unwrap();
    assert_eq!(leaf["details"]["legacy"], 3);
    assert!(Outsider::new(&vkey).included(
        &proof.leaf,
        proof.leaf_index as u64,
        &proof.checkpoint.unwrap().note,
        &proof.audit_path
    ));
}

/// `audit export` writes a log as JSON lines through WatchAuditEvents and
/// `audit verify` recomputes it offline: an intact export passes, one with
/// a leaf changed or an event dropped fails, naming the line.
#[tokio::test]
async fn the_shipped_binary_exports_a_log_and_verifies_the_export() {
    let stack = spawn_stack(TokenValidation::Local).await;
    let admin = stack.admin().await;
    let (owner, _) = stack.user_with_roles("export@example.com", &["user"]).await;
    for i in 0..5 {
        stack.upload(&owner, &format!("e{i}"), b"e").await.unwrap();
    }
    assert!(verified_log(&stack.docs.channel, &admin).await.valid);
    let (_, vkey) = checkpoint(&stack.docs).await;
    let bin = env!("CARGO_BIN_EXE_document-service");
    let dir = tempfile::tempdir().unwrap();
    let export = dir.path().join("log.jsonl");
    // Off the runtime: the service it calls runs on this test's runtime.
    let mut command = std::process::Command::new(bin);
    command
        .args(["audit", "export", "--addr", &stack.docs.addr_url(), "--out"])
        .arg(&export)
        .env("DOCVERIFY_TOKEN", &admin);
    let out = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let verify = |file: &std::path::Path| {
        let out = std::process::Command::new(bin)
            .args(["audit", "verify"])
            .arg(file)
            .args(["--key", &vkey])
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (ok, said) = verify(&export);
    assert!(ok, "{said}");
    assert!(said.contains("OK: 5 events"), "{said}");

    let lines: Vec<String> = std::fs::read_to_string(&export)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let third = lines.iter().position(|l| l.contains("\"event\"")).unwrap() + 2;
    let mut event: serde_json::Value = serde_json::from_str(&lines[third]).unwrap();
    let leaf = STANDARD
        .decode(event["event"]["leaf"].as_str().unwrap())
        .unwrap();
    let edited = String::from_utf8(leaf)
        .unwrap()
        .replace("export@example.com", "exporx@example.com");
    event["event"]["leaf"] = STANDARD.encode(edited).into();
    let mut tampered = lines.clone();
    tampered[third] = event.to_string();
    let file = dir.path().join("tampered.jsonl");
    std::fs::write(&file, tampered.join("\n")).unwrap();
    let (ok, said) = verify(&file);
    assert!(!ok && said.contains("rewritten"), "an edited leaf: {said}");

    let mut dropped = lines.clone();
    dropped.remove(third);
    std::fs::write(&file, dropped.join("\n")).unwrap();
    let (ok, said) = verify(&file);
    assert!(
        !ok && said.contains("expected the event of sequence"),
        "a dropped event: {said}"
    );
}

/// The sequencer's advisory lock (shared::db::StartupLock::AuditSequencer),
/// held by the test on a connection of its own: while it is held, no
/// replica sequences. PostgreSQL only.
struct SequencerLock(sqlx::PgConnection);

impl SequencerLock {
    const KEY: i64 = 0x6476_0000_i64 | 3;

    async fn take(docs: &DocApp) -> Self {
        use sqlx::Connection;
        let mut holder = sqlx::PgConnection::connect(&docs.db.url).await.unwrap();
        sqlx::query("SELECT pg_advisory_lock($1)")
            .bind(Self::KEY)
            .execute(&mut holder)
            .await
            .unwrap();
        Self(holder)
    }

    async fn release(mut self) {
        sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(Self::KEY)
            .execute(&mut self.0)
            .await
            .unwrap();
    }
}

/// Waits until `want` events of document-service's trail wait for the
/// sequencer.
async fn queued(docs: &DocApp, want: i64) {
    for _ in 0..1000 {
        if count(&docs.db, "audit_pending").await == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("never {want} events queued");
}

/// A sequencer that cannot run (its lock held elsewhere): the review still
/// answers OK with the document, within REQUEST_TIMEOUT (800 ms here, the
/// caller sending no deadline of its own), and with no receipt; GetReceipt
/// says RECEIPT_PENDING until the log has the review, then gives its
/// receipt. A review that waited its full 5 s for the receipt answered
/// DEADLINE_EXCEEDED for a committed review (tried). PostgreSQL only: the
/// lock is an advisory lock this test takes for itself.
#[tokio::test]
async fn a_review_the_sequencer_cannot_reach_in_time_answers_without_a_receipt() {
    let Some(stack) = spawn_postgres_stack("a review whose receipt is late", |c| {
        c.server.request_timeout = Duration::from_millis(800);
    })
    .await
    else {
        return;
    };
    let (owner, _) = stack.user_with_roles("late@example.com", &["user"]).await;
    let (verifier, _) = stack
        .user_with_roles("slow@example.com", &["verifier"])
        .await;
    let doc = stack.upload(&owner, "late", b"late").await.unwrap();
    let lock = SequencerLock::take(&stack.docs).await;
    let request = bearer(
        shared::proto::document::v1::VerifyDocumentRequest {
            document_id: doc.id.clone(),
            note: String::new(),
        },
        &verifier,
    );
    let started = shared::clock::monotonic();
    let answer = stack
        .docs
        .documents()
        .verify_document(request)
        .await
        .expect("the review itself succeeds")
        .into_inner();
    let took = started.elapsed();
    assert!(answer.receipt.is_none());
    assert_eq!(
        answer.document.unwrap().status,
        shared::proto::document::v1::DocumentStatus::Verified as i32
    );
    assert!(took < Duration::from_millis(800), "{took:?}");
    let get = |token: String| {
        let mut client = stack.docs.documents();
        let id = doc.id.clone();
        async move {
            let mut request = bearer(
                shared::proto::document::v1::GetReceiptRequest { document_id: id },
                &token,
            );
            request.set_timeout(Duration::from_millis(300));
            client.get_receipt(request).await
        }
    };
    assert_error(
        get(owner.clone()).await,
        tonic::Code::FailedPrecondition,
        "RECEIPT_PENDING",
    );
    lock.release().await;
    let receipt = get(owner).await.unwrap().into_inner().receipt.unwrap();
    let (_, vkey) = checkpoint(&stack.docs).await;
    assert!(Outsider::new(&vkey).proves(&receipt));
    testkit::measured(format_args!(
        "a review whose sequencer was held answered in {took:?} (REQUEST_TIMEOUT 800 ms) without a receipt"
    ));
}

/// A review whose event another replica sequenced gets its receipt when its
/// own replica next looks at the log, even if that look grows the log
/// further with a batch of its own. Tried: the waiter took the log's growth
/// for its own replica's batch, never asked the database, and the review
/// answered after its full 5 s without a receipt. PostgreSQL only: the test
/// holds the sequencer's advisory lock so that the review's own replica
/// cannot sequence its event, then lets the other replica do it.
#[tokio::test]
async fn a_review_another_replica_sequenced_still_gets_its_receipt() {
    let Some(stack) =
        spawn_postgres_stack("a receipt of an event another replica sequenced", |c| {
            // This replica sequences only when a review asks it to.
            c.server.audit_sequence_interval = Duration::from_secs(3600);
        })
        .await
    else {
        return;
    };
    let mut config = doc_config(&stack.auth, TokenValidation::Local);
    config.server.audit_sequence_interval = Duration::from_millis(20);
    let mut other = spawn_docs_on(config, stack.docs.db.another_handle()).await;
    let (owner, _) = stack.user_with_roles("two@example.com", &["user"]).await;
    let (verifier, _) = stack
        .user_with_roles("either@example.com", &["verifier"])
        .await;
    let first = stack.upload(&owner, "first", b"first").await.unwrap();
    let second = stack.upload(&owner, "second", b"second").await.unwrap();
    queued(&stack.docs, 0).await;
    let lock = SequencerLock::take(&stack.docs).await;
    let review = |id: String| {
        let (mut client, verifier) = (stack.docs.documents(), verifier.clone());
        async move {
            let request = shared::proto::document::v1::VerifyDocumentRequest {
                document_id: id,
                note: String::new(),
            };
            let answer = client.verify_document(bearer(request, &verifier)).await;
            answer.unwrap().into_inner()
        }
    };
    let first_review = tokio::spawn(review(first.id.clone()));
    queued(&stack.docs, 1).await;
    // Time for the review's replica to find the lock held (a local wake-up
    // and two queries), well within the review's 5 s wait for its receipt.
    tokio::time::sleep(Duration::from_secs(1)).await;
    lock.release().await;
    queued(&stack.docs, 0).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !first_review.is_finished(),
        "the other replica sequenced it, and the review's replica has not looked since"
    );
    // Only the review's replica is left to sequence the second review.
    other.stop().await;
    let started = shared::clock::monotonic();
    let second_receipt = review(second.id.clone()).await.receipt;
    let first_receipt = first_review.await.unwrap().receipt;
    let took = started.elapsed();
    let (_, vkey) = checkpoint(&stack.docs).await;
    let outsider = Outsider::new(&vkey);
    for (doc, receipt) in [(&first, first_receipt), (&second, second_receipt)] {
        let receipt = receipt.unwrap_or_else(|| panic!("no receipt for {}", doc.title));
        assert!(outsider.proves(&receipt));
        let event: serde_json::Value = serde_json::from_slice(&receipt.leaf).unwrap();
        assert_eq!(event["target_id"], doc.id.as_str());
    }
    testkit::measured(format_args!(
        "a receipt sequenced by another replica reached its review {took:?} after the next look"
    ));
}

/// The sequencer's health (`docverify.audit.v1.Sequencer`) turns
/// NOT_SERVING once events have waited AUDIT_MAX_LAG (1 s here) without the
/// log growing, not before, and SERVING again when it grows; an idle log,
/// with nothing waiting, stays SERVING past the lag. PostgreSQL only: the
/// test holds the sequencer's lock to make it lag.
#[tokio::test]
async fn the_sequencers_health_follows_its_lag() {
    const SEQUENCER: &str = "docverify.audit.v1.Sequencer";
    let Some(stack) = spawn_postgres_stack("the sequencer's health", |c| {
        c.server.audit_max_lag = Duration::from_secs(1);
    })
    .await
    else {
        return;
    };
    let channel = &stack.docs.channel;
    assert!(wait_health(channel, SEQUENCER, SERVING).await, "at start");
    let (owner, _) = stack.user_with_roles("lag@example.com", &["user"]).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(health(channel, SEQUENCER).await, SERVING, "idle");
    let lock = SequencerLock::take(&stack.docs).await;
    let held = shared::clock::monotonic();
    stack.upload(&owner, "waits", b"waits").await.unwrap();
    assert!(
        wait_health(channel, SEQUENCER, NOT_SERVING).await,
        "lagging"
    );
    let lagging = held.elapsed();
    lock.release().await;
    assert!(wait_health(channel, SEQUENCER, SERVING).await, "caught up");
    testkit::measured(format_args!(
        "the sequencer reported lagging {lagging:?} after its lock was taken (AUDIT_MAX_LAG 1 s)"
    ));
    // The queue was last seen empty at most one interval (100 ms) before.
    assert!(lagging >= Duration::from_millis(850), "{lagging:?}");
}

/// Under a steady stream of writes the sequencer follows closely: after a
/// batch that found events it looks again 10 ms later, not after its
/// interval (1 s here), so three seconds of uploads make many small
/// checkpoints rather than one a second. Tried: with the interval after
/// every batch, 3 or 4 checkpoints.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_load_the_sequencer_follows_closely() {
    const LOAD: Duration = Duration::from_secs(3);
    let stack = spawn_stack_with(TokenValidation::Local, |c| {
        c.server.audit_sequence_interval = Duration::from_secs(1);
    })
    .await;
    let (owner, _) = stack.user_with_roles("steady@example.com", &["user"]).await;
    let before = count(&stack.docs.db, "audit_checkpoints").await;
    let started = shared::clock::monotonic();
    let writers = (0..4).map(|writer| {
        let (mut client, owner) = (stack.docs.documents(), owner.clone());
        async move {
            let mut n = 0;
            while started.elapsed() < LOAD {
                upload_with(&mut client, &owner, &format!("steady {writer}.{n}")).await;
                n += 1;
            }
            n
        }
    });
    let uploads: usize = concurrently(writers).await.into_iter().sum();
    let checkpoints = count(&stack.docs.db, "audit_checkpoints").await - before;
    testkit::measured(format_args!(
        "{uploads} uploads in {LOAD:?} made {checkpoints} checkpoints (AUDIT_SEQUENCE_INTERVAL 1 s)"
    ));
    assert!(checkpoints >= 10, "{checkpoints} checkpoints");
}

/// A watch open when the service stops ends at once, in order (the stream
/// closes with OK), and the service stops without waiting out its drain
/// timeout (10 s here) for it. Tried: with the log not told of the stop,
/// the stop took the full 10 s and the stream was cut.
#[tokio::test]
async fn a_watch_open_at_shutdown_ends_and_lets_the_service_stop() {
    let mut stack = spawn_stack_with(TokenValidation::Local, |c| {
        c.server.shutdown_drain_timeout = Duration::from_secs(10);
    })
    .await;
    let admin = stack.admin().await;
    let (owner, _) = stack.user_with_roles("last@example.com", &["user"]).await;
    stack.upload(&owner, "last", b"last").await.unwrap();
    let mut watch = open_watch(&stack.docs, &admin, WatchAuditEventsRequest::default()).await;
    loop {
        let message = watch.message().await.unwrap().expect("a checkpoint first");
        if let Some(Message::Checkpoint(_)) = message.message {
            break;
        }
    }
    let started = shared::clock::monotonic();
    stack.docs.stop().await;
    let took = started.elapsed();
    let end = tokio::time::timeout(Duration::from_secs(1), watch.message())
        .await
        .expect("the stream has ended");
    assert!(matches!(end, Ok(None)), "{end:?}");
    testkit::measured(format_args!(
        "with a watch open, the service stopped in {took:?} (drain timeout 10 s)"
    ));
    assert!(took < Duration::from_secs(5), "{took:?}");
}

/// A backlog longer than one statement inserts (300 leaves) is sequenced
/// in one batch, gapless, the tree and chain intact, and a watch exports it
/// whole though it is longer than one of its queries (500): this replica's
/// sequencer looks only when a review asks (interval 1 h), after 561
/// uploads. Tried: with the second statement's leaves numbered from the
/// wrong place, the batch failed on the leaves' key every time, and the
/// review answered without a receipt; with the watch's batches taken for
/// the last, it stopped at the 500th event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_longer_than_one_statement_is_sequenced_in_one_batch() {
    let stack = spawn_stack_with(TokenValidation::Local, |c| {
        c.server.audit_sequence_interval = Duration::from_secs(3600);
    })
    .await;
    let admin = stack.admin().await;
    let (owner, _) = stack
        .user_with_roles("backlog@example.com", &["user"])
        .await;
    let (verifier, _) = stack
        .user_with_roles("clears@example.com", &["verifier"])
        .await;
    let writers = (0..8).map(|writer| {
        let (mut client, owner) = (stack.docs.documents(), owner.clone());
        async move {
            for n in 0..70 {
                upload_with(&mut client, &owner, &format!("backlog {writer}.{n}")).await;
            }
        }
    });
    concurrently(writers).await;
    let doc = stack.upload(&owner, "reviewed", b"reviewed").await.unwrap();
    assert_eq!(count(&stack.docs.db, "audit_pending").await, 561);
    let request = shared::proto::document::v1::VerifyDocumentRequest {
        document_id: doc.id,
        note: String::new(),
    };
    let answer = stack
        .docs
        .documents()
        .verify_document(bearer(request, &verifier))
        .await
        .unwrap()
        .into_inner();
    let receipt = answer.receipt.expect("the batch went through");
    assert_eq!(receipt.tree_size, 562);
    assert_eq!(
        count(&stack.docs.db, "audit_checkpoints").await,
        2,
        "the empty tree's, then one batch's"
    );
    assert_eq!(gapless_log(&stack.docs, &admin).await, 562);
}
