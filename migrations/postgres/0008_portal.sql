-- Portal sessions (docs/portal.md): a one-time link for one account, opened into a cookie
-- session. Only the SHA-256 of the link's and the session's secrets are stored. Times are
-- microseconds since the epoch; permissions and branding are JSON.
CREATE TABLE portal_sessions (
    id              TEXT PRIMARY KEY,
    account_id      TEXT NOT NULL,
    link_hash       BYTEA NOT NULL UNIQUE,
    session_hash    BYTEA UNIQUE,
    display_name    TEXT NOT NULL,
    return_url      TEXT NOT NULL,
    permissions     TEXT NOT NULL,
    branding        TEXT NOT NULL,
    created_by      TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    link_expires_at BIGINT NOT NULL,
    opened_at       BIGINT,
    last_seen_at    BIGINT,
    expires_at      BIGINT NOT NULL,
    revoked_at      BIGINT
);
-- An account's sessions, newest first (operators list them).
CREATE INDEX portal_sessions_by_account ON portal_sessions (account_id, created_at);
