type Controller = ReadableStreamDefaultController<Uint8Array>;

/** Bytes of frames waiting in a stream's queue for its client. */
export const waitingBytes = (controller: Controller): number => -(controller.desiredSize ?? 0);

/**
 * What the client of an SSE stream has taken of it. A client reading slower than its events
 * come never empties its queue, yet it is there: the heartbeat must tell it from one that took
 * nothing (gone without its stream being cancelled), which only the bytes read out of the
 * queue can. A chunk enqueued while a read already waits is handed to that read, never queued;
 * that read was asked for when the queue was empty, which the stream sees (`pull`) on its own.
 */
export class StreamProgress {
  private enqueued = 0;
  private handed = 0;
  /** Bytes read out of the queue when `tookSinceLastAsked` last looked (null: it never has). */
  private seen: number | null = null;

  /** Enqueues a frame (throws as the controller does once the stream has ended). */
  enqueue(controller: Controller, chunk: Uint8Array): void {
    const before = waitingBytes(controller);
    controller.enqueue(chunk);
    this.enqueued += chunk.byteLength;
    this.handed += before + chunk.byteLength - waitingBytes(controller);
  }

  /**
   * Whether the client read frames out of the queue since the last time this was asked. The
   * first time only takes the measure: what was read before it includes what the runtime
   * pumped into its own buffers as frames came, which a client that is gone never reads.
   */
  tookSinceLastAsked(controller: Controller): boolean {
    const dequeued = this.enqueued - this.handed - waitingBytes(controller);
    const took = this.seen !== null && dequeued > this.seen;
    this.seen = dequeued;
    return took;
  }
}
