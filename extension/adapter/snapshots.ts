/**
 * Snapshot captures as the adapter reads them: the wire format of the broker's `Loupe.snapshotCaptured` event
 * (the adapter cannot import broker code, so the shape is restated here), how a captured value is shown, and how
 * a hover or watch expression is answered from a capture. Nothing here talks to the target: a capture is plain
 * data the broker read while the target was held for a moment, and the target has run on since.
 */
import type { Protocol } from 'devtools-protocol';
import { previewValue, quote } from './objectPreview';

/** A captured value: primitives by value (strings cut), objects expanded within the broker's limits. */
export interface CapturedValue {
  readonly type: string;
  readonly subtype?: string;
  readonly className?: string;
  readonly value?: unknown;
  readonly description?: string;
  readonly properties?: readonly CapturedProperty[];
  /** Why this value is not complete: depth, fields, items, time budget, bytes; `preview` (below). */
  readonly truncated?: string;
  /** Beyond the capture's read depth: taken from V8's preview of the object (no read); cut, `truncated` says `preview`. */
  readonly fromPreview?: boolean;
}

export interface CapturedProperty {
  readonly name: string;
  readonly value: CapturedValue;
}

export interface CapturedScope {
  readonly type: string;
  readonly properties?: readonly CapturedProperty[];
  readonly truncated?: string;
}

export interface CapturedFrame {
  readonly functionName: string;
  readonly url: string;
  /** 0-based, in the generated (running) file. */
  readonly lineNumber: number;
  readonly columnNumber: number;
  /** Absent for frames below the ones the broker expands. */
  readonly scopes?: readonly CapturedScope[];
  readonly this?: CapturedValue;
}

/** The params of `Loupe.snapshotCaptured`. */
export interface SnapshotCapture {
  readonly captureId: string;
  readonly breakpointId: string;
  readonly capturedAt: string;
  readonly pauseMs?: number;
  readonly durationMs?: number;
  readonly bytes?: number;
  /** Set when a limit cut the capture short (time budget or bytes). */
  readonly truncated?: string;
  readonly frames: readonly CapturedFrame[];
}

/** The prefix of every answer for something a capture does not hold. */
export const notCapturedPrefix = 'not captured in this snapshot';

/** Scope order for name lookup: innermost first, as JavaScript resolves names. */
const lookupOrder = ['local', 'block', 'catch', 'closure'];

/** A reason from the broker as a reader understands it ("depth" alone says little). */
export function truncationText(truncated: string): string {
  if (truncated === 'depth') return 'beyond the capture depth';
  if (truncated === 'preview') return "beyond the capture depth: V8's preview of it only (5 fields or 100 items, nested objects not read)";
  return truncated;
}

/** A captured value as the Variables view shows it: the same js-debug forms as a live one (objectPreview.ts). */
export function formatCaptured(v: CapturedValue): string {
  const cut = v.truncated ? ` (${truncationText(v.truncated)})` : '';
  switch (v.type) {
    case 'undefined':
      return 'undefined';
    case 'string': {
      const s = quote(String(v.value ?? ''));
      return v.truncated ? `${s.slice(0, -1)}…${s.slice(-1)}${cut}` : s;
    }
    case 'number':
    case 'boolean':
      return v.description ?? String(v.value);
    case 'object': {
      if (v.subtype === 'null') return 'null';
      const preview = capturedPreview(v);
      if (preview) return previewValue({ type: 'object', ...(v.subtype ? { subtype: v.subtype as never } : {}), description: preview.description, preview }, 'variables');
      // An object's own truncation (fields cut) shows inside it; "depth" means nothing was read.
      return `${v.description || v.className || 'Object'}${v.truncated && !v.properties?.length ? cut : ''}`;
    }
    case 'function':
      return v.description ? previewValue({ type: 'function', description: v.description }, 'variables') : 'ƒ';
    case 'accessor':
      // The broker reads through Runtime.getProperties, which never runs a getter.
      return `(${(v.description ?? 'accessor').replace(/\s*\(not invoked\)$/, '')}: not invoked by Loupe)`;
    default:
      return v.description ?? String(v.value);
  }
}

/** The preview V8 would give of a captured object, from its captured fields (five of an object, a hundred of an array). */
function capturedPreview(v: CapturedValue): Protocol.Runtime.ObjectPreview | undefined {
  if (!v.properties?.length) return undefined;
  const bound = v.subtype === 'array' || v.subtype === 'typedarray' ? 100 : 5;
  const properties = v.properties.slice(0, bound).map(({ name, value: f }): Protocol.Runtime.PropertyPreview => {
    if (f.type === 'accessor') return { name, type: 'accessor' };
    if (f.type === 'function') return { name, type: 'function', value: '' };
    if (f.type === 'string') return { name, type: 'string', value: String(f.value ?? '') };
    if (f.type === 'object') return { name, type: 'object', ...(f.subtype ? { subtype: f.subtype as never } : {}), value: f.subtype === 'null' ? 'null' : f.description || f.className || 'Object' };
    return { name, type: f.type as never, value: f.description ?? String(f.value) };
  });
  return { type: 'object', description: v.description || v.className || 'Object', overflow: v.properties.length > bound || v.truncated !== undefined, properties };
}

/** The DAP type label of a captured value. */
export function capturedType(v: CapturedValue): string | undefined {
  if (v.type === 'accessor') return undefined;
  return v.subtype ?? v.className ?? v.type;
}

/** True when the value has captured children to show. */
export function hasChildren(v: CapturedValue): boolean {
  return (v.properties?.length ?? 0) > 0;
}

type Step = { kind: 'name'; name: string } | { kind: 'index'; name: string };

/**
 * Parses a plain access path: `name`, `this`, then `.prop`, `?.prop`, `[0]`, `["key"]` or `['key']`.
 * Anything else (calls, operators) is not a path: a capture cannot evaluate it.
 */
export function parseCapturePath(expression: string): { root: string; steps: Step[] } | undefined {
  const text = expression.trim();
  const root = /^(?:this|[A-Za-z_$][\w$]*)/.exec(text);
  if (!root) return undefined;
  const steps: Step[] = [];
  let rest = text.slice(root[0].length);
  const patterns: [RegExp, (m: RegExpExecArray) => Step][] = [
    [/^\s*\??\.\s*([A-Za-z_$][\w$]*)/, (m) => ({ kind: 'name', name: m[1]! })],
    [/^\s*(?:\?\.)?\[\s*(\d+)\s*\]/, (m) => ({ kind: 'index', name: m[1]! })],
    [/^\s*(?:\?\.)?\[\s*"((?:[^"\\]|\\.)*)"\s*\]/, (m) => ({ kind: 'name', name: JSON.parse(`"${m[1]}"`) as string })],
    [/^\s*(?:\?\.)?\[\s*'((?:[^'\\]|\\.)*)'\s*\]/, (m) => ({ kind: 'name', name: m[1]!.replace(/\\(.)/g, '$1') })],
  ];
  outer: while (rest.trim() !== '') {
    for (const [pattern, step] of patterns) {
      const m = pattern.exec(rest);
      if (!m) continue;
      steps.push(step(m));
      rest = rest.slice(m[0].length);
      continue outer;
    }
    return undefined;
  }
  return { root: root[0], steps };
}

/**
 * Answers an expression from a captured frame: a name or access path into the captured values. Returns the
 * value, or why it is not in the capture (the message starts with `not captured in this snapshot`).
 */
export function lookupCaptured(frame: CapturedFrame, expression: string): { value: CapturedValue } | { notCaptured: string } {
  const quoted = JSON.stringify(expression.trim().length > 80 ? `${expression.trim().slice(0, 80)}…` : expression.trim());
  const path = parseCapturePath(expression);
  if (!path) {
    return { notCaptured: `${notCapturedPrefix}: ${quoted} is not a captured name or path (the target was not paused, so Loupe reads captured values only: name, a.b, a[0], a["key"])` };
  }
  if (!frame.scopes) return { notCaptured: `${notCapturedPrefix}: the broker captured no variables for ${frame.functionName || 'this frame'} (only the top frames are expanded)` };
  let value: CapturedValue | undefined;
  let incomplete: string | undefined;
  if (path.root === 'this') value = frame.this;
  else {
    const scopes = [...frame.scopes].sort((a, b) => rank(a.type) - rank(b.type));
    for (const scope of scopes) {
      value = scope.properties?.find((p) => p.name === path.root)?.value;
      if (value) break;
      if (scope.truncated) incomplete ??= `the ${scope.type} scope was cut: ${truncationText(scope.truncated)}`;
    }
  }
  if (!value)
    return { notCaptured: `${notCapturedPrefix}: ${JSON.stringify(path.root)} is not among the captured variables of ${frame.functionName || 'this frame'}${incomplete ? ` (${incomplete})` : ''}` };
  let current: CapturedValue = value;
  let walked = path.root;
  for (const step of path.steps) {
    const label = step.kind === 'index' ? `${walked}[${step.name}]` : `${walked}.${step.name}`;
    const child: CapturedValue | undefined = current.properties?.find((p) => p.name === step.name)?.value ?? derived(current, step.name);
    if (!child) {
      const why = current.truncated
        ? ` (${walked} was cut: ${truncationText(current.truncated)})`
        : current.type !== 'object' || current.subtype === 'null'
          ? ` (${walked} is ${formatCaptured(current)})`
          : '';
      return { notCaptured: `${notCapturedPrefix}: ${label}${why}` };
    }
    current = child;
    walked = label;
  }
  return { value: current };
}

function rank(type: string): number {
  const i = lookupOrder.indexOf(type);
  return i < 0 ? lookupOrder.length : i;
}

/** `length` of a whole string, or of an array whose length entry fell past the captured items. */
function derived(v: CapturedValue, name: string): CapturedValue | undefined {
  if (name !== 'length') return undefined;
  if (v.type === 'string' && !v.truncated) return { type: 'number', value: String(v.value ?? '').length };
  const m = v.type === 'object' ? /^[A-Za-z0-9]*Array\((\d+)\)$/.exec(v.description ?? '') : null;
  return m ? { type: 'number', value: Number(m[1]) } : undefined;
}
