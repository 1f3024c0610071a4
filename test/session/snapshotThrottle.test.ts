import { strict as assert } from 'node:assert';
import { join } from 'node:path';
import { after, afterEach, before, describe, it } from 'node:test';
import { CdpClient } from '../support/cdpClient';
import { fixtures, markerLine, startTarget, type TargetProcess } from '../support/target';
import { basePolicy, startTestBroker, type TestBroker } from '../support/testBroker';

// Throttled, limited and suspended breakpoints must cost the target nothing: the broker takes them out of V8
// instead of resuming every hit. Checked from the target's side: an observer session (direct, Debugger on)
// sees every pause V8 makes, whoever's breakpoint caused it, while the fixture's timer runs the breakpoint line
// once per tick (target.lastTick() counts the runs).

const file = join(fixtures, 'snapshot-app.js');
const line = markerLine(file, 'handle');

function snapshotPolicy(inspector: string, snapshot: Record<string, number> = {}, limits: Record<string, number> = {}) {
  const base = basePolicy(inspector);
  return { ...base, limits, targets: { app: { ...base.targets.app, snapshot } } };
}

/** A record to wait for on the test broker (its audit records as they become durable; the broker runs in this process). */
interface RecordMatch {
  readonly type: string;
  readonly match: (e: any) => boolean;
}
const brokerRequest = (method: string, why: RegExp): RecordMatch => ({ type: 'broker.request', match: (e) => e.data.method === method && why.test(e.data.why ?? '') });
const answered = (request: any): RecordMatch => ({ type: 'broker.response', match: (e) => e.data.targetId === request.data.targetId && !e.data.error });
/** The broker's records in the shape these tests read them: `seen` so far, and `wait` for one (earlier ones included). */
function liveRecords(broker: TestBroker) {
  return {
    get seen() {
      return broker.records as any[];
    },
    wait: ({ type, match }: RecordMatch, timeoutMs?: number) => broker.waitForRecord(type, match, timeoutMs),
    count: ({ type, match }: RecordMatch) => broker.records.filter((e) => e.type === type && match(e)).length,
  };
}

describe('throttled breakpoints leave V8: no pause while the broker would only resume', () => {
  let target: TargetProcess;
  let observer: CdpClient;
  let broker: TestBroker | undefined;
  const pauses = () => observer.events.filter((e) => e.method === 'Debugger.paused').length;

  before(async () => {
    target = await startTarget(file);
    observer = await CdpClient.connect(target.wsUrl);
    await observer.call('Debugger.enable');
  });
  afterEach(async () => {
    await broker?.close();
    broker = undefined;
  });
  after(async () => {
    await observer.close();
    await target.stop();
  });

  /** Once V8 has answered the broker's removal: the line runs 20 more times and V8 pauses on none of them. */
  async function noPausesWhileTheLineRuns(): Promise<void> {
    const before = pauses();
    const runs = target.lastTick();
    await target.ticksAdvance(20);
    assert.ok(target.lastTick() - runs >= 20);
    assert.equal(pauses() - before, 0, `V8 paused ${pauses() - before} times while the line ran ${target.lastTick() - runs} times`);
  }

  it('a rate-limited snapshot breakpoint is removed in V8 until its next capture is due, then set again under the same id', async () => {
    broker = await startTestBroker(snapshotPolicy(target.inspector, { minIntervalMs: 3000 }));
    const records = liveRecords(broker);
    const { client } = await broker.attach({ mode: 'snapshot' });
    await client.call('Debugger.enable');
    const { breakpointId } = await client.call('Debugger.setBreakpointByUrl', { lineNumber: line, urlRegex: 'snapshot-app\\.js$' });
    const first = await client.waitEvent('Loupe.snapshotCaptured');
    assert.equal(first.params.breakpointId, breakpointId);
    const notice = await client.waitEvent('Loupe.snapshotThrottled');
    assert.equal(notice.params.breakpointId, breakpointId);
    assert.equal(notice.params.reason, 'at most one capture every 3000 ms per breakpoint');
    assert.ok(Date.parse(notice.params.until) - Date.parse(first.params.capturedAt) >= 2900, `until ${notice.params.until}, captured at ${first.params.capturedAt}`);
    const removal = await records.wait(brokerRequest('Debugger.removeBreakpoint', /^throttled until .*: at most one capture every 3000 ms per breakpoint$/));
    assert.equal(removal.data.params.breakpointId, breakpointId);
    await records.wait(answered(removal));
    await noPausesWhileTheLineRuns();
    assert.equal(client.events.filter((e) => e.method === 'Loupe.snapshotCaptured').length, 1);

    // The interval over, the broker sets it again with the client's parameters; V8 pauses on it again.
    const second = await client.waitEvent('Loupe.snapshotCaptured');
    assert.equal(second.params.breakpointId, breakpointId, 'the client keeps its breakpoint id');
    const setAgain = await records.wait(brokerRequest('Debugger.setBreakpointByUrl', /^set again: the throttle \(at most one capture every 3000 ms per breakpoint\) is over$/));
    assert.deepEqual(setAgain.data.params, { lineNumber: line, urlRegex: 'snapshot-app\\.js$' });
    const reply = await records.wait(answered(setAgain));
    assert.equal(reply.data.result.breakpointId, breakpointId);
    assert.ok(Date.parse(second.params.capturedAt) - Date.parse(first.params.capturedAt) >= 2990, 'not before the interval is over');

    // The client's own removal still works on a breakpoint the broker has taken out and set again.
    assert.deepEqual(await client.call('Debugger.removeBreakpoint', { breakpointId }), {});
    await noPausesWhileTheLineRuns();
    await client.close();
  });

  it('the client removing a throttled breakpoint: it is never set again', async () => {
    broker = await startTestBroker(snapshotPolicy(target.inspector, { minIntervalMs: 1000 }));
    const records = liveRecords(broker);
    const { client } = await broker.attach({ mode: 'snapshot' });
    await client.call('Debugger.enable');
    const { breakpointId } = await client.call('Debugger.setBreakpointByUrl', { lineNumber: line, urlRegex: 'snapshot-app\\.js$' });
    await client.waitEvent('Loupe.snapshotCaptured');
    await records.wait(answered(await records.wait(brokerRequest('Debugger.removeBreakpoint', /^throttled/))));
    assert.deepEqual(await client.call('Debugger.removeBreakpoint', { breakpointId }), {});
    // Well past the interval (100+ runs of the line at 10 ms a tick): no pause, no capture, nothing set again.
    const before = pauses();
    await target.ticksAdvance(150, 10000);
    assert.equal(pauses() - before, 0);
    assert.equal(client.events.filter((e) => e.method === 'Loupe.snapshotCaptured').length, 1);
    assert.equal(records.count(brokerRequest('Debugger.setBreakpointByUrl', /^set again/)), 0);
    await client.close();
  });

  it('a logpoint over its rate is removed in V8 between messages and set again', async () => {
    broker = await startTestBroker(snapshotPolicy(target.inspector, { minIntervalMs: 3000 }));
    const records = liveRecords(broker);
    const { client } = await broker.attach({ mode: 'pause' });
    await client.call('Debugger.enable');
    const set = await client.call('Loupe.setLogpoint', { lineNumber: line, urlRegex: 'snapshot-app\\.js$', logMessage: 'n={n}' });
    const first = await client.waitEvent('Loupe.logpoint');
    assert.equal(first.params.breakpointId, set.breakpointId);
    const removal = await records.wait(brokerRequest('Debugger.removeBreakpoint', /^throttled until .*: at most one logpoint message every 3000 ms per breakpoint$/));
    await records.wait(answered(removal));
    await noPausesWhileTheLineRuns();
    const second = await client.waitEvent('Loupe.logpoint');
    assert.equal(second.params.breakpointId, set.breakpointId);
    assert.notEqual(second.params.message, first.params.message);
    assert.equal(client.events.filter((e) => e.method === 'Debugger.paused').length, 0, 'a logpoint never shows as a pause');
    await client.close();
  });

  it('a breakpoint at its capture limit is removed in V8 for good, and the client told', async () => {
    broker = await startTestBroker(snapshotPolicy(target.inspector, { minIntervalMs: 0, maxCapturesPerBreakpoint: 2 }));
    const records = liveRecords(broker);
    const { client } = await broker.attach({ mode: 'snapshot' });
    await client.call('Debugger.enable');
    const { breakpointId } = await client.call('Debugger.setBreakpointByUrl', { lineNumber: line, urlRegex: 'snapshot-app\\.js$' });
    const removed = await client.waitEvent('Loupe.snapshotThrottled', (e) => e.params.removed === true);
    assert.equal(removed.params.breakpointId, breakpointId);
    const removal = await records.wait(brokerRequest('Debugger.removeBreakpoint', /^snapshot breakpoint reached its limit of 2 captures and was removed$/));
    await records.wait(answered(removal));
    await noPausesWhileTheLineRuns();
    assert.equal(client.events.filter((e) => e.method === 'Loupe.snapshotCaptured').length, 2);
    await client.close();
  });

  it('a conditional breakpoint over the pause budget is removed in V8; the client never sees its racing hits', async () => {
    broker = await startTestBroker(snapshotPolicy(target.inspector, {}, { conditionBudgetMsPerSecond: 2 }));
    const records = liveRecords(broker);
    const { client } = await broker.attach({ mode: 'pause' });
    await client.call('Debugger.enable');
    const { breakpointId } = await client.call('Debugger.setBreakpointByUrl', { lineNumber: line, urlRegex: 'snapshot-app\\.js$', condition: 'n < 0' });
    const suspended = await client.waitEvent('Loupe.breakpointSuspended');
    assert.equal(suspended.params.breakpointId, breakpointId);
    const removal = await records.wait(brokerRequest('Debugger.removeBreakpoint', /^breakpoint suspended: its hits held the target/));
    await records.wait(answered(removal));
    await noPausesWhileTheLineRuns();
    assert.equal(client.events.filter((e) => e.method === 'Debugger.paused').length, 0);
    await client.close();
  });

  it('one record per capture, durable before the client sees it; the reads are not recorded one by one', async () => {
    // Objects read 3 levels deep: a capture of many reads.
    broker = await startTestBroker(snapshotPolicy(target.inspector, { minIntervalMs: 0, maxCapturesPerBreakpoint: 3, timeBudgetMs: 1000, depth: 3 }));
    const records = liveRecords(broker);
    const { client } = await broker.attach({ mode: 'snapshot' });
    const recordedFirst: boolean[] = [];
    client.socket.on('message', (data) => {
      const message = JSON.parse(data.toString());
      if (message.method === 'Loupe.snapshotCaptured') recordedFirst.push(records.seen.some((e) => e.type === 'snapshot.captured' && e.data.captureId === message.params.captureId));
    });
    await client.call('Debugger.enable');
    await client.call('Debugger.setBreakpointByUrl', { lineNumber: line, urlRegex: 'snapshot-app\\.js$' });
    await client.waitEvent('Loupe.snapshotThrottled', (e) => e.params.removed === true);
    const captures = client.events.filter((e) => e.method === 'Loupe.snapshotCaptured').map((e) => e.params);
    assert.equal(captures.length, 3);
    assert.deepEqual(recordedFirst, [true, true, true]);
    for (const c of captures) {
      assert.ok(c.reads > 5, `${c.reads} reads`);
      assert.equal(c.truncated, undefined);
    }
    await client.close();
    // The session's chain reaches the store once the session has ended and its stream closed.
    await broker.waitForRecord('session.ended');
    const events = await broker.sessionEvents();
    const captured = events.filter((e) => e.type === 'snapshot.captured');
    assert.deepEqual(
      captured.map((e) => e.data.captureId),
      captures.map((c) => c.captureId),
    );
    assert.deepEqual(captured[0].data.frames, captures[0].frames, 'the record holds what the client got');
    // The capture's reads are in its record, not one by one; the learning's reads before the session's first capture
    // in this code are recorded as broker requests, each saying why.
    const reads = events.filter((e) => e.type === 'broker.request' && e.data.method === 'Runtime.getProperties');
    assert.deepEqual(
      reads.filter((e) => !/^learn the sensitive values a pause holds/.test(e.data.why ?? '')),
      [],
    );
  });

  it('rate limits read the injected clock: while it stands still no second capture is due, however often the line runs', async () => {
    let frozen: number | undefined;
    // A budget the skipped hits cannot exhaust: the budget's window reads the same clock, which stands still.
    broker = await startTestBroker(snapshotPolicy(target.inspector, { minIntervalMs: 40 }, { conditionBudgetMsPerSecond: 1000 }), { clock: () => frozen ?? Date.now() });
    const { client } = await broker.attach({ mode: 'snapshot' });
    await client.call('Debugger.enable');
    frozen = Date.now();
    const captures = () => client.events.filter((e) => e.method === 'Loupe.snapshotCaptured').length;
    const { breakpointId } = await client.call('Debugger.setBreakpointByUrl', { lineNumber: line, urlRegex: 'snapshot-app\\.js$' });
    await client.waitEvent('Loupe.snapshotCaptured');
    // Not many more: with the clock standing still, the pause budget's window never slides, so every skipped hit's
    // pause adds up against one second's budget (on a machine whose every pause is slow, enough of them suspend it).
    await target.ticksAdvance(10);
    assert.equal(captures(), 1, 'no capture is due while the clock stands still');
    // Notices too are at most one per second of that clock.
    const notices = client.events.filter((e) => e.method === 'Loupe.snapshotThrottled');
    assert.equal(notices.length, 1);
    assert.equal(notices[0]!.params.breakpointId, breakpointId);
    frozen += 40;
    await client.waitEvent('Loupe.snapshotCaptured', (e) => e.params.captureId !== client.events.find((f) => f.method === 'Loupe.snapshotCaptured')!.params.captureId);
    await target.ticksAdvance(20);
    assert.equal(captures(), 2, 'one more capture once the clock has moved on by minIntervalMs');
    await client.close();
  });
});
