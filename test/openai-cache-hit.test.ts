import { describe, expect, it } from 'vitest';
import { api, chatTarget, newTenant } from './support/api';

describe('a response-cache hit', () => {
  it('says it made no attempt, and still names the target whose answer it is', async () => {
    const { key } = await newTenant();
    const tag = `hit${Date.now()}`;
    // The primary fails, so the answer that is stored (the standby's) took two attempts.
    const put = await api('/v1/pools/cached', {
      method: 'PUT',
      key,
      body: { targets: [chatTarget(`${tag}-down`, 'failStatus=503'), chatTarget(`${tag}-up`, 'ok', { priority: 1 })], cache: { ttlSeconds: 60 } },
    });
    expect(put.status).toBe(201);
    const body = { model: 'cached', temperature: 0, messages: [{ role: 'user', content: 'the same question' }] };

    const miss = await api('/v1/chat/completions', { key, body });
    expect(miss.headers.get('x-gateway-cache')).toBe('MISS');
    expect(miss.headers.get('x-gateway-attempts')).toBe('2');

    const hit = await api('/v1/chat/completions', { key, body });
    expect(hit.headers.get('x-gateway-cache')).toBe('HIT');
    expect(hit.body).toEqual(miss.body);
    expect(hit.headers.get('x-gateway-attempts')).toBe('0');
    expect(hit.headers.get('x-gateway-upstream')).toBe(`cached/${tag}-up`);
  });
});
