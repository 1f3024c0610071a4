import { parseExpressionAt, type Node } from 'acorn';

/**
 * A static screen for breakpoint conditions and logpoint expressions. It is not the guard: every condition
 * is evaluated by the broker on pause with V8's side-effect check and a timeout. This screen gives an early,
 * clear refusal for expressions that could never pass that check.
 */
export type ConditionVerdict = { ok: true } | { ok: false; reason: string };

const maxConditionLength = 1000;

const refusedNodes: Record<string, string> = {
  AssignmentExpression: 'assignment changes program state',
  UpdateExpression: '++/-- changes program state',
  FunctionExpression: 'defining functions is not allowed in a condition',
  ArrowFunctionExpression: 'defining functions is not allowed in a condition',
  ClassExpression: 'defining classes is not allowed in a condition',
  TaggedTemplateExpression: 'a tagged template calls a function',
  AwaitExpression: 'await is not allowed in a condition',
  YieldExpression: 'yield is not allowed in a condition',
  ImportExpression: 'import() loads code',
  NewExpression: 'constructing objects is not allowed in a condition',
};

const refusedCallees = new Set(['require', 'eval', 'Function', 'setTimeout', 'setInterval', 'setImmediate', 'queueMicrotask', 'fetch', 'import']);
const refusedObjects = new Set(['process', 'console', 'globalThis', 'global', 'Reflect', 'Atomics', 'module', 'exports']);
const refusedProperties = new Set(['constructor', '__proto__', 'prototype', '__defineGetter__', '__defineSetter__']);

function rootName(node: Node): string | undefined {
  let current: Node = node;
  while (current.type === 'MemberExpression' || current.type === 'ChainExpression') {
    current = current.type === 'ChainExpression' ? (current as unknown as { expression: Node }).expression : (current as unknown as { object: Node }).object;
  }
  return current.type === 'Identifier' ? (current as unknown as { name: string }).name : undefined;
}

function propertyName(node: Node): string | undefined {
  const member = node as unknown as { computed: boolean; property: Node & { name?: string; value?: unknown } };
  if (!member.computed && member.property.type === 'Identifier') return member.property.name;
  if (member.property.type === 'Literal' && typeof member.property.value === 'string') return member.property.value;
  return undefined;
}

function visit(node: Node, out: string[]): void {
  const refusal = refusedNodes[node.type];
  if (refusal) out.push(refusal);
  if (node.type === 'UnaryExpression' && (node as unknown as { operator: string }).operator === 'delete') out.push('delete changes program state');
  if (node.type === 'MemberExpression') {
    const name = propertyName(node);
    if (name && refusedProperties.has(name)) out.push(`access to "${name}" can reach constructors of arbitrary code`);
  }
  if (node.type === 'CallExpression') {
    const callee = (node as unknown as { callee: Node }).callee;
    const root = rootName(callee);
    if (callee.type === 'Identifier' && refusedCallees.has(root!)) out.push(`calling ${root}() is never side-effect free`);
    else if (root && refusedObjects.has(root) && callee.type !== 'Identifier') out.push(`calling functions of ${root} is not allowed in a condition`);
  }
  if (node.type === 'Identifier' && ['require', 'eval', 'Function'].includes((node as unknown as { name: string }).name)) {
    out.push(`"${(node as unknown as { name: string }).name}" can load or compile code`);
  }
  for (const value of Object.values(node)) {
    if (Array.isArray(value)) {
      for (const child of value) if (child && typeof child.type === 'string') visit(child as Node, out);
    } else if (value && typeof value === 'object' && typeof (value as Node).type === 'string') {
      visit(value as Node, out);
    }
  }
}

/** Deeper syntax trees are refused: every check walks them recursively, and nothing a person writes nests so deep. */
export const maxExpressionDepth = 200;

/** Whether an acorn tree nests deeper than `max` (`1+1+…+1` is as deep as it is long), found without recursion. */
export function syntaxDeeperThan(root: Node, max: number): boolean {
  const stack: [Node, number][] = [[root, 1]];
  while (stack.length > 0) {
    const [node, depth] = stack.pop()!;
    if (depth > max) return true;
    for (const value of Object.values(node)) {
      if (Array.isArray(value)) {
        for (const child of value) if (child && typeof child.type === 'string') stack.push([child as Node, depth + 1]);
      } else if (value && typeof value === 'object' && typeof (value as Node).type === 'string') stack.push([value as Node, depth + 1]);
    }
  }
  return false;
}

export function checkCondition(source: string): ConditionVerdict {
  if (source.length > maxConditionLength) return { ok: false, reason: `longer than ${maxConditionLength} characters` };
  let node: Node;
  try {
    // preserveParens: otherwise the node of "(a = 1)" ends before its closing paren.
    node = parseExpressionAt(source, 0, { ecmaVersion: 'latest', sourceType: 'script', preserveParens: true });
  } catch (err) {
    return { ok: false, reason: `not a valid JavaScript expression (${(err as Error).message})` };
  }
  if (source.slice(node.end).trim() !== '') return { ok: false, reason: 'must be a single expression' };
  if (syntaxDeeperThan(node, maxExpressionDepth)) return { ok: false, reason: `nests deeper than ${maxExpressionDepth} levels` };
  const problems: string[] = [];
  visit(node, problems);
  return problems.length === 0 ? { ok: true } : { ok: false, reason: problems[0]! };
}

/** Wraps a checked condition so V8 returns a plain boolean; the newline keeps a trailing comment from eating the paren. */
export const conditionProbe = (condition: string) => `!!(${condition}\n)`;
