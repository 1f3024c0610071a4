import { createHash } from 'node:crypto';
import type { Socket } from 'node:net';
import type WebSocket from 'ws';
import type { BrokerLimits, TargetConfig } from '../config/types';
import type { AuditStream } from '../audit/auditTrail';
import type { EventType } from '../audit/events';
import type { Grant } from '../grants/grantStore';
import { Redactor } from '../policy/redact';
import { closeCodes, closeMessages, type EndReason } from '../../common/session';
import { safeText, truncate } from '../gate/cdpGate';
import { TargetScreen } from '../gate/targetScreen';
import { processFactsFrom, processFactsRead, WithheldFacts, type ProcessFactValues } from '../gate/processFacts';
import { Breakpoints } from './breakpoints';
import { ClientRelay } from './clientRelay';
import type { FellowSessions, SessionContext } from './context';
import { frameEvaluation } from './evaluation';
import { ClientHeartbeat } from './heartbeat';
import { RecordLabels } from './labels';
import { exceptionStateFor, fellowsHearMs, Pauses } from './pauses';
import { SnapshotMode } from './snapshot';
import { brokerCommandTimeoutMs, TargetChannel, TargetCommandError } from './targetChannel';
import { TargetRelay } from './targetRelay';
import { HandedObjects } from '../gate/handedObjects';

export type { EndReason };

/** What ended a session on a fault: where, the error, and the frame that caused it (by digest, not content). */
export interface SessionFault {
  readonly where: string;
  readonly error: string;
  readonly frameSha256: string | null;
  readonly bytes: number | null;
}

export interface DebugSessionOptions {
  readonly sessionId: string;
  readonly grant: Grant;
  readonly target: TargetConfig;
  readonly client: WebSocket;
  readonly targetSocket: WebSocket;
  readonly audit: AuditStream;
  /** False once the audit trail has failed closed: nothing new is forwarded. */
  readonly auditAccepting: () => boolean;
  readonly limits: BrokerLimits;
  /** The clock (ms since the epoch) of expiry, rate limits, throttles, the pause budget and the heartbeat. */
  readonly clock: () => number;
  readonly onEnded: (session: DebugSession) => void;
  /** The target's inspector WebSocket URL (its id is the process's own): the process facts are read once per URL. */
  readonly targetUrl?: string;
  /** Told of a fault that ends this session (the broker logs it). */
  readonly onFault?: (session: DebugSession, fault: SessionFault, err: unknown) => void;
}

/**
 * The process facts of each target process, by its inspector URL, read by the first session that needed them: each
 * read is an evaluation that every Debugger-enabled session of that target hears of (Debugger.scriptParsed), so 100
 * sessions opened at once would each hear of 100 reads. A failed read is forgotten (the next session reads again).
 */
const processFactsByTarget = new Map<string, Promise<ProcessFactValues>>();
const rememberedTargets = 1024;

/**
 * The live sessions of this broker on each target process, by inspector URL. V8 keeps one pause-on-exceptions state
 * for the whole process, and keeps it past a session's Debugger.disable while another session is enabled: a session
 * that asked for exception pauses leaves the state its fellow sessions asked for, not its own.
 */
const sessionsOnTarget = new Map<string, Set<DebugSession>>();

/**
 * A pause asked for by a session of this broker that ended before V8 took it, by target: the session and until when
 * it is waited for. V8 keeps one step and one continueToLocation per process, past the session's Debugger.disable
 * while another session is enabled; the pause then reaches the sessions that stay as nobody's, and the first to see
 * it resumes it (see Pauses.armForeignPauseWatchdog), not their watchdog after maxPauseSeconds.
 */
const leftPauses = new Map<string, { sessionId: string; until: number }>();
/** Targets whose exception pauses an ended session's end could not reset (see Pauses.armForeignPauseWatchdog). */
const leftExceptions = new Set<string>();
/** How long a left pause is waited for: a continueToLocation to a line that runs rarely may come much later. */
const leftPauseMs = 10 * 60_000;

/** Bytes of frames held for one write to the client before they are let go early (well under limits.clientBufferBytes). */
const clientBatchBytes = 64 << 10;
/** Requests of one session unanswered (by its target or by the broker) before the broker stops reading its client's frames. */
const maxRequestsInFlight = 256;
/** How long a session's end waits for a pause its client asked for and V8 has not taken yet. */
const outstandingPauseWaitMs = 1000;

/**
 * One client attached to one target under one grant. The relay runs both ways: clientRelay.ts (every client frame
 * decided by the gate in gate/, recorded durably before it is forwarded) and targetRelay.ts (every target frame
 * bounded, checked, redacted; a response takes its place in the chain before the client sees it and is durable with
 * the next group commit). Pauses, breakpoints, logpoints and snapshot captures are the parts in SessionContext. This
 * file wires them and keeps what spans the session: the outbox toward the client, expiry, fault containment, and
 * the cleanup that leaves the target as it found it.
 */
export class DebugSession {
  readonly sessionId: string;
  readonly grant: Grant;
  /** Redacts what the target sends before it is recorded or passed on; learns redacted values per session. */
  readonly redactor: Redactor;
  private readonly context: SessionContext;
  private readonly channel: TargetChannel;
  private readonly fromClient: ClientRelay;
  private readonly fromTarget: TargetRelay;
  private heartbeat: ClientHeartbeat | undefined;
  /** Client-bound messages in order; an entry waits until its record is durable. */
  private readonly outbox: { text: string | null; isEvent: boolean; ready: boolean; ids: readonly string[] | undefined }[] = [];
  /** The object ids sent to the client: the only ones its requests may name. */
  private readonly handed = new HandedObjects();
  private droppedEvents = 0;
  /** The target's process facts, withheld from every message to the client; nothing is sent before they are known. */
  private withheld: WithheldFacts | undefined;
  private learningFacts = false;
  private expiryTimer: NodeJS.Timeout | undefined;
  private shortenedTo: number | undefined;
  private ending: Promise<void> | undefined;
  /** Why the session ended (the first reason given), once it is ending. */
  endReason: EndReason | undefined;
  /** What made it end, where the reason alone does not say (see end()). */
  endCause: string | undefined;
  private faulted: SessionFault | undefined;

  constructor(private readonly options: DebugSessionOptions) {
    this.sessionId = options.sessionId;
    this.grant = options.grant;
    this.redactor = new Redactor(options.target.redaction);
    const now = () => this.options.clock();
    const isEnding = () => this.ending !== undefined;
    const record = (type: EventType, data: Record<string, unknown>, lazy?: boolean) => this.record(type, data, lazy);
    const evaluationKind = options.grant.evaluation === 'v8' ? 'v8' : 'loupe';
    this.channel = new TargetChannel({ socket: options.targetSocket, limits: options.limits, now, isEnding, record, onUnresponsive: () => void this.end('target_unresponsive') });
    const shared: Omit<SessionContext, 'breakpoints' | 'pauses'> = {
      sessionId: options.sessionId,
      grant: options.grant,
      limits: options.limits,
      redactor: this.redactor,
      target: () => this.options.target,
      now,
      isEnding,
      auditAccepting: () => this.options.auditAccepting(),
      clientBacklog: () => this.clientBacklog(),
      record,
      recordOrEnd: (type, data, lazy) => this.recordOrEnd(type, data, lazy),
      send: (text, isEvent, after, ids) => this.enqueue(text, isEvent, after, ids),
      notify: (method, params, isEvent, after) => this.enqueue(JSON.stringify({ method, params }), isEvent, after),
      fault: (where, err, frame) => this.fault(where, err, frame),
      channel: this.channel,
      labels: new RecordLabels(options.targetUrl),
      // The one switch between Loupe expressions (the default) and V8 evaluation (a grant's privilege): console,
      // watch, hover, conditions and logpoints all go through it.
      evaluation: frameEvaluation({
        kind: evaluationKind,
        channel: this.channel,
        limits: options.limits,
        redactor: this.redactor,
        target: () => this.options.target,
        processFacts: () => this.withheld,
      }),
    };
    // The parts reach each other through the context only when a frame is handled, after all are built.
    const context = shared as { -readonly [K in keyof SessionContext]: SessionContext[K] };
    context.breakpoints = new Breakpoints(context);
    context.pauses = new Pauses(context, this.fellowsOnTarget());
    this.context = context;
    const screen = new TargetScreen({ grant: options.grant, target: context.target, redactor: this.redactor, limits: options.limits, evaluation: evaluationKind, handed: this.handed });
    this.fromClient = new ClientRelay(context, screen);
    this.fromTarget = new TargetRelay(context, options.grant.mode === 'snapshot' ? new SnapshotMode(context) : undefined);
  }

  /** Records the start, then relays. Throws if the start cannot be recorded: no unrecorded session. */
  start(): Promise<unknown> {
    const { client, targetSocket, audit, limits } = this.options;
    const url = this.options.targetUrl;
    if (url !== undefined) {
      const fellows = sessionsOnTarget.get(url) ?? new Set();
      sessionsOnTarget.set(url, fellows.add(this));
    }
    // Recorded first (its place in the chain is fixed now); listeners attach at once so no early frame is lost,
    // and every later record, hence every forward, waits behind this one.
    const started = audit.record('session.started', {
      inspector: this.options.target.inspector,
      expiresAt: new Date(this.grant.expiresAt * 1000).toISOString(),
      rule: this.grant.rule,
      ...(this.grant.evaluation === 'v8' ? { evaluation: 'v8' } : {}),
    });
    client.on('message', (data, isBinary) => this.contain('client frame', data as Buffer, () => this.onClientFrame(data as Buffer, isBinary)));
    client.on('pong', () => this.heartbeat?.heard());
    client.on('close', () => void this.end('client_closed'));
    client.on('error', () => void this.end('client_closed'));
    // The target is always drained: a stalled reader makes the target's memory grow without bound.
    targetSocket.on('message', (data) => this.contain('target message', data as Buffer, () => this.onTargetFrame(data as Buffer)));
    targetSocket.on('close', () => void this.end('target_gone'));
    targetSocket.on('error', () => void this.end('target_gone'));
    this.scheduleExpiry();
    const { clientPingIntervalMs: intervalMs, clientUnresponsiveMs: boundMs } = limits;
    this.heartbeat = new ClientHeartbeat({
      client,
      intervalMs,
      boundMs,
      now: this.context.now,
      isEnding: this.context.isEnding,
      onUnresponsive: (silentMs) => {
        this.record('client.unresponsive', { silentMs: Math.round(silentMs), boundMs, pingIntervalMs: intervalMs }).catch(() => undefined);
        void this.end('client_unresponsive');
      },
    });
    return started;
  }

  /**
   * Learns the target's process id, parent process id and inspector port, read once per target process (at the first
   * session's client's first frame, ahead of it; the answer is recorded by size only), so every message the client
   * receives is checked for them (gate/processFacts.ts); nothing reaches the client before. Not earlier: a target busy
   * when the client attaches is given the time it would have had. One that does not answer ends the session like any
   * request it leaves unanswered; one that answers with an error or no process has no facts to withhold.
   */
  private learnProcessFacts(): void {
    const key = this.options.targetUrl;
    const known = key !== undefined ? processFactsByTarget.get(key) : undefined;
    // Another session's read that failed (its session ended meanwhile, say) is no answer for this one: it reads itself.
    (known ? known.catch(() => this.readProcessFacts(undefined)) : this.readProcessFacts(key)).then(
      (facts) => {
        this.withheld = new WithheldFacts(facts);
        this.drainOutbox();
      },
      (err: unknown) => {
        const kind = err instanceof TargetCommandError ? err.kind : undefined;
        void this.end(kind === 'not_recorded' ? 'audit_failure' : kind === 'gone' ? 'target_gone' : kind === 'timeout' ? 'target_unresponsive' : 'internal_error', err);
      },
    );
  }

  /** The read itself, through this session's channel (recorded in its chain); remembered under `key` while it holds. */
  private readProcessFacts(key: string | undefined): Promise<ProcessFactValues> {
    const why = "Loupe reads the target's process id, parent process id and inspector port once, to withhold them from everything the client receives";
    const read = this.channel.command('Runtime.evaluate', { ...processFactsRead }, { quiet: true, why, timeoutMs: this.options.limits.targetResponseSeconds * 1000 }).then(
      (result) => processFactsFrom(result),
      (err: unknown): ProcessFactValues => {
        if (err instanceof TargetCommandError && (err.kind === 'target_error' || err.kind === 'unreadable')) return {};
        throw err;
      },
    );
    if (key !== undefined) {
      if (processFactsByTarget.size >= rememberedTargets) processFactsByTarget.delete(processFactsByTarget.keys().next().value!);
      processFactsByTarget.set(key, read);
      read.catch(() => {
        if (processFactsByTarget.get(key) === read) processFactsByTarget.delete(key);
      });
    }
    return read;
  }

  /** When the session ends: the grant's expiry, or earlier when a policy reload shortened it. */
  private expiresAtMs(): number {
    return Math.min(this.grant.expiresAt * 1000, this.shortenedTo ?? Infinity);
  }

  private scheduleExpiry(): void {
    clearTimeout(this.expiryTimer);
    const remaining = this.expiresAtMs() - this.options.clock();
    // Timers are capped near 24.8 days; a longer grant re-arms.
    this.expiryTimer = setTimeout(() => (this.expiresAtMs() <= this.options.clock() ? void this.end('expired') : this.scheduleExpiry()), Math.min(Math.max(remaining, 0), 2 ** 31 - 1));
  }

  /** A policy reload: the session continues under `target` (already the stricter of old and new), maybe for less time. */
  applyPolicy(target: TargetConfig, changes: { expiresAtMs?: number; why: string }): void {
    if (this.ending) return;
    (this.options as { target: TargetConfig }).target = target;
    this.redactor.policy = target.redaction;
    const shortened = changes.expiresAtMs !== undefined && changes.expiresAtMs < this.expiresAtMs();
    if (shortened) this.shortenedTo = changes.expiresAtMs;
    this.record('session.policy_applied', {
      why: changes.why,
      maxPauseSeconds: target.maxPauseSeconds,
      evaluation: target.evaluation,
      ...(shortened ? { expiresAt: new Date(changes.expiresAtMs!).toISOString() } : {}),
    }).catch(() => undefined);
    if (shortened) this.scheduleExpiry();
  }

  /**
   * Runs the handling of one frame so that a throw, or a rejection of what it started, ends this session
   * alone (breakpoints removed, target resumed, the fault on the record), never the broker process.
   */
  private contain(where: string, frame: Buffer, handle: () => void | Promise<unknown>): void {
    try {
      const running = handle();
      if (running) running.catch((err: unknown) => this.fault(where, err, frame));
    } catch (err) {
      this.fault(where, err, frame);
    }
  }

  /** Ends the session on a fault in handling `frame`; the first fault is the one recorded. */
  private fault(where: string, err: unknown, frame?: Buffer): void {
    if (this.faulted) return;
    const message = err instanceof Error ? `${err.name}: ${err.message}` : `thrown: ${truncate(safeText(err), 200)}`;
    this.faulted = {
      where,
      error: truncate(message, 500),
      frameSha256: frame ? createHash('sha256').update(frame).digest('hex') : null,
      bytes: frame ? frame.length : null,
    };
    try {
      this.options.onFault?.(this, this.faulted, err);
    } catch {
      /* the log is best effort; the session ends regardless */
    }
    void this.end('internal_error');
  }

  get isEnding(): boolean {
    return this.ending !== undefined;
  }

  private record(type: EventType, data: Record<string, unknown>, lazy = false): Promise<unknown> {
    return this.options.audit.record(type, data, lazy);
  }

  /** A record whose failure means the audit trail is gone: the session ends, nothing more is forwarded. */
  private recordOrEnd(type: EventType, data: Record<string, unknown>, lazy = false): Promise<unknown> {
    const recorded = this.record(type, data, lazy);
    recorded.catch((err: unknown) => void this.end('audit_failure', err));
    return recorded;
  }

  private onClientFrame(data: Buffer, isBinary: boolean): void {
    this.heartbeat?.heard();
    if (!this.learningFacts) {
      this.learningFacts = true;
      this.learnProcessFacts();
    }
    this.fromClient.onFrame(data, isBinary);
    // A fair share of the broker: a client with many requests still unanswered sends no more until half are.
    if (this.requestsInFlight() >= maxRequestsInFlight) this.holdReads('busy');
  }

  /** Requests waiting for the target's answer or the broker's own. */
  private requestsInFlight(): number {
    return this.context.channel.waiting + this.fromClient.answering;
  }

  private releaseWhenAnswered(): void {
    if (this.readsHeld.has('busy') && this.requestsInFlight() < maxRequestsInFlight / 2) this.releaseReads('busy');
  }

  private onTargetFrame(data: Buffer): void {
    this.fromTarget.onFrame(data);
    if (this.readsHeld.has('busy')) {
      // Not read by the broker's choice: its silence is not the client's.
      this.heartbeat?.heard();
      this.releaseWhenAnswered();
    }
  }

  /**
   * Queues a client-bound message; it leaves only after everything queued before it, and only once `after`
   * has settled. A message whose `after` failed is dropped.
   */
  private enqueue(text: string, isEvent: boolean, after?: Promise<unknown>, ids?: readonly string[]): void {
    const entry = { text: text as string | null, isEvent, ready: after === undefined, ids };
    this.outbox.push(entry);
    if (after) {
      after.then(
        () => ((entry.ready = true), this.drainOutbox()),
        () => ((entry.ready = true), (entry.text = null), this.drainOutbox()),
      );
    } else this.drainOutbox();
  }

  /** The client's socket holds the frames sent in this tick, to write them together (see batchClientWrites). */
  private clientCorked = false;

  /**
   * Frames sent to the client in one tick leave in one write: a burst of target events (Debugger.enable's
   * scriptParsed, read from the target in one go) otherwise costs a system call per frame, which dominated the
   * broker's time when many sessions open at once. Released at the end of the tick, or early once enough waits.
   */
  private batchClientWrites(): void {
    const socket = (this.options.client as unknown as { _socket?: { cork(): void; uncork(): void; writableLength: number } })._socket;
    if (!socket) return;
    if (this.clientCorked) {
      if (socket.writableLength < clientBatchBytes) return;
      this.clientCorked = false;
      socket.uncork();
      return;
    }
    this.clientCorked = true;
    socket.cork();
    process.nextTick(() => {
      if (!this.clientCorked) return;
      this.clientCorked = false;
      socket.uncork();
    });
  }

  private drainOutbox(): void {
    const client = this.options.client;
    const withheld = this.withheld;
    if (!withheld) return;
    let answered = false;
    while (this.outbox.length > 0 && this.outbox[0]!.ready) {
      const { text, isEvent, ids } = this.outbox.shift()!;
      if (text === null || client.readyState !== client.OPEN) continue;
      // An answer alone leaves at once (ws writes a frame's header and body together): no batch to hold it for.
      if (isEvent || this.clientCorked || this.outbox.length > 0) this.batchClientWrites();
      // Events are shed when the client cannot keep up; responses never are.
      if (isEvent && client.bufferedAmount > this.options.limits.clientBufferBytes) {
        if (this.droppedEvents++ === 0) this.record('client.events_dropped', { bufferedAmount: client.bufferedAmount }).catch(() => undefined);
        continue;
      }
      if (!isEvent) this.droppedEvents = 0;
      const checked = withheld.scrub(text);
      if (checked === null) continue;
      // The ids of what leaves: taken from the value it was serialized from when the scrub left it as it was.
      if (ids && checked === text) this.handed.noteIds(ids);
      else this.handed.note(checked);
      client.send(checked);
      answered ||= !isEvent;
    }
    if (this.clientBacklog() > 0) this.holdClientReads();
    else if (answered) this.releaseWhenAnswered();
    // An answer leaves now, with the events batched before it: what the broker does next in this tick (the answer's
    // record, its hashing) must not hold the client's round trip.
    if (answered && this.clientCorked) {
      this.clientCorked = false;
      (this.options.client as unknown as { _socket?: { uncork(): void } })._socket?.uncork();
    }
  }

  /** Bytes waiting unsent to the client past limits.clientBufferBytes; else 0. */
  private clientBacklog(): number {
    const waiting = this.options.client.bufferedAmount;
    return waiting > this.options.limits.clientBufferBytes ? waiting : 0;
  }

  /** Why the client's frames are not read now: its answers wait unread (backlog), or many of its requests are unanswered (busy). */
  private readonly readsHeld = new Set<'backlog' | 'busy'>();

  private get clientSocket(): Socket | undefined {
    return (this.options.client as unknown as { _socket?: Socket })._socket;
  }

  /**
   * The client leaves its answers unread: its frames are not read either until they drain (requests that arrived
   * meanwhile are refused, see TargetScreen), so a client that writes and never reads cannot grow the broker's memory.
   * A client that stays so is judged unresponsive: its pongs are not read.
   */
  private holdClientReads(): void {
    const socket = this.clientSocket;
    if (!socket || this.readsHeld.has('backlog')) return;
    this.holdReads('backlog');
    socket.once('drain', () => this.releaseReads('backlog'));
  }

  private holdReads(why: 'backlog' | 'busy'): void {
    if (this.readsHeld.size === 0) this.clientSocket?.pause();
    this.readsHeld.add(why);
  }

  private releaseReads(why: 'backlog' | 'busy'): void {
    if (!this.readsHeld.delete(why) || this.readsHeld.size > 0) return;
    this.clientSocket?.resume();
  }

  /** Records an alert in this session's chain. */
  recordAlert(type: `alert.${string}`, data: Record<string, unknown>): Promise<unknown> {
    // Lazy: an alert is about records already durable, and nothing is forwarded on it; it joins the next commit.
    return this.options.audit.record(type, data, true);
  }

  // ---- the end ----

  /**
   * Ends the session: breakpoints removed, target resumed, domains disabled, both sides closed. Idempotent. `cause`:
   * what made it end, where the reason alone does not say (the record the audit trail refused, and why), for the log.
   */
  end(reason: EndReason, cause?: unknown): Promise<void> {
    if (this.endReason === undefined && cause !== undefined) this.endCause = truncate(cause instanceof Error ? cause.message : safeText(cause), 500);
    this.endReason ??= reason;
    this.ending ??= this.cleanup(reason);
    return this.ending;
  }

  /**
   * Whether another session of this broker holds the pause the target is in (its breakpoint, its step): a pause this
   * session counted as its own by its requests alone (a step still to come) may be theirs, and is not resumed here.
   */
  private fellowHoldsPause(): boolean {
    return [...this.fellowSessions()].some((fellow) => fellow.context.pauses.ownPause);
  }

  /** The other live sessions of this broker on the same target process. */
  private fellowSessions(): Set<DebugSession> {
    const all = new Set(this.options.targetUrl !== undefined ? sessionsOnTarget.get(this.options.targetUrl) : undefined);
    all.delete(this);
    return all;
  }

  private leaveTarget(): void {
    const url = this.options.targetUrl;
    const fellows = url !== undefined ? sessionsOnTarget.get(url) : undefined;
    if (!fellows) return;
    fellows.delete(this);
    if (fellows.size > 0) return;
    sessionsOnTarget.delete(url!);
    // With no session of this broker left, a pause left for one is not this broker's to take.
    leftPauses.delete(url!);
    leftExceptions.delete(url!);
  }

  /** A pause this session asked for is still to come after its end: the sessions that stay resume it. */
  private leavePause(): void {
    const url = this.options.targetUrl;
    if (url === undefined || !sessionsOnTarget.has(url)) return;
    // Only while a session of this broker is on the target (leaveTarget drops it after the last): bounded by them.
    leftPauses.set(url, { sessionId: this.sessionId, until: Date.now() + leftPauseMs });
  }

  /** The pauses ended sessions of this target left, as this session's Pauses sees them. */
  private fellowsOnTarget(): FellowSessions {
    const url = this.options.targetUrl;
    const current = () => {
      const left = url !== undefined ? leftPauses.get(url) : undefined;
      if (left && left.until < Date.now()) leftPauses.delete(url!);
      return left && left.until >= Date.now() ? left : undefined;
    };
    return {
      holdPause: () => this.fellowHoldsPause(),
      waiting: () => current() !== undefined,
      take: () => {
        const left = current();
        if (!left || [...this.fellowSessions()].some((fellow) => fellow.context.pauses.ownPause)) return undefined;
        leftPauses.delete(url!);
        return left.sessionId;
      },
      othersExceptionState: () => exceptionStateFor([...this.fellowSessions()].map((fellow) => fellow.context.pauses.heldExceptionState)),
      exceptionsLeft: () => url !== undefined && leftExceptions.has(url),
      showing: () =>
        [...this.fellowSessions()]
          .filter((fellow) => fellow.options.grant.mode !== 'snapshot' && fellow.context.pauses.hearsPauses)
          // Held by its breakpoint or exception state: a step or continueToLocation still to come is not this pause.
          .map((fellow) => ({ heardAt: fellow.context.pauses.heardAt, pause: fellow.context.pauses.heardPause, holds: fellow.context.pauses.causedPause })),
      takeExceptionState: () => {
        if (url === undefined || !leftExceptions.delete(url)) return undefined;
        return exceptionStateFor([...(sessionsOnTarget.get(url) ?? [])].map((session) => session.context.pauses.heldExceptionState));
      },
    };
  }

  private async cleanup(reason: EndReason): Promise<void> {
    const { audit, targetSocket, client } = this.options;
    const { channel, breakpoints, pauses, labels } = this.context;
    // Its wishes no longer count for the sessions that stay (their own ends read what is left).
    this.leaveTarget();
    // First, so that nothing below can keep the target process's script table alive past its last session.
    labels.release();
    clearTimeout(this.expiryTimer);
    pauses.stop();
    this.heartbeat?.stop();
    channel.stopWatching();
    const fault = this.faulted ? { fault: this.faulted } : {};
    this.record('session.ending', { endReason: reason, ...fault, breakpoints: breakpoints.ids(), paused: pauses.paused, ownPause: pauses.ownPause }).catch(() => undefined);
    // No throttled breakpoint is set again from now on.
    breakpoints.stopThrottles();
    // A target that stopped answering would not answer these either: its link is cut instead, and Node resumes
    // and drops this session's breakpoints when it runs again.
    if (targetSocket.readyState === targetSocket.OPEN && reason !== 'target_unresponsive') {
      // Production first: these go out even when the audit trail is failing, and the target handles them
      // in order, also while paused.
      const steps: Promise<unknown>[] = [];
      // Everything this session has in V8, also breakpoints the broker is taking out.
      for (const breakpointId of breakpoints.v8Ids()) steps.push(channel.command('Debugger.removeBreakpoint', { breakpointId }, { critical: true }).catch(() => undefined));
      // Before the resume, so the target does not pause again on its next exception.
      if (pauses.exceptionState !== 'none') {
        const state = exceptionStateFor([...this.fellowSessions()].map((fellow) => fellow.context.pauses.heldExceptionState));
        steps.push(channel.command('Debugger.setPauseOnExceptions', { state }, { critical: true }).catch(() => undefined));
      }
      // A pause asked for and not yet taken outlives Debugger.disable while another session is enabled: taken within
      // a moment, it is this session's and resumed below (a target that runs no code for that long is left to the
      // other session's watchdog).
      // Not taken by then, it is left to the sessions that stay: the first of them to see it resumes it. A pause
      // another session holds (its breakpoint, hit meanwhile) is not this one's: it is still to come.
      if (pauses.pauseOutstanding) {
        const arrived = await pauses.nextPause(outstandingPauseWaitMs);
        if (arrived && this.fellowSessions().size > 0) await new Promise((resolve) => setTimeout(resolve, fellowsHearMs));
        if (!arrived || this.fellowHoldsPause()) this.leavePause();
      }
      // Only a pause this session caused: another session may hold the one it sees. A pause nobody else
      // holds ends with Debugger.disable (V8 resumes when no other Debugger-enabled session remains).
      if (pauses.ownPause && !this.fellowHoldsPause()) steps.push(channel.command('Debugger.resume', {}, { critical: true }).catch(() => undefined));
      steps.push(channel.command('Debugger.disable', {}, { critical: true }).catch(() => undefined));
      steps.push(channel.command('Runtime.disable', {}, { critical: true }).catch(() => undefined));
      // Each command is bounded; so is the whole, should an answer be lost to a fault.
      await Promise.race([Promise.all(steps), new Promise((r) => setTimeout(r, brokerCommandTimeoutMs + 1000).unref())]);
    } else if (pauses.heldExceptionState !== 'none' && this.options.targetUrl !== undefined && sessionsOnTarget.has(this.options.targetUrl)) {
      // Node drops this connection's breakpoints, but V8's exception pauses are one state for the process and outlive
      // it while the sessions that stay are enabled: the first of them an exception pauses resets it.
      leftExceptions.add(this.options.targetUrl);
    }
    for (const [targetId, pending] of channel.clientPendings()) {
      this.record('cdp.response.missing', { id: pending.clientId, targetId, method: pending.method, requestSeq: pending.requestSeq ?? null }).catch(() => undefined);
    }
    channel.clear();
    breakpoints.clear();
    targetSocket.removeAllListeners('close');
    if (reason === 'target_unresponsive') targetSocket.terminate();
    else targetSocket.close();
    // Not past a failed WAL: a commit the disk never finishes would hold the client's close and the session for good.
    await audit.untilWalFailed(audit.record('session.ended', { endReason: reason, ...fault }).catch(() => undefined));
    // Let records already durable reach the client before the close frame.
    await new Promise((r) => setImmediate(r));
    if (client.readyState === client.OPEN || client.readyState === client.CONNECTING) client.close(closeCodes[reason], closeMessages[reason]);
    // A frozen client never answers the close frame: its socket is not kept for ws's 30 s close timeout.
    if (reason === 'client_unresponsive') setTimeout(() => client.terminate(), 1000).unref();
    void audit.close(reason).catch(() => undefined);
    this.options.onEnded(this);
  }
}
