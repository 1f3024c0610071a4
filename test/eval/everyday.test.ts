// Everyday expressions through the interpreter answer what V8 itself computes in the same paused frame
// (V8's answer by Debugger.evaluateOnCallFrame, returnByValue, on the test's own connection).
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { pausedApp, valueOf, type PausedApp } from './pausedApp';

export const everyday: readonly string[] = [
  'order.customer.name',
  'order.items.length',
  'items.map(i => i.sku)',
  'items.map(i => i.price)',
  'items.filter(i => i.qty > 0).map(i => i.name)',
  'items.reduce((s, i) => s + i.price * i.qty, 0)',
  'items.some(i => i.qty > 0)',
  'items.every(i => i.price > 1)',
  "items.find(i => i.sku === 'B-2').name",
  'items.findIndex(i => i.qty === 0)',
  'user.email.split("@")[1]',
  'name.toUpperCase()',
  "name.toLowerCase().replace(' ', '_')",
  '[...name]',
  'Array.from(name).length',
  "Array.from(words.split(' '), w => w.length)",
  'Object.keys(order)',
  'Object.keys(user).map(k => k.length)',
  'Object.keys(users[0]).map(k => k.length)',
  'new Date(ts).getFullYear() > 2000',
  'new Date(ts).toISOString()',
  'created.getTime()',
  'created.toISOString()',
  'sessionTokens.size',
  'req.headers.cookie === undefined',
  'plainRequest.headers.cookie === undefined',
  '`${order.id}-${items.length}`',
  "order.total > 50 ? 'big' : 'small'",
  "config.services.map(s => s.name).join(', ')",
  'config.retries.reduce((a, b) => a + b)',
  'Math.max(...items.map(i => i.price))',
  'Math.round(items[0].price * 100) / 100',
  '(1234.5678).toFixed(2)',
  "parseInt('42px')",
  "Number('3.5') + 1",
  'typeof missing',
  "nothing ?? 'default'",
  'missing?.foo',
  'order?.customer?.name?.length',
  "words.split(' ').filter(w => w.length > 3)",
  'items.slice().sort((a, b) => a.price - b.price).map(i => i.sku)',
  '[...tags].sort()',
  'Array.from(priceBySku.keys())',
  "priceBySku.get('B-2') * 2",
  "tags.has('sale')",
  'nested.flat(2)',
  'bytes.length',
  'Array.from(bytes).reduce((a, b) => a + b, 0)',
  'JSON.stringify(items[0])',
  'JSON.stringify(items.map(i => i.sku), null, 2)',
  'JSON.parse(\'{"a":[1,2]}\').a[1]',
  "String(order.id).padStart(6, '0')",
  "'a-b-c'.split('-').reverse().join('+')",
  'Object.entries(status).filter(([k, v]) => v).map(([k]) => k)',
  "users.map(u => u.email.endsWith('.org'))",
  'Object.fromEntries(items.map(i => [i.sku, i.qty]))',
  "account.owner + '/' + account.currency",
  'big + 1n',
  "'customer' in order",
  "'x' in order",
  "Object.hasOwn(order, 'total')",
  'items.at(-1).sku',
  'empty.length === 0',
  '[1, [2, 3]].flatMap(x => x)',
  'Array.isArray(items)',
  'new Date(ts).getUTCHours()',
  "words.includes('fox') && words.indexOf('quick')",
  'Number.isInteger(order.total)',
  'items.map(i => ({ sku: i.sku, total: i.price * i.qty }))',
  'config.db.port + 1',
  'user.name.charAt(0).toUpperCase() + user.name.slice(1)',
  'items.filter(i => i.price < 10)',
  'order.customer.email.length',
  "[3, 1, 2].toSorted().join('')",
  'Math.min(1, 2) + Math.abs(-3) + Math.floor(2.7)',
  'typeof order.items',
  '!items.length',
  'items.map(i => i.qty).includes(0)',
  "'abc'.at(-1) + 'abc'.charCodeAt(0)",
  'users.length > 1 && users[1].age',
  "['1', '', '3'].filter(Boolean).map(Number)",
  "['10', '10', '10'].map(parseInt)",
  '`${config.retries}`',
  "config.retries + ''",
  'String(nested)',
  '`retries: ${config.retries} of ${items.map(i => i.sku)}`',
  'config.retries == "1,2,4,8"',
];

let app: PausedApp;
before(async () => {
  app = await pausedApp();
});
after(async () => {
  await app?.stop();
});

test(`the ${everyday.length} everyday expressions answer what V8 answers`, async () => {
  let passed = 0;
  const failures: string[] = [];
  for (const expression of everyday) {
    const ours = await app.evaluate(expression, { returnByValue: true });
    const v8 = await app.v8(expression);
    assert.equal(v8.exceptionDetails, undefined, `V8 itself failed on ${expression}: ${v8.exceptionDetails?.exception?.description}`);
    const expected = v8.result.type === 'undefined' ? undefined : (v8.result.unserializableValue ?? v8.result.value);
    try {
      assert.equal(ours.kind, 'value', `${expression}: ${JSON.stringify(ours)}`);
      assert.deepEqual(valueOf(ours), expected, expression);
      passed++;
    } catch (error) {
      failures.push((error as Error).message);
    }
  }
  process.stdout.write(`# everyday table: ${passed}/${everyday.length} equal to V8\n`);
  assert.deepEqual(failures, []);
});

test('an object of the target reached without taint comes back as its own RemoteObject, expandable', async () => {
  const outcome = await app.evaluate('order.customer');
  assert.equal(outcome.kind, 'value');
  assert.ok(outcome.kind === 'value' && outcome.result.objectId, 'the client can expand it');
  const local = await app.evaluate('items.map(i => i.sku)');
  assert.ok(local.kind === 'value');
  assert.equal(local.result.subtype, 'array');
  assert.equal(local.result.description, 'Array(3)');
  assert.deepEqual(
    local.result.preview?.properties.map((p) => p.value),
    ['A-1', 'B-2', 'C-3'],
  );
});

test('everyday expressions ran no getter and changed nothing in the target', async () => {
  assert.equal(await app.getterRuns(), 0);
  const v8 = await app.v8('[items.length, order.total, config.retries.join()]', true);
  assert.deepEqual(v8.result.value, [3, 62, '1,2,4,8']);
});
