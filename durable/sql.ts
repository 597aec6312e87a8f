type SqlValue = ArrayBuffer | string | number | null;

/** Thin helper over the object's SQLite: typed rows, and the failing query in the error. */
export class Sql {
  constructor(private readonly sql: SqlStorage) {}

  all<T extends Record<string, SqlValue>>(query: string, ...params: SqlValue[]): T[] {
    return this.wrap(query, () => this.sql.exec<T>(query, ...params).toArray());
  }

  one<T extends Record<string, SqlValue>>(query: string, ...params: SqlValue[]): T | undefined {
    return this.all<T>(query, ...params)[0];
  }

  run(query: string, ...params: SqlValue[]): number {
    return this.wrap(query, () => this.sql.exec(query, ...params).rowsWritten);
  }

  private wrap<R>(query: string, fn: () => R): R {
    try {
      return fn();
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      throw new Error(`SQL failed (${message}): ${query.replace(/\s+/g, ' ').slice(0, 200)}`);
    }
  }
}
