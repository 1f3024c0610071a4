import { strict as assert } from 'node:assert';
import { join } from 'node:path';
import { after, afterEach, before, describe, it } from 'node:test';
import { CdpClient } from '../support/cdpClient';
import { fixtures, markerLine, startTarget, type TargetProcess } from '../support/target';
import { basePolicy, startTestBroker, type TestBroker } from '../support/testBroker';
import { foreignPauseGraceMs } from '../../broker/session/pauses';
import { closuresNotRead } from '../../broker/session/snapshot';

const file = join(fixtures, 'snapshot-app.js');
const line = markerLine(file, 'handle');

function snapshotPolicy(inspector: string, snapshot: Record<string, number | boolean> = {}, limits: Record<string, number> = {}) {
  const base = basePolicy(inspector);
  return { ...base, limits, targets: { app: { ...base.targets.app, snapshot } } };
}

const prop = (props: any[], name: string) => props.find((p) => p.name === name)?.value;

describe('snapshot mode: non-pausing captures against a real target', () => {
  let target: TargetProcess;
  let direct: CdpClient;
  let broker: TestBroker | undefined;
  before(async () => {
    target = await startTarget(file);
    direct = await CdpClient.connect(target.wsUrl); // reads the target's own counters, Debugger off
  });
  afterEach(async () => {
    await broker?.close();
    broker = undefined;
  });
  after(async () => {
    await direct.close();
    await target.stop();
  });

  async function snapshotSession(snapshot: Record<string, number | boolean> = {}) {
    broker = await startTestBroker(snapshotPolicy(target.inspector, snapshot));
    const { client } = await broker.attach({ mode: 'snapshot' });
    await client.call('Debugger.enable');
    const { breakpointId } = await client.call('Debugger.setBreakpointByUrl', { lineNumber: line, urlRegex: 'snapshot-app\\.js$' });
    return { client, breakpointId };
  }

  it('captures the stack and locals within every limit, without running getters or Proxy traps', async () => {
    // A generous time budget, so the content limits are what cuts the capture here; objects read 3 levels deep.
    const { client, breakpointId } = await snapshotSession({ timeBudgetMs: 1000, depth: 3 });
    const captured = await client.waitEvent('Loupe.snapshotCaptured');
    const c = captured.params;
    assert.equal(c.breakpointId, breakpointId);
    assert.equal(c.frames[0].functionName, 'handle');
    assert.match(c.frames[0].url, /snapshot-app\.js$/);
    assert.equal(c.frames[0].lineNumber, line);
    assert.ok(c.pauseMs < 1000);
    const local = c.frames[0].scopes.find((s: any) => s.type === 'local').properties;
    // depth 3: deep.a.b is expanded (read), deep.a.b.c is not: it comes from its preview, its object d by description
    const b = prop(prop(prop(local, 'deep').properties, 'a').properties, 'b');
    assert.equal(b.fromPreview, undefined);
    const beyond = prop(b.properties, 'c');
    assert.equal(beyond.fromPreview, true);
    assert.equal(beyond.truncated, 'preview');
    assert.deepEqual(prop(beyond.properties, 'd'), { type: 'object', description: 'Object', truncated: 'depth' });
    const wide = prop(local, 'wide');
    assert.equal(wide.properties.length, 20);
    assert.equal(wide.truncated, '50 properties, 20 captured');
    const long = prop(local, 'long');
    assert.equal(long.value.length, 255);
    assert.equal(long.truncated, 'string of 1000 characters');
    const list = prop(local, 'list');
    assert.equal(list.properties.length, 100);
    assert.match(list.truncated, /captured/);
    assert.equal(prop(prop(prop(local, 'cyclic').properties, 'self').properties, 'name').value, 'loop');
    assert.equal(prop(prop(local, 'withGetter').properties, 'boom').description, 'getter (not invoked)');
    const proxy = prop(local, 'proxy');
    assert.equal(proxy.subtype, 'proxy');
    assert.equal(proxy.properties, undefined);
    const entries = prop(prop(local, 'map').properties, '[[Entries]]');
    assert.equal(entries.properties.filter((p: any) => /^\d+$/.test(p.name)).length, 2);
    assert.ok(c.frames.length > 1, 'the callers are there too');
    assert.equal(c.truncated, undefined);
    assert.equal(client.events.filter((e) => e.method === 'Debugger.paused' || e.method === 'Debugger.resumed').length, 0, 'the client never sees a pause');
    await client.close();
    const counters = await direct.call('Runtime.evaluate', { expression: '[globalThis.getterRan, globalThis.trapRan]', returnByValue: true });
    assert.deepEqual(counters.result.value, [0, 0]);
    const stored = await broker!.waitForRecord('snapshot.captured', (e) => e.data.captureId === c.captureId);
    await broker!.waitForRecord('session.ended', (e) => e.stream === stored.stream);
    assert.ok(
      (await broker!.sessionEvents()).some((e) => e.type === 'snapshot.captured' && e.data.captureId === c.captureId),
      'the capture is in the stored session',
    );
  });

  it('by default reads the scopes only, resumed with the reads, and takes the objects in them from their previews', async () => {
    const { client } = await snapshotSession({ timeBudgetMs: 1000 });
    const c = (await client.waitEvent('Loupe.snapshotCaptured')).params;
    // The top frame only (expandFrames 1): the interval's callback, app code too, is listed without its scopes.
    assert.match(c.frames[1].url, /snapshot-app\.js$/);
    assert.deepEqual(
      c.frames.map((f: any) => f.scopes !== undefined),
      c.frames.map((_: unknown, i: number) => i === 0),
      'only the top frame expanded',
    );
    const expanded = c.frames.flatMap((f: any) => f.scopes ?? []);
    // The module closure is listed, not read: the policy did not ask for closures.
    assert.deepEqual(
      expanded.find((s: any) => s.type === 'closure'),
      { type: 'closure', properties: [], truncated: closuresNotRead },
    );
    assert.deepEqual(
      expanded.map((s: any) => s.type),
      ['local', 'closure'],
    );
    assert.equal(c.reads, 1, 'one read, the locals, nothing more');
    const local = expanded.find((s: any) => s.type === 'local').properties;
    // Whole: the preview held all of it exactly.
    const cyclic = prop(local, 'cyclic');
    assert.equal(cyclic.fromPreview, true);
    assert.equal(prop(cyclic.properties, 'name').value, 'loop');
    assert.deepEqual(prop(cyclic.properties, 'self'), { type: 'object', description: 'Object', truncated: 'depth' });
    assert.equal(cyclic.truncated, 'preview', 'a nested object is only its description');
    const entries = prop(prop(local, 'map').properties, '[[Entries]]');
    assert.deepEqual(
      entries.properties.map((p: any) => p.value.description),
      ['{"a" => 1}', '{"b" => 2}'],
    );
    assert.equal(prop(local, 'map').truncated, undefined);
    // Cut: more fields than a preview lists.
    const wide = prop(local, 'wide');
    assert.equal(wide.properties.length, 5);
    assert.equal(wide.truncated, 'preview');
    const list = prop(local, 'list');
    assert.equal(list.properties.filter((p: any) => /^\d+$/.test(p.name)).length, 100);
    assert.equal(list.truncated, 'preview');
    // Never a getter run or a Proxy opened, from a preview either.
    assert.equal(prop(local, 'proxy').properties, undefined);
    assert.equal(prop(prop(local, 'withGetter').properties, 'boom').type, 'accessor');
    // A string in a scope is read whole, then cut to stringLength.
    assert.equal(prop(local, 'long').truncated, 'string of 1000 characters');
    await client.close();
    const counters = await direct.call('Runtime.evaluate', { expression: '[globalThis.getterRan, globalThis.trapRan]', returnByValue: true });
    assert.deepEqual(counters.result.value, [0, 0]);
  });

  it("reads the top frame's closure too when the policy asks, in the same round trip", async () => {
    const { client } = await snapshotSession({ timeBudgetMs: 1000, closures: true });
    const c = (await client.waitEvent('Loupe.snapshotCaptured')).params;
    const [local, closure] = ['local', 'closure'].map((type) => c.frames[0].scopes.find((s: any) => s.type === type));
    assert.equal(c.reads, 2, 'the locals and the closure, one read each');
    assert.equal(closure.truncated, undefined);
    const settings = prop(closure.properties, 'settings');
    assert.equal(settings.fromPreview, true);
    assert.equal(prop(settings.properties, 'region').value, 'eu-west-1');
    assert.equal(prop(settings.properties, 'retries').value, 3);
    assert.equal(prop(local.properties, 'settings'), undefined);
    // Deeper frames never have their closures read, asked or not.
    for (const frame of c.frames.slice(1)) assert.equal(frame.scopes, undefined);
    await client.close();
  });

  it('keeps the events that arrive while a capture is read in order, none lost (the broker waits for the reads)', async () => {
    const file = join(fixtures, 'snapshot-console.js');
    const consoleTarget = await startTarget(file);
    const other = await startTestBroker({
      ...snapshotPolicy(consoleTarget.inspector, { minIntervalMs: 0, maxCapturesPerMinute: 100000, maxCapturesPerBreakpoint: 100000 }),
    });
    try {
      const { client } = await other.attach({ mode: 'snapshot' });
      await client.call('Runtime.enable');
      await client.call('Debugger.enable');
      await client.call('Debugger.setBreakpointByUrl', { lineNumber: markerLine(file, 'hot'), urlRegex: 'snapshot-console\\.js$' });
      // A machine slow enough cuts a capture at its time budget (it says so, with nothing read): only whole ones show i.
      const all = () => client.events.filter((e) => e.method === 'Loupe.snapshotCaptured');
      const captured = () => all().filter((e) => e.params.truncated === undefined);
      const started = Date.now();
      while (captured().length < 30 && Date.now() - started < 10_000) await new Promise((r) => setTimeout(r, 20));
      await client.call('Debugger.setBreakpointsActive', { active: false }).catch(() => undefined);
      const cut = all().filter((e) => e.params.truncated !== undefined);
      assert.ok(
        cut.every((e) => /^time budget of \d+ ms$/.test(e.params.truncated)),
        `captures cut for another reason: ${cut.map((e) => e.params.truncated).join('; ')}`,
      );
      const hits = captured().map((e) => prop(e.params.frames[0].scopes.find((s: any) => s.type === 'local').properties, 'i')?.value as number);
      assert.ok(hits.length >= 30, `${hits.length} captures`);
      assert.ok(
        hits.every((h, i) => Number.isInteger(h) && (i === 0 || h > hits[i - 1]!)),
        `captures in order: ${hits.join(' ')}`,
      );
      const output = () => client.events.filter((e) => e.method === 'Runtime.consoleAPICalled').map((e) => e.params.args[1].value as number);
      // The last captured hit prints after its resume: its output may still be on its way.
      const waitedFrom = Date.now();
      while (!output().includes(hits.at(-1)!) && Date.now() - waitedFrom < 5000) await new Promise((r) => setTimeout(r, 20));
      const printed = output();
      const first = printed.indexOf(hits[0]!);
      assert.ok(first >= 0, `the first captured hit's output arrived: ${printed.slice(0, 20).join(' ')}`);
      const after = printed.slice(first);
      assert.ok(
        after.every((v, i) => v === hits[0]! + i),
        `every output after the first capture, in order: ${after.slice(0, 60).join(' ')}`,
      );
      assert.ok(after.at(-1)! >= hits.at(-1)!, 'the output of the last captured hit arrived too');
      await client.close();
    } finally {
      await other.close();
      await consoleTarget.stop();
    }
  });

  it('cuts a capture at its time budget and byte limit, and says so', async () => {
    const { client } = await snapshotSession({ timeBudgetMs: 1 });
    const timed = (await client.waitEvent('Loupe.snapshotCaptured')).params;
    assert.equal(timed.truncated, 'time budget of 1 ms');
    assert.ok(timed.durationMs < 50, `capture took ${timed.durationMs} ms`);
    await client.close();
    await broker!.close();
    const small = await snapshotSession({ timeBudgetMs: 1000, maxBytes: 1024 });
    const sized = (await small.client.waitEvent('Loupe.snapshotCaptured')).params;
    assert.equal(sized.truncated, '1024 bytes');
    assert.ok(JSON.stringify(sized.frames).length < 8 * 1024);
    await small.client.close();
  });

  it('a pause it did not cause (another debugger, a debugger statement) is resumed after maxPauseSeconds and a grace for its owner', async () => {
    const base = basePolicy(target.inspector);
    broker = await startTestBroker({ ...base, targets: { app: { ...base.targets.app, maxPauseSeconds: 1 } } });
    const { client, grant } = await broker.attach({ mode: 'snapshot' });
    await client.call('Debugger.enable');
    const other = await CdpClient.connect(target.wsUrl);
    try {
      await other.call('Debugger.enable');
      await other.call('Debugger.pause');
      const paused = await other.waitEvent('Debugger.paused');
      const heldSince = Date.now();
      const heldAt = target.lastTick();
      // Only a paused frame answers an evaluation: proof the other debugger holds the target now.
      const inFrame = await other.send('Debugger.evaluateOnCallFrame', { callFrameId: paused.params.callFrames[0].callFrameId, expression: '1 + 1', returnByValue: true });
      assert.equal(inFrame.result?.result?.value, 2, `the other debugger holds the target for now (${JSON.stringify(inFrame)})`);
      assert.ok(target.lastTick() <= heldAt + 1, 'the other debugger holds the target for now');
      await other.waitEvent('Debugger.resumed', () => true, 8000);
      // The session that caused a pause acts first: this one waits maxPauseSeconds (1 s) plus the grace.
      assert.ok(Date.now() - heldSince >= 1000 + foreignPauseGraceMs - 500, `resumed ${Date.now() - heldSince} ms after the pause`);
      await target.ticksAdvance(3);
      await client.close();
      await broker.waitForRecord('session.ended', (e) => e.grant === grant.grantId);
      const resumed = (await broker.sessionEvents()).find((e) => e.type === 'watchdog.resumed');
      assert.equal(resumed?.data.pause, 'not caused by this session');
    } finally {
      await other.close();
    }
  });

  it('never leaves the target paused: the timer keeps firing through a burst of hits', async () => {
    const { client } = await snapshotSession({ minIntervalMs: 0, maxCapturesPerMinute: 100000, maxCapturesPerBreakpoint: 100000 });
    await client.waitEvent('Loupe.snapshotCaptured');
    const before = target.lastTick();
    const startedAt = Date.now();
    await target.ticksAdvance(30, 5000);
    const captures = client.events.filter((e) => e.method === 'Loupe.snapshotCaptured').length;
    assert.ok(captures >= 10, `only ${captures} captures`);
    assert.ok(target.lastTick() - before >= 30, `the target ran ${target.lastTick() - before} ticks in ${Date.now() - startedAt} ms`);
    await client.close();
  });

  it('throttles a breakpoint to its rate and tells the client why', async () => {
    // The rate reads the broker's clock, held still here: a second capture is due only once it moves 1000 ms.
    // (A budget the skipped hits cannot exhaust: its window reads the same clock.)
    let frozen: number | undefined;
    broker = await startTestBroker(snapshotPolicy(target.inspector, { minIntervalMs: 1000 }, { conditionBudgetMsPerSecond: 1000 }), { clock: () => frozen ?? Date.now() });
    const { client } = await broker.attach({ mode: 'snapshot' });
    await client.call('Debugger.enable');
    frozen = Date.now();
    const { breakpointId } = await client.call('Debugger.setBreakpointByUrl', { lineNumber: line, urlRegex: 'snapshot-app\\.js$' });
    const captures = () => client.events.filter((e) => e.method === 'Loupe.snapshotCaptured').length;
    await client.waitEvent('Loupe.snapshotCaptured');
    const throttled = await client.waitEvent('Loupe.snapshotThrottled');
    assert.equal(throttled.params.breakpointId, breakpointId);
    assert.equal(throttled.params.reason, 'at most one capture every 1000 ms per breakpoint');
    await target.ticksAdvance(20);
    assert.equal(captures(), 1, 'no second capture within 1000 ms of the clock, however often the line runs');
    frozen += 1000;
    await client.waitEvent('Loupe.snapshotCaptured');
    await target.ticksAdvance(20);
    assert.equal(captures(), 2, 'one more capture once the clock has moved on by minIntervalMs');
    await client.close();
  });

  it('removes a breakpoint after its capture limit, saying so', async () => {
    const { client, breakpointId } = await snapshotSession({ minIntervalMs: 0, maxCapturesPerBreakpoint: 2 });
    const removed = await client.waitEvent('Loupe.snapshotThrottled', (e) => e.params.removed === true);
    assert.equal(removed.params.breakpointId, breakpointId);
    assert.match(removed.params.reason, /limit of 2 captures and was removed/);
    // The line runs every tick: had the breakpoint stayed, these ticks would have hit it, and a capture sent
    // before the reply to a later request arrives before that reply.
    await target.ticksAdvance(10);
    await client.call('Runtime.evaluate', { expression: '1' });
    assert.equal(client.events.filter((e) => e.method === 'Loupe.snapshotCaptured').length, 2);
    await client.close();
  });

  it('logpoints: evaluated side-effect free by the broker on each hit, rate limited, never shown as a pause', async () => {
    // The rate reads the broker's clock, held still here: one message per 200 ms of that clock.
    let frozen: number | undefined;
    broker = await startTestBroker(snapshotPolicy(target.inspector, { minIntervalMs: 200 }, { conditionBudgetMsPerSecond: 1000 }), { clock: () => frozen ?? Date.now() });
    const { client } = await broker.attach({ mode: 'pause' });
    await client.call('Debugger.enable');
    frozen = Date.now();
    const hostile = await client.send('Loupe.setLogpoint', { lineNumber: line, urlRegex: 'snapshot-app\\.js$', logMessage: 'n={n} x={globalThis.x = 1}' });
    assert.match(hostile.error!.message, /^Loupe\.setLogpoint refused: logpoint expression "globalThis\.x = 1" assignment changes program state$/);
    // A part that is not a Loupe expression is refused when the logpoint is set.
    const notLoupe = await client.send('Loupe.setLogpoint', { lineNumber: line, urlRegex: 'snapshot-app\\.js$', logMessage: 'n={n} sneaky={Object.defineProperty(globalThis, "x", { value: 1 })}' });
    assert.match(
      notLoupe.error!.message,
      /^(Loupe\.setLogpoint|Debugger\.setBreakpointByUrl) refused: logpoint expression "Object\.defineProperty.*is not a Loupe expression: .*Object\.defineProperty is not one of Loupe's built-ins/,
    );
    // A part that turns out to need app code (a getter) is refused in the message; the rest is evaluated by the broker.
    const set = await client.call('Loupe.setLogpoint', { lineNumber: line, urlRegex: 'snapshot-app\\.js$', logMessage: 'n={n} long={long.length} sneaky={withGetter.boom}' });
    const first = await client.waitEvent('Loupe.logpoint');
    assert.equal(first.params.breakpointId, set.breakpointId);
    assert.match(first.params.message, /^n=\d+ long=1000 sneaky=<refused: the property "boom" is a getter: reading it would run app code[^>]*>$/);
    assert.match(first.params.frame, /^handle \(snapshot-app\.js:\d+\)$/);
    const logs = () => client.events.filter((e) => e.method === 'Loupe.logpoint').length;
    await target.ticksAdvance(40, 1000); // the target keeps running
    assert.equal(logs(), 1, 'no second message within 200 ms of the clock');
    for (let n = 2; n <= 4; n++) {
      frozen += 200;
      await client.waitEvent('Loupe.logpoint');
      await target.ticksAdvance(20);
      assert.equal(logs(), n, `one message per 200 ms of the clock (${n - 1} steps)`);
    }
    assert.equal(client.events.filter((e) => e.method === 'Debugger.paused').length, 0);
    const x = await direct.call('Runtime.evaluate', { expression: 'typeof globalThis.x', returnByValue: true });
    assert.equal(x.result.value, 'undefined');
    await client.close();
  });

  it('suspends a conditional breakpoint whose checks cost the target more than the budget, with the figures', async () => {
    broker = await startTestBroker({ ...snapshotPolicy(target.inspector), limits: { conditionBudgetMsPerSecond: 2 } });
    const { client } = await broker.attach({ mode: 'pause' });
    await client.call('Debugger.enable');
    const { breakpointId } = await client.call('Debugger.setBreakpointByUrl', { lineNumber: line, urlRegex: 'snapshot-app\\.js$', condition: 'n < 0' });
    const suspended = await client.waitEvent('Loupe.breakpointSuspended');
    assert.equal(suspended.params.breakpointId, breakpointId);
    assert.equal(suspended.params.budgetMsPerSecond, 2);
    assert.ok(suspended.params.pauseMsPerSecond > 2, `the figure shown is over the budget: ${JSON.stringify(suspended.params)}`);
    assert.ok(suspended.params.hitsPerSecond >= 1, `at least the hit that went over: ${JSON.stringify(suspended.params)}`);
    assert.match(suspended.params.reason, /^suspended: its hits held the target [\d.]+ ms in the last second over \d+ hits \(budget 2 ms per second\)$/);
    const hitsBefore = (await broker.sessionEvents()).length;
    void hitsBefore;
    await target.ticksAdvance(10);
    assert.equal(client.events.filter((e) => e.method === 'Debugger.paused').length, 0);
    await client.close();
    const suspension = await broker.waitForRecord('cdp.breakpoint.suspended');
    await broker.waitForRecord('session.ended', (e) => e.stream === suspension.stream);
    assert.ok(
      (await broker.sessionEvents()).some((e) => e.type === 'cdp.breakpoint.suspended'),
      'the suspension is in the stored session',
    );
  });

  it('refuses pausing methods in snapshot mode', async () => {
    const { client } = await snapshotSession();
    for (const method of ['Debugger.pause', 'Debugger.stepOver', 'Debugger.setPauseOnExceptions']) {
      const reply = await client.send(method, { state: 'all' });
      assert.match(reply.error!.message, new RegExp(`^${method.replace('.', '\\.')} refused by Loupe: it is not allowed in snapshot mode`));
    }
    await client.close();
  });
});
