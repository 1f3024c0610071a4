// Commits through the WAL's writer thread as fast as it takes them, with the loop waiting 1 ms for each, beside
// three threads that only burn CPU: run on one CPU (taskset), the writer thread is often preempted by the loop it just woke,
// between telling a commit done and checking whether the loop stopped waiting for it, and the loop, out of CPU, stops
// waiting for the next commit meanwhile. Exits 0 when every commit was told, 1 naming the first that was not (within
// 1 s). Run by test/audit/walWriter.test.ts.
import { closeSync, constants, mkdtempSync, openSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { WalWriter } from '../../broker/audit/walWriter';

void (async () => {
  const dir = mkdtempSync(join(tmpdir(), 'loupe-walrace-'));
  const fd = openSync(join(dir, 'seg.log'), constants.O_WRONLY | constants.O_CREAT, 0o600);
  const writer = new WalWriter({ capacity: 1 << 16, waitMs: 1 });
  const burners = Array.from({ length: Number(process.argv[3] ?? 3) }, () => new Worker('for (;;) {}', { eval: true }));
  let commits = 0;
  let detached = 0;
  let seen = -1;
  const watch = setInterval(() => {
    if (seen === commits) {
      process.stdout.write(`commit ${commits} (of which ${detached} went on without waiting) was not told in 1 s: ${writer.whereDetached()}\n`);
      process.exit(1);
    }
    seen = commits;
  }, 1000);
  const until = Date.now() + Number(process.argv[2] ?? 4000);
  while (Date.now() < until) {
    for (let i = 0; i < 200; i++, commits++) {
      const done = writer.write(fd, 'x\n', 2, 0, true);
      if (typeof done !== 'number') {
        detached++;
        await done;
      }
    }
  }
  clearInterval(watch);
  closeSync(fd);
  rmSync(dir, { recursive: true, force: true });
  await Promise.all([writer.close(), ...burners.map((burner) => burner.terminate())]);
  process.stdout.write(`${commits} commits, ${detached} of them landing after the loop went on, all told\n`);
})();
