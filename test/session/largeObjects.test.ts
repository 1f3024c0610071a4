import { strict as assert } from 'node:assert';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { CdpClient } from '../support/cdpClient';
import { fixtures, markerLine, startTarget, type TargetProcess } from '../support/target';
import { basePolicy, startTestBroker, type TestBroker } from '../support/testBroker';

const app = join(fixtures, 'large-app.js');
const batchLine = markerLine(app, 'batch');

describe('reading large arrays', () => {
  let target: TargetProcess;
  let broker: TestBroker;
  let direct: CdpClient;
  before(async () => {
    target = await startTarget(app);
    await target.ticksAdvance(2, 20_000);
    const policy = basePolicy(target.inspector);
    // Captures read two levels down, so a local holding a large list would be read.
    policy.targets.app.snapshot = { depth: 2, timeBudgetMs: 1000 };
    broker = await startTestBroker(policy);
    // Reads the target's own clock, from outside the broker.
    direct = await CdpClient.connect(target.wsUrl);
  });
  after(async () => {
    await direct.close();
    await broker.close();
    await target.stop();
  });
  const longestHold = async () => (await direct.call('Runtime.evaluate', { expression: 'longestHold()', returnByValue: true })).result.value as number;

  it('a Runtime.getProperties of an array of 500,000 elements, or a typed array of 2,000,000, lists no elements and never holds the target', async () => {
    const { client, grant } = await broker.attach({ mode: 'snapshot' });
    for (const [expression, length] of [
      ['samples', 500_000],
      ['frameBytes', 2_000_000],
    ] as const) {
      const { result } = await client.call('Runtime.evaluate', { expression });
      assert.equal(result.description, `${result.className}(${length})`);
      await longestHold();
      const reply = await client.send('Runtime.getProperties', { objectId: result.objectId, ownProperties: true });
      await target.ticksAdvance(2, 30_000);
      // Before: V8 listed every element, holding the target 3.7 s for samples on a loaded machine.
      const held = await longestHold();
      assert.ok(held < 1000, `${expression}: the read held the target ${Math.round(held)} ms`);
      assert.ok(reply.result, JSON.stringify(reply.error));
      const props = reply.result;
      assert.ok(!props.result.some((p: { name: string }) => /^\d+$/.test(p.name)), `${expression}: no element is listed`);
    }
    // A small array is listed whole, as before.
    const small = (await client.call('Runtime.evaluate', { expression: 'recent' })).result;
    const listed = await client.call('Runtime.getProperties', { objectId: small.objectId, ownProperties: true });
    assert.deepEqual(
      listed.result.filter((p: { name: string }) => /^\d+$/.test(p.name)).map((p: { value: { value: number } }) => p.value.value),
      [1, 2, 3],
    );
    await client.close();
    await broker.waitForRecord('session.ended', (e) => e.grant === grant.grantId);
    const rewritten = broker.records.filter((e) => e.grant === grant.grantId && e.type === 'cdp.properties.read' && JSON.stringify(e.data).includes('nonIndexedPropertiesOnly forced'));
    assert.equal(rewritten.length, 2, 'each forced read is on the record, with the reason');
  });

  it('a Loupe expression never has V8 list a large array: an element of one is refused with the reason, its length still answered', async () => {
    const { client } = await broker.attach({ mode: 'snapshot' });
    for (const expression of ['samples[3]', 'frameBytes[5]', 'samples.indexOf(7)', '"7" in samples']) {
      await longestHold();
      const reply = await client.send('Runtime.evaluate', { expression, returnByValue: true });
      await target.ticksAdvance(2, 30_000);
      // Before: samples[3] held the target 2.5 s, frameBytes[5] 10 s.
      const held = await longestHold();
      assert.ok(held < 1000, `${expression}: the evaluation held the target ${Math.round(held)} ms`);
      assert.match(reply.result?.result?.description ?? '', /^EvalError: Refused by Loupe: .*(not read: V8 would list all its \d+ elements|elements)/, `${expression}: ${JSON.stringify(reply)}`);
    }
    assert.equal((await client.call('Runtime.evaluate', { expression: 'samples.length', returnByValue: true })).result.value, 500_000);
    assert.equal((await client.call('Runtime.evaluate', { expression: 'recent[1]', returnByValue: true })).result.value, 2);
    await client.close();
  });

  it('a capture or a pause over locals holding large lists never has V8 list them: captured from their previews', async () => {
    for (const mode of ['snapshot', 'pause'] as const) {
      const { client } = await broker.attach({ mode });
      await client.call('Debugger.enable');
      await longestHold();
      const { breakpointId } = await client.call('Debugger.setBreakpointByUrl', { lineNumber: batchLine, urlRegex: 'large-app\\.js$' });
      if (mode === 'snapshot') {
        const capture = (await client.waitEvent('Loupe.snapshotCaptured', () => true, 20_000)).params;
        const batch = capture.frames[0].scopes.flatMap((s: { properties: { name: string; value: { description?: string } }[] }) => s.properties).find((v: { name: string }) => v.name === 'batch');
        assert.equal(batch?.value?.description, 'Array(500000)', JSON.stringify(capture.frames[0]).slice(0, 400));
      } else {
        const paused = await client.waitEvent('Debugger.paused', () => true, 20_000);
        await client.call('Debugger.removeBreakpoint', { breakpointId });
        // The client's first read waits for the broker's learning of the frame's scopes.
        const local = paused.params.callFrames[0].scopeChain.find((s: { type: string }) => s.type === 'local');
        await client.call('Runtime.getProperties', { objectId: local.object.objectId, ownProperties: true, generatePreview: true });
        await client.call('Debugger.resume');
      }
      await target.ticksAdvance(3, 30_000);
      // Before: a depth-2 capture of batch held the target for seconds; so did the learning at a pause.
      const held = await longestHold();
      assert.ok(held < 1000, `${mode}: the pause held the target ${Math.round(held)} ms`);
      await client.close();
    }
  });

  it(
    'a capture over a local holding a Map of 300,000 entries never holds the target',
    {
      todo: 'V8 materializes every entry of a Map to preview it or to hand out its [[Entries]] (1.2 s for 300,000, even for a read of the scope with generatePreview, which every capture and client makes): scopes would have to be read without previews first, and large Maps read by no one',
    },
    async () => {
      const { client } = await broker.attach({ mode: 'snapshot' });
      await client.call('Debugger.enable');
      await longestHold();
      await client.call('Debugger.setBreakpointByUrl', { lineNumber: markerLine(app, 'cache'), urlRegex: 'large-app\\.js$' });
      await client.waitEvent('Loupe.snapshotCaptured', () => true, 20_000);
      await target.ticksAdvance(3, 30_000);
      const held = await longestHold();
      await client.close();
      assert.ok(held < 1000, `the capture held the target ${Math.round(held)} ms`);
    },
  );

  it(
    'a Runtime.getProperties of a plain object with 300,000 keys never holds the target',
    { todo: 'no CDP read tells its key count without listing them, and a function call (callFunctionOn) has no timeout: a bounded probe or a broker-side paged read is needed' },
    async () => {
      const { client } = await broker.attach({ mode: 'snapshot' });
      const { result } = await client.call('Runtime.evaluate', { expression: 'byId' });
      await longestHold();
      await client.send('Runtime.getProperties', { objectId: result.objectId, ownProperties: true });
      await target.ticksAdvance(2, 30_000);
      const held = await longestHold();
      await client.close();
      assert.ok(held < 1000, `the read held the target ${Math.round(held)} ms`);
    },
  );
});
