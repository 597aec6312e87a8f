import { ApiError } from '../errors';

/** Opaque pagination cursors: base64url of the last key seen, so clients cannot depend on its shape. */
export function encodeCursor(lastKey: string): string {
  return btoa(lastKey).replaceAll('+', '-').replaceAll('/', '_').replace(/=+$/, '');
}

/** What a key of a list looks like: ids; a list of other keys (pool names have dots) passes its own. */
const ID_KEY = /^[a-zA-Z0-9_-]{1,80}$/;

/**
 * The key of a list whose keys are ids made by newId(prefix): a cursor of another list (an
 * agent id, an audit id) is refused rather than read as a place in this one, where it pointed
 * before or after every row and so answered an empty last page, or page one again.
 */
export const idsOf = (prefix: string): RegExp => new RegExp(`^${prefix}_[a-zA-Z0-9_-]{1,76}$`);

export function decodeCursor(cursor: string | undefined, keyPattern: RegExp = ID_KEY): string | undefined {
  if (cursor === undefined || cursor === '') return undefined;
  try {
    const padded = cursor.replaceAll('-', '+').replaceAll('_', '/');
    const key = atob(padded + '='.repeat((4 - (padded.length % 4)) % 4));
    if (!keyPattern.test(key)) throw new Error('bad key');
    return key;
  } catch {
    throw invalidCursor();
  }
}

/** The refusal of a cursor this list did not answer. */
export function invalidCursor(): ApiError {
  return new ApiError('invalid_request', 'cursor is not valid', [{ path: ['cursor'], message: 'not a cursor of this list (pass the nextCursor it answered)', code: 'custom' }]);
}
