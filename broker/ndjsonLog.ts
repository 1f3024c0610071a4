import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import { ioTimeout, type IoTimer } from './ioTimer';

/**
 * A state file kept as an append-only log of JSON lines (grants, access requests). Each change is appended before
 * it is answered, so replaying the log at start rebuilds the state a restart lost. Appends go through libuv's thread
 * pool, in order: a disk that stops answering holds the changes waiting on it, never the event loop (sessions,
 * watchdogs and revocations go on), and a change it has not taken within `stallMs` is refused.
 */
export class NdjsonLog<Entry> {
  /** Opened on the first append, in append mode, and kept: one write per change instead of an open, a write and a close. */
  private handle: Promise<FileHandle> | undefined;
  /** Changes waiting for the write in flight to finish: they go together in the next one. */
  private queued: { line: string; resolve: () => void; reject: (err: Error) => void }[] = [];
  private writing: Promise<void> | undefined;
  private torn = false;

  constructor(
    readonly file: string,
    private readonly stallMs = 5000,
  ) {
    mkdirSync(dirname(file), { recursive: true });
  }

  /** Calls `apply` with each entry in order; nothing happens when the file does not exist yet. */
  replay(apply: (entry: Entry) => void): void {
    if (!existsSync(this.file)) return;
    for (const line of readFileSync(this.file, 'utf8').split('\n')) {
      if (!line.trim()) continue;
      let entry: Entry;
      try {
        entry = JSON.parse(line) as Entry;
      } catch {
        continue; // a torn last line from a crash: the change it described was never answered
      }
      apply(entry);
    }
  }

  /**
   * Appends one change; resolves once the disk has it. Changes made while a write is in flight go together in the
   * next write, in the order made (a hundred grants at once cost a few writes, not a hundred trips through the pool).
   * Rejects when the disk refuses it, or has not taken it within stallMs (the write may still land later, in its
   * place: the caller treats the change as not made).
   */
  append(entry: Entry): Promise<void> {
    const line = JSON.stringify(entry) + '\n';
    const written = new Promise<void>((resolve, reject) => this.queued.push({ line, resolve, reject }));
    this.writing ??= this.writeQueued();
    let timer: IoTimer | undefined;
    const stalled = new Promise<never>((_, reject) => {
      timer = ioTimeout(() => reject(Object.assign(new Error(`the disk has not taken a write to ${this.file} in ${this.stallMs / 1000} s (stalled)`), { code: 'ESTALLED' })), this.stallMs);
    });
    return Promise.race([written, stalled]).finally(() => timer?.cancel());
  }

  private async writeQueued(): Promise<void> {
    while (this.queued.length > 0) {
      const batch = this.queued.splice(0);
      try {
        this.handle ??= open(this.file, 'a');
        const handle = await this.handle.catch((err: unknown) => {
          this.handle = undefined; // tried again by the next write
          throw err;
        });
        // After a failed write the file may end inside a line: a newline first keeps the next change a line of its own.
        const bytes = Buffer.from((this.torn ? '\n' : '') + batch.map((p) => p.line).join(''));
        this.torn = true;
        for (let done = 0; done < bytes.length;) done += (await handle.write(bytes, done)).bytesWritten;
        this.torn = false;
        for (const p of batch) p.resolve();
      } catch (err) {
        for (const p of batch) p.reject(err as Error);
      }
    }
    this.writing = undefined;
  }

  /** Waits (within stallMs) for the appends in flight, then closes the file. */
  async close(): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.writing, new Promise((resolve) => (timer = setTimeout(resolve, this.stallMs)))]);
    clearTimeout(timer);
    const handle = this.handle;
    this.handle = undefined;
    await (await handle?.catch(() => undefined))?.close().catch(() => undefined);
  }
}
