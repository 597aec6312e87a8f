import { describe, expect, it } from 'vitest';
import { api, eventually, newAgent, newTenant } from './support/api';

const mergePatch = (key: string, path: string, body: unknown, headers: Record<string, string> = {}) =>
  api(path, { method: 'PATCH', key, rawBody: JSON.stringify(body), headers: { 'content-type': 'application/merge-patch+json', ...headers } });

describe('agent context', () => {
  it('starts empty at version 0 with an ETag', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key);
    const res = await api(`/v1/agents/${id}/context`, { key });
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ version: 0, data: {} });
    expect(res.headers.get('etag')).toBe('"0"');
  });

  it('applies JSON Merge Patch: nested merge, null deletes, version + 1', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key);
    const path = `/v1/agents/${id}/context`;
    const first = await mergePatch(key, path, { customer: { name: 'Ada', tier: 'gold' }, tags: ['a'] });
    expect(first.status).toBe(200);
    expect(first.body).toEqual({ version: 1, data: { customer: { name: 'Ada', tier: 'gold' }, tags: ['a'] } });
    expect(first.headers.get('etag')).toBe('"1"');
    const second = await api(path, { method: 'PATCH', key, body: { customer: { tier: null, since: 2020 }, tags: ['b'] } });
    expect(second.body).toEqual({ version: 2, data: { customer: { name: 'Ada', since: 2020 }, tags: ['b'] } });
  });

  it('makes a PATCH conditional with If-Match and answers 412 version_mismatch when stale', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key);
    const path = `/v1/agents/${id}/context`;
    const ok = await mergePatch(key, path, { a: 1 }, { 'if-match': '"0"' });
    expect(ok.status).toBe(200);
    const stale = await mergePatch(key, path, { a: 2 }, { 'if-match': '"0"' });
    expect(stale.status).toBe(412);
    expect(stale.body.error).toMatchObject({ code: 'version_mismatch', details: { version: 1 } });
    expect((await api(path, { key })).body.data).toEqual({ a: 1 });
    expect((await mergePatch(key, path, { a: 3 }, { 'if-match': '*' })).status).toBe(200);
    expect((await mergePatch(key, path, { a: 4 }, { 'if-match': '"2"' })).status).toBe(200);
    expect((await mergePatch(key, path, { a: 5 }, { 'if-match': 'banana' })).status).toBe(400);
  });

  it('lets exactly one of two concurrent conditional writers win', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key);
    const path = `/v1/agents/${id}/context`;
    const results = await Promise.all([mergePatch(key, path, { who: 'a' }, { 'if-match': '"0"' }), mergePatch(key, path, { who: 'b' }, { 'if-match': '"0"' })]);
    expect(results.map((r) => r.status).sort()).toEqual([200, 412]);
  });

  it('rejects a non-object patch, a non-JSON body and an oversized context', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key);
    const path = `/v1/agents/${id}/context`;
    expect((await mergePatch(key, path, [1, 2])).status).toBe(400);
    expect((await api(path, { method: 'PATCH', key, rawBody: 'a=1', headers: { 'content-type': 'text/plain' } })).status).toBe(415);
    const chunk = 'x'.repeat(600_000);
    expect((await mergePatch(key, path, { a: chunk })).status).toBe(200);
    const tooBig = await mergePatch(key, path, { b: chunk });
    expect(tooBig.status).toBe(413);
    expect(tooBig.body.error.code).toBe('payload_too_large');
    expect((await api(path, { key })).body.version).toBe(1);
  });

  it('counts every turn of the builtin responder when its executions run side by side', async () => {
    // Each answer patches `turns` from the context it read: read when the run started, eight
    // runs at once all read 0 and the count ended at 1 (300 at concurrency 32 counted 10).
    const { key } = await newTenant();
    const id = await newAgent(key, { concurrency: 8 });
    const runs = await Promise.all(Array.from({ length: 8 }, (_, i) =>
      api(`/v1/agents/${id}/executions`, { key, body: { intent: 'support.reply', input: { message: `hello ${i}`, simulateLatencyMs: 200 } } })));
    expect(runs.map((r) => r.status)).toEqual(Array(8).fill(200));
    const context = await api(`/v1/agents/${id}/context`, { key });
    expect(context.body).toEqual({ version: 8, data: { lastTopic: 'greeting', turns: 8 } });
    expect(context.headers.get('etag')).toBe('"8"');
  });

  it('counts every turn of the builtin responder when an unpause starts its queue at once', async () => {
    // Started in one turn, the runs' answers interleave: each must read the count as its patch is merged.
    const { key } = await newTenant();
    const id = await newAgent(key, { concurrency: 8 });
    expect((await api(`/v1/agents/${id}`, { key, method: 'PATCH', body: { paused: true } })).status).toBe(200);
    for (let i = 0; i < 8; i++) {
      expect((await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'support.reply', input: `hello ${i}`, mode: 'async' } })).status).toBe(202);
    }
    expect((await api(`/v1/agents/${id}`, { key, method: 'PATCH', body: { paused: false } })).status).toBe(200);
    const context = await eventually(async () => {
      const res = await api(`/v1/agents/${id}/context`, { key });
      return res.body.version === 8 && res;
    });
    expect(context.body).toEqual({ version: 8, data: { lastTopic: 'greeting', turns: 8 } });
  });
});
