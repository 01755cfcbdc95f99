/**
 * Failed attempts per address (rig tokens, sign-ins): after `max` failures within `windowMs` the address
 * is refused until that window ends, even with the right secret, so tokens cannot be guessed online.
 * Written by hand (a fixed window in a Map): express-rate-limit and friends count requests, not
 * failures, and do not cover socket.io handshakes.
 */
export class AttemptLimiter {
  private readonly failures = new Map<string, { count: number; since: number }>();

  constructor(
    private readonly max: number,
    private readonly windowMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  /** Seconds until `key` may try again; 0 when it may try now. */
  blockedForS(key: string): number {
    const f = this.failures.get(key);
    if (!f) return 0;
    const left = f.since + this.windowMs - this.now();
    if (left <= 0) {
      this.failures.delete(key);
      return 0;
    }
    return f.count >= this.max ? Math.ceil(left / 1000) : 0;
  }

  /** Counts one failure of `key`. */
  fail(key: string): void {
    const t = this.now();
    const f = this.failures.get(key);
    if (!f || t - f.since >= this.windowMs) this.failures.set(key, { count: 1, since: t });
    else f.count += 1;
    // bound the memory a scan from many addresses can take: drop windows that have ended
    if (this.failures.size > 10_000) for (const [k, v] of this.failures) if (t - v.since >= this.windowMs) this.failures.delete(k);
  }
}
