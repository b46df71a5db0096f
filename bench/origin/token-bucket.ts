/**
 * A token bucket: `rate` bytes per second flow in, up to `burst` may be spent at once. What a
 * 10 Mbit/s link does to a sender, near enough: the receiver sees the link's rate, not loopback's.
 */
export class TokenBucket {
  private tokens: number;
  private last = performance.now();

  constructor(
    private readonly rate: number,
    private readonly burst: number,
  ) {
    this.tokens = burst;
  }

  /** Waits until `n` bytes (at most `burst`) may be sent, and spends them. */
  async take(n: number): Promise<void> {
    for (;;) {
      const now = performance.now();
      this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) * this.rate) / 1000);
      this.last = now;
      if (this.tokens >= n) {
        this.tokens -= n;
        return;
      }
      await new Promise((r) => setTimeout(r, Math.max(1, ((n - this.tokens) * 1000) / this.rate)));
    }
  }
}
