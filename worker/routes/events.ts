import { createRoute, z } from '@hono/zod-openapi';
import { STREAM_KEY_HEADER } from '../auth/key-status';
import { ApiError, unwrap } from '../errors';
import { agentObjectId, agentStub, callAgent, requireAgent } from '../agents/registry';
import { underStreamLease } from '../limits/stream-leases';
import { AgentIdParams } from '../schemas/common';
import { commonErrors, errorResponse, limitedResponse, security, streamHeaders } from './openapi';
import { router } from './router';

/**
 * A last event id: a seq, or empty, which means none (the HTML SSE processing model resets the
 * id to the empty string, and a proxy may forward an empty header).
 */
const LastEventId = z.string().regex(/^(?:\d{1,15})?$/);
const Resume = z.object({
  'last-event-id': LastEventId.optional().openapi({ description: 'resume after this event (SSE reconnects send it); empty: as if absent' }),
});
const ResumeQuery = z.object({ lastEventId: LastEventId.optional().openapi({ description: 'resume after this event; empty: as if absent' }) });

/** The seq to resume after: the header's, else the query's; an empty one counts as not given. */
const lastId = (header: string | undefined, query: string | undefined): number | null =>
  header ? Number(header) : query ? Number(query) : null;

const SSE_HEADERS = { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', 'x-accel-buffering': 'no' };

/** The object's refusal of one more stream (durable/stream-slots.ts), as it answers an upgrade. */
const StreamRefusal = z.object({ ok: z.literal(false), code: z.literal('too_many_streams'), message: z.string(), details: z.object({ retryAfter: z.number() }).loose() });

/** A stream refused past the agent's cap or the key's: its code, besides the key's own limits. */
const tooManyStreams = limitedResponse(
  'too_many_streams: the agent holds its most streams open, event streams (SSE and WebSocket) and A2A streams together (32 unless the operator sets MAX_STREAMS_PER_AGENT; details {limit: "streams.perAgent", max, open, retryAfter}), or the API key holds its most across its agents (64 unless the operator sets MAX_STREAMS_PER_KEY; details {limit: "streams.perKey", max, open, retryAfter}); close one or retry after Retry-After. rate_limited / budget_exhausted: the key\'s limits',
);

export const events = router()
  .openapi(
    createRoute({
      method: 'get',
      path: '/v1/agents/{id}/events',
      tags: ['events'],
      summary: "Live server-sent events of the agent's executions, resumable with Last-Event-ID",
      security,
      request: { params: AgentIdParams, headers: Resume, query: ResumeQuery },
      responses: { 200: { content: { 'text/event-stream': { schema: z.string() } }, description: 'the event stream: lifecycle events (with `id`), `gap` / `reset` notices (without) on a resume, a last `behind` notice when a client that stopped reading falls 4 MiB behind (reconnect with Last-Event-ID), and a last `deleted` notice when the agent is deleted', headers: streamHeaders }, 404: errorResponse('not_found'), ...commonErrors, 429: tooManyStreams },
    }),
    async (c) => {
      const { id } = c.req.valid('param');
      // HEAD (answered by this GET route) sends no body: a stream opened for it would stay
      // subscribed in the object, fed every event, until its heartbeat found it stalled. The
      // object still answers it, so it is refused as its GET would be once the agent is full.
      const head = c.req.method === 'HEAD';
      const { tenantId, keyId } = c.get('principal');
      const route = await requireAgent(c.env, tenantId, id);
      const since = lastId(c.req.valid('header')['last-event-id'], c.req.valid('query').lastEventId);
      // Under the key's lease (its cap across agents), given back at once if the agent refuses.
      const stream = await underStreamLease(c, agentObjectId(c.env, tenantId, id, route), async () => unwrap(await callAgent(c.env, tenantId, id, route, (stub) => stub.subscribe(since, keyId, head))), undefined, head);
      return new Response(stream, { headers: SSE_HEADERS });
    },
  )
  .openapi(
    createRoute({
      method: 'get',
      path: '/v1/agents/{id}/events/ws',
      tags: ['events'],
      summary: 'The same events over a WebSocket (hibernating); `?lastEventId=` replays what was missed',
      security,
      request: { params: AgentIdParams, query: ResumeQuery },
      responses: {
        101: { description: 'switching to WebSocket: messages are events `{seq, type, timestamp, data}` and notices `{"type":"gap"|"reset","data":{…}}`; a replay over 4 MiB ends with `{"type":"behind","data":{lastEventId,backlogBytes}}` and a close (1000): reconnect from that lastEventId' },
        404: errorResponse('not_found'),
        // No Upgrade header documented: the runtime drops it from any answer but a 101.
        426: errorResponse('upgrade_required: not a WebSocket upgrade (send Upgrade: websocket)'),
        ...commonErrors,
        429: tooManyStreams,
      },
    }),
    async (c) => {
      const { id } = c.req.valid('param');
      if (c.req.header('upgrade')?.toLowerCase() !== 'websocket') throw new ApiError('upgrade_required', 'this route needs a WebSocket upgrade (Upgrade: websocket)');
      const { tenantId, keyId } = c.get('principal');
      const route = await requireAgent(c.env, tenantId, id);
      const url = new URL('https://agent/events/ws');
      const since = c.req.valid('query').lastEventId;
      if (since) url.searchParams.set('lastEventId', since);
      const stub = agentStub(c.env, tenantId, id, route) as unknown as { fetch(request: Request): Promise<Response> };
      // Under the key's lease, as for SSE. The socket's key travels with it, so the object can end it once the key is revoked.
      const res = await underStreamLease(c, agentObjectId(c.env, tenantId, id, route), () => stub.fetch(new Request(url, { headers: { upgrade: 'websocket', [STREAM_KEY_HEADER]: keyId } })), (answer) => answer.status === 101);
      // The object has no agent (deleted while this isolate still routes to it): its bare 404
      // becomes the error envelope every route answers, as the SSE stream's does.
      if (res.status === 404) throw new ApiError('not_found', `agent ${id} not found`);
      // Its refusal of one more stream, in the envelope with Retry-After as the SSE route's is.
      if (res.status === 429) throw ApiError.from(StreamRefusal.parse(await res.json()));
      return res;
    },
  );
