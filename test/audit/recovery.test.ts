// needs: s3
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createLockedBucket } from '../../broker/audit/stores/s3Store';
import { readTranscriptFromStore, verifyTranscript } from '../../broker/audit/verify';
import { startOwnRgw, uniqueBucketName, type OwnRgw } from '../support/s3';
import { startTarget, type TargetProcess } from '../support/target';
import { basePolicy, startTestBroker, type TestBroker } from '../support/testBroker';
import { waitFor, within } from '../support/wait';

// A cluster of its own (its own directory and free ports), so stopping or freezing it leaves the others alone.
let rgw: OwnRgw | undefined;
const rgwPid = () => Number(readFileSync(join(rgw!.dir, 'run', 'client.rgw.gw.pid'), 'utf8').trim());
/** Stops only radosgw (the cluster's data stays, as when an S3 endpoint goes away and comes back). */
async function stopGateway(): Promise<void> {
  const pid = rgwPid();
  process.kill(pid, 'SIGTERM');
  const gone = () => {
    try {
      process.kill(pid, 0);
      return false;
    } catch {
      return true;
    }
  };
  await waitFor(gone, { what: `radosgw (pid ${pid}) to exit on SIGTERM`, timeoutMs: 10_000, intervalMs: 100 }).catch(() => process.kill(pid, 'SIGKILL'));
}
/** Starts radosgw again on the same cluster, as start-rgw.sh does (it forks into the background). */
function startGateway(): void {
  const started = spawnSync('radosgw', ['-c', join(rgw!.dir, 'ceph.conf'), '-n', 'client.rgw.gw'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 60_000 });
  assert.equal(started.status, 0, started.stderr);
}

const s3Policy = (inspector: string, bucket: string, endpoint: string, audit: Record<string, unknown>) =>
  basePolicy(inspector, {
    roles: { ...basePolicy('').roles, auditor: { groups: ['auditors'] } },
    auditors: ['auditor'],
    audit: { store: 's3', s3: { bucket, endpoint, region: 'us-east-1', forcePathStyle: true }, retentionDays: 1, chunkMaxEvents: 8, uploadInterval: '1s', ...audit },
  });

describe('the audit trail recovers when its S3 store returns', () => {
  let target: TargetProcess;
  let broker: TestBroker | undefined;
  let settings: Record<string, string> = {};
  /** A bucket per test: each test broker has its own audit key. */
  const freshBucket = async () => {
    const bucket = uniqueBucketName('loupe-recovery');
    await createLockedBucket(
      { endpoint: settings.S3_ENDPOINT!, region: 'us-east-1', forcePathStyle: true, credentials: { accessKeyId: settings.AWS_ACCESS_KEY_ID!, secretAccessKey: settings.AWS_SECRET_ACCESS_KEY! } },
      bucket,
    );
    return bucket;
  };
  let frozen: number | undefined;

  before(async () => {
    rgw = startOwnRgw('auditrec');
    settings = rgw.settings;
    process.env.AWS_ACCESS_KEY_ID = settings.AWS_ACCESS_KEY_ID; // the broker reads credentials the usual way
    process.env.AWS_SECRET_ACCESS_KEY = settings.AWS_SECRET_ACCESS_KEY;
    target = await startTarget();
  });
  after(async () => {
    if (frozen) process.kill(frozen, 'SIGCONT');
    await broker?.close();
    await target?.stop();
    rgw?.stop();
  });

  it('reports a silent (frozen) store as not ready within seconds, and ready again once it answers', async (t) => {
    // A bound far beyond the test: readiness must not wait for it.
    broker = await startTestBroker(s3Policy(target.inspector, await freshBucket(), settings.S3_ENDPOINT!, { failClosedAfter: '10m' }));
    const { client } = await broker.attach();
    await client.call('Debugger.enable');
    assert.equal((await fetch(`${broker.url}/readyz`)).status, 200);
    frozen = rgwPid();
    process.kill(frozen, 'SIGSTOP');
    const frozenAt = Date.now();
    const hungPut = broker.broker.audit.store.put(`probe/${Date.now()}.txt`, Buffer.from('x'), new Date(Date.now() + 86400_000));
    hungPut.catch(() => undefined);
    const notReady = await waitFor(
      async () => {
        const res = await fetch(`${broker!.url}/readyz`);
        return res.status === 503 ? ((await res.json()) as any) : undefined;
      },
      { what: 'readyz 503 while the store is frozen', timeoutMs: 20_000, intervalMs: 200 },
    ).catch((err) => {
      process.kill(frozen!, 'SIGCONT'); // the next test needs the store
      frozen = undefined;
      throw err;
    });
    const noticedAfter = Date.now() - frozenAt;
    assert.equal(notReady.audit.state, 'degraded');
    assert.match(notReady.audit.error, /has not answered for/);
    assert.ok(noticedAfter < 10_000, `not ready ${noticedAfter} ms after the store froze`);
    t.diagnostic(`not ready ${noticedAfter} ms after the store froze`);
    // Within the bound the session goes on: records wait in the WAL.
    assert.equal((await client.call('Runtime.evaluate', { expression: '1 + 1', returnByValue: true })).result.value, 2);
    // A call to the silent store ends (it is retried later), rather than holding the uploader for good.
    const failedAfter = await within(
      hungPut.then(
        () => 'answered',
        (err: Error) => (/timeout|unavailable|failed/i.test(err.message) ? Date.now() - frozenAt : `other error: ${err.message}`),
      ),
      40_000,
      'still waiting after 40 s',
    );
    assert.equal(typeof failedAfter, 'number', String(failedAfter));
    t.diagnostic(`a put to the frozen store failed after ${String(failedAfter)} ms`);
    process.kill(frozen, 'SIGCONT');
    frozen = undefined;
    const thawedAt = Date.now();
    await waitFor(async () => ((await fetch(`${broker!.url}/readyz`)).status === 200 ? true : undefined), { what: 'readyz 200 after the store answers again', timeoutMs: 30_000, intervalMs: 200 });
    assert.ok(Date.now() - thawedAt < 25_000);
    t.diagnostic(`ready again ${Date.now() - thawedAt} ms after the store was thawed`);
    await client.close();
    await broker.close();
    broker = undefined;
  });

  it("after failing closed, refuses grants with 503 audit_unavailable, and attaches again within seconds of the store's return; every session verifies", async (t) => {
    await broker?.close();
    broker = await startTestBroker(s3Policy(target.inspector, await freshBucket(), settings.S3_ENDPOINT!, { failClosedAfter: '3s' }));
    const first = await broker.attach();
    await first.client.call('Debugger.enable');
    const stopping = stopGateway();
    const ticker = setInterval(() => void first.client.send('Runtime.evaluate', { expression: '2', returnByValue: true }).catch(() => undefined), 300);
    const closed = await first.client.closed;
    clearInterval(ticker);
    await stopping;
    assert.equal(closed.code, 4005);
    const ready = await fetch(`${broker.url}/readyz`);
    assert.equal(ready.status, 503);
    assert.equal(((await ready.json()) as any).audit.state, 'failed');

    const devToken = await broker.token('dev', ['devs']);
    const refused = await broker.api('POST', '/v1/grants', devToken, { target: 'app', mode: 'pause', durationSeconds: 60, reason: 'during the outage' });
    assert.equal(refused.status, 503);
    assert.equal(refused.body.error.code, 'audit_unavailable');
    assert.match(refused.body.error.message, /audit trail is unavailable/);

    startGateway();
    const backAt = Date.now();
    const second = await waitFor(async () => broker!.attach(), { what: 'an attach after the store returned', timeoutMs: 30_000, intervalMs: 200 });
    const attachedAfter = Date.now() - backAt;
    assert.ok(attachedAfter < 15_000, `attached ${attachedAfter} ms after the store returned`);
    t.diagnostic(`attached ${attachedAfter} ms after the store returned`);
    assert.equal((await fetch(`${broker.url}/readyz`)).status, 200);
    assert.equal((await second.client.call('Runtime.evaluate', { expression: '3', returnByValue: true })).result.value, 3);
    await second.client.close();

    // Both sessions end up complete and verified in the store: the one cut by the outage, and the one after it.
    const store = broker.broker.audit.store;
    const keys = broker.broker.auditKeys;
    const prefixes = await waitFor(
      async () => {
        const manifests = (await store.list('sessions/')).filter((k) => k.endsWith('manifest.json'));
        return manifests.length >= 2 ? manifests.map((k) => k.slice(0, k.lastIndexOf('/') + 1)) : undefined;
      },
      { what: 'both sessions closed in the store', timeoutMs: 60_000, intervalMs: 200 },
    );
    for (const prefix of prefixes) {
      const result = await verifyTranscript(await readTranscriptFromStore(store, prefix, false), keys);
      assert.deepEqual(result.problems, [], prefix);
      assert.ok(result.ok);
    }
    // The outage is in the broker's grant stream: when it failed closed and why, and when it recovered.
    const outage = await waitFor(
      async () => {
        const types: string[] = [];
        for (const key of await store.list('grants/')) {
          if (!key.includes('/chunk-')) continue;
          for (const line of (await store.get(key)).toString('utf8').split('\n')) if (line && !line.includes('"type":"seal"')) types.push(JSON.parse(line).type);
        }
        const degraded = types.indexOf('audit.degraded');
        return degraded >= 0 && types.indexOf('audit.recovered') > degraded ? types : undefined;
      },
      { what: 'audit.degraded and audit.recovered in the grant stream', timeoutMs: 30_000, intervalMs: 200 },
    );
    assert.ok(outage.includes('audit.recovered'));
  });
});
