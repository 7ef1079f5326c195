-- A tenth of each page of the keys table is left free, so that writing a key's last use (and a
-- revocation) updates its row in place, a heap-only update: no entry added to any of the
-- table's four indexes, nothing left behind in them for vacuum. Without the room, a page
-- filled by an import or by creates has none, and every such write moves the row and adds
-- an entry to each index: measured on 1,000,000 keys, writing 10,000 last-use times took
-- 150-200 ms with the room and 250-530 ms without (docs/benchmarks.md, "Choices").
-- Pages written before this migration get the room when the table is rewritten (VACUUM FULL
-- or pg_repack, docs/operations.md); until then their rows move on their first update, once.
ALTER TABLE api_keys SET (fillfactor = 90);
