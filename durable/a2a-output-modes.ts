import type { Artifact, Part } from '@a2a-js/sdk';
import { mediaType } from '../worker/lib/media-type';
import type { ExecutionRow } from './agent-rows';

/** At most this many `acceptedOutputModes`, each a media type of at most MAX_MODE_LENGTH characters. */
export const MAX_OUTPUT_MODES = 32;
export const MAX_MODE_LENGTH = 255;

/**
 * The media type a part is matched as: its own `mediaType` when it names one, else what its
 * content is (A2A leaves the field optional): text is text/plain, data application/json, and
 * a file of unnamed type application/octet-stream (RFC 2046's type for unknown bytes).
 */
export function partMediaType(part: Part): string {
  const own = mediaType(part.mediaType);
  if (own) return own;
  switch (part.content?.$case) {
    case 'text': return 'text/plain';
    case 'data': return 'application/json';
    default: return 'application/octet-stream';
  }
}

function accepts(modes: ReadonlySet<string>, type: string): boolean {
  if (modes.has('*/*') || modes.has(type)) return true;
  const slash = type.indexOf('/');
  return slash > 0 && modes.has(`${type.slice(0, slash)}/*`);
}

/**
 * A turn's artifacts as its send's `acceptedOutputModes` ask for them, as A2A says an agent
 * SHOULD answer: parts of a media type none of the modes accepts are left out, and an
 * artifact left without parts with them. The same rule for the gateway's own `output`
 * artifact, its reference to a large answer and the artifacts an upstream names, so every
 * view of the task (built from the execution row) agrees. Media types are matched without
 * parameters and case; `text/`-and-star style wildcards count, and the wildcard of all types.
 * Everything when no mode is given, and when the modes would leave no part at all: the answer is never dropped for lack
 * of a form the client named.
 */
export function shapedArtifacts(artifacts: Artifact[], modes: readonly string[] | undefined): Artifact[] {
  const accepted = new Set((modes ?? []).map((mode) => mediaType(mode)).filter((mode): mode is string => Boolean(mode)));
  if (accepted.size === 0 || accepted.has('*/*')) return artifacts;
  const shaped = artifacts
    .map((artifact) => ({ ...artifact, parts: artifact.parts.filter((part) => accepts(accepted, partMediaType(part))) }))
    .filter((artifact) => artifact.parts.length > 0);
  return shaped.length > 0 ? shaped : artifacts;
}

/** The modes a turn's execution input carries (`input.acceptedOutputModes`), or undefined. */
export function modesOfInput(input: unknown): string[] | undefined {
  const modes = input && typeof input === 'object' && 'acceptedOutputModes' in input ? input.acceptedOutputModes : undefined;
  return Array.isArray(modes) && modes.every((m) => typeof m === 'string') ? modes : undefined;
}

/** The modes an execution's send named: an A2A turn's; a REST execution's input asks for nothing. */
export function modesOfRow(row: Pick<ExecutionRow, 'intent' | 'input'>): string[] | undefined {
  if (row.intent !== 'a2a.message' || row.input === null) return undefined;
  try {
    return modesOfInput(JSON.parse(row.input));
  } catch {
    return undefined;
  }
}
