import { strict as assert } from 'node:assert';
import { EventEmitter } from 'node:events';
import { describe, it } from 'node:test';
import { CdpClient } from './support/cdpClient';
import { startTarget } from './support/target';
import { basePolicy, startTestBroker } from './support/testBroker';
import { waitFor, waitForEvent, waitForMessage, withTimeout, within } from './support/wait';

describe("the tests' waits (test/support/wait.ts, waitForRecord)", () => {
  it('waitFor resolves with the first truthy value, and fails naming what it waited for and the last value seen', async () => {
    let n = 0;
    assert.equal(await waitFor(() => (++n >= 3 ? `after ${n}` : 0), { intervalMs: 1 }), 'after 3');
    await assert.rejects(
      waitFor(() => n > 100, { what: 'three requests', timeoutMs: 50 }),
      /^Error: waited 50 ms for three requests; last seen: false$/,
    );
    await assert.rejects(
      waitFor(
        () => {
          throw new Error('not yet');
        },
        { what: () => 'a dynamic name', timeoutMs: 30 },
      ),
      /waited 30 ms for a dynamic name; last seen: threw not yet/,
    );
  });

  it('withTimeout fails naming what; within gives the fallback', async () => {
    await assert.rejects(withTimeout(new Promise(() => undefined), 20, 'the close'), /waited 20 ms for the close/);
    assert.equal(await within(new Promise(() => undefined), 20, 'none'), 'none');
    assert.equal(await within(Promise.resolve('done'), 1000, 'none'), 'done');
  });

  it('waitForEvent takes the first matching emission and names the last one on timeout', async () => {
    const emitter = new EventEmitter();
    const got = waitForEvent(emitter, 'tick', (n: number) => n > 1);
    emitter.emit('tick', 1);
    emitter.emit('tick', 2);
    assert.deepEqual(await got, [2]);
    const late = waitForEvent(emitter, 'tick', (n: number) => n > 5, { timeoutMs: 30 });
    emitter.emit('tick', 3);
    await assert.rejects(late, /waited 30 ms for a tick event; last tick: \[3\]/);
    assert.equal(emitter.listenerCount('tick'), 0);
  });

  it('waitForRecord resolves from records already made and from later ones, and names the type on timeout; waitForMessage takes CDP events', async () => {
    const target = await startTarget();
    const broker = await startTestBroker(basePolicy(target.inspector));
    try {
      const { client, grant } = await broker.attach();
      const started = await broker.waitForRecord('session.started', (e) => e.grant === grant.grantId);
      assert.equal(started.kind, 'session');
      const ending = broker.waitForRecord('session.ended', (e) => e.stream === started.stream);
      await client.call('Debugger.enable');
      assert.match((await waitForMessage(client, 'Debugger.scriptParsed', (m) => /app\.js$/.test(m.params.url))).params.url, /app\.js$/);
      await client.close();
      assert.equal((await ending).data.endReason, 'client_closed');
      await assert.rejects(broker.waitForRecord('watchdog.resumed', undefined, 30), /no watchdog\.resumed audit record within 30 ms/);
      const direct = await CdpClient.connect(target.wsUrl);
      await assert.rejects(
        waitForMessage(direct, 'Debugger.paused', () => true, { what: 'a pause', timeoutMs: 30 }),
        /waited 30 ms for a pause: no Debugger\.paused within 30 ms; no Loupe\.\* events seen; last Debugger\.paused: none/,
      );
      await direct.close();
    } finally {
      await broker.close();
      await target.stop();
    }
  });
});
