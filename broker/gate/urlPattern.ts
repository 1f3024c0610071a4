/**
 * Regular expressions a client hands to V8 to match script URLs: `urlRegex` of a breakpoint or logpoint and the
 * patterns of Debugger.setBlackboxPatterns. V8 runs them with its backtracking engine, on the target's main thread,
 * with no time limit: on every script already loaded when a breakpoint is set and on every script parsed later, and
 * blackbox patterns on every frame a step or a pause looks at. One pattern with nested repetition, such as
 * `^(([a-z/:.-]+)+)+X$`, held a target's main thread for good (measured: no tick for as long as the test waited,
 * only SIGKILL ends it). So a pattern reaches V8 only in a form whose backtracking is bounded by its structure:
 * - no repeated group (a group may only be optional, `(…)?`), no backreference, no lookaround;
 * - the ways it can try to match at one place, counted over its alternatives and variable repetitions, stay under
 *   a bound: one `.*`, or a path with `(?:%20| )` groups (as js-debug writes them: alternatives that begin with
 *   different characters are tried one at a time) pass; `.*.*` or `(?:.|.)` ten times over does not.
 */

/** Characters of one pattern; js-debug's case-insensitive form of a long path is a few hundred. */
export const maxUrlPatternChars = 4096;
/** What a variable repetition (`*`, `+`, `?`, `{n,m}`) of one character counts as, toward maxUrlPatternWays. */
const repetitionWays = 32;
/**
 * Ways through a pattern: one unbounded repetition with a few alternatives, or eight ambiguous choices in sequence.
 * Measured in V8 on a 270-character URL: 65,536 ways took 108 ms per URL, 256 under 1 ms.
 */
const maxUrlPatternWays = 256;

interface Branch {
  ways: number;
  items: number;
  /** The literal character the branch must begin with; null when it has none (a class, an optional first item). */
  first?: string | null;
  /** The ways of the last item, or undefined when that item cannot be repeated (an assertion, or none yet). */
  last: { ways: number; group: boolean } | undefined;
}

/** Why V8 must not run `pattern`, or undefined when its backtracking is bounded. */
export function urlPatternProblem(pattern: string): string | undefined {
  if (pattern.length > maxUrlPatternChars) return `it has ${pattern.length} characters (at most ${maxUrlPatternChars})`;
  try {
    // Compiling runs nothing; a pattern V8 would reject is refused here with the reason.
    new RegExp(pattern);
  } catch (err) {
    return `it is not a valid regular expression (${(err as Error).message})`;
  }
  // A stack of groups, each a list of alternatives; the top-level pattern is a group too.
  const groups: Branch[][] = [[{ ways: 1, items: 0, last: undefined }]];
  const current = () => groups.at(-1)!.at(-1)!;
  const assertion = () => {
    const branch = current();
    if (branch.first === undefined) branch.first = null;
    branch.last = undefined;
  };
  const push = (ways: number, group: boolean, literal: string | null = null) => {
    const branch = current();
    if (branch.first === undefined) branch.first = literal;
    branch.items++;
    branch.ways = Math.min(branch.ways * ways, Number.MAX_SAFE_INTEGER);
    branch.last = { ways, group };
  };
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === '\\') {
      const next = pattern[i + 1] ?? '';
      if (/[1-9]/.test(next) || (next === 'k' && pattern[i + 2] === '<')) return 'it has a backreference';
      i++;
      if (next === 'b' || next === 'B') assertion();
      // `\.` is the character itself; `\d`, `\w`, `\x41` and the like are not tracked as one.
      else push(1, false, /[A-Za-z0-9]/.test(next) ? null : next);
    } else if (c === '[') {
      // A class is one character: skip to its closing bracket (a `]` first in it is a character, as in JavaScript).
      let j = i + 1;
      if (pattern[j] === '^') j++;
      if (pattern[j] === ']') j++;
      while (j < pattern.length && pattern[j] !== ']') j += pattern[j] === '\\' ? 2 : 1;
      i = j;
      push(1, false);
    } else if (c === '(') {
      if (pattern.startsWith('(?=', i) || pattern.startsWith('(?!', i) || pattern.startsWith('(?<=', i) || pattern.startsWith('(?<!', i)) return 'it has a lookaround';
      if (pattern.startsWith('(?:', i)) i += 2;
      else if (pattern.startsWith('(?<', i)) i = pattern.indexOf('>', i);
      groups.push([{ ways: 1, items: 0, last: undefined }]);
    } else if (c === ')') {
      push(alternativeWays(groups.pop()!), true);
    } else if (c === '|') {
      groups.at(-1)!.push({ ways: 1, items: 0, last: undefined });
    } else if (c === '*' || c === '+' || c === '?' || c === '{') {
      let min = 0;
      let max = Infinity;
      let end = i;
      if (c === '{') {
        const bound = /^\{(\d+)(,(\d*))?\}/.exec(pattern.slice(i));
        if (!bound) {
          // Not a repetition: a literal brace, as JavaScript reads it outside unicode mode.
          push(1, false);
          continue;
        }
        min = Number(bound[1]);
        max = bound[2] === undefined ? min : bound[3] === '' ? Infinity : Number(bound[3]);
        end = i + bound[0].length - 1;
      } else if (c === '+') min = 1;
      else if (c === '?') max = 1;
      if (pattern[end + 1] === '?') end++;
      const branch = current();
      const item = branch.last;
      if (item?.group && !(min === 0 && max === 1) && min !== max) return 'it repeats a group (a group may only be optional, `(…)?`: a repeated group backtracks without bound)';
      if (item?.group && min === max && min > 1) return 'it repeats a group (a group may only be optional, `(…)?`: a repeated group backtracks without bound)';
      if (min === 0 && branch.items === 1) branch.first = null;
      if (item && min !== max) {
        // The item's ways were counted once; repeated, they count as each choice of how many times it matches.
        const factor = item.group ? item.ways + 1 : Math.min(repetitionWays, max - min + 1);
        branch.ways = Math.min((branch.ways / item.ways) * (item.group ? factor : item.ways * factor), Number.MAX_SAFE_INTEGER);
      }
      branch.last = undefined;
      i = end;
    } else if (c === '^' || c === '$') {
      assertion();
    } else push(1, false, c === '.' ? null : c);
    if (current().ways > maxUrlPatternWays) return `it can match one URL in more than ${maxUrlPatternWays} ways (alternatives and repetitions in sequence backtrack in V8 without a time limit)`;
  }
  const ways = alternativeWays(groups[0]!);
  if (ways > maxUrlPatternWays) return `it can match one URL in more than ${maxUrlPatternWays} ways (alternatives and repetitions in sequence backtrack in V8 without a time limit)`;
  return undefined;
}

/**
 * Ways through alternatives: each branch's own when they begin with different literal characters (V8 tries only the
 * one whose first character matches), their sum otherwise.
 */
function alternativeWays(branches: readonly Branch[]): number {
  const firsts = new Set(branches.map((b) => b.first));
  const deterministic = branches.length > 1 && firsts.size === branches.length && branches.every((b) => typeof b.first === 'string');
  const ways = deterministic ? Math.max(...branches.map((b) => b.ways)) : branches.reduce((sum, b) => sum + b.ways, 0);
  return Math.min(ways, Number.MAX_SAFE_INTEGER);
}
