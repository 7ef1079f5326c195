-- Bulk imports (docs/keys.md, "Importing keys"): the foreign key from api_keys to accounts
-- cost a look-up per inserted row, about a quarter of an import's database time. Every
-- statement that inserts keys creates their account rows first, in the same transaction, and
-- account rows are never deleted, so the constraint guarded nothing the code does not.
ALTER TABLE api_keys DROP CONSTRAINT IF EXISTS api_keys_account_id_fkey;
