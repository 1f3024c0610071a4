import { EventEmitter } from 'node:events';
import type { SigningKey } from '../identity/keys';
import { chainEvent, chunkName, genesisHash, hashEvent, manifestName, sha256, streamPrefix, type AuditEvent, type EventType, type StreamContext } from './events';
import { openSeal, seal, type ManifestPayload } from './seal';
import { AuditStoreError, type AuditStore } from './stores/auditStore';
import { backoffDelay } from '../retry';
import type { ChunkInfo, RecoveredStream, WriteAheadLog } from './wal';

export interface AuditTrailOptions {
  readonly chunkMaxEvents: number;
  readonly uploadIntervalMs: number;
  /** How long records may wait for the store before the broker fails closed. */
  readonly failClosedAfterMs: number;
  readonly clock: () => number;
  readonly log?: (line: string) => void;
  /** How long the store may leave a call unanswered before readiness reports it as not answering (default 3 s). */
  readonly storeAnswerTimeoutMs?: number;
  /** How often the store is asked whether it answers when nothing else has reached it (default 2 s). */
  readonly probeIntervalMs?: number;
}

/**
 * `ok`: the store answers and takes records. `degraded`: uploads fail or the store does not answer; records
 * wait in the WAL within the fail-closed bound and the broker reports not ready. `failed`: failed closed.
 */
export type AuditHealth = { readonly state: 'ok' } | { readonly state: 'degraded'; readonly since: number; readonly error: string } | { readonly state: 'failed'; readonly error: string };

/** Encodes a sealed chunk: its events, one per line, then the seal line. */
export function encodeChunk(events: readonly AuditEvent[], jws: string, name: string): Buffer {
  return Buffer.from(events.map((e) => JSON.stringify(e) + '\n').join('') + JSON.stringify({ type: 'seal', chunk: name, jws }) + '\n');
}

const eventsText = (events: readonly AuditEvent[]) => events.map((e) => JSON.stringify(e) + '\n').join('');

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
    private readonly trail: AuditTrail,
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

  /** Appends an event; resolves with it once durable. Rejects when the WAL cannot be written. */
  record(type: EventType, data: Record<string, unknown> = {}): Promise<AuditEvent> {
    const event = chainEvent(this.context, this.seq++, this.head, new Date(this.trail.clock()).toISOString(), type, data);
    this.head = event.hash;
    this.lastEvent = event;
    return this.trail.wal.append({ t: 'event', event }).then(
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
            await this.record(this.context.kind === 'session' ? 'session.ended' : 'stream.closed', { endReason, detail: 'recorded late: the write-ahead log could not take records when this chain ended' });
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

/** All chains of this broker, the WAL under them, the uploader and the fail-closed watch. */
export class AuditTrail extends EventEmitter {
  private readonly streams = new Map<string, AuditStream>();
  private readonly closingStreams = new Set<AuditStream>();
  private timer: NodeJS.Timeout | undefined;
  private degradedSince: number | undefined;
  private lastError = '';
  private failedClosed = false;
  /** Store calls in flight, by when they started (performance.now(): liveness is about real time, whatever the clock). */
  private readonly inFlight = new Map<number, number>();
  private nextCall = 0;
  private lastAnswerAt = performance.now();
  private probing = false;
  private probeError: string | undefined;
  private storeWaiters: (() => void)[] = [];
  readonly clock: () => number;
  readonly log?: (line: string) => void;

  constructor(
    readonly wal: WriteAheadLog,
    readonly store: AuditStore,
    readonly key: SigningKey,
    readonly options: AuditTrailOptions,
  ) {
    super();
    this.clock = options.clock;
    this.log = options.log;
  }

  start(): void {
    this.timer = setInterval(() => void this.tick(), Math.min(this.options.uploadIntervalMs, 1000));
    this.timer.unref();
  }

  private lastUploadRound = 0;

  private async tick(): Promise<void> {
    const now = this.clock();
    if (now - this.lastUploadRound >= this.options.uploadIntervalMs) {
      this.lastUploadRound = now;
      await Promise.all([...this.streams.values()].map((s) => s.upload().catch(() => undefined)));
    }
    this.checkBound();
    this.probe();
    if (this.wal.failed) void this.retryWal();
  }

  /** A failed WAL (a full disk) is tried again on every tick; once it takes records, what waited goes on. */
  private async retryWal(): Promise<void> {
    if (!(await this.wal.retry())) return;
    this.log?.('audit: the write-ahead log takes records again');
    for (const wake of this.storeWaiters.splice(0)) wake();
    this.maybeRecover();
  }

  /** Runs one call to the store, noting how long it has been in flight and when the store last answered. */
  async call<T>(op: () => Promise<T>): Promise<T> {
    const id = this.nextCall++;
    this.inFlight.set(id, performance.now());
    try {
      const result = await op();
      this.lastAnswerAt = performance.now();
      return result;
    } catch (err) {
      // A refusal about the object itself is still an answer.
      if (err instanceof AuditStoreError && (err.code === 'conflict' || err.code === 'not_found')) this.lastAnswerAt = performance.now();
      throw err;
    } finally {
      this.inFlight.delete(id);
    }
  }

  /**
   * Asks the store whether it answers when nothing has reached it for a while, so readiness notices a
   * silent store within seconds, and the broker notices its return without waiting for a retry's backoff.
   */
  private probe(): void {
    const interval = this.options.probeIntervalMs ?? 2000;
    if (this.probing || performance.now() - this.lastAnswerAt < interval) return;
    this.probing = true;
    this.call(() => this.store.check())
      .then(
        () => {
          const wasDown = this.probeError !== undefined || this.degradedSince !== undefined || this.failedClosed;
          this.probeError = undefined;
          if (wasDown) this.storeReturned();
        },
        (err: Error) => {
          this.probeError = err.message;
          this.lastError = err.message;
        },
      )
      .finally(() => {
        this.probing = false;
      });
  }

  /** The store answers again: upload what waits, at once (open and closing chains), and wake closing chains. */
  private storeReturned(): void {
    this.log?.(`audit: store ${this.store.description} answers again; uploading what waits`);
    for (const wake of this.storeWaiters.splice(0)) wake();
    const all = [...this.streams.values(), ...this.closingStreams];
    void Promise.all(all.map((s) => s.upload().catch(() => undefined))).then(() => {
      // Nothing was waiting: the probe's answer is the only news, and it is good.
      if (all.every((s) => s.firstPendingAt === undefined)) this.uploadSucceeded();
    });
  }

  /** Waits `ms`, or less when the store is seen to answer again. */
  waitForStore(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms).unref();
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.storeWaiters.push(done);
    });
  }

  /** Since when a store call has gone unanswered beyond the bound (performance.now() time), if one has. */
  private silentSince(): number | undefined {
    const oldest = Math.min(...this.inFlight.values());
    return performance.now() - oldest > (this.options.storeAnswerTimeoutMs ?? 3000) ? oldest : undefined;
  }

  /** How long the oldest record not yet in the store has waited (0 when none waits). */
  private longestWait(): number {
    const oldest = Math.min(...[...this.streams.values(), ...this.closingStreams].map((s) => s.firstPendingAt ?? Infinity));
    return oldest === Infinity ? 0 : this.clock() - oldest;
  }

  private checkBound(): void {
    const waited = this.longestWait();
    const walFailed = this.wal.failed;
    // Records waiting longer than the bound fail the broker closed, whether uploads fail or hang.
    if ((walFailed || waited > this.options.failClosedAfterMs) && !this.failedClosed) {
      this.failedClosed = true;
      const error = walFailed ? walFailed.message : `audit store ${this.store.description} has not accepted records for ${Math.round(waited / 1000)} s: ${this.lastError}`;
      this.log?.(`audit: failing closed: ${error}`);
      this.emit('fail-closed', error);
    }
  }

  get health(): AuditHealth {
    if (this.wal.failed) return { state: 'failed', error: this.wal.failed.message };
    if (this.failedClosed) return { state: 'failed', error: this.lastError };
    const silent = this.silentSince();
    if (silent !== undefined) {
      const seconds = (performance.now() - silent) / 1000;
      return { state: 'degraded', since: this.clock() - seconds * 1000, error: `audit store ${this.store.description} has not answered for ${seconds.toFixed(1)} s` };
    }
    if (this.degradedSince !== undefined) return { state: 'degraded', since: this.degradedSince, error: this.lastError };
    if (this.probeError !== undefined) return { state: 'degraded', since: this.clock(), error: `audit store ${this.store.description} does not answer: ${this.probeError}` };
    return { state: 'ok' };
  }

  /** Whether new debug commands may be forwarded: not once the trail has failed closed. */
  get accepting(): boolean {
    return !this.failedClosed && !this.wal.failed;
  }

  uploadSucceeded(): void {
    if (this.degradedSince !== undefined) this.log?.(`audit: store ${this.store.description} accepts records again`);
    this.degradedSince = undefined;
    this.probeError = undefined;
    this.maybeRecover();
  }

  /** Recovered once the WAL takes records and no chain still waits past the bound (the store's return uploads them all at once). */
  private maybeRecover(): void {
    if (this.failedClosed && !this.wal.failed && this.longestWait() <= this.options.failClosedAfterMs) {
      this.failedClosed = false;
      this.log?.('audit: the trail accepts records again; new sessions may attach');
      this.emit('recovered');
    }
  }

  uploadFailed(err: Error): void {
    this.lastError = err.message;
    if (this.degradedSince === undefined) {
      this.degradedSince = this.clock();
      this.log?.(`audit: upload to ${this.store.description} failed: ${err.message}`);
    }
    this.checkBound();
  }

  openStream(context: StreamContext, recovered?: RecoveredStream): { stream: AuditStream; opened: Promise<void> } {
    const stream = new AuditStream(context, this, recovered);
    this.streams.set(context.stream, stream);
    return { stream, opened: recovered ? Promise.resolve() : this.wal.append({ t: 'open', context }) };
  }

  detach(stream: AuditStream): void {
    this.streams.delete(stream.id);
    this.closingStreams.add(stream);
  }

  forget(stream: AuditStream): void {
    this.closingStreams.delete(stream);
  }

  /**
   * Chunks a crashed run uploaded but had not yet noted in the WAL: adopted when their bytes match the
   * events the WAL holds, so the restart does not upload the same records again under another name.
   */
  private async adoptUploaded(stream: RecoveredStream): Promise<void> {
    let keys: string[];
    try {
      keys = await this.store.list(streamPrefix(stream.context));
    } catch {
      return; // store down: a chunk begun before the crash is retried with the same boundaries (see nextChunk)
    }
    const known = new Set(stream.chunks.map((c) => c.name));
    for (const key of keys) {
      const match = /chunk-(\d{9})-(\d{9})\.ndjson$/.exec(key);
      if (!match || known.has(key.slice(key.lastIndexOf('/') + 1))) continue;
      const [firstSeq, lastSeq] = [Number(match[1]), Number(match[2])];
      const uploadedThrough = Math.max(-1, ...stream.chunks.map((c) => c.lastSeq));
      if (firstSeq !== uploadedThrough + 1) continue;
      const have = stream.events.filter((e) => e.seq >= firstSeq && e.seq <= lastSeq);
      const body = await this.store.get(key).catch(() => undefined);
      if (!body || !body.toString('utf8').startsWith(eventsText(have))) continue;
      // The WAL may end inside this chunk (cut by a crash or a full disk after the upload): the rest is
      // taken from the store, if its seal is ours and its records continue the chain the WAL holds.
      const missing = have.length < lastSeq - firstSeq + 1 ? await this.storedContinuation(body, have, firstSeq, lastSeq) : [];
      if (missing === undefined) continue;
      for (const event of missing) await this.wal.append({ t: 'event', event });
      const events = [...have, ...missing];
      stream.events.push(...missing);
      if (missing.length > 0) {
        this.log?.(`audit: ${stream.context.stream}: the write-ahead log ended at seq ${firstSeq + have.length - 1}; seq ${missing[0]!.seq}-${lastSeq} reconciled from the store (${key})`);
        this.reconciled.push({ stream: stream.context.stream, fromSeq: missing[0]!.seq, toSeq: lastSeq, chunk: key });
      }
      const chunk: ChunkInfo = { name: key.slice(key.lastIndexOf('/') + 1), firstSeq, lastSeq, sha256: sha256(eventsText(events)), headHash: events.at(-1)!.hash };
      await this.wal.append({ t: 'uploaded', stream: stream.context.stream, chunk });
      stream.chunks.push(chunk);
    }
  }

  /** Streams whose records were taken back from the store at recovery (logged, and recorded by the broker). */
  readonly reconciled: { stream: string; fromSeq: number; toSeq: number; chunk: string }[] = [];

  /** The records of a stored chunk after those the WAL has, when its seal verifies and they chain on; else undefined. */
  private async storedContinuation(body: Buffer, have: readonly AuditEvent[], firstSeq: number, lastSeq: number): Promise<AuditEvent[] | undefined> {
    const lines = body.toString('utf8').split('\n').filter((l) => l !== '');
    try {
      const sealLine = JSON.parse(lines.at(-1)!) as { type?: string; jws?: string };
      const events = lines.slice(0, -1).map((l) => JSON.parse(l) as AuditEvent);
      if (sealLine.type !== 'seal' || !sealLine.jws || events.length !== lastSeq - firstSeq + 1) return undefined;
      const sealed = await openSeal(sealLine.jws, { keys: [this.key.publicJwk] }, 'loupe-chunk+jws');
      if (sealed.chunkSha256 !== sha256(eventsText(events)) || sealed.firstSeq !== firstSeq || sealed.lastSeq !== lastSeq) return undefined;
      let prev = have.at(-1)?.hash ?? (firstSeq === 0 ? genesisHash(events[0]!.stream) : undefined);
      const rest = events.slice(have.length);
      for (const [i, event] of rest.entries()) {
        const { hash, ...body } = event;
        if (event.seq !== firstSeq + have.length + i || event.prev !== prev || hashEvent(body) !== hash) return undefined;
        prev = hash;
      }
      return rest;
    } catch {
      return undefined;
    }
  }

  /** After a crash: upload what the WAL holds and close every chain that was open, marking its abrupt end. */
  async recover(recovered: Map<string, RecoveredStream>): Promise<{ streams: number; events: number }> {
    let events = 0;
    for (const stream of recovered.values()) {
      if (stream.closed) continue;
      await this.adoptUploaded(stream);
      const { stream: chain } = this.openStream(stream.context, stream);
      const last = chain.last;
      const ended = last?.type === 'session.ended' || last?.type === 'stream.closed';
      if (!ended) {
        // With a full disk this cannot be recorded now; close() records the end once the WAL takes records.
        const recorded = await chain
          .record(stream.context.kind === 'session' ? 'session.ended' : 'stream.closed', {
            endReason: 'broker_crashed',
            detail: 'the broker stopped without closing this chain; recovered from its write-ahead log on restart',
            lastRecordedSeq: last?.seq ?? null,
          })
          .then(
            () => true,
            () => false,
          );
        if (recorded) events++;
      }
      events += stream.events.length;
      void chain.close(ended ? String((last!.data as { endReason?: string }).endReason ?? 'ended') : 'broker_crashed').catch((err) => this.log?.(`audit: cannot close recovered ${chain.id}: ${(err as Error).message}`));
    }
    return { streams: [...recovered.values()].filter((s) => !s.closed).length, events };
  }

  /** Waits for every chain that is closing (used at shutdown and in tests). */
  async settle(timeoutMs = 10_000): Promise<boolean> {
    const all = Promise.all([...this.closingStreams].map((s) => s.close('shutdown')));
    const timeout = new Promise<false>((r) => setTimeout(() => r(false), timeoutMs).unref());
    return Promise.race([all.then(() => true as const), timeout]);
  }

  stopped = false;

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    await this.wal.close();
  }
}
