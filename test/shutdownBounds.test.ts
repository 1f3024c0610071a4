// A broker's shutdown never hangs on one of its parts: a step that a fault left unsettled (here the security stream's
// close and the alert sinks' never answer) is logged and left after its bound, and the rest of the shutdown still
// runs: the live session ends with the target resumed and its breakpoint removed. Real broker, real target.
import { strict as assert } from 'node:assert';
import { it } from 'node:test';
import { join } from 'node:path';
import { WalWriter } from '../broker/audit/walWriter';
import { CdpClient } from './support/cdpClient';
import { fixtures, markerLine, startTarget } from './support/target';
import { basePolicy, startTestBroker } from './support/testBroker';

const app = join(fixtures, 'app.js');

it('a shutdown whose security stream and alert sinks never finish closing still stops, leaving the target running', { timeout: 40_000 }, async () => {
  const target = await startTarget(app);
  const lines: string[] = [];
  const broker = await startTestBroker({ ...basePolicy(target.inspector), audit: { walStallAfter: '1s' } }, { log: (line) => lines.push(line) });
  try {
    const { client } = await broker.attach({ mode: 'pause' });
    await client.call('Debugger.enable');
    await client.call('Debugger.setBreakpointByUrl', { lineNumber: markerLine(app, 'work'), urlRegex: 'app\\.js$' });
    await client.waitEvent('Debugger.paused');
    // The faults: two parts whose close never settles.
    const never = () => new Promise<void>(() => undefined);
    const inner = broker.broker as unknown as { security: { close(): Promise<void> }; observers: { close(): Promise<void> } };
    inner.security.close = never;
    inner.observers.close = never;
    const started = Date.now();
    await broker.close();
    const took = Date.now() - started;
    // The security stream's bound (walStallAfter + 5 s) and the sinks' (5 s), and no more.
    assert.ok(took < 14_000, `shutdown took ${took} ms`);
    assert.ok(
      lines.some((l) => /^shutdown: closing the security stream had not finished after 6 s; stopping without it$/.test(l)),
      lines.join('\n'),
    );
    assert.ok(
      lines.some((l) => /^shutdown: the alert sinks had not finished after 5 s; stopping without it$/.test(l)),
      lines.join('\n'),
    );
    // The target runs on with nothing of the session left in it: a direct client sees no pause at its breakpoint.
    await target.ticksAdvance(3);
    const direct = await CdpClient.connect(target.wsUrl);
    try {
      const pauses: unknown[] = [];
      direct.socket.on('message', (data) => /"Debugger\.paused"/.test(data.toString()) && pauses.push(data));
      await direct.call('Debugger.enable');
      await target.ticksAdvance(5);
      assert.equal(pauses.length, 0, 'the session left a breakpoint in the target');
    } finally {
      await direct.close();
    }
  } finally {
    await target.stop();
  }
});

it('a WAL commit the disk never finishes: the session ends, its client is told, and the shutdown waits on nothing in it', { timeout: 60_000 }, async () => {
  const target = await startTarget(app);
  const lines: string[] = [];
  const broker = await startTestBroker({ ...basePolicy(target.inspector), audit: { walStallAfter: '1s' } }, { log: (line) => lines.push(line) });
  const write = WalWriter.prototype.write;
  try {
    const { client } = await broker.attach({ mode: 'pause' });
    await client.call('Debugger.enable');
    // Refusals at the edge: security events waiting for the security stream's next commit.
    for (let i = 0; i < 30; i++) assert.equal((await broker.api('GET', '/v1/targets', 'x.y.z')).status, 401);
    // The fault: from now on a commit never lands (a disk that stopped answering); its records never settle.
    WalWriter.prototype.write = () => new Promise<number>(() => undefined);
    // Refused, or the session ended first: never forwarded, since its record never became durable.
    const answer = await client.send('Debugger.setBreakpointByUrl', { lineNumber: markerLine(app, 'work'), urlRegex: 'app\\.js$' }).catch((err: Error) => ({ error: { message: err.message } }));
    assert.match(String(answer.error?.message), /the audit trail could not record it|audit trail unavailable/, JSON.stringify(answer));
    // The session ends on the audit failure and its client hears why, although its last record is in the stuck commit.
    const closed = await client.closed;
    assert.equal(closed.code, 4005, JSON.stringify(closed));
    assert.match(closed.reason, /audit trail unavailable/);
    const started = Date.now();
    await broker.close();
    const took = Date.now() - started;
    // No step waited out its bound: nothing waited on the stuck commit (the WAL's close gives up after walStallAfter).
    assert.deepEqual(
      lines.filter((l) => l.startsWith('shutdown: ')),
      [],
    );
    assert.ok(took < 5000, `shutdown took ${took} ms:\n${lines.join('\n')}`);
    // The breakpoint never reached the target: it runs on.
    await target.ticksAdvance(3);
  } finally {
    WalWriter.prototype.write = write;
    await target.stop();
  }
});
