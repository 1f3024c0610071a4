/**
 * How a live value reads in the Variables view, a hover, the Debug Console and a logpoint line. Only what
 * Runtime.evaluate / Runtime.getProperties already returned is used: nothing here runs in the target.
 */
import type { Protocol } from 'devtools-protocol';

type RemoteObject = Protocol.Runtime.RemoteObject;

export function formatValue(v: RemoteObject): string {
  if (v.unserializableValue !== undefined) return v.unserializableValue;
  switch (v.type) {
    case 'undefined':
      return 'undefined';
    case 'string': {
      const s = JSON.stringify(v.value ?? v.description ?? '');
      return s.length > 1000 ? `${s.slice(0, 1000)}…"` : s;
    }
    case 'number':
    case 'boolean':
      return String(v.value ?? v.description);
    case 'bigint':
      return v.description ?? `${String(v.value)}n`;
    case 'object':
      if (v.subtype === 'null') return 'null';
      return v.description ?? v.className ?? 'Object';
    case 'function':
      return v.description ? v.description.split('\n')[0]!.slice(0, 200) : 'ƒ';
    default:
      return v.description ?? String(v.value);
  }
}

/** A value in a logpoint line: strings bare, objects and arrays from their preview (`{a: 1, b: 2}`, `[1, 2, …]`). */
export function logValue(v: RemoteObject): string {
  if (v.type === 'string') return String(v.value);
  if (v.type === 'object' && v.preview?.properties && v.subtype !== 'null') {
    const isArray = v.subtype === 'array';
    const items = v.preview.properties.map((p) => (isArray ? String(p.value) : `${p.name}: ${p.value}`));
    const body = items.join(', ') + (v.preview.overflow ? ', …' : '');
    return isArray ? `[${body}]` : `{${body}}`;
  }
  return formatValue(v);
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
  if (r.exceptionDetails?.text === 'Refused by Loupe') return { text: `Refused by Loupe: ${first.replace(/^EvalError: (?:Refused by Loupe: )?/, '')}`, refused: true };
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
