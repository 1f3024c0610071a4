// Secrets reached other than by their name: a redacted container's object as `this` (evaluation, a read of it, a
// condition, a logpoint), a redacted parameter as arguments[i] in a block, process.env listed through the process
// object or an app's alias of it, a value returned from deep below a frame's scopes or from a global, and a
// container's literals in the script's source. Real broker, real target: nothing of any secret reaches the client.
import { strict as assert } from 'node:assert';
import { join } from 'node:path';
import { after, afterEach, before, describe, it } from 'node:test';
import type { CdpClient } from '../support/cdpClient';
import { fixtures, markerLine, startTarget, type TargetProcess } from '../support/target';
import { basePolicy, startTestBroker, type TestBroker } from '../support/testBroker';

const app = join(fixtures, 'container-app.js');
const envSecret = 'postgres://app:CNTSECRET-env@db.internal/orders';
const secret = /CNTSECRET|kq7CNT/;
// The 3-digit cvv, as a value: `123` in an answer, a list or a serialization.
const cvv = /"value":123\b|[[,]123[\],]|\\"123\\"/;
const urlRegex = 'container-app\\.js$';

function assertHidden(what: string, value: unknown): void {
  const text = JSON.stringify(value);
  assert.ok(!secret.test(text), `${what} shows a secret: ${text.slice(0, 600)}`);
}

describe('secrets reached other than by their name stay hidden (real broker, real target)', () => {
  let target: TargetProcess;
  let broker: TestBroker;
  before(async () => {
    target = await startTarget(app, { ORDERS_DSN: envSecret });
    broker = await startTestBroker(basePolicy(target.inspector));
  });
  after(async () => {
    await broker.close();
    await target.stop();
  });

  // A test that fails leaves no session behind: its breakpoints would pause the next tests' target elsewhere.
  const open: CdpClient[] = [];
  afterEach(async () => {
    await Promise.all(open.splice(0).map((client) => client.close()));
  });

  async function session(mode: 'pause' | 'snapshot' = 'pause'): Promise<{ client: CdpClient; frames: string[] }> {
    const { client } = await broker.attach({ mode });
    open.push(client);
    const frames: string[] = [];
    client.socket.on('message', (data) => frames.push(data.toString()));
    await client.call('Runtime.enable');
    await client.call('Debugger.enable');
    return { client, frames };
  }

  async function pausedAt(client: CdpClient, marker: string) {
    const { breakpointId } = await client.call('Debugger.setBreakpointByUrl', { lineNumber: markerLine(app, marker), urlRegex });
    const paused = await client.waitEvent('Debugger.paused');
    await client.call('Debugger.removeBreakpoint', { breakpointId });
    return paused.params.callFrames as any[];
  }

  it('the object of a redacted container, as `this` in its method: read, evaluated, listed', async () => {
    const { client, frames } = await session();
    const [top] = await pausedAt(client, 'describe');
    const props = await client.call('Runtime.getProperties', { objectId: top.this.objectId, ownProperties: true, generatePreview: true });
    assert.ok(props.result.some((p: any) => p.name === 'key'));
    for (const expression of ['this.key', 'JSON.stringify(this)', 'Object.values(this)', 'this.key.length', "this.key.startsWith('kq7')", '`${this.user}`']) {
      const answer = await client.send('Debugger.evaluateOnCallFrame', { callFrameId: top.callFrameId, expression, returnByValue: true });
      assertHidden(expression, answer);
    }
    await client.call('Debugger.resume');
    await client.close();
    assertHidden('what the client received', frames);
  });

  it('a condition or a logpoint on `this` of a redacted container: never decides a pause, never shows it', async () => {
    for (const mode of ['pause', 'snapshot'] as const) {
      const { client, frames } = await session(mode);
      const line = markerLine(app, 'describe');
      await client.call('Debugger.setBreakpointByUrl', { lineNumber: line, urlRegex, condition: "this.key.startsWith('kq7')" });
      const disabled = await client.waitEvent('Loupe.breakpointDisabled');
      assert.match(disabled.params.reason, /redacted/);
      await client.call('Loupe.setLogpoint', { lineNumber: line, urlRegex, logMessage: 'key={this.key} json={JSON.stringify(this)}' });
      const logged = await client.waitEvent('Loupe.logpoint');
      assert.match(logged.params.message, /^key=\[redacted/);
      await client.close();
      assert.ok(!frames.some((f) => f.includes('"Debugger.paused"') || f.includes('Loupe.snapshotCaptured')), `${mode}: the condition decided a pause`);
      assertHidden(`${mode}: what the client received`, frames);
    }
    await broker.waitForRecord('session.ended');
    assertHidden('the audit records', broker.records);
  });

  it("a snapshot capture, the session's first in that code, of a method of a redacted container: its `this` shows none of it", async () => {
    const base = basePolicy(target.inspector);
    // A generous budget, so a loaded machine still reads `this` whole.
    const snapshots = await startTestBroker({ ...base, targets: { app: { ...base.targets.app, snapshot: { timeBudgetMs: 1000 } } } });
    try {
      const { client } = await snapshots.attach({ mode: 'snapshot' });
      await client.call('Debugger.enable');
      await client.call('Debugger.setBreakpointByUrl', { lineNumber: markerLine(app, 'describe'), urlRegex });
      const captured = await client.waitEvent('Loupe.snapshotCaptured');
      const self = captured.params.frames[0].this;
      assert.ok(
        self.properties.some((p: { name: string }) => p.name === 'key'),
        JSON.stringify(self),
      );
      assertHidden('the capture', captured.params);
      await client.close();
      await snapshots.waitForRecord('snapshot.captured');
      assertHidden('the audit records', snapshots.records);
    } finally {
      await snapshots.close();
    }
  });

  it('a redacted parameter as arguments[i], paused in a block of its function', async () => {
    const { client, frames } = await session();
    const [top] = await pausedAt(client, 'block');
    assert.equal(top.scopeChain[0].type, 'block');
    for (const expression of ['cvv', 'arguments[1]', 'arguments[1] === 123', 'arguments[1] > 100', '[...arguments]', 'JSON.stringify(arguments)']) {
      const answer = await client.send('Debugger.evaluateOnCallFrame', { callFrameId: top.callFrameId, expression, returnByValue: true });
      assert.match(JSON.stringify(answer), /\[redacted: cvv\]/, expression);
      assert.doesNotMatch(JSON.stringify(answer), cvv, expression);
    }
    const local = await client.call('Runtime.getProperties', { objectId: top.scopeChain[1].object.objectId, ownProperties: true });
    const args = local.result.find((p: any) => p.name === 'arguments');
    assert.equal(args.value.type, 'string', 'the arguments object is not handed out');
    await client.call('Debugger.resume');
    await client.close();
    assertHidden('what the client received', frames);
  });

  it('a value beside a sensitive name in a list (req.rawHeaders, [name, value] pairs): evaluated, listed, previewed', async () => {
    const { client, frames } = await session();
    const [top] = await pausedAt(client, 'pairs');
    const evaluate = async (expression: string) => JSON.stringify(await client.send('Debugger.evaluateOnCallFrame', { callFrameId: top.callFrameId, expression, returnByValue: true }));
    for (const expression of ['rawHeaders[3]', 'pairs[0][1]', 'rawHeaders.join(" ")', 'JSON.stringify(pairs)', 'Object.fromEntries(pairs)', 'rawHeaders.slice(2)', '[...rawHeaders].reverse()']) {
      assert.match(await evaluate(expression), /\[redacted: /, expression);
    }
    // What is not beside a sensitive name shows, and a list of names holds no secret.
    assert.match(await evaluate('rawHeaders[1]'), /"value":"example\.com"/);
    assert.match(await evaluate('rawHeaders[5]'), /"value":"application\/json"/);
    assert.match(await evaluate('fieldNames[1]'), /"value":"token"/);
    // Turned into text, a function is refused by its name: the refusal (answer and record) never quotes its source.
    for (const expression of ['`${connectDb}`', "connectDb + ''"]) assert.match(await evaluate(expression), /turning the function connectDb into a primitive/, expression);
    // The debugger's own reads: the scope's previews, then the lists themselves.
    const local = await client.call('Runtime.getProperties', { objectId: top.scopeChain[0].object.objectId, ownProperties: true, generatePreview: true });
    const raw = local.result.find((p: any) => p.name === 'rawHeaders').value;
    assert.equal(raw.preview.properties.find((p: any) => p.name === '3').value, '[redacted: X-Api-Key]');
    assert.equal(raw.preview.properties.find((p: any) => p.name === '1').value, 'example.com');
    const listed = await client.call('Runtime.getProperties', { objectId: raw.objectId, ownProperties: true });
    assert.equal(listed.result.find((p: any) => p.name === '3').value.value, '[redacted: X-Api-Key]');
    const pairs = local.result.find((p: any) => p.name === 'pairs').value;
    const first = (await client.call('Runtime.getProperties', { objectId: pairs.objectId, ownProperties: true, generatePreview: true })).result.find((p: any) => p.name === '0').value;
    assert.equal(first.preview.properties.find((p: any) => p.name === '1').value, '[redacted: authorization]');
    await client.call('Debugger.resume');
    await client.close();
    assertHidden('what the client received', frames);
    assertHidden('the audit records', broker.records);
  });

  it('process.env through the process object: listed, spread, serialized, through an alias, or read by the debugger', async () => {
    const { client, frames } = await session();
    for (const expression of [
      'Object.entries(process).find(([k]) => k === "env")[1].ORDERS_DSN',
      '({...process}).env.ORDERS_DSN',
      'JSON.stringify(process)',
      'Object.values(process)',
      'proc.env.ORDERS_DSN',
    ]) {
      const answer = await client.send('Runtime.evaluate', { expression });
      assertHidden(expression, answer);
      assert.match(JSON.stringify(answer), /denied by this target's policy|not defined/, expression);
    }
    // Its keys still list (env among them), as everyday reads of the process object still work.
    assert.ok((await client.call('Runtime.evaluate', { expression: 'Object.keys(process)', returnByValue: true })).result.value.includes('env'));
    assert.equal((await client.call('Runtime.evaluate', { expression: 'process.version', returnByValue: true })).result.value, process.version);
    const processObject = await client.call('Runtime.evaluate', { expression: 'process' });
    const listed = await client.call('Runtime.getProperties', { objectId: processObject.result.objectId, ownProperties: true, generatePreview: true });
    const env = listed.result.find((p: any) => p.name === 'env');
    assert.equal(env.value.value, "[denied by this target's policy: process.env]");
    // Paused where the app's alias is in scope: its listing is the process object's too.
    const frames2 = await pausedAt(client, 'describe');
    const closure = frames2[1].scopeChain.find((s: any) => s.type === 'closure');
    const alias = (await client.call('Runtime.getProperties', { objectId: closure.object.objectId, ownProperties: true })).result.find((p: any) => p.name === 'proc');
    if (alias) {
      const viaAlias = await client.call('Runtime.getProperties', { objectId: alias.value.objectId, ownProperties: true });
      assert.equal(viaAlias.result.find((p: any) => p.name === 'env').value.type, 'string');
      assertHidden('proc.env by the alias in scope', await client.send('Debugger.evaluateOnCallFrame', { callFrameId: frames2[1].callFrameId, expression: 'proc.env.ORDERS_DSN' }));
    }
    await client.call('Debugger.resume');
    await client.close();
    assertHidden('what the client received', frames);
  });

  it('a value returned from four objects below a scope, or from a global, is redacted in the pause at its return', async () => {
    const { client, frames } = await session();
    for (const marker of ['deep', 'global']) {
      await pausedAt(client, marker);
      await client.call('Debugger.stepOver');
      const stepped = await client.waitEvent('Debugger.paused', (m) => m.params.callFrames[0].returnValue !== undefined);
      assert.match(stepped.params.callFrames[0].returnValue.value, /^\[redacted/, marker);
      await client.call('Debugger.resume');
    }
    await client.close();
    assertHidden('what the client received', frames);
  });

  it("a redacted container's literals in the script's source and its search; its method's code stays", async () => {
    const { client, frames } = await session();
    const script = await client.waitEvent('Debugger.scriptParsed', (m) => /container-app\.js$/.test(m.params.url));
    const { scriptSource } = await client.call('Debugger.getScriptSource', { scriptId: script.params.scriptId });
    assert.match(scriptSource, /key: '\[redacted: credentials\]'/);
    assert.match(scriptSource, /return this\.user\.length; \/\/ BREAK:describe/);
    assert.equal(scriptSource.split('\n').length, (await import('node:fs')).readFileSync(app, 'utf8').split('\n').length);
    const found = await client.call('Debugger.searchInContent', { scriptId: script.params.scriptId, query: 'kq7' });
    assert.deepEqual(found.result, []);
    await client.close();
    assertHidden('what the client received', frames);
  });
});
