import { strict as assert } from 'node:assert';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { compileRedaction, defaultPatterns, defaultRedaction, defaultSensitiveNames, Redactor } from '../../broker/policy/redact';
import { filesUnder } from '../eval/support/session';
import { CdpClient } from '../support/cdpClient';
import { fixtures, markerLine, startTarget, type TargetProcess } from '../support/target';
import { basePolicy, startTestBroker, type TestBroker } from '../support/testBroker';

const app = join(fixtures, 'exception-app.js');
// Letters beyond hex: a secret cannot turn up by chance in ids or hashes.
const secret = (label: string) =>
  `Xq-${label}-${randomBytes(9)
    .toString('base64')
    .replace(/[^A-Za-z0-9]/g, 'z')}`;

describe('exception and console text', () => {
  const secrets = { loginPassword: secret('login'), apiTokenValue: secret('api'), refreshTokenValue: secret('refresh'), dbPassword: secret('db') };
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
    assert.match(data.description, /^Error: login failed for alice with \[redacted: value of a redacted field\] on \[redacted: value of a redacted field\]\n\s+at login /);
    const details = await client.call('Runtime.getExceptionDetails', { errorObjectId: data.objectId });
    assert.equal(details.exceptionDetails.text, 'Error: login failed for alice with [redacted: value of a redacted field] on [redacted: value of a redacted field]');
    const props = (await client.call('Runtime.getProperties', { objectId: data.objectId, ownProperties: true, generatePreview: true })).result as any[];
    assert.equal(props.find((p) => p.name === 'message').value.value, 'login failed for alice with [redacted: value of a redacted field] on [redacted: value of a redacted field]');
    assert.match(props.find((p) => p.name === 'stack').value.value, /^Error: login failed for alice with \[redacted: value of a redacted field\] on \[redacted: value of a redacted field\]\n/);
    const evaluated = await client.call('Debugger.evaluateOnCallFrame', { callFrameId: paused.params.callFrames[0].callFrameId, expression: '"user " + "alice"', returnByValue: true });
    assert.equal(evaluated.result.value, 'user alice', 'ordinary evaluation still answers');
    await client.call('Debugger.resume');

    // A module binding under a sensitive name, reached from the paused frames, was learned too.
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
    assert.deepEqual(
      filesUnder(broker.stateDir).flatMap((f) => leaked(f.text).map((s) => `${f.path}: ${s}`)),
      [],
      'no file of the audit trail holds a secret',
    );
  });

  it('an ordinary pause learns what the module holds, so later console output is scrubbed of it', async () => {
    const { client, grant } = await broker.attach({ mode: 'pause' });
    const frames: string[] = [];
    client.socket.on('message', (data) => frames.push(data.toString()));
    await client.call('Runtime.enable');
    await client.call('Debugger.enable');
    const { breakpointId } = await client.call('Debugger.setBreakpointByUrl', { lineNumber: markerLine(app, 'login'), urlRegex: 'exception-app\\.js$' });
    await client.waitEvent('Debugger.paused', (m) => m.params.hitBreakpoints?.includes(breakpointId));
    // Before the pause this session knew nothing: V8 replays the console messages it kept (the first test's
    // warnings) at Runtime.enable, unscrubbed of a value never seen. From the pause on, none holds a secret.
    const fromPause = frames.length;
    await client.call('Debugger.removeBreakpoint', { breakpointId });
    // The client reads nothing: the broker reads the module's scope itself, after showing the pause.
    await broker.waitForRecord('broker.response', (e) => e.grant === grant.grantId && e.data.method === 'Runtime.getProperties');
    await client.call('Debugger.resume');
    const since = client.events.length;
    await direct.call('Runtime.evaluate', { expression: 'globalThis.noisy = true' });
    const warned = await client.waitEvent('Runtime.consoleAPICalled', (m) => client.events.indexOf(m) >= since && /calling upstream/.test(m.params.args?.[0]?.value ?? ''));
    await direct.call('Runtime.evaluate', { expression: 'globalThis.noisy = false' });
    assert.match(warned.params.args[0].value, /^calling upstream with \[redacted: value of a redacted field\] \(attempt \d+\)$/);
    await client.close();
    await broker.waitForRecord('session.ended', (e) => e.grant === grant.grantId);
    assert.deepEqual(frames.slice(fromPause).flatMap(leaked), [], 'no frame the client received since the pause holds a secret');
  });

  it('an error the program built from a secret, held in a catch block, is shown by no read and no Loupe expression, right after the pause', async () => {
    const { client, grant } = await broker.attach({ mode: 'pause' });
    const frames: string[] = [];
    client.socket.on('message', (data) => frames.push(data.toString()));
    await client.call('Debugger.enable');
    const { breakpointId } = await client.call('Debugger.setBreakpointByUrl', { lineNumber: markerLine(app, 'caught'), urlRegex: 'exception-app\\.js$' });
    const paused = await client.waitEvent('Debugger.paused', (m) => m.params.hitBreakpoints?.includes(breakpointId));
    await client.call('Debugger.removeBreakpoint', { breakpointId });
    const top = paused.params.callFrames[0];
    // At once, as a debugger's Variables view does: the frame's own scopes, and the error itself.
    const scopes = await Promise.all(
      top.scopeChain
        .filter((scope: any) => ['local', 'block', 'catch'].includes(scope.type))
        .map((scope: any) => client.call('Runtime.getProperties', { objectId: scope.object.objectId, ownProperties: true, generatePreview: true })),
    );
    const err = scopes.flatMap((scope) => scope.result).find((p: any) => p.name === 'err');
    assert.equal(err?.value?.subtype, 'error', 'the catch scope holds the error');
    await client.call('Runtime.getProperties', { objectId: err.value.objectId, ownProperties: true, generatePreview: true });
    // The console and watch: Loupe expressions over the error, and over the text taken out of it.
    for (const expression of ['err', 'err.message', 'err.stack', 'String(err)', '[err.message]', 'err.message.slice(20)', 'err.message.split(" ").reverse().join(" ")', '({ e: err })']) {
      await client.call('Debugger.evaluateOnCallFrame', { callFrameId: top.callFrameId, expression, generatePreview: true });
    }
    await client.call('Debugger.resume');
    await client.close();
    await broker.waitForRecord('session.ended', (e) => e.grant === grant.grantId);
    // The two secrets the message was built from; the module's plainly named copies are no secret by name.
    const quoted = [secrets.loginPassword, secrets.dbPassword];
    assert.deepEqual(
      frames.flatMap((f) => quoted.filter((q) => f.includes(q))),
      [],
      'no frame the client received holds a secret the error quotes',
    );
    assert.ok(
      frames.some((f) => f.includes('[redacted: value of a redacted field]')),
      'the error shows where it was redacted',
    );
  });
});

describe('exception pauses on messages built from secrets the throwing frame does not hold', () => {
  const password = secret('deep');
  const upstreamKey = secret('env');
  let target: TargetProcess;
  let broker: TestBroker;
  before(async () => {
    target = await startTarget(join(fixtures, 'exception-deep-app.js'), { DEEP_APP_PASSWORD: password, UPSTREAM_API_KEY: upstreamKey });
    broker = await startTestBroker(basePolicy(target.inspector));
  });
  after(async () => {
    await broker?.close();
    await target?.stop();
  });

  it("show neither a password passed down six frames nor a key read from the process's environment", async () => {
    const { client, grant } = await broker.attach({ mode: 'pause' });
    const frames: string[] = [];
    client.socket.on('message', (data) => frames.push(data.toString()));
    await client.call('Debugger.enable');
    await client.call('Debugger.setPauseOnExceptions', { state: 'all' });
    const shown: string[] = [];
    for (let i = 0; i < 2; i++) {
      const paused = await client.waitEvent('Debugger.paused', (m: any) => m.params.reason === 'exception' && !shown.includes(String(m.params.data?.description).split(' ')[1]));
      shown.push(String(paused.params.data.description).split(' ')[1]);
      assert.match(paused.params.data.description, /^Error: (login failed for|upstream refused key) \[redacted: /);
      await client.call('Debugger.resume');
    }
    await client.call('Debugger.setPauseOnExceptions', { state: 'none' });
    await client.close();
    await broker.waitForRecord('session.ended', (e) => e.grant === grant.grantId);
    for (const value of [password, upstreamKey]) {
      assert.ok(!frames.some((f) => f.includes(value)), `${value} reached the client`);
      assert.ok(!JSON.stringify(await broker.sessionEvents()).includes(value), `${value} reached the audit trail`);
    }
  });
});

describe('exception messages outside an exception pause', () => {
  const withheld = '[redacted: exception message]';

  it('are withheld in console text, exception events and log entries; names, frames and other text stay', () => {
    const r = new Redactor(defaultRedaction);
    const warning =
      '(node:7) UnhandledPromiseRejectionWarning: Error: refresh failed for Xq-1\n    at refresh (/app.js:23:18)\n(Use `node --trace-warnings ...` to show where the warning was created)';
    const consoleEvent = {
      type: 'warning',
      args: [
        { type: 'string', value: warning },
        { type: 'string', value: 'plain text: Error: not followed by a stack' },
        {
          type: 'object',
          subtype: 'error',
          className: 'TypeError',
          description: 'TypeError [ERR_X]: bad Xq-2\nsecond line\n    at f (/app.js:1:1)',
          preview: {
            type: 'object',
            subtype: 'error',
            description: 'TypeError [ERR_X]: bad Xq-2\n    at f (/app.js:1:1)',
            overflow: false,
            properties: [
              { name: 'stack', type: 'string', value: 'TypeError [ERR_X]: bad Xq-2\n    at f (/app.js:1:1)' },
              { name: 'message', type: 'string', value: 'bad Xq-2' },
              { name: 'code', type: 'string', value: 'ERR_X' },
            ],
          },
        },
      ],
    };
    r.event('Runtime.consoleAPICalled', consoleEvent);
    assert.equal(
      consoleEvent.args[0]!.value,
      `(node:7) UnhandledPromiseRejectionWarning: Error: ${withheld}\n    at refresh (/app.js:23:18)\n(Use \`node --trace-warnings ...\` to show where the warning was created)`,
    );
    assert.equal(consoleEvent.args[1]!.value, 'plain text: Error: not followed by a stack');
    const error = consoleEvent.args[2]! as any;
    assert.equal(error.description, `TypeError [ERR_X]: ${withheld}\n    at f (/app.js:1:1)`);
    assert.deepEqual(
      error.preview.properties.map((p: any) => p.value),
      [`TypeError [ERR_X]: ${withheld}\n    at f (/app.js:1:1)`, withheld, 'ERR_X'],
    );

    const thrown = { exceptionDetails: { text: 'Uncaught', exception: { type: 'object', subtype: 'error', description: 'Error: upstream refused Xq-3\n    at Timeout._onTimeout (/app.js:9:11)' } } };
    r.event('Runtime.exceptionThrown', thrown);
    assert.equal(thrown.exceptionDetails.text, 'Uncaught');
    assert.equal(thrown.exceptionDetails.exception.description, `Error: ${withheld}\n    at Timeout._onTimeout (/app.js:9:11)`);
    const thrownString = { exceptionDetails: { text: 'Uncaught Error: Xq-4', exception: { type: 'string', value: 'Xq-4' } } };
    r.event('Runtime.exceptionThrown', thrownString);
    assert.deepEqual(thrownString.exceptionDetails, { text: `Uncaught Error: ${withheld}`, exception: { type: 'string', value: withheld, description: withheld } });

    const entry = { entry: { source: 'javascript', level: 'error', text: 'Error: Xq-5\n    at g (/app.js:2:2)' } };
    r.event('Log.entryAdded', entry);
    assert.equal(entry.entry.text, `Error: ${withheld}\n    at g (/app.js:2:2)`);
    assert.doesNotMatch(JSON.stringify([consoleEvent, thrown, thrownString, entry]), /Xq-/);

    // A policy that opts out sees messages, scrubbed like any text.
    const open = new Redactor({ ...compileRedaction(defaultSensitiveNames, defaultPatterns), exceptionMessages: false });
    assert.equal(open.exceptionText('Error: login failed password=hunter22\n    at f (/a.js:1:1)', true), 'Error: login failed password=[redacted: password]\n    at f (/a.js:1:1)');
  });

  it('are found in time linear in the text', () => {
    const r = new Redactor(defaultRedaction);
    const n = 256 * 1024;
    for (const text of [
      'aError'.repeat(n / 6),
      ` ${'a'.repeat(90)}`.repeat(n / 91),
      'Error: '.repeat(n / 7),
      ' xError ['.padEnd(n, 'a'),
      'x\n    at f (a:1:2)\n'.repeat(n / 20),
      `(${'W'.repeat(79)}Warnin: `.repeat(n / 88),
    ]) {
      const started = performance.now();
      r.exceptionText(text);
      r.exceptionText(text, true);
      r.hits.length = 0;
      assert.ok(performance.now() - started < 1500, `${text.slice(0, 20)}…: ${Math.round(performance.now() - started)} ms`);
    }
  });
});
