// The previews of Loupe's answers have V8's shape: for values read from the target and values the interpreter built
// (objects, arrays, Map, Set, Date, nested and cut-off ones), the ObjectPreview equals the one V8 gives for the same
// expression in the same paused frame (Debugger.evaluateOnCallFrame with generatePreview), field for field. Where a
// field is redacted, the preview holds the marker and nothing of the secret.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { Protocol } from 'devtools-protocol';
import { assertNoSecret, pausedApp, type PausedApp } from './pausedApp';

/** Expressions whose values hold no secret: V8's preview and Loupe's must be the same. */
const sameAsV8: readonly string[] = [
  // read from the target
  'items',
  'items[0]',
  'config.services',
  'nested',
  'bytes',
  'status',
  'created',
  'priceBySku',
  'tags',
  'plainRequest',
  // built by the interpreter
  '({a: 1, b: 2, c: 3, d: 4, e: 5, f: 6})',
  '({s: words.repeat(10), d: created, f: login, o: order, i: items})',
  'items.map(i => i.sku)',
  'items.map(i => i.price > 5)',
  'Object.entries(status)',
  '[order, items, created, login, 1n, null, undefined]',
  'new Map([["a", 1], ["b", "two"]])',
  'new Map(Array.from(words.split(" "), (w, i) => [i, w]))',
  'new Set([1, "a", true])',
  'new Set(Array.from(name))',
  'new Date(0)',
  'Array.from(words.repeat(40))',
];

let app: PausedApp;
before(async () => {
  app = await pausedApp();
});
after(async () => {
  await app?.stop();
});

async function v8Preview(expression: string): Promise<Protocol.Runtime.ObjectPreview | undefined> {
  const r = await app.client.call('Debugger.evaluateOnCallFrame', { callFrameId: app.frame.callFrameId, expression, generatePreview: true, throwOnSideEffect: false, timeout: 1000, silent: true });
  assert.equal(r.exceptionDetails, undefined, `V8: ${expression}: ${JSON.stringify(r.exceptionDetails)}`);
  return r.result.preview;
}

async function loupePreview(expression: string): Promise<Protocol.Runtime.ObjectPreview | undefined> {
  const outcome = await app.evaluate(expression);
  assert.equal(outcome.kind, 'value', `Loupe: ${expression}: ${JSON.stringify(outcome)}`);
  return outcome.kind === 'value' ? outcome.result.preview : undefined;
}

/** A preview as it travels (JSON): an absent field and an undefined one are the same. */
function comparable(preview: Protocol.Runtime.ObjectPreview | undefined): unknown {
  return JSON.parse(JSON.stringify(preview ?? null));
}

test("Loupe's previews are V8's, field for field, for values read and values built", async () => {
  for (const expression of sameAsV8) {
    const [v8, loupe] = await Promise.all([v8Preview(expression), loupePreview(expression)]);
    assert.ok(v8, `V8 gives a preview for ${expression}`);
    assert.deepEqual(comparable(loupe), comparable(v8), expression);
  }
});

test('a preview V8 cuts, Loupe cuts the same way: five fields of an object, a hundred elements of an array, five entries, strings in the middle', async () => {
  const object = await loupePreview('({a: 1, b: 2, c: 3, d: 4, e: 5, f: 6})');
  assert.equal(object?.properties.length, 5);
  assert.equal(object?.overflow, true);
  const array = await loupePreview('Array.from(words.repeat(40))');
  assert.equal(array?.properties.length, 100);
  assert.equal(array?.overflow, true);
  const long = (await loupePreview('({s: words.repeat(10)})'))?.properties[0]?.value ?? '';
  assert.equal(long.length, 100);
  assert.match(long, /^the quick.*….*brown fox$/);
  const map = await loupePreview('new Map(Array.from(words.repeat(3).split(""), (w, i) => [i, w]))');
  assert.equal(map?.entries?.length, 5);
  assert.equal(map?.overflow, true);
});

test('a redacted field in a built value is the marker in its preview, and an array holding a BigInt still answers', async () => {
  const built = await app.evaluate('({p: order.customer.password, n: order.customer.name, b: 2n})');
  assert.equal(built.kind, 'value');
  if (built.kind !== 'value') return;
  assert.deepEqual(built.result.preview?.properties, [
    { name: 'p', type: 'string', value: '[redacted: password]' },
    { name: 'n', type: 'string', value: 'Ann Lee' },
    { name: 'b', type: 'bigint', value: '2n' },
  ]);
  assert.deepEqual(built.tainted, ['password'], 'the marker the preview shows is recorded');
  assertNoSecret(JSON.stringify(built.result), 'a built object with a redacted field');
  const map = await app.evaluate('new Map([["k", order.customer.password], ["n", order.customer.name]])');
  assert.equal(map.kind, 'value');
  if (map.kind === 'value') {
    assert.equal(map.result.preview?.entries?.[0]?.value.description, '[redacted: password]');
    assertNoSecret(JSON.stringify(map.result), 'a built Map with a redacted value');
  }
  const users = await app.evaluate('users');
  assert.equal(users.kind, 'value');
  if (users.kind === 'value') assertNoSecret(JSON.stringify(users.result), 'an array of users read from the target');
});
