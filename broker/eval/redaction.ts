/**
 * What the interpreter asks of the session's redaction: is a name redacted, and does a string carry a value
 * that looks secret (a pattern such as a card number or bearer token, a `password=…` pair). Answered without
 * changing the session's Redactor, which learns the values read under redacted names (to scrub them from events).
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
  // A scratch Redactor with the same policy and nothing learned finds patterns and pairs; the session's own is left
  // untouched (scrub records hits). Values the session learned are not matched here: whether a string of the target
  // holds one depends on the secret, so the answer would too. What the interpreter reads by name is tainted anyway.
  const scratch = new Redactor(redactor.policy);
  return {
    isSensitive: (name) => redactor.isSensitive(name),
    learn: (name, value) => void redactor.learnPairs([[name, value]]),
    secretIn(text) {
      if (text.length === 0) return undefined;
      if (scratch.policy !== redactor.policy) scratch.policy = redactor.policy;
      const scrubbed = scratch.scrub(text);
      scratch.hits.length = 0;
      if (scrubbed === text) return undefined;
      return markerLabel.exec(scrubbed)?.[1] ?? 'value that looks secret';
    },
  };
}
