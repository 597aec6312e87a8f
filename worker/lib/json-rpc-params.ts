import type { z } from 'zod';

/**
 * Schemas of the params of the methods a check covers, per protocol version (A2A's `1.0` and
 * `0.3`, MCP's `legacy` and `modern` eras): a method missing from a version is not checked.
 */
export type MethodSchemas<V extends string> = Record<V, Record<string, z.ZodType>>;

/**
 * The first reason `params` do not fit the method's schema, naming the field as the client sent
 * it (`message.parts.0: …`), or null: null too for a method the schemas do not cover. Absent
 * params are checked as `{}`, so a required field is named rather than `params`.
 */
export function paramsProblem<V extends string>(schemas: MethodSchemas<V>, version: V, method: unknown, params: unknown, otherwise: string): string | null {
  const schema = typeof method === 'string' && Object.hasOwn(schemas[version], method) ? schemas[version][method] : undefined;
  if (!schema) return null;
  const parsed = schema.safeParse(params ?? {});
  if (parsed.success) return null;
  const issue = parsed.error.issues[0];
  return issue ? `${issue.path.join('.') || 'params'}: ${issue.message}` : otherwise;
}
