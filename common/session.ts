/**
 * The session vocabulary shared by the broker and the VS Code adapter: why a session ended and the close code and
 * reason the client sees, and the `Loupe.*` messages the broker adds to CDP (the logpoint it keeps, and the events
 * it sends). Types and constants only: no broker code and nothing node-only, so the extension imports it as is.
 */

export type EndReason =
  'expired' | 'revoked' | 'client_closed' | 'target_gone' | 'shutdown' | 'audit_failure' | 'alert' | 'policy' | 'internal_error' | 'client_unresponsive' | 'target_unresponsive' | 'state_unavailable';

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
  state_unavailable: 4011,
};

/** The close reason sent with each close code. */
export const closeMessages: Record<EndReason, string> = {
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
  state_unavailable: 'the broker lost its state database for too long: the session has ended',
};

// ---- client → broker ----

/**
 * A logpoint the broker keeps: a plain breakpoint is set in V8 and the broker evaluates the message on each hit
 * (side-effect free, bounded, rate limited), reports it as `Loupe.logpoint` and resumes at once.
 */
export const setLogpointMethod = 'Loupe.setLogpoint';

export interface SetLogpointParams {
  readonly lineNumber: number;
  readonly url?: string;
  readonly urlRegex?: string;
  readonly scriptHash?: string;
  readonly columnNumber?: number;
  readonly condition?: string;
  /** `text {expression} text`: each `{expression}` is evaluated in the paused frame. */
  readonly logMessage: string;
}

// ---- broker → client: snapshot captures ----

/** A captured value: primitives by value (strings cut), objects expanded within the limits. */
export interface CapturedValue {
  readonly type: string;
  readonly subtype?: string;
  readonly className?: string;
  readonly value?: unknown;
  readonly description?: string;
  readonly properties?: { readonly name: string; readonly value: CapturedValue }[];
  /** Why this value is not complete: depth, fields, items, time budget, bytes; `preview` (below). */
  readonly truncated?: string;
  /**
   * Beyond the read depth: taken from the preview V8 sent with the object (no read of its own), which lists up to
   * 5 fields or 100 items and a nested object only by its description. Whole when the preview held all of it
   * exactly; else `truncated` is `preview`.
   */
  readonly fromPreview?: boolean;
}

export interface CapturedFrame {
  readonly functionName: string;
  readonly url: string;
  /** 0-based, in the generated (running) file. */
  readonly lineNumber: number;
  readonly columnNumber: number;
  /** Absent for frames below the ones the broker expands. */
  readonly scopes?: { readonly type: string; readonly properties: CapturedValue['properties']; readonly truncated?: string }[];
  readonly this?: CapturedValue;
}

export interface Capture {
  readonly frames: CapturedFrame[];
  readonly durationMs: number;
  readonly bytes: number;
  /** Set when a limit cut the capture short (time budget or bytes). */
  readonly truncated?: string;
}

/** The params of `Loupe.snapshotCaptured`, also the `snapshot.captured` record. */
export interface SnapshotCapturedParams extends Capture {
  readonly captureId: string;
  readonly breakpointId: string;
  readonly capturedAt: string;
  /** How long the target was held for the capture (ms). */
  readonly pauseMs: number;
  /** Runtime.getProperties reads the capture took. */
  readonly reads?: number;
}

// ---- broker → client: notices ----

/** The params of `Loupe.logpoint`: one message of a logpoint hit. */
export interface LogpointParams {
  readonly breakpointId: string;
  readonly message: string;
  /** Where it was hit: `function (file.js:12)`. */
  readonly frame: string;
  readonly time: string;
}

/** The params of `Loupe.snapshotThrottled`: why hits of a breakpoint give no capture, or that it was removed. */
export interface SnapshotThrottledParams {
  readonly breakpointId: string;
  readonly reason: string;
  /** Hits skipped so far. */
  readonly skipped?: number;
  /** When captures resume (ISO time). */
  readonly until?: string;
  /** The breakpoint is gone for good. */
  readonly removed?: boolean;
}

/** The params of `Loupe.breakpointSuspended`: a breakpoint whose broker-held pauses went over the pause budget. */
export interface BreakpointSuspendedParams {
  readonly breakpointId: string;
  readonly reason: string;
  readonly pauseMsPerSecond: number;
  readonly hitsPerSecond: number;
  readonly budgetMsPerSecond: number;
}

/**
 * The params of `Loupe.breakpointDisabled`: a conditional breakpoint (or logpoint condition) whose condition's value
 * depends on a redacted field; the broker removed it, since a pause on it would answer a question about the secret.
 */
export interface BreakpointDisabledParams {
  readonly breakpointId: string;
  readonly reason: string;
  /** The redacted field the condition's value depends on. */
  readonly field: string;
}

/** The params of `Loupe.breakpointsParked`: the watchdog resumed a pause, breakpoints are off until the client acts. */
export interface BreakpointsParkedParams {
  readonly breakpointIds: readonly string[];
  readonly reason: string;
}

/** Every event the broker sends with a `Loupe.` method, and its params. */
export interface LoupeEventParams {
  'Loupe.snapshotCaptured': SnapshotCapturedParams;
  'Loupe.snapshotThrottled': SnapshotThrottledParams;
  'Loupe.logpoint': LogpointParams;
  'Loupe.breakpointSuspended': BreakpointSuspendedParams;
  'Loupe.breakpointsParked': BreakpointsParkedParams;
  'Loupe.breakpointDisabled': BreakpointDisabledParams;
}

export type LoupeEvent = keyof LoupeEventParams;

export const loupeEvents = {
  snapshotCaptured: 'Loupe.snapshotCaptured',
  snapshotThrottled: 'Loupe.snapshotThrottled',
  logpoint: 'Loupe.logpoint',
  breakpointSuspended: 'Loupe.breakpointSuspended',
  breakpointsParked: 'Loupe.breakpointsParked',
  breakpointDisabled: 'Loupe.breakpointDisabled',
} as const satisfies Record<string, LoupeEvent>;
