/**
 * Sends values one at a time, without making the caller wait. While a send is under way, a new
 * value replaces the last pending one when both have the same key (a newer progress of the same
 * stage), and queues behind it otherwise, so every change of key still goes out, in order.
 */
export class LatestOnly<T> {
  private readonly pending: T[] = [];
  private running: Promise<void> | null = null;
  private firstFailure: { error: unknown } | null = null;

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

  /**
   * The first send that threw, if one did: for a caller whose work must stop when a send fails
   * (the installer's progress record). A send that reports its own failures never throws.
   */
  get failure(): { error: unknown } | null {
    return this.firstFailure;
  }

  private async drain(): Promise<void> {
    for (let value = this.pending.shift(); value !== undefined; value = this.pending.shift()) {
      try {
        await this.send(value);
      } catch (error) {
        // kept for `failure`; the next value still goes
        this.firstFailure ??= { error };
      }
    }
    this.running = null;
  }
}
