import { SELF } from 'cloudflare:test';
import { Webhook } from 'standardwebhooks';
import { expect } from 'vitest';
import { api, BASE } from './api';

/** Secrets of the three incoming schemes, as a tenant would register them. */
export const STANDARD_SECRET = `whsec_${btoa('0123456789abcdef0123456789abcdef')}`;
export const GITHUB_SECRET = 'github-secret-0123456789';
export const STRIPE_SECRET = 'whsec_stripe_test_secret_0123456789';

/** A sender's POST to an incoming hook (no API key: the signature is the credential). */
export const post = (id: string, body: BodyInit, headers: Record<string, string>) =>
  SELF.fetch(`${BASE}/v1/hooks/${id}`, { method: 'POST', body, headers: { 'content-type': 'application/json', ...headers } });

/** Registers an incoming hook for `agentId` and checks the answer never shows its secret; its id. */
export async function hookFor(key: string, agentId: string, scheme: string, secret: string): Promise<string> {
  const id = `hook-${scheme}-${crypto.randomUUID().slice(0, 8)}`;
  const res = await api(`/v1/hooks/${id}`, { method: 'PUT', key, body: { agentId, intent: `on.${scheme}`, scheme, secret } });
  expect(res.status).toBe(201);
  expect(res.body).toMatchObject({ id, agentId, scheme, url: `/v1/hooks/${id}` });
  expect(JSON.stringify(res.body)).not.toContain(secret);
  return id;
}

/** Standard Webhooks headers signing `body` as delivery `msgId` at `at`. */
export function standardHeaders(msgId: string, body: string, at = new Date(), secret = STANDARD_SECRET): Record<string, string> {
  return { 'webhook-id': msgId, 'webhook-timestamp': String(Math.floor(at.getTime() / 1000)), 'webhook-signature': new Webhook(secret).sign(msgId, at, body) };
}
