import type { SigningKey } from '../identity/keys';
import { backoffDelay } from '../retry';
import { chainEvent, chunkName, genesisHash, manifestName, sha256, streamPrefix, type AuditEvent, type EventType, type StreamContext } from './events';
import { seal, type ManifestPayload } from './seal';
import { AuditStoreError, type AuditStore } from './stores/auditStore';
import type { ChunkInfo, RecoveredStream, WriteAheadLog } from './wal';

/** What a chain needs of the trail that holds it (AuditTrail): the WAL, the store, the key, and its bookkeeping. */
export interface ChainHost {
  readonly clock: () => number;
  readonly wal: WriteAheadLog;
  readonly store: AuditStore;
  readonly key: SigningKey;
  readonly options: { readonly chunkMaxEvents: number };
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

/** Encodes a sealed chunk: its events, one per line, then the seal line. */
export function encodeChunk(events: readonly AuditEvent[], jws: string, name: string): Buffer {
  return Buffer.from(eventsText(events) + JSON.stringify({ type: 'seal', chunk: name, jws }) + '\n');
}

/** Each event's JSON, made once when it is recorded (the WAL line, the chunk's hash and the chunk's body use it). */
const eventJson = new WeakMap<AuditEvent, string>();
const jsonOf = (e: AuditEvent): string => eventJson.get(e) ?? JSON.stringify(e);

export const eventsText = (events: readonly AuditEvent[]) => events.map((e) => jsonOf(e) + '\n').join('');

/**
 * One hash chain: a session, or a broker run's grant events. `record` fixes the event's place in the
 * chain at once and resolves when it is durable in the WAL; uploads to the store follow in sealed chunks.
 */
export class AuditStream {
  private seq = 0;
  private head: string;
  /** Durable in the WAL, not yet in the store. */
  private pending: AuditEvent[] = [];
  private readonly chunks: ChunkInfo[] = [];
  private uploading: Promise<void> | undefined;
  private closing: Promise<void> | undefined;
  private lastEvent: AuditEvent | undefined;
  private lastDurable: AuditEvent | undefined;
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
      for (const event of recovered.events) {
        this.seq = event.seq + 1;
        this.head = event.hash;
        this.lastEvent = event;
        this.lastDurable = event;
        if (event.type === 'session.ended' || event.type === 'stream.closed') this.endRecorded = true;
        if (event.seq > uploadedThrough) this.pending.push(event);
      }
      if (this.pending.length > 0) this.firstPendingAt = trail.clock();
      if (recovered.uploading && recovered.uploading.firstSeq === uploadedThrough + 1 && this.pending.some((e) => e.seq === recovered.uploading!.lastSeq)) this.nextChunk = recovered.uploading;
    }
  }

  get id(): string {
    return this.context.stream;
  }

  get last(): AuditEvent | undefined {
    return this.lastEvent;
  }

  get isClosed(): boolean {
    return this.closing !== undefined;
  }

  /**
   * Appends an event; resolves with it once durable. Rejects when the WAL cannot be written. `lazy`: nothing waits
   * on it before acting (a response already passed on), so it joins the WAL's next commit (see WriteAheadLog.append).
   */
  record(type: EventType, data: Record<string, unknown> = {}, lazy = false): Promise<AuditEvent> {
    const event = chainEvent(this.context, this.seq++, this.head, new Date(this.trail.clock()).toISOString(), type, data);
    this.head = event.hash;
    this.lastEvent = event;
    const json = JSON.stringify(event);
    eventJson.set(event, json);
    return this.trail.wal.append({ t: 'event', event }, lazy, `{"t":"event","event":${json}}`).then(
      () => {
        this.lastDurable = event;
        if (type === 'session.ended' || type === 'stream.closed') this.endRecorded = true;
        this.pending.push(event);
        this.firstPendingAt ??= this.trail.clock();
        this.trail.emit('event', event);
        if (this.pending.length >= this.trail.options.chunkMaxEvents) void this.upload().catch(() => undefined);
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
  }

  private retainUntil(): Date {
    return new Date(Date.parse(this.context.startedAt) + this.context.retentionDays * 86400_000);
  }

  /** Uploads everything pending as sealed chunks, one upload at a time per stream. */
  upload(): Promise<void> {
    if (this.uploading) return this.uploading.then(() => (this.pending.length > 0 ? this.upload() : undefined));
    if (this.pending.length === 0) return Promise.resolve();
    this.uploading = (async () => {
      try {
        while (this.pending.length > 0) {
          if (!this.nextChunk) {
            const next = this.pending.slice(0, this.trail.options.chunkMaxEvents);
            const bounds = { firstSeq: next[0]!.seq, lastSeq: next.at(-1)!.seq };
            await this.trail.wal.append({ t: 'uploading', stream: this.id, ...bounds });
            this.nextChunk = bounds;
          }
          const { lastSeq } = this.nextChunk;
          const events = this.pending.filter((e) => e.seq <= lastSeq);
          const first = events[0]!;
          const last = events.at(-1)!;
          const name = chunkName(first.seq, last.seq);
          const chunkSha256 = sha256(eventsText(events));
          const jws = await seal(this.trail.key, { session: this.id, firstSeq: first.seq, lastSeq: last.seq, chunkSha256, headHash: last.hash }, 'loupe-chunk+jws');
          const putStarted = performance.now();
          await this.trail.call(() => this.trail.store.put(streamPrefix(this.context) + name, encodeChunk(events, jws, name), this.retainUntil()));
          this.trail.emit('uploaded', (performance.now() - putStarted) / 1000);
          const chunk: ChunkInfo = { name, firstSeq: first.seq, lastSeq: last.seq, sha256: chunkSha256, headHash: last.hash };
          await this.trail.wal.append({ t: 'uploaded', stream: this.id, chunk });
          this.chunks.push(chunk);
          this.pending = this.pending.slice(events.length);
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
          // The chain's last record, when the disk refused it at the end (it is recorded now, when the WAL takes records again).
          if (!this.endRecorded) {
            await this.record(this.context.kind === 'session' ? 'session.ended' : 'stream.closed', {
              endReason,
              detail: 'recorded late: the write-ahead log could not take records when this chain ended',
            });
          }
          await this.upload();
          const payload: ManifestPayload = {
            session: this.id,
            kind: this.context.kind,
            chunks: this.chunks,
            lastSeq: this.seq - 1,
            headHash: this.head,
            closedAt: new Date(this.trail.clock()).toISOString(),
            endReason,
          };
          const jws = await seal(this.trail.key, payload, 'loupe-manifest+jws');
          const manifest = { type: 'manifest', ...payload, context: this.context, jws };
          try {
            await this.trail.call(() => this.trail.store.put(streamPrefix(this.context) + manifestName, Buffer.from(JSON.stringify(manifest) + '\n'), this.retainUntil()));
          } catch (err) {
            // A manifest written before a crash, for this same chain head, already closes the stream.
            if (!(err instanceof AuditStoreError && err.code === 'conflict')) throw err;
            const existing = JSON.parse((await this.trail.store.get(streamPrefix(this.context) + manifestName)).toString('utf8')) as ManifestPayload;
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
