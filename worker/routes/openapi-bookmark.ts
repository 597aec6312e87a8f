/**
 * `x-d1-bookmark` in the OpenAPI document. The D1 session middleware (`worker/middleware/d1-session.ts`)
 * runs on every `/v1` route, so the header belongs to every `/v1` operation rather than to each
 * route's definition: added here once, to the generated document, as shared components.
 */

const NAME = 'x-d1-bookmark';

const parameter = {
  in: 'header',
  name: NAME,
  required: false,
  schema: { type: 'string', maxLength: 256 },
  description:
    'The bookmark a previous response carried: this request reads D1 at least as new as that write (read-your-writes across read replicas). Malformed values are ignored.',
} as const;

const header = {
  required: false,
  schema: { type: 'string' },
  description:
    "The D1 session's latest bookmark, when the request used D1 or sent a bookmark itself (then handed back); send it on the next request.",
} as const;

const METHODS = new Set(['get', 'put', 'post', 'delete', 'patch', 'head', 'options']);

interface Operation {
  parameters?: unknown[];
  responses?: Record<string, { headers?: Record<string, unknown> }>;
}
interface Document {
  paths?: Record<string, Record<string, unknown>>;
  components?: Record<string, Record<string, unknown> | undefined>;
}

/** Adds the request and response header `x-d1-bookmark` to every `/v1` operation of `doc`. */
export function withD1Bookmark<T extends object>(generated: T): T {
  // The generator's own types have no index signatures; the walk below only needs these members.
  const doc = generated as Document;
  const components = (doc.components ??= {});
  components.parameters = { ...components.parameters, [NAME]: parameter };
  components.headers = { ...components.headers, [NAME]: header };
  for (const [path, operations] of Object.entries(doc.paths ?? {})) {
    if (!path.startsWith('/v1/')) continue;
    for (const [method, value] of Object.entries(operations)) {
      if (!METHODS.has(method)) continue;
      const operation = value as Operation;
      operation.parameters = [...(operation.parameters ?? []), { $ref: `#/components/parameters/${NAME}` }];
      for (const response of Object.values(operation.responses ?? {})) {
        response.headers = { ...response.headers, [NAME]: { $ref: `#/components/headers/${NAME}` } };
      }
    }
  }
  return generated;
}
