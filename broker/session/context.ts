/**
 * What the parts of one session (breakpoints, pauses, logpoints, snapshot mode) share: the session's grant, policy
 * and limits, the injected clock, its record, its way to the client, and each other. DebugSession builds it.
 */
import type { BrokerLimits, TargetConfig } from '../config/types';
import type { EventType } from '../audit/events';
import type { Grant } from '../grants/grantStore';
import type { Redactor } from '../policy/redact';
import type { LoupeEvent, LoupeEventParams } from '../../common/session';
import type { FrameEvaluation } from './evaluation';
import type { RecordLabels } from './labels';
import type { LogTemplate } from '../gate/cdpGate';
import type { CdpMessage, PausedFrameInput } from '../gate/targetFrame';
import type { Forward } from '../gate/targetScreen';
import type { ClientPending, SetAs, TargetChannel } from './targetChannel';

export interface SessionContext {
  readonly sessionId: string;
  readonly grant: Grant;
  readonly limits: BrokerLimits;
  readonly redactor: Redactor;
  /** The target's policy now (a policy reload can make it stricter during the session). */
  target(): TargetConfig;
  /** The injected clock (ms since the epoch): every rate, throttle, budget window and deadline reads it. */
  now(): number;
  isEnding(): boolean;
  /** False once the audit trail has failed closed. */
  auditAccepting(): boolean;
  /** Bytes of answers waiting for a client that does not read them, past limits.clientBufferBytes; else 0. */
  clientBacklog(): number;
  /** `lazy`: nothing waits on this record before acting (see AuditStream.record); it joins the WAL's next commit. */
  record(type: EventType, data: Record<string, unknown>, lazy?: boolean): Promise<unknown>;
  /** A record whose failure means the audit trail is gone: the session ends. */
  recordOrEnd(type: EventType, data: Record<string, unknown>, lazy?: boolean): Promise<unknown>;
  /** Queues a client-bound message, sent in order once `after` has settled (dropped if it failed). */
  /** `ids`: the object ids of the value `text` was serialized from (objectIdsOf), when the caller has it; else they are read from the text. */
  send(text: string, isEvent: boolean, after?: Promise<unknown>, ids?: readonly string[]): void;
  /** Ends the session on a fault in handling `frame` (recorded, logged). */
  fault(where: string, err: unknown, frame?: Buffer): void;
  /** Queues a `Loupe.*` event for the client. */
  notify<M extends LoupeEvent>(method: M, params: LoupeEventParams[M], isEvent: boolean, after?: Promise<unknown>): void;

  readonly channel: TargetChannel;
  readonly breakpoints: SessionBreakpoints;
  readonly pauses: SessionPauses;
  readonly labels: RecordLabels;
  readonly evaluation: FrameEvaluation;
}

/** A breakpoint of this session, by the id the client knows it by. */
export interface BreakpointEntry {
  readonly condition?: string;
  readonly logpoint?: LogTemplate;
  /** How it was set in V8, so the broker can set it again when a throttle ends. */
  readonly setAs: SetAs;
  /** Its id in V8 while it is set there; undefined while the broker has taken it out. */
  v8Id: string | undefined;
  /** Taken out of V8 by a rate limit until `until` (clock time), then set again. */
  throttled?: { until: number; reason: string; timer: NodeJS.Timeout };
  /** The broker's changes to it in V8 (remove, set again), one after another. */
  ops: Promise<unknown>;
  /** Taken out of V8 while the client is absent (after a watchdog resume); set again at its next frame. */
  parked?: boolean;
}

/** Per breakpoint: its captures or logpoint messages, the hits skipped, and when the client was last told why. */
export interface BreakpointRates {
  lastCaptureAt: number;
  captures: number;
  skipped: number;
  lastThrottleNoticeAt: number;
}

/** The session's breakpoints as the other parts use them (breakpoints.ts). */
export interface SessionBreakpoints {
  get(clientId: string): BreakpointEntry | undefined;
  has(clientId: string): boolean;
  all(): IterableIterator<[string, BreakpointEntry]>;
  ids(): string[];
  v8Ids(): string[];
  clientRemoves(params: Record<string, unknown>): void;
  answered(pending: ClientPending, message: CdpMessage): void;
  sortHits(raw: unknown): { live: string[]; quiet: string[] };
  rate(clientId: string): BreakpointRates;
  skipped(ids: readonly string[]): void;
  throttleNotice(breakpointId: string, reason: string, until?: number): void;
  removedNotice(breakpointId: string, reason: string): void;
  throttle(clientId: string, until: number, reason: string, notify: boolean, withCapture?: boolean): void;
  retire(clientId: string, why?: string): BreakpointEntry | undefined;
  park(why: string): { parked: string[]; changes: Promise<unknown>[] };
  parkedIds(): string[];
  unpark(why: string): void;
  stopThrottles(): void;
  clear(): void;
}

/** The session's pauses as the other parts use them (pauses.ts). */
/** What one pause may spend on the conditions and logpoints hit in it (Pauses.pauseBound). */
export interface PauseBound {
  /** Whether `id` is checked in this pause: false once the pause has cost its budget. */
  check(id: string): boolean;
  readonly checked: readonly string[];
  unchecked(id: string): boolean;
  /** Suspends the breakpoints left unchecked, each with the reason. */
  suspendUnchecked(): void;
}

/**
 * The other sessions of this broker on the same target process, as one session's pauses see them. V8 keeps one
 * pause, one exception state, one step for the process: what a session's end leaves there is undone by those that
 * stay. A pause asked for (a step, continueToLocation, Debugger.pause) by a session that ended before V8 took it
 * reaches them as nobody's.
 */
export interface FellowSessions {
  /** Whether another session of this broker holds the pause the target is in as its own. */
  holdPause(): boolean;
  /** Whether a left pause may still come. */
  waiting(): boolean;
  /**
   * Takes it for the pause the target is in, unless a session of this broker holds that pause as its own: the ended
   * session's id, or undefined.
   */
  take(): string | undefined;
  /** The exception pauses the other sessions of this broker on the target hold the process to (their union). */
  othersExceptionState(): ExceptionPauseState;
  /**
   * An ended session's exception pauses that its end could not reset (its target did not answer): V8 keeps them while
   * another session is enabled. Taken once, by the first session an exception then pauses: the state to set (the
   * union of what the sessions here hold), or undefined when none is left.
   */
  takeExceptionState(): ExceptionPauseState | undefined;
  /** Whether such exception pauses are left. */
  exceptionsLeft(): boolean;
  /**
   * The pause-mode sessions here that pauses reach: when each heard of the pause it is in (performance.now(),
   * -Infinity since a resume), and whether it holds it as its own.
   */
  showing(): readonly { heardAt: number; pause: string; holds: boolean }[];
}

/** What Debugger.setPauseOnExceptions asks for. */
export type ExceptionPauseState = 'none' | 'caught' | 'uncaught' | 'all';

export interface SessionPauses {
  paused: boolean;
  /** The exception pauses the client asked for (one state in V8 for the whole process). */
  readonly exceptionState: ExceptionPauseState;
  /** What the session holds the process to: the client's wish, or none while its client is absent. */
  readonly heldExceptionState: ExceptionPauseState;
  ownPause: boolean;
  clientAbsent: boolean;
  /** A pause the client asked for that V8 has not taken yet. */
  readonly pauseOutstanding: boolean;
  /** Resolves at the next pause (true), or after `ms` (false). */
  nextPause(ms: number): Promise<boolean>;
  onRequest(decision: Forward): void;
  /** V8's answer to a request of the client's (a step it refused brings no pause). */
  answered(method: string, failed: boolean): void;
  onClientFrame(): void;
  hold(text: string): boolean;
  onResumed(): boolean;
  /** A pause of this session's arriving after its end began: resumed, unless another session holds it. */
  resumeAfterEnd(): void;
  /** When the pause the target is in arrived (performance.now(), set as it arrives), -Infinity since a resume. */
  readonly heardAt: number;
  /** The pause the target is in as this session heard it (pauseSignature), '' since a resume. */
  readonly heardPause: string;
  /** Whether the pause the target is in is this session's by its own breakpoint or exception state (not a request). */
  readonly causedPause: boolean;
  /** Whether pauses reach this session: its client enabled the Debugger domain, skips no pauses and is not parked. */
  readonly hearsPauses: boolean;
  /** Whether another session here is in pause mode: it may show its client the pause the target is in. */
  sharedWithShowing(): boolean;
  /**
   * Whether a pause-mode session here holds the pause the target is in as its own (its breakpoint on the same line),
   * asked once each has heard of it, at most 500 ms after `arrivedAt` (performance.now()). A capture leaves
   * such a pause to it, and no longer counts it as its own.
   */
  shownByFellow(arrivedAt: number): Promise<boolean>;
  /** Whether a pause just arrived is this session's (sets ownPause before any work on it is awaited). */
  claim(params: Record<string, unknown> | undefined): boolean;
  onPaused(message: CdpMessage): Promise<void>;
  conditionHolds(breakpointId: string, condition: string, frame: PausedFrameInput | undefined): Promise<boolean>;
  chargeHeldPause(breakpointIds: readonly string[], ms: number): void;
  /** The bound of one pause's conditions and logpoints, from `started` (performance.now()). */
  pauseBound(started: number): PauseBound;
  forgetBudget(breakpointId: string): void;
  /** A pause nobody on this session caused: resumed after maxPauseSeconds, or at once when an ended session asked for it (`reason`: the pause's). */
  armForeignPauseWatchdog(reason?: unknown): void;
  stop(): void;
}
