import type { StandardSchemaWithJSON } from '@modelcontextprotocol/server';
import type { z } from 'zod';
import { validationError } from '../errors';

/** A tool's arguments as checked: their parsed value, or why they were refused. */
export type CheckedArgs<T> = { ok: true; value: T } | { ok: false; error: z.ZodError };

/**
 * A tool's input schema whose validation never fails inside the MCP SDK: it hands the outcome
 * to the tool, which refuses bad arguments (`argsOf`) with the API's error envelope like any
 * other failure: `invalid_request` with the issues' paths in `details`, as REST validation
 * answers. Failing in the SDK would give a tool error whose text is the SDK's own prose
 * ("Input validation error: …"). `tools/list` still shows the zod schema's JSON Schema.
 *
 * @example
 * server.registerTool('get_context', { inputSchema: checkedArgs(AgentArgs) }, (args) =>
 *   run(caller, 'get_context', () => read(argsOf(args).agentId)));
 */
export function checkedArgs<S extends z.ZodType>(schema: S): StandardSchemaWithJSON<z.input<S>, CheckedArgs<z.output<S>>> {
  return {
    '~standard': {
      version: 1,
      vendor: 'edge-agent-gateway',
      validate: (value: unknown) => {
        const parsed = schema.safeParse(value);
        return { value: parsed.success ? { ok: true, value: parsed.data } : { ok: false, error: parsed.error } };
      },
      jsonSchema: schema['~standard'].jsonSchema,
    },
  };
}

/** The arguments' value, or the `invalid_request` error to answer with. */
export function argsOf<T>(checked: CheckedArgs<T>): T {
  if (!checked.ok) throw validationError(checked.error);
  return checked.value;
}
