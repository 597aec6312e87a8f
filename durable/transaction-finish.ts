/** A transaction's run in this instance: its decision, then its end (phase two and the index). */
export interface Run {
  decided: Promise<void>;
  done: Promise<void>;
}

/**
 * Owns the finish (phase two and the index) that a decision taken outside a run starts: a
 * participant's inquiry past the deadline deciding abort. The inquiry's answer does not wait for
 * it. The decision itself is durable before the answer leaves (a SQLite write, held by the
 * output gate), and the participant applies it on hearing it; awaited, the phase-two abort to
 * that same participant landed before its answer, and an operator's resolve that asked found
 * the lock already gone (409 `already_finished` instead of the coordinator's abort).
 *
 * It used to be `void`: a failure of it (its storage refusing a read) was an unhandled
 * rejection, and a replay meanwhile started a second phase two beside it. Now it is the
 * instance's run (a replay waits for it as for a run's end), kept alive with `waitUntil`, and
 * its failure is logged: the alarm, armed since begin, retries whatever it left.
 */
export function ownedFinish(ctx: DurableObjectState, finishing: Promise<void>, txId: string, ended: (run: Run) => void): Run {
  const done = finishing.catch((error: unknown) => {
    console.error(JSON.stringify({ msg: 'transaction finish failed', txId, error: String(error) }));
  });
  const run: Run = { decided: Promise.resolve(), done };
  void done.then(() => ended(run));
  ctx.waitUntil(done);
  return run;
}
