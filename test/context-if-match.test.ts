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

  it('names the header in a refusal of an If-Match that is not a tag (param "if-match"), and skips empty list elements', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key);
    for (const [path, body] of [[`/v1/agents/${id}/context`, { a: 1 }], [`/v1/agents/${id}`, { name: 'n' }]] as const) {
      const bad = await api(path, { method: 'PATCH', key, body, headers: { ...MERGE, 'if-match': 'garbage' } });
      expect(bad.status, path).toBe(400);
      expect(bad.body.error, path).toMatchObject({ code: 'invalid_request', param: 'if-match' });
    }
    expect((await api(`/v1/agents/${id}/context`, { key })).body).toEqual({ version: 0, data: {} });
    expect((await api(`/v1/agents/${id}`, { key })).body.name).toBeNull();
    // RFC 9110 §5.6.1: a list's empty elements are skipped, not refused.
    const context = await api(`/v1/agents/${id}/context`, { method: 'PATCH', key, body: { a: 1 }, headers: { ...MERGE, 'if-match': '"0", ,' } });
    expect(context.status).toBe(200);
    expect((await api(`/v1/agents/${id}`, { method: 'PATCH', key, body: { name: 'n' }, headers: { 'if-match': ' , "1"' } })).status).toBe(200);
  });

  /**
   * Strong comparison is character by character (RFC 9110 §8.8.3.2): "01" is not the tag "1", and
   * a tag with one quote is no tag. Both were read as the number inside, so "01" applied at version 1.
   */
  it('never takes a tag this API does not give ("01", an unbalanced quote) for a version: 400, and nothing changes', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key);
    const context = `/v1/agents/${id}/context`;
    expect((await api(context, { method: 'PATCH', key, body: { a: 1 }, headers: MERGE })).body.version).toBe(1);
    for (const [path, body] of [[context, { a: 2 }], [`/v1/agents/${id}`, { name: 'changed' }]] as const) {
      for (const tag of ['"01"', '"001", "7"', '"1', '1"', 'W/"01"']) {
        const res = await api(path, { method: 'PATCH', key, body, headers: { ...MERGE, 'if-match': tag } });
        expect(res.status, `${path} ${tag}`).toBe(400);
        expect(res.body.error, `${path} ${tag}`).toMatchObject({ code: 'invalid_request', param: 'if-match' });
      }
    }
    expect((await api(context, { key })).body).toEqual({ version: 1, data: { a: 1 } });
    expect((await api(`/v1/agents/${id}`, { key })).body.name).toBeNull();
    // The tags it gives, and the bare number, still apply.
    expect((await api(context, { method: 'PATCH', key, body: { a: 3 }, headers: { ...MERGE, 'if-match': '"1"' } })).status).toBe(200);
    expect((await api(context, { method: 'PATCH', key, body: { a: 4 }, headers: { ...MERGE, 'if-match': '2' } })).status).toBe(200);
    expect((await api(`/v1/agents/${id}`, { method: 'PATCH', key, body: { name: 'n' }, headers: { 'if-match': '"1"' } })).status).toBe(200);
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
