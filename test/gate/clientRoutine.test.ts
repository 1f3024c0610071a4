// The routine list (broker/gate/clientRoutine.ts) as the gate applies it: a routine request is refused, never
// forwarded, whatever it looks like; only exact shapes are routine; fuzzed frames never throw and never forward
// a routine match.
import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { gateClientFrame } from '../../broker/gate/cdpGate';
import { clientRoutines, completionProbe, routineOf, RoutineAllowance } from '../../broker/gate/clientRoutine';

const limits = { maxFrameBytes: 1 << 20, evaluateTimeoutMs: 1000 };
const gate = (message: unknown) => gateClientFrame(JSON.stringify(message), false, 'pause', limits);
const url = (hex: string) => `\n//# sourceURL=eval-${hex}.cdp\n`;

/** One example per routine, as js-debug sends it. */
const examples: [string, string, Record<string, unknown>][] = [
  ['workers', 'NodeWorker.enable', { waitForDebuggerOnStart: true }],
  ['profiler', 'Profiler.enable', {}],
  // node inspect at start; answered with an empty result (still never forwarded).
  ['profiler-interval', 'Profiler.setSamplingInterval', { interval: 100 }],
  ['network', 'Network.enable', { maxPostDataSize: 65536, maxTotalBufferSize: 262144000, reportDirectSocketTraffic: true }],
  // Chrome DevTools (js_app.html, Chromium 156) at attach, as recorded through the broker.
  ['network-settings', 'Network.setAttachDebugStack', { enabled: true }],
  ['network-blocking', 'Network.setBlockedURLs', { urlPatterns: [] }],
  ['network-conditions', 'Network.emulateNetworkConditionsByRule', { offline: false, matchedNetworkConditions: [] }],
  ['network-state', 'Network.overrideNetworkState', { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: -1, connectionType: 'none' }],
  ['network-encodings', 'Network.clearAcceptedEncodingsOverride', {}],
  [
    'process-info',
    'Runtime.evaluate',
    {
      contextId: 1,
      returnByValue: true,
      expression:
        "typeof process === 'undefined' || process.pid === undefined ? 'process not defined' : ({ processId: process.pid, nodeVersion: process.version, architecture: process.arch })" +
        url('15307cb3'),
    },
  ],
  [
    'child-environment',
    'Runtime.evaluate',
    {
      contextId: 1,
      returnByValue: true,
      expression: `typeof Deno==='object'?'deno':typeof process==='undefined'||process.pid===undefined?'process not defined':(()=>{process.env["NODE_OPTIONS"]=(process.env["NODE_OPTIONS"]||'')+" --require /x.js "})()${url('0a0b0c0d')}`,
    },
  ],
  ['builtin-modules', 'Runtime.evaluate', { expression: "require('module').builtinModules" + url('01234567'), returnByValue: true, includeCommandLineAPI: true }],
  [
    'wasm-instrumentation',
    'Runtime.evaluate',
    {
      expression:
        '(()=>{let r=["instantiate","instantiateStreaming","compile","compileStreaming"];for(let e of r){let t=WebAssembly[e];WebAssembly[e]=function(...n){return t.apply(this,n).then(i=>{if(!(n[0]instanceof WebAssembly.Module))debugger;return i})}}})();\n' +
        url('4d2a863d'),
    },
  ],
  [
    'object-descriptions',
    'Runtime.callFunctionOn',
    { functionDeclaration: `function(){return[Symbol.for("debug.description"),Symbol.for("nodejs.util.inspect.custom")]${url('c31a2cb0')}}`, objectId: '1.2.3', arguments: [] },
  ],
];

describe('client routine requests', () => {
  for (const [name, method, params] of examples) {
    it(`${name}: refused quietly, in its own words, never forwarded`, () => {
      const decision = gate({ id: 3, method, params });
      assert.equal(decision.action, 'refuse');
      if (decision.action !== 'refuse') return;
      assert.equal(decision.routine?.name, name);
      assert.equal(decision.id, 3);
      assert.match(decision.message, new RegExp(`^${method.replace('.', '\\.')} is not available through Loupe: `));
    });

    it(`${name}: one more parameter is not routine`, () => {
      const decision = gate({ id: 3, method, params: { ...params, unexpected: 1 } });
      // Refused or forwarded by the ordinary rules, never as routine.
      if (decision.action === 'refuse') assert.equal(decision.routine, undefined);
    });
  }

  it('every routine has an example, so none is matched by accident', () => {
    assert.deepEqual(clientRoutines.map((r) => r.name).sort(), examples.map(([name]) => name).sort());
  });

  it('look-alike evaluations are not routine: a changed body, a different environment write, a user sourceURL', () => {
    const [, , info] = examples[3]!;
    const expression = String(info.expression);
    assert.equal(routineOf('Runtime.evaluate', { ...info, expression: expression.replace('process.arch', 'process.env') }), undefined);
    assert.equal(routineOf('Runtime.evaluate', { ...info, expression: expression.replace('.cdp', '.repl') }), undefined);
    assert.equal(routineOf('Runtime.evaluate', { ...info, expression: expression + ';1' }), undefined);
    const injection = String(examples[4]![2].expression).replace('" --require /x.js "', '" --require /x.js "});process.exit(1);(()=>{');
    assert.equal(routineOf('Runtime.evaluate', { expression: injection }), undefined);
    assert.equal(routineOf('Runtime.callFunctionOn', { functionDeclaration: 'function(){ while(true){} }', objectId: '1' }), undefined);
    assert.equal(routineOf('Runtime.callFunctionOn', { functionDeclaration: 'function(){ return 1 }', objectId: '1', executionContextId: 1 }), undefined);
  });

  it('DevTools settings other than its defaults are not routine', () => {
    assert.equal(routineOf('Network.setBlockedURLs', { urlPatterns: [{ urlPattern: '*' }] }), undefined);
    assert.equal(routineOf('Network.overrideNetworkState', { offline: true, latency: 0, downloadThroughput: -1, uploadThroughput: -1 }), undefined);
    assert.equal(routineOf('Network.emulateNetworkConditionsByRule', { offline: false, matchedNetworkConditions: [{ urlPattern: '' }] }), undefined);
  });

  it('the allowance: quiet only as often as a client sends it at attach', () => {
    const allowance = new RoutineAllowance();
    const network = clientRoutines.find((r) => r.name === 'network')!;
    assert.deepEqual([allowance.take(network), allowance.take(network), allowance.take(network)], [true, true, false]);
  });

  it("js-debug's name completions: silent, a plain path, its sourceURL", () => {
    assert.ok(completionProbe.matches({ expression: `(process.env)${url('4b889163')}`, silent: true }));
    assert.ok(!completionProbe.matches({ expression: `(process.env)${url('4b889163')}` }), 'not silent: typed');
    assert.ok(!completionProbe.matches({ expression: `(process.env.X = 1)${url('4b889163')}`, silent: true }));
    assert.ok(!completionProbe.matches({ expression: '(process.env)\n//# sourceURL=eval-4b889163.repl\n', silent: true }));
  });

  it('fuzz: any method and params: the gate never throws, and a routine match is always refused', () => {
    const methods = fc.constantFrom('NodeWorker.enable', 'Profiler.enable', 'Network.enable', 'Runtime.evaluate', 'Runtime.callFunctionOn', 'Debugger.enable', 'Made.up');
    const values = fc.oneof(fc.string(), fc.integer(), fc.boolean(), fc.constant(null), fc.array(fc.string(), { maxLength: 3 }), fc.dictionary(fc.string(), fc.string(), { maxKeys: 3 }));
    const expression = fc.oneof(
      fc.string(),
      fc.constantFrom(...examples.filter(([, m]) => m === 'Runtime.evaluate').map(([, , p]) => String(p.expression))).map((e) => e),
      fc.tuple(fc.constantFrom(...examples.map(([, , p]) => String(p.expression ?? p.functionDeclaration ?? ''))), fc.string()).map(([e, tail]) => e + tail),
    );
    const params = fc.oneof(
      fc.dictionary(fc.constantFrom('expression', 'functionDeclaration', 'objectId', 'contextId', 'returnByValue', 'waitForDebuggerOnStart', 'silent', '__proto__', 'toString'), values, {
        maxKeys: 5,
      }),
      fc.record({ expression, returnByValue: fc.boolean() }, { requiredKeys: ['expression'] }),
      fc.record({ functionDeclaration: expression, objectId: fc.string() }),
    );
    fc.assert(
      fc.property(methods, params, (method, p) => {
        const decision = gate({ id: 1, method, params: p });
        if (routineOf(method, p)) assert.equal(decision.action, 'refuse');
        if (decision.action === 'refuse' && decision.routine) assert.match(decision.message, /is not available through Loupe/);
      }),
      { numRuns: 2000 },
    );
  });
});
