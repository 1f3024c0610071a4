import { strict as assert } from 'node:assert';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { stringify } from 'yaml';
import { decodeJwt } from 'jose';
import { parseConfigText } from '../../broker/config/load';
import { LoupeError } from '../../broker/errors';
import { mintDevToken } from '../../broker/identity/devIssuer';
import { startTarget, type TargetProcess } from '../support/target';
import { basePolicy, startTestBroker, type TestBroker } from '../support/testBroker';
import { brokerUrl } from '../support/brokerProcess';
import { waitFor } from '../support/wait';

const root = join(__dirname, '..', '..');
const cli = join(root, 'dist', 'cli.js');

function runCli(args: string[], cwd: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const proc = spawn(process.execPath, [cli, ...args], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    proc.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
    proc.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    proc.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

const problemsOf = (policy: Record<string, any>): string[] => {
  try {
    parseConfigText(stringify(policy), tmpdir());
  } catch (err) {
    assert.ok(err instanceof LoupeError);
    return err.details?.problems as string[];
  }
  assert.fail('the policy was accepted');
};

/** The app target open to dev (pause, snapshot) and ops (pause), 10 minutes each: the policy a reload then narrows. */
function devAndOpsPolicy(inspector: string): Record<string, any> {
  const policy = basePolicy(inspector, { roles: { dev: { groups: ['devs'] }, ops: { groups: ['ops'] }, owner: { groups: ['owners'] }, admin: { groups: ['admins'] } } });
  policy.targets.app.access = [
    { role: 'dev', modes: ['pause', 'snapshot'], maxDuration: '10m' },
    { role: 'ops', modes: ['pause'], maxDuration: '10m' },
  ];
  return policy;
}
describe('policy rules through a real broker', () => {
  let now = Date.parse('2026-11-27T06:59:00Z'); // Friday 07:59 in Berlin (CET, UTC+1)
  let broker: TestBroker;
  before(async () => {
    const policy = basePolicy('127.0.0.1:9', {
      roles: { dev: { groups: ['devs'] }, oncall: { groups: ['oncall'] }, owner: { groups: ['owners'] }, admin: { groups: ['admins'] } },
    });
    policy.targets.app.access = [
      { role: 'dev', modes: ['snapshot'], maxDuration: '15m', hours: 'Mon-Fri 08:00-19:00 Europe/Berlin', requireTicket: '^PAY-\\d+$' },
      { role: 'oncall', modes: ['pause', 'snapshot'], maxDuration: '1h', hours: 'Mon-Sun 22:00-06:00 America/New_York' },
    ];
    broker = await startTestBroker(policy, { clock: () => now });
  });
  after(async () => broker.close());

  // Tokens are minted at the broker's frozen time, as an IdP in step with it would.
  const ask = async (groups: string[], body: Record<string, unknown>) =>
    broker.api('POST', '/v1/grants', await mintDevToken(broker.config, { user: 'u1', groups, now }), {
      target: 'app',
      mode: 'snapshot',
      durationSeconds: 600,
      reason: 'checking the totals',
      ticket: 'PAY-1',
      ...body,
    });

  it('hours across a time-zone boundary, with a frozen clock', async () => {
    now = Date.parse('2026-11-27T06:59:00Z');
    let res = await ask(['devs'], {});
    assert.equal(res.status, 403);
    assert.equal(res.body.error.message, "grant refused: outside the rule's hours (Mon-Fri 08:00-19:00 Europe/Berlin; it is Fri 07:59 there)");
    assert.equal(res.body.error.rule, 'targets.app.access[0] (role dev)');
    now = Date.parse('2026-11-27T07:00:00Z'); // 08:00 in Berlin, still 07:00 in UTC
    assert.equal((await ask(['devs'], {})).status, 201);
    now = Date.parse('2026-11-27T17:59:00Z');
    assert.equal((await ask(['devs'], {})).status, 201);
    now = Date.parse('2026-11-27T18:00:00Z'); // 19:00 in Berlin: the range ends
    assert.equal((await ask(['devs'], {})).status, 403);
    now = Date.parse('2026-11-28T10:00:00Z'); // Saturday
    assert.match((await ask(['devs'], {})).body.error.message, /it is Sat 11:00 there/);
    // Summer time: 08:00 CEST is 06:00 UTC.
    now = Date.parse('2026-07-03T06:00:00Z');
    assert.equal((await ask(['devs'], {})).status, 201);
    now = Date.parse('2026-07-03T05:59:00Z');
    assert.equal((await ask(['devs'], {})).status, 403);
    // A range past midnight in New York: Sunday 23:30 there is Monday 04:30 UTC; 06:00 there ends it.
    now = Date.parse('2026-11-30T04:30:00Z');
    assert.equal((await ask(['oncall'], { mode: 'pause' })).status, 201);
    now = Date.parse('2026-11-30T11:00:00Z'); // 06:00 in New York
    assert.match((await ask(['oncall'], { mode: 'pause' })).body.error.message, /it is Mon 06:00 there/);
  });

  it('a grant issued near the end of the hours ends with them, not its requested duration later', async () => {
    now = Date.parse('2026-11-27T17:50:00Z'); // Friday 18:50 in Berlin: the dev rule's hours end in 10 minutes
    const late = await ask(['devs'], { durationSeconds: 900 });
    assert.equal(late.status, 201, JSON.stringify(late.body));
    assert.equal(late.body.expiresAt, '2026-11-27T18:00:00.000Z', 'ends at 19:00 Berlin, where the hours do');
    assert.equal(late.body.durationSeconds, 600);
    assert.equal(late.body.capped, true);
    const issued = await broker.waitForRecord('grant.issued', (e) => e.data.grantId === late.body.grantId);
    assert.equal(issued.data.expiresAt, '2026-11-27T18:00:00.000Z');
    // Mid-minute: the grant still ends on the hour, to the second.
    now = Date.parse('2026-11-27T17:59:30Z');
    assert.equal((await ask(['devs'], { durationSeconds: 900 })).body.expiresAt, '2026-11-27T18:00:00.000Z');
    // Less than a second left: refused, not a grant that ends as it is issued.
    now = Date.parse('2026-11-27T17:59:59.500Z');
    const edge = await ask(['devs'], { durationSeconds: 900 });
    assert.equal(edge.status, 403, JSON.stringify(edge.body));
    assert.match(edge.body.error.message, /outside the rule's hours \(Mon-Fri 08:00-19:00 Europe\/Berlin; it is Fri 18:59 there\)/);
    // A range past midnight ends on the next morning: 05:50 in New York (10:50 UTC) leaves 10 minutes of 06:00.
    now = Date.parse('2026-11-30T10:50:00Z');
    const night = await ask(['oncall'], { mode: 'pause', durationSeconds: 3600 });
    assert.equal(night.status, 201, JSON.stringify(night.body));
    assert.equal(night.body.expiresAt, '2026-11-30T11:00:00.000Z');
    // Well inside the hours, only maxDuration caps.
    now = Date.parse('2026-11-27T10:00:00Z');
    assert.equal(Date.parse((await ask(['devs'], { durationSeconds: 600 })).body.expiresAt) - now, 600_000);
  });

  it('every access rule kind allows and refuses, naming the rule', async () => {
    now = Date.parse('2026-11-27T10:00:00Z');
    const mode = await ask(['devs'], { mode: 'pause' });
    assert.equal(mode.status, 403);
    assert.equal(mode.body.error.message, 'grant refused: mode "pause" is not allowed (allowed: snapshot)');
    const noTicket = await ask(['devs'], { ticket: undefined });
    assert.equal(noTicket.body.error.message, 'grant refused: a ticket matching ^PAY-\\d+$ is required');
    const badTicket = await ask(['devs'], { ticket: 'JIRA-1' });
    assert.equal(badTicket.body.error.message, 'grant refused: ticket "JIRA-1" does not match ^PAY-\\d+$');
    const capped = await ask(['devs'], { durationSeconds: 7200 });
    assert.equal(capped.status, 201);
    assert.equal(Date.parse(capped.body.expiresAt) - now, 15 * 60_000, 'capped to maxDuration');
    const stranger = await ask(['interns'], {});
    assert.equal(stranger.status, 403);
    assert.equal(stranger.body.error.message, 'grant refused: none of your roles (none) may attach to app');
    const unknown = await ask(['devs'], { target: 'nope' });
    assert.equal(unknown.status, 403);
    assert.match(unknown.body.error.message, /no target named "nope"/);
    const noReason = await ask(['devs'], { reason: '  ' });
    assert.equal(noReason.status, 400);
  });
});

describe('policy check and explain (the CLI)', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'loupe-policy-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('reports every new-field problem with its path', () => {
    const policy = basePolicy('127.0.0.1:9229');
    policy.targets.app.access[0].hours = 'Mon-Fri 08:00-19:00 Mars/Olympus';
    policy.targets.app.access.push({ role: 'dev', hours: 'weekdays 9 to 5' });
    policy.targets.app.evaluation = { allow: 'sometimes', denyIdentifiers: ['process.env', 'a-b'], maxResultBytes: 10, extra: 1 };
    policy.targets.app.redact = { names: ['---'], patterns: [{ name: 'broken', regex: '(' }, { name: 'everything', regex: '.*' }, 'nope'], default: true };
    const problems = problemsOf(policy);
    const expected = [
      'targets.app.access[0].hours: unknown time zone "Mars/Olympus" (use an IANA name like Europe/Berlin or UTC)',
      'targets.app.access[1].hours: expected hours like "Mon-Fri 08:00-19:00 Europe/Berlin", got "weekdays 9 to 5"',
      'targets.app.evaluation.extra: unknown key (expected one of: allow, denyIdentifiers, maxResultBytes)',
      'targets.app.evaluation.allow: expected true or false',
      'targets.app.evaluation.denyIdentifiers[1]: expected an identifier or a dotted path like "process.env", got "a-b"',
      'targets.app.redact.default: unknown key (expected one of: names, patterns, defaults, source, exceptionMessages)',
      'targets.app.redact.names[0]: "---" has no letters or digits',
      'targets.app.redact.patterns[2]: expected a mapping { name, regex }',
    ];
    for (const p of expected) assert.ok(problems.includes(p), `missing "${p}" in:\n  ${problems.join('\n  ')}`);
    assert.ok(problems.some((p) => /^targets\.app\.evaluation\.maxResultBytes: /.test(p)));
    assert.ok(problems.some((p) => /^targets\.app\.redact\.patterns\[0\]\.regex: invalid regular expression/.test(p)));
    assert.ok(problems.includes('targets.app.redact.patterns[1].regex: matches the empty string, which would redact everything'));
  });

  it('explain prints the decision and what every rule said, and exits 3 when refused', async () => {
    const policy = basePolicy('127.0.0.1:9229');
    policy.targets.app.access = [
      { role: 'dev', modes: ['snapshot'], maxDuration: '20m', hours: 'Mon-Fri 08:00-19:00 Europe/Berlin' },
      { role: 'owner', modes: ['pause', 'snapshot'], maxDuration: '2h' },
    ];
    const file = join(dir, 'explain.yaml');
    writeFileSync(file, stringify({ ...policy, stateDir: join(dir, 'state') }));
    const refused = await runCli(['policy', 'explain', '--config', file, '--user', 'alice', '--groups', 'devs', '--target', 'app', '--mode', 'snapshot', '--at', '2026-11-28T10:00:00Z'], dir);
    assert.equal(refused.code, 3, refused.stderr);
    assert.equal(
      refused.stdout,
      [
        'alice (groups: devs; roles: dev) asking for snapshot on app at 2026-11-28T10:00:00.000Z',
        "REFUSED by targets.app.access[0] (role dev): outside the rule's hours (Mon-Fri 08:00-19:00 Europe/Berlin; it is Sat 11:00 there)",
        "  targets.app.access[0] (role dev): refuses (outside the rule's hours (Mon-Fri 08:00-19:00 Europe/Berlin; it is Sat 11:00 there))",
        '  targets.app.access[1] (role owner): not your role',
        '',
      ].join('\n'),
    );
    const allowed = await runCli(
      ['policy', 'explain', file, '--user', 'carol', '--groups', 'devs,owners', '--target', 'app', '--mode', 'pause', '--at', '2026-11-27T10:00:00+01:00', '--duration', '3h'],
      dir,
    );
    assert.equal(allowed.code, 0, allowed.stderr);
    assert.match(allowed.stdout, /^ALLOWED by targets\.app\.access\[1\] \(role owner\): up to 7200 s \(capped\)$/m);
    assert.match(allowed.stdout, /targets\.app\.access\[0\] \(role dev\): refuses \(mode "pause" is not allowed \(allowed: snapshot\)\)/);
    const bad = await runCli(['policy', 'explain', file, '--user', 'x', '--target', 'app', '--at', 'yesterday'], dir);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--at: expected a time like/);
  });
});

describe('policy reload', () => {
  let target: TargetProcess;
  before(async () => {
    target = await startTarget();
  });
  after(async () => target.stop());

  it('live sessions continue under the stricter rules; new grants follow the new policy; a session no longer allowed ends', async () => {
    const policy = devAndOpsPolicy(target.inspector);
    const broker = await startTestBroker(policy);
    try {
      const { client } = await broker.attach();
      const opsGrant = await broker.grant('olga', ['ops']);
      const { CdpClient } = await import('../support/cdpClient');
      const ops = await CdpClient.connect(opsGrant.attachUrl, { authorization: `Bearer ${opsGrant.token}` });
      assert.equal((await client.call('Runtime.evaluate', { expression: '1 + 1', returnByValue: true })).result.value, 2);

      // The new file: evaluation forbidden, a shorter maxDuration for dev, ops removed, a new redacted name.
      const next = structuredClone(policy);
      next.targets.app.access = [{ role: 'dev', modes: ['pause', 'snapshot'], maxDuration: '2m' }];
      next.targets.app.evaluation = { allow: false };
      next.targets.app.maxPauseSeconds = 5;
      const result = await broker.broker.reload(parseConfigText(stringify({ ...next, stateDir: broker.stateDir }), broker.stateDir), 'test');
      assert.deepEqual(result.changed, ['targets.app']);
      assert.equal(result.sessionsEnded, 1);
      assert.equal(result.sessionsNarrowed, 1);

      const closed = await ops.closed;
      assert.equal(closed.code, 4007);
      assert.match(closed.reason, /policy changed/);
      const reply = await client.send('Runtime.evaluate', { expression: '1 + 1' });
      assert.match(reply.result?.exceptionDetails?.exception?.description ?? '', /forbids evaluation \(evaluation\.allow: false\)/, 'the live session is narrowed at once');
      // A loosening reload does not widen the live session: it keeps the stricter rule.
      const loose = structuredClone(next);
      loose.targets.app.evaluation = { allow: true };
      await broker.broker.reload(parseConfigText(stringify({ ...loose, stateDir: broker.stateDir }), broker.stateDir), 'test');
      assert.match((await client.send('Runtime.evaluate', { expression: '1 + 1' })).result?.exceptionDetails?.exception?.description ?? '', /^EvalError: Refused by Loupe: .*forbids evaluation/);
      // New grants follow the new policy.
      const refused = await broker.api('POST', '/v1/grants', await broker.token('olga', ['ops']), { target: 'app', mode: 'pause', durationSeconds: 60, reason: 'again' });
      assert.equal(refused.status, 403);
      const fresh = await broker.grant('dev', ['devs'], { durationSeconds: 600 });
      assert.ok(Date.parse(fresh.expiresAt) - Date.now() <= 120_000 + 2000, 'capped by the new maxDuration');
      const freshClient = await CdpClient.connect(fresh.attachUrl, { authorization: `Bearer ${fresh.token}` });
      assert.equal((await freshClient.call('Runtime.evaluate', { expression: '1 + 1', returnByValue: true })).result.value, 2);
      await freshClient.close();
      await client.close();
      await broker.waitForRecord('session.ended', (e) => e.grant === fresh.grantId);
      await broker.waitForRecord('session.ended', (e) => e.data.endReason === 'policy');
      const events = await broker.sessionEvents();
      const applied = events.filter((e) => e.type === 'session.policy_applied');
      assert.ok(applied.length >= 1);
      assert.equal(applied[0].data.evaluation.allow, false);
      assert.ok(applied[0].data.expiresAt, 'the session was shortened to the new maxDuration');
      assert.ok(events.some((e) => e.type === 'session.ended' && e.data.endReason === 'policy'));
    } finally {
      await broker.close();
    }
  });

  it('a grant issued before a reload attaches only as the new policy allows: refused when no rule allows it, shortened to the new maxDuration', async () => {
    const policy = devAndOpsPolicy(target.inspector);
    const broker = await startTestBroker(policy);
    try {
      const opsGrant = await broker.grant('olga', ['ops'], { durationSeconds: 600 });
      const devGrant = await broker.grant('dev', ['devs'], { durationSeconds: 600 });
      // ops lose access (say, after an incident); dev grants now last 2 minutes at most.
      const next = structuredClone(policy);
      next.targets.app.access = [{ role: 'dev', modes: ['pause', 'snapshot'], maxDuration: '2m' }];
      await broker.broker.reload(parseConfigText(stringify({ ...next, stateDir: broker.stateDir }), broker.stateDir), 'test');

      const { CdpClient } = await import('../support/cdpClient');
      const refused = await CdpClient.connect(opsGrant.attachUrl, { authorization: `Bearer ${opsGrant.token}` }).then(
        async (client) => {
          await client.close();
          return undefined;
        },
        (err: Error & { status?: number; body?: string }) => err,
      );
      assert.ok(refused, 'the attach of a grant the policy no longer allows was accepted');
      assert.equal(refused.status, 403);
      const body = JSON.parse(refused.body!);
      assert.equal(body.error.code, 'policy_refused');
      assert.match(body.error.message, /^grant [0-9a-f-]{36} is no longer allowed by the policy: none of your roles \(ops\) may attach to app$/);
      await broker.waitForRecord('attach.refused', (e) => e.data.grantId === opsGrant.grantId);

      const client = await CdpClient.connect(devGrant.attachUrl, { authorization: `Bearer ${devGrant.token}` });
      const started = await broker.waitForRecord('session.started', (e) => e.grant === devGrant.grantId);
      const issuedAt = decodeJwt(devGrant.token).iat! * 1000;
      assert.equal(started.data.expiresAt, new Date(issuedAt + 120_000).toISOString(), 'the session runs under the new maxDuration from the grant');
      await client.close();
    } finally {
      await broker.close();
    }
  });

  it('the CLI broker reloads on SIGHUP and on file change, and keeps the old policy when the new file is invalid', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'loupe-reload-'));
    const file = join(dir, 'loupe.yaml');
    const policy: Record<string, any> = { ...basePolicy(target.inspector), stateDir: join(dir, 'state') };
    writeFileSync(file, stringify(policy));
    const proc: ChildProcess = spawn(process.execPath, [cli, 'broker', '--config', file], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    proc.stderr!.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    try {
      const url = await brokerUrl(proc, () => stderr, 10_000);
      const token = (await runCli(['token', '--config', file, '--user', 'dan', '--groups', 'devs'], dir)).stdout.trim();
      const grant = (mode: string) =>
        fetch(`${url}/v1/grants`, {
          method: 'POST',
          headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
          body: JSON.stringify({ target: 'app', mode, durationSeconds: 60, reason: 'reload test' }),
        });
      const waitLog = async (pattern: RegExp) => {
        await waitFor(() => pattern.test(stderr), { what: `the broker to log ${pattern}`, timeoutMs: 5000 }).catch(() => undefined);
        assert.match(stderr, pattern);
      };
      assert.equal((await grant('pause')).status, 201);

      // An invalid file: refused, logged with every problem, and the old policy stays in force.
      writeFileSync(file, stringify({ ...policy, targets: { app: { ...policy.targets.app, maxPauseSeconds: 'soon', access: [{ role: 'ghost' }] } } }));
      await waitLog(/policy reload refused \(file changed\): the old policy stays in force/);
      assert.match(stderr, /targets\.app\.maxPauseSeconds: /);
      assert.match(stderr, /targets\.app\.access\[0\]\.role: unknown role \\"ghost\\"/);
      assert.equal((await grant('pause')).status, 201, 'the old policy still allows pause');

      // A file over 512 KiB, valid or not, is refused by its size, unparsed (an 8 MB string took 1.3 s to parse alone on the broker's thread).
      writeFileSync(file, `${stringify({ ...policy, targets: { app: { ...policy.targets.app, access: [{ role: 'dev', modes: ['snapshot'] }] } } })}# ${'x'.repeat(8 << 20)}\n`);
      await waitLog(/policy reload refused \(file changed\): the old policy stays in force\. invalid config:\\n  .*loupe\.yaml: the policy file is \d+ bytes; at most 524288 bytes/);
      assert.equal((await grant('pause')).status, 201, 'the old policy still allows pause');

      // A valid file that allows only snapshot, picked up on SIGHUP.
      const next = structuredClone(policy);
      next.targets.app.access[0].modes = ['snapshot'];
      writeFileSync(file, stringify(next));
      proc.kill('SIGHUP');
      await waitLog(/policy reloaded from .*: targets\.app/);
      assert.equal((await grant('pause')).status, 403);
      assert.equal((await grant('snapshot')).status, 201);
    } finally {
      proc.kill('SIGTERM');
      await once(proc, 'exit');
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
