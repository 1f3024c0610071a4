/**
 * Hover, watch and the Debug Console: an `evaluate` request as the broker answers it. Live (pause mode): one
 * evaluation through the broker, with V8's preview, and nothing else on the way (no second read per answer). In a
 * capture (snapshot mode): names and paths read from the capture alone.
 */
import type { DebugProtocol } from '@vscode/debugprotocol';
import { placeOf } from './objectPreview';
import type { LoupeRuntime } from './runtime';
import { lookupCaptured, notCapturedPrefix, type CapturedFrame } from './snapshots';
import { formatValue, refusalOrError, refusalText } from './valueFormat';
import { textResult, type VariableStore } from './variables';

type Body = DebugProtocol.EvaluateResponse['body'];

/** The answer's body, or the error V8 threw (an exception of the expression itself, not a refusal). */
export async function evaluateLive(runtime: LoupeRuntime, variables: VariableStore, args: DebugProtocol.EvaluateArguments, callFrameId: string | undefined): Promise<Body | { error: string }> {
  try {
    const r = await runtime.evaluate(args.expression, { objectGroup: 'loupe-eval', generatePreview: true, ...(callFrameId ? { callFrameId } : {}) });
    if (r.exceptionDetails) {
      const { text, refused } = refusalOrError(r);
      return refused ? textResult(text) : { error: text };
    }
    const value = r.result;
    return { result: formatValue(value, placeOf(args.context)), variablesReference: variables.reference(value), ...(value.type ? { type: value.subtype ?? value.type } : {}) };
  } catch (err) {
    // A refusal by the broker's gate (or V8's termination at the forced timeout): shown as the result.
    return textResult(refusalText((err as Error).message));
  }
}

/** Snapshot mode: what the capture holds under that name or path, or why it holds nothing; nothing runs in the target. */
export function evaluateCaptured(variables: VariableStore, frame: CapturedFrame | undefined, expression: string): Body {
  const found = frame ? lookupCaptured(frame, expression) : { notCaptured: `${notCapturedPrefix}: that capture is no longer shown` };
  if ('notCaptured' in found) return textResult(found.notCaptured);
  const v = variables.captured(expression, found.value);
  return { result: v.value, variablesReference: v.variablesReference, presentationHint: { attributes: ['readOnly'] }, ...(v.type ? { type: v.type } : {}) };
}
