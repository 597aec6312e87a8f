import type { RaiseAnswer } from './key-limiter-charges';

/**
 * KeyLimiterDO `raiseCharge`'s answer, read across releases. During a gradual deployment an
 * agent of this release may call a limiter of an older one (docs/ARCHITECTURE.md, "object RPC
 * is an interface between releases"). Releases before the limiter decided raises answered a
 * boolean, whether it raised the reservation: they never refused one, so either value means the
 * execution runs, as it did then (its settlement counts what it used). Reading `ok` off that
 * boolean refused every raised execution 429 `budget_exhausted`.
 */
export function raiseAnswer(answer: RaiseAnswer | boolean): RaiseAnswer {
  return typeof answer === 'boolean' ? { ok: true, free: null } : answer;
}
