// Client compatibility, live: a real broker and a real target, driven by real CDP clients (the repo's CdpClient and
// chrome-remote-interface). What js-debug sends on its own at attach is refused quietly and does not fire the
// refusals alert, while look-alikes and repeats do; refusals a person caused read as Loupe's; the target's process
// id (and parent pid, inspector port) is withheld on every route: Loupe expressions, V8 evaluation, property lists
// and previews.
import { strict as assert } from 'node:assert';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import CDP from 'chrome-remote-interface';
import { CdpClient } from '../support/cdpClient';
import { fixtures, markerLine, startTarget, type TargetProcess } from '../support/target';
import { basePolicy, startTestBroker, type TestBroker } from '../support/testBroker';

const appFile = join(fixtures, 'app.js');
const appLine = markerLine(appFile, 'work');
const jsDebugSource = (hex: string) => `\n//# sourceURL=eval-${hex}.cdp\n`;

/** js-debug 1.117's own requests at attach, as it sends them (code-server 1.139, a plain node attach). */
const jsDebugAttach: [string, Record<string, unknown>][] = [
  ['NodeWorker.enable', { waitForDebuggerOnStart: true }],
  ['Profiler.enable', {}],
  ['Network.enable', {}],
  [
    'Runtime.evaluate',
    {
      contextId: 1,
      returnByValue: true,
      expression:
        "typeof process === 'undefined' || process.pid === undefined ? 'process not defined' : ({ processId: process.pid, nodeVersion: process.version, architecture: process.arch })" +
        jsDebugSource('15307cb3'),
    },
  ],
  [
    'Runtime.evaluate',
    {
      contextId: 1,
      returnByValue: true,
      expression:
        "typeof Deno==='object'?'deno':typeof process==='undefined'||process.pid===undefined?'process not defined':(()=>{" +
        `process.env["NODE_OPTIONS"]=(process.env["NODE_OPTIONS"]||'')+${JSON.stringify(' --require /tmp/vscode-js-debug-bootloader.js ')};` +
        `process.env["VSCODE_INSPECTOR_OPTIONS"]=(process.env["VSCODE_INSPECTOR_OPTIONS"]||'')+${JSON.stringify(':::{"inspectorIpc":"/tmp/node-cdp.1.sock","deferredMode":false}')}` +
        '})()' +
        jsDebugSource('0a1b2c3d'),
    },
  ],
  ['Runtime.evaluate', { expression: "require('module').builtinModules" + jsDebugSource('9f8e7d6c'), returnByValue: true, includeCommandLineAPI: true }],
];

/** One of js-debug's object-description helpers (it calls the object's own description methods). */
const descriptionHelper = `function(){return[Symbol.for("debug.description"),Symbol.for("nodejs.util.inspect.custom"),Symbol.for("debug.properties")]${jsDebugSource('c31a2cb0')}}`;

function v8Policy(inspector: string): Record<string, any> {
  const base = basePolicy(inspector);
  return { ...base, targets: { ...base.targets, app: { ...base.targets.app, access: [{ role: 'dev', modes: ['pause', 'snapshot'], evaluation: ['loupe', 'v8'], maxDuration: '10m' }] } } };
}

describe('client compatibility and withheld process facts', () => {
  let target: TargetProcess;
  let broker: TestBroker;
  before(async () => {
    target = await startTarget(appFile, { TICK_MS: '50' });
    const policy = v8Policy(target.inspector);
    policy.alerting = { rules: { firstAttach: false } };
    policy.targets.app.alerts = { refusals: { count: 2, withinSeconds: 60 } };
    broker = await startTestBroker(policy);
  });
  after(async () => {
    await broker.close();
    await target.stop();
  });

  const refusalAlerts = (stream: string) => broker.records.filter((e) => e.type === 'alert.refusals' && e.stream === stream);

  it("answers js-debug's attach requests quietly: refused, recorded as routine, no refusals alert", async () => {
    const { client } = await broker.attach();
    await client.call('Runtime.enable');
    await client.call('Debugger.enable');
    for (const [method, params] of jsDebugAttach) {
      const reply = await client.send(method, params);
      if (method === 'Profiler.enable') {
        // A domain switch node inspect cannot start without: answered empty, not forwarded (Profiler.start stays refused).
        assert.deepEqual(reply, { id: reply.id, result: {} });
        continue;
      }
      assert.ok(reply.error, `${method} is refused`);
      assert.match(reply.error!.message, new RegExp(`^${method.replace('.', '\\.')} is not available through Loupe: `));
    }
    for (let i = 0; i < 30; i++) {
      const reply = await client.send('Runtime.callFunctionOn', { functionDeclaration: descriptionHelper, objectId: 'obj-' + i, arguments: [] });
      assert.match(reply.error?.message ?? '', /^Runtime\.callFunctionOn is not available through Loupe: js-debug's helpers run functions in the target/);
    }
    const session = await broker.waitForRecord('session.started');
    const refused = await broker.waitForRecord('cdp.refused', (e) => e.stream === session.stream && e.data.routine === 'object-descriptions');
    assert.equal(refused.data.client, 'js-debug');
    const routine = broker.records.filter((e) => e.stream === session.stream && e.type === 'cdp.refused').map((e) => (e.data as any).routine);
    assert.deepEqual(routine.slice(0, 6), ['workers', 'profiler', 'network', 'process-info', 'child-environment', 'builtin-modules']);
    // The environment of the target is unchanged (nothing ran), and it is running.
    assert.equal((await client.call('Runtime.evaluate', { expression: 'typeof 1', returnByValue: true })).result.value, 'number');
    await target.ticksAdvance(2);
    assert.deepEqual(refusalAlerts(session.stream), [], 'no refusals alert from what a debugger asks at attach');
    await client.close();
  });

  it('counts look-alikes and repeats as refusals: a person, not the client, sent them', async () => {
    const { client } = await broker.attach();
    const first = (await client.send('Network.enable', {})).error!;
    assert.match(first.message, /not available through Loupe/);
    // A NODE_OPTIONS injection that is not js-debug's own shape.
    const injection = await client.send('Runtime.evaluate', {
      expression: "typeof Deno==='object'?'deno':typeof process==='undefined'||process.pid===undefined?'process not defined':(()=>{process.env.NODE_OPTIONS='--require /tmp/x.js'})()",
    });
    // A person's refused evaluation: answered as an evaluation that threw Loupe's refusal, counted.
    assert.equal(injection.result?.exceptionDetails?.text, 'Refused by Loupe');
    assert.match(injection.result.exceptionDetails.exception.description, /^EvalError: Refused by Loupe: the expression: "process\.env" is denied/);
    // Worker sessions with a filter, and a description "helper" that carries something else.
    assert.doesNotMatch((await client.send('NodeWorker.enable', { waitForDebuggerOnStart: false, filter: [{ type: 'worker', exclude: false }] })).error!.message, /not available/);
    const session = broker.records.filter((e) => e.type === 'session.started').at(-1)!;
    await broker.waitForRecord('alert.refusals', (e) => e.stream === session.stream);
    const counted = broker.records.filter((e) => e.stream === session.stream && e.type === 'cdp.refused' && (e.data as any).routine === undefined);
    assert.equal(counted.length, 2);
    await client.close();
  });

  it('a routine request repeated beyond what a client sends at attach counts', async () => {
    const { client } = await broker.attach();
    const replies = [];
    for (let i = 0; i < 3; i++) replies.push((await client.send('Network.enable', {})).error!.message);
    assert.match(replies[0]!, /not available through Loupe/);
    assert.match(replies[1]!, /not available through Loupe/);
    assert.match(replies[2]!, /^Network\.enable refused by Loupe: .*sent 2\+ times in this session/);
    // The profiler switch answered empty grants nothing: profiling itself stays refused.
    assert.deepEqual((await client.send('Profiler.enable', {})).result, {});
    assert.match((await client.send('Profiler.start', {})).error!.message, /^Profiler\.start refused by Loupe/);
    await client.close();
  });

  it('refuses the process id, parent pid and inspector port to Loupe expressions, in Loupe words', async () => {
    const { client } = await broker.attach();
    await client.call('Debugger.enable');
    await client.call('Debugger.setBreakpointByUrl', { lineNumber: appLine, urlRegex: 'app\\.js$' });
    const paused = await client.waitEvent('Debugger.paused');
    const callFrameId = paused.params.callFrames[0].callFrameId;
    for (const expression of ['process.pid', 'globalThis.process.pid', "process['ppid']", 'process.debugPort', '[process][0].pid', '({p: process}).p.pid']) {
      for (const [method, extra] of [
        ['Runtime.evaluate', {}],
        ['Debugger.evaluateOnCallFrame', { callFrameId }],
      ] as const) {
        const answer = await client.call(method, { expression, ...extra });
        assert.equal(answer.exceptionDetails?.text, 'Refused by Loupe', `${method} ${expression}`);
        assert.match(answer.exceptionDetails.exception.description, /^EvalError: Refused by Loupe: the target's (parent )?(process id|inspector port) \(process\.\w+\) is withheld/, expression);
        assert.equal(answer.result.subtype, 'error');
      }
    }
    // Listing the process object never lists them.
    const keys = await client.call('Runtime.evaluate', { expression: "Object.keys(process).filter(k => k === 'pid' || k === 'ppid' || k === 'debugPort')", returnByValue: true });
    assert.deepEqual(keys.result.value, []);
    // (A filter over the values reads `env`, which the policy denies: its decision, so its result, is then the marker.)
    const values = await client.call('Runtime.evaluate', { expression: `Object.values(process).filter(v => v === ${target.proc.pid})`, returnByValue: true });
    assert.ok(!JSON.stringify(values).includes(String(target.proc.pid)), JSON.stringify(values));
    assert.match(JSON.stringify(values.result.value), /^\[\]$|denied by this target's policy/);
    // Everyday reads of the process object still work.
    assert.equal((await client.call('Runtime.evaluate', { expression: 'process.version', returnByValue: true })).result.value, process.version);
    // A property list of the process object (the Variables view, DevTools' scope view) shows the marker.
    const processObject = await client.call('Runtime.evaluate', { expression: 'process', generatePreview: true });
    assert.equal(processObject.result.className, 'process');
    // (Not its objectId, whose counter may have the digits of a 3-digit pid.)
    assert.doesNotMatch(JSON.stringify({ ...processObject.result, objectId: undefined }), new RegExp(`\\b${target.proc.pid}\\b`));
    const props = await client.call('Runtime.getProperties', { objectId: processObject.result.objectId, ownProperties: true, generatePreview: true });
    const pid = props.result.find((p: any) => p.name === 'pid');
    assert.equal(pid.value.value, "[withheld by Loupe: the target's process id]");
    assert.doesNotMatch(JSON.stringify(props), new RegExp(`"value":${target.proc.pid}\\b`));
    // And previews of it in the global scope.
    const global = paused.params.callFrames[0].scopeChain.find((s: any) => s.type === 'global');
    const globals = await client.call('Runtime.getProperties', { objectId: global.object.objectId, ownProperties: true, generatePreview: true });
    const inGlobal = globals.result.find((p: any) => p.name === 'process');
    if (inGlobal?.value?.preview) {
      assert.doesNotMatch(JSON.stringify(inGlobal.value.preview), new RegExp(`"value":"${target.proc.pid}"`));
    }
    // Not a method either.
    assert.match((await client.send('Runtime.getProcessInfo', {})).error!.message, /refused by Loupe/);
    await client.call('Debugger.resume');
    await client.close();
  });

  it('refuses them to V8 evaluation too (a v8 grant), and says V8 refusals in Loupe words', async () => {
    const grant = await broker.grant('dev', ['devs'], { evaluation: 'v8' } as never);
    const ticket = await broker.api('POST', `/v1/grants/${grant.grantId}/tickets`, await broker.token('dev', ['devs']));
    // chrome-remote-interface on the ticket URL, as a client other than Loupe's own would attach.
    const cdp = await CDP({ target: ticket.body.attachUrl, local: true });
    try {
      for (const expression of ['process.pid', 'globalThis.process.ppid', "process['debugPort']"]) {
        const answer = await cdp.send('Runtime.evaluate', { expression });
        assert.equal(answer.exceptionDetails?.text, 'Refused by Loupe', expression);
        assert.match(
          String(answer.exceptionDetails?.exception?.description),
          /^EvalError: Refused by Loupe: the expression: the target's .* is withheld: a debugger could act on the process outside Loupe/,
          expression,
        );
      }
      const sideEffect = await cdp.send('Runtime.evaluate', { expression: 'globalThis.touched = 1' });
      assert.equal(sideEffect.exceptionDetails?.text, 'Refused by Loupe');
      assert.match(String(sideEffect.exceptionDetails?.exception?.description), /^EvalError: Refused by Loupe: the expression may have side effects.*\(V8: Possible side-effect in debug-evaluate\)/);
      const processObject = await cdp.send('Runtime.evaluate', { expression: 'process', generatePreview: true });
      assert.doesNotMatch(JSON.stringify(processObject.result.preview ?? {}), new RegExp(`"value":"${target.proc.pid}"`));
      // Asked by value, it comes as a reference (a copy would run its getters); read, its process id is withheld.
      const byValue = await cdp.send('Runtime.evaluate', { expression: 'process', returnByValue: true });
      assert.equal(byValue.result.value, undefined);
      const read = await cdp.send('Runtime.getProperties', { objectId: byValue.result.objectId!, ownProperties: true });
      assert.equal(read.result.find((p) => p.name === 'pid')?.value?.value, "[withheld by Loupe: the target's process id]");
    } finally {
      await cdp.close();
    }
  });
});
