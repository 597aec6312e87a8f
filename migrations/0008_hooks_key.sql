-- The API key that registered (or last replaced) each incoming hook. A delivery starts work
-- the key asked for, so it counts against that key's rate limits and budgets; NULL (a hook
-- registered before this column) is charged to no key until it is PUT again.
ALTER TABLE hooks ADD COLUMN key_id TEXT;
