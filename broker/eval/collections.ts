/**
 * Loupe's own Array, Map and Set methods over lists of values (local ones, or elements and entries read from
 * the target). Callbacks are pure, so those of map/filter/some/… run concurrently, which puts their reads in
 * flight together; reduce is sequential. Every callback runs for every element, whatever an earlier one
 * decided, so the work done never depends on a secret; a result that depends on a tainted decision (a
 * filter's membership, a sort's order, find's pick) is fully tainted.
 */
import { LoupeThrow } from './budget';
import type { Interpreter } from './interpreter';
import { truthLabel } from './interpreter';
import { contentSecret, isFull, isNullish, poison, prim, secretLabel, toNumberValue, toStringValue, truthy, undef, type Val } from './values';

type Outcome = { ok: true; value: Val } | { ok: false; error: unknown };

/** Runs a callback for every element, all in flight together; outcomes in element order. */
async function eachCallback(interp: Interpreter, fn: Val, items: Val[], self: Val): Promise<Outcome[]> {
  if (fn.kind !== 'arrow' && fn.kind !== 'builtin') throw new LoupeThrow('TypeError', 'the callback is not a function (Loupe takes an arrow function here)');
  interp.ctx.spend.step(items.length);
  return Promise.all(
    items.map((item, i) =>
      interp.callArrow(fn, [item, prim(i), self]).then(
        (value): Outcome => ({ ok: true, value }),
        (error: unknown): Outcome => ({ ok: false, error }),
      ),
    ),
  );
}

function values(outcomes: Outcome[]): Val[] {
  const failed = outcomes.find((o) => !o.ok);
  if (failed && !failed.ok) throw failed.error;
  return outcomes.map((o) => (o as { value: Val }).value);
}

/** Sames as SameValueZero for what Loupe compares; objects of the target by reference id. */
function sameValueZero(a: Val, b: Val): boolean {
  if (a.kind === 'prim' && b.kind === 'prim') return a.value === b.value || (Number.isNaN(a.value) && Number.isNaN(b.value));
  if (a.kind === 'remote' && b.kind === 'remote') return a.object.objectId !== undefined && a.object.objectId === b.object.objectId;
  return a === b;
}

/** Finds `needle` among `items`; a tainted element met before the answer makes the answer tainted. */
function search(items: Val[], needle: Val, from: number, backwards: boolean, strict: boolean): { index: number; label?: string } {
  let label: string | undefined;
  const order = items.map((_, i) => i).slice(from);
  if (backwards) order.reverse();
  for (const i of order) {
    const item = items[i]!;
    if (contentSecret(item)) {
      label ??= item.taint!.label;
      continue;
    }
    const equal = strict && item.kind === 'prim' && needle.kind === 'prim' ? item.value === needle.value : sameValueZero(item, needle);
    if (equal) return { index: i, label };
  }
  return { index: -1, label };
}

const arrayOf = (items: Val[]): Val => ({ kind: 'array', items });

export async function arrayMethod(interp: Interpreter, self: Val, items: Val[], name: string, args: Val[]): Promise<Val> {
  const { spend } = interp.ctx;
  const [a0 = undef, a1 = undef] = args;
  const numberArg = (v: Val, fallback: number) => (v.kind === 'prim' && v.value === undefined ? fallback : Math.trunc(toNumberValue(v)) || 0);
  const relative = (n: number) => (n < 0 ? Math.max(0, items.length + n) : Math.min(n, items.length));
  if (['slice', 'at', 'includes', 'indexOf', 'lastIndexOf', 'join', 'flat'].includes(name)) {
    const label = secretLabel(...args);
    if (label) return poison(label);
  }
  switch (name) {
    case 'map':
      return arrayOf(values(await eachCallback(interp, a0, items, self)));
    case 'forEach':
      values(await eachCallback(interp, a0, items, self));
      return undef;
    case 'flatMap': {
      const mapped = values(await eachCallback(interp, a0, items, self));
      return flatten(interp, mapped, 1);
    }
    case 'filter': {
      const decisions = values(await eachCallback(interp, a0, items, self));
      const label = decisions.map(truthLabel).find((l) => l !== undefined);
      return label ? poison(label) : arrayOf(items.filter((_, i) => truthy(decisions[i]!)));
    }
    case 'find':
    case 'findIndex':
    case 'findLast':
    case 'findLastIndex':
    case 'some':
    case 'every': {
      const outcomes = await eachCallback(interp, a0, items, self);
      const order = items.map((_, i) => i);
      if (name.startsWith('findLast')) order.reverse();
      let label: string | undefined;
      for (const i of order) {
        const o = outcomes[i]!;
        if (!o.ok) {
          if (label) return poison(label);
          throw o.error;
        }
        const l = truthLabel(o.value);
        if (l) {
          label ??= l;
          continue;
        }
        const hit = name === 'every' ? !truthy(o.value) : truthy(o.value);
        if (!hit) continue;
        if (label) return poison(label);
        if (name === 'some') return prim(true);
        if (name === 'every') return prim(false);
        return name.endsWith('Index') ? prim(i) : items[i]!;
      }
      if (label) return poison(label);
      if (name === 'some') return prim(false);
      if (name === 'every') return prim(true);
      return name.endsWith('Index') ? prim(-1) : undef;
    }
    case 'reduce':
    case 'reduceRight': {
      if (a0.kind !== 'arrow' && a0.kind !== 'builtin') throw new LoupeThrow('TypeError', 'the callback is not a function (Loupe takes an arrow function here)');
      const order = items.map((_, i) => i);
      if (name === 'reduceRight') order.reverse();
      let acc: Val;
      if (args.length >= 2) acc = a1;
      else {
        if (order.length === 0) throw new LoupeThrow('TypeError', 'Reduce of empty array with no initial value');
        acc = items[order.shift()!]!;
      }
      for (const i of order) {
        spend.step();
        acc = await interp.callArrow(a0, [acc, items[i]!, prim(i), self]);
      }
      return acc;
    }
    case 'slice': {
      const start = relative(numberArg(a0, 0));
      const end = relative(numberArg(a1, items.length));
      return arrayOf(items.slice(start, Math.max(start, end)));
    }
    case 'at': {
      const n = numberArg(a0, 0);
      return items[n < 0 ? items.length + n : n] ?? undef;
    }
    case 'includes':
    case 'indexOf':
    case 'lastIndexOf': {
      const backwards = name === 'lastIndexOf';
      const from = args.length > 1 && !backwards ? relative(numberArg(a1, 0)) : 0;
      const { index, label } = search(items, a0, from, backwards, name !== 'includes');
      if (label) return poison(label);
      return name === 'includes' ? prim(index >= 0) : prim(index);
    }
    case 'join':
    case 'toString': {
      const label = secretLabel(...items);
      if (label) return poison(label);
      const separator = name === 'join' && !(a0.kind === 'prim' && a0.value === undefined) ? toStringValue(a0) : ',';
      let text = '';
      for (const [i, item] of items.entries()) {
        // A step per element, nested arrays' included: `[a, a]` nested n deep is 2^n elements from n arrays.
        spend.step();
        if (spend.due) await spend.pace();
        if (i > 0) text += separator;
        if (!isNullish(item)) text += item.kind === 'array' ? toStringValue(await arrayMethod(interp, item, item.items, 'join', [])) : toStringValue(item);
        spend.string(text.length);
      }
      return prim(text);
    }
    case 'concat': {
      const out = [...items];
      for (const arg of args) {
        if (isFull(arg)) return poison(arg.taint!.label);
        if (arg.kind === 'array' || (arg.kind === 'remote' && arg.object.subtype === 'array')) out.push(...(await interp.iterate(arg)).items);
        else out.push(arg);
        spend.elements(out.length);
      }
      return arrayOf(out);
    }
    case 'flat':
      return flatten(interp, items, a0.kind === 'prim' && a0.value === undefined ? 1 : toNumberValue(a0));
    case 'reverse':
    case 'toReversed':
      return arrayOf([...items].reverse());
    case 'sort':
    case 'toSorted':
      return sortItems(interp, items, a0);
    case 'keys':
      return arrayOf(items.map((_, i) => prim(i)));
    case 'values':
      return arrayOf([...items]);
    case 'entries':
      return arrayOf(items.map((item, i) => arrayOf([prim(i), item])));
  }
  throw new LoupeThrow('TypeError', `${name} is not a function of an array (in Loupe)`);
}

async function flatten(interp: Interpreter, items: Val[], depth: number): Promise<Val> {
  const out: Val[] = [];
  for (const item of items) {
    if (isFull(item)) return poison(item.taint!.label);
    const nested = item.kind === 'array' || (item.kind === 'remote' && item.object.subtype === 'array');
    if (nested && depth >= 1) {
      const inner = await flatten(interp, (await interp.iterate(item)).items, depth - 1);
      if (inner.kind !== 'array') return inner;
      out.push(...inner.items);
    } else out.push(item);
    interp.ctx.spend.elements(out.length);
  }
  return arrayOf(out);
}

/** A stable merge sort on a copy (the target's array is never reordered). */
async function sortItems(interp: Interpreter, items: Val[], comparator: Val): Promise<Val> {
  const present = items.filter((v) => !(v.kind === 'prim' && v.value === undefined && !v.taint));
  const missing = items.length - present.length;
  let label: string | undefined;
  let compare: (a: Val, b: Val) => Promise<number>;
  if (comparator.kind === 'arrow') {
    compare = async (a, b) => {
      const r = await interp.callArrow(comparator, [a, b]);
      if (contentSecret(r)) {
        label ??= r.taint!.label;
        return 0;
      }
      const n = toNumberValue(r);
      return Number.isNaN(n) ? 0 : n;
    };
  } else {
    label = secretLabel(...present);
    if (label) return poison(label);
    const keys = new Map(present.map((v) => [v, toStringValue(v)]));
    compare = async (a, b) => {
      const x = keys.get(a)!;
      const y = keys.get(b)!;
      return x < y ? -1 : x > y ? 1 : 0;
    };
  }
  const sorted = await mergeSort(interp, present, compare);
  if (label) return poison(label);
  return arrayOf([...sorted, ...Array.from({ length: missing }, () => undef)]);
}

async function mergeSort(interp: Interpreter, list: Val[], compare: (a: Val, b: Val) => Promise<number>): Promise<Val[]> {
  if (list.length <= 1) return list;
  const middle = list.length >> 1;
  const [left, right] = await Promise.all([mergeSort(interp, list.slice(0, middle), compare), mergeSort(interp, list.slice(middle), compare)]);
  const out: Val[] = [];
  let i = 0;
  let j = 0;
  while (i < left.length && j < right.length) {
    interp.ctx.spend.step();
    if ((await compare(left[i]!, right[j]!)) <= 0) out.push(left[i++]!);
    else out.push(right[j++]!);
  }
  return out.concat(left.slice(i), right.slice(j));
}

/** Map and Set methods over entries (read from `[[Entries]]` for the target's). */
export function collectionMethod(entries: [Val, Val][], isSet: boolean, name: string, args: Val[]): Val {
  const [key = undef] = args;
  switch (name) {
    case 'has':
    case 'get': {
      if (contentSecret(key)) return poison(key.taint!.label);
      let label: string | undefined;
      for (const [k, v] of entries) {
        if (contentSecret(k)) {
          label ??= k.taint!.label;
          continue;
        }
        if (sameValueZero(k, key)) {
          if (label) return poison(label);
          return name === 'has' ? prim(true) : v;
        }
      }
      if (label) return poison(label);
      return name === 'has' ? prim(false) : undef;
    }
    case 'keys':
      return arrayOf(entries.map(([k]) => k));
    case 'values':
      return arrayOf(entries.map(([, v]) => v));
    case 'entries':
      return arrayOf(entries.map(([k, v]) => arrayOf([k, v])));
  }
  throw new LoupeThrow('TypeError', `${name} is not a function of a ${isSet ? 'Set' : 'Map'} (in Loupe)`);
}
