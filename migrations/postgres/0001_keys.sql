-- Accounts exist implicitly once they have a key; this row holds their policy.
CREATE TABLE accounts (
    account_id      TEXT PRIMARY KEY,
    max_active_keys BIGINT,             -- NULL: the service default
    disabled        BOOLEAN NOT NULL DEFAULT FALSE,
    created_at      BIGINT NOT NULL,    -- microseconds since the epoch
    updated_at      BIGINT NOT NULL
);

-- Keys, by their SHA-256 digest. Never the raw key. Lists and maps are JSON text, so both
-- backends share one row shape.
CREATE TABLE api_keys (
    seq             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,  -- list order and page cursor
    id              TEXT NOT NULL UNIQUE,
    digest          BYTEA NOT NULL UNIQUE,
    account_id      TEXT NOT NULL REFERENCES accounts (account_id),
    name            TEXT NOT NULL,
    prefix          TEXT NOT NULL,
    environment     TEXT NOT NULL CHECK (environment IN ('live', 'test')),
    scopes          TEXT NOT NULL,
    grant_all       BOOLEAN NOT NULL,
    restrictions    TEXT NOT NULL,
    rate_limit      TEXT,
    meta            TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    expires_at      BIGINT,
    last_used_at    BIGINT,
    revoked_at      BIGINT,
    previous_key_id TEXT,
    created_by      TEXT
);

CREATE INDEX api_keys_by_account ON api_keys (account_id, seq);
