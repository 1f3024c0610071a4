import { strict as assert } from 'node:assert';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { AuditTrail } from '../../broker/audit/auditTrail';
import type { StreamContext } from '../../broker/audit/events';
import { LocalDirectoryStore } from '../../broker/audit/stores/localStore';
import { readTranscriptFromStore, verifyTranscript } from '../../broker/audit/verify';
import { WriteAheadLog } from '../../broker/audit/wal';
import { loadOrCreateSigningKey } from '../../broker/identity/keys';

describe('a record that joins a chain while it closes', () => {
  const dirs: string[] = [];
  after(() => {
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  });

  for (const round of [1, 2, 3]) {
    it(`is in the uploaded transcript the manifest seals, which verifies (round ${round})`, async () => {
      const dir = mkdtempSync(join(tmpdir(), 'loupe-close-race-'));
      dirs.push(dir);
      // On the real disk: the chunk's put (write, fsync, link) takes long enough for a later commit to land during it.
      const { wal } = await WriteAheadLog.open(join(dir, 'wal'), { maxBatch: 512, segmentBytes: 8 << 20, preallocateBytes: 1 << 20, lazyMs: 1 + round });
      const store = new LocalDirectoryStore(join(dir, 'store'));
      const key = await loadOrCreateSigningKey(join(dir, 'keys'), 'audit-key');
      const trail = new AuditTrail(wal, store, key, { chunkMaxEvents: 100, uploadIntervalMs: 60_000, failClosedAfterMs: 60_000, clock: Date.now });
      const context: StreamContext = { stream: `grants-race-${round}`, kind: 'grants', startedAt: new Date().toISOString(), retentionDays: 1 };
      const { stream, opened } = trail.openStream(context);
      await opened;
      for (let i = 0; i < 20; i++) await stream.record('grant.issued', { grantId: `g-${i}` });
      await stream.record('stream.closed', { endReason: 'shutdown' });
      const closing = stream.close('shutdown');
      // Lazy: it waits for a commit of its own, which lands while the close uploads the chain.
      const late = stream.record('grant.revoked', { grantId: 'g-late' }, true);
      await late;
      await closing;
      await trail.stop();

      const prefix = (await store.list('grants/'))[0]!.replace(/[^/]+$/, '');
      const result = await verifyTranscript(await readTranscriptFromStore(store, prefix, false), { keys: [key.publicJwk] });
      assert.deepEqual(result.problems, []);
      assert.equal(result.events.at(-1)?.type, 'grant.revoked', 'the late record is the last one sealed');
      assert.equal(result.events.length, 22);
    });
  }
});

describe('a write-ahead log appended to after it closed (an upload that ended as the broker stopped)', () => {
  it('refuses the record as closed, is not taken for a failed disk, and is never reopened', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'loupe-closed-wal-'));
    try {
      const { wal } = await WriteAheadLog.open(join(dir, 'wal'), { maxBatch: 512, segmentBytes: 8 << 20, preallocateBytes: 1 << 20, lazyMs: 2 });
      assert.equal(await wal.close(), true);
      await assert.rejects(wal.append({ t: 'closed', stream: 'late' }), /the write-ahead log is closed: the broker is stopping/);
      assert.equal(wal.failed, undefined, 'a record after close is no disk failure');
      assert.equal(await wal.retry(), true, 'nothing failed: nothing to retry');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
