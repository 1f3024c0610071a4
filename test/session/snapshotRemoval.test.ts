import { strict as assert } from 'node:assert';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { CdpClient } from '../support/cdpClient';
import { fixtures, markerLine, startTarget, type TargetProcess } from '../support/target';
import { basePolicy, startTestBroker, type TestBroker } from '../support/testBroker';

// A rate-limited snapshot breakpoint on a hot line: the capture's resume must not let the line pause again while
// the breakpoint's removal is still on its way (waiting for the disk, or for the target to read it). The removal
// goes out ahead of the resume, so V8 handles it while still paused. Checked from the target's side: an observer
// session (direct, Debugger on) sees every pause V8 makes, while the line runs about once a millisecond.

const file = join(fixtures, 'snapshot-app.js');
const line = markerLine(file, 'handle');

describe('snapshot: the rate limit takes a hot breakpoint out of V8 before the capture resumes', () => {
  let target: TargetProcess;
  let observer: CdpClient;
  let broker: TestBroker;

  before(async () => {
    target = await startTarget(file, { TICK_MS: '1' });
    observer = await CdpClient.connect(target.wsUrl);
    await observer.call('Debugger.enable');
    const base = basePolicy(target.inspector);
    broker = await startTestBroker({ ...base, targets: { app: { ...base.targets.app, snapshot: { minIntervalMs: 5000, timeBudgetMs: 1000 } } } });
  });
  after(async () => {
    await broker.close();
    await observer.close();
    await target.stop();
  });

  it('one pause per capture, however hot the line', async () => {
    const { client } = await broker.attach({ mode: 'snapshot' });
    await client.call('Debugger.enable');
    await client.call('Debugger.setBreakpointByUrl', { lineNumber: line, urlRegex: 'snapshot-app\\.js$' });
    await client.waitEvent('Loupe.snapshotCaptured');
    const runs = target.lastTick();
    await target.ticksAdvance(100);
    assert.ok(target.lastTick() - runs >= 100);
    const paused = observer.events.filter((e) => e.method === 'Debugger.paused');
    assert.equal(paused.length, 1, `V8 paused ${paused.length} times for one capture (hits: ${paused.map((e) => JSON.stringify(e.params.hitBreakpoints)).join(' ')})`);
    const notice = await client.waitEvent('Loupe.snapshotThrottled');
    assert.equal(notice.params.skipped, 0, 'no hit had to be resumed unseen');
    await client.close();
  });
});
