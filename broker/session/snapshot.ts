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
import { minThrottleOutMs } from './breakpoints';
import { hasUnlearnedScopes, unlearnedScopesSkip } from './exceptionLearning';

export type { Capture, CapturedFrame, CapturedValue, PausedFrameInput };

type RemoteObject = Protocol.Runtime.RemoteObject;
/** Elements of a list a capture still reads; a longer list is taken from its preview (its first elements). */
const maxListRead = 10_000;

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

/** The `this` of a frame when the capture reads it (an object it cannot take from a preview), for the prefetch. */
function thisToRead(frame: PausedFrameInput): { objectId: string; subtype?: string } | undefined {
  const self = frame.this;
  if (!self || self.type !== 'object' || self.subtype === 'null' || self.subtype === 'proxy' || typeof self.objectId !== 'string') return undefined;
  if (knownReplies.has(self) || propertiesFromPreview(self) || entriesFromPreview(self)) return undefined;
  return { objectId: self.objectId, ...(self.subtype ? { subtype: self.subtype } : {}) };
}

/** The scope objects a capture reads first, frame by frame: one rule for the capture and for its prefetch. */
function scopesToExpand(frame: PausedFrameInput, index: number, limits: SnapshotLimits): PausedFrameInput['scopeChain'] {
  // Closures of the top frame only, and only when the policy asks: each is one read more while the target waits.
  return frame.scopeChain.filter((scope) => expandedScopes.has(scope.type) && scope.object.objectId && !(scope.type === 'closure' && (index > 0 || !limits.closures)));
}

/** What a capture says of the top frame's closure scopes when the policy leaves them unread. */
export const closuresNotRead = "not read: the policy's snapshot.closures is off (each scope read lengthens the pause)";

/** Object kinds whose read lists an [[Entries]] internal property, read in turn: never the last read of a branch. */
const entryKinds = new Set(['map', 'set', 'weakmap', 'weakset', 'iterator']);

/** The truncation of an object beyond the read depth taken from V8's preview that did not hold all of it. */
export const previewCut = 'preview';

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
 * Beyond the read depth an object is taken from the preview V8 sent with it (previewed): no read.
 *
 * `resume` is called, once, the moment nothing more will be read: right behind the last reads, in the same tick,
 * when none of what is still to fill can lead to another read (the last level: depth spent, nothing with entries
 * to read). The target answers the reads it has from the paused state, then resumes, so the pause costs no
 * round trip after the last read; no read is ever sent after it. At the time budget the capture stops waiting:
 * what has not arrived is marked with the budget (and the caller resumes, if `resume` was not called). The
 * result is plain data (no remote ids), built from replies the session has already redacted.
 */
export async function captureFrames(
  frames: readonly PausedFrameInput[],
  scriptUrls: ReadonlyMap<string, string>,
  getProperties: GetProperties,
  limits: SnapshotLimits,
  options: { readonly resume?: () => void; readonly now?: () => number; readonly startedAt?: number } = {},
): Promise<Capture & { readonly reads: number }> {
  const now = options.now ?? (() => performance.now());
  // From the pause's arrival when its first reads went out then (startedAt, on the same clock).
  const started = options.startedAt ?? now();
  let bytes = 0;
  let cut: string | undefined;
  let reads = 0;
  let closed = false;
  let resumed = false;
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
    /** The object's subtype: a kind with entries reads them in turn. */
    readonly subtype?: string;
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
  const expand = (source: { objectId: string } | { known: Reply }, depthLeft: number, isArray: boolean, into: Filling, subtype?: string): void => {
    queue.push({ ...source, depthLeft, isArray, into, ...(subtype ? { subtype } : {}) });
  };

  /** Whether filling an item may send another read: a read one whose children are read in turn, or its entries. */
  const leadsToReads = (item: Item): boolean => !item.known && !item.unsent && !item.error && (item.depthLeft > 0 || entryKinds.has(item.subtype ?? ''));

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
    if (depthLeft <= 0) return previewed(remote, head);
    // A list longer than maxListRead is taken from its preview: V8 would list every element while the target waits.
    if ((remote.subtype === 'array' || remote.subtype === 'typedarray') && Number(/\((\d+)\)$/.exec(head.description)?.[1] ?? 0) > maxListRead) return previewed(remote, head);
    const node: CapturedValue & Filling = { ...head, properties: [] };
    // Queued like a read and filled in its turn, so a preview changes the cost, never the capture.
    expand(knownSource(remote), depthLeft - 1, remote.subtype === 'array' || remote.subtype === 'typedarray', node, remote.subtype);
    return node;
  };

  /** A preview's text where it is exact (V8 shortens longer text), else undefined. */
  const exactText = (text: unknown): string | undefined => (typeof text === 'string' && text.length < previewStringExact ? text : undefined);

  /**
   * A field of a preview: a primitive exactly as a read gives it, else what the preview says (`whole` false): a
   * nested object by its description (beyond the depth), a function or accessor by its kind. A string the preview
   * shortened is left out, not shown cut: redaction recognises a secret only whole, and V8 cut it before it could.
   */
  const previewField = (p: Record<string, unknown>): { value: CapturedValue; whole: boolean } => {
    const subtype = typeof p.subtype === 'string' ? { subtype: p.subtype } : {};
    if (p.type === 'object' && p.subtype !== 'null') {
      const description = exactText(p.value);
      bytes += (description?.length ?? 0) + 16;
      return { value: { type: 'object', ...subtype, ...(description !== undefined ? { description } : {}), truncated: 'depth' }, whole: false };
    }
    bytes += 16;
    if (p.type === 'object') return { value: { type: 'object', subtype: 'null', value: null }, whole: true };
    if (p.type === 'function') return { value: { type: 'function' }, whole: false };
    if (p.type === 'accessor') return { value: { type: 'accessor', description: 'accessor (not invoked)' }, whole: false };
    const exact = primitiveFromPreview(p as never);
    if (exact) return { value: primitive(exact), whole: true };
    if (p.type === 'string') return { value: { type: 'string', value: '', truncated: 'string shortened in the preview, not read' }, whole: false };
    const description = exactText(p.value);
    return { value: { type: typeof p.type === 'string' ? p.type : 'undefined', ...(description !== undefined ? { description } : {}) }, whole: false };
  };

  /** A Map or Set entry's key or value (an ObjectPreview): a primitive, or an object with the fields its preview lists. */
  const previewPart = (part: Record<string, unknown>): { value: CapturedValue; whole: boolean } => {
    if (part.type !== 'object' || part.subtype === 'null') return previewField({ type: part.type, subtype: part.subtype, value: part.description });
    const description = exactText(part.description);
    bytes += (description?.length ?? 0) + 16;
    const head: CapturedValue = { type: 'object', ...(typeof part.subtype === 'string' ? { subtype: part.subtype } : {}), ...(description !== undefined ? { description } : {}) };
    if (!Array.isArray(part.properties)) return { value: { ...head, truncated: 'depth' }, whole: false };
    const node = previewFields(part as unknown as ObjectPreview, head, false, false);
    return { value: node, whole: node.truncated === undefined };
  };

  /**
   * An object's node from its preview: its fields (up to 5, or 100 indices, as V8 lists them) and, for a Map or
   * Set, its entries, within the capture's limits; `fromPreview`, and cut (previewCut) unless the preview held it
   * all exactly.
   */
  const previewFields = (preview: ObjectPreview, head: CapturedValue, isArray: boolean, collection: boolean): CapturedValue => {
    const properties: Properties = [];
    let whole = preview.overflow === false;
    let truncated: string | undefined;
    const listed = (preview.properties as unknown[]).filter((p): p is Record<string, unknown> => isObject(p) && typeof p.name === 'string');
    if (listed.length < (preview.properties as unknown[]).length) whole = false;
    // As a read is filled: an array's indices (and its length), a Map's or Set's own fields (`size` is not one).
    const fields = listed.filter((p) => (!isArray || /^\d+$/.test(String(p.name))) && !(collection && p.name === 'size'));
    const limit = isArray ? limits.collectionItems : limits.fieldsPerObject;
    if (fields.length > limit) truncated = `${fields.length} properties, ${limit} captured`;
    for (const p of fields.slice(0, limit)) {
      const stop = over();
      if (stop) {
        truncated = stop;
        break;
      }
      bytes += String(p.name).length + 4;
      const field = previewField(p);
      whole &&= field.whole;
      properties.push({ name: String(p.name), value: field.value });
    }
    const length = isArray ? /^[A-Za-z0-9]*Array\((\d+)\)$/.exec(head.description ?? '')?.[1] : undefined;
    if (length !== undefined && !truncated) properties.push({ name: 'length', value: { type: 'number', value: Number(length) } });
    const entries = collection && Array.isArray(preview.entries) ? (preview.entries as unknown[]) : undefined;
    if (entries && !truncated && !over()) {
      const items: Properties = [];
      let entriesCut: string | undefined = entries.length > limits.collectionItems ? `${entries.length} properties, ${limits.collectionItems} captured` : undefined;
      for (const [index, entry] of entries.slice(0, limits.collectionItems).entries()) {
        const stop = over();
        if (stop) {
          entriesCut = stop;
          break;
        }
        if (!isObject(entry) || !isObject(entry.value)) {
          whole = false;
          continue;
        }
        const key = isObject(entry.key) ? previewPart(entry.key) : undefined;
        const value = previewPart(entry.value);
        whole &&= value.whole && (key?.whole ?? true);
        const text = (part: CapturedValue): string =>
          part.type === 'string' ? (part.truncated ? '"…"' : `"${String(part.value)}"`) : (part.description ?? (part.value !== undefined ? String(part.value) : part.type));
        const description = key ? `{${text(key.value)} => ${text(value.value)}}` : text(value.value);
        bytes += description.length + 16;
        items.push({
          name: String(index),
          value: { type: 'object', subtype: 'internal#entry', description, properties: [...(key ? [{ name: 'key', value: key.value }] : []), { name: 'value', value: value.value }] },
        });
      }
      properties.push({
        name: '[[Entries]]',
        value: { type: 'object', subtype: 'array', description: `Array(${entries.length})`, fromPreview: true, properties: items, ...(entriesCut ? { truncated: entriesCut } : {}) },
      });
      if (entriesCut) truncated ??= entriesCut;
    }
    truncated ??= whole ? undefined : previewCut;
    return { ...head, fromPreview: true, properties, ...(truncated ? { truncated } : {}) };
  };

  /** An object beyond the read depth: from the preview that came with it, if any; else its description alone. */
  const previewed = (remote: RemoteObject, head: CapturedValue): CapturedValue => {
    const preview = remote.preview;
    if (!isObject(preview) || !Array.isArray(preview.properties)) return { ...head, truncated: 'depth' };
    const collection = remote.subtype === 'map' || remote.subtype === 'set';
    return previewFields(preview, head, remote.subtype === 'array' || remote.subtype === 'typedarray', collection);
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
      const size = Number(/\((\d+)\)$/.exec(String(entries.value.description ?? ''))?.[1] ?? 0);
      // The entries of a large Map or Set are not read: V8 would list every one while the target waits.
      if (size > maxListRead && !propertiesFromPreview(entries.value) && !entriesFromPreview(entries.value)) node.truncated = `${size} entries, not read (over ${maxListRead})`;
      else expand(knownSource(entries.value), depthLeft, true, node);
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
        // Never a read after the resume (the last level's reads were all sent before it).
        else if (resumed) next.error = 'not read: the target had resumed';
        else read(next);
      }
      // Every read still to come is sent and none of what is left to fill can lead to another: the resume goes
      // right behind them, in this tick.
      if (!resumed && options.resume && !closed && queue.length === 0 && !toFill.some(leadsToReads)) {
        resumed = true;
        options.resume();
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
    // With previews: what this read finds is expanded in turn, or beyond the depth taken from its preview.
    getProperties(item.objectId!, true).then(
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
    const read = new Set(scopesToExpand(frame, index, limits));
    for (const scope of frame.scopeChain) {
      if (read.has(scope)) {
        const node: { type: string; properties: Properties; truncated?: string } = { type: scope.type, properties: [] };
        scopes.push(node);
        expand({ objectId: scope.object.objectId! }, limits.depth, false, node);
      } else if (index === 0 && scope.type === 'closure' && !limits.closures) scopes.push({ type: scope.type, properties: [], truncated: closuresNotRead });
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

/** The reads sent as a pause arrived (see prefetch), by object id, and whether the resume went with them. */
interface Prefetched {
  readonly reads: Map<string, ReturnType<GetProperties>>;
  readonly resumed: boolean;
  /** When the pause arrived (performance.now()), for a prefetched one: its held time counts from there. */
  readonly at?: number;
}

const noPrefetch = (): Prefetched => ({ reads: new Map(), resumed: false });

/**
 * Snapshot mode for one session: a hit of one of its breakpoints is captured within the limits and the target
 * resumed at once; rate limits skip the capture (never the resume). Pauses of other sessions are left alone.
 */
export class SnapshotMode {
  /** Clock times of this session's captures in the last minute. */
  private captureTimes: number[] = [];
  private captureCount = 0;
  /** What prefetch sent for the pause that onPause is about to handle. */
  private prefetched: Prefetched = noPrefetch();
  /**
   * The pause being handled, until its bookkeeping (rate limits, record) is done. A capture resumes the target
   * with its last reads, so the next hit can arrive before that: it waits for it, and is not prefetched.
   */
  private handling: Promise<void> | undefined;

  constructor(private readonly context: SessionContext) {}

  /**
   * Called as a pause arrives, before the broker's own work on it (the evaluator's copy, the redaction of the
   * event): when onPause will capture it, the reads of the scopes (and `this`) the capture starts from go out at
   * once, in one write, so the target answers them meanwhile. When they are all the capture will read (depth 0,
   * no entries to read, no rate-limit removal that must reach V8 first), the resume goes in the same write: V8
   * answers them paused, then resumes. Their answers are redacted as they arrive like every read of a capture,
   * and nothing of them is shown before the capture is recorded.
   */
  prefetch(params: Record<string, unknown> | undefined): void {
    const { context } = this;
    const { breakpoints } = context;
    this.prefetched = noPrefetch();
    const at = performance.now();
    if (this.handling || context.isEnding() || !context.auditAccepting()) return;
    // A scope this session has not learned from yet is read first, with the target paused (targetRelay.ts).
    if (hasUnlearnedScopes(context, params)) return;
    const { live: hits } = breakpoints.sortHits(params?.hitBreakpoints);
    // Logpoints and conditions are decided first; a capture may not follow.
    if (hits.length === 0 || hits.some((id) => breakpoints.get(id)?.logpoint !== undefined || breakpoints.get(id)?.condition !== undefined)) return;
    const limits = context.target().snapshot;
    const now = context.now();
    const recent = this.captureTimes.filter((t) => now - t < 60_000).length;
    if (recent >= limits.maxCapturesPerMinute || !hits.some((id) => now - breakpoints.rate(id).lastCaptureAt >= limits.minIntervalMs)) return;
    const frames = ((params?.callFrames as PausedFrameInput[] | undefined) ?? []).slice(0, limits.frames);
    const objectIds: string[] = [];
    // A rate limit long enough to take the breakpoint out of V8 sends that removal ahead of the resume (onPause).
    // A pause-mode session here may hold this pause too (its breakpoint on this line): the resume waits for the capture.
    let lastLevel = limits.depth === 0 && limits.minIntervalMs < minThrottleOutMs && !context.pauses.sharedWithShowing();
    for (const [index, frame] of frames.entries()) {
      if (!expandsFrame(index, frame.url || context.labels.scriptUrls.get(frame.location.scriptId) || '', limits)) continue;
      for (const scope of scopesToExpand(frame, index, limits)) objectIds.push(scope.object.objectId!);
      const self = thisToRead(frame);
      if (!self) continue;
      objectIds.push(self.objectId);
      if (entryKinds.has(self.subtype ?? '')) lastLevel = false;
    }
    const reads = new Map<string, ReturnType<GetProperties>>();
    context.channel.batch(() => {
      for (const objectId of objectIds) {
        if (reads.has(objectId)) continue;
        const reply = this.read(objectId);
        // Taken by the capture, which handles its failure; one left untaken fails unheard.
        reply.catch(() => undefined);
        reads.set(objectId, reply);
      }
      if (lastLevel) context.channel.captureCommand('Debugger.resume').catch(() => undefined);
    });
    this.prefetched = { reads, resumed: lastLevel, at };
  }

  /**
   * When the resume left with the prefetched reads: a promise settled once the target has answered them (or at the
   * capture's time budget). The target is answering them then, and needs the CPU more than the broker's own work on
   * the pause, none of which it waits for.
   */
  prefetchAnswered(): Promise<void> | undefined {
    const { reads, resumed } = this.prefetched;
    if (!resumed) return undefined;
    let timer: NodeJS.Timeout | undefined;
    const bound = new Promise<void>((resolve) => (timer = setTimeout(resolve, this.context.target().snapshot.timeBudgetMs)));
    return Promise.race([Promise.allSettled(reads.values()).then(() => undefined), bound]).finally(() => clearTimeout(timer));
  }

  private read(objectId: string): ReturnType<GetProperties> {
    return this.context.channel.captureCommand('Runtime.getProperties', { objectId, ownProperties: true, generatePreview: true }) as ReturnType<GetProperties>;
  }

  async onPause(message: CdpMessage): Promise<void> {
    const { context } = this;
    const { breakpoints, pauses } = context;
    const prefetched = this.prefetched;
    this.prefetched = noPrefetch();
    const { live, quiet } = breakpoints.sortHits(message.params?.hitBreakpoints);
    pauses.ownPause = live.length > 0 || quiet.length > 0;
    if (context.isEnding()) return;
    if (live.length === 0 && quiet.length === 0) {
      // Not ours (a `debugger;` statement, another debugger): left alone, but never held past maxPauseSeconds.
      pauses.armForeignPauseWatchdog(message.params?.reason);
      return;
    }
    const previous = this.handling;
    let handled!: () => void;
    const handling = (this.handling = new Promise<void>((resolve) => (handled = resolve)));
    try {
      if (previous) await previous;
      await this.handle(message, prefetched);
    } finally {
      if (this.handling === handling) this.handling = undefined;
      handled();
    }
  }

  /** One pause of this session's breakpoints: captured, or skipped by a rate limit; resumed either way. */
  private async handle(message: CdpMessage, prefetched: Prefetched): Promise<void> {
    const { context } = this;
    const { breakpoints, pauses } = context;
    const params = message.params ?? {};
    // Sorted again: the bookkeeping of the pause before this one may have changed the breakpoints meanwhile.
    const { live: hits, quiet } = breakpoints.sortHits(params.hitBreakpoints);
    if (context.isEnding()) return;
    let resumed = prefetched.resumed;
    // Resumes the target at once, without waiting for any record (the capture's record says so); once.
    const resume = (): void => {
      if (resumed) return;
      resumed = true;
      this.context.channel.captureCommand('Debugger.resume').catch(() => undefined);
    };
    // A pause a pause-mode session here holds as its own (its breakpoint on the same line) is its client's to resume:
    // the capture leaves it to that session (its watchdog bounds it), and this one's foreign-pause watchdog too.
    const shared = pauses.sharedWithShowing();
    // When the pause reached this session (its own work on it, such as the learning, may have taken a while since).
    const arrivedAt = Number.isFinite(pauses.heardAt) ? pauses.heardAt : performance.now();
    const release = async (): Promise<void> => {
      if (resumed) return;
      if (shared && (await pauses.shownByFellow(arrivedAt))) pauses.armForeignPauseWatchdog();
      else resume();
    };
    if (hits.length === 0 || !context.auditAccepting()) {
      // A hit of a breakpoint the broker is taking out of V8 (or nothing could record a capture): resumed at once.
      await release();
      breakpoints.skipped([...hits, ...quiet]);
      return;
    }
    if (unlearnedScopesSkip(context, params, hits, quiet)) {
      await release();
      return;
    }
    const limits = context.target().snapshot;
    // How long the target is held: a duration of real work, measured finely, from the pause's arrival when its
    // reads went out then (the broker's own work on it may wait for their answers).
    const started = prefetched.at ?? performance.now();
    const frames = (params.callFrames as PausedFrameInput[] | undefined) ?? [];
    let captureFor: string | undefined;
    let skipped: { breakpointId: string; reason: string; until: number } | undefined;
    const logpoints = hits.filter((id) => breakpoints.get(id)?.logpoint !== undefined);
    const bound = pauses.pauseBound(started);
    for (const id of logpoints) if (frames[0] && bound.check(id)) await emitLogpoint(context, id, frames[0]);
    for (const id of hits.filter((h) => !logpoints.includes(h))) {
      const entry = breakpoints.get(id);
      if (!entry) continue;
      const state = breakpoints.rate(id);
      if (entry.condition !== undefined && frames[0] && !(bound.check(id) && (await pauses.conditionHolds(id, entry.condition, frames[0])))) continue;
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
    const intervalReason = `at most one capture every ${limits.minIntervalMs} ms per breakpoint`;
    const capturedAt = context.now();
    const throttledUntil = capturedAt + limits.minIntervalMs;
    let removedWithCapture = false;
    if (captureFor && breakpoints.rate(captureFor).captures + 1 < limits.maxCapturesPerBreakpoint) {
      // The rate limit takes the breakpoint out of V8 ahead of the resume (which the capture sends with its last
      // reads), so V8 handles the removal while still paused and the hot path does not pause on it again, for
      // nothing, until the removal arrives. The reads prefetched as the pause arrived are answered meanwhile.
      breakpoints.throttle(captureFor, throttledUntil, intervalReason, false, true);
      removedWithCapture = breakpoints.get(captureFor)?.throttled !== undefined;
      // The removal leaves from the breakpoint's queue of changes, a microtask away: it goes first.
      if (removedWithCapture) await new Promise((resolve) => setImmediate(resolve));
    }
    let capture: (Capture & { reads?: number }) | undefined;
    if (captureFor) {
      try {
        // The capture's first reads and the resume that may follow them leave in one write.
        const capturing = context.channel.batch(() =>
          captureFrames(
            frames,
            context.labels.scriptUrls,
            async (objectId) => {
              const early = prefetched.reads.get(objectId);
              prefetched.reads.delete(objectId);
              // Never a read once the target has resumed: what it held is gone, and the capture must not race it.
              if (!early && resumed) throw new Error('the target had resumed');
              const reply = await (early ?? this.read(objectId));
              // A captured process object (a local holding it) shows the marker for its pid, as a read would.
              withholdProcessFacts('Runtime.getProperties', reply);
              return reply;
            },
            limits,
            { resume: shared ? () => undefined : resume, ...(prefetched.at !== undefined ? { startedAt: prefetched.at } : {}) },
          ),
        );
        capture = await capturing;
      } catch (err) {
        capture = { frames: [], durationMs: 0, bytes: 0, truncated: `capture failed: ${(err as Error).message}` };
      }
    }
    // Resumed by the capture with its last reads (V8 resumes right after answering them, about now), or here: the
    // capture is in hand, the target must not wait for the record or the client.
    await release();
    const pauseMs = Math.round((performance.now() - started) * 1000) / 1000;
    if (!captureFor)
      pauses.chargeHeldPause(
        hits.filter((id) => !bound.unchecked(id)),
        pauseMs,
      );
    bound.suspendUnchecked();
    if (skipped && !captureFor) {
      breakpoints.rate(skipped.breakpointId).skipped++;
      breakpoints.throttle(skipped.breakpointId, skipped.until, skipped.reason, false);
      breakpoints.throttleNotice(skipped.breakpointId, skipped.reason, skipped.until);
      return;
    }
    if (!captureFor || !capture) return;
    const state = breakpoints.rate(captureFor);
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
}
