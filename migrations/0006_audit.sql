-- Who changed what, when, with which request: admin and key actions. Rows are written in the
-- same D1 batch as a change held in D1, or right after a change held in a Durable Object.
CREATE TABLE audit_log (
  id          TEXT PRIMARY KEY,         -- au_<ulid>: time-ordered, so it is the list cursor
  at          INTEGER NOT NULL,         -- ms since epoch
  actor       TEXT NOT NULL,            -- "operator" or the API key id
  tenant_id   TEXT,
  action      TEXT NOT NULL,            -- e.g. key.create, pool.put, agent.delete
  target      TEXT,                     -- the id or name acted on
  request_id  TEXT,
  details     TEXT                      -- JSON, never secrets
);
CREATE INDEX audit_by_tenant ON audit_log(tenant_id, id);
CREATE INDEX audit_by_action ON audit_log(action, id);
