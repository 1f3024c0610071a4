/**
 * The ids of the adapter's DAP error responses, in one place. An id is stable (clients and tests may match on it);
 * the message says what was refused and why.
 */
export enum DapErrorId {
  /** Attach failed: no target, not signed in, no reason, grant refused, broker unreachable. */
  AttachFailed = 1001,
  /** A request the target or the broker answered with an error (e.g. a refusal by the broker's gate). */
  RequestFailed = 2001,
  /** An evaluation threw in the target (not a refusal: those are shown as the result). */
  EvaluationFailed = 2002,
  /** Stepping or pausing asked for in snapshot mode, where the target never pauses. */
  NotInSnapshotMode = 2003,
  /** A change to program state: variables are read-only. */
  ReadOnly = 2005,
  /** `loupe.showSnapshot` for a capture the adapter no longer keeps. */
  CaptureNotKept = 2006,
}

/** A message as DAP's `format` takes it: braces are placeholders there, so literal ones are doubled. */
export function dapFormat(message: string): string {
  return message.replace(/\{/g, '{{').replace(/\}/g, '}}');
}
