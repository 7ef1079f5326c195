-- Each account's keys that are neither revoked nor replaced (expired ones included), kept by
-- the database as rows to be summed (docs/keys.md, "Expiry, rotation, last use, accounts"):
-- a create compares the sum with the account's limit and counts its active keys only when the
-- sum reaches it, so a create costs the same in an account of ten keys or of a million. Rows,
-- not one counter per account, so that imports running side by side never wait on each
-- other: every statement inserting keys adds a row per account (the trigger below, whichever
-- replica or version wrote the keys), a revocation or rotation adds a negative one, and a
-- create folds an account's rows into one when they pile up.
CREATE TABLE account_key_counts (
    account_id TEXT NOT NULL,
    live       BIGINT NOT NULL
);
CREATE INDEX account_key_counts_by_account ON account_key_counts (account_id);

CREATE FUNCTION count_inserted_keys() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO account_key_counts (account_id, live)
    SELECT account_id, COUNT(*) FROM inserted
    WHERE revoked_at IS NULL AND replaced_by IS NULL
    GROUP BY account_id;
    RETURN NULL;
END
$$;

CREATE TRIGGER api_keys_counted AFTER INSERT ON api_keys
    REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION count_inserted_keys();

INSERT INTO account_key_counts (account_id, live)
SELECT account_id, COUNT(*) FROM api_keys
WHERE revoked_at IS NULL AND replaced_by IS NULL
GROUP BY account_id;
