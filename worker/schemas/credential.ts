import { z } from '@hono/zod-openapi';

/** Whether `value` has a control character (C0, DEL or C1). */
export function hasControl(value: string): boolean {
  for (let i = 0; i < value.length; i++) {
    const code = value.charCodeAt(i);
    if (code < 0x20 || (code >= 0x7f && code <= 0x9f)) return true;
  }
  return false;
}

/**
 * An upstream credential, sent as `Authorization: Bearer <it>`. One with a control character
 * is refused when written: fetch refuses a line break or NUL in a header before sending it
 * (every call failed as "upstream connection failed", was retried, and counted against the
 * target), and servers answer the other controls with a 400. No credential has one.
 */
export const UpstreamCredential = z
  .string()
  .min(1)
  .max(1024)
  .refine((value) => !hasControl(value), 'apiKey has a control character (a line break, a tab, NUL…), which no HTTP header carries: send the credential itself');
