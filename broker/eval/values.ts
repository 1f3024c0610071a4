/**
 * The interpreter's values and their taint. A value is a primitive, an object of the target (by its
 * RemoteObject, read only on demand), or a container the interpreter built itself (array, object, Date,
 * Map/Set), each with an optional taint:
 * - content taint: read from a redacted place. Its content is secret, its shape is not (typeof, presence,
 *   array length, Map/Set size and object keys are not tainted). Reads through it inherit the taint.
 * - full taint: computed from tainted content. Everything about it is secret; every operation on it gives a
 *   fully tainted value without looking at it (so no error, refusal or read count depends on it).
 */
import type { Protocol } from 'devtools-protocol';
import { LoupeRefusal } from './budget';
import type { AstNode } from './parse';

export interface Taint {
  readonly full: boolean;
  /** The redacted name (or pattern) the marker shows. */
  readonly label: string;
}

export type Prim = string | number | boolean | null | undefined | bigint;

export type Val =
  | { readonly kind: 'prim'; readonly value: Prim; readonly taint?: Taint }
  | { readonly kind: 'remote'; readonly object: Protocol.Runtime.RemoteObject; readonly taint?: Taint }
  | { readonly kind: 'array'; readonly items: Val[]; readonly taint?: Taint }
  | { readonly kind: 'object'; readonly props: Map<string, Val>; readonly taint?: Taint }
  | { readonly kind: 'date'; readonly time: number; readonly taint?: Taint }
  | { readonly kind: 'collection'; readonly isSet: boolean; readonly entries: [Val, Val][]; readonly taint?: Taint }
  | { readonly kind: 'arrow'; readonly node: AstNode; readonly scope: Scope; readonly taint?: Taint }
  | { readonly kind: 'builtin'; readonly name: string; readonly taint?: Taint };

/** Names bound by callbacks' parameters, innermost first. */
export interface Scope {
  readonly names: Map<string, Val>;
  readonly parent?: Scope;
}

export const prim = (value: Prim, taint?: Taint): Val => (taint ? { kind: 'prim', value, taint } : { kind: 'prim', value });
export const undef: Val = prim(undefined);

/** A fully tainted value: what any operation on secret content gives. */
export const poison = (label: string): Val => ({ kind: 'prim', value: undefined, taint: { full: true, label } });

export const isFull = (v: Val): boolean => v.taint?.full === true;

/** Content is secret: a fully tainted value, or a primitive read from a redacted place. */
export const contentSecret = (v: Val): boolean => v.taint !== undefined && (v.taint.full || v.kind === 'prim' || v.kind === 'date');

/**
 * The label of the first value whose content is secret, if any, looking into the arrays the interpreter
 * built: turning `[otp]` into a string or a property key is reading otp.
 */
export function secretLabel(...vals: (Val | undefined)[]): string | undefined {
  for (const v of vals) {
    const label = v && secretWithin(v, 0);
    if (label) return label;
  }
  return undefined;
}

function secretWithin(v: Val, depth: number, seen = new Set<Val>()): string | undefined {
  if (contentSecret(v)) return v.taint!.label;
  if (v.kind !== 'array') return undefined;
  if (depth > 64) return 'value nested too deeply to check';
  // Each array once: `[a, a]` nested n deep holds 2^n leaves but only n arrays.
  if (seen.has(v)) return undefined;
  seen.add(v);
  for (const item of v.items) {
    const label = secretWithin(item, depth + 1, seen);
    if (label) return label;
  }
  return undefined;
}

/** The same value with a taint added (the existing one wins: it names the original place). */
export function withTaint(v: Val, taint: Taint | undefined): Val {
  if (!taint) return v;
  if (v.taint && (v.taint.full || !taint.full)) return v;
  return { ...v, taint: v.taint ? { full: true, label: v.taint.label } : taint } as Val;
}

export const full = (label: string): Taint => ({ full: true, label });

/** Whether a value is nullish (presence: shape, not content). */
export const isNullish = (v: Val): boolean => v.kind === 'prim' && (v.value === undefined || v.value === null);

export function truthy(v: Val): boolean {
  return v.kind === 'prim' ? Boolean(v.value) : true;
}

export function typeOf(v: Val): string {
  switch (v.kind) {
    case 'prim':
      return v.value === null ? 'object' : typeof v.value;
    case 'remote':
      return v.object.type;
    case 'arrow':
    case 'builtin':
      return 'function';
    default:
      return 'object';
  }
}

/** An object as a refusal names it: a function by its name (its description is its whole source), others by class. */
function shortDescription(object: { type: string; className?: string; description?: string }): string {
  if (object.type === 'function') return /^(?:async\s+)?(?:function\s*\*?\s*|class\s+)?([\p{L}_$][\p{L}\p{N}_$]*)?/u.exec(object.description ?? '')?.[1] ?? '';
  return object.className ?? '';
}

export const coercionRefusal = (what: string) => new LoupeRefusal('construct', `turning ${what} into a primitive would run its toString/valueOf (app code); read its fields instead`);

/** ToPrimitive for local values, as the built-ins would do it; objects of the target are refused. */
export function toPrimitive(v: Val, hint: 'string' | 'number' | 'default'): Prim {
  switch (v.kind) {
    case 'prim':
      return v.value;
    case 'date':
      return hint === 'number' ? v.time : dateString(v.time);
    case 'array':
      return arrayText(v, { left: maxCoercedCharacters }, 0);
    case 'object':
      return '[object Object]';
    case 'collection':
      return v.isSet ? '[object Set]' : '[object Map]';
    case 'arrow':
      return '(arrow function)';
    case 'builtin':
      return `function ${v.name.split('.').pop()}() { [native code] }`;
    case 'remote':
      if (v.object.type === 'symbol') throw new LoupeRefusal('construct', 'a Symbol cannot be turned into a string or number');
      // A description can quote content (an Error's message): never that of a redacted object.
      if (v.taint) throw coercionRefusal('a redacted object');
      throw coercionRefusal(`the ${v.object.subtype ?? v.object.type} ${shortDescription(v.object)}`.trimEnd());
  }
}

/**
 * The most characters an array turned into a string may have (the default maxStringLength): `[a, a]` nested n deep
 * is 2^n characters from n arrays, so the text is bounded as it is built, and so is the work.
 */
const maxCoercedCharacters = 1 << 20;

function arrayText(v: Extract<Val, { kind: 'array' }>, budget: { left: number }, depth: number): string {
  if (depth > 200) throw new LoupeRefusal('budget', 'an array nested more than 200 deep cannot be turned into a string');
  const parts: string[] = [];
  for (const item of v.items) {
    const text = isNullish(item) ? '' : item.kind === 'array' ? arrayText(item, budget, depth + 1) : toStringValue(item);
    budget.left -= text.length + 1;
    if (budget.left < 0) throw new LoupeRefusal('budget', `an array turned into a string of more than ${maxCoercedCharacters} characters`);
    parts.push(text);
  }
  return parts.join(',');
}

export function toStringValue(v: Val): string {
  const p = toPrimitive(v, 'string');
  return String(p);
}

export function toNumberValue(v: Val): number {
  const p = toPrimitive(v, 'number');
  if (typeof p === 'bigint') throw new TypeError('Cannot convert a BigInt value to a number');
  return Number(p);
}

export function dateString(time: number): string {
  return Number.isNaN(time) ? 'Invalid Date' : new Date(time).toString();
}

/** A RemoteObject of the target turned into a value: primitives by value, Dates by time, objects by reference. */
export function fromRemote(object: Protocol.Runtime.RemoteObject, taint?: Taint): Val {
  switch (object.type) {
    case 'undefined':
      return prim(undefined, taint);
    case 'string':
    case 'boolean':
      return prim(object.value as Prim, taint);
    case 'number':
      return prim(object.unserializableValue !== undefined ? Number(object.unserializableValue) : (object.value as number), taint);
    case 'bigint':
      return prim(BigInt(String(object.unserializableValue ?? object.description ?? '0').replace(/n$/, '')), taint);
    case 'object':
      if (object.subtype === 'null') return prim(null, taint);
      if (object.subtype === 'date' && typeof object.description === 'string') {
        // V8 describes a Date by its toString, which drops milliseconds (see the report's limits).
        return { kind: 'date', time: Date.parse(object.description), taint };
      }
      return taint ? { kind: 'remote', object, taint } : { kind: 'remote', object };
    default:
      return taint ? { kind: 'remote', object, taint } : { kind: 'remote', object };
  }
}

/** `Array(3)`, `Map(2)`, `Uint8Array(4)`: the size V8 puts in a description, read without a read. */
export function describedSize(object: Protocol.Runtime.RemoteObject): number | undefined {
  const match = /\((\d+)\)$/.exec(object.description ?? '');
  return match ? Number(match[1]) : undefined;
}

/** The label that makes a value's truthiness secret: presence (null/undefined) is shape, the rest content. */
export function truthLabel(v: Val): string | undefined {
  if (!v.taint) return undefined;
  if (v.taint.full) return v.taint.label;
  return v.kind === 'prim' && !isNullish(v) ? v.taint.label : v.kind === 'date' ? v.taint.label : undefined;
}

/** A value named in an error message: never its content when that is secret (or a string at all). */
export function describe(v: Val): string {
  if (v.taint) return 'a redacted value';
  switch (v.kind) {
    case 'prim':
      return typeof v.value === 'string' ? 'a string' : typeof v.value === 'bigint' ? 'a bigint' : String(v.value);
    case 'remote':
      return v.object.description ?? v.object.className ?? v.object.type;
    case 'array':
      return `Array(${v.items.length})`;
    case 'builtin':
      return v.name;
    default:
      return `a ${v.kind}`;
  }
}
