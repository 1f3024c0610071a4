// Section 2h of `npm run bench`: what a busy session costs the audit store. One stream records `perSecond`
// records a second (a gated Runtime.evaluate each, as in 2e) for `seconds`, through a running AuditTrail with
// the broker's default chunking (audit.chunkMaxEvents, audit.chunkMaxBytes, audit.uploadInterval from the
// config schema's defaults) over the WAL, to the store given (S3 with Object Lock in the full run). Every put
// is counted as the trail makes it; the figure is chunk PUTs per second of recording, and records per PUT.
import { join } from 'node:path';
import { AuditTrail } from '../broker/audit/auditTrail';
import type { AuditStream } from '../broker/audit/auditStream';
import type { StreamContext } from '../broker/audit/events';
import type { AuditStore } from '../broker/audit/stores/auditStore';
import { WriteAheadLog } from '../broker/audit/wal';
import { auditSchema } from '../broker/config/schema';
import type { SigningKey } from '../broker/identity/keys';
import { nowMs } from './lib/stats';

export interface BusyUploadCounts {
  perSecond: number;
  seconds: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function benchBusyUpload(dir: string, store: AuditStore, key: SigningKey, context: StreamContext, counts: BusyUploadCounts, sample: (i: number) => Record<string, unknown>) {
  const defaults = auditSchema.parse({});
  const puts: { key: string; bytes: number; at: number }[] = [];
  const counted: AuditStore = {
    description: store.description,
    check: () => store.check(),
    get: (k) => store.get(k),
    list: (prefix) => store.list(prefix),
    retention: (k) => store.retention(k),
    async put(k, body, retainUntil) {
      await store.put(k, body, retainUntil);
      puts.push({ key: k, bytes: body.length, at: nowMs() });
    },
  };
  const { wal } = await WriteAheadLog.open(join(dir, 'wal'), { maxBatch: 512, segmentBytes: 8 << 20 });
  const options = { chunkMaxEvents: defaults.chunkMaxEvents, chunkMaxBytes: defaults.chunkMaxBytes, uploadIntervalMs: defaults.uploadInterval * 1000 };
  const trail = new AuditTrail(wal, counted, key, { ...options, failClosedAfterMs: 60_000, clock: Date.now });
  trail.start();
  const { stream, opened } = trail.openStream(context);
  await opened;
  const tickMs = 20;
  const perTick = Math.max(1, Math.round((counts.perSecond * tickMs) / 1000));
  const started = nowMs();
  let recorded = 0;
  const inFlight: ReturnType<AuditStream['record']>[] = [];
  for (let tick = 0; tick < (counts.seconds * 1000) / tickMs; tick++) {
    for (let i = 0; i < perTick; i++) inFlight.push(stream.record('cdp.evaluate', sample(recorded++)));
    await sleep(Math.max(0, started + (tick + 1) * tickMs - nowMs()));
  }
  await Promise.all(inFlight);
  const seconds = (nowMs() - started) / 1000;
  const during = puts.filter((p) => p.key.includes('/chunk-'));
  const chunkPuts = during.length;
  const chunkBytes = during.reduce((s, p) => s + p.bytes, 0);
  await stream.close('benchmark');
  await trail.stop();
  return {
    store: store.description,
    options,
    recordsPerSecond: recorded / seconds,
    records: recorded,
    seconds,
    chunkPuts,
    putsPerSecond: chunkPuts / seconds,
    recordsPerPut: chunkPuts > 0 ? recorded / chunkPuts : null,
    bytesPerPut: chunkPuts > 0 ? chunkBytes / chunkPuts : null,
  };
}
