// Drives the shipped dist/debugAdapter.js with a DAP client against a real broker and a real target running the
// compiled TypeScript service, debugged in its .ts sources through localRoot/remoteRoot and source maps.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { DebugClient } from '@vscode/debugadapter-testsupport';
import type { DebugProtocol } from '@vscode/debugprotocol';
import { SnapshotList, snapshotRow } from '../../extension/snapshotList';
import { basePolicy, startTestBroker, type TestBroker } from '../support/testBroker';
import { line, pricingTs, serviceRoot, serviceTs, startService, type DeployedService } from './tsService';
import { sleep, waitFor } from '../support/wait';

const adapter = join(__dirname, '..', '..', 'dist', 'debugAdapter.js');

let service: DeployedService;
let broker: TestBroker;
let identityToken: string;

/**
 * The base policy, with snapshot limits that let a test see several captures and logpoint messages in a second or
 * two, time budgets a loaded machine meets (a capture's, and a logpoint message's: its reads, each recorded first),
 * and objects read 3 levels deep (the content of a capture is what these tests read: nested fields, hovers into them).
 */
function dapPolicy(inspector: string, snapshot: Record<string, number | boolean> = {}, extra: { limits?: Record<string, number> } = {}) {
  const base = basePolicy(inspector);
  return {
    ...base,
    targets: { app: { ...base.targets.app, snapshot: { minIntervalMs: 300, maxCapturesPerMinute: 1000, timeBudgetMs: 1000, depth: 3, closures: true, ...snapshot } } },
    limits: { conditionTimeoutMs: 500, ...extra.limits },
  };
}

before(async () => {
  service = await startService();
  broker = await startTestBroker(dapPolicy(service.target.inspector));
  identityToken = await broker.token('dev', ['devs']);
});
after(async () => {
  await broker?.close();
  await service?.stop();
});

function attachArgs(extra: Record<string, unknown> = {}) {
  return {
    target: 'app',
    mode: 'pause',
    durationSeconds: 120,
    reason: 'DAP test: checking order totals',
    brokerUrl: broker.url,
    identityToken,
    localRoot: serviceRoot,
    remoteRoot: service.remoteRoot,
    outFiles: [join(serviceRoot, 'dist', '**', '*.js')],
    ...extra,
  };
}

/** Starts the adapter process and attaches; collects output events. */
async function open(extra: Record<string, unknown> = {}): Promise<{ dc: DebugClient; output: string[]; events: DebugProtocol.Event[]; outputEvents: DebugProtocol.OutputEvent[] }> {
  const dc = new DebugClient(process.execPath, adapter, 'loupe', undefined, true);
  dc.defaultTimeout = 10_000;
  const output: string[] = [];
  const outputEvents: DebugProtocol.OutputEvent[] = [];
  const events: DebugProtocol.Event[] = [];
  dc.on('output', (e: DebugProtocol.OutputEvent) => (output.push(e.body.output), outputEvents.push(e)));
  for (const name of ['loupe.grant', 'loupe.sessionEnded', 'terminated', 'continued', 'stopped', 'breakpoint', 'loupe.snapshot', 'loupe.snapshotShown'])
    dc.on(name, (e: DebugProtocol.Event) => events.push(e));
  await dc.start();
  await Promise.all([
    dc.configurationSequence(),
    dc.initializeRequest({ adapterID: 'loupe', linesStartAt1: true, columnsStartAt1: true, pathFormat: 'path' }).then(() => dc.attachRequest(attachArgs(extra) as any)),
  ]);
  return { dc, output, events, outputEvents };
}

async function close(dc: DebugClient): Promise<void> {
  await dc.disconnectRequest({}).catch(() => undefined);
  await dc.stop();
}

async function topFrame(dc: DebugClient) {
  const st = await dc.stackTraceRequest({ threadId: 1 });
  return { frames: st.body.stackFrames, top: st.body.stackFrames[0]! };
}

async function locals(dc: DebugClient, frameId: number): Promise<Map<string, DebugProtocol.Variable>> {
  const scopes = await dc.scopesRequest({ frameId });
  const local = scopes.body.scopes.find((s) => s.name === 'Local')!;
  assert.ok(local, `a Local scope among ${scopes.body.scopes.map((s) => s.name)}`);
  const vars = await dc.variablesRequest({ variablesReference: local.variablesReference });
  return new Map(vars.body.variables.map((v) => [v.name, v]));
}

describe('debug adapter (dist/debugAdapter.js) through a real broker', () => {
  it('stops at a breakpoint in the .ts source with the right line, stack and locals; steps; evaluates; refuses side effects', async () => {
    const { dc, events } = await open();
    try {
      assert.equal(events.find((e) => e.event === 'loupe.grant')?.body.target, 'app');
      const handleLine = line(serviceTs, 'handle');
      // Waiting starts before the request: the stop can arrive in the same read as the answer.
      const stopping = dc.waitForEvent('stopped');
      const set = await dc.setBreakpointsRequest({ source: { path: serviceTs }, breakpoints: [{ line: handleLine }] });
      assert.equal(set.body.breakpoints[0]!.verified, true, JSON.stringify(set.body));
      assert.equal(set.body.breakpoints[0]!.line, handleLine);
      const stopped = (await stopping) as DebugProtocol.StoppedEvent;
      assert.equal(stopped.body.reason, 'breakpoint');
      const { frames, top } = await topFrame(dc);
      assert.equal(top.name, 'handle');
      assert.equal(top.source?.path, serviceTs);
      assert.equal(top.line, handleLine);
      assert.equal(frames[1]?.source?.path, serviceTs, 'the timer callback, also mapped to service.ts');
      const vars = await locals(dc, top.id);
      assert.match(vars.get('label')!.value, /^'order-\d+'$/);
      assert.match(vars.get('total')!.value, /^\d+(\.\d+)?$/);
      // lazy expansion: order → customer → name
      const order = vars.get('order')!;
      assert.ok(order.variablesReference > 0);
      const orderProps = new Map((await dc.variablesRequest({ variablesReference: order.variablesReference })).body.variables.map((v) => [v.name, v]));
      const customer = new Map((await dc.variablesRequest({ variablesReference: orderProps.get('customer')!.variablesReference })).body.variables.map((v) => [v.name, v]));
      assert.match(customer.get('name')!.value, /^'(Ada|Grace)'$/);
      // a getter is shown, never invoked (Runtime.getProperties; Runtime.callFunctionOn is refused by the broker)
      const scopes = await dc.scopesRequest({ frameId: top.id });
      const closure = scopes.body.scopes.find((s) => /Closure|Module|Script/.test(s.name) && !/Global/.test(s.name))!;
      const closureVars = new Map((await dc.variablesRequest({ variablesReference: closure.variablesReference })).body.variables.map((v) => [v.name, v]));
      const audit = closureVars.get('audit');
      assert.ok(audit, `audit among ${[...closureVars.keys()]}`);
      const auditProps = (await dc.variablesRequest({ variablesReference: audit.variablesReference })).body.variables;
      assert.match(auditProps.find((v) => v.name === 'lastRead')!.value, /getter: not invoked/);
      // evaluate in the frame (hover, watch, repl) and a refused side effect shown as the result
      const hover = await dc.evaluateRequest({ expression: 'order.items.length', frameId: top.id, context: 'hover' });
      assert.equal(hover.body.result, '2');
      const watch = await dc.evaluateRequest({ expression: 'label.length + 1', frameId: top.id, context: 'watch' });
      assert.match(watch.body.result, /^\d+$/);
      const refused = await dc.evaluateRequest({ expression: 'processed = 0', frameId: top.id, context: 'repl' });
      assert.match(refused.body.result, /Refused by Loupe: .*side effect/);
      const getterRan = await dc.evaluateRequest({ expression: 'typeof globalThis.getterRan', frameId: top.id, context: 'repl' });
      assert.equal(getterRan.body.result, "'undefined'", 'no getter ran in the target');
      // step into priceOrder (pricing.ts) and out again
      await dc.setBreakpointsRequest({ source: { path: serviceTs }, breakpoints: [] });
      const totalLine = line(pricingTs, 'total');
      await dc.setBreakpointsRequest({ source: { path: pricingTs }, breakpoints: [{ line: totalLine }] });
      await Promise.all([dc.continueRequest({ threadId: 1 }), dc.waitForEvent('stopped')]);
      let at = await topFrame(dc);
      assert.equal(at.top.source?.path, pricingTs);
      assert.equal(at.top.line, totalLine);
      assert.equal(at.top.name, 'priceOrder');
      assert.equal(at.frames[1]?.name, 'handle');
      await Promise.all([dc.nextRequest({ threadId: 1 }), dc.waitForEvent('stopped')]);
      at = await topFrame(dc);
      assert.equal(at.top.line, totalLine + 1, 'next moves to the following line');
      await Promise.all([dc.stepOutRequest({ threadId: 1 }), dc.waitForEvent('stopped')]);
      at = await topFrame(dc);
      assert.equal(at.top.name, 'handle');
      assert.equal(at.top.source?.path, serviceTs);
      // loadedSources lists the .ts sources
      const loaded = await dc.customRequest('loadedSources', {});
      const paths = (loaded.body.sources as DebugProtocol.Source[]).map((s) => s.path);
      assert.ok(paths.includes(serviceTs) && paths.includes(pricingTs), JSON.stringify(paths));
      // continue: the target runs again
      await dc.setBreakpointsRequest({ source: { path: pricingTs }, breakpoints: [] });
      await dc.continueRequest({ threadId: 1 });
      await service.target.ticksAdvance(3);
      // pause and continue
      await Promise.all([dc.pauseRequest({ threadId: 1 }), dc.waitForEvent('stopped')]);
      await dc.continueRequest({ threadId: 1 });
      await service.target.ticksAdvance(3);
    } finally {
      await close(dc);
    }
    // disconnect detached: the target runs on
    await service.target.ticksAdvance(3);
    assert.equal(service.target.proc.exitCode, null);
  });

  it('conditional breakpoint: stops only where the broker finds the condition true; a side-effecting condition is refused with the reason', async () => {
    const { dc } = await open();
    try {
      const handleLine = line(serviceTs, 'handle');
      const stopping = dc.waitForEvent('stopped');
      const set = await dc.setBreakpointsRequest({
        source: { path: serviceTs },
        breakpoints: [{ line: handleLine, condition: 'order.id % 4 === 0' }],
      });
      assert.equal(set.body.breakpoints[0]!.verified, true, JSON.stringify(set.body));
      await stopping;
      const { top } = await topFrame(dc);
      const id = await dc.evaluateRequest({ expression: 'order.id', frameId: top.id, context: 'watch' });
      assert.equal(Number(id.body.result) % 4, 0);
      // A side-effecting condition never reaches V8: the breakpoint shows unverified with the broker's reason.
      const bad = await dc.setBreakpointsRequest({ source: { path: pricingTs }, breakpoints: [{ line: line(pricingTs, 'total'), condition: 'globalThis.x = 1' }] });
      assert.equal(bad.body.breakpoints[0]!.verified, false);
      assert.match(bad.body.breakpoints[0]!.message ?? '', /refused/);
      await dc.continueRequest({ threadId: 1 });
    } finally {
      await close(dc);
    }
  });

  it('hit count and logpoints: a logpoint (by the broker) prints its message and never stops; a side-effecting one is refused; a hit count stops on the Nth hit', async () => {
    const { dc, output, outputEvents } = await open();
    try {
      const handleLine = line(serviceTs, 'handle');
      let stops = 0;
      dc.on('stopped', () => stops++);
      const set = await dc.setBreakpointsRequest({
        source: { path: serviceTs },
        breakpoints: [{ line: handleLine, logMessage: 'priced {label} for {order.customer.name}: {total} {order.items}' }],
      });
      assert.equal(set.body.breakpoints[0]!.verified, true);
      await waitFor(() => output.filter((o) => o.startsWith('priced order-')).length >= 3, { intervalMs: 50 });
      // The broker evaluates the message on each hit (at most one message per snapshot.minIntervalMs) and resumes.
      const logged = outputEvents.find((o) => o.body.output.startsWith('priced order-'))!;
      assert.match(logged.body.output, /^priced order-\d+ for (Ada|Grace): \d+(\.\d+)? Array\(2\)\n$/);
      assert.equal(logged.body.category, 'console');
      assert.equal(logged.body.source?.path, serviceTs, 'at the logpoint in the .ts source');
      assert.equal(logged.body.line, handleLine);
      assert.equal(stops, 0, 'a logpoint never stops');
      await service.target.ticksAdvance(3);
      // a logpoint with a side-effecting part is refused by the broker: unverified, with its reason
      const refused = await dc.setBreakpointsRequest({ source: { path: serviceTs }, breakpoints: [{ line: handleLine, logMessage: 'x={processed++}' }] });
      assert.equal(refused.body.breakpoints[0]!.verified, false);
      assert.match(refused.body.breakpoints[0]!.message ?? '', /^Loupe\.setLogpoint refused: logpoint expression "processed\+\+" /);
      // input the adapter cannot use is reported on the breakpoint, never read as "never": a hit condition that is
      // not one, and (for the logpoint the adapter evaluates itself) a template whose braces do not balance
      const invalid = await dc.setBreakpointsRequest({
        source: { path: serviceTs },
        breakpoints: [
          { line: handleLine, hitCondition: 'every 2' },
          { line: handleLine, logMessage: 'a {b {c}', hitCondition: '%2' },
          { line: handleLine, logMessage: 'a {b {c}' },
        ],
      });
      const [badHit, badTemplate, badBrokerTemplate] = invalid.body.breakpoints;
      assert.equal(badHit!.verified, false);
      assert.equal(
        badHit!.message,
        'Loupe: the hit condition "every 2" is invalid: expected a hit count with an optional operator: >5 (after the 5th hit), >=5 or 5 (from the 5th on), <5, <=5, ==3 or =3 (the 3rd only), %2 (every 2nd hit)',
      );
      assert.equal(badTemplate!.verified, false);
      assert.match(badTemplate!.message ?? '', /^Loupe: the logpoint message has a "\{" at position 3 that is never closed: write each expression in matching braces/);
      assert.equal(badBrokerTemplate!.verified, false, 'the broker refuses the same template with the same words');
      assert.match(badBrokerTemplate!.message ?? '', /^Loupe\.setLogpoint refused: the logpoint message has a "\{" at position 3 that is never closed/);
      await service.target.ticksAdvance(3);
      assert.equal(stops, 0, 'an invalid breakpoint never stops');
      // a pause-mode logpoint with a hit count: the adapter counts every hit, so messages come two orders apart
      await dc.setBreakpointsRequest({ source: { path: serviceTs }, breakpoints: [{ line: handleLine, logMessage: 'every other: {order.id}', hitCondition: '%2' }] });
      await waitFor(() => output.filter((o) => o.startsWith('every other: ')).length >= 2, { intervalMs: 50 });
      const ids = output.filter((o) => o.startsWith('every other: ')).map((o) => Number(o.slice('every other: '.length)));
      assert.equal(ids[1]! - ids[0]!, 2, `messages at orders ${ids.join(', ')}`);
      assert.equal(stops, 0, 'a logpoint with a hit count never stops either');
      // hit count "%3": stops on every third hit, so consecutive stops are three orders apart
      await dc.setBreakpointsRequest({ source: { path: serviceTs }, breakpoints: [] });
      const orderIdAtStop = async (stopping: Promise<unknown>) => {
        await stopping;
        const { top } = await topFrame(dc);
        return Number((await dc.evaluateRequest({ expression: 'order.id', frameId: top.id, context: 'watch' })).body.result);
      };
      const firstStop = dc.waitForEvent('stopped');
      await dc.setBreakpointsRequest({ source: { path: pricingTs }, breakpoints: [{ line: line(pricingTs, 'total'), hitCondition: '%3' }] });
      const first = await orderIdAtStop(firstStop);
      const secondStop = dc.waitForEvent('stopped');
      await dc.continueRequest({ threadId: 1 });
      const second = await orderIdAtStop(secondStop);
      assert.equal(second - first, 3, `stops at orders ${first} and ${second}`);
      await dc.continueRequest({ threadId: 1 });
    } finally {
      await close(dc);
    }
  });

  it('snapshot mode: a capture is shown as a stop (stack, locals, hover from the capture) while the target runs on; continue moves to the next capture; read-only', async () => {
    // Arrival times of the target's own ticks (every 50 ms): a held target would leave a gap.
    const tickTimes: number[] = [];
    const onTick = (chunk: string) => {
      for (const l of chunk.split('\n')) if (/^tick \d+$/.test(l)) tickTimes.push(Date.now());
    };
    service.target.proc.stdout!.on('data', onTick);
    const { dc, output, events } = await open({ mode: 'snapshot' });
    const snapshots = () => events.filter((e) => e.event === 'loupe.snapshot').map((e) => e.body);
    const stops = () => events.filter((e) => e.event === 'stopped');
    try {
      const handleLine = line(serviceTs, 'handle');
      const stopping = dc.waitForEvent('stopped');
      const set = await dc.setBreakpointsRequest({ source: { path: serviceTs }, breakpoints: [{ line: handleLine }] });
      assert.equal(set.body.breakpoints[0]!.verified, true, JSON.stringify(set.body));
      const stopped = (await stopping) as DebugProtocol.StoppedEvent;
      const sessionStart = Date.now();
      assert.equal(stopped.body.reason, 'breakpoint');
      assert.equal(stopped.body.description, 'Snapshot');
      assert.deepEqual(stopped.body.hitBreakpointIds, [set.body.breakpoints[0]!.id]);
      const first = snapshots()[0]!;
      assert.equal(first.seq, 1);
      assert.equal(first.functionName, 'handle');
      assert.equal(first.path, serviceTs);
      assert.equal(first.line, handleLine);
      assert.equal(first.location, `service.ts:${handleLine}`);
      assert.equal(first.breakpointId, set.body.breakpoints[0]!.id);
      assert.deepEqual(events.find((e) => e.event === 'loupe.snapshotShown')?.body, { captureId: first.captureId });
      // the stack, source-mapped as in pause mode
      const { frames, top } = await topFrame(dc);
      assert.equal(top.name, 'handle');
      assert.equal(top.source?.path, serviceTs);
      assert.equal(top.line, handleLine);
      assert.equal(frames[1]?.source?.path, serviceTs, 'the timer callback, also mapped to service.ts');
      // locals from the capture
      const vars = await locals(dc, top.id);
      const label = vars.get('label')!.value;
      assert.match(label, /^'order-\d+'$/);
      assert.match(vars.get('total')!.value, /^\d+(\.\d+)?$/);
      const order = vars.get('order')!;
      assert.ok(order.variablesReference > 0);
      assert.deepEqual(order.presentationHint?.attributes, ['readOnly']);
      // previewed from the capture, as a live object is
      assert.match(order.value, /^\{id: \d+, customer: \{…\}, items: Array\(2\)\}$/);
      const orderProps = new Map((await dc.variablesRequest({ variablesReference: order.variablesReference })).body.variables.map((v) => [v.name, v]));
      const customer = new Map((await dc.variablesRequest({ variablesReference: orderProps.get('customer')!.variablesReference })).body.variables.map((v) => [v.name, v]));
      const name = customer.get('name')!.value;
      assert.match(name, /^'(Ada|Grace)'$/);
      // the module closure of the top frame: a getter is listed, never run
      const scopes = await dc.scopesRequest({ frameId: top.id });
      const closure = scopes.body.scopes.find((s) => s.name === 'Closure')!;
      assert.ok(closure, `a Closure scope among ${scopes.body.scopes.map((s) => s.name)}`);
      const closureVars = new Map((await dc.variablesRequest({ variablesReference: closure.variablesReference })).body.variables.map((v) => [v.name, v]));
      const audit = closureVars.get('audit')!;
      assert.ok(audit, `audit among ${[...closureVars.keys()]}`);
      const lastRead = (await dc.variablesRequest({ variablesReference: audit.variablesReference })).body.variables.find((v) => v.name === 'lastRead')!;
      assert.equal(lastRead.value, '(getter: not invoked by Loupe)');
      // hover and watch read the capture; anything else says it is not captured
      const hover = await dc.evaluateRequest({ expression: 'order.customer.name', frameId: top.id, context: 'hover' });
      assert.equal(hover.body.result, name);
      assert.equal((await dc.evaluateRequest({ expression: 'order.items[1]["sku"]', frameId: top.id, context: 'hover' })).body.result, "'cap'");
      assert.equal((await dc.evaluateRequest({ expression: 'order.items.length', frameId: top.id, context: 'watch' })).body.result, '2');
      assert.equal((await dc.evaluateRequest({ expression: 'label', frameId: top.id, context: 'repl' })).body.result, label);
      const missing = await dc.evaluateRequest({ expression: 'nothing', frameId: top.id, context: 'hover' });
      assert.equal(missing.body.result, 'not captured in this snapshot: "nothing" is not among the captured variables of handle');
      const missingField = await dc.evaluateRequest({ expression: 'order.customer.email', frameId: top.id, context: 'hover' });
      assert.equal(missingField.body.result, 'not captured in this snapshot: order.customer.email');
      const computed = await dc.evaluateRequest({ expression: 'order.id + 1', frameId: top.id, context: 'watch' });
      assert.match(computed.body.result, /^not captured in this snapshot: "order\.id \+ 1" is not a captured name or path/);
      const write = await dc.evaluateRequest({ expression: 'processed = 0', frameId: top.id, context: 'repl' });
      assert.match(write.body.result, /^not captured in this snapshot/);
      // read-only: no stepping, no pause, no setVariable
      await assert.rejects(dc.nextRequest({ threadId: 1 }), /stepping is not available in snapshot mode/);
      await assert.rejects(dc.stepInRequest({ threadId: 1 }), /stepping is not available in snapshot mode/);
      await assert.rejects(dc.pauseRequest({ threadId: 1 }), /snapshot mode never pauses the target/);
      await assert.rejects(dc.customRequest('setVariable', { variablesReference: order.variablesReference, name: 'id', value: '0' }), /read-only/);
      // the target ran on all along, from its own side: its ticks keep coming while we look at the capture
      const tickWhileShown = service.target.lastTick();
      await service.target.ticksAdvance(5);
      assert.ok(service.target.lastTick() > tickWhileShown);
      // continue: the next capture, queued while the first was shown (in order, a later order)
      await waitFor(() => snapshots().length >= 3, { intervalMs: 50 });
      await Promise.all([dc.continueRequest({ threadId: 1 }), dc.waitForEvent('stopped')]);
      const listed = (await dc.customRequest('loupe.snapshots')).body;
      assert.equal(listed.shown, snapshots()[1]!.captureId);
      assert.equal(listed.queued[0], snapshots()[2]!.captureId);
      const next = await topFrame(dc);
      const nextLabel = (await locals(dc, next.top.id)).get('label')!.value;
      assert.ok(Number(nextLabel.slice(7, -1)) > Number(label.slice(7, -1)), `${nextLabel} after ${label}`);
      // the Snapshots view lists the adapter's events (newest first); selecting the oldest row shows it again
      const list = new SnapshotList();
      for (const body of snapshots()) list.add('session-1', 'Loupe: app (snapshot)', body);
      const rows = list.list()[0]!.captures;
      assert.equal(rows.at(-1)!.captureId, first.captureId);
      const row = snapshotRow(rows.at(-1)!, false);
      assert.equal(row.label, '#1 handle');
      assert.match(row.description, new RegExp(`^service\\.ts:${handleLine} · \\d`));
      await Promise.all([dc.customRequest('loupe.showSnapshot', { captureId: rows.at(-1)!.captureId }), dc.waitForEvent('stopped')]);
      assert.equal((await locals(dc, (await topFrame(dc)).top.id)).get('label')!.value, label);
      // the broker's rate limit is told, with its figures
      await waitFor(() => output.some((o) => o.includes('is throttled by the broker')), { intervalMs: 50 });
      assert.match(
        output.find((o) => o.includes('is throttled by the broker'))!,
        /^Loupe: the snapshot breakpoint at service\.ts:\d+ is throttled by the broker: at most one capture every 300 ms per breakpoint/,
      );
      // no more captures: continue drains the queue, then the adapter says the thread runs and waits
      await dc.setBreakpointsRequest({ source: { path: serviceTs }, breakpoints: [] });
      await sleep(300); // captures already on their way arrive first (nothing marks the last of them)
      for (let i = 0; i < 50 && !events.some((e) => e.event === 'continued'); i++) {
        const before = stops().length;
        await dc.continueRequest({ threadId: 1 });
        await waitFor(() => stops().length > before || events.some((e) => e.event === 'continued'), { intervalMs: 50 });
      }
      assert.ok(
        events.some((e) => e.event === 'continued'),
        'continued once no capture is queued',
      );
      const shownIds = stops().length;
      assert.ok(shownIds >= 4, `${shownIds} stops`);
      // from the target's side: never held. Ticks every 50 ms, and no gap near what a pause would leave.
      const during = tickTimes.filter((t) => t >= sessionStart);
      const gaps = during.slice(1).map((t, i) => t - during[i]!);
      assert.ok(during.length >= 10, `${during.length} ticks`);
      assert.ok(Math.max(...gaps) < 750, `longest gap between ticks ${Math.max(...gaps)} ms`);
      assert.equal(service.target.proc.exitCode, null);
    } finally {
      service.target.proc.stdout!.off('data', onTick);
      await close(dc);
    }
  });

  it('snapshot mode: logpoints by the broker print with their location; a side-effecting one is unverified with the reason', async () => {
    const { dc, outputEvents, events } = await open({ mode: 'snapshot' });
    try {
      const handleLine = line(serviceTs, 'handle');
      const totalLine = line(pricingTs, 'total');
      const refused = await dc.setBreakpointsRequest({
        source: { path: pricingTs },
        breakpoints: [
          { line: totalLine, logMessage: 'bye {process.exit()}' },
          { line: totalLine + 1, logMessage: 'x {x = 1}' },
        ],
      });
      assert.equal(refused.body.breakpoints[0]!.verified, false);
      assert.match(refused.body.breakpoints[0]!.message ?? '', /^Loupe\.setLogpoint refused: logpoint expression "process\.exit\(\)" /);
      assert.equal(refused.body.breakpoints[1]!.verified, false);
      assert.match(refused.body.breakpoints[1]!.message ?? '', /^Loupe\.setLogpoint refused: logpoint expression "x = 1" /);
      const set = await dc.setBreakpointsRequest({
        source: { path: serviceTs },
        breakpoints: [{ line: handleLine, logMessage: 'snap {label} for {order.customer.name} upper={label.toUpperCase()}' }],
      });
      assert.equal(set.body.breakpoints[0]!.verified, true, JSON.stringify(set.body));
      await waitFor(() => outputEvents.some((o) => o.body.output.startsWith('snap order-')), { intervalMs: 50 });
      const logged = outputEvents.find((o) => o.body.output.startsWith('snap order-'))!;
      // Loupe expressions: the broker interprets each part (string built-ins included; V8's side-effect check
      // refused toUpperCase here, a V8 evaluation grant still does)
      assert.match(logged.body.output, /^snap order-\d+ for (Ada|Grace) upper=ORDER-\d+\n$/);
      assert.equal(logged.body.category, 'console');
      assert.equal(logged.body.source?.path, serviceTs);
      assert.equal(logged.body.line, handleLine);
      await service.target.ticksAdvance(3);
      assert.equal(events.filter((e) => e.event === 'stopped').length, 0, 'a logpoint never shows a stop');
      assert.equal(service.target.proc.exitCode, null, 'and the target is still there');
    } finally {
      await close(dc);
    }
  });

  it('Loupe expressions in the Debug Console: read around a redacted field, the marker for it; a condition on it disables the breakpoint with the notice', async () => {
    const { dc, output } = await open();
    const changed: DebugProtocol.BreakpointEvent[] = [];
    dc.on('breakpoint', (e: DebugProtocol.BreakpointEvent) => changed.push(e));
    try {
      const handleLine = line(serviceTs, 'handle');
      const stopping = dc.waitForEvent('stopped');
      await dc.setBreakpointsRequest({ source: { path: serviceTs }, breakpoints: [{ line: handleLine }] });
      await stopping;
      const { top } = await topFrame(dc);
      // Interpreted by the broker: string built-ins on a value that is not redacted work as in JavaScript.
      const domain = await dc.evaluateRequest({ expression: 'user.email.split("@")[1]', frameId: top.id, context: 'repl' });
      assert.equal(domain.body.result, "'example.com'");
      // Anything computed from a redacted value is the marker, its length too.
      const length = await dc.evaluateRequest({ expression: 'user.password.length', frameId: top.id, context: 'repl' });
      assert.match(length.body.result, /\[redacted: password\]/);
      assert.ok(!length.body.result.includes('28'), length.body.result);
      // A condition whose value depends on the password never decides a pause: the breakpoint is disabled.
      const set = await dc.setBreakpointsRequest({ source: { path: serviceTs }, breakpoints: [{ line: handleLine, condition: 'user.password.length > 3' }] });
      const id = set.body.breakpoints[0]!.id;
      assert.equal(set.body.breakpoints[0]!.verified, true, JSON.stringify(set.body));
      await dc.continueRequest({ threadId: 1 });
      await waitFor(() => changed.some((e) => e.body.breakpoint.id === id && !e.body.breakpoint.verified), { intervalMs: 50 });
      const disabled = changed.find((e) => e.body.breakpoint.id === id && !e.body.breakpoint.verified)!.body.breakpoint;
      assert.match(disabled.message ?? '', /^Disabled by Loupe: its condition depends on the redacted field "password"/);
      assert.ok(
        output.some((o) => /^Loupe: the breakpoint at service\.ts:\d+ was disabled by the broker: its condition depends on the redacted field "password"/.test(o)),
        output.join(''),
      );
      // The target runs on: the breakpoint is out of V8.
      await service.target.ticksAdvance(3);
    } finally {
      await close(dc);
    }
  });

  it('the broker takes a breakpoint out (capture limit, pause budget): unverified with the reason, and the figures in the output', async () => {
    const strict = await startTestBroker(dapPolicy(service.target.inspector, { minIntervalMs: 0, maxCapturesPerBreakpoint: 2 }, { limits: { conditionBudgetMsPerSecond: 2 } }));
    const dc = new DebugClient(process.execPath, adapter, 'loupe', undefined, true);
    dc.defaultTimeout = 10_000;
    const output: string[] = [];
    const changed: DebugProtocol.BreakpointEvent[] = [];
    dc.on('output', (e: DebugProtocol.OutputEvent) => output.push(e.body.output));
    dc.on('breakpoint', (e: DebugProtocol.BreakpointEvent) => changed.push(e));
    try {
      await dc.start();
      const token = await strict.token('dev', ['devs']);
      await Promise.all([
        dc.configurationSequence(),
        dc
          .initializeRequest({ adapterID: 'loupe', linesStartAt1: true, columnsStartAt1: true, pathFormat: 'path' })
          .then(() => dc.attachRequest({ ...attachArgs({ mode: 'snapshot' }), brokerUrl: strict.url, identityToken: token } as any)),
      ]);
      const limited = await dc.setBreakpointsRequest({ source: { path: pricingTs }, breakpoints: [{ line: line(pricingTs, 'total') }] });
      const never = await dc.setBreakpointsRequest({ source: { path: serviceTs }, breakpoints: [{ line: line(serviceTs, 'handle'), condition: 'order.id < 0' }] });
      const limitedId = limited.body.breakpoints[0]!.id;
      const neverId = never.body.breakpoints[0]!.id;
      await waitFor(() => changed.some((e) => e.body.breakpoint.id === limitedId) && changed.some((e) => e.body.breakpoint.id === neverId), { intervalMs: 50 });
      const removed = changed.find((e) => e.body.breakpoint.id === limitedId)!.body;
      assert.equal(removed.reason, 'changed');
      assert.equal(removed.breakpoint.verified, false);
      assert.equal(removed.breakpoint.message, 'Removed by Loupe: reached its limit of 2 captures and was removed');
      assert.ok(
        output.some((o) => o === `Loupe: the snapshot breakpoint at pricing.ts:${line(pricingTs, 'total')} reached its limit of 2 captures and was removed.\n`),
        output.join(''),
      );
      const suspended = changed.find((e) => e.body.breakpoint.id === neverId)!.body.breakpoint;
      assert.equal(suspended.verified, false);
      assert.match(suspended.message ?? '', /^Suspended by Loupe: its hits held the target [\d.]+ ms in the last second over \d+ hits \(budget 2 ms per second\)$/);
      assert.ok(
        output.some((o) =>
          /^Loupe: the breakpoint at service\.ts:\d+ was suspended by the broker: its hits held the target [\d.]+ ms in the last second over \d+ hits \(budget 2 ms per second\)\./.test(o),
        ),
        output.join(''),
      );
      await service.target.ticksAdvance(3);
    } finally {
      await close(dc);
      await strict.close();
    }
  });

  it('after the watchdog resumes a pause the user is told breakpoints are off until they act; an evaluation turns them back on', async () => {
    const base = dapPolicy(service.target.inspector);
    const watchful = await startTestBroker({ ...base, targets: { app: { ...base.targets.app, maxPauseSeconds: 1 } } });
    const dc = new DebugClient(process.execPath, adapter, 'loupe', undefined, true);
    dc.defaultTimeout = 10_000;
    const output: string[] = [];
    // Counted from the start: a stop can arrive in the same read as the setBreakpoints answer, before a wait would be registered.
    let stops = 0;
    let continues = 0;
    dc.on('output', (e: DebugProtocol.OutputEvent) => output.push(e.body.output));
    dc.on('stopped', () => stops++);
    dc.on('continued', () => continues++);
    try {
      await dc.start();
      const token = await watchful.token('dev', ['devs']);
      await Promise.all([
        dc.configurationSequence(),
        dc
          .initializeRequest({ adapterID: 'loupe', linesStartAt1: true, columnsStartAt1: true, pathFormat: 'path' })
          .then(() => dc.attachRequest({ ...attachArgs(), brokerUrl: watchful.url, identityToken: token } as any)),
      ]);
      await dc.setBreakpointsRequest({ source: { path: serviceTs }, breakpoints: [{ line: line(serviceTs, 'handle') }] });
      await waitFor(() => stops === 1, { intervalMs: 50 });
      await waitFor(() => continues === 1, { timeoutMs: 5000, intervalMs: 50 });
      await waitFor(() => output.some((o) => /^Loupe: the watchdog resumed a pause held over 1 s: breakpoints are off until this client sends a request\. Any action here/.test(o)), {
        timeoutMs: 5000,
        intervalMs: 50,
      });
      await service.target.ticksAdvance(5);
      assert.equal(stops, 1, 'no pause while the user has not acted');
      await dc.evaluateRequest({ expression: '6 * 7', context: 'repl' });
      await waitFor(() => stops === 2, { intervalMs: 50 });
    } finally {
      await close(dc);
      await watchful.close();
    }
  });

  it('a launch.json attach with evaluation "v8": the grant has it, the loupe.grant event says so, the Debug Console warns; refused where no rule allows it', async () => {
    const base = dapPolicy(service.target.inspector);
    const privileged = await startTestBroker({ ...base, targets: { app: { ...base.targets.app, access: [{ role: 'dev', modes: ['pause'], evaluation: ['loupe', 'v8'], maxDuration: '10m' }] } } });
    const dc = new DebugClient(process.execPath, adapter, 'loupe', undefined, true);
    dc.defaultTimeout = 10_000;
    const output: string[] = [];
    const grants: DebugProtocol.Event[] = [];
    dc.on('output', (e: DebugProtocol.OutputEvent) => output.push(e.body.output));
    dc.on('loupe.grant', (e: DebugProtocol.Event) => grants.push(e));
    try {
      await dc.start();
      const token = await privileged.token('dev', ['devs']);
      await Promise.all([
        dc.configurationSequence(),
        dc
          .initializeRequest({ adapterID: 'loupe', linesStartAt1: true, columnsStartAt1: true, pathFormat: 'path' })
          .then(() => dc.attachRequest({ ...attachArgs({ evaluation: 'v8' }), brokerUrl: privileged.url, identityToken: token } as any)),
      ]);
      assert.equal(grants[0]?.body.evaluation, 'v8');
      assert.ok(output.includes('Loupe: this session may run app code in V8 (privileged). Redaction is best-effort.\n'), output.join(''));
      assert.equal((await privileged.waitForRecord('grant.issued')).data.evaluation, 'v8');
    } finally {
      await close(dc);
      await privileged.close();
    }
    // The shared broker's rule allows Loupe expressions only: the attach fails with the broker's reason, and a plain attach has no warning.
    const refusing = new DebugClient(process.execPath, adapter, 'loupe', undefined, true);
    refusing.defaultTimeout = 10_000;
    try {
      await refusing.start();
      await refusing.initializeRequest({ adapterID: 'loupe', linesStartAt1: true, columnsStartAt1: true, pathFormat: 'path' });
      await assert.rejects(refusing.attachRequest(attachArgs({ evaluation: 'v8' }) as any), /grant refused: .*the rule does not allow V8 evaluation/);
    } finally {
      await refusing.stop();
    }
    const { dc: plain, output: plainOutput, events } = await open();
    try {
      assert.equal(events.find((e) => e.event === 'loupe.grant')?.body.evaluation, undefined);
      assert.ok(!plainOutput.some((o) => /V8/.test(o)), plainOutput.join(''));
    } finally {
      await close(plain);
    }
  });

  it('a refused method and global evaluation: Runtime.evaluate without a frame, side effects refused', async () => {
    const { dc } = await open();
    try {
      const ok = await dc.evaluateRequest({ expression: '6 * 7', context: 'repl' });
      assert.equal(ok.body.result, '42');
      const refused = await dc.evaluateRequest({ expression: 'console.log("hi")', context: 'repl' });
      assert.match(refused.body.result, /Refused by Loupe/);
    } finally {
      await close(dc);
    }
  });

  it('grant expiry ends the session cleanly with a clear message; the target runs on without the breakpoints', async () => {
    const { dc, output, events } = await open({ durationSeconds: 3 });
    const terminated = dc.waitForEvent('terminated', 15_000);
    const stopping = dc.waitForEvent('stopped');
    await dc.setBreakpointsRequest({ source: { path: serviceTs }, breakpoints: [{ line: line(serviceTs, 'handle') }] });
    await stopping;
    await terminated;
    const ended = events.find((e) => e.event === 'loupe.sessionEnded');
    assert.equal(ended?.body.code, 4001);
    assert.match(ended?.body.message, /grant expired/);
    assert.ok(
      output.some((o) => /session has ended: the grant expired/.test(o)),
      output.join(''),
    );
    await service.target.ticksAdvance(5);
    await dc.stop();
  });
});
