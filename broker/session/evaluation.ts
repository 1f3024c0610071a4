/**
 * The one place where the broker evaluates on its own account in the target: breakpoint conditions and logpoint
 * parts in a paused frame, and the probe that learns the sensitive values an evaluation can reach. Today V8 runs
 * them under its side-effect check and a timeout (v8Evaluation); an evaluator that interprets expressions in the
 * broker implements FrameEvaluation and takes its place in DebugSession, and nothing else changes.
 */
import { safeText, truncate } from '../gate/cdpGate';
import { conditionProbe } from '../gate/conditionCheck';
import type { TargetChannel } from './targetChannel';

/** A condition's verdict: false also when it could not be evaluated (`detail` says why). */
export interface ConditionVerdict {
  readonly value: boolean;
  readonly detail?: string;
}

export interface FrameEvaluation {
  /** Whether a breakpoint condition holds in the paused frame. Never throws. */
  condition(callFrameId: string, condition: string): Promise<ConditionVerdict>;
  /** One `{expression}` of a logpoint message as text, within `timeoutMs`; a refusal or error as `<...>`. Never throws. */
  logpointPart(callFrameId: string, expression: string, timeoutMs: number): Promise<string>;
  /** [name, value] pairs of the sensitive values a probe (gate/targetScreen.ts) reads; undefined when it failed. */
  reachableValues(probe: { method: string; params: Record<string, unknown> }): Promise<[string, string][] | undefined>;
}

/** V8 evaluates, under throwOnSideEffect and a timeout, through the session's own (recorded) commands. */
export function v8Evaluation(channel: TargetChannel, conditionTimeoutMs: number): FrameEvaluation {
  return {
    async condition(callFrameId, condition) {
      try {
        const result = await channel.command('Debugger.evaluateOnCallFrame', {
          callFrameId,
          expression: conditionProbe(condition),
          throwOnSideEffect: true,
          timeout: conditionTimeoutMs,
          silent: true,
          returnByValue: true,
        });
        const details = result.exceptionDetails as { exception?: { description?: string }; text?: string } | undefined;
        if (details) return { value: false, detail: `refused or threw: ${truncate(details.exception?.description ?? details.text ?? 'exception', 200)}` };
        return { value: (result.result as { value?: unknown } | undefined)?.value === true };
      } catch (err) {
        return { value: false, detail: (err as Error).message };
      }
    },

    async logpointPart(callFrameId, expression, timeoutMs) {
      try {
        const result = await channel.command('Debugger.evaluateOnCallFrame', { callFrameId, expression, throwOnSideEffect: true, timeout: timeoutMs, silent: true });
        const details = result.exceptionDetails as { exception?: { description?: string } } | undefined;
        const value = result.result as { type: string; value?: unknown; description?: string } | undefined;
        if (details) return /Possible side-effect/.test(safeText(details.exception?.description ?? '')) ? '<refused: side effect>' : `<error: ${truncate(safeText(details.exception?.description ?? 'exception').split('\n')[0]!, 80)}>`;
        return safeText(value?.type === 'string' ? value.value : (value?.description ?? value?.value));
      } catch (err) {
        return `<error: ${(err as Error).message}>`;
      }
    },

    async reachableValues(probe) {
      try {
        const result = await channel.command(probe.method, probe.params, { quiet: true });
        const pairs = (result.result as { value?: unknown } | undefined)?.value;
        return Array.isArray(pairs) ? (pairs as [string, string][]) : undefined;
      } catch {
        // The probe is bounded like any evaluation; what it could not read is still scrubbed by name and pattern.
        return undefined;
      }
    },
  };
}
