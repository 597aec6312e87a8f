import { Webhook } from 'standardwebhooks';
import type { HookScheme } from '../schemas/hook';

/** How far a signed timestamp may be from now (Standard Webhooks and Stripe use 5 minutes). */
export const TOLERANCE_S = 300;

/** The header each scheme's signature comes in (standard, github, stripe). */
const SIGNATURE_HEADERS = ['webhook-signature', 'x-hub-signature-256', 'stripe-signature'] as const;

/**
 * Whether a delivery carries a signature one of the schemes could check. One that carries none is
 * refused before its hook is looked up: whatever the hook, it would fail, and the lookup of an
 * unknown id costs a read of D1 (then a place in the cache of misses).
 */
export function carriesSignature(headers: Headers): boolean {
  return SIGNATURE_HEADERS.some((name) => Boolean(headers.get(name)));
}

export type Verified = { ok: true; deliveryId: string; event?: string } | { ok: false; reason: string };

const encoder = new TextEncoder();

function hexBytes(hex: string): Uint8Array | null {
  if (!/^([0-9a-f]{2})+$/i.test(hex)) return null;
  return Uint8Array.from(hex.match(/../g) ?? [], (h) => parseInt(h, 16));
}

/**
 * The body as text for the execution's input: a leading BOM is kept (TextDecoder drops it by
 * default), and a byte that is not UTF-8 becomes U+FFFD. Signatures are checked over the bytes.
 */
export function bodyText(body: Uint8Array): string {
  return new TextDecoder('utf-8', { fatal: false, ignoreBOM: true }).decode(body);
}

/** Whether one of `signatures` (hex) is HMAC-SHA256(secret, `prefix` + body); crypto.subtle.verify compares in constant time. */
async function hmacMatches(secret: string, prefix: string, body: Uint8Array, signatures: readonly string[]): Promise<boolean> {
  const key = await crypto.subtle.importKey('raw', encoder.encode(secret), { name: 'HMAC', hash: 'SHA-256' }, false, ['verify']);
  const head = encoder.encode(prefix);
  const signed = new Uint8Array(head.length + body.length);
  signed.set(head);
  signed.set(body, head.length);
  for (const signature of signatures) {
    const bytes = hexBytes(signature);
    if (bytes && (await crypto.subtle.verify('HMAC', key, bytes, signed))) return true;
  }
  return false;
}

/**
 * Stripe's scheme: `Stripe-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "t.body")>`, the
 * timestamp within tolerance, over the body's bytes as sent.
 */
async function verifyStripe(secret: string, body: Uint8Array, header: string | undefined, now: number): Promise<Verified> {
  if (!header) return { ok: false, reason: 'missing Stripe-Signature' };
  const parts = header.split(',').map((p) => p.split('=') as [string, string]);
  const t = Number(parts.find(([k]) => k === 't')?.[1]);
  const signatures = parts.filter(([k]) => k === 'v1').map(([, v]) => v);
  if (!Number.isFinite(t) || signatures.length === 0) return { ok: false, reason: 'malformed Stripe-Signature' };
  if (Math.abs(now / 1000 - t) > TOLERANCE_S) return { ok: false, reason: 'timestamp outside the tolerance' };
  if (!(await hmacMatches(secret, `${t}.`, body, signatures))) return { ok: false, reason: 'no matching signature' };
  let event: { id?: unknown; type?: unknown } | null;
  try {
    event = JSON.parse(bodyText(body).replace(/^\uFEFF/, '')) as { id?: unknown; type?: unknown } | null;
  } catch {
    return { ok: false, reason: 'body is not JSON' };
  }
  const id = event?.id;
  if (typeof id !== 'string' || !id) return { ok: false, reason: 'event has no id' };
  // Stripe's type is a string; anything else is passed on as no event rather than "[object Object]".
  const type = event?.type;
  return { ok: true, deliveryId: id, ...(typeof type === 'string' && type && { event: type }) };
}

/**
 * Checks an incoming delivery with its scheme's own rules, over the body's bytes as they came
 * (a signature covers bytes: text decoded by default would lose a BOM); never throws for bad input.
 */
export async function verifyDelivery(scheme: HookScheme, secret: string, body: Uint8Array, headers: Headers, now = Date.now()): Promise<Verified> {
  switch (scheme) {
    case 'standard': {
      try {
        // Only the signature is checked here: by default the library also JSON.parses a matching
        // body and throws for text, which would refuse a correctly signed non-JSON payload. It
        // is given the bytes: given their decoding, a body not UTF-8 was checked as other bytes
        // (each bad byte as U+FFFD), so a correctly signed one was refused, and unsigned bytes
        // that decode as the signed text passed.
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
      const valid = signature.startsWith('sha256=') && (await hmacMatches(secret, '', body, [signature.slice('sha256='.length)]));
      const event = headers.get('x-github-event');
      return valid ? { ok: true, deliveryId, ...(event && { event }) } : { ok: false, reason: 'signature does not match' };
    }
    case 'stripe':
      return verifyStripe(secret, body, headers.get('stripe-signature') ?? undefined, now);
  }
}
