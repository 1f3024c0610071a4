import { strict as assert } from 'node:assert';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fixtures, markerLine, startTarget, type TargetProcess } from '../support/target';
import { basePolicy, startTestBroker, type TestBroker } from '../support/testBroker';

const appLine = markerLine(join(fixtures, 'app.js'), 'work');

describe('debug session through the broker against a real target', () => {
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

  it('pauses at a breakpoint, reads locals, evaluates, resumes, and records each step before forwarding', async () => {
    const { client } = await broker.attach();
    await client.call('Debugger.enable');
    const bp = await client.call('Debugger.setBreakpointByUrl', { lineNumber: appLine, urlRegex: 'app\\.js$' });
    assert.match(bp.breakpointId, /app/);
    const paused = await client.waitEvent('Debugger.paused');
    assert.deepEqual(paused.params.hitBreakpoints, [bp.breakpointId]);
    const frame = paused.params.callFrames[0];
    assert.equal(frame.functionName, 'work');
    const local = frame.scopeChain.find((s: any) => s.type === 'local');
    const props = await client.call('Runtime.getProperties', { objectId: local.object.objectId, ownProperties: true });
    const n = props.result.find((p: any) => p.name === 'n');
    assert.equal(n.value.type, 'number');
    const evaluated = await client.call('Debugger.evaluateOnCallFrame', { callFrameId: frame.callFrameId, expression: 'local.label', returnByValue: true });
    assert.equal(evaluated.result.value, `item-${n.value.value}`);
    const before = target.lastTick();
    await client.call('Debugger.removeBreakpoint', { breakpointId: bp.breakpointId });
    await client.call('Debugger.resume');
    await target.ticksAdvance(2);
    assert.ok(target.lastTick() > before);
    await client.close();

    const log = await waitForEnded(broker);
    const evalRequest = log.findIndex((r) => r.type === 'cdp.evaluate' && r.data.method === 'Debugger.evaluateOnCallFrame');
    const evalResponse = log.findIndex((r) => r.type === 'cdp.response' && r.data.method === 'Debugger.evaluateOnCallFrame');
    assert.ok(evalRequest >= 0 && evalResponse > evalRequest, 'request recorded before its response');
    assert.equal(log[evalResponse].data.requestSeq, log[evalRequest].seq);
    assert.equal(log[evalRequest].data.params.throwOnSideEffect, true);
    assert.equal(log[evalRequest].data.decision, 'rewrite');
    assert.match(log[evalRequest].data.frame, /^work \(app\.js:\d+\)$/);
    assert.equal(log[evalRequest].actor.sub, 'dev');
    assert.equal(log[evalRequest].reason, 'investigating a test');
    const read = log.find((r) => r.type === 'cdp.properties.read');
    assert.match(read.data.object, /^local scope of work/);
    const readResponse = log.find((r) => r.type === 'cdp.response' && r.data.requestSeq === read.seq);
    assert.ok(readResponse.data.result.properties.some((p: any) => p.name === 'local'));
    assert.ok(log.some((r) => r.type === 'cdp.breakpoint.hit' && /^work/.test(r.data.frame)));
    assert.equal(log.at(-1).type, 'session.ended');
  });
});

async function waitForEnded(broker: TestBroker): Promise<any[]> {
  await broker.waitForRecord('session.ended');
  return broker.sessionEvents();
}
