/**
 * The snapshot engine: in snapshot mode a hit of one of the session's breakpoints is captured within the limits
 * (captureFrames) and the target resumed at once; per-breakpoint and per-session rate limits skip captures (never
 * the resume) and take a breakpoint out of V8 until its next capture is due.
 */
import { withholdProcessFacts } from '../gate/processFacts';
import type { Protocol } from 'devtools-protocol';
import type { SnapshotLimits } from '../config/types';
import type { Capture, CapturedFrame, CapturedValue } from '../../common/session';
import type { CdpMessage, PausedFrameInput } from '../gate/targetFrame';
import type { SessionContext } from './context';
import { emitLogpoint } from './logpoints';

export type { Capture, CapturedFrame, CapturedValue, PausedFrameInput };

type RemoteObject = Protocol.Runtime.RemoteObject;
/** Runtime.ObjectPreview, as V8 builds it for getProperties with generatePreview (no user code runs). */
type ObjectPreview = Protocol.Runtime.ObjectPreview;
type PropertyDescriptor = Pick<Protocol.Runtime.PropertyDescriptor, 'name' | 'value' | 'get' | 'set' | 'isOwn'>;

/** Reads an object's own properties; with `preview`, each object among them comes with V8's preview. */
type GetProperties = (objectId: string, preview: boolean) => Promise<{ result?: PropertyDescriptor[]; internalProperties?: PropertyDescriptor[] }>;

/** Preview strings shorter than this are exact (V8 shortens longer ones around an ellipsis from 100 on). */
const previewStringExact = 99;

const unserializableNumbers = new Set(['NaN', 'Infinity', '-Infinity', '-0']);

/** A primitive as a preview gives it (as text), as Runtime.getProperties would give it; undefined if unsure. */
function primitiveFromPreview(p: NonNullable<ObjectPreview['properties']>[number]): RemoteObject | undefined {
  if (p.value !== undefined && typeof p.value !== 'string') return undefined;
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
  if (!isObject(remote)) return undefined;
  const preview = remote.preview;
  const plain = remote.subtype === undefined && remote.className === 'Object';
  const array = remote.subtype === 'array' && remote.className === 'Array';
  if (!preview || preview.overflow !== false || !Array.isArray(preview.properties) || !(plain || array)) return undefined;
  const out: PropertyDescriptor[] = [];
  for (const p of preview.properties) {
    if (!isObject(p) || typeof p.name !== 'string') return undefined;
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

type Reply = Awaited<ReturnType<GetProperties>>;

const isObject = (value: unknown): value is Record<string, never> => typeof value === 'object' && value !== null;

/**
 * Replies known without a read, for the stand-ins entriesFromPreview makes: a stand-in's object id is never sent
 * to the target; the capture takes this reply in its place.
 */
const knownReplies = new WeakMap<RemoteObject, Reply>();

/** A key or value of a Map or Set entry, as a read of the entry gives it; undefined when its preview may not hold it exactly. */
function entryPart(p: ObjectPreview): RemoteObject | undefined {
  if (p.description !== undefined && typeof p.description !== 'string') return undefined;
  if (p.type !== 'object' || p.subtype === 'null') return p.type === 'function' ? undefined : primitiveFromPreview({ name: '', type: p.type, subtype: p.subtype, value: p.description ?? '' });
  // A small plain object: its preview stands in for its read in turn (propertiesFromPreview).
  const remote: RemoteObject = { type: 'object', className: 'Object', description: 'Object', objectId: 'preview', preview: p };
  return p.subtype === undefined && p.description === 'Object' && propertiesFromPreview(remote) ? remote : undefined;
}

/** How V8 describes an entry part in the entry's description (`{key => value}` for a Map, the value for a Set): strings quoted. */
const entryText = (p: ObjectPreview): string => (p.type === 'string' ? `"${p.description}"` : (p.description ?? ''));

/**
 * A Map or Set whose preview lists all of its entries, each key and value a primitive or a small plain object that
 * its preview holds exactly: the replies reading the Map, its [[Entries]] and each entry would give, made from the
 * preview, so the capture costs no read for them (three levels of reads fewer). Anything else is read as usual.
 */
export function entriesFromPreview(remote: RemoteObject): Reply | undefined {
  const preview = isObject(remote) ? remote.preview : undefined;
  if (!isObject(preview)) return undefined;
  const kind = remote.subtype === 'map' && remote.className === 'Map' ? 'map' : remote.subtype === 'set' && remote.className === 'Set' ? 'set' : undefined;
  if (
    !kind ||
    preview.overflow !== false ||
    !Array.isArray(preview.entries) ||
    !Array.isArray(preview.properties) ||
    !preview.entries.every((e) => isObject(e) && isObject(e.value) && (e.key === undefined || isObject(e.key)))
  )
    return undefined;
  if (!preview.properties.every(isObject)) return undefined;
  // Own properties beyond `size` (a Map with fields of its own) would need the read.
  const size = preview.properties.length === 1 && preview.properties[0]!.name === 'size' ? preview.properties[0]!.value : undefined;
  if (size !== String(preview.entries.length) || remote.description !== `${kind === 'map' ? 'Map' : 'Set'}(${size})`) return undefined;
  const items: PropertyDescriptor[] = [];
  for (const [index, entry] of preview.entries.entries()) {
    if ((kind === 'map') !== (entry.key !== undefined)) return undefined;
    const key = entry.key ? entryPart(entry.key) : undefined;
    const value = entryPart(entry.value);
    if (!value || (entry.key && !key)) return undefined;
    for (const part of [entry.key, entry.value]) if (part?.type === 'string' && (part.description ?? '').length >= previewStringExact) return undefined;
    const description = entry.key ? `{${entryText(entry.key)} => ${entryText(entry.value)}}` : entryText(entry.value);
    // V8's own subtype for an entry, outside the protocol's list.
    const entryObject = { type: 'object', subtype: 'internal#entry', className: 'Object', description, objectId: 'preview' } as unknown as RemoteObject;
    knownReplies.set(entryObject, { result: [...(key ? [{ name: 'key', value: key }] : []), { name: 'value', value }] });
    items.push({ name: String(index), value: entryObject });
  }
  const length = preview.entries.length;
  const entries: RemoteObject = { type: 'object', subtype: 'array', className: 'Array', description: `Array(${length})`, objectId: 'preview' };
  knownReplies.set(entries, { result: [...items, { name: 'length', value: { type: 'number', value: length, description: String(length) } }] });
  return { result: [], internalProperties: [{ name: '[[Entries]]', value: entries }] };
}

const expandedScopes = new Set(['local', 'block', 'catch', 'closure']);

/** A frame of Node's own code (`node:internal/...`, `node:events`): expanded only when the policy asks. */
const isInternalFrame = (url: string): boolean => url.startsWith('node:');

/** Whether frame `index` (of those captured) has its scopes expanded. */
function expandsFrame(index: number, url: string, limits: SnapshotLimits): boolean {
  return index < limits.expandFrames && (limits.expandInternalFrames || !isInternalFrame(url));
}

/** The scope objects a capture reads first, frame by frame: one rule for the capture and for its prefetch. */
function scopesToExpand(frame: PausedFrameInput, index: number): PausedFrameInput['scopeChain'] {
  // Closures of the top frame only: deeper closures multiply the cost for little insight.
  return frame.scopeChain.filter((scope) => expandedScopes.has(scope.type) && scope.object.objectId && !(scope.type === 'closure' && index > 0));
}

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
export async function captureFrames(
  frames: readonly PausedFrameInput[],
  scriptUrls: ReadonlyMap<string, string>,
  getProperties: GetProperties,
  limits: SnapshotLimits,
  now: () => number = () => performance.now(),
): Promise<Capture & { readonly reads: number }> {
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
    readonly known?: Reply;
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
  const expand = (source: { objectId: string } | { known: Reply }, depthLeft: number, isArray: boolean, into: Filling): void => {
    queue.push({ ...source, depthLeft, isArray, into });
  };

  /** What fills an object: a reply known without a read (a stand-in's, a preview's), or a read. */
  const knownSource = (remote: RemoteObject): { objectId: string } | { known: Reply } => {
    const stood = knownReplies.get(remote);
    if (stood) return { known: stood };
    const properties = propertiesFromPreview(remote);
    if (properties) return { known: { result: properties } };
    const entries = entriesFromPreview(remote);
    return entries ? { known: entries } : { objectId: remote.objectId! };
  };

  const convert = (remote: RemoteObject, depthLeft: number): CapturedValue => {
    if (remote.type !== 'object' || remote.subtype === 'null')
      return remote.subtype === 'null'
        ? { type: 'object', subtype: 'null', value: null }
        : remote.type === 'function'
          ? {
              type: 'function',
              description: String(remote.description ?? '')
                .split('\n')[0]!
                .slice(0, limits.stringLength),
            }
          : primitive(remote);
    const head = {
      type: 'object',
      ...(remote.subtype ? { subtype: remote.subtype } : {}),
      ...(remote.className ? { className: remote.className } : {}),
      description: String(remote.description ?? '').slice(0, limits.stringLength),
    };
    bytes += head.description.length + 16;
    // Proxies are described, never expanded: their traps stay untouched.
    if (!remote.objectId || remote.subtype === 'proxy') return head;
    if (depthLeft <= 0) return { ...head, truncated: 'depth' };
    const node: CapturedValue & Filling = { ...head, properties: [] };
    // Queued like a read and filled in its turn, so a preview changes the cost, never the capture.
    expand(knownSource(remote), depthLeft - 1, remote.subtype === 'array' || remote.subtype === 'typedarray', node);
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
      into.properties.push({
        name: p.name,
        value: p.value ? convert(p.value, depthLeft) : { type: 'accessor', description: `${[getter ? 'getter' : '', setter ? 'setter' : ''].filter(Boolean).join('/')} (not invoked)` },
      });
    }
    if (entries?.value?.objectId && !over()) {
      const node: CapturedValue & Filling = { type: 'object', subtype: 'array', properties: [] };
      into.properties.push({ name: '[[Entries]]', value: node });
      expand(knownSource(entries.value), depthLeft, true, node);
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
        if (next.known) next.reply = next.known;
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
    if (!expandsFrame(index, base.url, limits)) {
      captured.push(base);
      continue;
    }
    const scopes: { type: string; properties: Properties; truncated?: string }[] = [];
    for (const scope of scopesToExpand(frame, index)) {
      const node: { type: string; properties: Properties; truncated?: string } = { type: scope.type, properties: [] };
      scopes.push(node);
      expand({ objectId: scope.object.objectId! }, limits.depth, false, node);
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

/**
 * Snapshot mode for one session: a hit of one of its breakpoints is captured within the limits and the target
 * resumed at once; rate limits skip the capture (never the resume). Pauses of other sessions are left alone.
 */
export class SnapshotMode {
  /** Clock times of this session's captures in the last minute. */
  private captureTimes: number[] = [];
  private captureCount = 0;
  /** Reads sent as the pause arrived (see prefetch), by object id, until the capture takes them. */
  private readonly prefetched = new Map<string, { preview: boolean; reply: ReturnType<GetProperties> }>();

  constructor(private readonly context: SessionContext) {}

  /**
   * Called as a pause arrives, before the broker's own work on it (the evaluator's copy, the redaction of the
   * event): when onPause will capture it, the reads of the scopes the capture starts from go out at once, so
   * the target answers them meanwhile. Their answers are redacted as they arrive like every read of a capture,
   * and nothing of them is shown before the capture is recorded.
   */
  prefetch(params: Record<string, unknown> | undefined): void {
    const { context } = this;
    const { breakpoints } = context;
    this.prefetched.clear();
    if (context.isEnding() || !context.auditAccepting()) return;
    const { live: hits } = breakpoints.sortHits(params?.hitBreakpoints);
    // Logpoints and conditions are decided first; a capture may not follow.
    if (hits.length === 0 || hits.some((id) => breakpoints.get(id)?.logpoint !== undefined || breakpoints.get(id)?.condition !== undefined)) return;
    const limits = context.target().snapshot;
    const now = context.now();
    const recent = this.captureTimes.filter((t) => now - t < 60_000).length;
    if (recent >= limits.maxCapturesPerMinute || !hits.some((id) => now - breakpoints.rate(id).lastCaptureAt >= limits.minIntervalMs)) return;
    const frames = ((params?.callFrames as PausedFrameInput[] | undefined) ?? []).slice(0, limits.frames);
    const preview = limits.depth > 0;
    for (const [index, frame] of frames.entries()) {
      if (!expandsFrame(index, frame.url || context.labels.scriptUrls.get(frame.location.scriptId) || '', limits)) continue;
      for (const scope of scopesToExpand(frame, index)) {
        const objectId = scope.object.objectId!;
        const reply = this.read(objectId, preview);
        // Taken by the capture, which handles its failure; one left untaken fails unheard.
        reply.catch(() => undefined);
        this.prefetched.set(objectId, { preview, reply });
      }
    }
  }

  private read(objectId: string, preview: boolean): ReturnType<GetProperties> {
    return this.context.channel.captureCommand('Runtime.getProperties', { objectId, ownProperties: true, ...(preview ? { generatePreview: true } : {}) }) as ReturnType<GetProperties>;
  }

  /** A read for the capture: the one prefetched for the object, or a new one. */
  private readForCapture(objectId: string, preview: boolean): ReturnType<GetProperties> {
    const early = this.prefetched.get(objectId);
    if (early && early.preview === preview) {
      this.prefetched.delete(objectId);
      return early.reply;
    }
    return this.read(objectId, preview);
  }

  async onPause(message: CdpMessage): Promise<void> {
    const { context } = this;
    const { breakpoints, pauses } = context;
    const params = message.params ?? {};
    const { live: hits, quiet } = breakpoints.sortHits(params.hitBreakpoints);
    pauses.ownPause = hits.length > 0 || quiet.length > 0;
    if (context.isEnding()) return;
    if (hits.length === 0 && quiet.length === 0) {
      // Not ours (a `debugger;` statement, another debugger): left alone, but never held past maxPauseSeconds.
      pauses.armForeignPauseWatchdog();
      return;
    }
    if (hits.length === 0 || !context.auditAccepting()) {
      // A hit of a breakpoint the broker is taking out of V8 (or nothing could record a capture): resumed at once.
      this.resumeNow();
      breakpoints.skipped([...hits, ...quiet]);
      return;
    }
    const limits = context.target().snapshot;
    // How long the target is held: a duration of real work, measured finely.
    const started = performance.now();
    const frames = (params.callFrames as PausedFrameInput[] | undefined) ?? [];
    let captureFor: string | undefined;
    let skipped: { breakpointId: string; reason: string; until: number } | undefined;
    const logpoints = hits.filter((id) => breakpoints.get(id)?.logpoint !== undefined);
    for (const id of logpoints) if (frames[0]) await emitLogpoint(context, id, frames[0]);
    for (const id of hits.filter((h) => !logpoints.includes(h))) {
      const entry = breakpoints.get(id);
      if (!entry) continue;
      const state = breakpoints.rate(id);
      if (entry.condition !== undefined && frames[0] && !(await pauses.conditionHolds(id, entry.condition, frames[0]))) continue;
      const now = context.now();
      this.captureTimes = this.captureTimes.filter((t) => now - t < 60_000);
      if (now - state.lastCaptureAt < limits.minIntervalMs)
        skipped = { breakpointId: id, reason: `at most one capture every ${limits.minIntervalMs} ms per breakpoint`, until: state.lastCaptureAt + limits.minIntervalMs };
      else if (this.captureTimes.length >= limits.maxCapturesPerMinute)
        skipped = { breakpointId: id, reason: `at most ${limits.maxCapturesPerMinute} captures per minute per session`, until: this.captureTimes[0]! + 60_000 };
      else {
        captureFor = id;
        break;
      }
    }
    let capture: (Capture & { reads?: number }) | undefined;
    if (captureFor) {
      try {
        capture = await captureFrames(
          frames,
          context.labels.scriptUrls,
          async (objectId, preview) => {
            const reply = await this.readForCapture(objectId, preview);
            // A captured process object (a local holding it) shows the marker for its pid, as a read would.
            withholdProcessFacts('Runtime.getProperties', reply);
            return reply;
          },
          limits,
        );
      } catch (err) {
        capture = { frames: [], durationMs: 0, bytes: 0, truncated: `capture failed: ${(err as Error).message}` };
      }
    }
    this.prefetched.clear();
    const intervalReason = `at most one capture every ${limits.minIntervalMs} ms per breakpoint`;
    const throttledUntil = context.now() + limits.minIntervalMs;
    let removedWithCapture = false;
    if (captureFor && capture && breakpoints.rate(captureFor).captures + 1 < limits.maxCapturesPerBreakpoint) {
      // The rate limit takes the breakpoint out of V8 ahead of the resume, so V8 handles the removal while still
      // paused and the hot path does not pause on it again, for nothing, until the removal arrives.
      breakpoints.throttle(captureFor, throttledUntil, intervalReason, false, true);
      removedWithCapture = breakpoints.get(captureFor)?.throttled !== undefined;
      // The removal leaves from the breakpoint's queue of changes, a microtask away: it goes first.
      if (removedWithCapture) await new Promise((resolve) => setImmediate(resolve));
    }
    // Resume first: the capture is in hand, the target must not wait for the record or the client.
    this.resumeNow();
    const pauseMs = Math.round((performance.now() - started) * 1000) / 1000;
    if (!captureFor) pauses.chargeHeldPause(hits, pauseMs);
    if (skipped && !captureFor) {
      breakpoints.rate(skipped.breakpointId).skipped++;
      breakpoints.throttle(skipped.breakpointId, skipped.until, skipped.reason, false);
      breakpoints.throttleNotice(skipped.breakpointId, skipped.reason, skipped.until);
      return;
    }
    if (!captureFor || !capture) return;
    const state = breakpoints.rate(captureFor);
    const capturedAt = context.now();
    state.lastCaptureAt = capturedAt;
    state.captures++;
    this.captureTimes.push(capturedAt);
    const captureId = `${context.sessionId.slice(0, 8)}-${++this.captureCount}`;
    const record = { captureId, breakpointId: captureFor, capturedAt: new Date(capturedAt).toISOString(), pauseMs, ...capture };
    // Reads arrive in parallel, so a value learned from one reply may sit in a string read before it.
    if (context.redactor.active) scrubCapture(record.frames, (text) => context.redactor.scrub(text));
    // One record per capture, durable before the client sees it.
    const recorded = context.recordOrEnd('snapshot.captured', record);
    context.notify('Loupe.snapshotCaptured', record, false, recorded);
    if (state.captures >= limits.maxCapturesPerBreakpoint) {
      const reason = `reached its limit of ${limits.maxCapturesPerBreakpoint} captures and was removed`;
      breakpoints.retire(captureFor, `snapshot breakpoint ${reason}`);
      breakpoints.removedNotice(captureFor, reason);
      return;
    }
    // Rate limits: take the breakpoint out of V8 until its next capture is due, so V8 stops pausing on it.
    if (removedWithCapture) breakpoints.throttleNotice(captureFor, intervalReason, throttledUntil);
    else breakpoints.throttle(captureFor, state.lastCaptureAt + limits.minIntervalMs, intervalReason, true);
    if (this.captureTimes.length >= limits.maxCapturesPerMinute) {
      const reason = `at most ${limits.maxCapturesPerMinute} captures per minute per session`;
      for (const [id, entry] of breakpoints.all()) if (!entry.logpoint) breakpoints.throttle(id, this.captureTimes[0]! + 60_000, reason, true);
    }
  }

  /** Resumes the target at once, without waiting for any record (the capture's record says so). */
  private resumeNow(): void {
    this.context.channel.captureCommand('Debugger.resume').catch(() => undefined);
  }
}
