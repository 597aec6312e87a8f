/**
 * The messages of storage failures that are the platform's, not a bug of ours, and that a
 * retry may not meet again: the runtime refusing a statement (SQLite out of memory or file
 * handles, a busy or failing disk, as seen with thousands of objects in one local process),
 * an object reset under a query, a lost connection to D1 or an overloaded database. The
 * statement's transaction rolled back, so nothing is half-written.
 * D1's list: https://developers.cloudflare.com/d1/learning/debug-d1/ (error list)
 */
const TRANSIENT_STORAGE =
  /internal error; reference = |\bSQLITE_(?:NOMEM|IOERR|FULL|CANTOPEN|BUSY|LOCKED)\b|Network connection lost|storage caused object to be reset|reset because its code was updated|D1 DB is overloaded|due to transient issue/;

/** Whether an error thrown by D1 or an object's storage is a transient failure of the platform. */
export function isTransientStorageError(error: unknown): boolean {
  return error instanceof Error && TRANSIENT_STORAGE.test(error.message);
}
