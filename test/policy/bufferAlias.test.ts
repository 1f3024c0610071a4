import { strict as assert } from 'node:assert';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { defaultRedaction, Redactor } from '../../broker/policy/redact';
import { fixtures, markerLine, startTarget, type TargetProcess } from '../support/target';
import { basePolicy, startTestBroker, type TestBroker } from '../support/testBroker';

const app = join(fixtures, 'buffer-key-app.js');
const key = Buffer.from('BUFSECRET-signing-key-42');
/** The key as text, as hex, as base64, and as its list of bytes: none may reach the client or the audit trail. */
const forms = [key.toString('latin1'), key.toString('hex'), key.toString('base64'), [...key].join(','), [...key].join(', ')];
const marker = '[redacted: signingSecret]';

describe('a Buffer held under a sensitive name, reached by another name', () => {
  let target: TargetProcess;
  let broker: TestBroker;
  before(async () => {
    target = await startTarget(app);
    broker = await startTestBroker(basePolicy(target.inspector));
  });
  after(async () => {
    await broker.close();
    await target.stop();
  });

  it('shows its bytes as the marker in previews, reads and Loupe expressions, and a condition on them decides nothing', async () => {
    const { client, grant } = await broker.attach();
    const frames: string[] = [];
    client.socket.on('message', (data) => frames.push(data.toString()));
    await client.call('Runtime.enable');
    await client.call('Debugger.enable');
    const { breakpointId } = await client.call('Debugger.setBreakpointByUrl', { lineNumber: markerLine(app, 'sign'), urlRegex: 'buffer-key-app\\.js$' });
    const paused = await client.waitEvent('Debugger.paused');
    const callFrameId = paused.params.callFrames[0].callFrameId;
    const local = paused.params.callFrames[0].scopeChain.find((s: any) => s.type === 'local');
    const scope = await client.call('Runtime.getProperties', { objectId: local.object.objectId, ownProperties: true, generatePreview: true });
    const param = scope.result.find((p: any) => p.name === 'key').value;
    assert.equal(param.subtype, 'typedarray');
    const previewBytes = param.preview.properties.filter((p: any) => /^\d+$/.test(p.name));
    assert.equal(previewBytes.length, key.length);
    assert.ok(
      previewBytes.every((p: any) => p.value === marker),
      `the preview shows bytes: ${JSON.stringify(previewBytes.slice(0, 3))}`,
    );
    const read = await client.call('Runtime.getProperties', { objectId: param.objectId, ownProperties: true });
    const bytes = read.result.filter((p: any) => /^\d+$/.test(p.name));
    assert.equal(bytes.length, key.length);
    assert.ok(
      bytes.every((p: any) => p.value.value === marker),
      `a read shows bytes: ${JSON.stringify(bytes.slice(0, 3))}`,
    );
    const evaluate = async (expression: string) => (await client.call('Debugger.evaluateOnCallFrame', { callFrameId, expression })).result;
    for (const expression of ['key[0]', 'String.fromCharCode(...key)', 'Object.values(key).join()', 'key.join()', 'key[0] === 66 ? "B" : "other"', 'JSON.stringify(Array.from(key))']) {
      const result = await evaluate(expression);
      assert.ok(JSON.stringify(result).includes(marker), `${expression} -> ${JSON.stringify(result)}`);
    }
    assert.equal((await evaluate('key.length')).value, key.length, 'its length is its shape');
    // A breakpoint condition on the bytes would decide pauses on the secret: it is disabled instead.
    await client.call('Debugger.removeBreakpoint', { breakpointId });
    await client.call('Debugger.resume');
    const conditional = await client.call('Debugger.setBreakpointByUrl', { lineNumber: markerLine(app, 'sign'), urlRegex: 'buffer-key-app\\.js$', condition: 'key[0] === 66' });
    const disabled = await broker.waitForRecord('cdp.breakpoint.disabled', (e) => e.data.breakpointId === conditional.breakpointId, 10_000).catch(() => undefined);
    await client.call('Debugger.removeBreakpoint', { breakpointId: conditional.breakpointId });
    await client.close();
    await broker.waitForRecord('session.ended', (e) => e.grant === grant.grantId);
    assert.equal(disabled?.data.field, 'signingSecret', 'the condition on the bytes was not disabled as tainted');
    const trail = JSON.stringify(await broker.sessionEvents());
    for (const form of forms) {
      assert.ok(!frames.some((f) => f.includes(form)), `the key (${form}) reached the client`);
      assert.ok(!trail.includes(form), `the key (${form}) reached the audit trail`);
    }
  });
});

describe('other typed memory held under a sensitive name, reached by another name', () => {
  const app = join(fixtures, 'typed-keys-app.js');
  let target: TargetProcess;
  let broker: TestBroker;
  before(async () => {
    target = await startTarget(app);
    broker = await startTestBroker(basePolicy(target.inspector));
  });
  after(async () => {
    await broker.close();
    await target.stop();
  });

  it("an ArrayBuffer's byte view, an Int8Array, a Uint16Array and a signed view over a key's bytes show only markers", async () => {
    const { client } = await broker.attach();
    await client.call('Debugger.enable');
    await client.call('Debugger.setBreakpointByUrl', { lineNumber: markerLine(app, 'use'), urlRegex: 'typed-keys-app\\.js$' });
    const paused = await client.waitEvent('Debugger.paused');
    const callFrameId = paused.params.callFrames[0].callFrameId;
    const local = paused.params.callFrames[0].scopeChain.find((s: any) => s.type === 'local');
    const scope = (await client.call('Runtime.getProperties', { objectId: local.object.objectId, ownProperties: true, generatePreview: true })).result;
    const param = (name: string) => scope.find((p: any) => p.name === name).value;
    const elements = async (objectId: string) =>
      (await client.call('Runtime.getProperties', { objectId, ownProperties: true })).result.filter((p: any) => /^\d+$/.test(p.name)).map((p: any) => p.value.value);
    const rawViews = (await client.call('Runtime.getProperties', { objectId: param('raw').objectId, ownProperties: true })).internalProperties;
    const reads: Record<string, unknown[]> = {
      'raw [[Uint8Array]]': await elements(rawViews.find((p: any) => p.name === '[[Uint8Array]]').value.objectId),
      'raw [[Int16Array]]': await elements(rawViews.find((p: any) => p.name === '[[Int16Array]]').value.objectId),
      signed: await elements(param('signed').objectId),
      words: await elements(param('words').objectId),
      view: await elements(param('view').objectId),
    };
    for (const [what, values] of Object.entries(reads)) {
      assert.ok(values.length > 0 && values.every((v) => typeof v === 'string' && v.startsWith('[redacted: ')), `${what}: ${JSON.stringify(values)}`);
    }
    for (const name of ['signed', 'words', 'view']) {
      const shown = param(name)
        .preview.properties.filter((p: any) => /^\d+$/.test(p.name))
        .map((p: any) => p.value);
      assert.ok(
        shown.every((v: string) => v.startsWith('[redacted: ')),
        `the preview of ${name}: ${JSON.stringify(shown)}`,
      );
    }
    for (const expression of ['Array.from(signed).join()', 'words[3]', 'Array.from(view).join()']) {
      const result = (await client.call('Debugger.evaluateOnCallFrame', { callFrameId, expression })).result;
      assert.match(String(result.value), /^\[redacted: /, `${expression} -> ${JSON.stringify(result)}`);
    }
    await client.call('Debugger.resume');
    await client.close();
  });
});

describe('Redactor: learned bytes', () => {
  it('match a list holding them anywhere, a preview beginning them, and never a list that only shares a few', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 8, maxLength: 64 }).filter((b) => new Set(b).size >= 3),
        fc.uint8Array({ maxLength: 16 }),
        fc.uint8Array({ maxLength: 16 }),
        (secret, before, afterBytes) => {
          const redactor = new Redactor(defaultRedaction);
          redactor.learnBytes([...secret], 'hmacKey');
          assert.equal(redactor.bytesSecret([...before, ...secret, ...afterBytes]), 'hmacKey');
          assert.equal(redactor.bytesSecret([...secret.subarray(0, 8)], true), 'hmacKey', 'a preview showing its first 8 bytes');
          assert.equal(redactor.bytesSecret([...secret.subarray(0, 7)]), undefined);
          // Its textual forms are scrubbed as learned values.
          assert.doesNotMatch(redactor.scrub(`key=${Buffer.from(secret).toString('hex')}`), new RegExp(Buffer.from(secret).toString('hex')));
        },
      ),
      { numRuns: 200 },
    );
  });

  it('match a view of another element type over the same memory (signed bytes, 16- and 32-bit words)', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 8, maxLength: 64 }).filter((b) => b.length % 4 === 0 && new Set(b).size >= 3),
        (secret) => {
          const redactor = new Redactor(defaultRedaction);
          redactor.learnBytes([...secret], 'hmacKey');
          const { buffer, byteOffset, length } = Buffer.from(secret);
          for (const view of [
            new Int8Array(buffer, byteOffset, length),
            new Uint16Array(buffer, byteOffset, length / 2),
            new Int16Array(buffer, byteOffset, length / 2),
            new Int32Array(buffer, byteOffset, length / 4),
          ]) {
            assert.equal(redactor.bytesSecret([...view]), 'hmacKey', view.constructor.name);
            assert.equal(redactor.bytesSecret([...view], false, view.constructor.name), 'hmacKey', `${view.constructor.name}, its class known`);
          }
          // Learned from a signed view too, matched as plain bytes.
          const again = new Redactor(defaultRedaction);
          again.learnBytes([...new Int8Array(buffer, byteOffset, length)], 'hmacKey', 'Int8Array');
          assert.equal(again.bytesSecret([...secret]), 'hmacKey');
        },
      ),
      { numRuns: 200 },
    );
  });

  it('learns nothing from too few bytes or one byte repeated', () => {
    const redactor = new Redactor(defaultRedaction);
    redactor.learnBytes([1, 2, 3, 4, 5, 6, 7], 'key');
    redactor.learnBytes(new Array(32).fill(0), 'key');
    redactor.learnBytes([0, 1, 0, 1, 0, 1, 0, 1, 0, 1], 'key');
    assert.equal(redactor.bytesSecret([1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1]), undefined);
  });
});
