/**
 * Logpoints the broker keeps (Loupe.setLogpoint): on a hit, its condition and message parts are evaluated in the
 * paused frame (see evaluation.ts) within one budget, rate limited like captures, and the message goes to the client
 * as Loupe.logpoint. The target is resumed by the caller; between messages the breakpoint is out of V8.
 */
import { safeText } from '../gate/cdpGate';
import type { PausedFrameInput } from '../gate/targetFrame';
import type { SessionContext } from './context';

export async function emitLogpoint(context: SessionContext, breakpointId: string, frame: PausedFrameInput): Promise<void> {
  const { breakpoints } = context;
  const entry = breakpoints.get(breakpointId);
  if (!entry) return;
  const limits = context.target().snapshot;
  const state = breakpoints.rate(breakpointId);
  const rateLimit = `at most one logpoint message every ${limits.minIntervalMs} ms per breakpoint`;
  if (context.now() - state.lastCaptureAt < limits.minIntervalMs) {
    state.skipped++;
    breakpoints.throttle(breakpointId, state.lastCaptureAt + limits.minIntervalMs, rateLimit, false);
    return;
  }
  // One budget for the whole hit (condition and every part), not one per part: conditionTimeoutMs. It is a
  // duration of real work, measured finely.
  const budgetMs = context.limits.conditionTimeoutMs;
  const started = performance.now();
  if (entry.condition !== undefined && !(await context.pauses.conditionHolds(breakpointId, entry.condition, frame))) return;
  state.lastCaptureAt = context.now();
  // Like a capture: out of V8 until the next message is due, so hits in between cost the target nothing.
  breakpoints.throttle(breakpointId, state.lastCaptureAt + limits.minIntervalMs, rateLimit, false);
  const leftMs = Math.floor(budgetMs - (performance.now() - started));
  // A part that reads a redacted value prints the marker (Loupe expressions) in its place.
  const { message, skippedParts, tainted } = await context.evaluation.logpoint(frame.callFrameId, entry.logpoint!, leftMs);
  const where = `${frame.functionName || '(anonymous)'} (${safeText(context.labels.urlOf(frame) ?? '')
    .split('/')
    .pop()}:${frame.location.lineNumber + 1})`;
  const ms = Math.round((performance.now() - started) * 10) / 10;
  context
    .record('cdp.logpoint', {
      breakpointId,
      message,
      frame: where,
      skipped: state.skipped,
      ms,
      ...(skippedParts > 0 ? { skippedParts, budgetMs } : {}),
      ...(tainted && tainted.length > 0 ? { tainted } : {}),
    })
    .catch(() => undefined);
  context.notify('Loupe.logpoint', { breakpointId, message, frame: where, time: new Date(context.now()).toISOString() }, true);
}
