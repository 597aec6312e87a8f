import { describe, expect, it } from 'vitest';
import { mergePatch } from '../../worker/lib/json-merge-patch';

/** RFC 7396, Appendix A ("Example Test Cases"): every row of the table, in order. */
const RFC_7396_APPENDIX_A: Array<[original: string, patch: string, result: string]> = [
  ['{"a":"b"}', '{"a":"c"}', '{"a":"c"}'],
  ['{"a":"b"}', '{"b":"c"}', '{"a":"b","b":"c"}'],
  ['{"a":"b"}', '{"a":null}', '{}'],
  ['{"a":"b","b":"c"}', '{"a":null}', '{"b":"c"}'],
  ['{"a":["b"]}', '{"a":"c"}', '{"a":"c"}'],
  ['{"a":"c"}', '{"a":["b"]}', '{"a":["b"]}'],
  ['{"a":{"b":"c"}}', '{"a":{"b":"d","c":null}}', '{"a":{"b":"d"}}'],
  ['{"a":[{"b":"c"}]}', '{"a":[1]}', '{"a":[1]}'],
  ['["a","b"]', '["c","d"]', '["c","d"]'],
  ['{"a":"b"}', '["c"]', '["c"]'],
  ['{"a":"foo"}', 'null', 'null'],
  ['{"a":"foo"}', '"bar"', '"bar"'],
  ['{"e":null}', '{"a":1}', '{"e":null,"a":1}'],
  ['[1,2]', '{"a":"b","c":null}', '{"a":"b"}'],
  ['{}', '{"a":{"bb":{"ccc":null}}}', '{"a":{"bb":{}}}'],
];

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object') {
    for (const child of Object.values(value)) deepFreeze(child);
    Object.freeze(value);
  }
  return value;
}

describe('mergePatch (RFC 7396)', () => {
  it.each(RFC_7396_APPENDIX_A)('appendix A: %s patched with %s gives %s', (original, patch, result) => {
    expect(mergePatch(JSON.parse(original), JSON.parse(patch))).toEqual(JSON.parse(result));
  });

  it('does not modify the target (or the patch)', () => {
    const target = { a: 'b', keep: { x: 1, y: [1, 2] }, nested: { drop: true, stay: 'yes' } };
    const patch = { a: null, nested: { drop: null, added: { deep: 1 } }, list: [3] };
    const targetBefore = structuredClone(target);
    const patchBefore = structuredClone(patch);

    const result = mergePatch(target, patch);

    expect(target).toEqual(targetBefore);
    expect(patch).toEqual(patchBefore);
    expect(result).toEqual({ keep: { x: 1, y: [1, 2] }, nested: { stay: 'yes', added: { deep: 1 } }, list: [3] });
    expect(result).not.toBe(target);
  });

  it('works on a deeply frozen target (it never writes to it)', () => {
    const target = deepFreeze({ a: { b: { c: 1, d: 2 } }, e: 'f' });
    expect(mergePatch(target, { a: { b: { c: null, z: 3 } }, e: null })).toEqual({ a: { b: { d: 2, z: 3 } } });
    expect(target).toEqual({ a: { b: { c: 1, d: 2 } }, e: 'f' });
  });

  it('a later change to the result does not reach the target', () => {
    const target = { a: { b: 1 } };
    const result = mergePatch(target, { a: { c: 2 } }) as { a: Record<string, unknown> };
    result.a.b = 99;
    expect(target).toEqual({ a: { b: 1 } });
  });

  it('an empty object patch leaves the document as it is (as a new object)', () => {
    const target = { a: 1, b: { c: [1, 2] } };
    expect(mergePatch(target, {})).toEqual(target);
  });

  // JSON.parse makes "__proto__" an own member; RFC 7396 treats member names as opaque.
  it('treats a member named "__proto__" like any other member', () => {
    const result = mergePatch({ a: 1 }, JSON.parse('{"__proto__":{"polluted":true}}')) as Record<string, unknown>;
    expect(Object.keys(result)).toEqual(['a', '__proto__']);
    expect(result.polluted).toBeUndefined();
  });
});
