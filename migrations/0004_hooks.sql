-- Incoming webhooks: tenant-level configuration. A hook's id is global because senders
-- (GitHub, Stripe, any Standard Webhooks sender) call POST /v1/hooks/:id without an API key;
-- the signature, made with `secret` (sealed like upstream credentials), authenticates them.
CREATE TABLE hooks (
  id          TEXT PRIMARY KEY,
  tenant_id   TEXT NOT NULL REFERENCES tenants(id),
  agent_id    TEXT NOT NULL,
  intent      TEXT NOT NULL,
  scheme      TEXT NOT NULL,
  secret      TEXT NOT NULL,
  created_at  INTEGER NOT NULL,
  updated_at  INTEGER NOT NULL
);
CREATE INDEX hooks_by_tenant ON hooks(tenant_id);
