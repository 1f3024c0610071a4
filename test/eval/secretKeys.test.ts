// A secret the program keeps where its name does not say so: as the key of an object (a cache or a rate limiter keyed
// by an API key) or as a number copied under another name. Once the session has read it under its redacted name, it
// is hidden there too, in every view: a hover, a preview, an evaluation's keys, JSON and spread, a snapshot, and the
// audit trail. Real broker, real target.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { CdpClient } from '../support/cdpClient';
import { fixtures, markerLine, startTarget, type TargetProcess } from '../support/target';
import { basePolicy, startTestBroker, type TestBroker } from '../support/testBroker';

const app = join(fixtures, 'keyed-secrets-app.js');
const apiKey = 'zq7KEYEDapiW93x';
const otp = '73910482';

/** Fails naming where a secret shows: the key whole, a piece of it, or the OTP's digits. */
function assertHidden(what: string, value: unknown): void {
  const text = JSON.stringify(value);
  for (const secret of [apiKey, apiKey.slice(0, 6), otp]) assert.ok(!text.includes(secret), `${what} shows ${secret === otp ? 'the OTP' : 'the API key'} (${secret}): ${text.slice(0, 600)}`);
}

describe('secrets kept as object keys or copied numbers stay hidden (real broker, real target)', () => {
  let target: TargetProcess;
  let broker: TestBroker;
  let client: CdpClient;
  let callFrameId: string;
  let locals: any[];
  const evaluate = async (expression: string) => (await client.call('Debugger.evaluateOnCallFrame', { callFrameId, expression, returnByValue: true })).result;

  before(async () => {
    target = await startTarget(app, { KEYED_API_KEY: apiKey, KEYED_OTP: otp });
    broker = await startTestBroker(basePolicy(target.inspector));
    ({ client } = await broker.attach());
    await client.call('Debugger.enable');
    await client.call('Debugger.setBreakpointByUrl', { lineNumber: markerLine(app, 'handle'), urlRegex: 'keyed-secrets-app\\.js$' });
    const paused = await client.waitEvent('Debugger.paused');
    const frame = paused.params.callFrames[0];
    callFrameId = frame.callFrameId;
    // The hover: the frame's locals, read once (the redacted names first in the program's order, so learned).
    locals = (await client.call('Runtime.getProperties', { objectId: frame.scopeChain[0].object.objectId, ownProperties: true, generatePreview: true })).result;
  });
  after(async () => {
    await client?.close();
    await broker?.close();
    await target?.stop();
  });

  it('hides them in the variables view: the key in a preview, the copied number', () => {
    const byName = (name: string) => locals.find((p) => p.name === name)?.value;
    assert.equal(byName('apiKey').value, '[redacted: apiKey]');
    assert.equal(byName('code').value, '[redacted: value of a redacted field]', JSON.stringify(byName('code')));
    const fields = byName('rateLimits').preview.properties.map((p: any) => p.name);
    assert.deepEqual(fields, ['[redacted: value of a redacted field]', 'other']);
    assertHidden('the locals', locals);
  });

  it('hides the key in a read of the object and of an object nested in a list', async () => {
    const rateLimits = locals.find((p) => p.name === 'rateLimits').value.objectId;
    const own = (await client.call('Runtime.getProperties', { objectId: rateLimits, ownProperties: true, generatePreview: true })).result;
    assert.ok(
      own.some((p: any) => p.name === '[redacted: value of a redacted field]' && p.value.value === 100),
      JSON.stringify(own),
    );
    assertHidden('a read of rateLimits', own);
    const list = locals.find((p) => p.name === 'limiters').value.objectId;
    const first = (await client.call('Runtime.getProperties', { objectId: list, ownProperties: true, generatePreview: true })).result;
    assertHidden('a read of limiters', first);
  });

  it("hides them in what the interpreter builds from the target's keys and numbers", async () => {
    for (const expression of [
      'Object.keys(rateLimits)',
      'Object.keys(rateLimits)[0].slice(0, 6)',
      'Object.entries(rateLimits)',
      'JSON.stringify(rateLimits)',
      'JSON.stringify(limiters)',
      '({ ...rateLimits })',
      'Object.keys({ ...rateLimits })',
      'Object.fromEntries(Object.entries(rateLimits))',
      '`${Object.keys(rateLimits)}`',
      'code',
      '[code]',
      'String(code)',
      'code - 1 + 1',
      'limiters',
      'rateLimits',
    ]) {
      const answer = await evaluate(expression);
      assertHidden(expression, answer);
    }
    // What is not secret still shows: the other key, and the count.
    assert.equal((await evaluate('Object.keys(rateLimits)[1]')).value, 'other');
    assert.equal((await evaluate('Object.keys(rateLimits).length')).value, 2);
  });

  it('hides the key spelled out under other names: characters, char codes, bytes, a String wrapper, UTF-16, hex, base64', async () => {
    const byName = (name: string) => locals.find((p) => p.name === name)?.value;
    for (const name of ['b64', 'hex']) assert.equal(byName(name).value, '[redacted: value of a redacted field]', `${name}: ${JSON.stringify(byName(name))}`);
    for (const name of ['chars', 'codes', 'bytes', 'boxed', 'wide']) {
      const own = (await client.call('Runtime.getProperties', { objectId: byName(name).objectId, ownProperties: true, generatePreview: true })).result;
      const elements = own.filter((p: any) => /^\d+$/.test(p.name)).map((p: any) => p.value.value);
      assert.equal(elements.length, apiKey.length, name);
      assert.ok(
        elements.every((e: unknown) => typeof e === 'string' && e.startsWith('[redacted: ')),
        `${name} shows its elements: ${JSON.stringify(elements)}`,
      );
    }
    // The interpreter turns none of them back into the key, whole or an element at a time.
    for (const expression of [
      "chars.join('')",
      'chars[3]',
      'String.fromCharCode(...codes)',
      'codes[0]',
      'String.fromCharCode(...bytes)',
      "Array.from(bytes, (b) => String.fromCharCode(b)).join('')",
      "Object.values(boxed).join('')",
      'boxed[0]',
      "Array.from(wide, (c) => String.fromCharCode(c)).join('')",
    ]) {
      const result = await evaluate(expression);
      assert.match(String(result.value), /^\[redacted: /, `${expression}: ${JSON.stringify(result)}`);
    }
  });

  it('answers a lookup in an object keyed by the key the same for a right and a wrong guess', async () => {
    // Spelled out, so the guess itself is not the key in what is recorded of the expression.
    const spelled = (text: string) => `[${[...text].map((c) => `'${c}'`).join(', ')}].join('')`;
    const right = spelled(apiKey);
    const wrong = spelled(`${apiKey.slice(0, -1)}X`);
    for (const lookup of [(k: string) => `${k} in rateLimits`, (k: string) => `Object.hasOwn(rateLimits, ${k})`, (k: string) => `rateLimits[${k}]`]) {
      const [a, b] = [await evaluate(lookup(right)), await evaluate(lookup(wrong))];
      assert.deepEqual(a, b, `${lookup('guess')} answers a right and a wrong guess apart`);
      assert.match(String(a.value), /^\[redacted: /, lookup('guess'));
    }
  });

  it('keeps them out of the audit trail', async () => {
    await client.call('Debugger.resume');
    assertHidden('the audit records', broker.records);
  });
});

describe('a snapshot hides a secret kept as a key or a copied number (real broker, real target)', () => {
  it('captures the locals with the key and the number as markers, in the capture and its record', async () => {
    const target = await startTarget(app, { KEYED_API_KEY: apiKey, KEYED_OTP: otp });
    const base = basePolicy(target.inspector);
    // A generous capture budget, so a loaded machine still reads the locals whole.
    const broker = await startTestBroker({ ...base, targets: { app: { ...base.targets.app, snapshot: { depth: 1, timeBudgetMs: 1000 } } } });
    try {
      const { client } = await broker.attach({ mode: 'snapshot' });
      await client.call('Debugger.enable');
      await client.call('Debugger.setBreakpointByUrl', { lineNumber: markerLine(app, 'handle'), urlRegex: 'keyed-secrets-app\\.js$' });
      const captured = await client.waitEvent('Loupe.snapshotCaptured');
      const locals = captured.params.frames[0].scopes[0].properties;
      assert.ok(
        locals.some((p: any) => p.name === 'rateLimits'),
        JSON.stringify(locals),
      );
      assertHidden('the capture', captured.params);
      await broker.waitForRecord('snapshot.captured');
      assertHidden('the audit records', broker.records);
      await client.close();
    } finally {
      await broker.close();
      await target.stop();
    }
  });
});
