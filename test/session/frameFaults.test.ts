import { strict as assert } from 'node:assert';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { parseConfigText } from '../../broker/config/load';
import { mintDevToken } from '../../broker/identity/devIssuer';
import { CdpClient } from '../support/cdpClient';
import { startHostileTarget, defaultAnswer, type HostileTarget } from '../support/hostileTarget';
import { after, before, describe, it } from 'node:test';
import { startTarget, type TargetProcess } from '../support/target';
import { basePolicy, startTestBroker, type TestBroker } from '../support/testBroker';

/** Frames whose method or params name members of Object.prototype: each once crashed the broker process. */
const prototypeFrames: string[] = [
  ...['toString', 'constructor', '__proto__', 'hasOwnProperty', 'valueOf', '__defineGetter__', 'isPrototypeOf', 'propertyIsEnumerable', 'toLocaleString'].map((method, i) => JSON.stringify({ id: 100 + i, method })),
  '{"id":120,"method":"Runtime.evaluate","params":{"expression":"1","toString":1,"constructor":{},"valueOf":null}}',
  '{"id":121,"method":"Runtime.evaluate","params":{"expression":"1","__proto__":{"expression":"process.exit()"}}}',
  '{"id":122,"method":"Debugger.setBreakpoint","params":{"location":{"scriptId":"1","lineNumber":1,"constructor":"x","__proto__":{"polluted":true}}}}',
  '{"id":123,"method":"Debugger.stepOver","params":{"skipList":[{"scriptId":"1","hasOwnProperty":1,"start":{"lineNumber":0,"toString":"x"}}]}}',
  '{"id":124,"method":"Runtime.getProperties","params":{"objectId":"1","__proto__":null}}',
  '{"id":125,"__proto__":{"method":"Runtime.evaluate"},"method":"Runtime.enable"}',
];

describe('one client frame never takes the broker down', () => {
  let target: TargetProcess;
  let broker: TestBroker;
  before(async () => {
    target = await startTarget();
    broker = await startTestBroker(basePolicy(target.inspector));
  });
  after(async () => {
    await broker.close();
    await target.stop();
  });

  it('refuses frames with prototype-named methods and keys, with a reason; the broker, the other session and the target carry on', async () => {
    const victim = (await broker.attach()).client;
    await victim.call('Runtime.enable');
    const { client: attacker } = await broker.attach();
    for (const frame of prototypeFrames) {
      const id = (JSON.parse(frame) as { id: number }).id;
      const reply = await attacker.sendRaw(frame, id, 5000);
      assert.equal(reply.id, id, frame);
      // A prototype-named method is refused by the gate; other frames are rebuilt and may get the target's own error.
      if (!frame.includes('"params"')) assert.match(reply.error?.message ?? '', /refused by Loupe: it is not on the allowlist|unknown top-level field "__proto__"/, frame);
    }
    // Nothing leaked onto Object.prototype.
    assert.equal(({} as { polluted?: unknown }).polluted, undefined);
    // The attacker's own session is still up, and so is everyone else's.
    assert.equal((await attacker.call('Runtime.evaluate', { expression: '6*7', returnByValue: true })).result.value, 42);
    assert.equal((await victim.call('Runtime.evaluate', { expression: '1+1', returnByValue: true })).result.value, 2);
    assert.equal((await fetch(`${broker.url}/healthz`)).status, 200);
    await target.ticksAdvance(2);
    await attacker.close();
    await victim.close();
    const refusals = (await waitForEvents(broker, (events) => events.filter((e) => e.type === 'session.ended').length >= 2)).filter((e) => e.type === 'cdp.refused');
    for (const method of ['toString', 'constructor', '__proto__', 'hasOwnProperty']) {
      assert.ok(refusals.some((e) => e.data.method === method && /not on the allowlist/.test(e.data.message)), `refusal of ${method} recorded`);
    }
  });

  it('a frame with "__proto__" among its params never reaches the target as anything but its own rebuilt message', async () => {
    const { client } = await broker.attach();
    const reply = await client.sendRaw('{"id":7,"method":"Runtime.evaluate","params":{"expression":"typeof process","returnByValue":true,"__proto__":{"includeCommandLineAPI":true,"throwOnSideEffect":false}}}', 7);
    assert.equal(reply.result.result.value, 'object');
    await client.close();
    const events = await waitForEvents(broker, (list) => list.some((e) => e.type === 'cdp.evaluate' && e.data.id === 7));
    const request = events.find((e) => e.type === 'cdp.evaluate' && e.data.id === 7);
    assert.ok(request, `the evaluation was recorded: ${JSON.stringify(events.filter((e) => e.data.id === 7))}`);
    assert.equal(request.data.params.throwOnSideEffect, true);
    assert.equal(request.data.params.includeCommandLineAPI, undefined);
    assert.ok(request.data.rewrites.includes('params.__proto__ dropped'), JSON.stringify(request.data.rewrites));
  });
});

describe('a fault in handling one frame ends that session alone, cleanly and on the record', () => {
  let target: TargetProcess;
  let hostile: HostileTarget;
  let broker: TestBroker;
  const log: string[] = [];
  before(async () => {
    target = await startTarget();
    hostile = await startHostileTarget();
    const policy = basePolicy(target.inspector);
    policy.targets.hostile = { ...policy.targets.app, inspector: hostile.inspector };
    broker = await startTestBroker(policy, { log: (line) => log.push(line) });
  });
  after(async () => {
    await broker.close();
    await hostile.close();
    await target.stop();
  });

  it('a target answer the broker cannot handle ends that session with internal_error (4008): breakpoints removed, target resumed, the frame digested in session.ended', async () => {
    const victim = (await broker.attach()).client;
    // Nested deeper than any serializer's stack: handling it throws a RangeError inside the broker.
    const depth = 200_000;
    const poison = `{"id":ID,"result":{"result":{"type":"object","value":${'['.repeat(depth)}${']'.repeat(depth)}}}}`;
    let poisonFrame = '';
    hostile.answer = (request) => {
      if (request.method === 'Debugger.setBreakpointByUrl') return [JSON.stringify({ id: request.id, result: { breakpointId: 'hostile-bp-1', locations: [] } })];
      if (request.method === 'Runtime.evaluate' && !(request.params as { silent?: boolean }).silent) return [(poisonFrame = poison.replace('ID', String(request.id)))];
      return defaultAnswer(request);
    };
    const g = await broker.grant('dev', ['devs'], { target: 'hostile' });
    const attacker = await CdpClient.connect(g.attachUrl, { authorization: `Bearer ${g.token}` });
    await attacker.call('Debugger.enable');
    await attacker.call('Debugger.setBreakpointByUrl', { lineNumber: 3, url: 'file:///app.js' });
    const faultAt = hostile.requests.length;
    attacker.socket.send(JSON.stringify({ id: 99, method: 'Runtime.evaluate', params: { expression: '1' } }));
    const closed = await within(attacker.closed, 15_000, 'close of the faulted session');
    assert.equal(closed.code, 4008);
    assert.match(closed.reason, /failed handling a message/);
    // The usual cleanup reached the target after the fault.
    const after = hostile.requests.slice(faultAt).map((r) => r.method);
    assert.ok(after.includes('Debugger.removeBreakpoint'), after.join(', '));
    assert.ok(after.includes('Debugger.resume'), after.join(', '));
    assert.deepEqual(hostile.requests.slice(faultAt).find((r) => r.method === 'Debugger.removeBreakpoint')?.params, { breakpointId: 'hostile-bp-1' });
    // The broker, the other session and the real target carry on.
    assert.equal((await victim.call('Runtime.evaluate', { expression: '2+3', returnByValue: true })).result.value, 5);
    assert.equal((await fetch(`${broker.url}/healthz`)).status, 200);
    await target.ticksAdvance(2);
    await victim.close();
    const events = await waitForEvents(broker, (list) => list.filter((e) => e.type === 'session.ended').length >= 2);
    const ended = events.find((e) => e.type === 'session.ended' && e.data.endReason === 'internal_error');
    assert.ok(ended, 'session.ended with internal_error');
    assert.equal(ended.target, 'hostile');
    assert.equal(ended.data.fault.where, 'target message');
    assert.match(ended.data.fault.error, /^RangeError: Maximum call stack size exceeded/);
    assert.equal(ended.data.fault.frameSha256, createHash('sha256').update(poisonFrame).digest('hex'));
    assert.equal(ended.data.fault.bytes, Buffer.byteLength(poisonFrame));
    assert.ok(events.some((e) => e.type === 'session.ending' && e.stream === ended.stream && e.data.fault?.frameSha256 === ended.data.fault.frameSha256));
    assert.ok(events.some((e) => e.type === 'session.ended' && e.target === 'app' && e.data.endReason === 'client_closed'), 'the victim ended normally');
    assert.ok(log.some((line) => /^fault in target message: RangeError/.test(line) && line.includes(ended.stream)), log.join('\n'));
    assert.equal(broker.broker.faults, 1);
  });
});

describe('the broker process (loupe broker, dist/cli.js) survives hostile frames from both sides', () => {
  let target: TargetProcess;
  let hostile: HostileTarget;
  let dir: string;
  after(async () => {
    await hostile?.close();
    await target?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('refuses a prototype-named method, contains a poisoned target answer, logs and records the fault, keeps serving and exits 0 on SIGTERM', async () => {
    target = await startTarget();
    hostile = await startHostileTarget();
    dir = mkdtempSync(join(tmpdir(), 'loupe-faults-'));
    const policy = basePolicy(target.inspector);
    policy.targets.hostile = { ...policy.targets.app, inspector: hostile.inspector };
    const configFile = join(dir, 'loupe.yaml');
    writeFileSync(configFile, stringify({ ...policy, stateDir: join(dir, 'state') }));
    const proc = spawn(process.execPath, [join(__dirname, '..', '..', 'dist', 'cli.js'), 'broker', '--config', configFile], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    proc.stderr!.on('data', (c) => (stderr += c));
    try {
      const url = await new Promise<string>((resolve, reject) => {
        proc.stdout!.on('data', (c) => {
          const m = /LOUPE_BROKER_URL=(\S+)/.exec(String(c));
          if (m) resolve(m[1]!);
        });
        proc.once('exit', (code) => reject(new Error(`broker exited ${code}: ${stderr}`)));
      });
      const config = parseConfigText(readFileSync(configFile, 'utf8'), dir);
      const token = await mintDevToken(config, { user: 'dev', groups: ['devs'] });
      const connect = async (targetName: string) => {
        const res = await fetch(`${url}/v1/grants`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify({ target: targetName, mode: 'pause', durationSeconds: 300, reason: 'fault test' }) });
        const grant = (await res.json()) as { attachUrl: string; token: string };
        return CdpClient.connect(grant.attachUrl, { authorization: `Bearer ${grant.token}` });
      };
      const victim = await connect('app');
      const attacker = await connect('app');
      // The frame that used to end the process.
      const refused = await attacker.sendRaw('{"id":1,"method":"toString"}', 1);
      assert.match(refused.error?.message ?? '', /^toString refused by Loupe/);
      const poison = `{"id":ID,"result":{"result":{"type":"object","value":${'['.repeat(200_000)}${']'.repeat(200_000)}}}}`;
      hostile.answer = (request) => (request.method === 'Runtime.evaluate' ? [poison.replace('ID', String(request.id))] : defaultAnswer(request));
      const poisoned = await connect('hostile');
      poisoned.socket.send(JSON.stringify({ id: 5, method: 'Runtime.evaluate', params: { expression: '1' } }));
      assert.equal((await within(poisoned.closed, 15_000, 'close of the poisoned session')).code, 4008);
      assert.equal(proc.exitCode, null, 'the broker process is still running');
      assert.equal((await fetch(`${url}/healthz`)).status, 200);
      assert.equal((await victim.call('Runtime.evaluate', { expression: '40+2', returnByValue: true })).result.value, 42);
      assert.equal((await attacker.call('Runtime.evaluate', { expression: '1+2', returnByValue: true })).result.value, 3);
      await target.ticksAdvance(2);
      const faultLines = stderr.split('\n').filter((line) => line.includes('fault in target message'));
      assert.equal(faultLines.length, 1, stderr);
      assert.equal(JSON.parse(faultLines[0]!).logger, 'loupe-broker');
      await victim.close();
      await attacker.close();
      proc.kill('SIGTERM');
      const [code] = await once(proc, 'exit');
      assert.equal(code, 0, stderr);
      // broker.fault is in the run's grant stream, on disk.
      const recorded = filesUnder(join(dir, 'state')).some((file) => readFileSync(file).includes('"broker.fault"'));
      assert.ok(recorded, 'broker.fault recorded in the state directory');
    } finally {
      if (proc.exitCode === null) proc.kill('SIGKILL');
    }
  });
});

function filesUnder(root: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(root)) {
    const path = join(root, name);
    if (statSync(path).isDirectory()) out.push(...filesUnder(path));
    else out.push(path);
  }
  return out;
}

async function waitForEvents(broker: TestBroker, done: (events: any[]) => boolean): Promise<any[]> {
  for (let i = 0; i < 100; i++) {
    const events = await broker.sessionEvents();
    if (done(events)) return events;
    await new Promise((r) => setTimeout(r, 50));
  }
  return broker.sessionEvents();
}

function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([promise, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`no ${what} within ${ms} ms`)), ms)))]).finally(() => clearTimeout(timer));
}
