import { expect } from 'vitest';
import { ADMIN, api, chatTarget, eventually, newTenant } from './api';

/** A tenant with a key that has `limits` (`key`), its unlimited admin key, and a chat pool on the mock upstream. */
export async function limitedKey(limits: Record<string, unknown>, faults = 'ok') {
  const { tenantId, key: adminKey } = await newTenant();
  const created = await api(`/v1/admin/tenants/${tenantId}/keys`, { key: ADMIN(), body: { name: 'limited', limits } });
  expect(created.status).toBe(201);
  const tag = `lim${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`;
  const pool = await api('/v1/pools/chat', { method: 'PUT', key: adminKey, body: { targets: [chatTarget(tag, faults)] } });
  expect(pool.status).toBe(201);
  return { tenantId, key: created.body.key as string, keyId: created.body.id as string, otherKey: adminKey, tag };
}

/** The gateway error code of an MCP tool error (its text is the API's envelope), or undefined. */
export const toolError = (message: any): string | undefined => (message.result?.isError ? JSON.parse(message.result.content[0].text).error.code : undefined);

/** The key's budgeted requests once none is in flight any more (every lease settled). */
export async function settledRequests(key: string): Promise<number> {
  const usage = await eventually(async () => {
    const res = await api('/v1/usage', { key });
    return res.body.inFlight === 0 && res.body;
  });
  return usage.budget.requests;
}
