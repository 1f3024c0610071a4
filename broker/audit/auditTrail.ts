import { EventEmitter } from 'node:events';
import type { SigningKey } from '../identity/keys';
import { AuditStream, type ChainHost } from './auditStream';
import type { StreamContext } from './events';
import { adoptUploaded, type Reconciled, type RecoveryContext } from './recovery';
import { AuditStoreError, type AuditStore } from './stores/auditStore';
import type { RecoveredStream, WriteAheadLog } from './wal';

// The chain's type, for the modules that receive chains from the trail (sessions, the security stream).
export { AuditStream } from './auditStream';

export interface AuditTrailOptions {
  readonly chunkMaxEvents: number;
  /** Bytes of events per chunk (default defaultChunkMaxBytes). */
  readonly chunkMaxBytes?: number;
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

/** Streams uploading at once in an upload round (see AuditTrail.uploadEach). */
const uploadConcurrency = 16;

/**
 * `ok`: the store answers and takes records. `degraded`: uploads fail or the store does not answer; records
 * wait in the WAL within the fail-closed bound and the broker reports not ready. `failed`: failed closed.
 */
export type AuditHealth = { readonly state: 'ok' } | { readonly state: 'degraded'; readonly since: number; readonly error: string } | { readonly state: 'failed'; readonly error: string };

/** All chains of this broker, the WAL under them, the uploader and the fail-closed watch. */
export class AuditTrail extends EventEmitter implements ChainHost, RecoveryContext {
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
  private uploadRound: Promise<void> | undefined;

  private async tick(): Promise<void> {
    const now = this.clock();
    // One round at a time: a round that outlasts the interval is not joined by the next (each stream uploads what waits).
    if (!this.uploadRound && now - this.lastUploadRound >= this.options.uploadIntervalMs) {
      this.lastUploadRound = now;
      this.uploadRound = this.uploadEach([...this.streams.values()]).finally(() => (this.uploadRound = undefined));
      await this.uploadRound;
    }
    // A round that was under way when the trail stopped: nothing more, no retry of a log stop() closed.
    if (this.stopped) return;
    this.checkBound();
    this.probe();
    if (this.wal.failed) {
      this.walDown = true;
      void this.retryWal();
    } else if (this.walDown) this.walBack();
  }

  /**
   * Uploads what each stream has waiting, `uploadConcurrency` streams at a time. A hundred sessions uploading at once
   * put a thousand file operations (a local store) ahead of the WAL's writes and syncs in libuv's thread pool, and
   * every session's next request waited behind them.
   */
  private async uploadEach(streams: readonly AuditStream[]): Promise<void> {
    let next = 0;
    const worker = async () => {
      while (next < streams.length) await streams[next++]!.upload().catch(() => undefined);
    };
    await Promise.all(Array.from({ length: Math.min(this.store.uploadConcurrency ?? uploadConcurrency, streams.length) }, worker));
  }

  /** A failed WAL (a full disk) is tried again on every tick; once it takes records, what waited goes on. */
  private async retryWal(): Promise<void> {
    if (this.stopped || !(await this.wal.retry())) return;
    this.walBack();
  }

  /** Whether the WAL was seen failed and has not been seen taking records since. */
  private walDown = false;

  /** The WAL takes records again (retried here, or by itself once a stalled commit landed). */
  private walBack(): void {
    if (!this.walDown) return;
    this.walDown = false;
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

  /** Streams whose records were taken back from the store at recovery (logged, and recorded by the broker). */
  readonly reconciled: Reconciled[] = [];

  /** After a crash: upload what the WAL holds and close every chain that was open, marking its abrupt end. */
  async recover(recovered: Map<string, RecoveredStream>): Promise<{ streams: number; events: number }> {
    let events = 0;
    for (const stream of recovered.values()) {
      if (stream.closed) continue;
      await adoptUploaded(stream, this);
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
      void chain
        .close(ended ? String((last!.data as { endReason?: string }).endReason ?? 'ended') : 'broker_crashed')
        .catch((err) => this.log?.(`audit: cannot close recovered ${chain.id}: ${(err as Error).message}`));
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

  /** False when the WAL's disk did not answer (see WriteAheadLog.close). */
  async stop(): Promise<boolean> {
    this.stopped = true;
    clearInterval(this.timer);
    return this.wal.close();
  }
}
