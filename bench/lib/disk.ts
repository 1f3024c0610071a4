// The disk's own floor for a durable record: one small append and one fdatasync, as the WAL does per group commit.
import { closeSync, fdatasyncSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { nowMs, summarize, type Summary } from './stats';

/** The floor's distribution: `n` appends of `bytes` each, each followed by fdatasync, under `dir` (the WAL's disk). */
export const fdatasyncFloor = (dir: string, n = 200, bytes = 400): Summary => summarize(fdatasyncSamples(dir, n, bytes));

/** Times `n` appends of `bytes` each followed by fdatasync, in a fresh file under `dir` (after 10 untimed ones). */
export function fdatasyncSamples(dir: string, n: number, bytes = 400): number[] {
  const scratch = mkdtempSync(join(dir, 'fdatasync-'));
  const fd = openSync(join(scratch, 'floor.log'), 'a', 0o600);
  const line = Buffer.alloc(bytes, 'x');
  line[bytes - 1] = 10;
  const samples: number[] = [];
  try {
    for (let i = 0; i < n + 10; i++) {
      const start = nowMs();
      writeSync(fd, line);
      fdatasyncSync(fd);
      if (i >= 10) samples.push(nowMs() - start);
    }
  } finally {
    closeSync(fd);
    rmSync(scratch, { recursive: true, force: true });
  }
  return samples;
}
