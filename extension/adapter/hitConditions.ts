/**
 * Hit conditions (`>5`, `==3`, `%2`…): the adapter counts hits itself (the broker knows conditions, not counts).
 * Input that is not a hit condition is reported on the breakpoint, never read as "never".
 */

export type HitOperator = '>' | '>=' | '<' | '<=' | '=' | '==' | '%';

export interface HitCondition {
  readonly op: HitOperator;
  readonly n: number;
}

/** The accepted forms, for the message of an invalid hit condition. */
export const hitConditionForms = 'a hit count with an optional operator: >5 (after the 5th hit), >=5 or 5 (from the 5th on), <5, <=5, ==3 or =3 (the 3rd only), %2 (every 2nd hit)';

export function parseHitCondition(condition: string): HitCondition | undefined {
  const m = /^\s*(>=|<=|==|=|>|<|%)?\s*(\d+)\s*$/.exec(condition);
  if (!m) return undefined;
  return { op: (m[1] ?? '>=') as HitOperator, n: Number(m[2]) };
}

/** Why a hit condition cannot be used, or undefined when it can. */
export function hitConditionProblem(condition: string): string | undefined {
  if (parseHitCondition(condition)) return undefined;
  const quoted = JSON.stringify(condition.length > 40 ? `${condition.slice(0, 40)}…` : condition);
  return `Loupe: the hit condition ${quoted} is invalid: expected ${hitConditionForms}`;
}

export function hitConditionPasses(condition: HitCondition, hits: number): boolean {
  const { op, n } = condition;
  switch (op) {
    case '>':
      return hits > n;
    case '>=':
      return hits >= n;
    case '<':
      return hits < n;
    case '<=':
      return hits <= n;
    case '=':
    case '==':
      return hits === n;
    case '%':
      return n > 0 && hits % n === 0;
  }
}
