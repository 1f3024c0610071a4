import { strict as assert } from 'node:assert';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fixtures, markerLine, startTarget, type TargetProcess } from '../support/target';
import { basePolicy, startTestBroker, type TestBroker } from '../support/testBroker';

const app = join(fixtures, 'cut-app.js');

describe('previews V8 shortened', () => {
  // 140 characters, letters beyond hex: no piece of it turns up by chance.
  const token = `Xq${Array.from(randomBytes(138), (b) => 'GHJKLMNPQRSTUVWXYZghjkmnpqrstuvwxyz'[b % 35]).join('')}`;
  let target: TargetProcess;
  let broker: TestBroker;
  before(async () => {
    target = await startTarget(app, { CUT_APP_TOKEN: JSON.stringify(token) });
    broker = await startTestBroker(basePolicy(target.inspector));
  });
  after(async () => {
    await broker.close();
    await target.stop();
  });

  it('show no piece of a learned secret at their cut', async () => {
    const { client } = await broker.attach({ mode: 'pause' });
    const frames: string[] = [];
    client.socket.on('message', (data) => frames.push(data.toString()));
    await client.call('Debugger.enable');
    await client.call('Debugger.setBreakpointByUrl', { lineNumber: markerLine(app, 'cut'), urlRegex: 'cut-app\\.js$' });
    const paused = await client.waitEvent('Debugger.paused');
    const local = paused.params.callFrames[0].scopeChain.find((s: { type: string }) => s.type === 'local');
    const { result } = await client.call('Runtime.getProperties', { objectId: local.object.objectId, ownProperties: true, generatePreview: true });
    const header = result.find((p: { name: string }) => p.name === 'request').value.preview.properties.find((p: { name: string }) => p.name === 'header');
    // V8 cut it: `Custom ` and the token's first 43 characters, `…`, its last 49: both sides withheld.
    assert.equal(header.value, '[redacted: text beside a cut]…[redacted: text beside a cut]');
    await client.call('Debugger.resume');
    await client.close();
    const pieces = [token.slice(0, 12), token.slice(40, 52), token.slice(-12)];
    assert.deepEqual(
      frames.filter((f) => pieces.some((p) => f.includes(p))).map((f) => f.slice(0, 200)),
      [],
      'no frame holds a piece of the token',
    );
  });

  it("a planted guess at a secret's start reads the same, right or wrong: both are withheld (no oracle)", async () => {
    const { client } = await broker.attach({ mode: 'pause' });
    await client.call('Debugger.enable');
    await client.call('Debugger.setBreakpointByUrl', { lineNumber: markerLine(app, 'cut'), urlRegex: 'cut-app\\.js$' });
    const paused = await client.waitEvent('Debugger.paused');
    const frame = paused.params.callFrames[0];
    // The session learns the token first (its name is sensitive), as an attacker's session would.
    const local = frame.scopeChain.find((s: { type: string }) => s.type === 'local');
    await client.call('Runtime.getProperties', { objectId: local.object.objectId, ownProperties: true });
    const read = async (expression: string) => (await client.call('Debugger.evaluateOnCallFrame', { callFrameId: frame.callFrameId, expression, returnByValue: true })).result.value;
    const right = await read('planted.right');
    const wrong = await read('planted.wrong');
    assert.equal(typeof right, 'string');
    assert.equal(right, wrong, 'the interpreter: the same for both');
    assert.ok(!right.includes(token.slice(0, 12)) && !wrong.includes(token.slice(2, 12)), `${right} ${wrong}`);
    const planted = (await client.call('Debugger.evaluateOnCallFrame', { callFrameId: frame.callFrameId, expression: 'planted' })).result;
    const fields = (await client.call('Runtime.getProperties', { objectId: planted.objectId, ownProperties: true })).result;
    const value = (name: string) => fields.find((p: { name: string }) => p.name === name).value.value;
    assert.equal(value('right'), value('wrong'), 'getProperties: the same for both');
    assert.equal(value('right'), '[redacted: text beside a cut]…');
    await client.call('Debugger.resume');
    await client.close();
  });
});
