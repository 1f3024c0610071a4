// Drives the shipped dist/debugAdapter.js with a DAP client against a real broker and a real target running the
// compiled TypeScript service, debugged in its .ts sources through localRoot/remoteRoot and source maps.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { DebugClient } from '@vscode/debugadapter-testsupport';
import type { DebugProtocol } from '@vscode/debugprotocol';
import { basePolicy, startTestBroker, type TestBroker } from '../support/testBroker';
import { line, pricingTs, serviceRoot, serviceTs, startService, type DeployedService } from './tsService';

const adapter = join(__dirname, '..', '..', 'dist', 'debugAdapter.js');

let service: DeployedService;
let broker: TestBroker;
let identityToken: string;

before(async () => {
  service = await startService();
  broker = await startTestBroker(basePolicy(service.target.inspector));
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
async function open(extra: Record<string, unknown> = {}): Promise<{ dc: DebugClient; output: string[]; events: DebugProtocol.Event[] }> {
  const dc = new DebugClient(process.execPath, adapter, 'loupe', undefined, true);
  dc.defaultTimeout = 10_000;
  const output: string[] = [];
  const events: DebugProtocol.Event[] = [];
  dc.on('output', (e: DebugProtocol.OutputEvent) => output.push(e.body.output));
  for (const name of ['loupe.grant', 'loupe.sessionEnded', 'terminated', 'continued']) dc.on(name, (e: DebugProtocol.Event) => events.push(e));
  await dc.start();
  await Promise.all([dc.configurationSequence(), dc.initializeRequest({ adapterID: 'loupe', linesStartAt1: true, columnsStartAt1: true, pathFormat: 'path' }).then(() => dc.attachRequest(attachArgs(extra) as any))]);
  return { dc, output, events };
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

const until = async (check: () => boolean, ms = 10_000) => {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 50));
  }
};

describe('debug adapter (dist/debugAdapter.js) through a real broker', () => {
  it('stops at a breakpoint in the .ts source with the right line, stack and locals; steps; evaluates; refuses side effects', async () => {
    const { dc, events } = await open();
    try {
      assert.equal(events.find((e) => e.event === 'loupe.grant')?.body.target, 'app');
      const handleLine = line(serviceTs, 'handle');
      const set = await dc.setBreakpointsRequest({ source: { path: serviceTs }, breakpoints: [{ line: handleLine }] });
      assert.equal(set.body.breakpoints[0]!.verified, true, JSON.stringify(set.body));
      assert.equal(set.body.breakpoints[0]!.line, handleLine);
      const stopped = (await dc.waitForEvent('stopped')) as DebugProtocol.StoppedEvent;
      assert.equal(stopped.body.reason, 'breakpoint');
      const { frames, top } = await topFrame(dc);
      assert.equal(top.name, 'handle');
      assert.equal(top.source?.path, serviceTs);
      assert.equal(top.line, handleLine);
      assert.equal(frames[1]?.source?.path, serviceTs, 'the timer callback, also mapped to service.ts');
      const vars = await locals(dc, top.id);
      assert.match(vars.get('label')!.value, /^"order-\d+"$/);
      assert.match(vars.get('total')!.value, /^\d+(\.\d+)?$/);
      // lazy expansion: order → customer → name
      const order = vars.get('order')!;
      assert.ok(order.variablesReference > 0);
      const orderProps = new Map((await dc.variablesRequest({ variablesReference: order.variablesReference })).body.variables.map((v) => [v.name, v]));
      const customer = new Map((await dc.variablesRequest({ variablesReference: orderProps.get('customer')!.variablesReference })).body.variables.map((v) => [v.name, v]));
      assert.match(customer.get('name')!.value, /^"(Ada|Grace)"$/);
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
      assert.equal(getterRan.body.result, '"undefined"', 'no getter ran in the target');
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
      const set = await dc.setBreakpointsRequest({
        source: { path: serviceTs },
        breakpoints: [{ line: handleLine, condition: 'order.id % 4 === 0' }],
      });
      assert.equal(set.body.breakpoints[0]!.verified, true, JSON.stringify(set.body));
      await dc.waitForEvent('stopped');
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

  it('hit count and logpoints: a logpoint prints its message and never stops; a hit count stops on the Nth hit', async () => {
    const { dc, output } = await open();
    try {
      const handleLine = line(serviceTs, 'handle');
      let stops = 0;
      dc.on('stopped', () => stops++);
      const set = await dc.setBreakpointsRequest({
        source: { path: serviceTs },
        breakpoints: [{ line: handleLine, logMessage: 'priced {label} for {order.customer.name}: {total} {order.items}' }],
      });
      assert.equal(set.body.breakpoints[0]!.verified, true);
      await until(() => output.filter((o) => o.startsWith('priced order-')).length >= 3);
      const lineOut = output.find((o) => o.startsWith('priced order-'))!;
      assert.match(lineOut, /^priced order-\d+ for (Ada|Grace): \d+(\.\d+)? \[Object, Object\]\n$/);
      assert.equal(stops, 0, 'a logpoint never stops');
      await service.target.ticksAdvance(3);
      // a logpoint with a refused (side-effecting) expression says so in its line
      await dc.setBreakpointsRequest({ source: { path: serviceTs }, breakpoints: [{ line: handleLine, logMessage: 'x={processed++}' }] });
      await until(() => output.some((o) => o.startsWith('x=<Refused by Loupe')));
      // hit count "%3": stops on every third hit, so consecutive stops are three orders apart
      await dc.setBreakpointsRequest({ source: { path: serviceTs }, breakpoints: [] });
      await dc.setBreakpointsRequest({ source: { path: pricingTs }, breakpoints: [{ line: line(pricingTs, 'total'), hitCondition: '%3' }] });
      const orderIdAtStop = async () => {
        await dc.waitForEvent('stopped');
        const { top } = await topFrame(dc);
        return Number((await dc.evaluateRequest({ expression: 'order.id', frameId: top.id, context: 'watch' })).body.result);
      };
      const first = await orderIdAtStop();
      await dc.continueRequest({ threadId: 1 });
      const second = await orderIdAtStop();
      assert.equal(second - first, 3, `stops at orders ${first} and ${second}`);
      await dc.continueRequest({ threadId: 1 });
    } finally {
      await close(dc);
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
    await dc.setBreakpointsRequest({ source: { path: serviceTs }, breakpoints: [{ line: line(serviceTs, 'handle') }] });
    await dc.waitForEvent('stopped');
    await terminated;
    const ended = events.find((e) => e.event === 'loupe.sessionEnded');
    assert.equal(ended?.body.code, 4001);
    assert.match(ended?.body.message, /grant expired/);
    assert.ok(output.some((o) => /session has ended: the grant expired/.test(o)), output.join(''));
    await service.target.ticksAdvance(5);
    await dc.stop();
  });
});
