import { describe, expect, it } from 'vitest';
import { backoffMs, invokeUpstream, retryAfterWait, type InvokeOptions } from '../../worker/upstream/invoke';
import { UpstreamError, type AttemptOptions, type Upstream, type UpstreamReply, type UpstreamRequest } from '../../worker/upstream/types';
import { upstreamRequest } from './fixtures';

const REQUEST = upstreamRequest();

const REPLY: UpstreamReply = { output: { reply: 'hi' }, contextPatch: { turns: 1 } };

type Step = UpstreamReply | UpstreamError | Error | 'hang';

/**
 * A fake upstream that plays a script, one step per attempt (the last step repeats).
 * 'hang' waits on the attempt's signal and fails the way a real upstream does: a retryable
 * timeout when the attempt timed out, a cancel otherwise.
 */
class ScriptedUpstream implements Upstream {
  readonly label = 'scripted';
  calls = 0;
  readonly signals: AbortSignal[] = [];

  constructor(private readonly script: Step[], readonly timeoutMs?: number) {}

  async call(request: UpstreamRequest, { signal }: AttemptOptions): Promise<UpstreamReply> {
    expect(request).toBe(REQUEST);
    this.signals.push(signal);
    const step = this.script[Math.min(this.calls, this.script.length - 1)];
    this.calls++;
    if (step === 'hang') return hang(signal);
    if (step instanceof Error) throw step;
    if (step === undefined) throw new Error('empty script');
    return step;
  }
}

function hang(signal: AbortSignal): Promise<never> {
  return new Promise((_resolve, reject) => {
    const fail = () => {
      const reason: unknown = signal.reason;
      reject(
        reason instanceof DOMException && reason.name === 'TimeoutError'
          ? new UpstreamError('timeout', 'upstream attempt timed out', true)
          : new UpstreamError('cancelled', 'execution was cancelled', false),
      );
    };
    if (signal.aborted) fail();
    else signal.addEventListener('abort', fail, { once: true });
  });
}

const retryable = (message = 'upstream answered 503', status = 503, retryAfterMs?: number) =>
  new UpstreamError('http', message, true, status, retryAfterMs);

function options(overrides: Partial<InvokeOptions> = {}): InvokeOptions & { attemptLog: number[] } {
  const attemptLog: number[] = [];
  return {
    deadlineAt: Date.now() + 10_000,
    signal: new AbortController().signal,
    onAttempt: (n) => attemptLog.push(n),
    attemptLog,
    ...overrides,
  };
}

describe('backoffMs', () => {
  const lowest = () => 0;
  const highest = () => 1;

  it('stays between 0 and the attempt\'s ceiling', () => {
    for (let attempt = 1; attempt <= 8; attempt++) {
      const ceiling = Math.min(2_000, 100 * 2 ** (attempt - 1));
      for (let i = 0; i < 50; i++) {
        const delay = backoffMs(attempt);
        expect(delay).toBeGreaterThanOrEqual(0);
        expect(delay).toBeLessThanOrEqual(ceiling);
        expect(Number.isInteger(delay)).toBe(true);
      }
    }
  });

  it('uses full jitter: from 0 up to the ceiling', () => {
    expect(backoffMs(1, lowest)).toBe(0);
    expect(backoffMs(1, highest)).toBe(100);
    expect(backoffMs(3, () => 0.5)).toBe(200);
  });

  it('doubles the ceiling with each attempt, from 100 ms', () => {
    expect([1, 2, 3, 4, 5].map((n) => backoffMs(n, highest))).toEqual([100, 200, 400, 800, 1_600]);
  });

  it('caps the ceiling at 2 s', () => {
    expect(backoffMs(6, highest)).toBe(2_000);
    expect(backoffMs(10, highest)).toBe(2_000);
    expect(backoffMs(50, highest)).toBe(2_000);
  });
});

describe('retryAfterWait', () => {
  const now = 1_000_000;

  it('calls at once a target that asked for no pause, or whose pause is over', () => {
    expect(retryAfterWait(undefined, now + 5_000, true, now)).toBe(0);
    expect(retryAfterWait(0, now + 5_000, true, now)).toBe(0);
    expect(retryAfterWait(now - 1, now + 5_000, true, now)).toBe(0);
  });

  it('waits out a pause that ends before the deadline', () => {
    expect(retryAfterWait(now + 3_000, now + 5_000, true, now)).toBe(3_000);
    expect(retryAfterWait(now + 3_000, now + 5_000, false, now)).toBe(3_000);
  });

  it('makes no retry whose pause would end past the deadline, but lets a first attempt go ahead', () => {
    expect(retryAfterWait(now + 120_000, now + 5_000, true, now)).toBeNull();
    expect(retryAfterWait(now + 5_000, now + 5_000, true, now)).toBeNull();
    expect(retryAfterWait(now + 120_000, now + 5_000, false, now)).toBe(0);
  });
});

/**
 * A fake pool: `next` picks the targets in `picks` order (the last repeats), and a failure's
 * Retry-After keeps its target's `notBefore` as the pool runtime does.
 */
class ScriptedPool implements Upstream {
  readonly label = 'pool p';
  readonly called: string[] = [];
  skipped = 0;
  private picked = 0;
  private current = '';
  private readonly notBefore = new Map<string, number>();

  constructor(
    private readonly steps: Record<string, Step>,
    private readonly picks: string[],
    notBefore: Record<string, number> = {},
  ) {
    for (const [id, at] of Object.entries(notBefore)) this.notBefore.set(id, at);
  }

  next() {
    this.current = this.picks[Math.min(this.picked++, this.picks.length - 1)] ?? '';
    return { label: `pool p/${this.current}`, notBefore: this.notBefore.get(this.current) ?? 0 };
  }

  skip() {
    this.skipped++;
  }

  async call(): Promise<UpstreamReply> {
    const id = this.current;
    this.called.push(id);
    const step = this.steps[id];
    if (step instanceof UpstreamError) {
      if (step.retryAfterMs !== undefined) this.notBefore.set(id, Date.now() + step.retryAfterMs);
      throw step;
    }
    if (step === undefined || step === 'hang' || step instanceof Error) throw new Error('not scripted');
    return step;
  }
}

describe('invokeUpstream and Retry-After', () => {
  it("calls the next target after the backoff alone, whatever Retry-After the failed one sent", async () => {
    const pool = new ScriptedPool({ a: retryable('rate limited', 429, 120_000), b: REPLY }, ['a', 'b']);
    const started = Date.now();
    const outcome = await invokeUpstream(pool, REQUEST, options());
    expect(outcome).toEqual({ ok: true, reply: REPLY, attempts: 2 });
    expect(pool.called).toEqual(['a', 'b']);
    expect(Date.now() - started).toBeLessThan(1_000);
  });

  it('waits out the Retry-After when the retry goes back to the target that sent it', async () => {
    const pool = new ScriptedPool({ a: retryable('busy', 503, 400) }, ['a']);
    const steps: Step[] = [retryable('busy', 503, 400), REPLY];
    const single = new ScriptedUpstream(steps);
    for (const upstream of [pool, single]) {
      const started = Date.now();
      const outcome = await invokeUpstream(upstream, REQUEST, options({ maxAttempts: 2 }));
      expect(outcome.attempts).toBe(2);
      expect(Date.now() - started).toBeGreaterThanOrEqual(390);
    }
    expect(pool.called).toEqual(['a', 'a']);
  });

  it('does not retry a target whose Retry-After ends past the deadline, and gives the chosen attempt back', async () => {
    const pool = new ScriptedPool({ a: retryable('rate limited', 429, 60_000) }, ['a']);
    const before = Date.now();
    const outcome = await invokeUpstream(pool, REQUEST, options({ deadlineAt: Date.now() + 5_000 }));
    // The record says when the target asked to be called again.
    expect(outcome).toEqual({ ok: false, attempts: 1, cancelled: false, error: { code: 'upstream_failed', message: 'rate limited', status: 429, retryAt: expect.any(String) } });
    expect(outcome.ok === false && Date.parse(outcome.error.retryAt ?? '') - before).toBeGreaterThanOrEqual(60_000);
    expect(pool.called).toEqual(['a']);
    expect(pool.skipped).toBe(1);
  });

  it('makes a first attempt at once on a target still paused by an earlier call, rather than refusing', async () => {
    const pool = new ScriptedPool({ a: REPLY }, ['a'], { a: Date.now() + 120_000 });
    const outcome = await invokeUpstream(pool, REQUEST, options({ deadlineAt: Date.now() + 5_000 }));
    expect(outcome).toEqual({ ok: true, reply: REPLY, attempts: 1 });
  });

  it('gives the chosen attempt back when recording it fails, so its target is not left counted in flight', async () => {
    // A lease never ended keeps the target in flight, and a half-open circuit's probe slot held, for the isolate's life.
    const pool = new ScriptedPool({ a: REPLY }, ['a']);
    const refused = new Error('SQLITE_NOMEM');
    await expect(invokeUpstream(pool, REQUEST, options({ onAttempt: () => { throw refused; } }))).rejects.toBe(refused);
    expect(pool.called).toEqual([]);
    expect(pool.skipped).toBe(1);
  });

  it('is cancelled during a Retry-After wait without waiting it out', async () => {
    const controller = new AbortController();
    const pool = new ScriptedPool({ a: retryable('busy', 503, 8_000) }, ['a']);
    setTimeout(() => controller.abort(), 300);
    const outcome = await invokeUpstream(pool, REQUEST, options({ signal: controller.signal }));
    expect(outcome).toMatchObject({ ok: false, attempts: 1, cancelled: true });
    expect(pool.skipped).toBe(1);
  }, 5_000);
});

describe('invokeUpstream', () => {
  it('returns the reply of a first attempt that succeeds', async () => {
    const upstream = new ScriptedUpstream([REPLY]);
    const opts = options();
    const outcome = await invokeUpstream(upstream, REQUEST, opts);
    expect(outcome).toEqual({ ok: true, reply: REPLY, attempts: 1 });
    expect(upstream.calls).toBe(1);
    expect(opts.attemptLog).toEqual([1]);
  });

  it('retries after a retryable error and counts the attempts', async () => {
    const upstream = new ScriptedUpstream([retryable(), REPLY]);
    const opts = options();
    const outcome = await invokeUpstream(upstream, REQUEST, opts);
    expect(outcome).toEqual({ ok: true, reply: REPLY, attempts: 2 });
    expect(upstream.calls).toBe(2);
    expect(opts.attemptLog).toEqual([1, 2]);
  });

  it('retries network errors and timeouts too', async () => {
    const upstream = new ScriptedUpstream([
      new UpstreamError('network', 'connection reset', true),
      new UpstreamError('timeout', 'upstream attempt timed out', true),
      REPLY,
    ]);
    const outcome = await invokeUpstream(upstream, REQUEST, options());
    expect(outcome).toEqual({ ok: true, reply: REPLY, attempts: 3 });
  });

  it('calls onAttempt before the attempt runs', async () => {
    const events: string[] = [];
    const upstream: Upstream = {
      label: 'recording',
      call: async () => {
        events.push('call');
        return REPLY;
      },
    };
    await invokeUpstream(upstream, REQUEST, options({ onAttempt: (n) => events.push(`attempt ${n}`) }));
    expect(events).toEqual(['attempt 1', 'call']);
  });

  it('does not retry a non-retryable error and reports upstream_failed with its status', async () => {
    const upstream = new ScriptedUpstream([new UpstreamError('http', 'upstream answered 400: bad', false, 400), REPLY]);
    const opts = options();
    const outcome = await invokeUpstream(upstream, REQUEST, opts);
    expect(outcome).toEqual({
      ok: false,
      attempts: 1,
      cancelled: false,
      error: { code: 'upstream_failed', message: 'upstream answered 400: bad', status: 400, retryable: false },
    });
    expect(upstream.calls).toBe(1);
    expect(opts.attemptLog).toEqual([1]);
  });

  it('leaves status out of the error when the failure had none', async () => {
    const upstream = new ScriptedUpstream([new UpstreamError('invalid_response', 'upstream reply is not JSON', false)]);
    const outcome = await invokeUpstream(upstream, REQUEST, options());
    expect(outcome).toEqual({ ok: false, attempts: 1, cancelled: false, error: { code: 'upstream_failed', message: 'upstream reply is not JSON', retryable: false } });
    expect(outcome.ok === false && 'status' in outcome.error).toBe(false);
  });

  it('treats anything else an upstream throws as a non-retryable upstream_failed', async () => {
    const upstream = new ScriptedUpstream([new TypeError('boom'), REPLY]);
    const outcome = await invokeUpstream(upstream, REQUEST, options());
    expect(outcome).toMatchObject({ ok: false, attempts: 1, cancelled: false, error: { code: 'upstream_failed' } });
    expect(outcome.ok === false && outcome.error.message).toContain('boom');
    expect(upstream.calls).toBe(1);
  });

  it('reports a timeout failure as upstream_timeout', async () => {
    const upstream = new ScriptedUpstream([new UpstreamError('timeout', 'upstream attempt timed out', false)]);
    const outcome = await invokeUpstream(upstream, REQUEST, options());
    expect(outcome).toEqual({
      ok: false,
      attempts: 1,
      cancelled: false,
      error: { code: 'upstream_timeout', message: 'upstream attempt timed out', retryable: false },
    });
  });

  it('makes at most maxAttempts attempts and reports the last failure', async () => {
    const upstream = new ScriptedUpstream([retryable('first'), retryable('second', 502)]);
    const opts = options({ maxAttempts: 2 });
    const outcome = await invokeUpstream(upstream, REQUEST, opts);
    expect(outcome).toEqual({ ok: false, attempts: 2, cancelled: false, error: { code: 'upstream_failed', message: 'second', status: 502 } });
    expect(upstream.calls).toBe(2);
    expect(opts.attemptLog).toEqual([1, 2]);
  });

  it('makes 3 attempts by default', async () => {
    const upstream = new ScriptedUpstream([retryable()]);
    const outcome = await invokeUpstream(upstream, REQUEST, options());
    expect(outcome).toMatchObject({ ok: false, attempts: 3, cancelled: false });
    expect(upstream.calls).toBe(3);
  });

  it('makes a single attempt when maxAttempts is 1', async () => {
    const upstream = new ScriptedUpstream([retryable(), REPLY]);
    const outcome = await invokeUpstream(upstream, REQUEST, options({ maxAttempts: 1 }));
    expect(outcome).toMatchObject({ ok: false, attempts: 1 });
    expect(upstream.calls).toBe(1);
  });

  it('makes no attempt when the deadline has already passed', async () => {
    const upstream = new ScriptedUpstream([REPLY]);
    const opts = options({ deadlineAt: Date.now() - 1 });
    const outcome = await invokeUpstream(upstream, REQUEST, opts);
    expect(outcome).toMatchObject({ ok: false, attempts: 0, cancelled: false, error: { code: 'upstream_timeout' } });
    // No upstream refused it: a new request, with a deadline of its own, may get further.
    expect(outcome.ok === false && 'retryable' in outcome.error).toBe(false);
    expect(upstream.calls).toBe(0);
    expect(opts.attemptLog).toEqual([]);
  });

  it('does not retry when the Retry-After of its only target would end past the deadline', async () => {
    const upstream = new ScriptedUpstream([retryable('rate limited', 429, 60_000), REPLY]);
    const outcome = await invokeUpstream(upstream, REQUEST, options({ deadlineAt: Date.now() + 5_000 }));
    expect(outcome).toEqual({ ok: false, attempts: 1, cancelled: false, error: { code: 'upstream_failed', message: 'rate limited', status: 429, retryAt: expect.any(String) } });
    expect(upstream.calls).toBe(1);
  });

  it('makes no attempt when the execution is already cancelled', async () => {
    const controller = new AbortController();
    controller.abort();
    const upstream = new ScriptedUpstream([REPLY]);
    const opts = options({ signal: controller.signal });
    const outcome = await invokeUpstream(upstream, REQUEST, opts);
    expect(outcome).toMatchObject({ ok: false, attempts: 0, cancelled: true, error: { code: 'cancelled' } });
    expect(upstream.calls).toBe(0);
    expect(opts.attemptLog).toEqual([]);
  });

  it('passes a cancel on to the running attempt and does not retry', async () => {
    const controller = new AbortController();
    const upstream = new ScriptedUpstream(['hang', REPLY]);
    setTimeout(() => controller.abort(), 20);
    const outcome = await invokeUpstream(upstream, REQUEST, options({ signal: controller.signal }));
    expect(outcome).toMatchObject({ ok: false, attempts: 1, cancelled: true, error: { code: 'cancelled' } });
    expect(upstream.calls).toBe(1);
  });

  it('is cancelled when the cancel comes during the backoff, without waiting it out', async () => {
    const controller = new AbortController();
    // Retry-After 8 s is inside the 10 s deadline, so invokeUpstream waits for it rather than giving up.
    const upstream = new ScriptedUpstream([retryable('busy', 503, 8_000), REPLY]);
    setTimeout(() => controller.abort(), 20);
    const outcome = await invokeUpstream(upstream, REQUEST, options({ signal: controller.signal }));
    expect(outcome).toMatchObject({ ok: false, attempts: 1, cancelled: true, error: { code: 'cancelled' } });
    expect(upstream.calls).toBe(1);
  }, 5_000);

  it('times out an attempt after upstream.timeoutMs and retries it', async () => {
    const upstream = new ScriptedUpstream(['hang', REPLY], 20);
    const opts = options();
    const outcome = await invokeUpstream(upstream, REQUEST, opts);
    expect(outcome).toEqual({ ok: true, reply: REPLY, attempts: 2 });
    expect(upstream.calls).toBe(2);
    expect(opts.attemptLog).toEqual([1, 2]);
    expect(upstream.signals[0]?.aborted).toBe(true);
  });

  it('reports upstream_timeout when every attempt times out', async () => {
    const upstream = new ScriptedUpstream(['hang'], 20);
    const outcome = await invokeUpstream(upstream, REQUEST, options({ maxAttempts: 2 }));
    expect(outcome).toMatchObject({ ok: false, attempts: 2, cancelled: false, error: { code: 'upstream_timeout' } });
    expect(upstream.calls).toBe(2);
  });

  it('never lets an attempt run past the execution deadline, even without a per-attempt timeout', async () => {
    const upstream = new ScriptedUpstream(['hang']);
    const outcome = await invokeUpstream(upstream, REQUEST, options({ deadlineAt: Date.now() + 30 }));
    expect(outcome).toMatchObject({ ok: false, cancelled: false, error: { code: 'upstream_timeout' } });
    expect(upstream.signals[0]?.aborted).toBe(true);
  }, 5_000);

  it('gives every attempt its own signal', async () => {
    const upstream = new ScriptedUpstream(['hang', REPLY], 20);
    await invokeUpstream(upstream, REQUEST, options());
    expect(upstream.signals).toHaveLength(2);
    expect(upstream.signals[0]?.aborted).toBe(true);
    expect(upstream.signals[1]?.aborted).toBe(false);
  });
});
