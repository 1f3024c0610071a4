import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import { backoffDelay } from '../broker/retry';

describe('backoffDelay: one exponential backoff for audit uploads and webhook deliveries', () => {
  it('starts at the base and doubles with each retry', () => {
    assert.deepEqual(
      [0, 1, 2, 3, 4].map((retry) => backoffDelay(retry, { baseMs: 250, maxMs: 30_000 })),
      [250, 500, 1000, 2000, 4000],
    );
  });

  it('never waits longer than the bound, however long the outage', () => {
    const backoff = { baseMs: 500, maxMs: 30_000 };
    assert.equal(backoffDelay(6, backoff), 30_000); // 32 s, capped
    assert.equal(backoffDelay(1e9, backoff), 30_000);
    assert.equal(backoffDelay(Number.MAX_SAFE_INTEGER, { baseMs: 0, maxMs: 30_000 }), 0);
  });

  it('treats a negative retry number as the first retry', () => {
    assert.equal(backoffDelay(-3, { baseMs: 250, maxMs: 30_000 }), 250);
  });
});
