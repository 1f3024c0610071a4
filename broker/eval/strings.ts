/**
 * Loupe's own string, number and Date methods. They run in the broker on primitives only (never on an
 * object of the target, whose methods would be app code); the caller has already turned any call on secret
 * content into a fully tainted result.
 */
import { LoupeRefusal, LoupeThrow, type Spend } from './budget';
import { dateMethods, stringMethods } from './parse';
import { prim, toStringValue, type Prim, type Val } from './values';

/** An argument as a primitive: a callback or object where a string method wants a string is refused. */
function primArg(v: Val | undefined, method: string): Prim {
  if (v === undefined) return undefined;
  if (v.kind === 'prim') return v.value;
  if (v.kind === 'arrow') throw new LoupeRefusal('call', `Loupe's ${method} takes strings and numbers, not a function`);
  return toStringValue(v);
}

export function stringMethod(spend: Spend, s: string, name: string, args: Val[]): Val {
  if (!stringMethods.has(name)) throw new LoupeThrow('TypeError', `${name} is not a function of a string`);
  const a = args.map((v) => primArg(v, name));
  if (name === 'repeat') {
    const count = Number(a[0] ?? 0);
    if (count < 0 || count === Infinity) throw new LoupeThrow('RangeError', `Invalid count value: ${count}`);
    spend.string(s.length * Math.floor(count || 0));
  }
  if (name === 'padStart' || name === 'padEnd') spend.string(Number(a[0] ?? 0));
  if (name === 'split') {
    if (a[0] !== undefined && typeof a[0] !== 'string') a[0] = String(a[0]);
    const parts = s.split(a[0] as string, a[1] === undefined ? undefined : Number(a[1]));
    spend.elements(parts.length);
    return { kind: 'array', items: parts.map((p) => prim(p)) };
  }
  if ((name === 'replace' || name === 'replaceAll') && a[0] !== undefined) {
    a[0] = String(a[0]);
    // Charged before it is built: `replaceAll('', long)` is the string's length times the replacement's.
    if (typeof a[1] === 'string') {
      const count = name === 'replace' ? (s.includes(a[0]) ? 1 : 0) : occurrences(s, a[0]);
      // `$\`` and `$'` insert up to the whole string each.
      const each = a[1].includes('$') ? a[1].length + 2 * s.length : a[1].length;
      spend.string(s.length + count * each);
    }
  }
  try {
    const value = (String.prototype as unknown as Record<string, (...x: Prim[]) => Prim>)[name]!.apply(s, a);
    if (typeof value === 'string') spend.string(value.length);
    return prim(value);
  } catch (error) {
    if (error instanceof LoupeRefusal) throw error;
    throw new LoupeThrow((error as Error).name ?? 'Error', (error as Error).message);
  }
}

/** How often `pattern` occurs in `s` as replaceAll finds it ('' occurs between every two characters). */
function occurrences(s: string, pattern: string): number {
  if (pattern === '') return s.length + 1;
  let count = 0;
  for (let at = s.indexOf(pattern); at !== -1; at = s.indexOf(pattern, at + pattern.length)) count++;
  return count;
}

const numberMethods = new Set(['toFixed', 'toString', 'toPrecision', 'valueOf']);

export function primitiveMethod(spend: Spend, p: number | boolean | bigint, name: string, args: Val[]): Val {
  const a = args.map((v) => primArg(v, name));
  if (typeof p === 'boolean') {
    if (name === 'toString') return prim(String(p));
    if (name === 'valueOf') return prim(p);
    throw new LoupeThrow('TypeError', `${name} is not a function of a boolean`);
  }
  if (!numberMethods.has(name)) throw new LoupeThrow('TypeError', `${name} is not a function of a ${typeof p}`);
  try {
    const proto = (typeof p === 'bigint' ? BigInt.prototype : Number.prototype) as unknown as Record<string, (...x: Prim[]) => Prim>;
    const method = proto[name];
    if (!method) throw new TypeError(`${name} is not a function of a ${typeof p}`);
    const value = method.apply(
      p,
      a.map((x) => (x === undefined ? undefined : Number(x))),
    );
    if (typeof value === 'string') spend.string(value.length);
    return prim(value);
  } catch (error) {
    if (error instanceof LoupeRefusal) throw error;
    throw new LoupeThrow((error as Error).name ?? 'Error', (error as Error).message);
  }
}

/** Date methods on a time value; local-time getters use the broker's time zone. */
export function dateMethod(time: number, name: string): Val {
  if (!dateMethods.has(name)) throw new LoupeThrow('TypeError', `${name} is not a function of a Date`);
  try {
    const date = new Date(time);
    return prim((date as unknown as Record<string, () => Prim>)[name]!.call(date));
  } catch (error) {
    throw new LoupeThrow((error as Error).name ?? 'Error', (error as Error).message);
  }
}

/** What `new Date(...)` and Date.parse/UTC compute from primitives. */
export function dateFrom(args: Prim[]): number {
  if (args.length === 0) return Date.now();
  if (args.length === 1) {
    const [x] = args;
    return typeof x === 'string' ? Date.parse(x) : new Date(Number(x)).getTime();
  }
  const n = args.map((x) => Number(x));
  return new Date(n[0]!, n[1]!, n[2] ?? 1, n[3] ?? 0, n[4] ?? 0, n[5] ?? 0, n[6] ?? 0).getTime();
}
