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

/** A real S3 store (RGW) whose client notes every PutObject it sends: key, body size, and when. */
function watchedStore(bucket: string): { store: S3AuditStore; puts: { key: string; bytes: number; at: number }[] } {
  const store = new S3AuditStore({ bucket, ...s3Settings() });
  const puts: { key: string; bytes: number; at: number }[] = [];
  store.client.middlewareStack.add(
    (next, context) => async (args) => {
      const out = await next(args);
      const input = args.input as { Key?: string; Body?: Buffer };
      if (context.commandName === 'PutObjectCommand') puts.push({ key: String(input.Key), bytes: input.Body?.length ?? 0, at: performance.now() });
      return out;
    },
    { step: 'initialize', name: 'countPuts' },
  );
  return { store, puts };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A recorded request much like DebugSession's record of a gated Runtime.evaluate. */
const evaluateRecord = (i: number) => ({
  id: i,
  targetId: i + 1,
  method: 'Runtime.evaluate',
  params: { expression: `order.items[${i % 10}].price`, throwOnSideEffect: true, timeout: 1000, disableBreaks: true },
  decision: 'rewrite',
});

describe('uploads under load: chunks sized by bytes and time', () => {
  let dir: string;
  let key: SigningKey;
  let bucket: string;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'loupe-rate-'));
    key = await loadOrCreateSigningKey(dir, 'audit-key');
    bucket = await freshLockedBucket('loupe-rate');
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  const context = (stream: string): StreamContext => ({ stream, kind: 'session', target: 'app', startedAt: new Date().toISOString(), retentionDays: 1 });
  const verify = async (store: S3AuditStore, ctx: StreamContext) => verifyTranscript(await readTranscriptFromStore(store, streamPrefix(ctx), false), { keys: [key.publicJwk] });

  /**
   * Records `perSecond` records a second for `seconds` through a running trail (its upload round every second),
   * then closes the stream; returns the chunk PUTs made while recording, and the stream's transcript check.
   */
  async function busySession(label: string, options: { chunkMaxEvents: number; chunkMaxBytes: number }, perSecond: number, seconds: number) {
    const { store, puts } = watchedStore(bucket);
    const { wal } = await WriteAheadLog.open(join(dir, `wal-${label}`), { maxBatch: 512, segmentBytes: 8 << 20 });
    const trail = new AuditTrail(wal, store, key, { ...options, uploadIntervalMs: 1000, failClosedAfterMs: 60_000, clock: Date.now });
    trail.start();
    const ctx = context(`4d0c1f6e-0000-4000-8000-${label.padStart(12, '0')}`);
    const { stream, opened } = trail.openStream(ctx);
    await opened;
    const tickMs = 50;
    const perTick = Math.round((perSecond * tickMs) / 1000);
    const started = performance.now();
    let recorded = 0;
    const inFlight: Promise<unknown>[] = [];
    for (let tick = 0; tick < (seconds * 1000) / tickMs; tick++) {
      for (let i = 0; i < perTick; i++) inFlight.push(stream.record('cdp.evaluate', evaluateRecord(recorded++)));
      await sleep(Math.max(0, started + (tick + 1) * tickMs - performance.now()));
    }
    await Promise.all(inFlight);
    const elapsedS = (performance.now() - started) / 1000;
    const whileBusy = puts.filter((p) => p.key.includes('/chunk-')).length;
    await stream.record('session.ended', { endReason: 'client_closed' });
    await stream.close('client_closed');
    const result = await verify(store, ctx);
    await trail.stop();
    store.destroy();
    const chunks = puts.filter((p) => p.key.includes('/chunk-'));
    return { whileBusy, elapsedS, recorded, chunks, result };
  }

  it('a session recording 1,000 records a second costs about one PUT a second, not one per record or two', async () => {
    const seconds = 3;
    const { whileBusy, elapsedS, recorded, chunks, result } = await busySession('1', { chunkMaxEvents: 5000, chunkMaxBytes: 1 << 20 }, 1000, seconds);
    assert.deepEqual(result.problems, [], 'the transcript verifies');
    assert.equal(result.events.length, recorded + 1, 'every record is in the store');
    // One upload round a second (uploadIntervalMs), and no chunk filled up: about `seconds` PUTs, one more at the edges.
    assert.ok(whileBusy <= Math.ceil(elapsedS) + 1, `${whileBusy} chunk PUTs in ${elapsedS.toFixed(1)} s of recording ${recorded} records`);
    assert.ok(chunks.length >= 2, `${chunks.length} chunks: records are uploaded while the session is busy, not only at its end`);
  });

  it('chunks fill by bytes: a full chunk leaves at once, and no chunk holds more than chunkMaxBytes of events', async () => {
    const chunkMaxBytes = 64 << 10;
    const seconds = 3;
    const { whileBusy, elapsedS, recorded, chunks, result } = await busySession('2', { chunkMaxEvents: 5000, chunkMaxBytes }, 1000, seconds);
    assert.deepEqual(result.problems, [], 'the transcript verifies');
    assert.equal(result.events.length, recorded + 1);
    const transcriptBytes = chunks.reduce((s, c) => s + c.bytes, 0);
    // Each chunk: its events (at most chunkMaxBytes), then one seal line (a JWS, well under 2 KiB).
    for (const c of chunks) assert.ok(c.bytes <= chunkMaxBytes + 2048, `${c.key}: ${c.bytes} bytes`);
    // Full chunks, plus one partial chunk per upload round.
    const bound = Math.ceil(transcriptBytes / chunkMaxBytes) + Math.ceil(elapsedS) + 1;
    assert.ok(whileBusy <= bound, `${whileBusy} chunk PUTs for ${transcriptBytes} bytes in ${elapsedS.toFixed(1)} s (bound ${bound})`);
    assert.ok(chunks.filter((c) => c.bytes > chunkMaxBytes / 2).length >= 2, 'several chunks were filled to their byte bound');
  });

  it('chunks fill by events: chunkMaxEvents bounds a chunk whatever its bytes', async () => {
    const { chunks, result, recorded } = await busySession('3', { chunkMaxEvents: 100, chunkMaxBytes: 1 << 20 }, 400, 2);
    assert.deepEqual(result.problems, []);
    const sizes = result.events.length;
    assert.equal(sizes, recorded + 1);
    const spans = chunks.map((c) => /chunk-(\d+)-(\d+)\.ndjson$/.exec(c.key)!).map((m) => Number(m[2]) - Number(m[1]) + 1);
    assert.ok(
      spans.every((n) => n <= 100),
      `chunk sizes ${spans.join(', ')}`,
    );
    assert.ok(spans.filter((n) => n === 100).length >= 4, `full chunks leave at once: ${spans.join(', ')}`);
  });
});
