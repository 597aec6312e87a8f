import { mediaType } from '../worker/lib/media-type';

/** At most this many `acceptedOutputModes`, each a media type of at most MAX_MODE_LENGTH characters. */
export const MAX_OUTPUT_MODES = 32;
export const MAX_MODE_LENGTH = 255;

/**
 * Which parts of a turn's `output` artifact (the reply as text/plain, the output as
 * application/json) its send's `acceptedOutputModes` asks for, as A2A says an agent SHOULD.
 * Media types are matched without parameters and case; wildcards count (`text/` or
 * `application/` and a star, and the wildcard type for both). Both when none is given, and
 * when none of them is one of the two: the answer is never dropped for lack of a form the
 * client named.
 */
export function acceptedParts(modes: readonly string[] | undefined): { text: boolean; data: boolean } {
  const types = new Set((modes ?? []).map((mode) => mediaType(mode)));
  const text = types.has('text/plain') || types.has('text/*') || types.has('*/*');
  const data = types.has('application/json') || types.has('application/*') || types.has('*/*');
  return text || data ? { text, data } : { text: true, data: true };
}

/** The modes a turn's execution input carries (`input.acceptedOutputModes`), or undefined. */
export function modesOfInput(input: unknown): string[] | undefined {
  const modes = input && typeof input === 'object' && 'acceptedOutputModes' in input ? input.acceptedOutputModes : undefined;
  return Array.isArray(modes) && modes.every((m) => typeof m === 'string') ? modes : undefined;
}
