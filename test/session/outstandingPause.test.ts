// A pause the client asked for and V8 had not taken yet when the session ended: with another Debugger-enabled
// session connected, V8 keeps it past this session's Debugger.disable. The ending session waits for it a moment and
// resumes it, so production is not held by a pause nobody owns.
import { strict as assert } from 'node:assert';
import { join } from 'node:path';
import { afterEach, describe, it } from 'node:test';
import { CdpClient } from '../support/cdpClient';
import { fixtures, markerLine, startTarget, type TargetProcess } from '../support/target';
import { basePolicy, startTestBroker, type TestBroker } from '../support/testBroker';

const appLine = markerLine(join(fixtures, 'app.js'), 'work');

describe('a session ending with a pause it asked for still to come (real broker, real target, another session connected)', () => {
  let target: TargetProcess | undefined;
  let broker: TestBroker | undefined;
  const others: CdpClient[] = [];
  afterEach(async () => {
    for (const c of others.splice(0)) await c.close().catch(() => undefined);
    await broker?.close();
    await target?.stop();
    broker = target = undefined;
  });

  for (const other of ['a direct inspector client', 'another Loupe session'] as const) {
    for (const action of ['Debugger.pause', 'Debugger.continueToLocation', 'Debugger.stepOver', 'Debugger.stepInto', 'Debugger.stepOut', 'pause, resume, pause'] as const) {
      it(`${action} then close, with ${other} connected: the target runs on`, async () => {
        target = await startTarget();
        const base = basePolicy(target.inspector);
        broker = await startTestBroker({ ...base, targets: { app: { ...base.targets.app, maxPauseSeconds: 30 } } });
        const observer = other === 'a direct inspector client' ? await CdpClient.connect(target.wsUrl) : (await broker.attach()).client;
        others.push(observer);
        await observer.call('Debugger.enable');
        const { client, grant } = await broker.attach();
        await client.call('Debugger.enable');
        if (action === 'Debugger.pause') {
          client.socket.send(JSON.stringify({ id: 100, method: 'Debugger.pause', params: {} }));
        } else if (action === 'pause, resume, pause') {
          // The last of several, all in flight together.
          for (const [id, method] of [
            [100, 'Debugger.pause'],
            [101, 'Debugger.resume'],
            [102, 'Debugger.pause'],
          ] as const)
            client.socket.send(JSON.stringify({ id, method, params: {} }));
        } else if (action !== 'Debugger.continueToLocation') {
          // Paused at a breakpoint, the step asked for: V8 runs on and pauses again at once.
          const { breakpointId } = await client.call('Debugger.setBreakpointByUrl', { lineNumber: appLine, urlRegex: 'app\\.js$' });
          await client.waitEvent('Debugger.paused');
          await client.call('Debugger.removeBreakpoint', { breakpointId });
          client.socket.send(JSON.stringify({ id: 100, method: action, params: {} }));
        } else {
          const { breakpointId } = await client.call('Debugger.setBreakpointByUrl', { lineNumber: appLine, urlRegex: 'app\\.js$' });
          const paused = await client.waitEvent('Debugger.paused');
          await client.call('Debugger.removeBreakpoint', { breakpointId });
          client.socket.send(JSON.stringify({ id: 100, method: 'Debugger.continueToLocation', params: { location: paused.params.callFrames[0].location } }));
        }
        client.socket.terminate();
        await broker.waitForRecord('session.ended', (e) => e.grant === grant.grantId);
        // Well inside maxPauseSeconds: only the ending session's own resume can explain a target that runs.
        await target.ticksAdvance(5, 5000);
        const ending = broker.records.find((e) => e.type === 'session.ending' && e.grant === grant.grantId);
        assert.ok(ending, 'session.ending recorded');
      });
    }
  }
});

// Taken by V8 seconds later, after the session's end stopped waiting for it: the sessions that stay resume it at once,
// not their watchdog after maxPauseSeconds (whose resume would also park their own client's breakpoints).
describe('a pause asked for that V8 takes after the session ended (real broker, real target, another Loupe session staying)', () => {
  const slowApp = join(fixtures, 'slow-app.js');
  let target: TargetProcess | undefined;
  let broker: TestBroker | undefined;
  const others: CdpClient[] = [];
  afterEach(async () => {
    for (const c of others.splice(0)) await c.close().catch(() => undefined);
    await broker?.close();
    await target?.stop();
    broker = target = undefined;
  });

  for (const mode of ['pause', 'snapshot'] as const) {
    for (const action of ['a step over a slow await', 'continueToLocation to a line that runs 2.5 s later'] as const) {
      it(`${action}, then the socket cut; the staying session in ${mode} mode: the target runs on`, async () => {
        target = await startTarget(slowApp);
        const base = basePolicy(target.inspector);
        broker = await startTestBroker({ ...base, targets: { app: { ...base.targets.app, maxPauseSeconds: 30 } } });
        const stays = await broker.attach({ mode });
        others.push(stays.client);
        await stays.client.call('Debugger.enable');
        const { client, grant } = await broker.attach();
        await client.call('Debugger.enable');
        const at = markerLine(slowApp, action.startsWith('a step') ? 'await' : 'slow');
        const { breakpointId } = await client.call('Debugger.setBreakpointByUrl', { lineNumber: at, urlRegex: 'slow-app\\.js$' });
        const paused = await client.waitEvent('Debugger.paused');
        await client.call('Debugger.removeBreakpoint', { breakpointId });
        if (action.startsWith('a step')) await client.call('Debugger.stepOver');
        else await client.call('Debugger.continueToLocation', { location: { ...paused.params.callFrames[0].location, lineNumber: markerLine(slowApp, 'rare'), columnNumber: 2 } });
        client.socket.terminate();
        const ended = await broker.waitForRecord('session.ended', (e) => e.grant === grant.grantId);
        // The pause comes within 3 s of the end; the staying session's watchdog would resume it only after 32 s.
        await target.ticksAdvance(200, 10_000);
        const resume = broker.records.find((e) => e.grant === stays.grant.grantId && e.type === 'broker.request' && (e.data as any).method === 'Debugger.resume');
        assert.match(String((resume?.data as any)?.why), /asked for and V8 took after that session had ended/, 'the staying session resumed it, and says whose it was');
        assert.ok(String((resume?.data as any)?.why).includes(ended.stream), 'the ended session is named');
        assert.equal(
          broker.records.some((e) => e.type === 'watchdog.resumed'),
          false,
          'no watchdog resume (and no parked breakpoints)',
        );
      });
    }
  }

  // A session counts a pause as its own by its requests alone (a step or continueToLocation still to come): another
  // session's breakpoint pause arriving meanwhile is not resumed by the first one's end.
  it('a continueToLocation still to come, another session paused at its own breakpoint, then the socket cut: that pause stays held', async () => {
    target = await startTarget(slowApp);
    const base = basePolicy(target.inspector);
    broker = await startTestBroker({ ...base, targets: { app: { ...base.targets.app, maxPauseSeconds: 30 } } });
    const { client, grant } = await broker.attach();
    await client.call('Debugger.enable');
    const { breakpointId } = await client.call('Debugger.setBreakpointByUrl', { lineNumber: markerLine(slowApp, 'tick'), urlRegex: 'slow-app\\.js$' });
    const paused = await client.waitEvent('Debugger.paused');
    await client.call('Debugger.removeBreakpoint', { breakpointId });
    await client.call('Debugger.continueToLocation', { location: { ...paused.params.callFrames[0].location, lineNumber: markerLine(slowApp, 'never'), columnNumber: 2 } });
    await target.ticksAdvance(5, 5000);
    const stays = await broker.attach();
    others.push(stays.client);
    await stays.client.call('Debugger.enable');
    const own = await stays.client.call('Debugger.setBreakpointByUrl', { lineNumber: markerLine(slowApp, 'tick'), urlRegex: 'slow-app\\.js$' });
    const held = await stays.client.waitEvent('Debugger.paused', (m) => m.params.hitBreakpoints?.includes(own.breakpointId));
    await stays.client.call('Debugger.removeBreakpoint', { breakpointId: own.breakpointId });
    client.socket.terminate();
    await broker.waitForRecord('session.ended', (e) => e.grant === grant.grantId);
    await new Promise((resolve) => setTimeout(resolve, 300));
    const read = await stays.client.call('Debugger.evaluateOnCallFrame', { callFrameId: held.params.callFrames[0].callFrameId, expression: 'counter' });
    assert.equal(read.result.type, 'number', `the staying session's pause was resumed under it: ${JSON.stringify(read)}`);
    assert.equal(
      stays.client.events.some((e) => e.method === 'Debugger.resumed'),
      false,
    );
    await stays.client.call('Debugger.resume');
    await target.ticksAdvance(5, 5000);
  });

  it('a step still to come, another session paused at its own breakpoint during the end, then the step: both handled', async () => {
    target = await startTarget(slowApp);
    const base = basePolicy(target.inspector);
    broker = await startTestBroker({ ...base, targets: { app: { ...base.targets.app, maxPauseSeconds: 30 } } });
    const stays = await broker.attach();
    others.push(stays.client);
    await stays.client.call('Debugger.enable');
    const { client, grant } = await broker.attach();
    await client.call('Debugger.enable');
    const { breakpointId } = await client.call('Debugger.setBreakpointByUrl', { lineNumber: markerLine(slowApp, 'await'), urlRegex: 'slow-app\\.js$' });
    await client.waitEvent('Debugger.paused');
    await client.call('Debugger.removeBreakpoint', { breakpointId });
    await client.call('Debugger.stepOver');
    // Cut, and at once the staying session pauses at its own breakpoint, inside the end's wait for the step.
    client.socket.terminate();
    const own = await stays.client.call('Debugger.setBreakpointByUrl', { lineNumber: markerLine(slowApp, 'tick'), urlRegex: 'slow-app\\.js$' });
    const held = await stays.client.waitEvent('Debugger.paused', (m) => m.params.hitBreakpoints?.includes(own.breakpointId));
    await stays.client.call('Debugger.removeBreakpoint', { breakpointId: own.breakpointId });
    await broker.waitForRecord('session.ended', (e) => e.grant === grant.grantId);
    const read = await stays.client.call('Debugger.evaluateOnCallFrame', { callFrameId: held.params.callFrames[0].callFrameId, expression: 'counter' });
    assert.equal(read.result.type, 'number', `the staying session's pause was resumed under it: ${JSON.stringify(read)}`);
    await stays.client.call('Debugger.resume');
    // The step lands 2.5 s after it was asked for, nobody's by then: resumed by the staying session, not its watchdog.
    await target.ticksAdvance(200, 10_000);
    assert.equal(
      broker.records.some((e) => e.type === 'watchdog.resumed'),
      false,
    );
  });
});
