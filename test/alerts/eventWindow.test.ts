import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import fc from 'fast-check';
import type { AuditEvent } from '../../broker/audit/events';
import { EventWindow } from '../../broker/alerts/alertEngine';

const eventAt = (seq: number, ms: number) => ({ seq, time: new Date(ms).toISOString(), type: 'cdp.request', data: {} }) as unknown as AuditEvent;

describe('alert rules: the window of a session’s recent events', () => {
  it('counts and returns the same events as keeping every event of the window (fast-check)', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 3000 }), { maxLength: 3000 }), fc.integer({ min: 1, max: 60 }), fc.integer({ min: 1, max: 20 }), (gaps, seconds, n) => {
        const window = new EventWindow();
        const model: { event: AuditEvent; ms: number }[] = [];
        let ms = Date.UTC(2026, 11, 1);
        for (const [seq, gap] of gaps.entries()) {
          ms += gap;
          const event = eventAt(seq, ms);
          window.add(event, seconds);
          model.push({ event, ms });
          const inWindow = model.filter((m) => m.ms > ms - seconds * 1000);
          assert.equal(window.length, inWindow.length);
          assert.deepEqual(
            window.last(n).map((e) => e.seq),
            inWindow.slice(-n).map((m) => m.event.seq),
          );
        }
      }),
      { numRuns: 60 },
    );
  });

  it('a busy minute holds its count, not its records: only the evidence stays reachable', async () => {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const window = new EventWindow();
    const first: WeakRef<AuditEvent>[] = [];
    const start = Date.UTC(2026, 11, 1);
    // 3,000 evaluations in one second, all inside a minute's window.
    for (let seq = 0; seq < 3000; seq++) {
      const event = eventAt(seq, start + seq / 3);
      if (seq < 100) first.push(new WeakRef(event));
      window.add(event, 60);
    }
    await new Promise((resolve) => setImmediate(resolve));
    gc();
    assert.equal(window.length, 3000);
    assert.deepEqual(
      window.last(20).map((e) => e.seq),
      Array.from({ length: 20 }, (_, i) => 2980 + i),
    );
    assert.equal(first.filter((ref) => ref.deref() !== undefined).length, 0, 'the window kept records it only counts');
  });
});
