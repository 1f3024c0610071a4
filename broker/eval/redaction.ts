/**
 * What the interpreter asks of the session's redaction: is a name redacted, and does a string carry a value
 * that looks secret (a pattern such as a card number or bearer token, a `password=…` pair). Answered without
 * changing the session's Redactor, which learns the values read under redacted names (to scrub them from events).
 */
import { Redactor } from '../policy/redact';

export interface RedactionContext {
  isSensitive(name: string): boolean;
  /** Whether a text is, whole, one of the policy's names (a list of names holds no secret). */
  isListedName?(text: string): boolean;
  /** The label of what makes the text secret, or undefined when nothing does. */
  secretIn(text: string): string | undefined;
  /**
   * secretIn for text the target holds (a string read from it, an object's description, a preview): also a value the
   * session learned under a redacted name, which the program may have copied anywhere (an error's message built
   * from a token). Never for text the expression built: whether a literal equals a secret must not show.
   */
  secretInTarget(text: string): string | undefined;
  /** A value read under the redacted name `name`: the session scrubs it wherever it shows up later. */
  learn?(name: string, value: string): void;
  /** Whether the text is, whole, a value learned under a redacted name (the digits of a number read elsewhere). */
  isLearned?(text: string): boolean;
  /** Whether an error's message and stack are withheld (the policy's exceptionMessages). */
  withholdsExceptionMessages?(): boolean;
  /** Which of the target's process facts (pid, parent pid, inspector port) a text of the target shows, if any. */
  processFactIn?(text: string): string | undefined;
  /** The redacted name of the learned bytes a typed array of the target holds (a key's Buffer reached by an alias). */
  secretBytes?(elements: readonly number[], type?: string): string | undefined;
  /** Whether one-character strings, joined in index order, spell a value the session learned. */
  charsSecret?(text: string): boolean;
  /** Whether the session has learned any value (a list's elements are then read whole: see previewMember). */
  learnedAny?(): boolean;
}

const markerLabel = /\[redacted: ([^\]]+)\]/;
/** The label of a string of the target that holds a learned value, as the session's scrub marks it. */
export const learnedLabel = 'value of a redacted field';

export function redactionContextOf(redactor: Redactor, processFacts?: () => { factIn(text: string): string | undefined } | undefined): RedactionContext {
  // A scratch Redactor with the same policy and nothing learned finds patterns and pairs; the session's own is left
  // untouched (scrub records hits). Values the session learned are matched only in what the target holds
  // (secretInTarget): matched in what the expression built, they would say which literal equals a secret.
  // Made at the first check: most sessions never evaluate, and each holds one per session.
  let scratch: Redactor | undefined;
  return {
    isSensitive: (name) => redactor.isSensitive(name),
    isListedName: (text) => redactor.isListedName(text),
    learn: (name, value) => void redactor.learnPairs([[name, value]]),
    isLearned: (text) => redactor.isLearned(text),
    withholdsExceptionMessages: () => redactor.withholdsExceptionMessages,
    secretBytes: (elements, type) => redactor.bytesSecret(elements, false, type),
    charsSecret: (text) => redactor.charsSecret(text),
    learnedAny: () => redactor.learnedCount > 0,
    processFactIn: (text) => processFacts?.()?.factIn(text),
    secretIn,
    secretInTarget: (text) => secretIn(text) ?? (redactor.holdsLearned(text) ? learnedLabel : undefined),
  };
  function secretIn(text: string): string | undefined {
    if (text.length === 0) return undefined;
    scratch ??= new Redactor(redactor.policy);
    if (scratch.policy !== redactor.policy) scratch.policy = redactor.policy;
    const scrubbed = scratch.scrub(text);
    scratch.hits.length = 0;
    if (scrubbed === text) return undefined;
    return markerLabel.exec(scrubbed)?.[1] ?? 'value that looks secret';
  }
}
