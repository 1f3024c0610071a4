// V8 keeps one pause-on-exceptions state for the whole process, and keeps it past a session's Debugger.disable
// while another session is enabled: a session that asked for exception pauses must leave the state its fellow
// sessions asked for when it ends, or the target pauses on every exception for a session that never asked.
import { strict as assert } from 'node:assert';
import { join } from 'node:path';
import { afterEach, describe, it } from 'node:test';
import type { CdpClient } from '../support/cdpClient';
import { fixtures, startTarget, type TargetProcess } from '../support/target';
import { basePolicy, startTestBroker, type TestBroker } from '../support/testBroker';

const app = join(fixtures, 'throw-app.js');

describe('pause on exceptions, asked for by a session that ends while another stays (real broker, real target)', () => {
  let target: TargetProcess | undefined;
  let broker: TestBroker | undefined;
  const open: CdpClient[] = [];
  afterEach(async () => {
    for (const c of open.splice(0)) await c.close().catch(() => undefined);
    await broker?.close();
    await target?.stop();
    broker = target = undefined;
  });

  const start = async () => {
    target = await startTarget(app);
    const base = basePolicy(target.inspector);
    // Well over the wait below: only the ending session's restore explains a target that runs.
    broker = await startTestBroker({ ...base, targets: { app: { ...base.targets.app, maxPauseSeconds: 30 } } });
    return broker;
  };
  const pausesOf = (client: CdpClient) => client.events.filter((e) => e.method === 'Debugger.paused').length;

  for (const mode of ['pause', 'snapshot'] as const) {
    it(`the staying session (${mode} mode) asked for none: the target runs on, and no exception pause reaches it`, async () => {
      const b = await start();
      const stays = (await b.attach({ mode })).client;
      open.push(stays);
      await stays.call('Debugger.enable');
      const { client, grant } = await b.attach();
      await client.call('Debugger.enable');
      await client.call('Debugger.setPauseOnExceptions', { state: 'all' });
      await client.waitEvent('Debugger.paused', (m) => m.params?.reason === 'exception');
      await client.close();
      await b.waitForRecord('session.ended', (e) => e.grant === grant.grantId);
      const restore = b.records.find((e) => e.grant === grant.grantId && e.type === 'broker.request' && (e.data as any).method === 'Debugger.setPauseOnExceptions');
      assert.deepEqual((restore?.data as any)?.params, { state: 'none' }, 'the restore is on the ending session’s record');
      const seen = pausesOf(stays);
      await target!.ticksAdvance(50, 5000);
      assert.equal(pausesOf(stays), seen, 'no exception pause reached the staying session after the other ended');
    });
  }

  it('the staying session asked for uncaught exceptions: that is what stays set', async () => {
    const b = await start();
    const stays = (await b.attach()).client;
    open.push(stays);
    await stays.call('Debugger.enable');
    await stays.call('Debugger.setPauseOnExceptions', { state: 'uncaught' });
    const { client, grant } = await b.attach();
    await client.call('Debugger.enable');
    await client.call('Debugger.setPauseOnExceptions', { state: 'caught' });
    await client.waitEvent('Debugger.paused', (m) => m.params?.reason === 'exception');
    await client.close();
    await b.waitForRecord('session.ended', (e) => e.grant === grant.grantId);
    const restore = b.records.find((e) => e.grant === grant.grantId && e.type === 'broker.request' && (e.data as any).method === 'Debugger.setPauseOnExceptions');
    assert.deepEqual((restore?.data as any)?.params, { state: 'uncaught' });
    // The caught exceptions of every tick pause nobody now (the staying session resumes any pause it was shown).
    await stays.call('Debugger.resume').catch(() => undefined);
    const seen = pausesOf(stays);
    await target!.ticksAdvance(50, 5000);
    assert.equal(pausesOf(stays), seen, 'a caught exception no longer pauses');
  });

  it('a session whose client goes quiet while exception pauses hold the target: the others run on, and its pauses come back with it', async () => {
    target = await startTarget(app);
    const base = basePolicy(target.inspector);
    broker = await startTestBroker({ ...base, targets: { app: { ...base.targets.app, maxPauseSeconds: 2 } } });
    const stays = (await broker.attach({ mode: 'snapshot' })).client;
    open.push(stays);
    await stays.call('Debugger.enable');
    const { client, grant } = await broker.attach();
    open.push(client);
    await client.call('Debugger.enable');
    await client.call('Debugger.setPauseOnExceptions', { state: 'all' });
    await client.waitEvent('Debugger.paused', (m) => m.params?.reason === 'exception');
    // The client sends nothing: its watchdog resumes after 2 s and parks it.
    await broker.waitForRecord('client.absent', (e) => e.grant === grant.grantId, 10_000);
    const reset = await broker.waitForRecord('broker.request', (e) => e.grant === grant.grantId && e.data.method === 'Debugger.setPauseOnExceptions');
    assert.deepEqual(reset.data.params, { state: 'none' }, 'the state the other session holds');
    // Every tick throws: a state left at `all` would pause at once for the staying session, for 4 s at a time.
    await target.ticksAdvance(100, 4000);
    const paused = client.events.filter((e) => e.method === 'Debugger.paused').length;
    await client.call('Runtime.evaluate', { expression: '1' });
    await client.waitEvent('Debugger.paused', (m) => m.params?.reason === 'exception' && client.events.filter((e) => e.method === 'Debugger.paused').length > paused);
    await client.call('Debugger.resume').catch(() => undefined);
  });

  it('a session that ends because its target stopped answering: the first exception after leaves the state the others ask for', async () => {
    target = await startTarget(join(fixtures, 'blocking-throw-app.js'), { BLOCK_AFTER_MS: '1500', BLOCK_SECONDS: '4' });
    const base = basePolicy(target.inspector);
    broker = await startTestBroker({ ...base, limits: { ...base.limits, targetResponseSeconds: 2 }, targets: { app: { ...base.targets.app, maxPauseSeconds: 30 } } });
    const stays = (await broker.attach({ mode: 'snapshot' })).client;
    open.push(stays);
    await stays.call('Debugger.enable');
    const { client, grant } = await broker.attach();
    open.push(client);
    await client.call('Debugger.enable');
    await client.call('Debugger.setPauseOnExceptions', { state: 'all' });
    // A request the blocked target leaves unanswered for 2 s: the session ends, its link cut without a word to V8.
    await new Promise((resolve) => setTimeout(resolve, 2000));
    client.socket.send(JSON.stringify({ id: 900, method: 'Runtime.getHeapUsage', params: {} }));
    const ended = await broker.waitForRecord('session.ended', (e) => e.grant === grant.grantId, 15_000);
    assert.equal(ended.data.endReason, 'target_unresponsive');
    // Once it runs again, every tick throws: the staying session resets the state at the first exception pause.
    await target.ticksAdvance(100, 10_000);
    const reset = broker.records.find((e) => e.grant !== grant.grantId && e.type === 'broker.request' && (e.data as any).method === 'Debugger.setPauseOnExceptions');
    assert.deepEqual((reset?.data as any)?.params, { state: 'none' }, 'reset by the staying session');
  });
});
