import { strict as assert } from 'node:assert';
import { createHmac } from 'node:crypto';
import { once } from 'node:events';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, before, describe, it } from 'node:test';
import { CdpClient } from '../support/cdpClient';
import { fixtures, markerLine, startTarget, type TargetProcess } from '../support/target';
import { alertRulesOff, basePolicy, startTestBroker, type TestBroker } from '../support/testBroker';
import { sleep, waitFor } from '../support/wait';

const appLine = markerLine(join(fixtures, 'app.js'), 'work');
const secret = 'webhook-secret-for-tests-0123456789';

/** Receivers still listening: closed after each test, passed or failed (a listening one keeps the file's process alive). */
const receivers = new Set<Server>();
afterEach(async () => {
  await Promise.all(
    [...receivers].map((server) => {
      receivers.delete(server);
      server.closeAllConnections();
      return new Promise((resolve) => server.close(resolve));
    }),
  );
});

/** A real HTTP receiver on loopback that answers with the given statuses in turn (the last one repeats). */
async function startReceiver(
  statuses: number[] = [200],
): Promise<{ url: string; requests: { headers: IncomingMessage['headers']; body: string }[]; server: Server; received(n: number, timeoutMs?: number): Promise<void> }> {
  const requests: { headers: IncomingMessage['headers']; body: string }[] = [];
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      requests.push({ headers: req.headers, body });
      res.statusCode = statuses[Math.min(requests.length - 1, statuses.length - 1)]!;
      res.end();
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  receivers.add(server);
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`,
    requests,
    server,
    async received(n, timeoutMs = 10_000) {
      await waitFor(() => requests.length >= n, { what: () => `${n} webhook requests (received ${requests.length})`, timeoutMs });
    },
  };
}

function verifySignature(header: string | string[] | undefined, body: string): boolean {
  const match = /^t=(\d+),v1=([0-9a-f]{64})$/.exec(String(header));
  if (!match) return false;
  return createHmac('sha256', secret).update(`${match[1]}.${body}`).digest('hex') === match[2];
}

function policy(inspector: string, alerts: Record<string, unknown>, extra: Record<string, any> = {}, hookUrl?: string) {
  const base = basePolicy(inspector);
  return {
    ...base,
    alerting: { rules: alertRulesOff, ...(hookUrl ? { webhooks: [{ url: hookUrl, secret, maxAttempts: 3 }] } : {}), ...extra.alerting },
    targets: { app: { ...base.targets.app, alerts, ...extra.target } },
    ...extra.top,
  };
}

async function pausedAtWork(client: CdpClient): Promise<any> {
  await client.call('Debugger.enable');
  const bp = await client.call('Debugger.setBreakpointByUrl', { lineNumber: appLine, urlRegex: 'app\\.js$' });
  const paused = await client.waitEvent('Debugger.paused');
  return { frame: paused.params.callFrames[0], breakpointId: bp.breakpointId };
}

async function alertsOf(broker: TestBroker, rule?: string): Promise<any[]> {
  const res = await broker.api('GET', '/v1/alerts', await broker.token('olga', ['owners']));
  assert.equal(res.status, 200);
  return res.body.alerts.filter((a: any) => !rule || a.rule === rule);
}

async function waitForAlert(broker: TestBroker, rule: string, timeoutMs = 5000): Promise<any> {
  return waitFor(async () => (await alertsOf(broker, rule))[0], { what: `a ${rule} alert`, timeoutMs, intervalMs: 50 }).catch(async (err: Error) => {
    throw new Error(`${err.message}; alerts: ${JSON.stringify(await alertsOf(broker))}`);
  });
}

describe('alert rules over the live audit stream (real target, real broker)', () => {
  let target: TargetProcess;
  let broker: TestBroker | undefined;
  before(async () => {
    target = await startTarget();
  });
  afterEach(async () => {
    await broker?.close();
    broker = undefined;
  });
  after(async () => target.stop());

  it('refusals: a burst of refused evaluations fires, is recorded with its evidence, reaches a signed webhook, and owners see it', async () => {
    const receiver = await startReceiver();
    broker = await startTestBroker(policy(target.inspector, { refusals: { count: 3, withinSeconds: 60 } }, {}, receiver.url));
    const { client } = await broker.attach();
    const { frame } = await pausedAtWork(client);
    for (const expression of ['globalThis.a = 1', 'globalThis.b = 2', 'process.exit(1)']) {
      await client.call('Debugger.evaluateOnCallFrame', { callFrameId: frame.callFrameId, expression });
    }
    const alert = await waitForAlert(broker, 'refusals');
    assert.match(alert.message, /^3 refusals within 60 s \(threshold 3\)$/);
    assert.equal(alert.user, 'dev');
    assert.equal(alert.evidence.length, 3);
    assert.ok(
      alert.evidence.every((e: any) => e.type === 'cdp.response' && /side effect|runs app code/.test(e.summary)),
      JSON.stringify(alert.evidence),
    );
    await receiver.received(1);
    const delivery = receiver.requests[0]!;
    assert.ok(verifySignature(delivery.headers['x-loupe-signature'], delivery.body), 'HMAC signature verifies');
    assert.equal(delivery.headers['x-loupe-event'], 'alert.refusals');
    assert.equal(JSON.parse(delivery.body).id, alert.id);
    assert.equal((await broker.api('GET', '/v1/alerts', await broker.token('dev', ['devs']))).status, 403);
    await client.call('Debugger.resume');
    await client.close();
    await broker.waitForRecord('session.ended');
    const events = await broker.sessionEvents();
    const recorded = events.find((e) => e.type === 'alert.refusals');
    assert.ok(recorded, 'alert recorded in the session chain');
    assert.deepEqual(
      recorded.data.evidence.map((e: any) => e.seq),
      alert.evidence.map((e: any) => e.seq),
    );
    for (const e of alert.evidence)
      assert.ok(
        events.some((x) => x.seq === e.seq && x.type === e.type),
        'evidence points at real records',
      );
  });

  it('a normal session fires nothing (and a second attach is not a first attach)', async () => {
    broker = await startTestBroker(
      policy(target.inspector, {
        evaluationRate: { perMinute: 10 },
        readRate: { perMinute: 10 },
        capturedBytes: { perSession: '1MB' },
        refusals: { count: 3, withinSeconds: 60 },
        sensitiveReads: { names: ['password', 'apiKey'] },
        firstAttach: { days: 30 },
        longPause: { seconds: 5 },
        watchdogResume: {},
        sensitiveFiles: { globs: ['src/auth/**'] },
        concurrentTargets: { max: 2 },
        offHours: { hours: 'Mon-Sun 00:00-24:00 UTC' },
      }),
    );
    const first = await broker.attach();
    await first.client.close();
    // Alerts are raised as the records are observed: once the session's end is, all of its alerts are listed.
    await broker.waitForRecord('session.ended', (e) => e.grant === first.grant.grantId);
    const before = (await alertsOf(broker)).length;
    assert.equal((await alertsOf(broker, 'firstAttach')).length, 1);
    const { client, grant } = await broker.attach();
    const { frame, breakpointId } = await pausedAtWork(client);
    const local = frame.scopeChain.find((s: any) => s.type === 'local');
    await client.call('Runtime.getProperties', { objectId: local.object.objectId, ownProperties: true });
    await client.call('Debugger.evaluateOnCallFrame', { callFrameId: frame.callFrameId, expression: 'local.label' });
    await client.call('Debugger.removeBreakpoint', { breakpointId });
    await client.call('Debugger.resume');
    await client.close();
    await broker.waitForRecord('session.ended', (e) => e.grant === grant.grantId);
    assert.deepEqual((await alertsOf(broker)).length, before, JSON.stringify(await alertsOf(broker)));
  });

  it('evaluationRate and readRate: above the threshold per minute', async () => {
    broker = await startTestBroker(policy(target.inspector, { evaluationRate: { perMinute: 4 }, readRate: { perMinute: 2 } }));
    const { client } = await broker.attach();
    const { frame } = await pausedAtWork(client);
    const local = frame.scopeChain.find((s: any) => s.type === 'local');
    for (let i = 0; i < 3; i++) await client.call('Runtime.getProperties', { objectId: local.object.objectId });
    for (let i = 0; i < 5; i++) await client.call('Debugger.evaluateOnCallFrame', { callFrameId: frame.callFrameId, expression: `n + ${i}` });
    assert.match((await waitForAlert(broker, 'readRate')).message, /^3 variable reads in the last minute \(threshold 2\)$/);
    assert.match((await waitForAlert(broker, 'evaluationRate')).message, /^5 evaluations in the last minute \(threshold 4\)$/);
    await client.call('Debugger.resume');
    await client.close();
  });

  it('capturedBytes: values read in a session above the threshold', async () => {
    broker = await startTestBroker(policy(target.inspector, { capturedBytes: { perSession: '1KB' } }));
    const { client } = await broker.attach();
    const big = await client.call('Runtime.evaluate', { expression: '"x".repeat(2000)', returnByValue: true });
    assert.equal(big.result.value.length, 2000);
    assert.match((await waitForAlert(broker, 'capturedBytes')).message, /^\d+ bytes of values read in this session \(threshold 1024\)$/);
    await client.close();
  });

  it('sensitiveReads: a sensitive name, or a value that looks like a card number', async () => {
    broker = await startTestBroker(policy(target.inspector, { sensitiveReads: { names: ['api_key'] } }));
    const { client } = await broker.attach();
    await client.call('Runtime.evaluate', { expression: 'typeof apiKey' });
    assert.match((await waitForAlert(broker, 'sensitiveReads')).message, /^evaluation of apiKey/);
    await client.call('Runtime.evaluate', { expression: '"card 4111 1111 1111 1111"', returnByValue: true });
    await waitFor(async () => (await alertsOf(broker!, 'sensitiveReads')).some((a) => /looks like a card number/.test(a.message)));
    await client.close();
  });

  it('firstAttach: durable across a broker restart', async () => {
    const stateDir = mkdtempSync(join(tmpdir(), 'loupe-first-'));
    const p = policy(target.inspector, { firstAttach: { days: 30 } });
    broker = await startTestBroker(p, { stateDir });
    await (await broker.attach()).client.close();
    assert.match((await waitForAlert(broker, 'firstAttach')).message, /^first attach of dev to app$/);
    await broker.close();
    broker = await startTestBroker(p, { stateDir });
    const again = await broker.attach();
    await again.client.close();
    await broker.waitForRecord('session.ended', (e) => e.grant === again.grant.grantId);
    assert.equal((await alertsOf(broker, 'firstAttach')).length, 0);
    assert.ok(existsSync(join(stateDir, 'alerts', 'first-attach.json')));
  });

  it('longPause and watchdogResume', async () => {
    broker = await startTestBroker(policy(target.inspector, { longPause: { seconds: 1 }, watchdogResume: {} }, { target: { maxPauseSeconds: 2 } }));
    const { client } = await broker.attach();
    await pausedAtWork(client);
    assert.match((await waitForAlert(broker, 'longPause', 3000)).message, /^the target has been paused for 1 s at work \(app\.js:\d+\)$/);
    assert.match((await waitForAlert(broker, 'watchdogResume', 4000)).message, /^the watchdog resumed the target after 2 s paused$/);
    await client.close();
  });

  it('sensitiveFiles: a breakpoint in a file the owner marks sensitive', async () => {
    broker = await startTestBroker(policy(target.inspector, { sensitiveFiles: { globs: ['test/fixtures/**'] } }));
    const { client } = await broker.attach();
    await client.call('Debugger.enable');
    const script = client.events.find((e) => e.method === 'Debugger.scriptParsed' && /app\.js$/.test(e.params.url))!;
    await client.call('Debugger.setBreakpointByUrl', { lineNumber: appLine, url: script.params.url });
    await waitForAlert(broker, 'sensitiveFiles');
    const messages = (await alertsOf(broker, 'sensitiveFiles')).map((a) => a.message);
    assert.ok(
      messages.some((m) => /^breakpoint set in \/.*\/test\/fixtures\/app\.js, which the owner marks sensitive \(test\/fixtures\/\*\*\)$/.test(m)),
      messages.join('\n'),
    );
    await client.close();
  });

  it('offHours: attach outside the target usual hours', async () => {
    const day = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'][(new Date().getUTCDay() + 3) % 7];
    broker = await startTestBroker(policy(target.inspector, { offHours: { hours: `${day} 09:00-17:00 UTC` } }));
    await (await broker.attach()).client.close();
    assert.match((await waitForAlert(broker, 'offHours')).message, new RegExp(`is outside ${day} 09:00-17:00 UTC$`));
  });

  it('concurrentTargets: one user on many targets at once', async () => {
    const second = await startTarget();
    try {
      const p = policy(target.inspector, { concurrentTargets: { max: 2 } });
      p.targets = { ...p.targets, other: { ...p.targets.app, inspector: second.inspector } };
      broker = await startTestBroker(p);
      const a = await broker.attach();
      const b = await broker.attach({ target: 'other' });
      assert.match((await waitForAlert(broker, 'concurrentTargets')).message, /^dev holds sessions on 2 targets at once: (app, other|other, app)$/);
      await a.client.close();
      await b.client.close();
    } finally {
      await second.stop();
    }
  });

  it('action end-session ends the session and leaves the target resumed', async () => {
    broker = await startTestBroker(policy(target.inspector, { refusals: { count: 2, withinSeconds: 60, action: 'end-session' } }));
    const observer = await CdpClient.connect(target.wsUrl);
    await observer.call('Debugger.enable'); // Node would not resume by itself while this session is attached
    const { client } = await broker.attach();
    const { frame } = await pausedAtWork(client);
    await client.send('Debugger.setScriptSource', { scriptId: frame.location.scriptId, scriptSource: '' });
    await client.send('Runtime.compileScript', { expression: '1', sourceURL: 'x', persistScript: false });
    const closed = await client.closed;
    assert.equal(closed.code, 4006);
    assert.match(closed.reason, /ended by an alert rule/);
    await target.ticksAdvance(3);
    await observer.close();
  });
});

describe('webhook delivery', () => {
  let target: TargetProcess;
  let broker: TestBroker | undefined;
  before(async () => {
    target = await startTarget();
  });
  afterEach(async () => {
    await broker?.close();
    broker = undefined;
  });
  after(async () => target.stop());

  const fireOne = async (b: TestBroker) => {
    const { client } = await b.attach();
    // Profiler.enable alone is what debuggers send at attach (gate/clientRoutine.ts): starting it is a refusal that counts.
    await client.send('Profiler.start');
    await client.close();
  };

  it('retries after the receiver answers 500 twice, with the same signed delivery', async () => {
    const receiver = await startReceiver([500, 500, 200]);
    broker = await startTestBroker(policy(target.inspector, { refusals: { count: 1, withinSeconds: 60 } }, {}, receiver.url));
    await fireOne(broker);
    await receiver.received(3);
    const ids = receiver.requests.map((r) => r.headers['x-loupe-delivery']);
    assert.equal(new Set(ids).size, 1);
    assert.ok(receiver.requests.every((r) => verifySignature(r.headers['x-loupe-signature'], r.body)));
    await sleep(600); // a retry would come within the backoff; no event marks its absence
    assert.equal(receiver.requests.length, 3, 'no retry after success');
  });

  it('writes a dead letter when the receiver stays down', async () => {
    const receiver = await startReceiver([503]);
    broker = await startTestBroker(policy(target.inspector, { refusals: { count: 1, withinSeconds: 60 } }, {}, receiver.url));
    await fireOne(broker);
    await receiver.received(3);
    const file = broker.config.alerting.deadLetterFile;
    // The file exists from the moment the broker opens it to append: wait for a whole line.
    await waitFor(() => existsSync(file) && readFileSync(file, 'utf8').includes('\n'), { what: 'a whole dead letter' });
    const letter = JSON.parse(readFileSync(file, 'utf8').split('\n')[0]!);
    assert.equal(letter.url, receiver.url);
    assert.equal(letter.attempts, 3);
    assert.equal(letter.lastError, 'HTTP 503');
    assert.equal(letter.alert.rule, 'refusals');
  });

  it('sends a Slack-compatible payload when asked', async () => {
    const receiver = await startReceiver();
    broker = await startTestBroker({
      ...policy(target.inspector, { refusals: { count: 1, withinSeconds: 60 } }),
      alerting: { rules: alertRulesOff, webhooks: [{ url: receiver.url, format: 'slack' }] },
    });
    await fireOne(broker);
    await receiver.received(1);
    const body = JSON.parse(receiver.requests[0]!.body);
    assert.match(body.text, /^:rotating_light: Loupe alert \*refusals\* on \*app\*: /);
    assert.ok(Array.isArray(body.blocks));
  });

  it('a Slack payload shows what a user typed as text: no @channel, no disguised links, no markup from an expression', async () => {
    const receiver = await startReceiver();
    broker = await startTestBroker({
      ...policy(target.inspector, { sensitiveReads: { names: ['api_key'] } }),
      alerting: { rules: alertRulesOff, webhooks: [{ url: receiver.url, format: 'slack' }] },
    });
    const { client } = await broker.attach();
    // The sensitiveReads alert quotes the expression; this one would page the channel and offer a sign-in link.
    await client.call('Runtime.evaluate', { expression: 'typeof apiKey // <!channel> <https://evil.example/|Re-authenticate Loupe> *urgent*' });
    await receiver.received(1);
    await client.close();
    const body = JSON.parse(receiver.requests[0]!.body);
    const texts = [body.text, body.blocks[0].text.text, body.blocks[1].elements[0].text];
    for (const text of texts) assert.ok(!/<[!@#]|<https?:/.test(text), `Slack markup reached the payload: ${text}`);
    assert.match(body.blocks[0].text.text, /evaluation of apiKey: typeof apiKey \/\/ &lt;!channel&gt; &lt;https:\/\/evil\.example\/\|Re-authenticate Loupe&gt;/);
  });
});

describe('operations: ECS export, metrics, health', () => {
  let target: TargetProcess;
  let broker: TestBroker;
  let ecsFile: string;
  before(async () => {
    target = await startTarget();
    ecsFile = join(mkdtempSync(join(tmpdir(), 'loupe-ecs-')), 'audit.ecs.ndjson');
    broker = await startTestBroker({ ...policy(target.inspector, { refusals: { count: 1, withinSeconds: 60 } }), alerting: { rules: alertRulesOff, ecs: ecsFile } });
    const { client } = await broker.attach();
    await client.call('Runtime.evaluate', { expression: '1 + 1' });
    await client.send('HeapProfiler.enable');
    await client.close();
    await waitForAlert(broker, 'refusals');
  });
  after(async () => {
    await broker.close();
    await target.stop();
  });

  it('writes every audit event as an ECS document with the documented fields', async () => {
    await waitFor(async () => existsSync(ecsFile) && readFileSync(ecsFile, 'utf8').includes('"session.ended"'));
    const docs = readFileSync(ecsFile, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    const actions = docs.map((d) => d.event.action);
    for (const action of ['grant.requested', 'grant.issued', 'session.started', 'cdp.evaluate', 'cdp.refused', 'alert.refusals', 'session.ended']) assert.ok(actions.includes(action), action);
    for (const doc of docs) {
      assert.match(doc['@timestamp'], /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
      assert.equal(doc.ecs.version, '8.11.0');
      assert.equal(typeof doc.message, 'string');
      assert.match(doc.event.code, /^L\d{4}$/);
      assert.ok(['event', 'alert'].includes(doc.event.kind));
      assert.ok(Array.isArray(doc.event.category) && doc.event.category.length > 0);
      assert.ok(['success', 'failure', 'unknown'].includes(doc.event.outcome));
      assert.equal(doc.event.dataset, 'loupe.audit');
      assert.ok(Array.isArray(doc.related.hash) && /^[0-9a-f]{64}$/.test(doc.related.hash[0]));
      assert.equal(doc.labels.target ?? 'app', 'app');
      assert.ok(Array.isArray(doc.related.user));
    }
    const evaluate = docs.find((d) => d.event.action === 'cdp.evaluate');
    assert.equal(evaluate.user.name, 'dev');
    assert.deepEqual(evaluate.user.roles, ['dev']);
    assert.equal(evaluate.labels.session, evaluate.labels.stream);
    assert.equal(docs.find((d) => d.event.action === 'cdp.refused').event.outcome, 'failure');
    assert.equal(docs.find((d) => d.event.action === 'alert.refusals').event.kind, 'alert');
  });

  it('serves Prometheus metrics', async () => {
    // The upload latency is observed when the session's chunks reach the store (its stream may still be closing):
    // wait for that, not for a timer.
    await broker.broker.audit.settle();
    const scrape = async () => {
      const res = await fetch(`${broker.url}/metrics`);
      assert.equal(res.status, 200);
      assert.match(res.headers.get('content-type')!, /^text\/plain/);
      return parsePrometheus(await res.text());
    };
    await waitFor(async () => ((await scrape()).get('loupe_audit_upload_seconds_count') ?? 0) >= 1, { what: 'an upload observed in the metrics' });
    const metrics = await scrape();
    assert.equal(metrics.get('loupe_live_sessions'), 0);
    assert.equal(metrics.get('loupe_grants_total{outcome="issued"}'), 1);
    assert.equal(metrics.get('loupe_cdp_messages_total{method="Runtime.evaluate",decision="rewrite"}'), 1);
    assert.equal(metrics.get('loupe_cdp_messages_total{method="HeapProfiler.enable",decision="refused"}'), 1);
    assert.equal(metrics.get('loupe_alerts_total{rule="refusals"}'), 1);
    assert.equal(metrics.get('loupe_sessions_ended_total{reason="client_closed"}'), 1);
    assert.equal(metrics.get('loupe_audit_wal_depth'), 0);
    assert.equal(metrics.get('loupe_audit_ready'), 1);
    assert.ok((metrics.get('loupe_audit_upload_seconds_count') ?? 0) >= 1);
    assert.equal(metrics.get('loupe_watchdog_resumes_total'), 0);
    assert.equal(metrics.get('loupe_captures_total'), 0);
  });

  it('answers /healthz and /readyz', async () => {
    assert.deepEqual(await (await fetch(`${broker.url}/healthz`)).json(), { status: 'ok' });
    const ready = await fetch(`${broker.url}/readyz`);
    assert.equal(ready.status, 200);
    assert.equal(((await ready.json()) as any).audit.state, 'ok');
  });
});

function parsePrometheus(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const match = /^([a-zA-Z_:][\w:]*(?:\{[^}]*\})?) (-?[\d.e+-]+|NaN)$/.exec(line);
    assert.ok(match, `not Prometheus text: ${line}`);
    out.set(match[1]!, Number(match[2]));
  }
  return out;
}
