// needs: s3
import { strict as assert } from 'node:assert';
import { execFile, spawn, spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import fs, { closeSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { SignJWT, generateKeyPair } from 'jose';
import { verifyTranscript, readTranscriptFromStore } from '../../broker/audit/verify';
import { drainIntervalMs, listSecuritySegments } from '../../broker/audit/securityStream';
import { AuditStoreError, type AuditStore } from '../../broker/audit/stores/auditStore';
import { LocalDirectoryStore } from '../../broker/audit/stores/localStore';
import { Broker } from '../../broker/broker';
import { parseConfigText } from '../../broker/config/load';
import { stringify } from 'yaml';
import type { EndReason } from '../../broker/session/debugSession';
import type { CdpClient } from '../support/cdpClient';
import { badAttaches, evaluateFor, floodFromChild, forgedGrantToken, rawAttach } from '../support/attachFlood';
import { freshLockedBucket, s3Settings } from '../support/s3';
import { startTarget, type TargetProcess } from '../support/target';
import { basePolicy, startTestBroker, type TestBroker } from '../support/testBroker';
import { brokerUrl } from '../support/brokerProcess';
import { sleep, waitFor } from '../support/wait';
import { ensureBuilt } from '../support/built';

const root = join(__dirname, '..', '..');
const cli = join(root, 'dist', 'cli.js');
const run = (args: string[], env: NodeJS.ProcessEnv) =>
  new Promise<{ status: number; stdout: string; stderr: string }>((resolve) =>
    execFile(process.execPath, [cli, ...args], { env, encoding: 'utf8' }, (err, stdout, stderr) => resolve({ status: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr })),
  );

const policy = (inspector: string, extra: Record<string, unknown> = {}) =>
  basePolicy(inspector, {
    roles: { ...basePolicy('').roles, auditor: { groups: ['auditors'] } },
    auditors: ['auditor'],
    ...extra,
  });

/** Every security event the broker has recorded: queued ones made durable, and the live segment uploaded. */
async function securityEvents(tb: TestBroker): Promise<any[]> {
  await tb.broker.security.flush();
  await tb.broker.security.current!.upload();
  const store = tb.broker.audit.store;
  const events: any[] = [];
  for (const key of await store.list('security/')) {
    if (!key.includes('/chunk-')) continue;
    for (const line of (await store.get(key)).toString('utf8').split('\n')) if (line && !line.includes('"type":"seal"')) events.push(JSON.parse(line));
  }
  return events.sort((a, b) => a.time.localeCompare(b.time) || (a.stream === b.stream ? a.seq - b.seq : 0));
}

const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))]!;

describe('security stream: refusals at the edges are in the tamper-evident trail', () => {
  let target: TargetProcess;
  let tb: TestBroker;
  let ecsDir: string;
  before(async () => {
    ensureBuilt();
    ecsDir = mkdtempSync(join(tmpdir(), 'loupe-ecs-'));
    target = await startTarget();
    tb = await startTestBroker(policy(target.inspector, { alerting: { ecs: join(ecsDir, 'ecs.ndjson'), rules: { failedAttaches: { count: 5, withinSeconds: 60 } } } }), {
      securityStream: { segmentMaxEvents: 6 },
    });
  });
  after(async () => {
    await tb.close();
    await target.stop();
    rmSync(ecsDir, { recursive: true, force: true });
  });

  it('records each refused attach with its reason, rejected identity tokens and malformed grant requests, never a credential', async () => {
    const g = await tb.grant('dev', ['devs']);
    const live = await tb.attach();
    const revoked = await tb.grant('dev', ['devs']);
    assert.equal((await tb.api('DELETE', `/v1/grants/${revoked.grantId}`, await tb.token('dev', ['devs']))).status, 200);
    const forged = await forgedGrantToken(g.grantId, 'dev');
    const bearer = (t: string) => ({ authorization: `Bearer ${t}` });
    const attempts: [string, string, Record<string, string>, number, string][] = [
      ['second attach', live.grant.attachUrl, bearer(live.grant.token), 409, 'second_attach'],
      ['forged signature', g.attachUrl, bearer(forged), 401, 'bad_signature'],
      ['no JWT', g.attachUrl, bearer('garbage'), 401, 'malformed_token'],
      ['no credential', g.attachUrl, {}, 401, 'no_credentials'],
      ['unknown ticket', `${g.attachUrl}?ticket=bogus`, {}, 401, 'ticket_unknown_used_or_expired'],
      ['revoked grant', revoked.attachUrl, bearer(revoked.token), 403, 'revoked'],
      ['token of another grant', revoked.attachUrl, bearer(g.token), 401, 'wrong_grant'],
    ];
    for (const [what, url, headers, status] of attempts) assert.equal((await rawAttach(url, headers)).status, status, what);

    const { privateKey } = await generateKeyPair('ES256');
    const evil = await new SignJWT({ groups: ['admins'] })
      .setProtectedHeader({ alg: 'ES256', kid: 'k1' })
      .setIssuer('https://evil.example')
      .setSubject('eve')
      .setAudience('loupe')
      .setExpirationTime('5m')
      .sign(privateKey);
    assert.equal((await tb.api('GET', '/v1/targets', evil)).status, 401);
    assert.equal((await tb.api('GET', '/v1/targets', 'not-a-jwt')).status, 401);
    const devToken = await tb.token('dev', ['devs']);
    assert.equal((await tb.api('POST', '/v1/grants', devToken, '{"target": "app", ')).status, 400);
    assert.equal((await tb.api('POST', '/v1/grants', devToken, { target: 'app', mode: 'godmode', durationSeconds: 60, reason: 'x'.repeat(5000) })).status, 400);

    const events = await securityEvents(tb);
    const refused = events.filter((e) => e.type === 'attach.refused');
    for (const [what, , , status, reason] of attempts) {
      const event = refused.find((e) => e.data.reason === reason);
      assert.ok(event, `${what}: an attach.refused record with reason ${reason}`);
      assert.equal(event.code, 'L7000');
      assert.equal(event.data.status, status);
      assert.equal(event.data.source, '127.0.0.1');
      assert.equal(event.kind, 'security');
    }
    assert.equal(refused.find((e) => e.data.reason === 'second_attach').data.user, 'dev', 'whose grant it was');
    const identity = events.filter((e) => e.type === 'identity.rejected');
    const fromEvil = identity.find((e) => e.data.issuer === 'https://evil.example');
    assert.ok(fromEvil, 'the issuer of a rejected token is recorded');
    assert.equal(fromEvil.data.claimedSub, 'eve');
    assert.match(fromEvil.data.tokenDigest, /^sha256:[0-9a-f]{16}$/);
    assert.equal(fromEvil.data.path, '/v1/targets');
    assert.ok(identity.some((e) => e.data.reason === 'malformed_token'));
    const malformed = events.filter((e) => e.type === 'grant.malformed');
    assert.equal(malformed.length, 2);
    assert.ok(malformed.every((e) => e.data.actor.sub === 'dev'));
    assert.ok(malformed.some((e) => /malformed JSON/.test(e.data.message)));
    assert.ok(malformed.some((e) => e.data.problems?.some((p: string) => /^mode:/.test(p))));
    const stored = JSON.stringify(events);
    for (const secret of [forged, evil, g.token, live.grant.token, revoked.token]) assert.ok(!stored.includes(secret), 'no credential is stored');
    assert.ok(stored.length < 64 * 1024, 'the 5000-character reason is not recorded whole');

    // A burst of refused attaches from one address is an alert, recorded in the security stream.
    const alert = events.find((e) => e.type === 'alert.failedAttaches');
    assert.ok(alert, 'failedAttaches fired');
    assert.match(alert.data.message, /refused attaches within 60 s from 127\.0\.0\.1/);
    const admin = await tb.token('root', ['admins']);
    assert.ok((await tb.api('GET', '/v1/alerts', admin)).body.alerts.some((a: any) => a.rule === 'failedAttaches'));

    // ECS export: authentication failures with the source address.
    const ecs = readFileSync(join(ecsDir, 'ecs.ndjson'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    const doc = ecs.find((d) => d.event.action === 'attach.refused');
    assert.ok(doc);
    assert.deepEqual(doc.event.category, ['authentication', 'network']);
    assert.equal(doc.event.outcome, 'failure');
    assert.equal(doc.event.code, 'L7000');
    assert.equal(doc.source.ip, '127.0.0.1');
    assert.ok(ecs.some((d) => d.event.action === 'identity.rejected' && d.event.category[0] === 'authentication'));
    await live.client.close();
  });

  it('records a session that ended on a fault, pointing at its session.ended record', async () => {
    const { client } = await tb.attach();
    const session = tb.broker.liveSessions.at(-1)!;
    await session.end('internal_error' as EndReason);
    await client.closed;
    await tb.waitForRecord('session.fault', (e) => e.data.session === session.sessionId);
    const fault = (await securityEvents(tb)).find((e) => e.type === 'session.fault' && e.data.session === session.sessionId);
    assert.ok(fault, 'session.fault recorded');
    const ended = (await tb.sessionEvents()).find((e) => e.stream === session.sessionId && e.type === 'session.ended');
    assert.equal(fault.data.endedHash, ended.hash);
    assert.equal(fault.data.user, 'dev');
    assert.equal(fault.code, 'L7003');
  });

  it('seals the stream in linked segments that `loupe audit list --security`, download and verify accept', async () => {
    const store = tb.broker.audit.store;
    // A rotation closes its segment in the background (manifest after the last upload): wait for two to be sealed.
    let segments: Awaited<ReturnType<typeof listSecuritySegments>> = [];
    const ended = await waitFor(
      async () => {
        await tb.broker.security.flush();
        await tb.broker.audit.settle();
        segments = await listSecuritySegments(store, new Set([tb.broker.security.current!.id]));
        const sealed = segments.filter((s) => s.state === 'ended').reverse();
        return sealed.length >= 2 && sealed;
      },
      { what: 'the stream rotated into two sealed segments', intervalMs: 100 },
    ).catch((err: Error) => assert.fail(`${err.message}: ${segments.map((s) => `${s.stream} ${s.state}`).join(', ')}`));
    for (const [i, segment] of ended.entries()) {
      const result = await verifyTranscript(await readTranscriptFromStore(store, segment.prefix, false), tb.broker.auditKeys);
      assert.ok(result.ok, `${segment.stream}: ${result.problems.join('; ')}`);
      const opened = result.events[0]!;
      assert.equal(opened.type, 'security.segment_opened');
      // segmentMaxEvents (6) of events at most, between the segment's opening and closing records, however they came.
      assert.ok(result.events.length <= 6 + 2, `${segment.stream} holds ${result.events.length} records`);
      if (i > 0) {
        const previous = (await verifyTranscript(await readTranscriptFromStore(store, ended[i - 1]!.prefix, false), tb.broker.auditKeys)).events;
        assert.equal((opened.data as any).previous, ended[i - 1]!.stream);
        assert.equal((opened.data as any).previousHead, previous.at(-1)!.hash, 'each segment names the head of the one before');
      }
    }
    const env = { ...process.env, LOUPE_BROKER_URL: tb.url, LOUPE_TOKEN: await tb.token('audrey', ['auditors']) };
    const listed = await run(['audit', 'list', '--security'], env);
    assert.equal(listed.status, 0, listed.stderr);
    assert.match(listed.stdout, new RegExp(`${ended[0]!.stream}\\s+\\S+\\s+ended: rotated`));
    const dir = mkdtempSync(join(tmpdir(), 'loupe-sec-'));
    try {
      const downloaded = await run(['audit', 'download', ended[0]!.stream, '-o', dir], env);
      assert.equal(downloaded.status, 0, downloaded.stderr);
      const verified = await run(['audit', 'verify', dir], env);
      assert.equal(verified.status, 0, verified.stdout + verified.stderr);
      assert.match(verified.stdout, /^OK: security segment security-/);
      // Any change to a stored record is detected.
      const file = join(dir, 'transcript.ndjson');
      writeTampered(file);
      const tampered = await run(['audit', 'verify', dir], env);
      assert.equal(tampered.status, 1);
      assert.match(tampered.stdout, /FAILED/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    assert.equal((await tb.api('GET', '/v1/audit/security', await tb.token('dev', ['devs']))).status, 403, 'auditors only');
    // The grant stream (where policy refusals of grant requests are) is listed the same way.
    const grants = await waitFor(
      async () => {
        const segments = (await tb.api('GET', '/v1/audit/grants', env.LOUPE_TOKEN)).body.segments as any[];
        return segments.length > 0 && segments;
      },
      { what: 'the grant stream listed', intervalMs: 100 },
    ).catch(() => [] as any[]);
    assert.equal(grants.length, 1);
    assert.equal(grants[0].state, 'live');
    const listedGrants = await run(['audit', 'list', '--grants'], env);
    assert.match(listedGrants.stdout, new RegExp(`^STREAM .*\\n${grants[0].stream}\\s+\\S+\\s+live`));
    const report = await fetch(`${tb.url}/v1/audit/security/${ended[0]!.stream}/report`, { headers: { authorization: `Bearer ${await tb.token('audrey', ['auditors'])}` } });
    assert.equal(report.status, 200);
    const html = await report.text();
    assert.match(html, /Security events/);
    assert.match(html, /Verified: \d+ records/);
  });
});

function writeTampered(file: string): void {
  const lines = readFileSync(file, 'utf8').split('\n');
  const i = lines.findIndex((l) => l.includes('"attach.refused"') || l.includes('"security.segment_opened"'));
  lines[i] = lines[i]!.replace('"observedAt"', '"observedAt2"').replace('"segmentMaxEvents":6', '"segmentMaxEvents":7');
  fs.writeFileSync(file, lines.join('\n'));
}

describe('security stream under a flood', () => {
  it('answers 200 bad attaches 401 within a second each, keeps 20 sessions within 2x, and records every refusal in group commits', async () => {
    const target = await startTarget();
    const tb = await startTestBroker(policy(target.inspector, { alerting: { rules: { failedAttaches: { count: 20, withinSeconds: 60 } } } }));
    const clients: CdpClient[] = [];
    let stopFlood: () => void = () => undefined;
    try {
      for (let i = 0; i < 20; i++) clients.push((await tb.attach()).client);
      // Each session evaluates every 50 ms: busy debugging, not a benchmark loop that saturates the broker.
      const paced = (ms: number) => evaluateFor(clients, ms, 50);
      await paced(500);
      const quiet = await paced(2500);
      // Calibration on this (shared, loaded) machine: 200 attaches without any credential, refused before any
      // token work, under the same session load. A loaded CI machine may need longer than 1 s for 200 connections
      // at all; what must hold is that checking bad tokens adds no waiting of its own.
      const baseline = await floodFromChild(Array.from({ length: 200 }, () => ({ url: `${tb.url.replace(/^http/, 'ws')}/v1/attach/${randomUUID()}`, token: '' })));
      const [baselineLoud, baselineAnswers] = await Promise.all([paced(2500), baseline.fire()]);
      baseline.stop();
      const baselineSlowest = Math.max(...baselineAnswers.map((a) => a.ms));
      const flood = await floodFromChild(await badAttaches(await tb.grant('mallory', ['devs']), 'mallory', 200));
      stopFlood = flood.stop;
      await tb.broker.security.flush();
      const before = (await securityEvents(tb)).length;

      const [loud, answers] = await Promise.all([paced(2500), flood.fire()]);
      await tb.broker.security.flush();
      const slowest = Math.max(...answers.map((a) => a.ms));
      assert.deepEqual(new Set(answers.map((a) => a.status)), new Set([401]));
      assert.ok(
        slowest < Math.max(1000, 2 * baselineSlowest),
        `every bad attach answered within 1 s, or on an overloaded machine within twice the time 200 credential-less attaches took (slowest ${slowest.toFixed(0)} ms; those ${baselineSlowest.toFixed(0)} ms)`,
      );
      // Within 2x of no flood; on an overloaded machine, where 200 connections of any kind cost the sessions more,
      // at most 1.5x what the credential-less flood cost them: checking bad tokens adds no cost of its own.
      const ratio = pct(loud, 50) / pct(quiet, 50);
      const overCalibration = pct(loud, 50) / pct(baselineLoud, 50);
      assert.ok(
        ratio <= 2 || overCalibration <= 1.5,
        `evaluation p50 ${pct(loud, 50).toFixed(1)} ms with the flood vs ${pct(quiet, 50).toFixed(1)} ms without (ratio ${ratio.toFixed(2)}) and ${pct(baselineLoud, 50).toFixed(1)} ms under 200 credential-less attaches (ratio ${overCalibration.toFixed(2)})`,
      );

      const events = await securityEvents(tb);
      const refused = events.slice(before).filter((e) => e.type === 'attach.refused');
      assert.equal(refused.length, 200, 'every refusal recorded');
      assert.deepEqual(new Set(refused.map((e) => e.data.reason)), new Set(['bad_signature', 'malformed_token', 'wrong_grant']));
      const alerts = events.filter((e) => e.type === 'alert.failedAttaches');
      assert.ok(
        alerts.some((a) => /from 127\.0\.0\.1/.test(a.data.message)),
        'a burst of failed attaches from one address is an alert',
      );
      assert.ok(alerts.length <= 3, `one alert per address or user and window, not one per refusal (${alerts.length})`);
      console.log(
        `flood: credential-less attaches slowest ${baselineSlowest.toFixed(0)} ms; bad attaches slowest ${slowest.toFixed(0)} ms, p50 ${pct(
          answers.map((a) => a.ms),
          50,
        ).toFixed(0)} ms; evaluation p50 ${pct(quiet, 50).toFixed(1)} → ${pct(loud, 50).toFixed(1)} ms, p99 ${pct(quiet, 99).toFixed(1)} → ${pct(loud, 99).toFixed(1)} ms`,
      );
    } finally {
      stopFlood();
      for (const c of clients) await c.close();
      await tb.close();
      await target.stop();
    }
  });

  it('answers forged identity tokens while a stalled disk holds every thread of the pool', async () => {
    const target = await startTarget();
    const tb = await startTestBroker(policy(target.inspector));
    let pool: { release(): Promise<void> } | undefined;
    try {
      const good = await tb.token('mallory', ['devs']);
      const forged = Array.from({ length: 60 }, (_, i) => `${good.slice(0, -6)}${['AAAAAA', 'BBBBBB', 'CCCCCC'][i % 3]}`);
      pool = await holdThreadPool();
      const answers = await Promise.all(
        forged.map(async (token) => {
          const started = performance.now();
          const controller = AbortSignal.timeout(5000);
          const status = await fetch(`${tb.url}/v1/targets`, { headers: { authorization: `Bearer ${token}` }, signal: controller }).then(
            (r) => r.status,
            () => 0,
          );
          return { status, ms: performance.now() - started };
        }),
      );
      const slowest = Math.max(...answers.map((a) => a.ms));
      assert.deepEqual(new Set(answers.map((a) => a.status)), new Set([401]));
      assert.ok(slowest < 1000, `every forged identity token refused within 1 s with the thread pool held (slowest ${slowest.toFixed(0)} ms)`);
      await pool.release();
      // The genuine token still verifies (jose stays the authority once the pre-check passes).
      assert.equal((await tb.api('GET', '/v1/targets', good)).status, 200);
      const rejected = (await securityEvents(tb)).filter((e) => e.type === 'identity.rejected');
      assert.equal(rejected.length, 60);
    } finally {
      await pool?.release();
      await tb.close();
      await target.stop();
    }
  });

  it('answers forged grant tokens while a stalled disk holds every thread of the pool', async () => {
    const target = await startTarget();
    const tb = await startTestBroker(policy(target.inspector));
    let pool: { release(): Promise<void> } | undefined;
    try {
      const g = await tb.grant('mallory', ['devs']);
      const forged = await forgedGrantToken(g.grantId, 'mallory');
      const attempts = Array.from({ length: 100 }, (_, i) => ({ url: g.attachUrl, token: i % 2 ? forged : `${g.token.slice(0, -6)}${i % 4 === 1 ? 'AAAAAA' : 'BBBBBB'}` }));
      const flood = await floodFromChild(attempts);
      pool = await holdThreadPool();
      const answers = await flood.fire();
      flood.stop();
      const slowest = Math.max(...answers.map((a) => a.ms));
      assert.deepEqual(new Set(answers.map((a) => a.status)), new Set([401]));
      assert.ok(slowest < 1000, `every forged token refused within 1 s with the thread pool held (slowest ${slowest.toFixed(0)} ms)`);
      // The disk comes back: every refusal is then recorded.
      await pool.release();
      const refused = (await securityEvents(tb)).filter((e) => e.type === 'attach.refused');
      assert.equal(refused.length, 100);
      assert.ok(refused.every((e) => e.data.reason === 'bad_signature'));
    } finally {
      await pool?.release();
      await tb.close();
      await target.stop();
    }
  });

  it('records 200 refused attaches in group commits, not one WAL sync each', async () => {
    const target = await startTarget();
    const tb = await startTestBroker(policy(target.inspector));
    const flood = await floodFromChild(await badAttaches(await tb.grant('mallory', ['devs']), 'mallory', 200));
    try {
      // The WAL's durable commits while the flood is answered and recorded (a write and its sync, or one O_DSYNC write).
      await tb.broker.security.flush();
      const before = tb.broker.audit.wal.commits;
      const started = performance.now();
      const answers = await flood.fire();
      await tb.broker.security.flush();
      const elapsed = performance.now() - started;
      const commits = tb.broker.audit.wal.commits - before;
      assert.equal(answers.filter((a) => a.status === 401).length, 200);
      const refused = (await securityEvents(tb)).filter((e) => e.type === 'attach.refused');
      assert.equal(refused.length, 200);
      // One drain per drainIntervalMs at most, however fast or slow the refusals come (a session's commits aside: none here).
      const bound = Math.ceil(elapsed / drainIntervalMs) + 2;
      assert.ok(commits >= 1 && commits <= bound && commits < 200 / 2, `${commits} WAL commits for 200 refusals in ${elapsed.toFixed(0)} ms (at most ${bound})`);
      console.log(`200 refusals recorded with ${commits} WAL commits in ${elapsed.toFixed(0)} ms`);
    } finally {
      flood.stop();
      await tb.close();
      await target.stop();
    }
  });

  it('keeps at most maxQueued events waiting; the rest of a burst is counted in one summary record', async () => {
    const target = await startTarget();
    const tb = await startTestBroker(policy(target.inspector), { securityStream: { maxQueued: 50 } });
    try {
      for (let i = 0; i < 1000; i++) tb.broker.recordSecurityEvent('attach.refused', { reason: 'bad_signature', n: i });
      assert.ok((tb.broker.security as unknown as { queue: unknown[] }).queue.length <= 50, 'the queue is bounded');
      const events = await securityEvents(tb);
      const kept = events.filter((e) => e.type === 'attach.refused');
      const summary = events.find((e) => e.type === 'security.events_dropped');
      assert.equal(kept.length, 50);
      assert.ok(summary, 'a summary record');
      assert.equal(summary.data.count, 950);
      assert.deepEqual(summary.data.byType, { 'attach.refused': 950 });
      assert.match(summary.data.detail, /counted here, not recorded one by one/);
    } finally {
      await tb.close();
      await target.stop();
    }
  });

  it('keeps a bounded backlog while the store is down and counts the rest; the summary follows when it is back', async () => {
    const stateDir = mkdtempSync(join(tmpdir(), 'loupe-sec-'));
    const local = new LocalDirectoryStore(join(stateDir, 'store'));
    let down = false;
    // The real directory store, refusing every put while `down`, as an unreachable S3 endpoint does.
    const store: AuditStore = {
      description: local.description,
      check: () => local.check(),
      put: (key, body, until) => (down ? Promise.reject(new AuditStoreError('unavailable', 'store unreachable')) : local.put(key, body, until)),
      get: (key) => local.get(key),
      list: (prefix) => local.list(prefix),
      retention: (key) => local.retention(key),
    };
    const config = parseConfigText(stringify({ ...policy('127.0.0.1:1'), stateDir, audit: { failClosedAfter: '1h' } }), stateDir);
    const broker = await Broker.create(config, { auditStore: store, securityStream: { maxQueued: 100, maxBacklog: 300 } });
    try {
      down = true;
      await broker.security.current!.upload().catch(() => undefined);
      assert.equal(broker.audit.health.state, 'degraded');
      for (let round = 0; round < 10; round++) {
        for (let i = 0; i < 100; i++) broker.recordSecurityEvent('attach.refused', { reason: 'bad_signature', n: round * 100 + i });
        await broker.security.flush();
      }
      down = false;
      await broker.security.current!.upload();
      assert.equal(broker.audit.health.state, 'ok');
      broker.recordSecurityEvent('identity.rejected', { reason: 'expired' });
      await broker.security.flush();
      await broker.security.current!.upload();
      const events: any[] = [];
      for (const key of await local.list('security/'))
        for (const line of (await local.get(key)).toString('utf8').split('\n')) if (line && !line.includes('"type":"seal"')) events.push(JSON.parse(line));
      const kept = events.filter((e) => e.type === 'attach.refused').length;
      const counted = events.filter((e) => e.type === 'security.events_dropped').reduce((n, e) => n + e.data.count, 0);
      assert.ok(kept <= 300, `at most maxBacklog recorded during the outage (${kept})`);
      assert.equal(kept + counted, 1000, 'every event is recorded or counted');
      assert.ok(
        events.some((e) => e.type === 'identity.rejected'),
        'recording goes on after the outage',
      );
    } finally {
      await broker.shutdown();
      rmSync(stateDir, { recursive: true, force: true });
    }
  });
});

describe('security stream in S3 with Object Lock', () => {
  it('stores each segment as sealed, COMPLIANCE-locked objects that `loupe audit verify s3://…` accepts', async () => {
    const target = await startTarget();
    const bucket = await freshLockedBucket('loupe-security');
    const tb = await startTestBroker(
      policy(target.inspector, { audit: { store: 's3', s3: { bucket, endpoint: s3Settings().endpoint, region: 'us-east-1', forcePathStyle: true }, retentionDays: 1 } }),
      { securityStream: { segmentMaxEvents: 4 } },
    );
    let closed = false;
    try {
      const g = await tb.grant('dev', ['devs']);
      assert.equal((await tb.api('POST', '/v1/grants', await tb.token('eve', ['outsiders']), { target: 'app', mode: 'pause', durationSeconds: 60, reason: 'curious' })).status, 403);
      for (let i = 0; i < 6; i++) assert.equal((await rawAttach(g.attachUrl, { authorization: `Bearer forged-${i}` })).status, 401);
      await tb.broker.security.flush();
      await tb.close();
      closed = true;
      const store = tb.broker.audit.store;
      const segments = await listSecuritySegments(store, new Set());
      assert.ok(segments.length >= 2 && segments.every((s) => s.state === 'ended'), `every segment sealed at shutdown: ${JSON.stringify(segments.map((s) => s.state))}`);
      for (const segment of segments) {
        for (const key of await store.list(segment.prefix)) assert.equal((await store.retention(key)).mode, 'COMPLIANCE', key);
        const verified = await run(['audit', 'verify', `s3://${bucket}/${segment.prefix}`], process.env);
        assert.equal(verified.status, 0, verified.stdout + verified.stderr);
        assert.match(verified.stdout, /^OK: security segment .*chain intact, manifest sealed/);
        assert.match(verified.stdout, /every object is under COMPLIANCE retention/);
      }
      const refused = [];
      for (const segment of segments)
        refused.push(...(await verifyTranscript(await readTranscriptFromStore(store, segment.prefix, false), tb.broker.auditKeys)).events.filter((e) => e.type === 'attach.refused'));
      assert.equal(refused.length, 6);
      // The grant stream, with the policy refusal, verifies from the store the same way.
      const [grantStream] = await listSecuritySegments(store, new Set(), 'grants');
      assert.equal(grantStream!.state, 'ended');
      const verified = await run(['audit', 'verify', `s3://${bucket}/${grantStream!.prefix}`], process.env);
      assert.equal(verified.status, 0, verified.stdout + verified.stderr);
      assert.match(verified.stdout, /^OK: grant stream grants-/);
      const grantEvents = (await verifyTranscript(await readTranscriptFromStore(store, grantStream!.prefix, false), tb.broker.auditKeys)).events;
      assert.ok(grantEvents.some((e) => e.type === 'grant.refused' && (e.data as any).actor.sub === 'eve'));
    } finally {
      if (!closed) await tb.close();
      await target.stop();
    }
  });
});

describe('failedAttaches alert rule configuration', () => {
  it('is set under alerting.rules, validated there, and refused per target with a clear message', () => {
    const config = parseConfigText(
      stringify({ ...policy('127.0.0.1:1'), stateDir: '/tmp/unused', alerting: { rules: { failedAttaches: { count: 3, withinSeconds: 10, action: 'require-approval' } } } }),
      '/tmp/unused',
    );
    assert.deepEqual({ ...config.alerting.rules.failedAttaches }, { count: 3, withinSeconds: 10, action: 'require-approval' });
    const defaults = parseConfigText(stringify({ ...policy('127.0.0.1:1'), stateDir: '/tmp/unused' }), '/tmp/unused');
    assert.deepEqual({ ...defaults.alerting.rules.failedAttaches }, { count: 10, withinSeconds: 60, action: 'none' });
    const bad = policy('127.0.0.1:1', { alerting: { rules: { failedAttaches: { count: 0, withinSeconds: 10 } } } });
    bad.targets.app.alerts = { failedAttaches: { count: 3, withinSeconds: 10 } };
    assert.throws(
      () => parseConfigText(stringify({ ...bad, stateDir: '/tmp/unused' }), '/tmp/unused'),
      (err: Error) =>
        /alerting\.rules\.failedAttaches\.count: expected a positive integer/.test(err.message) &&
        /targets\.app\.alerts\.failedAttaches: a broker-wide rule: set it under alerting\.rules/.test(err.message),
    );
  });
});

describe('security stream after a crash', () => {
  /** The shipped broker (dist/cli.js) in its own process, so it can be killed outright. */
  async function startBrokerProcess(configFile: string) {
    const proc = spawn(process.execPath, [cli, 'broker', '--config', configFile], { stdio: ['ignore', 'pipe', 'pipe'] });
    proc.stderr!.resume();
    const url = await brokerUrl(proc, () => '');
    return { proc, url };
  }

  it('closes the segment a killed broker left open as broker_crashed, sealed and verifiable, on the next start', async () => {
    ensureBuilt();
    const dir = mkdtempSync(join(tmpdir(), 'loupe-sec-crash-'));
    const configFile = join(dir, 'loupe.yaml');
    writeFileSync(configFile, stringify({ ...policy('127.0.0.1:1'), stateDir: join(dir, 'state'), audit: { dir: join(dir, 'store') } }));
    let broker = await startBrokerProcess(configFile);
    try {
      for (let i = 0; i < 3; i++)
        assert.equal((await rawAttach(`${broker.url.replace(/^http/, 'ws')}/v1/attach/00000000-0000-4000-8000-00000000000${i}`, { authorization: 'Bearer nope' })).status, 401);
      // Queued, then durable in the WAL (group commit): written to its files, which a SIGKILL leaves intact.
      const walDir = join(dir, 'state', 'audit-wal');
      const refusalsInWal = () => readdirSync(walDir).reduce((n, f) => n + (readFileSync(join(walDir, f), 'utf8').match(/"attach\.refused"/g)?.length ?? 0), 0);
      await waitFor(() => refusalsInWal() >= 3, { what: () => `the 3 refusals in the WAL (${refusalsInWal()} there)`, intervalMs: 20 });
      broker.proc.kill('SIGKILL');
      await once(broker.proc, 'exit');
      broker = await startBrokerProcess(configFile);
      const store = new LocalDirectoryStore(join(dir, 'store'));
      const crashed = await waitFor(async () => (await listSecuritySegments(store, new Set())).find((s) => s.state === 'ended' && s.endReason === 'broker_crashed'), {
        what: 'the segment of the killed broker sealed by its manifest',
        intervalMs: 100,
      });
      const keys = JSON.parse(await (await fetch(`${broker.url}/v1/audit/keys`)).text());
      const result = await verifyTranscript(await readTranscriptFromStore(store, crashed.prefix, false), keys);
      assert.ok(result.ok, result.problems.join('; '));
      assert.equal(result.events.filter((e) => e.type === 'attach.refused').length, 3, 'the refusals recorded before the crash');
      assert.equal(result.events.at(-1)!.type, 'stream.closed');
      assert.equal((result.events.at(-1)!.data as any).endReason, 'broker_crashed');
    } finally {
      if (broker.proc.exitCode === null && broker.proc.signalCode === null) {
        broker.proc.kill('SIGKILL');
        await once(broker.proc, 'exit');
      }
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

/**
 * Holds every thread of libuv's pool, as fdatasyncs on a stalled disk do: each open of a FIFO with no writer blocks
 * one thread until release() opens the writing end. release() is idempotent.
 */
async function holdThreadPool(): Promise<{ release(): Promise<void> }> {
  const dir = mkdtempSync(join(tmpdir(), 'loupe-stall-'));
  const fifos: string[] = [];
  const held: Promise<fs.promises.FileHandle>[] = [];
  for (let i = 0; i < Number(process.env.UV_THREADPOOL_SIZE ?? 4); i++) {
    fifos.push(join(dir, `fifo-${i}`));
    spawnSync('mkfifo', [fifos[i]!]);
    held.push(fs.promises.open(fifos[i]!, 'r'));
  }
  await sleep(100); // the opens have taken the pool's threads (nothing signals that they block)
  let released: Promise<void> | undefined;
  return {
    release: () =>
      (released ??= (async () => {
        for (const fifo of fifos) closeSync(openSync(fifo, 'w'));
        for (const handle of await Promise.all(held)) await handle.close();
        rmSync(dir, { recursive: true, force: true });
      })()),
  };
}
