import { MAX_RETRY_AFTER_MS } from '../pools/runtime';
import { retryAfterOf } from './pool';

/**
 * When the targets that refused a call said they would take work again: each target's word
 * from its latest failure (Retry-After, at most MAX_RETRY_AFTER_MS), and the soonest of them
 * while every failure said so, since one that did not promises nothing. A chat's or an
 * execution's final failure tells the client this as Retry-After.
 */
export class ResumeTimes {
  private readonly byTarget = new Map<string, number>();
  private everyFailurePaused = true;

  failed(target: string, error: unknown, now = Date.now()): void {
    const pause = retryAfterOf(error);
    if (pause === undefined) this.everyFailurePaused = false;
    else this.byTarget.set(target, now + Math.min(pause, MAX_RETRY_AFTER_MS));
  }

  /** The soonest time, as epoch ms; undefined when a failure named none (or none failed). */
  soonest(): number | undefined {
    return this.everyFailurePaused && this.byTarget.size > 0 ? Math.min(...this.byTarget.values()) : undefined;
  }
}

/** A Retry-After header's value for epoch ms `at`: whole seconds from now, never negative. */
export const retryAfterSeconds = (at: number, now = Date.now()): string => String(Math.max(0, Math.ceil((at - now) / 1000)));
