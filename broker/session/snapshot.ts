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

type GetProperties = (objectId: string) => Promise<{ result?: PropertyDescriptor[]; internalProperties?: PropertyDescriptor[] }>;

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
 * flight, so a capture costs about one round trip per level of depth rather than one per object. Objects are
 * read breadth first (the locals of every expanded frame before what they point to), and each reply is
 * converted as it arrives, so when the last read is answered the capture is complete and the target can be
 * resumed. At the time budget the capture stops waiting: what has not arrived is marked with the budget.
 * The result is plain data (no remote ids), built from replies the session has already redacted.
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

  const queue: { objectId: string; depthLeft: number; isArray: boolean; into: Filling }[] = [];
  const inFlight = new Set<Filling>();
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

  /** Queues the read of an object's properties into `into`; its children get `depthLeft`. */
  const expand = (objectId: string, depthLeft: number, isArray: boolean, into: Filling): void => {
    queue.push({ objectId, depthLeft, isArray, into });
  };

  const convert = (remote: RemoteObject, depthLeft: number): CapturedValue => {
    if (remote.type !== 'object' || remote.subtype === 'null') return remote.subtype === 'null' ? { type: 'object', subtype: 'null', value: null } : remote.type === 'function' ? { type: 'function', description: String(remote.description ?? '').split('\n')[0]!.slice(0, limits.stringLength) } : primitive(remote);
    const head = { type: 'object', ...(remote.subtype ? { subtype: remote.subtype } : {}), ...(remote.className ? { className: remote.className } : {}), description: String(remote.description ?? '').slice(0, limits.stringLength) };
    bytes += head.description.length + 16;
    // Proxies are described, never expanded: their traps stay untouched.
    if (!remote.objectId || remote.subtype === 'proxy') return head;
    if (depthLeft <= 0) return { ...head, truncated: 'depth' };
    const node: CapturedValue & Filling = { ...head, properties: [] };
    expand(remote.objectId, depthLeft - 1, remote.subtype === 'array' || remote.subtype === 'typedarray', node);
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
      expand(entries.value.objectId, depthLeft, true, node);
    }
    if (truncated) into.truncated = truncated;
  };

  /** Sends queued reads while the window has room; finishes when nothing is queued or in flight. */
  const pump = (): void => {
    while (!closed && queue.length > 0 && inFlight.size < captureReadWindow) {
      const next = queue.shift()!;
      const stop = over();
      if (stop) {
        next.into.truncated = stop;
        continue;
      }
      inFlight.add(next.into);
      reads++;
      getProperties(next.objectId).then(
        (reply) => {
          inFlight.delete(next.into);
          if (closed) return;
          const stop = over();
          if (stop) next.into.truncated = stop;
          else fill(reply, next.depthLeft, next.isArray, next.into);
          pump();
        },
        (err: Error) => {
          inFlight.delete(next.into);
          if (closed) return;
          next.into.truncated = `read failed: ${err.message}`;
          pump();
        },
      );
    }
    if (!closed && queue.length === 0 && inFlight.size === 0) finish();
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
      expand(scope.object.objectId, limits.depth, false, node);
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
  if (inFlight.size > 0 || queue.length > 0) {
    // Stopped waiting: what has not arrived is marked, and late replies are ignored (closed).
    cut ??= `time budget of ${limits.timeBudgetMs} ms`;
    for (const pending of [...inFlight, ...queue.map((q) => q.into)]) pending.truncated = cut;
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
