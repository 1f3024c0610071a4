// The two-person rule against a real broker over HTTP: access requests, approvals by distinct approvers
// (never the requester), denial, expiry on the broker's clock, a restart, collecting the grant and attaching
// to a real target, the audit records, and the alert action require-approval.
import { strict as assert } from 'node:assert';
import { mkdtempSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, before, describe, it } from 'node:test';
import { decodeJwt, type JSONWebKeySet } from 'jose';
import { eventCodes } from '../../broker/audit/events';
import { renderReport } from '../../broker/audit/report';
import { readTranscriptFromStore, verifyTranscript } from '../../broker/audit/verify';
import { parseConfigText, validateConfig } from '../../broker/config/load';
import { stringify } from 'yaml';
import { LoupeError } from '../../broker/errors';
import { outcomeText, waitForDecision } from '../../extension/adapter/accessRequests';
import { BrokerApi } from '../../extension/adapter/brokerApi';
import { CdpClient } from '../support/cdpClient';
import { startTarget, type TargetProcess } from '../support/target';
import { alertRulesOff, basePolicy, startTestBroker, type TestBroker } from '../support/testBroker';
import { waitFor } from '../support/wait';

const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/**
 * app: devs need two approvals by sre (decide within 30m); peer: devs need one approval by another dev;
 * open: devs attach without approval (the alert test puts them on hold there).
 */
function approvalPolicy(inspector: string, extra: Record<string, any> = {}): Record<string, any> {
  const base = basePolicy(inspector);
  return {
    ...base,
    roles: { ...base.roles, sre: { groups: ['sres'] } },
    auditors: ['admin'],
    alerting: {
      rules: alertRulesOff,
    },
    targets: {
      app: { ...base.targets.app, access: [{ role: 'dev', modes: ['pause', 'snapshot'], maxDuration: '10m', requireApproval: { approvers: 'sre', minApprovals: 2, expiresAfter: '30m' } }] },
      peer: { ...base.targets.app, access: [{ role: 'dev', modes: ['pause'], maxDuration: '10m', requireApproval: { approvers: ['dev'] } }] },
      open: { ...base.targets.app, access: [{ role: 'dev', modes: ['pause'], maxDuration: '10m' }], ...extra.open },
    },
  };
}

/** The broker's clock, moved by the tests (grants, expiry and tokens all read it). */
function movableClock() {
  let offset = 0;
  return { now: () => Date.now() + offset, advance: (ms: number) => (offset += ms) };
}

const people: Record<string, string[]> = {
  dev: ['devs'],
  dev2: ['devs'],
  sam: ['sres'],
  sue: ['sres'],
  /** Holds the approver role and the requester role: may still never approve her own request. */
  dora: ['devs', 'sres'],
  olga: ['owners'],
  ada: ['admins'],
  eve: ['marketing'],
};

function client(broker: TestBroker) {
  const as = async (user: string, method: string, path: string, body?: unknown) => broker.api(method, path, await broker.token(user, people[user]!), body);
  const ask = (user: string, overrides: Record<string, unknown> = {}) =>
    as(user, 'POST', '/v1/grants', { target: 'app', mode: 'pause', durationSeconds: 300, reason: 'checkout 500s since deploy', ticket: 'INC-42', ...overrides });
  return { as, ask };
}

/** POST with `Transfer-Encoding: chunked` and no chunk but the last: an empty body whose length was not told. */
function chunkedEmptyPost(url: string, token: string): Promise<{ status: number; body: any }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'transfer-encoding': 'chunked' } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) }));
    });
    req.on('error', reject);
    req.end();
  });
}

async function attachWith(grant: { attachUrl: string; token: string }): Promise<number> {
  const cdp = await CdpClient.connect(grant.attachUrl, { authorization: `Bearer ${grant.token}` });
  try {
    return (await cdp.call('Runtime.evaluate', { expression: '6 * 7', returnByValue: true })).result.value;
  } finally {
    await cdp.close();
  }
}

describe('requireApproval in the policy file', () => {
  const problemsOf = (rule: Record<string, unknown>) => {
    const base = basePolicy('127.0.0.1:9');
    try {
      validateConfig({ ...base, targets: { app: { ...base.targets.app, access: [{ role: 'dev', ...rule }] } } }, tmpdir());
    } catch (err) {
      assert.ok(err instanceof LoupeError);
      return err.details!.problems as string[];
    }
    return [];
  };

  it('accepts a role (or roles) with defaults of one approval within an hour', () => {
    const base = basePolicy('127.0.0.1:9');
    const config = validateConfig(
      {
        ...base,
        targets: {
          app: {
            ...base.targets.app,
            access: [
              { role: 'dev', requireApproval: { approvers: 'owner' } },
              { role: 'dev', requireApproval: { approvers: ['owner', 'admin'], minApprovals: 3, expiresAfter: '15m' } },
            ],
          },
        },
      },
      tmpdir(),
    );
    assert.deepEqual(config.targets.app!.access[0]!.requireApproval, { approvers: ['owner'], minApprovals: 1, expiresAfterSeconds: 3600 });
    assert.deepEqual(config.targets.app!.access[1]!.requireApproval, { approvers: ['owner', 'admin'], minApprovals: 3, expiresAfterSeconds: 900 });
  });

  it('reports every problem with its path', () => {
    assert.deepEqual(problemsOf({ requireApproval: { approvers: 'sre', minApprovals: 0, expiresAfter: 'soon', quorum: 2 } }), [
      'targets.app.access[0].requireApproval.quorum: unknown key (expected one of: approvers, minApprovals, expiresAfter)',
      'targets.app.access[0].requireApproval.approvers: unknown role "sre" (defined roles: dev, owner, admin)',
      'targets.app.access[0].requireApproval.minApprovals: expected an integer from 1 to 10',
      'targets.app.access[0].requireApproval.expiresAfter: expected a duration like "30m"',
    ]);
    assert.deepEqual(problemsOf({ requireApproval: { approvers: ['owner', 'nobody'], minApprovals: 11 } }), [
      'targets.app.access[0].requireApproval.approvers[1]: unknown role "nobody" (defined roles: dev, owner, admin)',
      'targets.app.access[0].requireApproval.minApprovals: expected an integer from 1 to 10',
    ]);
    assert.deepEqual(problemsOf({ requireApproval: {} }), ['targets.app.access[0].requireApproval.approvers: required: the role whose holders may approve']);
    assert.deepEqual(problemsOf({ requireApproval: true }), ['targets.app.access[0].requireApproval: expected a mapping { approvers, minApprovals, expiresAfter }']);
  });
});

describe('access requests over HTTP (real broker, real target)', () => {
  let target: TargetProcess;
  let broker: TestBroker;
  const clock = movableClock();
  let stateDir: string;
  let auditKeys: JSONWebKeySet;
  let closed = false;

  before(async () => {
    target = await startTarget();
    stateDir = mkdtempSync(join(tmpdir(), 'loupe-approvals-'));
    broker = await startTestBroker(approvalPolicy(target.inspector), { stateDir, clock: clock.now });
    auditKeys = broker.broker.auditKeys;
  });
  after(async () => {
    if (!closed) await broker.close();
    await target.stop();
    rmSync(stateDir, { recursive: true, force: true });
  });

  let flowRequestId = '';
  let flowGrantId = '';

  it('two approvers, minApprovals 2: pending, listed for approvers, approved, collected, attached', async () => {
    const { as, ask } = client(broker);
    const created = await ask('dev', { durationSeconds: 3600 });
    assert.equal(created.status, 202, JSON.stringify(created.body));
    const request = created.body;
    assert.match(request.requestId, uuid);
    assert.equal(request.status, 'pending');
    assert.deepEqual(request.approvers, ['sre']);
    assert.equal(request.minApprovals, 2);
    assert.equal(Date.parse(request.expiresAt) - Date.parse(request.createdAt), 30 * 60_000, "decide within the rule's 30m");
    assert.equal(request.token, undefined, 'no grant token before approval');
    assert.match(request.message, /^targets\.app\.access\[0\] \(role dev\) requires 2 approvals by sre \(within 30m\); waiting for 2 more approvals by sre/);
    flowRequestId = request.requestId;
    const path = `/v1/requests/${request.requestId}`;

    // Approvers see it; the requester does not get it to decide, but may read it; others may not.
    for (const approver of ['sam', 'sue']) {
      const list = await as(approver, 'GET', '/v1/requests');
      assert.equal(list.status, 200);
      const mine = list.body.requests.find((r: any) => r.requestId === request.requestId);
      assert.ok(mine, `${approver} sees the request`);
      assert.deepEqual(
        { requester: mine.requester, target: mine.target, mode: mine.mode, reason: mine.reason, ticket: mine.ticket },
        { requester: { sub: 'dev', name: 'dev' }, target: 'app', mode: 'pause', reason: 'checkout 500s since deploy', ticket: 'INC-42' },
      );
    }
    for (const other of ['dev', 'dev2', 'olga']) assert.deepEqual((await as(other, 'GET', '/v1/requests')).body.requests, [], `${other} has nothing to decide`);
    assert.equal((await as('dev', 'GET', path)).status, 200);
    assert.equal((await as('olga', 'GET', path)).status, 200, 'an owner of the target may read it');
    const outsider = await as('dev2', 'GET', path);
    assert.equal(outsider.status, 403);
    assert.equal(outsider.body.error.code, 'forbidden');

    // Not collectable yet.
    const early = await as('dev', 'POST', `${path}/grant`);
    assert.equal(early.status, 409);
    assert.equal(early.body.error.code, 'request_not_approved');
    assert.match(early.body.error.message, /waiting for 2 more approvals by sre/);

    const first = await as('sam', 'POST', `${path}/approve`, { comment: 'looked at INC-42, fine' });
    assert.equal(first.status, 200, JSON.stringify(first.body));
    assert.equal(first.body.status, 'pending');
    assert.deepEqual(
      first.body.approvals.map((a: any) => [a.sub, a.comment]),
      [['sam', 'looked at INC-42, fine']],
    );

    // The same approver again does not count twice.
    const again = await as('sam', 'POST', `${path}/approve`);
    assert.equal(again.status, 409);
    assert.equal(again.body.error.code, 'request_not_pending');
    assert.match(again.body.error.message, /you already approved request .*; it needs 1 more approval\(s\) from other approvers/);
    assert.equal((await as('dev', 'GET', path)).body.approvals.length, 1);

    // Duration runs from collection: time passes between the request and the grant.
    clock.advance(5 * 60_000);
    // An empty body sent chunked (no length known ahead, no content type) is no comment, as an absent one is.
    const second = await chunkedEmptyPost(`${broker.url}${path}/approve`, await broker.token('sue', people.sue!));
    assert.equal(second.status, 200, JSON.stringify(second.body));
    assert.equal(second.body.status, 'approved');
    assert.deepEqual(
      second.body.approvals.map((a: any) => a.sub),
      ['sam', 'sue'],
    );
    assert.equal((await as('sam', 'GET', '/v1/requests')).body.requests.length, 0, "an approved request leaves the approvers' list");

    const stolen = await as('dev2', 'POST', `${path}/grant`);
    assert.equal(stolen.status, 403);
    assert.equal(stolen.body.error.code, 'forbidden');
    assert.match(stolen.body.error.message, /only dev, who requested access .*, may collect its grant/);

    const collected = await as('dev', 'POST', `${path}/grant`);
    assert.equal(collected.status, 201, JSON.stringify(collected.body));
    const grant = collected.body;
    assert.match(grant.grantId, uuid);
    assert.equal(grant.durationSeconds, 600, 'capped by the rule');
    assert.equal(grant.capped, true);
    assert.equal(grant.requestId, request.requestId);
    assert.deepEqual(
      grant.approvedBy.map((a: any) => a.sub),
      ['sam', 'sue'],
    );
    const expiresIn = Date.parse(grant.expiresAt) - clock.now();
    assert.ok(expiresIn > 595_000 && expiresIn <= 600_000, `the grant runs 600 s from collection (${expiresIn} ms left)`);
    const claims = decodeJwt(grant.token);
    assert.equal(claims.sub, 'dev');
    assert.equal(claims.request, request.requestId);
    assert.deepEqual(claims.approved_by, ['sam', 'sue']);
    flowGrantId = grant.grantId;

    assert.equal(await attachWith(grant), 42, 'the collected grant attaches to the real target');

    const twice = await as('dev', 'POST', `${path}/grant`);
    assert.equal(twice.status, 409);
    assert.match(twice.body.error.message, /already collected as grant /);
    const late = await as('sam', 'POST', `${path}/deny`, { comment: 'changed my mind' });
    assert.equal(late.status, 409);
    assert.equal(late.body.error.code, 'request_not_pending');
  });

  it('self-approval is refused, even for a requester who holds the approver role', async () => {
    const { as, ask } = client(broker);
    for (const [user, targetName, approver] of [
      ['dora', 'app', 'sam'],
      ['dev', 'peer', 'dev2'],
    ] as const) {
      const created = await ask(user, { target: targetName });
      assert.equal(created.status, 202);
      const path = `/v1/requests/${created.body.requestId}`;
      assert.ok(!(await as(user, 'GET', '/v1/requests')).body.requests.some((r: any) => r.requestId === created.body.requestId), 'not offered to its requester');
      for (const action of ['approve', 'deny']) {
        const self = await as(user, 'POST', `${path}/${action}`, { comment: 'it is me' });
        assert.equal(self.status, 403, `${user} ${action}`);
        assert.equal(self.body.error.code, 'self_approval');
        assert.match(self.body.error.message, new RegExp(`you requested access .* yourself: someone else holding (sre|dev) must ${action} it \\(two-person rule\\)`));
      }
      assert.equal((await as(user, 'GET', path)).body.approvals.length, 0);
      assert.equal((await as(approver, 'POST', `${path}/approve`)).status, 200, 'someone else may');
    }
  });

  it('approval by a non-approver is refused: other developers, owners and admins alike', async () => {
    const { as, ask } = client(broker);
    const created = await ask('dev');
    const path = `/v1/requests/${created.body.requestId}`;
    for (const user of ['dev2', 'olga', 'ada', 'eve']) {
      const res = await as(user, 'POST', `${path}/approve`);
      assert.equal(res.status, 403, user);
      assert.equal(res.body.error.code, 'not_approver');
      assert.match(res.body.error.message, /^deciding request .* needs the role sre \(yours: .*\)$/);
    }
    assert.equal((await as('dev', 'GET', path)).body.approvals.length, 0);
    const missing = await as('sam', 'POST', '/v1/requests/00000000-0000-4000-8000-000000000000/approve');
    assert.equal(missing.status, 404);
    assert.equal(missing.body.error.code, 'not_found');
  });

  it('deny needs a comment; the requester sees it and cannot collect', async () => {
    const { as, ask } = client(broker);
    const created = await ask('dev');
    const path = `/v1/requests/${created.body.requestId}`;
    for (const body of [undefined, {}, { comment: '   ' }]) {
      const res = await as('sam', 'POST', `${path}/deny`, body);
      assert.equal(res.status, 400, JSON.stringify(body));
      assert.equal(res.body.error.code, 'bad_request');
      assert.match(res.body.error.message, /comment: required when denying/);
    }
    // A comment may run over lines, but carries no escapes or bidi overrides into the requester's view and the report.
    for (const comment of ['no\u001b[2K', 'ok \u202eevorppa']) {
      const res = await as('sue', 'POST', `${path}/deny`, { comment });
      assert.equal(res.status, 400, JSON.stringify(comment));
      assert.match(res.body.error.message, /comment: contains control characters \(other than line breaks\) or bidirectional overrides/);
    }
    assert.equal((await as('sam', 'POST', `${path}/approve`)).status, 200);
    const denied = await as('sue', 'POST', `${path}/deny`, { comment: 'use the staging replica for this' });
    assert.equal(denied.status, 200);
    assert.equal(denied.body.status, 'denied');
    const seen = (await as('dev', 'GET', path)).body;
    assert.equal(seen.status, 'denied');
    assert.deepEqual({ sub: seen.denial.sub, comment: seen.denial.comment }, { sub: 'sue', comment: 'use the staging replica for this' });
    const collect = await as('dev', 'POST', `${path}/grant`);
    assert.equal(collect.status, 409);
    assert.equal(collect.body.error.code, 'request_not_approved');
    assert.match(collect.body.error.message, /denied by sue: use the staging replica for this/);
    const approve = await as('sam', 'POST', `${path}/approve`);
    assert.equal(approve.status, 409);
    assert.equal(approve.body.error.code, 'request_not_pending');
    assert.match(approve.body.error.message, /is denied, not pending/);
  });

  it('pending requests expire on the broker clock, and so do approved ones nobody collects', async () => {
    const { as, ask } = client(broker);
    const pending = (await ask('dev')).body;
    const approved = (await ask('dev')).body;
    await as('sam', 'POST', `/v1/requests/${approved.requestId}/approve`);
    clock.advance(20 * 60_000);
    await as('sue', 'POST', `/v1/requests/${approved.requestId}/approve`); // approved 20 min in: collect within 30 min of that
    clock.advance(10 * 60_000 + 1000);
    assert.equal((await as('dev', 'GET', `/v1/requests/${pending.requestId}`)).body.status, 'expired');
    assert.equal((await as('dev', 'GET', `/v1/requests/${approved.requestId}`)).body.status, 'approved', 'still within its collection window');
    const decide = await as('sam', 'POST', `/v1/requests/${pending.requestId}/approve`);
    assert.equal(decide.status, 409);
    assert.equal(decide.body.error.code, 'request_not_pending');
    assert.match(decide.body.error.message, /is expired, not pending: expired at .* without a decision/);
    clock.advance(20 * 60_000);
    const collect = await as('dev', 'POST', `/v1/requests/${approved.requestId}/grant`);
    assert.equal(collect.status, 409);
    assert.equal(collect.body.error.code, 'request_not_approved');
    assert.match(collect.body.error.message, /expired at .* with 2 of 2 approvals/);
  });

  it("the extension's client follows a request until approvers decide, and a cancelled wait withdraws nothing by itself", async () => {
    const dev = new BrokerApi(broker.url, await broker.token('dev', people.dev!));
    const sam = new BrokerApi(broker.url, await broker.token('sam', people.sam!));
    const sue = new BrokerApi(broker.url, await broker.token('sue', people.sue!));
    const answer = await dev.requestAccess({ target: 'app', mode: 'snapshot', durationSeconds: 120, reason: 'following a request from VS Code' });
    assert.ok('pending' in answer);
    const seen: string[] = [];
    const waiting = waitForDecision(dev, answer.pending.requestId, { intervalMs: 50, onUpdate: (r) => seen.push(`${r.status}:${r.approvals.length}`) });
    // Each approval once the client has reported the state before it, so every step is seen.
    await waitFor(() => seen.includes('pending:0'), { what: () => `the client to report the pending request (seen: ${seen.join(', ')})` });
    await sam.approveRequest(answer.pending.requestId, 'ok');
    await waitFor(() => seen.includes('pending:1'), { what: () => `the client to report the first approval (seen: ${seen.join(', ')})` });
    await sue.approveRequest(answer.pending.requestId);
    const final = await waiting;
    assert.equal(final.status, 'approved');
    assert.deepEqual(seen, ['pending:0', 'pending:1', 'approved:2']);
    assert.equal(outcomeText(final), 'access to app approved by sam, sue');
    const grant = await dev.collectGrant(final.requestId);
    assert.equal(grant.durationSeconds, 120);
    // The adapter (launch.json) cannot wait: its request is withdrawn and it says where to go instead.
    await assert.rejects(
      dev.requestGrant({ target: 'app', mode: 'pause', durationSeconds: 60, reason: 'the adapter path' }),
      (err: any) => err.code === 'approval_required' && /request .* was not kept \(it was withdrawn\); use "Loupe: Attach to Production…"/.test(err.message),
    );
    assert.ok(!(await sam.pendingRequests()).some((r) => r.reason === 'the adapter path'), 'approvers are not left a request nobody waits for');

    // Denied: the wait ends with the approver's comment. Cancelled: the wait rejects and the request can be withdrawn.
    const denied = await dev.requestAccess({ target: 'app', mode: 'pause', durationSeconds: 60, reason: 'to be denied' });
    assert.ok('pending' in denied);
    const waitDenied = waitForDecision(dev, denied.pending.requestId, { intervalMs: 50 });
    await sam.denyRequest(denied.pending.requestId, 'not during the sale');
    assert.equal(outcomeText(await waitDenied), 'access to app denied by sam: not during the sale');
    const cancelled = await dev.requestAccess({ target: 'app', mode: 'pause', durationSeconds: 60, reason: 'to be cancelled' });
    assert.ok('pending' in cancelled);
    const controller = new AbortController();
    const waitCancelled = waitForDecision(dev, cancelled.pending.requestId, { intervalMs: 50, signal: controller.signal });
    controller.abort(new Error('cancelled by the user'));
    await assert.rejects(waitCancelled, /cancelled by the user/);
    assert.equal((await dev.withdrawRequest(cancelled.pending.requestId)).status, 'withdrawn');
    assert.ok(!(await sam.pendingRequests()).some((r) => r.requestId === cancelled.pending.requestId));
    await assert.rejects(sam.approveRequest(cancelled.pending.requestId), (err: any) => err.status === 409 && err.code === 'request_not_pending');
  });

  it('pending requests and their approvals survive a broker restart', async () => {
    const { as, ask } = client(broker);
    const created = (await ask('dev', { mode: 'snapshot', reason: 'survives a restart' })).body;
    await as('sam', 'POST', `/v1/requests/${created.requestId}/approve`, { comment: 'before the restart' });
    await broker.close();

    broker = await startTestBroker(approvalPolicy(target.inspector), { stateDir, clock: clock.now });
    const after = client(broker);
    const seen = await after.as('dev', 'GET', `/v1/requests/${created.requestId}`);
    assert.equal(seen.status, 200);
    assert.equal(seen.body.status, 'pending');
    assert.deepEqual(
      seen.body.approvals.map((a: any) => [a.sub, a.comment]),
      [['sam', 'before the restart']],
    );
    assert.ok((await after.as('sue', 'GET', '/v1/requests')).body.requests.some((r: any) => r.requestId === created.requestId));
    const again = await after.as('sam', 'POST', `/v1/requests/${created.requestId}/approve`);
    assert.equal(again.status, 409, 'the approval from before the restart still counts for sam');
    assert.equal((await after.as('sue', 'POST', `/v1/requests/${created.requestId}/approve`)).body.status, 'approved');
    const grant = await after.as('dev', 'POST', `/v1/requests/${created.requestId}/grant`);
    assert.equal(grant.status, 201);
    assert.equal(await attachWith(grant.body), 42);
    // The flow's grant from before the restart still carries its approvers.
    assert.deepEqual(
      (await broker.broker.grants.get(flowGrantId))?.approvedBy?.map((a) => a.sub),
      ['sam', 'sue'],
    );
  });

  it('every step is an audit event with a stable code, the grant chains verify, and the report reads them', async () => {
    // The session report names the approvers of the grant it ran under.
    const { as } = client(broker);
    await broker.broker.audit.settle();
    const session = (await as('ada', 'GET', '/v1/sessions')).body.sessions.find((s: any) => s.grantId === flowGrantId);
    assert.ok(session, 'the session of the collected grant is recorded');
    const res = await fetch(`${broker.url}/v1/sessions/${session.sessionId}/report`, { headers: { authorization: `Bearer ${await broker.token('ada', people.ada!)}` } });
    assert.equal(res.status, 200);
    assert.match(await res.text(), /approved by sam, sue \(access request [0-9a-f-]{36}, from the broker&#39;s grant records\)/);
    await broker.close();
    closed = true;
    const store = broker.broker.audit.store;
    const prefixes = [...new Set((await store.list('grants/')).map((k) => k.replace(/[^/]+$/, '')))];
    assert.equal(prefixes.length, 2, 'one grant stream per broker run');
    const events: any[] = [];
    const reports: string[] = [];
    for (const prefix of prefixes) {
      const result = await verifyTranscript(await readTranscriptFromStore(store, prefix, false), auditKeys);
      assert.deepEqual(result.problems, [], prefix);
      assert.ok(result.ok);
      events.push(...result.events);
      reports.push(renderReport(result));
    }
    const flow = events.filter((e) => e.data.requestId === flowRequestId);
    assert.deepEqual(
      flow.map((e) => `${e.type} ${e.code}`),
      [
        'request.created L1010',
        'request.approved L1011',
        'request.decision_refused L1016',
        'request.approved L1011',
        'grant.issued L1001',
        'request.collected L1014',
        'request.decision_refused L1016',
      ],
    );
    assert.deepEqual(
      flow.map((e) => e.data.actor?.sub),
      ['dev', 'sam', 'sam', 'sue', 'dev', 'dev', 'sam'],
    );
    assert.equal(flow[2].data.code, 'request_not_pending');
    assert.deepEqual(
      flow[4].data.approvedBy.map((a: any) => a.sub),
      ['sam', 'sue'],
    );
    assert.equal(flow[5].data.grantId, flowGrantId);
    for (const type of ['request.created', 'request.approved', 'request.denied', 'request.expired', 'request.collected', 'request.withdrawn', 'request.decision_refused']) {
      assert.ok(
        events.some((e) => e.type === type),
        `${type} recorded`,
      );
      assert.equal(events.find((e) => e.type === type).code, eventCodes[type as keyof typeof eventCodes]);
    }
    const refusedCodes = new Set(events.filter((e) => e.type === 'request.decision_refused').map((e) => e.data.code));
    for (const code of ['self_approval', 'not_approver', 'request_not_pending']) assert.ok(refusedCodes.has(code), `refused decision ${code} recorded`);
    const denied = events.find((e) => e.type === 'request.denied');
    assert.equal(denied.data.comment, 'use the staging replica for this');

    const report = reports.join('\n');
    assert.match(report, /<h1>Grants and access requests<\/h1>/);
    assert.match(report, /Verified: \d+ records/);
    assert.match(report, /request [0-9a-f]{8}: dev asks for pause on app; needs 2 approval\(s\) by sre/);
    assert.match(report, /request [0-9a-f]{8} approved by sam \(1 of 2\)/);
    assert.match(report, /request [0-9a-f]{8} approved by sue \(2 of 2\): approved, the requester may collect the grant/);
    assert.match(report, /request [0-9a-f]{8} of dev denied by sue/);
    assert.match(report, /“use the staging replica for this”/);
    assert.match(report, /dora may not approve request [0-9a-f]{8}/);
    assert.match(report, /request [0-9a-f]{8} collected by dev as grant [0-9a-f]{8}/);
    assert.match(report, /approved by sam, sue \(request [0-9a-f]{8}\)/);
    assert.match(report, /expired \(approved, never collected\)/);
  });
});

describe('alert action require-approval', () => {
  let target: TargetProcess;
  let broker: TestBroker | undefined;
  let stateDir: string;
  before(async () => {
    target = await startTarget();
    stateDir = mkdtempSync(join(tmpdir(), 'loupe-hold-'));
  });
  afterEach(async () => {
    await broker?.close();
    broker = undefined;
  });
  after(async () => {
    await target.stop();
    rmSync(stateDir, { recursive: true, force: true });
  });

  const policy = () => approvalPolicy(target.inspector, { open: { alerts: { refusals: { count: 2, withinSeconds: 60, action: 'require-approval' } } } });

  it("turns the user's next grant on the target into an approval request by its owners, durably, until one is collected", async () => {
    broker = await startTestBroker(policy(), { stateDir });
    const { as, ask } = client(broker);
    const direct = await ask('dev', { target: 'open' });
    assert.equal(direct.status, 201, 'no approval needed before the alert');
    const cdp = await CdpClient.connect(direct.body.attachUrl, { authorization: `Bearer ${direct.body.token}` });
    await cdp.send('Profiler.start');
    await cdp.send('HeapProfiler.enable');
    const alert = await waitFor(async () => (await as('olga', 'GET', '/v1/alerts')).body.alerts.find((a: any) => a.rule === 'refusals'), {
      what: 'the refusals alert',
      timeoutMs: 5000,
      intervalMs: 50,
    });
    assert.equal(alert.action, 'require-approval');
    assert.equal(alert.user, 'dev');
    await cdp.close();

    const held = await ask('dev', { target: 'open' });
    assert.equal(held.status, 202, JSON.stringify(held.body));
    assert.equal(held.body.status, 'pending');
    assert.deepEqual(held.body.approvers, ['owner']);
    assert.equal(held.body.minApprovals, 1);
    assert.deepEqual({ alertId: held.body.cause.alertId, rule: held.body.cause.rule }, { alertId: alert.id, rule: 'refusals' });
    assert.match(held.body.message, /^an alert \(refusals: 2 refusals within 60 s \(threshold 2\)\) requires approval of your next grant on open; waiting for 1 more approval by owner/);
    assert.equal((await ask('dev2', { target: 'open' })).status, 201, 'other users are not held');
    assert.equal((await ask('dev', { target: 'peer' })).body.cause, undefined, 'other targets are not held by it');

    // Durable: after a restart the hold still stands, and the owner decides.
    await broker.close();
    broker = await startTestBroker(policy(), { stateDir });
    const after = client(broker);
    const stillHeld = await after.ask('dev', { target: 'open' });
    assert.equal(stillHeld.status, 202);
    assert.equal(stillHeld.body.cause.alertId, alert.id);
    assert.equal((await after.as('dev2', 'POST', `/v1/requests/${stillHeld.body.requestId}/approve`)).body.error.code, 'not_approver');
    const approved = await after.as('olga', 'POST', `/v1/requests/${stillHeld.body.requestId}/approve`, { comment: 'talked to dev, the refusals were a typo' });
    assert.equal(approved.body.status, 'approved');
    const grant = await after.as('dev', 'POST', `/v1/requests/${stillHeld.body.requestId}/grant`);
    assert.equal(grant.status, 201);
    assert.equal(await attachWith(grant.body), 42);

    // Collected once: the hold is released and the next grant is direct again.
    assert.equal((await after.ask('dev', { target: 'open' })).status, 201);
    await broker.close();
    const events: any[] = [];
    for (const key of await broker.broker.audit.store.list('grants/')) {
      if (!key.includes('/chunk-')) continue;
      for (const line of (await broker.broker.audit.store.get(key)).toString('utf8').split('\n')) if (line) events.push(JSON.parse(line));
    }
    const hold = events.find((e) => e.type === 'request.approval_required');
    assert.ok(hold, 'the hold is recorded');
    assert.deepEqual(
      { user: hold.data.user, target: hold.data.target, alertId: hold.data.alertId, approvers: hold.data.approvers },
      { user: 'dev', target: 'open', alertId: alert.id, approvers: ['owner'] },
    );
    assert.equal(hold.code, 'L1017');
    assert.ok(events.some((e) => e.type === 'request.collected' && e.data.releasesHold === alert.id));
    broker = undefined;
  });
});

describe('approvals under a policy made stricter after they were given', () => {
  let broker: TestBroker;
  const policy = approvalPolicy('127.0.0.1:9');
  before(async () => {
    broker = await startTestBroker(policy);
  });
  after(async () => broker.close());

  const reload = (next: Record<string, any>) => broker.broker.reload(parseConfigText(stringify({ ...next, stateDir: broker.stateDir }), broker.stateDir), 'test');

  it('a grant is collected only with the approvals the policy requires at collection: more of them, or by another role, refuse it', async () => {
    const { as, ask } = client(broker);
    // peer: one approval by another dev.
    const first = (await ask('dev', { target: 'peer' })).body;
    const second = (await ask('dev', { target: 'peer' })).body;
    for (const request of [first, second]) {
      const approved = await as('dev2', 'POST', `/v1/requests/${request.requestId}/approve`);
      assert.equal(approved.body.status, 'approved', JSON.stringify(approved.body));
    }
    // After an incident, peer's grants need two approvals by sre.
    const stricter = structuredClone(policy);
    stricter.targets.peer.access[0].requireApproval = { approvers: 'sre', minApprovals: 2 };
    await reload(stricter);
    const refused = await as('dev', 'POST', `/v1/requests/${first.requestId}/grant`);
    assert.equal(refused.status, 409, JSON.stringify(refused.body));
    assert.equal(refused.body.error.code, 'request_not_approved');
    assert.equal(
      refused.body.error.message,
      `request ${first.requestId} cannot be collected: targets.peer.access[0] (role dev) now requires 2 approvals by sre, and it has 1 by dev; ask for access again`,
    );
    const record = await broker.waitForRecord('grant.refused', (e) => e.data.requestId === first.requestId);
    assert.match(record.data.message, /now requires 2 approvals by sre/);
    // One approval still, but by the other role: refused the same way.
    const otherRole = structuredClone(policy);
    otherRole.targets.peer.access[0].requireApproval = { approvers: 'sre' };
    await reload(otherRole);
    assert.match((await as('dev', 'POST', `/v1/requests/${second.requestId}/grant`)).body.error.message, /now requires 1 approval by sre, and it has 1 by dev/);
    // Back to the policy it was approved under: collected.
    await reload(policy);
    const collected = await as('dev', 'POST', `/v1/requests/${second.requestId}/grant`);
    assert.equal(collected.status, 201, JSON.stringify(collected.body));
  });
});
