// needs: s3
import { strict as assert } from 'node:assert';
import { after, before, describe, it } from 'node:test';
import { CreateBucketCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import { AuditStoreError } from '../../broker/audit/stores/auditStore';
import { createLockedBucket, createS3Client, S3AuditStore } from '../../broker/audit/stores/s3Store';
import { freshLockedBucket, s3Settings, uniqueBucketName } from '../support/s3';
import { runStoreContract } from './storeContract';

const stores: S3AuditStore[] = [];
function store(options: Partial<ConstructorParameters<typeof S3AuditStore>[0]> & { bucket: string }): S3AuditStore {
  const made = new S3AuditStore({ ...s3Settings(), ...options });
  stores.push(made);
  return made;
}
after(() => stores.forEach((s) => s.destroy()));

const isStoreError = (code: AuditStoreError['code'], message?: RegExp) => (err: unknown) => {
  assert.ok(err instanceof AuditStoreError, `expected an AuditStoreError, got ${String(err)}`);
  assert.equal(err.code, code, err.message);
  if (message) assert.match(err.message, message);
  return true;
};

describe('audit store contract: S3 with Object Lock', () => {
  let bucket = '';
  before(async () => {
    bucket = await freshLockedBucket('loupe-contract');
  });
  runStoreContract(() => store({ bucket }), { enforcesRetention: true });
});

describe('S3 audit store: start-up check and configuration', () => {
  let locked = '';
  let unlocked = '';
  before(async () => {
    locked = await freshLockedBucket('loupe-check');
    unlocked = uniqueBucketName('loupe-nolock');
    const client = createS3Client(s3Settings());
    try {
      await client.send(new CreateBucketCommand({ Bucket: unlocked }));
    } finally {
      client.destroy();
    }
  });

  it('refuses a bucket created without Object Lock, saying how to fix it', async () => {
    await assert.rejects(store({ bucket: unlocked }).check(), isStoreError('misconfigured', new RegExp(`bucket ${unlocked}\\b.*has no Object Lock.*create-bucket .*--object-lock-enabled-for-bucket`)));
  });

  it('refuses a missing bucket, saying how to create it', async () => {
    const missing = uniqueBucketName('loupe-missing');
    await assert.rejects(
      store({ bucket: missing }).check(),
      isStoreError('misconfigured', new RegExp(`bucket ${missing}\\b.*does not exist.*create-bucket --bucket ${missing} --object-lock-enabled-for-bucket`)),
    );
  });

  it('refuses credentials the server does not know', async () => {
    await assert.rejects(
      store({ bucket: locked, credentials: { accessKeyId: 'NOSUCHKEY000000000000', secretAccessKey: 'wrong-secret' } }).check(),
      isStoreError('misconfigured', /InvalidAccessKeyId.*AWS_ACCESS_KEY_ID/),
    );
  });

  it('reports an unreachable endpoint as unavailable', async () => {
    await assert.rejects(store({ bucket: locked, endpoint: 'http://127.0.0.1:9' }).check(), isStoreError('unavailable', /unreachable/));
  });

  it('maps a missing bucket on reads and writes to unavailable with the S3 error name', async () => {
    const missing = store({ bucket: uniqueBucketName('loupe-missing') });
    await assert.rejects(missing.get('a'), isStoreError('unavailable', /NoSuchBucket/));
    await assert.rejects(missing.put('a', Buffer.from('x'), new Date(Date.now() + 60_000)), isStoreError('unavailable', /NoSuchBucket/));
  });

  it('cannot write locked objects into a bucket without Object Lock (check() catches this first)', async () => {
    const err = await store({ bucket: unlocked })
      .put('a', Buffer.from('x'), new Date(Date.now() + 60_000))
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    assert.ok(err instanceof AuditStoreError && err.code === 'unavailable', String(err));
    assert.match(err.message, /InvalidRequest/);
  });

  it('keeps its objects under its prefix and lists keys relative to it', async () => {
    const prefix = `tenant-${Date.now()}/audit`;
    const prefixed = store({ bucket: locked, prefix });
    assert.equal(prefixed.description.startsWith(`s3://${locked}/${prefix}/`), true, prefixed.description);
    await prefixed.put('s1/chunk-1', Buffer.from('one'), new Date(Date.now() + 3600_000));
    await prefixed.put('s1/chunk-2', Buffer.from('two'), new Date(Date.now() + 3600_000));
    assert.deepEqual(await prefixed.list(''), ['s1/chunk-1', 's1/chunk-2']);
    assert.deepEqual(await prefixed.list('s1/chunk-2'), ['s1/chunk-2']);
    assert.equal((await prefixed.get('s1/chunk-1')).toString(), 'one');
    const raw = await prefixed.client.send(new ListObjectsV2Command({ Bucket: locked, Prefix: `${prefix}/` }));
    assert.deepEqual(raw.Contents?.map((o) => o.Key).sort(), [`${prefix}/s1/chunk-1`, `${prefix}/s1/chunk-2`]);
  });

  it('lists past one page of results', async () => {
    const s = store({ bucket: locked, prefix: `paged-${Date.now()}` });
    const names = Array.from({ length: 23 }, (_, i) => `k${String(i).padStart(3, '0')}`);
    await Promise.all(names.map((n) => s.put(n, Buffer.from(n), new Date(Date.now() + 3600_000))));
    // RGW and AWS return at most 1000 keys a page; force small pages to exercise the continuation token.
    let pages = 0;
    s.client.middlewareStack.add(
      (next) => async (args) => {
        const request = args.request as { query?: Record<string, string> };
        if (request.query && 'list-type' in request.query) {
          request.query['max-keys'] = '5';
          pages++;
        }
        return next(args);
      },
      { step: 'build', name: 'smallPages' },
    );
    assert.deepEqual(await s.list(''), names);
    assert.equal(pages, 5);
  });

  it('resolves a refused conditional write (AWS 412 when two writers race) by comparing the content', async () => {
    const s = store({ bucket: locked, prefix: `race-${Date.now()}` });
    await s.put('chunk', Buffer.from('first writer'), new Date(Date.now() + 3600_000));
    // Make the store miss the existing object in its HeadObject and have the PutObject refused as AWS
    // refuses If-None-Match: * on an existing key (RGW ignores the header on versioned buckets).
    const refused: string[] = [];
    s.client.middlewareStack.add(
      (next, context) => async (args) => {
        if (context.commandName === 'HeadObjectCommand' || context.commandName === 'PutObjectCommand') refused.push(context.commandName);
        if (context.commandName === 'HeadObjectCommand') throw Object.assign(new Error('UnknownError'), { name: 'NotFound', $metadata: { httpStatusCode: 404 } });
        if (context.commandName === 'PutObjectCommand')
          throw Object.assign(new Error('At least one of the pre-conditions you specified did not hold'), { name: 'PreconditionFailed', $metadata: { httpStatusCode: 412 } });
        return next(args);
      },
      { step: 'initialize', name: 'simulateRace' },
    );
    await s.put('chunk', Buffer.from('first writer'), new Date(Date.now() + 3600_000));
    await assert.rejects(s.put('chunk', Buffer.from('second writer'), new Date(Date.now() + 3600_000)), isStoreError('conflict'));
    assert.deepEqual(refused, ['HeadObjectCommand', 'PutObjectCommand', 'HeadObjectCommand', 'PutObjectCommand']);
  });

  it('s3Settings() says how to get a server when the environment has none', () => {
    const saved = process.env.S3_ENDPOINT;
    delete process.env.S3_ENDPOINT;
    try {
      assert.throws(() => s3Settings(), /S3_ENDPOINT is not set: run them through `npm test`, which starts the S3 server/);
    } finally {
      process.env.S3_ENDPOINT = saved;
    }
  });

  it('refuses keys that are not plain relative paths', async () => {
    const s = store({ bucket: locked });
    for (const key of ['', '/abs', 'a//b', 'a/../b', 'a/./b', 'tab\there']) {
      await assert.rejects(s.put(key, Buffer.from('x'), new Date(Date.now() + 60_000)), isStoreError('misconfigured', /invalid audit object key/));
    }
  });

  it('createLockedBucket is idempotent and refuses an existing bucket without Object Lock', async () => {
    await createLockedBucket(s3Settings(), locked);
    await createLockedBucket(s3Settings(), locked);
    await store({ bucket: locked }).check();
    await assert.rejects(createLockedBucket(s3Settings(), unlocked), isStoreError('misconfigured', /already exists without Object Lock/));
  });
});
