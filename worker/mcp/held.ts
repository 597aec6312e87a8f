/**
 * A streamed answer's body, held until `decided` settles or the stream ends, whichever comes
 * first: what the stream sent meanwhile is read (so the sender is never blocked) and comes
 * first, then the rest as it arrives. Lets the route answer once it knows what its headers
 * must say, without waiting for the whole stream.
 *
 * @example const body = await heldUntil(answer.body, toolDecided);
 */
export async function heldUntil(body: ReadableStream<Uint8Array>, decided: Promise<unknown>): Promise<ReadableStream<Uint8Array>> {
  const reader = body.getReader();
  const read: Uint8Array[] = [];
  let ended = false;
  let settled = false;
  const stop = decided.then(() => { settled = true; }, () => { settled = true; }).then(() => null);
  let pending: Promise<ReadableStreamReadResult<Uint8Array>> | null = null;
  while (!settled) {
    pending ??= reader.read();
    const next = await Promise.race([pending, stop]);
    if (next === null) break; // decided; the read in flight is taken up by the first pull
    pending = null;
    if (next.done) {
      ended = true;
      break;
    }
    read.push(next.value);
  }
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      const chunk = read.shift();
      if (chunk) return controller.enqueue(chunk);
      if (ended) return controller.close();
      const next = await (pending ?? reader.read());
      pending = null;
      if (next.done) controller.close();
      else controller.enqueue(next.value);
    },
    cancel: (reason) => reader.cancel(reason),
  });
}
