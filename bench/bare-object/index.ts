import { DurableObject } from 'cloudflare:workers';
import { Hono } from 'hono';

/**
 * The ceiling for a durable execution in this harness: a bare Hono Worker that hands the body
 * to one Durable Object per agent by native RPC; the object records the execution in one row
 * of its SQLite storage and answers once that write is durable. No auth, no validation beyond
 * a JSON parse, no events, history, outbox or D1. What the runtime itself asks of one request
 * that must not be lost: the edge, one RPC, one commit.
 */
export class BareAgent extends DurableObject<object> {
  constructor(ctx: DurableObjectState, env: object) {
    super(ctx, env);
    ctx.storage.sql.exec('CREATE TABLE IF NOT EXISTS executions (id TEXT PRIMARY KEY, input TEXT NOT NULL, output TEXT NOT NULL, created_at INTEGER NOT NULL)');
  }

  execute(input: unknown): { id: string; status: 'succeeded'; output: { reply: string } } {
    const id = crypto.randomUUID();
    const output = { reply: 'ok' };
    this.ctx.storage.sql.exec('INSERT INTO executions (id, input, output, created_at) VALUES (?, ?, ?, ?)', id, JSON.stringify(input), JSON.stringify(output), Date.now());
    return { id, status: 'succeeded', output };
  }
}

const app = new Hono<{ Bindings: { AGENTS: DurableObjectNamespace<BareAgent> } }>();

app.post('/v1/agents/:id/executions', async (c) => {
  const body = await c.req.json<unknown>();
  const stub = c.env.AGENTS.get(c.env.AGENTS.idFromName(c.req.param('id')));
  return c.json(await stub.execute(body), 200);
});

export default app;
