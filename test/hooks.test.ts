import { sign as signGithub } from '@octokit/webhooks-methods';
import { createExecutionContext, env } from 'cloudflare:test';
import Stripe from 'stripe';
import { describe, expect, it } from 'vitest';
import { createApp } from '../worker/app';
import { LIST_AGENT_HOOKS_QUERY, LIST_HOOKS_QUERY } from '../worker/hooks/list';
import { putHook, resolveHook } from '../worker/hooks/store';
import type { Env } from '../worker/env';
import { sealSecret } from '../worker/pools/secrets';
import { ADMIN, api, BASE, eventually, newAgent, newTenant } from './support/api';
import { GITHUB_SECRET, STANDARD_SECRET, STRIPE_SECRET, hookFor, post, standardHeaders } from './support/hooks';
import { limitedKey } from './support/limits';

async function executions(key: string, agentId: string): Promise<{ intent: string; input: any }[]> {
  return (await api(`/v1/agents/${agentId}/executions`, { key })).body.data;
}

describe('incoming webhooks', () => {
  it('accepts a Standard Webhooks delivery, starts one async execution with the payload, and drops a redelivery', async () => {
    const { key } = await newTenant();
    const agentId = await newAgent(key);
    const hook = await hookFor(key, agentId, 'standard', STANDARD_SECRET);
    const body = JSON.stringify({ type: 'order.created', data: { order: 42 } });
    const first = await post(hook, body, standardHeaders('msg_1', body));
    expect(first.status).toBe(202);
    const accepted = (await first.json()) as { executionId: string; duplicate: boolean };
    expect(accepted.duplicate).toBe(false);
    const again = await post(hook, body, standardHeaders('msg_1', body));
    expect(again.status).toBe(200);
    expect(((await again.json()) as { executionId: string; duplicate: boolean })).toEqual({ executionId: accepted.executionId, status: expect.any(String), duplicate: true });
    const exec = await eventually(async () => {
      const res = await api(`/v1/agents/${agentId}/executions/${accepted.executionId}`, { key });
      return res.body.status === 'succeeded' && res.body;
    });
    expect(exec).toMatchObject({ intent: 'on.standard', input: { hook, scheme: 'standard', deliveryId: 'msg_1', payload: { type: 'order.created', data: { order: 42 } } } });
  });

  it('answers a signed delivery to a hook whose agent was deleted 404 not_found, as README says, starting nothing; a wrong signature stays 401', async () => {
    const { key } = await newTenant();
    const agentId = await newAgent(key);
    const hook = await hookFor(key, agentId, 'standard', STANDARD_SECRET);
    const body = JSON.stringify({ n: 1 });
    expect((await post(hook, body, standardHeaders('msg_before', body))).status).toBe(202);
    expect((await api(`/v1/agents/${agentId}`, { key, method: 'DELETE' })).status).toBe(204);
    for (const id of ['msg_before', 'msg_after']) {
      const res = await post(hook, body, standardHeaders(id, body));
      expect(res.status).toBe(404);
      expect(((await res.json()) as { error: unknown }).error).toMatchObject({ code: 'not_found', message: 'the agent of this hook no longer exists' });
    }
    expect((await post(hook, body, standardHeaders('msg_bad', body, new Date(), `whsec_${btoa('another secret, 24 bytes or more')}`))).status).toBe(401);
  });

  it('passes a correctly signed non-JSON Standard Webhooks body on as text, and still refuses a wrong signature', async () => {
    const { key } = await newTenant();
    const agentId = await newAgent(key);
    const hook = await hookFor(key, agentId, 'standard', STANDARD_SECRET);
    const body = 'event=order.created&order=42';
    const wrong = await post(hook, body, { ...standardHeaders('msg_text', body, new Date(), `whsec_${btoa('another-secret-another-secret!!')}`), 'content-type': 'application/x-www-form-urlencoded' });
    expect(wrong.status).toBe(401);
    const res = await post(hook, body, { ...standardHeaders('msg_text', body), 'content-type': 'application/x-www-form-urlencoded' });
    expect(res.status).toBe(202);
    const { executionId } = (await res.json()) as { executionId: string };
    const exec = await api(`/v1/agents/${agentId}/executions/${executionId}`, { key });
    expect(exec.body.input).toEqual({ hook, scheme: 'standard', deliveryId: 'msg_text', payload: body });
  });

  it('drops a delivery id seen before as a duplicate even when it comes back with another body', async () => {
    const { key } = await newTenant();
    const agentId = await newAgent(key);
    const hook = await hookFor(key, agentId, 'standard', STANDARD_SECRET);
    const first = JSON.stringify({ type: 'order.created', data: { order: 1 } });
    const accepted = await post(hook, first, standardHeaders('msg_reused', first));
    expect(accepted.status).toBe(202);
    const { executionId } = (await accepted.json()) as { executionId: string };
    // Signed again, correctly, by the sender: the id decides, not the body.
    const second = JSON.stringify({ type: 'order.created', data: { order: 2 } });
    const again = await post(hook, second, standardHeaders('msg_reused', second));
    expect(again.status).toBe(200);
    expect(await again.json()).toEqual({ executionId, status: expect.any(String), duplicate: true });
    // The list is D1's projection: wait for the execution to appear, then for anything more.
    await eventually(async () => (await executions(key, agentId)).length > 0);
    await new Promise((r) => setTimeout(r, 300));
    const started = await executions(key, agentId);
    expect(started).toHaveLength(1);
    expect(started[0]?.input.payload).toEqual({ type: 'order.created', data: { order: 1 } });
  });

  it('bounds the execution input a delivery makes like a REST execution input (256 KiB, 32 levels): 400, starting nothing', async () => {
    const { key } = await newTenant();
    const agentId = await newAgent(key);
    const hook = await hookFor(key, agentId, 'standard', STANDARD_SECRET);
    let deep: unknown = 'leaf';
    for (let i = 0; i < 40; i++) deep = { a: deep };
    const cases: [string, string][] = [
      ['300 KB of JSON', JSON.stringify({ text: 'x'.repeat(300_000) })],
      ['300 KB of text', 'y'.repeat(300_000)],
      ['40 levels deep', JSON.stringify(deep)],
    ];
    for (const [label, body] of cases) {
      const res = await post(hook, body, standardHeaders(`msg_${label.replaceAll(' ', '_')}`, body));
      expect(res.status, label).toBe(400);
      expect(((await res.json()) as { error: { code: string } }).error.code, label).toBe('invalid_request');
    }
    await new Promise((r) => setTimeout(r, 300));
    expect(await executions(key, agentId)).toEqual([]);
    const within = JSON.stringify({ text: 'z'.repeat(200_000) });
    expect((await post(hook, within, standardHeaders('msg_within', within))).status).toBe(202);
  });

  it('refuses a signed delivery id over 255 characters (the Idempotency-Key bound) with 400 naming where it came from, for every scheme, starting nothing', async () => {
    const { key } = await newTenant();
    const agentId = await newAgent(key);
    const body = JSON.stringify({ type: 'order.created' });
    const standard = await hookFor(key, agentId, 'standard', STANDARD_SECRET);
    const github = await hookFor(key, agentId, 'github', GITHUB_SECRET);
    const stripeHook = await hookFor(key, agentId, 'stripe', STRIPE_SECRET);
    const stripe = new Stripe('sk_test_unused');
    const stripeEvent = (id: string) => JSON.stringify({ id, type: 'invoice.paid' });
    const stripeSigned = async (event: string) => ({ 'stripe-signature': await stripe.webhooks.generateTestHeaderStringAsync({ payload: event, secret: STRIPE_SECRET }) });
    const long = (prefix: string) => prefix + 'x'.repeat(256 - prefix.length);
    const cases: [string, string, string, Record<string, string>, string[]][] = [
      ['standard', standard, body, standardHeaders(long('msg_'), body), ['webhook-id']],
      ['github', github, body, { 'x-github-delivery': long('gh-'), 'x-hub-signature-256': await signGithub(GITHUB_SECRET, body) }, ['x-github-delivery']],
      ['stripe', stripeHook, stripeEvent(long('evt_')), await stripeSigned(stripeEvent(long('evt_'))), ['payload', 'id']],
    ];
    for (const [scheme, hook, sent, headers, path] of cases) {
      const res = await post(hook, sent, headers);
      expect(res.status, scheme).toBe(400);
      const { error } = (await res.json()) as { error: { code: string; message: string; details: { path: string[] }[] } };
      expect(error.code, scheme).toBe('invalid_request');
      expect(error.message, scheme).toContain('255');
      expect(error.details, scheme).toEqual([expect.objectContaining({ path })]);
    }
    // A bad signature is still 401 first, whatever the id, so a prober learns nothing of the bound.
    expect((await post(standard, body, { ...standardHeaders(long('msg_'), body), 'webhook-signature': 'v1,AAAA' })).status).toBe(401);
    await new Promise((r) => setTimeout(r, 300));
    expect(await executions(key, agentId)).toEqual([]);
    // 255 characters is the longest id taken, in each scheme.
    const longest = (prefix: string) => prefix + 'y'.repeat(255 - prefix.length);
    expect((await post(standard, body, standardHeaders(longest('msg_'), body))).status).toBe(202);
    expect((await post(github, body, { 'x-github-delivery': longest('gh-'), 'x-hub-signature-256': await signGithub(GITHUB_SECRET, body) })).status).toBe(202);
    const event = stripeEvent(longest('evt_'));
    expect((await post(stripeHook, event, await stripeSigned(event))).status).toBe(202);
  });

  it('answers a seen delivery id 200 duplicate even when its new body is out of bounds, storing nothing of it', async () => {
    const { key } = await newTenant();
    const agentId = await newAgent(key);
    const hook = await hookFor(key, agentId, 'standard', STANDARD_SECRET);
    const first = JSON.stringify({ type: 'order.created', data: { order: 1 } });
    const accepted = await post(hook, first, standardHeaders('msg_grown', first));
    expect(accepted.status).toBe(202);
    const { executionId } = (await accepted.json()) as { executionId: string };
    let deep: unknown = 'leaf';
    for (let i = 0; i < 40; i++) deep = { a: deep };
    const retries: [string, string][] = [
      ['300 KB of JSON', JSON.stringify({ text: 'x'.repeat(300_000) })],
      ['40 levels deep', JSON.stringify(deep)],
    ];
    for (const [label, body] of retries) {
      const again = await post(hook, body, standardHeaders('msg_grown', body));
      expect(again.status, label).toBe(200);
      expect(await again.json(), label).toEqual({ executionId, status: expect.any(String), duplicate: true });
    }
    // The first body stays the execution's input, and nothing else started.
    expect((await api(`/v1/agents/${agentId}/executions/${executionId}`, { key })).body.input.payload).toEqual({ type: 'order.created', data: { order: 1 } });
    await eventually(async () => (await executions(key, agentId)).length > 0);
    await new Promise((r) => setTimeout(r, 300));
    expect(await executions(key, agentId)).toHaveLength(1);
    // A new id with such a body is still refused; the HTTP layer's own limit still answers 413.
    const big = retries[0]![1];
    const fresh = await post(hook, big, standardHeaders('msg_new_big', big));
    expect(fresh.status).toBe(400);
    expect(((await fresh.json()) as { error: { code: string } }).error.code).toBe('invalid_request');
    const huge = JSON.stringify({ text: 'h'.repeat(1_100_000) });
    expect((await post(hook, huge, standardHeaders('msg_grown', huge))).status).toBe(413);
  });

  it('refuses tampered bodies, wrong secrets, stale timestamps and missing signatures with 401, starting nothing', async () => {
    const { key } = await newTenant();
    const agentId = await newAgent(key);
    const hook = await hookFor(key, agentId, 'standard', STANDARD_SECRET);
    const body = JSON.stringify({ type: 'x' });
    const cases: [string, string, Record<string, string>][] = [
      ['tampered', `${body} `, standardHeaders('m1', body)],
      ['wrong secret', body, standardHeaders('m2', body, new Date(), `whsec_${btoa('another-secret-another-secret!!')}`)],
      ['stale', body, standardHeaders('m3', body, new Date(Date.now() - 10 * 60_000))],
      ['missing', body, {}],
    ];
    for (const [label, sent, headers] of cases) {
      const res = await post(hook, sent, headers);
      expect(res.status, label).toBe(401);
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe('unauthorized');
    }
    expect((await post('hook-does-not-exist', body, standardHeaders('m4', body))).status).toBe(401);
    await new Promise((r) => setTimeout(r, 300));
    expect(await executions(key, agentId)).toEqual([]);
  });

  it("answers 500 naming the hook, not the runtime's decryption error, when its secret was sealed under another UPSTREAM_ENCRYPTION_KEY; the sender retries", async () => {
    const { key, tenantId, keyId } = await newTenant();
    const agentId = await newAgent(key);
    const id = `hook-rekeyed-${crypto.randomUUID().slice(0, 8)}`;
    const otherKey = btoa(String.fromCharCode(...new Uint8Array(32).fill(9)));
    await env.DB.prepare('INSERT INTO hooks (id, tenant_id, agent_id, intent, scheme, secret, created_at, updated_at, key_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)')
      .bind(id, tenantId, agentId, 'on.standard', 'standard', await sealSecret(otherKey, STANDARD_SECRET, `hook/${id}`), Date.now(), Date.now(), keyId)
      .run();
    const body = JSON.stringify({ type: 'x' });
    const res = await post(id, body, standardHeaders('m-rekeyed', body));
    expect(res.status).toBe(500);
    expect(((await res.json()) as { error: { code: string; message: string } }).error).toMatchObject({
      code: 'internal_error',
      message: `the stored credential of hook "${id}" cannot be opened with this gateway's UPSTREAM_ENCRYPTION_KEY (changed or unset since it was stored): PUT the hook again with its secret, or ask the operator to restore the key`,
    });
    expect(await executions(key, agentId)).toEqual([]);
  });

  it('accepts GitHub deliveries signed by @octokit/webhooks-methods and refuses bad ones', async () => {
    const { key } = await newTenant();
    const agentId = await newAgent(key);
    const hook = await hookFor(key, agentId, 'github', GITHUB_SECRET);
    const body = JSON.stringify({ action: 'opened', number: 7 });
    const headers = { 'x-github-event': 'pull_request', 'x-github-delivery': crypto.randomUUID(), 'x-hub-signature-256': await signGithub(GITHUB_SECRET, body) };
    const ok = await post(hook, body, headers);
    expect(ok.status).toBe(202);
    expect((await post(hook, body, headers)).status).toBe(200);
    expect((await post(hook, body.replace('7', '8'), headers)).status).toBe(401);
    expect((await post(hook, body, { ...headers, 'x-hub-signature-256': await signGithub('wrong-secret-0123', body) })).status).toBe(401);
    const { executionId } = (await ok.json()) as { executionId: string };
    const exec = await api(`/v1/agents/${agentId}/executions/${executionId}`, { key });
    expect(exec.body.input).toMatchObject({ scheme: 'github', event: 'pull_request', payload: { number: 7 } });
  });

  it('drops a signed GitHub body replayed under a new X-GitHub-Delivery as a duplicate; other schemes keep deduplicating by id only', async () => {
    const { key } = await newTenant();
    const agentId = await newAgent(key);
    const hook = await hookFor(key, agentId, 'github', GITHUB_SECRET);
    const body = JSON.stringify({ action: 'opened', number: 9 });
    const signed = { 'x-github-event': 'pull_request', 'x-hub-signature-256': await signGithub(GITHUB_SECRET, body) };
    const first = await post(hook, body, { ...signed, 'x-github-delivery': crypto.randomUUID() });
    expect(first.status).toBe(202);
    const { executionId } = (await first.json()) as { executionId: string };
    // Captured and re-sent: the signature still matches, the delivery id (and the unsigned event) is new.
    for (const event of ['pull_request', 'push']) {
      const replay = await post(hook, body, { ...signed, 'x-github-event': event, 'x-github-delivery': crypto.randomUUID() });
      expect(replay.status, event).toBe(200);
      expect(await replay.json(), event).toEqual({ executionId, status: expect.any(String), duplicate: true });
    }
    // Another body is other work, and the same body on another hook is that hook's own.
    const other = JSON.stringify({ action: 'opened', number: 10 });
    expect((await post(hook, other, { ...signed, 'x-hub-signature-256': await signGithub(GITHUB_SECRET, other), 'x-github-delivery': crypto.randomUUID() })).status).toBe(202);
    const second = await hookFor(key, agentId, 'github', GITHUB_SECRET);
    expect((await post(second, body, { ...signed, 'x-github-delivery': crypto.randomUUID() })).status).toBe(202);
    await eventually(async () => (await executions(key, agentId)).length >= 3);
    await new Promise((r) => setTimeout(r, 300));
    expect(await executions(key, agentId)).toHaveLength(3);

    // Standard Webhooks signs the id: one body under two ids is two deliveries.
    const standard = await hookFor(key, agentId, 'standard', STANDARD_SECRET);
    const same = JSON.stringify({ type: 'tick' });
    expect((await post(standard, same, standardHeaders('msg_tick_1', same))).status).toBe(202);
    expect((await post(standard, same, standardHeaders('msg_tick_2', same))).status).toBe(202);
  });

  it("accepts Stripe deliveries signed by stripe's generateTestHeaderString and refuses bad ones", async () => {
    const { key } = await newTenant();
    const agentId = await newAgent(key);
    const hook = await hookFor(key, agentId, 'stripe', STRIPE_SECRET);
    const stripe = new Stripe('sk_test_unused');
    const body = JSON.stringify({ id: 'evt_123', type: 'invoice.paid', data: { object: { amount: 100 } } });
    const header = await stripe.webhooks.generateTestHeaderStringAsync({ payload: body, secret: STRIPE_SECRET });
    const ok = await post(hook, body, { 'stripe-signature': header });
    expect(ok.status).toBe(202);
    expect((await post(hook, body, { 'stripe-signature': header })).status).toBe(200);
    const stale = await stripe.webhooks.generateTestHeaderStringAsync({ payload: body, secret: STRIPE_SECRET, timestamp: Math.floor(Date.now() / 1000) - 600 });
    expect((await post(hook, body, { 'stripe-signature': stale })).status).toBe(401);
    const wrong = await stripe.webhooks.generateTestHeaderStringAsync({ payload: body, secret: 'whsec_someone_else_0123456789' });
    expect((await post(hook, body, { 'stripe-signature': wrong })).status).toBe(401);
    expect((await post(hook, body.replace('100', '999'), { 'stripe-signature': header })).status).toBe(401);
  });

  it('keeps hook ids per tenant and validates definitions', async () => {
    const a = await newTenant();
    const b = await newTenant();
    const agentA = await newAgent(a.key);
    const agentB = await newAgent(b.key);
    const id = await hookFor(a.key, agentA, 'github', GITHUB_SECRET);
    const taken = await api(`/v1/hooks/${id}`, { method: 'PUT', key: b.key, body: { agentId: agentB, intent: 'x', scheme: 'github', secret: GITHUB_SECRET } });
    expect(taken.status).toBe(409);
    expect((await api(`/v1/hooks/${id}`, { key: b.key })).status).toBe(404);
    expect((await api(`/v1/hooks/${id}`, { key: a.key })).status).toBe(200);
    expect((await api('/v1/hooks/new-hook-1', { method: 'PUT', key: a.key, body: { agentId: agentB, intent: 'x', scheme: 'github', secret: GITHUB_SECRET } })).status).toBe(404);
    expect((await api('/v1/hooks/new-hook-2', { method: 'PUT', key: a.key, body: { agentId: agentA, intent: 'x', scheme: 'standard', secret: 'not-a-whsec-secret' } })).status).toBe(400);
    expect((await api('/v1/hooks/short', { method: 'PUT', key: a.key, body: { agentId: agentA, intent: 'x', scheme: 'github', secret: GITHUB_SECRET } })).status).toBe(400);
    expect((await api(`/v1/hooks/${id}`, { method: 'DELETE', key: a.key })).status).toBe(204);
    const body = '{}';
    expect((await post(id, body, { 'x-github-delivery': 'd', 'x-hub-signature-256': await signGithub(GITHUB_SECRET, body) })).status).toBe(401);
  });
});

describe("incoming webhooks count against the limits of the key that registered the hook", () => {
  const deliver = (hook: string, id: string) => {
    const body = JSON.stringify({ delivery: id });
    return post(hook, body, standardHeaders(id, body));
  };

  it('refuses deliveries past its request budget (429, nothing started) and still answers a repeated delivery id', async () => {
    const { key, otherKey } = await limitedKey({ budget: { requests: 2, period: 'day' } });
    const agentId = await newAgent(otherKey);
    const hook = await hookFor(key, agentId, 'standard', STANDARD_SECRET);
    const first = await deliver(hook, 'msg_budget_1');
    expect(first.status).toBe(202);
    expect(first.headers.get('ratelimit-remaining')).toBe('1');
    expect((await deliver(hook, 'msg_budget_2')).status).toBe(202);
    const third = await deliver(hook, 'msg_budget_3');
    expect(third.status).toBe(429);
    expect(((await third.json()) as { error: { code: string } }).error.code).toBe('budget_exhausted');
    expect(Number(third.headers.get('retry-after'))).toBeGreaterThan(0);
    const again = await deliver(hook, 'msg_budget_1');
    expect(again.status).toBe(200);
    expect(((await again.json()) as { duplicate: boolean }).duplicate).toBe(true);
    expect((await api(`/v1/agents/${agentId}/executions`, { key, body: { intent: 'echo' } })).status).toBe(429);
    expect((await api('/v1/usage', { key })).body.budget.requests).toBe(2);

    // The same agent behind a hook of a key without limits: not counted against anything.
    const free = await hookFor(otherKey, agentId, 'standard', STANDARD_SECRET);
    expect((await deliver(free, 'msg_free_1')).status).toBe(202);
    expect((await deliver(free, 'msg_free_2')).status).toBe(202);
    expect((await deliver(free, 'msg_free_3')).status).toBe(202);
    const started = await eventually(async () => {
      const list = await executions(otherKey, agentId);
      return list.length >= 5 && list;
    });
    expect(started.map((e) => e.input.deliveryId).sort()).toEqual(['msg_budget_1', 'msg_budget_2', 'msg_free_1', 'msg_free_2', 'msg_free_3']);
  });

  it("settles a delivery's token reservation with its execution's usage", async () => {
    const { key, otherKey } = await limitedKey({ budget: { tokens: 1_000_000, period: 'day' } });
    const agentId = await newAgent(otherKey);
    const hook = await hookFor(key, agentId, 'standard', STANDARD_SECRET);
    expect((await deliver(hook, 'msg_tokens_1')).status).toBe(202);
    const budget = await eventually(async () => {
      const usage = await api('/v1/usage', { key });
      return usage.body.budget.reservedTokens === 0 && usage.body.budget.tokens > 0 && usage.body.budget;
    });
    expect(budget.requests).toBe(1);
  });
});

describe('listing incoming hooks (tenant and operator)', () => {
  type Listed = { id: string; agentId: string; keyId: string | null; keyRevoked: boolean | null };
  type Page = { data: Listed[]; nextCursor: string | null };

  /** Every page of `path` (a `?` query already in it), `limit` at a time. */
  async function allPages(path: string, key: string, limit: number): Promise<{ pages: Page[]; items: Listed[] }> {
    const pages: Page[] = [];
    let cursor: string | null = '';
    while (cursor !== null && pages.length < 20) {
      const res: { status: number; body: Page } = await api(`${path}&limit=${limit}${cursor ? `&cursor=${cursor}` : ''}`, { key });
      expect(res.status, path).toBe(200);
      pages.push(res.body);
      cursor = res.body.nextCursor;
    }
    return { pages, items: pages.flatMap((p) => p.data) };
  }

  /** A tenant with two keys, two agents and three hooks: the second key registered one, then was revoked. */
  async function tenantWithHooks() {
    const { tenantId, key, keyId } = await newTenant();
    const second = await api(`/v1/admin/tenants/${tenantId}/keys`, { key: ADMIN(), body: { name: 'leaked' } });
    expect(second.status).toBe(201);
    const [agentA, agentB] = [await newAgent(key), await newAgent(key)];
    const prefix = `hl-${crypto.randomUUID().slice(0, 8)}`;
    const put = async (id: string, k: string, agentId: string) =>
      expect((await api(`/v1/hooks/${id}`, { method: 'PUT', key: k, body: { agentId, intent: 'on.list', scheme: 'standard', secret: STANDARD_SECRET } })).status).toBe(201);
    await put(`${prefix}-c`, key, agentB);
    await put(`${prefix}-b`, second.body.key, agentB);
    await put(`${prefix}-a`, key, agentA);
    expect((await api(`/v1/admin/keys/${second.body.id}`, { method: 'DELETE', key: ADMIN() })).status).toBe(204);
    return { tenantId, key, keyId, leakedKeyId: second.body.id as string, agentA, agentB, prefix };
  }

  it("lists a tenant's hooks in id order, a page at a time, with the registering key and whether it is revoked, never a secret", async () => {
    const t = await tenantWithHooks();
    const expected = [
      { id: `${t.prefix}-a`, agentId: t.agentA, intent: 'on.list', scheme: 'standard', url: `/v1/hooks/${t.prefix}-a`, keyId: t.keyId, keyRevoked: false },
      { id: `${t.prefix}-b`, agentId: t.agentB, intent: 'on.list', scheme: 'standard', url: `/v1/hooks/${t.prefix}-b`, keyId: t.leakedKeyId, keyRevoked: true },
      { id: `${t.prefix}-c`, agentId: t.agentB, intent: 'on.list', scheme: 'standard', url: `/v1/hooks/${t.prefix}-c`, keyId: t.keyId, keyRevoked: false },
    ];
    const { pages, items } = await allPages('/v1/hooks?', t.key, 2);
    expect(pages.map((p) => p.data.length)).toEqual([2, 1]);
    expect(items).toEqual(expected.map((h) => ({ ...h, createdAt: expect.any(String), updatedAt: expect.any(String) })));
    expect(JSON.stringify(pages)).not.toContain(STANDARD_SECRET);
    // Each item is what GET /v1/hooks/{id} shows.
    for (const item of items) expect((await api(`/v1/hooks/${item.id}`, { key: t.key })).body).toEqual(item);
    // The default page holds them all; an agent's filter keeps its own.
    expect((await api('/v1/hooks', { key: t.key })).body).toEqual({ data: items, nextCursor: null });
    expect((await allPages(`/v1/hooks?agentId=${t.agentB}`, t.key, 1)).items.map((h) => h.id)).toEqual([`${t.prefix}-b`, `${t.prefix}-c`]);
    expect((await api(`/v1/hooks?agentId=no-such-agent`, { key: t.key })).body).toEqual({ data: [], nextCursor: null });
    // Another tenant sees none of them, even naming the agent.
    const other = await newTenant();
    for (const path of ['/v1/hooks', `/v1/hooks?agentId=${t.agentB}`]) expect((await api(path, { key: other.key })).body).toEqual({ data: [], nextCursor: null });
    // A cursor names its tenant and its filter: elsewhere it paged from the same id on, skipping
    // what came before without a word; now it is 400. The operator's list of the tenant is its list.
    const firstPage = (await api('/v1/hooks?limit=1', { key: t.key })).body as Page;
    const filtered = (await api(`/v1/hooks?agentId=${t.agentB}&limit=1`, { key: t.key })).body as Page;
    expect((await api(`/v1/admin/tenants/${t.tenantId}/hooks?limit=1&cursor=${firstPage.nextCursor}`, { key: ADMIN() })).body.data.map((h: Listed) => h.id)).toEqual([`${t.prefix}-b`]);
    for (const [path, key] of [[`/v1/hooks?cursor=${firstPage.nextCursor}`, other.key], [`/v1/hooks?cursor=${filtered.nextCursor}`, t.key], [`/v1/hooks?agentId=${t.agentA}&cursor=${filtered.nextCursor}`, t.key], [`/v1/admin/tenants/${other.tenantId}/hooks?cursor=${firstPage.nextCursor}`, ADMIN()]] as const) {
      const res = await api(path, { key });
      expect(res.status, path).toBe(400);
      expect(res.body.error, path).toMatchObject({ code: 'invalid_request', param: 'cursor' });
    }
    // Bad paging is a 400, not a 500.
    for (const query of ['limit=0', 'limit=101', 'cursor=%25%25', `cursor=${btoa('not an id!')}`, 'agentId=bad%20id']) {
      const res = await api(`/v1/hooks?${query}`, { key: t.key });
      expect(res.status, query).toBe(400);
      expect(res.body.error.code, query).toBe('invalid_request');
    }
  });

  it('shows a hook registered before keys were recorded with keyId and keyRevoked null', async () => {
    const { key } = await newTenant();
    const hook = await hookFor(key, await newAgent(key), 'github', GITHUB_SECRET);
    await env.DB.prepare('UPDATE hooks SET key_id = NULL WHERE id = ?').bind(hook).run();
    expect((await api('/v1/hooks', { key })).body.data).toEqual([expect.objectContaining({ id: hook, keyId: null, keyRevoked: null })]);
    expect((await api(`/v1/hooks/${hook}`, { key })).body).toMatchObject({ keyId: null, keyRevoked: null });
  });

  it("keeps a revoked key's hook accepting deliveries until a live key replaces or deletes it", async () => {
    const t = await tenantWithHooks();
    const hook = `${t.prefix}-b`;
    const body = JSON.stringify({ type: 'after.revoke' });
    expect((await post(hook, body, standardHeaders('msg_after_revoke', body))).status).toBe(202);
    // A live key takes it over (a new secret shuts out whoever knew the old one) ...
    const secret = `whsec_${btoa('another-secret-another-secret!!')}`;
    const replaced = await api(`/v1/hooks/${hook}`, { method: 'PUT', key: t.key, body: { agentId: t.agentB, intent: 'on.list', scheme: 'standard', secret } });
    expect(replaced.status).toBe(200);
    expect(replaced.body).toMatchObject({ keyId: t.keyId, keyRevoked: false });
    expect((await post(hook, body, standardHeaders('msg_old_secret', body))).status).toBe(401);
    // ... or deletes it.
    expect((await api(`/v1/hooks/${hook}`, { method: 'DELETE', key: t.key })).status).toBe(204);
    expect((await api('/v1/hooks', { key: t.key })).body.data.map((h: Listed) => h.id)).toEqual([`${t.prefix}-a`, `${t.prefix}-c`]);
  });

  it("lists a tenant's hooks for the operator, same shape and paging, and deletes one", async () => {
    const t = await tenantWithHooks();
    const path = `/v1/admin/tenants/${t.tenantId}/hooks`;
    const tenantView = (await api('/v1/hooks', { key: t.key })).body.data;
    const { pages, items } = await allPages(`${path}?`, ADMIN(), 2);
    expect(pages.map((p) => p.data.length)).toEqual([2, 1]);
    expect(items).toEqual(tenantView);
    expect((await allPages(`${path}?agentId=${t.agentA}`, ADMIN(), 5)).items.map((h) => h.id)).toEqual([`${t.prefix}-a`]);
    expect((await api(path, { key: t.key })).status).toBe(401);
    const unknown = await api('/v1/admin/tenants/no-such-tenant/hooks', { key: ADMIN() });
    expect(unknown.status).toBe(404);
    expect(unknown.body.error.code).toBe('not_found');
    expect((await api(`${path}?limit=0`, { key: ADMIN() })).status).toBe(400);

    // The operator acts on the revoked key's hook without a key of the tenant.
    const hook = `${t.prefix}-b`;
    expect((await api(`${path}/${hook}`, { method: 'DELETE', key: ADMIN() })).status).toBe(204);
    expect((await api(`${path}/${hook}`, { method: 'DELETE', key: ADMIN() })).status).toBe(404);
    const other = await newTenant();
    expect((await api(`/v1/admin/tenants/${other.tenantId}/hooks/${t.prefix}-a`, { method: 'DELETE', key: ADMIN() })).status).toBe(404);
    expect((await api('/v1/hooks', { key: t.key })).body.data.map((h: Listed) => h.id)).toEqual([`${t.prefix}-a`, `${t.prefix}-c`]);
    const body = JSON.stringify({ type: 'after.delete' });
    expect((await post(hook, body, standardHeaders('msg_after_delete', body))).status).toBe(401);
    const audit = await api(`/v1/admin/audit?tenant=${t.tenantId}&action=hook.delete`, { key: ADMIN() });
    expect(audit.body.data).toEqual([expect.objectContaining({ actor: 'operator', tenantId: t.tenantId, action: 'hook.delete', target: hook })]);
  });

  it('pages through an index: both list queries search (tenant_id, …, id) and sort nothing', async () => {
    for (const [query, params] of [[LIST_HOOKS_QUERY, ['tn', '', 10]], [LIST_AGENT_HOOKS_QUERY, ['tn', 'agent', '', 10]]] as const) {
      const { results } = await env.DB.prepare(`EXPLAIN QUERY PLAN ${query}`).bind(...params).all<{ detail: string }>();
      const plan = results.map((r) => r.detail).join('\n');
      expect(plan, query).toMatch(/SEARCH hooks USING INDEX hooks_by_tenant\w* \(tenant_id=\? AND (agent_id=\? AND )?id>\?\)/);
      expect(plan, query).not.toContain('TEMP B-TREE');
    }
  });
});

/**
 * An app whose next lookup of a hook by a delivery reads D1 at once and then waits until
 * `open()`: held so, it has read the hook before whatever the test does next, and lands after.
 */
function heldHookLookup() {
  let read!: () => void;
  const wasRead = new Promise<void>((resolve) => (read = resolve));
  let open!: () => void;
  const gate = new Promise<void>((resolve) => (open = resolve));
  let held = false;
  // Through the D1 session a route reads with (middleware/d1-session.ts) as well.
  const hold = <T extends D1Database | D1DatabaseSession>(db: T): T => new Proxy(db, {
    get(target, prop) {
      if (prop === 'withSession') return (constraint?: string) => hold(env.DB.withSession(constraint));
      if (prop === 'prepare') {
        return (query: string) => {
          const statement = target.prepare(query);
          if (held || !query.startsWith('SELECT hooks.*')) return statement;
          held = true;
          return { bind: (...values: unknown[]) => ({ first: async () => { const row = await statement.bind(...values).first(); read(); await gate; return row; } }) };
        };
      }
      const value: unknown = Reflect.get(target, prop);
      return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
    },
  });
  const app = createApp();
  const appEnv = { ...env, DB: hold(env.DB) };
  const request = (path: string, init: RequestInit) => app.request(`${BASE}${path}`, init, appEnv, createExecutionContext());
  const deliver = (hook: string, msgId: string, secret = STANDARD_SECRET) => {
    const body = JSON.stringify({ delivery: msgId });
    return request(`/v1/hooks/${hook}`, { method: 'POST', body, headers: { 'content-type': 'application/json', ...standardHeaders(msgId, body, new Date(), secret) } });
  };
  const asKey = (key: string, method: string, body?: unknown): RequestInit => ({ method, headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, ...(body !== undefined && { body: JSON.stringify(body) }) });
  return { request, deliver, asKey, wasRead, open };
}

// A delivery's lookup that read the hook just before a DELETE or PUT here landed after it, and
// put the old hook back in the cache the change had emptied: for the cache's 30 s a deleted
// hook, or a replaced secret, went on verifying deliveries (the race fixed for API keys).
describe('a hook lookup overtaken by a change to the hook in the same isolate', () => {
  const OTHER_SECRET = `whsec_${btoa('fedcba9876543210fedcba9876543210')}`;

  it('does not keep a deleted hook accepting deliveries', async () => {
    const { key } = await newTenant();
    const hook = await hookFor(key, await newAgent(key), 'standard', STANDARD_SECRET);
    const lookup = heldHookLookup();
    const before = lookup.deliver(hook, 'msg_before_delete');
    await lookup.wasRead;
    expect((await lookup.request(`/v1/hooks/${hook}`, lookup.asKey(key, 'DELETE'))).status).toBe(204);
    lookup.open();
    // Read before the DELETE: answered as it was then, once.
    expect((await before).status).toBe(202);
    expect((await lookup.deliver(hook, 'msg_after_delete')).status).toBe(401);
  });

  it('does not keep an old secret verifying deliveries after a PUT replaced it', async () => {
    const { key } = await newTenant();
    const agentId = await newAgent(key);
    const hook = await hookFor(key, agentId, 'standard', STANDARD_SECRET);
    const lookup = heldHookLookup();
    const before = lookup.deliver(hook, 'msg_before_put');
    await lookup.wasRead;
    const put = await lookup.request(`/v1/hooks/${hook}`, lookup.asKey(key, 'PUT', { agentId, intent: 'on.standard', scheme: 'standard', secret: OTHER_SECRET }));
    expect(put.status).toBe(200);
    lookup.open();
    expect((await before).status).toBe(202);
    expect((await lookup.deliver(hook, 'msg_old_secret')).status).toBe(401);
    expect((await lookup.deliver(hook, 'msg_new_secret', OTHER_SECRET)).status).toBe(202);
  });

  it("does not keep the key's limits from before a PATCH of them here", async () => {
    const { tenantId, key: otherKey } = await newTenant();
    const created = await api(`/v1/admin/tenants/${tenantId}/keys`, { key: ADMIN(), body: { name: 'unlimited' } });
    const { key, id: keyId } = created.body as { key: string; id: string };
    const hook = await hookFor(key, await newAgent(otherKey), 'standard', STANDARD_SECRET);
    const lookup = heldHookLookup();
    const before = lookup.deliver(hook, 'msg_before_patch');
    await lookup.wasRead;
    const patched = await lookup.request(`/v1/admin/keys/${keyId}`, lookup.asKey(ADMIN(), 'PATCH', { limits: { budget: { requests: 1, period: 'day' } } }));
    expect(patched.status).toBe(200);
    lookup.open();
    expect((await before).status).toBe(202);
    expect((await lookup.deliver(hook, 'msg_within_budget')).status).toBe(202);
    expect((await lookup.deliver(hook, 'msg_past_budget')).status).toBe(429);
  });
});

describe('incoming webhooks: lookups of unknown hook ids', () => {
  it('refuses a POST that carries no signature of any scheme before looking its hook up: a hook created elsewhere just after is not hidden by a remembered miss', async () => {
    const { key, tenantId, keyId } = await newTenant();
    const agentId = await newAgent(key);
    const id = `hook-unsigned-${crypto.randomUUID().slice(0, 8)}`;
    const body = JSON.stringify({ type: 'probe' });
    // No webhook-signature, X-Hub-Signature-256 or Stripe-Signature: no scheme could verify it.
    const unsigned = await post(id, body, {});
    expect(unsigned.status).toBe(401);
    expect(await unsigned.json()).toMatchObject({ error: { code: 'unauthorized' } });
    // The hook is created in another isolate (its row written, no change seen here).
    await env.DB.prepare('INSERT INTO hooks (id, tenant_id, agent_id, intent, scheme, secret, created_at, updated_at, key_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)')
      .bind(id, tenantId, agentId, 'on.standard', 'standard', await sealSecret(env.UPSTREAM_ENCRYPTION_KEY, STANDARD_SECRET, `hook/${id}`), Date.now(), Date.now(), keyId)
      .run();
    // The unsigned POST used to read D1 and keep the miss for 30 s: this delivery was refused.
    expect((await post(id, body, standardHeaders('msg_after_unsigned', body))).status).toBe(202);
  });

  it('keeps unknown ids apart from hooks: misses cost one read each, then none, and push no hook out of the cache', async () => {
    const { key, tenantId, keyId } = await newTenant();
    const agentId = await newAgent(key);
    const real = `hook-kept-${crypto.randomUUID().slice(0, 8)}`;
    const tag = crypto.randomUUID().slice(0, 8);
    expect(await putHook(env as Env, tenantId, keyId, real, { agentId, intent: 'on.standard', scheme: 'standard', secret: STANDARD_SECRET })).not.toBeNull();
    // D1 as the store sees it, counting lookups by id; ids of probes answer "no such hook" at once.
    const reads = new Map<string, number>();
    const db = {
      prepare: (query: string) => ({
        bind: (...args: unknown[]) => {
          const id = String(args[0]);
          reads.set(id, (reads.get(id) ?? 0) + 1);
          return id.startsWith('probe-') ? { first: async () => null } : env.DB.prepare(query).bind(...args);
        },
      }),
    };
    const counted = { ...env, DB: db } as unknown as Env;
    expect(await resolveHook(counted, real)).toMatchObject({ tenantId, agentId });
    expect(await resolveHook(counted, real)).toMatchObject({ tenantId, agentId });
    expect(reads.get(real)).toBe(1);
    // Unsigned-looking probes of 10,000 unknown ids: as many entries as the cache holds.
    for (let i = 0; i < 10_000; i++) expect(await resolveHook(counted, `probe-${tag}-${i}`)).toBeNull();
    // The hook is still cached: the misses used to fill its cache, which was then cleared.
    expect(await resolveHook(counted, real)).toMatchObject({ tenantId, agentId });
    expect(reads.get(real)).toBe(1);
    // A miss just made is remembered: asked again, it costs no read.
    expect(await resolveHook(counted, `probe-${tag}-9999`)).toBeNull();
    expect(reads.get(`probe-${tag}-9999`)).toBe(1);
    // A hook PUT here takes effect at once, a remembered miss notwithstanding.
    const late = `probe-${tag}-late`;
    expect(await resolveHook(counted, late)).toBeNull();
    reads.clear();
    const created = await putHook(env as Env, tenantId, keyId, late, { agentId, intent: 'on.standard', scheme: 'standard', secret: STANDARD_SECRET });
    expect(created?.created).toBe(true);
    expect(await resolveHook({ ...env } as Env, late)).toMatchObject({ tenantId, agentId });
  });
});
