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
 * Captures the paused stack within the limits, reading only through Runtime.getProperties (which never
 * runs user code: getters, Proxy traps and toString are not invoked). Depth bounds cycles.
 */
export async function captureFrames(frames: readonly PausedFrameInput[], scriptUrls: ReadonlyMap<string, string>, getProperties: GetProperties, limits: SnapshotLimits, now: () => number = () => performance.now()): Promise<Capture> {
  const started = now();
  let bytes = 0;
  let cut: string | undefined;
  const over = (): string | undefined => {
    if (cut) return cut;
    if (now() - started > limits.timeBudgetMs) cut = `time budget of ${limits.timeBudgetMs} ms`;
    else if (bytes > limits.maxBytes) cut = `${limits.maxBytes} bytes`;
    return cut;
  };

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

  const expand = async (objectId: string, depthLeft: number, isArray: boolean): Promise<{ properties: NonNullable<CapturedValue['properties']>; truncated?: string }> => {
    const stop = over();
    if (stop) return { properties: [], truncated: stop };
    const reply = await getProperties(objectId);
    const own = (reply.result ?? []).filter((p) => p.name !== '__proto__');
    const entries = (reply.internalProperties ?? []).find((p) => p.name === '[[Entries]]');
    const limit = isArray || entries ? limits.collectionItems : limits.fieldsPerObject;
    const chosen = isArray ? own.filter((p) => /^\d+$/.test(p.name) || p.name === 'length') : own;
    const properties: { name: string; value: CapturedValue }[] = [];
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
      properties.push({ name: p.name, value: p.value ? await convert(p.value, depthLeft) : { type: 'accessor', description: `${[getter ? 'getter' : '', setter ? 'setter' : ''].filter(Boolean).join('/')} (not invoked)` } });
    }
    if (entries?.value?.objectId && !over()) {
      const inner = await expand(entries.value.objectId, depthLeft, true);
      properties.push({ name: '[[Entries]]', value: { type: 'object', subtype: 'array', properties: inner.properties, ...(inner.truncated ? { truncated: inner.truncated } : {}) } });
    }
    return { properties, ...(truncated ? { truncated } : {}) };
  };

  const convert = async (remote: RemoteObject, depthLeft: number): Promise<CapturedValue> => {
    if (remote.type !== 'object' || remote.subtype === 'null') return remote.subtype === 'null' ? { type: 'object', subtype: 'null', value: null } : remote.type === 'function' ? { type: 'function', description: String(remote.description ?? '').split('\n')[0]!.slice(0, limits.stringLength) } : primitive(remote);
    const head = { type: 'object', ...(remote.subtype ? { subtype: remote.subtype } : {}), ...(remote.className ? { className: remote.className } : {}), description: String(remote.description ?? '').slice(0, limits.stringLength) };
    bytes += head.description.length + 16;
    // Proxies are described, never expanded: their traps stay untouched.
    if (!remote.objectId || remote.subtype === 'proxy') return head;
    if (depthLeft <= 0) return { ...head, truncated: 'depth' };
    const inner = await expand(remote.objectId, depthLeft - 1, remote.subtype === 'array' || remote.subtype === 'typedarray');
    return { ...head, properties: inner.properties, ...(inner.truncated ? { truncated: inner.truncated } : {}) };
  };

  const captured: CapturedFrame[] = [];
  for (const [index, frame] of frames.slice(0, limits.frames).entries()) {
    const base = {
      functionName: frame.functionName || '(anonymous)',
      url: frame.url || scriptUrls.get(frame.location.scriptId) || '',
      lineNumber: frame.location.lineNumber,
      columnNumber: frame.location.columnNumber ?? 0,
    };
    if (index >= limits.expandFrames || over()) {
      captured.push(base);
      continue;
    }
    const scopes: NonNullable<CapturedFrame['scopes']> = [];
    for (const scope of frame.scopeChain) {
      if (!expandedScopes.has(scope.type) || !scope.object.objectId) continue;
      // Closures of the top frame only: deeper closures multiply the cost for little insight.
      if (scope.type === 'closure' && index > 0) continue;
      const inner = await expand(scope.object.objectId, limits.depth, false);
      scopes.push({ type: scope.type, properties: inner.properties, ...(inner.truncated ? { truncated: inner.truncated } : {}) });
    }
    captured.push({ ...base, scopes, ...(frame.this && frame.this.type === 'object' && frame.this.subtype !== 'null' ? { this: await convert(frame.this, 1) } : {}) });
  }
  return { frames: captured, durationMs: Math.round((now() - started) * 1000) / 1000, bytes, ...(cut ? { truncated: cut } : {}) };
}
