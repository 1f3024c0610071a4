/**
 * Calls: the only functions an expression can call are Loupe's own, dispatched here on what the receiver
 * really is (a string, a list, a Map, a Date, …). A method name Loupe knows, called on an object of the
 * target that is none of those, would be the app's method: refused.
 */
import { ChainShort, LoupeRefusal, LoupeThrow } from './budget';
import { arrayMethod, collectionMethod } from './collections';
import type { BuiltinCalls, Interpreter } from './interpreter';
import { describe, truthLabel } from './interpreter';
import { jsonParse, jsonStringify } from './result';
import { memberName, type AstNode } from './parse';
import { isRemoteList, learnedKeyTaint, remoteElements, remoteEntries, remoteHas, remoteMember } from './remote';
import { dateFrom, dateMethod, primitiveMethod, stringMethod } from './strings';
import { contentSecret, isFull, isNullish, poison, prim, secretLabel, toNumberValue, toPrimitive, toStringValue, truthy, undef, type Prim, type Scope, type Val } from './values';

/** Every call's result costs its size in steps: containers built per element add up like the work they are. */
export async function callFunction(interp: Interpreter, node: AstNode, scope: Scope | undefined): Promise<Val> {
  const result = await dispatchCall(interp, node, scope);
  interp.ctx.spend.step(sizeOf(result));
  return result;
}

export function sizeOf(v: Val): number {
  return v.kind === 'array' ? v.items.length : v.kind === 'object' ? v.props.size : v.kind === 'collection' ? v.entries.length : 0;
}

async function dispatchCall(interp: Interpreter, node: AstNode, scope: Scope | undefined): Promise<Val> {
  let callee = node.callee as AstNode;
  while (callee.type === 'ParenthesizedExpression') callee = callee.expression;
  if (callee.type === 'Identifier') return callGlobal(interp, callee.name, await interp.args(node.arguments, scope));
  const name = memberName(callee)!;
  const base = callee.object as AstNode;
  if (base.type === 'Identifier' && ['Math', 'JSON', 'Object', 'Array', 'Number', 'Date', 'String'].includes(base.name) && !scopeBinds(scope, base.name)) {
    return callStatic(interp, base.name, name, await interp.args(node.arguments, scope));
  }
  const receiver = await interp.eval(base, scope);
  if (callee.optional && isNullish(receiver) && !isFull(receiver)) throw new ChainShort();
  return callMethod(interp, receiver, name, await interp.args(node.arguments, scope));
}

function scopeBinds(scope: Scope | undefined, name: string): boolean {
  for (let s = scope; s; s = s.parent) if (s.names.has(name)) return true;
  return false;
}

const hasCallback = new Set(['map', 'filter', 'find', 'findIndex', 'findLast', 'findLastIndex', 'some', 'every', 'reduce', 'reduceRight', 'flatMap', 'forEach', 'sort', 'toSorted']);

export async function callMethod(interp: Interpreter, receiver: Val, name: string, args: Val[]): Promise<Val> {
  const { spend } = interp.ctx;
  if (isFull(receiver)) return poison(receiver.taint!.label);
  switch (receiver.kind) {
    case 'prim': {
      const p = receiver.value;
      if (p === null || p === undefined) throw new LoupeThrow('TypeError', `Cannot read properties of ${p} (reading '${name}')`);
      const label = secretLabel(receiver, ...args);
      if (label) return poison(label);
      if (typeof p === 'string') return stringMethod(spend, p, name, args);
      return primitiveMethod(spend, p, name, args);
    }
    case 'array':
      return listMethod(interp, receiver, receiver.items, name, args);
    case 'date': {
      const label = secretLabel(receiver, ...args);
      if (label) return poison(label);
      return dateMethod(receiver.time, name);
    }
    case 'collection':
      return collectionMethod(receiver.entries, receiver.isSet, name, args);
    case 'remote': {
      if (isRemoteList(receiver)) return listMethod(interp, receiver, await remoteElements(interp.ctx, receiver), name, args);
      const subtype = receiver.object.subtype;
      if (subtype === 'map' || subtype === 'set') return collectionMethod(await remoteEntries(interp.ctx, receiver), subtype === 'set', name, args);
      if (receiver.taint) return poison(receiver.taint.label);
      break;
    }
  }
  if (receiver.kind === 'remote' && (await remoteHas(interp.ctx, receiver, name))) {
    const own = await remoteMember(interp.ctx, receiver, name);
    if (own.kind === 'remote' && own.object.type === 'function') {
      throw new LoupeRefusal('call', `calling ${describe(receiver)}.${name}() would run app code: Loupe's ${name} works on strings, arrays, Maps, Sets, Dates and numbers only`);
    }
  }
  throw new LoupeThrow('TypeError', `${describe(receiver)}.${name} is not a function`);
}

async function listMethod(interp: Interpreter, self: Val, items: Val[], name: string, args: Val[]): Promise<Val> {
  if (!hasCallback.has(name) && args.some((a) => a.kind === 'arrow')) throw new LoupeThrow('TypeError', `Loupe's ${name} takes no callback`);
  return arrayMethod(interp, self, items, name, args);
}

/** `parseInt(x)`, `Number(x)`, `String(x)`, `Boolean(x)`, … */
export async function callGlobal(interp: Interpreter, name: string, input: Val[]): Promise<Val> {
  const args = await Promise.all(input.map((v) => interp.listed(v)));
  const [a0 = undef, a1 = undef] = args;
  if (name === 'Boolean') {
    const label = truthLabel(a0);
    return label ? poison(label) : prim(truthy(a0));
  }
  const label = secretLabel(...args);
  if (label) return poison(label);
  switch (name) {
    case 'String':
      if (args.length === 0) return prim('');
      if (a0.kind === 'prim' && typeof a0.value !== 'symbol') return prim(String(a0.value));
      return prim(toStringValue(a0));
    case 'Number':
      if (args.length === 0) return prim(0);
      return prim(toNumberValue(a0));
    case 'parseInt':
      return prim(parseInt(toStringValue(a0), a1.kind === 'prim' && a1.value === undefined ? undefined : toNumberValue(a1)));
    case 'parseFloat':
      return prim(parseFloat(toStringValue(a0)));
    case 'isNaN':
      return prim(isNaN(toNumberValue(a0)));
    case 'isFinite':
      return prim(isFinite(toNumberValue(a0)));
  }
  throw new LoupeRefusal('call', `calling ${name}() is not a Loupe expression: only Loupe's built-ins can be called`);
}

async function callStatic(interp: Interpreter, ns: string, name: string, args: Val[]): Promise<Val> {
  const { spend } = interp.ctx;
  const [a0 = undef, a1 = undef, a2 = undef] = args;
  if (ns === 'JSON') {
    if (name === 'stringify') {
      if (a1.kind !== 'prim' || (a1.value !== undefined && a1.value !== null)) throw new LoupeRefusal('call', "Loupe's JSON.stringify takes no replacer");
      if (contentSecret(a2)) return poison(a2.taint!.label);
      return jsonStringify(interp, a0, a2.kind === 'prim' ? a2.value : undefined);
    }
    if (contentSecret(a0)) return poison(a0.taint!.label);
    return jsonParse(spend, toStringValue(a0));
  }
  if (ns === 'Object') return objectStatic(interp, name, args);
  if (ns === 'Array') {
    if (name === 'isArray') return isFull(a0) ? poison(a0.taint!.label) : prim(a0.kind === 'array' || (a0.kind === 'remote' && a0.object.subtype === 'array'));
    if (name === 'of') return { kind: 'array', items: [...args] };
    // Array.from
    if (isFull(a0)) return poison(a0.taint!.label);
    let items: Val[];
    if (a0.kind === 'object') {
      const lengthVal = a0.props.get('length') ?? undef;
      const lengthLabel = secretLabel(lengthVal);
      if (lengthLabel) return poison(lengthLabel);
      const length = toNumberValue(lengthVal);
      const n = Number.isFinite(length) && length > 0 ? Math.floor(length) : 0;
      spend.elements(n);
      // n elements built: n steps, as a callback per element costs.
      spend.step(n);
      items = Array.from({ length: n }, (_, i) => a0.props.get(String(i)) ?? undef);
    } else {
      const iterated = await interp.iterate(a0);
      if (iterated.taint) return poison(iterated.taint.label);
      items = iterated.items;
    }
    const list: Val = { kind: 'array', items };
    return a1.kind === 'arrow' ? arrayMethod(interp, list, items, 'map', [a1]) : list;
  }
  const label = secretLabel(...args);
  if (label) return poison(label);
  const nums = () => args.map(toNumberValue);
  switch (ns) {
    case 'Math': {
      const fn = (Math as unknown as Record<string, (...x: number[]) => number>)[name]!;
      return prim(fn(...nums()));
    }
    case 'Number': {
      const fn = (Number as unknown as Record<string, (...x: Prim[]) => Prim>)[name]!;
      const input = args.map((a) => toPrimitive(a, 'number'));
      return prim(fn(...input));
    }
    case 'Date':
      if (name === 'now') return prim(Date.now());
      if (name === 'parse') return prim(Date.parse(toStringValue(a0)));
      return prim(Date.UTC(...(nums() as [number, number])));
    case 'String':
      spend.string(args.length);
      return prim(String.fromCharCode(...nums()));
  }
  throw new LoupeRefusal('call', `${ns}.${name} is not one of Loupe's built-ins`);
}

async function objectStatic(interp: Interpreter, name: string, args: Val[]): Promise<Val> {
  const [a0 = undef, a1 = undef] = args;
  if (isFull(a0)) return poison(a0.taint!.label);
  // The number of a secret string's characters is its length: content.
  if (a0.kind === 'prim' && typeof a0.value === 'string' && a0.taint) return poison(a0.taint.label);
  const { redaction } = interp.ctx;
  switch (name) {
    case 'keys':
    case 'values':
    case 'entries': {
      const entries = await interp.ownEntries(a0);
      const keyOf = (k: string): Val => {
        // The keys of a redacted container are content (how many there are is shape).
        if (a0.taint) return prim(k, { full: true, label: a0.taint.label });
        // A key the target holds is its text (a cache keyed by an API key): a learned value in it is secret too.
        const secret = a0.kind === 'remote' ? redaction.secretInTarget(k) : redaction.secretIn(k);
        return prim(k, secret ? { full: false, label: secret } : undefined);
      };
      if (name === 'keys') return { kind: 'array', items: entries.map(([k]) => keyOf(k)) };
      if (name === 'values') return { kind: 'array', items: entries.map(([, v]) => v) };
      return { kind: 'array', items: entries.map(([k, v]): Val => ({ kind: 'array', items: [keyOf(k), v] })) };
    }
    case 'fromEntries': {
      const { items, taint } = await interp.iterate(a0);
      if (taint) return poison(taint.label);
      const props = new Map<string, Val>();
      for (const item of items) {
        const pair = (await interp.iterate(item)).items;
        const key = pair[0] ?? undef;
        const keyLabel = secretLabel(key);
        if (keyLabel) return poison(keyLabel);
        props.set(interp.propertyKey(key), pair[1] ?? undef);
      }
      interp.ctx.spend.elements(props.size);
      return { kind: 'object', props };
    }
    case 'hasOwn': {
      if (a0.taint) return poison(a0.taint.label);
      const keyLabel = secretLabel(a1);
      if (keyLabel) return poison(keyLabel);
      const key = interp.propertyKey(a1);
      if (a0.kind === 'remote') {
        const keyed = await learnedKeyTaint(interp.ctx, a0);
        if (keyed) return poison(keyed.label);
        return prim((await interp.ownEntries(a0)).some(([k]) => k === key) || (await ownNonEnumerable(interp, a0, key)));
      }
      return prim((await interp.ownEntries(a0)).some(([k]) => k === key));
    }
  }
  throw new LoupeRefusal('call', `Object.${name} is not one of Loupe's built-ins`);
}

async function ownNonEnumerable(interp: Interpreter, v: Extract<Val, { kind: 'remote' }>, key: string): Promise<boolean> {
  if (!v.object.objectId) return false;
  const read = await interp.ctx.reader.getProperties(v.object.objectId, interp.ctx.spend);
  return read.result.some((d) => d.name === key && !d.symbol);
}

/** `new Date(…)`, `new Map(entries)`, `new Set(values)`. */
export async function construct(interp: Interpreter, name: string, args: Val[]): Promise<Val> {
  const result = await constructed(interp, name, args);
  interp.ctx.spend.step(sizeOf(result));
  return result;
}

async function constructed(interp: Interpreter, name: string, args: Val[]): Promise<Val> {
  const [a0 = undef] = args;
  if (name === 'Date') {
    const label = secretLabel(...args);
    if (label) return poison(label);
    if (args.length === 1 && a0.kind === 'date') return { kind: 'date', time: a0.time };
    return { kind: 'date', time: dateFrom(args.map((a) => toPrimitive(a, 'default'))) };
  }
  if (isFull(a0)) return poison(a0.taint!.label);
  const { items, taint } = isNullish(a0) ? { items: [] as Val[], taint: undefined } : await interp.iterate(a0);
  if (taint) return poison(taint.label);
  const entries: [Val, Val][] = [];
  for (const item of items) {
    const [key, value] = name === 'Set' ? [item, item] : (await interp.iterate(item)).items;
    // Which keys are the same decides the size: a secret key would make it an oracle.
    if (key && contentSecret(key)) return poison(key.taint!.label);
    const k = key ?? undef;
    const at = entries.findIndex(([x]) => x === k || (x.kind === 'prim' && k.kind === 'prim' && (x.value === k.value || (Number.isNaN(x.value) && Number.isNaN(k.value)))));
    if (at >= 0) entries[at] = [entries[at]![0], value ?? undef];
    else entries.push([k, value ?? undef]);
    interp.ctx.spend.step();
  }
  return { kind: 'collection', isSet: name === 'Set', entries };
}

/** What the interpreter calls for a call, a global function or `new`. */
export const builtinCalls: BuiltinCalls = { callFunction, callGlobal, construct };
