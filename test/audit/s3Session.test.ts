// needs: s3
import { strict as assert } from 'node:assert';
import { execFile, spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { stringify } from 'yaml';
import { CreateBucketCommand } from '@aws-sdk/client-s3';
import { createS3Client } from '../../broker/audit/stores/s3Store';
import { CdpClient } from '../support/cdpClient';
import { freshLockedBucket, s3Settings, startOwnRgw, uniqueBucketName, type OwnRgw } from '../support/s3';
import { fixtures, markerLine, startTarget, type TargetProcess } from '../support/target';
import { basePolicy, startTestBroker, type TestBroker } from '../support/testBroker';
import { waitFor } from '../support/wait';

const appLine = markerLine(join(fixtures, 'app.js'), 'work');
const root = join(__dirname, '..', '..');
const cli = join(root, 'dist', 'cli.js');

const s3Policy = (inspector: string, bucket: string, endpoint: string, audit: Record<string, unknown> = {}) =>
  basePolicy(inspector, {
    roles: { ...basePolicy('').roles, auditor: { groups: ['auditors'] } },
    auditors: ['auditor'],
    audit: { store: 's3', s3: { bucket, endpoint, region: 'us-east-1', forcePathStyle: true }, retentionDays: 1, chunkMaxEvents: 8, ...audit },
  });

const run = (args: string[], env: NodeJS.ProcessEnv = process.env) =>
  new Promise<{ status: number; stdout: string; stderr: string }>((resolve) =>
    execFile(process.execPath, [cli, ...args], { env, encoding: 'utf8' }, (err, stdout, stderr) => resolve({ status: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr })),
  );

describe('audit trail in S3 with Object Lock', () => {
  let target: TargetProcess;
  let broker: TestBroker;
  let bucket: string;
  before(async () => {
    target = await startTarget();
    bucket = await freshLockedBucket('loupe-session');
    broker = await startTestBroker(s3Policy(target.inspector, bucket, s3Settings().endpoint));
  });
  after(async () => {
    await broker.close();
    await target.stop();
  });

  it('stores a session as sealed, COMPLIANCE-locked objects that `loupe audit verify s3://…` accepts', async () => {
    const { client } = await broker.attach();
    await client.call('Debugger.enable');
    const { breakpointId } = await client.call('Debugger.setBreakpointByUrl', { lineNumber: appLine, urlRegex: 'app\\.js$' });
    const paused = await client.waitEvent('Debugger.paused');
    await client.call('Debugger.evaluateOnCallFrame', { callFrameId: paused.params.callFrames[0].callFrameId, expression: 'local.label' });
    await client.call('Debugger.removeBreakpoint', { breakpointId });
    await client.call('Debugger.resume');
    await client.close();
    const auditor = await broker.token('audrey', ['auditors']);
    const session = await waitFor(async () => (await broker.api('GET', '/v1/sessions', auditor)).body.sessions.find((s: any) => s.state === 'ended'), {
      what: 'the ended session listed from S3',
      intervalMs: 100,
    });
    const keys = await broker.broker.audit.store.list(session.prefix);
    assert.ok(keys.filter((k) => k.includes('/chunk-')).length >= 2);
    for (const key of keys) {
      const retention = await broker.broker.audit.store.retention(key);
      assert.equal(retention.mode, 'COMPLIANCE', key);
      assert.ok(retention.retainUntil! > new Date(Date.now() + 23 * 3600_000), `${key} retained about a day`);
    }
    const location = `s3://${bucket}/${session.prefix}`;
    const verified = await run(['audit', 'verify', location]);
    assert.equal(verified.status, 0, verified.stdout + verified.stderr);
    assert.match(verified.stdout, /^OK: session .*chain intact, manifest sealed/);
    assert.match(verified.stdout, /every object is under COMPLIANCE retention/);
  });

  it('refuses to start on a bucket without Object Lock, saying so', async () => {
    const plain = uniqueBucketName('loupe-nolock');
    await createS3Client(s3Settings()).send(new CreateBucketCommand({ Bucket: plain }));
    const dir = mkdtempSync(join(tmpdir(), 'loupe-nolock-'));
    const configFile = join(dir, 'loupe.yaml');
    writeFileSync(configFile, stringify({ ...s3Policy('127.0.0.1:9', plain, s3Settings().endpoint), stateDir: join(dir, 'state') }));
    const started = spawnSync(process.execPath, [cli, 'broker', '--config', configFile], { encoding: 'utf8', timeout: 30_000 });
    assert.equal(started.status, 1);
    assert.match(started.stderr, new RegExp(`audit store s3://${plain}.*Object Lock`, 's'));
  });
});

describe('fail closed when the S3 server stops mid-session', () => {
  let rgw: OwnRgw | undefined;
  let target: TargetProcess;
  let broker: TestBroker | undefined;
  let settings: Record<string, string> = {};
  before(() => {
    // A cluster of its own (its own directory and free ports), so stopping it leaves the shared one to the other tests.
    rgw = startOwnRgw('failclosed');
    settings = rgw.settings;
  });
  after(async () => {
    await broker?.close();
    await target?.stop();
    rgw?.stop();
  });

  it('keeps recording to the WAL within the bound, then ends the session with the target resumed and refuses new work', async () => {
    target = await startTarget();
    const connection = {
      endpoint: settings.S3_ENDPOINT!,
      region: 'us-east-1',
      forcePathStyle: true as const,
      credentials: { accessKeyId: settings.AWS_ACCESS_KEY_ID!, secretAccessKey: settings.AWS_SECRET_ACCESS_KEY! },
    };
    const { createLockedBucket } = await import('../../broker/audit/stores/s3Store');
    const bucket = uniqueBucketName('loupe-failclosed');
    await createLockedBucket(connection, bucket);
    process.env.AWS_ACCESS_KEY_ID = connection.credentials.accessKeyId; // the broker reads credentials the usual way
    process.env.AWS_SECRET_ACCESS_KEY = connection.credentials.secretAccessKey;
    broker = await startTestBroker(s3Policy(target.inspector, bucket, connection.endpoint, { failClosedAfter: '4s', uploadInterval: '1s' }));
    const observer = await CdpClient.connect(target.wsUrl);
    await observer.call('Debugger.enable'); // so only the broker's cleanup can resume the target
    const { client } = await broker.attach();
    await client.call('Debugger.enable');
    await client.call('Debugger.setBreakpointByUrl', { lineNumber: appLine, urlRegex: 'app\\.js$' });
    await client.waitEvent('Debugger.paused');
    assert.equal((await fetch(`${broker.url}/readyz`)).status, 200);

    // Asynchronously: the broker runs in this process and must keep working while the server stops.
    const stopping = new Promise<number>((resolve) => execFile('bash', [join(root, 'scripts', 's3', 'stop-rgw.sh'), rgw!.dir], (err) => resolve(err ? 1 : 0)));
    const stoppedAt = Date.now();
    // Within the bound the WAL takes the records and the session goes on.
    const early = await client.send('Runtime.evaluate', { expression: '1 + 1', returnByValue: true });
    assert.equal(early.result?.result?.value, 2);
    const ticker = setInterval(() => void client.send('Runtime.evaluate', { expression: '2', returnByValue: true }).catch(() => undefined), 300);
    const closed = await client.closed;
    clearInterval(ticker);
    assert.equal(await stopping, 0);
    const after = Date.now() - stoppedAt;
    assert.equal(closed.code, 4005);
    assert.match(closed.reason, /audit trail unavailable/);
    // The bound is 4 s of records waiting; the server takes a few seconds to go down.
    assert.ok(after >= 4000 && after < 20_000, `ended ${after} ms after the store began to stop`);
    await target.ticksAdvance(3); // resumed by the broker's cleanup, with another debugger attached
    const ready = await fetch(`${broker.url}/readyz`);
    assert.equal(ready.status, 503);
    assert.equal(((await ready.json()) as any).audit.state, 'failed');
    await assert.rejects(broker.attach(), /409|audit trail is unavailable/);
    await observer.close();
  });
});
