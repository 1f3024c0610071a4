// The disk's own floor for a durable record: one small write and one fdatasync, as the WAL does per commit.
import { closeSync, fdatasyncSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { join } from 'node:path';
import { nowMs, summarize, type Summary } from './stats';

/**
 * 'preallocated': each record is written into a region zeroed and synced beforehand, as the WAL writes its segments
 * (broker/audit/wal.ts, preallocateBytes), so the sync carries no new file size; 'append': each write grows the file.
 */
export type FloorKind = 'preallocated' | 'append';

/** The floor's distribution: `n` writes of `bytes` each, each followed by fdatasync, under `dir` (the WAL's disk). */
export const fdatasyncFloor = (dir: string, n = 200, kind: FloorKind = 'preallocated', bytes = 400): Summary => summarize(fdatasyncSamples(dir, n, kind, bytes));

/** Times `n` writes of `bytes` each followed by fdatasync, in a fresh file under `dir` (after 10 untimed ones). */
export function fdatasyncSamples(dir: string, n: number, kind: FloorKind = 'preallocated', bytes = 400): number[] {
  const scratch = mkdtempSync(join(dir, 'fdatasync-'));
  const fd = openSync(join(scratch, 'floor.log'), 'w', 0o600);
  const line = Buffer.alloc(bytes, 'x');
  line[bytes - 1] = 10;
  const samples: number[] = [];
  try {
    if (kind === 'preallocated') {
      writeSync(fd, Buffer.alloc((n + 10) * bytes), 0, (n + 10) * bytes, 0);
      fdatasyncSync(fd);
    }
    for (let i = 0; i < n + 10; i++) {
      const start = nowMs();
      writeSync(fd, line, 0, bytes, i * bytes);
      fdatasyncSync(fd);
      if (i >= 10) samples.push(nowMs() - start);
    }
  } finally {
    closeSync(fd);
    rmSync(scratch, { recursive: true, force: true });
  }
  return samples;
}

/**
 * As fdatasyncSamples (preallocated), but each write follows `gapMs` with the process asleep, as a WAL commit between
 * round trips meets the disk: on a VM an idle vCPU wakes to the I/O's completion more slowly than a busy one.
 */
export async function spacedFdatasyncSamples(dir: string, n: number, gapMs = 1, bytes = 400): Promise<number[]> {
  const scratch = mkdtempSync(join(dir, 'fdatasync-'));
  const fd = openSync(join(scratch, 'floor.log'), 'w', 0o600);
  const line = Buffer.alloc(bytes, 'x');
  line[bytes - 1] = 10;
  const samples: number[] = [];
  try {
    writeSync(fd, Buffer.alloc((n + 3) * bytes), 0, (n + 3) * bytes, 0);
    fdatasyncSync(fd);
    for (let i = 0; i < n + 3; i++) {
      await sleep(gapMs);
      const start = nowMs();
      writeSync(fd, line, 0, bytes, i * bytes);
      fdatasyncSync(fd);
      if (i >= 3) samples.push(nowMs() - start);
    }
  } finally {
    closeSync(fd);
    rmSync(scratch, { recursive: true, force: true });
  }
  return samples;
}
