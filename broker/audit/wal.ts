import { constants, ftruncateSync, mkdirSync, readdirSync, readFileSync, statfsSync, truncateSync } from 'node:fs';
import { open, rm, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { ioTimeout, type IoTimer } from '../ioTimer';
import { hashRecord } from '../../common/transcript';
import type { AuditEvent, StreamContext } from './events';
import { WalWriter } from './walWriter';

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

const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);
const isSeq = (v: unknown) => Number.isSafeInteger(v) && (v as number) >= 0;

/** Why a parsed line is not a record the WAL wrote (undefined when it is one): its shape, and an event's own hash. */
export function walRecordProblem(record: unknown): string | undefined {
  if (!isObject(record)) return 'not a write-ahead-log record (not an object)';
  const bad = (what: string) => `not a write-ahead-log record (${String(record.t)}: ${what})`;
  switch (record.t) {
    case 'open':
      return isObject(record.context) && typeof record.context.stream === 'string' && typeof record.context.kind === 'string' ? undefined : bad('no context');
    case 'event': {
      const event = record.event;
      if (!isObject(event)) return bad('no event');
      if (typeof event.stream !== 'string' || !isSeq(event.seq) || typeof event.hash !== 'string' || typeof event.prev !== 'string') return bad('no stream, seq, prev or hash');
      const { hash, ...body } = event;
      return hashRecord(body) === hash ? undefined : `event seq ${event.seq} of ${event.stream}: its hash does not match its content (changed on disk)`;
    }
    case 'uploading':
      return typeof record.stream === 'string' && isSeq(record.firstSeq) && isSeq(record.lastSeq) ? undefined : bad('no stream or range');
    case 'uploaded':
      return typeof record.stream === 'string' && isObject(record.chunk) && typeof record.chunk.name === 'string' && isSeq(record.chunk.lastSeq) ? undefined : bad('no chunk');
    case 'closed':
      return typeof record.stream === 'string' ? undefined : bad('no stream');
    default:
      return 'not a write-ahead-log record (unknown type)';
  }
}

export interface RecoveredStream {
  context: StreamContext;
  events: AuditEvent[];
  /** Each event's JSON as written (its line in a chunk), in the order of events. */
  lines: string[];
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
  /**
   * How long a lazy record (one nothing waits on before acting) may wait for the next commit before it gets one of
   * its own (default 5 ms). Any other record's commit takes the lazy ones queued before it along.
   */
  readonly lazyMs?: number;
  /**
   * Zeroes (and syncs) this many bytes of a segment ahead of its records (default 0: off), so that a commit's
   * fdatasync writes data into blocks the file already has instead of also journaling a new file size. Off on
   * tmpfs, where a sync costs nothing; a disk without room for it gets plain appends.
   */
  readonly preallocateBytes?: number;
  /**
   * While the WAL is busy (several streams committing), how long each commit waits for more records to join it (default
   * 0: none). Records still resolve only once durable; they wait up to this much longer for it.
   */
  readonly gatherMs?: number;
  /**
   * How long the event loop waits for a commit before going on without it (default 20 ms): see walWriter.ts. A healthy
   * disk commits well within it; a stalled one holds the loop this long at most.
   */
  readonly commitWaitMs?: number;
  /**
   * A commit (or a segment's rotation) that has not completed within this (default 5 s) fails the WAL: a disk that
   * stopped answering fails the broker closed instead of leaving every command waiting. The commit in flight still
   * lands, or fails, when the disk answers; retry() then starts a new segment.
   */
  readonly stallMs?: number;
}

/** The largest commit written through the WAL's own thread; a larger one goes through libuv's thread pool. */
const commitCapacity = 4 << 20;

/**
 * Segments are opened O_DSYNC where the platform has it: each write returns once its data is durable, as a write and an
 * fdatasync would, in one system call (and one trip through the thread pool) instead of two.
 */
const dsync: number = constants.O_DSYNC ?? 0;
const segmentFlags = constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | dsync;

/** statfs f_type of tmpfs. */
const tmpfsMagic = 0x01021994;

interface Pending {
  readonly line: string;
  readonly stream: string;
  readonly seq: number;
  resolve(): void;
  reject(err: Error): void;
}

const segmentPattern = /^wal-(\d{8})\.log$/;

/** How an event's WAL record starts: the event's own line follows, then the closing brace. */
export const eventLinePrefix = '{"t":"event","event":';

/** Whether every byte from `offset` on is zero. */
function isZero(bytes: Buffer, offset: number): boolean {
  for (let i = offset; i < bytes.length; i++) if (bytes[i] !== 0) return false;
  return true;
}

const walError = (err: unknown) => new Error(`audit write-ahead log cannot be written: ${(err as Error).message}`, { cause: err });

/**
 * The local write-ahead log in front of the audit store. `append` resolves only once the record is on disk
 * (group commit: records queued while a write is in flight share the next fdatasync). Old segments are
 * deleted once every record in them has been uploaded.
 */
export class WriteAheadLog {
  private queue: Pending[] = [];
  private flushing = false;
  private lazyTimer: NodeJS.Timeout | undefined;
  private failureValue: Error | undefined;
  /** Told once when the WAL fails (see untilFailed); each removes itself when its work settles first. */
  private readonly failedListeners = new Set<() => void>();

  private get failure(): Error | undefined {
    return this.failureValue;
  }

  private set failure(err: Error | undefined) {
    this.failureValue = err;
    if (!err) return;
    for (const listener of this.failedListeners) listener();
    this.failedListeners.clear();
  }
  private retrying = false;
  private handle: FileHandle | undefined;
  private segment = 0;
  private segmentSize = 0;
  /** How far the current segment is zeroed and synced (records are written below it without growing the file). */
  private zeroedTo = 0;
  private readonly preallocate: number;
  /** False once the disk had no room to zero ahead in this segment: it grows by plain appends until the next one. */
  private preallocating = false;
  /** Zeroing ahead, in the background, from extendFrom on; a write that needs that room waits for it. */
  private extending: Promise<void> | undefined;
  private extendFrom = 0;
  private readonly writer: WalWriter;
  /** Durable commits made so far (each one write and its sync, or one O_DSYNC write). */
  commits = 0;
  /** Until when (performance.now()) the WAL counts as busy: a commit then waits gatherMs for more records to join it. */
  private busyUntil = 0;
  /** Per segment, the highest seq it holds for each stream. */
  private readonly segmentStreams = new Map<number, Map<string, number>>();
  private readonly uploadedThrough = new Map<string, number>();
  private readonly openContexts = new Map<string, StreamContext>();
  /** What replay found damaged (a torn tail is cut back to the last whole record), to be logged and recorded. */
  readonly repairs: { segment: string; offset: number; bytes: number; kind: 'torn_tail' | 'unreadable_record'; why?: string }[] = [];

  private constructor(
    private readonly dir: string,
    private readonly options: WalOptions,
  ) {
    let preallocate = options.preallocateBytes ?? 0;
    try {
      if (preallocate > 0 && statfsSync(dir).type === tmpfsMagic) preallocate = 0;
    } catch {
      /* statfs unavailable: preallocate as asked */
    }
    this.preallocate = preallocate;
    this.writer = new WalWriter({ capacity: commitCapacity, waitMs: options.commitWaitMs ?? 20 });
  }

  /** Opens the WAL directory, returning what earlier runs left in it. */
  static async open(dir: string, options: WalOptions): Promise<{ wal: WriteAheadLog; recovered: Map<string, RecoveredStream> }> {
    mkdirSync(dir, { recursive: true });
    const wal = new WriteAheadLog(dir, options);
    const recovered = wal.replay();
    wal.segment = Math.max(0, ...wal.segmentStreams.keys()) + 1;
    try {
      await wal.openSegment();
    } catch (err) {
      // A full disk at start: the broker still starts, reports not ready, and retries (see retry()).
      wal.failure = walError(err);
    }
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
      const bytes = readFileSync(this.segmentFile(n));
      let offset = 0;
      while (offset < bytes.length) {
        const end = bytes.indexOf(10, offset);
        const lineEnd = end < 0 ? bytes.length : end;
        // Zeroes where a record would start: the unused end of a preallocated segment (records never hold a NUL byte).
        if (bytes[offset] === 0 && isZero(bytes, offset)) {
          truncateSync(this.segmentFile(n), offset);
          break;
        }
        const line = bytes.subarray(offset, lineEnd).toString('utf8');
        const at = offset;
        offset = lineEnd + 1;
        if (!line) continue;
        let record: WalRecord;
        try {
          record = JSON.parse(line) as WalRecord;
        } catch {
          // A record cut by a crash or a full disk: its append never resolved, so nothing acted on it.
          const tail = end < 0 || offset >= bytes.length;
          if (tail) {
            truncateSync(this.segmentFile(n), at); // repaired: the segment ends with its last whole record
            this.repairs.push({ segment: this.segmentFile(n), offset: at, bytes: bytes.length - at, kind: 'torn_tail' });
          } else this.repairs.push({ segment: this.segmentFile(n), offset: at, bytes: lineEnd - at, kind: 'unreadable_record', why: 'not JSON' });
          continue;
        }
        // JSON of another shape, or an event changed since it was written: skipped and named, never replayed as it is.
        const why = walRecordProblem(record);
        if (why) {
          this.repairs.push({ segment: this.segmentFile(n), offset: at, bytes: lineEnd - at, kind: 'unreadable_record', why });
          continue;
        }
        if (record.t === 'open') {
          if (!streams.has(record.context.stream)) streams.set(record.context.stream, { context: record.context, events: [], lines: [], chunks: [], closed: false });
          perStream.set(record.context.stream, Math.max(perStream.get(record.context.stream) ?? -1, -1));
        } else if (record.t === 'event') {
          const stream = streams.get(record.event.stream);
          if (!stream) continue;
          if (stream.events.length === 0 || stream.events.at(-1)!.seq < record.event.seq) {
            stream.events.push(record.event);
            // The event's text as written, byte for byte: a chunk retried after the crash must be the same object.
            stream.lines.push(line.startsWith(eventLinePrefix) && line.endsWith('}') ? line.slice(eventLinePrefix.length, -1) : JSON.stringify(record.event));
          }
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
    const file = this.segmentFile(this.segment);
    // Written at explicit offsets (not 'a'): a preallocated segment is longer than what it holds.
    const handle = await open(file, segmentFlags, 0o600);
    try {
      // Each segment restates the streams still open, so older segments can go once uploaded.
      const lines = Buffer.from([...this.openContexts.values()].map((context) => JSON.stringify({ t: 'open', context } satisfies WalRecord) + '\n').join(''));
      if (lines.length > 0) {
        const { bytesWritten } = await handle.write(lines, 0, lines.length, 0);
        if (bytesWritten !== lines.length) throw new Error(`short write: ${bytesWritten} of ${lines.length} bytes (disk full?)`);
        if (!dsync) await handle.datasync();
      }
      this.handle = handle;
      this.segmentSize = lines.length;
      this.zeroedTo = lines.length;
      this.preallocating = this.preallocate > 0;
      if (this.preallocating) this.extending = this.extend();
      this.segmentStreams.set(this.segment, new Map());
    } catch (err) {
      await handle.close().catch(() => undefined);
      await rm(file, { force: true }).catch(() => undefined);
      throw err;
    }
  }

  /**
   * After a failure (a full disk): starts a new segment, restating every open stream. Succeeds only when
   * the disk takes and syncs it, and then clears the failure; the failed segment's tail was cut back to
   * its last whole record when the write failed, and the records that failed were never acknowledged.
   */
  async retry(): Promise<boolean> {
    if (!this.failure) return true;
    // Never reopened once closed: a retry after the broker stopped would leave a segment and its thread behind.
    if (this.flushing || this.retrying || this.closed) return false;
    this.retrying = true;
    try {
      await this.handle?.close().catch(() => undefined);
      this.handle = undefined;
      this.segment++;
      await this.openSegment();
      this.failure = undefined;
      return true;
    } catch {
      return false;
    } finally {
      this.retrying = false;
    }
  }

  get failed(): Error | undefined {
    return this.failure;
  }

  /**
   * `work`'s outcome, or undefined once the WAL has failed (at once if it has). What waits on records uses it: a record
   * inside a commit the disk never finishes settles only when the disk answers, which may be never; it lands then, or
   * the next start recovers it, and nothing was acknowledged on it. Nothing is kept once `work` settles.
   */
  untilFailed<T>(work: Promise<T>): Promise<T | undefined> {
    if (this.failure) {
      work.catch(() => undefined);
      return Promise.resolve(undefined);
    }
    return new Promise<T | undefined>((resolve, reject) => {
      const failed = () => resolve(undefined);
      this.failedListeners.add(failed);
      work.then(
        (value) => (this.failedListeners.delete(failed), resolve(value)),
        (err: unknown) => (this.failedListeners.delete(failed), reject(err)),
      );
    });
  }

  get depth(): number {
    return this.queue.length;
  }

  /**
   * Appends one record; resolves once it is durable, rejects if the disk refuses it. A `lazy` record does not start
   * a commit: it joins the next one (another record's, or its own after lazyMs), for records nothing waits on, such
   * as a response already passed on. Records are written in the order appended, lazy or not. `line` is the record's
   * JSON when the caller has it already.
   */
  append(record: WalRecord, lazy = false, line = JSON.stringify(record)): Promise<void> {
    const stream = record.t === 'open' ? record.context.stream : record.t === 'event' ? record.event.stream : record.stream;
    // Known even when the disk refuses it now: the segment that retry() starts restates it.
    if (record.t === 'open') this.openContexts.set(stream, record.context);
    if (this.failure) return Promise.reject(this.failure);
    // After close (an upload that finished as the broker stopped): refused as such, not taken for a failed disk.
    if (this.closed) return Promise.reject(new Error('the write-ahead log is closed: the broker is stopping'));
    const seq = record.t === 'event' ? record.event.seq : -1;
    if (record.t === 'closed') {
      this.openContexts.delete(stream);
      this.uploadedThrough.set(stream, Number.MAX_SAFE_INTEGER);
    }
    if (record.t === 'uploaded') this.uploadedThrough.set(stream, Math.max(this.uploadedThrough.get(stream) ?? -1, record.chunk.lastSeq));
    return new Promise((resolve, reject) => {
      this.queue.push({ line: line + '\n', stream, seq, resolve, reject });
      if (this.flushing) return;
      if (lazy) {
        this.lazyTimer ??= setTimeout(() => this.startFlush(), this.options.lazyMs ?? 5);
        return;
      }
      this.flushing = true;
      clearTimeout(this.lazyTimer);
      this.lazyTimer = undefined;
      setImmediate(() => void this.flush());
    });
  }

  private startFlush(): void {
    this.lazyTimer = undefined;
    if (this.flushing || this.queue.length === 0) return;
    this.flushing = true;
    void this.flush();
  }

  private async flush(): Promise<void> {
    const gather = this.options.gatherMs ?? 0;
    while (this.queue.length > 0 && !this.failure) {
      // While several streams commit, a commit waits a moment for more records to join it: the write and its sync cost
      // per commit, so fewer and fuller commits cost less per record (a quiet session's commit never waits).
      if (gather > 0 && performance.now() < this.busyUntil) await new Promise((r) => setTimeout(r, gather));
      const batch = this.queue.splice(0, this.options.maxBatch);
      const text = batch.map((p) => p.line).join('');
      const bytes = Buffer.byteLength(text);
      try {
        // A write that took only part of the batch (a full disk) is a failure: nothing in it is durable.
        let written: number;
        // Never write where zeroes may still land; past the zeroed end (the disk had no room) the file just grows.
        if (this.extending && this.segmentSize + bytes > this.extendFrom) await this.bounded(this.extending, 'commit');
        if (batch.length > 4 || batch.some((p) => p.stream !== batch[0]!.stream)) this.busyUntil = performance.now() + 50;
        if (this.writer.fits(bytes)) {
          // Usually done before this returns, so the records resolve in this same turn and frames that arrived
          // meanwhile share the next commit; a slow or stalled disk holds the loop commitWaitMs at most (walWriter.ts).
          const done = this.writer.write(this.handle!.fd, text, bytes, this.segmentSize, dsync !== 0);
          written = typeof done === 'number' ? done : await this.bounded(done, 'commit');
        } else {
          const handle = this.handle!;
          const write = async () => {
            const { bytesWritten } = await handle.write(Buffer.from(text), 0, bytes, this.segmentSize);
            if (bytesWritten === bytes && !dsync) await handle.datasync();
            return bytesWritten;
          };
          written = await this.bounded(write(), 'commit');
        }
        if (written !== bytes) throw new Error(`short write: ${written} of ${bytes} bytes (disk full?)`);
      } catch (err) {
        this.failure = walError(err);
        // Cut the torn tail back to the last whole record, so the segment holds only acknowledged records.
        try {
          ftruncateSync(this.handle!.fd, this.segmentSize);
        } catch {
          /* the next segment starts clean anyway; a restart repairs a torn tail */
        }
        for (const p of [...batch, ...this.queue.splice(0)]) p.reject(this.failure);
        break;
      }
      this.segmentSize += bytes;
      this.commits++;
      if (this.preallocating && !this.extending && this.zeroedTo - this.segmentSize < this.preallocate / 2) this.extending = this.extend();
      const perStream = this.segmentStreams.get(this.segment)!;
      for (const p of batch) perStream.set(p.stream, Math.max(perStream.get(p.stream) ?? -1, p.seq));
      for (const p of batch) p.resolve();
      if (this.segmentSize > this.options.segmentBytes) {
        try {
          await this.bounded(this.rotate(), 'rotation to a new segment');
        } catch (err) {
          this.failure = walError(err);
          for (const p of this.queue.splice(0)) p.reject(this.failure);
        }
      }
    }
    this.flushing = false;
    // A stalled commit that landed after all: the disk answers again, so the WAL takes records again now, not at the
    // trail's next tick (records refused meanwhile were never acknowledged; the new segment restates the open streams).
    if ((this.failure as NodeJS.ErrnoException | undefined)?.code === 'ESTALLED' && !this.closed) void this.retry();
  }

  /**
   * Waits for `work` however long it takes (what it writes may still land), but fails the WAL once it has taken
   * stallMs: what is queued behind it, and every record appended from then on, is refused, so commands are refused
   * and the broker fails closed rather than leaving them all waiting on a disk that stopped answering.
   */
  private async bounded<T>(work: Promise<T>, what: string): Promise<T> {
    const stallMs = this.options.stallMs ?? 5000;
    let timer: IoTimer | undefined;
    let settled = false;
    const done = work.then(
      () => (settled = true),
      () => (settled = true),
    );
    // An I/O deadline: a commit that landed while the loop was held up is not taken for a stalled disk.
    const stalled = new Promise<void>((resolve) => (timer = ioTimeout(resolve, stallMs)));
    try {
      await Promise.race([done, stalled]);
      if (!settled && !this.failure) {
        const where = what === 'commit' ? this.writer.whereDetached() : undefined;
        this.failure = Object.assign(walError(new Error(`the disk has not completed a ${what} in ${stallMs / 1000} s (stalled${where ? `: ${where}` : ''})`)), { code: 'ESTALLED' });
        for (const p of this.queue.splice(0)) p.reject(this.failure);
      }
      return await work;
    } finally {
      timer?.cancel();
    }
  }

  /**
   * Zeroes and syncs preallocateBytes past the zeroed end, in the background, once less than half of it is left: it
   * starts at or past the end of every record written so far, and a commit that would pass its start waits for it,
   * so zeroes never land on a record. In a new segment it starts a little past the records, so the first commits
   * need not wait for it (they fill a hole, which reads as zeroes too). A disk without room stops it for this segment
   * (plain appends from then).
   */
  private async extend(): Promise<void> {
    const handle = this.handle!;
    const from = this.zeroedTo > this.segmentSize ? this.zeroedTo : this.segmentSize + Math.min(64 << 10, this.preallocate >> 2);
    this.extendFrom = from;
    try {
      const { bytesWritten } = await handle.write(Buffer.alloc(this.preallocate), 0, this.preallocate, from);
      if (bytesWritten !== this.preallocate) throw new Error('short write');
      if (!dsync) await handle.datasync();
      if (handle === this.handle) this.zeroedTo = from + bytesWritten;
    } catch {
      this.preallocating = false;
    } finally {
      this.extending = undefined;
    }
  }

  private async rotate(): Promise<void> {
    await this.extending;
    // The closed segment ends at its last record (its zeroed tail is cut).
    await this.handle!.truncate(this.segmentSize).catch(() => undefined);
    await this.handle!.close();
    this.handle = undefined;
    this.segment++;
    await this.openSegment();
    // Deleting old segments is no commit's business: the next commit goes on meanwhile.
    void this.compact().catch(() => undefined);
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

  /** Set by close(): nothing more is appended, and a failed log is not reopened. */
  private closed = false;

  /**
   * Waits for the commits in flight, then closes the segment and the writer thread. False when the disk has not
   * answered within stallMs: the WAL is then left as it is (its thread may still land a commit), so a broker can stop on
   * a disk that stopped answering; nothing it had not taken was acknowledged, and the next start repairs the tail.
   */
  async close(): Promise<boolean> {
    if (this.lazyTimer) this.startFlush();
    let gaveUp = false;
    const drained = (async () => {
      // Stops looking once the close has given up, so a disk that never answers leaves no loop turning.
      while ((this.flushing || this.retrying) && !gaveUp) await new Promise((r) => setImmediate(r));
      await this.extending;
    })();
    let timer: IoTimer | undefined;
    const answered = await Promise.race([drained.then(() => !gaveUp), new Promise<false>((resolve) => (timer = ioTimeout(() => resolve(false), this.options.stallMs ?? 5000)))]);
    timer?.cancel();
    gaveUp = !answered;
    if (!answered) return false;
    this.closed = true;
    await this.handle?.close();
    this.handle = undefined;
    await this.writer.close();
    return true;
  }
}
