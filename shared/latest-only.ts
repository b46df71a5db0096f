/**
 * Runs `send` for the newest value only: while one send is under way, newer values replace
 * each other and the last one goes next. A slow receiver costs the caller nothing.
 */
export class LatestOnly<T> {
  private pending: { value: T } | null = null;
  private running: Promise<void> | null = null;

  constructor(private readonly send: (value: T) => Promise<void>) {}

  push(value: T): void {
    this.pending = { value };
    if (!this.running) this.running = this.drain();
  }

  /** Resolves once everything pushed so far has been sent (or has failed). */
  async idle(): Promise<void> {
    while (this.running) await this.running;
  }

  private async drain(): Promise<void> {
    while (this.pending) {
      const { value } = this.pending;
      this.pending = null;
      try {
        await this.send(value);
      } catch {
        // send reports its own failures; the next value still goes
      }
    }
    this.running = null;
  }
}
