import { parse, type Node } from 'acorn';
import { marker } from './redactionPolicy';

/** What source redaction asks of the session's Redactor (redact.ts, which redacts function sources with it). */
export interface SourceRedactor {
  readonly active: boolean;
  readonly hits: string[];
  isSensitive(name: string): boolean;
  isListedName(text: string): boolean;
  scrub(text: string): string;
}
type Redactor = SourceRedactor;

/**
 * Redaction of script source (`Debugger.getScriptSource`, and the source the broker searches for
 * `Debugger.searchInContent`). Secrets are often literals in the code itself: a string or number literal
 * assigned to a redacted name (`const apiKey = "…"`, `{ password: "…" }`, `cfg.token = "…"`), and any
 * string literal matching a redaction pattern (a bearer token, a JWT, a card number) is replaced by the
 * marker (as are values beside a redacted key: `['token', …]`, `headers.set('authorization', …)`). Only literal text changes and never across a line break, so line numbers (breakpoints) stay right.
 * A source that does not parse (or is too large to parse within the broker's time bounds) is scrubbed by
 * pattern and `name: value` pair as any other text is.
 */

/** Above this, parsing could hold the broker's event loop too long (acorn parses ~30 MB/s here). */
export const maxParsedSourceChars = 4 << 20;

type AnyNode = Node & Record<string, unknown>;

interface Replacement {
  readonly start: number;
  readonly end: number;
  readonly text: string;
}

export function redactSource(source: string, redactor: Redactor): { source: string; replaced: number } {
  if (!redactor.active) return { source, replaced: 0 };
  const ast = source.length <= maxParsedSourceChars ? parseAny(source) : undefined;
  if (!ast) {
    const scrubbed = scrubByLine(source, redactor);
    return { source: scrubbed, replaced: scrubbed === source ? 0 : 1 };
  }
  return replaceLiterals(source, ast, redactor);
}

/** Function source a function object's description shows; longer is cut to its head (a parse would cost too much). */
export const maxFunctionSourceChars = 64 << 10;

/**
 * The source text a function object's description carries (`function f() {…}`, an arrow, a class, a method
 * `m() {…}`), with the same literals replaced as in its script's source: the description is a second way to the
 * same text. Parsed as an expression, or as a method in an object literal; text that parses neither way is left to
 * the caller's scrub. A description over maxFunctionSourceChars keeps its head, the body withheld.
 */
export function redactFunctionSource(text: string, redactor: Redactor): string {
  if (!redactor.active) return text;
  if (text.length > maxFunctionSourceChars) {
    const head = text.slice(0, Math.max(0, text.indexOf('{') + 1)).slice(0, 400);
    return `${head} ${marker(`function source of ${text.length} characters`)} }`;
  }
  for (const [open, close] of [
    ['(', '\n)'],
    ['({', '\n})'],
  ] as const) {
    const wrapped = open + text + close;
    const ast = parseAny(wrapped);
    if (!ast) continue;
    const out = replaceLiterals(wrapped, ast, redactor).source;
    return out.slice(open.length, out.length - close.length);
  }
  return text;
}

function replaceLiterals(source: string, ast: Node, redactor: Redactor): { source: string; replaced: number } {
  const replacements: Replacement[] = [];
  visit(
    ast as AnyNode,
    undefined,
    (node, sensitiveAs) => {
      const replacement = literalReplacement(source, node, sensitiveAs, redactor);
      if (replacement) replacements.push(replacement);
    },
    (name) => redactor.isSensitive(name),
    (text) => redactor.isListedName(text),
  );
  if (replacements.length === 0) return { source, replaced: 0 };
  replacements.sort((a, b) => a.start - b.start);
  let out = '';
  let from = 0;
  for (const r of replacements) {
    if (r.start < from) continue;
    out += source.slice(from, r.start) + r.text;
    from = r.end;
  }
  return { source: out + source.slice(from), replaced: replacements.length };
}

/**
 * Text that did not parse, scrubbed a line at a time so no match joins lines; a private key's body lines,
 * which no single line shows as one, are replaced between its BEGIN and END lines.
 */
function scrubByLine(source: string, redactor: Redactor): string {
  let inKey = false;
  return source
    .split(/(\r\n|[\r\n\u2028\u2029])/)
    .map((line, i) => {
      if (i % 2 === 1) return line;
      if (inKey) {
        if (/-----END [A-Z ]*PRIVATE KEY-----/.test(line)) inKey = false;
        return marker('private key');
      }
      if (/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(line) && !/-----END [A-Z ]*PRIVATE KEY-----/.test(line)) inKey = true;
      return redactor.scrub(line);
    })
    .join('');
}

function parseAny(source: string): Node | undefined {
  const common = { ecmaVersion: 'latest', allowHashBang: true, allowReturnOutsideFunction: true, allowAwaitOutsideFunction: true, allowImportExportEverywhere: true } as const;
  for (const sourceType of ['module', 'script'] as const) {
    try {
      return parse(source, { ...common, sourceType });
    } catch {
      // next: sloppy-mode scripts (`with`, octal literals) parse only as scripts
    }
  }
  return undefined;
}

/** The name a value is assigned to, when its parent gives one: `name = v`, `{ name: v }`, `o.name = v`, `name = v` default. */
function assignedName(parent: AnyNode, child: AnyNode, index: number, isListed: (text: string) => boolean): string | undefined {
  if (parent.type === 'VariableDeclarator' && parent.init === child) return nameOf(parent.id as AnyNode);
  if (parent.type === 'Property' && parent.value === child) return keyName(parent);
  if (parent.type === 'PropertyDefinition' && parent.value === child) return keyName(parent);
  // A getter or method: what it returns is its value (`get apiKey() { return "…" }`).
  if (parent.type === 'MethodDefinition' && parent.value === child) return keyName(parent);
  if ((parent.type === 'AssignmentExpression' || parent.type === 'AssignmentPattern') && parent.right === child) return nameOf(parent.left as AnyNode);
  // A key and its value side by side: `['token', v]` (Map entries, fromEntries) and `set('token', v)`, `setHeader('authorization', v)`.
  const pair = parent.type === 'CallExpression' || parent.type === 'NewExpression' ? (parent.arguments as AnyNode[]) : undefined;
  if (pair && pair[1] === child && pair[0]?.type === 'Literal' && typeof pair[0].value === 'string') return pair[0].value;
  // In a list, each element beside a name: `['token', v]` and a flat `['Host', h, 'X-Api-Key', k]` (rawHeaders).
  // Not an element that is a name itself: a list of field names (`['password', 'token']`) holds no secret.
  if (parent.type === 'ArrayExpression' && index > 0) {
    const before = (parent.elements as (AnyNode | null)[])[index - 1];
    const own = child.type === 'Literal' && typeof child.value === 'string' && isListed(child.value);
    if (before?.type === 'Literal' && typeof before.value === 'string' && !own) return before.value;
  }
  return undefined;
}

function nameOf(node: AnyNode): string | undefined {
  if (node.type === 'Identifier' || node.type === 'PrivateIdentifier') return node.name as string;
  if (node.type === 'MemberExpression') {
    const property = node.property as AnyNode;
    if (!node.computed) return nameOf(property);
    if (property.type === 'Literal' && typeof property.value === 'string') return property.value;
  }
  return undefined;
}

function keyName(node: AnyNode): string | undefined {
  const key = node.key as AnyNode;
  if (!node.computed) return key.type === 'Literal' ? String(key.value) : nameOf(key);
  return key.type === 'Literal' && typeof key.value === 'string' ? key.value : undefined;
}

/**
 * Walks every node. `sensitiveAs` is the redacted name a value is assigned to; it reaches the literals
 * under it through wrappers that keep the value (`"…" + "…"`, `` `…` ``, `cond ? "a" : "b"`, `x ?? "…"`,
 * arrays and `String("…")`-like calls). Into a nested object only from a redacted name: everything inside a
 * redacted container is its secret (`credentials = { key: "…" }`), as the debugger shows it; otherwise the nested
 * object's own keys decide. Never into a function's body (code, not the container's data).
 */
function visit(
  node: AnyNode,
  sensitiveAs: string | undefined,
  onLiteral: (node: AnyNode, sensitiveAs: string | undefined) => void,
  isSensitive: (name: string) => boolean = () => false,
  isListed: (text: string) => boolean = () => false,
): void {
  // An explicit stack: generated bundles nest deeper than the call stack allows. The third field is the redacted
  // name of the function whose body this is: what its return statements return is that name's value.
  const stack: [AnyNode, string | undefined, string | undefined][] = [[node, sensitiveAs, undefined]];
  while (stack.length > 0) {
    const [current, inherited, returnsAs] = stack.pop()!;
    if (current.type === 'Literal' || current.type === 'TemplateElement') {
      onLiteral(current, inherited);
      continue;
    }
    if (isFunction(current.type)) {
      // A function known by a redacted name (`get token() {…}`, `apiKey() {…}`, `const getToken = () => "…"`, `function
      // password() {…}`) returns that name's value: its returned literals are redacted, the rest of its code is not.
      const own = current.type === 'FunctionDeclaration' && current.id ? nameOf(current.id as AnyNode) : undefined;
      const name = [inherited, own].find((n) => n !== undefined && isSensitive(n));
      const body = current.body as AnyNode;
      for (const param of (current.params as AnyNode[]) ?? []) stack.push([param, undefined, undefined]);
      if (body.type === 'BlockStatement') stack.push([body, undefined, name]);
      else stack.push([body, name, undefined]);
      continue;
    }
    if (current.type === 'ReturnStatement' && current.argument) {
      stack.push([current.argument as AnyNode, returnsAs, undefined]);
      continue;
    }
    const carries = carriesValue(current.type);
    const container = inherited !== undefined && isSensitive(inherited) && (current.type === 'ObjectExpression' || current.type === 'Property') ? inherited : undefined;
    for (const key of Object.keys(current)) {
      if (key === 'type' || key === 'start' || key === 'end' || key === 'loc' || key === 'range') continue;
      const value = current[key];
      const children = Array.isArray(value) ? value : [value];
      for (let index = 0; index < children.length; index++) {
        const child = children[index];
        if (!child || typeof child !== 'object' || typeof (child as AnyNode).type !== 'string') continue;
        const named = assignedName(current, child as AnyNode, index, isListed);
        let next = named !== undefined ? named : carries && key !== 'test' && key !== 'callee' ? inherited : undefined;
        // A property of a redacted container keeps the container's name (its own, when that is redacted too); its key
        // is a name, not a value.
        // A method of a redacted container is code, not its data: known by its own name only.
        if (container !== undefined && key !== 'key' && !isFunction((child as AnyNode).type) && (next === undefined || !isSensitive(next))) next = container;
        stack.push([child as AnyNode, next, returnsAs]);
      }
    }
  }
}

const isFunction = (type: string) => type === 'FunctionExpression' || type === 'ArrowFunctionExpression' || type === 'FunctionDeclaration';

/** Nodes whose value is (part of) their children's literal text. */
function carriesValue(type: string): boolean {
  return [
    'BinaryExpression',
    'TemplateLiteral',
    'ConditionalExpression',
    'LogicalExpression',
    'ArrayExpression',
    'CallExpression',
    'NewExpression',
    'ParenthesizedExpression',
    'SequenceExpression',
    'AwaitExpression',
    'TSAsExpression',
  ].includes(type);
}

function literalReplacement(source: string, node: AnyNode, sensitiveAs: string | undefined, redactor: Redactor): Replacement | undefined {
  const start = node.start as number;
  const end = node.end as number;
  if (node.type === 'TemplateElement') {
    const raw = source.slice(start, end);
    if (raw === '') return undefined;
    const text = sensitiveAs !== undefined && redactor.isSensitive(sensitiveAs) ? marker(sensitiveAs) : redactor.scrub(raw);
    return text === raw ? undefined : { start, end, text: keepLines(raw, text) };
  }
  const value = node.value;
  if (typeof value !== 'string' && typeof value !== 'number' && typeof value !== 'bigint') return undefined;
  const raw = source.slice(start, end);
  if (sensitiveAs !== undefined && redactor.isSensitive(sensitiveAs)) {
    redactor.hits.push(sensitiveAs);
    return { start, end, text: quoted(raw, marker(sensitiveAs)) };
  }
  if (typeof value !== 'string') return undefined;
  const scrubbed = redactor.scrub(value);
  return scrubbed === value ? undefined : { start, end, text: quoted(raw, scrubbed) };
}

/**
 * The replacement in the literal's own quotes (a number becomes a string: the source is read, not run). A
 * literal continued over lines (`"a\\⏎b"`) keeps its line breaks as continuations.
 */
function quoted(raw: string, text: string): string {
  const quote = raw[0] === "'" || raw[0] === '"' ? raw[0] : '"';
  const escaped = text
    .replace(/\\/g, '\\\\')
    .replace(new RegExp(quote, 'g'), `\\${quote}`)
    .replace(/[\r\n\u2028\u2029]/g, ' ');
  return `${quote}${escaped}${'\\\n'.repeat(lineBreaks(raw))}${quote}`;
}

const lineBreaks = (text: string) => text.match(/\r\n|[\r\n\u2028\u2029]/g)?.length ?? 0;

/** A template part keeps its line breaks, so the lines after it keep their numbers. */
function keepLines(raw: string, text: string): string {
  const breaks = lineBreaks(raw);
  const flat = text
    .replace(/[\r\n\u2028\u2029]/g, ' ')
    .replace(/`/g, '\\`')
    .replace(/\$\{/g, '\\${');
  return flat + '\n'.repeat(breaks);
}
