// Copies of secrets the paused frame itself holds, read by a condition or a logpoint the broker decides alone (no
// pause is shown, no walk of the frame's own scopes has run): a local in a block copied from a parameter, a copy of a
// field of a local object, a copy of a field of `this`.
import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import { secretsShown, useGeneratedApp, whole } from '../support/generatedApp';
import { markerLine } from '../support/target';

const secrets = { param: 'PARAMSECRET-7575qq', local: 'OUTERLOCAL-6464pp', nested: 'LOCALNESTED-4242kk', self: 'THISONLY-5353mm' };

const app = [
  "'use strict';",
  'class Svc {',
  '  constructor(k) { this.apiKey = k; }',
  '  run(n, password) {',
  `    const token = '${secrets.local}';`,
  `    const creds = { password: '${secrets.nested}' };`,
  '    let out = n;',
  '    for (let i = 0; i < 1; i++) {',
  '      const a = password;',
  '      const b = token;',
  '      const shown = creds.password;',
  '      const copy = this.apiKey;',
  '      out += a.length + b.length + shown.length + copy.length; // BREAK:inner',
  '    }',
  '    return out;',
  '  }',
  '}',
  // Reached by no scope of the paused frames: only as `this`, through the bound function.
  `function start() { const svc = new Svc('${secrets.self}'); setInterval(svc.run.bind(svc, 1, '${secrets.param}'), 20); }`,
  'start();',
  "process.stdout.write('ready\\n');",
];

describe('copies of the paused frame’s own secrets, at a pause the broker decides alone', () => {
  const generated = useGeneratedApp('frame-copies-app.js', app);
  const leaked = (frames: string[], grant: string) => secretsShown(generated.broker, frames, grant, Object.values(secrets));

  for (const mode of ['pause', 'snapshot'] as const) {
    it(`a logpoint (${mode} mode) prints each copy as the marker`, async () => {
      const { client, grant } = await generated.broker.attach({ mode });
      const frames: string[] = [];
      client.socket.on('message', (data) => frames.push(data.toString()));
      await client.call('Debugger.enable');
      const { breakpointId } = await client.call('Loupe.setLogpoint', {
        lineNumber: markerLine(generated.app, 'inner'),
        urlRegex: 'frame-copies-app\\.js$',
        logMessage: 'a={a} b={b} shown={shown} copy={copy}',
      });
      const message = (await client.waitEvent('Loupe.logpoint', (e) => e.params.breakpointId === breakpointId && whole(e.params.message), 60_000)).params.message;
      await client.close();
      assert.match(message, /^a=\[redacted: [^\]]*\] b=\[redacted: [^\]]*\] shown=\[redacted: [^\]]*\] copy=\[redacted: [^\]]*\]$/, message);
      assert.deepEqual(await leaked(frames, grant.grantId), []);
    });
  }

  it('a condition on a copy decides nothing: its breakpoint is disabled as reading a redacted value', async () => {
    const { client, grant } = await generated.broker.attach({ mode: 'snapshot' });
    await client.call('Debugger.enable');
    const { breakpointId } = await client.call('Debugger.setBreakpointByUrl', {
      lineNumber: markerLine(generated.app, 'inner'),
      urlRegex: 'frame-copies-app\\.js$',
      condition: "copy.startsWith('THIS')",
    });
    const disabled = await generated.broker.waitForRecord('cdp.breakpoint.disabled', (e) => e.grant === grant.grantId && e.data.breakpointId === breakpointId, 30_000);
    assert.ok(disabled.data.field, JSON.stringify(disabled.data));
    assert.ok(!client.events.some((e) => e.method === 'Loupe.snapshotCaptured'), 'the condition decided a capture');
    await client.close();
  });
});

describe('a copy listed before its sensitive name in one read', () => {
  const secret = 'CLOSUREORDER-8686rr';
  const generated = useGeneratedApp('closure-order-app.js', [
    "'use strict';",
    'function make(k) { const hdr = k; const apiKey = k; return function call() { return hdr.length + apiKey.length; }; }',
    `const client = make('${secret}');`,
    'function work(n) {',
    '  return n + (client ? 1 : 0); // BREAK:work',
    '}',
    'setInterval(() => work(1), 20);',
    "process.stdout.write('ready\\n');",
  ]);

  it('is the marker in that same answer, not only in the next', async () => {
    const { client, grant } = await generated.broker.attach();
    const frames: string[] = [];
    client.socket.on('message', (data) => frames.push(data.toString()));
    await client.call('Debugger.enable');
    await client.call('Debugger.setBreakpointByUrl', { lineNumber: markerLine(generated.app, 'work'), urlRegex: 'closure-order-app\\.js$' });
    const paused = await client.waitEvent('Debugger.paused');
    const read = (objectId: string) => client.call('Runtime.getProperties', { objectId, ownProperties: true });
    try {
      const module = paused.params.callFrames[0].scopeChain.find((s: { type: string }) => s.type === 'closure' || s.type === 'module' || s.type === 'script');
      const made = (await read(module.object.objectId)).result.find((p: { name: string }) => p.name === 'client');
      const scopes = (await read(made.value.objectId)).internalProperties.find((p: { name: string }) => p.name === '[[Scopes]]');
      const first = (await read(scopes.value.objectId)).result.find((p: { name: string }) => p.name === '0');
      const held = (await read(first.value.objectId)).result.map((p: { name: string; value: { value?: unknown } }) => [p.name, p.value.value]);
      assert.match(String(Object.fromEntries(held).hdr), /^\[redacted: /, JSON.stringify(held));
    } finally {
      await client.close();
    }
    assert.deepEqual(await secretsShown(generated.broker, frames, grant.grantId, [secret]), []);
  });
});

describe('secrets behind a private field, a WeakRef and a Proxy', () => {
  const held = { priv: 'PRIVFIELD-3333cccc', weak: 'WEAKREF-6666eeee', proxy: 'PROXY-9999hhhh' };
  const generated = useGeneratedApp('hidden-holders-app.js', [
    "'use strict';",
    `class Vault { #token = '${held.priv}'; peek() { return this.#token; } }`,
    'const vault = new Vault();',
    'const aliasPriv = vault.peek();',
    `const holder = { apiKey: '${held.weak}' };`,
    'globalThis.keepAlive = holder;',
    'const ref = new WeakRef(holder);',
    'const aliasWeak = ref.deref().apiKey;',
    `const proxied = new Proxy({ secret: '${held.proxy}' }, {});`,
    'const aliasProxy = proxied.secret;',
    'function work(n) {',
    '  return n + aliasPriv.length + aliasWeak.length + aliasProxy.length + (vault && ref && proxied ? 1 : 0); // BREAK:work',
    '}',
    'setInterval(() => work(1), 20);',
    "process.stdout.write('ready\\n');",
  ]);

  it('the walk follows them: their aliases show the marker', async () => {
    const { client, grant } = await generated.broker.attach();
    const frames: string[] = [];
    client.socket.on('message', (data) => frames.push(data.toString()));
    await client.call('Debugger.enable');
    await client.call('Debugger.setBreakpointByUrl', { lineNumber: markerLine(generated.app, 'work'), urlRegex: 'hidden-holders-app\\.js$' });
    const paused = await client.waitEvent('Debugger.paused');
    const callFrameId = paused.params.callFrames[0].callFrameId;
    const shown: string[] = [];
    for (const expression of ['aliasPriv', 'aliasWeak', 'aliasProxy'])
      shown.push(`${expression}: ${JSON.stringify((await client.call('Debugger.evaluateOnCallFrame', { callFrameId, expression })).result.value)}`);
    await client.close();
    assert.ok(
      shown.every((s) => s.includes('[redacted: ')),
      shown.join('; '),
    );
    assert.deepEqual(await secretsShown(generated.broker, frames, grant.grantId, Object.values(held)), []);
  });
});
