import { strict as assert } from 'node:assert';
import { randomUUID } from 'node:crypto';
import { it } from 'node:test';
import type { Grant } from '../../broker/grants/grantStore';
import type { AccessRequest, Hold } from '../../broker/policy/approvalTypes';
import type { StateBackend, StateNotice } from '../../broker/state/stateBackend';

/**
 * The contract every state backend keeps. `make` answers two backends on one store: two replicas on one database
 * for PostgreSQL; for the files (one broker) the same instance twice. Races are two calls at once, one through each.
 */
export function runStateContract(make: () => Promise<{ a: StateBackend; b: StateBackend }>, options: { shared: boolean }): void {
  // Lease arithmetic runs on this clock, an hour ahead: a database start (which counts as a renewal) is never that recent.
  const now = Date.now() + 3600_000;
  const grant = (over: Partial<Grant> = {}): Grant => ({
    grantId: randomUUID(),
    sub: 'alice',
    name: 'Alice',
    groups: ['devs'],
    target: 'checkout',
    mode: 'snapshot',
    reason: 'INC-1 checkout slow',
    rule: 'targets.checkout.access[0]',
    issuedAt: Math.floor(now / 1000),
    expiresAt: Math.floor(now / 1000) + 600,
    ...over,
  });
  const request = (minApprovals: number): AccessRequest => ({
    requestId: randomUUID(),
    requester: { sub: 'alice', name: 'Alice', groups: ['devs'] },
    target: 'checkout',
    mode: 'pause',
    durationSeconds: 600,
    reason: 'INC-2',
    rule: 'targets.checkout.access[1]',
    approvers: ['owners'],
    minApprovals,
    expiresAfterSeconds: 3600,
    createdAt: new Date(now).toISOString(),
    status: 'pending',
    expiresAt: new Date(now + 3600_000).toISOString(),
    approvals: [],
  });
  const decision = (sub: string) => ({ sub, name: sub.toUpperCase(), at: new Date().toISOString() });
  const claim = (grantId: string, replica: string, nowMs: number, leaseMs = 10_000) => ({ sessionId: randomUUID(), grantId, replica, user: 'alice', target: 'checkout', nowMs, leaseMs });

  it('keeps a grant as issued, and answers undefined for one it never saw', async () => {
    const { a, b } = await make();
    const issued = grant({ approvedBy: [{ sub: 'bob', name: 'Bob', at: new Date(now).toISOString() }], requestId: randomUUID(), ticket: 'INC-1' });
    await a.putGrant(issued);
    assert.deepEqual(await b.getGrant(issued.grantId), issued);
    assert.equal(await b.getGrant(randomUUID()), undefined);
  });

  it('revokes once: the first revocation stands, and every replica sees it', async () => {
    const { a, b } = await make();
    const issued = grant();
    await a.putGrant(issued);
    const [first, second] = await Promise.all([a.revokeGrant(issued.grantId, 'bob', 100), b.revokeGrant(issued.grantId, 'carol', 101)]);
    const winner = (await a.getGrant(issued.grantId))!;
    assert.ok(winner.revokedBy === 'bob' || winner.revokedBy === 'carol');
    for (const seen of [first, second, await b.getGrant(issued.grantId)]) assert.deepEqual([seen?.revokedBy, seen?.revokedAt], [winner.revokedBy, winner.revokedAt]);
    assert.equal(await a.revokeGrant(randomUUID(), 'bob', 100), undefined);
  });

  it('hands a ticket out once, even to two replicas redeeming it at the same moment', async () => {
    const { a, b } = await make();
    const ticket = randomUUID();
    await a.putTicket(ticket, 'g1', now + 60_000);
    const answers = await Promise.all([a.redeemTicket(ticket, now), b.redeemTicket(ticket, now)]);
    assert.deepEqual(answers.filter(Boolean), [{ grantId: 'g1', expiresAtMs: now + 60_000 }]);
    assert.equal(await a.redeemTicket(ticket, now), undefined);
    assert.equal(await b.redeemTicket(randomUUID(), now), undefined);
  });

  it('consumes an expired ticket too, and says when it expired (the caller refuses it)', async () => {
    const { a, b } = await make();
    const ticket = randomUUID();
    await a.putTicket(ticket, 'g2', now - 1);
    assert.deepEqual(await b.redeemTicket(ticket, now), { grantId: 'g2', expiresAtMs: now - 1 });
    assert.equal(await a.redeemTicket(ticket, now), undefined);
  });

  it('gives a grant one live session: a second claim elsewhere is refused until the first ends', async () => {
    const { a, b } = await make();
    const first = claim(randomUUID(), 'replica-a', now);
    assert.deepEqual(await a.claimSession(first), { claimed: true });
    const refused = await b.claimSession({ ...claim(first.grantId, 'replica-b', now + 1) });
    assert.equal(refused.claimed, false);
    assert.equal(!refused.claimed && refused.holder.sessionId, first.sessionId);
    assert.equal(!refused.claimed && refused.holder.replica, 'replica-a');
    await a.endSession(first.sessionId, { by: 'replica-a', reason: 'client_gone', atMs: now + 2 });
    assert.deepEqual(await b.claimSession(claim(first.grantId, 'replica-b', now + 3)), { claimed: true });
    const ended = await b.getSession(first.sessionId);
    assert.deepEqual([ended?.endedBy, ended?.endReason, ended?.endedAtMs], ['replica-a', 'client_gone', now + 2]);
  });

  it('lists the live sessions alone, keeps the ended ones readable, and frees only their grants', async () => {
    const { a, b } = await make();
    const held = Array.from({ length: 30 }, (_, i) => claim(randomUUID(), 'replica-a', now + i));
    for (const c of held) assert.deepEqual(await a.claimSession(c), { claimed: true });
    const ended = held.filter((_, i) => i % 2 === 0);
    const live = held.filter((_, i) => i % 2 === 1);
    for (const [i, c] of ended.entries()) await b.endSession(c.sessionId, { by: 'replica-b', reason: 'client_gone', atMs: now + 100 + i });
    const ours = new Set<string>(held.map((c) => c.sessionId));
    const listed = (await a.liveSessions()).filter((s) => ours.has(s.sessionId)).map((s) => s.sessionId);
    assert.deepEqual(listed.sort(), live.map((c) => c.sessionId).sort());
    for (const [i, c] of ended.entries()) assert.equal((await a.getSession(c.sessionId))?.endedAtMs, now + 100 + i);
    for (const c of live) {
      const refused = await b.claimSession(claim(c.grantId, 'replica-b', now + 200));
      assert.equal(!refused.claimed && refused.holder.sessionId, c.sessionId, 'a live grant is held by its own session');
    }
    for (const c of ended) assert.deepEqual(await b.claimSession(claim(c.grantId, 'replica-b', now + 200)), { claimed: true }, 'an ended grant is free again');
  });

  it('lets exactly one of two claims racing for one grant through', async () => {
    const { a, b } = await make();
    const grantId = randomUUID();
    const answers = await Promise.all([a.claimSession(claim(grantId, 'replica-a', now)), b.claimSession(claim(grantId, 'replica-b', now))]);
    assert.equal(answers.filter((x) => x.claimed).length, 1);
  });

  it("claims a grant's slot together with reading the grant: only while it exists unrevoked, once under a race", async () => {
    const { a, b } = await make();
    const live = grant();
    await a.putGrant(live);
    const [first, second] = await Promise.all([a.claimSessionOfGrant(claim(live.grantId, 'replica-a', now)), b.claimSessionOfGrant(claim(live.grantId, 'replica-b', now))]);
    for (const answer of [first, second]) assert.deepEqual(answer.grant, live);
    assert.equal([first, second].filter((x) => x.claim?.claimed).length, 1, 'one of two racing claims is taken');
    const refused = [first, second].find((x) => !x.claim?.claimed)!.claim!;
    assert.equal(!refused.claimed && refused.holder.grantId, live.grantId);

    const revoked = grant();
    await a.putGrant(revoked);
    await b.revokeGrant(revoked.grantId, 'bob', 100);
    const answer = await a.claimSessionOfGrant(claim(revoked.grantId, 'replica-a', now));
    assert.equal(answer.claim, undefined, 'no slot taken for a revoked grant');
    assert.equal(answer.grant?.revokedBy, 'bob');
    assert.deepEqual(await b.claimSession(claim(revoked.grantId, 'replica-b', now)), { claimed: true }, "the revoked grant's slot was left free");

    assert.deepEqual(await a.claimSessionOfGrant(claim(randomUUID(), 'replica-a', now)), { grant: undefined });
  });

  it(
    options.shared ? 'ends a session whose lease ran out, recording which replica noticed, and frees its grant' : 'never expires a session of its one process: only its end frees the grant',
    async () => {
      if (!options.shared) {
        const { a } = await make();
        const held = claim(randomUUID(), 'replica-a', now, 1000);
        await a.claimSession(held);
        assert.deepEqual(await a.expireLeases(now + 60_000, 'replica-a'), []);
        assert.equal((await a.claimSession(claim(held.grantId, 'replica-a', now + 60_000))).claimed, false);
        assert.deepEqual(await a.renewLeases('replica-a', [held.sessionId], now + 60_000, 1000), []);
        return;
      }
      const { a, b } = await make();
      const held = claim(randomUUID(), 'replica-a', now, 1000);
      await a.claimSession(held);
      assert.equal((await b.claimSession(claim(held.grantId, 'replica-b', now + 999))).claimed, false);
      assert.deepEqual(await b.claimSession(claim(held.grantId, 'replica-b', now + 1000)), { claimed: true });
      const ended = await a.getSession(held.sessionId);
      assert.deepEqual([ended?.endedBy, ended?.endReason], ['replica-b', 'lease_expired']);

      const other = claim(randomUUID(), 'replica-a', now, 1000);
      await a.claimSession(other);
      assert.deepEqual(
        (await b.expireLeases(now + 500, 'replica-b')).map((s) => s.sessionId).filter((id) => id === other.sessionId),
        [],
      );
      const expired = await b.expireLeases(now + 1500, 'replica-b');
      assert.ok(expired.some((s) => s.sessionId === other.sessionId && s.endedBy === 'replica-b' && s.endReason === 'lease_expired'));
      assert.ok(!(await a.liveSessions()).some((s) => s.sessionId === other.sessionId));
    },
  );

  it('renews only the leases a replica still holds, and names the ones ended elsewhere', async () => {
    const { a, b } = await make();
    const kept = claim(randomUUID(), 'replica-a', now, 1000);
    const lost = claim(randomUUID(), 'replica-a', now, 1000);
    await a.claimSession(kept);
    await a.claimSession(lost);
    await b.endSession(lost.sessionId, { by: 'replica-b', reason: 'revoked', atMs: now + 10 });
    assert.deepEqual(await a.renewLeases('replica-a', [kept.sessionId, lost.sessionId], now + 900, 1000), [lost.sessionId]);
    assert.equal((await b.getSession(kept.sessionId))?.leaseUntilMs, now + 1900);
    assert.deepEqual(await b.renewLeases('replica-b', [kept.sessionId], now + 900, 1000), [kept.sessionId], 'another replica cannot renew a lease it does not hold');
    assert.equal((await b.claimSession(claim(kept.grantId, 'replica-b', now + 1500))).claimed, false, 'the renewed lease still holds');
    if (options.shared) assert.deepEqual(await b.claimSession(claim(kept.grantId, 'replica-b', now + 1900)), { claimed: true }, 'and runs out when it is not renewed');
  });

  it('counts two approvals arriving on two replicas at once exactly twice', async () => {
    const { a, b } = await make();
    const asked = request(2);
    await a.createRequest(asked);
    const approvedBy = new Date(now + 7200_000).toISOString();
    const answers = await Promise.all([a.addApproval(asked.requestId, decision('bob'), approvedBy), b.addApproval(asked.requestId, decision('carol'), approvedBy)]);
    assert.deepEqual(
      answers.map((x) => x.added),
      [true, true],
    );
    const stored = (await a.getRequest(asked.requestId))!;
    assert.deepEqual(stored.approvals.map((x) => x.sub).sort(), ['bob', 'carol']);
    assert.equal(stored.status, 'approved');
    assert.equal(stored.expiresAt, approvedBy);
  });

  it('counts one approver once, however many replicas their approval reaches', async () => {
    const { a, b } = await make();
    const asked = request(2);
    await a.createRequest(asked);
    const answers = await Promise.all([a, b, a, b].map((x) => x.addApproval(asked.requestId, decision('bob'), 'later')));
    assert.equal(answers.filter((x) => x.added).length, 1);
    const stored = (await b.getRequest(asked.requestId))!;
    assert.deepEqual([stored.approvals.length, stored.status], [1, 'pending']);
  });

  it('stops counting once a request has its approvals, even with many approvers racing', async () => {
    const { a, b } = await make();
    const asked = request(3);
    await a.createRequest(asked);
    const approvers = Array.from({ length: 8 }, (_, i) => `owner${i}`);
    const answers = await Promise.all(approvers.map((sub, i) => (i % 2 ? a : b).addApproval(asked.requestId, decision(sub), 'collect-by')));
    assert.equal(answers.filter((x) => x.added).length, 3);
    const stored = (await a.getRequest(asked.requestId))!;
    assert.deepEqual([stored.approvals.length, stored.status, stored.expiresAt], [3, 'approved', 'collect-by']);
    assert.deepEqual(await a.addApproval(randomUUID(), decision('bob'), 'x'), { added: false, request: undefined });
  });

  it('closes a request once: of a denial and a withdrawal at the same moment, one wins', async () => {
    const { a, b } = await make();
    const asked = request(1);
    await a.createRequest(asked);
    const at = new Date(now).toISOString();
    const [denied, withdrawn] = await Promise.all([
      a.closeRequest(asked.requestId, ['pending'], { status: 'denied', denial: { ...decision('bob'), comment: 'not now' }, at }),
      b.closeRequest(asked.requestId, ['pending', 'approved'], { status: 'withdrawn', at }),
    ]);
    assert.equal([denied, withdrawn].filter(Boolean).length, 1);
    const stored = (await b.getRequest(asked.requestId))!;
    assert.equal(stored.status, denied ? 'denied' : 'withdrawn');
    if (denied) assert.equal(stored.denial?.comment, 'not now');
    assert.deepEqual(
      (await a.listRequests(['pending'])).filter((r) => r.requestId === asked.requestId),
      [],
    );
  });

  it('collects an approved request once, with its grant id', async () => {
    const { a, b } = await make();
    const asked = request(1);
    await a.createRequest(asked);
    await b.addApproval(asked.requestId, decision('bob'), 'collect-by');
    const at = new Date(now).toISOString();
    const answers = await Promise.all([a, b].map((x) => x.closeRequest(asked.requestId, ['approved'], { status: 'collected', grantId: 'grant-1', at })));
    assert.equal(answers.filter(Boolean).length, 1);
    assert.deepEqual(
      (await a.listRequests(['collected'])).filter((r) => r.requestId === asked.requestId).map((r) => [r.grantId, r.closedAt]),
      [['grant-1', at]],
    );
  });

  it('holds a user on a target until the alert that placed the hold releases it', async () => {
    const { a, b } = await make();
    const user = `u-${randomUUID()}`;
    const hold: Hold = { user, target: 'checkout', cause: { alertId: 'alert-1', rule: 'sensitiveReads', message: 'read of password', at: new Date(now).toISOString() } };
    await a.putHold(hold);
    assert.deepEqual(await b.getHold(user, 'checkout'), hold);
    await b.releaseHold(user, 'checkout', 'alert-other');
    assert.deepEqual(await a.getHold(user, 'checkout'), hold, 'another alert does not release it');
    await b.releaseHold(user, 'checkout', 'alert-1');
    assert.equal(await a.getHold(user, 'checkout'), undefined);
  });

  it('shares alert state: the previous attach, and rates counted across replicas', async () => {
    const { a, b } = await make();
    const user = `u-${randomUUID()}`;
    assert.equal(await a.touchFirstAttach(user, 'checkout', '2026-01-01T00:00:00.000Z'), undefined);
    assert.equal(await b.touchFirstAttach(user, 'checkout', '2026-01-02T00:00:00.000Z'), '2026-01-01T00:00:00.000Z');
    assert.equal(await a.touchFirstAttach(user, 'billing', '2026-01-02T00:00:00.000Z'), undefined);
    const key = `failedAttaches source ${randomUUID()}`;
    assert.equal(await a.countInWindow(key, now, 10_000), 1);
    assert.equal(await b.countInWindow(key, now + 1, 10_000), 2);
    assert.equal(await a.countInWindow(key, now + 5000, 10_000), 3);
    assert.equal(await b.countInWindow(key, now + 10_001, 10_000), 2, 'the first two fell out of the window');
  });

  it('delivers a notice to every replica within a second', async () => {
    const { a, b } = await make();
    const seenByB: StateNotice[] = [];
    const seenByA: StateNotice[] = [];
    const stopB = b.onNotice((n) => seenByB.push(n));
    const stopA = a.onNotice((n) => seenByA.push(n));
    try {
      const notice: StateNotice = { type: 'revoked', grantId: randomUUID(), by: 'bob' };
      const sent = Date.now();
      await a.notify(notice);
      while (!seenByB.some((n) => n.type === 'revoked' && n.grantId === notice.grantId) && Date.now() - sent < 1000) await new Promise((r) => setTimeout(r, 10));
      assert.ok(Date.now() - sent < 1000, `the notice took ${Date.now() - sent} ms`);
      await new Promise((r) => setTimeout(r, 100));
      for (const seen of [seenByA, seenByB]) assert.equal(seen.filter((n) => n.type === 'revoked' && n.grantId === notice.grantId).length, 1, 'delivered once to each handler');
    } finally {
      stopA();
      stopB();
    }
  });
}
