-- Upstream pools: tenant-level configuration, so D1 is their source of truth. `config` is the
-- pool as stored, with every upstream credential sealed (AES-GCM, key from a Worker secret).
CREATE TABLE pools (
  tenant_id   TEXT NOT NULL REFERENCES tenants(id),
  name        TEXT NOT NULL,
  config      TEXT NOT NULL,
  created_at  INTEGER NOT NULL,
  updated_at  INTEGER NOT NULL,
  PRIMARY KEY (tenant_id, name)
);
