/**
 * What leaves the interpreter: values as CDP RemoteObjects and as JSON. A tainted value leaves only as the
 * marker; a container the interpreter built leaves by value with the marker in each tainted element; an
 * object of the target reached without taint leaves as its own RemoteObject (the client expands it through
 * the session's redacted property reads).
 */
import type { Protocol } from 'devtools-protocol';
import { nestedDeeperThan } from '../gate/targetFrame';
import { marker } from '../policy/redact';
import { LoupeRefusal, LoupeThrow, type Spend } from './budget';
import type { Interpreter } from './interpreter';
import { isRemoteList, remoteElements } from './remote';
import { dateString, poison, prim, type Prim, type Val } from './values';

const omit = Symbol('omit');
/** Strings Loupe's JSON.stringify wrote: every leaf and key in them was checked already, markers included. */
const vetted = new WeakSet<Val>();
type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
/** Loupe's bound for JSON, written (JSON.stringify) or read (JSON.parse). */
export const maxJsonDepth = 32;

/** Whether the value's content is secret where it stands (anything tainted; presence alone is shape). */
function hidden(v: Val): string | undefined {
  if (!v.taint) return undefined;
  if (v.taint.full) return v.taint.label;
  if (v.kind === 'prim' && (v.value === undefined || v.value === null)) return undefined;
  // A redacted container too: its keys are content.
  return v.taint.label;
}

/**
 * A value as JSON.stringify sees it, objects of the target read field by field. `labels` collects the
 * redacted names whose marker was written.
 */
export async function toJson(interp: Interpreter, v: Val, labels: Set<string>, depth = 0): Promise<Json | typeof omit> {
  const label = hidden(v);
  if (label) {
    labels.add(label);
    return marker(label);
  }
  if (depth > maxJsonDepth) throw new LoupeRefusal('budget', `the value is nested more than ${maxJsonDepth} levels deep (or is circular): Loupe's bound for JSON`);
  interp.ctx.spend.step();
  if (interp.ctx.spend.due) await interp.ctx.spend.pace();
  switch (v.kind) {
    case 'prim': {
      const p = v.value;
      if (p === undefined) return omit;
      if (typeof p === 'bigint') throw new LoupeThrow('TypeError', 'Do not know how to serialize a BigInt');
      if (typeof p === 'number') return Number.isFinite(p) ? p : null;
      if (typeof p === 'string') {
        const secret = interp.ctx.redaction.secretIn(p);
        if (secret) {
          labels.add(secret);
          return marker(secret);
        }
      }
      return p;
    }
    case 'date':
      return Number.isNaN(v.time) ? null : new Date(v.time).toISOString();
    case 'array':
      return jsonList(interp, v.items, labels, depth);
    case 'object':
      return jsonObject(interp, [...v.props], labels, depth);
    case 'collection':
      return {};
    case 'arrow':
    case 'builtin':
      return omit;
    case 'remote': {
      const { object } = v;
      if (object.type !== 'object') return omit;
      if (isRemoteList(v)) return jsonList(interp, await remoteElements(interp.ctx, v), labels, depth);
      if (object.subtype === 'map' || object.subtype === 'set' || object.subtype === 'weakmap' || object.subtype === 'weakset') return {};
      const entries = await interp.remoteOwnEntries(v);
      if (entries.some(([k, value]) => k === 'toJSON' && value.kind === 'remote' && value.object.type === 'function')) {
        throw new LoupeRefusal('call', `${object.description ?? 'the object'} has its own toJSON method: serializing it would run app code`);
      }
      return jsonObject(interp, entries, labels, depth, true);
    }
  }
}

async function jsonList(interp: Interpreter, items: Val[], labels: Set<string>, depth: number): Promise<Json[]> {
  const out = await jsonEach(interp, items, labels, depth + 1);
  return out.map((x) => (x === omit ? null : x));
}

/**
 * Each value's JSON, in order. The target's objects are read together (a read each, bounded by maxReads); values the
 * expression built are walked one after the other: they can share structure (`[a, a]` nested n deep is 2^n leaves
 * from n arrays), and a walk fanned out over every branch at once could not pause for the broker's loop.
 */
async function jsonEach(interp: Interpreter, values: Val[], labels: Set<string>, depth: number): Promise<(Json | typeof omit)[]> {
  const out: (Json | typeof omit | Promise<Json | typeof omit>)[] = [];
  for (const value of values) out.push(value.kind === 'remote' ? toJson(interp, value, labels, depth) : await toJson(interp, value, labels, depth));
  return Promise.all(out);
}

async function jsonObject(interp: Interpreter, entries: [string, Val][], labels: Set<string>, depth: number, fromTarget = false): Promise<{ [key: string]: Json }> {
  const values = await jsonEach(
    interp,
    entries.map(([, value]) => value),
    labels,
    depth + 1,
  );
  const out: { [key: string]: Json } = {};
  for (const [i, [name]] of entries.entries()) {
    const value = values[i]!;
    // The target's keys are its text: a learned value in one is as secret as in a value.
    const secret = fromTarget ? interp.ctx.redaction.secretInTarget(name) : interp.ctx.redaction.secretIn(name);
    if (secret) labels.add(secret);
    const key = secret ? marker(secret) : name;
    // Defined, not assigned: a "__proto__" key stays a key.
    if (value !== omit) Object.defineProperty(out, key, { value, enumerable: true, writable: true, configurable: true });
  }
  return out;
}

/** Loupe's JSON.stringify: the marker in place of each tainted leaf; untainted when only leaves were. */
export async function jsonStringify(interp: Interpreter, v: Val, space: Prim): Promise<Val> {
  if (v.taint?.full) return poison(v.taint.label);
  const json = await toJson(interp, v, new Set());
  if (json === omit) return prim(undefined);
  const text = JSON.stringify(json, null, typeof space === 'number' || typeof space === 'string' ? space : undefined);
  interp.ctx.spend.string(text.length);
  const out = prim(text);
  vetted.add(out);
  return out;
}

export function jsonParse(spend: Spend, text: string): Val {
  spend.string(text.length);
  // Refused before V8 parses it: deep nesting costs V8 far more per character than the characters' budget allows for
  // (500,000 levels in 1 MiB: about 230 ms a parse, one native call the time bound cannot cut).
  if (nestedDeeperThan(Buffer.from(text), maxJsonDepth)) throw new LoupeRefusal('budget', `JSON.parse of text nested more than ${maxJsonDepth} levels deep: Loupe's bound for JSON`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new LoupeThrow('SyntaxError', (error as Error).message);
  } finally {
    // A parse is one native call: the time bound is checked at its end, before anything else runs.
    spend.checkTime();
  }
  const convert = (x: unknown): Val => {
    spend.step();
    if (Array.isArray(x)) return { kind: 'array', items: x.map(convert) };
    if (x !== null && typeof x === 'object') return { kind: 'object', props: new Map(Object.entries(x).map(([k, item]) => [k, convert(item)])) };
    return prim(x as Prim);
  };
  return convert(parsed);
}

const markerObject = (label: string): Protocol.Runtime.RemoteObject => ({ type: 'string', value: marker(label), description: marker(label) });

/** A primitive as CDP describes it. */
export function primitiveObject(p: Prim): Protocol.Runtime.RemoteObject {
  if (p === undefined) return { type: 'undefined' };
  if (p === null) return { type: 'object', subtype: 'null', value: null };
  if (typeof p === 'bigint') return { type: 'bigint', unserializableValue: `${p}n`, description: `${p}n` };
  if (typeof p === 'number') {
    if (Number.isNaN(p) || !Number.isFinite(p) || Object.is(p, -0)) return { type: 'number', unserializableValue: Object.is(p, -0) ? '-0' : String(p), description: String(p) };
    return { type: 'number', value: p, description: String(p) };
  }
  if (typeof p === 'boolean') return { type: 'boolean', value: p };
  return { type: 'string', value: p };
}

/** V8's bounds on a preview: fields of an object, elements of an array, entries of a Map or Set; text of a field. */
const previewFields = 5;
const previewElements = 100;
const previewEntries = 5;
const previewText = 100;

/** A string field as V8 previews it: cut in the middle past 100 characters. */
const abbreviated = (text: string) => (text.length > previewText ? `${text.slice(0, previewText / 2)}…${text.slice(text.length - previewText / 2 + 1)}` : text);
/** An object's description as a field of a preview: cut at the end past 100 characters (an error's stack, say). */
const abbreviatedEnd = (text: string) => (text.length > previewText ? `${text.slice(0, previewText - 1)}…` : text);

/** One field of a preview, as V8 writes it: primitives as text, objects by their short description, functions blank. */
function propertyPreview(interp: Interpreter, name: string, v: Val): Protocol.Runtime.PropertyPreview {
  const label = hidden(v);
  if (label) return { name, type: 'string', value: marker(label) };
  switch (v.kind) {
    case 'prim': {
      const o = primitiveObject(v.value);
      const secret = typeof v.value === 'string' ? interp.ctx.redaction.secretIn(v.value) : undefined;
      const text = typeof v.value === 'string' ? abbreviated(v.value) : (o.description ?? String(v.value));
      return {
        name,
        type: o.type as Protocol.Runtime.PropertyPreview['type'],
        ...(o.subtype ? { subtype: o.subtype as Protocol.Runtime.PropertyPreview['subtype'] } : {}),
        value: secret ? marker(secret) : text,
      };
    }
    case 'remote': {
      if (v.object.type === 'function') return { name, type: 'function', value: '' };
      const description = v.object.description ?? '';
      const secret = interp.ctx.redaction.secretInTarget(description);
      return {
        name,
        type: v.object.type as Protocol.Runtime.PropertyPreview['type'],
        ...(v.object.subtype ? { subtype: v.object.subtype as Protocol.Runtime.PropertyPreview['subtype'] } : {}),
        value: secret ? marker(secret) : abbreviatedEnd(description),
      };
    }
    case 'array':
      return { name, type: 'object', subtype: 'array', value: `Array(${v.items.length})` };
    case 'date':
      return { name, type: 'object', subtype: 'date', value: dateString(v.time) };
    case 'collection':
      return { name, type: 'object', subtype: v.isSet ? 'set' : 'map', value: `${v.isSet ? 'Set' : 'Map'}(${v.entries.length})` };
    case 'arrow':
    case 'builtin':
      return { name, type: 'function', value: '' };
    default:
      return { name, type: 'object', value: 'Object' };
  }
}

function previewOf(interp: Interpreter, entries: [string, Val][], subtype: 'array' | undefined, description: string): Protocol.Runtime.ObjectPreview {
  const bound = subtype === 'array' ? previewElements : previewFields;
  const properties = entries.slice(0, bound).map(([name, v]) => propertyPreview(interp, name, v));
  return { type: 'object', ...(subtype ? { subtype } : {}), description, overflow: entries.length > bound, properties };
}

/** A Map key or value, or a Set element, as V8 previews it: a primitive by its text, an object one level deep. */
function entryPreview(interp: Interpreter, v: Val): Protocol.Runtime.ObjectPreview {
  const label = hidden(v);
  if (label) return { type: 'string', description: marker(label), overflow: false, properties: [] };
  switch (v.kind) {
    case 'prim': {
      const o = primitiveObject(v.value);
      const secret = typeof v.value === 'string' ? interp.ctx.redaction.secretIn(v.value) : undefined;
      const text = secret ? marker(secret) : typeof v.value === 'string' ? v.value : (o.description ?? String(v.value));
      return {
        type: o.type as Protocol.Runtime.ObjectPreview['type'],
        ...(o.subtype ? { subtype: o.subtype as Protocol.Runtime.ObjectPreview['subtype'] } : {}),
        description: text,
        overflow: false,
        properties: [],
      };
    }
    case 'remote':
      if (v.object.preview) return redactedPreview(interp, v.object.preview, 1);
      return { type: v.object.type as Protocol.Runtime.ObjectPreview['type'], description: propertyPreview(interp, '', v).value ?? '', overflow: false, properties: [] };
    case 'array':
      return previewOf(
        interp,
        v.items.map((item, i) => [String(i), item]),
        'array',
        `Array(${v.items.length})`,
      );
    case 'object':
      return previewOf(interp, [...v.props], undefined, 'Object');
    case 'date':
      return { type: 'object', subtype: 'date', description: dateString(v.time), overflow: false, properties: [] };
    default: {
      const field = propertyPreview(interp, '', v);
      return { type: field.type === 'accessor' ? 'object' : field.type, ...(field.subtype ? { subtype: field.subtype } : {}), description: field.value ?? '', overflow: false, properties: [] };
    }
  }
}

/** A Map or Set the interpreter built, previewed as V8 previews one: its size, then up to five entries. */
function collectionPreview(interp: Interpreter, v: Extract<Val, { kind: 'collection' }>, description: string): Protocol.Runtime.ObjectPreview {
  const entries = v.entries.slice(0, previewEntries).map(([key, value]): Protocol.Runtime.EntryPreview => {
    // A secret key hides its value too, as the redactor does for a Map read from the target.
    const keyHidden = !v.isSet && hidden(key);
    const shown = keyHidden ? { type: 'string' as const, description: marker(keyHidden), overflow: false, properties: [] } : entryPreview(interp, value);
    return v.isSet ? { value: entryPreview(interp, value) } : { key: entryPreview(interp, key), value: shown };
  });
  return {
    type: 'object',
    subtype: v.isSet ? 'set' : 'map',
    description,
    overflow: v.entries.length > previewEntries,
    properties: [{ name: 'size', type: 'number', value: String(v.entries.length) }],
    entries,
  };
}

/**
 * A preview V8 attached to an object read from the target: its fields are the target's raw values, so each is
 * checked as a read would be (a redacted name or a string that looks secret gives the marker).
 */
function redactedPreview(interp: Interpreter, preview: Protocol.Runtime.ObjectPreview, depth: number): Protocol.Runtime.ObjectPreview {
  const { redaction } = interp.ctx;
  const text = (value: string | undefined) => {
    const secret = value === undefined ? undefined : redaction.secretInTarget(value);
    return secret ? marker(secret) : value;
  };
  const properties = preview.properties.map((p): Protocol.Runtime.PropertyPreview => {
    if (redaction.isSensitive(p.name)) return { name: p.name, type: 'string', value: marker(p.name) };
    const valuePreview = p.valuePreview && depth < 2 ? redactedPreview(interp, p.valuePreview, depth + 1) : undefined;
    return { ...p, name: text(p.name)!, value: text(p.value), ...(valuePreview ? { valuePreview } : {}) };
  });
  const entries = preview.entries?.map((e): Protocol.Runtime.EntryPreview => {
    const keyName = e.key?.type === 'string' ? e.key.description : undefined;
    const key = e.key && depth < 2 ? redactedPreview(interp, e.key, depth + 1) : undefined;
    if (keyName !== undefined && redaction.isSensitive(keyName)) return { ...(key ? { key } : {}), value: { type: 'string', description: marker(keyName), overflow: false, properties: [] } };
    return { ...(key ? { key } : {}), value: depth < 2 ? redactedPreview(interp, e.value, depth + 1) : { type: e.value.type, description: '…', overflow: true, properties: [] } };
  });
  return { ...preview, description: text(preview.description), properties, ...(entries ? { entries } : {}) };
}

/**
 * The JSON value of an array or object the interpreter built (it has no objectId to expand). One JSON cannot hold (a
 * BigInt in it) leaves the answer without a value, as V8's answer has none: its preview still shows it, and the names
 * of the redacted fields the preview shows as markers are still recorded.
 */
async function builtValue(interp: Interpreter, v: Extract<Val, { kind: 'array' | 'object' }>, labels: Set<string>): Promise<Json | typeof omit> {
  try {
    return await toJson(interp, v, labels);
  } catch (error) {
    if (!(error instanceof LoupeThrow)) throw error;
    for (const item of v.kind === 'array' ? v.items : v.props.values()) {
      const label = hidden(item);
      if (label) labels.add(label);
    }
    return omit;
  }
}

/** The evaluation's result as CDP returns it; `byValue` is the client's returnByValue. */
export async function toRemoteObject(interp: Interpreter, v: Val, byValue: boolean, labels: Set<string>): Promise<Protocol.Runtime.RemoteObject> {
  const label = v.taint?.full || (v.taint && v.kind !== 'remote') ? v.taint.label : undefined;
  if (label) {
    labels.add(label);
    return markerObject(label);
  }
  switch (v.kind) {
    case 'prim': {
      if (typeof v.value === 'string' && !vetted.has(v)) {
        const secret = interp.ctx.redaction.secretIn(v.value);
        if (secret) {
          labels.add(secret);
          return markerObject(secret);
        }
      }
      return primitiveObject(v.value);
    }
    case 'remote': {
      if (v.taint) {
        labels.add(v.taint.label);
        return markerObject(v.taint.label);
      }
      // A function's description is its source text: literals in it may look secret.
      const secret = v.object.description ? interp.ctx.redaction.secretInTarget(v.object.description) : undefined;
      if (secret) {
        labels.add(secret);
        return { ...v.object, description: `${v.object.type === 'function' ? 'function' : (v.object.className ?? 'Object')} ${marker(secret)}` };
      }
      if (!byValue || v.object.type !== 'object') return v.object.preview ? { ...v.object, preview: redactedPreview(interp, v.object.preview, 0) } : v.object;
      const value = await toJson(interp, v, labels);
      const { objectId: _objectId, preview: _preview, ...rest } = v.object;
      return { ...rest, value: value === omit ? undefined : value };
    }
    case 'array': {
      const value = await builtValue(interp, v, labels);
      const description = `Array(${v.items.length})`;
      return {
        type: 'object',
        subtype: 'array',
        className: 'Array',
        description,
        ...(value === omit ? {} : { value }),
        preview: previewOf(
          interp,
          v.items.map((item, i) => [String(i), item]),
          'array',
          description,
        ),
      };
    }
    case 'object': {
      const value = await builtValue(interp, v, labels);
      return { type: 'object', className: 'Object', description: 'Object', ...(value === omit ? {} : { value }), preview: previewOf(interp, [...v.props], undefined, 'Object') };
    }
    case 'date': {
      const description = dateString(v.time);
      return { type: 'object', subtype: 'date', className: 'Date', description, preview: { type: 'object', subtype: 'date', description, overflow: false, properties: [] } };
    }
    case 'collection': {
      const description = `${v.isSet ? 'Set' : 'Map'}(${v.entries.length})`;
      return { type: 'object', subtype: v.isSet ? 'set' : 'map', className: v.isSet ? 'Set' : 'Map', description, value: {}, preview: collectionPreview(interp, v, description) };
    }
    case 'arrow':
      return { type: 'function', className: 'Function', description: interp.source.slice(v.node.start, v.node.end) };
    case 'builtin':
      return { type: 'function', className: 'Function', description: `function ${v.name.split('.').pop()}() { [native code] }` };
  }
}
