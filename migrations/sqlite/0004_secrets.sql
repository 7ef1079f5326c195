-- Secrets every replica shares, made once by the first server to start (e.g. the key that
-- authenticates page tokens, so any replica serves the next page).
CREATE TABLE server_secrets (
    name   TEXT PRIMARY KEY,
    secret BLOB NOT NULL
);
