/**
 * The logpoint message template, `text {expression} text`: one parser for the broker's gate (which screens and
 * evaluates the expressions) and the debug adapter (which evaluates them itself for a pause-mode logpoint with a
 * hit count), so both read a message the same way. Pure: no imports.
 *
 * Braces nest, so an object literal inside an expression stays whole (`{{a: 1}.a}`). Braces that do not balance
 * are refused, never guessed at: in `a {b {c}` either `b {c` or `c` could be meant, and printing the wrong one (or
 * none) without saying so hides the mistake.
 */

/** The literal pieces around the expressions: `literals.length === expressions.length + 1`. */
export interface LogTemplate {
  readonly literals: readonly string[];
  readonly expressions: readonly string[];
}

export type LogTemplateParse = { readonly ok: true; readonly template: LogTemplate } | { readonly ok: false; readonly error: string };

/** What a person reads when a message is refused: the accepted form. */
export const logTemplateHelp = 'write each expression in matching braces, e.g. "user {user.id} paid {order.total}"';

export function parseLogTemplate(message: string): LogTemplateParse {
  const literals: string[] = [];
  const expressions: string[] = [];
  let literal = '';
  let i = 0;
  while (i < message.length) {
    const c = message[i]!;
    if (c === '}') return { ok: false, error: `the logpoint message has a "}" at position ${i + 1} that closes no "{": ${logTemplateHelp}` };
    if (c !== '{') {
      literal += c;
      i++;
      continue;
    }
    let depth = 0;
    let j = i;
    for (; j < message.length; j++) {
      if (message[j] === '{') depth++;
      else if (message[j] === '}' && --depth === 0) break;
    }
    if (j >= message.length) return { ok: false, error: `the logpoint message has a "{" at position ${i + 1} that is never closed: ${logTemplateHelp}` };
    literals.push(literal);
    expressions.push(message.slice(i + 1, j).trim());
    literal = '';
    i = j + 1;
  }
  literals.push(literal);
  return { ok: true, template: { literals, expressions } };
}
