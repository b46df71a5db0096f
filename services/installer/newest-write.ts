/**
 * A record written as figures come, one write at a time, the newest figure only: one that comes
 * while a write runs waits, and a newer one takes its place. The staging of files offers a figure
 * per percent and goes on at once: it waited for each record's two fsyncs before (50 of them in
 * an install of 1000 files), while a record that lags a write behind shows ota-gui nothing less
 * (it polls every 500 ms). The newest figure offered is always written, in order, and nothing
 * is under way once `settled()` has resolved (an undo that follows writes the record too).
 */
export class NewestWrite<T> {
  private running: Promise<void> | null = null;
  private waiting: { value: T } | null = null;
  private failure: { error: unknown } | null = null;

  constructor(private readonly write: (value: T) => Promise<void>) {}

  /** Queues `value` in place of any figure still waiting; throws if an earlier write failed. */
  offer(value: T): void {
    if (this.failure) throw this.failure.error;
    this.waiting = { value };
    this.running ??= this.drain();
  }

  /** Resolves once no write runs or waits; then throws the first write's failure, if any. */
  async settled(): Promise<void> {
    while (this.running) await this.running;
    if (this.failure) throw this.failure.error;
  }

  private async drain(): Promise<void> {
    while (this.waiting && !this.failure) {
      const { value } = this.waiting;
      this.waiting = null;
      try {
        await this.write(value);
      } catch (error) {
        this.failure = { error };
      }
    }
    this.waiting = null;
    this.running = null;
  }
}
