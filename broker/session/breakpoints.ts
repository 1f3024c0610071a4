/**
 * The breakpoints of one session, by the id its client knows each by, and what V8 has of them now. The broker
 * takes a breakpoint out of V8 on its own account (a rate limit until its next hit is due, the pause budget, a
 * capture limit, an absent client) and sets it again with the client's parameters, so V8 stops pausing on it in
 * between; hits racing such a change are recognised as this session's and resumed unseen.
 */
import type { CdpMessage } from '../gate/targetFrame';
import type { BreakpointEntry, BreakpointRates, SessionBreakpoints, SessionContext } from './context';
import type { ClientPending } from './targetChannel';

/**
 * A rate-limited breakpoint is taken out of V8 until its next capture is due, so V8 stops pausing on it,
 * when that wait is at least this long; shorter waits are cheaper as hits resumed at once.
 */
export const minThrottleOutMs = 50;
/** How long before a throttle ends its setting again is recorded (write-ahead), so it is sent on time. */
const setAgainLeadMs = 100;
/** At most this many unknown ids of one pause are taken out of V8 (the target is not trusted to send few). */
const maxStraysPerPause = 16;

export type { BreakpointEntry, BreakpointRates };

export class Breakpoints implements SessionBreakpoints {
  private readonly entries = new Map<string, BreakpointEntry>();
  /** This session's breakpoints as V8 has them now (V8 id → client id), also those the broker is removing. */
  private readonly inV8 = new Map<string, string>();
  private readonly rates = new Map<string, BreakpointRates>();

  constructor(private readonly context: SessionContext) {}

  get(clientId: string): BreakpointEntry | undefined {
    return this.entries.get(clientId);
  }

  has(clientId: string): boolean {
    return this.entries.has(clientId);
  }

  all(): IterableIterator<[string, BreakpointEntry]> {
    return this.entries.entries();
  }

  ids(): string[] {
    return [...this.entries.keys()];
  }

  /** Every V8 id this session has in V8, also of breakpoints the broker is taking out. */
  v8Ids(): string[] {
    return [...this.inV8.keys()];
  }

  /** A client's Debugger.removeBreakpoint: gone for the broker at once, and sent with the id V8 has. */
  clientRemoves(params: Record<string, unknown>): void {
    // A hit racing the removal is resumed unseen, and a throttle never sets it again.
    const entry = this.retire(String(params.breakpointId));
    // V8 gives a breakpoint set again with the same parameters the same id; should it ever differ, V8's is sent.
    if (entry?.v8Id !== undefined && entry.v8Id !== params.breakpointId) params.breakpointId = entry.v8Id;
  }

  /** The target's answer to a client request: a breakpoint it set, or one it removed. */
  answered(pending: ClientPending, message: CdpMessage): void {
    const breakpointId = message.result?.breakpointId;
    if (typeof breakpointId === 'string') {
      const previous = this.entries.get(breakpointId);
      if (previous?.throttled) clearTimeout(previous.throttled.timer);
      this.entries.set(breakpointId, {
        ...(pending.condition !== undefined ? { condition: pending.condition } : {}),
        ...(pending.logpoint ? { logpoint: pending.logpoint } : {}),
        setAs: pending.setAs ?? { method: pending.method, params: {} },
        v8Id: breakpointId,
        ops: Promise.resolve(),
      });
      this.inV8.set(breakpointId, breakpointId);
    }
    if (pending.removes !== undefined && !message.error) this.inV8.delete(pending.removes);
  }

  /**
   * A pause's hits as client ids: live (this session's breakpoint, set in V8 now) and quiet (one the broker is
   * taking out of V8 or has: throttled, suspended, removed). V8 lists only the hits of the session it pauses, so an
   * id the broker has no record of is still this session's, in V8 without the broker knowing: it is quiet, and
   * taken out of V8 (recorded), so it never holds production or shows a pause no one asked for.
   */
  sortHits(raw: unknown): { live: string[]; quiet: string[] } {
    const live: string[] = [];
    const quiet: string[] = [];
    let strays = 0;
    for (const id of Array.isArray(raw) ? raw : []) {
      if (typeof id !== 'string') continue;
      let clientId = this.inV8.get(id);
      if (clientId === undefined) {
        if (strays++ < maxStraysPerPause) this.takeOutStray(id);
        quiet.push(id);
        continue;
      }
      const entry = this.entries.get(clientId);
      (entry && entry.v8Id === id && !entry.throttled ? live : quiet).push(clientId);
    }
    return { live, quiet };
  }

  /** A breakpoint of this session in V8 that the broker has no record of: removed; known (as no client's) meanwhile. */
  private takeOutStray(v8Id: string): void {
    this.inV8.set(v8Id, v8Id);
    const why = 'a breakpoint of this session that the broker had no record of was hit: removed, and its pause resumed unseen';
    this.context.channel.command('Debugger.removeBreakpoint', { breakpointId: v8Id }, { critical: true, why, onAnswer: () => this.inV8.delete(v8Id) }).catch(() => undefined);
  }

  rate(clientId: string): BreakpointRates {
    let state = this.rates.get(clientId);
    if (!state) this.rates.set(clientId, (state = { lastCaptureAt: -Infinity, captures: 0, skipped: 0, lastThrottleNoticeAt: -Infinity }));
    return state;
  }

  /** Counts hits resumed unseen against the breakpoints among `ids` that are still this session's. */
  skipped(ids: readonly string[]): void {
    for (const id of ids) if (this.entries.has(id)) this.rate(id).skipped++;
  }

  /** Tells the client (and the record) why hits of a breakpoint give no capture, at most once a second. */
  throttleNotice(breakpointId: string, reason: string, until?: number): void {
    const state = this.rate(breakpointId);
    const now = this.context.now();
    if (now - state.lastThrottleNoticeAt < 1000) return;
    state.lastThrottleNoticeAt = now;
    const untilText = until !== undefined ? { until: new Date(until).toISOString() } : {};
    this.context.record('snapshot.throttled', { breakpointId, reason, skipped: state.skipped, ...untilText }).catch(() => undefined);
    this.context.notify('Loupe.snapshotThrottled', { breakpointId, reason, skipped: state.skipped, ...untilText }, true);
  }

  /** A breakpoint removed for good by the broker: recorded, and the client told. */
  removedNotice(breakpointId: string, reason: string): void {
    this.context.record('snapshot.throttled', { breakpointId, reason }).catch(() => undefined);
    this.context.notify('Loupe.snapshotThrottled', { breakpointId, reason, removed: true }, false);
  }

  /** Serialises the broker's changes to one breakpoint in V8. */
  private changeInV8(entry: BreakpointEntry, change: () => Promise<unknown>): Promise<unknown> {
    return (entry.ops = entry.ops.then(change).catch(() => undefined));
  }

  /** Removes a breakpoint from V8 on the broker's own account (recorded first, like every broker command). */
  private removeFromV8(entry: BreakpointEntry, v8Id: string, why: string, withCapture = false): Promise<unknown> {
    // Forgotten as its answer is read, in order with the answers around it: a client's setting at the same place,
    // answered next in the same read, gets the same V8 id and must stay known.
    const onAnswer = (message: CdpMessage) => {
      if (!message.error) this.inV8.delete(v8Id);
    };
    return this.changeInV8(entry, () => this.context.channel.command('Debugger.removeBreakpoint', { breakpointId: v8Id }, { critical: true, why, removalWithCapture: withCapture, onAnswer }));
  }

  /**
   * A rate limit: the breakpoint leaves V8 until `until` (clock time), then the broker sets it again with the
   * client's parameters (V8 gives it the same id). Hits racing the removal are resumed at once. A wait shorter than
   * minThrottleOutMs is left to those quick resumes.
   */
  throttle(clientId: string, until: number, reason: string, notify: boolean, withCapture = false): void {
    const entry = this.entries.get(clientId);
    const wait = until - this.context.now();
    if (!entry || entry.throttled || entry.v8Id === undefined || this.context.isEnding() || wait < minThrottleOutMs) return;
    const v8Id = entry.v8Id;
    entry.v8Id = undefined;
    // The setting again is recorded a little ahead and sent at `until`.
    entry.throttled = { until, reason, timer: setTimeout(() => this.setAgain(clientId, entry), wait - Math.min(setAgainLeadMs, wait / 2)) };
    this.removeFromV8(entry, v8Id, `throttled until ${new Date(until).toISOString()}: ${reason}`, withCapture);
    if (notify) this.throttleNotice(clientId, reason, until);
  }

  /** The end of a throttle: sets the breakpoint again as the client set it, unless it has gone meanwhile. */
  private setAgain(clientId: string, entry: BreakpointEntry, reason?: string): void {
    const { context } = this;
    // Not while the client is absent: the breakpoint stays parked until it is back.
    const current = () => this.entries.get(clientId) === entry && !context.isEnding() && !context.pauses.clientAbsent;
    this.changeInV8(entry, async () => {
      if (!current() || entry.v8Id !== undefined || !context.auditAccepting()) return;
      const why = reason ?? `set again: the throttle (${entry.throttled?.reason ?? 'rate limit'}) is over`;
      try {
        await context.channel.command(entry.setAs.method, entry.setAs.params, {
          why,
          notBefore: entry.throttled?.until ?? 0,
          // Bookkeeping as the answer is read: a hit can follow it in the same read from the socket.
          onAnswer: (message) => {
            const id = message.result?.breakpointId;
            if (typeof id !== 'string') return;
            this.inV8.set(id, clientId);
            if (current()) {
              entry.v8Id = id;
              entry.throttled = undefined;
            } else this.removeFromV8(entry, id, 'removed while the broker set it again');
          },
        });
      } catch (err) {
        if (!current()) return;
        // It could not be set again: the client is told it is gone, as for a capture limit.
        this.retire(clientId);
        this.removedNotice(clientId, `could not be set again after a throttle (${(err as Error).message}) and was removed`);
      }
    });
  }

  /**
   * A breakpoint gone for good (the client removed it, a capture limit, the pause budget). With `why`, the
   * broker removes it from V8 itself; hits still in flight are recognised as this session's and resumed.
   */
  retire(clientId: string, why?: string): BreakpointEntry | undefined {
    const entry = this.entries.get(clientId);
    if (!entry) return undefined;
    this.entries.delete(clientId);
    this.context.pauses.forgetBudget(clientId);
    if (entry.throttled) clearTimeout(entry.throttled.timer);
    if (why !== undefined && entry.v8Id !== undefined) this.removeFromV8(entry, entry.v8Id, why);
    return entry;
  }

  /** The client is absent: every breakpoint leaves V8 (or stays out) until it is back. Returns the ids and the removals. */
  park(why: string): { parked: string[]; changes: Promise<unknown>[] } {
    const parked: string[] = [];
    const changes: Promise<unknown>[] = [];
    for (const [clientId, entry] of this.entries) {
      entry.parked = true;
      parked.push(clientId);
      if (entry.throttled) {
        // Already out of V8: it now stays out until the client is back, not until its throttle ends.
        clearTimeout(entry.throttled.timer);
        entry.throttled = undefined;
      } else if (entry.v8Id !== undefined) {
        const v8Id = entry.v8Id;
        entry.v8Id = undefined;
        changes.push(this.removeFromV8(entry, v8Id, `${why}; set again at the client's next request`));
      }
    }
    return { parked, changes };
  }

  parkedIds(): string[] {
    return [...this.entries].filter(([, entry]) => entry.parked).map(([id]) => id);
  }

  /** The client is back: its parked breakpoints are set again as it set them. */
  unpark(why: string): void {
    for (const [clientId, entry] of [...this.entries].filter(([, e]) => e.parked)) {
      entry.parked = false;
      this.setAgain(clientId, entry, why);
    }
  }

  /** The session is ending: no throttled breakpoint is set again from now on. */
  stopThrottles(): void {
    for (const entry of this.entries.values()) if (entry.throttled) clearTimeout(entry.throttled.timer);
  }

  clear(): void {
    this.entries.clear();
    this.inV8.clear();
  }
}
