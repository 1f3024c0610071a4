import { strict as assert } from 'node:assert';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { filesUnder } from '../eval/support/session';
import { CdpClient } from '../support/cdpClient';
import { fixtures, startTarget, type TargetProcess } from '../support/target';
import { basePolicy, startTestBroker, type TestBroker } from '../support/testBroker';

const app = join(fixtures, 'exception-app.js');
// Letters beyond hex: a secret cannot turn up by chance in ids or hashes.
const secret = (label: string) => `Xq-${label}-${randomBytes(9).toString('base64').replace(/[^A-Za-z0-9]/g, 'z')}`;

describe('exception and console text', () => {
  const secrets = { loginPassword: secret('login'), apiTokenValue: secret('api'), refreshTokenValue: secret('refresh') };
  const all = Object.values(secrets);
  const leaked = (text: string) => all.filter((s) => text.includes(s));
  let target: TargetProcess;
  let broker: TestBroker;
  let direct: CdpClient;
  before(async () => {
    target = await startTarget(app, { EXCEPTION_APP_SECRETS: JSON.stringify(all), NODE_OPTIONS: '--unhandled-rejections=warn', TICK_MS: '50' });
    broker = await startTestBroker(basePolicy(target.inspector));
    direct = await CdpClient.connect(target.wsUrl);
  });
  after(async () => {
    await direct?.close();
    await broker?.close();
    await target?.stop();
  });

  it('an exception pause learns what its frames hold, and every later text of the session is scrubbed of it', async () => {
    const { client, grant } = await broker.attach({ mode: 'pause' });
    const frames: string[] = [];
    client.socket.on('message', (data) => frames.push(data.toString()));
    await client.call('Runtime.enable');
    await client.call('Debugger.enable');
    await client.call('Debugger.setPauseOnExceptions', { state: 'caught' });
    const paused = await client.waitEvent('Debugger.paused', (m) => m.params.reason === 'exception');
    await client.call('Debugger.setPauseOnExceptions', { state: 'none' });

    // The pause's data: the error, its message built from the local `password`.
    const data = paused.params.data;
    assert.equal(data.subtype, 'error');
    assert.match(data.description, /^Error: login failed for alice with \[redacted: value of a redacted field\]\n\s+at login /);
    const details = await client.call('Runtime.getExceptionDetails', { errorObjectId: data.objectId });
    assert.equal(details.exceptionDetails.text, 'Error: login failed for alice with [redacted: value of a redacted field]');
    const props = (await client.call('Runtime.getProperties', { objectId: data.objectId, ownProperties: true, generatePreview: true })).result as any[];
    assert.equal(props.find((p) => p.name === 'message').value.value, 'login failed for alice with [redacted: value of a redacted field]');
    assert.match(props.find((p) => p.name === 'stack').value.value, /^Error: login failed for alice with \[redacted: value of a redacted field\]\n/);
    // A module binding under a sensitive name, reached from the paused frames, is learned too.
    const evaluated = await client.call('Debugger.evaluateOnCallFrame', { callFrameId: paused.params.callFrames[0].callFrameId, expression: '"user " + "alice"', returnByValue: true });
    assert.equal(evaluated.result.value, 'user alice', 'ordinary evaluation still answers');
    await client.call('Debugger.resume');

    // Console output from now on: the module's apiToken in a warning, and Node's warning for an unhandled rejection.
    const since = client.events.length;
    await direct.call('Runtime.evaluate', { expression: 'globalThis.noisy = true' });
    const warned = await client.waitEvent('Runtime.consoleAPICalled', (m) => client.events.indexOf(m) >= since && /calling upstream/.test(m.params.args?.[0]?.value ?? ''));
    assert.match(warned.params.args[0].value, /^calling upstream with \[redacted: value of a redacted field\] \(attempt \d+\)$/);
    const rejected = await client.waitEvent('Runtime.consoleAPICalled', (m) => client.events.indexOf(m) >= since && /UnhandledPromiseRejectionWarning/.test(m.params.args?.[0]?.value ?? ''));
    const text: string = rejected.params.args[0].value;
    // The message of an exception the broker could not check against its frame is withheld; where it was thrown is not.
    assert.match(text, /UnhandledPromiseRejectionWarning: Error: \[redacted: exception message\]\n\s+at refresh \(/);
    await direct.call('Runtime.evaluate', { expression: 'globalThis.noisy = false' });

    await client.close();
    await broker.waitForRecord('session.ended', (e) => e.grant === grant.grantId);
    await broker.broker.audit.settle();
    assert.deepEqual(frames.flatMap(leaked), [], 'no frame the client received holds a secret');
    assert.deepEqual(filesUnder(broker.stateDir).flatMap((f) => leaked(f.text).map((s) => `${f.path}: ${s}`)), [], 'no file of the audit trail holds a secret');
  });
});
