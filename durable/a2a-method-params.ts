import type { z } from 'zod';
import type { A2AVersion } from '../worker/a2a/rpc-error';

/** Schemas of the params of the methods a check covers, per protocol version. */
export type MethodSchemas = Record<A2AVersion, Record<string, z.ZodType>>;

/**
 * The first reason `params` do not fit the method's schema, naming the field as the client sent
 * it (`message.parts.0: …`), or null: null too for a method the schemas do not cover.
 */
export function paramsProblem(schemas: MethodSchemas, version: A2AVersion, method: unknown, params: unknown, otherwise: string): string | null {
  const schema = typeof method === 'string' && Object.hasOwn(schemas[version], method) ? schemas[version][method] : undefined;
  if (!schema) return null;
  const parsed = schema.safeParse(params ?? {});
  if (parsed.success) return null;
  const issue = parsed.error.issues[0];
  return issue ? `${issue.path.join('.') || 'params'}: ${issue.message}` : otherwise;
}
