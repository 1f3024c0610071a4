// needs: s3
import { strict as assert } from 'node:assert';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { AuditTrail } from '../../broker/audit/auditTrail';
import { streamPrefix, type StreamContext } from '../../broker/audit/events';
import { S3AuditStore } from '../../broker/audit/stores/s3Store';
import { readTranscriptFromStore, verifyTranscript } from '../../broker/audit/verify';
import { WriteAheadLog } from '../../broker/audit/wal';
import { loadOrCreateSigningKey, type SigningKey } from '../../broker/identity/keys';
import { freshLockedBucket, s3Settings } from '../support/s3';

/**
 * A real S3 store (RGW) whose client loses the answer to chosen PutObject requests after they were sent and
 * answered: the object lands, the caller sees a network error. The loss is simulated at the transport only.
 */
function storeLosingAnswers(bucket: string): { store: S3AuditStore; loseNextPutAnswer(): void; refuseNextList(): void; lost: string[] } {
  const store = new S3AuditStore({ bucket, ...s3Settings() });
  let lose = false;
  let refuseList = false;
  const lost: string[] = [];
  store.client.middlewareStack.add(
    (next, context) => async (args) => {
      if (refuseList && context.commandName === 'ListObjectsV2Command') {
        refuseList = false;
        throw Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
      }
      const out = await next(args);
      if (lose && context.commandName === 'PutObjectCommand') {
        lose = false;
        lost.push(String((args.input as { Key?: string }).Key));
        throw Object.assign(new Error('socket hang up (answer lost after the request was sent)'), { code: 'ECONNRESET' });
      }
      return out;
    },
    { step: 'initialize', name: 'loseAnswer' },
  );
  return { store, loseNextPutAnswer: () => (lose = true), refuseNextList: () => (refuseList = true), lost };
}

describe('uploads are idempotent: a put whose answer was lost is retried as the same object', () => {
  let dir: string;
  let key: SigningKey;
  let bucket: string;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'loupe-idem-'));
    key = await loadOrCreateSigningKey(dir, 'audit-key');
    bucket = await freshLockedBucket('loupe-idem');
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  const context = (stream: string): StreamContext => ({ stream, kind: 'session', target: 'app', startedAt: new Date().toISOString(), retentionDays: 1 });
  const options = { chunkMaxEvents: 100, uploadIntervalMs: 3600_000, failClosedAfterMs: 3600_000, clock: Date.now };
  const verify = async (store: S3AuditStore, ctx: StreamContext) => verifyTranscript(await readTranscriptFromStore(store, streamPrefix(ctx), false), { keys: [key.publicJwk] });

  it('in the same run: more records arrive before the retry, and the transcript still verifies', async () => {
    const { store, loseNextPutAnswer, lost } = storeLosingAnswers(bucket);
    const { wal } = await WriteAheadLog.open(join(dir, 'wal-a'), { maxBatch: 64, segmentBytes: 1 << 20 });
    const trail = new AuditTrail(wal, store, key, options);
    const ctx = context('4d0c1f6e-0000-4000-8000-000000000001');
    const { stream, opened } = trail.openStream(ctx);
    await opened;
    for (let i = 0; i < 3; i++) await stream.record('cdp.request', { i });
    loseNextPutAnswer();
    await assert.rejects(stream.upload(), /answer lost/);
    assert.equal(lost.length, 1);
    assert.deepEqual(await store.list(streamPrefix(ctx)), [streamPrefix(ctx) + 'chunk-000000000-000000002.ndjson'], 'the put landed');
    for (let i = 3; i < 6; i++) await stream.record('cdp.request', { i });
    await stream.upload();
    await stream.record('session.ended', { endReason: 'client_closed' });
    await stream.close('client_closed');
    const keys = (await store.list(streamPrefix(ctx))).map((k) => k.slice(streamPrefix(ctx).length));
    assert.deepEqual(keys, ['chunk-000000000-000000002.ndjson', 'chunk-000000003-000000005.ndjson', 'chunk-000000006-000000006.ndjson', 'manifest.json']);
    const result = await verify(store, ctx);
    assert.deepEqual(result.problems, []);
    await trail.stop();
    store.destroy();
  });

  it('after a crash: the restart retries the chunk with the boundaries the WAL fixed, and the transcript verifies', async () => {
    const { store, loseNextPutAnswer, refuseNextList } = storeLosingAnswers(bucket);
    const walDir = join(dir, 'wal-b');
    const first = await WriteAheadLog.open(walDir, { maxBatch: 64, segmentBytes: 1 << 20 });
    const crashed = new AuditTrail(first.wal, store, key, options);
    const ctx = context('4d0c1f6e-0000-4000-8000-000000000002');
    const { stream, opened } = crashed.openStream(ctx);
    await opened;
    for (let i = 0; i < 4; i++) await stream.record('cdp.request', { i });
    loseNextPutAnswer();
    await assert.rejects(stream.upload(), /answer lost/);
    for (let i = 4; i < 7; i++) await stream.record('cdp.request', { i });
    await crashed.stop(); // the process dies here: the WAL holds 7 events, the store a chunk of the first 4

    const second = await WriteAheadLog.open(walDir, { maxBatch: 64, segmentBytes: 1 << 20 });
    const restarted = new AuditTrail(second.wal, store, key, options);
    refuseNextList(); // the store is briefly unreachable at the restart: nothing can be learnt from listing it
    await restarted.recover(second.recovered);
    assert.ok(await restarted.settle(20_000), 'the recovered chain closes');
    const keys = (await store.list(streamPrefix(ctx))).map((k) => k.slice(streamPrefix(ctx).length));
    assert.equal(keys[0], 'chunk-000000000-000000003.ndjson');
    assert.equal(keys.at(-1), 'manifest.json');
    const result = await verify(store, ctx);
    assert.deepEqual(result.problems, []);
    assert.equal(result.events.at(-1)!.data.endReason, 'broker_crashed');
    await restarted.stop();
    store.destroy();
  });
});
