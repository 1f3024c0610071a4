// A process that opens a write-ahead log (which starts its writer thread) and never closes it, as a broker that failed
// to start leaves one: it must still exit on its own. `busy`: it commits through the writer thread first (every commit
// landing after its turn). Run by test/audit/walWriter.test.ts.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WriteAheadLog } from '../../broker/audit/wal';

void (async () => {
  const { wal } = await WriteAheadLog.open(mkdtempSync(join(tmpdir(), 'loupe-wal-left-open-')), { maxBatch: 16, segmentBytes: 1 << 20, commitWaitMs: 0 });
  // Two streams in one commit make the WAL busy, so the next commits go through the writer thread.
  const open = (stream: string) => wal.append({ t: 'open', context: { stream, kind: 'session', startedAt: new Date().toISOString(), retentionDays: 1 } });
  await open('a');
  if (process.argv[2] === 'busy') {
    await Promise.all([open('b'), open('c')]);
    await Promise.all([open('d'), open('e')]);
  }
  process.stdout.write(`committed ${wal.commits}\n`);
})();
