-- Rate limits and budgets of an API key (JSON of the KeyLimits schema), NULL for an unlimited
-- key. D1 is their source of truth; the key lookup carries them to the edge (isolate → KV → D1)
-- and the key's KeyLimiterDO enforces them.
ALTER TABLE api_keys ADD COLUMN limits TEXT;
