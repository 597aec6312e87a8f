import { env, runInDurableObject } from 'cloudflare:test';
import { beforeEach, describe, expect, it } from 'vitest';
import { createApp } from '../worker/app';
import { AgentWebhooks } from '../durable/agent-webhooks';
import { DeferredSchema } from '../durable/agent-schema';
import { Sql } from '../durable/sql';
import { clearDnsCache, resolveName } from '../worker/upstream/dns-resolver';
import { checkOutboundUrl, outboundPolicy } from '../worker/upstream/outbound-guard';
import { invokeUpstream } from '../worker/upstream/invoke';
import { resolveUpstream } from '../worker/upstream/resolve';
import { newAgent, newTenant, uniqueId } from './support/api';

/**
 * The app as production runs it: ALLOW_PRIVATE_UPSTREAMS unset, so the guard is on, resolving
 * names with the test's own DNS-over-HTTPS server (the mock upstream's /dns-query).
 */
const resolver = `${env.MOCK_UPSTREAM_URL}/dns-query`;
const guardedEnv = { ...env, ALLOW_PRIVATE_UPSTREAMS: undefined, DNS_RESOLVER_URL: resolver };
const app = createApp();

const call = (key: string, method: string, path: string, body: unknown, environment: object = guardedEnv) =>
  app.request(path, { method, headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify(body) }, environment);

/** Sets what the test resolver answers for `name` (unknown names are NXDOMAIN). */
async function setDns(name: string, answers: { A?: string[]; AAAA?: string[]; ttl?: number; status?: number; httpStatus?: number }): Promise<void> {
  const res = await fetch(`${env.MOCK_UPSTREAM_URL}/dns?name=${encodeURIComponent(name)}`, { method: 'POST', body: JSON.stringify(answers) });
  expect(res.status).toBe(200);
}

const hostName = () => `${uniqueId('svc')}.example.com`;

beforeEach(() => clearDnsCache());

describe('outgoing-request guard: literal URLs (production settings)', () => {
  it('refuses pool targets on private, loopback or plain-http URLs, storing nothing', async () => {
    const { key } = await newTenant();
    for (const url of ['http://api.example.com/agent', 'https://127.0.0.1/agent', 'https://10.1.2.3/agent', 'https://169.254.169.254/latest', 'https://localhost/agent', 'https://[fd00:ec2::254]/']) {
      const res = await call(key, 'PUT', '/v1/pools/p', { targets: [{ id: 't', kind: 'agent-http', url }] });
      expect(res.status, url).toBe(400);
      const body = (await res.json()) as { error: { code: string; details: { path: string[] }[] } };
      expect(body.error.code).toBe('invalid_request');
      expect(body.error.details[0]?.path).toEqual(['targets', '0', 'url']);
    }
    const read = await app.request('/v1/pools/p', { headers: { authorization: `Bearer ${key}` } }, guardedEnv);
    expect(read.status).toBe(404);
  });

  it('refuses local-only names however many trailing dots they are spelt with, whatever public DNS answers', async () => {
    const { key } = await newTenant();
    // A resolver that answers for the name (split horizon, or a public record) must not matter:
    // a local-only name is refused by its text, as the platform's own resolver may answer it privately.
    const name = `${uniqueId('svc')}.internal`;
    await setDns(name, { A: ['93.184.215.14'] });
    for (const url of [`https://${name}../run`, `https://${name}.%2E/run`, 'https://localhost.../run', 'https://printer.local../run']) {
      const res = await call(key, 'POST', '/v1/agents', { upstream: { kind: 'agent-http', url } });
      expect(res.status, url).toBe(400);
      expect(((await res.json()) as { error: { message: string } }).error.message, url).toContain('is a local name');
    }
    // So is a literal address: the URL parser reads `127.0.0.1..` as a name, which a resolver
    // answering any name would pass, and which the platform's own lookup reads as 127.0.0.1.
    await setDns('127.0.0.1', { A: ['93.184.215.14'] });
    const literal = await call(key, 'POST', '/v1/agents', { upstream: { kind: 'agent-http', url: 'https://127.0.0.1../run' } });
    expect(literal.status).toBe(400);
    expect(((await literal.json()) as { error: { message: string } }).error.message).toContain('127.0.0.1: loopback');
  });

  it('refuses an agent upstream on a private address', async () => {
    const { key } = await newTenant();
    const res = await call(key, 'POST', '/v1/agents', { upstream: { kind: 'agent-http', url: 'https://192.168.1.10/run' } });
    expect(res.status).toBe(400);
  });
});

describe('outgoing-request guard: names are resolved (DNS over HTTPS)', () => {
  it('accepts a target whose name resolves only to public addresses', async () => {
    const { key } = await newTenant();
    const host = hostName();
    await setDns(host, { A: ['93.184.215.14'], AAAA: ['2606:2800:21f:cb07:6820:80da:af6b:8b2c'] });
    const res = await call(key, 'PUT', '/v1/pools/public', { targets: [{ id: 't', kind: 'openai-chat', baseUrl: `https://${host}/v1`, model: 'm' }] });
    expect(res.status).toBe(201);
  });

  it.each([
    ['loopback A', { A: ['127.0.0.1'] }],
    ['one private answer among public ones', { A: ['93.184.215.14', '10.0.0.7'] }],
    ['the metadata address', { A: ['169.254.169.254'] }],
    ['carrier-grade NAT', { A: ['100.100.1.1'] }],
    ['benchmarking 198.18/15', { A: ['198.19.0.1'] }],
    ['reserved 240/4', { A: ['250.1.2.3'] }],
    ['0.0.0.0/8', { A: ['0.1.2.3'] }],
    ['IPv6 loopback', { AAAA: ['::1'] }],
    ['IPv6 unique local (EC2 metadata)', { AAAA: ['fd00:ec2::254'] }],
    ['IPv6 link-local', { AAAA: ['fe80::1'] }],
    ['IPv4-mapped loopback', { AAAA: ['::ffff:127.0.0.1'] }],
    ['IPv4-mapped private, hex form', { AAAA: ['::ffff:a00:1'] }],
    ['NAT64 embedding a private IPv4', { AAAA: ['64:ff9b::10.0.0.1'] }],
    ['6to4 embedding loopback', { AAAA: ['2002:7f00:1::1'] }],
    ['IPv6 multicast', { AAAA: ['ff02::1'] }],
  ])('refuses a webhook whose name resolves to %s (400, nothing stored)', async (_label, answers) => {
    const { key } = await newTenant();
    const agentId = await newAgent(key);
    const host = hostName();
    await setDns(host, answers);
    const res = await call(key, 'POST', `/v1/agents/${agentId}/webhooks`, { url: `https://${host}/hook` });
    expect(res.status).toBe(400);
    const body = (await res.json()) as { error: { code: string; message: string; details: { path: string[]; code: string }[] } };
    expect(body.error.code).toBe('invalid_request');
    expect(body.error.message).toContain('resolves to a refused address');
    expect(body.error.details[0]).toMatchObject({ path: ['url'], code: 'outbound_refused' });
    const list = await app.request(`/v1/agents/${agentId}/webhooks`, { headers: { authorization: `Bearer ${key}` } }, guardedEnv);
    expect(((await list.json()) as { data: unknown[] }).data).toEqual([]);
  });

  it('fails closed when the name cannot be resolved', async () => {
    const { key } = await newTenant();
    const missing = hostName(); // never set: NXDOMAIN
    const refusedQuestion = hostName();
    await setDns(refusedQuestion, { httpStatus: 400 });
    const empty = hostName();
    await setDns(empty, {});
    for (const [host, why] of [[missing, 'NXDOMAIN'], [refusedQuestion, 'HTTP 400'], [empty, 'no A or AAAA']] as const) {
      const res = await call(key, 'POST', '/v1/agents', { upstream: { kind: 'agent-http', url: `https://${host}/run` } });
      expect(res.status, host).toBe(400);
      expect(((await res.json()) as { error: { message: string } }).error.message).toContain(why);
    }
    // The resolver's own outage (5xx, SERVFAIL, unreachable) stores nothing either, but is a
    // 503 to retry: test/outbound-guard-resolver.test.ts.
  });

  it('permits private answers inside OUTBOUND_ALLOW_CIDRS, and nothing else', async () => {
    const { key } = await newTenant();
    const withVpc = { ...guardedEnv, OUTBOUND_ALLOW_CIDRS: '10.20.0.0/16, fd12:3456::/32, not-a-cidr' };
    const inVpc = hostName();
    await setDns(inVpc, { A: ['10.20.3.4'], AAAA: ['fd12:3456::9'] });
    const outside = hostName();
    await setDns(outside, { A: ['10.21.0.1'] });
    expect((await call(key, 'PUT', '/v1/pools/vpc', { targets: [{ id: 't', kind: 'agent-http', url: `https://${inVpc}/run` }] }, withVpc)).status).toBe(201);
    expect((await call(key, 'PUT', '/v1/pools/vpc2', { targets: [{ id: 't', kind: 'agent-http', url: `https://${outside}/run` }] }, withVpc)).status).toBe(400);
    // Literal addresses follow the same list; loopback stays refused.
    expect((await call(key, 'PUT', '/v1/pools/vpc3', { targets: [{ id: 't', kind: 'agent-http', url: 'https://10.20.9.9/run' }] }, withVpc)).status).toBe(201);
    expect((await call(key, 'PUT', '/v1/pools/vpc4', { targets: [{ id: 't', kind: 'agent-http', url: 'https://127.0.0.1/run' }] }, withVpc)).status).toBe(400);
    // Without the list the same name is refused.
    expect((await call(key, 'PUT', '/v1/pools/vpc5', { targets: [{ id: 't', kind: 'agent-http', url: `https://${inVpc}/run` }] })).status).toBe(400);
  });

  it('caches answers for their TTL, and not at all with TTL 0', async () => {
    const cached = hostName();
    await setDns(cached, { A: ['93.184.215.14'], ttl: 60 });
    expect(await resolveName(cached, resolver)).toEqual({ ok: true, addresses: ['93.184.215.14'] });
    await setDns(cached, { A: ['127.0.0.1'], ttl: 60 });
    expect(await resolveName(cached, resolver)).toEqual({ ok: true, addresses: ['93.184.215.14'] });
    expect(await resolveName(cached, resolver, Date.now() + 61_000)).toEqual({ ok: true, addresses: ['127.0.0.1'] });

    const uncached = hostName();
    await setDns(uncached, { A: ['93.184.215.14'] });
    expect((await checkOutboundUrl(`https://${uncached}/`, outboundPolicy(guardedEnv))).ok).toBe(true);
    await setDns(uncached, { A: ['127.0.0.1'] });
    expect((await checkOutboundUrl(`https://${uncached}/`, outboundPolicy(guardedEnv))).ok).toBe(false);
  });

  it('is off entirely with ALLOW_PRIVATE_UPSTREAMS="true" (no resolution)', async () => {
    const policy = outboundPolicy({ ALLOW_PRIVATE_UPSTREAMS: 'true', DNS_RESOLVER_URL: 'http://127.0.0.1:9/dns-query' });
    expect(await checkOutboundUrl(`https://${hostName()}/`, policy)).toEqual({ ok: true });
    expect(await checkOutboundUrl('http://127.0.0.1:8787/', policy)).toEqual({ ok: true });
    for (const value of [undefined, 'false', 'TRUE', '1']) {
      expect(outboundPolicy({ ALLOW_PRIVATE_UPSTREAMS: value }).allowPrivate, String(value)).toBe(false);
    }
  });
});

describe('outgoing-request guard: re-checked before every call', () => {
  it('an agent upstream stored while public is refused at call time once its name points at 127.0.0.1', async () => {
    const { key, tenantId } = await newTenant();
    const host = hostName();
    await setDns(host, { A: ['93.184.215.14'] });
    const url = `https://${host}/run`;
    const created = await call(key, 'POST', '/v1/agents', { id: uniqueId(), upstream: { kind: 'agent-http', url, timeoutMs: 2_000 } });
    expect(created.status).toBe(201);
    const config = ((await created.json()) as { upstream: { kind: 'agent-http'; url: string; timeoutMs: number } }).upstream;

    await setDns(host, { A: ['127.0.0.1'] });
    const { upstream } = await resolveUpstream(config, { env: guardedEnv, tenantId, regions: [], policy: outboundPolicy(guardedEnv), deadlineAt: Date.now() + 30_000 });
    const request = { executionId: 'ex_guard', agentId: 'a', intent: 'run', input: null, instructions: null, context: {}, history: [] };
    const outcome = await invokeUpstream(upstream, request, { deadlineAt: Date.now() + 5_000, signal: new AbortController().signal });
    expect(outcome.ok).toBe(false);
    if (outcome.ok) return;
    expect(outcome.attempts).toBe(1); // refused is final: no retries against a refused address
    expect(outcome.error.message).toMatch(/refused.*127\.0\.0\.1.*loopback/);
  });

  it("a chat to a pool fails over from a target whose name now points at 127.0.0.1 (never sent, no attempt); with no other target, 400 with no attempt", async () => {
    const { key } = await newTenant();
    const host = hostName();
    await setDns(host, { A: ['93.184.215.14'] });
    const remote = { id: 'remote', kind: 'openai-chat', baseUrl: `https://${host}/v1`, model: 'm' };
    const withStandby = uniqueId('pool');
    const alone = uniqueId('pool');
    expect((await call(key, 'PUT', `/v1/pools/${withStandby}`, { targets: [remote, { id: 'standby', kind: 'builtin', priority: 1 }] })).status).toBe(201);
    expect((await call(key, 'PUT', `/v1/pools/${alone}`, { targets: [remote] })).status).toBe(201);
    await setDns(host, { A: ['127.0.0.1'] });
    clearDnsCache();

    // The refused target was never called: the standby answers, and it is the one attempt made.
    for (let i = 0; i < 3; i++) {
      const res = await call(key, 'POST', '/v1/chat/completions', { model: withStandby, messages: [{ role: 'user', content: 'hello' }] });
      expect(res.status, `chat ${i}`).toBe(200);
      expect(res.headers.get('x-gateway-upstream')).toBe(`${withStandby}/standby`);
      expect(res.headers.get('x-gateway-attempts')).toBe('1');
    }
    // No target could be called: the documented 400 with no attempt, not a 502 naming a call never made.
    const res = await call(key, 'POST', '/v1/chat/completions', { model: alone, messages: [{ role: 'user', content: 'hello' }] });
    expect(res.status).toBe(400);
    expect(res.headers.get('x-gateway-attempts')).toBe('0');
    const body = (await res.json()) as { error: { code: string; message: string } };
    expect(body.error.code).toBe('invalid_request');
    expect(body.error.message).toMatch(/refused.*127\.0\.0\.1/);
  });

  it("an execution through a pool goes on to the next target when one's name now points at 127.0.0.1; with none left, the refusal, not retried", async () => {
    const { key, tenantId } = await newTenant();
    const host = hostName();
    await setDns(host, { A: ['93.184.215.14'] });
    const remote = { id: 'remote', kind: 'agent-http', url: `https://${host}/run` };
    const withStandby = uniqueId('pool');
    const alone = uniqueId('pool');
    expect((await call(key, 'PUT', `/v1/pools/${withStandby}`, { targets: [remote, { id: 'standby', kind: 'builtin', priority: 1 }] })).status).toBe(201);
    expect((await call(key, 'PUT', `/v1/pools/${alone}`, { targets: [remote] })).status).toBe(201);
    await setDns(host, { A: ['127.0.0.1'] });
    clearDnsCache();
    const request = { executionId: 'ex_guard_pool', agentId: 'a', intent: 'chat', input: { message: 'hello' }, instructions: null, context: {}, history: [] };
    const run = async (pool: string) => {
      const { upstream } = await resolveUpstream({ kind: 'pool', pool }, { env: guardedEnv, tenantId, regions: [], policy: outboundPolicy(guardedEnv), deadlineAt: Date.now() + 30_000 });
      return invokeUpstream(upstream, request, { deadlineAt: Date.now() + 10_000, signal: new AbortController().signal });
    };
    for (let i = 0; i < 3; i++) {
      const outcome = await run(withStandby);
      expect(outcome.ok, `execution ${i}: ${JSON.stringify(outcome)}`).toBe(true);
    }
    const outcome = await run(alone);
    expect(outcome.ok).toBe(false);
    if (outcome.ok) return;
    expect(outcome.error.message).toMatch(/refused.*127\.0\.0\.1.*loopback/);
    expect(outcome.error.retryable).toBe(false);
  });

  it('a webhook delivery to a re-pointed name fails that attempt with a clear error and is retried later', async () => {
    const { key, tenantId } = await newTenant();
    const agentId = await newAgent(key);
    const host = hostName();
    const stub = env.AGENTS.get(env.AGENTS.idFromName(`${tenantId}/${agentId}`));
    const policy = outboundPolicy(guardedEnv);
    await setDns(host, { A: ['127.0.0.1'] });
    const delivery = await runInDurableObject(stub, async (_instance, state) => {
      // The object's own delivery code, on its own storage, with the guard on.
      const sql = new Sql(state.storage.sql);
      const webhooks = new AgentWebhooks(sql, new DeferredSchema(sql, state.storage), () => policy);
      webhooks.create({ url: `https://${host}/hook` }, Date.now());
      expect(webhooks.fanOut('execution.succeeded', { id: 'ex_x' }, Date.now())).toBe(1);
      expect(await webhooks.deliverDue(Date.now() + 1)).toBe(0);
      return webhooks.listDeliveries({ limit: 10 })[0];
    });
    expect(delivery).toMatchObject({ status: 'pending', attempts: 1, lastStatus: null });
    expect(delivery?.lastError).toMatch(/webhook URL refused: .*resolves to a refused address.*127\.0\.0\.1/);
  });
});
