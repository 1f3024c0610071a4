// Without a paused frame, names resolve in the global object and the global lexical scope, read the same way.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { compileRedaction, defaultPatterns, defaultSensitiveNames, Redactor } from '../../broker/policy/redact';
import { evaluateLoupe, redactionContextOf, TargetReader, type LoupeEvalOptions } from '../../broker/eval';
import { CdpClient } from '../support/cdpClient';
import { startTarget, type TargetProcess } from '../support/target';
import { assertNoSecret, envSecret, evalApp, valueOf } from './pausedApp';

let target: TargetProcess;
let client: CdpClient;
before(async () => {
  target = await startTarget(evalApp, { SECRET_X: envSecret });
  client = await CdpClient.connect(target.wsUrl);
  await client.call('Runtime.enable');
  // A top-level `let` of a script lives in the global lexical scope, not on the global object.
  await client.call('Runtime.evaluate', { expression: 'let loupeLexical = { apiToken: "S3CR3T-lexical", count: 5 }; 0' });
});
after(async () => {
  await client?.close();
  await target?.stop();
});

function options(extra: Partial<LoupeEvalOptions> = {}): LoupeEvalOptions {
  // One reader per evaluation while the target runs: its objects may change between evaluations.
  const reader = new TargetReader((method, params) => client.call(method, params));
  return { reader, redaction: redactionContextOf(new Redactor(compileRedaction(defaultSensitiveNames, defaultPatterns))), returnByValue: true, ...extra };
}

test('names resolve in the global scope of a running target, with the same taint', async () => {
  const cases: [string, unknown][] = [
    ['appState.mode', 'live'],
    ['new Date(appState.started).getUTCFullYear()', 2023],
    ['appState.secretKey', '[redacted: secretKey]'],
    ['appState.secretKey.length', '[redacted: secretKey]'],
    ['Object.keys(appState)', ['started', 'mode', 'secretKey']],
    ['probe.getterRuns', 0],
    ['typeof run', 'function'],
    ['process.env.SECRET_X', '[redacted: SECRET_X]'],
    ['process.arch.length > 0', true],
    // The process id is withheld (a client could act on the process outside Loupe).
    ['process.pid > 0', { refused: "the target's process id (process.pid) is withheld: a debugger could act on the process outside Loupe" }],
    ['loupeLexical.count * 2', 10],
    ['loupeLexical.apiToken', '[redacted: apiToken]'],
    ['globalThis.appState.mode', 'live'],
  ];
  for (const [expression, expected] of cases) {
    const outcome = await evaluateLoupe(expression, options());
    assertNoSecret(JSON.stringify(outcome), expression);
    assert.deepEqual(valueOf(outcome), expected, `${expression}: ${JSON.stringify(outcome)}`);
  }
  const missing = await evaluateLoupe('order', options());
  assert.equal(missing.kind === 'exception' && missing.result.description, 'ReferenceError: order is not defined');
});
