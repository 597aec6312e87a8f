import { sign as signGithub } from '@octokit/webhooks-methods';
import Stripe from 'stripe';
import { Webhook } from 'standardwebhooks';
import { describe, expect, it } from 'vitest';
import { api, eventually, newAgent, newTenant } from './support/api';
import { GITHUB_SECRET, STANDARD_SECRET, STRIPE_SECRET, hookFor, post, standardHeaders } from './support/hooks';

/**
 * A sender signs the bytes it sends. The gateway used to verify the body as decoded text,
 * which drops a leading BOM and replaces bytes that are not UTF-8: such a delivery, correctly
 * signed, was refused 401.
 */
const BOM = '\uFEFF';

async function inputOf(key: string, agentId: string, res: Response): Promise<any> {
  expect(res.status).toBe(202);
  const { executionId } = (await res.json()) as { executionId: string };
  return eventually(async () => (await api(`/v1/agents/${agentId}/executions/${executionId}`, { key })).body.input);
}

describe('incoming webhooks: the signature covers the body as sent', () => {
  it('accepts a Standard Webhooks delivery whose JSON body starts with a BOM, and passes the JSON on parsed', async () => {
    const { key } = await newTenant();
    const agentId = await newAgent(key);
    const hook = await hookFor(key, agentId, 'standard', STANDARD_SECRET);
    const body = `${BOM}${JSON.stringify({ type: 'order.created', order: 42 })}`;
    const headers = standardHeaders('msg_bom', body);
    expect(await inputOf(key, agentId, await post(hook, body, headers))).toMatchObject({ deliveryId: 'msg_bom', payload: { type: 'order.created', order: 42 } });
    // The signature still binds the BOM: without it the body is not what was signed.
    expect((await post(hook, body.slice(1), { ...headers, 'webhook-id': 'msg_bom_2' })).status).toBe(401);
  });

  it('accepts GitHub deliveries with a BOM or with bytes that are not UTF-8, signed over those bytes', async () => {
    const { key } = await newTenant();
    const agentId = await newAgent(key);
    const hook = await hookFor(key, agentId, 'github', GITHUB_SECRET);
    const bom = `${BOM}${JSON.stringify({ action: 'opened', number: 7 })}`;
    const withBom = await post(hook, bom, { 'x-github-event': 'issues', 'x-github-delivery': crypto.randomUUID(), 'x-hub-signature-256': await signGithub(GITHUB_SECRET, bom) });
    expect(await inputOf(key, agentId, withBom)).toMatchObject({ event: 'issues', payload: { number: 7 } });
    const latin1 = new Uint8Array([...new TextEncoder().encode('name='), 0xe9, ...new TextEncoder().encode('t\u00e9')]);
    const hmacKey = await crypto.subtle.importKey('raw', new TextEncoder().encode(GITHUB_SECRET), { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
    const mac = [...new Uint8Array(await crypto.subtle.sign('HMAC', hmacKey, latin1))].map((b) => b.toString(16).padStart(2, '0')).join('');
    const raw = await post(hook, latin1, { 'content-type': 'application/x-www-form-urlencoded', 'x-github-delivery': crypto.randomUUID(), 'x-hub-signature-256': `sha256=${mac}` });
    expect(await inputOf(key, agentId, raw)).toMatchObject({ scheme: 'github', payload: expect.stringMatching(/^name=/) });
    expect((await post(hook, latin1, { 'x-github-delivery': crypto.randomUUID(), 'x-hub-signature-256': `sha256=${mac.replace(/^./, mac[0] === '0' ? '1' : '0')}` })).status).toBe(401);
  });

  it('verifies a Standard Webhooks delivery over its bytes, not over their UTF-8 decoding: bytes that are not UTF-8 pass when signed, and no other bytes do', async () => {
    const { key } = await newTenant();
    const agentId = await newAgent(key);
    const hook = await hookFor(key, agentId, 'standard', STANDARD_SECRET);
    const utf8 = new TextEncoder();
    const signed = (msgId: string, bytes: Uint8Array, at = new Date()) =>
      ({ 'webhook-id': msgId, 'webhook-timestamp': String(Math.floor(at.getTime() / 1000)), 'webhook-signature': new Webhook(STANDARD_SECRET).sign(msgId, at, bytes) });
    // A latin1 body, signed over its bytes as the spec has it, used to be 401: the text it
    // decodes to (U+FFFD for 0xe9) encodes back to other bytes than were signed.
    const latin1 = new Uint8Array([...utf8.encode('name='), 0xe9, ...utf8.encode('t')]);
    const accepted = await post(hook, latin1, { ...signed('msg_latin1', latin1), 'content-type': 'text/plain' });
    expect(await inputOf(key, agentId, accepted)).toMatchObject({ scheme: 'standard', deliveryId: 'msg_latin1', payload: expect.stringMatching(/^name=/) });
    // And bytes that were never signed passed, when they decode to the text that was: a
    // signed U+FFFD sent as the single byte 0xff instead.
    const replacement = utf8.encode('{"note":"\uFFFD"}');
    const swapped = new Uint8Array([...utf8.encode('{"note":"'), 0xff, ...utf8.encode('"}')]);
    expect((await post(hook, swapped, signed('msg_swapped', replacement))).status).toBe(401);
  });

  it('accepts a Stripe event whose body starts with a BOM, and takes its id as the delivery id', async () => {
    const { key } = await newTenant();
    const agentId = await newAgent(key);
    const hook = await hookFor(key, agentId, 'stripe', STRIPE_SECRET);
    const body = `${BOM}${JSON.stringify({ id: 'evt_bom', type: 'invoice.paid' })}`;
    const header = await new Stripe('sk_test_unused').webhooks.generateTestHeaderStringAsync({ payload: body, secret: STRIPE_SECRET });
    expect(await inputOf(key, agentId, await post(hook, body, { 'stripe-signature': header }))).toMatchObject({ deliveryId: 'evt_bom', event: 'invoice.paid', payload: { id: 'evt_bom' } });
  });

  it('passes on no event name for a Stripe event whose type is not a string', async () => {
    const { key } = await newTenant();
    const agentId = await newAgent(key);
    const hook = await hookFor(key, agentId, 'stripe', STRIPE_SECRET);
    for (const [id, type] of [['evt_obj', { name: 'invoice.paid' }], ['evt_num', 7], ['evt_empty', '']] as const) {
      const body = JSON.stringify({ id, type });
      const header = await new Stripe('sk_test_unused').webhooks.generateTestHeaderStringAsync({ payload: body, secret: STRIPE_SECRET });
      const input = await inputOf(key, agentId, await post(hook, body, { 'stripe-signature': header }));
      expect(input, id).toMatchObject({ deliveryId: id, payload: { id } });
      expect(input, id).not.toHaveProperty('event');
    }
  });

  it('accepts a delivery whose Content-Type names UTF-8 by another of its registered labels (utf8, csUTF8, unicode-1-1-utf-8)', async () => {
    const { key } = await newTenant();
    const agentId = await newAgent(key);
    const hook = await hookFor(key, agentId, 'standard', STANDARD_SECRET);
    for (const [n, charset] of ['utf8', 'UTF8', 'csUTF8', 'unicode-1-1-utf-8', '"utf8"'].entries()) {
      const body = JSON.stringify({ charset, text: 'caf\u00e9' });
      const res = await post(hook, body, { ...standardHeaders(`msg_label_${n}`, body), 'content-type': `application/json; charset=${charset}` });
      // They used to be 415: a sender that labels its UTF-8 so retried until it gave up.
      expect(res.status, charset).toBe(202);
      expect((await inputOf(key, agentId, res)).payload, charset).toEqual({ charset, text: 'caf\u00e9' });
    }
    const latin1 = JSON.stringify({ a: 1 });
    expect((await post(hook, latin1, { ...standardHeaders('msg_label_latin1', latin1), 'content-type': 'application/json; charset=latin1' })).status).toBe(415);
  });
});
