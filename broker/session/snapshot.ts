import type { SnapshotLimits } from '../config/types';

/** A captured value: primitives by value (strings cut), objects expanded within the limits. */
export interface CapturedValue {
  readonly type: string;
  readonly subtype?: string;
  readonly className?: string;
  readonly value?: unknown;
  readonly description?: string;
  readonly properties?: { readonly name: string; readonly value: CapturedValue }[];
  /** Why this value is not complete: depth, fields, items, time budget, bytes. */
  readonly truncated?: string;
}

export interface CapturedFrame {
  readonly functionName: string;
  readonly url: string;
  readonly lineNumber: number;
  readonly columnNumber: number;
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

interface RemoteObject {
  type: string;
  subtype?: string;
  className?: string;
  value?: unknown;
  unserializableValue?: string;
  description?: string;
  objectId?: string;
  preview?: ObjectPreview;
}

/** Runtime.ObjectPreview, as V8 builds it for getProperties with generatePreview (no user code runs). */
interface ObjectPreview {
  overflow?: boolean;
  properties?: { name: string; type: string; subtype?: string; value?: string }[];
}

interface PropertyDescriptor {
  name: string;
  value?: RemoteObject;
  get?: RemoteObject;
  set?: RemoteObject;
  isOwn?: boolean;
}

export interface PausedFrameInput {
  callFrameId: string;
  functionName: string;
  url?: string;
  location: { scriptId: string; lineNumber: number; columnNumber?: number };
  scopeChain: { type: string; object: RemoteObject }[];
  this?: RemoteObject;
}

/** Reads an object's own properties; with `preview`, each object among them comes with V8's preview. */
type GetProperties = (objectId: string, preview: boolean) => Promise<{ result?: PropertyDescriptor[]; internalProperties?: PropertyDescriptor[] }>;

/** Preview strings shorter than this are exact (V8 shortens longer ones around an ellipsis from 100 on). */
const previewStringExact = 99;

const unserializableNumbers = new Set(['NaN', 'Infinity', '-Infinity', '-0']);

/** A primitive as a preview gives it (as text), as Runtime.getProperties would give it; undefined if unsure. */
function primitiveFromPreview(p: NonNullable<ObjectPreview['properties']>[number]): RemoteObject | undefined {
  const text = p.value ?? '';
  switch (p.type) {
    case 'string':
      return text.length < previewStringExact ? { type: 'string', value: text } : undefined;
    case 'number':
      if (unserializableNumbers.has(text)) return { type: 'number', unserializableValue: text, description: text };
      return /^-?\d+(\.\d+)?(e[+-]\d+)?$/.test(text) ? { type: 'number', value: Number(text) } : undefined;
    case 'boolean':
      return text === 'true' || text === 'false' ? { type: 'boolean', value: text === 'true' } : undefined;
    case 'undefined':
      return { type: 'undefined' };
    case 'bigint':
      return { type: 'bigint', unserializableValue: text, description: text };
    case 'symbol':
      return { type: 'symbol', description: text };
    case 'object':
      return p.subtype === 'null' ? { type: 'object', subtype: 'null', value: null } : undefined;
    default:
      return undefined;
  }
}

/**
 * The properties of a small plain object or array of primitives, when V8's preview of it holds all of them
 * exactly: then the capture needs no read of its own. A preview lists own properties (enumerable or not, symbol
 * keys too) up to 5 names or 100 indices and says when it stopped (overflow); it shortens strings of 100
 * characters or more; numbers are exact decimal text. Anything else (nested objects, functions, accessors,
 * class instances, whose previews also list private fields) is read as usual.
 */
export function propertiesFromPreview(remote: RemoteObject): PropertyDescriptor[] | undefined {
  const preview = remote.preview;
  const plain = remote.subtype === undefined && remote.className === 'Object';
  const array = remote.subtype === 'array' && remote.className === 'Array';
  if (!preview || preview.overflow !== false || !Array.isArray(preview.properties) || !(plain || array)) return undefined;
  const out: PropertyDescriptor[] = [];
  for (const p of preview.properties) {
    const value = array && !/^\d+$/.test(p.name) ? undefined : primitiveFromPreview(p);
    if (!value) return undefined;
    out.push({ name: p.name, value });
  }
  if (array) {
    const length = /^Array\((\d+)\)$/.exec(remote.description ?? '')?.[1];
    if (length === undefined) return undefined;
    out.push({ name: 'length', value: { type: 'number', value: Number(length) } });
  }
  return out;
}

const expandedScopes = new Set(['local', 'block', 'catch', 'closure']);

/**
 * Reads in flight at once. The target answers them one after another on its one socket, so a few are enough to
 * keep it busy between round trips; a small window also keeps the resume, which queues behind them in the
 * target, close to the time budget, and lets the bytes limit stop reads before they are sent.
 */
export const captureReadWindow = 8;

type Properties = NonNullable<CapturedValue['properties']>;
/** A node of the capture being built: filled in when its object's properties arrive. */
interface Filling {
  properties: Properties;
  truncated?: string;
}

/**
 * Captures the paused stack within the limits, reading only through Runtime.getProperties (which never
 * runs user code: getters, Proxy traps and toString are not invoked). Depth bounds cycles.
 *
 * Reads are pipelined: every object found is queued at once and up to `captureReadWindow` reads are in
 * flight, so a capture costs about one round trip per level of depth rather than one per object; and a small
 * plain object or array of primitives whose preview (asked for with the read of its parent) holds it whole
 * costs no read at all. Objects are filled breadth first, in the order found (the locals of every expanded
 * frame before what they point to), whether read or previewed, so limits cut the same values either way.
 * When the last read is answered the capture is complete and the target can be resumed. At the time budget
 * the capture stops waiting: what has not arrived is marked with the budget. The result is plain data (no
 * remote ids), built from replies the session has already redacted.
 */
export async function captureFrames(frames: readonly PausedFrameInput[], scriptUrls: ReadonlyMap<string, string>, getProperties: GetProperties, limits: SnapshotLimits, now: () => number = () => performance.now()): Promise<Capture & { readonly reads: number }> {
  const started = now();
  let bytes = 0;
  let cut: string | undefined;
  let reads = 0;
  let closed = false;
  const over = (): string | undefined => {
    if (cut) return cut;
    if (now() - started > limits.timeBudgetMs) cut = `time budget of ${limits.timeBudgetMs} ms`;
    else if (bytes > limits.maxBytes) cut = `${limits.maxBytes} bytes`;
    return cut;
  };

  /** An object to fill: read (objectId) or already known from a preview (known). */
  interface Item {
    readonly objectId?: string;
    readonly known?: PropertyDescriptor[];
    readonly depthLeft: number;
    readonly isArray: boolean;
    readonly into: Filling;
    reply?: Awaited<ReturnType<GetProperties>>;
    error?: string;
    /** Not read: a limit was reached before its turn. */
    unsent?: boolean;
  }
  /** Not started yet, in the order found. */
  const queue: Item[] = [];
  /** Started (read sent, or known), filled strictly in this order: the order of a breadth-first walk. */
  const toFill: Item[] = [];
  let inFlight = 0;
  let finish!: () => void;
  const finished = new Promise<void>((resolve) => (finish = resolve));

  const primitive = (remote: RemoteObject): CapturedValue => {
    if (remote.type === 'string') {
      const text = String(remote.value ?? '');
      bytes += Math.min(text.length, limits.stringLength) + 8;
      return text.length > limits.stringLength ? { type: 'string', value: text.slice(0, limits.stringLength), truncated: `string of ${text.length} characters` } : { type: 'string', value: text };
    }
    bytes += 16;
    if (remote.unserializableValue !== undefined) return { type: remote.type, description: remote.unserializableValue };
    if (remote.type === 'undefined') return { type: 'undefined' };
    if (remote.type === 'symbol' || remote.type === 'bigint') return { type: remote.type, description: remote.description };
    return { type: remote.type, value: remote.value };
  };

  /** Queues an object's properties for `into` (a read, unless `known` from a preview); its children get `depthLeft`. */
  const expand = (source: { objectId: string } | { known: PropertyDescriptor[] }, depthLeft: number, isArray: boolean, into: Filling): void => {
    queue.push({ ...source, depthLeft, isArray, into });
  };

  const convert = (remote: RemoteObject, depthLeft: number): CapturedValue => {
    if (remote.type !== 'object' || remote.subtype === 'null') return remote.subtype === 'null' ? { type: 'object', subtype: 'null', value: null } : remote.type === 'function' ? { type: 'function', description: String(remote.description ?? '').split('\n')[0]!.slice(0, limits.stringLength) } : primitive(remote);
    const head = { type: 'object', ...(remote.subtype ? { subtype: remote.subtype } : {}), ...(remote.className ? { className: remote.className } : {}), description: String(remote.description ?? '').slice(0, limits.stringLength) };
    bytes += head.description.length + 16;
    // Proxies are described, never expanded: their traps stay untouched.
    if (!remote.objectId || remote.subtype === 'proxy') return head;
    if (depthLeft <= 0) return { ...head, truncated: 'depth' };
    const node: CapturedValue & Filling = { ...head, properties: [] };
    // Queued like a read and filled in its turn, so a preview changes the cost, never the capture.
    const known = propertiesFromPreview(remote);
    expand(known ? { known } : { objectId: remote.objectId }, depthLeft - 1, remote.subtype === 'array' || remote.subtype === 'typedarray', node);
    return node;
  };

  /** Converts one reply into its node, queueing the objects it points to. */
  const fill = (reply: Awaited<ReturnType<GetProperties>>, depthLeft: number, isArray: boolean, into: Filling): void => {
    const own = (reply.result ?? []).filter((p) => p.name !== '__proto__');
    const entries = (reply.internalProperties ?? []).find((p) => p.name === '[[Entries]]');
    const limit = isArray || entries ? limits.collectionItems : limits.fieldsPerObject;
    const chosen = isArray ? own.filter((p) => /^\d+$/.test(p.name) || p.name === 'length') : own;
    let truncated = chosen.length > limit ? `${chosen.length} properties, ${limit} captured` : undefined;
    for (const p of chosen.slice(0, limit)) {
      const stopNow = over();
      if (stopNow) {
        truncated = stopNow;
        break;
      }
      bytes += p.name.length + 4;
      // CDP reports a missing accessor half as {type: 'undefined'}.
      const getter = p.get !== undefined && p.get.type !== 'undefined';
      const setter = p.set !== undefined && p.set.type !== 'undefined';
      into.properties.push({ name: p.name, value: p.value ? convert(p.value, depthLeft) : { type: 'accessor', description: `${[getter ? 'getter' : '', setter ? 'setter' : ''].filter(Boolean).join('/')} (not invoked)` } });
    }
    if (entries?.value?.objectId && !over()) {
      const node: CapturedValue & Filling = { type: 'object', subtype: 'array', properties: [] };
      into.properties.push({ name: '[[Entries]]', value: node });
      expand({ objectId: entries.value.objectId }, depthLeft, true, node);
    }
    if (truncated) into.truncated = truncated;
  };

  /**
   * Starts queued items while the read window has room, then fills started items in order as their replies
   * are in (the target answers in the order asked). Limits are checked as each item is filled, so which
   * values a cut leaves out does not depend on how the reads were timed. Finishes when all is filled.
   */
  const pump = (): void => {
    for (;;) {
      while (!closed && queue.length > 0 && inFlight < captureReadWindow) {
        const next = queue.shift()!;
        toFill.push(next);
        if (next.known) next.reply = { result: next.known };
        // Past a limit nothing more is read; the item is marked as cut when its turn comes.
        else if (over()) next.unsent = true;
        else read(next);
      }
      const head = toFill[0];
      if (closed || !head || !(head.reply || head.error || head.unsent)) break;
      toFill.shift();
      const stop = over();
      if (head.error) head.into.truncated = head.error;
      else if (stop) head.into.truncated = stop;
      else fill(head.reply!, head.depthLeft, head.isArray, head.into);
    }
    if (!closed && queue.length === 0 && toFill.length === 0) finish();
  };

  const read = (item: Item): void => {
    inFlight++;
    reads++;
    // Previews only pay when what this read finds may be expanded in turn.
    getProperties(item.objectId!, item.depthLeft > 0).then(
      (reply) => {
        inFlight--;
        item.reply = reply;
        if (!closed) pump();
      },
      (err: Error) => {
        inFlight--;
        item.error = `read failed: ${err.message}`;
        if (!closed) pump();
      },
    );
  };

  const captured: CapturedFrame[] = [];
  for (const [index, frame] of frames.slice(0, limits.frames).entries()) {
    const base = {
      functionName: frame.functionName || '(anonymous)',
      url: frame.url || scriptUrls.get(frame.location.scriptId) || '',
      lineNumber: frame.location.lineNumber,
      columnNumber: frame.location.columnNumber ?? 0,
    };
    if (index >= limits.expandFrames) {
      captured.push(base);
      continue;
    }
    const scopes: { type: string; properties: Properties; truncated?: string }[] = [];
    for (const scope of frame.scopeChain) {
      if (!expandedScopes.has(scope.type) || !scope.object.objectId) continue;
      // Closures of the top frame only: deeper closures multiply the cost for little insight.
      if (scope.type === 'closure' && index > 0) continue;
      const node: { type: string; properties: Properties; truncated?: string } = { type: scope.type, properties: [] };
      scopes.push(node);
      expand({ objectId: scope.object.objectId }, limits.depth, false, node);
    }
    captured.push({ ...base, scopes, ...(frame.this && frame.this.type === 'object' && frame.this.subtype !== 'null' ? { this: convert(frame.this, 1) } : {}) });
  }

  pump();
  // The time budget also bounds the wait for reads already sent.
  const budgetLeft = limits.timeBudgetMs - (now() - started);
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([finished, new Promise<void>((resolve) => (timer = setTimeout(resolve, Math.max(0, budgetLeft) + 1)))]);
  clearTimeout(timer);
  closed = true;
  if (toFill.length > 0 || queue.length > 0) {
    // Stopped waiting: what has not arrived is marked, and late replies are ignored (closed).
    cut ??= `time budget of ${limits.timeBudgetMs} ms`;
    for (const item of [...toFill, ...queue]) item.into.truncated = cut;
  }
  return { frames: captured, durationMs: Math.round((now() - started) * 1000) / 1000, bytes, reads, ...(cut ? { truncated: cut } : {}) };
}

/** Passes the string values and descriptions of a capture through `scrub`, in place. */
export function scrubCapture(frames: readonly CapturedFrame[], scrub: (text: string) => string): void {
  const value = (v: CapturedValue): void => {
    const w = v as { value?: unknown; description?: string };
    if (typeof w.value === 'string') w.value = scrub(w.value);
    if (typeof w.description === 'string') w.description = scrub(w.description);
    for (const p of v.properties ?? []) value(p.value);
  };
  for (const frame of frames) {
    for (const scope of frame.scopes ?? []) for (const p of scope.properties ?? []) value(p.value);
    if (frame.this) value(frame.this);
  }
}
