/**
 * A JSON Schema (2020-12, as OpenAPI 3.1 uses it) checker for the keywords the gateway's
 * document uses, so a test can ask the document whether it accepts a body. Validators that
 * compile schemas to code (ajv) cannot run in workerd, which refuses code generation. A keyword
 * it does not know throws: an unknown constraint must never pass as accepted.
 */
export type Schema = boolean | { [keyword: string]: unknown };

const ANNOTATIONS = new Set(['$schema', 'description', 'example', 'examples', 'default', 'title', 'deprecated', 'readOnly', 'writeOnly', 'contentMediaType']);

const typeOf = (value: unknown): string[] => {
  if (value === null) return ['null'];
  if (Array.isArray(value)) return ['array'];
  if (typeof value === 'number') return Number.isInteger(value) ? ['number', 'integer'] : ['number'];
  return [typeof value];
};

const parsesAsUrl = (value: string) => {
  try {
    return new URL(value) instanceof URL;
  } catch {
    return false;
  }
};

const equal = (a: unknown, b: unknown): boolean => JSON.stringify(a) === JSON.stringify(b);
const length = (s: string) => [...s].length;

/** Whether `value` is valid against `schema`, resolving `#/components/schemas/…` in `root`. */
export function accepts(root: { components?: { schemas?: Record<string, Schema> } }, schema: Schema, value: unknown): boolean {
  if (typeof schema === 'boolean') return schema;
  const check = (s: Schema, v: unknown) => accepts(root, s, v);
  for (const [keyword, rule] of Object.entries(schema)) {
    if (ANNOTATIONS.has(keyword)) continue;
    const object = value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
    const ok = (() => {
      switch (keyword) {
        case '$ref': {
          const name = String(rule).replace('#/components/schemas/', '');
          const target = root.components?.schemas?.[name];
          if (target === undefined) throw new Error(`unresolved $ref ${String(rule)}`);
          return check(target, value);
        }
        case 'type': return (Array.isArray(rule) ? rule : [rule]).some((t) => typeOf(value).includes(String(t)));
        case 'enum': return (rule as unknown[]).some((option) => equal(option, value));
        case 'const': return equal(rule, value);
        case 'anyOf': return (rule as Schema[]).some((s) => check(s, value));
        case 'oneOf': return (rule as Schema[]).filter((s) => check(s, value)).length === 1;
        case 'allOf': return (rule as Schema[]).every((s) => check(s, value));
        case 'not': return !check(rule as Schema, value);
        // A conditional: `then` (or `else`) applies as `if` holds, and `if` alone asserts nothing.
        case 'if': return check(rule as Schema, value) ? check((schema.then as Schema | undefined) ?? true, value) : check((schema.else as Schema | undefined) ?? true, value);
        case 'then': case 'else': return true;
        case 'minLength': return typeof value !== 'string' || length(value) >= Number(rule);
        case 'maxLength': return typeof value !== 'string' || length(value) <= Number(rule);
        // Formats are annotations in 2020-12 unless asserted; the gateway's uri ones are checked, as zod does.
        case 'format': return rule !== 'uri' || typeof value !== 'string' || parsesAsUrl(value);
        case 'pattern': return typeof value !== 'string' || new RegExp(String(rule), 'u').test(value);
        case 'minimum': return typeof value !== 'number' || value >= Number(rule);
        case 'maximum': return typeof value !== 'number' || value <= Number(rule);
        case 'exclusiveMinimum': return typeof value !== 'number' || value > Number(rule);
        case 'exclusiveMaximum': return typeof value !== 'number' || value < Number(rule);
        case 'items': return !Array.isArray(value) || value.every((item) => check(rule as Schema, item));
        case 'minItems': return !Array.isArray(value) || value.length >= Number(rule);
        case 'maxItems': return !Array.isArray(value) || value.length <= Number(rule);
        case 'required': return !object || (rule as string[]).every((name) => Object.hasOwn(object, name));
        case 'minProperties': return !object || Object.keys(object).length >= Number(rule);
        case 'maxProperties': return !object || Object.keys(object).length <= Number(rule);
        case 'propertyNames': return !object || Object.keys(object).every((name) => check(rule as Schema, name));
        case 'properties': return !object || Object.entries(rule as Record<string, Schema>).every(([name, s]) => !Object.hasOwn(object, name) || check(s, object[name]));
        case 'additionalProperties': {
          if (!object) return true;
          const named = new Set(Object.keys((schema.properties as Record<string, Schema> | undefined) ?? {}));
          return Object.entries(object).every(([name, v]) => named.has(name) || check(rule as Schema, v));
        }
        default: throw new Error(`json-schema: keyword ${keyword} is not supported`);
      }
    })();
    if (!ok) return false;
  }
  return true;
}
