import { createHash } from 'node:crypto';
import type WebSocket from 'ws';
import type { BrokerLimits, TargetConfig } from '../config/types';
import type { AuditStream } from '../audit/auditTrail';
import type { EventType } from '../audit/events';
import { cdpErrorCodes, gateClientFrame, safeText, truncate, type GateDecision, type LogTemplate } from '../gate/cdpGate';
import { conditionProbe } from '../gate/conditionCheck';
import { reachableValuesProbe, screenEvaluation } from '../gate/evaluationCheck';
import { marker, Redactor } from '../policy/redact';
import { captureFrames, scrubCapture, type Capture, type PausedFrameInput } from './snapshot';
import { boundMessage, finishCuts, messageBounds, sniffEventMethod, sniffResponseId } from './resultBounds';
import { searchSource } from './sourceSearch';
import type { Grant } from '../grants/grantStore';

export type EndReason = 'expired' | 'revoked' | 'client_closed' | 'target_gone' | 'shutdown' | 'audit_failure' | 'alert' | 'policy' | 'internal_error' | 'client_unresponsive' | 'target_unresponsive';

/** Close codes the client sees, with a reason it can show as is. */
export const closeCodes: Record<EndReason, number> = {
  client_closed: 1000,
  expired: 4001,
  revoked: 4002,
  shutdown: 4003,
  target_gone: 4004,
  audit_failure: 4005,
  alert: 4006,
  policy: 4007,
  internal_error: 4008,
  client_unresponsive: 4009,
  target_unresponsive: 4010,
};

const closeMessages: Record<EndReason, string> = {
  client_closed: 'session closed by the client',
  expired: 'grant expired: the session has ended',
  revoked: 'grant revoked: the session has ended',
  shutdown: 'broker shutting down: the session has ended',
  target_gone: 'the target process went away',
  audit_failure: 'audit trail unavailable: the session has ended',
  alert: 'ended by an alert rule of the target owner',
  policy: 'the target policy changed and no longer allows this session',
  internal_error: 'the broker failed handling a message of this session: it has ended (recorded)',
  client_unresponsive: 'the client stopped answering pings: the session has ended',
  target_unresponsive: 'the target stopped answering its inspector: the session has ended',
};

/** What ended a session on a fault: where, the error, and the frame that caused it (by digest, not content). */
export interface SessionFault {
  readonly where: string;
  readonly error: string;
  readonly frameSha256: string | null;
  readonly bytes: number | null;
}

type Pending =
  | { origin: 'client'; clientId: number; method: string; sentAt: number; requestSeq?: number; condition?: string; logpoint?: LogTemplate; removes?: string; describes?: string; setAs?: BreakpointEntry['setAs'] }
  | {
      origin: 'broker';
      method: string;
      resolve: (result: Record<string, unknown>) => void;
      reject: (err: Error) => void;
      timer: NodeJS.Timeout;
      quiet?: boolean;
      /** A read of a snapshot capture: the capture's one record holds what it read. */
      unrecorded?: boolean;
      /** Runs as the answer is read, before any later frame of the target is handled. */
      onAnswer?: (message: CdpMessage) => void;
    };

/** A breakpoint of this session, by the id the client knows it by. */
interface BreakpointEntry {
  readonly condition?: string;
  readonly logpoint?: LogTemplate;
  /** How it was set in V8, so the broker can set it again when a throttle ends. */
  readonly setAs: { readonly method: string; readonly params: Record<string, unknown> };
  /** Its id in V8 while it is set there; undefined while the broker has taken it out. */
  v8Id: string | undefined;
  /** Taken out of V8 by a rate limit until `until` (Date.now() time), then set again. */
  throttled?: { until: number; reason: string; timer: NodeJS.Timeout };
  /** The broker's changes to it in V8 (remove, set again), one after another. */
  ops: Promise<unknown>;
  /** Taken out of V8 while the client is absent (after a watchdog resume); set again at its next frame. */
  parked?: boolean;
}

/**
 * A rate-limited breakpoint is taken out of V8 until its next capture is due, so V8 stops pausing on it,
 * when that wait is at least this long; shorter waits are cheaper as hits resumed at once.
 */
export const minThrottleOutMs = 50;
/** How long before a throttle ends its setting again is recorded (write-ahead), so it is sent on time. */
const setAgainLeadMs = 100;
/**
 * A pause this session did not cause is resumed by it only this long after maxPauseSeconds: the session that
 * caused it acts first (its watchdog also keeps its absent client from pausing again); this resume is for
 * pauses nobody on the broker owns (a `debugger;` statement, a debugger outside Loupe).
 */
export const foreignPauseGraceMs = 2000;

interface CdpMessage {
  id?: number;
  method?: string;
  params?: Record<string, unknown>;
  result?: Record<string, unknown>;
  error?: { code: number; message: string };
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
  readonly clock: () => number;
  readonly onEnded: (session: DebugSession) => void;
  /** Told of a fault that ends this session (the broker logs it). */
  readonly onFault?: (session: DebugSession, fault: SessionFault, err: unknown) => void;
}

const brokerCommandTimeoutMs = 2000;
/** Script source kept per session for searches (characters). */
const maxSourceCacheChars = 32 << 20;
const maxObjectLabels = 10_000;

/** The audit event a client request is recorded as. */
function requestEventType(method: string): EventType {
  if (/^Debugger\.setBreakpoint/.test(method)) return 'cdp.breakpoint.set';
  if (method === 'Debugger.removeBreakpoint') return 'cdp.breakpoint.removed';
  if (method === 'Runtime.evaluate' || method === 'Debugger.evaluateOnCallFrame') return 'cdp.evaluate';
  if (method === 'Runtime.getProperties') return 'cdp.properties.read';
  if (/^Debugger\.(step|continueToLocation|pause$)/.test(method)) return 'cdp.step';
  if (method === 'Debugger.resume') return 'cdp.resume';
  return 'cdp.request';
}

/**
 * One client attached to one target under one grant. Every client frame goes through the gate and is
 * recorded durably before it is forwarded; a response takes its place in the chain before the client sees it
 * and is durable with the next group commit (a crash in between leaves a request with no response). Ids
 * toward the target come from the broker's own sequence, shared with its own commands (condition checks,
 * cleanup, watchdog), so they never collide with the client's.
 */
export class DebugSession {
  readonly sessionId: string;
  readonly grant: Grant;
  private nextTargetId = 1;
  private readonly pending = new Map<number, Pending>();
  /** Breakpoints this session set, by client id, with the condition or logpoint the broker evaluates for each. */
  private readonly breakpoints = new Map<string, BreakpointEntry>();
  /** This session's breakpoints as V8 has them now (V8 id → client id), also those the broker is removing. */
  private readonly inV8 = new Map<string, string>();
  /** Recent broker-held pauses per breakpoint (condition checks, logpoints): [time, ms]. */
  private readonly heldPauses = new Map<string, [number, number][]>();
  private paused = false;
  /**
   * The pause the target is in was caused by this session (its breakpoint, its step or pause request, its
   * pause on exceptions). Only such a pause is this session's to resume at its end or by its watchdog: a
   * Debugger-enabled session also sees the pauses of other sessions.
   */
  private ownPause = false;
  /**
   * The watchdog resumed a pause of this session and its client has sent nothing since: the session holds no
   * pause until it does (its breakpoints are out of V8 and it skips all pauses).
   */
  private clientAbsent = false;
  /** What the client itself last asked for, restored when it comes back. */
  private clientSkipsPauses = false;
  private pausesOnExceptions = false;
  /** performance.now() of the last pong or frame from the client. */
  private lastHeardAt = performance.now();
  private heartbeat: NodeJS.Timeout | undefined;
  private unresponsiveCheck: NodeJS.Timeout | undefined;
  private unresponsiveConfirm: NodeJS.Immediate | undefined;
  private clientExpectsPause = false;
  /** Target events held back while the broker decides whether a pause reaches the client. */
  private held: string[] | null = null;
  /** Client-bound messages in order; an entry waits until its record is durable. */
  private readonly outbox: { text: string | null; isEvent: boolean; ready: boolean }[] = [];
  private swallowResumed = 0;
  private watchdog: NodeJS.Timeout | undefined;
  private expiryTimer: NodeJS.Timeout | undefined;
  private droppedEvents = 0;
  private ending: Promise<void> | undefined;
  /** What each remote object is, for the record: "local scope of work (app.js:14)", "local.nested". */
  private readonly objectLabels = new Map<string, string>();
  private readonly frameLabels = new Map<string, string>();
  private readonly scriptUrls = new Map<string, string>();
  private readonly snapshots = new Map<string, { lastCaptureAt: number; captures: number; skipped: number; lastThrottleNoticeAt: number }>();
  private captureTimes: number[] = [];
  /** Redacts what the target sends before it is recorded or passed on; learns redacted values per session. */
  readonly redactor: Redactor;
  private captureCount = 0;
  /** Requests the target has not answered yet, by target id, with when each was sent (oldest first). */
  private readonly inFlight = new Map<number, number>();
  private unresponsiveTimer: NodeJS.Timeout | undefined;

  constructor(private readonly options: DebugSessionOptions) {
    this.sessionId = options.sessionId;
    this.grant = options.grant;
    this.redactor = new Redactor(options.target.redaction);
  }

  /** Records the start, then relays. Throws if the start cannot be recorded: no unrecorded session. */
  start(): Promise<unknown> {
    const { client, targetSocket, audit } = this.options;
    // Recorded first (its place in the chain is fixed now); listeners attach at once so no early frame is lost,
    // and every later record, hence every forward, waits behind this one.
    const started = audit.record('session.started', { inspector: this.options.target.inspector, expiresAt: new Date(this.grant.expiresAt * 1000).toISOString(), rule: this.grant.rule });
    client.on('message', (data, isBinary) => this.contain('client frame', data as Buffer, () => this.onClientFrame(data as Buffer, isBinary)));
    client.on('pong', () => (this.lastHeardAt = performance.now()));
    client.on('close', () => void this.end('client_closed'));
    client.on('error', () => void this.end('client_closed'));
    // The target is always drained: a stalled reader makes the target's memory grow without bound.
    targetSocket.on('message', (data) => this.contain('target message', data as Buffer, () => this.onTargetFrame(data as Buffer)));
    targetSocket.on('close', () => void this.end('target_gone'));
    targetSocket.on('error', () => void this.end('target_gone'));
    this.scheduleExpiry();
    this.startHeartbeat();
    return started;
  }

  /**
   * A client whose process is frozen keeps its TCP connection open, so only its silence shows it is gone: it
   * is pinged (the client, never the target) and ends as client_unresponsive when nothing comes back in time.
   */
  private startHeartbeat(): void {
    const { clientPingIntervalMs: intervalMs, clientUnresponsiveMs: boundMs } = this.options.limits;
    const client = this.options.client;
    this.heartbeat = setInterval(() => {
      if (client.readyState === client.OPEN) client.ping();
    }, intervalMs);
    const check = (confirm: boolean) => {
      if (this.ending) return;
      const silentMs = performance.now() - this.lastHeardAt;
      if (silentMs < boundMs) {
        this.unresponsiveCheck = setTimeout(() => check(false), boundMs - silentMs);
        return;
      }
      // Timers run before sockets are read: after a stall of the broker's own loop, a pong may be waiting
      // unread. One turn of the loop reads it before the client is judged.
      if (!confirm) {
        this.unresponsiveConfirm = setImmediate(() => check(true));
        return;
      }
      this.record('client.unresponsive', { silentMs: Math.round(silentMs), boundMs, pingIntervalMs: intervalMs }).catch(() => undefined);
      void this.end('client_unresponsive');
    };
    this.unresponsiveCheck = setTimeout(() => check(false), boundMs);
  }

  private stopHeartbeat(): void {
    clearInterval(this.heartbeat);
    clearTimeout(this.unresponsiveCheck);
    clearImmediate(this.unresponsiveConfirm);
  }

  /** When the session ends: the grant's expiry, or earlier when a policy reload shortened it. */
  private expiresAtMs(): number {
    return Math.min(this.grant.expiresAt * 1000, this.shortenedTo ?? Infinity);
  }

  private shortenedTo: number | undefined;

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

  private faulted: SessionFault | undefined;

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

  private record(type: EventType, data: Record<string, unknown>): Promise<unknown> {
    return this.options.audit.record(type, data);
  }

  /** A record whose failure means the audit trail is gone: the session ends, nothing more is forwarded. */
  private recordOrEnd(type: EventType, data: Record<string, unknown>): Promise<unknown> {
    const recorded = this.record(type, data);
    recorded.catch(() => void this.end('audit_failure'));
    return recorded;
  }

  // ---- client → target ----

  private onClientFrame(data: Buffer, isBinary: boolean): void {
    this.lastHeardAt = performance.now();
    if (this.clientAbsent && !this.ending) this.clientReturned();
    const decision = gateClientFrame(data, isBinary, this.grant.mode, this.options.limits);
    if (this.ending || !this.options.auditAccepting()) {
      const why = this.ending ? 'the session is ending' : 'the audit trail cannot record it (Loupe fails closed)';
      this.refuse({ action: 'refuse', id: decision.id, method: decision.method, code: cdpErrorCodes.refused, rule: this.ending ? 'session.ending' : 'audit.unavailable', message: `${decision.method ?? 'message'} refused: ${why}` });
      return;
    }
    if (decision.action === 'refuse') this.refuse(decision);
    else this.forward(decision, data);
  }

  private refuse(decision: Extract<GateDecision, { action: 'refuse' }>): void {
    const recorded = this.record('cdp.refused', { id: decision.id, method: decision.method ?? null, rule: decision.rule, message: decision.message });
    const reply = decision.id === null ? { error: { code: decision.code, message: decision.message } } : { id: decision.id, error: { code: decision.code, message: decision.message } };
    // A refusal carries no target data: it reaches the client even if recording it failed.
    this.enqueue(JSON.stringify(reply), false, recorded.catch(() => undefined));
  }

  /**
   * The target policy's evaluation rules for an evaluation, condition or logpoint: refused, answered with the
   * redaction marker without running, or allowed (with the roots whose reachable sensitive values are learned first).
   */
  private screen(decision: Extract<GateDecision, { action: 'forward' }>): { refuse?: string; rule?: string; redact?: string; roots: readonly string[]; transforms?: string } {
    const policy = this.options.target.evaluation;
    const sensitive = (name: string) => this.redactor.isSensitive(name);
    const checks: [string, 'evaluate' | 'condition' | 'logpoint'][] = [];
    if (decision.handling === 'evaluate') checks.push([String(decision.params.expression), 'evaluate']);
    if (decision.condition !== undefined) checks.push([decision.condition, 'condition']);
    for (const expression of decision.logpoint?.expressions ?? []) checks.push([expression, 'logpoint']);
    let roots: readonly string[] = [];
    let transforms: string | undefined;
    for (const [source, use] of checks) {
      const verdict = screenEvaluation(source, use, policy, sensitive, this.redactor.active);
      if (verdict.kind === 'refuse') return { refuse: `${decision.method} refused: ${use === 'evaluate' ? 'the expression' : use === 'condition' ? 'the condition' : `logpoint expression "${truncate(source)}"`}: ${verdict.reason}`, rule: verdict.rule, roots };
      if (verdict.kind === 'redact') return { redact: verdict.name, roots };
      roots = verdict.roots;
      transforms = verdict.transforms;
    }
    return { roots, ...(transforms ? { transforms } : {}) };
  }

  /** An evaluation that names a redacted field: recorded, never run, answered with the marker. */
  private answerRedacted(decision: Extract<GateDecision, { action: 'forward' }>, name: string): void {
    const recorded = this.recordOrEnd('cdp.evaluate', { id: decision.id, method: decision.method, params: decision.params, decision: 'redact', redacted: name });
    const text = marker(name);
    this.enqueue(JSON.stringify({ id: decision.id, result: { result: { type: 'string', value: text, description: text } } }), false, recorded.catch(() => undefined));
  }

  /** Script sources read for searches, by script id (sources never change: setScriptSource is refused). */
  private readonly sources = new Map<string, string>();
  private sourceChars = 0;

  /** A script's source, read from the target once and kept within a bound (oldest dropped first). */
  private async scriptSource(scriptId: string): Promise<string> {
    const known = this.sources.get(scriptId);
    if (known !== undefined) return known;
    const result = await this.command('Debugger.getScriptSource', { scriptId }, { why: 'Debugger.searchInContent: Loupe searches the source itself' });
    const source = typeof result.scriptSource === 'string' ? result.scriptSource : '';
    this.sources.set(scriptId, source);
    this.sourceChars += source.length;
    for (const [id, text] of this.sources) {
      if (this.sourceChars <= maxSourceCacheChars || id === scriptId) break;
      this.sources.delete(id);
      this.sourceChars -= text.length;
    }
    return source;
  }

  /** Debugger.searchInContent: recorded first like any request, answered from the source, never run by V8. */
  private async answerSearch(decision: Extract<GateDecision, { action: 'forward' }>): Promise<void> {
    const { id, method, params } = decision;
    const started = this.options.clock();
    try {
      await this.recordOrEnd('cdp.request', { id, method, params, decision: 'rewrite', rewrites: decision.rewrites });
    } catch {
      this.enqueue(JSON.stringify({ id, error: { code: cdpErrorCodes.refused, message: `${method} not answered: the audit trail could not record it` } }), false);
      return;
    }
    let reply: { result: { result: ReturnType<typeof searchSource> } } | { error: { code: number; message: string } };
    try {
      const source = await this.scriptSource(String(params.scriptId));
      reply = { result: { result: searchSource(source, String(params.query), { caseSensitive: params.caseSensitive === true, isRegex: params.isRegex === true }) } };
    } catch (err) {
      reply = { error: { code: cdpErrorCodes.refused, message: `${method}: the script's source could not be read: ${(err as Error).message}` } };
    }
    const recorded = this.recordOrEnd('cdp.response', { id, method, ms: this.options.clock() - started, ...('error' in reply ? { error: reply.error } : { result: { matches: reply.result.result.length } }) });
    void recorded;
    this.enqueue(JSON.stringify({ id, ...reply }), false);
  }

  /** Learns the sensitive values the roots reach, so they are scrubbed from the evaluation's result. */
  private async learnReachable(decision: Extract<GateDecision, { action: 'forward' }>, roots: readonly string[]): Promise<number> {
    if (roots.length === 0 || !this.redactor.active) return 0;
    const expression = reachableValuesProbe(roots);
    const common = { expression, returnByValue: true, silent: true, throwOnSideEffect: true, timeout: this.options.limits.evaluateTimeoutMs };
    const params = decision.method === 'Debugger.evaluateOnCallFrame' ? { ...common, callFrameId: decision.params.callFrameId } : { ...common, ...(decision.params.contextId !== undefined ? { contextId: decision.params.contextId } : {}) };
    try {
      const result = await this.command(decision.method === 'Debugger.evaluateOnCallFrame' ? 'Debugger.evaluateOnCallFrame' : 'Runtime.evaluate', params, { quiet: true });
      const pairs = (result.result as { value?: unknown } | undefined)?.value;
      return Array.isArray(pairs) ? this.redactor.learnPairs(pairs as [string, string][]) : 0;
    } catch {
      // The probe is bounded like any evaluation; what it could not read is still scrubbed by name and pattern.
      return 0;
    }
  }

  private forward(decision: Extract<GateDecision, { action: 'forward' }>, raw?: Buffer): void {
    const screened = this.screen(decision);
    if (screened.refuse) {
      this.refuse({ action: 'refuse', id: decision.id, method: decision.method, code: cdpErrorCodes.refused, rule: screened.rule!, message: screened.refuse });
      return;
    }
    if (screened.redact !== undefined) {
      this.answerRedacted(decision, screened.redact);
      return;
    }
    if (decision.handling === 'search') {
      void this.answerSearch(decision);
      return;
    }
    const targetId = this.nextTargetId++;
    const params = decision.params;
    if (decision.method === 'Debugger.removeBreakpoint') {
      // Gone for the broker at once: a hit racing the removal is resumed unseen, and a throttle never sets it again.
      const entry = this.retire(String(params.breakpointId));
      // V8 gives a breakpoint set again with the same parameters the same id; should it ever differ, V8's is sent.
      if (entry?.v8Id !== undefined && entry.v8Id !== params.breakpointId) params.breakpointId = entry.v8Id;
    }
    const frame = typeof params.callFrameId === 'string' ? this.frameLabels.get(params.callFrameId) : undefined;
    const object = typeof params.objectId === 'string' ? this.objectLabels.get(params.objectId) : undefined;
    const pending: Extract<Pending, { origin: 'client' }> = {
      origin: 'client',
      clientId: decision.id,
      method: decision.method,
      sentAt: this.options.clock(),
      ...(decision.condition !== undefined ? { condition: decision.condition } : {}),
      ...(decision.logpoint ? { logpoint: decision.logpoint } : {}),
      ...(decision.method === 'Debugger.removeBreakpoint' ? { removes: params.breakpointId as string } : {}),
      ...(decision.handling === 'breakpoint' ? { setAs: { method: decision.method, params } } : {}),
      ...(decision.method === 'Runtime.getProperties' ? { describes: object ?? `object ${String(params.objectId)}` } : {}),
      ...(decision.handling === 'evaluate' ? { describes: `(${truncate(String(params.expression), 80)})` } : {}),
    };
    this.pending.set(targetId, pending);
    if (decision.handling === 'step') this.clientExpectsPause = true;
    if (decision.method === 'Debugger.setSkipAllPauses') this.clientSkipsPauses = params.skip === true;
    if (decision.method === 'Debugger.setPauseOnExceptions') this.pausesOnExceptions = params.state !== 'none';
    // Write-ahead: the request is durable before the target sees it.
    this.recordOrEnd(requestEventType(decision.method), {
      id: decision.id,
      targetId,
      method: decision.method,
      params,
      decision: decision.rewrites.length > 0 || decision.condition !== undefined ? 'rewrite' : 'allow',
      ...(decision.rewrites.length > 0 ? { rewrites: decision.rewrites } : {}),
      ...(decision.condition !== undefined ? { condition: decision.condition } : {}),
      ...(decision.logpoint ? { logMessage: decision.logpoint } : {}),
      ...(frame ? { frame } : {}),
      ...(object ? { object } : {}),
    }).then(
      async (event) => {
        pending.requestSeq = (event as { seq: number }).seq;
        if (decision.handling === 'evaluate') {
          const secrets = await this.learnReachable(decision, screened.roots);
          // Reshaping a value past matching (reversed, sliced, encoded) is refused once the roots reach secrets.
          if (secrets > 0 && screened.transforms) {
            this.pending.delete(targetId);
            this.refuse({ action: 'refuse', id: decision.id, method: decision.method, code: cdpErrorCodes.refused, rule: 'redact.transform', message: `${decision.method} refused: the expression reaches ${secrets} redacted field(s) and calls ${screened.transforms}(), which could reshape a redacted value past redaction` });
            return;
          }
        }
        const socket = this.options.targetSocket;
        if (socket.readyState === socket.OPEN) {
          socket.send(JSON.stringify({ id: targetId, method: decision.method, params }));
          this.sentToTarget(targetId);
        }
      },
      () => {
        this.pending.delete(targetId);
        this.enqueue(JSON.stringify({ id: decision.id, error: { code: cdpErrorCodes.refused, message: `${decision.method} not forwarded: the audit trail could not record it` } }), false);
      },
    ).catch((err: unknown) => this.fault(`client frame ${truncate(decision.method, 80)} (after recording)`, err, raw));
  }

  /** A command of the broker's own, recorded like the client's. `critical` commands (cleanup) go out even if recording fails. */
  private command(method: string, params: Record<string, unknown> = {}, options: { timeoutMs?: number; critical?: boolean; quiet?: boolean; why?: string; onAnswer?: (message: CdpMessage) => void; notBefore?: number } = {}): Promise<Record<string, unknown>> {
    const timeoutMs = options.timeoutMs ?? brokerCommandTimeoutMs;
    const targetId = this.nextTargetId++;
    const recorded = this.record('broker.request', { targetId, method, params, ...(options.why ? { why: options.why } : {}) });
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(targetId);
        this.record('broker.response.missing', { targetId, method, afterMs: timeoutMs }).catch(() => undefined);
        reject(new Error(`${method}: no answer from the target within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(targetId, { origin: 'broker', method, resolve, reject, timer, ...(options.quiet ? { quiet: true } : {}), ...(options.onAnswer ? { onAnswer: options.onAnswer } : {}) });
      const send = () => {
        const socket = this.options.targetSocket;
        if (socket.readyState !== socket.OPEN) {
          clearTimeout(timer);
          this.pending.delete(targetId);
          reject(new Error('target link closed'));
          return;
        }
        socket.send(JSON.stringify({ id: targetId, method, params }));
        this.sentToTarget(targetId);
      };
      const guard = options.critical ? Promise.race([recorded.catch(() => undefined), new Promise((r) => setTimeout(r, 500))]) : recorded;
      // notBefore (Date.now() time): recorded now, sent then, so the disk's latency is not added to the wait.
      const sendInTime = () => {
        const early = (options.notBefore ?? 0) - Date.now();
        if (early > 0) setTimeout(send, early);
        else send();
      };
      guard.then(sendInTime, (err: Error) => {
        clearTimeout(timer);
        this.pending.delete(targetId);
        reject(err);
      });
    });
  }

  /**
   * A read of a snapshot capture, or the resume that ends it: sent at once, not recorded by itself, so the
   * target is never held for the disk. The breakpoint that causes the capture was recorded before V8 had it,
   * and the capture's one record (snapshot.captured) holds everything these reads returned.
   */
  private captureCommand(method: 'Runtime.getProperties' | 'Debugger.resume', params: Record<string, unknown> = {}): Promise<Record<string, unknown>> {
    const targetId = this.nextTargetId++;
    return new Promise((resolve, reject) => {
      const socket = this.options.targetSocket;
      if (socket.readyState !== socket.OPEN) {
        reject(new Error('target link closed'));
        return;
      }
      const timer = setTimeout(() => {
        this.pending.delete(targetId);
        reject(new Error(`${method}: no answer from the target within ${brokerCommandTimeoutMs} ms`));
      }, brokerCommandTimeoutMs);
      this.pending.set(targetId, { origin: 'broker', method, resolve, reject, timer, unrecorded: true });
      socket.send(JSON.stringify({ id: targetId, method, params }));
      this.sentToTarget(targetId);
    });
  }

  /**
   * Every request sent to the target is watched until it is answered, also after the broker stopped waiting for
   * it: a target that answers none for limits.targetResponseSeconds (wedged in a builtin V8 cannot interrupt, or
   * in its own code) ends the session, so its user and the next are not held behind it.
   */
  private sentToTarget(targetId: number): void {
    this.inFlight.set(targetId, Date.now());
    if (!this.unresponsiveTimer) this.watchTargetAnswers();
  }

  private watchTargetAnswers(): void {
    const oldest = this.inFlight.values().next();
    if (oldest.done || this.ending) {
      this.unresponsiveTimer = undefined;
      return;
    }
    const boundMs = this.options.limits.targetResponseSeconds * 1000;
    this.unresponsiveTimer = setTimeout(() => {
      this.unresponsiveTimer = undefined;
      const first = this.inFlight.entries().next();
      if (first.done || this.ending) return;
      const [targetId, sentAt] = first.value;
      const waitedMs = Date.now() - sentAt;
      if (waitedMs < boundMs) return this.watchTargetAnswers();
      const pending = this.pending.get(targetId);
      this.record('broker.response.missing', {
        targetId,
        method: pending?.method ?? null,
        ...(pending?.origin === 'client' ? { id: pending.clientId } : {}),
        afterMs: waitedMs,
        unanswered: this.inFlight.size,
        why: `the target answered nothing for ${waitedMs} ms, over limits.targetResponseSeconds (${this.options.limits.targetResponseSeconds} s): the session ends`,
      }).catch(() => undefined);
      void this.end('target_unresponsive');
    }, Math.max(0, oldest.value + boundMs - Date.now()));
  }

  // ---- target → client ----

  private onTargetFrame(data: Buffer): void {
    if (data.length > this.options.limits.maxTargetFrameBytes && this.refuseOversizedFrame(data)) return;
    if (nestedDeeperThan(data, maxTargetNesting)) {
      // Parsing it is fine, but every later step (redaction, the record, the copy to the client) recurses.
      const problem = `nested deeper than ${maxTargetNesting} levels`;
      this.record('target.invalid_frame', { bytes: data.length, problem }).catch(() => undefined);
      const id = sniffResponseId(data);
      const pending = id !== undefined ? this.pending.get(id) : undefined;
      if (pending) this.failPending(id!, pending, `the target answered with a malformed message (${problem}); it was not passed on`);
      return;
    }
    let message: CdpMessage;
    try {
      message = JSON.parse(data.toString('utf8')) as CdpMessage;
    } catch {
      this.record('target.invalid_frame', { bytes: data.length }).catch(() => undefined);
      return;
    }
    // The target is not trusted either: a message of the wrong shape is recorded and goes no further.
    const problem = targetMessageProblem(message);
    if (problem) {
      this.record('target.invalid_frame', { bytes: data.length, problem }).catch(() => undefined);
      const pending = isRecord(message) && typeof message.id === 'number' ? this.pending.get(message.id) : undefined;
      if (pending) this.failPending(message.id!, pending, `the target answered with a malformed message (${problem}); it was not passed on`);
      return;
    }
    if (message.method === 'Debugger.paused') message.params!.callFrames = wellFormedFrames(message.params!.callFrames);
    if (typeof message.id === 'number') this.onTargetResponse(message, data);
    else if (typeof message.method === 'string') this.onTargetEvent(message, data);
  }

  /**
   * A frame over limits.maxTargetFrameBytes is not parsed (parsing alone would hold the event loop): the request
   * it answers gets an error saying so, an event is dropped; both are recorded. A script's source (code, read
   * once, never redacted) and a pause (the session must see every pause) are parsed whatever their size.
   * Returns false for those.
   */
  private refuseOversizedFrame(data: Buffer): boolean {
    const limit = this.options.limits.maxTargetFrameBytes;
    const id = sniffResponseId(data);
    if (id !== undefined) this.inFlight.delete(id);
    const pending = id === undefined ? undefined : this.pending.get(id);
    if (id !== undefined && pending?.method === 'Debugger.getScriptSource') return false;
    if (id === undefined && sniffEventMethod(data) === 'Debugger.paused') return false;
    if (id === undefined || !pending) {
      this.record('target.invalid_frame', { bytes: data.length, method: sniffEventMethod(data) ?? null, reason: `over limits.maxTargetFrameBytes (${limit}): not read` }).catch(() => undefined);
      return true;
    }
    this.pending.delete(id);
    const error = { code: cdpErrorCodes.refused, message: `${pending.method}: the target's answer is ${data.length} bytes, over this broker's limits.maxTargetFrameBytes of ${limit}, so Loupe did not read it; ask for less (a narrower expression, a smaller object)` };
    if (pending.origin === 'broker') {
      clearTimeout(pending.timer);
      if (!pending.unrecorded) this.record('broker.response', { targetId: id, method: pending.method, bytes: data.length, error }).catch(() => undefined);
      pending.reject(new Error(error.message));
      return true;
    }
    const recorded = this.recordOrEnd('cdp.response', { id: pending.clientId, targetId: id, requestSeq: pending.requestSeq ?? null, method: pending.method, ms: this.options.clock() - pending.sentAt, bytes: data.length, error });
    void recorded;
    this.enqueue(JSON.stringify({ id: pending.clientId, error }), false);
    return true;
  }

  /**
   * Bounds a parsed message, redacts it, then cuts it to its bounds (see resultBounds.ts): redaction does bounded
   * work and sees whole whatever straddles a cut. Pauses keep all their frames: only their strings are cut.
   */
  private redactBounded(value: unknown, redact: () => void, keepLists = false): void {
    const bounds = messageBounds(this.options.target.evaluation.maxResultBytes);
    boundMessage(value, keepLists ? { ...bounds, budget: Infinity } : bounds);
    redact();
    finishCuts(value, bounds);
  }

  /** A request whose answer cannot be used: the client gets an error, a broker command fails. */
  private failPending(targetId: number, pending: Pending, why: string): void {
    this.inFlight.delete(targetId);
    this.pending.delete(targetId);
    if (pending.origin === 'broker') {
      clearTimeout(pending.timer);
      pending.reject(new Error(`${pending.method}: ${why}`));
      return;
    }
    const error = { code: cdpErrorCodes.refused, message: `${pending.method}: ${why}` };
    const recorded = this.recordOrEnd('cdp.response', { id: pending.clientId, targetId, requestSeq: pending.requestSeq ?? null, method: pending.method, ms: this.options.clock() - pending.sentAt, error });
    void recorded;
    this.enqueue(JSON.stringify({ id: pending.clientId, error }), false);
  }

  private onTargetResponse(message: CdpMessage, raw: Buffer): void {
    this.inFlight.delete(message.id!);
    const pending = this.pending.get(message.id!);
    if (!pending) return;
    this.pending.delete(message.id!);
    if (pending.origin === 'broker') {
      clearTimeout(pending.timer);
      try {
        // A quiet command's answer is read by the broker alone (the redaction probe): only its size is recorded.
        // Bounded before anything reads it; a script's source is code and goes whole.
        if (pending.method !== 'Debugger.getScriptSource') this.redactBounded(message.result, () => pending.quiet || this.redactor.response(pending.method, message.result));
        pending.onAnswer?.(message);
      } catch (err) {
        // Its caller (the cleanup among them) must not wait forever on an answer the broker failed to read.
        pending.reject(err instanceof Error ? err : new Error(safeText(err)));
        throw err;
      }
      if (!pending.unrecorded) this.record('broker.response', { targetId: message.id, method: pending.method, ...(message.error ? { error: message.error } : pending.quiet ? { result: { bytes: raw.length } } : { result: summarizeResult(pending.method, message.result) }) }).catch(() => undefined);
      if (message.error) pending.reject(new Error(`${pending.method}: ${message.error.message}`));
      else pending.resolve(message.result ?? {});
      return;
    }
    if (pending.method !== 'Debugger.getScriptSource') this.redactBounded(message.result, () => this.redactor.response(pending.method, message.result));
    if (message.result && (pending.method === 'Runtime.evaluate' || pending.method === 'Debugger.evaluateOnCallFrame')) capResult(message.result, this.options.target.evaluation.maxResultBytes);
    const breakpointId = message.result?.breakpointId;
    if (typeof breakpointId === 'string') {
      const previous = this.breakpoints.get(breakpointId);
      if (previous?.throttled) clearTimeout(previous.throttled.timer);
      this.breakpoints.set(breakpointId, {
        ...(pending.condition !== undefined ? { condition: pending.condition } : {}),
        ...(pending.logpoint ? { logpoint: pending.logpoint } : {}),
        setAs: pending.setAs ?? { method: pending.method, params: {} },
        v8Id: breakpointId,
        ops: Promise.resolve(),
      });
      this.inV8.set(breakpointId, breakpointId);
    }
    if (pending.removes !== undefined && !message.error) this.inV8.delete(pending.removes);
    if (pending.describes && message.result) this.labelObjects(pending.method, pending.describes, message.result);
    const recorded = this.recordOrEnd('cdp.response', {
      id: pending.clientId,
      targetId: message.id,
      requestSeq: pending.requestSeq ?? null,
      method: pending.method,
      ms: this.options.clock() - pending.sentAt,
      bytes: raw.length,
      ...(message.error ? { error: message.error } : { result: summarizeResult(pending.method, message.result) }),
    });
    // The response's place in the chain is fixed now and it becomes durable with the next group commit;
    // waiting for that sync would double the cost of every round trip. What is write-ahead is the request.
    void recorded;
    this.enqueue(JSON.stringify(message.error ? { id: pending.clientId, error: message.error } : { id: pending.clientId, result: message.result ?? {} }), false);
  }

  private onTargetEvent(message: CdpMessage, raw: Buffer): void {
    if (message.method === 'Debugger.paused') {
      this.onPaused(message, raw).catch((err: unknown) => this.fault('target event Debugger.paused', err, raw));
      return;
    }
    if (message.method === 'Debugger.scriptParsed' && typeof message.params?.scriptId === 'string' && typeof message.params.url === 'string') {
      this.scriptUrls.set(message.params.scriptId, message.params.url);
    }
    // A snapshot session never shows a pause or a resume: its client sees captures instead.
    if (message.method === 'Debugger.resumed') {
      this.ownPause = false;
      clearTimeout(this.foreignPauseTimer);
      this.foreignPauseTimer = undefined;
    }
    if (message.method === 'Debugger.resumed' && this.grant.mode === 'snapshot') return;
    if (message.method === 'Debugger.resumed') {
      const wasShown = this.paused && this.swallowResumed === 0;
      this.paused = false;
      this.clearWatchdog();
      if (this.swallowResumed > 0) {
        this.swallowResumed--;
        return;
      }
      if (wasShown) this.record('cdp.resumed', {}).catch(() => undefined);
    }
    let text = raw.toString('utf8');
    if (message.method === 'Runtime.consoleAPICalled' || message.method === 'Runtime.exceptionThrown' || message.method === 'Log.entryAdded') {
      this.redactBounded(message.params, () => this.redactor.event(message.method!, message.params));
      text = JSON.stringify(message);
    }
    if (this.held) this.held.push(text);
    else this.enqueue(text, true);
  }

  private async onPaused(message: CdpMessage, raw: Buffer): Promise<void> {
    this.redactBounded(message.params, () => this.redactor.event('Debugger.paused', message.params), true);
    if (this.grant.mode === 'snapshot') return this.onSnapshotPause(message);
    this.paused = true;
    const params = message.params ?? {};
    const { live: hits, quiet } = this.sortHits(params.hitBreakpoints);
    this.ownPause = hits.length > 0 || quiet.length > 0 || this.clientExpectsPause || (this.pausesOnExceptions && (params.reason === 'exception' || params.reason === 'promiseRejection'));
    if (hits.length === 0 && quiet.length > 0 && !this.clientExpectsPause && params.reason === 'other') {
      // Only breakpoints the broker is taking out of V8 (throttled, suspended, removed): resumed, never shown.
      for (const id of quiet) if (this.breakpoints.has(id)) this.snapshotState(id).skipped++;
      this.swallowResumed++;
      try {
        await this.command('Debugger.resume', {}, { critical: true });
      } catch {
        this.swallowResumed = Math.max(0, this.swallowResumed - 1);
      }
      return;
    }
    // The client sees its own ids, and only breakpoints it still has.
    if (Array.isArray(params.hitBreakpoints)) params.hitBreakpoints = hits;
    const text = JSON.stringify(message);
    const logpoints = hits.filter((id) => this.breakpoints.get(id)?.logpoint !== undefined);
    const conditional = hits.filter((id) => !logpoints.includes(id) && this.breakpoints.get(id)?.condition !== undefined);
    const frame = (params.callFrames as PausedFrameInput[] | undefined)?.[0];
    if (hits.length === 0 || conditional.length + logpoints.length < hits.length || this.clientExpectsPause || params.reason !== 'other') {
      this.forwardPause(message, text, hits);
      return;
    }
    const started = performance.now();
    this.held = [];
    for (const id of logpoints) if (frame) await this.emitLogpoint(id, frame);
    const passed: string[] = [];
    for (const id of conditional) {
      const condition = this.breakpoints.get(id)!.condition!;
      const verdict = frame ? await this.evaluateCondition(frame.callFrameId, condition) : { value: false, detail: 'no call frame' };
      this.record('cdp.breakpoint.condition', { breakpointId: id, condition, value: verdict.value, ...(verdict.detail ? { detail: verdict.detail } : {}) }).catch(() => undefined);
      if (verdict.value) passed.push(id);
    }
    if (this.ending) return;
    if (passed.length === 0) this.chargeHeldPause([...logpoints, ...conditional], performance.now() - started);
    if (passed.length === 0) {
      this.swallowResumed++;
      this.flushHeld();
      try {
        await this.command('Debugger.resume', {}, { critical: true });
      } catch {
        this.swallowResumed = Math.max(0, this.swallowResumed - 1);
      }
      return;
    }
    this.forwardPause(message, JSON.stringify({ ...message, params: { ...params, hitBreakpoints: passed } }), passed);
  }

  /**
   * Snapshot mode: a hit of one of this session's breakpoints is captured within the limits and the target
   * resumed at once; rate limits skip the capture (never the resume). Pauses of other sessions are left alone.
   */
  private async onSnapshotPause(message: CdpMessage): Promise<void> {
    const params = message.params ?? {};
    const { live: hits, quiet } = this.sortHits(params.hitBreakpoints);
    this.ownPause = hits.length > 0 || quiet.length > 0;
    if (this.ending) return;
    if (hits.length === 0 && quiet.length === 0) {
      // Not ours (a `debugger;` statement, another debugger): left alone, but never held past maxPauseSeconds.
      this.armForeignPauseWatchdog();
      return;
    }
    if (hits.length === 0 || !this.options.auditAccepting()) {
      // A hit of a breakpoint the broker is taking out of V8 (or nothing could record a capture): resumed at once.
      this.resumeNow();
      for (const id of [...hits, ...quiet]) if (this.breakpoints.has(id)) this.snapshotState(id).skipped++;
      return;
    }
    const limits = this.options.target.snapshot;
    const started = performance.now();
    const frames = (params.callFrames as PausedFrameInput[] | undefined) ?? [];
    let captureFor: string | undefined;
    let skipped: { breakpointId: string; reason: string; until: number } | undefined;
    const logpoints = hits.filter((id) => this.breakpoints.get(id)?.logpoint !== undefined);
    for (const id of logpoints) if (frames[0]) await this.emitLogpoint(id, frames[0]);
    for (const id of hits.filter((h) => !logpoints.includes(h))) {
      const entry = this.breakpoints.get(id);
      if (!entry) continue;
      const state = this.snapshotState(id);
      if (entry.condition !== undefined && frames[0]) {
        const verdict = await this.evaluateCondition(frames[0].callFrameId, entry.condition);
        this.record('cdp.breakpoint.condition', { breakpointId: id, condition: entry.condition, value: verdict.value, ...(verdict.detail ? { detail: verdict.detail } : {}) }).catch(() => undefined);
        if (!verdict.value) continue;
      }
      const now = Date.now();
      this.captureTimes = this.captureTimes.filter((t) => now - t < 60_000);
      if (now - state.lastCaptureAt < limits.minIntervalMs) skipped = { breakpointId: id, reason: `at most one capture every ${limits.minIntervalMs} ms per breakpoint`, until: state.lastCaptureAt + limits.minIntervalMs };
      else if (this.captureTimes.length >= limits.maxCapturesPerMinute) skipped = { breakpointId: id, reason: `at most ${limits.maxCapturesPerMinute} captures per minute per session`, until: this.captureTimes[0]! + 60_000 };
      else {
        captureFor = id;
        break;
      }
    }
    let capture: (Capture & { reads?: number }) | undefined;
    if (captureFor) {
      try {
        capture = await captureFrames(frames, this.scriptUrls, (objectId, preview) => this.captureCommand('Runtime.getProperties', { objectId, ownProperties: true, ...(preview ? { generatePreview: true } : {}) }) as never, limits);
      } catch (err) {
        capture = { frames: [], durationMs: 0, bytes: 0, truncated: `capture failed: ${(err as Error).message}` };
      }
    }
    // Resume first: the capture is in hand, the target must not wait for the record or the client.
    this.resumeNow();
    const pauseMs = Math.round((performance.now() - started) * 1000) / 1000;
    if (!captureFor) this.chargeHeldPause(hits, pauseMs);
    if (skipped && !captureFor) {
      this.snapshotState(skipped.breakpointId).skipped++;
      this.throttle(skipped.breakpointId, skipped.until, skipped.reason, false);
      this.throttleNotice(skipped.breakpointId, skipped.reason, skipped.until);
      return;
    }
    if (!captureFor || !capture) return;
    const state = this.snapshotState(captureFor);
    state.lastCaptureAt = Date.now();
    state.captures++;
    this.captureTimes.push(Date.now());
    const captureId = `${this.sessionId.slice(0, 8)}-${++this.captureCount}`;
    const record = { captureId, breakpointId: captureFor, capturedAt: new Date(this.options.clock()).toISOString(), pauseMs, ...capture };
    // Reads arrive in parallel, so a value learned from one reply may sit in a string read before it.
    if (this.redactor.active) scrubCapture(record.frames, (text) => this.redactor.scrub(text));
    // One record per capture, durable before the client sees it.
    const recorded = this.recordOrEnd('snapshot.captured', record);
    this.enqueue(JSON.stringify({ method: 'Loupe.snapshotCaptured', params: record }), false, recorded);
    if (state.captures >= limits.maxCapturesPerBreakpoint) {
      const reason = `reached its limit of ${limits.maxCapturesPerBreakpoint} captures and was removed`;
      this.retire(captureFor, `snapshot breakpoint ${reason}`);
      this.record('snapshot.throttled', { breakpointId: captureFor, reason }).catch(() => undefined);
      this.enqueue(JSON.stringify({ method: 'Loupe.snapshotThrottled', params: { breakpointId: captureFor, reason, removed: true } }), false);
      return;
    }
    // Rate limits: take the breakpoint out of V8 until its next capture is due, so V8 stops pausing on it.
    this.throttle(captureFor, state.lastCaptureAt + limits.minIntervalMs, `at most one capture every ${limits.minIntervalMs} ms per breakpoint`, true);
    if (this.captureTimes.length >= limits.maxCapturesPerMinute) {
      const reason = `at most ${limits.maxCapturesPerMinute} captures per minute per session`;
      for (const [id, entry] of this.breakpoints) if (!entry.logpoint) this.throttle(id, this.captureTimes[0]! + 60_000, reason, true);
    }
  }

  /** Resumes the target at once, without waiting for any record (snapshot mode: the capture's record says so). */
  private resumeNow(): void {
    this.captureCommand('Debugger.resume').catch(() => undefined);
  }

  /**
   * A pause's hits as client ids: live (this session's breakpoint, set in V8 now) and quiet (one the broker is
   * taking out of V8 or has: throttled, suspended, removed). Ids that are no breakpoint of this session are left out.
   */
  private sortHits(raw: unknown): { live: string[]; quiet: string[] } {
    const live: string[] = [];
    const quiet: string[] = [];
    for (const id of Array.isArray(raw) ? raw : []) {
      const clientId = typeof id === 'string' ? this.inV8.get(id) : undefined;
      if (clientId === undefined) continue;
      const entry = this.breakpoints.get(clientId);
      (entry && entry.v8Id === id && !entry.throttled ? live : quiet).push(clientId);
    }
    return { live, quiet };
  }

  /** Tells the client (and the record) why hits of a breakpoint give no capture, at most once a second. */
  private throttleNotice(breakpointId: string, reason: string, until?: number): void {
    const state = this.snapshotState(breakpointId);
    if (Date.now() - state.lastThrottleNoticeAt < 1000) return;
    state.lastThrottleNoticeAt = Date.now();
    const untilText = until !== undefined ? { until: new Date(until).toISOString() } : {};
    this.record('snapshot.throttled', { breakpointId, reason, skipped: state.skipped, ...untilText }).catch(() => undefined);
    this.enqueue(JSON.stringify({ method: 'Loupe.snapshotThrottled', params: { breakpointId, reason, skipped: state.skipped, ...untilText } }), true);
  }

  /** Serialises the broker's changes to one breakpoint in V8. */
  private changeInV8(entry: BreakpointEntry, change: () => Promise<unknown>): Promise<unknown> {
    return (entry.ops = entry.ops.then(change).catch(() => undefined));
  }

  /** Removes a breakpoint from V8 on the broker's own account (recorded first, like every broker command). */
  private removeFromV8(entry: BreakpointEntry, v8Id: string, why: string): Promise<unknown> {
    return this.changeInV8(entry, () => this.command('Debugger.removeBreakpoint', { breakpointId: v8Id }, { critical: true, why }).then(() => this.inV8.delete(v8Id)));
  }

  /**
   * A rate limit: the breakpoint leaves V8 until `until`, then the broker sets it again with the client's
   * parameters (V8 gives it the same id). Hits racing the removal are resumed at once. A wait shorter than
   * minThrottleOutMs is left to those quick resumes.
   */
  private throttle(clientId: string, until: number, reason: string, notify: boolean): void {
    const entry = this.breakpoints.get(clientId);
    const wait = until - Date.now();
    if (!entry || entry.throttled || entry.v8Id === undefined || this.ending || wait < minThrottleOutMs) return;
    const v8Id = entry.v8Id;
    entry.v8Id = undefined;
    // The setting again is recorded a little ahead and sent at `until`.
    entry.throttled = { until, reason, timer: setTimeout(() => this.setAgain(clientId, entry), wait - Math.min(setAgainLeadMs, wait / 2)) };
    this.removeFromV8(entry, v8Id, `throttled until ${new Date(until).toISOString()}: ${reason}`);
    if (notify) this.throttleNotice(clientId, reason, until);
  }

  /** The end of a throttle: sets the breakpoint again as the client set it, unless it has gone meanwhile. */
  private setAgain(clientId: string, entry: BreakpointEntry, reason?: string): void {
    // Not while the client is absent: the breakpoint stays parked until it is back.
    const current = () => this.breakpoints.get(clientId) === entry && !this.ending && !this.clientAbsent;
    this.changeInV8(entry, async () => {
      if (!current() || entry.v8Id !== undefined || !this.options.auditAccepting()) return;
      const why = reason ?? `set again: the throttle (${entry.throttled?.reason ?? 'rate limit'}) is over`;
      try {
        await this.command(entry.setAs.method, entry.setAs.params, {
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
        const reason = `could not be set again after a throttle (${(err as Error).message}) and was removed`;
        this.record('snapshot.throttled', { breakpointId: clientId, reason }).catch(() => undefined);
        this.enqueue(JSON.stringify({ method: 'Loupe.snapshotThrottled', params: { breakpointId: clientId, reason, removed: true } }), false);
      }
    });
  }

  /**
   * A breakpoint gone for good (the client removed it, a capture limit, the pause budget). With `why`, the
   * broker removes it from V8 itself; hits still in flight are recognised as this session's and resumed.
   */
  private retire(clientId: string, why?: string): BreakpointEntry | undefined {
    const entry = this.breakpoints.get(clientId);
    if (!entry) return undefined;
    this.breakpoints.delete(clientId);
    this.heldPauses.delete(clientId);
    if (entry.throttled) clearTimeout(entry.throttled.timer);
    if (why !== undefined && entry.v8Id !== undefined) this.removeFromV8(entry, entry.v8Id, why);
    return entry;
  }

  private snapshotState(breakpointId: string): { lastCaptureAt: number; captures: number; skipped: number; lastThrottleNoticeAt: number } {
    let state = this.snapshots.get(breakpointId);
    if (!state) this.snapshots.set(breakpointId, (state = { lastCaptureAt: -Infinity, captures: 0, skipped: 0, lastThrottleNoticeAt: -Infinity }));
    return state;
  }

  /**
   * A logpoint hit: its condition and message parts run in the paused frame under V8's side-effect check
   * and a short timeout, rate limited like captures; the message goes to the client as Loupe.logpoint.
   */
  private async emitLogpoint(breakpointId: string, frame: PausedFrameInput): Promise<void> {
    const entry = this.breakpoints.get(breakpointId);
    if (!entry) return;
    const limits = this.options.target.snapshot;
    const state = this.snapshotState(breakpointId);
    const rateLimit = `at most one logpoint message every ${limits.minIntervalMs} ms per breakpoint`;
    if (Date.now() - state.lastCaptureAt < limits.minIntervalMs) {
      state.skipped++;
      this.throttle(breakpointId, state.lastCaptureAt + limits.minIntervalMs, rateLimit, false);
      return;
    }
    // One budget for the whole hit (condition and every part), not one per part: conditionTimeoutMs.
    const budgetMs = this.options.limits.conditionTimeoutMs;
    const started = performance.now();
    if (entry.condition !== undefined && !(await this.evaluateCondition(frame.callFrameId, entry.condition)).value) return;
    state.lastCaptureAt = Date.now();
    // Like a capture: out of V8 until the next message is due, so hits in between cost the target nothing.
    this.throttle(breakpointId, state.lastCaptureAt + limits.minIntervalMs, rateLimit, false);
    const template = entry.logpoint!;
    const values: string[] = [];
    let skippedParts = 0;
    for (const expression of template.expressions) {
      const leftMs = Math.floor(budgetMs - (performance.now() - started));
      if (leftMs < 1) {
        values.push('<skipped: budget>');
        skippedParts++;
        continue;
      }
      try {
        const result = await this.command('Debugger.evaluateOnCallFrame', { callFrameId: frame.callFrameId, expression, throwOnSideEffect: true, timeout: leftMs, silent: true });
        const details = result.exceptionDetails as { exception?: { description?: string } } | undefined;
        const value = result.result as { type: string; value?: unknown; description?: string } | undefined;
        if (details) values.push(/Possible side-effect/.test(safeText(details.exception?.description ?? '')) ? '<refused: side effect>' : `<error: ${truncate(safeText(details.exception?.description ?? 'exception').split('\n')[0]!, 80)}>`);
        else values.push(safeText(value?.type === 'string' ? value.value : (value?.description ?? value?.value)));
      } catch (err) {
        values.push(`<error: ${(err as Error).message}>`);
      }
    }
    const message = template.literals.map((literal, i) => literal + (values[i] ?? '')).join('');
    const where = `${frame.functionName || '(anonymous)'} (${safeText(frame.url || this.scriptUrls.get(frame.location.scriptId) || '').split('/').pop()}:${frame.location.lineNumber + 1})`;
    const ms = Math.round((performance.now() - started) * 10) / 10;
    this.record('cdp.logpoint', { breakpointId, message, frame: where, skipped: state.skipped, ms, ...(skippedParts > 0 ? { skippedParts, budgetMs } : {}) }).catch(() => undefined);
    this.enqueue(JSON.stringify({ method: 'Loupe.logpoint', params: { breakpointId, message, frame: where, time: new Date(this.options.clock()).toISOString() } }), true);
  }

  /**
   * Charges a pause the client never saw (condition checks, logpoints) to its breakpoints. A breakpoint
   * whose pauses cost the target more than the budget per second is suspended, and the client told why.
   */
  private chargeHeldPause(breakpointIds: readonly string[], ms: number): void {
    const budget = this.options.limits.conditionBudgetMsPerSecond;
    const now = Date.now();
    for (const id of breakpointIds) {
      const window = (this.heldPauses.get(id) ?? []).filter(([t]) => now - t < 1000);
      window.push([now, ms]);
      this.heldPauses.set(id, window);
      const spent = window.reduce((sum, [, m]) => sum + m, 0);
      if (spent <= budget || !this.breakpoints.has(id)) continue;
      const figures = { pauseMsPerSecond: Math.round(spent * 10) / 10, hitsPerSecond: window.length, budgetMsPerSecond: budget };
      const reason = `suspended: its hits held the target ${figures.pauseMsPerSecond} ms in the last second over ${figures.hitsPerSecond} hits (budget ${budget} ms per second)`;
      this.retire(id, `breakpoint ${reason}`);
      this.record('cdp.breakpoint.suspended', { breakpointId: id, reason, ...figures }).catch(() => undefined);
      this.enqueue(JSON.stringify({ method: 'Loupe.breakpointSuspended', params: { breakpointId: id, reason, ...figures } }), false);
    }
  }

  /** Runs a condition in the paused frame under V8's side-effect check and a short timeout. */
  private async evaluateCondition(callFrameId: string, condition: string): Promise<{ value: boolean; detail?: string }> {
    try {
      const result = await this.command('Debugger.evaluateOnCallFrame', {
        callFrameId,
        expression: conditionProbe(condition),
        throwOnSideEffect: true,
        timeout: this.options.limits.conditionTimeoutMs,
        silent: true,
        returnByValue: true,
      });
      const details = result.exceptionDetails as { exception?: { description?: string }; text?: string } | undefined;
      if (details) return { value: false, detail: `refused or threw: ${truncate(details.exception?.description ?? details.text ?? 'exception', 200)}` };
      return { value: (result.result as { value?: unknown } | undefined)?.value === true };
    } catch (err) {
      return { value: false, detail: (err as Error).message };
    }
  }

  private forwardPause(message: CdpMessage, text: string, hits: string[]): void {
    this.clientExpectsPause = false;
    const frames = (message.params?.callFrames as PausedFrame[] | undefined) ?? [];
    this.labelFrames(frames);
    const top = frames[0];
    const recorded = this.recordOrEnd(hits.length > 0 ? 'cdp.breakpoint.hit' : 'cdp.paused', {
      reason: message.params?.reason ?? null,
      hitBreakpoints: hits,
      ...(top ? { frame: this.frameLabels.get(top.callFrameId), url: top.url || this.scriptUrls.get(top.location.scriptId) || null } : {}),
      stack: frames.slice(0, 10).map((f) => this.frameLabels.get(f.callFrameId)),
    });
    const held = this.held ?? [];
    this.held = null;
    void recorded;
    this.enqueue(text, false);
    for (const item of held) this.enqueue(item, true);
    if (this.ownPause) this.armWatchdog();
    else this.armForeignPauseWatchdog();
  }

  private flushHeld(): void {
    const held = this.held ?? [];
    this.held = null;
    for (const item of held) this.enqueue(item, true);
  }

  private labelFrames(frames: PausedFrame[]): void {
    this.frameLabels.clear();
    for (const f of frames) {
      const url = f.url || this.scriptUrls.get(f.location.scriptId) || '';
      const where = `${f.functionName || '(anonymous)'} (${url.split('/').pop() || `script ${f.location.scriptId}`}:${f.location.lineNumber + 1})`;
      this.frameLabels.set(f.callFrameId, where);
      for (const scope of f.scopeChain ?? []) if (scope.object?.objectId) this.setLabel(scope.object.objectId, `${scope.type} scope of ${where}`);
      if (f.this?.objectId) this.setLabel(f.this.objectId, `this of ${where}`);
    }
  }

  private labelObjects(method: string, parent: string, result: Record<string, unknown>): void {
    if (method === 'Runtime.getProperties') {
      for (const p of Array.isArray(result.result) ? (result.result as unknown[]) : []) {
        if (isRecord(p) && isRecord(p.value) && typeof p.value.objectId === 'string') this.setLabel(p.value.objectId, `${parent} › ${safeText(p.name)}`);
      }
    } else {
      const value = result.result;
      if (isRecord(value) && typeof value.objectId === 'string') this.setLabel(value.objectId, parent);
    }
  }

  private setLabel(objectId: string, label: string): void {
    if (this.objectLabels.size >= maxObjectLabels) this.objectLabels.delete(this.objectLabels.keys().next().value!);
    this.objectLabels.set(objectId, label);
  }

  private foreignPauseTimer: NodeJS.Timeout | undefined;

  /**
   * A pause this session did not cause is never held past maxPauseSeconds either, but the session that caused
   * it acts first: this one resumes it only foreignPauseGraceMs later, if it still holds.
   */
  private armForeignPauseWatchdog(): void {
    clearTimeout(this.foreignPauseTimer);
    const seconds = this.options.target.maxPauseSeconds;
    this.foreignPauseTimer = setTimeout(() => {
      this.foreignPauseTimer = undefined;
      if (this.ending) return;
      void this.watchdogResume(seconds, 'not caused by this session');
    }, seconds * 1000 + foreignPauseGraceMs);
  }

  private armWatchdog(): void {
    this.clearWatchdog();
    const seconds = this.options.target.maxPauseSeconds;
    this.watchdog = setTimeout(() => {
      if (!this.paused || this.ending) return;
      void this.watchdogResume(seconds);
    }, seconds * 1000);
  }

  /**
   * A pause held past maxPauseSeconds is resumed. In pause mode its client may be frozen with the same
   * breakpoint in a hot path, so the session first stops holding pauses until the client sends a frame.
   */
  private async watchdogResume(seconds: number, pause?: string): Promise<void> {
    this.record('watchdog.resumed', { maxPauseSeconds: seconds, ...(pause ? { pause } : {}) }).catch(() => undefined);
    if (this.grant.mode === 'pause') await this.parkUntilClientReturns(`the watchdog resumed a pause held over ${seconds} s`);
    this.command('Debugger.resume', {}, { critical: true }).catch(() => undefined);
  }

  /**
   * Until the client sends a frame, the session holds no pause: its breakpoints leave V8 (hits racing the
   * removal are resumed unseen) and it skips all pauses (a `debugger;` statement, exceptions). Per session:
   * Debugger.setBreakpointsActive is not (V8 keeps breakpoints active while any session has them active), and
   * skipping alone is not (another Debugger-enabled session would then hold this session's breakpoint hits).
   */
  private async parkUntilClientReturns(why: string): Promise<void> {
    if (this.clientAbsent || this.ending) return;
    this.clientAbsent = true;
    this.clientExpectsPause = false;
    const parked: string[] = [];
    const changes: Promise<unknown>[] = [];
    for (const [clientId, entry] of this.breakpoints) {
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
    this.record('client.absent', { why, breakpoints: parked }).catch(() => undefined);
    changes.push(this.command('Debugger.setSkipAllPauses', { skip: true }, { critical: true, why }).catch(() => undefined));
    this.enqueue(JSON.stringify({ method: 'Loupe.breakpointsParked', params: { breakpointIds: parked, reason: `${why}: breakpoints are off until this client sends a request` } }), true);
    // Out of V8 before the resume, so the same breakpoint cannot pause again; bounded, since a hit racing it is resumed unseen anyway.
    await Promise.race([Promise.all(changes), new Promise((r) => setTimeout(r, 1000))]);
  }

  /** The client sent a frame after a watchdog resume: its breakpoints and pauses are back as it set them. */
  private clientReturned(): void {
    this.clientAbsent = false;
    const why = 'the client is back: it sent a frame after the watchdog resume';
    const restored = [...this.breakpoints].filter(([, entry]) => entry.parked);
    this.record('client.returned', { breakpoints: restored.map(([id]) => id), skipAllPauses: this.clientSkipsPauses }).catch(() => undefined);
    if (!this.clientSkipsPauses) this.command('Debugger.setSkipAllPauses', { skip: false }, { why }).catch(() => undefined);
    for (const [clientId, entry] of restored) {
      entry.parked = false;
      this.setAgain(clientId, entry, why);
    }
  }

  private clearWatchdog(): void {
    if (this.watchdog) clearTimeout(this.watchdog);
    this.watchdog = undefined;
  }

  /**
   * Queues a client-bound message; it leaves only after everything queued before it, and only once `after`
   * has settled. A message whose `after` failed is dropped.
   */
  private enqueue(text: string, isEvent: boolean, after?: Promise<unknown>): void {
    const entry = { text: text as string | null, isEvent, ready: after === undefined };
    this.outbox.push(entry);
    if (after) {
      after.then(
        () => ((entry.ready = true), this.drainOutbox()),
        () => ((entry.ready = true), (entry.text = null), this.drainOutbox()),
      );
    } else this.drainOutbox();
  }

  private drainOutbox(): void {
    const client = this.options.client;
    while (this.outbox.length > 0 && this.outbox[0]!.ready) {
      const { text, isEvent } = this.outbox.shift()!;
      if (text === null || client.readyState !== client.OPEN) continue;
      // Events are shed when the client cannot keep up; responses never are.
      if (isEvent && client.bufferedAmount > this.options.limits.clientBufferBytes) {
        if (this.droppedEvents++ === 0) this.record('client.events_dropped', { bufferedAmount: client.bufferedAmount }).catch(() => undefined);
        continue;
      }
      if (!isEvent) this.droppedEvents = 0;
      client.send(text);
    }
  }

  /** Records an alert in this session's chain. */
  recordAlert(type: `alert.${string}`, data: Record<string, unknown>): Promise<unknown> {
    return this.options.audit.record(type, data);
  }

  // ---- the end ----

  /** Ends the session: breakpoints removed, target resumed, domains disabled, both sides closed. Idempotent. */
  end(reason: EndReason): Promise<void> {
    this.ending ??= this.cleanup(reason);
    return this.ending;
  }

  private async cleanup(reason: EndReason): Promise<void> {
    const { audit, targetSocket, client } = this.options;
    clearTimeout(this.expiryTimer);
    this.clearWatchdog();
    clearTimeout(this.foreignPauseTimer);
    this.stopHeartbeat();
    clearTimeout(this.unresponsiveTimer);
    const fault = this.faulted ? { fault: this.faulted } : {};
    this.record('session.ending', { endReason: reason, ...fault, breakpoints: [...this.breakpoints.keys()], paused: this.paused, ownPause: this.ownPause }).catch(() => undefined);
    // No throttled breakpoint is set again from now on.
    for (const entry of this.breakpoints.values()) if (entry.throttled) clearTimeout(entry.throttled.timer);
    // A target that stopped answering would not answer these either: its link is cut instead, and Node resumes
    // and drops this session's breakpoints when it runs again.
    if (targetSocket.readyState === targetSocket.OPEN && reason !== 'target_unresponsive') {
      // Production first: these go out even when the audit trail is failing, and the target handles them
      // in order, also while paused.
      const steps: Promise<unknown>[] = [];
      // Everything this session has in V8, also breakpoints the broker is taking out.
      for (const breakpointId of this.inV8.keys()) steps.push(this.command('Debugger.removeBreakpoint', { breakpointId }, { critical: true }).catch(() => undefined));
      // Only a pause this session caused: another session may hold the one it sees. A pause nobody else
      // holds ends with Debugger.disable (V8 resumes when no other Debugger-enabled session remains).
      if (this.ownPause) steps.push(this.command('Debugger.resume', {}, { critical: true }).catch(() => undefined));
      steps.push(this.command('Debugger.disable', {}, { critical: true }).catch(() => undefined));
      steps.push(this.command('Runtime.disable', {}, { critical: true }).catch(() => undefined));
      // Each command is bounded; so is the whole, should an answer be lost to a fault.
      await Promise.race([Promise.all(steps), new Promise((r) => setTimeout(r, brokerCommandTimeoutMs + 1000).unref())]);
    }
    for (const [targetId, pending] of this.pending) {
      if (pending.origin === 'client') this.record('cdp.response.missing', { id: pending.clientId, targetId, method: pending.method, requestSeq: pending.requestSeq ?? null }).catch(() => undefined);
    }
    this.pending.clear();
    this.breakpoints.clear();
    this.inV8.clear();
    targetSocket.removeAllListeners('close');
    if (reason === 'target_unresponsive') targetSocket.terminate();
    else targetSocket.close();
    await audit.record('session.ended', { endReason: reason, ...fault }).catch(() => undefined);
    // Let records already durable reach the client before the close frame.
    await new Promise((r) => setImmediate(r));
    if (client.readyState === client.OPEN || client.readyState === client.CONNECTING) client.close(closeCodes[reason], closeMessages[reason]);
    // A frozen client never answers the close frame: its socket is not kept for ws's 30 s close timeout.
    if (reason === 'client_unresponsive') setTimeout(() => client.terminate(), 1000).unref();
    void audit.close(reason).catch(() => undefined);
    this.options.onEnded(this);
  }
}

/** V8 refuses to serialize values nested deeper than 1000 ("Object reference chain is too long"). */
const maxTargetNesting = 1100;

/** Whether JSON text nests arrays/objects deeper than `max`, by one pass over its bytes (strings skipped). */
function nestedDeeperThan(json: Buffer, max: number): boolean {
  // Deeper than max takes more than max opening brackets: most frames are shorter and skip the scan.
  if (json.length <= max) return false;
  let depth = 0;
  let inString = false;
  for (let i = 0; i < json.length; i++) {
    const c = json[i]!;
    if (inString) {
      if (c === 0x5c) i++;
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x7b || c === 0x5b) {
      if (++depth > max) return true;
    } else if (c === 0x7d || c === 0x5d) depth--;
  }
  return false;
}

const isRecord = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);

/** Why a message from the target has a shape no inspector sends, or undefined when it is usable. */
function targetMessageProblem(message: unknown): string | undefined {
  if (!isRecord(message)) return 'not a JSON object';
  if (message.id !== undefined && !Number.isSafeInteger(message.id)) return 'id is not an integer';
  if (message.id === undefined && typeof message.method !== 'string') return 'neither a response (id) nor an event (method)';
  if (message.params !== undefined && !isRecord(message.params)) return 'params is not an object';
  if (message.result !== undefined && !isRecord(message.result)) return 'result is not an object';
  if (message.error !== undefined && !(isRecord(message.error) && typeof message.error.message === 'string')) return 'error has no message';
  if (message.method === 'Debugger.paused' && !isRecord(message.params)) return 'Debugger.paused without params';
  return undefined;
}

/** The call frames of a Debugger.paused that have the shape the broker reads; the rest are left out. */
function wellFormedFrames(raw: unknown): PausedFrameInput[] {
  if (!Array.isArray(raw)) return [];
  const frames: PausedFrameInput[] = [];
  for (const f of raw) {
    if (!isRecord(f) || typeof f.callFrameId !== 'string' || !isRecord(f.location)) continue;
    if (typeof f.location.scriptId !== 'string' || !Number.isSafeInteger(f.location.lineNumber)) continue;
    if (typeof f.functionName !== 'string') f.functionName = '';
    if (f.url !== undefined && typeof f.url !== 'string') delete f.url;
    if (f.this !== undefined && !isRecord(f.this)) delete f.this;
    f.scopeChain = Array.isArray(f.scopeChain) ? f.scopeChain.filter((scope) => isRecord(scope) && typeof scope.type === 'string' && isRecord(scope.object)) : [];
    frames.push(f as unknown as PausedFrameInput);
  }
  return frames;
}

interface PausedFrame {
  callFrameId: string;
  functionName: string;
  url?: string;
  location: { scriptId: string; lineNumber: number };
  scopeChain?: { type: string; object?: { objectId?: string } }[];
  this?: { objectId?: string };
}

/** What the record keeps of a result: enough to answer "what did they see", without whole script sources. */
function summarizeResult(method: string, result: Record<string, unknown> | undefined): unknown {
  if (!result) return {};
  if (method === 'Debugger.getScriptSource') return { bytes: safeText(result.scriptSource ?? '').length };
  if (method === 'Runtime.getProperties') {
    const props = Array.isArray(result.result) ? (result.result as unknown[]) : [];
    return { properties: props.slice(0, 200).map((p) => (isRecord(p) ? { name: safeText(p.name), preview: preview(isRecord(p.value) ? (p.value as unknown as RemoteValue) : undefined) } : { name: '(malformed)' })), count: props.length };
  }
  if (method === 'Runtime.evaluate' || method === 'Debugger.evaluateOnCallFrame') {
    const details = result.exceptionDetails as { exception?: { description?: unknown }; text?: unknown } | undefined;
    return details ? { error: truncate(safeText(details.exception?.description ?? details.text ?? 'exception'), 300) } : { preview: preview(isRecord(result.result) ? (result.result as unknown as RemoteValue) : undefined) };
  }
  const text = JSON.stringify(result);
  return text.length <= 2000 ? result : { bytes: text.length };
}

interface RemoteValue {
  type: string;
  value?: unknown;
  description?: string;
}

function preview(value: RemoteValue | undefined): string | undefined {
  if (!value) return undefined;
  if (value.description !== undefined) return truncate(safeText(value.description), 200);
  if (value.type === 'undefined') return 'undefined';
  return truncate(JSON.stringify(value.value) ?? safeText(value.value), 200);
}

/** evaluation.maxResultBytes: a larger result keeps its type but loses its bulk, and says so. */
function capResult(result: Record<string, unknown>, maxBytes: number): void {
  const size = Buffer.byteLength(JSON.stringify(result));
  if (size <= maxBytes) return;
  const note = ` … [truncated by Loupe: the result is ${size} bytes, over this target's evaluation.maxResultBytes of ${maxBytes}]`;
  const remote = result.result as Record<string, unknown> | undefined;
  if (!remote) return;
  const keep = Math.max(0, Math.floor(maxBytes / 2) - note.length);
  delete remote.preview;
  if (typeof remote.value === 'string') remote.value = remote.value.slice(0, keep) + note;
  else if (remote.value !== undefined) {
    delete remote.value;
    remote.description = `${safeText(remote.description ?? remote.type).slice(0, keep)}${note}`;
  }
  if (typeof remote.description === 'string' && remote.description.length > keep + note.length) remote.description = remote.description.slice(0, keep) + note;
}
