// The session's handle: frames from the paused event, evaluations by callFrameId, conditions, logpoints,
// and nothing once the target has resumed.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { SessionEvaluator } from '../../broker/eval';
import { pausedApp, type PausedApp } from './pausedApp';

let app: PausedApp;
before(async () => {
  app = await pausedApp();
});
after(async () => {
  await app?.stop();
});

test('evaluate, condition and logpoint by callFrameId; refused once resumed', async () => {
  const evaluator = new SessionEvaluator({ send: (method, params) => app.client.call(method, params), redactor: app.redactor });
  evaluator.paused([app.frame]);
  const { response, outcome } = await evaluator.evaluate('items.map(i => i.sku).join()', { callFrameId: app.frame.callFrameId });
  assert.equal(response.result.value, 'A-1,B-2,C-3');
  assert.equal(outcome.kind, 'value');
  const secret = await evaluator.evaluate('password.length', { callFrameId: app.frame.callFrameId });
  assert.equal(secret.response.result.value, '[redacted: password]');
  assert.deepEqual(secret.outcome.kind === 'value' && secret.outcome.tainted, ['password']);
  const global = await evaluator.evaluate('appState.mode');
  assert.equal(global.response.result.value, 'live');
  const verdict = await evaluator.condition(app.frame.callFrameId, "password.startsWith('S3')");
  assert.ok('tainted' in verdict && verdict.tainted === 'password');
  const log = await evaluator.logpoint(app.frame.callFrameId, { literals: ['total ', ''], expressions: ['order.total'] });
  assert.equal(log.message, 'total 62');
  evaluator.resumed();
  const stale = await evaluator.evaluate('order.total', { callFrameId: app.frame.callFrameId });
  assert.match(String(stale.response.result.description), /^EvalError: Refused by Loupe: the call frame .* is not one of the current pause/);
  assert.equal(await app.getterRuns(), 0);
});
