/**
 * Exception pauses: an exception's message is text the program built, often from the very value that failed
 * (`new Error('login failed for ' + password)`), and the redactor can scrub a value out of free text only once it
 * knows it. So before an exception pause is redacted and shown, the broker reads what the paused frames hold:
 * each scope object (Runtime.getProperties, own properties: no getter runs, no code at all) and the objects their
 * bindings hold, a few levels down, and learns every value held there under a sensitive name. The pause's data,
 * and every later read of the error (its message and stack, Runtime.getExceptionDetails, the record), are then
 * scrubbed of it. Bounded in frames, scopes, depth, reads and time: the target waits, paused, while it runs.
 */
import { isProcessObject } from '../gate/processFacts';
import { pairedName } from '../policy/redactionPolicy';
import { isRecord, type PausedFrameInput } from '../gate/targetFrame';
import type { SessionContext } from './context';

export const exceptionLearningLimits = {
  /**
   * The frames read, from the top: where the message was built, and its callers (a secret passed in, often through a
   * few layers: a login's password reached the throw five frames down). Scopes and reads bound the cost.
   */
  frames: 8,
  /** Scope objects read in all (of the global scope, the whole process, only what it holds under sensitive names). */
  scopes: 16,
  /**
   * Objects below a scope that are read: `config.db.password` is two below, `vault.a.b.c.password` four, a service
   * registry's `services.billing.stripe.live.current.apiKey` six. The reads' bound keeps the cost of a deep one.
   */
  depth: 8,
  /** Runtime.getProperties reads in all. */
  reads: 64,
  /** Time the target is held for it, at most (each command is bounded by its own timeout too). */
  ms: 1500,
};

/**
 * An ordinary pause's reads of long-lived scopes (each read once a session, so a hot line pays it once): more than an
 * exception pause's, which reads the frames' scopes at every exception. A module scope holding more objects than this
 * is read on at the next pauses in it (by property path; ids die at the resume), and counts as read only once its walk
 * is done, or once `scopeReads` reads went into it.
 */
export const pauseLearningLimits = { ...exceptionLearningLimits, reads: 256, scopeReads: 4096 };

/** Internal slots the walk follows: a Map's or Set's entries, a Proxy's target, a WeakRef's target, a bound `this`. */
const followedSlots = new Set(['[[Entries]]', '[[Target]]', '[[WeakRefTarget]]', '[[BoundThis]]', '[[BoundArgs]]']);

/** Node's timers and their lists, linked to each other through `_idleNext` and `_idlePrev`. */
const timerClasses = new Set(['Timeout', 'TimersList', 'Immediate', 'ImmediateList']);

/** Elements of a list the learning still reads (the elements of a longer one are not read at all). */
const maxListRead = 10_000;

/** Whether a Debugger.paused is a pause on an exception or a promise rejection. */
export function isExceptionPause(params: Record<string, unknown> | undefined): boolean {
  return params?.reason === 'exception' || params?.reason === 'promiseRejection';
}

/**
 * Learns the values held under sensitive names in the scopes of an exception pause's top frames, what their
 * objects hold (nested, Map entries by key), and on the thrown value itself. Returns how many reads it made.
 * Never throws: what it could not read is still scrubbed by name, pattern and what was learned before.
 */
export async function learnAtExceptionPause(context: SessionContext, params: Record<string, unknown>, limits = exceptionLearningLimits): Promise<number> {
  if (!context.redactor.active) return 0;
  // The thrown value's own fields (`err.token = …`), then each frame's scopes.
  const roots: string[] = [];
  const data = isRecord(params.data) ? params.data : undefined;
  if (data && typeof data.objectId === 'string') roots.push(data.objectId);
  let globalRoot: string | undefined;
  for (const frame of framesOf(params, limits)) {
    for (const scope of frame.scopeChain) {
      if (typeof scope.object.objectId !== 'string' || roots.length > limits.scopes) continue;
      if (scope.type !== 'global') roots.push(scope.object.objectId);
      else globalRoot ??= scope.object.objectId;
    }
  }
  // The global object once a session, what it holds under sensitive names and the environment's secrets: a message
  // built from `process.env.UPSTREAM_API_KEY` is scrubbed only once the key is known.
  const known = scopesRead(context);
  const all: (string | Root)[] = roots;
  if (globalRoot !== undefined && !known.has('global')) {
    known.add('global');
    all.push({ objectId: globalRoot, onlySensitive: true });
  }
  return learnBelow(context, all, limits, (objectId) => {
    if (objectId === globalRoot) known.delete('global');
  });
}

/** The long-lived scopes (and 'global') a session has read, made on first use. */
function scopesRead(context: SessionContext): Set<string> {
  let known = readScopes.get(context);
  if (!known) readScopes.set(context, (known = new Set<string>()));
  return known;
}

/** Long-lived scopes a session reads at most. */
const maxScopesRead = 10_000;

/** Long-lived scopes (closure, module, script) a session has read at an ordinary pause, by script and start. */
const readScopes = new WeakMap<SessionContext, Set<string>>();
/** Sessions that have read (or are reading) the process's environment. */
const envRead = new WeakSet<SessionContext>();

/**
 * An ordinary pause shown to the client: the long-lived scopes of its frames (closure, module, script), each
 * read once per session, so the secrets a module holds under sensitive names are known before the program writes
 * them into console output later; and the frames' own scopes (local, block, catch), so a value the program copied
 * from one into free text (an error's message) is known before the client reads that text. Run after the pause is
 * shown; the client's requests wait for it (learningInFlight).
 */
export async function learnAtPause(context: SessionContext, params: Record<string, unknown>, limits = pauseLearningLimits, frameScopes = true): Promise<number> {
  if (!context.redactor.active) return 0;
  const known = scopesRead(context);
  const roots: (string | Root)[] = [];
  const keyOf = new Map<string, string>();
  let globalRoot: string | undefined;
  for (const frame of framesOf(params, limits)) {
    for (const scope of frame.scopeChain as { type: string; object: { objectId?: string }; startLocation?: { scriptId?: unknown; lineNumber?: unknown; columnNumber?: unknown } }[]) {
      if (typeof scope.object.objectId !== 'string' || roots.length >= limits.scopes) continue;
      // The frame's own scopes, at every pause: an error in a catch block quotes a local `password` it was built from.
      if (['local', 'block', 'catch'].includes(scope.type)) {
        if (frameScopes) roots.push(scope.object.objectId);
        continue;
      }
      // The global scope is the whole process: only what it holds under sensitive names (`globalThis.appSecrets`).
      if (scope.type === 'global') {
        if (!known.has('global')) {
          known.add('global');
          globalRoot = scope.object.objectId;
          roots.push({ objectId: scope.object.objectId, onlySensitive: true });
        }
        continue;
      }
      if (!['closure', 'module', 'script'].includes(scope.type)) continue;
      const where = scopeKey(scope, frame);
      if (known.has(where) || known.size >= maxScopesRead) continue;
      known.add(where);
      keyOf.set(scope.object.objectId, where);
      // Node's own modules (timers, streams: thousands of objects, no names of the app's) get one bounded walk.
      if (context.labels.urlOf(frame)?.startsWith('node:')) {
        roots.push({ objectId: scope.object.objectId, walk: { node: newPathNode(), reads: 0, cap: exceptionLearningLimits.reads } });
        continue;
      }
      const walk = walksOf(context).get(where) ?? { node: newPathNode(), reads: 0 };
      walksOf(context).set(where, walk);
      roots.push({ objectId: scope.object.objectId, walk, node: walk.node });
    }
  }
  if (roots.length === 0) return 0;
  // A scope whose read failed was not learned: the next pause in it reads it again.
  const learned = learnBelow(context, roots, limits, (objectId) => {
    const where = keyOf.get(objectId);
    if (where !== undefined) known.delete(where);
    if (objectId === globalRoot) known.delete('global');
  }).then((reads) => {
    // A scope whose walk the bounds cut is read on at the next pause in it, from where this one stopped.
    for (const where of keyOf.values()) {
      const walk = walksOf(context).get(where);
      if (!walk) continue;
      if (settle(walk.node) || walk.reads >= limits.scopeReads) walksOf(context).delete(where);
      else known.delete(where);
    }
    return reads;
  });
  const settled = learned.then(
    () => undefined,
    () => undefined,
  );
  inFlight.set(context, settled);
  void settled.then(() => {
    if (inFlight.get(context) === settled) inFlight.delete(context);
  });
  return learned;
}

/**
 * Whether a pause's frames hold a long-lived scope (closure, module, script, or the global object) this session has
 * not read yet: a capture then waits for learnAtPause first, instead of reading with its resume (snapshot.ts).
 */
export function hasUnlearnedScopes(context: SessionContext, params: Record<string, unknown> | undefined, limits = exceptionLearningLimits): boolean {
  if (!params || !context.redactor.active) return false;
  const known = readScopes.get(context);
  for (const frame of framesOf(params, limits)) {
    for (const scope of frame.scopeChain as { type: string; object: { objectId?: string }; startLocation?: { scriptId?: unknown; lineNumber?: unknown; columnNumber?: unknown } }[]) {
      if (typeof scope.object.objectId !== 'string') continue;
      if (scope.type === 'global') {
        if (!known?.has('global')) return true;
        continue;
      }
      if (!['closure', 'module', 'script'].includes(scope.type)) continue;
      // Past the bound of scopes a session learns, the rest are not read at all (learnAtPause).
      if (!known?.has(scopeKey(scope, frame)) && (known?.size ?? 0) < maxScopesRead) return true;
    }
  }
  return false;
}

/**
 * A hit the broker decides alone (a condition, a logpoint, a capture) in code whose long-lived scopes the learning has
 * not finished reading (a module holding more than one pause reads): nothing is evaluated or captured there, or an
 * alias of a secret still unlearned would decide a condition or show in a message. Resumed unseen, and the client told;
 * the learning reads on at the next hits. Whether it skipped.
 */
export function unlearnedScopesSkip(context: SessionContext, params: Record<string, unknown>, hits: readonly string[], quiet: readonly string[] = []): boolean {
  if (!context.redactor.active || !hasUnlearnedScopes(context, params)) return false;
  context.breakpoints.skipped([...hits, ...quiet]);
  for (const id of hits)
    context.breakpoints.throttleNotice(id, 'the scopes here hold more than one pause reads, and what they hold under sensitive names is still being learned (read on at the next hits)');
  return true;
}

const scopeKey = (scope: { type: string; startLocation?: { scriptId?: unknown; lineNumber?: unknown; columnNumber?: unknown } }, frame: PausedFrameInput) => {
  const start = scope.startLocation;
  return start ? `${scope.type} ${String(start.scriptId)}:${String(start.lineNumber)}:${String(start.columnNumber)}` : `${scope.type} ${frame.location.scriptId}`;
};

/** The learning at an ordinary pause still reading, per session. */
const inFlight = new WeakMap<SessionContext, Promise<void>>();

/**
 * Resolves when the learning at an ordinary pause is done, if one is reading: the client's requests wait for it, so
 * an answer is never redacted before the values its pause holds are known (a read of the scope right after the pause
 * had an error's message, built from a module's token, shown before the learning found the token). Bounded by
 * exceptionLearningLimits.ms.
 */
export function learningInFlight(context: SessionContext): Promise<void> | undefined {
  return inFlight.get(context);
}

const framesOf = (params: Record<string, unknown>, limits: typeof exceptionLearningLimits) =>
  (Array.isArray(params.callFrames) ? (params.callFrames as PausedFrameInput[]) : []).slice(0, limits.frames);

/** Reads the objects `roots` and what they hold, within `limits`, learning the values under sensitive names. */
async function learnBelow(context: SessionContext, roots: readonly (string | Root)[], limits: typeof exceptionLearningLimits, unread?: (objectId: string) => void): Promise<number> {
  const { redactor, channel } = context;
  const deadline = performance.now() + limits.ms;
  const timeoutMs = Math.max(100, Math.min(limits.ms, context.limits.evaluateTimeoutMs));
  const why = 'learn the sensitive values a pause holds (redaction)';
  const over = () => reads >= limits.reads || performance.now() > deadline || context.isEnding();
  let reads = 0;
  // Quiet: the answer is read by the broker alone and only its size is recorded; it is not redacted on the way in,
  // so the values under sensitive names are here to learn. Own properties only: no getter runs, no code at all.
  const read = async (objectId: string): Promise<Record<string, unknown>> => {
    reads++;
    try {
      return await channel.command('Runtime.getProperties', { objectId, ownProperties: true }, { quiet: true, timeoutMs, why });
    } catch {
      unread?.(objectId);
      return {};
    }
  };
  const learnPrimitive = (value: Record<string, unknown>, name: string) => {
    redactor.learnValue(value.value, name);
    if (value.type === 'string' || value.type === 'number') redactor.learnValue(value.description, name);
    if (value.type === 'bigint') redactor.learnValue(value.unserializableValue, name);
  };
  /**
   * Learns the sensitive primitives of one answer; returns the objects it holds, to read next. Inside an object held
   * under a sensitive name every primitive is its secret (`credentials.key`), learned under that name: the object
   * reached another way (`this` in its method, an alias) then shows none of them.
   */
  const learnFrom = (answer: Record<string, unknown>, container: string | undefined, onlySensitive = false, subtype?: string, ofProcess = false, className?: string): Root[] => {
    const props = (Array.isArray(answer.result) ? (answer.result as unknown[]) : []).filter(isRecord);
    // Of the process object, only its environment, and there only what is held under sensitive names.
    if (ofProcess) {
      const env = props.find((p) => p.name === 'env' && isRecord(p.value) && typeof p.value.objectId === 'string');
      return env ? [{ objectId: (env.value as { objectId: string }).objectId, onlySensitive: true, name: 'env' }] : [];
    }
    // A typed array under a sensitive name (a Buffer holding a signing key): its memory, each element too small to
    // learn alone; an ArrayBuffer or a DataView through the byte view V8 lists for it.
    if (subtype === 'typedarray' && container !== undefined) {
      const elements = props
        .filter((p) => typeof p.name === 'string' && /^(0|[1-9]\d*)$/.test(p.name) && isRecord(p.value) && typeof p.value.value === 'number')
        .sort((a, b) => Number(a.name) - Number(b.name))
        .map((p) => (p.value as { value: number }).value);
      redactor.learnBytes(elements, container, className);
    }
    if ((subtype === 'arraybuffer' || subtype === 'sharedarraybuffer' || subtype === 'dataview') && container !== undefined) {
      const internal = (Array.isArray(answer.internalProperties) ? (answer.internalProperties as unknown[]) : []).filter(isRecord);
      const bytes = internal.find((p) => p.name === (subtype === 'dataview' ? '[[Buffer]]' : '[[Uint8Array]]'));
      const object = isRecord(bytes?.value) && typeof bytes.value.objectId === 'string' ? bytes.value : undefined;
      if (!object) return [];
      return [{ objectId: object.objectId as string, name: String(bytes?.name), label: container, subtype: subtype === 'dataview' ? 'arraybuffer' : 'typedarray', className: 'Uint8Array' }];
    }
    const internal = (Array.isArray(answer.internalProperties) ? (answer.internalProperties as unknown[]) : []).filter(isRecord);
    const objects: Root[] = [];
    // A Map entry ({key, value}) is known by its key.
    const key = props.find((p) => p.name === 'key');
    const entryKey = key && isRecord(key.value) && typeof key.value.value === 'string' && props.some((p) => p.name === 'value') ? key.value.value : undefined;
    // A list's strings by index: a value beside a sensitive name (`['authorization', v]`, req.rawHeaders) is its value.
    const texts = new Map<string, string>();
    for (const p of props) if (typeof p.name === 'string' && isRecord(p.value) && typeof p.value.value === 'string') texts.set(p.name, p.value.value);
    const textAt = (index: number) => texts.get(String(index));
    // Private fields by their names (`#token`), and what a Proxy, a WeakRef or a bound function holds.
    const privates = (Array.isArray(answer.privateProperties) ? (answer.privateProperties as unknown[]) : []).filter(isRecord);
    for (const prop of [...props, ...privates, ...internal.filter((p) => typeof p.name === 'string' && followedSlots.has(p.name))]) {
      const name = prop.name === 'value' && entryKey !== undefined ? entryKey : typeof prop.name === 'string' ? prop.name : undefined;
      const value = isRecord(prop.value) ? prop.value : undefined;
      if (name === undefined || !value) continue;
      // The process object is the whole process (versions, config: dozens of objects), no app data: only its
      // environment is read, once a session, wherever the process object is met first (the global object's `process`).
      if (isProcessObject(value)) {
        if (typeof value.objectId === 'string' && !envRead.has(context)) {
          envRead.add(context);
          objects.push({ objectId: value.objectId, ofProcess: true, name: String(prop.name) });
        }
        continue;
      }
      const label = redactor.isSensitive(name)
        ? name
        : ((texts.size > 0
            ? pairedName(
                name,
                textAt,
                (n) => redactor.isSensitive(n) && !redactor.holdsLearned(n),
                (t) => redactor.isListedName(t),
              )
            : undefined) ?? container);
      if (onlySensitive && label === undefined) continue;
      // The links of Node's timer lists (a server's sockets reach every pending timer, eight deep, through them): on
      // the demo service they were 165 of a module's 194 reads, 200 ms of a hot line's pause. A timer's own fields
      // (its arguments, what the program hung on it) are read.
      if (className !== undefined && timerClasses.has(className) && (prop.name === '_idleNext' || prop.name === '_idlePrev')) continue;
      if (value.type === 'object' && typeof value.objectId === 'string') {
        // A large list is not read: V8 would list every element while the target waits (its elements hold no names).
        if (!(value.subtype === 'array' || value.subtype === 'typedarray') || Number(/\((\d+)\)$/.exec(String(value.description))?.[1] ?? 0) <= maxListRead) {
          objects.push({
            objectId: value.objectId,
            name: String(prop.name),
            ...(label !== undefined ? { label } : {}),
            ...(typeof value.subtype === 'string' ? { subtype: value.subtype } : {}),
            ...(typeof value.className === 'string' ? { className: value.className } : {}),
          });
        }
      } else if (label !== undefined) learnPrimitive(value, label);
    }
    return objects;
  };

  // Breadth first: the bindings before what their objects hold; what is held under a sensitive name before the rest
  // (where the reads' bound falls short, a module holding dozens of objects, it still reads `credentials` rather than
  // the objects beside it, which are read to find such names). An object a cut walk read at an earlier pause is read
  // again only to reach what it holds that is still unread, depth first, so each such read leads to new ones.
  const labelled = new Queue<Item>();
  const fresh = new Queue<Item>();
  const again: Item[] = [];
  const enqueue = (item: Item) => {
    if (item.node?.done) return;
    if (item.node?.read) again.push(item);
    else (item.label !== undefined ? labelled : fresh).push(item);
  };
  for (const root of roots) enqueue(typeof root === 'string' ? { objectId: root, depth: 0 } : { ...root, depth: 0 });
  const seen = new Set<string>();
  for (;;) {
    if (over()) break;
    const item = labelled.shift() ?? fresh.shift() ?? again.pop();
    if (item === undefined) break;
    const { objectId, label, onlySensitive, subtype, ofProcess, className, node, walk, depth } = item;
    if (walk?.cap !== undefined && walk.reads >= walk.cap) {
      if (ofProcess) envRead.delete(context);
      continue;
    }
    // Reached another way already at this pause: that way's walk covers it.
    if (seen.has(objectId)) {
      if (node) node.done = true;
      continue;
    }
    seen.add(objectId);
    if (walk) walk.reads++;
    const answer = await read(objectId);
    if (ofProcess && answer.result === undefined) envRead.delete(context);
    const held = learnFrom(answer, label, onlySensitive, subtype, ofProcess, className);
    if (answer.result === undefined) {
      // An object its read failed for (over the frame bound, or timed out) is not read again at every pause: a
      // 20,000-key object held each hit 0.1-0.3 s and kept the walk from ever ending. A scope is (unread).
      if (node && depth > 0) node.done = true;
      continue;
    }
    if (node) {
      node.read = true;
      const children = new Map<string, PathNode>();
      for (const child of held) children.set(child.name ?? '', node.children.get(child.name ?? '') ?? newPathNode());
      node.children = children;
      if (depth >= limits.depth) node.done = true;
    }
    if (depth >= limits.depth) continue;
    for (const child of held) enqueue({ ...child, depth: depth + 1, ...(walk ? { walk } : {}), ...(node ? { node: node.children.get(child.name ?? '') } : {}) });
  }
  if (over()) {
    for (const item of [...labelled.rest(), ...fresh.rest(), ...again]) if (item.ofProcess) envRead.delete(context);
  }
  // A scope the bounds left unread was not learned either.
  for (const root of roots) {
    const objectId = typeof root === 'string' ? root : root.objectId;
    if (!seen.has(objectId)) unread?.(objectId);
  }
  return reads;
}

/** A first-in first-out list that takes from its head without moving the rest. */
class Queue<T> {
  private readonly items: T[] = [];
  private head = 0;
  push(item: T): void {
    this.items.push(item);
  }
  shift(): T | undefined {
    return this.head < this.items.length ? this.items[this.head++] : undefined;
  }
  rest(): T[] {
    return this.items.slice(this.head);
  }
}

/**
 * What the learning has read below a long-lived scope, by the property names it followed: objects' ids die at the
 * resume, names do not. `done`: it and all it holds were read (or lie below the depth bound).
 */
interface PathNode {
  read: boolean;
  done: boolean;
  children: Map<string, PathNode>;
}

/** A long-lived scope's walk, carried on across pauses until done: its tree and the reads it has cost. */
interface ScopeWalk {
  readonly node: PathNode;
  reads: number;
  /** The reads it may make at this pause, when bounded on its own (a walk of one of Node's modules, never carried on). */
  readonly cap?: number;
}

const newPathNode = (): PathNode => ({ read: false, done: false, children: new Map() });

/** Marks done what has been read with all it holds; whether `node` is. */
function settle(node: PathNode): boolean {
  if (node.done) return true;
  if (!node.read) return false;
  let all = true;
  for (const child of node.children.values()) if (!settle(child)) all = false;
  return (node.done = all);
}

/** The cut walks of long-lived scopes, per session, by scope. */
const scopeWalks = new WeakMap<SessionContext, Map<string, ScopeWalk>>();
function walksOf(context: SessionContext): Map<string, ScopeWalk> {
  let walks = scopeWalks.get(context);
  if (!walks) scopeWalks.set(context, (walks = new Map()));
  return walks;
}

/** An object in the walk: how deep, and where it stands in its scope's walk. */
interface Item extends Root {
  readonly depth: number;
}

/** An object to read, and the sensitive name it is held under (directly or by a container), if any. */
interface Root {
  readonly objectId: string;
  readonly label?: string;
  /** The global object: only its members under sensitive names are followed. */
  readonly onlySensitive?: boolean;
  /** The object's subtype as the answer naming it gave it ('typedarray': its bytes are learned as one). */
  readonly subtype?: string;
  /** The process object: only its `env` is followed, and there only what is under sensitive names. */
  readonly ofProcess?: boolean;
  /** Its class (a typed array's element type: `Int8Array`, `Buffer`). */
  readonly className?: string;
  /** The property it was reached by. */
  readonly name?: string;
  /** Its place in a long-lived scope's walk, carried on across pauses. */
  readonly node?: PathNode;
  readonly walk?: ScopeWalk;
}
