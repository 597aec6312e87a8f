import { createExecutionContext, createScheduledController, env, runInDurableObject, waitOnExecutionContext } from 'cloudflare:test';
import { beforeEach, describe, expect, it } from 'vitest';
import { createApp } from '../worker/app';
import worker from '../worker/index';
import type { Env } from '../worker/env';
import { clearDnsCache, resolveName } from '../worker/upstream/dns-resolver';
import { outboundPolicy } from '../worker/upstream/outbound-guard';
import { invokeUpstream } from '../worker/upstream/invoke';
import { resolveUpstream } from '../worker/upstream/resolve';
import { A2AStore } from '../durable/a2a-store';
import { jsonRpcError } from '../worker/a2a/rpc-error';
import { api, newAgent, newTenant, uniqueId } from './support/api';

/**
 * The outbound guard when the DNS resolver, not the name, is the trouble: an outage of the
 * resolver is no verdict on the URL. The app runs as production does (guard on), resolving with
 * the mock upstream's DNS-over-HTTPS endpoint.
 */
const resolver = `${env.MOCK_UPSTREAM_URL}/dns-query`;
const guardedEnv = { ...env, ALLOW_PRIVATE_UPSTREAMS: undefined, DNS_RESOLVER_URL: resolver };
const app = createApp();

const call = (key: string, method: string, path: string, body: unknown, environment: object = guardedEnv) =>
  app.request(path, { method, headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify(body) }, environment);

async function setDns(name: string, answers: { A?: string[]; status?: number; httpStatus?: number }): Promise<void> {
  const res = await fetch(`${env.MOCK_UPSTREAM_URL}/dns?name=${encodeURIComponent(name)}`, { method: 'POST', body: JSON.stringify(answers) });
  expect(res.status).toBe(200);
}

const hostName = () => `${uniqueId('svc')}.example.com`;
const unreachable = { ...guardedEnv, DNS_RESOLVER_URL: 'http://127.0.0.1:9/dns-query' };

beforeEach(() => clearDnsCache());

describe('outbound guard: a resolver that cannot answer now', () => {
  it('tells an outage of the resolver from a name that has no answer', async () => {
    const down = hostName();
    await setDns(down, { httpStatus: 502 });
    const limited = hostName();
    await setDns(limited, { httpStatus: 429 });
    const servfail = hostName();
    await setDns(servfail, { status: 2 });
    const refusedQuestion = hostName();
    await setDns(refusedQuestion, { httpStatus: 400 });
    const empty = hostName();
    await setDns(empty, {});
    for (const host of [down, limited, servfail]) expect(await resolveName(host, resolver), host).toMatchObject({ ok: false, transient: true });
    expect(await resolveName(hostName(), 'http://127.0.0.1:9/dns-query')).toMatchObject({ ok: false, transient: true });
    // NXDOMAIN, no records, a question the resolver refuses: asking again changes nothing.
    for (const host of [hostName(), empty, refusedQuestion]) expect(await resolveName(host, resolver), host).toMatchObject({ ok: false, transient: false });
  });

  it("ends a lookup when the call it is for ends (the call's signal), not 3 s later", async () => {
    const host = hostName();
    await setDns(host, { A: ['93.184.215.14'] });
    const ended = AbortSignal.abort(new DOMException('upstream attempt timed out', 'TimeoutError'));
    expect(await resolveName(host, resolver, Date.now(), ended)).toMatchObject({ ok: false, transient: true });
    // Nothing of the aborted lookup was cached: the next one answers.
    expect(await resolveName(host, resolver)).toEqual({ ok: true, addresses: ['93.184.215.14'] });
  });

  it('answers a URL stored while its host cannot be checked 503 with Retry-After, storing nothing; a name with no answer stays 400', async () => {
    const { key } = await newTenant();
    const down = hostName();
    await setDns(down, { httpStatus: 503 });
    const id = uniqueId();
    for (const [environment, host] of [[guardedEnv, down], [unreachable, hostName()]] as const) {
      const res = await call(key, 'POST', '/v1/agents', { id, upstream: { kind: 'agent-http', url: `https://${host}/run` } }, environment);
      expect(res.status, host).toBe(503);
      expect(res.headers.get('retry-after')).toBe('1');
      const body = (await res.json()) as { error: { code: string; message: string } };
      expect(body.error.code).toBe('unavailable');
      expect(body.error.message).toContain('retry later');
    }
    expect((await call(key, 'GET', `/v1/agents/${id}`, undefined)).status).toBe(404);

    // A pool: a target refused for good is the 400 (only it named), whatever the others' lookups met.
    const pool = uniqueId('pool');
    const both = await call(key, 'PUT', `/v1/pools/${pool}`, { targets: [{ id: 'a', kind: 'agent-http', url: `https://${down}/run` }, { id: 'b', kind: 'agent-http', url: `https://${hostName()}/run` }] });
    expect(both.status).toBe(400);
    const refusal = (await both.json()) as { error: { code: string; details: { path: string[]; code: string }[] } };
    expect(refusal.error.details).toEqual([expect.objectContaining({ path: ['targets', '1', 'url'], code: 'outbound_refused' })]);
    const onlyDown = await call(key, 'PUT', `/v1/pools/${pool}`, { targets: [{ id: 'a', kind: 'agent-http', url: `https://${down}/run` }] });
    expect(onlyDown.status).toBe(503);
    expect((await call(key, 'GET', `/v1/pools/${pool}`, undefined)).status).toBe(404);
  });

  it('retries an execution whose upstream host the resolver could not check, as a network failure is retried', async () => {
    const { key, tenantId } = await newTenant();
    const host = hostName();
    await setDns(host, { A: ['93.184.215.14'] });
    const created = await call(key, 'POST', '/v1/agents', { id: uniqueId(), upstream: { kind: 'agent-http', url: `https://${host}/run`, timeoutMs: 2_000 } });
    expect(created.status).toBe(201);
    const config = ((await created.json()) as { upstream: { kind: 'agent-http'; url: string; timeoutMs: number } }).upstream;

    await setDns(host, { httpStatus: 502 });
    clearDnsCache();
    const { upstream } = await resolveUpstream(config, { env: guardedEnv, tenantId, regions: [], policy: outboundPolicy(guardedEnv), deadlineAt: Date.now() + 30_000 });
    const request = { executionId: 'ex_resolver', agentId: 'a', intent: 'run', input: null, instructions: null, context: {}, history: [] };
    const outcome = await invokeUpstream(upstream, request, { deadlineAt: Date.now() + 10_000, signal: new AbortController().signal });
    expect(outcome.ok).toBe(false);
    if (outcome.ok) return;
    // Every attempt asked the resolver again; none was sent, and the failure may pass.
    expect(outcome.attempts).toBe(3);
    expect(outcome.error.code).toBe('upstream_failed');
    expect(outcome.error.message).toMatch(/could not be checked now.*HTTP 502/);
    expect(outcome.error.retryable).toBeUndefined();
  });

  it('answers a chat whose only target the resolver could not check 502 upstream_failed, which clients retry, not the 400 of a refused URL', async () => {
    const { key } = await newTenant();
    const host = hostName();
    await setDns(host, { A: ['93.184.215.14'] });
    const pool = uniqueId('pool');
    expect((await call(key, 'PUT', `/v1/pools/${pool}`, { targets: [{ id: 'remote', kind: 'openai-chat', baseUrl: `https://${host}/v1`, model: 'm' }] })).status).toBe(201);
    await setDns(host, { status: 2 });
    clearDnsCache();

    const res = await call(key, 'POST', '/v1/chat/completions', { model: pool, messages: [{ role: 'user', content: 'hello' }] });
    expect(res.status).toBe(502);
    expect(res.headers.get('x-should-retry')).toBeNull();
    expect(Number(res.headers.get('x-gateway-attempts'))).toBeGreaterThanOrEqual(1);
    const body = (await res.json()) as { error: { code: string; message: string } };
    expect(body.error.code).toBe('upstream_failed');
    expect(body.error.message).toMatch(/could not be checked now.*status 2/);
  });

  it('fails a chat over to a standby when the resolver cannot check its first target', async () => {
    const { key } = await newTenant();
    const host = hostName();
    await setDns(host, { A: ['93.184.215.14'] });
    const pool = uniqueId('pool');
    expect((await call(key, 'PUT', `/v1/pools/${pool}`, { targets: [{ id: 'remote', kind: 'openai-chat', baseUrl: `https://${host}/v1`, model: 'm' }, { id: 'standby', kind: 'builtin', priority: 1 }] })).status).toBe(201);
    await setDns(host, { httpStatus: 502 });
    clearDnsCache();
    const res = await call(key, 'POST', '/v1/chat/completions', { model: pool, messages: [{ role: 'user', content: 'hello' }] });
    expect(res.status).toBe(200);
    expect(res.headers.get('x-gateway-upstream')).toBe(`${pool}/standby`);
  });

  it("gives a pool target's health probe no verdict when the resolver could not check its host; a name with no answer is down", async () => {
    const { key } = await newTenant();
    const outage = hostName();
    const gone = hostName();
    for (const host of [outage, gone]) await setDns(host, { A: ['93.184.215.14'] });
    const pool = uniqueId('pool');
    const targets = [{ id: 'outage', kind: 'agent-http', url: `https://${outage}/run` }, { id: 'gone', kind: 'agent-http', url: `https://${gone}/run` }, { id: 'standby', kind: 'builtin', priority: 1 }];
    expect((await call(key, 'PUT', `/v1/pools/${pool}`, { targets })).status).toBe(201);
    await setDns(outage, { httpStatus: 502 });
    await setDns(gone, { status: 3 });
    clearDnsCache();

    const ctx = createExecutionContext();
    await worker.scheduled(createScheduledController({ cron: '* * * * *' }), guardedEnv as Env, ctx);
    await waitOnExecutionContext(ctx);
    const view = (await (await call(key, 'GET', `/v1/pools/${pool}`, undefined)).json()) as { targets: { id: string; health: { healthy: boolean; probe: { ok: boolean; error?: string } | null } }[] };
    const health = Object.fromEntries(view.targets.map((t) => [t.id, t.health]));
    expect(health.outage).toMatchObject({ healthy: true, probe: null });
    expect(health.gone).toMatchObject({ healthy: false, probe: { ok: false, error: expect.stringMatching(/^refused: .*NXDOMAIN/) } });
    expect(health.standby).toMatchObject({ healthy: true, probe: { ok: true } });
  });
});

describe('outbound guard: a resolver outage on the A2A face', () => {
  it('answers a push config whose host cannot be checked now an error to retry, not -32602 invalid params', async () => {
    const host = hostName();
    await setDns(host, { httpStatus: 503 });
    const hooks = { cancel: () => false, outboundPolicy: () => outboundPolicy(guardedEnv), live: () => true };
    // The check refuses before the store reads anything, so no storage is needed to ask it.
    const store = new A2AStore(null as never, null as never, null as never, hooks);
    const error = await store.checkConfig('task', { id: 'c', url: `https://${host}/push` }).then(() => null, (e: unknown) => e);
    expect(jsonRpcError('1.0', error)).toMatchObject({ code: -32603, message: expect.stringMatching(/cannot be checked right now.*retry later/) });
    expect(jsonRpcError('0.3', error)).toMatchObject({ code: -32603 });
    const gone = hostName(); // NXDOMAIN: a config to correct
    const refused = await store.checkConfig('task', { id: 'c', url: `https://${gone}/push` }).then(() => null, (e: unknown) => e);
    expect(jsonRpcError('1.0', refused)).toMatchObject({ code: -32602, message: expect.stringMatching(/push notification URL refused.*NXDOMAIN/) });
  });

  it('tells the client so through the endpoint (a set config, one given with a send or a streaming send, both versions): the message says to retry, where it used to be the generic internal error', async () => {
    const { key, tenantId } = await newTenant();
    const id = await newAgent(key);
    const rpc = (method: string, params: unknown, version = '1.0') =>
      api(`/a2a/${id}/`, { key, body: { jsonrpc: '2.0', id: 1, method, params }, headers: version ? { 'a2a-version': version } : {} });
    const message = { messageId: `m-${uniqueId('msg')}`, role: 'ROLE_USER', parts: [{ text: 'hello' }] };
    const task = (await rpc('SendMessage', { message })).body.result.task;
    const host = hostName();
    await setDns(host, { httpStatus: 503 });
    // The agent's object checks push URLs under its own env: the guard on there, as in production.
    const stub = env.AGENTS.get(env.AGENTS.idFromName(`${tenantId}/${id}`));
    const guarded = { ALLOW_PRIVATE_UPSTREAMS: undefined, DNS_RESOLVER_URL: resolver };
    const saved = await runInDurableObject(stub, (instance) => {
      const objectEnv = (instance as unknown as { env: Record<string, unknown> }).env;
      const before = { ALLOW_PRIVATE_UPSTREAMS: objectEnv.ALLOW_PRIVATE_UPSTREAMS, DNS_RESOLVER_URL: objectEnv.DNS_RESOLVER_URL };
      Object.assign(objectEnv, guarded);
      return before;
    });
    try {
      const url = `https://${host}/push`;
      const retry = expect.stringMatching(/^push notification URL cannot be checked right now \(.*\); retry later$/);
      const answers = [
        await rpc('CreateTaskPushNotificationConfig', { taskId: task.id, id: 'c1', url }),
        await rpc('SendMessage', { message: { ...message, messageId: `m-${uniqueId('msg')}` }, configuration: { taskPushNotificationConfig: { url } } }),
        await rpc('SendStreamingMessage', { message: { ...message, messageId: `m-${uniqueId('msg')}` }, configuration: { taskPushNotificationConfig: { url } } }),
        await rpc('tasks/pushNotificationConfig/set', { taskId: task.id, pushNotificationConfig: { id: 'c2', url } }, ''),
      ];
      for (const answer of answers) expect(answer.body.error, JSON.stringify(answer.body)).toMatchObject({ code: -32603, message: retry });
    } finally {
      await runInDurableObject(stub, (instance) => { Object.assign((instance as unknown as { env: Record<string, unknown> }).env, saved); });
    }
    // Nothing was stored.
    expect((await rpc('ListTaskPushNotificationConfigs', { taskId: task.id })).body.result.configs ?? []).toEqual([]);
  });
});
