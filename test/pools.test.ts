import { env, SELF } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';
import { sealSecret } from '../worker/pools/secrets';
import { encodeCursor } from '../worker/lib/cursor';
import { probeTarget } from '../worker/pools/probe';
import { getPool, LIST_POOLS_QUERY, openTargets, putPool } from '../worker/pools/store';
import { outboundPolicy } from '../worker/upstream/outbound-guard';
import { PutPoolBody, type StoredPool } from '../worker/schemas/pool';
import { ADMIN, api, BASE, chatTarget, mockUrl, newAgent, newTenant, uniqueId } from './support/api';

const target = (id: string, extra: Record<string, unknown> = {}) => ({ id, kind: 'agent-http', url: mockUrl(`/agent?target=${id}`), ...extra });

async function counts(): Promise<Record<string, number>> {
  return (await fetch(`${env.MOCK_UPSTREAM_URL}/counts`)).json();
}

describe('pools API', () => {
  it('creates (201), replaces (200), reads, lists and deletes a pool', async () => {
    const { key } = await newTenant();
    const body = { strategy: 'least-inflight', targets: [target('a'), target('b', { weight: 3, priority: 1, region: 'weur' })] };
    const created = await api('/v1/pools/main', { method: 'PUT', key, body });
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({ name: 'main', strategy: 'least-inflight', targets: [{ id: 'a', weight: 1, priority: 0 }, { id: 'b', weight: 3, priority: 1, region: 'weur' }] });
    const replaced = await api('/v1/pools/main', { method: 'PUT', key, body: { targets: [target('a')] } });
    expect(replaced.status).toBe(200);
    expect(replaced.body.createdAt).toBe(created.body.createdAt);
    const read = await api('/v1/pools/main', { key });
    expect(read.status).toBe(200);
    expect(read.body.targets).toHaveLength(1);
    expect(read.body.targets[0].health).toMatchObject({ circuit: 'closed', inflight: 0, healthy: true });
    const list = await api('/v1/pools', { key });
    expect(list.body.data.map((p: { name: string }) => p.name)).toEqual(['main']);
    expect((await api('/v1/pools/main', { method: 'DELETE', key })).status).toBe(204);
    expect((await api('/v1/pools/main', { key })).status).toBe(404);
    expect((await api('/v1/pools/main', { method: 'DELETE', key })).status).toBe(404);
  });

  it('answers 201 to one PUT only when another creates the same pool between its read and its write, with the one createdAt', async () => {
    const { key, tenantId } = await newTenant();
    const body = PutPoolBody.parse({ targets: [target('a')] });
    // A D1 whose read of the pool, by the later PUT, ends only once another PUT has created it.
    let first: Awaited<ReturnType<typeof putPool>> | undefined;
    const racing = new Proxy(env.DB, {
      get(db, prop) {
        if (prop !== 'prepare') {
          const value: unknown = Reflect.get(db, prop);
          return typeof value === 'function' ? value.bind(db) : value;
        }
        return (sql: string) => {
          const statement = db.prepare(sql);
          if (first || !sql.startsWith('SELECT created_at, config FROM pools')) return statement;
          return {
            bind: (...values: unknown[]) => ({
              first: async () => {
                const seen = await statement.bind(...values).first();
                first = await putPool(env, tenantId, 'raced', body);
                return seen;
              },
            }),
          };
        };
      },
    });
    const later = await putPool({ ...env, DB: racing }, tenantId, 'raced', body);
    expect(first?.created).toBe(true);
    expect(later.created).toBe(false);
    const row = await env.DB.prepare('SELECT created_at, config FROM pools WHERE tenant_id = ? AND name = ?').bind(tenantId, 'raced').first<{ created_at: number; config: string }>();
    const createdAt = new Date(row?.created_at ?? 0).toISOString();
    expect(first?.pool.createdAt).toBe(createdAt);
    expect(later.pool.createdAt).toBe(createdAt);
    expect((JSON.parse(row?.config ?? '{}') as StoredPool).createdAt).toBe(createdAt);
    expect((await api('/v1/pools/raced', { key })).body.createdAt).toBe(createdAt);
  });

  it('seals credentials at rest and never returns them', async () => {
    const { key, tenantId } = await newTenant();
    const res = await api('/v1/pools/secret', { method: 'PUT', key, body: { targets: [{ id: 'o', kind: 'openai-chat', baseUrl: 'https://api.example.com/v1', model: 'm', apiKey: 'sk-live-abcdef9876' }] } });
    expect(res.status).toBe(201);
    expect(res.body.targets[0].apiKey).toBe('…9876');
    const row = await env.DB.prepare('SELECT config FROM pools WHERE tenant_id = ? AND name = ?').bind(tenantId, 'secret').first<{ config: string }>();
    expect(row?.config).not.toContain('sk-live');
    expect(row?.config).toContain('enc:v1:');
    expect(JSON.stringify((await api('/v1/pools/secret', { key })).body)).not.toContain('sk-live');
  });

  it('shows no character of a short credential, and takes its bare mask back as "keep"', async () => {
    const { key, tenantId } = await newTenant();
    const openai = (id: string, apiKey: string) => ({ id, kind: 'openai-chat', baseUrl: 'https://api.example.com/v1', model: 'm', apiKey });
    const keys = { tiny: 'abcd', short: 'sk-12345678', long: 'sk-123456789' };
    const body = { targets: Object.entries(keys).map(([id, k]) => openai(id, k)) };
    const res = await api('/v1/pools/short', { method: 'PUT', key, body });
    expect(res.status).toBe(201);
    expect(res.body.targets.map((t: { apiKey: string }) => t.apiKey)).toEqual(['…', '…', '…6789']);
    const read = await api('/v1/pools/short', { key });
    expect(read.body.targets.map((t: { apiKey: string }) => t.apiKey)).toEqual(['…', '…', '…6789']);
    // Nothing of a short credential is kept in clear at rest either.
    const row = await env.DB.prepare('SELECT config FROM pools WHERE tenant_id = ? AND name = ?').bind(tenantId, 'short').first<{ config: string }>();
    const stored = JSON.parse(String(row?.config)) as { targets: Record<string, unknown>[] };
    expect(stored.targets.map((t) => t.apiKeyLast4)).toEqual([undefined, undefined, '6789']);
    // The bare mask (or three ASCII dots) sent back keeps what is stored.
    const back = await api('/v1/pools/short', { method: 'PUT', key, body: { targets: [openai('tiny', '…'), openai('short', '...'), openai('long', '…6789')] } });
    expect(back.status).toBe(200);
    expect(back.body.targets.map((t: { apiKey: string }) => t.apiKey)).toEqual(['…', '…', '…6789']);
    const pool = await getPool(env, tenantId, 'short');
    expect(Object.fromEntries((await openTargets(env, tenantId, pool as StoredPool)).map((t) => [t.id, t.apiKey]))).toEqual(keys);
    // It keeps only a credential it stands for: a long one is not "…".
    const wrong = await api('/v1/pools/short', { method: 'PUT', key, body: { targets: [openai('long', '…')] } });
    expect(wrong.status).toBe(400);
    expect(wrong.body.error.details).toEqual([expect.objectContaining({ path: ['targets', '0', 'apiKey'], code: 'masked_credential' })]);
  });

  it("says which credential cannot be opened when UPSTREAM_ENCRYPTION_KEY is no longer the key it was sealed with, and what to do", async () => {
    const { key, tenantId } = await newTenant();
    // As an operator who replaced (or lost) the key would leave it: sealed under another key.
    const otherKey = btoa(String.fromCharCode(...new Uint8Array(32).fill(9)));
    const now = Date.now();
    const stored = {
      name: 'rekeyed',
      strategy: 'weighted-round-robin',
      targets: [{ ...chatTarget('o'), weight: 1, priority: 0, apiKey: await sealSecret(otherKey, 'sk-live-1234', `${tenantId}/rekeyed/o`) }],
      createdAt: new Date(now).toISOString(),
      updatedAt: new Date(now).toISOString(),
    };
    await env.DB.prepare('INSERT INTO pools (tenant_id, name, config, created_at, updated_at) VALUES (?, ?, ?, ?, ?)').bind(tenantId, 'rekeyed', JSON.stringify(stored), now, now).run();
    const expected = 'the stored credential of pool "rekeyed" target "o" cannot be opened with this gateway\'s UPSTREAM_ENCRYPTION_KEY (changed or unset since it was stored): PUT the pool again with its credential, or ask the operator to restore the key';

    const chat = await api('/v1/chat/completions', { key, body: { model: 'rekeyed', messages: [{ role: 'user', content: 'hi' }] } });
    expect(chat.status).toBe(500);
    expect(chat.body.error).toMatchObject({ code: 'internal_error', message: expected });

    // An execution on the pool fails (a sync one answers as any failed one does) with the same words.
    const agentId = await newAgent(key, { upstream: { kind: 'pool', pool: 'rekeyed' } });
    const run = await api(`/v1/agents/${agentId}/executions`, { key, body: { intent: 'x', input: {} } });
    expect(run.status).toBe(502);
    expect(run.body.error).toMatchObject({ code: 'upstream_failed', message: expected });
    const execution = await api(`/v1/agents/${agentId}/executions/${run.body.error.details.executionId}`, { key });
    expect(execution.body).toMatchObject({ status: 'failed', error: { code: 'internal_error', message: expected } });

    // Put again with its credential, it serves.
    const again = await api('/v1/pools/rekeyed', { method: 'PUT', key, body: { targets: [{ ...chatTarget('o'), apiKey: 'sk-live-1234' }] } });
    expect(again.status).toBe(200);
    expect((await api('/v1/chat/completions', { key, body: { model: 'rekeyed', messages: [{ role: 'user', content: 'hi' }] } })).status).toBe(200);
  });

  it('hides a short credential stored with its last four characters in clear (before they were hidden)', async () => {
    const { key, tenantId } = await newTenant();
    const now = Date.now();
    const legacy = {
      name: 'legacy',
      strategy: 'weighted-round-robin',
      targets: [{ id: 'o', kind: 'openai-chat', baseUrl: 'https://api.example.com/v1', model: 'm', weight: 1, priority: 0, apiKey: await sealSecret(env.UPSTREAM_ENCRYPTION_KEY, 'abc', `${tenantId}/legacy/o`), apiKeyLast4: 'abc' }],
      createdAt: new Date(now).toISOString(),
      updatedAt: new Date(now).toISOString(),
    };
    await env.DB.prepare('INSERT INTO pools (tenant_id, name, config, created_at, updated_at) VALUES (?, ?, ?, ?, ?)').bind(tenantId, 'legacy', JSON.stringify(legacy), now, now).run();
    const read = await api('/v1/pools/legacy', { key });
    expect(read.status).toBe(200);
    expect(read.body.targets[0].apiKey).toBe('…');
    const back = await api('/v1/pools/legacy', { method: 'PUT', key, body: { targets: [{ id: 'o', kind: 'openai-chat', baseUrl: 'https://api.example.com/v1', model: 'm', apiKey: '…' }] } });
    expect(back.status).toBe(200);
    const row = await env.DB.prepare('SELECT config FROM pools WHERE tenant_id = ? AND name = ?').bind(tenantId, 'legacy').first<{ config: string }>();
    expect(JSON.parse(String(row?.config)).targets[0].apiKeyLast4).toBeUndefined();
    const pool = await getPool(env, tenantId, 'legacy');
    expect((await openTargets(env, tenantId, pool as StoredPool))[0]?.apiKey).toBe('abc');
  });

  describe('a pool read, edited and put back', () => {
    const sealed = { id: 'o', kind: 'openai-chat', baseUrl: 'https://api.example.com/v1', model: 'm', apiKey: 'sk-live-abcdef9876' };
    /** The credential the gateway would send upstream for each target. */
    const credentials = async (tenantId: string, name: string) => {
      const pool = await getPool(env, tenantId, name);
      return Object.fromEntries((await openTargets(env, tenantId, pool as StoredPool)).map((t) => [t.id, t.apiKey]));
    };
    /** The body of a GET, without what only a view has. */
    const editable = ({ name: _n, createdAt: _c, updatedAt: _u, targets, ...rest }: Record<string, any>) => ({
      ...rest,
      targets: targets.map(({ health: _h, ...t }: Record<string, unknown>) => t),
    });

    it('keeps the stored credential when its masked form comes back', async () => {
      const { key, tenantId } = await newTenant();
      expect((await api('/v1/pools/rt', { method: 'PUT', key, body: { targets: [sealed] } })).status).toBe(201);
      const read = await api('/v1/pools/rt', { key });
      expect(read.body.targets[0].apiKey).toBe('…9876');
      const body = editable(read.body);
      body.targets[0].weight = 2;
      const put = await api('/v1/pools/rt', { method: 'PUT', key, body });
      expect(put.status).toBe(200);
      expect(put.body.targets[0]).toMatchObject({ apiKey: '…9876', weight: 2 });
      expect(await credentials(tenantId, 'rt')).toEqual({ o: 'sk-live-abcdef9876' });
      // A credential itself still replaces the stored one.
      await api('/v1/pools/rt', { method: 'PUT', key, body: { targets: [{ ...sealed, apiKey: 'sk-new-key-1234' }] } });
      expect(await credentials(tenantId, 'rt')).toEqual({ o: 'sk-new-key-1234' });
    });

    it('refuses a masked credential that matches nothing stored for that target, changing nothing', async () => {
      const { key, tenantId } = await newTenant();
      await api('/v1/pools/rt', { method: 'PUT', key, body: { targets: [sealed] } });
      const wrong = [
        { name: 'rt', targets: [{ ...sealed, apiKey: '…0000' }] },
        { name: 'rt', targets: [sealed, { ...sealed, id: 'other', apiKey: '…9876' }] },
        { name: 'fresh', targets: [{ ...sealed, apiKey: '…9876' }] },
        // A credential never follows a new URL: that would hand it to whoever runs the host.
        { name: 'rt', targets: [{ ...sealed, baseUrl: 'https://attacker.example/v1', apiKey: '…9876' }] },
      ];
      for (const { name, targets } of wrong) {
        const res = await api(`/v1/pools/${name}`, { method: 'PUT', key, body: { targets } });
        expect(res.status).toBe(400);
        expect(res.body.error.code).toBe('invalid_request');
        expect(res.body.error.message).toMatch(/masked form/);
        expect(res.body.error.details).toEqual([expect.objectContaining({ path: ['targets', String(targets.length - 1), 'apiKey'] })]);
      }
      expect(await credentials(tenantId, 'rt')).toEqual({ o: 'sk-live-abcdef9876' });
      expect((await api('/v1/pools/fresh', { key })).status).toBe(404);
    });

    it('takes the mask spelt with three ASCII dots (a transliterated ellipsis) as the mask itself', async () => {
      const { key, tenantId } = await newTenant();
      await api('/v1/pools/rt', { method: 'PUT', key, body: { targets: [sealed] } });
      const kept = await api('/v1/pools/rt', { method: 'PUT', key, body: { targets: [{ ...sealed, apiKey: '...9876', weight: 3 }] } });
      expect(kept.status).toBe(200);
      expect(kept.body.targets[0]).toMatchObject({ apiKey: '…9876', weight: 3 });
      expect(await credentials(tenantId, 'rt')).toEqual({ o: 'sk-live-abcdef9876' });
      const wrong = [
        { name: 'rt', targets: [{ ...sealed, apiKey: '...0000' }] },
        { name: 'fresh', targets: [{ ...sealed, apiKey: '...9876' }] },
        { name: 'rt', targets: [{ ...sealed, baseUrl: 'https://attacker.example/v1', apiKey: '...9876' }] },
      ];
      for (const { name, targets } of wrong) {
        const res = await api(`/v1/pools/${name}`, { method: 'PUT', key, body: { targets } });
        expect(res.status).toBe(400);
        expect(res.body.error.details).toEqual([expect.objectContaining({ path: ['targets', '0', 'apiKey'], code: 'masked_credential' })]);
      }
      expect(await credentials(tenantId, 'rt')).toEqual({ o: 'sk-live-abcdef9876' });
      // Dots followed by more than a mask shows are a credential like any other.
      await api('/v1/pools/rt', { method: 'PUT', key, body: { targets: [{ ...sealed, apiKey: '...sk-dotted-5678' }] } });
      expect(await credentials(tenantId, 'rt')).toEqual({ o: '...sk-dotted-5678' });
    });
  });

  it('rejects bad definitions with 400 and details, storing nothing', async () => {
    const { key } = await newTenant();
    const bad = [
      { targets: [] },
      { targets: [target('a', { weight: -1 })] },
      { targets: [{ id: 'x', kind: 'grpc', url: 'https://x.example' }] },
      { targets: [{ id: 'x', kind: 'agent-http' }] },
      { targets: [target('a'), target('a')] },
      { strategy: 'random', targets: [target('a')] },
    ];
    for (const body of bad) {
      const res = await api('/v1/pools/bad', { method: 'PUT', key, body });
      expect(res.status, JSON.stringify(body)).toBe(400);
      expect(res.body.error.code).toBe('invalid_request');
      expect(res.body.error.details.length).toBeGreaterThan(0);
    }
    expect((await api('/v1/pools/bad', { key })).status).toBe(404);
    expect((await api('/v1/pools/bad%20name', { key })).status).toBe(400);
  });

  it("refuses a URL, credential or model the target's kind does not use, naming it, storing nothing", async () => {
    const { key } = await newTenant();
    // Never checked by the outbound guard (the kind does not call it): refused rather than stored.
    const unused = [
      [{ ...target('a'), baseUrl: 'http://10.0.0.1/v1' }, 'baseUrl'],
      [{ id: 'o', kind: 'openai-chat', baseUrl: 'https://api.example.com/v1', model: 'm', url: 'http://169.254.169.254/latest' }, 'url'],
      [{ id: 'b', kind: 'builtin', url: 'https://x.example' }, 'url'],
      [{ id: 'b', kind: 'builtin', baseUrl: 'https://x.example/v1' }, 'baseUrl'],
      // A credential no call would carry, a model no call would name: most likely misplaced.
      [{ id: 'b', kind: 'builtin', apiKey: 'sk-meant-for-another-target' }, 'apiKey'],
      [{ ...target('m'), model: 'gpt-4o' }, 'model'],
    ] as const;
    for (const [t, member] of unused) {
      const res = await api('/v1/pools/unused', { method: 'PUT', key, body: { targets: [target('ok'), t] } });
      expect(res.status, JSON.stringify(t)).toBe(400);
      expect(res.body.error.code).toBe('invalid_request');
      expect(res.body.error.message).toContain(member);
      expect(res.body.error.details).toEqual([expect.objectContaining({ path: ['targets', '1', member] })]);
    }
    expect((await api('/v1/pools/unused', { key })).status).toBe(404);
  });

  it('refuses a repeated target id naming each repeat where it is, storing nothing', async () => {
    const { key } = await newTenant();
    // It was one issue at `targets` ("target ids must be unique"), naming neither the id nor where.
    const res = await api('/v1/pools/dup', { method: 'PUT', key, body: { targets: [target('a'), target('b'), target('a'), target('b'), target('a')] } });
    expect(res.status).toBe(400);
    expect(res.body.error.details).toEqual([
      expect.objectContaining({ path: ['targets', '2', 'id'], message: `target ids must be unique: "a" is also target 0's` }),
      expect.objectContaining({ path: ['targets', '3', 'id'], message: `target ids must be unique: "b" is also target 1's` }),
      expect.objectContaining({ path: ['targets', '4', 'id'], message: `target ids must be unique: "a" is also target 0's` }),
    ]);
    expect((await api('/v1/pools/dup', { key })).status).toBe(404);
  });

  it('refuses an apiKey with a control character (a line break, NUL), which no header carries, naming it, storing nothing', async () => {
    const { key } = await newTenant();
    // A line break or NUL made every call fail as "upstream connection failed" (fetch refuses the
    // header), retried and held against the target; a target refuses the other controls with a 400.
    for (const control of ['\n', '\r', '\u0000', '\u0001', '\t', '\u007f']) {
      const res = await api('/v1/pools/ctl', { method: 'PUT', key, body: { targets: [target('ok'), chatTarget('c', 'ok', { apiKey: `sk-control${control}key-1234` })] } });
      expect(res.status, JSON.stringify(control)).toBe(400);
      expect(res.body.error.code).toBe('invalid_request');
      expect(res.body.error.details).toEqual([expect.objectContaining({ path: ['targets', '1', 'apiKey'] })]);
      expect(res.body.error.message).toContain('control character');
    }
    expect((await api('/v1/pools/ctl', { key })).status).toBe(404);
    // Any other character is the credential's own (a space, a letter beyond ASCII).
    expect((await api('/v1/pools/ctl', { method: 'PUT', key, body: { targets: [chatTarget('c', 'ok', { apiKey: 'sk-spaced key-é-1234' })] } })).status).toBe(201);
  });

  it('refuses a first-byte or idle limit above the total deadline, naming both, and keeps serving a pool stored with one before', async () => {
    const { key, tenantId } = await newTenant();
    const late = [
      [{ timeouts: { firstByteMs: 5_000, totalMs: 2_000 }, targets: [target('a')] }, ['timeouts', 'firstByteMs'], 'timeouts.firstByteMs'],
      [{ timeouts: { totalMs: 2_000 }, targets: [target('a'), target('b', { timeoutMs: 3_000 })] }, ['targets', '1', 'timeoutMs'], 'targets[1].timeoutMs'],
      [{ timeouts: { idleMs: 5_000, totalMs: 2_000 }, targets: [target('a')] }, ['timeouts', 'idleMs'], 'timeouts.idleMs'],
    ] as const;
    for (const [body, path, field] of late) {
      const res = await api('/v1/pools/late', { method: 'PUT', key, body });
      expect(res.status, field).toBe(400);
      expect(res.body.error.code).toBe('invalid_request');
      expect(res.body.error.message).toContain(field);
      expect(res.body.error.message).toContain('timeouts.totalMs');
      expect(res.body.error.details).toEqual([expect.objectContaining({ path })]);
    }
    expect((await api('/v1/pools/late', { key })).status).toBe(404);
    expect((await api('/v1/pools/late', { method: 'PUT', key, body: { timeouts: { firstByteMs: 2_000, idleMs: 2_000, totalMs: 2_000 }, targets: [target('a', { timeoutMs: 2_000 })] } })).status).toBe(201);
    // Checked on write only: a pool stored before (with a credential its builtin target never sends) still serves.
    const stored: PutPoolBody = { strategy: 'weighted-round-robin', timeouts: { firstByteMs: 5_000, idleMs: 5_000, totalMs: 2_000 }, targets: [{ id: 'b', kind: 'builtin', apiKey: 'sk-stored-before-1234', weight: 1, priority: 0 }] };
    await putPool(env, tenantId, 'older', stored);
    expect((await api('/v1/pools/older', { key })).status).toBe(200);
    const chat = await api('/v1/chat/completions', { key, body: { model: 'older', messages: [{ role: 'user', content: 'hello' }] } });
    expect(chat.status).toBe(200);
  });

  it('refuses a first-byte or idle limit above the default total deadline (60 s) when totalMs is not given, naming the field', async () => {
    const { key } = await newTenant();
    const late = [
      [{ timeouts: { firstByteMs: 60_001 }, targets: [target('a')] }, ['timeouts', 'firstByteMs'], 'timeouts.firstByteMs'],
      [{ timeouts: { idleMs: 1_000 }, targets: [target('a'), target('b', { timeoutMs: 120_000 })] }, ['targets', '1', 'timeoutMs'], 'targets[1].timeoutMs'],
      [{ targets: [target('a', { timeoutMs: 300_000 })] }, ['targets', '0', 'timeoutMs'], 'targets[0].timeoutMs'],
      [{ timeouts: { idleMs: 60_001 }, targets: [target('a')] }, ['timeouts', 'idleMs'], 'timeouts.idleMs'],
    ] as const;
    for (const [body, path, field] of late) {
      const res = await api('/v1/pools/late-default', { method: 'PUT', key, body });
      expect(res.status, field).toBe(400);
      expect(res.body.error.code).toBe('invalid_request');
      expect(res.body.error.message).toContain(field);
      expect(res.body.error.message).toContain('60000');
      expect(res.body.error.details).toEqual([expect.objectContaining({ path })]);
    }
    expect((await api('/v1/pools/late-default', { key })).status).toBe(404);
    // Equal to the default deadline is allowed, as it is against a given totalMs.
    const equal = { timeouts: { firstByteMs: 60_000, idleMs: 60_000 }, targets: [target('a', { timeoutMs: 60_000 })] };
    expect((await api('/v1/pools/late-default', { method: 'PUT', key, body: equal })).status).toBe(201);
  });

  it('lists pools in name order a page at a time, only the tenant\'s own, and refuses a bad limit or cursor naming it', async () => {
    const a = await newTenant();
    const b = await newTenant();
    const builtin = { targets: [{ id: 't', kind: 'builtin' }] };
    for (const name of ['b.2', 'a-1', 'A_0', 'c.3', 'z']) expect((await api(`/v1/pools/${name}`, { method: 'PUT', key: a.key, body: builtin })).status).toBe(201);
    for (const name of ['a.b', 'b.3']) expect((await api(`/v1/pools/${name}`, { method: 'PUT', key: b.key, body: builtin })).status).toBe(201);

    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const res: { status: number; body: { data: { name: string }[]; nextCursor: string | null } } = await api(`/v1/pools?limit=2${cursor ? `&cursor=${cursor}` : ''}`, { key: a.key });
      expect(res.status).toBe(200);
      expect(res.body.data.length).toBeLessThanOrEqual(2);
      seen.push(...res.body.data.map((p) => p.name));
      cursor = res.body.nextCursor;
      pages++;
    } while (cursor !== null && pages < 10);
    expect(pages).toBe(3);
    expect(seen).toEqual(['A_0', 'a-1', 'b.2', 'c.3', 'z']);
    // The default page is the whole list, as it was before the list paged.
    expect((await api('/v1/pools', { key: a.key })).body).toMatchObject({ data: seen.map((name) => ({ name })), nextCursor: null });

    // A cursor names its tenant's list: in another tenant's it is 400 (it paged that list from
    // the same name on, skipping what came before without a word), as every list's cursor is.
    const afterB2 = await api('/v1/pools?limit=3', { key: a.key });
    const crossed = await api(`/v1/pools?cursor=${afterB2.body.nextCursor}`, { key: b.key });
    expect(crossed.status).toBe(400);
    expect(crossed.body.error).toMatchObject({ code: 'invalid_request', param: 'cursor' });

    for (const [query, field] of [['limit=0', 'limit'], ['limit=501', 'limit'], ['limit=x', 'limit'], ['cursor=%25%25', 'cursor'], [`cursor=${encodeCursor('has space')}`, 'cursor']] as const) {
      const res = await api(`/v1/pools?${query}`, { key: a.key });
      expect(res.status, query).toBe(400);
      expect(res.body.error.code).toBe('invalid_request');
      expect(res.body.error.details[0].path, query).toEqual([field]);
    }
  });

  it('pages past 500 pools: the default page holds 500 and says where the rest are, and /v1/models lists them all', async () => {
    const { key, tenantId } = await newTenant();
    const now = Date.now();
    const names = Array.from({ length: 501 }, (_, i) => `p${String(i).padStart(3, '0')}`);
    const row = (name: string) => {
      const pool: StoredPool = { name, strategy: 'weighted-round-robin', targets: [{ id: 't', kind: 'builtin', weight: 1, priority: 0 }], createdAt: new Date(now).toISOString(), updatedAt: new Date(now).toISOString() };
      return env.DB.prepare('INSERT INTO pools (tenant_id, name, config, created_at, updated_at) VALUES (?, ?, ?, ?, ?)').bind(tenantId, name, JSON.stringify(pool), now, now);
    };
    await env.DB.batch(names.map(row));
    const first = await api('/v1/pools', { key });
    expect(first.body.data).toHaveLength(500);
    expect(first.body.nextCursor).toEqual(expect.any(String));
    const rest = await api(`/v1/pools?cursor=${first.body.nextCursor}`, { key });
    expect(rest.body).toMatchObject({ data: [{ name: 'p500' }], nextCursor: null });
    const models = await api('/v1/models', { key });
    expect(models.body.data.map((m: { id: string }) => m.id)).toEqual(names);
  });

  it('pages through the primary key: the list query searches (tenant_id, name) and sorts nothing', async () => {
    const { results } = await env.DB.prepare(`EXPLAIN QUERY PLAN ${LIST_POOLS_QUERY}`).bind('tn', '', 10).all<{ detail: string }>();
    const plan = results.map((r) => r.detail).join('\n');
    expect(plan).toMatch(/SEARCH pools USING (INDEX sqlite_autoindex_pools_1|PRIMARY KEY) \(tenant_id=\? AND name>\?\)/);
    expect(plan).not.toContain('TEMP B-TREE');
  });

  it("keeps pools per tenant: another tenant's pool is a 404 and cannot be named by an agent", async () => {
    const a = await newTenant();
    const b = await newTenant();
    await api('/v1/pools/shared-name', { method: 'PUT', key: a.key, body: { targets: [target('a')] } });
    expect((await api('/v1/pools/shared-name', { key: b.key })).status).toBe(404);
    const agent = await api('/v1/agents', { key: b.key, body: { upstream: { kind: 'pool', pool: 'shared-name' } } });
    expect(agent.status).toBe(400);
  });
});

describe('agents on pools', () => {
  it('spreads executions by weight across a pool', async () => {
    const { key } = await newTenant();
    const tag = `w${Date.now()}`;
    await api('/v1/pools/wrr', { method: 'PUT', key, body: { targets: [target(`${tag}-a`, { weight: 3 }), target(`${tag}-b`, { weight: 1 })] } });
    const id = await newAgent(key, { upstream: { kind: 'pool', pool: 'wrr' }, concurrency: 8 });
    for (let i = 0; i < 40; i++) expect((await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'x' } })).status).toBe(200);
    const seen = await counts();
    expect(seen[`${tag}-a`]).toBe(30);
    expect(seen[`${tag}-b`]).toBe(10);
  });

  it("sends an agent-http target's credential with each call, as its health probe does", async () => {
    const { key } = await newTenant();
    await api('/v1/pools/authed', { method: 'PUT', key, body: { targets: [target('authed', { apiKey: 'sk-agent-http-5678' }), target('open', { priority: 1 })] } });
    const id = await newAgent(key, { upstream: { kind: 'pool', pool: 'authed' } });
    const run = await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'x' } });
    expect(run.body).toMatchObject({ status: 'succeeded', upstream: 'pool authed/authed' });
    const { requests } = (await (await fetch(`${env.MOCK_UPSTREAM_URL}/requests?key=${run.body.id}`)).json()) as { requests: { headers: Record<string, string> }[] };
    expect(requests.map((r) => r.headers.authorization)).toEqual(['Bearer sk-agent-http-5678']);
  });

  it("masks an agent-http target's credential where its reply without \"output\" is shown", async () => {
    const { key } = await newTenant();
    const secret = 'sk-agent-http-echoed-9012';
    const echo = encodeURIComponent(JSON.stringify({ error: `bad key ${secret}` }));
    await api('/v1/pools/echoed', { method: 'PUT', key, body: { targets: [target('echoed', { apiKey: secret, url: mockUrl(`/agent?target=echoed&body=${echo}`) })] } });
    const id = await newAgent(key, { upstream: { kind: 'pool', pool: 'echoed' } });
    const run = await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'x' } });
    expect(run.status).toBe(502);
    expect(run.body.error.details.execution.error.message).toBe('upstream reply has no "output": {"error":"bad key …9012"}');
  });

  it('fails over to the next target and records which one served', async () => {
    const { key } = await newTenant();
    const tag = `f${Date.now()}`;
    await api('/v1/pools/failover', {
      method: 'PUT',
      key,
      body: { targets: [target(`${tag}-dead`, { url: mockUrl(`/agent?target=${tag}-dead&failStatus=503`) }), target(`${tag}-standby`, { priority: 1 })] },
    });
    const id = await newAgent(key, { upstream: { kind: 'pool', pool: 'failover' } });
    const res = await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'x' } });
    expect(res.status).toBe(200);
    expect(res.body.attempts).toBe(2);
    expect(res.body.upstream).toBe(`pool failover/${tag}-standby`);
  });

  it("fails over at once when a target answers 429 with a long Retry-After", async () => {
    const { key } = await newTenant();
    const tag = `ra${Date.now()}`;
    await api('/v1/pools/limited', {
      method: 'PUT',
      key,
      body: { timeouts: { totalMs: 8_000 }, targets: [target(`${tag}-busy`, { url: mockUrl(`/agent?target=${tag}-busy&failStatus=429&retryAfter=120`) }), target(`${tag}-ok`, { priority: 1 })] },
    });
    const id = await newAgent(key, { upstream: { kind: 'pool', pool: 'limited' } });
    const started = Date.now();
    const res = await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'x' } });
    expect(res.status).toBe(200);
    expect(res.body.attempts).toBe(2);
    expect(res.body.upstream).toBe(`pool limited/${tag}-ok`);
    expect(Date.now() - started).toBeLessThan(2_000);
    // Asked for 120 s: the agent's next execution goes straight to the standby.
    const next = await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'x' } });
    expect(next.body.attempts).toBe(1);
    expect((await counts())[`${tag}-busy`]).toBe(1);
  });

  it('stops sending to a target whose circuit opened, and uses the standby meanwhile', async () => {
    const { key } = await newTenant();
    const tag = `c${Date.now()}`;
    await api('/v1/pools/breaker', {
      method: 'PUT',
      key,
      body: { retry: { attempts: 2 }, targets: [target(`${tag}-p`, { url: mockUrl(`/agent?target=${tag}-p&failStatus=500`) }), target(`${tag}-s`, { priority: 1 })] },
    });
    const id = await newAgent(key, { upstream: { kind: 'pool', pool: 'breaker' } });
    for (let i = 0; i < 12; i++) expect((await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'x' } })).status).toBe(200);
    const seen = await counts();
    expect(seen[`${tag}-s`]).toBe(12);
    expect(seen[`${tag}-p`]).toBe(5); // the breaker's threshold, then no more
  });

  it("never sends an execution to another target once an agent-http target answered 200, even if its body broke off or stalled", async () => {
    const { key } = await newTenant();
    // The 200 says the back end did the work: a retry elsewhere would do it a second time.
    for (const [fault, code] of [['cutBody=true', 'upstream_failed'], ['stallBody=true', 'upstream_timeout']] as const) {
      const tag = `done${Date.now()}${fault.slice(0, 3)}`;
      const name = `answered-${fault.slice(0, 3)}`;
      await api(`/v1/pools/${name}`, {
        method: 'PUT',
        key,
        body: { targets: [target(`${tag}-p`, { url: mockUrl(`/agent?target=${tag}-p&${fault}`), timeoutMs: 1_000 }), target(`${tag}-s`, { priority: 1 })] },
      });
      const id = await newAgent(key, { upstream: { kind: 'pool', pool: name } });
      const res = await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'transfer', input: { amount: 10 } } });
      expect(res.status, fault).toBe(code === 'upstream_timeout' ? 504 : 502);
      expect(res.body.error.code, fault).toBe(code);
      expect(res.body.error.details.execution, fault).toMatchObject({ status: 'failed', attempts: 1, upstream: `pool ${name}/${tag}-p` });
      const seen = await counts();
      expect(seen[`${tag}-p`], fault).toBe(1);
      expect(seen[`${tag}-s`], fault).toBeUndefined();
    }
  });

  it("fails an execution on a target's 4xx whose body stalls as that 4xx, once, not as a timeout retried on every target", async () => {
    const { key } = await newTenant();
    const tag = uniqueId('stall4');
    await api(`/v1/pools/${tag}`, {
      method: 'PUT',
      key,
      body: { targets: [target(`${tag}-p`, { url: mockUrl(`/agent?target=${tag}-p&stallBody=true&stallStatus=401`), timeoutMs: 500 }), target(`${tag}-s`, { priority: 1 })] },
    });
    const id = await newAgent(key, { upstream: { kind: 'pool', pool: tag } });
    const res = await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'x' } });
    expect(res.status).toBe(502);
    expect(res.body.error.code).toBe('upstream_failed');
    expect(res.body.error.details.execution).toMatchObject({ status: 'failed', attempts: 1 });
    expect(res.body.error.details.execution.error.message).toContain('upstream answered 401');
    expect(res.body.error.details.execution.error.message).toContain('stalled');
    const seen = await counts();
    expect(seen[`${tag}-p`]).toBe(1);
    expect(seen[`${tag}-s`]).toBeUndefined();
  });

  it("fails over at once when a target answers 503 and then stalls its error body, instead of waiting out the deadline on it", async () => {
    const { key } = await newTenant();
    const tag = uniqueId('stall5');
    // No timeoutMs: the attempt's own limit is the execution's deadline, which the stalled body used to take whole.
    await api(`/v1/pools/${tag}`, {
      method: 'PUT',
      key,
      body: { targets: [target(`${tag}-p`, { url: mockUrl(`/agent?target=${tag}-p&stallBody=true&stallStatus=503`) }), target(`${tag}-s`, { priority: 1 })] },
    });
    const id = await newAgent(key, { upstream: { kind: 'pool', pool: tag } });
    const started = Date.now();
    const res = await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'x', timeoutMs: 8_000 } });
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ status: 'succeeded', attempts: 2, upstream: `pool ${tag}/${tag}-s` });
    expect(Date.now() - started).toBeLessThan(4_000);
    const seen = await counts();
    expect(seen[`${tag}-p`]).toBe(1);
    expect(seen[`${tag}-s`]).toBe(1);
  });

  it('holds a target that answers every call with a redirect against its health: its circuit opens after 5, and the standby serves', async () => {
    const { key } = await newTenant();
    const tag = uniqueId('moved');
    const location = encodeURIComponent(mockUrl(`/agent?target=${tag}-dest`));
    await api(`/v1/pools/${tag}`, {
      method: 'PUT',
      key,
      body: { targets: [target(`${tag}-p`, { url: mockUrl(`/agent?target=${tag}-p&status=307&location=${location}`) }), target(`${tag}-s`, { priority: 1 })] },
    });
    const id = await newAgent(key, { upstream: { kind: 'pool', pool: tag } });
    // Each fails on the redirect, not retried (README, "Upstreams"); it used to count as the target's success.
    for (let i = 0; i < 5; i++) expect((await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'x' } })).status).toBe(502);
    const next = await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'x' } });
    expect(next.status).toBe(200);
    expect(next.body.upstream).toBe(`pool ${tag}/${tag}-s`);
    const seen = await counts();
    expect(seen[`${tag}-p`]).toBe(5);
    expect(seen[`${tag}-dest`]).toBeUndefined();
  });

  it("keeps an openai-chat target's query string (Azure's api-version) on its chats, executions and probes, after the path", async () => {
    const { key } = await newTenant();
    const tag = `query${Date.now()}`;
    // The query used to be kept in front of the path: `…/v1?api-version=1&target=x/chat/completions`.
    const queried = { id: tag, kind: 'openai-chat', baseUrl: mockUrl(`/v1?api-version=2024-02-01&target=${tag}`), model: 'mock-model' };
    expect((await api('/v1/pools/queried', { method: 'PUT', key, body: { targets: [queried] } })).status).toBe(201);
    const chat = await api('/v1/chat/completions', { key, body: { model: 'queried', messages: [{ role: 'user', content: 'hi' }] } });
    expect(chat.status).toBe(200);
    expect(chat.body.choices[0].message.content).toBe('mock reply to: hi');
    const id = await newAgent(key, { upstream: { kind: 'pool', pool: 'queried' } });
    const run = await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'x', input: { message: 'hello' } } });
    expect(run.body).toMatchObject({ status: 'succeeded', attempts: 1, output: { reply: 'mock reply to: hello' } });
    expect((await counts())[tag]).toBe(2);
    expect(await probeTarget({ ...queried, weight: 1, priority: 0, kind: 'openai-chat' }, outboundPolicy(env))).toMatchObject({ ok: true });
  });

  it('fails an execution over when an openai-chat target answers 200 with JSON that is no chat completion, or with a body that is no JSON', async () => {
    const { key } = await newTenant();
    // A torn body is tried again as the chat completions endpoint tries it: a model call has no side effects to repeat.
    for (const [name, answer] of [['odd', 'body={"choices":"x"}'], ['torn', 'body={"choices":[']] as const) {
      const tag = `nochat${Date.now()}${name}`;
      await api(`/v1/pools/${name}`, { method: 'PUT', key, body: { targets: [chatTarget(`${tag}-odd`, answer), chatTarget(`${tag}-ok`, 'ok', { priority: 1 })] } });
      const id = await newAgent(key, { upstream: { kind: 'pool', pool: name } });
      const res = await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'x', input: 'hi' } });
      expect(res.status, name).toBe(200);
      expect(res.body, name).toMatchObject({ status: 'succeeded', attempts: 2, upstream: `pool ${name}/${tag}-ok` });
    }
  });

  it('answers 502 when every target fails', async () => {
    const { key } = await newTenant();
    await api('/v1/pools/dead', { method: 'PUT', key, body: { targets: [target('d1', { url: mockUrl('/agent?failStatus=500') }), target('d2', { url: mockUrl('/agent?failStatus=502') })] } });
    const id = await newAgent(key, { upstream: { kind: 'pool', pool: 'dead' } });
    const res = await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'x' } });
    expect(res.status).toBe(502);
    expect(res.body.error.details.execution.attempts).toBe(3);
  });
});

describe("a target's error whose body stalls after its headers", () => {
  it('a chat relays its 4xx within about a second, with what arrived, not after the first-byte limit (30 s by default)', async () => {
    const { key } = await newTenant();
    const tag = uniqueId('stall4c');
    await api(`/v1/pools/${tag}`, { method: 'PUT', key, body: { targets: [chatTarget(tag, 'stallBody=true,stallStatus=401')] } });
    const started = Date.now();
    const res = await api('/v1/chat/completions', { key, body: { model: tag, messages: [{ role: 'user', content: 'x' }] } });
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(res.status).toBe(401);
    expect(res.headers.get('x-gateway-attempts')).toBe('1');
    expect(res.body.error.type).toBe('upstream_error');
    expect(res.body.error.message).toContain('stalled');
    expect(res.body.error.message).toContain('{"id":');
  });
});

describe("a target's error that names its credential", () => {
  // The credential is never shown (a view has "…last4"), to any key of the tenant: a target
  // that writes it, whole, into its error (a proxy's "Incorrect API key provided: sk-…") must
  // not show it either, whether the error is relayed (a chat) or kept (an execution's error).
  const secret = 'sk-echoed-credential-5a7c';
  const masked = `Incorrect API key provided: …${secret.slice(-4)}`;

  it("a chat relays the target's 4xx without the credential in it", async () => {
    const { key } = await newTenant();
    const pool = uniqueId('pool');
    expect((await api(`/v1/pools/${pool}`, { method: 'PUT', key, body: { targets: [chatTarget(uniqueId('echo'), 'echoAuthorization=1', { apiKey: secret })] } })).status).toBe(201);
    const chat = await api('/v1/chat/completions', { key, body: { model: pool, messages: [{ role: 'user', content: 'hi' }] } });
    expect(chat.status).toBe(401);
    expect(JSON.stringify(chat.body)).not.toContain(secret);
    expect(chat.body.error.message).toBe(masked);
  });

  it('a streamed chat relays an error event without the credential, also when the credential comes split across chunks', async () => {
    const { tenantId, key } = await newTenant();
    // A key with a token budget has its stream's usage chunk asked for and taken out on the way.
    const budgeted = await api(`/v1/admin/tenants/${tenantId}/keys`, { key: ADMIN(), body: { name: 'budgeted', limits: { budget: { tokens: 10_000, period: 'day' } } } });
    expect(budgeted.status).toBe(201);
    // Whole, in pieces of 5 bytes and of 1 (the credential then spans many chunks).
    for (const [faults, caller] of [['echoAuthorizationInStream=1', key], ['echoAuthorizationInStream=1,pieceBytes=5', key], ['echoAuthorizationInStream=1,pieceBytes=1', key], ['echoAuthorizationInStream=1,pieceBytes=3', budgeted.body.key]]) {
      const pool = uniqueId('pool');
      expect((await api(`/v1/pools/${pool}`, { method: 'PUT', key, body: { targets: [chatTarget(uniqueId('echo'), faults, { apiKey: secret })] } })).status, faults).toBe(201);
      const res = await SELF.fetch(`${BASE}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${caller}`, 'content-type': 'application/json' },
        // The answer repeats the prompt: a prefix of the credential that never completes passes as sent.
        body: JSON.stringify({ model: pool, stream: true, messages: [{ role: 'user', content: secret.slice(0, -1) }] }),
      });
      expect(res.status, faults).toBe(200);
      const text = await res.text();
      expect(text, faults).not.toContain(secret);
      expect(text, faults).toContain(`Incorrect API key provided: …${secret.slice(-4)}; again: …${secret.slice(-4)}`);
      expect(text, faults).toContain(`"content":"mock"`);
      // The stream ended without [DONE]: the gateway's own error event follows the target's.
      expect(text, faults).toContain('stream_interrupted');
    }
  });

  it("a streamed chat whose first event is an error naming the credential across the message's 500-character cut shows none of it", async () => {
    const { key } = await newTenant();
    const pool = uniqueId('pool');
    expect((await api(`/v1/pools/${pool}`, { method: 'PUT', key, body: { targets: [chatTarget(uniqueId('echo'), 'ok', { apiKey: secret })] } })).status).toBe(201);
    // The cut falls inside the credential: it used to be cut first, and a part is no credential to mask.
    const event = `data: ${JSON.stringify({ error: { message: `${'x'.repeat(480)} key ${secret} refused`, type: 'server_error' } })}\n\n`;
    const mock = JSON.stringify({ body: event, contentType: 'text/event-stream' });
    const res = await api('/v1/chat/completions', { key, body: { model: pool, stream: true, messages: [{ role: 'user', content: `hi\nmock:${mock}` }] } });
    expect(res.status).toBe(502);
    expect(res.body.error.code).toBe('upstream_failed');
    expect(res.body.error.message).toContain('upstream stream began with an error event: xxx');
    expect(JSON.stringify(res.body)).not.toContain(secret.slice(0, 12));
  });

  it('a streamed chat relays an error event without the credential echoed in base64 (a Basic credential, the key alone), split across chunks too', async () => {
    const { key } = await newTenant();
    const spellings = [Buffer.from(`user:${secret}`).toString('base64'), Buffer.from(secret).toString('base64url')];
    /** What is left of each base64 token once decoded (the mask's characters are no base64). */
    const decoded = (text: string) => [...text.matchAll(/[A-Za-z0-9+/_-]{12,}/g)].map(([token]) => Buffer.from(token, 'base64').toString('latin1')).join('\n');
    for (const faults of ['echoAuthorizationInStream=1,echoBase64=1', 'echoAuthorizationInStream=1,echoBase64=1,pieceBytes=1', 'echoAuthorizationInStream=1,echoBase64=1,pieceBytes=7']) {
      const pool = uniqueId('pool');
      expect((await api(`/v1/pools/${pool}`, { method: 'PUT', key, body: { targets: [chatTarget(uniqueId('echo'), faults, { apiKey: secret })] } })).status, faults).toBe(201);
      const res = await SELF.fetch(`${BASE}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
        body: JSON.stringify({ model: pool, stream: true, messages: [{ role: 'user', content: 'hi' }] }),
      });
      expect(res.status, faults).toBe(200);
      const text = await res.text();
      expect(text, faults).toContain('Invalid credentials: Basic ');
      expect(text, faults).toContain(`…${secret.slice(-4)}`);
      for (const spelling of spellings) expect(text, faults).not.toContain(spelling);
      expect(decoded(text), faults).not.toContain(secret);
      // Every event still parses.
      for (const [, data] of text.matchAll(/^data: (\{.*\})$/gm)) expect(() => JSON.parse(data ?? ''), faults).not.toThrow();
    }
  });

  it('a streamed answer that only repeats part of the credential is relayed as sent', async () => {
    const { key } = await newTenant();
    const pool = uniqueId('pool');
    await api(`/v1/pools/${pool}`, { method: 'PUT', key, body: { targets: [chatTarget(uniqueId('echo'), 'pieceBytes=3', { apiKey: secret })] } });
    const prompt = `${secret.slice(0, -1)} ${secret.slice(1)} ${secret.slice(0, 4)}`;
    const res = await SELF.fetch(`${BASE}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: pool, stream: true, messages: [{ role: 'user', content: prompt }] }),
    });
    const text = await res.text();
    const content = [...text.matchAll(/^data: (\{.*\})$/gm)].map((m) => JSON.parse(m[1] ?? '{}').choices?.[0]?.delta?.content ?? '').join('');
    expect(content).toBe(`mock reply to: ${prompt}`);
    expect(text).toMatch(/data: \[DONE\]\n\n$/);
  });

  it("an execution's error keeps the target's message without the credential (pool and agent upstream)", async () => {
    const { key } = await newTenant();
    const pool = uniqueId('pool');
    await api(`/v1/pools/${pool}`, { method: 'PUT', key, body: { targets: [chatTarget(uniqueId('echo'), 'echoAuthorization=1', { apiKey: secret })] } });
    const direct = chatTarget(uniqueId('echo'), 'echoAuthorization=1');
    for (const upstream of [{ kind: 'pool', pool }, { kind: 'openai-chat', baseUrl: direct.baseUrl, model: 'm', apiKey: secret }]) {
      const agent = await newAgent(key, { upstream });
      const run = await api(`/v1/agents/${agent}/executions`, { key, body: { intent: 'x' } });
      expect(run.status, upstream.kind).toBe(502);
      expect(JSON.stringify(run.body), upstream.kind).not.toContain(secret);
      const execution = await api(`/v1/agents/${agent}/executions/${run.body.error.details.executionId}`, { key });
      expect(JSON.stringify(execution.body), upstream.kind).not.toContain(secret);
      expect(execution.body.error.message, upstream.kind).toContain(masked);
    }
  });

  it('an error whose body stalls inside the credential shows what arrived without that start of it (chat and execution)', async () => {
    const { key } = await newTenant();
    const slashed = 'sk-ab/cd-echoed-credential-5a7c';
    /** What a client reading the message finds: the JSON escapes the mock writes, read. */
    const read = (text: string) => text.replace(/\\u([0-9a-fA-F]{4})/g, (_, hex: string) => String.fromCharCode(parseInt(hex, 16))).replace(/\\(.)/g, '$1');
    for (const faults of ['echoAuthorization=1,stallBody=1', 'echoAuthorization=1,stallBody=1,echoEscaped=1']) {
      const pool = uniqueId('pool');
      await api(`/v1/pools/${pool}`, { method: 'PUT', key, body: { targets: [chatTarget(uniqueId('echo'), faults, { apiKey: slashed, timeoutMs: 300 })] } });
      const chat = await api('/v1/chat/completions', { key, body: { model: pool, messages: [{ role: 'user', content: 'hi' }] } });
      expect(chat.status, faults).toBe(401);
      expect(chat.body.error.message, faults).toContain('Incorrect API key provided: ');
      expect(read(chat.body.error.message), faults).not.toContain(slashed.slice(0, 6));
      const agent = await newAgent(key, { upstream: { kind: 'pool', pool } });
      const run = await api(`/v1/agents/${agent}/executions`, { key, body: { intent: 'x' } });
      expect(run.status, faults).toBe(502);
      const execution = await api(`/v1/agents/${agent}/executions/${run.body.error.details.executionId}`, { key });
      expect(execution.body.error.message, faults).toContain('stalled');
      expect(read(execution.body.error.message), faults).not.toContain(slashed.slice(0, 6));
    }
  });

  describe('spelt with JSON escapes (`\\u0073k-…`, `\\/`), which parse back into it', () => {
    const slashed = 'sk-ab/cd-echoed-credential-5a7c';
    /** `text` with its JSON escapes read, as a client that parses the JSON it is part of reads them. */
    const unescaped = (text: string) => text.replace(/\\u([0-9a-fA-F]{4})/g, (_, hex: string) => String.fromCharCode(parseInt(hex, 16))).replace(/\\(.)/g, '$1');

    it("a chat relays the target's 4xx without it, passThrough pool or not", async () => {
      const { key } = await newTenant();
      for (const passThrough of [false, true]) {
        const pool = uniqueId('pool');
        expect((await api(`/v1/pools/${pool}`, { method: 'PUT', key, body: { passThrough, targets: [chatTarget(uniqueId('echo'), 'echoAuthorization=1,echoEscaped=1', { apiKey: slashed })] } })).status).toBe(201);
        const chat = await api('/v1/chat/completions', { key, body: { model: pool, messages: [{ role: 'user', content: 'hi' }] } });
        expect(chat.status, `passThrough ${passThrough}`).toBe(401);
        expect(chat.body.error.message, `passThrough ${passThrough}`).toBe(masked);
      }
    });

    it('a streamed chat relays its error event without it, however the stream is cut', async () => {
      const { tenantId, key } = await newTenant();
      const budgeted = await api(`/v1/admin/tenants/${tenantId}/keys`, { key: ADMIN(), body: { name: 'budgeted', limits: { budget: { tokens: 10_000, period: 'day' } } } });
      for (const [faults, caller] of [['', key], [',pieceBytes=5', key], [',pieceBytes=1', key], [',pieceBytes=3', budgeted.body.key]]) {
        const pool = uniqueId('pool');
        await api(`/v1/pools/${pool}`, { method: 'PUT', key, body: { targets: [chatTarget(uniqueId('echo'), `echoAuthorizationInStream=1,echoEscaped=1${faults}`, { apiKey: slashed })] } });
        const res = await SELF.fetch(`${BASE}/v1/chat/completions`, {
          method: 'POST',
          headers: { authorization: `Bearer ${caller}`, 'content-type': 'application/json' },
          body: JSON.stringify({ model: pool, stream: true, messages: [{ role: 'user', content: 'hi' }] }),
        });
        expect(res.status, faults).toBe(200);
        const events = [...(await res.text()).matchAll(/^data: (\{.*\})$/gm)].map((m) => JSON.parse(m[1] ?? '{}') as { error?: { message: string } });
        expect(JSON.stringify(events), faults).not.toContain(slashed);
        expect(events.map((e) => e.error?.message), faults).toContain(`Incorrect API key provided: …${slashed.slice(-4)}; again: …${slashed.slice(-4)}`);
      }
    });

    it("an execution's error keeps the target's message without it (pool and agent upstream)", async () => {
      const { key } = await newTenant();
      const pool = uniqueId('pool');
      await api(`/v1/pools/${pool}`, { method: 'PUT', key, body: { targets: [chatTarget(uniqueId('echo'), 'echoAuthorization=1,echoEscaped=1', { apiKey: slashed })] } });
      const direct = chatTarget(uniqueId('echo'), 'echoAuthorization=1,echoEscaped=1');
      for (const upstream of [{ kind: 'pool', pool }, { kind: 'openai-chat', baseUrl: direct.baseUrl, model: 'm', apiKey: slashed }]) {
        const agent = await newAgent(key, { upstream });
        const run = await api(`/v1/agents/${agent}/executions`, { key, body: { intent: 'x' } });
        expect(run.status, upstream.kind).toBe(502);
        const execution = await api(`/v1/agents/${agent}/executions/${run.body.error.details.executionId}`, { key });
        expect(unescaped(execution.body.error.message), upstream.kind).not.toContain(slashed);
        expect(execution.body.error.message, upstream.kind).toContain(masked);
      }
    });
  });
});
