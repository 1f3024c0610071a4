import type { SigningKey } from '../identity/keys';
import { backoffDelay } from '../retry';
import { chainEventLine, chunkName, genesisHash, manifestName, sha256, streamPrefix, type AuditEvent, type EventType, type StreamContext } from './events';
import { seal, type ManifestPayload } from './seal';
import { AuditStoreError, maxAuditObjectBytes, type AuditStore } from './stores/auditStore';
import { eventLinePrefix, type ChunkInfo, type RecoveredStream, type WriteAheadLog } from './wal';

/** What a chain needs of the trail that holds it (AuditTrail): the WAL, the store, the key, and its bookkeeping. */
export interface ChainHost {
  readonly clock: () => number;
  readonly wal: WriteAheadLog;
  readonly store: AuditStore;
  readonly key: SigningKey;
  readonly options: { readonly chunkMaxEvents: number; readonly chunkMaxBytes?: number };
  readonly log?: ((line: string) => void) | undefined;
  /** Set at shutdown: a chain that cannot close then is completed from the WAL by the next start. */
  readonly stopped: boolean;
  /** 'event' with each durable record, 'uploaded' with each chunk's upload time in seconds. */
  emit(event: 'event' | 'uploaded', value: AuditEvent | number): boolean;
  /** Runs one call to the store, noting how long it takes (readiness). */
  call<T>(op: () => Promise<T>): Promise<T>;
  uploadSucceeded(): void;
  uploadFailed(err: Error): void;
  /** The chain is closing: it leaves the open chains, and stays watched until forget(). */
  detach(stream: AuditStream): void;
  forget(stream: AuditStream): void;
  /** Waits `ms`, or less when the store (or the WAL) is seen to take records again. */
  waitForStore(ms: number): Promise<void>;
}

/** Encodes a sealed chunk: its events' text (one line each, as linesText), then the seal line. */
export function encodeChunk(text: string, jws: string, name: string): Buffer {
  return Buffer.from(text + JSON.stringify({ type: 'seal', chunk: name, jws }) + '\n');
}

/** A chunk's text: each event's line (its JSON as the WAL holds it) and a newline. */
export const linesText = (lines: readonly string[]) => lines.map((line) => line + '\n').join('');

/** Bytes of events per chunk when the config sets no bound: a busy session's records fill it in about a second. */
export const defaultChunkMaxBytes = 1 << 20;

/**
 * A record durable in the WAL and not yet in the store, with its line as the chunk will hold it. Its seq and hash
 * only, not the event: a busy session holds a second of records until the upload round, and the events' data (params,
 * summaries) would outlive the young generation for nothing.
 */
interface PendingEvent {
  readonly seq: number;
  readonly hash: string;
  readonly line: string;
}

/**
 * One hash chain: a session, or a broker run's grant events. `record` fixes the event's place in the
 * chain at once and resolves when it is durable in the WAL; uploads to the store follow in sealed chunks.
 */
export class AuditStream {
  private seq = 0;
  private head: string;
  /** Durable in the WAL, not yet in the store. */
  private pending: PendingEvent[] = [];
  /** The length of the pending events' lines. */
  private pendingBytes = 0;
  private readonly chunks: ChunkInfo[] = [];
  private uploading: Promise<void> | undefined;
  private closing: Promise<void> | undefined;
  private lastEvent: AuditEvent | undefined;
  private lastDurable: AuditEvent | undefined;
  /** The chain's last record (the WAL settles records in order, so every earlier one has settled once it has). */
  private tail: Promise<unknown> = Promise.resolve();
  /** Whether the chain's end (session.ended / stream.closed) is durable. */
  private endRecorded = false;
  /**
   * The boundaries of the chunk being uploaded, fixed (in the WAL) before its first attempt: a retry after a
   * lost answer sends the very same object (the seal is deterministic EdDSA), which the store accepts as
   * already there, instead of an overlapping chunk that would break the transcript for good.
   */
  private nextChunk: { firstSeq: number; lastSeq: number } | undefined;
  firstPendingAt: number | undefined;

  constructor(
    readonly context: StreamContext,
    private readonly trail: ChainHost,
    recovered?: RecoveredStream,
  ) {
    this.head = genesisHash(context.stream);
    if (recovered) {
      const uploadedThrough = Math.max(-1, ...recovered.chunks.map((c) => c.lastSeq));
      this.chunks.push(...[...recovered.chunks].sort((a, b) => a.firstSeq - b.firstSeq));
      for (const [i, event] of recovered.events.entries()) {
        this.seq = event.seq + 1;
        this.head = event.hash;
        this.lastEvent = event;
        this.lastDurable = event;
        if (event.type === 'session.ended' || event.type === 'stream.closed') this.endRecorded = true;
        if (event.seq > uploadedThrough) this.addPending(event, recovered.lines[i]!);
      }
      if (this.pending.length > 0) this.firstPendingAt = trail.clock();
      if (recovered.uploading && recovered.uploading.firstSeq === uploadedThrough + 1 && this.pending.some((p) => p.seq === recovered.uploading!.lastSeq)) this.nextChunk = recovered.uploading;
    }
  }

  get id(): string {
    return this.context.stream;
  }

  get last(): AuditEvent | undefined {
    return this.lastEvent;
  }

  /** `work`'s outcome, or undefined once the WAL has failed (see WriteAheadLog.untilFailed). */
  untilWalFailed<T>(work: Promise<T>): Promise<T | undefined> {
    return this.trail.wal.untilFailed(work);
  }

  get isClosed(): boolean {
    return this.closing !== undefined;
  }

  /**
   * Appends an event; resolves with it once durable. Rejects when the WAL cannot be written. `lazy`: nothing waits
   * on it before acting (a response already passed on), so it joins the WAL's next commit (see WriteAheadLog.append).
   */
  record(type: EventType, data: Record<string, unknown> = {}, lazy = false): Promise<AuditEvent> {
    // Serialized once, canonically: the hash, the WAL line and the chunk's line.
    const { event, json } = chainEventLine(this.context, this.seq++, this.head, new Date(this.trail.clock()).toISOString(), type, data);
    this.head = event.hash;
    this.lastEvent = event;
    const appended = this.trail.wal.append({ t: 'event', event }, lazy, `${eventLinePrefix}${json}}`).then(
      () => {
        this.lastDurable = event;
        if (type === 'session.ended' || type === 'stream.closed') this.endRecorded = true;
        this.addPending(event, json);
        this.firstPendingAt ??= this.trail.clock();
        this.trail.emit('event', event);
        // A full chunk leaves now; a partial one waits for the trail's next upload round (uploadIntervalMs), so a
        // busy session costs a PUT per full chunk plus one per round, never one per record.
        if (!this.uploading && this.fullChunkPending()) void this.upload({ fullChunksOnly: true }).catch(() => undefined);
        return event;
      },
      (err: unknown) => {
        // Never durable, so it never happened: the chain goes back to before it (and before any record queued
        // after it, all refused with it), so it continues whole once the disk takes records again.
        if (event.seq < this.seq) {
          this.seq = event.seq;
          this.head = event.prev;
          this.lastEvent = this.lastDurable;
        }
        throw err;
      },
    );
    // The close waits for every record already in the chain (a lazy one too) before its last upload and manifest.
    this.tail = appended;
    return appended;
  }

  private retainUntil(): Date {
    return new Date(Date.parse(this.context.startedAt) + this.context.retentionDays * 86400_000);
  }

  /** `json`: the event's line as the WAL holds it (record() makes it once for the hash, the WAL and the chunk). */
  private addPending(event: AuditEvent, json: string): void {
    const line = json + '\n';
    this.pending.push({ seq: event.seq, hash: event.hash, line });
    this.pendingBytes += line.length;
  }

  private get chunkMaxBytes(): number {
    return this.trail.options.chunkMaxBytes ?? defaultChunkMaxBytes;
  }

  /** Enough is pending for a chunk at its bound (events or bytes). */
  private fullChunkPending(): boolean {
    return this.pending.length >= this.trail.options.chunkMaxEvents || this.pendingBytes >= this.chunkMaxBytes;
  }

  /** How many pending events the next chunk takes: up to chunkMaxEvents and chunkMaxBytes, at least one. */
  private nextChunkSize(): number {
    const maxEvents = this.trail.options.chunkMaxEvents;
    const maxBytes = this.chunkMaxBytes;
    let bytes = 0;
    let count = 0;
    for (const { line } of this.pending) {
      if (count >= maxEvents || (count > 0 && bytes + line.length > maxBytes)) break;
      bytes += line.length;
      count++;
    }
    return count;
  }

  /**
   * Uploads as sealed chunks, one upload at a time per stream: everything pending when called (an upload round,
   * and a close), or with `fullChunksOnly` only chunks at their bound. Records that arrive meanwhile go with this
   * upload only as full chunks; the rest waits for the next round.
   */
  upload(options: { fullChunksOnly?: boolean } = {}): Promise<void> {
    if (this.uploading) return this.uploading.then(() => this.upload(options));
    if (this.pending.length === 0) return Promise.resolve();
    const through = options.fullChunksOnly ? -1 : this.pending.at(-1)!.seq;
    this.uploading = (async () => {
      try {
        while (this.pending.length > 0 && (this.nextChunk || this.pending[0]!.seq <= through || this.fullChunkPending())) {
          if (!this.nextChunk) {
            const next = this.pending.slice(0, this.nextChunkSize());
            const bounds = { firstSeq: next[0]!.seq, lastSeq: next.at(-1)!.seq };
            await this.trail.wal.append({ t: 'uploading', stream: this.id, ...bounds });
            this.nextChunk = bounds;
          }
          const { lastSeq } = this.nextChunk;
          const taken = this.pending.filter((p) => p.seq <= lastSeq);
          const first = taken[0]!;
          const last = taken.at(-1)!;
          const name = chunkName(first.seq, last.seq);
          const text = taken.map((p) => p.line).join('');
          const chunkSha256 = sha256(text);
          const jws = await seal(this.trail.key, { session: this.id, firstSeq: first.seq, lastSeq: last.seq, chunkSha256, headHash: last.hash }, 'loupe-chunk+jws');
          const putStarted = performance.now();
          await this.trail.call(() => this.trail.store.put(streamPrefix(this.context) + name, encodeChunk(text, jws, name), this.retainUntil()));
          this.trail.emit('uploaded', (performance.now() - putStarted) / 1000);
          const chunk: ChunkInfo = { name, firstSeq: first.seq, lastSeq: last.seq, sha256: chunkSha256, headHash: last.hash };
          await this.trail.wal.append({ t: 'uploaded', stream: this.id, chunk });
          this.chunks.push(chunk);
          this.pending = this.pending.slice(taken.length);
          this.pendingBytes -= text.length;
          this.nextChunk = undefined;
          this.firstPendingAt = this.pending.length > 0 ? this.trail.clock() : undefined;
          this.trail.uploadSucceeded();
        }
      } catch (err) {
        if (err instanceof AuditStoreError && err.code === 'conflict') {
          // The same key with other bytes: tampering in the store, or a bug. Never papered over; the chain waits (and fails closed).
          this.trail.log?.(`audit: CONFLICT: ${this.id}: ${err.message}; this chain cannot be uploaded until it is investigated`);
        }
        this.trail.uploadFailed(err as Error);
        throw err;
      } finally {
        this.uploading = undefined;
      }
    })();
    return this.uploading;
  }

  /**
   * Ends the chain: uploads what is left and writes the sealed manifest. Retries while the store is down,
   * so a stream that ended during an outage is completed when the store returns.
   */
  close(endReason: string): Promise<void> {
    this.closing ??= (async () => {
      this.trail.detach(this);
      for (let attempt = 0; ; attempt++) {
        try {
          if (this.trail.wal.failed) throw this.trail.wal.failed;
          // Until no record joined the chain while the last ones were uploaded: the manifest then covers every record.
          let tail: Promise<unknown>;
          do {
            tail = this.tail;
            await tail.then(
              () => undefined,
              () => undefined,
            );
            // The chain's last record, when the disk refused it at the end (it is recorded now, when the WAL takes records again).
            if (!this.endRecorded) {
              await this.record(this.context.kind === 'session' ? 'session.ended' : 'stream.closed', {
                endReason,
                detail: 'recorded late: the write-ahead log could not take records when this chain ended',
              });
            }
            await this.upload();
          } while (tail !== this.tail);
          const payload: ManifestPayload = {
            session: this.id,
            kind: this.context.kind,
            chunks: this.chunks,
            lastSeq: this.seq - 1,
            headHash: this.head,
            closedAt: new Date(this.trail.clock()).toISOString(),
            endReason,
            context: this.context,
          };
          const jws = await seal(this.trail.key, payload, 'loupe-manifest+jws');
          const manifest = { type: 'manifest', ...payload, jws };
          try {
            await this.trail.call(() => this.trail.store.put(streamPrefix(this.context) + manifestName, Buffer.from(JSON.stringify(manifest) + '\n'), this.retainUntil()));
          } catch (err) {
            // A manifest written before a crash, for this same chain head, already closes the stream.
            if (!(err instanceof AuditStoreError && err.code === 'conflict')) throw err;
            const existing = JSON.parse((await this.trail.store.get(streamPrefix(this.context) + manifestName, maxAuditObjectBytes)).toString('utf8')) as ManifestPayload;
            if (existing.lastSeq !== payload.lastSeq || existing.headHash !== payload.headHash) throw err;
          }
          await this.trail.wal.append({ t: 'closed', stream: this.id });
          await this.trail.wal.compact();
          this.trail.forget(this);
          return;
        } catch (err) {
          if (this.trail.stopped) throw err; // the next start completes it from the WAL
          // A full disk or a store outage: the chain waits for either to return (both wake it), and is completed then.
          this.trail.log?.(`audit: closing ${this.id} waits for the ${this.trail.wal.failed ? 'write-ahead log' : 'store'}: ${(err as Error).message}`);
          await this.trail.waitForStore(backoffDelay(attempt, { baseMs: 500, maxMs: 30_000 }));
        }
      }
    })();
    return this.closing;
  }
}
