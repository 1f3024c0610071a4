/**
 * The session's side of the target link: one id sequence toward the target, shared by the client's requests and the
 * broker's own commands (condition checks, captures, cleanup, watchdog) so they never collide; the requests waiting
 * for an answer; and the watch that ends a session whose target stops answering.
 */
import type WebSocket from 'ws';
import type { BrokerLimits } from '../config/types';
import type { EventType } from '../audit/events';
import { safeText, type LogTemplate } from '../gate/cdpGate';
import type { CdpMessage } from '../gate/targetFrame';
import { ioTimeout, type IoTimer } from '../ioTimer';
import { summarizeResult } from './recordShapes';

/** How long the broker waits for the answer to one of its own commands. */
export const brokerCommandTimeoutMs = 2000;

/** Why a command of the broker's own failed. */
export type TargetCommandErrorKind =
  /** No answer within its time. */
  | 'timeout'
  /** The target answered with a CDP error. */
  | 'target_error'
  /** The link to the target is closed. */
  | 'gone'
  /** The command could not be recorded, so it was never sent. */
  | 'not_recorded'
  /** The answer came but cannot be used (malformed, over the size limit, or the broker failed reading it). */
  | 'unreadable';

export class TargetCommandError extends Error {
  override readonly name = 'TargetCommandError';
  constructor(
    readonly kind: TargetCommandErrorKind,
    readonly method: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** A breakpoint as the client set it, so the broker can set it again as it was. */
export interface SetAs {
  readonly method: string;
  readonly params: Record<string, unknown>;
}

/** A client request forwarded to the target, waiting for its answer. */
export interface ClientPending {
  readonly origin: 'client';
  readonly clientId: number;
  readonly method: string;
  readonly sentAt: number;
  requestSeq?: number;
  readonly condition?: string;
  readonly logpoint?: LogTemplate;
  /** The V8 id of a breakpoint it removes. */
  readonly removes?: string;
  /** What it reads, for the labels of the objects in its answer. */
  readonly describes?: string;
  /** The object a Runtime.getProperties or getExceptionDetails reads (its answer is redacted knowing what it is). */
  readonly readsObject?: string;
  readonly setAs?: SetAs;
}

/** A command of the broker's own, waiting for its answer. */
export interface BrokerPending {
  readonly origin: 'broker';
  readonly method: string;
  readonly resolve: (result: Record<string, unknown>) => void;
  readonly reject: (err: Error) => void;
  /** An I/O deadline: an answer already read off the socket settles it first. */
  readonly timer: IoTimer;
  /** Its answer is read by the broker alone (the redaction probe): only its size is recorded. */
  readonly quiet?: boolean;
  /** A read of a snapshot capture: the capture's one record holds what it read. */
  readonly unrecorded?: boolean;
  /** The object a Runtime.getProperties or getExceptionDetails reads. */
  readonly readsObject?: string;
  /** Runs as the answer is read, before any later frame of the target is handled. */
  readonly onAnswer?: (message: CdpMessage) => void;
}

export type Pending = ClientPending | BrokerPending;

/** The object a Runtime.getProperties or Runtime.getExceptionDetails reads, for its pending entry. */
export function readsObject(method: string, params: Record<string, unknown>): { readsObject?: string } {
  const id = method === 'Runtime.getProperties' ? params.objectId : method === 'Runtime.getExceptionDetails' ? params.errorObjectId : undefined;
  return typeof id === 'string' ? { readsObject: id } : {};
}

export interface CommandOptions {
  readonly timeoutMs?: number;
  /** Cleanup: goes out even if recording it fails (after at most 500 ms). */
  readonly critical?: boolean;
  readonly quiet?: boolean;
  readonly why?: string;
  readonly onAnswer?: (message: CdpMessage) => void;
  /** Clock time before which it is not sent: recorded now, sent then, so the disk's latency is not added to the wait. */
  readonly notBefore?: number;
  /**
   * The removal of a breakpoint that just gave a capture (its rate limit): its place in the chain is fixed at once
   * and it is sent at once, ahead of the capture's resume, without waiting for the disk, as the capture's reads
   * are. A removal only takes the debugger's hand off production; waiting for the disk would let the hot path pause
   * on the breakpoint again, for nothing, until it arrives.
   */
  readonly removalWithCapture?: boolean;
}

export interface TargetChannelContext {
  readonly socket: WebSocket;
  readonly limits: BrokerLimits;
  /** The injected clock (ms). */
  now(): number;
  isEnding(): boolean;
  record(type: EventType, data: Record<string, unknown>, lazy?: boolean): Promise<unknown>;
  /** The target answered nothing for limits.targetResponseSeconds: the session ends. */
  onUnresponsive(): void;
}

export class TargetChannel {
  private nextTargetId = 1;
  private readonly pending = new Map<number, Pending>();
  /** Requests the target has not answered yet, by target id, with when each was sent (oldest first). */
  private readonly inFlight = new Map<number, number>();
  private unresponsiveTimer: IoTimer | undefined;

  constructor(private readonly context: TargetChannelContext) {}

  /** A fresh id toward the target. */
  nextId(): number {
    return this.nextTargetId++;
  }

  /** Waits for the answer to a client request sent as `targetId`. */
  expect(targetId: number, pending: ClientPending): void {
    this.pending.set(targetId, pending);
  }

  /** What waits for the answer `targetId`, if anything. */
  get(targetId: number): Pending | undefined {
    return this.pending.get(targetId);
  }

  /** The target answered `targetId` (or its answer will never be read): the unresponsive watch lets it go. */
  heard(targetId: number): void {
    this.inFlight.delete(targetId);
  }

  /** What waited for the answer `targetId`, no longer waiting. */
  take(targetId: number): Pending | undefined {
    const pending = this.pending.get(targetId);
    this.pending.delete(targetId);
    return pending;
  }

  /** Stops waiting for `targetId` without its answer (the target may still answer it: that answer is ignored). */
  forget(targetId: number): void {
    this.pending.delete(targetId);
  }

  /** The client requests still unanswered, for the record at the end. */
  /** Requests (the client's and the broker's own) waiting for the target's answer. */
  get waiting(): number {
    return this.pending.size;
  }

  clientPendings(): [number, ClientPending][] {
    return [...this.pending].filter((entry): entry is [number, ClientPending] => entry[1].origin === 'client');
  }

  /** Sends a message if the link is open, and watches for its answer. */
  send(targetId: number, method: string, params: Record<string, unknown>): boolean {
    const socket = this.context.socket;
    if (socket.readyState !== socket.OPEN) return false;
    socket.send(JSON.stringify({ id: targetId, method, params }));
    this.sentToTarget(targetId);
    return true;
  }

  /** A command of the broker's own, recorded like the client's. `critical` commands (cleanup) go out even if recording fails. */
  command(method: string, params: Record<string, unknown> = {}, options: CommandOptions = {}): Promise<Record<string, unknown>> {
    const timeoutMs = options.timeoutMs ?? brokerCommandTimeoutMs;
    const targetId = this.nextId();
    const recorded = this.context.record('broker.request', { targetId, method, params, ...(options.why ? { why: options.why } : {}) });
    return new Promise((resolve, reject) => {
      const timer = ioTimeout(() => {
        this.pending.delete(targetId);
        this.context.record('broker.response.missing', { targetId, method, afterMs: timeoutMs }).catch(() => undefined);
        reject(new TargetCommandError('timeout', method, `${method}: no answer from the target within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(targetId, {
        origin: 'broker',
        method,
        resolve,
        reject,
        timer,
        ...(options.quiet ? { quiet: true } : {}),
        ...(options.onAnswer ? { onAnswer: options.onAnswer } : {}),
        ...readsObject(method, params),
      });
      const send = () => {
        if (this.send(targetId, method, params)) return;
        timer.cancel();
        this.pending.delete(targetId);
        reject(new TargetCommandError('gone', method, 'target link closed'));
      };
      if (options.removalWithCapture && method === 'Debugger.removeBreakpoint') {
        recorded.catch(() => undefined);
        send();
        return;
      }
      const sendInTime = () => {
        const early = (options.notBefore ?? 0) - this.context.now();
        if (early > 0) setTimeout(send, early);
        else send();
      };
      // Sent in the very reaction to its record, as a client's request is: records of one commit resolve in the order
      // appended, so what leaves for the target keeps that order (a removal recorded before a client's setting of a
      // breakpoint at the same place reaches V8 first; any hop more here would let the client's overtake it).
      if (options.critical) {
        // Cleanup is not held by a disk that stopped answering: it goes out after 500 ms, recorded or not.
        let sent = false;
        const sendOnce = () => {
          if (sent) return;
          sent = true;
          clearTimeout(fallback);
          sendInTime();
        };
        const fallback = setTimeout(sendOnce, 500);
        recorded.then(sendOnce, sendOnce);
        return;
      }
      recorded.then(sendInTime, (err: Error) => {
        timer.cancel();
        this.pending.delete(targetId);
        reject(new TargetCommandError('not_recorded', method, err.message, { cause: err }));
      });
    });
  }

  /**
   * Runs `send` with the link to the target corked, so what it sends (a capture's reads and its resume) leaves in
   * one write: one system call, not one per message, while the target is held.
   */
  batch<T>(send: () => T): T {
    const raw = (this.context.socket as unknown as { _socket?: { cork(): void; uncork(): void } })._socket;
    raw?.cork();
    try {
      return send();
    } finally {
      raw?.uncork();
    }
  }

  /**
   * A read of a snapshot capture, or the resume that ends it: sent at once, not recorded by itself, so the
   * target is never held for the disk. The breakpoint that causes the capture was recorded before V8 had it,
   * and the capture's one record (snapshot.captured) holds everything these reads returned.
   */
  captureCommand(method: 'Runtime.getProperties' | 'Debugger.resume', params: Record<string, unknown> = {}): Promise<Record<string, unknown>> {
    const targetId = this.nextId();
    return new Promise((resolve, reject) => {
      const socket = this.context.socket;
      if (socket.readyState !== socket.OPEN) {
        reject(new TargetCommandError('gone', method, 'target link closed'));
        return;
      }
      const timer = ioTimeout(() => {
        this.pending.delete(targetId);
        reject(new TargetCommandError('timeout', method, `${method}: no answer from the target within ${brokerCommandTimeoutMs} ms`));
      }, brokerCommandTimeoutMs);
      this.pending.set(targetId, { origin: 'broker', method, resolve, reject, timer, unrecorded: true, ...readsObject(method, params) });
      this.send(targetId, method, params);
    });
  }

  /**
   * The answer to a command of the broker's own. `read` bounds and redacts it first; a failure there rejects the
   * command (its caller, the cleanup among them, must not wait forever) and is thrown on as a fault.
   */
  settle(targetId: number, pending: BrokerPending, message: CdpMessage, bytes: number, read: () => void): void {
    pending.timer.cancel();
    try {
      read();
      pending.onAnswer?.(message);
    } catch (err) {
      pending.reject(err instanceof Error ? err : new TargetCommandError('unreadable', pending.method, safeText(err)));
      throw err;
    }
    // Nothing waits on the answer's record: it joins the WAL's next commit (the request was write-ahead).
    if (!pending.unrecorded)
      this.context
        .record(
          'broker.response',
          {
            targetId,
            method: pending.method,
            ...(message.error ? { error: message.error } : pending.quiet ? { result: { bytes } } : { result: summarizeResult(pending.method, message.result) }),
          },
          true,
        )
        .catch(() => undefined);
    if (message.error) pending.reject(new TargetCommandError('target_error', pending.method, `${pending.method}: ${message.error.message}`));
    else pending.resolve(message.result ?? {});
  }

  /** A command whose answer cannot be used fails with `error` (recorded unless it is a capture's read). */
  fail(targetId: number, pending: BrokerPending, error: { code: number; message: string }, bytes?: number): void {
    pending.timer.cancel();
    if (bytes !== undefined && !pending.unrecorded) this.context.record('broker.response', { targetId, method: pending.method, bytes, error }).catch(() => undefined);
    pending.reject(new TargetCommandError('unreadable', pending.method, error.message));
  }

  /**
   * Every request sent to the target is watched until it is answered, also after the broker stopped waiting for
   * it: a target that answers none for limits.targetResponseSeconds (wedged in a builtin V8 cannot interrupt, or
   * in its own code) ends the session, so its user and the next are not held behind it.
   */
  private sentToTarget(targetId: number): void {
    this.inFlight.set(targetId, this.context.now());
    if (!this.unresponsiveTimer) this.watchTargetAnswers();
  }

  private watchTargetAnswers(): void {
    const oldest = this.inFlight.values().next();
    if (oldest.done || this.context.isEnding()) {
      this.unresponsiveTimer = undefined;
      return;
    }
    const { targetResponseSeconds } = this.context.limits;
    const boundMs = targetResponseSeconds * 1000;
    this.unresponsiveTimer = ioTimeout(
      () => {
        this.unresponsiveTimer = undefined;
        const first = this.inFlight.entries().next();
        if (first.done || this.context.isEnding()) return;
        const [targetId, sentAt] = first.value;
        const waitedMs = this.context.now() - sentAt;
        if (waitedMs < boundMs) return this.watchTargetAnswers();
        const pending = this.pending.get(targetId);
        this.context
          .record('broker.response.missing', {
            targetId,
            method: pending?.method ?? null,
            ...(pending?.origin === 'client' ? { id: pending.clientId } : {}),
            afterMs: waitedMs,
            unanswered: this.inFlight.size,
            why: `the target answered nothing for ${waitedMs} ms, over limits.targetResponseSeconds (${targetResponseSeconds} s): the session ends`,
          })
          .catch(() => undefined);
        this.context.onUnresponsive();
      },
      Math.max(0, oldest.value + boundMs - this.context.now()),
    );
  }

  /** The session is ending: no more watching; what still waits is dropped. */
  stopWatching(): void {
    this.unresponsiveTimer?.cancel();
  }

  clear(): void {
    this.pending.clear();
  }
}
