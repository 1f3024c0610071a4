/**
 * The pauses of one session in pause mode, and what bounds every pause in either mode: which pause is this
 * session's (its breakpoint, step, pause request or pause on exceptions), the hits the broker decides itself
 * (conditions, logpoints) and resumes unseen, the pause budget those unseen pauses are charged to, and the
 * watchdogs that resume a pause held past maxPauseSeconds (parking an absent client's breakpoints first).
 */
import type { PausedFrameInput, CdpMessage } from '../gate/targetFrame';
import type { Forward } from '../gate/targetScreen';
import type { ExceptionPauseState, FellowSessions, PauseBound, SessionContext, SessionPauses } from './context';
import type { ConditionVerdict } from './evaluation';
import { emitLogpoint } from './logpoints';
import { unlearnedScopesSkip } from './exceptionLearning';

/**
 * A pause this session did not cause is resumed by it only this long after maxPauseSeconds: the session that
 * caused it acts first (its watchdog also keeps its absent client from pausing again); this resume is for
 * pauses nobody on the broker owns (a `debugger;` statement, a debugger outside Loupe).
 */
export const foreignPauseGraceMs = 2000;

/**
 * How long a pause nobody owns is left before it is taken for an ended session's (FellowSessions.take): the sessions
 * that do own a pause claim it as it arrives, and every session of the broker has heard of the pause by then.
 */
const leftPauseCheckMs = 100;

/** How long every session of the broker takes to hear of a pause V8 sends them all (sockets of one host). */
export const fellowsHearMs = 50;

/** How long a capture waits at most for the pause-mode sessions here to hear of its pause (a deep stack: 185 ms). */
const fellowsWaitMs = 500;

/** A pause as its sessions all hear it: its reason, the top frame's place and the depth of its stack. */
export function pauseSignature(params: Record<string, unknown> | undefined): string {
  const frames = Array.isArray(params?.callFrames) ? (params.callFrames as { location?: { scriptId?: unknown; lineNumber?: unknown; columnNumber?: unknown } }[]) : [];
  const at = frames[0]?.location;
  return `${String(params?.reason)} ${String(at?.scriptId)}:${String(at?.lineNumber)}:${String(at?.columnNumber)} ${frames.length}`;
}

export class Pauses implements SessionPauses {
  /** The target is paused in a pause the client was shown. */
  paused = false;
  /**
   * The pause the target is in was caused by this session (its breakpoint, its step or pause request, its
   * pause on exceptions). Only such a pause is this session's to resume at its end or by its watchdog: a
   * Debugger-enabled session also sees the pauses of other sessions.
   */
  ownPause = false;
  heardAt = -Infinity;
  /** The pause the target is in, as this session heard it (pauseSignature), '' since a resume. */
  heardPause = '';
  private debuggerEnabled = false;

  get hearsPauses(): boolean {
    return this.debuggerEnabled && !this.clientSkipsPauses && !this.clientAbsent;
  }
  /**
   * The watchdog resumed a pause of this session and its client has sent nothing since: the session holds no
   * pause until it does (its breakpoints are out of V8 and it skips all pauses).
   */
  clientAbsent = false;
  /** What the client itself last asked for, restored when it comes back. */
  private clientSkipsPauses = false;
  /** The exception pauses the client asked for (Debugger.setPauseOnExceptions): V8 keeps one state for the whole process. */
  exceptionState: ExceptionPauseState = 'none';
  get heldExceptionState(): ExceptionPauseState {
    return this.clientAbsent ? 'none' : this.exceptionState;
  }
  private get pausesOnExceptions(): boolean {
    return this.exceptionState !== 'none';
  }
  /**
   * Pauses the client asked for (steps, Debugger.pause, continueToLocation) that V8 has not taken yet: a count, since a
   * client may send a second step before the first one's pause has arrived (each brings one pause of this session).
   */
  private expectedPauses = 0;
  private get clientExpectsPause(): boolean {
    return this.expectedPauses > 0;
  }
  /** Target events held back while the broker decides whether a pause reaches the client. */
  private held: string[] | null = null;
  /** Debugger.resumed events of pauses the client never saw, still to come. */
  private swallowResumed = 0;
  private watchdog: NodeJS.Timeout | undefined;
  private stopped = false;
  private foreignPauseTimer: NodeJS.Timeout | undefined;
  /** Recent broker-held pauses per breakpoint (condition checks, logpoints): [clock time, ms]. */
  private readonly heldPauses = new Map<string, [number, number][]>();

  constructor(
    private readonly context: SessionContext,
    private readonly fellows?: FellowSessions,
  ) {}

  /** What a forwarded client request changes about pauses. */
  onRequest(decision: Forward): void {
    // Debugger.pause while paused brings no pause of its own; a resume from a pause leaves none expected (a step V8
    // took while running, without a pause of its own, is then no longer counted).
    if (decision.handling === 'step' && !(decision.method === 'Debugger.pause' && this.paused)) this.expectedPauses++;
    if (decision.method === 'Debugger.resume' && this.paused) this.expectedPauses = 0;
    if (decision.method === 'Debugger.setSkipAllPauses') this.clientSkipsPauses = decision.params.skip === true;
    if (decision.method === 'Debugger.enable') this.debuggerEnabled = true;
    if (decision.method === 'Debugger.disable') {
      // No Debugger.resumed comes to a disabled connection: what it knew of the pause it was in is gone with it.
      this.debuggerEnabled = false;
      this.ownPause = false;
      this.heardAt = -Infinity;
      this.heardPause = '';
    }
    if (decision.method === 'Debugger.setPauseOnExceptions') this.exceptionState = decision.params.state as ExceptionPauseState;
  }

  /** V8's answer to a request of the client's: a step it refused brings no pause. */
  answered(method: string, failed: boolean): void {
    if (failed && ['Debugger.pause', 'Debugger.stepOver', 'Debugger.stepInto', 'Debugger.stepOut', 'Debugger.continueToLocation'].includes(method)) {
      this.expectedPauses = Math.max(0, this.expectedPauses - 1);
    }
  }

  /** Any frame from the client: an absent client is back. */
  onClientFrame(): void {
    if (this.clientAbsent && !this.context.isEnding()) this.clientReturned();
  }

  /** Holds a target event while a pause is being decided; false when it can go to the client now. */
  hold(text: string): boolean {
    if (!this.held) return false;
    this.held.push(text);
    return true;
  }

  /** Debugger.resumed: whether the client is to see it. */
  onResumed(): boolean {
    this.ownPause = false;
    this.heardAt = -Infinity;
    this.heardPause = '';
    clearTimeout(this.foreignPauseTimer);
    this.foreignPauseTimer = undefined;
    // A snapshot session never shows a pause or a resume: its client sees captures instead.
    if (this.context.grant.mode === 'snapshot') return false;
    const wasShown = this.paused && this.swallowResumed === 0;
    this.paused = false;
    this.clearWatchdog();
    if (this.swallowResumed > 0) {
      this.swallowResumed--;
      return false;
    }
    if (wasShown) this.context.record('cdp.resumed', {}).catch(() => undefined);
    return true;
  }

  /**
   * A pause the client asked for (Debugger.pause, a step, continueToLocation) that V8 has not taken yet. While another
   * Debugger-enabled session is connected, V8 keeps it past this session's Debugger.disable, and it would then hold
   * the target with nobody to resume it: the session's end waits for it a moment (nextPause) to resume it itself.
   */
  get pauseOutstanding(): boolean {
    // Also while paused: a step or continueToLocation sent from a pause resumes first, then pauses again.
    return this.clientExpectsPause;
  }

  private pauseWaiters: (() => void)[] = [];

  /** Resolves at the next pause (true), or after `ms` (false). */
  nextPause(ms: number): Promise<boolean> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => done(false), ms);
      const waiters = this.pauseWaiters;
      function done(arrived = true): void {
        clearTimeout(timer);
        waiters.splice(waiters.indexOf(done) >>> 0, 1);
        resolve(arrived);
      }
      waiters.push(done);
    });
  }

  /**
   * Whether a pause is this session's (its breakpoints, a pause or step it asked for, an exception it pauses on), set
   * as the pause arrives: the broker's own work on it (the learning reads) comes first, and a session that ends
   * meanwhile must still resume it. Another Debugger-enabled session keeps the target paused after this one's
   * Debugger.disable.
   */
  claim(params: Record<string, unknown> | undefined): boolean {
    const { live, quiet } = this.context.breakpoints.sortHits(params?.hitBreakpoints);
    const exception = params?.reason === 'exception' || params?.reason === 'promiseRejection';
    const caused = live.length > 0 || quiet.length > 0 || (this.context.grant.mode !== 'snapshot' && this.pausesOnExceptions && exception);
    const ours = caused || (this.context.grant.mode !== 'snapshot' && this.clientExpectsPause);
    this.ownPause = ours;
    this.heardAt = performance.now();
    this.heardPause = pauseSignature(params);
    this.ownByRequestOnly = ours && !caused;
    // Also a pause arriving while the session ends, which its end resumes without working on it.
    for (const wake of [...this.pauseWaiters]) wake();
    return ours;
  }

  /**
   * A pause of this session's that arrived after its end began: resumed at once when its own breakpoint or exception
   * state caused it. One it counts as its own by its requests alone (a step still to come) may be another session's
   * breakpoint: the end decides it, once every session here has heard of it (debugSession.ts cleanup).
   */
  resumeAfterEnd(): void {
    if (!this.ownByRequestOnly) this.context.channel.command('Debugger.resume', {}, { critical: true }).catch(() => undefined);
  }

  /** The pause the target is in is this session's only by a request of its client (a step, a pause request). */
  private ownByRequestOnly = false;

  /** A pause in pause mode: shown to the client, or decided by the broker (conditions, logpoints) and resumed unseen. */
  async onPaused(message: CdpMessage): Promise<void> {
    const { context } = this;
    const { breakpoints } = context;
    this.paused = true;
    const params = message.params ?? {};
    const { live: hits, quiet } = breakpoints.sortHits(params.hitBreakpoints);
    this.ownPause = hits.length > 0 || quiet.length > 0 || this.clientExpectsPause || (this.pausesOnExceptions && (params.reason === 'exception' || params.reason === 'promiseRejection'));
    if (hits.length === 0 && quiet.length > 0 && !this.clientExpectsPause && params.reason === 'other') {
      // Only breakpoints the broker is taking out of V8 (throttled, suspended, removed): resumed, never shown.
      breakpoints.skipped(quiet);
      await this.resumeUnseen();
      return;
    }
    // The client sees its own ids, and only breakpoints it still has.
    if (Array.isArray(params.hitBreakpoints)) params.hitBreakpoints = hits;
    const text = JSON.stringify(message);
    const logpoints = hits.filter((id) => breakpoints.get(id)?.logpoint !== undefined);
    const conditional = hits.filter((id) => !logpoints.includes(id) && breakpoints.get(id)?.condition !== undefined);
    const frame = (params.callFrames as PausedFrameInput[] | undefined)?.[0];
    if (hits.length === 0 || conditional.length + logpoints.length < hits.length || this.clientExpectsPause || params.reason !== 'other') {
      this.forwardPause(message, text, hits);
      return;
    }
    if (unlearnedScopesSkip(context, params, hits)) {
      await this.resumeUnseen();
      return;
    }
    // A duration of real work in the target, measured finely: what the pause budget is charged.
    const started = performance.now();
    const bound = this.pauseBound(started);
    this.held = [];
    for (const id of logpoints) if (frame && bound.check(id)) await emitLogpoint(context, id, frame);
    const passed: string[] = [];
    for (const id of conditional) if (bound.check(id) && (await this.conditionHolds(id, breakpoints.get(id)!.condition!, frame))) passed.push(id);
    if (context.isEnding()) return;
    if (passed.length === 0) {
      this.chargeHeldPause(bound.checked, performance.now() - started);
      this.flushHeld();
      // Resumed first: taking thousands of breakpoints out of V8 must not hold the target too. Their hits until
      // then are this session's, resumed unseen.
      const resumed = this.resumeUnseen();
      bound.suspendUnchecked();
      await resumed;
      return;
    }
    this.forwardPause(message, JSON.stringify({ ...message, params: { ...params, hitBreakpoints: passed } }), passed);
    bound.suspendUnchecked();
  }

  /**
   * Evaluates a breakpoint's condition in the paused frame (see evaluation.ts) and records the verdict. A condition
   * whose value depends on a redacted field never decides a pause (a pause would answer a question about the
   * secret): its breakpoint is disabled, and the client told which field.
   */
  async conditionHolds(breakpointId: string, condition: string, frame: PausedFrameInput | undefined): Promise<boolean> {
    const { context } = this;
    const verdict: ConditionVerdict = frame ? await context.evaluation.condition(frame.callFrameId, condition) : { value: false, detail: 'no call frame' };
    const cost = verdict.reads !== undefined ? { reads: verdict.reads, steps: verdict.steps } : {};
    context.record('cdp.breakpoint.condition', { breakpointId, condition, value: verdict.value, ...(verdict.detail ? { detail: verdict.detail } : {}), ...cost }).catch(() => undefined);
    if (verdict.tainted !== undefined && context.breakpoints.has(breakpointId)) {
      const field = verdict.tainted;
      const reason = `disabled: its condition depends on the redacted field "${field}", and a pause must never depend on a redacted value`;
      context.breakpoints.retire(breakpointId, `breakpoint ${reason}`);
      context.record('cdp.breakpoint.disabled', { breakpointId, reason, field, condition }).catch(() => undefined);
      context.notify('Loupe.breakpointDisabled', { breakpointId, reason, field }, false);
      return false;
    }
    return verdict.value;
  }

  /** Resumes a pause the client never saw; its Debugger.resumed is not passed on either. */
  private async resumeUnseen(): Promise<void> {
    this.swallowResumed++;
    try {
      await this.context.channel.command('Debugger.resume', {}, { critical: true });
    } catch {
      this.swallowResumed = Math.max(0, this.swallowResumed - 1);
    }
  }

  private forwardPause(message: CdpMessage, text: string, hits: string[]): void {
    const { labels } = this.context;
    this.expectedPauses = Math.max(0, this.expectedPauses - 1);
    const frames = (message.params?.callFrames as PausedFrameInput[] | undefined) ?? [];
    labels.labelFrames(frames);
    const top = frames[0];
    const recorded = this.context.recordOrEnd(hits.length > 0 ? 'cdp.breakpoint.hit' : 'cdp.paused', {
      reason: message.params?.reason ?? null,
      hitBreakpoints: hits,
      ...(top ? { frame: labels.frame(top.callFrameId), url: labels.urlOf(top) ?? null } : {}),
      stack: frames.slice(0, 10).map((f) => labels.frame(f.callFrameId)),
    });
    void recorded;
    this.context.send(text, false);
    this.flushHeld();
    if (this.ownPause) this.armWatchdog();
    else this.armForeignPauseWatchdog(message.params?.reason);
  }

  private flushHeld(): void {
    const held = this.held ?? [];
    this.held = null;
    for (const item of held) this.context.send(item, true);
  }

  /**
   * Charges a pause the client never saw (condition checks, logpoints) to its breakpoints. A breakpoint
   * whose pauses cost the target more than the budget per second is suspended, and the client told why.
   */
  chargeHeldPause(breakpointIds: readonly string[], ms: number): void {
    const { context } = this;
    const budget = context.limits.conditionBudgetMsPerSecond;
    const now = context.now();
    for (const id of breakpointIds) {
      const window = (this.heldPauses.get(id) ?? []).filter(([t]) => now - t < 1000);
      window.push([now, ms]);
      this.heldPauses.set(id, window);
      const spent = window.reduce((sum, [, m]) => sum + m, 0);
      if (spent <= budget || !context.breakpoints.has(id)) continue;
      // Rounded up: the figure shown is over the budget it went over (2.03 ms is not shown as a budget's 2).
      const figures = { pauseMsPerSecond: Math.ceil(spent * 10) / 10, hitsPerSecond: window.length, budgetMsPerSecond: budget };
      const reason = `suspended: its hits held the target ${figures.pauseMsPerSecond} ms in the last second over ${figures.hitsPerSecond} hits (budget ${budget} ms per second)`;
      context.breakpoints.retire(id, `breakpoint ${reason}`);
      context.record('cdp.breakpoint.suspended', { breakpointId: id, reason, ...figures }).catch(() => undefined);
      context.notify('Loupe.breakpointSuspended', { breakpointId: id, reason, ...figures }, false);
    }
  }

  /**
   * The bound of one pause the broker decides itself: its conditions and logpoints are checked one after another
   * while the target waits, so many of them at one location (thousands set with distinct urlRegex spellings, held
   * back by setBreakpointsActive) held the target for seconds in a single pause (measured: 5,000 conditions 2.9 s,
   * 2,000 logpoints 3.4 s). Once the pause has cost conditionBudgetMsPerSecond, what is left is not checked: those
   * breakpoints are suspended, and the client told why.
   */
  pauseBound(started: number): PauseBound {
    const { context } = this;
    const budget = context.limits.conditionBudgetMsPerSecond;
    const checked: string[] = [];
    const unchecked = new Set<string>();
    return {
      checked,
      unchecked: (id) => unchecked.has(id),
      check: (id) => {
        if (unchecked.size === 0 && performance.now() - started <= budget) {
          checked.push(id);
          return true;
        }
        unchecked.add(id);
        return false;
      },
      suspendUnchecked: () => {
        if (unchecked.size === 0) return;
        const pauseMs = Math.ceil((performance.now() - started) * 10) / 10;
        const reason = `suspended unchecked: the conditions and logpoints at this location held the target ${pauseMs} ms in one pause (${checked.length} checked, ${unchecked.size} left), over the budget of ${budget} ms`;
        for (const id of unchecked) {
          if (!context.breakpoints.has(id)) continue;
          context.breakpoints.retire(id, `breakpoint ${reason}`);
          // The shape of the budget's own suspension: this one pause is what the breakpoint cost in its second.
          const figures = { pauseMsPerSecond: pauseMs, hitsPerSecond: 1, budgetMsPerSecond: budget };
          context.record('cdp.breakpoint.suspended', { breakpointId: id, reason, ...figures }).catch(() => undefined);
          context.notify('Loupe.breakpointSuspended', { breakpointId: id, reason, ...figures }, false);
        }
      },
    };
  }

  /** A retired breakpoint's budget window goes with it. */
  forgetBudget(breakpointId: string): void {
    this.heldPauses.delete(breakpointId);
  }

  // ---- watchdogs ----

  /**
   * A pause this session did not cause is never held past maxPauseSeconds either, but the session that caused
   * it acts first: this one resumes it only foreignPauseGraceMs later, if it still holds.
   */
  armForeignPauseWatchdog(reason?: unknown): void {
    clearTimeout(this.foreignPauseTimer);
    if (this.stopped) return;
    const left = this.leftPauseTaker(reason);
    if (left) {
      this.foreignPauseTimer = setTimeout(() => {
        this.foreignPauseTimer = undefined;
        if (!this.context.isEnding() && !left()) this.armForeignPauseWatchdog();
      }, leftPauseCheckMs);
      return;
    }
    const seconds = this.context.target().maxPauseSeconds;
    this.foreignPauseTimer = setTimeout(
      () => {
        this.foreignPauseTimer = undefined;
        if (this.context.isEnding()) return;
        void this.watchdogResume(seconds, 'not caused by this session');
      },
      seconds * 1000 + foreignPauseGraceMs,
    );
  }

  sharedWithShowing(): boolean {
    return (this.fellows?.showing().length ?? 0) > 0;
  }

  /** Whether the pause the target is in is this session's by its own breakpoint or exception state, not by a request. */
  get causedPause(): boolean {
    return this.ownPause && !this.ownByRequestOnly;
  }

  async shownByFellow(arrivedAt: number): Promise<boolean> {
    // Heard of this pause: the same place and stack, and not long before (a pause the target has left since). V8 tells
    // its sessions one after the other: with a deep stack the last copy came 185 ms after the first.
    const signature = this.heardPause;
    const heard = (fellow: { heardAt: number; pause: string }) => fellow.pause === signature && fellow.heardAt >= arrivedAt - fellowsWaitMs;
    for (;;) {
      const showing = this.fellows?.showing() ?? [];
      if (showing.some((fellow) => heard(fellow) && fellow.holds)) {
        this.ownPause = false;
        return true;
      }
      if (showing.every(heard) || performance.now() - arrivedAt >= fellowsWaitMs) return false;
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
  }

  /**
   * For a pause nobody owns, what an ended session left that it may be (FellowSessions.take, takeExceptionState): a
   * function that takes that and resumes the pause (false when another session took it first, or a session here holds
   * the pause).
   */
  private leftPauseTaker(reason: unknown): (() => boolean) | undefined {
    const left = this.fellows;
    const { channel } = this.context;
    // An exception pause of a state an ended session's end could not reset: the state is reset too.
    if ((reason === 'exception' || reason === 'promiseRejection') && left?.exceptionsLeft()) {
      return () => {
        const state = left.takeExceptionState();
        if (state === undefined) return false;
        const why = 'an exception pause a session that has ended asked for, which its end could not reset (its target did not answer): nobody holds it';
        channel.command('Debugger.setPauseOnExceptions', { state }, { critical: true, why }).catch(() => undefined);
        channel.command('Debugger.resume', {}, { critical: true, why }).catch(() => undefined);
        return true;
      };
    }
    // A step, continueToLocation or Debugger.pause (V8 reports each as 'other').
    if ((reason === 'other' || reason === 'step') && left?.waiting()) {
      return () => {
        const ended = left.take();
        if (ended === undefined) return false;
        const why = `a pause that session ${ended} asked for and V8 took after that session had ended: nobody holds it`;
        channel.command('Debugger.resume', {}, { critical: true, why }).catch(() => undefined);
        return true;
      };
    }
    return undefined;
  }

  private armWatchdog(): void {
    this.clearWatchdog();
    if (this.stopped) return;
    const seconds = this.context.target().maxPauseSeconds;
    this.watchdog = setTimeout(() => {
      if (!this.paused || this.context.isEnding()) return;
      void this.watchdogResume(seconds);
    }, seconds * 1000);
  }

  private clearWatchdog(): void {
    if (this.watchdog) clearTimeout(this.watchdog);
    this.watchdog = undefined;
  }

  /**
   * A pause held past maxPauseSeconds is resumed. In pause mode its client may be frozen with the same
   * breakpoint in a hot path, so the session first stops holding pauses until the client sends a frame.
   */
  private async watchdogResume(seconds: number, pause?: string): Promise<void> {
    this.context.record('watchdog.resumed', { maxPauseSeconds: seconds, ...(pause ? { pause } : {}) }).catch(() => undefined);
    if (this.context.grant.mode === 'pause') await this.parkUntilClientReturns(`the watchdog resumed a pause held over ${seconds} s`);
    this.context.channel.command('Debugger.resume', {}, { critical: true }).catch(() => undefined);
  }

  /**
   * Until the client sends a frame, the session holds no pause: its breakpoints leave V8 (hits racing the
   * removal are resumed unseen) and it skips all pauses (a `debugger;` statement, exceptions). Per session:
   * Debugger.setBreakpointsActive is not (V8 keeps breakpoints active while any session has them active), and
   * skipping alone is not (another Debugger-enabled session would then hold this session's breakpoint hits).
   */
  private async parkUntilClientReturns(why: string): Promise<void> {
    const { context } = this;
    if (this.clientAbsent || context.isEnding()) return;
    this.clientAbsent = true;
    this.expectedPauses = 0;
    const { parked, changes } = context.breakpoints.park(why);
    context.record('client.absent', { why, breakpoints: parked }).catch(() => undefined);
    changes.push(context.channel.command('Debugger.setSkipAllPauses', { skip: true }, { critical: true, why }).catch(() => undefined));
    // Skipping stops this connection's pauses only: V8's exception pauses are one state for the process, and would go
    // on pausing it for the other sessions (each pause resumed by their watchdogs alone). Theirs is what stays.
    if (this.exceptionState !== 'none') {
      const state = this.fellows?.othersExceptionState() ?? 'none';
      changes.push(context.channel.command('Debugger.setPauseOnExceptions', { state }, { critical: true, why }).catch(() => undefined));
    }
    context.notify('Loupe.breakpointsParked', { breakpointIds: parked, reason: `${why}: breakpoints are off until this client sends a request` }, true);
    // Out of V8 before the resume, so the same breakpoint cannot pause again; bounded, since a hit racing it is resumed unseen anyway.
    await Promise.race([Promise.all(changes), new Promise((r) => setTimeout(r, 1000))]);
  }

  /** The client sent a frame after a watchdog resume: its breakpoints and pauses are back as it set them. */
  private clientReturned(): void {
    const { context } = this;
    this.clientAbsent = false;
    const why = 'the client is back: it sent a frame after the watchdog resume';
    context.record('client.returned', { breakpoints: context.breakpoints.parkedIds(), skipAllPauses: this.clientSkipsPauses }).catch(() => undefined);
    if (!this.clientSkipsPauses) context.channel.command('Debugger.setSkipAllPauses', { skip: false }, { why }).catch(() => undefined);
    if (this.exceptionState !== 'none') {
      const state = exceptionStateFor([this.exceptionState, this.fellows?.othersExceptionState() ?? 'none']);
      context.channel.command('Debugger.setPauseOnExceptions', { state }, { why }).catch(() => undefined);
    }
    context.breakpoints.unpark(why);
  }

  /**
   * The session is ending: no watchdog fires from now on, and none is armed by a pause that arrives meanwhile (its
   * timer would keep a stopping broker's process alive for maxPauseSeconds).
   */
  stop(): void {
    this.stopped = true;
    this.clearWatchdog();
    clearTimeout(this.foreignPauseTimer);
  }
}

/** The state that pauses on every exception any of `states` pauses on. */
export function exceptionStateFor(states: Iterable<ExceptionPauseState>): ExceptionPauseState {
  let caught = false;
  let uncaught = false;
  for (const state of states) {
    caught ||= state === 'caught' || state === 'all';
    uncaught ||= state === 'uncaught' || state === 'all';
  }
  return caught && uncaught ? 'all' : caught ? 'caught' : uncaught ? 'uncaught' : 'none';
}
