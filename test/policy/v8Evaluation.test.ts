// V8 evaluation as a privilege: the policy's `evaluation` on access rules, the grant request's `evaluation`, the
// access decision (first rule allowing the mode AND the evaluation), the grant through approvals, its JWT claim and
// answer, the records, the v8Evaluation alert (real broker, real target, real webhook receiver), the session
// listing, the report's banner, and what the extension shows (status bar text, launch.json attribute).
import { strict as assert } from 'node:assert';
import { once } from 'node:events';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, before, describe, it } from 'node:test';
import { decodeJwt } from 'jose';
import { stringify } from 'yaml';
import { listSessions } from '../../broker/audit/auditCli';
import { renderReport } from '../../broker/audit/report';
import { parseConfigText } from '../../broker/config/load';
import { listConfigFields } from '../../broker/config/schema';
import { LoupeError } from '../../broker/errors';
import { parseGrantRequest } from '../../broker/http/requests';
import { decideAccess, explainAccess, visibleTargets } from '../../broker/policy/access';
import { checkTranscript } from '../../common/transcript';
import { v8SessionNotice } from '../../extension/adapter/config';
import { statusTextFor } from '../../extension/ui/statusText';
import { CdpClient } from '../support/cdpClient';
import { startTarget, type TargetProcess } from '../support/target';
import { alertRulesOff, basePolicy, startTestBroker, type TestBroker } from '../support/testBroker';
import { waitFor } from '../support/wait';

const root = join(__dirname, '..', '..');

/** dev: Loupe expressions only; owner: a plain rule, and a second one allowing v8 with approval by sre; oncall: v8 only. */
function v8Policy(inspector: string, extra: Record<string, any> = {}): Record<string, any> {
  const base = basePolicy(inspector);
  return {
    ...base,
    roles: { ...base.roles, sre: { groups: ['sres'] }, oncall: { groups: ['oncall'] } },
    auditors: ['admin'],
    alerting: {
      rules: alertRulesOff,
      ...extra.alerting,
    },
    targets: {
      app: {
        ...base.targets.app,
        access: [
          { role: 'dev', modes: ['pause', 'snapshot'], maxDuration: '10m' },
          { role: 'owner', modes: ['pause'], maxDuration: '10m' },
          { role: 'owner', modes: ['pause'], evaluation: ['loupe', 'v8'], maxDuration: '10m', requireApproval: { approvers: 'sre' } },
          { role: 'oncall', modes: ['pause'], evaluation: ['v8'], maxDuration: '5m' },
        ],
        ...extra.app,
      },
    },
  };
}

const identity = (groups: string[]) => ({ sub: 'u', name: 'u', groups, issuer: 'test' });

describe('evaluation in the policy and the access decision', () => {
  const config = parseConfigText(stringify(v8Policy('127.0.0.1:9')), tmpdir());

  it('a rule defaults to Loupe expressions; the schema describes the privilege and lists the field', () => {
    const rules = config.targets.app!.access;
    assert.deepEqual(
      rules.map((r) => r.evaluation),
      [['loupe'], ['loupe'], ['loupe', 'v8'], ['v8']],
    );
    const field = listConfigFields().find((f) => f.path === 'targets.<name>.access[].evaluation');
    assert.ok(field, 'listed in the config reference');
    assert.deepEqual(field.default, ['loupe']);
    assert.match(field.description, /runs app functions and getters/);
    assert.match(field.description, /best-effort/);
    const schema = JSON.parse(readFileSync(join(root, 'loupe.schema.json'), 'utf8'));
    const access = schema.properties.targets.additionalProperties.properties.access.items.properties;
    assert.deepEqual(access.evaluation.default, ['loupe']);
  });

  it('a bad evaluation list is refused with its path', () => {
    const problems = (evaluation: unknown) => {
      const policy = v8Policy('127.0.0.1:9');
      policy.targets.app.access = [{ role: 'dev', evaluation }];
      try {
        parseConfigText(stringify(policy), tmpdir());
      } catch (err) {
        assert.ok(err instanceof LoupeError);
        return (err.details?.problems as string[]).join('\n');
      }
      assert.fail('accepted');
    };
    assert.match(problems(['v9']), /targets\.app\.access\[0\]\.evaluation\[0\]: expected one of: loupe, v8/);
    assert.match(problems([]), /targets\.app\.access\[0\]\.evaluation: expected at least one of loupe, v8/);
    assert.match(problems('v8'), /targets\.app\.access\[0\]\.evaluation/);
  });

  const table: [string, string[], 'loupe' | 'v8' | undefined, string, boolean | 'approval'][] = [
    ['dev, Loupe expressions (default)', ['devs'], undefined, 'targets.app.access[0] (role dev)', true],
    ['dev, loupe asked explicitly', ['devs'], 'loupe', 'targets.app.access[0] (role dev)', true],
    ['dev, v8: no rule of theirs allows it', ['devs'], 'v8', 'targets.app.access[0] (role dev)', false],
    ['owner, Loupe expressions: the plain rule, no approval', ['owners'], undefined, 'targets.app.access[1] (role owner)', true],
    ['owner, v8: the second rule, with approval', ['owners'], 'v8', 'targets.app.access[2] (role owner)', 'approval'],
    ['oncall, v8', ['oncall'], 'v8', 'targets.app.access[3] (role oncall)', true],
    ['oncall, Loupe expressions: their rule allows v8 only', ['oncall'], undefined, 'targets.app.access[3] (role oncall)', false],
  ];
  for (const [name, groups, evaluation, rule, outcome] of table) {
    it(name, () => {
      const decision = decideAccess(config, identity(groups), { target: 'app', mode: 'pause', durationSeconds: 60, reason: 'r', ...(evaluation ? { evaluation } : {}) });
      assert.equal(decision.rule, rule);
      assert.equal(decision.allowed, outcome !== false);
      if (decision.allowed) assert.equal(decision.requireApproval !== undefined, outcome === 'approval');
      else if (evaluation === 'v8') assert.match(decision.message, /the rule does not allow V8 evaluation/);
      else assert.equal(decision.message, 'evaluation "loupe" is not allowed (allowed: v8)');
    });
  }

  it('the mode still has to match too; explain names each rule; targets show what may be asked', () => {
    const snapshot = decideAccess(config, identity(['owners']), { target: 'app', mode: 'snapshot', durationSeconds: 60, reason: 'r', evaluation: 'v8' });
    assert.equal(snapshot.allowed, false);
    const { trace } = explainAccess(config, identity(['owners']), { target: 'app', mode: 'pause', durationSeconds: 60, reason: 'r', evaluation: 'v8' });
    assert.deepEqual(
      trace.filter((t) => t.applies).map((t) => [t.rule, t.outcome]),
      [
        ['targets.app.access[1] (role owner)', 'refuses'],
        ['targets.app.access[2] (role owner)', 'allows'],
      ],
    );
    assert.deepEqual(visibleTargets(config, identity(['devs']))[0]!.evaluation, ['loupe']);
    assert.deepEqual(visibleTargets(config, identity(['owners']))[0]!.evaluation, ['loupe', 'v8']);
  });
});

describe('loupe policy explain --evaluation', () => {
  const run = (args: string[]) =>
    new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
      const proc = spawn(process.execPath, ['--import', 'tsx', join(root, 'broker', 'cli.ts'), ...args], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      proc.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
      proc.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
      proc.on('exit', (code) => resolve({ code, stdout, stderr }));
    });

  it('explains a request for V8 evaluation, and refuses a value it does not know', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'loupe-v8-'));
    const file = join(dir, 'policy.yaml');
    writeFileSync(file, stringify({ ...v8Policy('127.0.0.1:9'), stateDir: dir }));
    const refused = await run(['policy', 'explain', file, '--user', 'd', '--groups', 'devs', '--target', 'app', '--mode', 'pause', '--evaluation', 'v8']);
    assert.equal(refused.code, 3, refused.stderr);
    assert.match(refused.stdout, /asking for pause with V8 evaluation on app/);
    assert.match(refused.stdout, /REFUSED by targets\.app\.access\[0\] \(role dev\): the rule does not allow V8 evaluation/);
    const allowed = await run(['policy', 'explain', file, '--user', 'o', '--groups', 'owners', '--target', 'app', '--mode', 'pause', '--evaluation', 'v8']);
    assert.equal(allowed.code, 0, allowed.stderr);
    assert.match(allowed.stdout, /ALLOWED by targets\.app\.access\[2\] \(role owner\)/);
    const bad = await run(['policy', 'explain', file, '--user', 'o', '--target', 'app', '--evaluation', 'js']);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /--evaluation: expected one of loupe, v8, got "js"/);
    rmSync(dir, { recursive: true, force: true });
  });
});

describe('the grant request body', () => {
  const body = { target: 'app', mode: 'pause', durationSeconds: 60, reason: 'why' };
  it('evaluation is optional: v8 is kept, loupe is the default and left out', () => {
    assert.equal(parseGrantRequest({ ...body, evaluation: 'v8' }).evaluation, 'v8');
    assert.equal('evaluation' in parseGrantRequest({ ...body, evaluation: 'loupe' }), false);
    assert.equal('evaluation' in parseGrantRequest(body), false);
  });
  it('anything else is refused naming the field', () => {
    for (const evaluation of ['V8', 'eval', 1, null]) {
      assert.throws(
        () => parseGrantRequest({ ...body, evaluation }),
        (err: LoupeError) => err.code === 'bad_request' && /evaluation: expected one of loupe, v8/.test(err.message),
      );
    }
  });
});

/** A real HTTP receiver on loopback taking the alert webhooks. */
async function startReceiver(): Promise<{ url: string; alerts: any[]; server: Server }> {
  const alerts: any[] = [];
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      alerts.push(JSON.parse(body));
      res.end();
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`, alerts, server };
}

describe('a V8 grant through a real broker (approvals, claim, records, alerts, listing, report)', () => {
  let target: TargetProcess;
  let broker: TestBroker | undefined;
  let receiver: Awaited<ReturnType<typeof startReceiver>>;
  before(async () => {
    target = await startTarget();
    receiver = await startReceiver();
  });
  afterEach(async () => {
    await broker?.close();
    broker = undefined;
  });
  after(async () => {
    receiver.server.close();
    await target.stop();
  });

  const as = async (user: string, groups: string[], method: string, path: string, body?: unknown) => broker!.api(method, path, await broker!.token(user, groups), body);

  it('a refused request says the rule does not allow V8 evaluation, and is recorded with what was asked', async () => {
    broker = await startTestBroker(v8Policy(target.inspector));
    const res = await as('dev', ['devs'], 'POST', '/v1/grants', { target: 'app', mode: 'pause', durationSeconds: 60, reason: 'need getters', evaluation: 'v8' });
    assert.equal(res.status, 403);
    assert.match(res.body.error.message, /^grant refused: the rule does not allow V8 evaluation/);
    const refused = await broker.waitForRecord('grant.refused');
    assert.equal(refused.data.evaluation, 'v8');
    const targets = await as('dev', ['devs'], 'GET', '/v1/targets');
    assert.deepEqual(targets.body.targets[0].evaluation, ['loupe']);
  });

  it('owner asks for v8: an access request an sre approves; the grant carries it in its answer, JWT, records and session; every evaluation alerts', async () => {
    broker = await startTestBroker(v8Policy(target.inspector, { alerting: { webhooks: [{ url: receiver.url, maxAttempts: 2 }] } }));
    const before = receiver.alerts.length;
    // The plain rule still serves Loupe expressions without approval.
    const plain = await as('olga', ['owners'], 'POST', '/v1/grants', { target: 'app', mode: 'pause', durationSeconds: 60, reason: 'look' });
    assert.equal(plain.status, 201);
    assert.equal(plain.body.evaluation, 'loupe');
    assert.equal(decodeJwt(plain.body.token).evaluation, undefined, 'no claim without the privilege');

    const asked = await as('olga', ['owners'], 'POST', '/v1/grants', { target: 'app', mode: 'pause', durationSeconds: 60, reason: 'call the cache getter', evaluation: 'v8' });
    assert.equal(asked.status, 202);
    assert.equal(asked.body.evaluation, 'v8');
    assert.equal(asked.body.rule, 'targets.app.access[2] (role owner)');
    assert.match(asked.body.message, /It asks for V8 evaluation: app code could run in the target, and redaction is best-effort$/);
    const pending = await as('sam', ['sres'], 'GET', '/v1/requests');
    assert.equal(pending.body.requests[0].evaluation, 'v8');
    const created = await broker.waitForRecord('request.created');
    assert.equal(created.data.evaluation, 'v8');
    assert.equal((await as('sam', ['sres'], 'POST', `/v1/requests/${asked.body.requestId}/approve`, {})).body.status, 'approved');
    const collected = await as('olga', ['owners'], 'POST', `/v1/requests/${asked.body.requestId}/grant`);
    assert.equal(collected.status, 201);
    const grant = collected.body;
    assert.equal(grant.evaluation, 'v8');
    assert.equal(decodeJwt(grant.token).evaluation, 'v8');
    const issued = await broker.waitForRecord('grant.issued', (e) => e.data.grantId === grant.grantId);
    assert.equal(issued.data.evaluation, 'v8');
    assert.deepEqual(
      issued.data.approvedBy.map((a: any) => a.sub),
      ['sam'],
    );

    // The issue alone is alert-worthy: once, for the grant, with user and target.
    const issuedAlert = await waitFor(() => receiver.alerts.slice(before).find((a) => a.rule === 'v8Evaluation' && a.message.includes(grant.grantId)), { what: 'the v8Evaluation alert of the grant' });
    assert.equal(issuedAlert.user, 'olga');
    assert.equal(issuedAlert.target, 'app');
    assert.match(issuedAlert.message, /with V8 evaluation issued to olga on app .*approved by sam/);

    const cdp = await CdpClient.connect(grant.attachUrl, { authorization: `Bearer ${grant.token}` });
    const started = await broker.waitForRecord('session.started', (e) => e.grant === grant.grantId);
    assert.equal(started.data.evaluation, 'v8');
    for (const expression of ['6 * 7', '6 * 7', 'typeof process']) await cdp.call('Runtime.evaluate', { expression, returnByValue: true });
    const evaluations = await waitFor(
      () => {
        const found = receiver.alerts.slice(before).filter((a) => a.rule === 'v8Evaluation' && a.session === started.stream);
        return found.length >= 3 ? found : undefined;
      },
      { what: 'three v8Evaluation alerts, one per evaluation' },
    );
    assert.deepEqual(
      evaluations.map((a) => a.message.split('): ')[1]),
      ['6 * 7', '6 * 7', 'typeof process'],
    );
    assert.match(evaluations[0].message, new RegExp(`^V8 evaluation by olga on app \\(grant ${grant.grantId}; app code may run\\)`));
    assert.equal(evaluations[0].evidence[0].type, 'cdp.evaluate');
    await cdp.close();
    await broker.waitForRecord('session.ended', (e) => e.stream === started.stream);
    assert.equal(receiver.alerts.slice(before).filter((a) => a.rule === 'v8Evaluation').length, 4, 'the grant once, each evaluation once');

    // A session under the plain grant raises none.
    const plainCdp = await CdpClient.connect(plain.body.attachUrl, { authorization: `Bearer ${plain.body.token}` });
    const plainStarted = await broker.waitForRecord('session.started', (e) => e.grant === plain.body.grantId);
    assert.equal(plainStarted.data.evaluation, undefined);
    await plainCdp.call('Runtime.evaluate', { expression: '1 + 1', returnByValue: true });
    await plainCdp.close();
    await broker.waitForRecord('session.ended', (e) => e.stream === plainStarted.stream);
    assert.equal(receiver.alerts.filter((a) => a.session === plainStarted.stream && a.rule === 'v8Evaluation').length, 0);

    // The listing marks it (loupe audit list reads this), the report carries the banner, the transcript a note.
    const listed = await waitFor(
      async () => {
        const sessions = (await as('ada', ['admins'], 'GET', '/v1/sessions')).body.sessions as any[];
        return sessions.length >= 2 ? sessions : undefined;
      },
      { what: 'both sessions listed' },
    );
    assert.equal(listed.find((s) => s.sessionId === started.stream).evaluation, 'v8');
    assert.equal('evaluation' in listed.find((s) => s.sessionId === plainStarted.stream), false);
    const table = (await listSessions({ broker: broker.url, token: await broker.token('ada', ['admins']) }, {})).split('\n');
    assert.match(
      table.find((l) => l.startsWith(started.stream))!,
      /  pause \+ V8 eval  /,
    );
    assert.doesNotMatch(
      table.find((l) => l.startsWith(plainStarted.stream))!,
      /V8/,
    );
    const events = (await broker.sessionEvents()).filter((e) => e.stream === started.stream);
    const result = { ok: true, problems: [], notes: [], events, kids: [], sealedEnd: true };
    const html = renderReport(result);
    assert.match(html, /<div class="v8">V8 evaluation: app code could run; redaction best-effort\./);
    assert.match(html, /session started with V8 evaluation \(privileged\)/);
    assert.match(html, /evaluate \(V8\)/);
    const plainHtml = renderReport({ ...result, events: (await broker.sessionEvents()).filter((e) => e.stream === plainStarted.stream) });
    assert.doesNotMatch(plainHtml, /V8 evaluation/);
    const checked = await checkTranscript({ stream: started.stream, chunks: [{ name: 'x', lines: events.map((e) => JSON.stringify(e)) }] }, async () => ({}));
    assert.ok(checked.notes.some((n) => n.startsWith('V8 evaluation: app code could run; redaction best-effort')));
  });

  it('v8Evaluation can be switched off per target, like the other rules', async () => {
    broker = await startTestBroker(v8Policy(target.inspector, { alerting: { webhooks: [{ url: receiver.url, maxAttempts: 2 }] }, app: { alerts: { v8Evaluation: false } } }));
    const grant = (await as('oscar', ['oncall'], 'POST', '/v1/grants', { target: 'app', mode: 'pause', durationSeconds: 60, reason: 'getter', evaluation: 'v8' })).body;
    assert.equal(grant.evaluation, 'v8');
    const cdp = await CdpClient.connect(grant.attachUrl, { authorization: `Bearer ${grant.token}` });
    await cdp.call('Runtime.evaluate', { expression: '2 + 2', returnByValue: true });
    await cdp.close();
    await broker.waitForRecord('session.ended');
    assert.ok(
      broker.records.some((e) => e.type === 'cdp.evaluate'),
      'the evaluation was recorded',
    );
    const alerts = (await as('olga', ['owners'], 'GET', '/v1/alerts')).body.alerts as any[];
    assert.deepEqual(
      alerts.filter((a) => a.rule === 'v8Evaluation'),
      [],
    );
    assert.equal(receiver.alerts.filter((a) => a.user === 'oscar').length, 0);
  });
});

describe('what the extension shows', () => {
  const grant = { grantId: 'g', target: 'checkout', mode: 'pause', expiresAt: new Date(Date.parse('2026-11-29T12:00:00Z') + 754_000).toISOString() };
  const now = Date.parse('2026-11-29T12:00:00Z');

  it('the status bar marks a session with V8 evaluation, text and tooltip', () => {
    const v8 = statusTextFor({ ...grant, evaluation: 'v8' }, now);
    assert.equal(v8.text, '$(shield) Loupe checkout 12:34 · V8 eval');
    assert.match(v8.tooltip, /V8 evaluation \(privileged\): expressions may run app code, and redaction is best-effort/);
    const plain = statusTextFor(grant, now);
    assert.equal(plain.text, '$(shield) Loupe checkout 12:34');
    assert.doesNotMatch(plain.tooltip, /V8/);
    const other = statusTextFor(grant, now, [grant, { ...grant, grantId: 'h', target: 'billing', evaluation: 'v8' }]);
    assert.equal(other.text, '$(shield) Loupe checkout 12:34 · V8 eval (other session)');
    assert.match(other.tooltip, /Also live with V8 evaluation \(privileged\): billing/);
  });

  it('the Debug Console line says it plainly', () => {
    assert.equal(v8SessionNotice, 'Loupe: this session may run app code in V8 (privileged). Redaction is best-effort.');
  });
});
