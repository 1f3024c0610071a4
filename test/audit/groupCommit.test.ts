import { strict as assert } from 'node:assert';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { WriteAheadLog } from '../../broker/audit/wal';
import { waitFor } from '../support/wait';

const writer = join(__dirname, '..', 'support', 'walCrashWriter.ts');

describe('group commit: kill -9 in the middle of batches loses nothing that was acted on', () => {
  const dirs: string[] = [];
  after(() => {
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  });

  for (const round of [1, 2, 3]) {
    // Round 3: the loop never waits for a commit (commitWaitMs 0), so every commit of the busy WAL lands after its turn.
    const detached = round === 3;
    it(`20 streams appending at once, killed after about ${round * 1500} forwarded records${detached ? ', commits landing after their turn' : ''}: every forwarded record is recovered, in order`, async () => {
      // On the real disk (not tmpfs): preallocation and fdatasync as in production.
      const dir = mkdtempSync(join(tmpdir(), 'loupe-groupcommit-'));
      dirs.push(dir);
      const walDir = join(dir, 'wal');
      const forwardedFile = join(dir, 'forwarded.txt');
      const child = spawn(process.execPath, ['--import', 'tsx', writer, walDir, forwardedFile, '20', ...(detached ? ['0'] : [])], { stdio: ['ignore', 'pipe', 'inherit'] });
      const count = () => (existsSync(forwardedFile) ? readFileSync(forwardedFile, 'utf8').split('\n').length - 1 : 0);
      await waitFor(() => count() >= round * 1500, { what: `${round * 1500} forwarded records`, timeoutMs: 60_000, intervalMs: 2 });
      child.kill('SIGKILL');
      await once(child, 'exit');

      const forwarded = readFileSync(forwardedFile, 'utf8').split('\n').filter(Boolean);
      const segments = readdirSync(walDir).filter((n) => /^wal-\d+\.log$/.test(n));
      // The last segment holding anything but the zeroes of preallocation, read before replay repairs it.
      const lastWritten = segments
        .sort()
        .filter((n) => readFileSync(join(walDir, n)).some((b) => b !== 0))
        .at(-1);
      const { wal, recovered } = await WriteAheadLog.open(walDir, { maxBatch: 512, segmentBytes: 256 << 10 });
      await wal.close();
      // Each commit is one write, but a kill -9 can cut the one being written (Linux stops a write between pages for a
      // fatal signal): its records were never synced, so never acted on. At most that torn tail, at the end of the last
      // segment written, is repaired; nothing else.
      assert.ok(
        wal.repairs.length <= 1 && wal.repairs.every((r) => r.kind === 'torn_tail' && lastWritten !== undefined && r.segment === join(walDir, lastWritten)),
        `repairs: ${JSON.stringify(wal.repairs)} (last segment written: ${lastWritten})`,
      );
      const missing = forwarded.filter((line) => {
        const [stream, seq] = line.split(' ');
        return !recovered.get(stream!)?.events.some((e) => e.seq === Number(seq));
      });
      assert.deepEqual(missing, [], `${missing.length} of ${forwarded.length} forwarded records are not in the WAL`);
      assert.equal(recovered.size, 20);
      for (const [id, stream] of recovered) {
        const seqs = stream.events.map((e) => e.seq);
        assert.deepEqual(
          seqs,
          seqs.map((_, i) => i),
          `${id}: the recovered chain is whole, from seq 0 on`,
        );
        for (let i = 1; i < stream.events.length; i++) assert.equal(stream.events[i]!.prev, stream.events[i - 1]!.hash, `${id}: seq ${i} follows seq ${i - 1}`);
      }
      // The records more than forwarded: answers that rode along, and requests made durable but not yet acted on.
      const total = [...recovered.values()].reduce((n, s) => n + s.events.length, 0);
      assert.ok(total >= forwarded.length, `${total} records recovered for ${forwarded.length} forwarded`);
      // The segments were preallocated (zeroed ahead) while written; replay cut the last one's zeroed tail.
      assert.ok(segments.length >= 1);
      const last = join(walDir, segments.sort().at(-1)!);
      const bytes = readFileSync(last);
      assert.ok(bytes.length === 0 || bytes[bytes.length - 1] === 10, `the last segment ends with a whole record (${statSync(last).size} bytes)`);
    });
  }
});
