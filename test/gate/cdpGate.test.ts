import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import { gateClientFrame, methodAllowed } from '../../broker/gate/cdpGate';
import { checkCondition } from '../../broker/gate/conditionCheck';
import { screenEvaluation } from '../../broker/gate/evaluationCheck';
import { TargetScreen } from '../../broker/gate/targetScreen';
import { parseConfigText } from '../../broker/config/load';
import { Redactor } from '../../broker/policy/redact';
import { stringify } from 'yaml';
import { basePolicy } from '../support/testBroker';

const limits = { maxFrameBytes: 4096, evaluateTimeoutMs: 500 };
const gate = (message: unknown, mode: 'pause' | 'snapshot' = 'pause') => gateClientFrame(typeof message === 'string' ? message : JSON.stringify(message), false, mode, limits);

describe('CDP gate: refusals', () => {
  const mustRefuse = [
    'Debugger.setScriptSource',
    'Debugger.restartFrame',
    'Debugger.setVariableValue',
    'Debugger.setReturnValue',
    'Debugger.setInstrumentationBreakpoint',
    'Runtime.compileScript',
    'Runtime.runScript',
    'Runtime.callFunctionOn',
    'Runtime.addBinding',
    'Runtime.queryObjects',
    'Runtime.terminateExecution',
    'HeapProfiler.takeHeapSnapshot',
    'HeapProfiler.enable',
    'Profiler.start',
    'NodeWorker.sendMessageToWorker',
    'NodeTracing.start',
    'NodeRuntime.notifyWhenWaitingForDisconnect',
    'Made.up',
  ];
  for (const method of mustRefuse) {
    it(`refuses ${method} with an error that names it and says why`, () => {
      const decision = gate({ id: 7, method, params: {} });
      assert.equal(decision.action, 'refuse');
      if (decision.action !== 'refuse') return;
      assert.equal(decision.id, 7);
      assert.equal(decision.code, -32601);
      assert.ok(decision.message.startsWith(`${method} refused by Loupe: `), decision.message);
      assert.ok(decision.message.length > `${method} refused by Loupe: `.length + 10);
    });
  }

  it('refuses pausing methods in snapshot mode', () => {
    for (const method of ['Debugger.pause', 'Debugger.setBreakpointOnFunctionCall', 'Debugger.evaluateOnCallFrame', 'Debugger.stepOver']) {
      const decision = gate({ id: 1, method, params: { lineNumber: 1, callFrameId: 'x', expression: '1', objectId: 'o' } }, 'snapshot');
      assert.equal(decision.action, 'refuse', method);
      if (decision.action === 'refuse') assert.match(decision.message, /not allowed in snapshot mode/);
    }
  });

  it('refuses malformed frames with a clear error', () => {
    const cases: [string, RegExp, number | null][] = [
      ['{"id": 3, "method": ', /invalid JSON/, 3],
      ['[{"id":1,"method":"Runtime.enable"}]', /batches refused/, null],
      ['"hello"', /JSON object/, null],
      ['{"method":"Runtime.enable"}', /integer "id"/, null],
      ['{"id":"1","method":"Runtime.enable"}', /integer "id"/, null],
      ['{"id":-1,"method":"Runtime.enable"}', /integer "id"/, null],
      ['{"id":4}', /string "method"/, 4],
      ['{"id":5,"method":"Runtime.enable","sessionId":"abc"}', /unknown top-level field "sessionId"/, 5],
      ['{"id":6,"method":"Runtime.evaluate","params":[1]}', /params must be an object/, 6],
      ['{"id":8,"method":"Runtime.evaluate","params":{"expression":1}}', /params.expression must be a string/, 8],
      ['{"id":9,"method":"Runtime.evaluate","params":{}}', /missing expression/, 9],
    ];
    for (const [frame, pattern, id] of cases) {
      const decision = gate(frame);
      assert.equal(decision.action, 'refuse', frame);
      if (decision.action !== 'refuse') continue;
      assert.match(decision.message, pattern, frame);
      assert.equal(decision.id, id, frame);
    }
  });

  it('refuses an oversized frame without parsing it, still answering its id', () => {
    const frame = JSON.stringify({ id: 42, method: 'Runtime.evaluate', params: { expression: `"${'x'.repeat(5000)}"` } });
    const decision = gate(frame);
    assert.equal(decision.action, 'refuse');
    if (decision.action === 'refuse') {
      assert.equal(decision.id, 42);
      assert.match(decision.message, /frame of \d+ bytes refused: the limit is 4096 bytes/);
    }
  });

  it('refuses binary frames', () => {
    const decision = gateClientFrame(Buffer.from('{"id":1,"method":"Runtime.enable"}'), true, 'pause', limits);
    assert.equal(decision.action, 'refuse');
  });
});

describe('CDP gate: rewrites', () => {
  it('forces throwOnSideEffect, a timeout and disableBreaks on Runtime.evaluate, dropping includeCommandLineAPI and unknown flags', () => {
    const decision = gate({
      id: 1,
      method: 'Runtime.evaluate',
      params: { expression: 'require("fs")', includeCommandLineAPI: true, throwOnSideEffect: false, timeout: 1e9, awaitPromise: true, replMode: true, futureFlag: 1 },
    });
    assert.equal(decision.action, 'forward');
    if (decision.action !== 'forward') return;
    assert.deepEqual(decision.params, { expression: 'require("fs")', throwOnSideEffect: true, timeout: 500, disableBreaks: true });
    assert.ok(decision.rewrites.includes('params.includeCommandLineAPI dropped'));
    assert.ok(decision.rewrites.includes('params.futureFlag dropped'));
  });

  it('forces the same on Debugger.evaluateOnCallFrame', () => {
    const decision = gate({ id: 2, method: 'Debugger.evaluateOnCallFrame', params: { callFrameId: 'f', expression: 'a', throwOnSideEffect: false, includeCommandLineAPI: true } });
    assert.equal(decision.action, 'forward');
    if (decision.action === 'forward') assert.deepEqual(decision.params, { callFrameId: 'f', expression: 'a', throwOnSideEffect: true, timeout: 500 });
  });

  it('drops terminateOnResume from Debugger.resume', () => {
    const decision = gate({ id: 3, method: 'Debugger.resume', params: { terminateOnResume: true } });
    assert.equal(decision.action, 'forward');
    if (decision.action === 'forward') assert.deepEqual(decision.params, {});
  });

  it('moves a breakpoint condition to the broker and strips it from the forwarded message', () => {
    const decision = gate({ id: 4, method: 'Debugger.setBreakpointByUrl', params: { lineNumber: 3, url: 'file:///app.js', condition: 'n % 5 === 0' } });
    assert.equal(decision.action, 'forward');
    if (decision.action !== 'forward') return;
    assert.equal(decision.condition, 'n % 5 === 0');
    assert.deepEqual(decision.params, { lineNumber: 3, url: 'file:///app.js' });
  });

  it('turns async stack tracking off in snapshot mode and caps it in pause mode', () => {
    const snapshot = gate({ id: 6, method: 'Debugger.setAsyncCallStackDepth', params: { maxDepth: 32 } }, 'snapshot');
    assert.equal(snapshot.action, 'forward');
    if (snapshot.action !== 'forward') return;
    assert.deepEqual(snapshot.params, { maxDepth: 0 });
    assert.deepEqual(snapshot.rewrites, ['maxDepth 0 in snapshot mode: captures have no async stacks, and tracking them slows every request of the target']);
    const pause = gate({ id: 7, method: 'Debugger.setAsyncCallStackDepth', params: { maxDepth: 100 } });
    assert.equal(pause.action, 'forward');
    if (pause.action === 'forward') assert.deepEqual(pause.params, { maxDepth: 32 });
  });

  it('drops unknown fields nested in known objects', () => {
    const decision = gate({ id: 5, method: 'Debugger.setBreakpoint', params: { location: { scriptId: '1', lineNumber: 2, evil: true } } });
    assert.equal(decision.action, 'forward');
    if (decision.action === 'forward') assert.deepEqual(decision.params, { location: { scriptId: '1', lineNumber: 2 } });
  });
});

describe('logpoints', () => {
  it('become plain breakpoints kept by the broker, with every expression screened', () => {
    const decision = gate({ id: 1, method: 'Loupe.setLogpoint', params: { lineNumber: 3, url: 'file:///a.js', logMessage: 'user {user.id} paid {order.total.toFixed(2)} {{a: 1}.a}' } });
    assert.equal(decision.action, 'forward');
    if (decision.action !== 'forward') return;
    assert.equal(decision.method, 'Debugger.setBreakpointByUrl');
    assert.deepEqual(decision.params, { lineNumber: 3, url: 'file:///a.js' });
    assert.deepEqual(decision.logpoint, { literals: ['user ', ' paid ', ' ', ''], expressions: ['user.id', 'order.total.toFixed(2)', '{a: 1}.a'] });
    const hostile = gate({ id: 2, method: 'Loupe.setLogpoint', params: { lineNumber: 3, logMessage: 'x {process.exit()}' } });
    assert.equal(hostile.action, 'refuse');
  });
});

describe('condition screen', () => {
  const refused: [string, RegExp][] = [
    ['(globalThis.n = 1)', /assignment/],
    ['n++', /\+\+/],
    ['delete x.y', /delete/],
    ['process.exit()', /functions of process/],
    ["require('child_process')", /require\(\) is never side-effect free/],
    ["x.constructor.constructor('return process')()", /"constructor"/],
    ['tag`x`', /tagged template/],
    ['(() => 1)()', /defining functions/],
    ['new Date()', /constructing/],
    ['console.log(1)', /functions of console/],
    ['eval("1")', /eval\(\)/],
    ['a; b', /single expression/],
    ['a) || (b', /single expression/],
    ['1 +', /not a valid JavaScript expression/],
  ];
  for (const [condition, reason] of refused) {
    it(`refuses ${condition}`, () => {
      const verdict = checkCondition(condition);
      assert.equal(verdict.ok, false);
      if (!verdict.ok) assert.match(verdict.reason, reason);
    });
  }
  for (const condition of ['n % 5 === 0', 'user.tier === "gold" && items.length > 2', 'a?.b ?? c', '`${n}` === "3"', 'Math.max(a, b) > 3']) {
    it(`lets ${condition} through to the runtime check`, () => assert.equal(checkCondition(condition).ok, true));
  }
});

describe('CDP gate: names from a frame never reach Object.prototype', () => {
  const prototypeNames = Object.getOwnPropertyNames(Object.prototype);
  it('knows the names it is testing', () => assert.ok(prototypeNames.includes('__proto__') && prototypeNames.includes('toString') && prototypeNames.length >= 12));

  for (const name of prototypeNames) {
    it(`refuses method "${name}" as not on the allowlist`, () => {
      for (const mode of ['pause', 'snapshot'] as const) {
        const decision = gate(`{"id":3,"method":${JSON.stringify(name)},"params":{}}`, mode);
        assert.equal(decision.action, 'refuse');
        if (decision.action !== 'refuse') continue;
        assert.equal(decision.rule, 'allowlist');
        assert.equal(decision.code, -32601);
        assert.equal(decision.message, `${name} refused by Loupe: it is not on the allowlist for ${mode} sessions`);
      }
    });
  }

  const paramCases: { name: string; frame: (key: string) => string; dropped: (key: string) => string }[] = [
    { name: 'a top-level param', frame: (k) => `{"id":1,"method":"Runtime.evaluate","params":{"expression":"1",${JSON.stringify(k)}:{"expression":"x"}}}`, dropped: (k) => `params.${k}` },
    {
      name: 'a nested object key',
      frame: (k) => `{"id":1,"method":"Debugger.setBreakpoint","params":{"location":{"scriptId":"1","lineNumber":2,${JSON.stringify(k)}:1}}}`,
      dropped: (k) => `params.location.${k}`,
    },
    {
      name: 'a key inside an array item',
      frame: (k) => `{"id":1,"method":"Debugger.stepInto","params":{"skipList":[{"scriptId":"1",${JSON.stringify(k)}:[1]}]}}`,
      dropped: (k) => `params.skipList[0].${k}`,
    },
    {
      name: 'a key two objects deep inside an array item',
      frame: (k) => `{"id":1,"method":"Debugger.stepOver","params":{"skipList":[{"start":{"lineNumber":0,${JSON.stringify(k)}:null}}]}}`,
      dropped: (k) => `params.skipList[0].start.${k}`,
    },
  ];
  for (const { name, frame, dropped } of paramCases) {
    it(`drops every prototype name as ${name}, and the rebuilt params keep Object.prototype`, () => {
      for (const key of prototypeNames) {
        const decision = gate(frame(key));
        assert.equal(decision.action, 'forward', `${key}: ${JSON.stringify(decision)}`);
        if (decision.action !== 'forward') continue;
        assert.ok(decision.rewrites.includes(`${dropped(key)} dropped`), `${key}: ${decision.rewrites.join('; ')}`);
        assert.equal(Object.getPrototypeOf(decision.params), Object.prototype);
        assert.equal(JSON.stringify(decision.params).includes(`"${key}"`), false, `${key} is not forwarded`);
      }
    });
  }

  it('a "__proto__" key cannot smuggle a rewritten flag back in', () => {
    const decision = gate('{"id":1,"method":"Runtime.evaluate","params":{"expression":"1","__proto__":{"throwOnSideEffect":false,"includeCommandLineAPI":true}}}');
    assert.equal(decision.action, 'forward');
    if (decision.action !== 'forward') return;
    assert.equal(decision.params.throwOnSideEffect, true);
    assert.equal(decision.params.includeCommandLineAPI, undefined);
    assert.deepEqual(Object.keys(decision.params).sort(), ['disableBreaks', 'expression', 'throwOnSideEffect', 'timeout']);
  });

  const shapes: [string, string, string][] = [
    ['a frame with "__proto__" as a top-level field', '{"id":1,"method":"Runtime.enable","__proto__":{"id":2}}', 'frame.fields'],
    ['an id only on the prototype chain', '{"__proto__":{"id":1},"method":"Runtime.enable"}', 'frame.id'],
    ['a method only on the prototype chain', '{"id":1,"__proto__":{"method":"Runtime.enable"}}', 'frame.method'],
    ['params as an array', '{"id":1,"method":"Runtime.enable","params":[]}', 'params.shape'],
    ['a string for a nested object', '{"id":1,"method":"Debugger.setBreakpoint","params":{"location":"toString"}}', 'params.type'],
    ['null for a required param', '{"id":1,"method":"Runtime.releaseObject","params":{"objectId":null}}', 'params.type'],
    ['a required param named only on the prototype', '{"id":1,"method":"Runtime.releaseObject","params":{"__proto__":{"objectId":"1"}}}', 'params.required'],
    ['an array for skipList items', '{"id":1,"method":"Debugger.stepOver","params":{"skipList":[[1]]}}', 'params.type'],
    ['a number as the frame', '42', 'frame.shape'],
    ['a negative id', '{"id":-1,"method":"Runtime.enable"}', 'frame.id'],
    ['a method that is an object', '{"id":1,"method":{"toString":"Runtime.enable"}}', 'frame.method'],
  ];
  for (const [name, frame, rule] of shapes) {
    it(`refuses ${name} (${rule}) with a reason`, () => {
      const decision = gate(frame);
      assert.equal(decision.action, 'refuse', JSON.stringify(decision));
      if (decision.action !== 'refuse') return;
      assert.equal(decision.rule, rule);
      assert.match(decision.message, /refused/);
    });
  }

  it('methodAllowed answers false for prototype names', () => {
    for (const name of prototypeNames) assert.equal(methodAllowed(name, 'pause'), false, name);
  });

  it('a huge method name is refused with a bounded message', () => {
    const decision = gate({ id: 1, method: 'x'.repeat(3000) });
    assert.equal(decision.action, 'refuse');
    if (decision.action === 'refuse') assert.ok(decision.message.length < 300, String(decision.message.length));
  });
});

describe('CDP gate: expressions too deep to walk are refused, not walked', () => {
  const bigGate = (message: unknown) => gateClientFrame(JSON.stringify(message), false, 'pause', { maxFrameBytes: 1 << 20, evaluateTimeoutMs: 500 });
  const deep: [string, string][] = [
    ['a long sum', `1${'+1'.repeat(300)}`],
    ['nested parentheses', `${'('.repeat(300)}1${')'.repeat(300)}`],
    ['a long member chain', `a${'.b'.repeat(300)}`],
    ['nested arrays', `${'['.repeat(300)}${']'.repeat(300)}`],
    ['stacked unary operators', `${'!'.repeat(400)}a`],
  ];
  for (const [name, expression] of deep) {
    it(`refuses ${name} (${expression.length} characters) as a condition and in a logpoint, with the reason`, () => {
      const verdict = checkCondition(expression);
      assert.equal(verdict.ok, false);
      if (!verdict.ok) assert.equal(verdict.reason, 'nests deeper than 200 levels');
      const condition = bigGate({ id: 1, method: 'Debugger.setBreakpointByUrl', params: { lineNumber: 1, url: 'x', condition: expression } });
      assert.equal(condition.action, 'refuse');
      if (condition.action === 'refuse') assert.equal(condition.rule, 'condition.static');
      const logpoint = bigGate({ id: 2, method: 'Loupe.setLogpoint', params: { lineNumber: 1, url: 'x', logMessage: `v={${expression}}` } });
      assert.equal(logpoint.action, 'refuse');
      if (logpoint.action === 'refuse') assert.equal(logpoint.rule, 'logpoint.static');
    });
  }
  it('a sum of 200 terms is still fine', () => assert.equal(checkCondition(`1${'+1'.repeat(150)}`).ok, true));
});

describe('evaluation screen: a repeated expression (its parse kept) is judged by the policy in force', () => {
  const open = { allow: true, denyIdentifiers: [] as string[], maxResultBytes: 1 << 16 };
  it('gives each policy its own verdict for the same text, however often it is sent', () => {
    const text = 'user.password + process.env.HOME';
    for (let i = 0; i < 3; i++) {
      assert.equal(screenEvaluation(text, 'evaluate', open, (n) => n === 'password', true).kind, 'redact');
      assert.equal(screenEvaluation(text, 'evaluate', open, () => false, true).kind, 'allow');
      const denied = screenEvaluation(text, 'evaluate', { ...open, denyIdentifiers: ['process.env'] }, () => false, true);
      assert.equal(denied.kind, 'refuse');
      if (denied.kind === 'refuse') assert.equal(denied.rule, 'evaluation.denyIdentifiers');
    }
  });
  it('refuses a text too deep to walk every time, and one that does not parse every time', () => {
    const deep = `1${'+1'.repeat(300)}`;
    for (let i = 0; i < 2; i++) {
      const verdict = screenEvaluation(deep, 'evaluate', open, () => false, true);
      assert.equal(verdict.kind === 'refuse' && verdict.rule, 'evaluation.depth');
      const broken = screenEvaluation('a +', 'evaluate', open, () => false, true);
      assert.equal(broken.kind === 'refuse' && broken.rule, 'evaluation.parse');
    }
  });
});

describe('the target screen refuses requests while a client leaves its answers unread', () => {
  it('names the request, the bytes waiting and the bound', () => {
    const config = parseConfigText(stringify(basePolicy('127.0.0.1:9229')), process.cwd());
    const target = config.targets.app!;
    const grant = { grantId: 'g', sub: 'dev', target: 'app', mode: 'pause' } as any;
    const screen = new TargetScreen({ grant, target: () => target, redactor: new Redactor(target.redaction), limits: config.limits });
    const frame = Buffer.from(JSON.stringify({ id: 7, method: 'Debugger.getScriptSource', params: { scriptId: '1' } }));
    const refused = screen.decide(frame, false, { ending: false, auditAccepting: true, clientBacklog: 5_000_000 });
    assert.equal(refused.action, 'refuse');
    if (refused.action !== 'refuse') return;
    assert.equal(refused.refusal.id, 7);
    assert.equal(refused.refusal.rule, 'limits.clientBufferBytes');
    assert.match(refused.refusal.message, /^Debugger\.getScriptSource refused: 5000000 bytes of answers wait for this client to read them \(limits\.clientBufferBytes \d+\)$/);
    assert.notEqual(screen.decide(frame, false, { ending: false, auditAccepting: true, clientBacklog: 0 }).action, 'refuse');
  });
});
