// needs: postgres
import { strict as assert } from 'node:assert';
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { CdpClient } from '../support/cdpClient';
import { databaseUrl } from '../support/postgres';
import { startTarget, type TargetProcess } from '../support/target';
import { basePolicy, startTestBroker, type TestBroker } from '../support/testBroker';
import { waitFor, within } from '../support/wait';

/** A TCP relay to PostgreSQL that can be cut: the replica behind it loses its database, the others keep theirs. */
async function cuttableRelay(to: URL): Promise<{ url: URL; cut(): void; restore(): void; server: Server }> {
  const sockets = new Set<Socket>();
  let cut = false;
  const server = createServer((client) => {
    if (cut) return client.destroy();
    const upstream = connect(Number(to.port || 5432), to.hostname);
    for (const [a, b] of [
      [client, upstream],
      [upstream, client],
    ] as const) {
      sockets.add(a);
      a.pipe(b);
      a.on('error', () => b.destroy());
      a.on('close', () => (b.destroy(), sockets.delete(a)));
    }
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const url = new URL(to);
  url.port = String((server.address() as { port: number }).port);
  return {
    url,
    server,
    cut() {
      cut = true;
      for (const socket of sockets) socket.destroy();
    },
    restore() {
      cut = false;
    },
  };
}

describe('a replica cut off from the database while the others still reach it', () => {
  let target: TargetProcess;
  let a: TestBroker;
  let b: TestBroker;
  let relay: Awaited<ReturnType<typeof cuttableRelay>>;
  before(async () => {
    const url = new URL(databaseUrl());
    relay = await cuttableRelay(url);
    target = await startTarget();
    const schema = `partition_${randomUUID().replace(/-/g, '').slice(0, 12)}`;
    const policy = (dbUrl: string, replica: string) => ({
      ...basePolicy(target.inspector),
      state: { postgres: { url: dbUrl, schema }, replica, sessionLease: '2s', outageGrace: '20s', noticePoll: '1s' },
    });
    a = await startTestBroker(policy(url.toString(), 'replica-a'));
    b = await startTestBroker(policy(relay.url.toString(), 'replica-b'));
  });
  after(async () => {
    await a?.close();
    await b?.close();
    relay?.server.close();
    await target?.stop();
  });

  it('one session per grant: while B (cut off) still holds it, A refuses a second attach of the grant', async () => {
    const grant = await a.grant('dev', ['devs']);
    const first = await CdpClient.connect(`${b.url.replace(/^http/, 'ws')}/v1/attach/${grant.grantId}`, { authorization: `Bearer ${grant.token}` });
    try {
      relay.cut();
      await new Promise((r) => setTimeout(r, 3000)); // past B's lease, within its grace
      const second = await CdpClient.connect(`${a.url.replace(/^http/, 'ws')}/v1/attach/${grant.grantId}`, { authorization: `Bearer ${grant.token}` }).then(
        (client) => (client.socket.close(), 'attached'),
        (err: { status?: number; body?: string }) => `${err.status} ${err.body}`,
      );
      assert.equal(await within(first.closed, 0, 'open'), 'open', 'B still holds its session');
      assert.match(second, /^409 .*session_busy/, 'a second session of one grant attached through A while B still holds the first');
    } finally {
      first.socket.close();
    }
  });

  it("a revocation through A ends B's session within a second, or A answers 202 saying it has not: where it runs and by when it ends", async () => {
    relay.restore();
    await waitFor(() => b.broker.ready.ready, { what: 'B to reach the database again', timeoutMs: 10_000 });
    const grant = await a.grant('dev', ['devs']);
    const first = await CdpClient.connect(`${b.url.replace(/^http/, 'ws')}/v1/attach/${grant.grantId}`, { authorization: `Bearer ${grant.token}` });
    try {
      relay.cut();
      await new Promise((r) => setTimeout(r, 1000));
      const revokedAt = Date.now();
      const revoked = await a.api('DELETE', `/v1/grants/${grant.grantId}`, await a.token('dev', ['devs']));
      if (revoked.status === 200) {
        const closed = await within(first.closed, 1500, undefined);
        assert.ok(closed, `the revocation through A answered 200, but B's session was still open ${Date.now() - revokedAt} ms later`);
        return;
      }
      // B, cut off, hears no notice: A says so instead of claiming the session is over.
      assert.equal(revoked.status, 202, JSON.stringify(revoked.body));
      assert.equal(revoked.body.grantId, grant.grantId);
      assert.equal(revoked.body.session.replica, 'replica-b');
      const endsBy = Date.parse(revoked.body.session.endsBy);
      assert.ok(endsBy > Date.now() && endsBy <= revokedAt + 2_000 + 20_000 + 1_000, `ends by ${revoked.body.session.endsBy}`);
      assert.match(revoked.body.message, /is revoked, but its live session on broker replica replica-b has not ended yet: .* ends the session by \S+ at the latest$/);
      assert.equal(first.socket.readyState, first.socket.OPEN, 'the session on B still runs, as the answer says');
      // Once B reaches the database again it hears of the revocation and ends the session.
      relay.restore();
      const closed = await within(first.closed, 5000, undefined);
      assert.ok(closed, 'B ended the session once it reached the database again');
      assert.equal(closed.code, 4002);
    } finally {
      first.socket.close();
    }
  });
});
