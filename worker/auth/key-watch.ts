import { ApiError } from '../errors';
import { atPrimary } from '../lib/d1-primary';
import { admittedKey, keyStatusBeingRead, rememberedKeyStatus, revokedKeys } from './key-status';

/** What a client cut off for its key is told (an event stream's `unauthorized` frame says the same). */
export const REVOKED_MESSAGE = "this stream's API key was revoked";

/** What a call is told whose key was found revoked before its answer began (the work it started goes on). */
export const REVOKED_WHILE_RUNNING = "this request's API key was revoked while it ran";

/**
 * The JSON-RPC error that ends an A2A or MCP stream cut for its key: neither protocol names an
 * authentication error (both leave it to HTTP's 401, which a stream under way cannot send), so
 * it is JSON-RPC's implementation-defined server error, its message led by the gateway's code.
 */
export const REVOKED_RPC_ERROR = { code: -32000, message: `unauthorized: ${REVOKED_MESSAGE}` } as const;

/**
 * How often a watched answer looks at what this isolate knows of its key: a map lookup, with a
 * D1 read only when the remembered answer has lapsed. A revocation here is seen within this;
 * the revoking request itself cannot end the answer (a request may not touch another's streams).
 */
const CHECK_MS = 1_000;

/** The key of one long answer, watched until the answer ends. */
export interface KeyWatch {
  /** Settles once the key is found revoked (never, if the watch stops first). */
  readonly revoked: Promise<void>;
  /** Whether this isolate knows the key revoked now: the check before each piece of output, never a D1 read. */
  knownRevoked(): boolean;
  stop(): void;
}

/**
 * Watches the key an answer was admitted with (the Worker has just authenticated it). D1 is
 * asked again once this isolate's answer about the key lapses (after 30 s,
 * worker/auth/key-status.ts; one read per key however many answers watch it), and a
 * revocation in this isolate is seen within `CHECK_MS`. D1 being unreachable keeps the answer
 * going; it is asked again at the next check. Reads go to the primary, so a lagging replica
 * cannot call a revoked key valid for another 30 s.
 */
export function watchKey(db: D1Database, keyId: string): KeyWatch {
  admittedKey(keyId);
  let stopped = false;
  let timer: ReturnType<typeof setInterval> | undefined;
  const stop = () => {
    stopped = true;
    clearInterval(timer);
  };
  const revoked = new Promise<void>((resolve) => {
    let asking = false;
    const found = () => {
      if (stopped) return;
      stop();
      resolve();
    };
    timer = setInterval(() => {
      const status = rememberedKeyStatus(keyId);
      if (status === false) return found();
      if (status === true || asking || keyStatusBeingRead(keyId)) return;
      asking = true;
      void revokedKeys(atPrimary(db), [keyId])
        .then((keys) => { if (keys.has(keyId)) found(); })
        .finally(() => { asking = false; });
    }, CHECK_MS);
  });
  return { revoked, knownRevoked: () => rememberedKeyStatus(keyId) === false, stop };
}


/** How a stream cut for its key ends: the last bytes its client gets (nothing: a plain end). */
export interface KeyBoundOptions {
  db: D1Database;
  keyId: string;
  /** The stream's last frame, telling the client why it ended (computed when it is cut). */
  lastFrame?: () => Uint8Array | undefined;
  /** Sees each chunk that goes to the client (to know what the last frame must still answer). */
  passed?: (chunk: Uint8Array) => void;
}

/**
 * `source` for as long as the key it was opened with stays valid: once the key is found
 * revoked, the client gets `lastFrame` and the end of the stream, no chunk after, and `source`
 * is cancelled (its producer stops: an upstream fetch is aborted, an agent's object stops
 * following the task — the work itself goes on, only this client is cut off).
 */
export function keyBoundStream(source: ReadableStream<Uint8Array>, options: KeyBoundOptions): ReadableStream<Uint8Array> {
  const reader = source.getReader();
  const watch = watchKey(options.db, options.keyId);
  let ended = false;
  const finish = () => {
    ended = true;
    watch.stop();
  };
  const cut = (controller: ReadableStreamDefaultController<Uint8Array>) => {
    if (ended) return;
    finish();
    try {
      const last = options.lastFrame?.();
      if (last) controller.enqueue(last);
      controller.close();
    } catch {
      /* the client already went */
    }
    void reader.cancel(new Error('the API key was revoked')).catch(() => undefined);
  };
  return new ReadableStream<Uint8Array>({
    start(controller) {
      void watch.revoked.then(() => cut(controller));
    },
    async pull(controller) {
      let next: ReadableStreamReadResult<Uint8Array>;
      try {
        next = await reader.read();
      } catch (error) {
        if (ended) return;
        finish();
        controller.error(error);
        return;
      }
      if (ended) return;
      if (next.done) {
        finish();
        controller.close();
        return;
      }
      if (watch.knownRevoked()) return cut(controller);
      options.passed?.(next.value);
      controller.enqueue(next.value);
    },
    cancel(reason) {
      finish();
      return reader.cancel(reason);
    },
  });
}

/**
 * `work`'s answer while the key the request was admitted with stays valid. Once the key is
 * found revoked before the answer begins, the request is answered 401 `unauthorized` as it
 * would be if it came now, with `details` naming what it started (and `keyRevoked: true`, which
 * makes it count against budgets as started work: worker/limits/work.ts). A sync execution can
 * run for minutes; without this its result would reach whoever holds a key revoked meanwhile.
 */
export async function answerWhileKeyValid<T>(db: D1Database, keyId: string, work: Promise<T>, details: Record<string, string> = {}): Promise<T> {
  const watch = watchKey(db, keyId);
  try {
    const outcome = await Promise.race([work.then((value) => ({ value })), watch.revoked.then(() => null)]);
    if (outcome === null || watch.knownRevoked()) throw new ApiError('unauthorized', REVOKED_WHILE_RUNNING, { ...details, keyRevoked: true }, { 'www-authenticate': 'Bearer' });
    return outcome.value;
  } finally {
    watch.stop();
  }
}

/** Whether an error is `answerWhileKeyValid`'s: work started for a key revoked before its answer. */
export function revokedWhileRunning(error: unknown): boolean {
  const details = error instanceof ApiError && error.code === 'unauthorized' ? error.details : undefined;
  return typeof details === 'object' && details !== null && 'keyRevoked' in details && details.keyRevoked === true;
}
