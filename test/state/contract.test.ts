// needs: postgres
import { strict as assert } from 'node:assert';
import { randomUUID } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import pg from 'pg';
import { FileStateBackend } from '../../broker/state/fileState';
import { noticeChannel, PostgresStateBackend } from '../../broker/state/pgState';
import { parseNotice, StateUnavailableError, type StateNotice } from '../../broker/state/stateBackend';
import { databaseUrl, startOwnPostgres } from '../support/postgres';
import { waitFor } from '../support/wait';
import { runStateContract } from './stateContract';

describe('state backend contract: local files', () => {
  const backend = new FileStateBackend(mkdtempSync(join(tmpdir(), 'loupe-state-')));
  runStateContract(async () => ({ a: backend, b: backend }), { shared: false });

  it('keeps grants, revocations, requests and first attaches across a restart (the files of one broker)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'loupe-state-'));
    const first = new FileStateBackend(dir);
    const grantId = randomUUID();
    await first.putGrant({ grantId, sub: 'alice', name: 'Alice', groups: [], target: 't', mode: 'snapshot', reason: 'r', rule: 'x', issuedAt: 1, expiresAt: 2 });
    await first.revokeGrant(grantId, 'bob', 5);
    await first.touchFirstAttach('alice', 't', '2026-01-01T00:00:00.000Z');
    await first.close(); // the first-attach times are written off the event loop; close waits for them
    const again = new FileStateBackend(dir);
    assert.deepEqual([(await again.getGrant(grantId))?.revokedBy, (await again.getGrant(grantId))?.revokedAt], ['bob', 5]);
    assert.equal(await again.touchFirstAttach('alice', 't', '2026-01-02T00:00:00.000Z'), '2026-01-01T00:00:00.000Z');
  });
});

describe('state backend contract: PostgreSQL, two replicas on one database', () => {
  let url: string;
  const schema = `contract_${randomUUID().replace(/-/g, '').slice(0, 12)}`;
  const opened: PostgresStateBackend[] = [];
  const open = async (options: { schema?: string; pollIntervalMs?: number; queryTimeoutMs?: number } = {}) => {
    const backend = new PostgresStateBackend({ url, schema, pollIntervalMs: 300, ...options });
    opened.push(backend);
    await backend.start();
    return backend;
  };
  let pair: { a: PostgresStateBackend; b: PostgresStateBackend };
  before(async () => {
    url = await databaseUrl();
    pair = { a: await open(), b: await open() };
  });
  after(async () => {
    await Promise.all(opened.map((b) => b.close()));
  });
  runStateContract(async () => pair, { shared: true });

  it('applies its migrations once when several replicas start together, and records the version', async () => {
    const fresh = `migrate_${randomUUID().replace(/-/g, '').slice(0, 12)}`;
    await Promise.all([1, 2, 3].map(() => open({ schema: fresh })));
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    try {
      const { rows } = await client.query(`SELECT version FROM ${fresh}.schema_migrations`);
      assert.deepEqual(
        rows.map((r) => r.version),
        [1],
      );
      await client.query(`INSERT INTO ${fresh}.schema_migrations (version, name) VALUES (999, 'from a newer broker')`);
    } finally {
      await client.end();
    }
    await assert.rejects(open({ schema: fresh }), (err: unknown) => err instanceof StateUnavailableError && /schema version 999, newer than this broker knows/.test(err.message));
  });

  it('refuses a schema name that is not a plain identifier', () => {
    assert.throws(() => new PostgresStateBackend({ url, schema: 'x; DROP TABLE grants' }), /not a plain SQL identifier/);
  });

  it('answers state_unavailable, typed, when the database cannot be reached', async () => {
    const port = await closedPort();
    const down = new PostgresStateBackend({ url: `postgres://postgres@127.0.0.1:${port}/postgres`, schema, queryTimeoutMs: 1000 });
    opened.push(down);
    await assert.rejects(down.start(), (err: unknown) => err instanceof StateUnavailableError && err.code === 'state_unavailable' && /cannot be reached/.test(err.message));
    await assert.rejects(down.getGrant('x'), StateUnavailableError);
    await assert.rejects(down.redeemTicket('t', Date.now()), StateUnavailableError);
    await assert.rejects(down.claimSession({ sessionId: 's', grantId: 'g', replica: 'r', user: 'u', target: 't', nowMs: 0, leaseMs: 1 }), StateUnavailableError);
    assert.equal(down.reachable, false);
  });

  it('fails typed while its database is stopped, and works again (notices included) once it is back', async () => {
    const own = await startOwnPostgres('contract');
    try {
      const [sender, receiver] = [
        new PostgresStateBackend({ url: own.url, pollIntervalMs: 300, queryTimeoutMs: 1000 }),
        new PostgresStateBackend({ url: own.url, pollIntervalMs: 300, queryTimeoutMs: 1000 }),
      ];
      opened.push(sender, receiver);
      await sender.start();
      await receiver.start();
      const seen: StateNotice[] = [];
      receiver.onNotice((n) => seen.push(n));
      own.stop();
      await assert.rejects(sender.putTicket('t', 'g', Date.now() + 60_000), (err: unknown) => err instanceof StateUnavailableError && /cannot be reached/.test(err.message));
      await assert.rejects(sender.notify({ type: 'revoked', grantId: 'g', by: 'b' }), StateUnavailableError);
      assert.equal(sender.reachable, false);
      own.start();
      const grantId = randomUUID();
      await waitFor(
        () =>
          sender.notify({ type: 'revoked', grantId, by: 'bob' }).then(
            () => true,
            () => false,
          ),
        { what: 'the database to answer again', intervalMs: 50 },
      );
      assert.equal(sender.reachable, true);
      await waitFor(() => seen.some((n) => n.type === 'revoked' && n.grantId === grantId), { what: 'the notice sent after the return', timeoutMs: 3000 });
    } finally {
      own.purge();
    }
  });

  it('still delivers notices when the channel drops (by the poll), and again within a second once it is back', async () => {
    const sender = await open();
    const receiver = await open({ pollIntervalMs: 1500 });
    const seen: StateNotice[] = [];
    receiver.onNotice((n) => seen.push(n));
    const admin = new pg.Client({ connectionString: url });
    await admin.connect();
    try {
      // Cut every LISTEN connection: the receivers' channels drop as they would with a network fault.
      await admin.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query ILIKE 'LISTEN %' AND pid <> pg_backend_pid()`);
      const dropped = { type: 'end-session' as const, sessionId: randomUUID(), reason: 'alert' };
      await sender.notify(dropped);
      const sentAt = Date.now();
      while (!seen.some((n) => n.type === 'end-session' && n.sessionId === dropped.sessionId) && Date.now() - sentAt < 4000) await new Promise((r) => setTimeout(r, 20));
      assert.ok(Date.now() - sentAt < 4000, 'delivered by the poll or the reopened channel');
      // The channel reopens on its own: the next notice arrives well within the poll interval.
      await new Promise((r) => setTimeout(r, 1600));
      const back = { type: 'policy-reload' as const, source: `test ${randomUUID()}`, replica: 'replica-a' };
      const sent = Date.now();
      await sender.notify(back);
      while (!seen.some((n) => n.type === 'policy-reload' && n.source === back.source) && Date.now() - sent < 1000) await new Promise((r) => setTimeout(r, 10));
      assert.ok(Date.now() - sent < 1000, `took ${Date.now() - sent} ms after the channel came back`);
      assert.equal(seen.filter((n) => n.type === 'end-session' && n.sessionId === dropped.sessionId).length, 1, 'delivered once');
    } finally {
      await admin.end();
    }
  });

  it('a transaction cut by the query timeout (a row lock held elsewhere) leaves no open transaction behind: what the replica writes next, the others see', async () => {
    const a = await open({ queryTimeoutMs: 1000 });
    const b = await open();
    const requestId = randomUUID();
    const at = new Date().toISOString();
    await a.createRequest({
      requestId,
      requester: { sub: 'alice', name: 'Alice', groups: ['devs'] },
      target: 'checkout',
      mode: 'pause',
      durationSeconds: 600,
      reason: 'INC-3',
      rule: 'targets.checkout.access[0]',
      approvers: ['owners'],
      minApprovals: 2,
      expiresAfterSeconds: 3600,
      createdAt: at,
      status: 'pending',
      expiresAt: new Date(Date.now() + 3600_000).toISOString(),
      approvals: [],
    });
    const admin = new pg.Client({ connectionString: url, options: `-c search_path=${schema}` });
    await admin.connect();
    try {
      // Another session holds the request's row: the approval's SELECT … FOR UPDATE waits past the timeout.
      await admin.query('BEGIN');
      await admin.query('SELECT 1 FROM access_requests WHERE request_id = $1 FOR UPDATE', [requestId]);
      await assert.rejects(a.addApproval(requestId, { sub: 'bob', name: 'Bob', at }, at), StateUnavailableError);
      await admin.query('COMMIT');
      const grantId = randomUUID();
      await a.putGrant({ grantId, sub: 'alice', name: 'Alice', groups: [], target: 't', mode: 'pause', reason: 'r', rule: 'x', issuedAt: 1, expiresAt: 2 });
      await a.revokeGrant(grantId, 'owner', 5);
      assert.equal((await b.getGrant(grantId))?.revokedBy, 'owner', 'the revocation through A is not seen through B');
      assert.deepEqual((await b.getRequest(requestId))?.approvals, [], 'the approval that failed was not counted');
      const open = await admin.query(`SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND state LIKE 'idle in transaction%'`);
      assert.deepEqual(open.rows, [], 'a connection left idle in a transaction');
    } finally {
      await admin.query('ROLLBACK').catch(() => undefined);
      await admin.end();
    }
  });

  it("prepares its statements once per connection, and keeps working when a newer replica's migration adds columns under them", async () => {
    const own = `prepared_${randomUUID().replace(/-/g, '').slice(0, 12)}`;
    const a = await open({ schema: own });
    const b = await open({ schema: own });
    const claimOf = (grantId: string, replica: string, nowMs: number) => ({ sessionId: randomUUID(), grantId, replica, user: 'alice', target: 't', nowMs, leaseMs: 30_000 });
    // Every statement an attach and a grant use, the refused claim's (which reads the holder's whole row) and the
    // registry's reads; run once to prepare them, once after the columns changed.
    const attachCycle = async () => {
      const grantId = randomUUID();
      const now = Date.now();
      await a.putGrant({ grantId, sub: 'alice', name: 'Alice', groups: [], target: 't', mode: 'pause', reason: 'r', rule: 'x', issuedAt: 1, expiresAt: 2e9 });
      const claim = claimOf(grantId, 'replica-a', now);
      const first = await a.claimSessionOfGrant(claim);
      assert.deepEqual([first.grant?.grantId, first.claim], [grantId, { claimed: true }]);
      const refused = await a.claimSession(claimOf(grantId, 'replica-b', now + 1));
      assert.equal(refused.claimed === false && refused.holder.sessionId, claim.sessionId);
      assert.equal((await a.getSession(claim.sessionId))?.grantId, grantId);
      assert.ok((await a.liveSessions()).some((s) => s.sessionId === claim.sessionId));
      assert.deepEqual(await a.renewLeases('replica-a', [claim.sessionId], now + 2, 30_000), []);
      const ticket = randomUUID();
      await a.putTicket(ticket, grantId, now + 60_000);
      assert.equal((await a.redeemTicket(ticket, now + 3))?.grantId, grantId);
      await a.endSession(claim.sessionId, { by: 'replica-a', reason: 'client_closed', atMs: now + 4 });
      assert.equal((await a.revokeGrant(grantId, 'owner', 5))?.revokedBy, 'owner');
      assert.equal((await a.getGrant(grantId))?.revokedAt, 5);
    };
    await attachCycle();
    // What each of the replica's connections prepared (all of them held at once: the pool hands out its idle ones).
    const pool = (a as unknown as { pool: pg.Pool }).pool;
    const held = await Promise.all(Array.from({ length: pool.idleCount }, () => pool.connect()));
    try {
      const names = (await Promise.all(held.map((c) => c.query<{ statement: string }>('SELECT statement FROM pg_prepared_statements')))).flatMap((r) => r.rows);
      assert.ok(
        names.some((r) => r.statement.includes('INSERT INTO live_sessions')),
        `the claim was not prepared (${held.length} connections)`,
      );
      assert.ok(!names.some((r) => /SELECT \*|RETURNING \*/i.test(r.statement)), 'a statement returning * was prepared: a migration would break it');
    } finally {
      for (const c of held) c.release();
    }
    // A newer replica migrates while this one's connections hold their prepared statements.
    const admin = new pg.Client({ connectionString: url, options: `-c search_path=${own}` });
    await admin.connect();
    try {
      for (const table of ['grants', 'live_sessions', 'attach_tickets']) await admin.query(`ALTER TABLE ${table} ADD COLUMN added_later text`);
    } finally {
      await admin.end();
    }
    await attachCycle();
    // The other replica, whose connections prepared nothing before the change, agrees.
    assert.deepEqual(await b.liveSessions(), []);
  });

  it("hears its own schema's notices and not another's in the same database (each deployment its own channel)", async () => {
    const receiver = await open();
    const sibling = await open();
    const elsewhere = await open({ schema: `${schema}_other` });
    const seen: StateNotice[] = [];
    receiver.onNotice((n) => seen.push(n));
    const heardElsewhere: StateNotice[] = [];
    elsewhere.onNotice((n) => heardElsewhere.push(n));
    await elsewhere.notify({ type: 'revoked', grantId: randomUUID(), by: 'other-deployment' });
    const ours = { type: 'revoked', grantId: randomUUID(), by: 'owner' } as const;
    await sibling.notify(ours);
    const deadline = Date.now() + 5000;
    while (seen.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    // Past a poll interval too: the other schema's notice never comes, through the channel or the table.
    await new Promise((r) => setTimeout(r, 700));
    assert.deepEqual(seen, [ours]);
    assert.equal(heardElsewhere.length, 1, 'the other deployment hears its own');
    assert.notEqual(noticeChannel(schema), noticeChannel(`${schema}_other`));
    assert.equal(noticeChannel('Loupe'), noticeChannel('loupe'), 'a schema name folds to lower case, and so does its channel');
    assert.ok(noticeChannel('x'.repeat(63)).length <= 63, 'within the identifier limit');
  });

  it('ignores a malformed notice written straight into the table', async () => {
    const receiver = await open();
    const seen: StateNotice[] = [];
    receiver.onNotice((n) => seen.push(n));
    const admin = new pg.Client({ connectionString: url });
    await admin.connect();
    try {
      await admin.query(`INSERT INTO ${schema}.state_notices (body) VALUES ('{"type":"revoked"}'::jsonb), ('[1,2]'::jsonb)`);
      await admin.query(`SELECT pg_notify('${noticeChannel(schema)}', '0:not json')`);
      await new Promise((r) => setTimeout(r, 700));
      assert.deepEqual(seen, []);
    } finally {
      await admin.end();
    }
  });
});

describe('notice parsing', () => {
  it('answers a well-formed notice or nothing, whatever the text', () => {
    const notice = fc.oneof(
      fc.record({ type: fc.constant('revoked'), grantId: fc.string({ minLength: 1 }), by: fc.string({ minLength: 1 }) }),
      fc.record({ type: fc.constant('end-session'), sessionId: fc.string({ minLength: 1 }), reason: fc.string({ minLength: 1 }) }),
      fc.record({ type: fc.constant('policy-reload'), source: fc.string({ minLength: 1 }), replica: fc.string({ minLength: 1 }) }),
    );
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string(),
          fc.json(),
          notice.map((n) => JSON.stringify(n)),
        ),
        (text) => {
          const parsed = parseNotice(text);
          if (parsed === undefined) return;
          assert.ok(['revoked', 'end-session', 'policy-reload'].includes(parsed.type));
          for (const value of Object.values(parsed)) assert.equal(typeof value, 'string');
        },
      ),
      { numRuns: 2000 },
    );
    assert.deepEqual(parseNotice('{"type":"revoked","grantId":"g","by":"b","extra":{"__proto__":1}}'), { type: 'revoked', grantId: 'g', by: 'b' });
    assert.equal(parseNotice('{"type":"revoked","grantId":"","by":"b"}'), undefined);
    assert.equal(parseNotice(`{"type":"policy-reload","source":"${'x'.repeat(1001)}","replica":"a"}`), undefined);
    assert.equal(parseNotice('{"type":"policy-reload","source":"s"}'), undefined, 'a reload notice names its replica');
  });
});

function closedPort(): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer();
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}
