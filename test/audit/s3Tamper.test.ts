// needs: s3
import { strict as assert } from 'node:assert';
import { execFile } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { DeleteObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { hashRecord, sha256 } from '../../common/transcript';
import { publishAuditKey } from '../../broker/audit/publishedKeys';
import { seal } from '../../broker/audit/seal';
import { S3AuditStore } from '../../broker/audit/stores/s3Store';
import { loadOrCreateSigningKey } from '../../broker/identity/keys';
import { freshLockedBucket, s3Settings } from '../support/s3';
import { startTarget, type TargetProcess } from '../support/target';
import { basePolicy, startTestBroker, type TestBroker } from '../support/testBroker';
import { waitFor } from '../support/wait';

const cli = join(__dirname, '..', '..', 'dist', 'cli.js');

const run = (args: string[]) =>
  new Promise<{ status: number; stdout: string; stderr: string }>((resolve) =>
    execFile(process.execPath, [cli, ...args], { encoding: 'utf8', timeout: 60_000 }, (err, stdout, stderr) =>
      resolve({ status: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    ),
  );

/**
 * Someone holding credentials that may write to the audit bucket (the broker's own, say) cannot delete or change a
 * locked version, but a PutObject to the same key adds a newer version, and GetObject and ListObjects see the newest.
 * Here they rewrite a session (its reason), re-hash the chain, re-seal every chunk and the manifest with a key of
 * their own, and publish that key under keys/ as a replica would. The first versions are still there, locked.
 */
/** Locked like the broker's own objects, so the newest version carries COMPLIANCE retention too. */
const locked = () => ({ ObjectLockMode: 'COMPLIANCE' as const, ObjectLockRetainUntilDate: new Date(Date.now() + 86_400_000) });

describe('an audit object overwritten in S3 by a newer version', () => {
  let target: TargetProcess;
  let broker: TestBroker;
  let bucket: string;
  let attacker: S3AuditStore;
  let session: { sessionId: string; prefix: string };

  before(async () => {
    target = await startTarget();
    bucket = await freshLockedBucket('loupe-tamper');
    broker = await startTestBroker(
      basePolicy(target.inspector, {
        roles: { ...basePolicy('').roles, auditor: { groups: ['auditors'] } },
        auditors: ['auditor'],
        audit: { store: 's3', s3: { bucket, endpoint: s3Settings().endpoint, region: 'us-east-1', forcePathStyle: true }, retentionDays: 1, chunkMaxEvents: 4 },
      }),
    );
    attacker = new S3AuditStore({ ...s3Settings(), bucket, prefix: '' });
    const { client } = await broker.attach();
    await client.call('Debugger.enable');
    await client.call('Runtime.evaluate', { expression: '1 + 1' }).catch(() => undefined);
    await client.close();
    const auditor = await broker.token('audrey', ['auditors']);
    session = await waitFor(async () => (await broker.api('GET', '/v1/sessions', auditor)).body.sessions.find((s: any) => s.state === 'ended'), {
      what: 'the ended session listed from S3',
      intervalMs: 100,
    });
  });
  after(async () => {
    attacker?.destroy();
    await broker?.close();
    await target?.stop();
  });

  it('is reported as tampered by `loupe audit verify s3://…` and by the report, though every seal verifies', async () => {
    // A retried upload whose first answer was lost adds a second version with the very same bytes: not a change.
    const firstChunk = (await attacker.list(session.prefix)).find((k) => k.includes('/chunk-'))!;
    await attacker.client.send(new PutObjectCommand({ Bucket: bucket, Key: firstChunk, Body: await attacker.get(firstChunk), ...locked() }));
    const untouched = await run(['audit', 'verify', `s3://${bucket}/${session.prefix}`]);
    assert.equal(untouched.status, 0, untouched.stdout + untouched.stderr);

    const key = await loadOrCreateSigningKey(mkdtempSync(join(tmpdir(), 'loupe-forger-')), 'audit');
    await publishAuditKey(attacker, key, new Date(Date.now() + 86_400_000));
    const names = (await attacker.list(session.prefix)).filter((k) => k.includes('/chunk-'));
    assert.ok(names.length >= 2, `several chunks (${names.length})`);
    let prev: string | undefined;
    const chunks: { name: string; firstSeq: number; lastSeq: number; sha256: string; headHash: string }[] = [];
    for (const name of names) {
      const lines = (await attacker.get(name)).toString('utf8').split('\n').filter(Boolean).slice(0, -1);
      const events = lines.map((l) => JSON.parse(l));
      for (const event of events) {
        if (event.seq === 0) event.reason = 'routine maintenance (forged)';
        event.prev = prev ?? event.prev;
        delete event.hash;
        event.hash = hashRecord(event);
        prev = event.hash;
      }
      const text = events.map((e) => JSON.stringify(e) + '\n').join('');
      const info = { name: name.slice(session.prefix.length), firstSeq: events[0].seq, lastSeq: events.at(-1).seq, sha256: sha256(text), headHash: prev! };
      chunks.push(info);
      const jws = await seal(key, { session: session.sessionId, firstSeq: info.firstSeq, lastSeq: info.lastSeq, chunkSha256: info.sha256, headHash: info.headHash }, 'loupe-chunk+jws');
      const body = text + JSON.stringify({ type: 'seal', chunk: info.name, jws }) + '\n';
      await attacker.client.send(new PutObjectCommand({ Bucket: bucket, Key: name, Body: body, ...locked() }));
    }
    const manifest = JSON.parse((await attacker.get(`${session.prefix}manifest.json`)).toString('utf8'));
    const payload = { session: session.sessionId, kind: manifest.kind, chunks, lastSeq: chunks.at(-1)!.lastSeq, headHash: prev!, closedAt: manifest.closedAt, endReason: manifest.endReason };
    const jws = await seal(key, payload, 'loupe-manifest+jws');
    await attacker.client.send(
      new PutObjectCommand({ Bucket: bucket, Key: `${session.prefix}manifest.json`, Body: JSON.stringify({ type: 'manifest', ...payload, context: manifest.context, jws }) + '\n', ...locked() }),
    );

    const verified = await run(['audit', 'verify', `s3://${bucket}/${session.prefix}`]);
    assert.equal(verified.status, 1, `verify accepted the rewritten session:\n${verified.stdout}${verified.stderr}`);
    assert.match(verified.stdout, /first problem: chunk-\d+-\d+\.ndjson: overwritten in the store: [23] versions/);
    assert.match(verified.stdout, /manifest\.json: overwritten in the store: 2 versions/);

    const auditor = await broker.token('audrey', ['auditors']);
    const report = await fetch(`${broker.url}/v1/sessions/${session.sessionId}/report`, { headers: { authorization: `Bearer ${auditor}` } });
    assert.equal(report.status, 200);
    assert.match(await report.text(), /Verification FAILED: chunk-\d+-\d+\.ndjson: overwritten in the store/);
  });

  it('a manifest hidden behind a delete marker is reported as deleted, not as a live session', async () => {
    await attacker.client.send(new DeleteObjectCommand({ Bucket: bucket, Key: `${session.prefix}manifest.json` }));
    const verified = await run(['audit', 'verify', `s3://${bucket}/${session.prefix}`]);
    assert.equal(verified.status, 1, verified.stdout + verified.stderr);
    assert.match(verified.stdout, /manifest\.json: deleted in the store \(a delete marker hides/);
  });
});
