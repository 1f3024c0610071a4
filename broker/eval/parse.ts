/**
 * What a Loupe expression is: one JavaScript expression (acorn, ecmaVersion latest) built only from
 * constructs the broker can interpret itself with reads of the target. Everything else is refused here,
 * before anything is read, with a message naming the construct and where it is.
 */
import { parseExpressionAt, type Node } from 'acorn';
import { LoupeRefusal, type EvalBudget } from './budget';
import { BoundedCache } from '../../common/boundedCache';

/** acorn's ESTree nodes, loosely typed: the checker below is what vouches for their shape. */
export type AstNode = Node & Record<string, any>;

export const mathFunctions = new Set([
  'abs',
  'acos',
  'acosh',
  'asin',
  'asinh',
  'atan',
  'atan2',
  'atanh',
  'cbrt',
  'ceil',
  'clz32',
  'cos',
  'cosh',
  'exp',
  'expm1',
  'floor',
  'fround',
  'hypot',
  'imul',
  'log',
  'log10',
  'log1p',
  'log2',
  'max',
  'min',
  'pow',
  'round',
  'sign',
  'sin',
  'sinh',
  'sqrt',
  'tan',
  'tanh',
  'trunc',
]);

/** Functions reached through a built-in namespace: `Math.max`, `JSON.stringify`, `Object.keys`. */
export const staticFunctions: Readonly<Record<string, ReadonlySet<string>>> = {
  Math: mathFunctions,
  JSON: new Set(['stringify', 'parse']),
  Object: new Set(['keys', 'values', 'entries', 'fromEntries', 'hasOwn']),
  Array: new Set(['isArray', 'from', 'of']),
  Number: new Set(['isInteger', 'isFinite', 'isNaN', 'isSafeInteger', 'parseFloat', 'parseInt']),
  Date: new Set(['parse', 'now', 'UTC']),
  String: new Set(['fromCharCode']),
};

/** Functions called by their bare name. */
export const globalFunctions = new Set(['parseInt', 'parseFloat', 'isNaN', 'isFinite', 'Number', 'String', 'Boolean']);

/** Names that always mean Loupe's built-ins, whatever the app binds to them. */
export const builtinNames = new Set([...Object.keys(staticFunctions), ...globalFunctions, 'Map', 'Set', 'undefined', 'NaN', 'Infinity', 'globalThis']);

/** The string methods Loupe implements (strings.ts). */
export const stringMethods = new Set([
  'slice',
  'substring',
  'substr',
  'split',
  'toUpperCase',
  'toLowerCase',
  'trim',
  'trimStart',
  'trimEnd',
  'includes',
  'startsWith',
  'endsWith',
  'indexOf',
  'lastIndexOf',
  'replace',
  'replaceAll',
  'padStart',
  'padEnd',
  'at',
  'charAt',
  'charCodeAt',
  'codePointAt',
  'repeat',
  'concat',
  'localeCompare',
  'toString',
  'valueOf',
]);

/** The Date methods Loupe implements (strings.ts). */
export const dateMethods = new Set([
  'getFullYear',
  'getMonth',
  'getDate',
  'getDay',
  'getHours',
  'getMinutes',
  'getSeconds',
  'getMilliseconds',
  'getTime',
  'getTimezoneOffset',
  'getUTCFullYear',
  'getUTCMonth',
  'getUTCDate',
  'getUTCDay',
  'getUTCHours',
  'getUTCMinutes',
  'getUTCSeconds',
  'getUTCMilliseconds',
  'toISOString',
  'toJSON',
  'valueOf',
  'toUTCString',
  'toString',
]);

/** Method names Loupe implements on the values it knows (strings, arrays, Maps, Sets, Dates, numbers). */
export const methodNames = new Set([
  ...stringMethods,
  // arrays
  'map',
  'filter',
  'find',
  'findIndex',
  'findLast',
  'findLastIndex',
  'some',
  'every',
  'reduce',
  'reduceRight',
  'join',
  'flat',
  'flatMap',
  'sort',
  'toSorted',
  'reverse',
  'toReversed',
  'keys',
  'values',
  'entries',
  'forEach',
  // Maps and Sets
  'has',
  'get',
  ...dateMethods,
  // numbers
  'toFixed',
  'toPrecision',
]);

const constructors = new Set(['Date', 'Map', 'Set']);

export type ParseResult = { ok: true; ast: AstNode } | { ok: false; refusal: LoupeRefusal };

/** Checked parses of recent expressions (a watch is evaluated on every pause); the interpreter never changes an AST. */
const checked = new BoundedCache<ParseResult>(512, 2000);

export function parseLoupeExpression(source: string, budget: Pick<EvalBudget, 'maxSourceLength' | 'maxDepth'>): ParseResult {
  if (typeof source !== 'string') return parseChecked(source, budget);
  return checked.get(`${budget.maxSourceLength}:${budget.maxDepth}:${source}`, () => parseChecked(source, budget));
}

function parseChecked(source: string, budget: Pick<EvalBudget, 'maxSourceLength' | 'maxDepth'>): ParseResult {
  try {
    if (typeof source !== 'string') throw new LoupeRefusal('syntax', 'the expression is not a string');
    if (source.length > budget.maxSourceLength) {
      throw new LoupeRefusal('budget', `the expression is ${source.length} characters long; Loupe accepts at most ${budget.maxSourceLength}`);
    }
    let ast: AstNode;
    try {
      ast = parseExpressionAt(source, 0, { ecmaVersion: 'latest', locations: true, preserveParens: true }) as AstNode;
    } catch (error) {
      if (error instanceof RangeError) throw new LoupeRefusal('budget', `the expression is nested too deeply to parse (Loupe accepts at most ${budget.maxDepth} levels)`);
      throw new LoupeRefusal('syntax', `SyntaxError: ${(error as Error).message}`);
    }
    const rest = source.slice(ast.end);
    if (rest.trim() !== '' && !/^\s*;?\s*(\/\/[^\n]*)?\s*$/.test(rest)) {
      throw new LoupeRefusal('syntax', `only one expression is a Loupe expression; found more after column ${ast.end + 1}: "${clip(rest.trim())}"`);
    }
    new Checker(source, budget.maxDepth).check(ast, 0, false);
    return { ok: true, ast };
  } catch (error) {
    if (error instanceof LoupeRefusal) return { ok: false, refusal: error };
    return { ok: false, refusal: new LoupeRefusal('syntax', `the expression could not be checked: ${(error as Error).message}`) };
  }
}

const clip = (text: string) => (text.length > 60 ? `${text.slice(0, 57)}...` : text);

/** The dotted name of a callee such as `Math.max` or `user.getName`, for messages. */
export function calleeName(node: AstNode, source: string): string {
  return clip(source.slice(node.start, node.end));
}

class Checker {
  constructor(
    private readonly source: string,
    private readonly maxDepth: number,
  ) {}

  private text(node: AstNode): string {
    return clip(this.source.slice(node.start, node.end));
  }

  private where(node: AstNode): string {
    return node.loc ? ` (line ${node.loc.start.line}, column ${node.loc.start.column + 1})` : '';
  }

  private refuse(node: AstNode, what: string, why: string, rule: 'construct' | 'call' = 'construct'): never {
    throw new LoupeRefusal(rule, `${what}${this.where(node)} is not a Loupe expression: ${why}`);
  }

  /** `callbackAllowed`: the node is an argument of a built-in call, where an arrow function may stand. */
  check(node: AstNode | null | undefined, depth: number, callbackAllowed: boolean): void {
    if (!node) return;
    if (depth > this.maxDepth) throw new LoupeRefusal('budget', `the expression is nested more than ${this.maxDepth} levels deep (Loupe's bound)`);
    const next = depth + 1;
    switch (node.type) {
      case 'Literal':
        if (node.regex) this.refuse(node, `the regular expression ${this.text(node)}`, 'the broker does not run regular expressions from an expression (use string methods)');
        return;
      case 'Identifier':
      case 'ThisExpression':
        return;
      case 'TemplateLiteral':
        for (const e of node.expressions) this.check(e, next, false);
        return;
      case 'TaggedTemplateExpression':
        return this.refuse(node, `the tagged template ${this.text(node)}`, 'a tag is a function call that runs app code', 'call');
      case 'ArrayExpression':
        for (const e of node.elements) this.check(e, next, false);
        return;
      case 'ObjectExpression':
        for (const p of node.properties) {
          if (p.type === 'SpreadElement') this.check(p.argument, next, false);
          else {
            if (p.kind !== 'init' || p.method) this.refuse(p, `the ${p.kind === 'init' ? 'method' : p.kind + 'ter'} ${this.text(p)}`, 'object literals hold values only');
            if (p.computed) this.check(p.key, next, false);
            this.check(p.value, next, false);
          }
        }
        return;
      case 'SpreadElement':
        return this.check(node.argument, next, false);
      case 'UnaryExpression':
        if (node.operator === 'delete') this.refuse(node, `delete (${this.text(node)})`, 'it changes the target (a side effect)');
        return this.check(node.argument, next, false);
      case 'BinaryExpression':
        if (node.operator === 'instanceof') this.refuse(node, `instanceof (${this.text(node)})`, 'it can run app code (Symbol.hasInstance)');
        this.check(node.left, next, false);
        return this.check(node.right, next, false);
      case 'LogicalExpression':
        this.check(node.left, next, false);
        return this.check(node.right, next, false);
      case 'ConditionalExpression':
        this.check(node.test, next, false);
        this.check(node.consequent, next, false);
        return this.check(node.alternate, next, false);
      case 'SequenceExpression':
        for (const e of node.expressions) this.check(e, next, false);
        return;
      case 'ParenthesizedExpression':
      case 'ChainExpression':
        return this.check(node.expression, next, callbackAllowed);
      case 'MemberExpression':
        if (node.property.type === 'PrivateIdentifier') this.refuse(node, `the private name ${this.text(node)}`, 'private fields are shown when the object is expanded');
        if (node.object.type === 'Super') this.refuse(node, 'super', 'there is no class here');
        this.check(node.object, next, false);
        if (node.computed) this.check(node.property, next, false);
        return;
      case 'CallExpression':
        if (node.callee.type === 'MemberExpression') {
          this.check(node.callee.object, next, false);
          if (node.callee.computed) this.check(node.callee.property, next, false);
        }
        this.checkCallee(node);
        if (this.text(node.callee) === 'JSON.stringify' && node.arguments[1]?.type === 'ArrowFunctionExpression') {
          this.refuse(node.arguments[1], `the replacer ${this.text(node.arguments[1])}`, "Loupe's JSON.stringify takes no replacer function", 'call');
        }
        for (const a of node.arguments) this.check(a, next, true);
        return;
      case 'NewExpression':
        if (node.callee.type !== 'Identifier' || !constructors.has(node.callee.name)) {
          this.refuse(node, `new ${this.text(node.callee)}(…)`, 'only Date, Map and Set can be constructed (a constructor runs app code)', 'call');
        }
        for (const a of node.arguments) this.check(a, next, false);
        return;
      case 'ArrowFunctionExpression':
        if (!callbackAllowed) this.refuse(node, `the function ${this.text(node)}`, "an arrow function may only be a callback of one of Loupe's built-ins (map, filter, reduce, …)");
        if (node.async) this.refuse(node, `the async function ${this.text(node)}`, 'nothing asynchronous runs in an expression');
        for (const p of node.params) this.checkPattern(p, next);
        if (node.body.type === 'BlockStatement') {
          const [only] = node.body.body;
          if (node.body.body.length !== 1 || only.type !== 'ReturnStatement' || !only.argument) {
            this.refuse(node.body, `the function body ${this.text(node.body)}`, 'a callback is an expression, or a block holding only `return expression`');
          }
          return this.check(only.argument, next, false);
        }
        return this.check(node.body, next, false);
      case 'AssignmentExpression':
        return this.refuse(node, `the assignment ${this.text(node)}`, 'it changes the target (a side effect)');
      case 'UpdateExpression':
        return this.refuse(node, `${node.operator} (${this.text(node)})`, 'it changes the target (a side effect)');
      case 'AwaitExpression':
        return this.refuse(node, `await (${this.text(node)})`, 'nothing asynchronous runs in an expression');
      case 'YieldExpression':
        return this.refuse(node, 'yield', 'there is no generator here');
      case 'ImportExpression':
        return this.refuse(node, `import() (${this.text(node)})`, 'it loads and runs code', 'call');
      case 'FunctionExpression':
        return this.refuse(node, `the function ${this.text(node)}`, "only arrow functions, and only as callbacks of Loupe's built-ins");
      case 'ClassExpression':
        return this.refuse(node, `the class ${this.text(node)}`, 'it defines code');
      case 'MetaProperty':
        return this.refuse(node, this.text(node), 'it is not a value Loupe can read');
      default:
        return this.refuse(node, `${node.type} (${this.text(node)})`, 'the construct is not in the Loupe subset');
    }
  }

  private checkPattern(node: AstNode, depth: number): void {
    if (depth > this.maxDepth) throw new LoupeRefusal('budget', `the expression is nested more than ${this.maxDepth} levels deep (Loupe's bound)`);
    if (node.type === 'Identifier') return;
    if (node.type === 'ArrayPattern') {
      for (const e of node.elements) if (e) this.checkPattern(e, depth + 1);
      return;
    }
    if (node.type === 'ObjectPattern') {
      for (const p of node.properties) {
        if (p.type !== 'Property' || p.computed) this.refuse(p, `the parameter pattern ${this.text(p)}`, 'callback parameters are names, [a, b] or {a, b: c}');
        this.checkPattern(p.value, depth + 1);
      }
      return;
    }
    this.refuse(node, `the parameter ${this.text(node)}`, 'callback parameters are names, [a, b] or {a, b: c} (no defaults or rest)');
  }

  private checkCallee(node: AstNode): void {
    let callee = node.callee as AstNode;
    while (callee.type === 'ParenthesizedExpression') callee = callee.expression;
    const why = "only Loupe's built-ins can be called (an app function runs app code)";
    if (callee.type === 'Identifier') {
      if (globalFunctions.has(callee.name)) return;
      this.refuse(node, `calling ${this.text(callee)}()`, why, 'call');
    }
    if (callee.type === 'MemberExpression' && callee.property.type !== 'PrivateIdentifier') {
      const name = memberName(callee);
      if (name === undefined) this.refuse(node, `calling ${this.text(callee)}()`, `${why}; a computed method name cannot be checked`, 'call');
      const base = callee.object as AstNode;
      if (base.type === 'Identifier' && staticFunctions[base.name]) {
        if (base.name === 'Math' && name === 'random') this.refuse(node, 'Math.random()', 'the broker does not hand out random numbers from the target or itself', 'call');
        if (staticFunctions[base.name]!.has(name)) return;
        this.refuse(node, `calling ${this.text(callee)}()`, `${base.name}.${name} is not one of Loupe's built-ins`, 'call');
      }
      if (methodNames.has(name)) return;
      this.refuse(node, `calling ${this.text(callee)}()`, why, 'call');
    }
    this.refuse(node, `calling ${this.text(node.callee)}()`, why, 'call');
  }
}

/** `a.b` → "b", `a['b']` → "b", `a[0]` → "0"; a computed name from an expression → undefined. */
export function memberName(node: AstNode): string | undefined {
  if (!node.computed) return node.property.type === 'Identifier' ? node.property.name : undefined;
  if (node.property.type === 'Literal' && (typeof node.property.value === 'string' || typeof node.property.value === 'number')) return String(node.property.value);
  return undefined;
}
