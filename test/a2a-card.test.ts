import { describe, expect, it } from 'vitest';
import { api, newAgent, newTenant } from './support/api';

describe('the agent card\'s ETag', () => {
  it('answers 304 to If-None-Match as RFC 9110 compares it (weakly, and *), 200 to another tag; a config change changes it', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key, { a2a: { description: 'first' } });
    const path = `/a2a/${id}/.well-known/agent-card.json`;
    const etag = (await api(path, { key })).headers.get('etag') ?? '';
    expect(etag).toMatch(/^"[0-9a-f]+"$/);
    const status = async (ifNoneMatch: string) => (await api(path, { key, headers: { 'if-none-match': ifNoneMatch } })).status;

    for (const matching of [etag, `W/${etag}`, '*', `"other", ${etag}`, ` "other" , W/${etag} `]) {
      expect(await status(matching), matching).toBe(304);
    }
    for (const other of ['"other"', 'W/"other"', etag.slice(0, -2) + '"']) {
      expect(await status(other), other).toBe(200);
    }
    const unmodified = await api(path, { key, headers: { 'if-none-match': `W/${etag}` } });
    expect(unmodified.headers.get('etag')).toBe(etag);
    expect(unmodified.headers.get('cache-control')).toMatch(/^private/);

    await api(`/v1/agents/${id}`, { method: 'PATCH', key, body: { a2a: { description: 'second' } } });
    const changed = await api(path, { key, headers: { 'if-none-match': etag } });
    expect(changed.status).toBe(200);
    expect(changed.body.description).toBe('second');
    expect(changed.headers.get('etag')).not.toBe(etag);
  });
});
