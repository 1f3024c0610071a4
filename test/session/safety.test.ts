import { strict as assert } from 'node:assert';
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { once } from 'node:events';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, beforeEach, describe, it } from 'node:test';
import { stringify } from 'yaml';
import { CdpClient } from '../support/cdpClient';
import { assertHeld, fixtures, markerLine, startTarget, type TargetProcess } from '../support/target';
import { basePolicy, startTestBroker, type TestBroker } from '../support/testBroker';
import { mintDevToken } from '../../broker/identity/devIssuer';
import { parseConfigText } from '../../broker/config/load';
import { brokerUrl } from '../support/brokerProcess';

const appLine = markerLine(join(fixtures, 'app.js'), 'work');

/**
 * A second, direct Debugger-enabled session on the target. While it is connected Node does not resume the
 * target by itself when the broker's session goes away, so these tests see the broker's own cleanup.
 */
async function observe(target: TargetProcess): Promise<CdpClient> {
  const observer = await CdpClient.connect(target.wsUrl);
  await observer.call('Debugger.enable');
  return observer;
}

async function pauseAtWork(client: CdpClient): Promise<{ breakpointId: string; paused: any }> {
  await client.call('Debugger.enable');
  const { breakpointId } = await client.call('Debugger.setBreakpointByUrl', { lineNumber: appLine, urlRegex: 'app\\.js$' });
  const paused = await client.waitEvent('Debugger.paused');
  return { breakpointId, paused };
}

const sessionLog = (broker: TestBroker) => broker.sessionEvents();

async function assertHeldThenFreed(target: TargetProcess): Promise<void> {
  await target.ticksAdvance(2, 5000);
}

describe('session safety: every ending leaves the target running with no breakpoints', () => {
  let target: TargetProcess;
  let broker: TestBroker;
  let observer: CdpClient;
  beforeEach(async () => {
    target = await startTarget();
    broker = await startTestBroker(basePolicy(target.inspector));
    observer = await observe(target);
  });
  afterEach(async () => {
    await observer.close();
    await broker.close();
    await target.stop();
  });

  it('a session killed while the broker works on its pause (a condition on a hot line, a first capture) resumes it', async () => {
    // The observer keeps Debugger enabled, so V8 does not resume when the session goes: the broker must, also for a
    // pause whose learning reads or condition were still running when the client's socket died.
    for (const [round, mode] of (['pause', 'pause', 'pause', 'snapshot', 'snapshot', 'snapshot'] as const).entries()) {
      const { client, grant } = await broker.attach({ mode });
      await client.call('Debugger.enable');
      await client.call('Debugger.setBreakpointByUrl', { lineNumber: appLine, urlRegex: 'app\\.js$', ...(mode === 'pause' ? { condition: 'n % 2 === 0' } : {}) });
      await new Promise((r) => setTimeout(r, 5 + 9 * round));
      client.socket.terminate();
      await broker.waitForRecord('session.ended', (e) => e.grant === grant.grantId);
      await target.ticksAdvance(5, 3000);
    }
  });

  it('grant expiry closes a paused session within a second of exp and resumes the target', async () => {
    const { client, grant } = await broker.attach({ durationSeconds: 2 });
    await pauseAtWork(client);
    await assertHeld(observer, target);
    const closed = await client.closed;
    const lateBy = Date.now() - Date.parse(grant.expiresAt);
    assert.equal(closed.code, 4001);
    assert.match(closed.reason, /grant expired/);
    assert.ok(lateBy < 1000, `closed ${lateBy} ms after exp`);
    await assertHeldThenFreed(target);
    // No breakpoint of the session survives: the target keeps running past the line with the observer attached.
    await target.ticksAdvance(5);
    const log = await sessionLog(broker);
    assert.ok(log.some((r) => r.type === 'broker.request' && r.data.method === 'Debugger.removeBreakpoint'));
    assert.ok(log.some((r) => r.type === 'broker.response' && r.data.method === 'Debugger.resume'));
    assert.equal(log.at(-1).type, 'session.ended');
    assert.equal(log.at(-1).data.endReason, 'expired');
  });

  it('client disconnect while paused resumes the target', async () => {
    const { client } = await broker.attach();
    await pauseAtWork(client);
    client.socket.terminate();
    await assertHeldThenFreed(target);
    await target.ticksAdvance(5);
    await broker.waitForRecord('session.ended', (r) => r.data.endReason === 'client_closed');
    assert.ok(
      (await sessionLog(broker)).some((r) => r.type === 'session.ended' && r.data.endReason === 'client_closed'),
      'the end is in the stored session',
    );
  });

  it('revoking a live grant ends its session at once and resumes the target', async () => {
    const { client, grant } = await broker.attach();
    await pauseAtWork(client);
    const res = await broker.api('DELETE', `/v1/grants/${grant.grantId}`, await broker.token('dev', ['devs']));
    assert.equal(res.status, 200);
    const closed = await client.closed;
    assert.equal(closed.code, 4002);
    await assertHeldThenFreed(target);
  });

  it('the target going away ends the session with a clear close reason', async () => {
    const { client } = await broker.attach();
    await client.call('Runtime.enable');
    await target.stop();
    const closed = await client.closed;
    assert.equal(closed.code, 4004);
    assert.match(closed.reason, /target process went away/);
  });

  it('the pause watchdog resumes a target held longer than maxPauseSeconds', async () => {
    await broker.close();
    broker = await startTestBroker(basePolicy(target.inspector, { targets: { app: { ...basePolicy('').targets.app, inspector: target.inspector, maxPauseSeconds: 1 } } }));
    const { client, breakpointId, started } = await (async () => {
      const a = await broker.attach();
      const p = await pauseAtWork(a.client);
      // Timed from the pause seen, as the watchdog times it (not from the removal's answer, on a slow machine 200 ms on).
      return { client: a.client, breakpointId: p.breakpointId, started: Date.now() };
    })();
    await client.call('Debugger.removeBreakpoint', { breakpointId });
    await client.waitEvent('Debugger.resumed', () => true, 5000);
    const held = Date.now() - started;
    assert.ok(held >= 800 && held < 3000, `resumed after ${held} ms`);
    await target.ticksAdvance(3);
    await client.close();
    const resumed = await broker.waitForRecord('watchdog.resumed');
    await broker.waitForRecord('session.ended', (e) => e.stream === resumed.stream);
    assert.ok(
      (await sessionLog(broker)).some((r) => r.type === 'watchdog.resumed'),
      'the watchdog resume is in the stored session',
    );
  });
});

/** The broker as operators run it (node dist/cli.js broker), on `target`, with a grant request ready to send. */
async function brokerProcess(target: TargetProcess, prefix: string) {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  const configFile = join(dir, 'loupe.yaml');
  writeFileSync(configFile, stringify({ ...basePolicy(target.inspector), stateDir: join(dir, 'state') }));
  const proc = spawn(process.execPath, [join(__dirname, '..', '..', 'dist', 'cli.js'), 'broker', '--config', configFile], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  proc.stderr!.on('data', (c) => (stderr += c));
  const url = await brokerUrl(proc, () => stderr);
  const token = await mintDevToken(parseConfigText(readFileSync(configFile, 'utf8'), dir), { user: 'dev', groups: ['devs'] });
  const grant = async (reason: string): Promise<any> => {
    const res = await fetch(`${url}/v1/grants`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ target: 'app', mode: 'pause', durationSeconds: 300, reason }),
      signal: AbortSignal.timeout(10_000),
    });
    assert.equal(res.status, 201);
    return res.json();
  };
  return { dir, proc, grant, stderr: () => stderr };
}

describe('SIGTERM to the broker process', () => {
  let target: TargetProcess;
  after(async () => target?.stop());

  it('ends the paused session, resumes the target and exits 0', async () => {
    target = await startTarget();
    const observer = await observe(target);
    const { proc, grant: requestGrant, stderr } = await brokerProcess(target, 'loupe-sigterm-');
    const grant = await requestGrant('sigterm test');
    const client = await CdpClient.connect(grant.attachUrl, { authorization: `Bearer ${grant.token}` });
    await pauseAtWork(client);
    await assertHeld(observer, target);
    proc.kill('SIGTERM');
    const [code] = await once(proc, 'exit');
    assert.equal(code, 0, stderr());
    assert.equal((await client.closed).code, 4003);
    await target.ticksAdvance(3);
    await observer.close();
  });

  it('with the reader of its output gone (a log collector that died): keeps serving, records no fault per lost line, stops at once', { timeout: 60_000 }, async (t) => {
    target ??= await startTarget();
    const { dir, proc, grant: requestGrant } = await brokerProcess(target, 'loupe-lost-output-');
    t.after(() => void proc.kill('SIGKILL'));
    // Both pipes lose their reader: every line the broker writes from now on fails (EPIPE).
    proc.stdout!.destroy();
    proc.stderr!.destroy();
    // A session's worth of log lines: the broker still grants, attaches, relays and ends it.
    for (let i = 0; i < 3; i++) {
      const grant = await requestGrant('lost output test');
      const client = await CdpClient.connect(grant.attachUrl, { authorization: `Bearer ${grant.token}` });
      await client.call('Runtime.evaluate', { expression: '1 + 1' });
      await client.close();
    }
    await new Promise((r) => setTimeout(r, 500));
    const started = Date.now();
    proc.kill('SIGTERM');
    const [code] = await once(proc, 'exit');
    assert.equal(code, 0);
    assert.ok(Date.now() - started < 10_000, `stopped in ${Date.now() - started} ms`);
    // Nothing recorded a fault for the lines it could not write.
    const written = readdirSync(join(dir, 'state'), { recursive: true, withFileTypes: true })
      .filter((e) => e.isFile())
      .map((e) => readFileSync(join(e.parentPath ?? (e as any).path, e.name), 'latin1'))
      .join('\n');
    assert.ok(written.includes('session.ended'), 'the sessions were recorded');
    assert.equal((written.match(/broker\.fault/g) ?? []).length, 0, 'no fault recorded');
  });
});
