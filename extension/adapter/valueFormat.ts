/**
 * How a live value reads in the Variables view, a hover, the Debug Console and a logpoint line. Only what
 * Runtime.evaluate / Runtime.getProperties already returned is used: nothing here runs in the target.
 */
import type { Protocol } from 'devtools-protocol';
import { previewValue, type PreviewPlace } from './objectPreview';

type RemoteObject = Protocol.Runtime.RemoteObject;

/** A value as js-debug shows it in that place (objectPreview.ts): previews, quoting and cuts. */
export function formatValue(v: RemoteObject, place: PreviewPlace = 'repl'): string {
  return previewValue(v, place);
}

/** A value in a logpoint line or a console message: strings bare, everything else as in the Debug Console. */
export function logValue(v: RemoteObject): string {
  return v.type === 'string' && typeof v.value === 'string' ? v.value : previewValue(v, 'repl');
}

/** The DAP type label of a live value. */
export function valueType(v: RemoteObject): string | undefined {
  return v.type ? (v.subtype ?? v.className ?? v.type) : undefined;
}

/** Turns an evaluation's exception into text; `refused` when the side-effect check (forced by the broker) stopped it. */
export function refusalOrError(r: Pick<Protocol.Runtime.EvaluateResponse, 'result' | 'exceptionDetails'>): { text: string; refused: boolean } {
  const description: string = r.result?.description ?? r.exceptionDetails?.exception?.description ?? r.exceptionDetails?.text ?? 'exception';
  const first = description.split('\n')[0]!;
  // A Loupe expression the broker refused (not a Loupe expression, a budget, a getter): its reason, as the result.
  if (r.exceptionDetails?.text === 'Refused by Loupe') return { text: `Refused by Loupe: ${first.replace(/^EvalError: /, '')}`, refused: true };
  if (/Possible side-effect in debug-evaluate/.test(description)) {
    return { text: `Refused by Loupe: the expression may have side effects, and production evaluation is side-effect free (${first})`, refused: true };
  }
  return { text: first, refused: false };
}

/** A thrown CDP command as the evaluation's result: a refusal by the broker's gate, or V8's termination at the forced timeout. */
export function refusalText(message: string): string {
  if (/Execution was terminated/.test(message)) return `Refused by Loupe: the evaluation ran past the broker's time limit and was stopped`;
  return message.includes('refused') ? `Refused by Loupe: ${message}` : message;
}
