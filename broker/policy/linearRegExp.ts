/**
 * Owners' regular expressions (redaction patterns, requireTicket) run in the broker on text it does not trust: a
 * target's strings, a requester's ticket. With V8's backtracking engine a pattern like `([A-Z]+)+-\d+` takes
 * seconds on 25 characters and hours on 40, and the broker's event loop waits for it. So an owner's pattern is
 * accepted only where V8's linear-time engine can run it, and V8 finishes any match that backtracks too far with
 * that engine: the common case keeps the fast engine, a hostile text costs time linear in its length.
 * (RE2 was tried for the rest and refused: its `.`, `\s` and surrogate pairs differ from V8's, so a redaction
 * pattern would not match what its owner tested.)
 */
import { setFlagsFromString } from 'node:v8';

/** Whether this V8 runs regexes with the `l` flag (its linear-time engine). */
function linearEngine(): boolean {
  try {
    new RegExp('a', 'l');
    return true;
  } catch {
    return false;
  }
}

// Process-wide (a worker thread finds them set) and harmless for every other regex: one the linear engine cannot
// run is left to backtrack as before.
if (!linearEngine()) {
  setFlagsFromString('--enable-experimental-regexp-engine');
  setFlagsFromString('--enable-experimental-regexp-engine-on-excessive-backtracks');
}
const hasLinearEngine = linearEngine();

/**
 * Compiles an owner's pattern; throws what is wrong with it. `flags` are those the broker uses (`g` at most: the
 * linear engine takes neither `i` nor `u` in this Node.js).
 */
export function compileOwnerRegExp(source: string, flags = ''): RegExp {
  let regex: RegExp;
  try {
    regex = new RegExp(source, flags);
  } catch (err) {
    throw new Error(`invalid regular expression: ${(err as Error).message}`);
  }
  if (!hasLinearEngine) throw new Error('cannot be checked: this Node.js has no linear-time regular expression engine, so the broker runs no owner pattern');
  try {
    new RegExp(source, `${flags}l`);
  } catch {
    throw new Error(
      'cannot run in linear time, and hostile text could make it take hours: lookaround and backreferences are refused, and so is a counted repeat over 16 (split it: \\d{20} as \\d{16}\\d{4}, [A-Z0-9]{11,30} as [A-Z0-9]{11,16}[A-Z0-9]{0,14})',
    );
  }
  return regex;
}
