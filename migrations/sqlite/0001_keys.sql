-- Accounts exist implicitly once they have a key; this row holds their policy.
CREATE TABLE accounts (
    account_id      TEXT PRIMARY KEY,
    max_active_keys INTEGER,            -- NULL: the service default
    disabled        BOOLEAN NOT NULL DEFAULT FALSE,
    created_at      INTEGER NOT NULL,   -- microseconds since the epoch
    updated_at      INTEGER NOT NULL
);

-- Keys, by their SHA-256 digest. Never the raw key. Lists and maps are JSON text.
CREATE TABLE api_keys (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,  -- list order and page cursor
    id              TEXT NOT NULL UNIQUE,
    digest          BLOB NOT NULL UNIQUE,
    account_id      TEXT NOT NULL REFERENCES accounts (account_id),
    name            TEXT NOT NULL,
    prefix          TEXT NOT NULL,
    environment     TEXT NOT NULL CHECK (environment IN ('live', 'test')),
    scopes          TEXT NOT NULL,
    grant_all       BOOLEAN NOT NULL,
    restrictions    TEXT NOT NULL,
    rate_limit      TEXT,
    meta            TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    expires_at      INTEGER,
    last_used_at    INTEGER,
    revoked_at      INTEGER,
    previous_key_id TEXT,
    created_by      TEXT
);

CREATE INDEX api_keys_by_account ON api_keys (account_id, seq);
