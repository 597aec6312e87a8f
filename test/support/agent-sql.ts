export type SqlValue = ArrayBuffer | string | number | null;

/**
 * Puts `intercept` in front of an agent object's SQL handle (the one its store, events,
 * webhooks and transactions share): it sees every statement and decides what happens, usually
 * by calling `real` after looking. Call it inside `runInDurableObject` with the instance.
 */
export function interceptAgentSql(instance: unknown, intercept: (query: string, params: SqlValue[], real: SqlStorage) => SqlStorageCursor<Record<string, SqlStorageValue>>): void {
  const holder = (instance as { store: { sql: { sql: SqlStorage } } }).store.sql;
  const real = holder.sql;
  holder.sql = { exec: (query: string, ...params: SqlValue[]) => intercept(query, params, real) } as unknown as SqlStorage;
}
