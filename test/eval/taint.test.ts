// Taint: every route from a redacted value to the output (length, characters, comparisons, parsing,
// control flow, callbacks, containers, Map keys, arguments, getters) gives the marker, never the secret or
// a bit of it. Each expression runs against two targets whose secrets differ and nothing else: the answers
// (and the reads and steps spent) must be identical, which is what "not a bit of it" means.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { LoupeOutcome } from '../../broker/eval';
import { evaluateCondition, evaluateLogpoint } from '../../broker/eval';
import { assertNoSecret, pausedApp, valueOf, type PausedApp } from './pausedApp';

/** Oracles: each must come back as the marker. */
export const oracles: readonly string[] = [
  'password',
  'password.length',
  'password[0]',
  'password < "M"',
  'parseInt(password, 36)',
  "password.localeCompare('S3CR3T-p')",
  "password.includes('param')",
  "password.startsWith('S3CR3T-p')",
  "password.indexOf('p')",
  'password.charCodeAt(3)',
  'password.split("-")[1]',
  'arguments[1]',
  'arguments[1].length',
  'typeof arguments[1]',
  'arguments[0].name',
  "Object.values(users[1]).join(',')",
  'Object.values(order.customer).join()',
  '`${order.customer.password}`',
  "password ? 'yes' : 'no'",
  'password.length > 5 ? 1 : 2',
  'password && 1',
  'password || 1',
  "users.filter(u => u.password > 'S3CR3T-b')",
  "users.filter(u => u.password > 'S3CR3T-b').length",
  "users.some(u => u.password.startsWith('S3CR3T-a'))",
  "users.find(u => u.password.endsWith('w')).name",
  "users.findIndex(u => u.password.includes('bob'))",
  'users.slice().sort((a, b) => (a.password < b.password ? -1 : 1)).map(u => u.name)',
  'users.map(u => u.password).sort()',
  "users.map(u => u.password).indexOf('S3CR3T-ann-pw')",
  '[...sessionTokens.keys()][0]',
  'Array.from(sessionTokens.keys()).map(k => k.length)',
  "sessionTokens.has('S3CR3T-session-token-alpha')",
  'typeof (password + "")',
  '(password.length > 3 ? undefined : 1) === undefined',
  'config.db.password.split("-")[1]',
  'config.services[2].credentials.token.slice(0, 9)',
  "settings.get('apiKey').length",
  "account['#pin']",
  "account['#pin'].length",
  'moduleApiKey',
  'moduleApiKey.length',
  'otp.charCodeAt(0)',
  'note',
  'note.length',
  "jwt.split('.')[2]",
  "card.replaceAll(' ', '')",
  'req.headers.authorization.slice(7)',
  'req.headers.cookie.length',
  'process.env.SECRET_X',
  'process.env.SECRET_X.length',
  'env.SECRET_X.charAt(0)',
  '[...password].length',
  'Array.from(password).length',
  "password.length > 0 ? 'x' : null.x",
  'password.length === 21 ? items.map(i => i.price) : 1',
  "new Set([password, 'S3CR3T-param-password']).size",
  "[password].includes('S3CR3T-param-password')",
  'Object.keys({ [password]: 1 })',
  'Object.keys(Object.fromEntries([[password, 1]]))',
  '({ [password]: 1 })',
  'Math.max(password.length, 3)',
  'Number(password.length)',
  'String(password.length)',
  'Boolean(password.length > 20)',
  '!password',
  '!!password.length',
  'password.length.toString(2)',
  'JSON.stringify(password)',
  'JSON.stringify(password.length)',
  '[password.length].join()',
  'users.reduce((s, u) => s + u.password.length, 0)',
  'users.map(u => u.password.length)[0]',
  'items.filter(i => password.length > 10).length',
  'config.services.filter(s => s.credentials.token.length > 19).map(s => s.name)',
  'config.services.some(s => s.credentials.token === "S3CR3T-mail-token")',
  'new Date(password.length).getTime()',
  'new Map([[password, 1]]).size',
  'sessionTokens.get("S3CR3T-session-token-alpha")',
  'password.length > 100 ? 0 : "x".repeat(50)',
  "password.padStart(40, '*')",
  'password?.length',
  'password.length ?? 0',
  "typeof (password.length > 20 ? 'a' : 1)",
  '(password.length > 20 ? null : 1) == null',
  'password == "S3CR3T-param-password"',
  '[...new Set(users.map(u => u.password))].length',
  "'-'[[otp]]",
  "[otp] + ''",
  '`${[otp]}`',
  '[[otp]].join()',
  "'x'.concat([otp])",
  '({ [[otp]]: 1 })',
  'String([[password]])',
  'Object.keys(apiKeys)[0]',
  'Object.keys(apiKeys)',
  "apiKeys['S3CR3T-key-one'] === undefined",
  "apiKeys['S3CR3T-key-one']",
  "'S3CR3T-key-one' in apiKeys",
  "Object.hasOwn(apiKeys, 'S3CR3T-key-one')",
  'JSON.stringify(apiKeys)',
  'Object.entries(apiKeys)[0][0]',
  'Object.values(apiKeys)',
  "typeof apiKeys['S3CR3T-key-one']",
  "sessionTokens.get('S3CR3T-session-token-alpha') === undefined",
  '[...sessionTokens][0][0]',
  'JSON.stringify([...sessionTokens])',
  "Object.keys(config.services[2].credentials).includes('token')",
  'config.services[2].credentials.user === undefined',
  'cvv',
  'cvv + 1',
  'cvv > 500',
  '[cvv].includes(123)',
  'Math.sign(cvv - 500)',
  'cvv.toString(2).length',
  'JSON.stringify({ cvv })',
  'mfa',
  'mfa ? 1 : 0',
  '!mfa',
  'String(mfa)',
  'mfa === true',
  "mfa && 'on'",
  '[1, 2].filter(() => mfa).length',
  'new Date(cvv).getTime()',
  '({ ...apiKeys })',
  "Object.values(apiKeys) + ''",
  '`${arguments}`',
  'String(users.map(u => u.password))',
  'Object.keys({ ...apiKeys })',
  'authError.message',
  'authError.toString()',
];

/** Refused or thrown rather than redacted: what matters is that nothing of the secret shows. */
export const refusedWithoutLeak: readonly string[] = ["authError + ''", '`${authError}`', '[...authError]', 'authError.stack.split()', 'Object.keys(authError)'];

/** Shape of a redacted value is not secret: these answer with real values. */
export const shapes: readonly [string, unknown][] = [
  ['typeof password', 'string'],
  ['password === undefined', false],
  ['password !== undefined', true],
  ['password == null', false],
  ['config.db.password === undefined', false],
  ['users.map(u => u.password).length', 2],
  ['sessionTokens.size', 2],
  ["Object.keys(config.db).includes('password')", true],
  ['config.services[2].credentials !== undefined', true],
  ['Object.keys(config.services[2].credentials).length', 2],
  ['Object.keys(apiKeys).length', 2],
  ['apiKeys === undefined', false],
  ['typeof config.services[0].credentials', 'object'],
  ['[...sessionTokens.keys()].length', 2],
  ['typeof settings.get("apiKey")', 'string'],
  ['typeof arguments', 'object'],
  ['arguments.length', 2],
  ['typeof cvv', 'number'],
  ['typeof mfa', 'boolean'],
  ['mfa == null', false],
];

let a: PausedApp;
let b: PausedApp;
before(async () => {
  [a, b] = await Promise.all([pausedApp(), pausedApp('Zq7-other')]);
});
after(async () => {
  await Promise.all([a?.stop(), b?.stop()]);
});

/** An outcome as text, objectIds removed (they differ between processes) and the cost kept. */
function comparable(outcome: LoupeOutcome): string {
  const { ms: _ms, ...rest } = outcome;
  return JSON.stringify(rest, (key, value) => (key === 'objectId' ? undefined : value));
}

test(`${oracles.length} oracles over redacted values give the marker, identical whatever the secret`, async () => {
  const problems: string[] = [];
  for (const expression of oracles) {
    const [x, y] = await Promise.all([a.evaluate(expression, { returnByValue: true }), b.evaluate(expression, { returnByValue: true })]);
    const text = comparable(x);
    assertNoSecret(text, expression);
    assertNoSecret(comparable(y), expression);
    if (text !== comparable(y)) problems.push(`${expression}: differs with the secret: ${text} vs ${comparable(y)}`);
    const shown = JSON.stringify(valueOf(x));
    if (!(x.kind === 'value' && shown.includes('[redacted: '))) problems.push(`${expression}: no marker: ${text}`);
  }
  process.stdout.write(`# taint: ${oracles.length - problems.length}/${oracles.length} oracles redacted and secret-independent\n`);
  assert.deepEqual(problems, []);
});

test('refusals and errors over redacted values quote nothing of them', async () => {
  for (const expression of refusedWithoutLeak) {
    const [x, y] = await Promise.all([a.evaluate(expression, { returnByValue: true }), b.evaluate(expression, { returnByValue: true })]);
    assertNoSecret(comparable(x), expression);
    assertNoSecret(comparable(y), expression);
    assert.equal(comparable(x), comparable(y), expression);
  }
});

test('an object handed back by reference carries a preview with its redacted fields replaced', async () => {
  const outcome = await a.evaluate('order.customer');
  assert.ok(outcome.kind === 'value' && outcome.result.objectId && outcome.result.preview);
  assertNoSecret(JSON.stringify(outcome), 'order.customer');
  assert.deepEqual(
    outcome.result.preview!.properties.map((p) => [p.name, p.value]),
    [
      ['name', 'Ann Lee'],
      ['email', 'ann.lee@example.com'],
      ['password', '[redacted: password]'],
    ],
  );
  const list = await a.evaluate('users.filter(u => u.age > 30)');
  assertNoSecret(JSON.stringify(list), 'users.filter');
});

test('shape of redacted values is not secret', async () => {
  for (const [expression, expected] of shapes) {
    const outcome = await a.evaluate(expression, { returnByValue: true });
    assert.deepEqual(valueOf(outcome), expected, expression);
  }
});

test('containers keep real elements next to redacted ones', async () => {
  assert.deepEqual(valueOf(await a.evaluate('Object.values(users[0])', { returnByValue: true })), ['ann', 'ann@example.com', 34, '[redacted: password]']);
  assert.equal(valueOf(await a.evaluate('JSON.stringify(order.customer)')), '{"name":"Ann Lee","email":"ann.lee@example.com","password":"[redacted: password]"}');
  assert.equal(valueOf(await a.evaluate('JSON.stringify(config.services[0])')), '{"name":"billing","url":"https://billing.internal","credentials":"[redacted: credentials]"}');
  assert.deepEqual(valueOf(await a.evaluate('[...sessionTokens.keys()]', { returnByValue: true })), ['[redacted: sessionTokens]', '[redacted: sessionTokens]']);
  assert.deepEqual(valueOf(await a.evaluate('users.map(u => u.name + ":" + u.password.length)', { returnByValue: true })), ['[redacted: password]', '[redacted: password]']);
  const whole = await a.evaluate('config.db');
  assert.ok(whole.kind === 'value' && whole.result.objectId, 'an untainted object is handed back by reference (expansion is redacted by name)');
  const secretObject = await a.evaluate('config.services[1].credentials');
  assert.deepEqual(valueOf(secretObject), '[redacted: credentials]');
});

test('a condition whose decision depends on a secret never decides a pause', async () => {
  const opts = a.options();
  assert.deepEqual(pick(await evaluateCondition("password === 'S3CR3T-param-password'", opts)), { tainted: 'password' });
  assert.deepEqual(pick(await evaluateCondition('password.length > 3', opts)), { tainted: 'password' });
  assert.deepEqual(pick(await evaluateCondition("users.some(u => u.password.startsWith('S3'))", opts)), { tainted: 'password' });
  assert.deepEqual(pick(await evaluateCondition('users.length > 1', opts)), { value: true });
  assert.deepEqual(pick(await evaluateCondition('password !== undefined', opts)), { value: true });
  assert.deepEqual(pick(await evaluateCondition("order.customer.name === 'Bob'", opts)), { value: false });
  const refused = await evaluateCondition('user.getName()', opts);
  assert.ok('error' in refused && refused.refused && /only Loupe's built-ins can be called/.test(refused.error));
});

const pick = (v: object) => Object.fromEntries(Object.entries(v).filter(([k]) => k === 'value' || k === 'tainted'));

test('a logpoint prints the marker for a tainted part and real values for the rest', async () => {
  const out = await evaluateLogpoint({ literals: ['user ', ' logs in with ', ' (', ' chars)'], expressions: ['user.name', 'password', 'password.length'] }, a.options());
  assert.equal(out.message, 'user ann logs in with [redacted: password] ([redacted: password] chars)');
  assert.deepEqual(out.tainted, ['password']);
});

test('no getter or Proxy trap ran, and the target is unchanged', async () => {
  await a.evaluate('gadget.summary');
  await a.evaluate('hostile.a');
  await a.evaluate('account.displayName');
  assert.equal(await a.getterRuns(), 0);
  assert.equal(await b.getterRuns(), 0);
  const v8 = await a.v8('[items.length, users.length, sessionTokens.size, config.services.length]', true);
  assert.deepEqual(v8.result.value, [3, 2, 2, 3]);
});
