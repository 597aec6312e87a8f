import { concatBytes, readUpTo } from '../lib/bytes';
import { withoutCredential } from '../lib/masked-credential';
import { CredentialMasker } from '../openai/sse-credential';
import { UpstreamError } from './types';

/**
 * A target's error body as far as it came: whole, over `maxBytes` (the rest cancelled), or cut
 * (it stalled past the attempt's timeout, or its connection broke) with what had arrived and
 * why the read failed. An error whose body never ends must still be shown with its status: read
 * with `readBounded`, a stalled one failed as a whole, and a chat relayed the target's 4xx with
 * an empty body.
 */
export type ErrorBody = { kind: 'whole'; text: string } | { kind: 'too-large' } | { kind: 'cut'; text: string; error: unknown };

export async function readErrorBody(response: Response, maxBytes: number, waitMs?: number): Promise<ErrorBody> {
  if (Number(response.headers.get('content-length')) > maxBytes) {
    await response.body?.cancel().catch(() => {});
    return { kind: 'too-large' };
  }
  if (!response.body) return { kind: 'whole', text: '' };
  const reader = response.body.getReader();
  const chunks: Uint8Array[] = [];
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    const read = readUpTo(reader, maxBytes, chunks);
    // Cancelling the reader settles the read left behind; it must not reject unhandled.
    read.catch(() => {});
    const stalled = new Promise<never>((_, reject) => {
      if (waitMs !== undefined) timer = setTimeout(() => reject(new UpstreamError('timeout', `no more of it within ${waitMs} ms`, true)), waitMs);
    });
    const bytes = await Promise.race([read, stalled]);
    if (bytes) return { kind: 'whole', text: new TextDecoder().decode(bytes) };
    await reader.cancel().catch(() => {});
    return { kind: 'too-large' };
  } catch (error) {
    void reader.cancel().catch(() => {});
    return { kind: 'cut', text: new TextDecoder().decode(concatBytes(chunks, chunks.reduce((sum, chunk) => sum + chunk.byteLength, 0))), error };
  } finally {
    clearTimeout(timer);
  }
}

/**
 * How long an attempt waits for the rest of an error body once its headers are in. The status
 * already says whether the call is retried; a body that stalled after them held the attempt to
 * its own limit, which without a target `timeoutMs` is the execution's whole deadline, so the
 * next target was never asked.
 */
export const ERROR_BODY_WAIT_MS = 1_000;

/** What a cut error body is said to be, with the first of what arrived (masked by the caller). */
export const cutBodyNote = (status: number, failure: UpstreamError, arrived: string): string =>
  `the target's ${status} error body ${failure.kind === 'timeout' ? 'stalled' : 'broke off'} after its headers (${failure.message})${arrived ? `; what arrived: ${arrived.slice(0, 200)}` : ', nothing of it arrived'}`;

/**
 * The text of a body, `credential` masked in it; of a cut one, without an end that may begin the
 * credential (spelt as it is or escaped): a body that stalled inside it would otherwise show
 * all of it but its last characters. That end is what a stream's masker holds back until the
 * next chunk, which never comes.
 */
export function maskedBodyText(read: Exclude<ErrorBody, { kind: 'too-large' }>, credential: string | undefined): string {
  const masker = read.kind === 'cut' ? CredentialMasker.for(credential) : null;
  const text = masker ? new TextDecoder().decode(masker.push(new TextEncoder().encode(read.text))) : read.text;
  return withoutCredential(text, credential);
}
