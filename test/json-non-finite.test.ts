import { SELF } from 'cloudflare:test';
import { Webhook } from 'standardwebhooks';
import { describe, expect, it } from 'vitest';
import { api, BASE, newAgent, newTenant } from './support/api';
import { agentWith, contextOf, locksOf, transfer } from './support/transactions';

/**
 * JSON.parse reads a number literal beyond a double's range as Infinity, which JSON.stringify
 * writes as null: accepted, the client's number was stored as null, and a context got a null
 * member that a merge patch can never set. Such a value is refused like any out-of-bounds JSON.
 */
const raw = (path: string, key: string, method: string, body: string, contentType = 'application/json') =>
  SELF.fetch(`${BASE}${path}`, { method, body, headers: { authorization: `Bearer ${key}`, 'content-type': contentType } });

describe('numbers beyond the range of a double', () => {
  it('are refused in a context patch (400 invalid_request), leaving the context as it was', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key);
    const res = await raw(`/v1/agents/${id}/context`, key, 'PATCH', '{"keep":1,"a":{"b":1e400}}', 'application/merge-patch+json');
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: { code: string; message: string } }).error).toMatchObject({ code: 'invalid_request', message: expect.stringContaining('beyond the range of a double') });
    expect((await api(`/v1/agents/${id}/context`, { key })).body).toEqual({ version: 0, data: {} });
  });

  it('are refused in an execution input, which starts nothing', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key);
    for (const literal of ['1e400', '-1e400']) {
      const res = await raw(`/v1/agents/${id}/executions`, key, 'POST', `{"intent":"t","input":{"n":[${literal}]}}`);
      expect(res.status).toBe(400);
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe('invalid_request');
    }
    expect((await api(`/v1/agents/${id}/status`, { key })).body).toMatchObject({ running: 0, queued: 0, lastExecution: null });
    // Large numbers a double holds are untouched.
    const ok = await raw(`/v1/agents/${id}/executions`, key, 'POST', '{"intent":"t","input":{"n":1e300}}');
    expect(ok.status).toBe(200);
    expect(((await ok.json()) as { input: unknown }).input).toEqual({ n: 1e300 });
  });

  it('are refused in an incoming delivery (400), starting nothing', async () => {
    const { key } = await newTenant();
    const agentId = await newAgent(key);
    const secret = `whsec_${btoa('0123456789abcdef0123456789abcdef')}`;
    const hook = `hook-nf-${crypto.randomUUID().slice(0, 8)}`;
    expect((await api(`/v1/hooks/${hook}`, { method: 'PUT', key, body: { agentId, intent: 'in', scheme: 'standard', secret } })).status).toBe(201);
    const body = '{"amount":1e400}';
    const at = new Date();
    const res = await SELF.fetch(`${BASE}/v1/hooks/${hook}`, {
      method: 'POST', body,
      headers: { 'content-type': 'application/json', 'webhook-id': 'msg_nf', 'webhook-timestamp': String(Math.floor(at.getTime() / 1000)), 'webhook-signature': new Webhook(secret).sign('msg_nf', at, body) },
    });
    expect(res.status).toBe(400);
    expect((await api(`/v1/agents/${agentId}/status`, { key })).body.lastExecution).toBeNull();
  });

  it('are refused in a chat completion request (400), whose other fields would pass through as null', async () => {
    const { key } = await newTenant();
    expect((await api('/v1/pools/nf', { method: 'PUT', key, body: { targets: [{ id: 'local', kind: 'builtin' }] } })).status).toBe(201);
    const chat = (extra: string) => raw('/v1/chat/completions', key, 'POST', `{"model":"nf","messages":[{"role":"user","content":"hi"}]${extra}}`);
    for (const extra of [',"metadata":{"n":1e400}', ',"logit_bias":{"50256":-1e400}', ',"seed":1e999']) {
      const res = await chat(extra);
      expect(res.status, extra).toBe(400);
      expect(((await res.json()) as { error: { code: string; message: string } }).error, extra).toMatchObject({ code: 'invalid_request', message: expect.stringContaining('beyond the range of a double') });
    }
    expect((await chat(',"metadata":{"n":1e300}')).status).toBe(200);
  });
});

describe('transactions: numbers an increment cannot keep exact', () => {
  it('refuses an increment beyond 2^53 - 1 in magnitude with 400, locking nothing', async () => {
    const { key, tenantId } = await newTenant();
    const a = await agentWith(key, { balance: 10 });
    const b = await agentWith(key, { balance: 10 });
    // 2^53 + 1 reads as 2^53: the client's amount is not the one that would be applied.
    for (const amount of [1e300, 9007199254740993, -9007199254740992]) {
      const res = await api('/v1/transactions', { key, body: { operations: [{ agentId: a, increment: { balance: amount } }, { agentId: b, increment: { balance: 1 } }] } });
      expect(res.status, String(amount)).toBe(400);
      expect(res.body.error).toMatchObject({ code: 'invalid_request', message: expect.stringContaining('2^53') });
    }
    // Subnormal: 1.2345e-320 reads as 1.2347e-320, so it too is not the amount sent.
    for (const amount of [1e-320, -5e-324, 1.2345e-320]) {
      const res = await api('/v1/transactions', { key, body: { operations: [{ agentId: a, increment: { balance: amount } }, { agentId: b, increment: { balance: 1 } }] } });
      expect(res.status, String(amount)).toBe(400);
      expect(res.body.error).toMatchObject({ code: 'invalid_request', message: expect.stringContaining('2^-1022') });
    }
    expect([await locksOf(tenantId, a), await locksOf(tenantId, b)]).toEqual([0, 0]);
    expect([(await contextOf(key, a)).version, (await contextOf(key, b)).version]).toEqual([1, 1]);
  });

  it('aborts a transfer whose result would leave the exact range, so the total never drifts', async () => {
    const { key, tenantId } = await newTenant();
    const a = await agentWith(key, { balance: Number.MAX_SAFE_INTEGER });
    const b = await agentWith(key, { balance: 10 });
    // 2^53 - 1 + 2 is not a double: it would be stored as 2^53, and one unit would vanish.
    const res = await api('/v1/transactions', { key, body: transfer(b, a, 2) });
    expect(res.status).toBe(409);
    expect(res.body).toMatchObject({ status: 'aborted', reason: 'invalid_request', agentId: a, message: expect.stringContaining('2^53') });
    expect((await contextOf(key, a)).data.balance).toBe(Number.MAX_SAFE_INTEGER);
    expect((await contextOf(key, b)).data.balance).toBe(10);
    expect([await locksOf(tenantId, a), await locksOf(tenantId, b)]).toEqual([0, 0]);
    expect((await api(`/v1/agents/${a}/context`, { method: 'PATCH', key, body: { ok: true } })).status).toBe(200);
  });

  it('aborts a transfer whose sum has no exact number (1e-20 onto 100, 1e-17 onto 0.1), applying it nowhere, and sums decimals as written', async () => {
    const { key, tenantId } = await newTenant();
    const a = await agentWith(key, { balance: 100 });
    const b = await agentWith(key, { balance: 0.1 });
    // 100 - 1e-20 is 100 as a double, and 0.1 + 1e-17 is 0.1: each would create or lose units.
    // Both sides round either amount away, and either may vote first.
    for (const amount of [1e-20, 1e-17]) {
      const res = await api('/v1/transactions', { key, body: transfer(a, b, amount) });
      expect(res.status, String(amount)).toBe(409);
      expect(res.body, String(amount)).toMatchObject({ status: 'aborted', reason: 'invalid_request', message: expect.stringContaining('"balance"') });
      expect([a, b], String(amount)).toContain(res.body.agentId);
    }
    expect(await contextOf(key, a)).toMatchObject({ version: 1, data: { balance: 100 } });
    expect(await contextOf(key, b)).toMatchObject({ version: 1, data: { balance: 0.1 } });
    expect([await locksOf(tenantId, a), await locksOf(tenantId, b)]).toEqual([0, 0]);
    // Exact sums commit, taken on the numbers as JSON writes them: 0.1 + 0.2 is 0.3, not 0.30000000000000004.
    for (const amount of [30, 0.2, 0.05, 0.7]) expect((await api('/v1/transactions', { key, body: transfer(a, b, amount) })).status, String(amount)).toBe(200);
    expect((await contextOf(key, a)).data.balance).toBe(69.05);
    expect((await contextOf(key, b)).data.balance).toBe(31.05);
  });
});
