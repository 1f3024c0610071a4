import type { z } from 'zod';
import { listProblem, unwrap } from './schema/fields';

export type Path = readonly PropertyKey[];

export interface Problem {
  readonly path: Path;
  readonly message: string;
  /** An unknown key: listed before what is wrong inside its mapping, as a misspelling often explains the rest. */
  readonly unknownKey?: boolean;
}

/** A key as written in a path: quoted unless it is a plain name, so a key such as ": " or "a.b" cannot blur the path. */
const pathKey = (key: PropertyKey) => (typeof key === 'string' && /^[A-Za-z0-9_$@-]+$/.test(key) ? key : JSON.stringify(String(key)));

/** `targets.checkout.access[0].maxDuration` (`targets."my app"` for a key that is not a plain name); the top level is `(root)`. */
export function formatPath(path: Path): string {
  let out = '';
  for (const key of path) out = typeof key === 'number' ? `${out}[${key}]` : out ? `${out}.${pathKey(key)}` : pathKey(key);
  return out || '(root)';
}

/** zod's issues as problems: one per unknown key, a bad item of a list of names reported on the list. */
export function fromIssues(issues: readonly z.core.$ZodIssue[], prefix: Path = []): Problem[] {
  const problems: Problem[] = [];
  for (const found of issues) {
    const issue = prefix.length > 0 ? { ...found, path: [...prefix, ...found.path] } : found;
    const branch = issue.code === 'invalid_union' ? closestBranch(issue.errors) : undefined;
    if (branch) problems.push(...fromIssues(branch, issue.path));
    else if (issue.code === 'unrecognized_keys') {
      for (const key of issue.keys) problems.push({ path: [...issue.path, key], message: issue.message, unknownKey: true });
    } else if (issue.message === listProblem && typeof issue.path.at(-1) === 'number') {
      problems.push({ path: issue.path.slice(0, -1), message: issue.message });
    } else problems.push({ path: issue.path, message: issue.message });
  }
  return problems;
}

/** When one alternative (of false or a rule, a name or names) is the kind of value given, its own problems say more. */
function closestBranch(branches: readonly (readonly z.core.$ZodIssue[])[]): readonly z.core.$ZodIssue[] | undefined {
  const mismatch = (issue: z.core.$ZodIssue) => issue.path.length === 0 && (issue.code === 'invalid_type' || issue.code === 'invalid_value');
  const close = branches.filter((issues) => !issues.every(mismatch));
  return close.length === 1 ? close[0] : undefined;
}

const isMapping = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * Puts problems in the order of the schema (the order the reference documents), names of one's own choosing in
 * file order, unknown keys first in their mapping; one path's problems stay in the order they were found.
 */
export function orderProblems(problems: readonly Problem[], schema: z.ZodType, raw: unknown): string[] {
  // Linear in the size of the file: a policy with thousands of mistakes is answered at once, not after minutes.
  const positions = new WeakMap<object, Map<string, number>>();
  const keyed = problems.map((problem, index) => ({ problem, index, rank: rankOf(problem, schema, raw, positions) }));
  keyed.sort((a, b) => {
    const n = Math.min(a.rank.length, b.rank.length);
    for (let i = 0; i < n; i++) if (a.rank[i] !== b.rank[i]) return a.rank[i]! - b.rank[i]!;
    return a.rank.length - b.rank.length || a.index - b.index;
  });
  return [...new Set(keyed.map(({ problem }) => `${formatPath(problem.path)}: ${problem.message}`))];
}

/** Where a key stands in its mapping, the file's order (each mapping's keys indexed once). */
function positionIn(mapping: Record<string, unknown>, name: string, positions: WeakMap<object, Map<string, number>>): number {
  let index = positions.get(mapping);
  if (!index) {
    index = new Map(Object.keys(mapping).map((key, i) => [key, i]));
    positions.set(mapping, index);
  }
  return index.get(name) ?? -1;
}

function rankOf(problem: Problem, schema: z.ZodType, raw: unknown, positions: WeakMap<object, Map<string, number>>): number[] {
  const rank: number[] = [];
  let node: z.ZodType | undefined = schema;
  let value = raw;
  problem.path.forEach((key, depth) => {
    const inner = node ? unwrap(node) : undefined;
    const def = inner?.def as unknown as { type: string; shape?: Record<string, z.ZodType>; valueType?: z.ZodType; element?: z.ZodType } | undefined;
    const last = depth === problem.path.length - 1;
    if (typeof key === 'number') {
      rank.push(key);
      node = def?.type === 'array' ? def.element : undefined;
      value = Array.isArray(value) ? value[key] : undefined;
      return;
    }
    const name = String(key);
    if (def?.type === 'object' && def.shape) {
      const index = Object.keys(def.shape).indexOf(name);
      rank.push(last && problem.unknownKey ? -1 : index < 0 ? Number.MAX_SAFE_INTEGER : index);
      node = def.shape[name];
    } else {
      // A record (targets, roles): the file's own order.
      const index = isMapping(value) ? positionIn(value, name, positions) : -1;
      rank.push(index < 0 ? Number.MAX_SAFE_INTEGER : index);
      node = def?.type === 'record' ? def.valueType : undefined;
    }
    value = isMapping(value) ? value[name] : undefined;
  });
  return rank;
}
