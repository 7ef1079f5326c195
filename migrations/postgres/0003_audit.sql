-- One row per successful mutation, written in the mutation's transaction. Never a secret or hash.
CREATE TABLE audit_events (
    seq           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,  -- list order and page cursor
    id            TEXT NOT NULL UNIQUE,
    time          BIGINT NOT NULL,          -- microseconds since the epoch
    actor_key_id  TEXT,                 -- NULL: first-start bootstrap or the CLI
    account_id    TEXT NOT NULL,
    action        TEXT NOT NULL,
    target_key_id TEXT,
    changes       TEXT NOT NULL         -- JSON: [{"field", "old_value", "new_value"}]
);

CREATE INDEX audit_events_by_account ON audit_events (account_id, seq);
