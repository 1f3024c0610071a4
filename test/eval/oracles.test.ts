// Classes of oracle and stall found by attacking the broker's interpreter through a real broker and a real target:
// an answer, a refusal or the time taken must never depend on a secret, and no expression may hold the broker.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { CdpClient } from '../support/cdpClient';
import { fixtures, markerLine, startTarget, type TargetProcess } from '../support/target';
import { basePolicy, startTestBroker, type TestBroker } from '../support/testBroker';

const app = join(fixtures, 'oracle-app.js');

interface Paused {
  target: TargetProcess;
  broker: TestBroker;
  client: CdpClient;
  evaluate(expression: string): Promise<{ value?: unknown; description?: string; exception?: string; ms: number }>;
  close(): Promise<void>;
}

async function pausedThroughBroker(secrets: { pin: string; otp: string; password: string }): Promise<Paused> {
  const target = await startTarget(app, { ORACLE_PIN: secrets.pin, ORACLE_OTP: secrets.otp, ORACLE_PASSWORD: secrets.password });
  const broker = await startTestBroker(basePolicy(target.inspector));
  const { client } = await broker.attach();
  await client.call('Debugger.enable');
  await client.call('Debugger.setBreakpointByUrl', { lineNumber: markerLine(app, 'handle'), urlRegex: 'oracle-app\\.js$' });
  const paused = await client.waitEvent('Debugger.paused');
  const callFrameId = paused.params.callFrames[0].callFrameId as string;
  return {
    target,
    broker,
    client,
    async evaluate(expression) {
      const started = performance.now();
      const id = 1_000_000 + Math.floor(Math.random() * 1e6);
      const reply = (await client.sendRaw(JSON.stringify({ id, method: 'Debugger.evaluateOnCallFrame', params: { callFrameId, expression, returnByValue: true } }), id, 60_000)).result as any;
      const ms = performance.now() - started;
      return { value: reply.result?.value, description: reply.result?.description, exception: reply.exceptionDetails?.exception?.description ?? reply.exceptionDetails?.text, ms };
    },
    async close() {
      await client.close().catch(() => undefined);
      await broker.close();
      await target.stop();
    },
  };
}

describe('the interpreter gives no oracle over a secret and cannot be held (real broker, real target)', () => {
  const secrets = { pin: '4821', otp: '739104', password: 'hunter2-zebra' };
  let s: Paused;
  before(async () => {
    s = await pausedThroughBroker(secrets);
  });
  after(async () => {
    await s?.close();
  });

  it('scrubs no literal of the user because it equals a value the session learned', async () => {
    assert.deepEqual((await s.evaluate('[pin, otp, password]')).value, ['[redacted: pin]', '[redacted: otp]', '[redacted: password]']);
    // The session has now learned the three values; a list of guesses comes back as written, the right one too.
    const guesses = ['1000', secrets.pin, '739103', secrets.otp, 'letmein', secrets.password].join(',');
    assert.equal((await s.evaluate(JSON.stringify(guesses))).value, guesses);
    assert.deepEqual((await s.evaluate(`[${JSON.stringify(secrets.pin)}, ${secrets.pin}]`)).value, [secrets.pin, Number(secrets.pin)]);
  });

  it('an answer that hid a literal under a sensitive name leaves the next answers as they were', async () => {
    // The answers' scrubber is kept between answers only while it has learned nothing: this one learns the literal.
    const literal = 'plain-words-6150';
    assert.deepEqual((await s.evaluate(`({ password: ${JSON.stringify(literal)} })`)).value, { password: '[redacted: password]' });
    for (let i = 0; i < 3; i++) assert.equal((await s.evaluate(JSON.stringify(literal))).value, literal);
    assert.deepEqual((await s.evaluate(`({ token: 'abc-${'x'.repeat(20)}', note: ${JSON.stringify(literal)} })`)).value, { token: '[redacted: token]', note: literal });
  });

  it('answers the same whatever the length of a secret the budget would have counted', async () => {
    // Seven MiB of the user's own, then the secret twice: before, refused exactly when the secret was longer than g.
    const probe = (g: number) => `[${Array(7).fill("'x'.repeat(1048576)").join(', ')}, 'x'.repeat(${1048576 - g}), password, password].length`;
    for (const g of [0, secrets.password.length - 1, secrets.password.length, 64]) {
      const answer = await s.evaluate(probe(g));
      assert.equal(answer.value, 10, `guess ${g}: ${JSON.stringify(answer)}`);
    }
    assert.equal((await s.evaluate('password.length')).value, '[redacted: password]');
    assert.equal((await s.evaluate('user.password.repeat(100000).length')).value, '[redacted: password]');
  });

  it('refuses, within its bounds, work that grows exponentially from a few steps (shared arrays, BigInt)', async () => {
    const cases: [string, RegExp | boolean | number][] = [
      // 2^26 leaves from 26 arrays: checked for secrets once per array, then turned into a string within its bound.
      ['Array.from({ length: 26 }).reduce(a => [a, a], 0) == 1', /array turned into a string of more than 1048576 characters/],
      ['Array.from({ length: 26 }).reduce(a => [a, a], 0).length', 2],
      ['Array.from({ length: 60 }).reduce(a => [a, a], password) == 1', true],
      // Turned into a string: bounded as it is built.
      ['String(Array.from({ length: 22 }).reduce(a => [a, a], 0)).length', /array turned into a string of more than 1048576 characters/],
      ['`${Array.from({ length: 40 }).reduce(a => [a, a], [])}`.length', /array turned into a string of more than/],
      ['((1n << 300000000n) * (1n << 300000000n)) > 0n', /BigInt of more than 65536 bits/],
      ['(7n ** 3000000n) % 10n', /BigInt of more than 65536 bits/],
      ['String(2n ** 65000n).length', true],
      ["'x'.repeat(1048576).replaceAll('', 'y'.repeat(500)).length", /string longer than 1048576 characters/],
    ];
    for (const [expression, expected] of cases) {
      const answer = await s.evaluate(expression);
      assert.ok(answer.ms < 3000, `${expression}: answered in ${answer.ms.toFixed(0)} ms`);
      if (expected instanceof RegExp) {
        assert.match(answer.exception ?? answer.description ?? '', /Loupe|refused/i, `${expression}: a refusal, not a JavaScript error: ${JSON.stringify(answer)}`);
        assert.match(answer.exception ?? answer.description ?? '', expected, expression);
      } else if (expected === true) assert.ok(answer.value !== undefined || answer.description !== undefined, `${expression}: ${JSON.stringify(answer)}`);
      else assert.equal(answer.value, expected, `${expression}: ${JSON.stringify(answer)}`);
    }
    // The broker answers throughout.
    assert.equal((await fetch(`${s.broker.url}/healthz`)).status, 200);
  });
});
