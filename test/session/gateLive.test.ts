import { strict as assert } from 'node:assert';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import CDP from 'chrome-remote-interface';
import { CdpClient } from '../support/cdpClient';
import { fixtures, markerLine, startTarget, type TargetProcess } from '../support/target';
import { basePolicy, startTestBroker, type TestBroker } from '../support/testBroker';

const appLine = markerLine(join(fixtures, 'app.js'), 'work');

/**
 * A policy whose rule lets the developer ask for V8 evaluation (a grant's privilege, grant.evaluation 'v8'): the
 * tests about V8's own evaluation (its side-effect check, its timeout, the target's answers to it) run under it.
 */
function v8Policy(inspector: string, overrides: Record<string, unknown> = {}) {
  const base = basePolicy(inspector, overrides);
  return { ...base, targets: { ...base.targets, app: { ...base.targets.app, access: [{ role: 'dev', modes: ['pause', 'snapshot'], evaluation: ['loupe', 'v8'], maxDuration: '10m' }] } } };
}
const v8Grant = { evaluation: 'v8' } as never;

describe('the gate in a live session', () => {
  let target: TargetProcess;
  let broker: TestBroker;
  let direct: CdpClient;
  before(async () => {
    target = await startTarget();
    broker = await startTestBroker(v8Policy(target.inspector, { limits: { maxFrameBytes: 8192, evaluateTimeoutMs: 300 } }));
    // A direct client, used only to read the target's state from outside the broker.
    direct = await CdpClient.connect(target.wsUrl);
  });
  after(async () => {
    await direct.close();
    await broker.close();
    await target.stop();
  });
  const globalType = async (name: string) => (await direct.call('Runtime.evaluate', { expression: `typeof globalThis.${name}` })).result.value;

  it('refuses code-changing and unbounded methods with the same id, and the session stays up', async () => {
    const { client, grant } = await broker.attach();
    await client.call('Debugger.enable');
    const scripts = client.events.filter((e) => e.method === 'Debugger.scriptParsed' && /app\.js$/.test(e.params.url));
    assert.equal(scripts.length, 1);
    const scriptId = scripts[0]!.params.scriptId;
    const refusals: [string, Record<string, unknown>][] = [
      ['Debugger.setScriptSource', { scriptId, scriptSource: 'process.exit(1)' }],
      ['Runtime.compileScript', { expression: 'process.exit(1)', sourceURL: 'x', persistScript: true }],
      ['Runtime.callFunctionOn', { functionDeclaration: 'function(){ while(true){} }', executionContextId: 1 }],
      ['Runtime.terminateExecution', {}],
      ['HeapProfiler.takeHeapSnapshot', {}],
      ['NodeWorker.enable', { waitForDebuggerOnStart: false, filter: [] }],
      ['Profiler.start', {}],
    ];
    for (const [method, params] of refusals) {
      const reply = await client.send(method, params, 1000 + refusals.findIndex(([m]) => m === method));
      assert.ok(reply.error, `${method} must be refused`);
      assert.match(reply.error!.message, new RegExp(`^${method.replace('.', '\\.')} refused by Loupe: `));
    }
    const source = await client.call('Debugger.getScriptSource', { scriptId });
    assert.match(source.scriptSource, /BREAK:work/, 'code unchanged');
    assert.equal((await client.call('Runtime.evaluate', { expression: '6*7', returnByValue: true })).result.value, 42);
    await client.close();
    await broker.waitForRecord('session.ended', (e) => e.grant === grant.grantId);
    const log = await broker.sessionEvents();
    const refused = log.find((e) => e.type === 'cdp.refused' && e.data.method === 'Debugger.setScriptSource');
    assert.match(refused.data.message, /would change the code running in production/);
  });

  it('side-effecting evaluation fails in V8 and leaves the target unchanged', async () => {
    const { client } = await broker.attach(v8Grant);
    await client.call('Debugger.enable');
    const { breakpointId } = await client.call('Debugger.setBreakpointByUrl', { lineNumber: appLine, urlRegex: 'app\\.js$' });
    const paused = await client.waitEvent('Debugger.paused');
    const callFrameId = paused.params.callFrames[0].callFrameId;
    for (const expression of ['globalThis.x = 1', 'local.n = 99', 'process.exit(3)', 'hooks.sneaky']) {
      const reply = await client.call('Debugger.evaluateOnCallFrame', { callFrameId, expression, throwOnSideEffect: false });
      assert.ok(reply.exceptionDetails, `${expression} must throw`);
      assert.match(reply.result.description, /^EvalError: Refused by Loupe: .*\(V8: Possible side-effect in debug-evaluate\)/);
    }
    const n = await client.call('Debugger.evaluateOnCallFrame', { callFrameId, expression: 'local.n === n', returnByValue: true });
    assert.equal(n.result.value, true, 'local.n unchanged');
    const api = await client.call('Runtime.evaluate', { expression: 'typeof copy', includeCommandLineAPI: true, returnByValue: true });
    assert.equal(api.result.value, 'undefined', 'command-line API not exposed');
    const req = await client.send('Runtime.evaluate', { expression: 'typeof require' });
    assert.match(req.result?.exceptionDetails?.exception?.description ?? '', /"require" is denied by this target's policy \(evaluation\.denyIdentifiers\)/, 'require is denied by default');
    await client.call('Debugger.removeBreakpoint', { breakpointId });
    await client.call('Debugger.resume');
    await client.close();
    assert.equal(await globalType('x'), 'undefined');
    assert.equal(await globalType('sneakyRan'), 'undefined');
    await target.ticksAdvance(2);
  });

  it('a result asked for by value never runs its getters: returnByValue is dropped, the object comes as a reference', async () => {
    // V8 copies a result by value through its getters after the side-effect check has ended (measured: an
    // object's getter ran under throwOnSideEffect); hooks.sneaky sets globalThis.sneakyRan.
    const { client, grant } = await broker.attach(v8Grant);
    await client.call('Debugger.enable');
    const { breakpointId } = await client.call('Debugger.setBreakpointByUrl', { lineNumber: appLine, urlRegex: 'app\\.js$' });
    const paused = await client.waitEvent('Debugger.paused');
    const callFrameId = paused.params.callFrames[0].callFrameId;
    const onFrame = await client.call('Debugger.evaluateOnCallFrame', { callFrameId, expression: 'hooks', returnByValue: true });
    const global = await client.call('Runtime.evaluate', { expression: '[{ get x() { return globalThis.sneakyRan = 2; } }]', returnByValue: true });
    for (const reply of [onFrame, global]) {
      assert.equal(reply.result.type, 'object');
      assert.equal(reply.result.value, undefined, 'no value copied');
      assert.ok(reply.result.objectId, 'a reference instead');
    }
    const props = await client.call('Runtime.getProperties', { objectId: onFrame.result.objectId, ownProperties: true });
    assert.ok(
      props.result.find((p: { name: string; get?: unknown }) => p.name === 'sneaky' && p.get),
      'the getter is listed, not called',
    );
    await client.call('Debugger.removeBreakpoint', { breakpointId });
    await client.call('Debugger.resume');
    await client.close();
    assert.equal(await globalType('sneakyRan'), 'undefined', 'no getter ran');
    await broker.waitForRecord('session.ended', (e) => e.grant === grant.grantId);
    const asked = (await broker.sessionEvents()).filter((e) => e.type === 'cdp.evaluate' && e.grant === grant.grantId);
    assert.equal(asked.length, 2);
    for (const e of asked) {
      assert.equal(e.data.params.returnByValue, undefined, 'not sent to V8');
      assert.ok(
        e.data.rewrites.some((r: string) => /^returnByValue dropped: V8 would copy the result through its getters/.test(r)),
        'the rewrite is recorded',
      );
    }
  });

  it('a looping evaluation is terminated at the timeout and the target keeps running', async () => {
    const { client } = await broker.attach(v8Grant);
    const started = Date.now();
    const reply = await client.send('Runtime.evaluate', { expression: 'while (true) {}' });
    assert.ok(Date.now() - started < 3000);
    assert.match(reply.error?.message ?? reply.result?.result?.description ?? '', /terminated/i);
    await target.ticksAdvance(2);
    await client.close();
  });

  it('hostile breakpoint conditions are refused before they reach V8', async () => {
    const { client } = await broker.attach();
    await client.call('Debugger.enable');
    for (const condition of ['(globalThis.n = 1)', 'process.exit()', "require('child_process')", "x.constructor.constructor('return process')()", 'delete secrets.apiKey']) {
      const reply = await client.send('Debugger.setBreakpointByUrl', { lineNumber: appLine, urlRegex: 'app\\.js$', condition });
      assert.ok(reply.error, condition);
      assert.match(reply.error!.message, /^Debugger\.setBreakpointByUrl refused: condition /);
    }
    await target.ticksAdvance(3);
    assert.equal(await globalType('n'), 'undefined');
    await client.close();
  });

  it('a condition that passes the screen but has a side effect never runs it: V8 refuses, the target never pauses', async () => {
    const { client } = await broker.attach(v8Grant);
    await client.call('Debugger.enable');
    const reply = await client.call('Debugger.setBreakpointByUrl', { lineNumber: appLine, urlRegex: 'app\\.js$', condition: 'Object.defineProperty(globalThis, "n", { value: 1 }) && hooks.sneaky' });
    assert.ok(reply.breakpointId);
    await target.ticksAdvance(5);
    assert.equal(client.events.filter((e) => e.method === 'Debugger.paused').length, 0, 'client never saw a pause');
    assert.equal(client.events.filter((e) => e.method === 'Debugger.resumed').length, 0, 'nor a resume');
    assert.equal(await globalType('n'), 'undefined');
    assert.equal(await globalType('sneakyRan'), 'undefined');
    await client.close();
  });

  it('a true condition pauses; a false one does not', async () => {
    const { client } = await broker.attach();
    await client.call('Debugger.enable');
    const never = await client.call('Debugger.setBreakpointByUrl', { lineNumber: appLine, urlRegex: 'app\\.js$', condition: 'n < 0' });
    await target.ticksAdvance(3);
    assert.equal(client.events.filter((e) => e.method === 'Debugger.paused').length, 0);
    await client.call('Debugger.removeBreakpoint', { breakpointId: never.breakpointId });
    const five = await client.call('Debugger.setBreakpointByUrl', { lineNumber: appLine, urlRegex: 'app\\.js$', condition: 'n % 5 === 0' });
    const paused = await client.waitEvent('Debugger.paused');
    assert.deepEqual(paused.params.hitBreakpoints, [five.breakpointId]);
    const n = await client.call('Debugger.evaluateOnCallFrame', { callFrameId: paused.params.callFrames[0].callFrameId, expression: 'n', returnByValue: true });
    assert.equal(n.result.value % 5, 0);
    await client.call('Debugger.removeBreakpoint', { breakpointId: five.breakpointId });
    await client.call('Debugger.resume');
    await target.ticksAdvance(2);
    await client.close();
  });

  it('malformed and oversized frames get clear errors and the session stays up', async () => {
    const { client } = await broker.attach();
    const big = await client.sendRaw(JSON.stringify({ id: 77, method: 'Runtime.evaluate', params: { expression: `"${'x'.repeat(20000)}".length` } }), 77);
    assert.match(big.error!.message, /frame of \d+ bytes refused: the limit is 8192 bytes/);
    const bad = await client.sendRaw('{"id": 78, "method": "Runtime.evaluate", ', 78);
    assert.match(bad.error!.message, /invalid JSON/);
    const routed = await client.sendRaw('{"id": 79, "method": "Runtime.evaluate", "params": {"expression": "1"}, "sessionId": "x"}', 79);
    assert.match(routed.error!.message, /unknown top-level field "sessionId"/);
    client.socket.send('[{"id":80,"method":"Runtime.enable"}]');
    client.socket.send('{"method":"Runtime.enable"}');
    // The reply to a later request proves both frames were handled (the broker answers frames in order).
    assert.equal((await client.call('Runtime.evaluate', { expression: '1+1', returnByValue: true })).result.value, 2);
    assert.equal(client.unrouted.length, 2);
    assert.match(client.unrouted[0]!.error!.message, /batches refused/);
    assert.match(client.unrouted[1]!.error!.message, /integer "id"/);
    await client.close();
  });

  it("keeps the client's ids: replies carry the client's own id even when it reuses the broker's numbers", async () => {
    const { client } = await broker.attach();
    await client.call('Debugger.enable');
    await client.call('Debugger.setBreakpointByUrl', { lineNumber: appLine, urlRegex: 'app\\.js$', condition: 'n % 3 === 0' });
    // Conditions are being checked by the broker's own commands while the client sends ids 1..30 again.
    const replies = await Promise.all(Array.from({ length: 30 }, (_, i) => client.send('Runtime.evaluate', { expression: `${i} * 2`, returnByValue: true }, 5000 + i)));
    replies.forEach((reply, i) => assert.equal(reply.result.result.value, i * 2));
    await client.close();
  });
});

describe('a third-party CDP client through the broker', () => {
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

  it('chrome-remote-interface attaches with a single-use ticket and is held to the same policy', async () => {
    const grant = await broker.grant('dev', ['devs']);
    const ticket = await broker.api('POST', `/v1/grants/${grant.grantId}/tickets`, await broker.token('dev', ['devs']));
    assert.equal(ticket.status, 201);
    const client = await CDP({ target: ticket.body.attachUrl, local: true });
    try {
      await client.Debugger.enable({});
      const { result } = await client.Runtime.evaluate({ expression: '[1, 2, 3].map((x) => x * 2).join()', returnByValue: true });
      assert.equal(result.value, '2,4,6');
      await assert.rejects(client.Debugger.setScriptSource({ scriptId: '1', scriptSource: '' }), /setScriptSource refused by Loupe/);
      const side = await client.Runtime.evaluate({ expression: 'globalThis.y = 2' });
      // Refused as a side effect: by the broker's interpreter (a Loupe expression) or by V8's check (a V8 grant).
      assert.match(side.result.description ?? '', /Possible side-effect|it changes the target \(a side effect\)/);
    } finally {
      await client.close();
    }
    await assert.rejects(CdpClient.connect(ticket.body.attachUrl), /401/);
  });
});
