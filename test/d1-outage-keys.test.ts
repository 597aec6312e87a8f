import { env } from 'cloudflare:test';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { createApp } from '../worker/app';
import { KEY_ISOLATE_TTL_MS, KEY_STALE_IF_ERROR_MS } from '../worker/auth/api-keys';
import { sha256Hex } from '../worker/lib/hash';
import { ADMIN, newTenant } from './support/api';

/** A D1 that cannot answer at all, as in an outage: every statement and batch fails as the platform's do. */
function unreachableD1(): D1Database {
  const lost = () => Promise.reject(new Error('D1_ERROR: Network connection lost.'));
  const statement: Record<string, unknown> = { first: lost, all: lost, run: lost, raw: lost };
  statement.bind = () => statement;
  const db: Record<string, unknown> = { prepare: () => statement, batch: lost, exec: lost, getBookmark: () => null };
  db.withSession = () => db;
  return db as unknown as D1Database;
}

const app = createApp();
const request = (key: string, path: string, { body, down = false }: { body?: unknown; down?: boolean } = {}) =>
  app.request(
    path,
    { method: body === undefined ? 'GET' : 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, ...(body !== undefined && { body: JSON.stringify(body) }) },
    down ? { ...env, DB: unreachableD1() } : env,
  );

/** A key known to this isolate and an agent of its tenant, then D1 goes away and the key's KV entry has expired. */
async function knownKeyThenOutage() {
  const { key, keyId } = await newTenant();
  const created = await request(key, '/v1/agents', { body: {} });
  expect(created.status).toBe(201);
  const { id } = (await created.json()) as { id: string };
  // The agent's route is in KV (24 h): what an execution needs besides the key.
  expect((await request(key, `/v1/agents/${id}`)).status).toBe(200);
  await env.CACHE.delete(`apikey:v2:${await sha256Hex(key)}`);
  vi.useFakeTimers({ toFake: ['Date'] });
  vi.setSystemTime(Date.now() + KEY_ISOLATE_TTL_MS + 1_000);
  return { key, keyId, id };
}

afterEach(() => {
  vi.useRealTimers();
});

describe('API keys while D1 cannot answer', () => {
  it('admits a key this isolate found valid within the last 15 minutes, and its executions run', async () => {
    const { key, id } = await knownKeyThenOutage();
    const run = await request(key, `/v1/agents/${id}/executions`, { body: { intent: 'hello' }, down: true });
    // It was 503 for every keyed request once the caches' 90 s had passed.
    expect(run.status, await run.clone().text()).toBe(200);
    expect(await run.json()).toMatchObject({ status: 'succeeded' });
    expect((await request(key, `/v1/agents/${id}/status`, { down: true })).status).toBe(200);
  });

  it('turns a key away (503, Retry-After) once that was longer ago than 15 minutes, and one it never found', async () => {
    const { key, id } = await knownKeyThenOutage();
    vi.setSystemTime(Date.now() + KEY_STALE_IF_ERROR_MS);
    const late = await request(key, `/v1/agents/${id}/status`, { down: true });
    expect(late.status).toBe(503);
    expect(await late.json()).toMatchObject({ error: { code: 'unavailable' } });
    expect(late.headers.get('retry-after')).not.toBeNull();

    const fresh = await newTenant(); // never looked up here
    vi.useRealTimers();
    expect((await request(fresh.key, '/v1/agents/x/status', { down: true })).status).toBe(503);
  });

  it('never admits a key this isolate saw revoked', async () => {
    const { key, keyId, id } = await knownKeyThenOutage();
    vi.useRealTimers();
    const revoked = await app.request(`/v1/admin/keys/${keyId}`, { method: 'DELETE', headers: { authorization: `Bearer ${ADMIN()}` } }, env);
    expect(revoked.status).toBe(204);
    expect((await request(key, `/v1/agents/${id}/status`, { down: true })).status).not.toBe(200);
  });

  it('answers from D1 again once it can: a key revoked meanwhile at the source is refused', async () => {
    const { key, keyId, id } = await knownKeyThenOutage();
    expect((await request(key, `/v1/agents/${id}/status`, { down: true })).status).toBe(200);
    // D1 answers again, and says the key was revoked (by another location, before the outage).
    await env.DB.prepare('UPDATE api_keys SET revoked_at = ? WHERE id = ?').bind(Date.now(), keyId).run();
    vi.setSystemTime(Date.now() + 6_000);
    expect((await request(key, `/v1/agents/${id}/status`)).status).toBe(401);
  });
});
