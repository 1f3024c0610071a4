import { appendFileSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
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

  append(entry: Entry): void {
    appendFileSync(this.file, JSON.stringify(entry) + '\n');
  }
}
