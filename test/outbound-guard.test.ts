import { env } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';
import { createApp } from '../worker/app';
import { newTenant } from './support/api';

/** The app as production runs it: ALLOW_PRIVATE_UPSTREAMS unset, so the guard is on. */
const guarded = { ...env, ALLOW_PRIVATE_UPSTREAMS: undefined };
const app = createApp();

const call = (key: string, method: string, path: string, body: unknown) =>
  app.request(path, { method, headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify(body) }, guarded);

describe('outgoing-request guard (production settings)', () => {
  it('refuses pool targets on private, loopback or plain-http URLs, storing nothing', async () => {
    const { key } = await newTenant();
    for (const url of ['http://api.example.com/agent', 'https://127.0.0.1/agent', 'https://10.1.2.3/agent', 'https://169.254.169.254/latest', 'https://localhost/agent']) {
      const res = await call(key, 'PUT', '/v1/pools/p', { targets: [{ id: 't', kind: 'agent-http', url }] });
      expect(res.status, url).toBe(400);
      const body = (await res.json()) as { error: { code: string; details: { path: string[] }[] } };
      expect(body.error.code).toBe('invalid_request');
      expect(body.error.details[0]?.path).toEqual(['targets', '0', 'url']);
    }
    const read = await app.request('/v1/pools/p', { headers: { authorization: `Bearer ${key}` } }, guarded);
    expect(read.status).toBe(404);
  });

  it('refuses an agent upstream on a private address', async () => {
    const { key } = await newTenant();
    const res = await call(key, 'POST', '/v1/agents', { upstream: { kind: 'agent-http', url: 'https://192.168.1.10/run' } });
    expect(res.status).toBe(400);
  });

  it('accepts a public https target', async () => {
    const { key } = await newTenant();
    const res = await call(key, 'PUT', '/v1/pools/public', { targets: [{ id: 't', kind: 'openai-chat', baseUrl: 'https://api.example.com/v1', model: 'm' }] });
    expect(res.status).toBe(201);
  });
});
