import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import type { SnapshotLimits } from '../../broker/config/types';
import { captureFrames, entriesFromPreview, propertiesFromPreview, type PausedFrameInput } from '../../broker/session/snapshot';
import { fuzzSeed, jsonArb } from '../support/fuzz';

// The previews a capture trusts come from the target, which is not trusted: whatever a preview says, reading it
// never throws, and the stand-ins made from it (object id "preview") are never sent to the target as reads.

const seed = fuzzSeed();
const limits: SnapshotLimits = {
  frames: 5,
  expandFrames: 5,
  expandInternalFrames: false,
  closures: true,
  depth: 4,
  collectionItems: 10,
  fieldsPerObject: 10,
  stringLength: 64,
  timeBudgetMs: 1000,
  maxBytes: 1 << 20,
  minIntervalMs: 0,
  maxCapturesPerBreakpoint: 100,
  maxCapturesPerMinute: 100,
};

const text = fc.oneof(fc.string({ maxLength: 120 }), fc.constantFrom('Object', 'Map(1)', 'Set(2)', 'Array(1)', '1', '-0', 'NaN', '2n', 'null', 'undefined', 'true'));
const typeArb = fc.constantFrom('object', 'string', 'number', 'boolean', 'undefined', 'bigint', 'symbol', 'function', 'accessor', 'bogus');
const subtypeArb = fc.option(fc.constantFrom('null', 'map', 'set', 'array', 'internal#entry', 'proxy', 'weakmap'), { nil: undefined });
const propertyPreview = fc.record({ name: text, type: typeArb, value: fc.option(text, { nil: undefined }), subtype: subtypeArb }, { requiredKeys: ['name', 'type'] });
const objectPreview = fc.record(
  { type: typeArb, subtype: subtypeArb, description: fc.option(text, { nil: undefined }), overflow: fc.boolean(), properties: fc.array(propertyPreview, { maxLength: 6 }) },
  { requiredKeys: ['type', 'overflow', 'properties'] },
);
const entryArb = fc.record({ key: fc.option(objectPreview, { nil: undefined }), value: objectPreview }, { requiredKeys: ['value'] });
/** A Map or Set as a read shows it, with a preview built to look plausible or not. */
const collectionArb = fc.record({
  type: fc.constant('object'),
  subtype: fc.constantFrom('map', 'set', 'weakmap', undefined),
  className: fc.constantFrom('Map', 'Set', 'Object', 'WeakMap'),
  description: text,
  objectId: fc.constant('target-object'),
  preview: fc.record({
    type: fc.constant('object'),
    subtype: fc.constantFrom('map', 'set'),
    description: text,
    overflow: fc.boolean(),
    properties: fc.oneof(fc.constant([{ name: 'size', type: 'number', value: '1' }]), fc.array(propertyPreview, { maxLength: 3 })),
    entries: fc.array(entryArb, { maxLength: 6 }),
  }),
});

describe('capture: previews from a hostile target', () => {
  it(`never throw, and their stand-ins are never read from the target (seed ${seed})`, async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.oneof(collectionArb, jsonArb(['preview', 'entries', 'subtype', 'className'])), { minLength: 1, maxLength: 4 }), async (values) => {
        for (const value of values) {
          entriesFromPreview(value as never);
          propertiesFromPreview(value as never);
          if (value && typeof value === 'object') for (const inner of Object.values(value)) (entriesFromPreview(inner as never), propertiesFromPreview(inner as never));
        }
        const asked: string[] = [];
        const frame = {
          callFrameId: 'f0',
          functionName: 'f',
          url: 'file:///app.js',
          location: { scriptId: '1', lineNumber: 1, columnNumber: 0 },
          scopeChain: [{ type: 'local', object: { type: 'object', objectId: 'scope' } }],
        } as unknown as PausedFrameInput;
        // Junk where an object belongs may fail the capture (onPause then records "capture failed"); never a stand-in
        // read. At depth 0 every object in the scope is taken from its preview: never a read beyond the scope's.
        for (const depth of [limits.depth, 0]) {
          asked.length = 0;
          const capture = await captureFrames(
            [frame],
            new Map(),
            async (objectId) => {
              asked.push(objectId);
              return objectId === 'scope' ? { result: values.map((v, i) => ({ name: `v${i}`, value: v as never })) } : { result: [] };
            },
            { ...limits, depth },
          ).catch(() => undefined);
          assert.ok(!asked.includes('preview'), `a stand-in was read: ${asked.join(', ')}`);
          if (depth === 0) assert.deepEqual(asked, ['scope'], 'at depth 0 only the scope is read');
          if (capture) assert.equal(capture.frames.length, 1);
        }
      }),
      { seed, numRuns: 400 },
    );
  });
});
