import { strict as assert } from 'node:assert';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { afterEach, describe, it } from 'node:test';
import { CdpClient } from '../support/cdpClient';
import { assertHeld, fixtures, markerLine, startTarget, type TargetProcess } from '../support/target';
import { basePolicy, startTestBroker, type TestBroker } from '../support/testBroker';
import { renderReport } from '../../broker/audit/report';
import { readTranscriptFromStore, verifyTranscript } from '../../broker/audit/verify';
import { sleep, waitFor } from '../support/wait';

const appLine = markerLine(join(fixtures, 'app.js'), 'work');

function policy(target: TargetProcess, options: { maxPauseSeconds?: number; pingMs?: number; boundMs?: number }): Record<string, any> {
  const base = basePolicy(target.inspector);
  return {
    ...base,
    limits: { clientPingIntervalMs: options.pingMs ?? 5000, clientUnresponsiveMs: options.boundMs ?? 10000 },
    targets: { app: { ...base.targets.app, maxPauseSeconds: options.maxPauseSeconds ?? 30 } },
  };
}

/** A debugger client in a child process (fixtures/frozen-client.js), attached through the broker. */
interface ChildClient {
  readonly proc: ChildProcess;
  readonly grantId: string;
  /** Resolves when the child has printed `line` `count` times in all. */
  printed(line: string, count?: number, timeoutMs?: number): Promise<void>;
  readonly lines: string[];
}

async function childClient(broker: TestBroker): Promise<ChildClient> {
  const grant = await broker.grant('dev', ['devs']);
  const proc = spawn(process.execPath, [join(fixtures, 'frozen-client.js')], {
    env: { ...process.env, ATTACH_URL: grant.attachUrl, TOKEN: grant.token, LINE: String(appLine) },
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const lines: string[] = [];
  const waiters: (() => void)[] = [];
  let buffer = '';
  proc.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    buffer += chunk;
    const parts = buffer.split('\n');
    buffer = parts.pop()!;
    lines.push(...parts);
    for (const w of [...waiters]) w();
  });
  return {
    proc,
    grantId: grant.grantId,
    lines,
    printed(line, count = 1, timeoutMs = 10000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          if (lines.filter((l) => l === line).length < count) return false;
          clearTimeout(timer);
          waiters.splice(waiters.indexOf(check), 1);
          resolve();
          return true;
        };
        const timer = setTimeout(() => reject(new Error(`the client did not print "${line}" ${count}× within ${timeoutMs} ms (it printed: ${lines.join(', ')})`)), timeoutMs);
        waiters.push(check);
        check();
      });
    },
  };
}

async function stopChild(child: ChildClient | undefined): Promise<void> {
  if (!child || child.proc.exitCode !== null || child.proc.signalCode !== null) return;
  child.proc.kill('SIGCONT');
  child.proc.kill('SIGKILL');
  await once(child.proc, 'exit');
}

/** A direct Debugger-enabled session: while it is connected Node resumes nothing by itself, so what frees the target is the broker. */
async function observe(target: TargetProcess): Promise<CdpClient> {
  const observer = await CdpClient.connect(target.wsUrl);
  await observer.call('Debugger.enable');
  return observer;
}

/** Ticks the target makes in `ms`: about ms / 20 when it runs freely, 0 while it is held. */
async function progress(target: TargetProcess, ms: number): Promise<number> {
  const before = target.lastTick();
  await sleep(ms);
  return target.lastTick() - before;
}

async function eventsOf(broker: TestBroker, grantId: string): Promise<any[]> {
  return (await broker.sessionEvents()).filter((e) => e.grant === grantId).sort((a, b) => a.seq - b.seq);
}

/** The auditor's report of a session, from its verified transcript in the store. */
async function reportOf(broker: TestBroker, sessionId: string): Promise<string> {
  await broker.broker.audit.settle();
  const store = broker.broker.audit.store;
  const prefix = (await store.list('sessions/')).find((k) => k.includes(`/${sessionId}/`))!.replace(/[^/]+$/, '');
  const result = await verifyTranscript(await readTranscriptFromStore(store, prefix, false), broker.broker.auditKeys);
  assert.deepEqual(result.problems, []);
  return renderReport(result);
}

/** A session's records once it has ended (its chain is closed and in the store). */
async function endedEvents(broker: TestBroker, grantId: string): Promise<any[]> {
  await broker.waitForRecord('session.ended', (e) => e.grant === grantId);
  return eventsOf(broker, grantId);
}

describe('a client that is gone is noticed even when its TCP connection is not', () => {
  let target: TargetProcess;
  let broker: TestBroker | undefined;
  let child: ChildClient | undefined;
  let observer: CdpClient | undefined;
  afterEach(async () => {
    await stopChild(child);
    await observer?.close();
    await broker?.close();
    await target?.stop();
    child = observer = broker = undefined;
  });

  it('a client frozen while the target is paused ends as client_unresponsive within the bound: target resumed, breakpoint gone', async (t) => {
    target = await startTarget();
    observer = await observe(target);
    // Bounds a loaded machine meets: a live client's pong is never a second late.
    const pingMs = 500;
    const boundMs = 3000;
    broker = await startTestBroker(policy(target, { pingMs, boundMs }));
    child = await childClient(broker);
    await child.printed('paused');
    child.proc.kill('SIGSTOP');
    const frozenAt = Date.now();
    await assertHeld(observer, target);
    await target.ticksAdvance(2, boundMs + 5000);
    const freedAfter = Date.now() - frozenAt;
    t.diagnostic(`the target ran again ${freedAfter} ms after the client froze (bound ${boundMs} ms, ping every ${pingMs} ms)`);
    // Silence starts about one ping interval before the freeze at most; the end comes within the bound (+ slack for a loaded machine).
    assert.ok(freedAfter >= boundMs - pingMs - 1000, `freed ${freedAfter} ms after the freeze, well before the bound of ${boundMs} ms`);
    assert.ok(freedAfter < boundMs + 2500, `freed ${freedAfter} ms after the freeze (bound ${boundMs} ms)`);
    // The breakpoint is gone from V8: the line runs freely while a Debugger-enabled observer is connected.
    await target.ticksAdvance(10, 500); // the target runs freely past the line
    assert.equal(observer.events.filter((e) => e.method === 'Debugger.paused').length, 1, 'no pause after the end');
    const events = await endedEvents(broker, child.grantId);
    const unresponsive = events.find((e) => e.type === 'client.unresponsive');
    assert.ok(unresponsive, 'the silence is recorded');
    assert.ok(unresponsive.data.silentMs >= boundMs && unresponsive.data.boundMs === boundMs, JSON.stringify(unresponsive.data));
    assert.equal(events.at(-1).type, 'session.ended');
    assert.equal(events.at(-1).data.endReason, 'client_unresponsive');
    assert.ok(events.some((e) => e.type === 'broker.request' && e.data.method === 'Debugger.removeBreakpoint'));
    assert.ok(events.some((e) => e.type === 'broker.response' && e.data.method === 'Debugger.resume'));
    const report = await reportOf(broker, events[0].stream);
    assert.match(report, /session ended: the developer&#39;s client stopped answering \(frozen or cut off\)/);
    assert.match(report, /the client answered nothing for \d+ ms/);
    // Thawed, the client reads the close frame the broker sent before it let go of the socket.
    child.proc.kill('SIGCONT');
    await child.printed('closed 4009');
  });

  it('a client that answers pings is never ended for being idle', async () => {
    target = await startTarget();
    broker = await startTestBroker(policy(target, { pingMs: 200, boundMs: 1200 }));
    const { client } = await broker.attach();
    let pings = 0;
    client.socket.on('ping', () => pings++);
    await client.call('Debugger.enable');
    // 13 pings at 200 ms: the broker checked the idle client past two of its 1200 ms bounds.
    await waitFor(() => pings >= 13 || client.socket.readyState !== client.socket.OPEN, { what: () => `13 pings (${pings} so far)` });
    assert.equal(client.socket.readyState, client.socket.OPEN, 'still connected after more than 2 bounds of idling');
    assert.equal((await client.send('Runtime.evaluate', { expression: '1 + 1' })).result?.result.value, 2);
    await client.close();
  });

  it('after a watchdog resume the frozen client holds no pause again; its next request brings its breakpoint back', async (t) => {
    target = await startTarget();
    broker = await startTestBroker(policy(target, { maxPauseSeconds: 1, pingMs: 5000, boundMs: 60000 }));
    child = await childClient(broker);
    await child.printed('paused');
    child.proc.kill('SIGSTOP');
    observer = await observe(target); // it sees the pause it joins (V8 tells a new Debugger session where it is paused)
    await assertHeld(observer, target);
    await target.ticksAdvance(1, 5000); // the watchdog resumes it after maxPauseSeconds
    // The same hot breakpoint (hit every 20 ms) must not pause it again: count what the target does over 3 s.
    const window = 3000;
    const ticks = await progress(target, window);
    t.diagnostic(`after the watchdog resume the target ran ${ticks} ticks in ${window} ms (about ${window / 20} when free)`);
    assert.ok(ticks >= window / 20 / 3, `the target ran only ${ticks} ticks in ${window} ms: it is held again`);
    // Back: the client's next request sets its breakpoint again and the target pauses there for it.
    child.proc.kill('SIGCONT');
    child.proc.stdin!.write('poke\n');
    await child.printed('paused', 2);
    await assertHeld(observer, target, 'held again, now for a client that is there');
    child.proc.kill('SIGKILL');
    const events = await endedEvents(broker, child.grantId);
    const absentAt = events.findIndex((e) => e.type === 'client.absent');
    const returnedAt = events.findIndex((e) => e.type === 'client.returned');
    assert.ok(absentAt > 0 && events[absentAt - 1].type === 'watchdog.resumed', 'the watchdog resume and the absence are recorded');
    assert.ok(returnedAt > absentAt, 'the return is recorded');
    assert.deepEqual(events[returnedAt].data.breakpoints, events[absentAt].data.breakpoints);
    assert.equal(events.slice(absentAt, returnedAt).filter((e) => e.type === 'cdp.breakpoint.hit').length, 0, 'no hit held for the absent client');
    assert.ok(
      events.slice(returnedAt).some((e) => e.type === 'cdp.breakpoint.hit'),
      'a hit held for the client once back',
    );
    assert.ok(events.some((e) => e.type === 'broker.request' && e.data.method === 'Debugger.setSkipAllPauses' && e.data.params.skip === false));
    const report = await reportOf(broker, events[0].stream);
    assert.match(report, /breakpoints off until the client is back/);
    assert.match(report, /the client is back: breakpoints on again/);
  });
});

describe('a session ends or resumes only pauses it caused', () => {
  let target: TargetProcess;
  let broker: TestBroker | undefined;
  let clients: CdpClient[] = [];
  let observer: CdpClient | undefined;
  afterEach(async () => {
    for (const client of clients) await client.close();
    await observer?.close();
    await broker?.close();
    await target?.stop();
    clients = [];
    observer = broker = undefined;
  });

  async function session(): Promise<{ client: CdpClient; grantId: string }> {
    const { client, grant } = await broker!.attach();
    clients.push(client);
    await client.call('Debugger.enable');
    return { client, grantId: grant.grantId };
  }

  async function pauseAt(client: CdpClient): Promise<string> {
    const { breakpointId } = await client.call('Debugger.setBreakpointByUrl', { lineNumber: appLine, urlRegex: 'app\\.js$' });
    await client.waitEvent('Debugger.paused', (e) => e.params.hitBreakpoints?.includes(breakpointId));
    return breakpointId;
  }

  const ended = (grantId: string) => endedEvents(broker!, grantId);

  it('B holds a pause at its breakpoint, A ends: the pause still holds until B resumes it', async () => {
    target = await startTarget();
    broker = await startTestBroker(policy(target, {}));
    const a = await session();
    const b = await session();
    const breakpointId = await pauseAt(b.client);
    await a.client.waitEvent('Debugger.paused'); // A sees B's pause too
    await a.client.close();
    const events = await ended(a.grantId);
    assert.equal(events.filter((e) => e.type === 'broker.request' && e.data.method === 'Debugger.resume').length, 0, 'A sent no resume');
    assert.equal(events.find((e) => e.type === 'session.ending').data.ownPause, false);
    await assertHeld(b.client, target, "B's pause still holds after A's end");
    await b.client.call('Debugger.removeBreakpoint', { breakpointId });
    await b.client.call('Debugger.resume');
    await target.ticksAdvance(2);
  });

  it('A holds a pause at its breakpoint while B stays connected, A ends: A resumes it and removes its breakpoint', async () => {
    target = await startTarget();
    broker = await startTestBroker(policy(target, {}));
    const a = await session();
    const b = await session();
    await pauseAt(a.client);
    await b.client.waitEvent('Debugger.paused');
    await a.client.close();
    await target.ticksAdvance(2, 5000);
    await b.client.waitEvent('Debugger.resumed');
    await target.ticksAdvance(10, 500); // A's breakpoint is gone: the line runs freely with B connected
    const events = await ended(a.grantId);
    assert.equal(events.find((e) => e.type === 'session.ending').data.ownPause, true);
  });

  it("a snapshot session that ends leaves a pause session's pause alone", async () => {
    target = await startTarget();
    broker = await startTestBroker(policy(target, {}));
    const { client: watcher, grant } = await broker.attach({ mode: 'snapshot' });
    clients.push(watcher);
    await watcher.call('Debugger.enable');
    const holder = await session();
    const breakpointId = await pauseAt(holder.client);
    await watcher.close();
    const events = await ended(grant.grantId);
    assert.equal(events.filter((e) => e.type === 'broker.request' && e.data.method === 'Debugger.resume').length, 0, 'the snapshot session sent no resume');
    await assertHeld(holder.client, target, 'the pause still holds');
    await holder.client.call('Debugger.removeBreakpoint', { breakpointId });
    await holder.client.call('Debugger.resume');
    await target.ticksAdvance(2);
  });

  it('a pause of a debugger outside the broker holds when a broker session ends', async () => {
    target = await startTarget();
    broker = await startTestBroker(policy(target, {}));
    observer = await observe(target);
    const a = await session();
    await observer.call('Debugger.pause');
    await a.client.waitEvent('Debugger.paused');
    await a.client.close();
    await ended(a.grantId);
    await assertHeld(observer, target, "the other debugger's pause still holds");
    await observer.call('Debugger.resume');
    await target.ticksAdvance(2);
  });

  it("the watchdog of the session that caused a pause resumes it; the other session's watchdog does not act", async () => {
    target = await startTarget();
    broker = await startTestBroker(policy(target, { maxPauseSeconds: 1 }));
    const a = await session();
    const b = await session();
    await pauseAt(b.client);
    await a.client.waitEvent('Debugger.paused');
    await target.ticksAdvance(2, 5000);
    await b.client.waitEvent('Loupe.breakpointsParked');
    // Past the time A's own watchdog would have fired on the pause it saw (and its safety net for foreign pauses).
    assert.ok((await progress(target, 2500)) >= 40, 'B holds no further pause: its client sent nothing since');
    // B's client is live: its next request restores its breakpoint, and it pauses B again.
    await b.client.call('Runtime.evaluate', { expression: '1' });
    await b.client.waitEvent('Debugger.paused', (e) => e.params.hitBreakpoints?.length === 1);
    await a.client.close();
    await b.client.close();
    const ofA = await ended(a.grantId);
    const ofB = await ended(b.grantId);
    assert.ok(
      ofB.some((e) => e.type === 'watchdog.resumed'),
      "B's watchdog resumed its own pause",
    );
    assert.ok(ofB.some((e) => e.type === 'client.absent') && ofB.some((e) => e.type === 'client.returned'));
    assert.equal(ofA.filter((e) => e.type === 'watchdog.resumed' || e.type === 'client.absent').length, 0, "A's watchdog left B's pause alone");
  });
});
