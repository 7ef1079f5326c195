-- A key replaced by rotation points at its replacement; it no longer counts as active.
ALTER TABLE api_keys ADD COLUMN replaced_by TEXT;
