// An error's message is text the program built, often from the value that failed. Outside an exception pause the
// broker never read the frame that built it, so the message is withheld wherever the error shows: as a console
// argument, and also through the error's id (its own message and stack, Runtime.getExceptionDetails), held in a
// global, a container's preview, a Map, and through a Loupe expression. Real broker, real target.
import { strict as assert } from 'node:assert';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fixtures, startTarget, type TargetProcess } from '../support/target';
import { basePolicy, startTestBroker, type TestBroker } from '../support/testBroker';

const app = join(fixtures, 'error-objects-app.js');
const withheld = '[redacted: exception message]';

describe('an error object outside an exception pause', () => {
  const secret = `Xq-login-${randomBytes(9).toString('hex')}`;
  let target: TargetProcess;
  let broker: TestBroker;
  before(async () => {
    target = await startTarget(app, { ERROR_APP_SECRET: secret });
    broker = await startTestBroker(basePolicy(target.inspector));
  });
  after(async () => {
    await broker?.close();
    await target?.stop();
  });

  it('has its message withheld through its id, its holders and Loupe expressions, not only where it was logged', async () => {
    const { client } = await broker.attach({ mode: 'pause' });
    const frames: string[] = [];
    client.socket.on('message', (data) => frames.push(data.toString()));
    await client.call('Runtime.enable');
    const logged = await client.waitEvent('Runtime.consoleAPICalled', (m) => m.params.args?.[0]?.value === 'login failed');
    const err = logged.params.args[1];
    assert.equal(err.subtype, 'error');
    assert.equal(err.description.split('\n')[0], `Error: ${withheld}`);

    const own = await client.call('Runtime.getProperties', { objectId: err.objectId, ownProperties: true });
    const field = (name: string) => own.result.find((p: any) => p.name === name)?.value?.value;
    assert.equal(field('message'), withheld);
    assert.equal(String(field('stack')).split('\n')[0], `Error: ${withheld}`);
    assert.match(String(field('stack')), /at login \(/, 'the stack frames stay');

    const details = await client.call('Runtime.getExceptionDetails', { errorObjectId: err.objectId });
    assert.equal(details.exceptionDetails.text, `Error: ${withheld}`);

    for (const expression of ['lastFailure.message', 'lastFailure.stack', 'failures.last.message', "recentFailures.get('last').message"]) {
      const answer = await client.call('Runtime.evaluate', { expression });
      assert.ok(!JSON.stringify(answer).includes(secret), `${expression}: ${JSON.stringify(answer).slice(0, 300)}`);
      assert.match(String(answer.result.value ?? answer.result.description), /\[redacted: exception message\]/, `${expression}: ${JSON.stringify(answer).slice(0, 300)}`);
    }
    const held = await client.call('Runtime.evaluate', { expression: 'lastFailure' });
    assert.equal(String(held.result.description).split('\n')[0], `Error: ${withheld}`);
    const { result: heldOwn } = await client.call('Runtime.getProperties', { objectId: held.result.objectId, ownProperties: true });
    assert.equal(heldOwn.find((p: any) => p.name === 'message').value.value, withheld);
    const container = await client.call('Runtime.evaluate', { expression: 'failures', generatePreview: true });
    const last = container.result.preview?.properties?.find((p: any) => p.name === 'last');
    if (last) assert.match(String(last.value), /^Error: \[redacted: exception message\]/);
    const map = await client.call('Runtime.evaluate', { expression: 'recentFailures', generatePreview: true });
    for (const entry of map.result.preview?.entries ?? []) assert.ok(!JSON.stringify(entry).includes(secret));

    await client.close();
    assert.ok(!frames.some((f) => f.includes(secret)), 'the client received the secret');
    assert.ok(!JSON.stringify(broker.records).includes(secret), 'the audit records hold the secret');
  });
});
