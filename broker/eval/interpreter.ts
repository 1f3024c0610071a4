/**
 * The evaluator of Loupe expressions: walks a checked AST, reads the target only through remote.ts, and
 * carries taint through every operation. Under a decision that depends on secret content (a condition, `&&`,
 * `||`), both sides are evaluated and the result is fully tainted, so neither an error nor the amount of
 * work done tells which side was chosen.
 */
import type { Protocol } from 'devtools-protocol';
import { ChainShort, LoupeRefusal, LoupeThrow } from './budget';
import { binaryOperation } from './operators';
import { builtinNames, globalFunctions, type AstNode } from './parse';
import { childTaint, isRemoteList, learnedKeyTaint, memberValue, readValue, remoteElements, remoteEntries, remoteHas, remoteMember, remoteOwnEntries, type ReadContext } from './remote';
import { isProcessObject } from '../gate/processFacts';
export { describe, truthLabel } from './values';
import { describe, truthLabel } from './values';
import { contentSecret, full, isFull, isNullish, poison, prim, secretLabel, toPrimitive, toStringValue, truthy, typeOf, undef, type Prim, type Scope, type Taint, type Val } from './values';

/** The built-in functions (builtins.ts), handed in so the two modules do not import each other. */
export interface BuiltinCalls {
  callFunction(interp: Interpreter, node: AstNode, scope: Scope | undefined): Promise<Val>;
  callGlobal(interp: Interpreter, name: string, input: Val[]): Promise<Val>;
  construct(interp: Interpreter, name: string, args: Val[]): Promise<Val>;
}

export interface InterpreterContext extends ReadContext {
  readonly calls: BuiltinCalls;
  /** The policy's evaluation.denyIdentifiers: the entry a dotted path (`process.env`) falls under, if any. */
  readonly denied?: (path: string) => string | undefined;
  readonly frame?: Protocol.Debugger.CallFrame;
}

export class Interpreter {
  constructor(
    readonly ctx: InterpreterContext,
    readonly source: string,
  ) {}

  async eval(node: AstNode, scope: Scope | undefined): Promise<Val> {
    this.ctx.spend.step();
    if (this.ctx.spend.due) await this.ctx.spend.pace();
    switch (node.type) {
      case 'Literal':
        return prim(node.bigint !== undefined ? BigInt(node.bigint) : (node.value as Prim));
      case 'Identifier':
        return this.resolve(node.name, scope);
      case 'ThisExpression':
        return this.ctx.frame ? readValue(this.ctx, this.ctx.frame.this, undefined) : this.pathed({ kind: 'remote', object: await this.ctx.reader.globalObject(this.ctx.spend) }, '', '');
      case 'ParenthesizedExpression':
        return this.eval(node.expression, scope);
      case 'ChainExpression':
        try {
          return await this.eval(node.expression, scope);
        } catch (error) {
          if (error instanceof ChainShort) return undef;
          throw error;
        }
      case 'TemplateLiteral': {
        const values = await Promise.all((await this.evalAll(node.expressions, scope)).map((v) => this.listed(v)));
        const label = secretLabel(...values);
        if (label) return poison(label);
        let text = node.quasis[0].value.cooked ?? '';
        for (let i = 0; i < values.length; i++) {
          text += toStringValue(values[i]!) + (node.quasis[i + 1].value.cooked ?? '');
          this.ctx.spend.string(text.length);
        }
        return prim(text);
      }
      case 'ArrayExpression':
        return this.arrayLiteral(node, scope);
      case 'ObjectExpression':
        return this.objectLiteral(node, scope);
      case 'UnaryExpression':
        return this.unary(node, scope);
      case 'BinaryExpression':
        if (node.operator === 'in') return this.has(await this.eval(node.left, scope), await this.eval(node.right, scope));
        if (node.operator === '===' || node.operator === '!==') return this.binary(node.operator, await this.eval(node.left, scope), await this.eval(node.right, scope));
        return this.binary(node.operator, await this.listed(await this.eval(node.left, scope)), await this.listed(await this.eval(node.right, scope)));
      case 'LogicalExpression':
        return this.logical(node, scope);
      case 'ConditionalExpression': {
        const test = await this.eval(node.test, scope);
        const label = truthLabel(test);
        if (label) return this.bothSides(label, [node.consequent, node.alternate], scope);
        return this.eval(truthy(test) ? node.consequent : node.alternate, scope);
      }
      case 'SequenceExpression': {
        let last: Val = undef;
        for (const e of node.expressions) last = await this.eval(e, scope);
        return last;
      }
      case 'MemberExpression': {
        const object = await this.eval(node.object, scope);
        if (node.optional && isNullish(object) && !isFull(object)) throw new ChainShort();
        const key = node.computed ? await this.eval(node.property, scope) : prim(node.property.name as string);
        return this.member(object, key);
      }
      case 'CallExpression':
        return this.ctx.calls.callFunction(this, node, scope);
      case 'NewExpression':
        return this.ctx.calls.construct(this, node.callee.name as string, await this.args(node.arguments, scope));
      case 'ArrowFunctionExpression':
        return { kind: 'arrow', node, scope: scope ?? { names: new Map() } };
      default:
        throw new LoupeRefusal('construct', `${node.type} is not a Loupe expression`);
    }
  }

  evalAll(nodes: AstNode[], scope: Scope | undefined): Promise<Val[]> {
    return Promise.all(nodes.map((n) => this.eval(n, scope)));
  }

  /** Call arguments, spreads expanded. */
  async args(nodes: AstNode[], scope: Scope | undefined): Promise<Val[]> {
    const out: Val[] = [];
    for (const n of nodes) {
      if (n.type === 'SpreadElement') {
        const { items, taint } = await this.iterate(await this.eval(n.argument, scope));
        if (taint) out.push(poison(taint.label));
        else out.push(...items);
      } else out.push(await this.eval(n, scope));
    }
    return out;
  }

  /** Evaluates both branches of a decision on secret content; the chosen one's value, fully tainted. */
  private async bothSides(label: string, branches: AstNode[], scope: Scope | undefined): Promise<Val> {
    await Promise.all(
      branches.map((n) =>
        this.eval(n, scope).catch((error) => {
          if (error instanceof LoupeRefusal && error.rule === 'budget') throw error;
        }),
      ),
    );
    return poison(label);
  }

  private async logical(node: AstNode, scope: Scope | undefined): Promise<Val> {
    const left = await this.eval(node.left, scope);
    const label = node.operator === '??' ? (isFull(left) ? left.taint!.label : undefined) : truthLabel(left);
    if (label) return this.bothSides(label, [node.right], scope);
    const takeLeft = node.operator === '&&' ? !truthy(left) : node.operator === '||' ? truthy(left) : !isNullish(left);
    return takeLeft ? left : this.eval(node.right, scope);
  }

  private async unary(node: AstNode, scope: Scope | undefined): Promise<Val> {
    let v: Val;
    try {
      v = await this.eval(node.argument, scope);
    } catch (error) {
      // `typeof undeclared` is "undefined", as in JavaScript.
      if (node.operator === 'typeof' && node.argument.type === 'Identifier' && error instanceof LoupeThrow && error.className === 'ReferenceError') return prim('undefined');
      throw error;
    }
    if (node.operator === 'void') return undef;
    if (node.operator === 'typeof') return isFull(v) ? poison(v.taint!.label) : prim(typeOf(v));
    if (node.operator === '!') {
      const label = truthLabel(v);
      return label ? poison(label) : prim(!truthy(v));
    }
    const label = secretLabel(v);
    if (label) return poison(label);
    const p = toPrimitive(v, 'number');
    try {
      switch (node.operator) {
        case '-':
          return prim(-(p as number));
        case '+':
          if (typeof p === 'bigint') throw new TypeError('Cannot convert a BigInt value to a number');
          return prim(+(p as number));
        case '~':
          return prim(~(p as number));
      }
    } catch (error) {
      throw new LoupeThrow('TypeError', (error as Error).message);
    }
    throw new LoupeRefusal('construct', `the operator ${node.operator} is not a Loupe expression`);
  }

  binary(op: string, left: Val, right: Val): Val {
    return binaryOperation(this.ctx.spend, op, left, right);
  }

  async has(keyVal: Val, object: Val): Promise<Val> {
    // Which keys a redacted container has is secret: `guess in sessions`.
    const label = object.taint?.label ?? secretLabel(keyVal);
    if (label) return poison(label);
    const key = this.propertyKey(keyVal);
    switch (object.kind) {
      case 'remote': {
        const keyed = await learnedKeyTaint(this.ctx, object);
        if (keyed) return poison(keyed.label);
        return prim(await remoteHas(this.ctx, object, key), object.taint?.full ? object.taint : undefined);
      }
      case 'array':
        return prim(key === 'length' || (/^(0|[1-9]\d*)$/.test(key) && Number(key) < object.items.length));
      case 'object':
        return prim(object.props.has(key));
      case 'collection':
        return prim(key === 'size');
      case 'date':
        return prim(false);
      default:
        throw new LoupeThrow('TypeError', `Cannot use 'in' operator to search for '${key}' in ${describe(object)}`);
    }
  }

  propertyKey(v: Val): string {
    if (v.kind === 'prim') return String(v.value);
    return toStringValue(v);
  }

  /** `object[key]`. */
  async member(object: Val, keyVal: Val): Promise<Val> {
    if (isFull(object)) return poison(object.taint!.label);
    const keyLabel = secretLabel(keyVal);
    if (keyLabel) return poison(keyLabel);
    const key = this.propertyKey(keyVal);
    switch (object.kind) {
      case 'prim': {
        const p = object.value;
        if (p === null || p === undefined) throw new LoupeThrow('TypeError', `Cannot read properties of ${p} (reading '${key}')`);
        if (object.taint) return poison(object.taint.label);
        if (typeof p === 'string') {
          if (key === 'length') return prim(p.length);
          if (/^(0|[1-9]\d*)$/.test(key)) return prim(p[Number(key)]);
        }
        return methodRef(typeof p, key);
      }
      case 'array': {
        if (key === 'length') return prim(object.items.length);
        if (/^(0|[1-9]\d*)$/.test(key)) return object.items[Number(key)] ?? undef;
        return methodRef('array', key);
      }
      case 'object':
        return object.props.get(key) ?? undef;
      case 'collection':
        return key === 'size' ? prim(object.entries.length) : methodRef(object.isSet ? 'set' : 'map', key);
      case 'date':
        if (object.taint) return poison(object.taint.label);
        return methodRef('date', key);
      case 'remote':
        return this.pathed(await remoteMember(this.ctx, object, key), this.pathOf(object), key);
      case 'arrow':
      case 'builtin':
        return undef;
    }
  }

  /**
   * Where a value of the target was read from by name (`process`, `process.env`), kept with the value itself so an
   * alias (`[process][0].env`, a callback's parameter) still carries it: a denied path is refused however reached.
   */
  private readonly paths = new WeakMap<Val, string>();

  /** The path a value was read from; the process object is `process` however reached (an app's `const proc = process`). */
  private pathOf(v: Extract<Val, { kind: 'remote' }>): string | undefined {
    return isProcessObject(v.object) ? 'process' : this.paths.get(v);
  }

  private pathed(v: Val, parent: string | undefined, key: string): Val {
    if (parent === undefined || !this.ctx.denied) return v;
    const path = parent === '' ? key : `${parent}.${key}`;
    const hit = this.ctx.denied(path);
    if (hit) throw new LoupeRefusal('deny', `"${hit}" is denied by this target's policy (evaluation.denyIdentifiers)`);
    if (v.kind === 'remote') this.paths.set(v, path);
    return v;
  }

  /** A name: callback parameters, then Loupe's built-ins, then the paused frame's scopes (or the global scope). */
  async resolve(name: string, scope: Scope | undefined): Promise<Val> {
    for (let s = scope; s; s = s.parent) {
      const bound = s.names.get(name);
      if (bound) return bound;
    }
    if (name === 'globalThis' || !builtinNames.has(name)) return this.pathed(await this.resolveName(name), '', name === 'globalThis' ? '' : name);
    return this.resolveName(name);
  }

  private async resolveName(name: string): Promise<Val> {
    if (builtinNames.has(name)) {
      if (name === 'undefined') return undef;
      if (name === 'NaN') return prim(NaN);
      if (name === 'Infinity') return prim(Infinity);
      if (name === 'globalThis') return { kind: 'remote', object: await this.globalObject() };
      return { kind: 'builtin', name };
    }
    const { ctx } = this;
    if (ctx.frame) {
      await this.learnFrame(ctx.frame);
      for (const s of ctx.frame.scopeChain) {
        if (!s.object.objectId) continue;
        // With previews: a value found in a scope is answered with its preview, as V8 answers it.
        const read = await ctx.reader.getProperties(s.object.objectId, ctx.spend, true);
        // What the scope holds under sensitive names is learned before any of its names resolves: a copy under an
        // innocent name (`const hdr = apiKey` in a closure) is then the secret, also where the pause's walk did not
        // read this scope (a second closure of one function shares the first one's place).
        learnHeld(ctx, read.result);
        const found = read.result.find((d) => d.name === name && !d.symbol);
        if (!found) continue;
        let taint = childTaint(ctx, undefined, name);
        // A frame with a redacted parameter or local hands the same value out as arguments[i]: the scope that holds
        // `arguments` holds the parameters (the function's own scope, below any block scopes of the pause).
        if (name === 'arguments' && !taint) {
          const secret = read.result.find((d) => ctx.redaction.isSensitive(d.name));
          if (secret) taint = { full: false, label: secret.name };
        }
        return memberValue(ctx, found, undefined, taint);
      }
    } else {
      const global = await this.globalObject();
      const read = await ctx.reader.getProperties(global.objectId!, ctx.spend);
      const found = read.result.find((d) => d.name === name && !d.symbol);
      if (found) return memberValue(ctx, found, undefined);
      const lexical = await ctx.reader.globalLexical(name, ctx.spend);
      if (lexical) return readValue(ctx, lexical, childTaint(ctx, undefined, name));
    }
    throw new LoupeThrow('ReferenceError', `${name} is not defined`);
  }

  /**
   * Before a name resolves in a paused frame: what the frame's own scopes (local, block, catch) and its `this` hold
   * under sensitive names, directly or one object down (from the objects' previews), is learned. A condition or a
   * logpoint decided at a pause nobody is shown runs before any walk of those scopes: `const a = password` in a block,
   * `const shown = creds.password`, `const copy = this.apiKey` printed the secret, and `copy.startsWith('x')` decided
   * pauses. Reads are the frame's scopes with previews (the ones resolving names reads anyway) and `this`, once a pause.
   */
  private async learnFrame(frame: Protocol.Debugger.CallFrame): Promise<void> {
    const { ctx } = this;
    if (this.frameLearned === frame) return;
    this.frameLearned = frame;
    for (const s of frame.scopeChain) {
      if (!s.object.objectId || !['local', 'block', 'catch'].includes(s.type)) continue;
      learnHeld(ctx, (await ctx.reader.getProperties(s.object.objectId, ctx.spend, true)).result);
    }
    if (frame.this.type === 'object' && frame.this.objectId) learnHeld(ctx, (await ctx.reader.getProperties(frame.this.objectId, ctx.spend, true)).result);
  }

  private frameLearned: Protocol.Debugger.CallFrame | undefined;

  private async globalObject(): Promise<Protocol.Runtime.RemoteObject> {
    const global = this.ctx.frame?.scopeChain.find((s) => s.type === 'global')?.object;
    return global ?? this.ctx.reader.globalObject(this.ctx.spend);
  }

  /**
   * The items of an iterable, as the built-ins iterate it (never a user iterator). `taint` is set when how
   * many items there are is itself secret (the characters of a secret string).
   */
  async iterate(v: Val): Promise<{ items: Val[]; taint?: Taint }> {
    if (isFull(v)) return { items: [], taint: v.taint };
    switch (v.kind) {
      case 'prim':
        if (typeof v.value === 'string') {
          if (v.taint) return { items: [], taint: full(v.taint.label) };
          const chars = Array.from(v.value);
          this.ctx.spend.elements(chars.length);
          return { items: chars.map((c) => prim(c)) };
        }
        break;
      case 'array':
        return { items: v.items };
      case 'collection':
        return { items: v.entries.map(([k, val]) => (v.isSet ? val : { kind: 'array', items: [k, val] })) };
      case 'remote': {
        if (isRemoteList(v)) return { items: await remoteElements(this.ctx, v) };
        if (v.object.subtype === 'map' || v.object.subtype === 'set') {
          const entries = await remoteEntries(this.ctx, v);
          return { items: entries.map(([k, val]) => (v.object.subtype === 'set' ? val : { kind: 'array', items: [k, val] })) };
        }
        break;
      }
    }
    throw new LoupeThrow('TypeError', `${describe(v)} is not iterable by Loupe (arrays, strings, Maps and Sets are; a user iterator is app code)`);
  }

  /**
   * A list of the target (array, typed array) as a list of the interpreter's, so that turning it into a string
   * joins its elements as the built-in would (never the app's toString); other values unchanged.
   */
  async listed(v: Val, depth = 0): Promise<Val> {
    if (v.kind !== 'remote' || (v.object.subtype !== 'array' && v.object.subtype !== 'typedarray') || isFull(v) || depth > 4) return v;
    const items = await remoteElements(this.ctx, v);
    return { kind: 'array', items: await Promise.all(items.map((item) => this.listed(item, depth + 1))) };
  }

  /** Calls an arrow function given as a callback. */
  async callArrow(fn: Val, args: Val[]): Promise<Val> {
    // `filter(Boolean)`, `map(Number)`, `map(parseInt)`: Loupe's own functions as callbacks, with JS's arguments.
    if (fn.kind === 'builtin' && globalFunctions.has(fn.name)) {
      this.ctx.spend.step();
      return this.ctx.calls.callGlobal(this, fn.name, fn.name === 'parseInt' ? args.slice(0, 2) : args.slice(0, 1));
    }
    if (fn.kind !== 'arrow') throw new LoupeThrow('TypeError', `${describe(fn)} is not a function`);
    this.ctx.spend.step();
    const names = new Map<string, Val>();
    const { node } = fn;
    for (const [i, param] of (node.params as AstNode[]).entries()) await this.bind(param, args[i] ?? undef, names);
    const scope: Scope = { names, parent: fn.scope };
    const body = node.body.type === 'BlockStatement' ? node.body.body[0].argument : node.body;
    return this.eval(body, scope);
  }

  private async bind(pattern: AstNode, value: Val, names: Map<string, Val>): Promise<void> {
    if (pattern.type === 'Identifier') {
      names.set(pattern.name, value);
    } else if (pattern.type === 'ArrayPattern') {
      const { items, taint } = await this.iterate(value);
      for (const [i, element] of (pattern.elements as (AstNode | null)[]).entries()) {
        if (element) await this.bind(element, taint ? poison(taint.label) : (items[i] ?? undef), names);
      }
    } else if (pattern.type === 'ObjectPattern') {
      for (const p of pattern.properties as AstNode[]) {
        const key = p.key.type === 'Identifier' ? p.key.name : String(p.key.value);
        await this.bind(p.value, await this.member(value, prim(key)), names);
      }
    }
  }

  private async arrayLiteral(node: AstNode, scope: Scope | undefined): Promise<Val> {
    const items: Val[] = [];
    let taint: Taint | undefined;
    for (const e of node.elements as (AstNode | null)[]) {
      if (!e) items.push(undef);
      else if (e.type === 'SpreadElement') {
        const spread = await this.iterate(await this.eval(e.argument, scope));
        taint ??= spread.taint;
        items.push(...spread.items);
      } else items.push(await this.eval(e, scope));
      this.ctx.spend.elements(items.length);
    }
    this.ctx.spend.step(items.length);
    return taint ? poison(taint.label) : { kind: 'array', items };
  }

  private async objectLiteral(node: AstNode, scope: Scope | undefined): Promise<Val> {
    const props = new Map<string, Val>();
    let taint: Taint | undefined;
    for (const p of node.properties as AstNode[]) {
      if (p.type === 'SpreadElement') {
        const source = await this.eval(p.argument, scope);
        // The keys of a redacted container (or a secret string's indices) would become this object's keys.
        if (source.taint && !isNullish(source)) taint ??= full(source.taint.label);
        else
          for (const [k, v] of await this.ownEntries(source)) {
            // A key of the target's that holds a secret would become a key of this object, shown as it is.
            const keyLabel = source.kind === 'remote' ? this.ctx.redaction.secretInTarget(k) : undefined;
            if (keyLabel) taint ??= full(keyLabel);
            else props.set(k, v);
          }
      } else {
        const keyVal = p.computed ? await this.eval(p.key, scope) : prim(p.key.type === 'Identifier' ? p.key.name : String(p.key.value));
        const value = await this.eval(p.value, scope);
        const keyLabel = secretLabel(keyVal);
        if (keyLabel) taint ??= full(keyLabel);
        else props.set(this.propertyKey(keyVal), value);
      }
      this.ctx.spend.elements(props.size);
    }
    this.ctx.spend.step(props.size);
    return taint ? poison(taint.label) : { kind: 'object', props };
  }

  /** Own enumerable string-keyed entries, as Object.entries gives them. */
  async ownEntries(v: Val): Promise<[string, Val][]> {
    switch (v.kind) {
      case 'object':
        return [...v.props];
      case 'array':
        return v.items.map((item, i) => [String(i), item]);
      case 'prim':
        if (typeof v.value === 'string') return Array.from(v.value, (c, i) => [String(i), prim(c, v.taint)] as [string, Val]);
        if (v.value === null || v.value === undefined) throw new LoupeThrow('TypeError', 'Cannot convert undefined or null to object');
        return [];
      case 'remote':
        return this.remoteOwnEntries(v);
      default:
        return [];
    }
  }

  /**
   * A target object's own entries, each carrying its path as a member read by name does; a denied member (`env` of
   * `process`) is listed by its key with the marker for its value, however the listing is made (Object.entries,
   * Object.values, a spread, JSON.stringify), so nothing reaches what the policy denies.
   */
  async remoteOwnEntries(v: Extract<Val, { kind: 'remote' }>): Promise<[string, Val][]> {
    const entries = await remoteOwnEntries(this.ctx, v);
    const parent = this.pathOf(v);
    if (parent === undefined || !this.ctx.denied) return entries;
    return entries.map(([k, child]) => {
      const hit = this.ctx.denied!(parent === '' ? k : `${parent}.${k}`);
      return [k, hit ? poison(`${hit}, denied by this target's policy`) : this.pathed(child, parent, k)];
    });
  }
}

/** A method of a built-in type read without calling it: shown as a native function. */
function methodRef(type: string, key: string): Val {
  return { kind: 'builtin', name: `${type}.${key}` };
}

/**
 * Learns what a list of properties holds under sensitive names: primitives, and the primitive fields of an object's
 * preview (under their own sensitive names, or all of them when the object is held under one).
 */
function learnHeld(ctx: InterpreterContext, props: readonly Protocol.Runtime.PropertyDescriptor[]): void {
  const learn = (name: string, type: string | undefined, value: unknown) => {
    if ((type === 'string' || type === 'number') && value !== undefined) ctx.redaction.learn?.(name, String(value));
  };
  for (const d of props) {
    if (d.symbol || !d.value) continue;
    const sensitive = ctx.redaction.isSensitive(d.name);
    if (sensitive) learn(d.name, d.value.type, d.value.value);
    for (const p of d.value.preview?.properties ?? []) {
      if (sensitive) learn(d.name, p.type, p.value);
      else if (ctx.redaction.isSensitive(p.name)) learn(p.name, p.type, p.value);
    }
  }
}
