import { strict as assert } from 'node:assert';
import { once } from 'node:events';
import { existsSync, mkdtempSync, readFileSync, statSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, before, describe, it } from 'node:test';
import { webhookConcurrency, webhookQueueLimit } from '../../broker/alerts/sinks';
import { startTarget, type TargetProcess } from '../support/target';
import { alertRulesOff, basePolicy, startTestBroker, type TestBroker } from '../support/testBroker';
import { waitFor } from '../support/wait';

async function serve(handler: Parameters<typeof createServer>[1]): Promise<{ server: Server; url: string }> {
  const server = createServer(handler);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook` };
}

function stop(server: Server): Promise<void> {
  server.closeAllConnections();
  return new Promise((resolve) => server.close(() => resolve()));
}

function policy(inspector: string, alerts: Record<string, unknown>, hookUrl: string, maxAttempts = 1, format = 'json') {
  const base = basePolicy(inspector);
  return {
    ...base,
    alerting: { rules: alertRulesOff, webhooks: [{ url: hookUrl, maxAttempts, format }] },
    targets: { app: { ...base.targets.app, alerts } },
  };
}

/** The dead letters written so far (whole lines: the broker may be appending one). */
const deadLetters = (broker: TestBroker): any[] =>
  existsSync(broker.config.alerting.deadLetterFile)
    ? readFileSync(broker.config.alerting.deadLetterFile, 'utf8')
        .split('\n')
        .slice(0, -1)
        .map((l) => JSON.parse(l))
    : [];

/** One refused method is one refusals alert (count 1). */
async function fireOne(broker: TestBroker): Promise<void> {
  const { client } = await broker.attach();
  await client.send('Profiler.start');
  await client.close();
}

describe('alert webhooks that misbehave (real broker, real receivers)', () => {
  let target: TargetProcess;
  let broker: TestBroker | undefined;
  const servers: Server[] = [];
  before(async () => {
    target = await startTarget();
  });
  afterEach(async () => {
    await Promise.all(servers.splice(0).map(stop));
    await broker?.close();
    broker = undefined;
  });
  after(async () => target.stop());

  it('a redirect is not followed: the alert and its signature never reach the host the receiver points to', async () => {
    const stolen: string[] = [];
    const elsewhere = await serve((req, res) => {
      let body = '';
      req.on('data', (c) => (body += c));
      req.on('end', () => {
        stolen.push(`${req.method} ${body}`);
        res.end();
      });
    });
    const redirecting = await serve((req, res) => {
      req.resume();
      res.writeHead(307, { location: elsewhere.url.replace('127.0.0.1', 'localhost') });
      res.end();
    });
    servers.push(elsewhere.server, redirecting.server);
    broker = await startTestBroker(policy(target.inspector, { refusals: { count: 1, withinSeconds: 60 } }, redirecting.url));
    await fireOne(broker);
    await waitFor(() => deadLetters(broker!).length > 0, { what: 'a dead letter' });
    assert.deepEqual(stolen, [], 'the alert was re-POSTed to the redirect target');
    const letter = deadLetters(broker)[0];
    assert.equal(letter.url, redirecting.url);
    assert.match(letter.lastError, /^HTTP 307: redirects are not followed/);
  });

  it('an answer with an endless body is not read: the delivery ends at once and the broker does not buffer it', async () => {
    let written = 0;
    let closedAt = 0;
    const chunk = Buffer.alloc(1 << 20, 0x61);
    const endless = await serve((req, res) => {
      req.resume();
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      res.on('close', () => (closedAt ||= Date.now()));
      const pump = () => {
        // Stops at 512 MiB so the old behaviour (read it all) ends too.
        let more = true;
        while (more && !res.destroyed && written < 512 << 20) {
          more = res.write(chunk);
          written += chunk.length;
        }
        if (written >= 512 << 20) res.end();
        else if (!res.destroyed) res.once('drain', pump);
      };
      pump();
    });
    servers.push(endless.server);
    broker = await startTestBroker(policy(target.inspector, { refusals: { count: 1, withinSeconds: 60 } }, endless.url));
    await fireOne(broker);
    await waitFor(() => closedAt > 0, { what: 'the broker to close the answer', timeoutMs: 15_000 });
    assert.ok(written < 64 << 20, `the broker read ${(written / 2 ** 20).toFixed(0)} MiB of the receiver's answer`);
    assert.deepEqual(deadLetters(broker), [], 'a 200 is a delivery');
  });

  it('Slack: text a user typed is escaped, so an alert never mentions @channel or shows a link under words of their choosing', async () => {
    const bodies: string[] = [];
    const slack = await serve((req, res) => {
      let body = '';
      req.on('data', (c) => (body += c));
      req.on('end', () => {
        bodies.push(body);
        res.end();
      });
    });
    servers.push(slack.server);
    broker = await startTestBroker(policy(target.inspector, { sensitiveReads: { names: ['password'] } }, slack.url, 1, 'slack'));
    const { client } = await broker.attach();
    await client.send('Runtime.evaluate', { expression: 'password + "<!channel> <https://evil.example/approve|Approve> &"' });
    await waitFor(() => bodies.length > 0, { what: 'the Slack delivery' });
    await client.close();
    const body = JSON.parse(bodies[0]!);
    const texts = [body.text, ...body.blocks.flatMap((b: any) => (b.text ? [b.text.text] : b.elements.map((e: any) => e.text)))];
    for (const text of texts) assert.doesNotMatch(text, /<!channel>|<https?:/, text);
    assert.match(body.text, /&lt;!channel&gt; &lt;https:\/\/evil\.example\/approve\|Approve&gt; &amp;/);
  });

  it('a burst of alerts to a receiver that never answers: a few connections at once, the rest wait (bounded) or go to the dead-letter file', async () => {
    let concurrent = 0;
    let most = 0;
    const silent = await serve((req) => {
      req.resume();
      most = Math.max(most, ++concurrent);
      req.socket.once('close', () => concurrent--);
    });
    servers.push(silent.server);
    broker = await startTestBroker(policy(target.inspector, { sensitiveReads: { names: ['password'] } }, silent.url));
    const { client } = await broker.attach();
    // Each expression differs, so each is its own sensitiveReads alert.
    const burst = webhookQueueLimit + 300;
    for (let from = 0; from < burst; from += 100)
      await Promise.all(Array.from({ length: Math.min(100, burst - from) }, (_, i) => client.send('Runtime.evaluate', { expression: `password + ${from + i}` })));
    // Past the queue, alerts are written at once; a slot frees only as a delivery times out (5 s), so under any load
    // most of the last 300 find the queue full.
    const unsent = () => deadLetters(broker!).filter((l) => l.attempts === 0);
    await waitFor(() => unsent().length >= 100, { what: () => `dead letters for the alerts past the queue (${unsent().length} so far)`, timeoutMs: 20_000 });
    assert.ok(most <= webhookConcurrency, `${most} deliveries at once to one webhook`);
    // The first alerts were sent (and time out); those past the queue were not.
    const overflow = unsent();
    assert.ok(overflow.every((l) => l.attempts === 0 && /alerts already wait for this webhook/.test(l.lastError) && l.alert.rule === 'sensitiveReads'));
    assert.equal(new Set(overflow.map((l) => l.alert.id)).size, overflow.length);
    await client.close();
  });

  it('at shutdown, the alerts still waiting for a webhook, and those whose delivery is cut, are written to the dead-letter file, not lost', async () => {
    const silent = await serve((req) => req.resume());
    servers.push(silent.server);
    // Outside the state directory, which the test broker deletes when it closes.
    const deadLetterFile = join(mkdtempSync(join(tmpdir(), 'loupe-dead-letters-')), 'alerts.ndjson');
    const base = policy(target.inspector, { sensitiveReads: { names: ['password'] } }, silent.url);
    broker = await startTestBroker({ ...base, alerting: { ...base.alerting, deadLetterFile } });
    const { client } = await broker.attach();
    const fired = webhookConcurrency + 6;
    for (let i = 0; i < fired; i++) await client.call('Runtime.evaluate', { expression: `password + ${i}` }).catch(() => undefined);
    await waitFor(async () => (await broker!.api('GET', '/v1/alerts', await broker!.token('olga', ['owners']))).body.alerts.length >= fired, { what: `${fired} alerts` });
    await client.close();
    await broker.close();
    const letters = deadLetters(broker);
    broker = undefined;
    // Every alert is in the file: those that waited, unsent; those under way, cut after their grace.
    assert.equal(letters.length, fired, JSON.stringify(letters.map((l) => l.lastError)));
    const errors = JSON.stringify(letters.map((l) => l.lastError));
    const waited = letters.filter((l) => l.attempts === 0 && /the broker shut down while the alert waited/.test(l.lastError));
    const cut = letters.filter((l) => l.attempts === 1 && /^the broker shut down during the delivery/.test(l.lastError));
    // On a machine slow enough, a delivery reaches its 5 s timeout before the shutdown, and the next one starts.
    const timedOut = letters.filter((l) => l.attempts === 1 && l.lastError === 'no answer within 5 s');
    assert.equal(waited.length + cut.length + timedOut.length, fired, errors);
    assert.ok(cut.length > 0 && cut.length <= webhookConcurrency, errors);
    assert.equal(new Set(letters.map((l) => l.alert.id)).size, fired);
  });

  it('the dead-letter file and the ECS export, outside the state directory, are readable by the broker user alone', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'loupe-alert-files-'));
    const [deadLetterFile, ecs] = [join(dir, 'dead', 'letters.ndjson'), join(dir, 'ecs', 'audit.ndjson')];
    const refusing = await serve((req, res) => {
      req.resume();
      res.statusCode = 503;
      res.end();
    });
    servers.push(refusing.server);
    const base = policy(target.inspector, { refusals: { count: 1, withinSeconds: 60 } }, refusing.url);
    const umask = process.umask(0o022);
    try {
      broker = await startTestBroker({ ...base, alerting: { ...base.alerting, deadLetterFile, ecs } });
      await fireOne(broker);
      await waitFor(() => existsSync(deadLetterFile) && existsSync(ecs), { what: 'the dead letter and the ECS export' });
    } finally {
      process.umask(umask);
    }
    for (const file of [deadLetterFile, ecs]) assert.equal((statSync(file).mode & 0o777).toString(8), '600', file);
  });
});
