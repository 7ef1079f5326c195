-- Each account's keys that are neither revoked nor replaced (expired ones included), kept by
-- the database (docs/keys.md, "Expiry, rotation, last use, accounts"): a create compares the
-- count with the account's limit and counts its active keys only when the count reaches it,
-- so a create costs the same in an account of ten keys or of a million. Every inserted key
-- adds one (the trigger below); a revocation or rotation subtracts.
CREATE TABLE account_key_counts (
    account_id TEXT NOT NULL PRIMARY KEY,
    live       INTEGER NOT NULL
);

CREATE TRIGGER api_keys_counted AFTER INSERT ON api_keys
    WHEN NEW.revoked_at IS NULL AND NEW.replaced_by IS NULL
BEGIN
    INSERT INTO account_key_counts (account_id, live) VALUES (NEW.account_id, 1)
    ON CONFLICT (account_id) DO UPDATE SET live = live + 1;
END;

INSERT INTO account_key_counts (account_id, live)
SELECT account_id, COUNT(*) FROM api_keys
WHERE revoked_at IS NULL AND replaced_by IS NULL
GROUP BY account_id;
