import { closeSync, existsSync, mkdirSync, openSync, readFileSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';

/**
 * A state file kept as an append-only log of JSON lines (grants, access requests). Each change is appended,
 * synchronously, before it takes effect, so replaying the log at start rebuilds the state a restart lost.
 */
export class NdjsonLog<Entry> {
  constructor(readonly file: string) {
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

  /** Opened on the first append, in append mode, and kept: one write per change instead of an open, a write and a close. */
  private fd: number | undefined;

  append(entry: Entry): void {
    this.fd ??= openSync(this.file, 'a');
    const line = Buffer.from(JSON.stringify(entry) + '\n');
    for (let written = 0; written < line.length;) written += writeSync(this.fd, line, written);
  }

  close(): void {
    if (this.fd === undefined) return;
    closeSync(this.fd);
    this.fd = undefined;
  }
}
