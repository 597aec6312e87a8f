import type { TurnMark } from './a2a-internal';

/**
 * Follow-ups being taken as their task's next turn. A follow-up is checked against its task's
 * state (a turn still running: -32004) before the SDK stores it, and its turn starts only
 * after the SDK has awaited (a push URL's host resolved): two messages sent together to a task
 * asking for input both passed the check, shared the task's one event bus, and were both
 * answered with the first turn's answer. The claim is taken in the same synchronous step as
 * the check, in the agent's single-threaded object, so the second is refused -32004; it lasts
 * until the claiming request's turn has started (from then on the task's state refuses) or the
 * request has ended without one. Memory holds it: a request does not outlive its object.
 */
export class TurnClaims {
  private readonly held = new Map<string, TurnMark>();

  /** Claims `taskId`'s next turn for the request marked `owner`; false while another request holds it. */
  claim(taskId: string, owner: TurnMark): boolean {
    const holder = this.held.get(taskId);
    if (holder && holder !== owner && !holder.started) return false;
    this.held.set(taskId, owner);
    return true;
  }

  /** Drops every claim of `owner` (its request has ended). */
  release(owner: TurnMark): void {
    for (const [taskId, holder] of this.held) if (holder === owner) this.held.delete(taskId);
  }
}
