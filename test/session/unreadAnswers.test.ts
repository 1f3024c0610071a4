// A client that writes requests and never reads its answers: a small request (getScriptSource) asks for a large
// answer, so without a bound the broker would hold every answer for it. Its frames stop being read once its answers
// pass limits.clientBufferBytes, what it still sent is refused, and its session ends as unresponsive.
import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import { startTarget } from '../support/target';
import { basePolicy, startTestBroker } from '../support/testBroker';
import { sleep } from '../support/wait';

describe('a client that never reads its answers (real broker, real target)', () => {
  it('cannot grow the broker past its client buffer: its frames stop being read and its session ends as unresponsive', async () => {
    const target = await startTarget();
    const policy = basePolicy(target.inspector);
    const broker = await startTestBroker({ ...policy, limits: { ...(policy as any).limits, clientBufferBytes: 1 << 20, clientPingIntervalMs: 500, clientUnresponsiveMs: 3000 } });
    try {
      const { client, grant } = await broker.attach();
      await client.call('Debugger.enable');
      await sleep(300);
      const big = client.events
        .filter((e) => e.method === 'Debugger.scriptParsed')
        .map((e) => e.params)
        .sort((a, b) => (b.length ?? 0) - (a.length ?? 0))[0];
      assert.ok(big.length > 20_000, `a large script to ask for (${big.url}: ${big.length})`);
      const session = [...(broker.broker as any).sessions.sessions.values()][0];
      (client.socket as any)._socket.pause();
      let peak = 0;
      let id = 1000;
      for (let round = 0; round < 20 && client.socket.readyState === client.socket.OPEN; round++) {
        for (let i = 0; i < 250; i++) client.socket.send(JSON.stringify({ id: id++, method: 'Debugger.getScriptSource', params: { scriptId: big.scriptId } }));
        await sleep(100);
        peak = Math.max(peak, session.options.client.bufferedAmount);
      }
      const ended = await broker.waitForRecord('session.ended', (e) => e.grant === grant.grantId, 15_000);
      assert.equal((ended.data as any).endReason, 'client_unresponsive');
      // What waited for the client is bounded: the answers to the requests in flight when reading stopped (at most 256,
      // plus the rest of the chunk being read; ~100 KB each), not everything sent since (before: 860 MB in 20 s).
      assert.ok(peak < 96 << 20, `at most ${(peak / 2 ** 20).toFixed(1)} MiB waited for the client`);
      // Most of what it sent was never read (every request read is on the record).
      const read = broker.records.filter((e) => e.grant === grant.grantId && e.type === 'cdp.request' && (e.data as any).method === 'Debugger.getScriptSource');
      assert.ok(read.length < (id - 1000) / 2, `${read.length} of ${id - 1000} requests were read`);
      await target.ticksAdvance(2, 5000);
    } finally {
      await broker.close();
      await target.stop();
    }
  });
});
