import { ApiError } from '../errors';

/** Opaque pagination cursors: base64url of the last key seen, so clients cannot depend on its shape. */
export function encodeCursor(lastKey: string): string {
  return btoa(lastKey).replaceAll('+', '-').replaceAll('/', '_').replace(/=+$/, '');
}

/** What a key of a list looks like: ids; a list of other keys (pool names have dots) passes its own. */
const ID_KEY = /^[a-zA-Z0-9_-]{1,80}$/;

export function decodeCursor(cursor: string | undefined, keyPattern: RegExp = ID_KEY): string | undefined {
  if (cursor === undefined || cursor === '') return undefined;
  try {
    const padded = cursor.replaceAll('-', '+').replaceAll('_', '/');
    const key = atob(padded + '='.repeat((4 - (padded.length % 4)) % 4));
    if (!keyPattern.test(key)) throw new Error('bad key');
    return key;
  } catch {
    throw new ApiError('invalid_request', 'cursor is not valid', [{ path: ['cursor'], message: 'not a cursor from this API' }]);
  }
}
