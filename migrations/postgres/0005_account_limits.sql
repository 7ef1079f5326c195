-- An account's rate limit, shared by all its keys (JSON like a key's: {"limit":…,"window_secs":…});
-- NULL: none.
ALTER TABLE accounts ADD COLUMN rate_limit TEXT;
