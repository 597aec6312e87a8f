import type { ChatCompletionRequest } from '../schemas/openai';
import { canonicalJson, sha256Hex } from '../lib/hash';
import { textOrStream } from '../lib/bytes';
import { MAX_REPLY_BYTES } from '../upstream/http-attempt';
import { isChatCompletion } from './completions';

const CACHE_HOST = 'https://chat-cache.gateway.internal';

/** Fields that do not change the answer and must not split the cache. */
const IGNORED = new Set(['user', 'stream', 'stream_options', 'metadata', 'store']);

/**
 * Cache key: tenant, pool and the request with its keys sorted and non-semantic fields dropped.
 * The pool is its definition (name and `updatedAt`, which every PUT sets), not its name alone:
 * answers stored under a pool that was replaced, or deleted and made again, came from targets
 * (and models) it may no longer have, and would otherwise be served until their TTL.
 */
export async function chatCacheKey(tenantId: string, pool: { name: string; updatedAt: string }, body: ChatCompletionRequest): Promise<string> {
  const normalized = Object.fromEntries(Object.entries(body).filter(([k]) => !IGNORED.has(k)));
  return `${CACHE_HOST}/${await sha256Hex(canonicalJson({ tenantId, pool: pool.name, definedAt: pool.updatedAt, request: normalized }))}`;
}

/** A cached completion (x-gateway-cache: HIT), from this location's Cache API. */
export async function cachedChat(key: string): Promise<Response | null> {
  const hit = await caches.default.match(key);
  if (!hit) return null;
  const response = new Response(hit.body, hit);
  response.headers.set('x-gateway-cache', 'HIT');
  // Stored with the attempts of the call that got it; this answer called no target.
  // x-gateway-upstream stays: it names the target whose answer this is.
  response.headers.set('x-gateway-attempts', '0');
  response.headers.delete('cache-control');
  return response;
}

/**
 * Stores a completion for `ttl` seconds and answers it (x-gateway-cache: MISS). `unchecked`: the
 * answer was handed on unread (a `passThrough` pool), so it is parsed here, and one that does
 * not parse, is no chat completion, or is over MAX_REPLY_BYTES, is answered as it came but never stored
 * (x-gateway-cache: BYPASS). A checked answer already parsed in the proxy and is not parsed again.
 */
export async function storeChat(ctx: { waitUntil(promise: Promise<unknown>): void }, key: string, response: Response, ttl: number, unchecked: boolean): Promise<Response> {
  const headers = new Headers(response.headers);
  // A checked answer was read up to MAX_REPLY_BYTES already; an unchecked one larger than that
  // is handed on as it arrives, never stored: held whole it could exhaust the isolate's memory.
  const read = unchecked ? await textOrStream(response, MAX_REPLY_BYTES) : { text: await response.text() };
  if ('stream' in read) {
    headers.set('x-gateway-cache', 'BYPASS');
    return new Response(read.stream, { status: response.status, headers });
  }
  const { text } = read;
  if (unchecked && !isCompletionText(text)) {
    headers.set('x-gateway-cache', 'BYPASS');
    return new Response(text, { status: response.status, headers });
  }
  headers.set('x-gateway-cache', 'MISS');
  const stored = new Response(text, { status: 200, headers: new Headers(headers) });
  stored.headers.set('cache-control', `max-age=${ttl}`);
  ctx.waitUntil(caches.default.put(key, stored));
  return new Response(text, { status: 200, headers });
}

/**
 * Whether an unchecked answer is one to store: a chat completion, as the proxy requires of a
 * checked one. JSON of another shape (a proxy's 200 `{"error":…}`) used to be stored, and
 * answered every such chat until its TTL, the target long recovered.
 */
function isCompletionText(text: string): boolean {
  try {
    return isChatCompletion(JSON.parse(text));
  } catch {
    return false;
  }
}
