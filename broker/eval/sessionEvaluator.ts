/**
 * The session's handle on Loupe expressions: what the debug session calls, in four places.
 *   Debugger.paused  → paused(callFrames)       frames kept by id; the top frame's scopes read ahead
 *   Debugger.resumed → resumed()                the pause's reads forgotten (their objectIds die with it)
 *   Runtime.evaluate / Debugger.evaluateOnCallFrame from the client → evaluate(expression, {callFrameId?, …})
 *   on a pause with conditions or logpoints → condition(callFrameId, text) / logpoint(callFrameId, template)
 * Reads go through `send`, the session's own recorded command channel to the target.
 */
import type { Protocol } from 'devtools-protocol';
import type { Redactor } from '../policy/redact';
import type { EvalBudget } from './budget';
import { evaluateCondition, evaluateLogpoint, evaluateLoupe, toEvaluateResponse, type ConditionVerdict, type LogpointTemplate, type LoupeEvalOptions, type LoupeOutcome } from './evaluate';
import { TargetReader, type CdpSend } from './reader';
import { redactionContextOf, type RedactionContext } from './redaction';

export interface SessionEvaluatorOptions {
  readonly send: CdpSend;
  readonly redactor: Redactor;
  /** The bounds of each evaluation; a function when they follow the session's policy. */
  readonly budget?: Partial<EvalBudget> | (() => Partial<EvalBudget>);
  readonly clock?: () => number;
  /** The session redacts each answer by pattern after cutting it to its bound (see LoupeEvalOptions.redactedAfter). */
  readonly redactsAnswers?: boolean;
  /** The policy's evaluation.denyIdentifiers as a check of the dotted paths the interpreter reads. */
  readonly denied?: () => (path: string) => string | undefined;
  /** The target's process facts, once known (gate/processFacts.ts): values of the target that show one are tainted. */
  readonly processFacts?: () => { factIn(text: string): string | undefined } | undefined;
}

export class SessionEvaluator {
  private readonly redaction: RedactionContext;
  private pause: { readonly reader: TargetReader; readonly frames: Map<string, Protocol.Debugger.CallFrame> } | undefined;

  constructor(private readonly options: SessionEvaluatorOptions) {
    this.redaction = redactionContextOf(options.redactor, options.processFacts);
  }

  /** The target paused: pass the event's callFrames as the target sent them (before redaction). */
  paused(callFrames: readonly Protocol.Debugger.CallFrame[], prefetch = true): void {
    const reader = new TargetReader(this.options.send);
    this.pause = { reader, frames: new Map(callFrames.map((f) => [f.callFrameId, f])) };
    if (callFrames[0] && prefetch) reader.prefetchScopes(callFrames[0]);
  }

  resumed(): void {
    this.pause = undefined;
  }

  /**
   * A client's evaluation. `response` is the reply to send in place of V8's; `outcome` has what the record
   * needs (kind, tainted names, reads, steps, ms, the refusal's rule and message).
   */
  async evaluate(
    expression: string,
    request: { callFrameId?: string; returnByValue?: boolean; objectGroup?: string } = {},
  ): Promise<{ response: Protocol.Runtime.EvaluateResponse; outcome: LoupeOutcome }> {
    const options = this.optionsFor(request.callFrameId, request.objectGroup);
    const outcome: LoupeOutcome =
      'refused' in options
        ? { kind: 'refused', refusal: { rule: 'target', message: options.refused }, reads: 0, steps: 0, ms: 0 }
        : await evaluateLoupe(expression, { ...options, returnByValue: request.returnByValue === true, redactedAfter: this.options.redactsAnswers === true });
    return { response: toEvaluateResponse(outcome), outcome };
  }

  /** A breakpoint condition on a pause: `{ tainted }` → disable the breakpoint with a notice naming it. */
  async condition(callFrameId: string, condition: string, budget?: Partial<EvalBudget>): Promise<ConditionVerdict> {
    const options = this.optionsFor(callFrameId, undefined, budget);
    if ('refused' in options) return { error: options.refused, refused: true, reads: 0, steps: 0, ms: 0 };
    return evaluateCondition(condition, options);
  }

  /** A logpoint message on a pause, each part on its own; a tainted part prints the marker. */
  async logpoint(callFrameId: string, template: LogpointTemplate, budget?: Partial<EvalBudget>): ReturnType<typeof evaluateLogpoint> {
    const options = this.optionsFor(callFrameId, undefined, budget);
    if ('refused' in options) return { message: template.literals.join(`<refused: ${options.refused}>`), tainted: [], refusedParts: template.expressions.length, reads: 0, steps: 0, ms: 0 };
    return evaluateLogpoint(template, options);
  }

  private optionsFor(callFrameId: string | undefined, objectGroup?: string, budget?: Partial<EvalBudget>): LoupeEvalOptions | { refused: string } {
    const own = this.options.budget;
    const denied = this.options.denied?.();
    const base = {
      redaction: this.redaction,
      budget: { ...(typeof own === 'function' ? own() : own), ...budget },
      clock: this.options.clock,
      ...(denied ? { denied } : {}),
    };
    if (callFrameId === undefined) return { ...base, reader: new TargetReader(this.options.send, objectGroup) };
    const frame = this.pause?.frames.get(callFrameId);
    if (!this.pause || !frame) return { refused: `the call frame ${callFrameId.slice(0, 40)} is not one of the current pause (the target has resumed)` };
    return { ...base, reader: this.pause.reader, frame };
  }
}
