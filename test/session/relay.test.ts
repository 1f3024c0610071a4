import { strict as assert } from 'node:assert';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { CdpClient } from '../support/cdpClient';
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

    const log = readFileSync(join(broker.stateDir, 'sessions', (await waitForSessionFile(broker)).file), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    const evalRequest = log.findIndex((r) => r.type === 'cdp.request' && r.method === 'Debugger.evaluateOnCallFrame');
    const evalResponse = log.findIndex((r) => r.type === 'cdp.response' && r.method === 'Debugger.evaluateOnCallFrame');
    assert.ok(evalRequest >= 0 && evalResponse > evalRequest, 'request recorded before its response');
    assert.equal(log[evalRequest].params.throwOnSideEffect, true);
    assert.equal(log[evalRequest].decision, 'rewrite');
    assert.equal(log[evalRequest].actor.sub, 'dev');
    assert.equal(log[evalRequest].reason, 'investigating a test');
    assert.equal(log.at(-1).type, 'session.ended');
  });
});

async function waitForSessionFile(broker: TestBroker): Promise<{ file: string }> {
  const { readdirSync } = await import('node:fs');
  for (let i = 0; i < 50; i++) {
    const files = readdirSync(join(broker.stateDir, 'sessions'));
    for (const file of files) {
      const text = readFileSync(join(broker.stateDir, 'sessions', file), 'utf8');
      if (text.includes('"session.ended"')) return { file };
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('no ended session file');
}
