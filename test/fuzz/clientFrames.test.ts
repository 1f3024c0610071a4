import { strict as assert } from 'node:assert';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { describeAllowlist } from '../../broker/gate/cdpGate';
import { CdpClient } from '../support/cdpClient';
import { assertAllWell, checkProperty, deepJson, fuzzFrames, fuzzSeed, jsonArb, keyArb, prototypeNames, startHttpTarget, type HttpTarget } from '../support/fuzz';
import { basePolicy, startTestBroker, type TestBroker } from '../support/testBroker';
import { waitFor, within } from '../support/wait';

/**
 * Property: whatever frames a client sends, the broker answers each one it can route (a result, or a refusal
 * that says why), no frame faults its session, the broker stays up, another user's session is unaffected and
 * the target keeps serving. Frames go through a live broker to a real target; each batch is one session.
 */
const total = fuzzFrames(2500);
const batchSize = 250;
const seed = fuzzSeed();

const allowed = describeAllowlist().map((m) => m.method);
const refusedKnown = [
  'Debugger.setScriptSource',
  'Runtime.callFunctionOn',
  'Runtime.compileScript',
  'NodeWorker.sendMessageToWorker',
  'HeapProfiler.takeHeapSnapshot',
  'Runtime.terminateExecution',
  'Debugger.setVariableValue',
];
const paramNames = [
  'expression',
  'objectId',
  'callFrameId',
  'lineNumber',
  'url',
  'urlRegex',
  'scriptId',
  'location',
  'condition',
  'logMessage',
  'breakpointId',
  'skipList',
  'start',
  'end',
  'patterns',
  'positions',
  'state',
  'maxDepth',
  'query',
  'isRegex',
  'returnByValue',
  'generatePreview',
  'throwOnSideEffect',
  'includeCommandLineAPI',
  'timeout',
  'contextId',
  'stackTraceId',
  'id',
  'debuggerId',
];

const methodArb = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom(...allowed) },
  { weight: 2, arbitrary: fc.constantFrom(...refusedKnown) },
  { weight: 2, arbitrary: fc.constantFrom(...prototypeNames) },
  { weight: 1, arbitrary: fc.string({ maxLength: 30 }) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 30 }) },
  { weight: 1, arbitrary: fc.constantFrom(...allowed).map((m) => `${m}\u0000`) },
);

/** Params the allowlist knows, with values of every JSON type: mostly well-formed, often not. */
const plausibleParams = fc.dictionary(fc.constantFrom(...paramNames), jsonArb(paramNames), { maxKeys: 5 });
const paramsArb = fc.oneof(
  { weight: 4, arbitrary: plausibleParams },
  { weight: 2, arbitrary: fc.dictionary(keyArb(paramNames), jsonArb(paramNames), { maxKeys: 6 }) },
  { weight: 1, arbitrary: jsonArb(paramNames) },
  {
    weight: 1,
    arbitrary: fc.record({
      expression: fc.constantFrom('1+1', 'this', 'local.n', 'process.env', 'globalThis.constructor', '({}).__proto__', '[].constructor.constructor("return 1")()'),
      returnByValue: fc.boolean(),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      lineNumber: fc.integer({ min: -1, max: 40 }),
      url: fc.constantFrom('file:///nope.js', ''),
      urlRegex: fc.constantFrom('http-app\\.js$', '(', '.*'),
      condition: fc.constantFrom('n > 1', 'toString', '__proto__', '))', 'while(1);'),
    }),
  },
);

const idArb = fc.oneof({ weight: 8, arbitrary: fc.integer({ min: 1, max: 1e9 }) }, { weight: 1, arbitrary: jsonArb([]) });

type Outgoing = { text: string | Buffer; binary: boolean; id?: number };

const messageArb: fc.Arbitrary<Outgoing> = fc
  .record({
    id: idArb,
    method: methodArb,
    params: paramsArb,
    hasParams: fc.boolean(),
    extra: fc.option(fc.dictionary(keyArb(['sessionId', 'id']), jsonArb([]), { minKeys: 1, maxKeys: 2 }), { freq: 10 }),
  })
  .map(({ id, method, params, hasParams, extra }) => {
    const message: Record<string, unknown> = {};
    // Defined, so a "__proto__" key is sent as a key.
    const put = (key: string, value: unknown) => Object.defineProperty(message, key, { value, enumerable: true, configurable: true, writable: true });
    for (const [k, v] of Object.entries(extra ?? {})) put(k, v);
    put('id', id);
    put('method', method);
    if (hasParams) put('params', params);
    // Only a non-negative safe integer id can be routed back; other ids are refused with an id-less error.
    return { text: JSON.stringify(message), binary: false, ...(Number.isSafeInteger(id) && (id as number) >= 0 ? { id: id as number } : {}) };
  });

const rawArb: fc.Arbitrary<Outgoing> = fc.oneof(
  fc.string({ maxLength: 60 }).map((text) => ({ text, binary: false })),
  fc.constantFrom('null', '[]', '42', '"x"', '{', '{"id":1,', '[{"id":1,"method":"Runtime.enable"}]', '{"id":1,"method":"Runtime.enable"}garbage', '\u0000').map((text) => ({ text, binary: false })),
  fc.uint8Array({ maxLength: 64 }).map((bytes) => ({ text: Buffer.from(bytes), binary: true })),
  fc.integer({ min: 1, max: 1e6 }).map((id) => ({ text: `{"id":${id},"method":"Runtime.evaluate","params":{"expression":"1","x":${deepJson(50_000)}}}`, binary: false, id })),
  fc.integer({ min: 1, max: 1e6 }).map((id) => ({ text: `{"id":${id},"method":"Debugger.setBreakpoint","params":{"location":${deepJson(20_000, 'location')}}}`, binary: false, id })),
  fc.integer({ min: 1, max: 1e6 }).map((id) => ({ text: `{"id":${id},"method":"Debugger.setBreakpoint","params":{"location":${deepJson(20_000, '__proto__')}}}`, binary: false, id })),
  fc
    .integer({ min: 1, max: 1e6 })
    .map((id) => ({ text: JSON.stringify({ id, method: 'Runtime.evaluate', params: { expression: `(${'('.repeat(30_000)}1${')'.repeat(30_000)})` } }), binary: false, id })),
  fc
    .integer({ min: 1, max: 1e6 })
    .map((id) => ({ text: JSON.stringify({ id, method: 'Loupe.setLogpoint', params: { lineNumber: 1, url: 'x', logMessage: '{'.repeat(5000) + 'a' + '}'.repeat(5000) } }), binary: false, id })),
  // Over the frame limit (1 MiB by default): refused by size, answered by the sniffed id.
  fc.integer({ min: 1, max: 1e6 }).map((id) => ({ text: JSON.stringify({ id, method: 'Runtime.evaluate', params: { expression: `"${'x'.repeat(1_200_000)}"` } }), binary: false, id })),
  fc
    .integer({ min: 1, max: 1e6 })
    .map((id) => ({ text: JSON.stringify({ id, method: 'Runtime.evaluate', params: { expression: `'${'y'.repeat(200_000)}'.length`, returnByValue: true } }), binary: false, id })),
);

const frameArb = fc.oneof({ weight: 12, arbitrary: messageArb }, { weight: 2, arbitrary: rawArb });

describe(`fuzz: ${total} generated client frames through a live broker to a real target (seed ${seed})`, () => {
  let target: HttpTarget;
  let broker: TestBroker;
  let victim: CdpClient;
  const faults: string[] = [];
  before(async () => {
    target = await startHttpTarget();
    const policy = basePolicy(target.inspector);
    policy.targets.app.access[0].maxDuration = '12h';
    broker = await startTestBroker(policy, { log: (line) => (line.startsWith('fault in') ? faults.push(line) : undefined) });
    // A full run outlasts the default grant: the victim holds a long one.
    victim = (await broker.attach({ durationSeconds: 12 * 3600 })).client;
    await victim.call('Runtime.enable');
  });
  after(async () => {
    await victim?.close();
    await broker?.close();
    await target?.stop();
  });

  it('every frame is answered or refused, no session faults, the broker, the victim and the target carry on', async () => {
    let round = 0;
    let sent = 0;
    let answered = 0;
    const started = Date.now();
    await checkProperty(
      fc.asyncProperty(fc.array(frameArb, { minLength: batchSize, maxLength: batchSize }), fc.constantFrom('pause', 'snapshot'), fc.boolean(), async (frames, mode, badUtf8) => {
        round++;
        const { client } = await broker.attach({ mode });
        const closedEarly = client.closed.then((c) => `the fuzz session was closed (${c.code} ${c.reason})`);
        const answeredIds = new Set<number>();
        client.socket.on('message', (data) => {
          const id = (JSON.parse(data.toString()) as { id?: unknown }).id;
          if (typeof id === 'number') answeredIds.add(id);
        });
        for (const frame of frames) {
          sent++;
          client.socket.send(frame.text, { binary: frame.binary });
        }
        // Once the sentinel is answered, everything before it has reached the gate.
        const sentinel = 2_000_000_000 + round;
        const done = client.sendRaw(JSON.stringify({ id: sentinel, method: 'Runtime.getHeapUsage' }), sentinel, 60_000);
        const outcome = await Promise.race([done.then(() => 'ok'), closedEarly]);
        assert.equal(outcome, 'ok');
        // Answers may overtake each other (an evaluation is sent to the target a few ticks after a plain request).
        const missing = () => frames.filter((f) => f.id !== undefined && !answeredIds.has(f.id));
        await waitFor(() => missing().length === 0, { what: 'an answer to every frame with an id', timeoutMs: 15_000, intervalMs: 20 }).catch(() => undefined); // asserted below
        const unanswered = missing();
        assert.deepEqual(
          unanswered.map((f) => String(f.text).slice(0, 200)),
          [],
          'every frame with an id got an answer with that id',
        );
        answered += frames.length - unanswered.length;
        assert.deepEqual(faults, [], 'no client frame faulted its session');
        assert.equal(broker.broker.faults, 0);
        if (badUtf8) {
          // A text frame that is not UTF-8 is a protocol error: the WebSocket layer closes that connection (1007).
          client.socket.send(Buffer.from([0x7b, 0x22, 0x69, 0x64, 0x22, 0x3a, 0x31, 0xff, 0xfe, 0xc3, 0x28, 0x7d]), { binary: false });
          sent++;
          assert.equal((await within(client.closed, 10_000, { code: -1 })).code, 1007);
        } else await client.close();
        await assertAllWell(broker, victim, target, round);
      }),
      { numRuns: Math.ceil(total / batchSize), seed, endOnFailure: true },
    );
    const seconds = (Date.now() - started) / 1000;
    process.stdout.write(
      `# client fuzz: ${sent} frames in ${round} sessions, ${answered} frames answered or refused by id, ${seconds.toFixed(1)} s (${Math.round(sent / seconds)} frames/s), seed ${seed}\n`,
    );
    assert.ok(sent >= total);
  });
});
