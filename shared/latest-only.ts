/**
 * Sends values one at a time, without making the caller wait. While a send is under way, a new
 * value replaces the last pending one when both have the same key (a newer progress of the same
 * stage), and queues behind it otherwise, so every change of key still goes out, in order.
 */
export class LatestOnly<T> {
  private readonly pending: T[] = [];
  private running: Promise<void> | null = null;

  constructor(
    private readonly send: (value: T) => Promise<void>,
    private readonly key: (value: T) => unknown = () => null,
  ) {}

  push(value: T): void {
    const last = this.pending.at(-1);
    if (last !== undefined && this.key(last) === this.key(value)) this.pending[this.pending.length - 1] = value;
    else this.pending.push(value);
    if (!this.running) this.running = this.drain();
  }

  /** Resolves once everything pushed so far has been sent (or has failed). */
  async idle(): Promise<void> {
    while (this.running) await this.running;
  }

  private async drain(): Promise<void> {
    for (let value = this.pending.shift(); value !== undefined; value = this.pending.shift()) {
      try {
        await this.send(value);
      } catch {
        // send reports its own failures; the next value still goes
      }
    }
    this.running = null;
  }
}
