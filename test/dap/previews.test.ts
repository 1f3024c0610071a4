// The adapter's previews as js-debug writes them, read through the shipped dist/debugAdapter.js against a real broker
// and a real target paused in test/fixtures/preview-app.js: the Variables view, the Debug Console (repl) and hover,
// for objects, nested objects, arrays, Map, Set, a class instance, functions, Date, RegExp, Error, long strings, a
// value the interpreter built, and a redacted field (the marker, and the secret nowhere in anything the client got).
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { DebugClient } from '@vscode/debugadapter-testsupport';
import type { DebugProtocol } from '@vscode/debugprotocol';
import { basePolicy, startTestBroker, type TestBroker } from '../support/testBroker';
import { fixtures, markerLine, startTarget, type TargetProcess } from '../support/target';

const adapter = join(__dirname, '..', '..', 'dist', 'debugAdapter.js');
const app = join(fixtures, 'preview-app.js');
const secret = 'PREVIEW-SECRET-horse-staple';

let target: TargetProcess;
let broker: TestBroker;
let dc: DebugClient;
/** Every DAP message the adapter sent, as text: the secret must be in none. */
const seen: string[] = [];
let frameId = 0;
let locals = new Map<string, DebugProtocol.Variable>();

before(async () => {
  target = await startTarget(app, { TICK_MS: '100' });
  broker = await startTestBroker(basePolicy(target.inspector));
  dc = new DebugClient(process.execPath, adapter, 'loupe', undefined, true);
  dc.defaultTimeout = 10_000;
  for (const name of ['output', 'stopped', 'loupe.grant']) dc.on(name, (e: DebugProtocol.Event) => seen.push(JSON.stringify(e)));
  await dc.start();
  const args = {
    target: 'app',
    mode: 'pause',
    durationSeconds: 120,
    reason: 'DAP test: previews',
    brokerUrl: broker.url,
    identityToken: await broker.token('dev', ['devs']),
    localRoot: fixtures,
    remoteRoot: fixtures,
  };
  await Promise.all([
    dc.configurationSequence(),
    dc.initializeRequest({ adapterID: 'loupe', linesStartAt1: true, columnsStartAt1: true, pathFormat: 'path' }).then(() => dc.attachRequest(args as any)),
  ]);
  const stopping = dc.waitForEvent('stopped');
  const set = await dc.setBreakpointsRequest({ source: { path: app }, breakpoints: [{ line: markerLine(app, 'shapes') + 1 }] });
  assert.equal(set.body.breakpoints[0]!.verified, true, JSON.stringify(set.body));
  await stopping;
  const stack = await dc.stackTraceRequest({ threadId: 1 });
  frameId = stack.body.stackFrames[0]!.id;
  const scopes = await dc.scopesRequest({ frameId });
  const local = scopes.body.scopes.find((s) => s.name === 'Local')!;
  locals = new Map((await variables(local.variablesReference)).map((v) => [v.name, v]));
});

after(async () => {
  await dc?.disconnectRequest({}).catch(() => undefined);
  await dc?.stop();
  await broker?.close();
  await target?.stop();
});

async function variables(variablesReference: number): Promise<DebugProtocol.Variable[]> {
  const r = await dc.variablesRequest({ variablesReference });
  seen.push(JSON.stringify(r));
  return r.body.variables;
}

async function evaluate(expression: string, context: 'repl' | 'hover' | 'watch'): Promise<DebugProtocol.EvaluateResponse['body']> {
  const r = await dc.evaluateRequest({ expression, frameId, context });
  seen.push(JSON.stringify(r));
  return r.body;
}

const local = (name: string) => {
  const v = locals.get(name);
  assert.ok(v, `${name} among the locals ${[...locals.keys()]}`);
  return v;
};

describe('object previews in the debug adapter, as js-debug writes them', () => {
  it('the Variables view previews each shape; objects still expand', async () => {
    assert.match(local('obj').value, /^\{n: (\d+), label: 'tick-\1', nested: \{…\}\}$/);
    assert.equal(local('arr').value, '(3) [1, 2, 3]');
    assert.equal(local('map').value, "Map(2) {size: 2, 'a' => 1, 'b' => 2}");
    assert.equal(local('set').value, "Set(2) {size: 2, 'x', 'y'}");
    assert.equal(local('point').value, 'Point {x: 1, y: 2}');
    assert.equal(local('fn').value, 'ƒ add(a, b)');
    assert.equal(local('arrow').value, '(value) => value * 2');
    assert.match(local('when').value, /^Thu Jan 01 1970 \d\d:00:00 GMT/);
    assert.equal(local('pattern').value, '/ab+c/gi');
    // An error's message is text the program built: withheld wherever the error shows outside an exception pause.
    assert.equal(local('failure').value, 'Error: [redacted: exception message]');
    assert.equal(local('lines').value, `"it's\\nsplit"`, 'a quote the text does not hold; the line break escaped');
    // 200 elements: V8 previews the first 100; js-debug marks the rest with one ellipsis.
    assert.match(local('many').value, /^\(200\) \[0, 1, 2, .*, 98, 99, …\]$/);
    // A 5000-character string in a 1000-character place: both ends kept, cut in the middle.
    const long = local('long').value;
    assert.equal(long.length, 1000);
    assert.match(long, /^'x+…x+'$/);
    // The largest scope, every object in it previewed, still reads in one answer.
    const scopes = await dc.scopesRequest({ frameId });
    const global = await variables(scopes.body.scopes.find((s) => s.name === 'Global')!.variablesReference);
    assert.ok(global.length > 20, `${global.length} globals`);
    assert.ok(
      global.some((v) => /^ƒ \w+\(/.test(v.value)),
      global.map((v) => `${v.name} = ${v.value}`).join('\n'),
    );
    // The type is the class; the object still expands.
    assert.equal(local('point').type, 'Point');
    const obj = new Map((await variables(local('obj').variablesReference)).map((v) => [v.name, v]));
    assert.equal(obj.get('nested')!.value, '{deep: true}');
    assert.match(obj.get('label')!.value, /^'tick-\d+'$/);
  });

  it('a redacted field is the marker in the preview, in its expansion and in every evaluation', async () => {
    assert.equal(local('account').value, "{user: 'ada', password: '[redacted: password]'}");
    const fields = new Map((await variables(local('account').variablesReference)).map((v) => [v.name, v.value]));
    assert.equal(fields.get('password'), "'[redacted: password]'");
    assert.equal((await evaluate('account', 'repl')).result, "{user: 'ada', password: '[redacted: password]'}");
    assert.equal((await evaluate('account', 'hover')).result, "{user: 'ada', password: '[redacted: password]'}");
    assert.equal((await evaluate('account.password', 'hover')).result, "'[redacted: password]'");
    // Built by the broker's interpreter from the redacted value: the marker again.
    assert.match((await evaluate('[account.user, account.password]', 'repl')).result, /^\(2\) \['ada', '\[redacted: password\]'\]$/);
    assert.match((await evaluate('({who: account.user, pw: account.password})', 'repl')).result, /^\{who: 'ada', pw: '\[redacted: password\]'\}$/);
  });

  it('the Debug Console and hover preview what the broker answers, read or built by its interpreter', async () => {
    assert.match((await evaluate('obj', 'repl')).result, /^\{n: \d+, label: 'tick-\d+', nested: \{…\}\}$/);
    assert.equal((await evaluate('obj.nested', 'hover')).result, '{deep: true}');
    assert.equal((await evaluate('map', 'repl')).result, "Map(2) {size: 2, 'a' => 1, 'b' => 2}");
    assert.equal((await evaluate('set', 'hover')).result, "Set(2) {size: 2, 'x', 'y'}");
    assert.equal((await evaluate('point', 'hover')).result, 'Point {x: 1, y: 2}');
    assert.equal((await evaluate('fn', 'repl')).result, 'ƒ add(a, b)');
    assert.equal((await evaluate('arr', 'watch')).result, '(3) [1, 2, 3]');
    assert.equal((await evaluate('failure', 'repl')).result, 'Error: [redacted: exception message]');
    // Values the interpreter built: the same shapes V8 gives.
    assert.equal((await evaluate('arr.map(x => x * 2)', 'repl')).result, '(3) [2, 4, 6]');
    assert.equal((await evaluate('({a: 1, s: "x", inner: {b: 2}, list: [1]})', 'repl')).result, "{a: 1, s: 'x', inner: {…}, list: Array(1)}");
    assert.equal((await evaluate('Object.keys(point)', 'hover')).result, "(2) ['x', 'y']");
    assert.equal((await evaluate('"it\'s"', 'repl')).result, `"it's"`);
    // The Debug Console keeps a line break; hover and watch show it escaped.
    assert.equal((await evaluate('lines', 'repl')).result, `"it's\nsplit"`);
    assert.equal((await evaluate('lines', 'hover')).result, `"it's\\nsplit"`);
    // The Debug Console's budget is js-debug's 100,000 characters: the whole 5000-character string.
    assert.equal((await evaluate('long', 'repl')).result, `'${'x'.repeat(5000)}'`);
  });

  it('the secret is in nothing the adapter sent', () => {
    assert.ok(seen.length > 10, `${seen.length} messages looked at`);
    for (const message of seen) assert.ok(!message.includes(secret) && !message.includes('horse-staple'), message.slice(0, 300));
  });
});
