import type WebSocket from 'ws';
import type { BrokerLimits, TargetConfig } from '../config/types';
import type { SessionRecorder } from '../audit/sessionRecorder';
import { cdpErrorCodes, gateClientFrame, truncate, type GateDecision } from '../gate/cdpGate';
import { conditionProbe } from '../gate/conditionCheck';
import type { Grant } from '../grants/grantStore';

export type EndReason = 'expired' | 'revoked' | 'client_closed' | 'target_gone' | 'shutdown' | 'audit_failure';

/** Close codes the client sees, with a reason it can show as is. */
export const closeCodes: Record<EndReason, number> = {
  client_closed: 1000,
  expired: 4001,
  revoked: 4002,
  shutdown: 4003,
  target_gone: 4004,
  audit_failure: 4005,
};

const closeMessages: Record<EndReason, string> = {
  client_closed: 'session closed by the client',
  expired: 'grant expired: the session has ended',
  revoked: 'grant revoked: the session has ended',
  shutdown: 'broker shutting down: the session has ended',
  target_gone: 'the target process went away',
  audit_failure: 'audit trail unavailable: the session has ended',
};

type Pending =
  | { origin: 'client'; clientId: number; method: string; sentAt: number; condition?: string; removes?: string }
  | { origin: 'broker'; method: string; resolve: (result: Record<string, unknown>) => void; reject: (err: Error) => void; timer: NodeJS.Timeout };

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
  readonly recorder: SessionRecorder;
  readonly limits: BrokerLimits;
  readonly clock: () => number;
  readonly onEnded: (session: DebugSession) => void;
}

const brokerCommandTimeoutMs = 2000;

/**
 * One client attached to one target under one grant. Every client frame goes through the gate, is recorded,
 * then forwarded with an id from the broker's own sequence; the broker's commands (condition checks,
 * cleanup, watchdog) share that sequence so they never collide with the client's.
 */
export class DebugSession {
  readonly sessionId: string;
  readonly grant: Grant;
  private nextTargetId = 1;
  private readonly pending = new Map<number, Pending>();
  /** Breakpoints this session set, with the condition the broker evaluates for each. */
  private readonly breakpoints = new Map<string, { condition?: string }>();
  private paused = false;
  private clientExpectsPause = false;
  /** Target messages held back while the broker decides whether a pause reaches the client. */
  private held: string[] | null = null;
  private swallowResumed = 0;
  private watchdog: NodeJS.Timeout | undefined;
  private expiryTimer: NodeJS.Timeout | undefined;
  private droppedEvents = 0;
  private ending: Promise<void> | undefined;

  constructor(private readonly options: DebugSessionOptions) {
    this.sessionId = options.sessionId;
    this.grant = options.grant;
  }

  start(): void {
    const { client, targetSocket, recorder } = this.options;
    recorder.record('session.started', { inspector: this.options.target.inspector, expiresAt: new Date(this.grant.expiresAt * 1000).toISOString() });
    client.on('message', (data, isBinary) => this.onClientFrame(data as Buffer, isBinary));
    client.on('close', () => void this.end('client_closed'));
    client.on('error', () => void this.end('client_closed'));
    // The target is always drained: a stalled reader makes the target's memory grow without bound.
    targetSocket.on('message', (data) => this.onTargetFrame(data as Buffer));
    targetSocket.on('close', () => void this.end('target_gone'));
    targetSocket.on('error', () => void this.end('target_gone'));
    this.scheduleExpiry();
  }

  private scheduleExpiry(): void {
    const remaining = this.grant.expiresAt * 1000 - this.options.clock();
    // Timers are capped near 24.8 days; a longer grant re-arms.
    this.expiryTimer = setTimeout(() => (this.grant.expiresAt * 1000 <= this.options.clock() ? void this.end('expired') : this.scheduleExpiry()), Math.min(Math.max(remaining, 0), 2 ** 31 - 1));
  }

  get isEnding(): boolean {
    return this.ending !== undefined;
  }

  // ---- client → target ----

  private onClientFrame(data: Buffer, isBinary: boolean): void {
    const decision = gateClientFrame(data, isBinary, this.grant.mode, this.options.limits);
    if (this.ending) {
      this.sendToClient({ id: decision.id, error: { code: cdpErrorCodes.refused, message: `${decision.method ?? 'message'} refused: the session is ending` } });
      return;
    }
    if (decision.action === 'refuse') {
      this.options.recorder.record('cdp.refused', { id: decision.id, method: decision.method, rule: decision.rule, message: decision.message });
      this.sendToClient(decision.id === null ? { error: { code: decision.code, message: decision.message } } : { id: decision.id, error: { code: decision.code, message: decision.message } });
      return;
    }
    this.forward(decision);
  }

  private forward(decision: Extract<GateDecision, { action: 'forward' }>): void {
    const targetId = this.nextTargetId++;
    // Write-ahead: the request is on disk before the target sees it.
    this.options.recorder.record('cdp.request', {
      id: decision.id,
      targetId,
      method: decision.method,
      params: decision.params,
      decision: decision.rewrites.length > 0 || decision.condition !== undefined ? 'rewrite' : 'allow',
      ...(decision.rewrites.length > 0 ? { rewrites: decision.rewrites } : {}),
      ...(decision.condition !== undefined ? { condition: decision.condition } : {}),
    });
    this.pending.set(targetId, {
      origin: 'client',
      clientId: decision.id,
      method: decision.method,
      sentAt: this.options.clock(),
      ...(decision.condition !== undefined ? { condition: decision.condition } : {}),
      ...(decision.method === 'Debugger.removeBreakpoint' ? { removes: decision.params.breakpointId as string } : {}),
    });
    if (decision.handling === 'step') this.clientExpectsPause = true;
    this.options.targetSocket.send(JSON.stringify({ id: targetId, method: decision.method, params: decision.params }));
  }

  /** A command of the broker's own, recorded like the client's. */
  private command(method: string, params: Record<string, unknown> = {}, timeoutMs = brokerCommandTimeoutMs): Promise<Record<string, unknown>> {
    const targetId = this.nextTargetId++;
    this.options.recorder.record('broker.request', { targetId, method, params });
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(targetId);
        this.options.recorder.record('broker.response.missing', { targetId, method, afterMs: timeoutMs });
        reject(new Error(`${method}: no answer from the target within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(targetId, { origin: 'broker', method, resolve, reject, timer });
      if (this.options.targetSocket.readyState !== this.options.targetSocket.OPEN) {
        clearTimeout(timer);
        this.pending.delete(targetId);
        reject(new Error('target link closed'));
        return;
      }
      this.options.targetSocket.send(JSON.stringify({ id: targetId, method, params }));
    });
  }

  // ---- target → client ----

  private onTargetFrame(data: Buffer): void {
    let message: CdpMessage;
    try {
      message = JSON.parse(data.toString('utf8')) as CdpMessage;
    } catch {
      this.options.recorder.record('target.invalid_frame', { bytes: data.length });
      return;
    }
    if (typeof message.id === 'number') this.onTargetResponse(message);
    else if (typeof message.method === 'string') this.onTargetEvent(message, data);
  }

  private onTargetResponse(message: CdpMessage): void {
    const pending = this.pending.get(message.id!);
    if (!pending) return;
    this.pending.delete(message.id!);
    if (pending.origin === 'broker') {
      clearTimeout(pending.timer);
      this.options.recorder.record('broker.response', { targetId: message.id, method: pending.method, ...(message.error ? { error: message.error } : { result: summarizeResult(pending.method, message.result) }) });
      if (message.error) pending.reject(new Error(`${pending.method}: ${message.error.message}`));
      else pending.resolve(message.result ?? {});
      return;
    }
    const breakpointId = message.result?.breakpointId;
    if (typeof breakpointId === 'string') this.breakpoints.set(breakpointId, pending.condition !== undefined ? { condition: pending.condition } : {});
    if (pending.removes !== undefined && !message.error) this.breakpoints.delete(pending.removes);
    this.options.recorder.record('cdp.response', {
      id: pending.clientId,
      targetId: message.id,
      method: pending.method,
      ms: this.options.clock() - pending.sentAt,
      ...(message.error ? { error: message.error } : { result: summarizeResult(pending.method, message.result) }),
    });
    this.deliver(JSON.stringify(message.error ? { id: pending.clientId, error: message.error } : { id: pending.clientId, result: message.result ?? {} }), false);
  }

  private onTargetEvent(message: CdpMessage, raw: Buffer): void {
    if (message.method === 'Debugger.paused') {
      void this.onPaused(message, raw);
      return;
    }
    if (message.method === 'Debugger.resumed') {
      this.paused = false;
      this.clearWatchdog();
      if (this.swallowResumed > 0) {
        this.swallowResumed--;
        return;
      }
    }
    this.deliver(raw.toString('utf8'), true);
  }

  private async onPaused(message: CdpMessage, raw: Buffer): Promise<void> {
    this.paused = true;
    const params = message.params ?? {};
    const hits = Array.isArray(params.hitBreakpoints) ? (params.hitBreakpoints as string[]) : [];
    const conditional = hits.filter((id) => this.breakpoints.get(id)?.condition !== undefined);
    if (hits.length === 0 || conditional.length < hits.length || this.clientExpectsPause || params.reason !== 'other') {
      this.forwardPause(raw.toString('utf8'), hits);
      return;
    }
    this.held = [];
    const frame = (params.callFrames as { callFrameId: string }[] | undefined)?.[0];
    const passed: string[] = [];
    for (const id of conditional) {
      const condition = this.breakpoints.get(id)!.condition!;
      const verdict = frame ? await this.evaluateCondition(frame.callFrameId, condition) : { value: false, detail: 'no call frame' };
      this.options.recorder.record('breakpoint.condition', { breakpointId: id, condition, value: verdict.value, ...(verdict.detail ? { detail: verdict.detail } : {}) });
      if (verdict.value) passed.push(id);
    }
    if (this.ending) return;
    if (passed.length === 0) {
      this.swallowResumed++;
      this.flushHeld();
      try {
        await this.command('Debugger.resume');
      } catch {
        this.swallowResumed = Math.max(0, this.swallowResumed - 1);
      }
      return;
    }
    const text = JSON.stringify({ ...message, params: { ...params, hitBreakpoints: passed } });
    this.forwardPause(text, passed);
    this.flushHeld();
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

  private forwardPause(text: string, hits: string[]): void {
    this.clientExpectsPause = false;
    this.options.recorder.record('cdp.paused', { hitBreakpoints: hits });
    const wasHeld = this.held;
    this.held = null;
    this.deliver(text, false);
    if (wasHeld) for (const item of wasHeld) this.deliver(item, true);
    this.armWatchdog();
  }

  private flushHeld(): void {
    const held = this.held ?? [];
    this.held = null;
    for (const item of held) this.deliver(item, true);
  }

  private armWatchdog(): void {
    this.clearWatchdog();
    const seconds = this.options.target.maxPauseSeconds;
    this.watchdog = setTimeout(() => {
      if (!this.paused || this.ending) return;
      this.options.recorder.record('watchdog.resumed', { maxPauseSeconds: seconds });
      this.command('Debugger.resume').catch(() => undefined);
    }, seconds * 1000);
  }

  private clearWatchdog(): void {
    if (this.watchdog) clearTimeout(this.watchdog);
    this.watchdog = undefined;
  }

  /** Sends toward the client; events are shed when the client cannot keep up, responses never are. */
  private deliver(text: string, isEvent: boolean): void {
    if (this.held && isEvent) {
      this.held.push(text);
      return;
    }
    const client = this.options.client;
    if (client.readyState !== client.OPEN) return;
    if (isEvent && client.bufferedAmount > this.options.limits.clientBufferBytes) {
      if (this.droppedEvents++ === 0) this.options.recorder.record('client.events_dropped', { bufferedAmount: client.bufferedAmount });
      return;
    }
    if (this.droppedEvents > 0 && !isEvent) this.droppedEvents = 0;
    client.send(text);
  }

  private sendToClient(message: Record<string, unknown>): void {
    this.deliver(JSON.stringify(message), false);
  }

  // ---- the end ----

  /** Ends the session: breakpoints removed, target resumed, domains disabled, both sides closed. Idempotent. */
  end(reason: EndReason): Promise<void> {
    this.ending ??= this.cleanup(reason);
    return this.ending;
  }

  private async cleanup(reason: EndReason): Promise<void> {
    const { recorder, targetSocket, client } = this.options;
    clearTimeout(this.expiryTimer);
    this.clearWatchdog();
    recorder.record('session.ending', { endReason: reason, breakpoints: [...this.breakpoints.keys()], paused: this.paused });
    const steps: Promise<unknown>[] = [];
    if (targetSocket.readyState === targetSocket.OPEN) {
      // Sent together: the target handles them in order, also while paused.
      for (const breakpointId of this.breakpoints.keys()) steps.push(this.command('Debugger.removeBreakpoint', { breakpointId }).catch(() => undefined));
      steps.push(this.command('Debugger.resume').catch(() => undefined));
      steps.push(this.command('Debugger.disable').catch(() => undefined));
      steps.push(this.command('Runtime.disable').catch(() => undefined));
      await Promise.all(steps);
    }
    for (const [targetId, pending] of this.pending) {
      if (pending.origin === 'client') recorder.record('cdp.response.missing', { id: pending.clientId, targetId, method: pending.method });
    }
    this.pending.clear();
    this.breakpoints.clear();
    targetSocket.removeAllListeners('close');
    targetSocket.close();
    if (client.readyState === client.OPEN || client.readyState === client.CONNECTING) client.close(closeCodes[reason], closeMessages[reason]);
    recorder.record('session.ended', { endReason: reason });
    recorder.close();
    this.options.onEnded(this);
  }
}

/** What the record keeps of a result: enough to answer "what did they see", without whole script sources. */
function summarizeResult(method: string, result: Record<string, unknown> | undefined): unknown {
  if (!result) return {};
  if (method === 'Debugger.getScriptSource') return { bytes: String(result.scriptSource ?? '').length };
  if (method === 'Runtime.getProperties') {
    const props = (result.result as { name: string; value?: { type: string; value?: unknown; description?: string } }[] | undefined) ?? [];
    return { properties: props.slice(0, 200).map((p) => ({ name: p.name, preview: preview(p.value) })), count: props.length };
  }
  if (method === 'Runtime.evaluate' || method === 'Debugger.evaluateOnCallFrame') {
    const value = result.result as { type: string; value?: unknown; description?: string } | undefined;
    const details = result.exceptionDetails as { exception?: { description?: string }; text?: string } | undefined;
    return details ? { error: truncate(details.exception?.description ?? details.text ?? 'exception', 300) } : { preview: preview(value) };
  }
  const text = JSON.stringify(result);
  return text.length <= 2000 ? result : { bytes: text.length };
}

function preview(value: { type: string; value?: unknown; description?: string } | undefined): string | undefined {
  if (!value) return undefined;
  if (value.description !== undefined) return truncate(value.description, 200);
  if (value.type === 'undefined') return 'undefined';
  return truncate(JSON.stringify(value.value) ?? String(value.value), 200);
}
