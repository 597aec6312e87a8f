import { env } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';
import { api, newTenant } from './support/api';

const MIB = 1024 * 1024;

/**
 * A target whose every answer carries `faults` (the mock's query form, which the gateway keeps
 * after the `/chat/completions` it appends): `outputBytes` is a JSON reply of that size (with
 * its length), `chunkedOutputBytes` the same without one.
 */
const target = (id: string, faults: string) => ({ id, kind: 'openai-chat', baseUrl: `${env.MOCK_UPSTREAM_URL}/v1?target=${id}&${faults}`, model: 'm' });

async function chatWith(faults: string) {
  const { key } = await newTenant();
  const put = await api('/v1/pools/big', { method: 'PUT', key, body: { targets: [target(`big${Date.now()}`, faults)] } });
  expect(put.status).toBe(201);
  return api('/v1/chat/completions', { key, body: { model: 'big', messages: [{ role: 'user', content: 'hi' }] } });
}

// A reply read whole could take the edge's isolate past its memory limit (a 400 MB one took the
// local runtime down), failing every request it serves: it is read up to 4 MiB, as an agent's is.
describe('a non-streamed chat completion larger than 4 MiB', () => {
  it('fails the call at its announced length, unread, and is not retried', async () => {
    const res = await chatWith(`outputBytes=${5 * MIB}`);
    expect(res.status).toBe(502);
    expect(res.body.error).toMatchObject({ code: 'upstream_failed', details: { attempts: 1 } });
    expect(res.body.error.message).toContain('exceeds');
  });

  it('fails the call once it has read past 4 MiB of a reply that announces no length', async () => {
    const res = await chatWith(`chunkedOutputBytes=${5 * MIB}`);
    expect(res.status).toBe(502);
    expect(res.body.error.message).toContain('exceeds');
  });

  it('fails the call once it has read past 4 MiB of a gzipped reply, whose Content-Length is the compressed size', async () => {
    const res = await chatWith(`gzipOutputBytes=${5 * MIB}`);
    expect(res.status).toBe(502);
    expect(res.body.error).toMatchObject({ code: 'upstream_failed', details: { attempts: 1 } });
    expect(res.body.error.message).toContain('exceeds');
  });

  it('is answered as before up to the limit', async () => {
    // A chat completion (through the mock's chat path): a body that is none fails over.
    const { key } = await newTenant();
    const id = `big${Date.now()}`;
    await api('/v1/pools/big', { method: 'PUT', key, body: { targets: [{ id, kind: 'openai-chat', baseUrl: `${env.MOCK_UPSTREAM_URL}/t/${id}/completionBytes=${3 * MIB}/v1`, model: 'm' }] } });
    const res = await api('/v1/chat/completions', { key, body: { model: 'big', messages: [{ role: 'user', content: 'hi' }] } });
    expect(res.status).toBe(200);
    expect(res.body.choices[0].message.content).toHaveLength(3 * MIB);
  });

  it("is a target's own 4xx passed through with its status and a short error in place of its body", async () => {
    const res = await chatWith(`status=400&statusBytes=${5 * MIB}`);
    expect(res.status).toBe(400);
    expect(res.headers.get('x-gateway-upstream')).toMatch(/^big\//);
    expect(JSON.stringify(res.body).length).toBeLessThan(1024);
    expect(res.body.error.message).toContain('exceeds');
  });
});

describe('a passed-through completion larger than 4 MiB in a pool that caches', () => {
  for (const fault of ['outputBytes', 'chunkedOutputBytes']) {
    it(`is handed on whole as it arrives, and not stored (${fault})`, async () => {
      const { key } = await newTenant();
      const put = await api('/v1/pools/big', {
        method: 'PUT',
        key,
        body: { targets: [target(`pt${fault}${Date.now()}`, `${fault}=${5 * MIB}`)], passThrough: true, cache: { ttlSeconds: 60 } },
      });
      expect(put.status).toBe(201);
      const res = await api('/v1/chat/completions', { key, body: { model: 'big', temperature: 0, messages: [{ role: 'user', content: 'hi' }] } });
      expect(res.status).toBe(200);
      expect(res.headers.get('x-gateway-cache')).toBe('BYPASS');
      expect(res.body.output).toHaveLength(5 * MIB);
    });
  }
});
