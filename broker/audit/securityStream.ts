import { createHash, randomUUID } from 'node:crypto';
import type { AuditStream, AuditTrail } from './auditTrail';
import { manifestName, type EventType, type StreamContext } from './events';
import { AuditStoreError, maxAuditObjectBytes, type AuditStore } from './stores/auditStore';

export interface SecurityStreamOptions {
  /** Events waiting to be chained; beyond this a flood is counted, not kept, and one summary record says so. */
  readonly maxQueued: number;
  /**
   * While the store does not accept records, at most this many are kept waiting for it (in the WAL and in memory);
   * the rest are counted, so a flood during an outage cannot grow memory without bound.
   */
  readonly maxBacklog: number;
  /** A segment is closed (sealed by its manifest) and the next one opened after this many events… */
  readonly segmentMaxEvents: number;
  /** …or when it is this old and holds events. */
  readonly segmentMaxSeconds: number;
  readonly retentionDays: number;
  readonly log?: (line: string) => void;
}

export const defaultSecurityStreamOptions = { maxQueued: 1000, maxBacklog: 10_000, segmentMaxEvents: 10_000, segmentMaxSeconds: 3600 } as const;

/** Under a flood of events, the least time between two drains of the queue (each one WAL commit). */
export const drainIntervalMs = 50;

/** What an attacker controls is cut to this many characters before it is recorded. */
export const maxFieldChars = 200;

/** A string an attacker may control, cut to `max` characters (saying how much was cut); anything else is null. */
export function bounded(value: unknown, max = maxFieldChars): string | null {
  if (typeof value !== 'string') return null;
  return value.length <= max ? value : `${value.slice(0, max)}… (${value.length} characters)`;
}

/** A credential is never recorded, only enough of its digest to tell two attempts with the same one apart. */
export function credentialDigest(secret: string | undefined | null): string | null {
  return secret ? `sha256:${createHash('sha256').update(secret).digest('hex').slice(0, 16)}` : null;
}

interface Queued {
  readonly type: EventType;
  readonly data: Record<string, unknown>;
  readonly observedAt: string;
}

/**
 * The broker's own chain of security events (refused attaches, rejected identity tokens, malformed grant
 * requests, session faults), kept like a session chain: WAL, sealed chunks, a sealed manifest per segment.
 * Recording never waits and never costs an fsync per event: events are queued (bounded) and chained in
 * batches that share one WAL group commit. Within a broker run, each segment names its predecessor's id and head hash.
 */
export class SecurityStream {
  private segment: AuditStream | undefined;
  private segmentEvents = 0;
  private segmentOpenedAt = 0;
  private queue: Queued[] = [];
  private readonly dropped = new Map<string, number>();
  private droppedSince: string | undefined;
  private draining: Promise<void> | undefined;
  private lastDrainAt = -Infinity;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  private writeFailureLogged = false;
  /** Events recorded since the store stopped accepting records. */
  private backlog = 0;

  constructor(
    private readonly trail: AuditTrail,
    private readonly options: SecurityStreamOptions,
  ) {}

  /** The segment being written (none while the WAL cannot be written at start-up). */
  get current(): AuditStream | undefined {
    return this.segment;
  }

  /**
   * Opens the first segment. A WAL that cannot be written does not stop the broker from starting: events are
   * queued (bounded) and the segment is opened once the WAL takes records again.
   */
  async start(): Promise<void> {
    const every = Math.min(5_000, (this.options.segmentMaxSeconds * 1000) / 4);
    this.timer = setInterval(() => void this.ensureSegment().then(() => this.schedule()), every);
    this.timer.unref();
    await this.ensureSegment();
  }

  private opening: Promise<void> | undefined;

  private ensureSegment(): Promise<void> {
    if (this.segment || this.closed) return Promise.resolve();
    this.opening ??= this.openSegment(undefined)
      .catch((err: Error) => this.options.log?.(`audit: cannot open the security stream yet: ${err.message}`))
      .finally(() => (this.opening = undefined));
    return this.opening;
  }

  /** Queues an event; returns at once. */
  record(type: EventType, data: Record<string, unknown>): void {
    if (this.closed) return;
    if (this.queue.length >= this.options.maxQueued) this.count(type);
    else this.queue.push({ type, data, observedAt: new Date(this.trail.clock()).toISOString() });
    this.schedule();
  }

  /** Counted events are summarized at the next drain, unless the store is down and the backlog full: then once it is back. */
  private get summaryDue(): boolean {
    return this.dropped.size > 0 && (this.trail.health.state === 'ok' || this.backlog < this.options.maxBacklog);
  }

  private count(type: EventType): void {
    this.dropped.set(type, (this.dropped.get(type) ?? 0) + 1);
    this.droppedSince ??= new Date(this.trail.clock()).toISOString();
  }

  /** Resolves once everything queued so far is durable in the WAL (tests, shutdown). */
  async flush(): Promise<void> {
    // A rotation leaves no segment while it opens the next one: wait for that drain too, or close() finds none.
    while (this.draining || (this.segment && (this.queue.length > 0 || this.summaryDue))) {
      this.schedule();
      // Not past a failed WAL: a drain whose records are inside a commit the disk never finishes would never end.
      if ((await this.trail.wal.untilFailed((this.draining ?? Promise.resolve()).then(() => true))) === undefined) return;
    }
  }

  private schedule(): void {
    if (this.draining || !this.segment) return;
    // A quiet stream drains at once; under a flood, one drain (one WAL commit) per drainIntervalMs at most, so what a
    // flood costs the disk is bounded by its duration, not by its count or by how fast the broker answers it.
    const wait = this.lastDrainAt + drainIntervalMs - performance.now();
    this.draining = new Promise<void>((r) => (wait > 0 ? setTimeout(r, wait) : setImmediate(r)))
      .then(() => {
        this.lastDrainAt = performance.now();
        return this.drain();
      })
      .catch((err: Error) => this.options.log?.(`audit: security stream: ${err.message}`))
      .finally(() => {
        this.draining = undefined;
        if (this.queue.length > 0 || this.summaryDue) this.schedule();
      });
  }

  private async drain(): Promise<void> {
    const segment = this.segment!;
    // No more than the segment has room for: a burst that arrived during the last drain goes on in the next segment.
    let batch = this.queue.splice(0, Math.max(1, this.options.segmentMaxEvents - this.segmentEvents));
    if (this.trail.health.state === 'ok') this.backlog = 0;
    else {
      const room = Math.max(0, this.options.maxBacklog - this.backlog);
      for (const e of batch.slice(room)) this.count(e.type);
      batch = batch.slice(0, room);
      this.backlog += batch.length;
    }
    const writes = batch.map((e) => segment.record(e.type, { ...e.data, observedAt: e.observedAt }));
    if (this.summaryDue) {
      this.backlog++;
      const byType = Object.fromEntries(this.dropped);
      const count = [...this.dropped.values()].reduce((a, b) => a + b, 0);
      writes.push(
        segment.record('security.events_dropped', {
          count,
          byType,
          from: this.droppedSince,
          to: new Date(this.trail.clock()).toISOString(),
          maxQueued: this.options.maxQueued,
          detail: `${count} security event(s) arrived while ${this.options.maxQueued} were already waiting to be recorded, or while the audit store was not accepting records and ${this.options.maxBacklog} were already waiting for it: they were counted here, not recorded one by one`,
        }),
      );
      this.dropped.clear();
      this.droppedSince = undefined;
    }
    this.segmentEvents += writes.length;
    const results = await Promise.allSettled(writes);
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    // The trail fails closed on a WAL failure by itself; here it is only worth one line in the log.
    if (failed && !this.writeFailureLogged) {
      this.writeFailureLogged = true;
      this.options.log?.(`audit: security events cannot be recorded: ${(failed.reason as Error).message}`);
    }
    if (!failed) this.writeFailureLogged = false;
    const age = this.trail.clock() - this.segmentOpenedAt;
    if (!this.closed && !failed && (this.segmentEvents >= this.options.segmentMaxEvents || (this.segmentEvents > 0 && age >= this.options.segmentMaxSeconds * 1000))) await this.rotate();
  }

  private async rotate(): Promise<void> {
    const old = this.segment!;
    const next = newSegmentId(this.trail.clock());
    const last = await old.record('stream.closed', { endReason: 'rotated', next });
    void old.close('rotated').catch((err: Error) => this.options.log?.(`audit: cannot close security segment ${old.id}: ${err.message}`));
    this.segment = undefined; // if the next one cannot be opened now, ensureSegment opens one later
    await this.openSegment({ id: old.id, head: last.hash }, next);
  }

  private async openSegment(previous: { id: string; head: string } | undefined, id = newSegmentId(this.trail.clock())): Promise<void> {
    const startedAt = new Date(this.trail.clock()).toISOString();
    const { stream, opened } = this.trail.openStream({ stream: id, kind: 'security', startedAt, retentionDays: this.options.retentionDays });
    await opened;
    await stream.record('security.segment_opened', {
      previous: previous?.id ?? null,
      previousHead: previous?.head ?? null,
      maxQueued: this.options.maxQueued,
      maxBacklog: this.options.maxBacklog,
      segmentMaxEvents: this.options.segmentMaxEvents,
      segmentMaxSeconds: this.options.segmentMaxSeconds,
    });
    this.segment = stream;
    this.segmentEvents = 0;
    this.segmentOpenedAt = this.trail.clock();
  }

  /** Records what is queued, then ends the current segment (its upload and manifest follow, see AuditTrail.settle). */
  async close(endReason: string): Promise<void> {
    clearInterval(this.timer);
    await this.flush().catch(() => undefined);
    this.closed = true;
    // A segment still opening (the interval's, once the WAL took records again) is ended too, not left open.
    if (this.opening) await this.trail.wal.untilFailed(this.opening);
    const segment = this.segment;
    if (!segment) return;
    await segment.record('stream.closed', { endReason }).catch(() => undefined);
    void segment.close(endReason).catch(() => undefined);
  }
}

function newSegmentId(now: number): string {
  return `security-${new Date(now).toISOString().replace(/[-:.]/g, '')}-${randomUUID().slice(0, 8)}`;
}

export interface SecuritySegmentSummary {
  readonly stream: string;
  readonly startedAt: string;
  readonly endedAt?: string;
  readonly endReason?: string;
  /** Records in the segment, once sealed by its manifest. */
  readonly records?: number;
  /** live: the segment being written; ended: sealed by its manifest; incomplete: neither (its broker stopped). */
  readonly state: 'live' | 'ended' | 'incomplete' | 'damaged';
  /** Why a damaged segment's objects cannot be read. */
  readonly problem?: string;
  readonly prefix: string;
}

/** Ids of the broker's own chains: security segments and grant streams (one per broker run). */
export const brokerStreamId = /^(?:security|grants)-[0-9TZ-]+-[0-9a-f]{8}$/;
const segmentPrefix = /^((?:security|grants)\/\d{4}\/\d{2}\/\d{2}\/((?:security|grants)-[0-9TZ-]+-[0-9a-f]{8})\/)/;

/** The security stream's segments (or the grant streams) in a store, newest first. */
export async function listSecuritySegments(store: AuditStore, live: ReadonlySet<string>, kind: 'security' | 'grants' = 'security'): Promise<SecuritySegmentSummary[]> {
  const prefixes = new Map<string, { id: string; keys: string[] }>();
  for (const key of await store.list(`${kind}/`)) {
    const match = segmentPrefix.exec(key);
    if (!match) continue;
    const entry = prefixes.get(match[1]!) ?? { id: match[2]!, keys: [] };
    entry.keys.push(key);
    prefixes.set(match[1]!, entry);
  }
  const out: SecuritySegmentSummary[] = [];
  for (const [prefix, { id, keys }] of prefixes) {
    // One segment whose objects cannot be read is listed as damaged, and why: it never hides the others.
    try {
      if (keys.includes(prefix + manifestName)) {
        const manifest = JSON.parse((await store.get(prefix + manifestName, maxAuditObjectBytes)).toString('utf8')) as { context: StreamContext; closedAt: string; endReason: string; lastSeq: number };
        out.push({ stream: id, startedAt: manifest.context.startedAt, endedAt: manifest.closedAt, endReason: manifest.endReason, records: manifest.lastSeq + 1, state: 'ended', prefix });
      } else {
        const first = keys.find((k) => k.includes('/chunk-'));
        const startedAt = first ? (JSON.parse((await store.get(first, maxAuditObjectBytes)).toString('utf8').split('\n')[0]!) as { time: string }).time : '';
        out.push({ stream: id, startedAt: typeof startedAt === 'string' ? startedAt : '', state: live.has(id) ? 'live' : 'incomplete', prefix });
      }
    } catch (err) {
      if (err instanceof AuditStoreError && err.code === 'unavailable') throw err;
      out.push({ stream: id, startedAt: '', state: 'damaged', problem: `its stored objects cannot be read: ${(err as Error).message}`, prefix });
    }
  }
  return out.sort((a, b) => b.startedAt.localeCompare(a.startedAt) || b.stream.localeCompare(a.stream));
}
