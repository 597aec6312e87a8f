/**
 * The messages of storage failures that are the platform's, not a bug of ours, and that a
 * retry may not meet again: the runtime refusing a statement (SQLite out of memory or file
 * handles, a busy or failing disk, as seen with thousands of objects in one local process),
 * an object reset under a query, a lost connection to D1 or an overloaded database. The
 * statement's transaction rolled back, so nothing is half-written.
 * D1's list: https://developers.cloudflare.com/d1/learning/debug-d1/ (error list)
 */
// A database (or object) reset under a statement rejects every statement pending on it, whatever
// its own cost: "… storage operation exceeded timeout which caused object to be reset" (a D1
// outage of about a minute, as the D1 team describes it), "D1 DB's isolate exceeded its memory
// limit and was reset", "D1 DB exceeded its CPU time limit and was reset". Matching only
// "storage caused object to be reset" answered those 500 on every list read.
const TRANSIENT_STORAGE =
  /internal error; reference = |\bSQLITE_(?:NOMEM|IOERR|FULL|CANTOPEN|BUSY|LOCKED)\b|Network connection lost|caused object to be reset|\bD1 DB\b[^\n]*\bwas reset\b|reset because its code was updated|D1 DB is overloaded|due to transient issue/;

/** Whether an error thrown by D1 or an object's storage is a transient failure of the platform. */
export function isTransientStorageError(error: unknown): boolean {
  return error instanceof Error && isTransientStorageMessage(error.message);
}

/** `isTransientStorageError` for an error known only by its text (a refusal passed on as a string). */
export function isTransientStorageMessage(text: string): boolean {
  return TRANSIENT_STORAGE.test(text);
}

/** What the runtime attaches to an error thrown by a Durable Object stub. */
export interface DurableObjectError extends Error {
  retryable?: boolean;
  overloaded?: boolean;
  /** Set when the object was reset under the call (a crash, a code update, `ctx.abort()`). */
  durableObjectReset?: boolean;
}

/** Whether an error thrown by a stub is the platform's (unreachable, reset, overloaded). */
// A reset carries neither `retryable` nor `overloaded`, yet the next call reaches a fresh
// instance: treating it as our own exception answered 500 (found by the chaos suite).
// The runtime's own failures inside the object (its storage refusing a statement, say SQLite
// out of memory or file handles with 10,000 objects open in one local process) reach the
// caller as an opaque "internal error; reference = …" or as the SQLite code inside our SQL
// helper's message: not a bug of ours either. The statement's transaction rolled back, and the
// call's keyed retry is safe, so they are treated the same way (found by the bench).
export const isPlatformError = (error: unknown): boolean => {
  if (!(error instanceof Error)) return false;
  const e: DurableObjectError = error;
  return e.retryable === true || e.overloaded === true || e.durableObjectReset === true || isTransientStorageError(e);
};
