import { z } from '@hono/zod-openapi';
import { hasControl } from './credential';

/** What DisplayName accepts, for descriptions and its refusal. */
export const DISPLAY_NAME_RULE = '1-200 characters, no control characters (C0, DEL or C1: NUL, a line break, a tab, ESC…)';

/**
 * A human-readable name (a tenant's, a key's, an agent's, a skill's). It is shown in the
 * dashboard, written to logs and the audit trail: a control character there could forge a log
 * line, recolour a terminal (ESC [31m) or cut a C string short (NUL). No name needs one.
 */
export const DisplayName = z
  .string()
  .min(1)
  .max(200)
  .refine((value) => !hasControl(value), `a name has no control characters (C0, DEL or C1: NUL, a line break, a tab, ESC…): it is shown in the dashboard, logs and audit`)
  .openapi({ description: DISPLAY_NAME_RULE });
