// The adapter's preview formatter (extension/adapter/objectPreview.ts) over generated input:
// - any shape at all (the broker's answer is untrusted): it never throws, and a one-line place gets one line;
// - real V8 previews of random values (this process's own inspector, generatePreview as the target answers it),
//   redacted by the broker's own Redactor as every answer is: no secret placed under a sensitive name, Map key
//   or private field is ever printed, in any place;
// plus the js-debug forms the Variables view relies on.
import assert from 'node:assert/strict';
import { Session } from 'node:inspector/promises';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import type { Protocol } from 'devtools-protocol';
import { previewValue, quote, type PreviewPlace } from '../../../extension/adapter/objectPreview';
import { compileRedaction, defaultPatterns, defaultSensitiveNames, Redactor } from '../../../broker/policy/redact';
import { fuzzFrames, fuzzSeed, jsonArb } from '../../support/fuzz';

const places: PreviewPlace[] = ['repl', 'hover', 'watch', 'variables', 'clipboard'];
const seed = fuzzSeed();
const runs = fuzzFrames(300);

let session: Session;
before(async () => {
  session = new Session();
  session.connect();
  await session.post('Runtime.enable');
});
after(() => session?.disconnect());

/** A RemoteObject of `value` with V8's own preview, as Runtime.evaluate(generatePreview) answers it. */
async function remote(value: unknown): Promise<Protocol.Runtime.RemoteObject> {
  (globalThis as { __previewFuzz?: unknown }).__previewFuzz = value;
  const r = (await session.post('Runtime.evaluate', { expression: 'globalThis.__previewFuzz', generatePreview: true, objectGroup: 'fuzz' })) as Protocol.Runtime.EvaluateResponse;
  return r.result;
}

/** Every property of `value`'s RemoteObject, each with its preview, as Runtime.getProperties(generatePreview) answers. */
async function properties(objectId: string): Promise<Protocol.Runtime.GetPropertiesResponse> {
  return (await session.post('Runtime.getProperties', { objectId, ownProperties: true, generatePreview: true })) as Protocol.Runtime.GetPropertiesResponse;
}

describe('object previews: the formatter over generated input', () => {
  it(`never throws on any shape, and one-line places get one line (${runs} runs, seed ${seed})`, () => {
    const known = ['type', 'subtype', 'value', 'description', 'preview', 'properties', 'entries', 'overflow', 'name', 'key', 'className', 'unserializableValue'];
    const shaped = fc.record(
      {
        type: fc.constantFrom('object', 'function', 'string', 'number', 'undefined', 'bigint', 'symbol', 'boolean', 'accessor', 'weird'),
        subtype: fc.constantFrom(undefined, 'array', 'typedarray', 'map', 'set', 'null', 'date', 'regexp', 'error', 'internal#entry', 'proxy'),
        description: fc.oneof(fc.string({ maxLength: 60 }), fc.constantFrom('Array(3)', 'Map(2)', 'Object', 'function f(a) {\n}', 'class A {}', 'x => x', 'async function* g() {}', '(')),
        value: jsonArb(known),
        preview: jsonArb(known),
      },
      { requiredKeys: [] },
    );
    fc.assert(
      fc.property(fc.oneof(shaped, jsonArb(known)), (input) => {
        for (const place of places) {
          const text = previewValue(input as Protocol.Runtime.RemoteObject, place);
          assert.equal(typeof text, 'string');
          if (place === 'hover' || place === 'watch' || place === 'variables') assert.ok(!/[\n\r]/.test(text), `${place}: ${JSON.stringify(text)}`);
        }
      }),
      { numRuns: runs, seed },
    );
  });

  it(`prints no redacted value: real V8 previews of random values through the broker's Redactor (${Math.ceil(runs / 3)} runs, seed ${seed})`, async () => {
    const sensitive = fc.constantFrom(...defaultSensitiveNames.slice(0, 12), 'userPassword', 'api_key', 'Authorization', '#password');
    const secret = fc.stringMatching(/^[a-z0-9]{10,16}$/).map((s) => `S3CR3T${s}`);
    const plainName = fc.constantFrom('id', 'label', 'count', 'nested', 'items', 'user', 'when', 'x', 'y', 'meta');
    const leaf = fc.oneof(
      fc.integer(),
      fc.string({ maxLength: 12 }).filter((s) => !s.includes('S3CR3T')),
      fc.boolean(),
      fc.constant(null),
      fc.constant(undefined),
    );
    // A value holding secrets only where the policy redacts: under a sensitive name, as a Map value under a
    // sensitive key, in a private field with a sensitive name, or inside any of those (nested, in arrays).
    const { value } = fc.letrec<{ value: unknown; hidden: unknown }>((tie) => ({
      hidden: fc.oneof({ depthSize: 'small', maxDepth: 3 }, secret, fc.array(secret, { maxLength: 3 }), fc.dictionary(plainName, tie('hidden'), { maxKeys: 3 })),
      value: fc.oneof(
        { depthSize: 'small', maxDepth: 4 },
        leaf,
        fc.array(tie('value'), { maxLength: 6 }),
        fc.tuple(fc.array(fc.tuple(plainName, tie('value')), { maxLength: 4 }), fc.array(fc.tuple(sensitive, tie('hidden')), { maxLength: 3 })).map(([open, closed]) => {
          const o: Record<string, unknown> = {};
          for (const [k, v] of [...open, ...closed]) if (!k.startsWith('#')) o[k] = v;
          return o;
        }),
        fc
          .tuple(fc.array(fc.tuple(plainName, tie('value')), { maxLength: 3 }), fc.array(fc.tuple(sensitive, tie('hidden')), { maxLength: 3 }))
          .map(([open, closed]) => new Map<unknown, unknown>([...open, ...closed])),
        fc.tuple(tie('value'), secret).map(
          ([shown, hidden]) =>
            new (class Account {
              label = shown;
              #password = hidden;
              get check() {
                return this.#password.length;
              }
            })(),
        ),
        fc.array(tie('value'), { maxLength: 4 }).map((items) => new Set(items)),
      ),
    }));
    await fc.assert(
      fc.asyncProperty(value, async (v) => {
        const redactor = new Redactor(compileRedaction(defaultSensitiveNames, defaultPatterns));
        const object = await remote(v);
        const shown: string[] = [];
        // The answer to an evaluation, redacted as the broker redacts every answer, in every place.
        const redacted = redactor.remoteObject(structuredClone(object)) as Protocol.Runtime.RemoteObject;
        for (const place of places) shown.push(previewValue(redacted, place));
        // Its properties, as the Variables view reads them on expansion.
        if (object.objectId) {
          const props = structuredClone(await properties(object.objectId)) as unknown as Record<string, unknown>;
          redactor.properties(props);
          for (const p of (props.result ?? []) as Protocol.Runtime.PropertyDescriptor[]) if (p.value) shown.push(previewValue(p.value, 'variables'));
          for (const p of (props.internalProperties ?? []) as Protocol.Runtime.InternalPropertyDescriptor[]) if (p.value) shown.push(previewValue(p.value, 'variables'));
        }
        await session.post('Runtime.releaseObjectGroup', { objectGroup: 'fuzz' });
        for (const text of shown) assert.ok(!text.includes('S3CR3T'), `a secret printed: ${text}`);
      }),
      { numRuns: Math.ceil(runs / 3), seed },
    );
  });

  it('writes the js-debug forms', async () => {
    class Point {
      constructor(
        public x: number,
        public y: number,
      ) {}
    }
    const cases: [unknown, string][] = [
      [{ n: 173, label: 'tick-173', nested: { a: 1 } }, "{n: 173, label: 'tick-173', nested: {…}}"],
      [[1, 2, 3], '(3) [1, 2, 3]'],
      [new Map([['a', 1]]), "Map(1) {size: 1, 'a' => 1}"],
      [new Point(1, 2), 'Point {x: 1, y: 2}'],
      // Written as the target's source would be (this file is compiled, and its own functions lose their spaces).
      [(0, eval)('(function add(a, b) { return a + b; })'), 'ƒ add(a, b)'],
      [(0, eval)('(async function load(id) { return id; })'), 'async ƒ load(id)'],
      [(0, eval)('(class Shape { constructor() {} })'), 'class Shape'],
      [new Error('boom'), 'Error: boom'],
      [/a+b/g, '/a+b/g'],
      [Object.assign([1, 2], { extra: 'x' }), "(2) [1, 2, extra: 'x']"],
      [{}, '{}'],
      [Object.fromEntries(Array.from({ length: 8 }, (_, i) => [`k${i}`, i])), '{k0: 0, k1: 1, k2: 2, k3: 3, k4: 4, …}'],
    ];
    for (const [value, text] of cases) assert.equal(previewValue(await remote(value), 'variables'), text);
    assert.equal(previewValue({ type: 'string', value: 'a\nb' }, 'hover'), "'a\\nb'");
    assert.equal(previewValue({ type: 'string', value: 'a\nb' }, 'repl'), "'a\nb'");
    assert.equal(quote("it's"), `"it's"`);
    assert.equal(quote(`'"`), '`\'"`');
    assert.equal(quote(`'"\``), "'\\'\"`'");
    // A long string in a 1000-character place keeps both ends.
    const long = previewValue({ type: 'string', value: `a${'x'.repeat(3000)}z` }, 'variables');
    assert.equal(long.length, 1000);
    assert.match(long, /^'ax+…x+z'$/);
    // Terminal escapes are shown, never sent raw.
    assert.equal(previewValue({ type: 'string', value: '\x1b[31mred' }, 'repl'), "'\\x1b[31mred'");
  });
});
