import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import canonicalize from 'canonicalize';
import fc from 'fast-check';
import { canonicalJson } from '../../common/canonicalJson';
import { chainEvent, chainEventLine, genesisHash, hashEvent, type StreamContext } from '../../broker/audit/events';
import { fuzzFrames, fuzzSeed, jsonArb } from '../support/fuzz';

/** canonicalize's answer, or the error it throws. */
const reference = (value: unknown): { text?: string; error?: string } => {
  try {
    return { text: canonicalize(value) };
  } catch (err) {
    return { error: (err as Error).message };
  }
};
const ours = (value: unknown): { text?: string; error?: string } => {
  try {
    return { text: canonicalJson(value) };
  } catch (err) {
    return { error: (err as Error).message };
  }
};

describe('canonical JSON (the audit hash input) is the canonicalize package’s text', () => {
  it('for any JSON value, any key order, prototype-named and non-ASCII keys', () => {
    const seed = fuzzSeed();
    fc.assert(
      fc.property(jsonArb(['seq', 'time', 'type', 'data', 'params', 'result', '10', '9', 'a', 'B', 'é', '\ud800']), (value) => {
        assert.deepEqual(ours(value), reference(value));
      }),
      { numRuns: fuzzFrames(2000), seed },
    );
  });

  it('for values JSON.stringify writes differently: undefined, NaN, Infinity, holes, toJSON, symbols, integer-like keys', () => {
    const sparse: unknown[] = [1];
    sparse[3] = 2;
    const cases: unknown[] = [
      { b: 1, a: undefined },
      { a: undefined, b: [undefined, 1] },
      [Symbol('x'), { s: Symbol('y') }],
      { a: Number.NaN },
      { a: [1, Number.POSITIVE_INFINITY] },
      { a: -0, b: 1e21, c: 5e-7, d: 0.1 + 0.2 },
      sparse,
      { when: new Date(0), z: { toJSON: () => ({ y: 2, x: 1 }) } },
      { '10': 1, '9': 2, '1': 3, a: 4, A: 5 },
      Object.assign(Object.create({ inherited: 1 }), { own: 2 }),
      Object.assign(Object.create(null), { b: 1, a: 2 }),
      { é: 1, e: 2, '\u{1F600}': 3, '\uffff': 4 },
      'plain',
      42,
      null,
      true,
    ];
    cases.forEach((value, i) => assert.deepEqual(ours(value), reference(value), `case ${i}`));
  });

  it('an audit event hashes as before', () => {
    const context: StreamContext = {
      stream: 's-1',
      kind: 'session',
      grant: 'g-1',
      actor: { sub: 'dev', name: 'Dev', groups: ['devs'] },
      target: 'app',
      startedAt: '2026-01-01T00:00:00.000Z',
      retentionDays: 1,
    };
    const event = chainEvent(context, 0, genesisHash('s-1'), '2026-01-01T00:00:01.000Z', 'cdp.response', {
      id: 3,
      method: 'Runtime.getProperties',
      result: { properties: [{ name: 'field000', preview: 'value-0' }], count: 1 },
    });
    const { hash, ...body } = event;
    assert.equal(canonicalJson(body), canonicalize(body));
    assert.equal(hash, chainEvent(context, 0, genesisHash('s-1'), '2026-01-01T00:00:01.000Z', 'cdp.response', JSON.parse(JSON.stringify(event.data))).hash);
  });

  it("an event's line is the canonical JSON of the whole event, and its hash that of the event without it", () => {
    const contexts: StreamContext[] = [
      { stream: 's-1', kind: 'session', startedAt: '2026-01-01T00:00:00.000Z', retentionDays: 1 },
      {
        stream: 's-2',
        kind: 'session',
        grant: 'g-1',
        actor: { sub: 'dev', name: 'Dev "the" tester', groups: ['devs', 'ops'] },
        target: 'app',
        mode: 'pause',
        reason: 'INC-1: slow \u2028 requests',
        ticket: 'INC-1',
        startedAt: '2026-01-01T00:00:00.000Z',
        retentionDays: 1,
      },
      { stream: 'grants-1', kind: 'grants', startedAt: '2026-01-01T00:00:00.000Z', retentionDays: 1 },
    ];
    const data = { method: 'Runtime.evaluate', id: 7, params: { 10: 'ten', 9: 'nine', b: [1, { z: null, a: undefined }], a: 1.5e-7 }, skipped: undefined, ok: true };
    for (const context of contexts) {
      const { event, json } = chainEventLine(context, 4, genesisHash(context.stream), '2026-01-01T00:00:01.000Z', 'cdp.evaluate', data);
      assert.equal(json, canonicalize(event));
      const { hash, ...body } = event;
      assert.equal(hash, hashEvent(body));
      assert.deepEqual(JSON.parse(json), JSON.parse(JSON.stringify(event)));
    }
  });
});
