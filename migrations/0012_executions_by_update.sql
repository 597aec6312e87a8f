-- GET /v1/stats reads a tenant's executions changed within a window (at most a day) by
-- updated_at. D1 keeps a live agent's executions, so without this index each call walked every
-- execution the tenant ever had (the primary key's index, by tenant_id alone), growing without
-- bound for a busy tenant. One more index entry per projected execution row.
CREATE INDEX executions_by_tenant_update ON executions(tenant_id, updated_at);
