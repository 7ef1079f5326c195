-- Usage over time: decisions per key, bucket width (span 1 minute, 2 hour, 3 day), bucket
-- start (seconds since the epoch) and outcome (keyward.v1.VerifyCode's number). Decisions
-- without a stored key (missing, malformed, unknown) count under key_id and account_id ''.
-- Replicas add to a row (INSERT … ON CONFLICT DO UPDATE), so their counts sum up.
CREATE TABLE key_usage (
    key_id TEXT NOT NULL,
    span INTEGER NOT NULL,
    bucket BIGINT NOT NULL,
    outcome INTEGER NOT NULL,
    account_id TEXT NOT NULL,
    count BIGINT NOT NULL,
    PRIMARY KEY (key_id, span, bucket, outcome)
);
-- An account's keys over a range.
CREATE INDEX key_usage_by_account ON key_usage (account_id, span, bucket);
-- Retention: rows of a width older than its limit.
CREATE INDEX key_usage_by_age ON key_usage (span, bucket);
