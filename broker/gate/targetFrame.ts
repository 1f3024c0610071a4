/**
 * The target is not trusted either: what decides whether a target frame is read, and whether a parsed message has
 * a shape an inspector sends. A frame refused here is recorded by the session and goes no further.
 */
import type { Protocol } from 'devtools-protocol';
import { cdpErrorCodes, safeText } from './cdpGate';

/** A call frame of a Debugger.paused as the broker reads it (wellFormedFrames guarantees this much). */
export interface PausedFrameInput {
  callFrameId: Protocol.Debugger.CallFrameId;
  functionName: string;
  url?: string;
  location: Pick<Protocol.Debugger.Location, 'scriptId' | 'lineNumber' | 'columnNumber'>;
  scopeChain: { type: string; object: Protocol.Runtime.RemoteObject }[];
  this?: Protocol.Runtime.RemoteObject;
}

/** A message from the target once its shape is checked: a response (id) or an event (method). */
export interface CdpMessage {
  id?: number;
  method?: string;
  params?: Record<string, unknown>;
  result?: Record<string, unknown>;
  error?: { code: number; message: string };
}

/** V8 refuses to serialize values nested deeper than 1000 ("Object reference chain is too long"). */
export const maxTargetNesting = 1100;

/** Whether JSON text nests arrays/objects deeper than `max`, by one pass over its bytes (strings skipped). */
export function nestedDeeperThan(json: Buffer, max: number): boolean {
  // Deeper than max takes more than max opening brackets: most frames are shorter, or hold fewer (counted with
  // indexOf, a dozen times faster than the scan; brackets inside strings count too, so it never undercounts).
  if (json.length <= max || !moreThan(json, max, 0x7b, 0x5b)) return false;
  let depth = 0;
  let inString = false;
  for (let i = 0; i < json.length; i++) {
    const c = json[i]!;
    if (inString) {
      if (c === 0x5c) i++;
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x7b || c === 0x5b) {
      if (++depth > max) return true;
    } else if (c === 0x7d || c === 0x5d) depth--;
  }
  return false;
}

/** Whether `json` holds more than `max` bytes that are `a` or `b`. */
function moreThan(json: Buffer, max: number, a: number, b: number): boolean {
  let count = 0;
  for (const byte of [a, b]) {
    for (let i = json.indexOf(byte); i >= 0; i = json.indexOf(byte, i + 1)) if (++count > max) return true;
  }
  return false;
}

export const isRecord = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);

/** Why a message from the target has a shape no inspector sends, or undefined when it is usable. */
export function targetMessageProblem(message: unknown): string | undefined {
  if (!isRecord(message)) return 'not a JSON object';
  if (message.id !== undefined && !Number.isSafeInteger(message.id)) return 'id is not an integer';
  if (message.id === undefined && typeof message.method !== 'string') return 'neither a response (id) nor an event (method)';
  if (message.params !== undefined && !isRecord(message.params)) return 'params is not an object';
  if (message.result !== undefined && !isRecord(message.result)) return 'result is not an object';
  if (message.error !== undefined && !(isRecord(message.error) && typeof message.error.message === 'string')) return 'error has no message';
  if (message.method === 'Debugger.paused' && !isRecord(message.params)) return 'Debugger.paused without params';
  return undefined;
}

/** The call frames of a Debugger.paused that have the shape the broker reads; the rest are left out. */
export function wellFormedFrames(raw: unknown): PausedFrameInput[] {
  if (!Array.isArray(raw)) return [];
  const frames: PausedFrameInput[] = [];
  for (const f of raw) {
    if (!isRecord(f) || typeof f.callFrameId !== 'string' || !isRecord(f.location)) continue;
    if (typeof f.location.scriptId !== 'string' || !Number.isSafeInteger(f.location.lineNumber)) continue;
    if (typeof f.functionName !== 'string') f.functionName = '';
    if (f.url !== undefined && typeof f.url !== 'string') delete f.url;
    if (f.this !== undefined && !isRecord(f.this)) delete f.this;
    f.scopeChain = Array.isArray(f.scopeChain) ? f.scopeChain.filter((scope) => isRecord(scope) && typeof scope.type === 'string' && isRecord(scope.object)) : [];
    frames.push(f as unknown as PausedFrameInput);
  }
  return frames;
}

/**
 * Whether a frame over limits.maxTargetFrameBytes is read all the same: a script's source (code, read once, never
 * redacted) and a pause (the session must see every pause). Any other is not parsed (parsing alone would hold the
 * event loop).
 */
export function oversizedFrameIsRead(answersMethod: string | undefined, eventMethod: string | undefined): boolean {
  return answersMethod === 'Debugger.getScriptSource' || eventMethod === 'Debugger.paused';
}

/** The error a request gets when its answer is over limits.maxTargetFrameBytes. */
export function oversizedAnswerError(method: string, bytes: number, limit: number): { code: number; message: string } {
  return {
    code: cdpErrorCodes.refused,
    message: `${method}: the target's answer is ${bytes} bytes, over this broker's limits.maxTargetFrameBytes of ${limit}, so Loupe did not read it; ask for less (a narrower expression, a smaller object)`,
  };
}

/** The error a request gets when its answer cannot be used (malformed, or the broker failed reading it). */
export function unusableAnswerError(method: string, why: string): { code: number; message: string } {
  return { code: cdpErrorCodes.refused, message: `${method}: ${why}` };
}

/**
 * evaluation.maxResultBytes: a larger evaluation result keeps its type but loses its bulk, and says so. The words
 * match resultBounds.ts, so a client sees one kind of note whichever cut a value.
 */
export function capResult(result: Record<string, unknown>, maxBytes: number): void {
  const size = Buffer.byteLength(JSON.stringify(result));
  if (size <= maxBytes) return;
  const note = ` [truncated by Loupe: the result is ${size} bytes, over this target's evaluation.maxResultBytes of ${maxBytes}]`;
  const remote = result.result as Record<string, unknown> | undefined;
  if (!remote) return;
  const keep = Math.max(0, Math.floor(maxBytes / 2) - note.length);
  delete remote.preview;
  if (typeof remote.value === 'string') remote.value = remote.value.slice(0, keep) + note;
  else if (remote.value !== undefined) {
    delete remote.value;
    remote.description = `${safeText(remote.description ?? remote.type).slice(0, keep)}${note}`;
  }
  if (typeof remote.description === 'string' && remote.description.length > keep + note.length) remote.description = remote.description.slice(0, keep) + note;
}

const sideEffect = /^EvalError: Possible side-effect in debug-evaluate/;

/**
 * V8's refusals of a client's evaluation, said as Loupe's: clients show the exception's description (js-debug,
 * DevTools) or the error's message, and the check and the timeout are the broker's, forced on every evaluation.
 * V8's own words stay in parentheses. Changes `message` in place.
 */
export function inLoupeWords(message: { result?: Record<string, unknown>; error?: { code: number; message: string } }): void {
  if (message.error && /^Execution was terminated/.test(message.error.message)) {
    message.error = { ...message.error, message: `Refused by Loupe: the evaluation ran past the broker's time limit and was stopped (V8: ${message.error.message})` };
    return;
  }
  const details = message.result?.exceptionDetails;
  if (!isRecord(details) || !isRecord(details.exception) || typeof details.exception.description !== 'string' || !sideEffect.test(details.exception.description)) return;
  const description = `EvalError: Refused by Loupe: the expression may have side effects, and production evaluation is side-effect free (V8: ${details.exception.description.split('\n')[0]!.replace(/^EvalError: /, '')})`;
  details.exception.description = description;
  details.text = 'Refused by Loupe';
  const result = message.result!.result;
  if (isRecord(result) && result.subtype === 'error') result.description = description;
}
