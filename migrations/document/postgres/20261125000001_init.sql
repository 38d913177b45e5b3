-- document-service schema, PostgreSQL dialect.

CREATE TABLE documents (
    id           UUID PRIMARY KEY,
    owner_id     UUID NOT NULL,
    title        TEXT NOT NULL,
    filename     TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size_bytes   BIGINT NOT NULL,
    sha256       TEXT NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('pending', 'verified', 'rejected')),
    created_at   TIMESTAMPTZ NOT NULL,
    reviewed_by  UUID,
    reviewed_at  TIMESTAMPTZ,
    review_note  TEXT NOT NULL DEFAULT ''
);
CREATE INDEX documents_owner_idx ON documents (owner_id, id);
CREATE INDEX documents_status_idx ON documents (status, id);

-- Content in fixed-size chunks beside the row: one transaction stores a
-- document whole, and a download reads one chunk at a time.
CREATE TABLE document_chunks (
    document_id UUID NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    seq         INTEGER NOT NULL,
    data        BYTEA NOT NULL,
    PRIMARY KEY (document_id, seq)
);

CREATE TABLE service_secrets (
    name       TEXT PRIMARY KEY,
    value      BYTEA NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);
