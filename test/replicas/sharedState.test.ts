// needs: postgres, s3
import { strict as assert } from 'node:assert';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { calculateJwkThumbprint, type JWK } from 'jose';
import { Client } from 'pg';
import { CdpClient } from '../support/cdpClient';
import { freshDatabase, startOwnPostgres, type OwnPostgres } from '../support/postgres';
import { startReplicas, type Replica, type ReplicaSet } from '../support/replicas';
import { freshLockedBucket, s3Settings } from '../support/s3';
import { fixtures, markerLine, startTarget, type TargetProcess } from '../support/target';
import { waitFor, within } from '../support/wait';

// Three broker replicas as separate processes on one PostgreSQL database and one S3 bucket, a real target, real
// clients: what one replica decides, every other one honours.

const appLine = markerLine(join(fixtures, 'app.js'), 'work');
const cli = join(__dirname, '..', '..', 'dist', 'cli.js');
const run = (args: string[], env: NodeJS.ProcessEnv) =>
  new Promise<{ status: number; stdout: string; stderr: string }>((resolve) =>
    execFile(process.execPath, [cli, ...args], { env, encoding: 'utf8' }, (err, stdout, stderr) => resolve({ status: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr })),
  );

/** The config the replicas share: devs debug "app" directly, and "gated" after two approvals by sre. */
function sharedConfig(inspector: string, bucket: string, databaseUrl: string, state: Record<string, unknown> = {}): Record<string, any> {
  const access = { role: 'dev', modes: ['pause', 'snapshot'], maxDuration: '10m' };
  return {
    roles: { dev: { groups: ['devs'] }, sre: { groups: ['sre'] }, owner: { groups: ['owners'] }, auditor: { groups: ['auditors'] } },
    auditors: ['auditor'],
    audit: { store: 's3', s3: { bucket, endpoint: s3Settings().endpoint, region: 'us-east-1', forcePathStyle: true }, retentionDays: 1, chunkMaxEvents: 8, uploadInterval: '1s' },
    // Short bounds, so a dead replica and a lost database show within seconds.
    state: { postgres: { url: databaseUrl }, sessionLease: '3s', outageGrace: '4s', noticePoll: '1s', ...state },
    targets: {
      app: { inspector, owners: ['owner'], maxPauseSeconds: 60, access: [access] },
      gated: { inspector, owners: ['owner'], maxPauseSeconds: 60, access: [{ ...access, requireApproval: { approvers: 'sre', minApprovals: 2, expiresAfter: '30m' } }] },
    },
  };
}

/** Each replica's config: the shared one, with its own name in the registry of live sessions. */
const named = (config: Record<string, any>) => (name: string) => ({ state: { ...config.state, replica: name } });

async function grantOn(set: ReplicaSet, replica: Replica, user = 'dana', target = 'app'): Promise<{ grantId: string; token: string }> {
  const res = await replica.api('POST', '/v1/grants', await set.token(user, ['devs']), { target, mode: 'pause', durationSeconds: 300, reason: `replica test on ${replica.name}` });
  assert.equal(res.status, 201, `grant on ${replica.name}: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body;
}

/** Attach refused: the HTTP status and error code the replica answered the upgrade with. */
async function refusedAttach(url: string, headers: Record<string, string> = {}): Promise<{ status: number; code: string; message: string }> {
  const err = await CdpClient.connect(url, headers).then(
    async (client) => {
      await client.close();
      throw new Error(`attach to ${url} was accepted`);
    },
    (e: { status?: number; body?: string }) => e,
  );
  assert.ok(err.status, `an HTTP refusal, not ${String(err)}`);
  const body = JSON.parse(err.body ?? '{}');
  return { status: err.status, code: body.error?.code, message: body.error?.message };
}

const attachUrl = (replica: Replica, grantId: string) => `${replica.url.replace(/^http/, 'ws')}/v1/attach/${grantId}`;

/** Connections the target's inspector has accepted and still holds (its side of each ESTABLISHED loopback socket). */
function inspectorConnections(inspector: string): number {
  const port = Number(inspector.split(':').pop()).toString(16).toUpperCase().padStart(4, '0');
  return readFileSync('/proc/net/tcp', 'utf8')
    .split('\n')
    .slice(1)
    .map((line) => line.trim().split(/\s+/))
    .filter((f) => f[1]?.endsWith(`:${port}`) && f[3] === '01').length;
}

describe('three replicas on one database', () => {
  let target: TargetProcess;
  let set: ReplicaSet;
  let bucket: string;
  let databaseUrl: string;

  before(async () => {
    target = await startTarget();
    bucket = await freshLockedBucket('loupe-replicas');
    databaseUrl = await freshDatabase('loupe_replicas');
    const config = sharedConfig(target.inspector, bucket, databaseUrl);
    set = await startReplicas({ config, perReplica: named(config) });
  });
  after(async () => {
    await set?.close();
    await target?.stop();
  });

  it('grant on A, attach through B, revoke through C: the session on B ends within a second', async () => {
    const [a, b, c] = [set.get('a'), set.get('b'), set.get('c')];
    const grant = await grantOn(set, a);
    const client = await b.attach(grant);
    await client.call('Debugger.enable');
    // While it lives, the grant's one session is B's: another attach through C is refused.
    const busy = await refusedAttach(attachUrl(c, grant.grantId), { authorization: `Bearer ${grant.token}` });
    assert.deepEqual([busy.status, busy.code], [409, 'session_busy']);

    const revoke = await c.api('DELETE', `/v1/grants/${grant.grantId}`, await set.token('olga', ['owners']));
    assert.equal(revoke.status, 200, JSON.stringify(revoke.body));
    const revokedAt = Date.now();
    const closed = await within(client.closed, 3000, undefined);
    const took = Date.now() - revokedAt;
    assert.ok(closed, 'the session on B ended');
    assert.equal(closed.code, 4002, `closed as revoked (${closed.reason})`);
    assert.ok(took <= 1000, `within a second of the revocation through C (took ${took} ms)`);
    await target.ticksAdvance(2);

    // The revoked grant attaches nowhere.
    for (const replica of [a, b, c]) {
      const refused = await refusedAttach(attachUrl(replica, grant.grantId), { authorization: `Bearer ${grant.token}` });
      assert.ok(refused.status >= 400 && refused.status < 500, `${replica.name}: ${refused.status} ${refused.message}`);
      assert.match(refused.message, /revoked/);
    }
  });

  it('a refused attach leaves no connection to the target: the connection opened while the claim was read is closed unused', async () => {
    const [a, b, c] = [set.get('a'), set.get('b'), set.get('c')];
    const grant = await grantOn(set, a);
    const headers = { authorization: `Bearer ${grant.token}` };
    const client = await b.attach(grant);
    await client.call('Debugger.enable');
    const live = inspectorConnections(target.inspector);
    assert.ok(live >= 1, 'the live session holds a connection');
    for (let i = 0; i < 5; i++) assert.equal((await refusedAttach(attachUrl(i % 2 ? a : c, grant.grantId), headers)).code, 'session_busy');
    await waitFor(() => inspectorConnections(target.inspector) === live, { timeoutMs: 3000, what: `the target back to ${live} connection(s) after refused attaches` });
    const revoke = await c.api('DELETE', `/v1/grants/${grant.grantId}`, await set.token('olga', ['owners']));
    assert.equal(revoke.status, 200, JSON.stringify(revoke.body));
    await client.closed;
    for (const replica of [a, b, c]) assert.match((await refusedAttach(attachUrl(replica, grant.grantId), headers)).message, /revoked/);
    await waitFor(() => inspectorConnections(target.inspector) === live - 1, { timeoutMs: 3000, what: 'no connection left once the session ended and later attaches were refused' });
  });

  it('two clients racing one ticket through A and B: exactly one attaches', async () => {
    const [a, b] = [set.get('a'), set.get('b')];
    for (let round = 0; round < 3; round++) {
      const grant = await grantOn(set, a);
      const ticket = await a.api('POST', `/v1/grants/${grant.grantId}/tickets`, await set.token('dana', ['devs']));
      assert.equal(ticket.status, 201, JSON.stringify(ticket.body));
      const query = `?ticket=${encodeURIComponent(ticket.body.ticket)}`;
      const results = await Promise.allSettled([CdpClient.connect(attachUrl(a, grant.grantId) + query), CdpClient.connect(attachUrl(b, grant.grantId) + query)]);
      const won = results.filter((r): r is PromiseFulfilledResult<CdpClient> => r.status === 'fulfilled');
      const lost = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
      assert.equal(won.length, 1, `round ${round}: exactly one attaches (${lost.map((l) => l.reason.message).join('; ')})`);
      assert.equal(lost[0]!.reason.status, 401, lost[0]!.reason.message);
      assert.match(lost[0]!.reason.body, /attach ticket is unknown, used or expired/);
      await won[0]!.value.call('Debugger.enable');
      await won[0]!.value.close();
    }
  });

  it('two clients attaching one grant through A and B at the same moment: one session, the other refused as busy', async () => {
    const [a, b] = [set.get('a'), set.get('b')];
    for (let round = 0; round < 3; round++) {
      const grant = await grantOn(set, a);
      const headers = { authorization: `Bearer ${grant.token}` };
      const results = await Promise.allSettled([CdpClient.connect(attachUrl(a, grant.grantId), headers), CdpClient.connect(attachUrl(b, grant.grantId), headers)]);
      const won = results.filter((r): r is PromiseFulfilledResult<CdpClient> => r.status === 'fulfilled');
      const lost = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
      assert.equal(won.length, 1, `round ${round}: exactly one session (${lost.map((l) => l.reason.message).join('; ')})`);
      assert.equal(lost[0]!.reason.status, 409, lost[0]!.reason.message);
      assert.equal(JSON.parse(lost[0]!.reason.body).error.code, 'session_busy');
      await won[0]!.value.call('Debugger.enable');
      await won[0]!.value.close();
    }
  });

  it('a revocation still arrives when every replica has lost its notification channel (the poll stands in)', async () => {
    const [a, b, c] = [set.get('a'), set.get('b'), set.get('c')];
    const grant = await grantOn(set, a);
    const client = await b.attach(grant);
    await client.call('Debugger.enable');
    // Drop every LISTEN connection of this database, as a proxy or a failover would.
    const db = new Client({ connectionString: databaseUrl });
    await db.connect();
    try {
      const dropped = await db.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND query ILIKE 'LISTEN %' AND pid <> pg_backend_pid()`);
      assert.ok(dropped.rowCount! >= 3, `one LISTEN connection per replica was dropped (${dropped.rowCount})`);
    } finally {
      await db.end();
    }
    const revoke = await c.api('DELETE', `/v1/grants/${grant.grantId}`, await set.token('olga', ['owners']));
    assert.equal(revoke.status, 200, JSON.stringify(revoke.body));
    const revokedAt = Date.now();
    const closed = await within(client.closed, 5000, undefined);
    const took = Date.now() - revokedAt;
    assert.ok(closed, 'the session on B ended');
    assert.equal(closed.code, 4002, `closed as revoked (${closed.reason})`);
    assert.ok(took <= 2000, `within noticePoll (1 s) and a second (took ${took} ms)`);
  });

  it('approvals arriving on two replicas at once count twice; one approver on two replicas at once counts once', async () => {
    const [a, b, c] = [set.get('a'), set.get('b'), set.get('c')];
    const ask = async () => {
      const res = await a.api('POST', '/v1/grants', await set.token('dana', ['devs']), { target: 'gated', mode: 'pause', durationSeconds: 300, reason: 'needs two sre' });
      assert.equal(res.status, 202, JSON.stringify(res.body));
      return res.body.requestId as string;
    };
    const approve = async (replica: Replica, who: string, requestId: string) =>
      replica.api('POST', `/v1/requests/${requestId}/approve`, await set.token(who, ['sre']), { comment: `on ${replica.name}` });

    // Two approvers, two replicas, the same moment: both count, and the request is approved exactly once.
    const requestId = await ask();
    const [sam, sue] = await Promise.all([approve(b, 'sam', requestId), approve(c, 'sue', requestId)]);
    assert.deepEqual([sam.status, sue.status], [200, 200], `${JSON.stringify(sam.body)} ${JSON.stringify(sue.body)}`);
    const after = (await a.api('GET', `/v1/requests/${requestId}`, await set.token('dana', ['devs']))).body;
    assert.equal(after.status, 'approved');
    assert.deepEqual(after.approvals.map((x: any) => x.sub).sort(), ['sam', 'sue']);
    const collected = await a.api('POST', `/v1/requests/${requestId}/grant`, await set.token('dana', ['devs']));
    assert.equal(collected.status, 201, JSON.stringify(collected.body));
    const again = await b.api('POST', `/v1/requests/${requestId}/grant`, await set.token('dana', ['devs']));
    assert.equal(again.status, 409, 'collected once, whichever replica is asked');

    // One approver on two replicas at the same moment: one approval, the request still pending.
    const second = await ask();
    const both = await Promise.all([approve(b, 'sam', second), approve(c, 'sam', second)]);
    assert.deepEqual(both.map((r) => r.status).sort(), [200, 409], JSON.stringify(both.map((r) => r.body)));
    const pending = (await c.api('GET', `/v1/requests/${second}`, await set.token('dana', ['devs']))).body;
    assert.equal(pending.status, 'pending');
    assert.deepEqual(
      pending.approvals.map((x: any) => x.sub),
      ['sam'],
    );
  });

  it('kill -9 of B with a paused session: the target runs again, another replica ends the session, and its transcript verifies with B’s published key', async () => {
    const [a, b, c] = [set.get('a'), set.get('b'), set.get('c')];
    const grant = await grantOn(set, a);
    const client = await b.attach(grant);
    await client.call('Debugger.enable');
    const { breakpointId } = await client.call('Debugger.setBreakpointByUrl', { lineNumber: appLine, urlRegex: 'app\\.js$' });
    assert.ok(breakpointId);
    await client.waitEvent('Debugger.paused');
    const held = target.lastTick();
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(target.lastTick(), held, 'the target is paused');

    const sinceA = a.stderr().length;
    const sinceC = c.stderr().length;
    await b.kill9();
    // B's lease was renewed at most a second ago: the grant's slot is still B's session's.
    const early = await refusedAttach(attachUrl(a, grant.grantId), { authorization: `Bearer ${grant.token}` });
    assert.deepEqual([early.status, early.code], [409, 'session_busy'], early.message);
    // Node resumes when its inspector connection drops: nothing of B's is needed for that.
    await target.ticksAdvance(2, 5000);
    // The grant's slot is held until B's lease and outage grace run out (3 s + 4 s: B might only have been cut off from
    // the database, and would hold its session that long); then the replica that notices ends the session.
    await waitFor(() => [a.stderr().slice(sinceA), c.stderr().slice(sinceC)].some((log) => /lease ran out/.test(log) && log.includes('replica b')), {
      what: "A or C to end B's session when its lease runs out",
      timeoutMs: 15_000,
      intervalMs: 100,
    });
    const reattached = await a.attach(grant);
    await reattached.call('Debugger.enable');
    await reattached.close();

    // B comes back, recovers its own write-ahead log, and closes the session's chain in the store.
    await b.restart();
    const auditor = await set.token('audrey', ['auditors']);
    const sessions = await waitFor(
      async () => {
        const list = (await a.api('GET', '/v1/sessions', auditor)).body.sessions.filter((s: any) => s.grantId === grant.grantId);
        return list.length === 2 && list.every((s: any) => s.state === 'ended') ? list : undefined;
      },
      { what: "both of the grant's sessions stored and ended", timeoutMs: 30_000, intervalMs: 250 },
    );
    const ownKey = JSON.parse(readFileSync(join(b.stateDir, 'audit-key.jwk.json'), 'utf8')) as JWK;
    const kidOfB = await calculateJwkThumbprint({ kty: ownKey.kty!, crv: ownKey.crv!, x: ownKey.x! });
    const kids: string[] = [];
    for (const session of sessions) {
      const dir = mkdtempSync(join(tmpdir(), 'loupe-replica-killed-'));
      const env = { ...process.env, LOUPE_BROKER_URL: c.url, LOUPE_TOKEN: auditor };
      assert.equal((await run(['audit', 'download', session.sessionId, '-o', dir], env)).status, 0);
      const verified = await run(['audit', 'verify', dir], env);
      assert.equal(verified.status, 0, verified.stdout + verified.stderr);
      kids.push(/audit key (\S+)\)/.exec(verified.stdout)![1]!);
    }
    assert.ok(kids.includes(kidOfB), `one of the two was sealed by B (${kidOfB}), verified through C: ${kids.join(', ')}`);
  });
});

describe('the state database down mid-session', () => {
  let target: TargetProcess;
  let pg: OwnPostgres;
  let set: ReplicaSet;

  before(async () => {
    target = await startTarget();
    pg = startOwnPostgres('outage');
    const config = sharedConfig(target.inspector, await freshLockedBucket('loupe-replicas-outage'), pg.url);
    set = await startReplicas({ names: ['a', 'b'], config, perReplica: named(config) });
  });
  after(async () => {
    await set?.close();
    pg?.purge();
    await target?.stop();
  });

  it('new grants and attaches get 503 state_unavailable, the live session goes on, and all works again once the database is back', async () => {
    const [a, b] = [set.get('a'), set.get('b')];
    const grant = await grantOn(set, a);
    const client = await b.attach(grant);
    await client.call('Debugger.enable');
    const spare = await grantOn(set, a);

    pg.stop();
    const refused = await a.api('POST', '/v1/grants', await set.token('dana', ['devs']), { target: 'app', mode: 'pause', durationSeconds: 300, reason: 'during the outage' });
    assert.equal(refused.status, 503, JSON.stringify(refused.body));
    assert.equal(refused.body.error.code, 'state_unavailable');
    assert.match(refused.body.error.message, /retry/i);
    const attach = await refusedAttach(attachUrl(b, spare.grantId), { authorization: `Bearer ${spare.token}` });
    assert.deepEqual([attach.status, attach.code], [503, 'state_unavailable'], attach.message);
    // The live session goes on while the outage is shorter than the bound.
    const evaluated = await client.call('Runtime.evaluate', { expression: '6 * 7' });
    assert.equal(evaluated.result.value, 42);

    pg.start();
    const back = await waitFor(
      async () => {
        const res = await a.api('POST', '/v1/grants', await set.token('dana', ['devs']), { target: 'app', mode: 'pause', durationSeconds: 300, reason: 'after the outage' });
        return res.status === 201 ? res : undefined;
      },
      { what: 'grants again once the database is back', timeoutMs: 15_000, intervalMs: 250 },
    );
    assert.equal(back.status, 201);
    assert.equal((await client.call('Runtime.evaluate', { expression: '1 + 1' })).result.value, 2, 'the session lived through the outage');
    await client.close();
  });

  it('a database that stays down past the bound ends the live session cleanly: breakpoints removed, target running', async () => {
    const [a, b] = [set.get('a'), set.get('b')];
    const grant = await grantOn(set, a);
    const client = await b.attach(grant);
    await client.call('Debugger.enable');
    await client.call('Debugger.setBreakpointByUrl', { lineNumber: appLine, urlRegex: 'app\\.js$' });
    await client.waitEvent('Debugger.paused');
    const stoppedAt = Date.now();
    pg.stop();
    try {
      const closed = await within(client.closed, 15_000, undefined);
      assert.ok(closed, 'the session ended');
      assert.equal(closed.code, 4011, `closed as state_unavailable (${closed.reason})`);
      const took = Date.now() - stoppedAt;
      assert.ok(took >= 3000, `not before the bound (4 s; ended after ${took} ms)`);
      await target.ticksAdvance(3, 5000);
    } finally {
      pg.start();
    }
  });
});
