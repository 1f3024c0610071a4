import { parse, parseExpressionAt, type Node } from 'acorn';
import { maxExpressionDepth, syntaxDeeperThan } from './conditionCheck';
import { withheldProcessPaths, withheldReason } from './processFacts';
import { BoundedCache } from '../../common/boundedCache';

/**
 * The policy's evaluation rules, applied to every expression a session asks the target to run (evaluations,
 * breakpoint conditions, logpoint parts) before it is forwarded:
 * - `evaluation.denyIdentifiers` (e.g. `process.env`, `require`) are refused, however they are spelled
 *   (`process['env']`, `globalThis.process.env`, dynamic access on `process`);
 * - an expression that names a sensitive field (`user.password`, `creds['apiKey']`, `({token}) => …`) is
 *   answered with the redaction marker and never runs;
 * - an expression that could reach values without naming them (calls, dynamic keys, spreads, functions) is
 *   allowed, but its free identifiers are returned so the broker can learn the sensitive values they reach
 *   first and scrub them from the result (`Object.values(user)`, `JSON.stringify(user)`, `map.get(k)`).
 * Conditions and logpoints only answer a boolean or print a line, so a call that enumerates or serializes
 * objects there would be an oracle on redacted values: those are refused when redaction is on.
 */

export interface EvaluationPolicy {
  /** false: no evaluation of any kind (console, hover, watch, conditions, logpoints). */
  readonly allow: boolean;
  readonly denyIdentifiers: readonly string[];
  readonly maxResultBytes: number;
}

export const defaultDenyIdentifiers: readonly string[] = ['process.env', 'require', 'module', 'process.binding', 'process.mainModule'];

export type EvaluationScreen =
  | { readonly kind: 'refuse'; readonly rule: string; readonly reason: string }
  | { readonly kind: 'redact'; readonly name: string }
  /** `roots`: free identifiers whose reachable sensitive values must be learned first; empty for plain reads. */
  | { readonly kind: 'allow'; readonly roots: readonly string[]; readonly reachesUnnamed: boolean; readonly transforms?: string };

type AnyNode = Node & Record<string, unknown>;

const globalPrefixes = /^(globalThis|global|window|self)\./;
// Calls that enumerate or serialize an object, turning field names into data.
const enumerating = new Set([
  'stringify',
  'values',
  'entries',
  'getOwnPropertyDescriptor',
  'getOwnPropertyDescriptors',
  'fromEntries',
  'assign',
  'inspect',
  'format',
  'from',
  'toJSON',
  'structuredClone',
  'get',
  'forEach',
  'reduce',
  'join',
  'toString',
]);

// Calls that can reshape a string past value matching (reverse it, cut it up, encode it).
const transforming = new Set([
  'split',
  'reverse',
  'slice',
  'substring',
  'substr',
  'charAt',
  'charCodeAt',
  'codePointAt',
  'at',
  'replace',
  'replaceAll',
  'padStart',
  'padEnd',
  'repeat',
  'toUpperCase',
  'toLowerCase',
  'toLocaleUpperCase',
  'toLocaleLowerCase',
  'normalize',
  'concat',
  'encodeURIComponent',
  'encodeURI',
  'escape',
  'unescape',
  'btoa',
  'atob',
  'fromCharCode',
  'fromCodePoint',
  'toString',
  'map',
  'flatMap',
  'filter',
  'find',
  'sort',
  'toSorted',
  'toReversed',
  'indexOf',
  'lastIndexOf',
  'includes',
  'startsWith',
  'endsWith',
  'match',
  'matchAll',
  'search',
  'localeCompare',
  'Buffer',
  'TextEncoder',
  'Uint8Array',
]);

/** Parses of recent expressions (a watch is sent again on every pause, a console line often repeats), failures too. */
const parsed = new BoundedCache<{ node: Node } | { error: Error }>(512, 2000);

function parseSource(source: string): Node {
  const outcome = parsed.get(source, () => {
    try {
      return { node: parseFresh(source) };
    } catch (err) {
      return { error: err as Error };
    }
  });
  if ('error' in outcome) throw outcome.error;
  return outcome.node;
}

function parseFresh(source: string): Node {
  try {
    // preserveParens keeps "(a = 1)" whole; a single expression is what the REPL, hover and watch send.
    const node = parseExpressionAt(source, 0, { ecmaVersion: 'latest', sourceType: 'script', preserveParens: true });
    if (source.slice(node.end).trim() === '') return node;
  } catch {
    // fall through: the console may send statements
  }
  return parse(source, { ecmaVersion: 'latest', sourceType: 'script', allowAwaitOutsideFunction: true, allowReturnOutsideFunction: true });
}

/** The segments of a static member chain (`config['x-api-key']` → config, x-api-key), or undefined when a key is dynamic. */
function staticSegments(node: AnyNode): string[] | undefined {
  if (node.type === 'Identifier') return [node.name as string];
  if (node.type === 'ThisExpression') return ['this'];
  if (node.type === 'ParenthesizedExpression' || node.type === 'ChainExpression') return staticSegments(node.expression as AnyNode);
  if (node.type !== 'MemberExpression') return undefined;
  const key = memberKey(node);
  const base = staticSegments(node.object as AnyNode);
  return base !== undefined && key !== undefined ? [...base, key] : undefined;
}

/** The static dotted path of a member chain (`process['env'].X` → process.env.X), or undefined when a key is dynamic. */
const staticPath = (node: AnyNode): string | undefined => staticSegments(node)?.join('.');

function memberKey(node: AnyNode): string | undefined {
  const property = node.property as AnyNode;
  if (!node.computed && property.type === 'Identifier') return property.name as string;
  if (property.type === 'Literal' && (typeof property.value === 'string' || typeof property.value === 'number')) return String(property.value);
  if (property.type === 'TemplateLiteral' && (property.expressions as unknown[]).length === 0) return String(((property.quasis as AnyNode[])[0]!.value as { cooked: string }).cooked);
  return undefined;
}

function children(node: AnyNode): AnyNode[] {
  const out: AnyNode[] = [];
  for (const [key, value] of Object.entries(node)) {
    if (key === 'loc' || key === 'range') continue;
    if (Array.isArray(value)) {
      for (const child of value) if (child && typeof child.type === 'string') out.push(child as AnyNode);
    } else if (value && typeof value === 'object' && typeof (value as AnyNode).type === 'string') out.push(value as AnyNode);
  }
  return out;
}

/**
 * `taints`: the expression is a Loupe expression, which the broker interprets and taints by what it reads, so the
 * oracle refusals and the marker for naming a redacted field are not needed (a tainted result is the marker, a
 * tainted condition disables its breakpoint, a tainted part prints the marker, and the shape of a redacted value,
 * `sessionTokens.size`, is not secret); the policy's refusals stay.
 */
export function screenEvaluation(
  source: string,
  use: 'evaluate' | 'condition' | 'logpoint',
  policy: EvaluationPolicy,
  isSensitive: (name: string) => boolean,
  redactionOn: boolean,
  options: { taints?: boolean } = {},
): EvaluationScreen {
  const taints = options.taints === true;
  const what = use === 'evaluate' ? 'evaluation' : use === 'condition' ? 'breakpoint condition' : 'logpoint expression';
  if (!policy.allow)
    return { kind: 'refuse', rule: 'evaluation.allow', reason: `this target's policy forbids evaluation (evaluation.allow: false), so ${what === 'evaluation' ? 'an' : 'a'} ${what} cannot run` };
  let root: Node;
  try {
    root = parseSource(source);
  } catch (err) {
    return { kind: 'refuse', rule: 'evaluation.parse', reason: `not valid JavaScript (${(err as Error).message})` };
  }
  if (syntaxDeeperThan(root, maxExpressionDepth)) return { kind: 'refuse', rule: 'evaluation.depth', reason: `the expression nests deeper than ${maxExpressionDepth} levels` };
  // V8 answers whatever it is asked: the process facts a client could act on are denied by name there. Loupe
  // expressions are refused them by the interpreter (eval/remote.ts), which also sees through aliases.
  const deny = taints ? policy.denyIdentifiers : [...policy.denyIdentifiers, ...withheldProcessPaths];
  const denyReason = (hit: string) => (withheldProcessPaths.includes(hit) ? withheldReason(hit.slice('process.'.length)) : `"${hit}" is denied by this target's policy (evaluation.denyIdentifiers)`);
  const denied = (path: string): string | undefined => {
    const bare = path.replace(globalPrefixes, '');
    return deny.find((d) => bare === d || bare.startsWith(`${d}.`));
  };
  const roots = new Set<string>();
  let reachesUnnamed = false;
  let transforms: string | undefined;
  let problem: EvaluationScreen | undefined;
  const stop = (screen: EvaluationScreen) => {
    if (taints && (screen.kind === 'redact' || (screen.kind === 'refuse' && screen.rule === 'redact.oracle'))) return;
    if (!problem || (problem.kind === 'redact' && screen.kind === 'refuse')) problem = screen;
  };

  // What the expression reaches: each maximal static chain (`user.profile`), or a method call's receiver
  // (`user.name` in `user.name.toUpperCase()`), so the probe walks only what the expression can touch.
  const addRoot = (node: AnyNode, parent: AnyNode | undefined) => {
    const segments = staticSegments(node);
    if (!segments) return;
    if (parent?.type === 'MemberExpression' && parent.object === node && staticSegments(parent) !== undefined) return;
    if (parent && (parent.type === 'CallExpression' || parent.type === 'NewExpression') && parent.callee === node) {
      if (segments.length > 1) roots.add(JSON.stringify(segments.slice(0, -1)));
      return;
    }
    roots.add(JSON.stringify(segments));
  };
  const visit = (node: AnyNode, parent: AnyNode | undefined): void => {
    const isPropertyKey = parent && ((parent.type === 'MemberExpression' && parent.property === node && !parent.computed) || (parent.type === 'Property' && parent.key === node && !parent.computed));
    if ((node.type === 'Identifier' || node.type === 'ThisExpression' || node.type === 'MemberExpression') && !isPropertyKey) addRoot(node, parent);
    switch (node.type) {
      case 'Identifier': {
        const name = node.name as string;
        const isKey =
          parent &&
          ((parent.type === 'MemberExpression' && parent.property === node && !parent.computed) || (parent.type === 'Property' && parent.key === node && !parent.computed && !parent.shorthand));
        if (isSensitive(name)) stop({ kind: 'redact', name });
        if (!isKey) {
          const hit = denied(name);
          if (hit) stop({ kind: 'refuse', rule: 'evaluation.denyIdentifiers', reason: denyReason(hit) });
        }
        break;
      }
      case 'Literal':
        if (typeof node.value === 'string' && isSensitive(node.value)) stop({ kind: 'redact', name: node.value });
        break;
      case 'TemplateElement': {
        const cooked = (node.value as { cooked?: string }).cooked;
        if (cooked && isSensitive(cooked)) stop({ kind: 'redact', name: cooked });
        break;
      }
      case 'MemberExpression': {
        const path = staticPath(node);
        if (path !== undefined) {
          const hit = denied(path);
          if (hit) stop({ kind: 'refuse', rule: 'evaluation.denyIdentifiers', reason: denyReason(hit) });
        } else if (memberKey(node) === undefined) {
          // A dynamic key: on a denied root it could spell the denied name at run time.
          reachesUnnamed = true;
          const base = staticPath(node.object as AnyNode);
          const hit = base !== undefined ? deny.find((d) => d.startsWith(`${base.replace(globalPrefixes, '')}.`) || d === base.replace(globalPrefixes, '')) : undefined;
          if (hit) stop({ kind: 'refuse', rule: 'evaluation.denyIdentifiers', reason: `a computed key on "${base}" could reach "${hit}", which this target's policy denies` });
          if (use !== 'evaluate' && redactionOn) stop({ kind: 'refuse', rule: 'redact.oracle', reason: 'a computed key could read a redacted field; use a literal key' });
        }
        const key = memberKey(node);
        if (key !== undefined && isSensitive(key)) stop({ kind: 'redact', name: key });
        break;
      }
      case 'CallExpression':
      case 'NewExpression':
      case 'TaggedTemplateExpression': {
        reachesUnnamed = true;
        const callee = (node.callee ?? node.tag) as AnyNode;
        const name = callee.type === 'Identifier' ? (callee.name as string) : callee.type === 'MemberExpression' ? memberKey(callee) : undefined;
        if (name && transforming.has(name)) transforms ??= name;
        if (use !== 'evaluate' && redactionOn && name && enumerating.has(name)) {
          stop({ kind: 'refuse', rule: 'redact.oracle', reason: `${name}() enumerates or serializes values, which could reveal redacted fields in a ${what}` });
        }
        break;
      }
      case 'SpreadElement':
      case 'RestElement':
      case 'FunctionExpression':
      case 'ArrowFunctionExpression':
      case 'ForInStatement':
      case 'ForOfStatement':
        reachesUnnamed = true;
        break;
      case 'WithStatement':
        stop({ kind: 'refuse', rule: 'evaluation.with', reason: '"with" makes every name dynamic, so Loupe cannot check what it reads' });
        break;
    }
    for (const child of children(node)) visit(child, node);
  };
  visit(root as AnyNode, undefined);
  if (problem) {
    // Conditions and logpoints never get the marker: a condition on a redacted value is an oracle.
    if (problem.kind === 'redact' && use !== 'evaluate') return { kind: 'refuse', rule: 'redact.names', reason: `it reads "${problem.name}", which this target's policy redacts` };
    return problem;
  }
  return { kind: 'allow', roots: reachesUnnamed ? [...roots].slice(0, 32) : [], reachesUnnamed, ...(transforms ? { transforms } : {}) };
}

/**
 * The probe the broker runs (side-effect free, bounded) before an evaluation that can reach values without
 * naming them: it lists [name, value] for primitive fields reachable from the roots (Map entries by key),
 * reading data properties only, so no getter runs.
 */
export function reachableValuesProbe(roots: readonly string[]): string {
  const rootList = roots
    .map((root) => JSON.parse(root) as string[])
    .filter(([first]) => first === 'this' || /^[A-Za-z_$][\w$]*$/.test(first!))
    .map((segments) => {
      const access =
        segments[0] +
        segments
          .slice(1)
          .map((k) => `[${JSON.stringify(k)}]`)
          .join('');
      return `[(() => { try { return ${access}; } catch { return undefined; } })(), ${JSON.stringify(segments[segments.length - 1])}]`;
    })
    .join(', ');
  return `(() => { const out = []; const seen = new Set();
const walk = (v, name, depth) => {
  if (out.length >= 5000) return;
  if (typeof v === 'string' || typeof v === 'number' || typeof v === 'bigint') { out.push([name, String(v)]); return; }
  if (v === null || typeof v !== 'object' || depth > 5 || seen.has(v)) return;
  seen.add(v);
  if (v instanceof Map) { for (const [k, x] of v) walk(x, typeof k === 'string' ? k : '', depth + 1); return; }
  for (const k of Object.getOwnPropertyNames(v)) { const d = Object.getOwnPropertyDescriptor(v, k); if (d && 'value' in d) walk(d.value, k, depth + 1); }
};
for (const [v, name] of [${rootList}]) walk(v, name, 0);
return out; })()`;
}
