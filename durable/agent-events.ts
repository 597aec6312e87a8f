import type { AgentEvent } from '../worker/schemas/webhook';
import { iso } from '../worker/lib/time';
import { admittedKey, rememberedKeyStatus, revokedKeys, STREAM_KEY_HEADER } from '../worker/auth/key-status';
import type { Sql } from './sql';
import { AfterCommit } from './event-commit';
import { deletedFrame, encoder, noticeFrame, revokedFrame, sseFrame, type StreamNotice } from './event-frames';
import { carrySeqMark, highestSeqEver } from './event-seq-mark';
import { shedBacklog, type Subscriber } from './event-subscriber';
import { replayPage } from './event-replay';
import { StreamProgress, waitingBytes } from './event-progress';

/** Events kept for resuming streams; older ones are trimmed. */
export const EVENT_RETENTION = 1_000;
const HEARTBEAT_MS = 15_000;
/**
 * How many bytes of frames an SSE client may leave unread before its stream ends. The object
 * holds whatever the client has not taken yet, in its memory (128 MB for every agent of the
 * isolate): a client that stopped reading, on a busy agent, would otherwise grow it without end.
 * Past this the stream ends after a `behind` notice; the client resumes from the log with
 * Last-Event-ID, as from every reconnect.
 */
export const STREAM_BACKLOG_BYTES = 4 * 1024 * 1024;
/**
 * How long an SSE client may take nothing (not even a heartbeat) before its stream is ended. The
 * runtime does not always tell the object that a client went (its cancel may never arrive), and
 * such a stream stayed subscribed, with every frame since, for as long as the object lived.
 */
export const STREAM_STALL_MS = 60_000;
/** Counts a stream's backlog in bytes, and asks for none ahead: every frame is enqueued as it happens. */
const byteBacklog: QueuingStrategy<Uint8Array> = { highWaterMark: 0, size: (chunk) => chunk.byteLength };

/** The close code of an event socket whose key was revoked (RFC 6455 policy violation). */
export const REVOKED_CLOSE_CODE = 1008;
const socketKey = (socket: WebSocket): string | undefined => (socket.deserializeAttachment() as { keyId?: string } | null)?.keyId;

/**
 * The agent's event log (execution lifecycle, transactions) and its live subscribers: SSE
 * streams held by this instance, and hibernatable WebSockets tagged "events".
 */
export class AgentEvents {
  private readonly subscribers = new Set<Subscriber>();
  /** Events waiting for a check of the streams' keys, delivered in order after it. */
  private pending: Promise<void> | null = null;
  /** Recorded events wait here for their transaction to commit, with the sockets open then. */
  private readonly committed = new AfterCommit<WebSocket[]>(() => this.lastSeq(), (events, sockets) => this.deliver(events, sockets));

  constructor(
    private readonly sql: Sql,
    private readonly ctx: DurableObjectState,
    private readonly db: D1Database,
  ) {
    // The runtime answers the documented keep-alive itself: a client's ping neither wakes a
    // hibernated object nor takes its turn behind the agent's work.
    ctx.setWebSocketAutoResponse(new WebSocketRequestResponsePair('ping', 'pong'));
  }

  /** Appends an event (inside the caller's transaction) and hands it to live subscribers once that commits; `json`: `data` serialised, if the caller has it. */
  record(type: string, data: unknown, now: number, json?: string): AgentEvent {
    const [event] = this.recordAll([{ type, data, json }], now);
    if (!event) throw new Error('event not recorded');
    return event;
  }

  /** Appends events in order, in one statement (inside the caller's transaction), and hands them to live subscribers once that commits. */
  recordAll(entries: readonly { type: string; data: unknown; json?: string }[], now: number): AgentEvent[] {
    // RETURNING lists rows in no promised order, but seqs grow in the order of VALUES.
    const seqs = this.sql
      .all<{ seq: number }>(
        `INSERT INTO events (type, data, created_at) VALUES ${entries.map(() => '(?, ?, ?)').join(', ')} RETURNING seq`,
        ...entries.flatMap((e) => [e.type, e.json ?? JSON.stringify(e.data), now]),
      )
      .map((r) => r.seq)
      .sort((a, b) => a - b);
    const newest = seqs.at(-1) ?? 0;
    // Trimming as the seq crosses a hundred keeps between 1,000 and 1,100 for a fraction of the writes.
    if (Math.floor(newest / 100) !== Math.floor((newest - entries.length) / 100)) this.sql.run('DELETE FROM events WHERE seq <= ?', newest - EVENT_RETENTION);
    const events = entries.map((e, i): AgentEvent => ({ seq: seqs[i] ?? 0, type: e.type, timestamp: iso(now), data: e.data }));
    const sockets = this.ctx.getWebSockets('events');
    if (this.subscribers.size > 0 || sockets.length > 0) this.committed.hold(events, sockets);
    return events;
  }

  /**
   * Sends events to the open streams, but never to one whose key was revoked: while every
   * stream's key was found valid within the last 30 s (worker/auth/key-status.ts) they go at
   * once; otherwise after D1 has been asked, the streams of revoked keys are ended first, and
   * later events queue behind, so each stream still gets them in order. Empty `events` only
   * checks (a heartbeat).
   */
  private deliver(events: AgentEvent[], sockets = this.ctx.getWebSockets('events')): void {
    if (this.subscribers.size === 0 && sockets.length === 0) return;
    if (this.pending === null && this.keysKnownValid(sockets)) {
      this.send(events, sockets);
      return;
    }
    // The sockets open now: one accepted while the check runs was replayed these events already.
    const run = (this.pending ?? Promise.resolve())
      .then(() => this.endRevoked())
      .then((revoked) => this.send(events, sockets.filter((socket) => !revoked.has(socketKey(socket) ?? ''))))
      .catch((error: unknown) => console.error(JSON.stringify({ level: 'error', msg: 'event delivery failed', error: String(error) })));
    const tracked: Promise<void> = run.finally(() => {
      if (this.pending === tracked) this.pending = null;
    });
    this.pending = tracked;
  }

  private keysKnownValid(sockets: WebSocket[]): boolean {
    const now = Date.now();
    for (const subscriber of this.subscribers) if (subscriber.keyId && rememberedKeyStatus(subscriber.keyId, now) !== true) return false;
    for (const socket of sockets) {
      const keyId = socketKey(socket);
      if (keyId && rememberedKeyStatus(keyId, now) !== true) return false;
    }
    return true;
  }

  /** Ends the streams and sockets whose key D1 says was revoked (or deleted); returns those keys. */
  private async endRevoked(): Promise<Set<string>> {
    const sockets = this.ctx.getWebSockets('events');
    const keyIds = [...[...this.subscribers].map((s) => s.keyId), ...sockets.map(socketKey)].filter((k): k is string => k !== undefined);
    const revoked = await revokedKeys(this.db, keyIds);
    if (revoked.size === 0) return revoked;
    for (const subscriber of [...this.subscribers]) if (subscriber.keyId && revoked.has(subscriber.keyId)) subscriber.revoked();
    for (const socket of this.ctx.getWebSockets('events')) {
      const keyId = socketKey(socket);
      if (!keyId || !revoked.has(keyId)) continue;
      try {
        socket.close(REVOKED_CLOSE_CODE, 'the API key was revoked');
      } catch {
        /* already closing */
      }
    }
    return revoked;
  }

  private send(events: AgentEvent[], sockets: WebSocket[]): void {
    for (const event of events) {
      // One frame for every stream: what a stalled stream holds is then the same bytes as the others'.
      const frame = this.subscribers.size > 0 ? sseFrame(event) : undefined;
      if (frame) for (const subscriber of this.subscribers) subscriber.push(event, frame);
      const message = sockets.length > 0 ? JSON.stringify(event) : '';
      for (const socket of sockets) {
        try {
          socket.send(message);
        } catch {
          /* a closing socket: the runtime cleans it up */
        }
      }
    }
    if (this.subscribers.size > 1) shedBacklog(this.subscribers);
  }

  oldestSeq(): number | null {
    return this.sql.one<{ seq: number | null }>('SELECT min(seq) AS seq FROM events')?.seq ?? null;
  }

  /** SSE streams and event sockets open now: what the agent's cap counts (durable/stream-slots.ts); of `keyId` alone, what the key's leases are checked against (durable/key-stream-leases.ts). */
  openStreams = (keyId?: string): number => keyId === undefined ? this.subscribers.size + this.ctx.getWebSockets('events').length : [...this.subscribers].filter((s) => s.keyId === keyId).length + this.ctx.getWebSockets('events').filter((w) => socketKey(w) === keyId).length;

  lastSeq(): number {
    return this.sql.one<{ seq: number | null }>('SELECT max(seq) AS seq FROM events')?.seq ?? 0;
  }

  /** The highest seq this log ever gave, its rows gone or not (what a log after a deletion goes on from). */
  highestSeqEver = (): number => highestSeqEver(this.sql);

  /**
   * Where a client resuming after `lastEventId` starts: the notices it must have first (`reset`
   * when its id is beyond the log, `gap` when what follows it was trimmed) and the seq its replay
   * goes on from. Without `lastEventId` it starts live, at the newest event.
   */
  private resumeFrom(lastEventId: number | null): { notices: StreamNotice[]; after: number } {
    const newest = this.lastSeq();
    if (lastEventId === null) return { notices: [], after: newest };
    // An empty log goes on from the numbering of the agent deleted before it (`agentDeleted`):
    // the ids that agent gave are this log's, not beyond it, and those a client had not seen are gone.
    const given = newest > 0 ? newest : this.highestSeqEver();
    const notices: StreamNotice[] = [];
    let after = lastEventId;
    if (lastEventId > given) {
      notices.push({ type: 'reset', data: { lastEventId, newestSeq: given } });
      after = 0;
    }
    const gap = this.gapAfter(after, given);
    if (gap) notices.push(gap);
    // Told of the gap, the client goes on from the oldest event kept.
    return { notices, after: gap?.data.missedTo ?? after };
  }

  /** A `gap` notice when events right after `after` were trimmed (or, `given` the highest seq ever, deleted with an earlier agent), else null. */
  private gapAfter(after: number, given = 0): Extract<StreamNotice, { type: 'gap' }> | null {
    const oldest = this.oldestSeq() ?? given + 1;
    return after < oldest - 1 ? { type: 'gap', data: { missedFrom: after + 1, missedTo: oldest - 1 } } : null;
  }

  /**
   * A server-sent event stream: first what happened after `lastEventId` (after a `gap` or
   * `reset` notice if the client must know), then live events, with heartbeat comments. The
   * replay is read from the log a page at a time as the client takes it: queued at once, a
   * resume from the start of a log of large executions held hundreds of megabytes in the
   * object for a client that did not read. Live events wait in the log until the replay reaches them.
   */
  stream(lastEventId: number | null, keyId?: string): ReadableStream<Uint8Array> {
    let subscriber: Subscriber | null = null;
    let heartbeat: ReturnType<typeof setInterval> | undefined;
    let closed = false;
    /** Ended, its last frame queued: it closes once the client has taken every frame. */
    let ending = false;
    const cleanup = () => {
      if (subscriber) this.subscribers.delete(subscriber);
      clearInterval(heartbeat);
    };
    let finish = () => {};
    const start = this.resumeFrom(lastEventId);
    /** The newest seq this stream has carried (or, before it carried one, resumes after). */
    let last = start.after;
    let replaying = lastEventId !== null;
    /** When the client was last seen taking frames: it emptied its queue (the stream asked for more), or a heartbeat found it had read some. */
    let tookAt = Date.now();
    const progress = new StreamProgress();
    return new ReadableStream<Uint8Array>({
      start: (controller) => {
        progress.enqueue(controller, encoder.encode(': connected\nretry: 2000\n\n'));
        for (const notice of start.notices) progress.enqueue(controller, noticeFrame(notice));
        if (keyId) admittedKey(keyId);
        finish = () => {
          cleanup();
          closed = true;
          try {
            controller.close();
          } catch {
            /* the client already went */
          }
        };
        // Errored, not closed, so the frames waiting are let go; a client still there
        // reconnects with its Last-Event-ID and misses nothing.
        const drop = (error: unknown) => {
          cleanup();
          closed = true;
          try {
            controller.error(error);
          } catch {
            /* already ended */
          }
        };
        const end = (frame?: Uint8Array) => {
          if (closed || ending) return;
          try {
            if (frame) progress.enqueue(controller, frame);
          } catch {
            /* the client already went */
          }
          // Closed once its client has taken what waits for it (`pull`), the heartbeat watching
          // meanwhile: closed at once, the runtime kept those frames (up to 4 MiB) for a client
          // that neither read nor went, for as long as the object lived.
          if (waitingBytes(controller) > 0) ending = true;
          else finish();
        };
        subscriber = {
          ...(keyId && { keyId }),
          push: (event, frame) => {
            if (closed || ending || replaying || event.seq <= last) return;
            last = event.seq;
            try {
              progress.enqueue(controller, frame);
            } catch {
              cleanup();
              return;
            }
            const backlog = waitingBytes(controller);
            if (backlog > STREAM_BACKLOG_BYTES) end(noticeFrame({ type: 'behind', data: { lastEventId: last, backlogBytes: backlog } }));
          },
          backlog: () => waitingBytes(controller),
          end,
          revoked: () => end(revokedFrame),
          drop: () => drop(new Error("the agent's streams hold too much unread")),
          beat: (now) => {
            const waiting = waitingBytes(controller);
            // Reading, if slower than its events come: not gone.
            if (progress.tookSinceLastAsked(controller)) tookAt = now;
            try {
              // Gone or stuck: dropped (below).
              if (waiting > 0 && now - tookAt > STREAM_STALL_MS) throw new Error('the client took nothing for a minute');
              if (ending) return;
              progress.enqueue(controller, encoder.encode(': heartbeat\n\n'));
            } catch (error) {
              drop(error);
              return;
            }
            // An idle stream learns of its key's revocation here rather than with the next event.
            this.deliver([]);
          },
        };
        this.subscribers.add(subscriber);
        heartbeat = setInterval(() => subscriber?.beat(Date.now()), HEARTBEAT_MS);
      },
      pull: async (controller) => {
        tookAt = Date.now();
        if (ending) finish();
        if (!replaying || closed) return;
        // A replay read slowly is checked against its key as live events are.
        if (keyId && rememberedKeyStatus(keyId) !== true) {
          this.deliver([]);
          await this.pending;
          if (closed || ending) return;
        }
        // Trimmed while the client read (its replay fell 1,000 events behind the log).
        const gap = this.gapAfter(last);
        if (gap) progress.enqueue(controller, noticeFrame(gap));
        const { events, done } = replayPage(this.sql, last);
        for (const event of events) progress.enqueue(controller, sseFrame(event));
        last = events.at(-1)?.seq ?? gap?.data.missedTo ?? last;
        // Caught up: live events above `last` come from push, in the same turn as this read.
        if (done) replaying = false;
      },
      cancel: cleanup,
    }, byteBacklog);
  }

  /**
   * Accepts a hibernatable WebSocket and sends it what it missed since `lastEventId`: the same
   * notices as the SSE stream, as messages `{"type":"gap"|"reset","data":{…}}`, then the events,
   * read a page at a time and at most STREAM_BACKLOG_BYTES of them: a socket has no
   * backpressure here (the runtime buffers every message for a client that does not read), and
   * a whole log of large executions, sent at once, took the object's memory and its time for
   * as long as that took. Past the bound a `behind` notice names the last event sent and the
   * socket closes (1000); the client reconnects from it for the rest, as an SSE client does.
   */
  acceptSocket(server: WebSocket, lastEventId: number | null, keyId?: string): void {
    this.ctx.acceptWebSocket(server, ['events']);
    // Kept across hibernation, so events after a wake-up are checked against the key too.
    if (keyId) {
      server.serializeAttachment({ keyId });
      admittedKey(keyId);
    }
    const { notices, after } = this.resumeFrom(lastEventId);
    for (const notice of notices) server.send(JSON.stringify(notice));
    if (lastEventId === null) return;
    let last = after;
    let sent = 0;
    for (;;) {
      const { events, done } = replayPage(this.sql, last);
      for (const event of events) {
        const message = JSON.stringify(event);
        server.send(message);
        // Bytes, as the bound says: counted in UTF-16 units, text beyond ASCII sent up to three times as much.
        sent += encoder.encode(message).byteLength;
        last = event.seq;
      }
      if (done) return;
      if (sent >= STREAM_BACKLOG_BYTES) {
        server.send(JSON.stringify({ type: 'behind', data: { lastEventId: last, backlogBytes: sent } } satisfies StreamNotice));
        server.close(1000, 'replay continues: reconnect with lastEventId');
        return;
      }
    }
  }

  /**
   * After deleteAll: ends every open stream and socket (they would otherwise carry on into an
   * agent created again under this id), and has the next log go on from `lastSeq`. A client
   * still holding an id of the deleted agent then misses none of the new agent's events,
   * where a log restarted at 1 would have hidden them from it once it passed that id.
   */
  agentDeleted(lastSeq: number): void {
    this.committed.drop();
    this.closeAll('the agent was deleted');
    carrySeqMark(this.sql, lastSeq);
  }

  /** Ends every open stream (after a `deleted` notice) and socket. */
  private closeAll(reason: string): void {
    for (const subscriber of [...this.subscribers]) subscriber.end(deletedFrame);
    for (const socket of this.ctx.getWebSockets('events')) {
      try {
        socket.close(1000, reason);
      } catch {
        /* already closing */
      }
    }
  }

  /** Answers a WebSocket upgrade (`?lastEventId=` resumes) with a hibernatable event socket. */
  upgrade(request: Request): Response {
    const pair = new WebSocketPair();
    const lastEventId = Number(new URL(request.url).searchParams.get('lastEventId') ?? NaN);
    this.acceptSocket(pair[1], Number.isFinite(lastEventId) ? lastEventId : null, request.headers.get(STREAM_KEY_HEADER) ?? undefined);
    return new Response(null, { status: 101, webSocket: pair[0] });
  }

  /** A client's close: completes the closing handshake (1005/1006 cannot be sent back). */
  socketClose(socket: WebSocket, code: number): void {
    try {
      socket.close(code === 1005 || code === 1006 ? 1000 : code, 'closing');
    } catch {
      /* already closed */
    }
  }
}
