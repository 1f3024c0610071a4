import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { boundMessage, frameWithinBounds, messageBounds } from '../../broker/session/resultBounds';

describe('frameWithinBounds: a frame the bound walk could not cut', () => {
  it('holds only where boundMessage would change nothing (any JSON value, any bounds)', () => {
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: 6 }), fc.integer({ min: 256, max: 8192 }), (value, maxResultBytes) => {
        const frame = Buffer.from(JSON.stringify({ id: 1, result: value }));
        const bounds = messageBounds(maxResultBytes);
        if (!frameWithinBounds(frame, bounds)) return;
        const copy = structuredClone(value);
        const { cut } = boundMessage(copy, bounds);
        assert.equal(cut, false);
        assert.deepEqual(copy, value);
      }),
      { numRuns: 2000 },
    );
  });

  it('says no for a short frame of many list items, which the walk does cut', () => {
    const bounds = messageBounds(1024);
    const list = Array.from({ length: 200 }, () => 0);
    const frame = Buffer.from(JSON.stringify({ id: 1, result: { list } }));
    assert.ok(frame.length < bounds.budget);
    assert.equal(frameWithinBounds(frame, bounds), false);
    const value = { list: [...list] };
    boundMessage(value, bounds);
    assert.ok(value.list.length < list.length);
  });

  it('says no for a frame longer than a string may be, and yes for a 100-property reply under the default bounds', () => {
    const bounds = messageBounds(1024);
    assert.equal(frameWithinBounds(Buffer.from(JSON.stringify({ id: 1, result: { value: 'x'.repeat(600) } })), bounds), false);
    const properties = Array.from({ length: 100 }, (_, i) => ({
      name: `field${i}`,
      value: { type: 'string', value: `value-${i}` },
      writable: true,
      configurable: true,
      enumerable: true,
      isOwn: true,
    }));
    assert.equal(frameWithinBounds(Buffer.from(JSON.stringify({ id: 1, result: { result: properties } })), messageBounds(64 * 1024)), true);
  });
});
