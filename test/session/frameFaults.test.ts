import { strict as assert } from 'node:assert';
import { createHash } from 'node:crypto';
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
    const closed = await attacker.closed;
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

async function waitForEvents(broker: TestBroker, done: (events: any[]) => boolean): Promise<any[]> {
  for (let i = 0; i < 100; i++) {
    const events = await broker.sessionEvents();
    if (done(events)) return events;
    await new Promise((r) => setTimeout(r, 50));
  }
  return broker.sessionEvents();
}
