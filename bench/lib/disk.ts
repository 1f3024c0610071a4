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

/** A fresh file under `dir` for `writes` records of `bytes` (zeroed and synced first when preallocated); `time(i)` times the i-th. */
function floorFile(dir: string, writes: number, bytes: number, kind: FloorKind) {
  const scratch = mkdtempSync(join(dir, 'fdatasync-'));
  const fd = openSync(join(scratch, 'floor.log'), 'w', 0o600);
  const line = Buffer.alloc(bytes, 'x');
  line[bytes - 1] = 10;
  if (kind === 'preallocated') {
    writeSync(fd, Buffer.alloc(writes * bytes), 0, writes * bytes, 0);
    fdatasyncSync(fd);
  }
  return {
    time(i: number): number {
      const start = nowMs();
      writeSync(fd, line, 0, bytes, i * bytes);
      fdatasyncSync(fd);
      return nowMs() - start;
    },
    close(): void {
      closeSync(fd);
      rmSync(scratch, { recursive: true, force: true });
    },
  };
}

/** Times `n` writes of `bytes` each followed by fdatasync, in a fresh file under `dir` (after 10 untimed ones). */
export function fdatasyncSamples(dir: string, n: number, kind: FloorKind = 'preallocated', bytes = 400): number[] {
  const file = floorFile(dir, n + 10, bytes, kind);
  try {
    return Array.from({ length: n + 10 }, (_, i) => file.time(i)).slice(10);
  } finally {
    file.close();
  }
}

/**
 * As fdatasyncSamples (preallocated), but each write follows `gapMs` with the process asleep, as a WAL commit between
 * round trips meets the disk: on a VM an idle vCPU wakes to the I/O's completion more slowly than a busy one.
 */
export async function spacedFdatasyncSamples(dir: string, n: number, gapMs = 1, bytes = 400): Promise<number[]> {
  const file = floorFile(dir, n + 3, bytes, 'preallocated');
  const samples: number[] = [];
  try {
    for (let i = 0; i < n + 3; i++) {
      await sleep(gapMs);
      const ms = file.time(i);
      if (i >= 3) samples.push(ms);
    }
  } finally {
    file.close();
  }
  return samples;
}
