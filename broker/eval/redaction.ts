/**
 * What the interpreter asks of the session's redaction: is a name redacted, and does a string carry a value
 * that looks secret (a pattern such as a card number or bearer token, a `password=…` pair, or a value the
 * session learned by name). Answered without changing the session's Redactor.
 */
import { Redactor } from '../policy/redact';

export interface RedactionContext {
  isSensitive(name: string): boolean;
  /** The label of what makes the text secret, or undefined when nothing does. */
  secretIn(text: string): string | undefined;
  /** A value read under the redacted name `name`: the session scrubs it wherever it shows up later. */
  learn?(name: string, value: string): void;
}

const markerLabel = /\[redacted: ([^\]]+)\]/;

export function redactionContextOf(redactor: Redactor): RedactionContext {
  // A scratch Redactor with the same policy finds patterns and pairs; the session's own is left untouched
  // (scrub records hits). Learned values are the session's, read in place.
  const scratch = new Redactor(redactor.policy);
  // TODO(lead): replace with a public `Redactor.learnedValues()` accessor.
  const learned = (redactor as unknown as { learned: ReadonlySet<string> }).learned;
  return {
    isSensitive: (name) => redactor.isSensitive(name),
    learn: (name, value) => void redactor.learnPairs([[name, value]]),
    secretIn(text) {
      if (text.length === 0) return undefined;
      for (const value of learned ?? []) if (text.includes(value)) return 'value of a redacted field';
      if (scratch.policy !== redactor.policy) scratch.policy = redactor.policy;
      const scrubbed = scratch.scrub(text);
      scratch.hits.length = 0;
      if (scrubbed === text) return undefined;
      return markerLabel.exec(scrubbed)?.[1] ?? 'value that looks secret';
    },
  };
}
