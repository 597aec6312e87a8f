import { sign as signGithub } from '@octokit/webhooks-methods';
import Stripe from 'stripe';
import { describe, expect, it } from 'vitest';
import { api, eventually, newAgent, newTenant } from './support/api';
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
