-- Usage credits: the balance (NULL: unlimited), the refill terms (JSON: amount, interval,
-- day_of_month) and when the balance was last set or refilled (microseconds since the epoch),
-- which names the period a replica's reserved block belongs to.
ALTER TABLE api_keys ADD COLUMN credits BIGINT;
ALTER TABLE api_keys ADD COLUMN refill TEXT;
ALTER TABLE api_keys ADD COLUMN refilled_at BIGINT;
