-- D1 is the source of truth for tenant-level configuration (tenants, API keys, the agent
-- registry: which agents exist and where they live) and an eventually consistent projection
-- of agent state (agent snapshots, execution history) fed by each AgentDO's outbox.

CREATE TABLE tenants (
  id          TEXT PRIMARY KEY,
  name        TEXT,
  created_at  INTEGER NOT NULL
);

CREATE TABLE api_keys (
  id          TEXT PRIMARY KEY,
  tenant_id   TEXT NOT NULL REFERENCES tenants(id),
  hash        TEXT NOT NULL UNIQUE,     -- hex SHA-256 of the key; the key itself is never stored
  prefix      TEXT NOT NULL,            -- first characters, to recognise a key in listings
  name        TEXT,
  created_at  INTEGER NOT NULL,
  revoked_at  INTEGER
);
CREATE INDEX api_keys_by_tenant ON api_keys(tenant_id);

-- Registry row written when an agent is created (placement never changes afterwards);
-- the snapshot columns are refreshed by the agent's outbox.
CREATE TABLE agents (
  tenant_id     TEXT NOT NULL REFERENCES tenants(id),
  id            TEXT NOT NULL,
  jurisdiction  TEXT,
  location_hint TEXT,
  name          TEXT,
  state         TEXT NOT NULL DEFAULT 'idle',
  snapshot      TEXT,                   -- JSON of the agent as last projected
  rev           INTEGER NOT NULL DEFAULT 0,
  created_at    INTEGER NOT NULL,
  updated_at    INTEGER NOT NULL,
  PRIMARY KEY (tenant_id, id)
);

CREATE TABLE executions (
  tenant_id    TEXT NOT NULL,
  agent_id     TEXT NOT NULL,
  id           TEXT NOT NULL,
  status       TEXT NOT NULL,
  intent       TEXT NOT NULL,
  record       TEXT NOT NULL,           -- JSON of the execution record as last projected
  rev          INTEGER NOT NULL,
  created_at   INTEGER NOT NULL,
  updated_at   INTEGER NOT NULL,
  PRIMARY KEY (tenant_id, agent_id, id)
);
CREATE INDEX executions_by_status ON executions(tenant_id, agent_id, status, id);
