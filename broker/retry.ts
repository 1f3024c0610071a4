/** Exponential backoff, shared by everything the broker retries (audit uploads, webhook deliveries). */
export interface Backoff {
  /** The wait before the first retry. */
  readonly baseMs: number;
  /** No wait is longer than this. */
  readonly maxMs: number;
}

/** The wait before retry number `retry` (0 for the first): `baseMs`, doubling with each retry, at most `maxMs`. */
export function backoffDelay(retry: number, { baseMs, maxMs }: Backoff): number {
  // The exponent is bounded so a long outage never reaches Infinity (or NaN for a zero base).
  return Math.min(maxMs, baseMs * 2 ** Math.min(Math.max(0, retry), 30));
}
