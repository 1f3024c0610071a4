// needs: postgres
import { strict as assert } from 'node:assert';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { PostgresStateBackend } from '../../broker/state/pgState';
import { CdpClient } from '../support/cdpClient';
import { databaseUrl, startOwnPostgres, type OwnPostgres } from '../support/postgres';
import { startTarget, type TargetProcess } from '../support/target';
import { basePolicy, startTestBroker, type TestBroker } from '../support/testBroker';
import { waitFor, within } from '../support/wait';

/**
 * Two broker replicas in this process, each with its own state directory, audit store and keys, sharing one
 * PostgreSQL database: what one decides, the other honours. (Replicas as separate processes, kill -9 and the audit
 * keys of all replicas are tested by the replica harness.)
 */
function replicaPolicy(inspector: string, url: string, schema: string, replica: string, state: Record<string, unknown> = {}): Record<string, any> {
  const base = basePolicy(inspector);
  return {
    ...base,
    roles: { ...base.roles, sre: { groups: ['sre'] } },
    state: { postgres: { url, schema }, replica, sessionLease: '3s', noticePoll: '1s', ...state },
    targets: {
      ...base.targets,
      guarded: { ...base.targets.app, access: [{ role: 'dev', modes: ['pause'], maxDuration: '10m', requireApproval: { approvers: 'sre', minApprovals: 2, expiresAfter: '30m' } }] },
    },
  };
}

const wsBase = (broker: TestBroker) => broker.url.replace(/^http/, 'ws');

async function refusal(url: string, headers: Record<string, string> = {}): Promise<{ status: number; body: any }> {
  try {
    const client = await CdpClient.connect(url, headers);
    client.socket.close();
    throw new Error('the attach opened');
  } catch (err) {
    const e = err as { status?: number; body?: string };
    if (typeof e.status !== 'number') throw err;
    return { status: e.status, body: JSON.parse(e.body ?? '{}') };
  }
}

describe('two replicas on one PostgreSQL database', () => {
  let target: TargetProcess;
  let a: TestBroker;
  let b: TestBroker;
  const schema = `replicas_${randomUUID().replace(/-/g, '').slice(0, 12)}`;
  const reloadsSeen: [string, string][] = [];
  before(async () => {
    const url = await databaseUrl();
    target = await startTarget();
    a = await startTestBroker(replicaPolicy(target.inspector, url, schema, 'replica-a'), { onPolicyReloadNotice: (source) => reloadsSeen.push(['replica-a', source]) });
    b = await startTestBroker(replicaPolicy(target.inspector, url, schema, 'replica-b'), { onPolicyReloadNotice: (source) => reloadsSeen.push(['replica-b', source]) });
  });
  after(async () => {
    await a?.close();
    await b?.close();
    await target?.stop();
  });

  it('attaches through B with a grant from A, refuses a second attach through A, and ends the session on B within a second of a revocation through A', async () => {
    const grant = await a.grant('dev', ['devs']);
    const client = await CdpClient.connect(`${wsBase(b)}/v1/attach/${grant.grantId}`, { authorization: `Bearer ${grant.token}` });
    try {
      const session = b.broker.liveSessions.find((s) => s.grant.grantId === grant.grantId);
      assert.ok(session, 'the session runs on B');
      const busy = await refusal(`${wsBase(a)}/v1/attach/${grant.grantId}`, { authorization: `Bearer ${grant.token}` });
      assert.equal(busy.status, 409);
      assert.equal(busy.body.error.code, 'session_busy');
      assert.match(busy.body.error.message, /through broker replica replica-b/);

      const revokedAt = Date.now();
      const revoked = await a.api('DELETE', `/v1/grants/${grant.grantId}`, await a.token('dev', ['devs']));
      assert.equal(revoked.status, 200);
      const closed = await within(client.closed, 1000 + 500, undefined);
      assert.ok(closed, 'the session on B closed');
      assert.equal(closed.code, 4002);
      assert.ok(Date.now() - revokedAt < 1000 + 500, `closed ${Date.now() - revokedAt} ms after the revocation`);
      const row = await waitFor(async () => {
        const s = await a.broker.state.getSession(session.sessionId);
        return s?.endedAtMs !== undefined && s;
      });
      assert.deepEqual([row.replica, row.endedBy, row.endReason], ['replica-b', 'replica-b', 'revoked']);
      await target.ticksAdvance();
    } finally {
      client.socket.close();
    }
  });

  it('lets exactly one of two clients racing one ticket on A and B attach', async () => {
    const grant = await a.grant('dev', ['devs']);
    const opened = await a.api('POST', `/v1/grants/${grant.grantId}/tickets`, await a.token('dev', ['devs']));
    assert.equal(opened.status, 201);
    const { ticket } = opened.body;
    const tries = await Promise.allSettled([a, b].map((r) => CdpClient.connect(`${wsBase(r)}/v1/attach/${grant.grantId}?ticket=${ticket}`)));
    const won = tries.filter((t) => t.status === 'fulfilled');
    const lost = tries.filter((t) => t.status === 'rejected');
    assert.equal(won.length, 1, 'exactly one attaches');
    assert.equal((lost[0]!.reason as { status: number }).status, 401);
    (won[0] as PromiseFulfilledResult<CdpClient>).value.socket.close();
  });

  it('counts two approvals arriving on A and B at once twice, one approver once, and the requester collects on either', async () => {
    const asked = await a.api('POST', '/v1/grants', await a.token('dev', ['devs']), { target: 'guarded', mode: 'pause', durationSeconds: 300, reason: 'INC-7 two-person rule' });
    assert.equal(asked.status, 202);
    const id = asked.body.requestId;
    const [first, second] = await Promise.all([
      a.api('POST', `/v1/requests/${id}/approve`, await a.token('sam', ['sre']), {}),
      b.api('POST', `/v1/requests/${id}/approve`, await b.token('sue', ['sre']), {}),
    ]);
    assert.deepEqual([first.status, second.status], [200, 200]);
    const seen = await b.api('GET', `/v1/requests/${id}`, await b.token('dev', ['devs']));
    assert.equal(seen.body.status, 'approved');
    assert.deepEqual(seen.body.approvals.map((x: { sub: string }) => x.sub).sort(), ['sam', 'sue']);
    const counts = [...a.records, ...b.records].filter((e) => e.type === 'request.approved' && (e.data as any).requestId === id).map((e) => (e.data as any).approvals);
    assert.deepEqual(counts.sort(), [1, 2], 'each approval recorded once, with its place');

    const again = await a.api('POST', '/v1/grants', await a.token('dev', ['devs']), { target: 'guarded', mode: 'pause', durationSeconds: 300, reason: 'INC-8' });
    const twice = await Promise.all([a, b, a, b].map(async (r) => r.api('POST', `/v1/requests/${again.body.requestId}/approve`, await r.token('sam', ['sre']), {})));
    assert.deepEqual(twice.map((x) => x.status).sort(), [200, 409, 409, 409]);

    const collected = await b.api('POST', `/v1/requests/${id}/grant`, await b.token('dev', ['devs']));
    assert.equal(collected.status, 201, JSON.stringify(collected.body));
    const collectedAgain = await a.api('POST', `/v1/requests/${id}/grant`, await a.token('dev', ['devs']));
    assert.equal(collectedAgain.status, 409);
  });

  it('tells the other replicas of a policy reload within a second, and not itself', async () => {
    const source = `policy.yaml (SIGHUP ${randomUUID()})`;
    const sent = Date.now();
    await a.broker.reload(a.config, source);
    await waitFor(() => reloadsSeen.some(([, s]) => s === source), { what: 'B to hear of the reload', timeoutMs: 1000, intervalMs: 5 });
    assert.ok(Date.now() - sent < 1000);
    await new Promise((r) => setTimeout(r, 300));
    assert.deepEqual(
      reloadsSeen.filter(([, s]) => s === source),
      [['replica-b', source]],
    );
    // A reload because another replica announced one is not announced again.
    const echo = `policy.yaml (another replica reloaded ${randomUUID()})`;
    await b.broker.reload(b.config, echo, false);
    await new Promise((r) => setTimeout(r, 1200));
    assert.deepEqual(
      reloadsSeen.filter(([, s]) => s === echo),
      [],
    );
  });

  it('a reason or ticket PostgreSQL cannot store (a NUL, an unpaired surrogate) is refused 400 saying why, not 503 "retry later"', async () => {
    const token = await a.token('dev', ['devs']);
    for (const [field, value] of [
      ['reason', 'investigating INC-7\u0000'],
      ['reason', 'investigating INC-7 \uD800'],
      ['ticket', 'INC-7\u0000'],
    ] as const) {
      const res = await a.api('POST', '/v1/grants', token, { target: 'app', mode: 'pause', durationSeconds: 60, reason: 'investigating INC-7', [field]: value });
      assert.equal(res.status, 400, JSON.stringify(res.body));
      assert.equal(res.body.error.code, 'bad_request');
      assert.match(res.body.error.message, new RegExp(`${field}: contains a NUL character or an unpaired UTF-16 surrogate`));
    }
    assert.equal(a.broker.ready.ready, true);
  });

  it('ends a session whose replica stopped renewing its lease, once, and records who ended it', async () => {
    const sessionId = randomUUID();
    const grantId = randomUUID();
    await a.broker.state.claimSession({ sessionId, grantId, replica: 'replica-gone', user: 'dev', target: 'app', nowMs: Date.now(), leaseMs: 200 });
    const row = await waitFor(
      async () => {
        const s = await b.broker.state.getSession(sessionId);
        return s?.endedAtMs !== undefined && s;
      },
      { timeoutMs: 5000 },
    );
    assert.equal(row.endReason, 'lease_expired');
    assert.ok(['replica-a', 'replica-b'].includes(row.endedBy!));
    const by = row.endedBy === 'replica-a' ? a : b;
    const record = await by.waitForRecord('session.lease_expired', (e) => e.data.session === sessionId);
    assert.deepEqual([record.data.replica, record.data.endedBy, record.data.grantId], ['replica-gone', row.endedBy, grantId]);
    await new Promise((r) => setTimeout(r, 1200));
    assert.equal([...a.records, ...b.records].filter((e) => e.type === 'session.lease_expired' && (e.data as any).session === sessionId).length, 1);
  });
});

describe('a replica whose database goes down', () => {
  let target: TargetProcess;
  let db: OwnPostgres;
  let broker: TestBroker;
  before(async () => {
    db = await startOwnPostgres('outage');
    target = await startTarget();
    broker = await startTestBroker(replicaPolicy(target.inspector, db.url, 'loupe', 'replica-c', { sessionLease: '1s', outageGrace: '5s' }));
  });
  after(async () => {
    await broker?.close();
    await target?.stop();
    db?.purge();
  });

  it('keeps a live session through an outage longer than its lease but within the grace: the database restart counts as a renewal', async () => {
    const live = await broker.attach();
    const sessionId = broker.broker.liveSessions[0]!.sessionId;
    // Another replica, as it would look for expired leases the moment the database is back.
    const other = new PostgresStateBackend({ url: db.url, queryTimeoutMs: 500 });
    await other.start();
    db.stop();
    await new Promise((r) => setTimeout(r, 2500));
    const refused = await broker.api('POST', '/v1/grants', await broker.token('dev', ['devs']), { target: 'app', mode: 'pause', durationSeconds: 60, reason: 'during the outage' });
    assert.deepEqual([refused.status, refused.body.error.code], [503, 'state_unavailable']);
    db.start();
    const expired = await waitFor(() => other.expireLeases(Date.now(), 'replica-other').catch(() => undefined), { what: 'the other replica to reach the database', intervalMs: 5 });
    await other.close();
    assert.deepEqual(
      expired.map((s) => s.sessionId),
      [],
      'nobody could renew while the database was down: its return counts as a renewal',
    );
    await waitFor(() => broker.broker.ready.ready, { what: 'the replica to be ready again', timeoutMs: 10_000 });
    await new Promise((r) => setTimeout(r, 2000)); // several lease ticks after the return
    assert.equal(await within(live.client.closed, 0, 'open'), 'open', 'the session lived through the outage');
    assert.equal((await live.client.send('Runtime.evaluate', { expression: '6 * 7' })).result?.result?.value, 42);
    assert.equal((await broker.broker.state.getSession(sessionId))?.endedAtMs, undefined, 'its registry entry is live');
    live.client.socket.close();
    await waitFor(async () => (await broker.broker.state.getSession(sessionId))?.endedAtMs !== undefined, { what: 'the closed session to be released' });
  });

  it('refuses grants and attaches with 503 state_unavailable, ends the live session cleanly after the grace, and serves again once the database is back', async () => {
    const live = await broker.attach();
    const spare = await broker.grant('dev', ['devs']);
    const revocable = await broker.grant('dev', ['devs']);
    const revocableClient = await CdpClient.connect(revocable.attachUrl, { authorization: `Bearer ${revocable.token}` });
    await live.client.send('Debugger.enable');
    await live.client.send('Debugger.pause');
    await waitFor(() => live.client.events.some((e) => e.method === 'Debugger.paused'), { what: 'the target to pause' });
    db.stop();
    const stoppedAt = Date.now();

    const grant = await broker.api('POST', '/v1/grants', await broker.token('dev', ['devs']), { target: 'app', mode: 'pause', durationSeconds: 60, reason: 'during the outage' });
    assert.equal(grant.status, 503);
    assert.equal(grant.body.error.code, 'state_unavailable');
    assert.match(grant.body.error.message, /cannot be reached.*refused until it is back; retry later/);
    const attach = await refusal(`${wsBase(broker)}/v1/attach/${spare.grantId}`, { authorization: `Bearer ${spare.token}` });
    assert.deepEqual([attach.status, attach.body.error.code], [503, 'state_unavailable']);

    // A revocation without the database still ends the session here (only by whom the grant allows), and says it is not recorded.
    const other = await broker.api('DELETE', `/v1/grants/${revocable.grantId}`, await broker.token('eve', ['devs']));
    assert.deepEqual([other.status, other.body.error.code], [403, 'forbidden']);
    const revoked = await broker.api('DELETE', `/v1/grants/${revocable.grantId}`, await broker.token('dev', ['devs']));
    assert.deepEqual([revoked.status, revoked.body.error.code], [503, 'state_unavailable']);
    assert.match(revoked.body.error.message, /has ended, but the revocation is not recorded: repeat it once the database is back/);
    assert.equal((await within(revocableClient.closed, 1000, undefined))?.code, 4002);

    const closed = await within(live.client.closed, 10_000, undefined);
    assert.ok(closed, 'the session ended');
    assert.equal(closed.code, 4011);
    const elapsed = Date.now() - stoppedAt;
    assert.ok(elapsed >= 4500, `the session went on for the grace (5 s; ended after ${elapsed} ms)`);
    await target.ticksAdvance(3); // resumed

    await broker.waitForRecord('state.unavailable');
    const ended = await broker.waitForRecord('session.ended', (e) => e.data.endReason === 'state_unavailable');
    assert.equal(ended.grant, live.grant.grantId);

    db.start();
    await waitFor(() => broker.broker.ready.ready, { what: 'the replica to be ready again', timeoutMs: 10_000 });
    await broker.waitForRecord('state.recovered');
    const after = await broker.grant('dev', ['devs']);
    const client = await CdpClient.connect(after.attachUrl, { authorization: `Bearer ${after.token}` });
    client.socket.close();
  });
});
