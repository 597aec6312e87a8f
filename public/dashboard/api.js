// The gateway's /v1 API, as this page uses it: the pasted key as `Authorization: Bearer`, to
// this origin only.
import { state } from './state.js';

/** The gateway did not answer at all (down, restarting, or the browser offline). */
export class UnreachableError extends Error {}

export class ApiError extends Error {
  constructor(status, code, message, retryAfterS = null) {
    super(message);
    this.status = status;
    this.code = code;
    this.retryAfterS = retryAfterS;
  }
}

// Set by the page's entry module: a 401 anywhere ends the session, and the modules that meet
// one would otherwise import the session, which imports them. `reason` is the API's message;
// `key` the key that was refused, so a late answer to an earlier key cannot end a newer one's.
let unauthorizedHandler = () => undefined;
export const onUnauthorized = (handler) => { unauthorizedHandler = handler; };
export const unauthorized = (reason, key) => unauthorizedHandler(reason, key);

export const authorization = (key = state.apiKey) => `Bearer ${key}`;

/** A Retry-After header in seconds (delta-seconds or an HTTP date), or null without one. */
export function retryAfterSeconds(header) {
  if (!header) return null;
  if (/^\d+$/.test(header.trim())) return Number(header.trim());
  const at = Date.parse(header);
  return Number.isNaN(at) ? null : Math.max(0, Math.ceil((at - Date.now()) / 1000));
}

export async function api(path, { method = 'GET', body, signal, headers: extra = {} } = {}) {
  const key = state.apiKey;
  const headers = { ...extra, authorization: authorization(key), accept: 'application/json' };
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (state.bookmark) headers['x-d1-bookmark'] = state.bookmark;
  // A path, never a URL: requests go to this origin only.
  let res;
  try {
    res = await fetch(path, { method, headers, signal, body: body === undefined ? undefined : JSON.stringify(body), cache: 'no-store' });
  } catch (error) {
    if (signal?.aborted) throw error;
    throw new UnreachableError(error.message);
  }
  keepBookmark(res.headers.get('x-d1-bookmark'));
  const payload = res.status === 204 ? null : await res.json().catch(() => null);
  if (!res.ok) {
    const error = payload?.error ?? {};
    if (res.status === 401) unauthorized(error.message, key);
    throw new ApiError(res.status, error.code ?? 'http_error', error.message ?? `HTTP ${res.status}`, retryAfterSeconds(res.headers.get('retry-after')));
  }
  return payload;
}

/**
 * Keeps `bookmark` if it is newer than the one kept: answers can arrive out of order, and D1's
 * bookmarks sort in the order of the writes they follow (D1's own sessions keep the greater).
 */
function keepBookmark(bookmark) {
  if (bookmark && (state.bookmark === null || state.bookmark.localeCompare(bookmark) < 0)) state.bookmark = bookmark;
}

export const agentPath = (id) => `/v1/agents/${encodeURIComponent(id)}`;
