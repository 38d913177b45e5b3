-- document-service schema, SQLite dialect. Ids are UUID blobs, times INTEGER
-- microseconds since the epoch.

CREATE TABLE documents (
    id           BLOB PRIMARY KEY NOT NULL,
    owner_id     BLOB NOT NULL,
    title        TEXT NOT NULL,
    filename     TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size_bytes   INTEGER NOT NULL,
    sha256       TEXT NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('pending', 'verified', 'rejected')),
    created_at   INTEGER NOT NULL,
    reviewed_by  BLOB,
    reviewed_at  INTEGER,
    review_note  TEXT NOT NULL DEFAULT ''
);
CREATE INDEX documents_owner_idx ON documents (owner_id, id);
CREATE INDEX documents_status_idx ON documents (status, id);

-- Content in fixed-size chunks beside the row: one transaction stores a
-- document whole, and a download reads one chunk at a time.
CREATE TABLE document_chunks (
    document_id BLOB NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    seq         INTEGER NOT NULL,
    data        BLOB NOT NULL,
    PRIMARY KEY (document_id, seq)
);

CREATE TABLE service_secrets (
    name       TEXT PRIMARY KEY NOT NULL,
    value      BLOB NOT NULL,
    created_at INTEGER NOT NULL
);
