import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { pauseLearningLimits } from '../../broker/session/exceptionLearning';
import { secretsShown, useGeneratedApp, whole } from '../support/generatedApp';
import { markerLine } from '../support/target';

const secret = 'LARGEMODULE-secret-93';
/** More bindings than one pause reads, each an object holding another: a walk cut short leaves them half read. */
const crowd = pauseLearningLimits.reads + 60;

/**
 * A module whose secret sits three objects below a binding with an innocent name, declared after the crowd, and an
 * alias of it under an innocent name: only a walk that reaches `settings.nested.deeper.apiKey` knows the alias's value.
 */
const names = Array.from({ length: crowd }, (_, i) => `m${i}`);
const largeApp = [
  "'use strict';",
  // First in the scope's list, which a capture cuts after its first properties.
  'let alias;',
  ...names.map((name, i) => `const ${name} = { n: ${i}, inner: { v: ${i} } };`),
  `const settings = { nested: { deeper: { apiKey: '${secret}' } } };`,
  'alias = settings.nested.deeper.apiKey;',
  'let counter = 0;',
  'function work(n) {',
  `  const sum = n + ${names.map((name) => `${name}.inner.v`).join(' + ')} + (n < 0 ? settings.nested.deeper.apiKey.length : 0);`,
  '  const copy = alias;',
  '  return sum + copy.length; // BREAK:work',
  '}',
  'setInterval(() => { counter++; work(counter); }, 20);',
  "process.stdout.write('ready\\n');",
];

describe('a module holding more objects than one pause reads', () => {
  const generated = useGeneratedApp('large-module-app.js', largeApp);

  const noSecretLeft = async (frames: string[], grant: string) => assert.deepEqual(await secretsShown(generated.broker, frames, grant, [secret]), []);

  it('reads it whole at a pause shown to the client: an alias of a secret deep below an innocent name shows the marker', async () => {
    const { client, grant } = await generated.broker.attach();
    const frames: string[] = [];
    client.socket.on('message', (data) => frames.push(data.toString()));
    await client.call('Debugger.enable');
    await client.call('Debugger.setBreakpointByUrl', { lineNumber: markerLine(generated.app, 'work'), urlRegex: 'large-module-app\\.js$' });
    const paused = await client.waitEvent('Debugger.paused');
    const callFrameId = paused.params.callFrames[0].callFrameId;
    const shown: Record<string, unknown>[] = [];
    for (const expression of ['alias', 'settings.nested.deeper.apiKey']) shown.push((await client.call('Debugger.evaluateOnCallFrame', { callFrameId, expression })).result);
    // Closed before judging: a session left paused would hold the target for the tests after this one.
    await client.close();
    for (const result of shown) assert.match(String(result.value), /^\[redacted: /, `shown: ${JSON.stringify(result)}`);
    await noSecretLeft(frames, grant.grantId);
  });

  for (const mode of ['pause', 'snapshot'] as const) {
    it(`decides no logpoint (${mode} mode) before the walk, carried on across hits, has read it: then its message shows the marker`, async () => {
      const { client, grant } = await generated.broker.attach({ mode });
      const frames: string[] = [];
      client.socket.on('message', (data) => frames.push(data.toString()));
      await client.call('Debugger.enable');
      const set = await client.call('Loupe.setLogpoint', { lineNumber: markerLine(generated.app, 'work'), urlRegex: 'large-module-app\\.js$', logMessage: 'alias={alias}' });
      const { breakpointId } = set;
      const message = await client.waitEvent('Loupe.logpoint', (e) => e.params.breakpointId === breakpointId && whole(e.params.message), 60_000);
      assert.match(message.params.message, /^alias=\[redacted: /, `the message was ${JSON.stringify(message.params.message)}`);
      // The hits before were skipped, the client told why.
      const notice = client.events.find((e) => e.method === 'Loupe.snapshotThrottled' && e.params.breakpointId === breakpointId);
      assert.match(String(notice?.params.reason), /still being learned/, `no notice of the skipped hits: ${JSON.stringify(notice)}`);
      await sleep(300);
      await client.close();
      await noSecretLeft(frames, grant.grantId);
    });
  }

  it('captures nothing (snapshot mode) before the walk has read it: then the capture shows the marker', async () => {
    const { client, grant } = await generated.broker.attach({ mode: 'snapshot' });
    const frames: string[] = [];
    client.socket.on('message', (data) => frames.push(data.toString()));
    await client.call('Debugger.enable');
    await client.call('Debugger.setBreakpointByUrl', { lineNumber: markerLine(generated.app, 'work'), urlRegex: 'large-module-app\\.js$' });
    // A capture its time budget cut before the locals (a loaded host) shows no `copy`: the next one does.
    const captured = await client.waitEvent('Loupe.snapshotCaptured', (e) => JSON.stringify(e.params.frames).includes('"name":"copy"'), 60_000);
    const text = JSON.stringify(captured.params.frames);
    assert.match(text, /"name":"copy","value":\{"type":"string","value":"\[redacted: /, `the capture holds no copy of it: ${text.slice(0, 500)}`);
    assert.ok(!text.includes(secret), 'the capture showed the value');
    await client.close();
    await noSecretLeft(frames, grant.grantId);
  });
});

const timerSecret = 'TIMERCLASS-secret-31';
const argsSecret = 'TIMERARGS-secret-42';
const closureSecret = 'CLOSURESECRET-2718';
const junk = Array.from({ length: 100 }, (_, i) => `j${i}`);
/**
 * A module whose secrets sit where the walk's shortcuts pass: on an app's own class named like Node's timers, in a
 * real timer's arguments; beside an object too large to read (its read fails), and a crowd of small objects.
 */
const edgeApp = [
  "'use strict';",
  'class Timeout { constructor(ms, apiKey) { this.ms = ms; this.apiKey = apiKey; } }',
  `const upstream = new Timeout(5000, '${timerSecret}');`,
  `const poller = setInterval(() => {}, 100000, { apiKey: '${argsSecret}' });`,
  'const index = {};',
  "for (let i = 0; i < 40000; i++) index['key-number-' + i] = i;",
  ...junk.map((name, i) => `const ${name} = { n: ${i} };`),
  'const aliasA = upstream.apiKey;',
  'const aliasB = poller._timerArgs[0].apiKey;',
  'function makeClient(name, apiKey) {',
  '  const hdr = apiKey;',
  '  return function call(n) {',
  '    const y = n + hdr.length + name.length + (n < 0 ? apiKey.length : 0);',
  '    return y; // BREAK:client',
  '  };',
  '}',
  "const demoClient = makeClient('demo', 'public-demo-value');",
  `const liveClient = makeClient('live', '${closureSecret}');`,
  'let counter = 0;',
  'function work(n) {',
  `  const x = n + aliasA.length + aliasB.length + upstream.ms + (poller ? 1 : 0) + index['key-number-1'] + ${junk.map((name) => `${name}.n`).join(' + ')}; // BREAK:work`,
  '  return x; // BREAK:return',
  '}',
  'setInterval(() => { counter++; work(counter); (counter % 3 ? demoClient : liveClient)(counter); }, 20);',
  "process.stdout.write('ready\\n');",
];

describe('secrets the walk reaches past its shortcuts', () => {
  const generated = useGeneratedApp('walk-edges-app.js', edgeApp);
  const leaked = (frames: string[], grant: string) => secretsShown(generated.broker, frames, grant, [timerSecret, argsSecret, closureSecret]);

  it('a logpoint (snapshot mode) beside an object too large to read, on an app class named Timeout and a timer’s arguments: markers', async () => {
    const { client, grant } = await generated.broker.attach({ mode: 'snapshot' });
    const frames: string[] = [];
    client.socket.on('message', (data) => frames.push(data.toString()));
    await client.call('Debugger.enable');
    const { breakpointId } = await client.call('Loupe.setLogpoint', { lineNumber: markerLine(generated.app, 'work'), urlRegex: 'walk-edges-app\\.js$', logMessage: 'a={aliasA} b={aliasB}' });
    // Before: the large object's read failed at every hit and the walk never ended (no message in 60 s).
    const message = await client.waitEvent('Loupe.logpoint', (e) => e.params.breakpointId === breakpointId && whole(e.params.message), 60_000);
    assert.match(message.params.message, /^a=\[redacted: .*\] b=\[redacted: /, `the message was ${JSON.stringify(message.params.message)}`);
    await client.close();
    assert.deepEqual(await leaked(frames, grant.grantId), []);
  });

  it('a pause at a function’s return (pause mode) walks the module too: the aliases show the marker', async () => {
    const { client, grant } = await generated.broker.attach();
    const frames: string[] = [];
    client.socket.on('message', (data) => frames.push(data.toString()));
    await client.call('Debugger.enable');
    await client.call('Debugger.setBreakpointByUrl', { lineNumber: markerLine(generated.app, 'return'), urlRegex: 'walk-edges-app\\.js$' });
    const paused = await client.waitEvent('Debugger.paused');
    const callFrameId = paused.params.callFrames[0].callFrameId;
    for (const expression of ['aliasA', 'aliasB']) {
      const { result } = await client.call('Debugger.evaluateOnCallFrame', { callFrameId, expression });
      assert.match(String(result.value), /^\[redacted: /, `${expression} showed ${JSON.stringify(result)}`);
    }
    await client.call('Debugger.resume');
    await client.close();
    assert.deepEqual(await leaked(frames, grant.grantId), []);
  });

  it('a second closure made by one function (its scope’s place already read): a logpoint’s copy of its secret shows the marker', async () => {
    // The session's first hit in the first closure ('demo'): the walk reads that closure's scope and marks its place
    // read; the second closure ('live') is then never walked, and a logpoint reads its scope in snapshot mode.
    for (let attempt = 0; ; attempt++) {
      const { client, grant } = await generated.broker.attach({ mode: 'snapshot' });
      const frames: string[] = [];
      client.socket.on('message', (data) => frames.push(data.toString()));
      await client.call('Debugger.enable');
      const { breakpointId } = await client.call('Loupe.setLogpoint', { lineNumber: markerLine(generated.app, 'client'), urlRegex: 'walk-edges-app\\.js$', logMessage: '{name} hdr={hdr}' });
      const messages = async (n: number) => {
        const texts: string[] = [];
        while (texts.length < n) texts.push((await client.waitEvent('Loupe.logpoint', (e) => e.params.breakpointId === breakpointId, 30_000)).params.message);
        return texts;
      };
      const [first] = await messages(1);
      if (!first!.startsWith('demo ')) {
        assert.ok(attempt < 5, 'the first message was never from the demo closure');
        await client.close();
        continue;
      }
      const later = await messages(5);
      await client.close();
      assert.ok(
        later.some((m) => m.startsWith('live hdr=[redacted: ')),
        later.join('; '),
      );
      assert.deepEqual(await leaked(frames, grant.grantId), []);
      return;
    }
  });
});
