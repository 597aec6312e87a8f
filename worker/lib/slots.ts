/**
 * At most `limit` tasks running at a time across every caller, the others started in the order
 * they asked. A limit per call (`eachLimited`) lets calls that overlap run that many each.
 */
export class Slots {
  private running = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(private readonly limit: number) {}

  async run<T>(task: () => Promise<T>): Promise<T> {
    if (this.running < this.limit) this.running++;
    else await new Promise<void>((resolve) => this.waiting.push(resolve));
    try {
      return await task();
    } finally {
      // The slot goes straight to the next waiter, so none can be overtaken by a newcomer.
      const next = this.waiting.shift();
      if (next) next();
      else this.running--;
    }
  }
}
