-- GET /v1/hooks and GET /v1/admin/tenants/:tenant/hooks page a tenant's hooks by id, all of
-- them or one agent's: each page is a range of one of these indexes, sorted as stored. They
-- replace hooks_by_tenant, a prefix of the first.
CREATE INDEX hooks_by_tenant_id ON hooks(tenant_id, id);
CREATE INDEX hooks_by_tenant_agent ON hooks(tenant_id, agent_id, id);
DROP INDEX hooks_by_tenant;
