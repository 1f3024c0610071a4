/**
 * Reading objects of the target for the interpreter: own data properties, the prototype chain (data
 * properties only), array elements, Map/Set entries, private fields. Every value read gets its taint here:
 * from a redacted name (property, Map key, private field), from its container, or from a string that looks
 * secret. A getter is never invoked (read by name it is refused; listed among an object's values it reads as
 * "(getter)"); a Proxy is never read through.
 */
import type { Protocol } from 'devtools-protocol';
import { LoupeRefusal, type Spend } from './budget';
import { learnedLabel, type RedactionContext } from './redaction';
import type { PropertiesRead, TargetReader } from './reader';
import { describedSize, fromRemote, prim, type Taint, type Val } from './values';
import { isProcessObject, isWithheldField, withheldReason } from '../gate/processFacts';
import { pairedName } from '../policy/redactionPolicy';

export interface ReadContext {
  readonly reader: TargetReader;
  readonly spend: Spend;
  readonly redaction: RedactionContext;
}

type RemoteVal = Extract<Val, { kind: 'remote' }>;

export async function readObject(ctx: ReadContext, v: RemoteVal): Promise<PropertiesRead> {
  const object = v.object;
  if (object.subtype === 'proxy') {
    throw new LoupeRefusal('target', `${object.description ?? 'the object'} is a Proxy: Loupe never reads through one (its traps are app code)`);
  }
  if (!object.objectId) return { result: [] };
  // V8 lists every element of a list it is asked for, all in one command the target waits on (measured: element 5 of
  // a 2,000,000-byte Uint8Array held the target 10 s); a list past the element budget is not read at all.
  const size = isRemoteList(v) ? describedSize(object) : undefined;
  if (size !== undefined && size > ctx.spend.budget.maxElements) {
    throw new LoupeRefusal(
      'budget',
      `${object.description ?? 'the list'} is not read: V8 would list all its ${size} elements while the target waits, and Loupe reads lists of at most ${ctx.spend.budget.maxElements}`,
    );
  }
  const read = await ctx.reader.getProperties(object.objectId, ctx.spend, true);
  // The process id and its kin are not among what an expression can list (Object.keys, spread, JSON.stringify).
  return isProcessObject(object) ? { ...read, result: read.result.filter((d) => !isWithheldField(d.name)) } : read;
}

/**
 * A list holding a learned value as its elements, whatever name reached it: a typed array (or an array of numbers)
 * holding bytes learned under a redacted name (a signing key's Buffer passed on as `key`, `Buffer.from(apiKey)`), or
 * a list or String wrapper of one-character strings spelling a learned value (`apiKey.split('')`, `new String(apiKey)`).
 * Its elements are then as inside a redacted container; its length stays its shape.
 */
function bytesTaint(ctx: ReadContext, v: RemoteVal, read: PropertiesRead): Taint | undefined {
  const { subtype, className } = v.object;
  if (v.taint || (subtype !== 'typedarray' && subtype !== 'array' && className !== 'String')) return undefined;
  const elements: unknown[] = [];
  for (const d of read.result) if (!d.symbol && /^(0|[1-9]\d*)$/.test(d.name)) elements[Number(d.name)] = d.value?.value;
  if (elements.length === 0) return undefined;
  if (subtype !== 'typedarray' && elements.every((e) => typeof e === 'string' && [...e].length === 1)) {
    return ctx.redaction.charsSecret?.(elements.join('')) ? { full: true, label: learnedLabel } : undefined;
  }
  if (subtype === undefined || !ctx.redaction.secretBytes || !elements.every((e) => typeof e === 'number')) return undefined;
  const name = ctx.redaction.secretBytes(
    Array.from(elements, (e) => (e as number | undefined) ?? NaN),
    subtype === 'typedarray' ? className : undefined,
  );
  return name === undefined ? undefined : { full: true, label: name };
}

/**
 * The taint of something read from `parent` under `name`: the name's if it is redacted (content: its shape
 * stays visible). Inside a redacted container everything is secret, keys and presence included: a map of
 * sessions keyed by token would otherwise answer `sessions[guess] === undefined`.
 */
export function childTaint(ctx: ReadContext, parent: Taint | undefined, name: string | undefined): Taint | undefined {
  if (parent) return parent.full ? parent : { full: true, label: parent.label };
  if (name !== undefined && ctx.redaction.isSensitive(name)) return { full: false, label: name };
  return undefined;
}

/**
 * An error's own `message` and `stack`: text the program built, often from the value that failed, withheld as the
 * session's redaction withholds it wherever an error shows (the policy's exceptionMessages).
 */
function errorFieldTaint(ctx: ReadContext, v: RemoteVal, name: string): Taint | undefined {
  if (v.object.subtype !== 'error' || (name !== 'message' && name !== 'stack') || !ctx.redaction.withholdsExceptionMessages?.()) return undefined;
  return { full: false, label: 'exception message' };
}

/** A list's strings by index, from a read of it (for pairTaint). */
function listTexts(descriptors: readonly Protocol.Runtime.PropertyDescriptor[]): (index: number) => string | undefined {
  const texts = new Map<string, string>();
  for (const d of descriptors) if (!d.symbol && d.value?.type === 'string' && typeof d.value.value === 'string') texts.set(d.name, d.value.value);
  return (index) => texts.get(String(index));
}

/** The taint of a list's element that sits beside a sensitive name (`['authorization', v]`, req.rawHeaders): that name's. */
function pairTaint(ctx: ReadContext, v: RemoteVal, name: string, textAt: (index: number) => string | undefined): Taint | undefined {
  if (v.taint || !isRemoteList(v)) return undefined;
  const label = pairedName(
    name,
    textAt,
    (n) => ctx.redaction.isSensitive(n) && ctx.redaction.secretInTarget(n) === undefined,
    (t) => ctx.redaction.isListedName?.(t) ?? false,
  );
  return label === undefined ? undefined : { full: false, label };
}

/** A value read from the target, tainted by where it was read and, for strings, by what it looks like. */
export function readValue(ctx: ReadContext, object: Protocol.Runtime.RemoteObject | undefined, taint: Taint | undefined): Val {
  if (!object) return prim(undefined, taint);
  // A secret read by name: exception and console text that later quotes it is scrubbed too.
  if (taint && (typeof object.value === 'string' || typeof object.value === 'number')) ctx.redaction.learn?.(taint.label, String(object.value));
  if (!taint && object.type === 'string' && typeof object.value === 'string') {
    const found = ctx.redaction.secretInTarget(object.value);
    if (found) return prim(object.value, { full: false, label: found });
  }
  // A copy of the target's process id, parent's or inspector port (`const mine = process.pid`, a banner quoting the
  // port): withheld from every message, so not to be turned into other digits either (`mine + 1`, `String(mine).split('')`).
  if (!taint && ctx.redaction.processFactIn && (object.type === 'number' || object.type === 'bigint' || object.type === 'string')) {
    const text = object.type === 'string' ? object.value : object.type === 'number' ? String(object.value ?? object.unserializableValue) : object.unserializableValue?.replace(/n$/, '');
    const fact = typeof text === 'string' ? ctx.redaction.processFactIn(text) : undefined;
    if (fact !== undefined) return fromRemote(object, { full: false, label: fact });
  }
  // A number copied from a redacted field under another name (an OTP kept in `code`): its digits are the secret.
  if (!taint && (object.type === 'number' || object.type === 'bigint') && ctx.redaction.isLearned) {
    const digits = typeof object.value === 'number' ? String(object.value) : object.unserializableValue?.replace(/n$/, '');
    if (digits !== undefined && ctx.redaction.isLearned(digits)) return fromRemote(object, { full: false, label: learnedLabel });
  }
  // An object whose description quotes a secret (an error whose message the program built from a token): all of it.
  if (!taint && object.type === 'object' && typeof object.description === 'string') {
    const found = ctx.redaction.secretInTarget(object.description);
    if (found) return fromRemote(object, { full: true, label: found });
  }
  // Only what is not secret counts toward the character budget: a secret's length is content, and a refusal that
  // depends on it would answer `password.length` (no operation ever looks into a secret, so it builds nothing).
  if (!taint && typeof object.value === 'string') ctx.spend.string(object.value.length);
  return fromRemote(object, taint);
}

/** The value of one property descriptor; an accessor is described, never invoked. */
export function descriptorValue(ctx: ReadContext, d: Protocol.Runtime.PropertyDescriptor, parent: Taint | undefined, own?: Taint): Val {
  const taint = own ?? childTaint(ctx, parent, d.name);
  if (d.get && d.get.type !== 'undefined') return prim('(getter)', taint);
  if (!('value' in d) && d.set) return prim(undefined, taint);
  return readValue(ctx, d.value, taint);
}

// `get() { return _process; }`: the whole getter hands out one closure variable (Node's lazy globals such as
// `process` are defined this way). Its value is read from the getter's scopes; the getter never runs.
const trivialGetter = /^get(?:\s+[\w$]+)?\s*\(\)\s*\{\s*return\s+([A-Za-z_$][\w$]*)\s*;?\s*\}$/;

/**
 * A property read by name: a data property's value, or a trivial getter's variable. Any other getter is refused:
 * its value would be whatever app code returns, and a stand-in value would read as if it were the property's.
 */
export async function memberValue(ctx: ReadContext, d: Protocol.Runtime.PropertyDescriptor, parent: Taint | undefined, own?: Taint): Promise<Val> {
  const variable = d.get?.objectId ? trivialGetter.exec(d.get.description ?? '')?.[1] : undefined;
  if (!variable || !d.get?.objectId) {
    if (d.get && d.get.type !== 'undefined') throw getterRefusal(d.name);
    return descriptorValue(ctx, d, parent, own);
  }
  const taint = own ?? childTaint(ctx, parent, d.name) ?? childTaint(ctx, undefined, variable);
  const fn = await ctx.reader.getProperties(d.get.objectId, ctx.spend);
  const scopes = fn.internalProperties?.find((p) => p.name === '[[Scopes]]')?.value;
  if (!scopes?.objectId) throw getterRefusal(d.name);
  const list = await ctx.reader.getProperties(scopes.objectId, ctx.spend);
  for (const scope of list.result) {
    if (!scope.value?.objectId || scope.value.description === 'Global') continue;
    const names = await ctx.reader.getProperties(scope.value.objectId, ctx.spend);
    const found = names.result.find((x) => x.name === variable && !x.symbol);
    if (found) {
      if (found.get) throw getterRefusal(d.name);
      return readValue(ctx, found.value, taint);
    }
  }
  throw getterRefusal(d.name);
}

const getterRefusal = (name: string) =>
  new LoupeRefusal('call', `the property "${name.slice(0, 80)}" is a getter: reading it would run app code, which Loupe never does (expand the object to see its fields)`);

const prototypeOf = (read: PropertiesRead) => read.internalProperties?.find((p) => p.name === '[[Prototype]]')?.value;

/** `object[key]` for an object of the target: own property, then data properties up the prototype chain. */
export async function remoteMember(ctx: ReadContext, v: RemoteVal, key: string): Promise<Val> {
  const { object } = v;
  if ((object.subtype === 'map' || object.subtype === 'set') && key === 'size') {
    const size = describedSize(object);
    if (size !== undefined) return prim(size, v.taint?.full ? v.taint : undefined);
  }
  if (key === 'length' && isRemoteList(v)) {
    // A list's length is its shape, even for a list read from a redacted place.
    const length = describedSize(object) ?? (await remoteElements(ctx, v)).length;
    return prim(length, v.taint?.full ? v.taint : undefined);
  }
  // Inside a redacted container every field is secret, found or not: answered without a read, so neither the
  // answer nor the number of reads says whether the key exists.
  if (v.taint) return prim(undefined, childTaint(ctx, v.taint, key));
  if (isProcessObject(object) && isWithheldField(key)) throw new LoupeRefusal('deny', withheldReason(key));
  if (object.type === 'symbol') return prim(undefined);
  // Answered without a read, as inside a redacted container.
  const withheld = errorFieldTaint(ctx, v, key);
  if (withheld) return prim(undefined, withheld);
  const previewed = previewMember(ctx, v, key);
  if (previewed) return previewed;
  let current: RemoteVal = v;
  for (let hop = 0; hop <= ctx.spend.budget.maxPrototypeHops; hop++) {
    const read = await readObject(ctx, current);
    const learned = hop === 0 ? (bytesTaint(ctx, v, read) ?? (ctx.redaction.learnedAny?.() ? keysTaint(ctx, v, read.result) : undefined)) : undefined;
    if (learned) return prim(undefined, childTaint(ctx, learned, key));
    const own = read.result.find((d) => d.name === key && !d.symbol);
    if (own) return memberValue(ctx, own, v.taint, hop === 0 ? pairTaint(ctx, v, key, listTexts(read.result)) : undefined);
    if (hop === 0 && key.startsWith('#')) {
      const field = read.privateProperties?.find((p) => p.name === key);
      if (field) return readValue(ctx, field.value, childTaint(ctx, v.taint, key));
    }
    const proto = prototypeOf(read);
    if (!proto || proto.type !== 'object' || proto.subtype === 'null' || !proto.objectId) return prim(undefined, childTaint(ctx, v.taint, key));
    current = { kind: 'remote', object: proto, taint: v.taint };
  }
  return prim(undefined, childTaint(ctx, v.taint, key));
}

/**
 * A primitive own field answered from the preview V8 attached to the object when its parent was read: the
 * same value a read would give, without the read. Anything a preview may shorten or hide (long strings,
 * objects, accessors, private fields, fields past the preview's end) is read instead.
 */
function previewMember(ctx: ReadContext, v: RemoteVal, key: string): Val | undefined {
  const { preview } = v.object;
  if (!preview || v.object.type !== 'object' || (v.object.subtype !== undefined && v.object.subtype !== 'array') || key.startsWith('#')) return undefined;
  const field = preview.properties.find((p) => p.name === key);
  if (!field || field.valuePreview) return undefined;
  // A list of one-character strings or of numbers may spell a learned value (`apiKey.split('')`, its char codes): read
  // whole, so the list's taint (bytesTaint) decides its elements one by one too.
  // A key that is a learned value: the read decides (learnedKeyTaint), as for a key not in the preview.
  if (ctx.redaction.learnedAny?.() && keysTaint(ctx, v, preview.properties)) return undefined;
  if (isRemoteList(v) && ctx.redaction.learnedAny?.() && (field.type === 'number' || (field.type === 'string' && [...(field.value ?? '')].length === 1))) return undefined;
  const texts = (index: number) => {
    const before = preview.properties.find((p) => p.name === String(index));
    // A string the preview shortened is read instead: its whole text decides.
    return before?.type === 'string' && before.value !== undefined ? before.value : undefined;
  };
  if (isRemoteList(v) && preview.overflow !== false && Number(key) > 0 && texts(Number(key) - 1) === undefined) return undefined;
  const taint = childTaint(ctx, v.taint, key) ?? pairTaint(ctx, v, key, texts);
  const text = field.value ?? '';
  switch (field.type) {
    case 'string':
      // A redacted string is never shown, so a shortened one will do: whether it is read must not depend on
      // its length (the number of reads is on the record).
      return text.length < 100 || taint ? readValue(ctx, { type: 'string', value: text }, taint) : undefined;
    case 'number':
      return readValue(ctx, { type: 'number', unserializableValue: text }, taint);
    case 'boolean':
      return readValue(ctx, { type: 'boolean', value: text === 'true' }, taint);
    case 'undefined':
      return prim(undefined, taint);
    case 'bigint':
      return readValue(ctx, { type: 'bigint', unserializableValue: text }, taint);
    case 'object':
      return field.subtype === 'null' ? prim(null, taint) : undefined;
    default:
      return undefined;
  }
}

/** Whether `key in object`: own or inherited, data or accessor, without invoking anything. */
/**
 * An object of the target keyed by a learned value (a rate limiter keyed by API key, attempts keyed by PIN): which keys
 * it has is that secret, so every lookup of a key in it is (`guess in attempts`, `attempts[guess]`, Object.hasOwn), as
 * its listing is (Object.keys).
 */
export async function learnedKeyTaint(ctx: ReadContext, v: RemoteVal): Promise<Taint | undefined> {
  if (v.taint || !ctx.redaction.learnedAny?.() || v.object.type !== 'object') return undefined;
  const read = await readObject(ctx, v);
  return keysTaint(ctx, v, read.result);
}

/** A list's indices are its shape, not keys it was given. */
function keysTaint(ctx: ReadContext, v: RemoteVal, fields: readonly { name: string; symbol?: unknown }[]): Taint | undefined {
  const list = isRemoteList(v);
  for (const d of fields) {
    if (d.symbol || (list && /^(0|[1-9]\d*)$/.test(d.name))) continue;
    const label = ctx.redaction.secretInTarget(d.name);
    if (label !== undefined) return { full: true, label };
  }
  return undefined;
}

export async function remoteHas(ctx: ReadContext, v: RemoteVal, key: string): Promise<boolean> {
  if ((v.object.subtype === 'map' || v.object.subtype === 'set') && key === 'size') return true;
  let current: RemoteVal = v;
  for (let hop = 0; hop <= ctx.spend.budget.maxPrototypeHops; hop++) {
    const read = await readObject(ctx, current);
    if (read.result.some((d) => d.name === key && !d.symbol)) return true;
    const proto = prototypeOf(read);
    if (!proto || proto.type !== 'object' || proto.subtype === 'null' || !proto.objectId) return false;
    current = { kind: 'remote', object: proto, taint: v.taint };
  }
  return false;
}

/** Own enumerable string-keyed properties, in the target's order (Object.keys, spread, JSON). */
export async function remoteOwnEntries(ctx: ReadContext, v: RemoteVal): Promise<[string, Val][]> {
  const read = await readObject(ctx, v);
  const out: [string, Val][] = [];
  const textAt = listTexts(read.result);
  const taint = v.taint ?? bytesTaint(ctx, v, read);
  for (const d of read.result) {
    if (d.symbol || !d.enumerable || d.isOwn === false) continue;
    out.push([d.name, descriptorValue(ctx, d, taint, errorFieldTaint(ctx, v, d.name) ?? pairTaint(ctx, v, d.name, textAt))]);
  }
  ctx.spend.elements(out.length);
  return out;
}

const indexed = new Set(['array', 'typedarray']);

/** Whether the object is a list the interpreter reads by index: arrays, typed arrays, `arguments`. */
export const isRemoteList = (v: RemoteVal) => indexed.has(v.object.subtype ?? '') || (v.object.type === 'object' && v.object.className === 'Arguments');

/** The elements of an array, typed array or `arguments` object, holes as undefined. */
export async function remoteElements(ctx: ReadContext, v: RemoteVal): Promise<Val[]> {
  const size = describedSize(v.object);
  if (size !== undefined) ctx.spend.elements(size);
  const read = await readObject(ctx, v);
  const lengthProp = read.result.find((d) => d.name === 'length' && !d.symbol);
  const length = size ?? (typeof lengthProp?.value?.value === 'number' ? lengthProp.value.value : read.result.filter((d) => /^(0|[1-9]\d*)$/.test(d.name)).length);
  ctx.spend.elements(length);
  const byIndex = new Map<string, Protocol.Runtime.PropertyDescriptor>();
  for (const d of read.result) if (!d.symbol) byIndex.set(d.name, d);
  const textAt = listTexts(read.result);
  const taint = v.taint ?? bytesTaint(ctx, v, read);
  const out: Val[] = [];
  for (let i = 0; i < length; i++) {
    const d = byIndex.get(String(i));
    out.push(d ? descriptorValue(ctx, d, taint, pairTaint(ctx, v, d.name, textAt)) : prim(undefined, childTaint(ctx, taint, undefined)));
  }
  return out;
}

/**
 * The entries of a Map or Set of the target, from its `[[Entries]]`. A value is tainted by its key's name;
 * in a Map or Set read from a redacted place, keys are content too (a map of sessions keyed by token).
 */
export async function remoteEntries(ctx: ReadContext, v: RemoteVal): Promise<[Val, Val][]> {
  const size = describedSize(v.object);
  if (size !== undefined) ctx.spend.elements(size);
  const read = await readObject(ctx, v);
  const list = read.internalProperties?.find((p) => p.name === '[[Entries]]')?.value;
  if (!list?.objectId) return [];
  const items = await remoteElements(ctx, { kind: 'remote', object: list });
  const isSet = v.object.subtype === 'set' || v.object.subtype === 'weakset';
  return Promise.all(
    items.map(async (item): Promise<[Val, Val]> => {
      if (item.kind !== 'remote') return [prim(undefined), prim(undefined)];
      const entry = await readObject(ctx, item);
      const keyDesc = entry.result.find((d) => d.name === 'key');
      const valueDesc = entry.result.find((d) => d.name === 'value');
      const key = readValue(ctx, keyDesc?.value, childTaint(ctx, v.taint, undefined));
      const keyName = keyDesc?.value?.type === 'string' ? String(keyDesc.value.value) : undefined;
      const value = readValue(ctx, valueDesc?.value, childTaint(ctx, v.taint, keyName));
      return isSet ? [value, value] : [key, value];
    }),
  );
}
