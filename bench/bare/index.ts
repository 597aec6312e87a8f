import { Hono } from 'hono';

/**
 * The ceiling for a proxy in this harness: a bare Hono Worker that forwards a chat completion
 * to the mock upstream and returns its answer. No auth, no validation, no state.
 */
const app = new Hono<{ Bindings: { UPSTREAM_URL: string } }>();

app.post('/v1/chat/completions', async (c) => {
  const upstream = await fetch(`${c.env.UPSTREAM_URL}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: await c.req.text() });
  return new Response(upstream.body, upstream);
});

export default app;
