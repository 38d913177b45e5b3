-- The audit trail becomes a transparency log (see shared/src/audit/mod.rs).
-- A request's transaction now inserts its event with no sequence and no
-- hash; a trigger queues it in audit_pending, and the sequencer makes queued
-- events leaves of an RFC 9162 Merkle tree in batches, each batch ending in
-- a signed checkpoint.

-- `position` (the rowid) orders events as inserted; the events already
-- chained keep their sequence as their position.
ALTER TABLE audit_events RENAME COLUMN sequence TO position;
-- The hash chain is replaced by the tree: its hashes were derived from the
-- fields kept, never recorded facts of their own.
ALTER TABLE audit_events DROP COLUMN prev_hash;
ALTER TABLE audit_events DROP COLUMN hash;
DROP TABLE audit_head;

-- Events committed and not yet sequenced; the sequencer deletes what it
-- integrated, in the transaction that integrates it.
CREATE TABLE audit_pending (
    position INTEGER PRIMARY KEY NOT NULL REFERENCES audit_events (position)
);
-- The chained events become the first leaves, in their sequence order.
INSERT INTO audit_pending (position) SELECT position FROM audit_events;

CREATE TRIGGER audit_events_enqueue AFTER INSERT ON audit_events
BEGIN
    INSERT INTO audit_pending (position) VALUES (NEW.position);
END;

-- Leaf `sequence - 1` of the tree is the event at `position`.
CREATE TABLE audit_leaves (
    sequence     INTEGER PRIMARY KEY NOT NULL,
    position     INTEGER NOT NULL UNIQUE REFERENCES audit_events (position),
    sequenced_at INTEGER NOT NULL
);
-- Every complete subtree: node `idx` of `level` covers leaves
-- [idx * 2^level, (idx + 1) * 2^level); level 0 holds the leaf hashes.
CREATE TABLE audit_nodes (
    level INTEGER NOT NULL,
    idx   INTEGER NOT NULL,
    hash  BLOB NOT NULL,
    PRIMARY KEY (level, idx)
) WITHOUT ROWID;
-- One signed checkpoint per batch; the newest is the tree's size.
CREATE TABLE audit_checkpoints (
    tree_size INTEGER PRIMARY KEY NOT NULL,
    root_hash BLOB NOT NULL,
    note      TEXT NOT NULL,
    signed_at INTEGER NOT NULL
);

CREATE TRIGGER audit_leaves_no_update BEFORE UPDATE ON audit_leaves
BEGIN
    SELECT RAISE(ABORT, 'audit_leaves is append-only');
END;

CREATE TRIGGER audit_leaves_no_delete BEFORE DELETE ON audit_leaves
BEGIN
    SELECT RAISE(ABORT, 'audit_leaves is append-only');
END;

CREATE TRIGGER audit_nodes_no_update BEFORE UPDATE ON audit_nodes
BEGIN
    SELECT RAISE(ABORT, 'audit_nodes is append-only');
END;

CREATE TRIGGER audit_nodes_no_delete BEFORE DELETE ON audit_nodes
BEGIN
    SELECT RAISE(ABORT, 'audit_nodes is append-only');
END;

CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
BEGIN
    SELECT RAISE(ABORT, 'audit_checkpoints is append-only');
END;

CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
BEGIN
    SELECT RAISE(ABORT, 'audit_checkpoints is append-only');
END;
