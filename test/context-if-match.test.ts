import { describe, expect, it } from 'vitest';
import { api, newAgent, newTenant } from './support/api';

const MERGE = { 'content-type': 'application/merge-patch+json' };

/** If-Match is a list of entity tags (RFC 9110 §13.1.1); a list used to be refused with 400. */
describe('context PATCH with an If-Match list', () => {
  it('applies when any listed version is current, 412 when none is, 400 when one is not an ETag', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key);
    const patch = (body: object, ifMatch: string) => api(`/v1/agents/${id}/context`, { method: 'PATCH', key, body, headers: { ...MERGE, 'if-match': ifMatch } });
    const first = await patch({ a: 1 }, '"7", "0"');
    expect(first.status).toBe(200);
    expect(first.body).toEqual({ version: 1, data: { a: 1 } });
    const stale = await patch({ a: 2 }, '"0", W/"5"');
    expect(stale.status).toBe(412);
    expect(stale.body.error).toMatchObject({ code: 'version_mismatch', details: { version: 1 } });
    expect((await patch({ a: 3 }, '"1", garbage')).status).toBe(400);
    expect((await api(`/v1/agents/${id}/context`, { key })).body).toEqual({ version: 1, data: { a: 1 } });
    expect((await patch({ a: 4 }, 'W/"0","1"')).body).toEqual({ version: 2, data: { a: 4 } });
  });

  /** RFC 9110 §13.1.1: If-Match compares strongly, and a weak tag never matches, not even the current version's. */
  it('answers 412 version_mismatch to weak tags, the current version\'s included, and changes nothing', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key);
    const path = `/v1/agents/${id}/context`;
    const patch = (body: object, ifMatch: string) => api(path, { method: 'PATCH', key, body, headers: { ...MERGE, 'if-match': ifMatch } });
    expect((await patch({ a: 1 }, '"0"')).status).toBe(200);
    for (const weak of ['W/"1"', 'W/"1", W/"0"', ' W/"1" ']) {
      const res = await patch({ a: 2 }, weak);
      expect(res.status, weak).toBe(412);
      expect(res.body.error, weak).toMatchObject({ code: 'version_mismatch', message: expect.stringMatching(/weak/), details: { version: 1 } });
    }
    expect((await api(path, { key })).body).toEqual({ version: 1, data: { a: 1 } });
    // A strong tag of the current version next to a weak one still applies.
    expect((await patch({ a: 3 }, 'W/"1", "1"')).body).toEqual({ version: 2, data: { a: 3 } });
  });
});
