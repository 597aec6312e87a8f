-- Index of multi-agent transactions: which coordinator (TransactionDO name) holds each one,
-- so GET /v1/transactions/:id can find transactions whose coordinator is named from an
-- Idempotency-Key. The coordinator's own SQLite log is the source of truth; `status` here is
-- a projection written at begin and on the decision, never moved back to 'preparing'.
CREATE TABLE transactions (
  tenant_id         TEXT NOT NULL,
  id                TEXT NOT NULL,
  coordinator_name  TEXT NOT NULL,
  status            TEXT NOT NULL,      -- preparing | committed | aborted
  created_at        INTEGER NOT NULL,
  updated_at        INTEGER NOT NULL,
  PRIMARY KEY (tenant_id, id)
);
