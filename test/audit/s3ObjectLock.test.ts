// needs: s3
import { strict as assert } from 'node:assert';
import { createHash } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { DeleteObjectCommand, GetObjectCommand, GetObjectRetentionCommand, HeadObjectCommand, ListObjectVersionsCommand, PutObjectCommand, PutObjectRetentionCommand } from '@aws-sdk/client-s3';
import { S3AuditStore } from '../../broker/audit/stores/s3Store';
import { freshLockedBucket, s3Settings } from '../support/s3';

/**
 * What Object Lock guarantees to the audit trail, shown against the real server (Ceph RGW): a version
 * written by the store cannot be deleted, replaced or have its retention shortened, even with the
 * credentials the broker itself uses.
 */

const s3Error = (name: string, status: number) => (err: unknown) => {
  const e = err as { name?: string; $metadata?: { httpStatusCode?: number } };
  // RGW's error bodies differ from AWS's in wording (some have none): compare names and statuses only.
  assert.equal(e.name, name, String(err));
  assert.equal(e.$metadata?.httpStatusCode, status);
  return true;
};

const text = async (body: { transformToString(): Promise<string> } | undefined) => (body ? body.transformToString() : '');

describe('S3 Object Lock on the audit bucket (real server)', () => {
  let store: S3AuditStore;
  let bucket = '';
  const retainUntil = () => new Date(Date.now() + 24 * 3600 * 1000);

  before(async () => {
    bucket = await freshLockedBucket('loupe-lock');
    store = new S3AuditStore({ ...s3Settings(), bucket, prefix: 'audit' });
    await store.check();
  });
  after(() => store?.destroy());

  async function putAndGetVersion(key: string, body: string): Promise<string> {
    await store.put(key, Buffer.from(body), retainUntil());
    const head = await store.client.send(new HeadObjectCommand({ Bucket: bucket, Key: `audit/${key}` }));
    assert.equal(head.ObjectLockMode, 'COMPLIANCE');
    assert.ok(head.VersionId, 'an Object Lock bucket is versioned');
    return head.VersionId!;
  }

  it('refuses to delete a locked version (AccessDenied), with or without BypassGovernanceRetention', async () => {
    const versionId = await putAndGetVersion('session-1/chunk-1', 'evidence');
    await assert.rejects(store.client.send(new DeleteObjectCommand({ Bucket: bucket, Key: 'audit/session-1/chunk-1', VersionId: versionId })), s3Error('AccessDenied', 403));
    await assert.rejects(
      store.client.send(new DeleteObjectCommand({ Bucket: bucket, Key: 'audit/session-1/chunk-1', VersionId: versionId, BypassGovernanceRetention: true })),
      s3Error('AccessDenied', 403),
    );
    assert.equal((await store.get('session-1/chunk-1')).toString(), 'evidence');
  });

  it('a delete without a version only adds a delete marker; the locked version stays readable', async () => {
    const versionId = await putAndGetVersion('session-2/chunk-1', 'kept');
    const marker = await store.client.send(new DeleteObjectCommand({ Bucket: bucket, Key: 'audit/session-2/chunk-1' }));
    assert.equal(marker.DeleteMarker, true);
    const old = await store.client.send(new GetObjectCommand({ Bucket: bucket, Key: 'audit/session-2/chunk-1', VersionId: versionId }));
    assert.equal(await text(old.Body), 'kept');
  });

  it('cannot be overwritten in place: a PutObject to the same key makes a new version and the old one stays', async () => {
    const versionId = await putAndGetVersion('session-3/chunk-1', 'original');
    // Bypass the store (which refuses other bytes) as an attacker with the broker's credentials would.
    const forged = await store.client.send(new PutObjectCommand({ Bucket: bucket, Key: 'audit/session-3/chunk-1', Body: Buffer.from('forged') }));
    assert.ok(forged.VersionId && forged.VersionId !== versionId);
    const versions = await store.client.send(new ListObjectVersionsCommand({ Bucket: bucket, Prefix: 'audit/session-3/chunk-1' }));
    assert.deepEqual(versions.Versions?.map((v) => v.VersionId).sort(), [versionId, forged.VersionId].sort());
    const old = await store.client.send(new GetObjectCommand({ Bucket: bucket, Key: 'audit/session-3/chunk-1', VersionId: versionId }));
    assert.equal(await text(old.Body), 'original');
    // ...and the original version is still locked.
    const retention = await store.client.send(new GetObjectRetentionCommand({ Bucket: bucket, Key: 'audit/session-3/chunk-1', VersionId: versionId }));
    assert.equal(retention.Retention?.Mode, 'COMPLIANCE');
  });

  it('refuses to shorten the retention or to weaken COMPLIANCE to GOVERNANCE; extending is allowed', async () => {
    const versionId = await putAndGetVersion('session-4/chunk-1', 'x');
    const key = 'audit/session-4/chunk-1';
    const current = (await store.retention('session-4/chunk-1')).retainUntil!;
    const shorter = new Date(current.getTime() - 3600_000);
    await assert.rejects(
      store.client.send(new PutObjectRetentionCommand({ Bucket: bucket, Key: key, VersionId: versionId, Retention: { Mode: 'COMPLIANCE', RetainUntilDate: shorter } })),
      s3Error('AccessDenied', 403),
    );
    await assert.rejects(
      store.client.send(new PutObjectRetentionCommand({ Bucket: bucket, Key: key, VersionId: versionId, Retention: { Mode: 'GOVERNANCE', RetainUntilDate: current } })),
      s3Error('AccessDenied', 403),
    );
    const longer = new Date(current.getTime() + 3600_000);
    await store.client.send(new PutObjectRetentionCommand({ Bucket: bucket, Key: key, VersionId: versionId, Retention: { Mode: 'COMPLIANCE', RetainUntilDate: longer } }));
    const after = await store.retention('session-4/chunk-1');
    assert.equal(after.mode, 'COMPLIANCE');
    assert.ok(Math.abs(after.retainUntil!.getTime() - longer.getTime()) < 1000, after.retainUntil!.toISOString());
  });

  it('refuses a PutObject whose Content-MD5 does not match the body (BadDigest): RGW checks MD5', async () => {
    await assert.rejects(
      store.client.send(
        new PutObjectCommand({
          Bucket: bucket,
          Key: 'audit/session-5/chunk-1',
          Body: Buffer.from('tampered in transit'),
          ContentMD5: createHash('md5').update('what was sent').digest('base64'),
          ObjectLockMode: 'COMPLIANCE',
          ObjectLockRetainUntilDate: retainUntil(),
        }),
      ),
      s3Error('BadDigest', 400),
    );
  });

  it('put() sends Content-MD5, x-amz-checksum-sha256, the lock headers and If-None-Match (AWS requires a checksum; RGW does not check)', async () => {
    const sent: Record<string, string>[] = [];
    const watched = new S3AuditStore({ ...s3Settings(), bucket, prefix: 'audit' });
    try {
      watched.client.middlewareStack.add(
        (next, context) => async (args) => {
          if (context.commandName === 'PutObjectCommand') sent.push({ ...(args.request as { headers: Record<string, string> }).headers });
          return next(args);
        },
        { step: 'finalizeRequest', name: 'recordPutHeaders', priority: 'low' },
      );
      const body = Buffer.from('{"seq":0}\n{"seq":1}\n');
      const until = retainUntil();
      await watched.put('session-6/chunk-1', body, until);
      assert.equal(sent.length, 1);
      const headers = Object.fromEntries(Object.entries(sent[0]).map(([k, v]) => [k.toLowerCase(), v]));
      assert.equal(headers['content-md5'], createHash('md5').update(body).digest('base64'));
      assert.equal(headers['x-amz-checksum-sha256'], createHash('sha256').update(body).digest('base64'));
      assert.equal(headers['x-amz-object-lock-mode'], 'COMPLIANCE');
      assert.ok(Math.abs(new Date(headers['x-amz-object-lock-retain-until-date']).getTime() - until.getTime()) < 1000, headers['x-amz-object-lock-retain-until-date']);
      assert.equal(headers['if-none-match'], '*');
      // The body goes as a plain payload, not aws-chunked with a trailer (RGW 16 answers 411 to that).
      assert.equal(headers['content-encoding'], undefined);
      assert.equal(headers['x-amz-trailer'], undefined);
      // A retried put of the same bytes does not write again.
      await watched.put('session-6/chunk-1', body, until);
      assert.equal(sent.length, 1);
    } finally {
      watched.destroy();
    }
  });
});
