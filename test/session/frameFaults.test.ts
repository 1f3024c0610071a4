import { strict as assert } from 'node:assert';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { parseConfigText } from '../../broker/config/load';
import { mintDevToken } from '../../broker/identity/devIssuer';
import { CdpClient } from '../support/cdpClient';
import { startHostileTarget, defaultAnswer, type HostileTarget } from '../support/hostileTarget';
import { after, before, describe, it } from 'node:test';
import { assertHeld, fixtures, markerLine, startTarget, type TargetProcess } from '../support/target';
import { basePolicy, startTestBroker, type TestBroker } from '../support/testBroker';
import { brokerUrl } from '../support/brokerProcess';
import { waitFor, withTimeout } from '../support/wait';

/**
 * A policy whose rule lets the developer ask for V8 evaluation (a grant's privilege, grant.evaluation 'v8'): the
 * tests about V8's own evaluation (its side-effect check, its timeout, the target's answers to it) run under it.
 */
function v8Policy(inspector: string, overrides: Record<string, unknown> = {}) {
  const base = basePolicy(inspector, overrides);
  return { ...base, targets: { ...base.targets, app: { ...base.targets.app, access: [{ role: 'dev', modes: ['pause', 'snapshot'], evaluation: ['loupe', 'v8'], maxDuration: '10m' }] } } };
}
const v8Grant = { evaluation: 'v8' } as never;

const appLine = markerLine(join(fixtures, 'app.js'), 'work');

/** Frames whose method or params name members of Object.prototype: each once crashed the broker process. */
const prototypeFrames: string[] = [
  ...['toString', 'constructor', '__proto__', 'hasOwnProperty', 'valueOf', '__defineGetter__', 'isPrototypeOf', 'propertyIsEnumerable', 'toLocaleString'].map((method, i) =>
    JSON.stringify({ id: 100 + i, method }),
  ),
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
      assert.ok(
        refusals.some((e) => e.data.method === method && /not on the allowlist/.test(e.data.message)),
        `refusal of ${method} recorded`,
      );
    }
  });

  it('an evaluation too deep to walk is refused with the reason; its session carries on and nothing faults', async () => {
    const { client } = await broker.attach();
    const faultsBefore = broker.broker.faults;
    for (const expression of [
      `1${'+1'.repeat(1000)}`,
      `a${'.b'.repeat(1000)}`,
      `${'!'.repeat(1000)}a`,
      `${'- '.repeat(1000)}1`,
      `${'('.repeat(300)}1${')'.repeat(300)}`,
      `1${'+1'.repeat(5000)}`,
      `a${'.b'.repeat(5000)}`,
      `${'!'.repeat(8000)}a`,
    ]) {
      const reply = await client.send('Runtime.evaluate', { expression });
      // Refused by the depth check, or by the parser itself when it runs out of stack first.
      assert.match(
        reply.result?.exceptionDetails?.exception?.description ?? '',
        /^EvalError: Refused by Loupe: the expression: (the expression nests deeper than 200 levels|not valid JavaScript \(Not enough stack space)/,
        `${expression.slice(0, 20)}: ${JSON.stringify(reply).slice(0, 200)}`,
      );
    }
    assert.equal((await client.call('Runtime.evaluate', { expression: `1${'+1'.repeat(150)}`, returnByValue: true })).result.value, 151);
    assert.equal(broker.broker.faults, faultsBefore);
    await client.close();
  });

  it('a frame with "__proto__" among its params never reaches the target as anything but its own rebuilt message', async () => {
    const { client } = await broker.attach();
    const reply = await client.sendRaw(
      '{"id":7,"method":"Runtime.evaluate","params":{"expression":"typeof process","returnByValue":true,"__proto__":{"includeCommandLineAPI":true,"throwOnSideEffect":false}}}',
      7,
    );
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
  let broker: TestBroker;
  let observer: CdpClient;
  const log: string[] = [];
  before(async () => {
    target = await startTarget();
    broker = await startTestBroker(basePolicy(target.inspector), { log: (line) => log.push(line) });
    // A direct Debugger-enabled session: while it is connected Node does not resume the target by itself, so
    // the test sees the broker's own cleanup.
    observer = await CdpClient.connect(target.wsUrl);
    await observer.call('Debugger.enable');
  });
  after(async () => {
    await observer.close();
    await broker.close();
    await target.stop();
  });

  /** A session paused at a breakpoint in the real target, and the broker's object for it. */
  async function pausedSession() {
    const { client, grant } = await broker.attach();
    await client.call('Debugger.enable');
    await client.call('Debugger.setBreakpointByUrl', { lineNumber: appLine, urlRegex: 'app\\.js$' });
    await client.waitEvent('Debugger.paused');
    await assertHeld(observer, target);
    const session = broker.broker.liveSessions.find((s) => s.grant.grantId === grant.grantId)!;
    return { client, session };
  }

  // The faults are injected into a collaborator of the session (its redactor) to stand for any bug not yet found:
  // what is under test is the containment and the cleanup, which run for real against a real target.
  it('a client frame whose handling throws ends that session with internal_error (4008): target resumed, breakpoint removed, the frame digested in session.ended, logged and recorded', async () => {
    const recorded: any[] = [];
    broker.broker.audit.on('event', (event) => recorded.push(event));
    const victim = (await broker.attach()).client;
    const { client, session } = await pausedSession();
    session.redactor.isSensitive = () => {
      throw new TypeError('injected fault: the redactor broke');
    };
    const frame = '{"id":41,"method":"Runtime.evaluate","params":{"expression":"local.n"}}';
    client.socket.send(frame);
    const closed = await withTimeout(client.closed, 15_000, 'close of the faulted session');
    assert.equal(closed.code, 4008);
    assert.match(closed.reason, /failed handling a message/);
    await target.ticksAdvance(2);
    assert.equal((await victim.call('Runtime.evaluate', { expression: '2+3', returnByValue: true })).result.value, 5);
    assert.equal((await fetch(`${broker.url}/healthz`)).status, 200);
    await victim.close();
    const events = await waitForEvents(broker, (list) => list.filter((e) => e.type === 'session.ended').length >= 2);
    const ended = events.find((e) => e.type === 'session.ended' && e.stream === session.sessionId);
    assert.deepEqual(ended.data, {
      endReason: 'internal_error',
      fault: { where: 'client frame', error: 'TypeError: injected fault: the redactor broke', frameSha256: createHash('sha256').update(frame).digest('hex'), bytes: frame.length },
    });
    const ending = events.find((e) => e.type === 'session.ending' && e.stream === session.sessionId);
    assert.deepEqual(ending.data.fault, ended.data.fault);
    assert.ok(ending.data.paused, 'it was paused when it ended');
    const mine = events.filter((e) => e.stream === session.sessionId && e.seq > ending.seq);
    assert.ok(
      mine.some((e) => e.type === 'broker.request' && e.data.method === 'Debugger.removeBreakpoint'),
      'breakpoint removed',
    );
    assert.ok(
      mine.some((e) => e.type === 'broker.request' && e.data.method === 'Debugger.resume'),
      'target resumed',
    );
    assert.ok(
      log.some((line) => line.startsWith('fault in client frame: TypeError: injected fault') && line.includes(session.sessionId)),
      log.join('\n'),
    );
    await broker.broker.security.flush();
    assert.ok(
      recorded.some((e) => e.type === 'broker.fault' && e.kind === 'security' && e.data.session === session.sessionId && e.data.where === 'client frame'),
      'broker.fault is durable in the security stream',
    );
    assert.ok(
      recorded.some((e) => e.type === 'session.fault' && e.kind === 'security' && e.data.session === session.sessionId),
      'session.fault names the session in the security stream',
    );
  });

  it('a target message whose handling throws ends that session with internal_error: the cleanup still removes the breakpoint and resumes the target', async () => {
    const before = broker.broker.faults;
    const { client, session } = await pausedSession();
    // Every answer of the target now throws in the session, also the answers to its own cleanup commands.
    session.redactor.response = () => {
      throw new RangeError('injected fault: redaction failed');
    };
    client.socket.send('{"id":42,"method":"Runtime.getHeapUsage"}');
    const closed = await withTimeout(client.closed, 15_000, 'close of the faulted session');
    assert.equal(closed.code, 4008);
    await target.ticksAdvance(2);
    const events = await waitForEvents(broker, (list) => list.some((e) => e.type === 'session.ended' && e.stream === session.sessionId));
    const ended = events.find((e) => e.type === 'session.ended' && e.stream === session.sessionId);
    assert.equal(ended.data.endReason, 'internal_error');
    assert.equal(ended.data.fault.where, 'target message');
    assert.equal(ended.data.fault.error, 'RangeError: injected fault: redaction failed');
    assert.match(ended.data.fault.frameSha256, /^[0-9a-f]{64}$/);
    assert.ok(ended.data.fault.bytes > 0);
    assert.equal(broker.broker.faults, before + 1, 'one fault per session: later ones during its cleanup are not reported again');
  });
});

describe('a hostile target answer that nests deeper than V8 ever does is refused, not handled', () => {
  let hostile: HostileTarget;
  let broker: TestBroker;
  before(async () => {
    hostile = await startHostileTarget();
    // The hostile answers are to Runtime.evaluate, which V8 answers only under a V8 evaluation grant.
    broker = await startTestBroker(v8Policy(hostile.inspector));
  });
  after(async () => {
    await broker.close();
    await hostile.close();
  });

  it('a discovery answer whose webSocketDebuggerUrl is not a URL refuses the attach as unreachable (502), with the reason', async () => {
    const listed = hostile.discovery;
    hostile.discovery = () => '[{"webSocketDebuggerUrl":"not a url"}]';
    try {
      const grant = await broker.grant('dev', ['devs']);
      await assert.rejects(
        CdpClient.connect(grant.attachUrl, { authorization: `Bearer ${grant.token}` }),
        (err: { status?: number; body?: string }) => err.status === 502 && /lists an invalid webSocketDebuggerUrl/.test(err.body ?? ''),
      );
    } finally {
      hostile.discovery = listed;
    }
  });

  it('the request gets an error that says why, the session carries on, the frame is on the record', async () => {
    const depth = 200_000;
    hostile.answer = (request) =>
      request.method === 'Runtime.evaluate' && !(request.params as { silent?: boolean }).silent
        ? [`{"id":${request.id},"result":{"result":{"type":"object","value":${'['.repeat(depth)}${']'.repeat(depth)}}}}`]
        : defaultAnswer(request);
    const { client } = await broker.attach(v8Grant);
    const reply = await client.send('Runtime.evaluate', { expression: '1' });
    assert.match(reply.error?.message ?? '', /^Runtime\.evaluate: the target answered with a malformed message \(nested deeper than 1100 levels\)/);
    assert.deepEqual(await client.call('Runtime.getHeapUsage'), {});
    await client.close();
    const events = await waitForEvents(broker, (list) => list.some((e) => e.type === 'session.ended'));
    assert.ok(events.some((e) => e.type === 'target.invalid_frame' && e.data.problem === 'nested deeper than 1100 levels' && e.data.bytes > 2 * depth));
    assert.equal(events.find((e) => e.type === 'session.ended').data.endReason, 'client_closed');
    assert.equal(broker.broker.faults, 0);
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

  it('refuses a prototype-named method and a poisoned target answer, keeps serving every session and exits 0 on SIGTERM', async () => {
    target = await startTarget();
    hostile = await startHostileTarget();
    dir = mkdtempSync(join(tmpdir(), 'loupe-faults-'));
    const policy = basePolicy(target.inspector);
    // The poisoned answer is to Runtime.evaluate, which V8 answers only under a V8 evaluation grant.
    policy.targets.hostile = { ...policy.targets.app, inspector: hostile.inspector, access: [{ role: 'dev', modes: ['pause'], evaluation: ['loupe', 'v8'], maxDuration: '10m' }] };
    const configFile = join(dir, 'loupe.yaml');
    writeFileSync(configFile, stringify({ ...policy, stateDir: join(dir, 'state') }));
    const proc = spawn(process.execPath, [join(__dirname, '..', '..', 'dist', 'cli.js'), 'broker', '--config', configFile], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    proc.stderr!.on('data', (c) => (stderr += c));
    try {
      const url = await brokerUrl(proc, () => stderr);
      const config = parseConfigText(readFileSync(configFile, 'utf8'), dir);
      const token = await mintDevToken(config, { user: 'dev', groups: ['devs'] });
      const connect = async (targetName: string) => {
        const evaluation = targetName === 'hostile' ? { evaluation: 'v8' } : {};
        const res = await fetch(`${url}/v1/grants`, {
          method: 'POST',
          headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
          body: JSON.stringify({ target: targetName, mode: 'pause', durationSeconds: 300, reason: 'fault test', ...evaluation }),
        });
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
      assert.match((await poisoned.send('Runtime.evaluate', { expression: '1' })).error?.message ?? '', /nested deeper than 1100 levels/);
      assert.equal(proc.exitCode, null, 'the broker process is still running');
      assert.equal((await fetch(`${url}/healthz`)).status, 200);
      assert.deepEqual(await poisoned.call('Runtime.getHeapUsage'), {});
      assert.equal((await victim.call('Runtime.evaluate', { expression: '40+2', returnByValue: true })).result.value, 42);
      assert.equal((await attacker.call('Runtime.evaluate', { expression: '1+2', returnByValue: true })).result.value, 3);
      await target.ticksAdvance(2);
      assert.doesNotMatch(stderr, /fault in/);
      await Promise.all([victim.close(), attacker.close(), poisoned.close()]);
      proc.kill('SIGTERM');
      const [code] = await once(proc, 'exit');
      assert.equal(code, 0, stderr);
    } finally {
      if (proc.exitCode === null) proc.kill('SIGKILL');
    }
  });
});

/** The stored session records once `done` holds for them (or as they are after 5 s, for the assertions to tell). */
async function waitForEvents(broker: TestBroker, done: (events: any[]) => boolean): Promise<any[]> {
  return waitFor(
    async () => {
      const events = await broker.sessionEvents();
      return done(events) && events;
    },
    { what: 'the stored session records', timeoutMs: 5000, intervalMs: 50 },
  ).catch(() => broker.sessionEvents());
}
