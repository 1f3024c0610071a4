import { fdatasyncSync, mkdirSync, readdirSync, readFileSync, writeSync } from 'node:fs';
import { open, rm, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import type { AuditEvent, StreamContext } from './events';

export interface ChunkInfo {
  readonly name: string;
  readonly firstSeq: number;
  readonly lastSeq: number;
  readonly sha256: string;
  readonly headHash: string;
}

/** What the WAL holds: stream openings, events, and upload progress, so a restart knows what is missing. */
export type WalRecord =
  | { readonly t: 'open'; readonly context: StreamContext }
  | { readonly t: 'event'; readonly event: AuditEvent }
  /** Fixes a chunk's boundaries before its first upload, so every retry (in this run or after a crash) sends the same object. */
  | { readonly t: 'uploading'; readonly stream: string; readonly firstSeq: number; readonly lastSeq: number }
  | { readonly t: 'uploaded'; readonly stream: string; readonly chunk: ChunkInfo }
  | { readonly t: 'closed'; readonly stream: string };

export interface RecoveredStream {
  context: StreamContext;
  events: AuditEvent[];
  chunks: ChunkInfo[];
  closed: boolean;
  /** A chunk whose upload began and was not seen to complete: it is retried with these same boundaries. */
  uploading?: { firstSeq: number; lastSeq: number };
}

export interface WalOptions {
  /** Records per group commit (one write and one fdatasync). */
  readonly maxBatch: number;
  /** A segment over this size is closed and a new one started. */
  readonly segmentBytes: number;
}

interface Pending {
  readonly line: string;
  readonly stream: string;
  readonly seq: number;
  resolve(): void;
  reject(err: Error): void;
}

const segmentPattern = /^wal-(\d{8})\.log$/;

/**
 * The local write-ahead log in front of the audit store. `append` resolves only once the record is on disk
 * (group commit: records queued while a write is in flight share the next fdatasync). Old segments are
 * deleted once every record in them has been uploaded.
 */
export class WriteAheadLog {
  private queue: Pending[] = [];
  private flushing = false;
  private failure: Error | undefined;
  private handle: FileHandle | undefined;
  private segment = 0;
  private segmentSize = 0;
  /** Per segment, the highest seq it holds for each stream. */
  private readonly segmentStreams = new Map<number, Map<string, number>>();
  private readonly uploadedThrough = new Map<string, number>();
  private readonly openContexts = new Map<string, StreamContext>();

  private constructor(
    private readonly dir: string,
    private readonly options: WalOptions,
  ) {}

  /** Opens the WAL directory, returning what earlier runs left in it. */
  static async open(dir: string, options: WalOptions): Promise<{ wal: WriteAheadLog; recovered: Map<string, RecoveredStream> }> {
    mkdirSync(dir, { recursive: true });
    const wal = new WriteAheadLog(dir, options);
    const recovered = wal.replay();
    wal.segment = Math.max(0, ...wal.segmentStreams.keys()) + 1;
    await wal.openSegment();
    return { wal, recovered };
  }

  private segmentFile(n: number): string {
    return join(this.dir, `wal-${String(n).padStart(8, '0')}.log`);
  }

  private replay(): Map<string, RecoveredStream> {
    const streams = new Map<string, RecoveredStream>();
    const segments = readdirSync(this.dir)
      .map((name) => segmentPattern.exec(name))
      .filter((m): m is RegExpExecArray => m !== null)
      .map((m) => Number(m[1]))
      .sort((a, b) => a - b);
    for (const n of segments) {
      const perStream = new Map<string, number>();
      this.segmentStreams.set(n, perStream);
      for (const line of readFileSync(this.segmentFile(n), 'utf8').split('\n')) {
        if (!line) continue;
        let record: WalRecord;
        try {
          record = JSON.parse(line) as WalRecord;
        } catch {
          continue; // a torn tail from a crash: its append never resolved, so nothing acted on it
        }
        if (record.t === 'open') {
          if (!streams.has(record.context.stream)) streams.set(record.context.stream, { context: record.context, events: [], chunks: [], closed: false });
          perStream.set(record.context.stream, Math.max(perStream.get(record.context.stream) ?? -1, -1));
        } else if (record.t === 'event') {
          const stream = streams.get(record.event.stream);
          if (!stream) continue;
          if (stream.events.length === 0 || stream.events.at(-1)!.seq < record.event.seq) stream.events.push(record.event);
          perStream.set(record.event.stream, Math.max(perStream.get(record.event.stream) ?? -1, record.event.seq));
        } else if (record.t === 'uploading') {
          const stream = streams.get(record.stream);
          if (stream) stream.uploading = { firstSeq: record.firstSeq, lastSeq: record.lastSeq };
        } else if (record.t === 'uploaded') {
          const stream = streams.get(record.stream);
          if (stream && !stream.chunks.some((c) => c.name === record.chunk.name)) stream.chunks.push(record.chunk);
          if (stream?.uploading && stream.uploading.lastSeq <= record.chunk.lastSeq) delete stream.uploading;
          this.uploadedThrough.set(record.stream, Math.max(this.uploadedThrough.get(record.stream) ?? -1, record.chunk.lastSeq));
        } else if (record.t === 'closed') {
          const stream = streams.get(record.stream);
          if (stream) stream.closed = true;
          this.uploadedThrough.set(record.stream, Number.MAX_SAFE_INTEGER);
        }
      }
    }
    for (const [id, stream] of streams) if (!stream.closed) this.openContexts.set(id, stream.context);
    return streams;
  }

  private async openSegment(): Promise<void> {
    this.handle = await open(this.segmentFile(this.segment), 'a', 0o600);
    this.segmentSize = 0;
    this.segmentStreams.set(this.segment, new Map());
    // Each segment restates the streams still open, so older segments can go once uploaded.
    const lines = [...this.openContexts.values()].map((context) => JSON.stringify({ t: 'open', context } satisfies WalRecord) + '\n').join('');
    if (lines) {
      await this.handle.write(lines);
      await this.handle.datasync();
      this.segmentSize += Buffer.byteLength(lines);
    }
  }

  get failed(): Error | undefined {
    return this.failure;
  }

  get depth(): number {
    return this.queue.length;
  }

  /** Appends one record; resolves once it is durable, rejects if the disk refuses it. */
  append(record: WalRecord): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    const stream = record.t === 'open' ? record.context.stream : record.t === 'event' ? record.event.stream : record.stream;
    const seq = record.t === 'event' ? record.event.seq : -1;
    if (record.t === 'open') this.openContexts.set(stream, record.context);
    if (record.t === 'closed') {
      this.openContexts.delete(stream);
      this.uploadedThrough.set(stream, Number.MAX_SAFE_INTEGER);
    }
    if (record.t === 'uploaded') this.uploadedThrough.set(stream, Math.max(this.uploadedThrough.get(stream) ?? -1, record.chunk.lastSeq));
    return new Promise((resolve, reject) => {
      this.queue.push({ line: JSON.stringify(record) + '\n', stream, seq, resolve, reject });
      if (!this.flushing) {
        this.flushing = true;
        setImmediate(() => void this.flush());
      }
    });
  }

  private async flush(): Promise<void> {
    while (this.queue.length > 0 && !this.failure) {
      const batch = this.queue.splice(0, this.options.maxBatch);
      const text = batch.map((p) => p.line).join('');
      try {
        if (batch.length === 1) {
          // A lone record: a synchronous write and sync cost about half of the thread-pool round trip.
          writeSync(this.handle!.fd, text);
          fdatasyncSync(this.handle!.fd);
        } else {
          await this.handle!.write(text);
          await this.handle!.datasync();
        }
      } catch (err) {
        this.failure = new Error(`audit write-ahead log cannot be written: ${(err as Error).message}`, { cause: err });
        for (const p of [...batch, ...this.queue.splice(0)]) p.reject(this.failure);
        break;
      }
      this.segmentSize += Buffer.byteLength(text);
      const perStream = this.segmentStreams.get(this.segment)!;
      for (const p of batch) perStream.set(p.stream, Math.max(perStream.get(p.stream) ?? -1, p.seq));
      for (const p of batch) p.resolve();
      if (this.segmentSize > this.options.segmentBytes) await this.rotate();
    }
    this.flushing = false;
  }

  private async rotate(): Promise<void> {
    await this.handle!.close();
    this.segment++;
    await this.openSegment();
    await this.compact();
  }

  /** Deletes closed segments whose every record has been uploaded. */
  async compact(): Promise<void> {
    for (const [n, perStream] of this.segmentStreams) {
      if (n === this.segment) continue;
      const done = [...perStream].every(([stream, maxSeq]) => (this.uploadedThrough.get(stream) ?? -1) >= maxSeq);
      if (!done) continue;
      await rm(this.segmentFile(n), { force: true });
      this.segmentStreams.delete(n);
    }
  }

  async close(): Promise<void> {
    while (this.flushing) await new Promise((r) => setImmediate(r));
    await this.handle?.close();
    this.handle = undefined;
  }
}
