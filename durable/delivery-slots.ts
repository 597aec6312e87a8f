/**
 * The agent's delivery senders: at most `limit` sends out at once, and at most `perTarget` of
 * them to one target (a webhook, or an A2A push config). A target's first send takes a free
 * slot; a further one to a target that has one out takes a slot only if one stays free after
 * it, for a target with none out. A freed slot goes to the waiting send whose target has the
 * fewest out, the longest waiting among equals.
 *
 * A plain queue of slots sent in the order deliveries were taken: one receiver slow to answer,
 * with many deliveries due, held all six slots for its 10 s timeout each, and a delivery to every
 * other receiver waited behind its whole backlog. A cap per target alone (five of six) left one
 * slot free, which a second slow receiver's further sends could then take, as could its first
 * one when the cap left only one: two slow receivers held all six, and a third, healthy one
 * waited for one of their sends to end (up to the 10 s timeout). With `perTarget` at most
 * `limit` - 2 and further sends leaving a slot free, two slow receivers hold at most
 * `limit` - 1 slots between them, whatever order their sends come in.
 */
export class DeliverySlots {
  private running = 0;
  private readonly byTarget = new Map<string, number>();
  private readonly waiting: { target: string; start: () => void }[] = [];

  constructor(
    private readonly limit: number,
    private readonly perTarget: number,
  ) {}

  async run<T>(target: string, task: () => Promise<T>): Promise<T> {
    // A waiting send that could start has always been started already (see `grant`), so a
    // newcomer that finds room overtakes only sends that could not take it: further sends to
    // targets with some out, where the last slot is kept for a target with none.
    if (this.canStart(target)) this.take(target);
    else await new Promise<void>((resolve) => this.waiting.push({ target, start: resolve }));
    try {
      return await task();
    } finally {
      this.release(target);
    }
  }

  private out(target: string): number {
    return this.byTarget.get(target) ?? 0;
  }

  private canStart(target: string): boolean {
    const out = this.out(target);
    if (out === 0) return this.running < this.limit;
    return out < this.perTarget && this.running + 1 < this.limit;
  }

  private take(target: string): void {
    this.running++;
    this.byTarget.set(target, this.out(target) + 1);
  }

  private release(target: string): void {
    this.running--;
    const left = this.out(target) - 1;
    if (left > 0) this.byTarget.set(target, left);
    else this.byTarget.delete(target);
    this.grant();
  }

  /** Starts waiting sends while there is room, fewest out first. */
  private grant(): void {
    while (this.running < this.limit) {
      let best = -1;
      for (let i = 0; i < this.waiting.length; i++) {
        const candidate = this.waiting[i];
        if (!candidate || !this.canStart(candidate.target)) continue;
        const chosen = best === -1 ? undefined : this.waiting[best];
        if (!chosen || this.out(candidate.target) < this.out(chosen.target)) best = i;
      }
      if (best === -1) return;
      const [next] = this.waiting.splice(best, 1);
      if (!next) return;
      this.take(next.target);
      next.start();
    }
  }
}
