import { describe, expect, it } from 'vitest';
import { ADMIN, api, chatTarget, mockUrl, newAgent, newTenant, uniqueId } from './support/api';

interface Entry {
  id: string;
  at: string;
  actor: string;
  tenantId: string | null;
  action: string;
  target: string | null;
  requestId: string | null;
  details: Record<string, unknown> | null;
}

const auditOf = async (tenantId: string, query = ''): Promise<Entry[]> => {
  const res = await api(`/v1/admin/audit?tenant=${tenantId}&limit=200${query}`, { key: ADMIN() });
  expect(res.status).toBe(200);
  return res.body.data as Entry[];
};

/** Runs a request with a known request id and returns the entry it left. */
async function audited(tenantId: string, action: string, path: string, init: Parameters<typeof api>[1]): Promise<Entry> {
  const requestId = `req-${uniqueId('audit')}`;
  const res = await api(path, { ...init, headers: { 'x-request-id': requestId } });
  expect(res.status, JSON.stringify(res.body)).toBeLessThan(300);
  const entry = (await auditOf(tenantId, `&action=${action}`)).find((e) => e.requestId === requestId);
  expect(entry, `${action} with ${requestId}`).toBeDefined();
  return entry as Entry;
}

describe('audit log', () => {
  it('records operator actions on tenants and keys, with request id, and no secrets', async () => {
    const requestId = `req-${uniqueId('tenant')}`;
    const tenant = await api('/v1/admin/tenants', { key: ADMIN(), body: { name: 'audited' }, headers: { 'x-request-id': requestId } });
    const tenantId = tenant.body.id as string;
    const [created] = await auditOf(tenantId, '&action=tenant.create');
    expect(created).toMatchObject({ actor: 'operator', tenantId, action: 'tenant.create', target: tenantId, requestId, details: { name: 'audited' } });
    expect(Date.parse(created?.at ?? '')).toBeGreaterThan(Date.now() - 60_000);

    const keyRequest = `req-${uniqueId('key')}`;
    const key = await api(`/v1/admin/tenants/${tenantId}/keys`, { key: ADMIN(), body: { name: 'k', limits: { perMinute: 60 } }, headers: { 'x-request-id': keyRequest } });
    const keyId = key.body.id as string;
    const [keyCreate] = await auditOf(tenantId, '&action=key.create');
    expect(keyCreate).toMatchObject({ actor: 'operator', action: 'key.create', target: keyId, requestId: keyRequest, details: { name: 'k', limits: { perMinute: 60 } } });
    expect(JSON.stringify(await auditOf(tenantId))).not.toContain(key.body.key);

    const update = await audited(tenantId, 'key.update', `/v1/admin/keys/${keyId}`, { method: 'PATCH', key: ADMIN(), body: { limits: { perMinute: 120 } } });
    expect(update).toMatchObject({ actor: 'operator', target: keyId, details: { limits: { perMinute: 120 } } });
    await audited(tenantId, 'key.revoke', `/v1/admin/keys/${keyId}`, { method: 'DELETE', key: ADMIN() });
    // A repeated revoke changes nothing and records nothing.
    await api(`/v1/admin/keys/${keyId}`, { method: 'DELETE', key: ADMIN() });
    expect(await auditOf(tenantId, '&action=key.revoke')).toHaveLength(1);
  });

  it('records key actions (pools, hooks, agents, webhooks) with the key as actor', async () => {
    const { tenantId, key, keyId } = await newTenant();
    const pool = await audited(tenantId, 'pool.put', '/v1/pools/p1', { method: 'PUT', key, body: { targets: [chatTarget('t1', 'ok', { apiKey: 'sk-very-secret-credential' })] } });
    expect(pool).toMatchObject({ actor: keyId, tenantId, target: 'p1', details: { targets: [{ id: 't1', kind: 'openai-chat' }] } });
    const agentId = uniqueId();
    await audited(tenantId, 'agent.create', '/v1/agents', { key, body: { id: agentId, upstream: { kind: 'agent-http', url: mockUrl() } } });
    const hookId = uniqueId('hook');
    const hook = await audited(tenantId, 'hook.put', `/v1/hooks/${hookId}`, { method: 'PUT', key, body: { agentId, intent: 'on.github', scheme: 'github', secret: 'gh-secret-value-0123456789' } });
    expect(hook.details).toEqual({ agentId, intent: 'on.github', scheme: 'github' });
    await audited(tenantId, 'hook.delete', `/v1/hooks/${hookId}`, { method: 'DELETE', key });
    const webhook = await api(`/v1/agents/${agentId}/webhooks`, { key, body: { url: mockUrl('/receiver?token=abc') } });
    expect(webhook.status).toBe(201);
    const [webhookCreate] = await auditOf(tenantId, '&action=webhook.create');
    expect(webhookCreate).toMatchObject({ actor: keyId, target: webhook.body.id, details: { agentId } });
    await audited(tenantId, 'webhook.delete', `/v1/agents/${agentId}/webhooks/${webhook.body.id}`, { method: 'DELETE', key });
    await audited(tenantId, 'pool.delete', '/v1/pools/p1', { method: 'DELETE', key });
    // Redirecting an agent's upstream (where its inputs and context go) or pausing it leaves a trace.
    const repoint = await audited(tenantId, 'agent.update', `/v1/agents/${agentId}`, {
      method: 'PATCH', key, body: { upstream: { kind: 'openai-chat', baseUrl: mockUrl('/v1'), model: 'm', apiKey: 'sk-agent-secret-credential' }, paused: true },
    });
    expect(repoint).toMatchObject({ actor: keyId, tenantId, target: agentId, details: { fields: ['paused', 'upstream'], upstream: 'openai-chat', paused: true } });
    // A refused update (another tenant's or no agent) leaves none.
    expect((await api('/v1/agents/no-such-agent', { method: 'PATCH', key, body: { name: 'x' } })).status).toBe(404);
    expect(await auditOf(tenantId, '&action=agent.update')).toHaveLength(1);
    await audited(tenantId, 'agent.delete', `/v1/agents/${agentId}`, { method: 'DELETE', key });

    const all = JSON.stringify(await auditOf(tenantId));
    for (const secret of ['sk-very-secret-credential', 'sk-agent-secret-credential', 'gh-secret-value-0123456789', 'token=abc']) expect(all).not.toContain(secret);
    // A failed change leaves no entry.
    expect((await api('/v1/pools/none', { method: 'DELETE', key })).status).toBe(404);
    expect(await auditOf(tenantId, '&action=pool.delete')).toHaveLength(1);
  });

  it('records A2A push notification configs set and deleted (both protocol versions, and one given with a message), with the key as actor and no secrets', async () => {
    const { tenantId, key, keyId } = await newTenant();
    const agentId = await newAgent(key);
    const rpc = async (method: string, params: unknown, version = '1.0') => {
      const requestId = `req-${uniqueId('a2a')}`;
      const res = await api(`/a2a/${agentId}/`, { key, body: { jsonrpc: '2.0', id: 1, method, params }, headers: { 'a2a-version': version, 'x-request-id': requestId } });
      expect(res.body.error, JSON.stringify(res.body)).toBeUndefined();
      return { result: res.body.result, requestId };
    };
    const message = { messageId: `m-${uniqueId('msg')}`, role: 'ROLE_USER', parts: [{ text: 'hello' }] };
    const token = `push-token-${uniqueId()}`;
    const sent = await rpc('SendMessage', { message, configuration: { taskPushNotificationConfig: { id: 'on-send', url: mockUrl('/a2a-push?secret=q1'), token } } });
    const taskId: string = sent.result.task.id;
    const made = await rpc('CreateTaskPushNotificationConfig', { taskId, id: 'v1', url: mockUrl('/a2a-push'), token, authentication: { scheme: 'Bearer', credentials: 'push-credential-0123' } });
    const legacySet = await rpc('tasks/pushNotificationConfig/set', { taskId, pushNotificationConfig: { id: 'v03', url: mockUrl('/a2a-push'), token } }, '0.3');
    const removed = await rpc('DeleteTaskPushNotificationConfig', { taskId, id: 'v1' });
    const legacyRemoved = await rpc('tasks/pushNotificationConfig/delete', { id: taskId, pushNotificationConfigId: 'v03' }, '0.3');
    // The spec makes delete idempotent: deleting what is not there succeeds, and changes nothing to record.
    const again = await rpc('DeleteTaskPushNotificationConfig', { taskId, id: 'v1' });
    // Reads change nothing either.
    await rpc('ListTaskPushNotificationConfigs', { taskId });

    const host = new URL(mockUrl()).host;
    const puts = await auditOf(tenantId, '&action=push.put');
    expect(puts.map((e) => [e.target, e.requestId])).toEqual([['v03', legacySet.requestId], ['v1', made.requestId], ['on-send', sent.requestId]]);
    for (const entry of puts) expect(entry).toMatchObject({ actor: keyId, tenantId, action: 'push.put', details: { agentId, taskId, host } });
    const deletes = await auditOf(tenantId, '&action=push.delete');
    expect(deletes.map((e) => [e.target, e.requestId])).toEqual([['v03', legacyRemoved.requestId], ['v1', removed.requestId]]);
    for (const entry of deletes) expect(entry).toMatchObject({ actor: keyId, tenantId, action: 'push.delete', details: { agentId, taskId } });
    expect(deletes.some((e) => e.requestId === again.requestId)).toBe(false);
    const all = JSON.stringify(await auditOf(tenantId));
    for (const secret of [token, 'push-credential-0123', 'secret=q1']) expect(all).not.toContain(secret);
  });

  it('filters by tenant and action, newest first, with cursor pages', async () => {
    const a = await newTenant();
    const b = await newTenant();
    for (const name of ['p1', 'p2', 'p3']) await api(`/v1/pools/${name}`, { method: 'PUT', key: a.key, body: { targets: [chatTarget(name)] } });
    await api('/v1/pools/other', { method: 'PUT', key: b.key, body: { targets: [chatTarget('other')] } });

    const pools = await auditOf(a.tenantId, '&action=pool.put');
    expect(pools.map((e) => e.target)).toEqual(['p3', 'p2', 'p1']);
    expect((await auditOf(a.tenantId)).every((e) => e.tenantId === a.tenantId)).toBe(true);

    const first = await api(`/v1/admin/audit?tenant=${a.tenantId}&action=pool.put&limit=2`, { key: ADMIN() });
    expect(first.body.data.map((e: Entry) => e.target)).toEqual(['p3', 'p2']);
    expect(first.body.nextCursor).toEqual(expect.any(String));
    const second = await api(`/v1/admin/audit?tenant=${a.tenantId}&action=pool.put&limit=2&cursor=${first.body.nextCursor}`, { key: ADMIN() });
    expect(second.body.data.map((e: Entry) => e.target)).toEqual(['p1']);
    expect(second.body.nextCursor).toBeNull();
  });

  it('lets a key read only its own tenant, and never the admin log', async () => {
    const a = await newTenant();
    const b = await newTenant();
    await api('/v1/pools/mine', { method: 'PUT', key: a.key, body: { targets: [chatTarget('mine')] } });
    await api('/v1/pools/theirs', { method: 'PUT', key: b.key, body: { targets: [chatTarget('theirs')] } });
    const own = await api('/v1/audit', { key: a.key });
    expect(own.status).toBe(200);
    expect(own.body.data.map((e: Entry) => e.target)).toContain('mine');
    expect(own.body.data.every((e: Entry) => e.tenantId === a.tenantId)).toBe(true);
    // No tenant parameter here: asking for another tenant's entries still answers one's own.
    const asked = await api(`/v1/audit?tenant=${b.tenantId}`, { key: a.key });
    expect(asked.body.data.length).toBeGreaterThan(0);
    expect(asked.body.data.every((e: Entry) => e.tenantId === a.tenantId)).toBe(true);

    const admin = await api('/v1/admin/audit', { key: a.key });
    expect(admin.status).toBe(401);
    expect(admin.body.error.code).toBe('unauthorized');
    expect((await api('/v1/admin/audit')).status).toBe(401);
  });

  it("refuses a cursor of another tenant's or another action's list with 400 param cursor", async () => {
    const a = await newTenant();
    const b = await newTenant();
    for (const name of ['p1', 'p2']) await api(`/v1/pools/${name}`, { method: 'PUT', key: a.key, body: { targets: [chatTarget(name)] } });
    const cursorOf = async (path: string, key: string): Promise<string> => {
      const res = await api(path, { key });
      expect(res.status, path).toBe(200);
      expect(res.body.nextCursor, path).toEqual(expect.any(String));
      return res.body.nextCursor as string;
    };
    const aOwn = await cursorOf('/v1/audit?limit=1', a.key);
    const aPools = await cursorOf(`/v1/admin/audit?tenant=${a.tenantId}&action=pool.put&limit=1`, ADMIN());
    const aAll = await cursorOf(`/v1/admin/audit?tenant=${a.tenantId}&limit=1`, ADMIN());
    const everyone = await cursorOf('/v1/admin/audit?limit=1', ADMIN());
    // Each pages its own list on.
    expect((await api(`/v1/audit?limit=1&cursor=${aOwn}`, { key: a.key })).status).toBe(200);
    const poolsNext = await api(`/v1/admin/audit?tenant=${a.tenantId}&action=pool.put&limit=1&cursor=${aPools}`, { key: ADMIN() });
    expect(poolsNext.body.data.map((e: Entry) => e.target)).toEqual(['p1']);
    // Read in another list, a cursor was a point in time there: B paged its own entries older
    // than A's, an unfiltered list skipped every entry newer than the filtered page's last.
    const refused: [string, string][] = [
      [`/v1/audit?cursor=${aOwn}`, b.key],
      [`/v1/audit?cursor=${aPools}`, a.key],
      [`/v1/admin/audit?tenant=${b.tenantId}&cursor=${aAll}`, ADMIN()],
      [`/v1/admin/audit?tenant=${a.tenantId}&cursor=${aPools}`, ADMIN()],
      [`/v1/admin/audit?tenant=${a.tenantId}&action=key.create&cursor=${aPools}`, ADMIN()],
      [`/v1/admin/audit?cursor=${aAll}`, ADMIN()],
      [`/v1/admin/audit?tenant=${a.tenantId}&cursor=${everyone}`, ADMIN()],
    ];
    for (const [path, key] of refused) {
      const res = await api(path, { key });
      expect(res.status, path).toBe(400);
      expect(res.body.error, path).toMatchObject({ code: 'invalid_request', param: 'cursor' });
    }
  });

  it('refuses an action the log never records with 400, naming the actions it does', async () => {
    for (const path of ['/v1/admin/audit?action=agent.updat', '/v1/audit?action=pool.create']) {
      const res = await api(path, { key: path.startsWith('/v1/admin') ? ADMIN() : (await newTenant()).key });
      expect(res.status, path).toBe(400);
      expect(res.body.error, path).toMatchObject({ code: 'invalid_request', param: 'action' });
      expect(res.body.error.message, path).toContain('agent.update');
    }
  });

  // As an action the log does not record (above): a tenant id with a typo answered an empty
  // page, as if the tenant had done nothing; every other operator route 404s an unknown tenant.
  it('404s the operator log of a tenant that does not exist, and keeps an existing one with no entries of an action', async () => {
    const res = await api('/v1/admin/audit?tenant=no-such-tenant-here', { key: ADMIN() });
    expect(res.status).toBe(404);
    expect(res.body.error).toMatchObject({ code: 'not_found', message: 'tenant no-such-tenant-here not found' });
    const { tenantId } = await newTenant();
    const quiet = await api(`/v1/admin/audit?tenant=${tenantId}&action=pool.delete`, { key: ADMIN() });
    expect(quiet.status).toBe(200);
    expect(quiet.body).toEqual({ data: [], nextCursor: null });
  });

  it('refuses bad queries with 400', async () => {
    for (const query of ['limit=0', 'limit=1000', 'action=DROP TABLE', 'cursor=%%%', 'tenant=a/b']) {
      const res = await api(`/v1/admin/audit?${query}`, { key: ADMIN() });
      expect(res.status, query).toBe(400);
      expect(res.body.error.code).toBe('invalid_request');
    }
  });
});
