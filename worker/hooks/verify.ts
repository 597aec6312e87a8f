import { verify as verifyGithub } from '@octokit/webhooks-methods';
import { Webhook } from 'standardwebhooks';
import type { HookScheme } from '../schemas/hook';

/** How far a signed timestamp may be from now (Standard Webhooks and Stripe use 5 minutes). */
export const TOLERANCE_S = 300;

export type Verified = { ok: true; deliveryId: string; event?: string } | { ok: false; reason: string };

const encoder = new TextEncoder();

function hexBytes(hex: string): Uint8Array | null {
  if (!/^([0-9a-f]{2})+$/i.test(hex)) return null;
  return Uint8Array.from(hex.match(/../g) ?? [], (h) => parseInt(h, 16));
}

/**
 * Stripe's scheme: `Stripe-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "t.body")>`, the
 * timestamp within tolerance. crypto.subtle.verify compares in constant time.
 */
async function verifyStripe(secret: string, body: string, header: string | undefined, now: number): Promise<Verified> {
  if (!header) return { ok: false, reason: 'missing Stripe-Signature' };
  const parts = header.split(',').map((p) => p.split('=') as [string, string]);
  const t = Number(parts.find(([k]) => k === 't')?.[1]);
  const signatures = parts.filter(([k]) => k === 'v1').map(([, v]) => v);
  if (!Number.isFinite(t) || signatures.length === 0) return { ok: false, reason: 'malformed Stripe-Signature' };
  if (Math.abs(now / 1000 - t) > TOLERANCE_S) return { ok: false, reason: 'timestamp outside the tolerance' };
  const key = await crypto.subtle.importKey('raw', encoder.encode(secret), { name: 'HMAC', hash: 'SHA-256' }, false, ['verify']);
  for (const signature of signatures) {
    const bytes = hexBytes(signature);
    if (bytes && (await crypto.subtle.verify('HMAC', key, bytes, encoder.encode(`${t}.${body}`)))) {
      let id: unknown;
      try {
        id = (JSON.parse(body) as { id?: unknown }).id;
      } catch {
        return { ok: false, reason: 'body is not JSON' };
      }
      return typeof id === 'string' && id ? { ok: true, deliveryId: id, event: String((JSON.parse(body) as { type?: unknown }).type ?? '') } : { ok: false, reason: 'event has no id' };
    }
  }
  return { ok: false, reason: 'no matching signature' };
}

/** Checks an incoming delivery with its scheme's own rules; never throws for bad input. */
export async function verifyDelivery(scheme: HookScheme, secret: string, body: string, headers: Headers, now = Date.now()): Promise<Verified> {
  switch (scheme) {
    case 'standard': {
      try {
        // Only the signature is checked here: by default the library also JSON.parses a matching
        // body and throws for text, which would refuse a correctly signed non-JSON payload.
        new Webhook(secret).verify(body, Object.fromEntries(headers), { jsonParse: false });
      } catch (error) {
        return { ok: false, reason: error instanceof Error ? error.message : 'bad signature' };
      }
      return { ok: true, deliveryId: headers.get('webhook-id') ?? '' };
    }
    case 'github': {
      const signature = headers.get('x-hub-signature-256');
      const deliveryId = headers.get('x-github-delivery');
      if (!signature || !deliveryId) return { ok: false, reason: 'missing X-Hub-Signature-256 or X-GitHub-Delivery' };
      let valid = false;
      try {
        valid = await verifyGithub(secret, body, signature);
      } catch {
        valid = false;
      }
      const event = headers.get('x-github-event');
      return valid ? { ok: true, deliveryId, ...(event && { event }) } : { ok: false, reason: 'signature does not match' };
    }
    case 'stripe':
      return verifyStripe(secret, body, headers.get('stripe-signature') ?? undefined, now);
  }
}
