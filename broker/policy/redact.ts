/**
 * Redaction of values the policy marks sensitive. It runs on everything the target sends before the broker
 * records it or passes it on: CDP responses (variables, evaluation results, previews, exception details),
 * events (console messages, exceptions, pauses) and therefore snapshot captures and logpoint output, which
 * the broker builds from those responses.
 *
 * Three layers, because a name alone is easy to route around:
 * - names: a property, preview field, Map key or returned-by-value key whose name is sensitive is replaced
 *   whole (objects too, so they cannot be expanded);
 * - patterns: strings are scrubbed of values that look secret wherever they appear (card numbers, bearer
 *   tokens, JWTs, keys, and `name: value` / `name=value` / `"name" => value` pairs with a sensitive name, which
 *   is what JSON.stringify, query strings, header dumps and Map descriptions produce);
 * - learned values: a value once redacted by name is remembered for the session and scrubbed from every later
 *   string, so `Object.values(user).join()` does not give back what `user.password` hid. Values are learned from
 *   every read that passes through here (variables, previews, captures, values returned by value), from the
 *   reachable-values probe before an evaluation, from the scopes of an exception pause's frames before it is shown
 *   (session/exceptionLearning.ts), and through learnValue (the broker's interpreter).
 *
 * Exception text is free text the program built, often from the value that failed. At an exception pause the
 * broker has read the frames that built it, so its message is scrubbed of what they hold; outside one (console
 * output, Runtime.exceptionThrown, Log.entryAdded) it could not, and the message is withheld (exceptionText).
 *
 * A target's output is shaped by whoever debugs it, so scrubbing is linear in its input: no built-in pattern
 * is retried over the same run of characters (`'eyJ-'.repeat(16384)` took 9 s in the JWT pattern, 64 KiB of
 * letters 130 ms in the pair pattern; both now take a few ms).
 */

import { defaultPatterns, jwtPattern, listedName, luhn, marker, pairedName, pairMatches, sensitiveName, urlPasswordPattern, type RedactionPolicy } from './redactionPolicy';
import { redactFunctionSource } from './sourceRedact';

export { compileRedaction, defaultPatterns, defaultRedaction, defaultSensitiveNames, luhn, marker, normalizeName, sensitiveName } from './redactionPolicy';
export type { RedactionPolicy, RedactPattern } from './redactionPolicy';

/** A line of a stack trace as V8 writes it: `    at fn (file:1:2)`. */
const stackFrameLine = /^\s{1,16}at \S/;
// An error's name and the `: ` after it, as Error.prototype.toString and Node's warnings write it: `TypeError: `,
// `Error [ERR_X]: `, `UnhandledPromiseRejectionWarning: `. Identifiers are bounded, so a try never runs long.
const errorHeader = /(?:^|[\s(:])(?:[A-Za-z_$][\w$]{0,80})?(?:Error|Exception|Rejection|Warning)(?: \[[\w.-]{1,60}\])?: /g;
const nextErrorHeader = /(?:[A-Za-z_$][\w$]{0,80})?(?:Error|Exception|Rejection|Warning)(?: \[[\w.-]{1,60}\])?: /y;

/** The ellipsis V8 puts where it shortened a string or a description. */
const cut = '\u2026';
/** Characters withheld on each side of a cut: V8 keeps 50 before and 49 after in a preview, 99 in a description. */
const cutWindow = 100;
/** Values are learned from this many characters on; the index of learned values is by their last this many. */
const learnedTail = 4;
/** The marker's label of a learned value met under another name. */
const learnedLabel = 'value of a redacted field';
/** Past this many learned values, a text is searched for them all in one pass (Redactor.learnedSpans). */
const indexedFrom = 64;
/** Cuts looked at in one text: V8 makes one per string it shortens; past these, the rest of the text is withheld. */
const maxCutsLooked = 16;

/** Sorted spans of a text, those that overlap or touch made one. */
function mergeSpans(spans: readonly [number, number][]): [number, number][] {
  const merged: [number, number][] = [];
  for (const [start, end] of spans) {
    const last = merged.at(-1);
    if (last && start <= last[1]) last[1] = Math.max(last[1], end);
    else merged.push([start, end]);
  }
  return merged;
}

/** `text` with each of its sorted, disjoint spans replaced by `by`. */
function replaceSpans(text: string, spans: readonly [number, number][], by: string): string {
  let kept = '';
  let from = 0;
  for (const [start, end] of spans) {
    kept += text.slice(from, start) + by;
    from = end;
  }
  return kept + text.slice(from);
}

/** Per-session redaction state: the policy and the values learned by name. */
/**
 * PWD and OLDPWD hold a shell's working directory in a process's environment; `pwd` is a sensitive name (a password),
 * so they are shown as markers, but a path there is not learned: every file path and stack trace would then read as
 * a secret.
 */
const workingDirectoryNames = new Set(['PWD', 'OLDPWD']);
/** Bytes a learned sequence has at least (fewer would match by chance), and at most; sequences kept per session. */
const minLearnedBytes = 8;
const maxLearnedBytes = 64 << 10;
const maxLearnedByteSequences = 1000;

/** A list's elements that are numbers, by index in order (a typed array's), from descriptors or preview fields. */
function indexedNumbers(fields: readonly Record<string, unknown>[], valueOf: (field: Record<string, unknown>) => unknown): { bytes: number[]; fields: Record<string, unknown>[] } {
  const indexed: [number, number, Record<string, unknown>][] = [];
  for (const field of fields) {
    if (typeof field.name !== 'string' || !/^(0|[1-9]\d{0,8})$/.test(field.name)) continue;
    const value = Number(valueOf(field));
    if (Number.isFinite(value)) indexed.push([Number(field.name), value, field]);
  }
  indexed.sort((a, b) => a[0] - b[0]);
  return { bytes: indexed.map(([, b]) => b), fields: indexed.map(([, , f]) => f) };
}

/**
 * The characters of a list whose indexed elements are each one character (`key.split('')`, a String wrapper's
 * indices), in index order, and those elements; empty when any indexed element is not a one-character string.
 */
function indexedChars(fields: readonly Record<string, unknown>[], valueOf: (field: Record<string, unknown>) => unknown): { text: string; fields: Record<string, unknown>[] } {
  const indexed: [number, string, Record<string, unknown>][] = [];
  for (const field of fields) {
    if (typeof field.name !== 'string' || !/^(0|[1-9]\d{0,8})$/.test(field.name)) continue;
    const value = valueOf(field);
    if (typeof value !== 'string' || [...value].length !== 1) return { text: '', fields: [] };
    indexed.push([Number(field.name), value, field]);
  }
  indexed.sort((a, b) => a[0] - b[0]);
  return { text: indexed.map(([, c]) => c).join(''), fields: indexed.map(([, , f]) => f) };
}

/** A typed array's element type: its size in bytes and DataView's name for it, by the class V8 names. */
const elementTypes: Readonly<Record<string, readonly [number, 'Uint8' | 'Int8' | 'Uint16' | 'Int16' | 'Uint32' | 'Int32' | 'Float32' | 'Float64']>> = {
  Buffer: [1, 'Uint8'],
  Uint8Array: [1, 'Uint8'],
  Uint8ClampedArray: [1, 'Uint8'],
  Int8Array: [1, 'Int8'],
  Uint16Array: [2, 'Uint16'],
  Int16Array: [2, 'Int16'],
  Uint32Array: [4, 'Uint32'],
  Int32Array: [4, 'Int32'],
  Float32Array: [4, 'Float32'],
  Float64Array: [8, 'Float64'],
};
const integerRanges: Readonly<Record<string, readonly [number, number]>> = {
  Uint8: [0, 0xff],
  Int8: [-0x80, 0x7f],
  Uint16: [0, 0xffff],
  Int16: [-0x8000, 0x7fff],
  Uint32: [0, 0xffffffff],
  Int32: [-0x80000000, 0x7fffffff],
};

/** The class a typed array's description names (`Int8Array(16)`, `Buffer(24)`), if it is one Loupe knows. */
export function typedArrayClass(description: unknown): string | undefined {
  const name = typeof description === 'string' ? /^([A-Za-z0-9]+)\(\d+\)$/.exec(description)?.[1] : undefined;
  return name !== undefined && name in elementTypes ? name : undefined;
}

/** The memory of a typed array of class `type` holding `values` (little-endian, as V8 on x64 and arm64); undefined if they cannot be its elements. */
function elementBytes(values: readonly number[], type: string): Buffer | undefined {
  const [size, kind] = elementTypes[type] ?? elementTypes.Uint8Array!;
  const range = integerRanges[kind];
  const out = Buffer.alloc(values.length * size);
  const view = new DataView(out.buffer, out.byteOffset, out.length);
  for (const [i, value] of values.entries()) {
    if (range && (!Number.isInteger(value) || value < range[0] || value > range[1])) return undefined;
    view[`set${kind}`](i * size, value, true);
  }
  return out;
}

/** The classes whose elements a list of numbers of unknown class could be (a read of a view: V8 does not say whose list it is). */
function possibleClasses(values: readonly number[]): string[] {
  const integers = values.every(Number.isInteger);
  const out = integers ? ['Uint8Array', 'Int8Array', 'Uint16Array', 'Int16Array', 'Uint32Array', 'Int32Array'].filter((type) => elementBytes(values.slice(0, 64), type) !== undefined) : [];
  return [...out, 'Float32Array', 'Float64Array'];
}
const absolutePath = /^(?:\/|[A-Za-z]:\\)\S*$/;

export class Redactor {
  private readonly learned = new Set<string>();
  /** What was redacted, by name or pattern, for alerts and the record. */
  readonly hits: string[] = [];
  /** Ids of the errors this session was shown with their message withheld: a read of one withholds it too. */
  private readonly errorIds = new Set<string>();

  constructor(
    public policy: RedactionPolicy,
    learned: Iterable<string> = [],
  ) {
    for (const value of learned) this.add(value);
  }

  private add(value: string): void {
    if (value.length === 0 || this.learned.has(value)) return;
    this.learned.add(value);
    if (value.length < learnedTail) return void this.shortLearned.push(value);
    const tail = value.slice(-learnedTail);
    const bucket = this.byTail.get(tail);
    if (bucket) bucket.push(value);
    else this.byTail.set(tail, [value]);
  }

  /** The learned values by their last learnedTail characters: a text is searched for many at once (learnedSpans). */
  private readonly byTail = new Map<string, string[]>();
  /** Values shorter than that (none is learned from a read; a caller may hand one in): searched for one by one. */
  private readonly shortLearned: string[] = [];

  /**
   * Where learned values occur in `text`, overlapping ones merged; past indexedFrom values, found through byTail in
   * one pass over the text. A search for each value in turn cost (values × text): a session store of 9,000 tokens
   * under a sensitive name held the broker's loop 2-4 s for one read of 1,000 strings.
   */
  private learnedSpans(text: string, first = false): [number, number][] {
    const spans: [number, number][] = [];
    for (const secret of this.shortLearned) {
      for (let at = text.indexOf(secret); at >= 0; at = text.indexOf(secret, at + 1)) {
        spans.push([at, at + secret.length]);
        if (first) return spans;
      }
    }
    for (let end = learnedTail; end <= text.length; end++) {
      const bucket = this.byTail.get(text.slice(end - learnedTail, end));
      if (!bucket) continue;
      for (const secret of bucket) {
        if (secret.length <= end && text.startsWith(secret, end - secret.length)) {
          spans.push([end - secret.length, end]);
          if (first) return spans;
        }
      }
    }
    return mergeSpans(spans.sort((a, b) => a[0] - b[0] || b[1] - a[1]));
  }

  /** The values learned so far (a worker thread that redacts for this session starts from them). */
  get learnedValues(): readonly string[] {
    return [...this.learned];
  }

  /** How many values it has learned. */
  get learnedCount(): number {
    return this.learned.size;
  }

  /** Whether an error's message is withheld wherever it shows (the default; `exceptionMessages: false` shows it scrubbed). */
  get withholdsExceptionMessages(): boolean {
    return this.policy.exceptionMessages !== false && this.active;
  }

  private noteError(objectId: string): void {
    this.errorIds.delete(objectId);
    this.errorIds.add(objectId);
    if (this.errorIds.size > maxErrorIds) this.errorIds.delete(this.errorIds.values().next().value!);
  }

  /** Takes over the errors another redactor (an answer's own scrubber) withheld, as this session's. */
  adoptErrors(other: Redactor): void {
    for (const id of other.errorIds) this.noteError(id);
    other.errorIds.clear();
  }

  /** Whether `objectId` is an error this session was shown with its message withheld. */
  isWithheldError(objectId: unknown): boolean {
    return typeof objectId === 'string' && this.errorIds.has(objectId);
  }

  get active(): boolean {
    return this.policy.names.size > 0 || this.policy.patterns.length > 0;
  }

  /** Verdicts by name under `verdictsOf`: output repeats its keys, and a pair-dense string asks once per pair. */
  private readonly verdicts = new Map<string, boolean>();
  private verdictsOf: RedactionPolicy | undefined;

  isSensitive(name: string): boolean {
    if (this.verdictsOf !== this.policy) {
      this.verdicts.clear();
      this.verdictsOf = this.policy;
    }
    let verdict = this.verdicts.get(name);
    if (verdict === undefined) {
      verdict = sensitiveName(this.policy, name);
      if (this.verdicts.size < 10_000) this.verdicts.set(name, verdict);
    }
    return verdict;
  }

  /** Whether a text is, whole, one of the policy's names (see listedName). */
  isListedName(text: string): boolean {
    return listedName(this.policy, text);
  }

  /**
   * Remembers a value read under a sensitive name (a scope walk at an exception pause, a capture, the interpreter's
   * reads), so it is scrubbed from every later string of the session. Strings of 4 to 4096 characters and numbers
   * of 4 digits or more: a shorter value (a 3-digit cvv) would be scrubbed from every line number and word that
   * contains it; such a value is still hidden wherever its name shows, and by the pair pattern.
   */
  learnValue(value: unknown, name?: string): void {
    this.learn(value, name);
  }

  private learn(value: unknown, name?: string): void {
    if (name !== undefined && workingDirectoryNames.has(name) && typeof value === 'string' && absolutePath.test(value)) return;
    if (typeof value === 'string' && value.length >= learnedTail && value.length <= 4096 && !value.startsWith('[redacted: ')) {
      this.add(value);
      this.learnForms(value, name);
    } else if (typeof value === 'number' && Number.isFinite(value) && Math.abs(value) >= 1000) this.add(String(value));
    else if (typeof value === 'bigint' && (value >= 1000n || value <= -1000n)) this.add(String(value));
  }

  /**
   * A learned string as a program may also hold it: its bytes (`Buffer.from(apiKey)`, a Uint16Array of its char codes),
   * which a read shows one number at a time and the interpreter turns back into the string, and their text forms.
   */
  private learnForms(value: string, name = 'value of a redacted field'): void {
    for (const encoding of ['utf8', 'utf16le'] as const) {
      const buffer = Buffer.from(value, encoding);
      // Half the bound at most: the byte secrets read as such (learnBytes) keep room.
      if (this.learnedBytes.size >= maxLearnedByteSequences / 2 || buffer.length < minLearnedBytes || buffer.length > maxLearnedBytes || new Set(buffer).size < 3) continue;
      const text = buffer.toString('latin1');
      if (!this.learnedBytes.has(text)) this.learnedBytes.set(text, name);
      if (encoding === 'utf8') for (const form of ['hex', 'base64', 'base64url'] as const) this.add(buffer.toString(form));
    }
  }

  /**
   * Byte sequences learned under sensitive names (a Buffer or typed array holding a signing key), as latin1 text, and
   * the name each was held under. Its bytes are small numbers, which learn() never learns one by one; the same object
   * reached by another name (the `key` parameter it is passed as) shows them all.
   */
  private readonly learnedBytes = new Map<string, string>();

  /**
   * Remembers the bytes of a typed array read under a sensitive name (at least minLearnedBytes of them, not one byte
   * repeated), and the forms a program writes them in (UTF-8 text, hex, base64), which are then scrubbed as any
   * learned value.
   */
  learnBytes(elements: readonly number[], name: string, type = 'Uint8Array'): void {
    if (this.learnedBytes.size >= maxLearnedByteSequences) return;
    const buffer = elementBytes(elements, type);
    if (!buffer || buffer.length < minLearnedBytes || buffer.length > maxLearnedBytes || new Set(buffer).size < 3) return;
    const text = buffer.toString('latin1');
    if (this.learnedBytes.has(text)) return;
    this.learnedBytes.set(text, name);
    const utf8 = buffer.toString('utf8');
    if (!utf8.includes('\uFFFD')) this.learn(utf8, name);
    for (const form of ['hex', 'base64', 'base64url'] as const) this.learn(buffer.toString(form), name);
  }

  /**
   * The name of a learned byte sequence that a list's elements (in order) hold in memory, as a typed array of class
   * `type`, or of any class they could be when it is not known (a view of another type over the same bytes: an
   * Int8Array, a Uint16Array); with `prefixOnly` (a preview, which shows only the first elements) also one they begin.
   */
  bytesSecret(elements: readonly number[], prefixOnly = false, type?: string): string | undefined {
    if (this.learnedBytes.size === 0 || elements.length === 0) return undefined;
    for (const candidate of type !== undefined && type in elementTypes ? [type] : possibleClasses(elements)) {
      const text = elementBytes(elements, candidate)?.toString('latin1');
      if (text === undefined) continue;
      for (const [learned, name] of this.learnedBytes) {
        if (text.includes(learned)) return name;
        if (prefixOnly && text.length >= minLearnedBytes && learned.startsWith(text)) return name;
      }
    }
    return undefined;
  }

  /** Whether characters held one an element (indexedChars) spell a learned value. */
  charsSecret(text: string): boolean {
    return text.length >= learnedTail && this.holdsLearned(text);
  }

  /** Whether `text` is, whole, a value learned under a redacted name (a number's digits, say). */
  isLearned(text: string): boolean {
    return this.learned.has(text);
  }

  /** Property names known to hold nothing to scrub, under `cleanNamesOf`: the policy and the number of values learned then. */
  private readonly cleanNames = new Set<string>();
  private cleanNamesOf: { policy: RedactionPolicy; learned: number } | undefined;

  /**
   * A property name from the target, scrubbed like its values: a cache or rate limiter keyed by an API key has the
   * key as a name. Names repeat from read to read (one shape, many objects), so those found clean are remembered
   * until the policy changes or a value is learned.
   */
  propertyName(name: string): string {
    if (this.cleanNamesOf?.policy !== this.policy || this.cleanNamesOf.learned !== this.learned.size) {
      this.cleanNames.clear();
      this.cleanNamesOf = { policy: this.policy, learned: this.learned.size };
    }
    if (this.cleanNames.has(name)) return name;
    const out = this.scrub(name);
    if (out === name && this.cleanNames.size < 10_000) this.cleanNames.add(name);
    return out;
  }

  /** Whether `text` holds a value learned under a redacted name. */
  holdsLearned(text: string): boolean {
    if (this.learned.size > indexedFrom) {
      if (this.learnedSpans(text, true).length > 0) return true;
    } else for (const secret of this.learned) if (text.includes(secret)) return true;
    return text.includes(cut) && this.learned.size > 0 && this.cutPieces(text).length > 0;
  }

  /** Learns the values of sensitive fields from [name, value] pairs (the broker's reachability probe). */
  learnPairs(pairs: readonly [string, string][]): number {
    let found = 0;
    for (const pair of pairs) {
      if (Array.isArray(pair) && typeof pair[0] === 'string' && typeof pair[1] === 'string' && this.isSensitive(pair[0])) {
        this.learn(pair[1], pair[0]);
        found++;
      }
    }
    return found;
  }

  /** Scrubs a string of pattern matches, sensitive pairs and learned values. */
  scrub(text: string): string {
    let out = text;
    for (const { name, regex } of this.policy.patterns) {
      // Most strings match no pattern: a test costs a fifth of a replace with a function that finds nothing.
      regex.lastIndex = 0;
      if (!regex.test(out)) continue;
      regex.lastIndex = 0;
      out = out.replace(regex, (match: string, ...groups: unknown[]) => {
        if (name === 'JWT' && regex === jwtPattern && groups[0] === undefined) return match;
        if (name === 'card number' && !luhn(match.replace(/\D/g, ''))) return match;
        this.hits.push(name);
        if (regex === urlPasswordPattern) return `${String(groups[0])}${marker(name)}@`;
        return marker(name);
      });
    }
    // A pair has a `:` or `=` between its name and its value.
    if (this.policy.names.size > 0 && (out.includes(':') || out.includes('='))) {
      let kept = '';
      let from = 0;
      for (const match of pairMatches(out, (name) => this.isSensitive(name))) {
        const [whole, quote, key, sep, value] = match as unknown as [string, string, string, string, string];
        const last = key.split('.').pop()!;
        if (!this.isSensitive(last) || value.startsWith('[redacted') || value.startsWith('"[redacted')) continue;
        this.hits.push(last);
        const quoted = value.startsWith('"') ? `"${marker(last)}"` : value.startsWith("'") ? `'${marker(last)}'` : marker(last);
        kept += out.slice(from, match.index) + `${quote}${key}${quote}${sep}${quoted}`;
        from = match.index + whole.length;
      }
      if (from > 0) out = kept + out.slice(from);
    }
    if (this.learned.size > indexedFrom) {
      const spans = this.learnedSpans(out);
      if (spans.length > 0) {
        this.hits.push('learned value');
        out = replaceSpans(out, spans, marker('value of a redacted field'));
      }
    } else {
      for (const secret of this.learned) {
        if (out.includes(secret)) {
          this.hits.push('learned value');
          out = out.split(secret).join(marker('value of a redacted field'));
        }
      }
    }
    if (out.includes(cut) && this.learned.size > 0) {
      const pieces = this.cutPieces(out);
      if (pieces.length > 0) {
        this.hits.push('text beside a cut');
        out = replaceSpans(out, pieces, marker('text beside a cut'));
      }
    }
    return out;
  }

  /**
   * Both sides of each `…` in a text, up to cutWindow characters and not across a line break. V8 shortens a preview's
   * string to its first 50 and last 49 characters around `…`, a description to its first 99; a program may cut a value
   * itself. Such a piece of a learned value never holds the whole value, so whole-value matching misses it (a
   * 140-character token copied into another field showed 92 of its characters). Which pieces begin or end a learned
   * value is not asked: then a text the client could plant (`<a known start><a guess>…`) would say by its redaction
   * whether the guess continues a secret, recovering it a character a pause. So, once the session has learned a value,
   * the text beside every cut is withheld, whatever it holds. Sorted, disjoint spans; past maxCutsLooked cuts, the rest.
   */
  private cutPieces(text: string): [number, number][] {
    const spans: [number, number][] = [];
    let looked = 0;
    for (let at = text.indexOf(cut); at >= 0; at = text.indexOf(cut, at + 1), looked++) {
      if (looked >= maxCutsLooked) {
        spans.push([at, text.length]);
        break;
      }
      let start = at;
      while (start > 0 && at - start < cutWindow && text[start - 1] !== '\n') start--;
      let end = at + 1;
      while (end < text.length && end - at - 1 < cutWindow && text[end] !== '\n') end++;
      if (start < at) spans.push([start, at]);
      if (end > at + 1) spans.push([at + 1, end]);
    }
    return mergeSpans(spans);
  }

  /**
   * An exception's text seen outside an exception pause (a console message, Runtime.exceptionThrown, Log.entryAdded).
   * Its message is text the program built, often from the value that failed, and the broker could not read the
   * frame that built it (at an exception pause it does: exceptionLearning.ts), so the message is withheld: the
   * error's name and its stack frames stay. In `text`, every block of lines that a stack trace follows is such a
   * rendering; `whole` says the text is one exception's (exceptionDetails.text, an error's description) with or
   * without frames. Other text is only scrubbed. A policy's `exceptionMessages: false` shows messages, scrubbed.
   */
  exceptionText(text: string, whole = false): string {
    if (this.policy.exceptionMessages === false || !this.active) return this.scrub(text);
    // V8's own words for an exception it reports, with no message in them.
    if (whole && /^Uncaught(?: \(in promise\))?$/.test(text)) return text;
    const lines = text.split('\n');
    const frame = lines.map((line) => stackFrameLine.test(line));
    const out: string[] = [];
    let head = 0;
    for (let i = 0; i <= lines.length; i++) {
      if (i < lines.length && !frame[i]) continue;
      // lines[head..i) is a run of non-frame lines; it is an exception's head if frames follow (or the text is one).
      if (i > head) {
        const isHead = i < lines.length || (whole && head === 0);
        out.push(...(isHead ? this.withheldMessage(lines.slice(head, i)) : lines.slice(head, i)));
      }
      if (i < lines.length) out.push(lines[i]!);
      head = i + 1;
    }
    return this.scrub(out.join('\n'));
  }

  /** The lines of an exception's head with its message withheld: `Name: [redacted: exception message]`. */
  private withheldMessage(head: string[]): string[] {
    const first = head[0]!;
    const withheld = marker('exception message');
    this.hits.push('exception message');
    errorHeader.lastIndex = 0;
    const found = first.length <= 4096 ? errorHeader.exec(first) : null;
    if (!found) return [withheld];
    // Headers that follow one another (`UnhandledPromiseRejectionWarning: Error: `) are names, not the message.
    let end = found.index + found[0].length;
    for (;;) {
      nextErrorHeader.lastIndex = end;
      if (!nextErrorHeader.test(first)) break;
      end = nextErrorHeader.lastIndex;
    }
    return [first.slice(0, end) + withheld];
  }

  /**
   * An Error RemoteObject: its description and previewed message and stack withheld (exceptionText), wherever it shows
   * (a console argument, a thrown value, a property read, an evaluation's result); only the thrown value of an
   * exception pause, whose frames the broker read first, is shown scrubbed. Its id is kept: a read of its own
   * `message` and `stack`, and Runtime.getExceptionDetails of it, withhold them too.
   */
  private withheldError(object: Record<string, unknown>): void {
    if (typeof object.objectId === 'string') this.noteError(object.objectId);
    if (typeof object.description === 'string') object.description = this.exceptionText(object.description, true);
    const preview = isRecord(object.preview) ? object.preview : undefined;
    if (preview && typeof preview.description === 'string') preview.description = this.exceptionText(preview.description, true);
    for (const field of preview && Array.isArray(preview.properties) ? (preview.properties as unknown[]) : []) {
      if (!isRecord(field) || typeof field.value !== 'string') continue;
      if (field.name === 'message') field.value = marker('exception message');
      else if (field.name === 'stack') field.value = this.exceptionText(field.value, true);
    }
  }

  /** A RemoteObject (or a PropertyDescriptor's value) that a sensitive name points at, replaced whole. */
  private replaced(name: string, original: Record<string, unknown> | undefined): Record<string, unknown> {
    if (original) {
      this.learn(original.value, name);
      if (original.type === 'string' || original.type === 'number') this.learn(original.description, name);
    }
    const label = this.label(name);
    this.hits.push(label);
    const text = marker(label);
    return { type: 'string', value: text, description: text };
  }

  /**
   * A sensitive name as a marker and the record name it: itself, unless the name holds a secret (an object keyed by a
   * token, `{ [apiKey]: 5 }`, whose key reads as sensitive once the token is learned): the marker must not quote it.
   */
  private label(name: string): string {
    return this.propertyName(name) === name ? name : 'a redacted name';
  }

  /** Function sources already redacted under `sourcesOf` (a prototype's methods show up in answer after answer). */
  private readonly sources = new Map<string, string>();
  private sourcesOf: RedactionPolicy | undefined;

  private functionSource(text: string): string {
    if (this.sourcesOf !== this.policy) {
      this.sources.clear();
      this.sourcesOf = this.policy;
    }
    let out = this.sources.get(text);
    if (out === undefined) {
      out = redactFunctionSource(text, this);
      if (this.sources.size >= 512) this.sources.clear();
      this.sources.set(text, out);
    }
    return out;
  }

  /** Redacts a Runtime.RemoteObject in place; `name` is the name it is known by, if any. */
  remoteObject(object: unknown, name?: string, messageShown = false): unknown {
    if (!isRecord(object)) return object;
    if (name !== undefined && this.isSensitive(name)) return this.replaced(name, object);
    if (object.subtype === 'error' && !messageShown && this.withholdsExceptionMessages) this.withheldError(object);
    // A number copied from a redacted field under another name (an OTP kept in `code`): its digits are the secret.
    if ((object.type === 'number' || object.type === 'bigint') && this.learned.size > 0) {
      const digits = typeof object.value === 'number' ? String(object.value) : typeof object.unserializableValue === 'string' ? object.unserializableValue.replace(/n$/, '') : undefined;
      if (digits !== undefined && this.learned.has(digits)) {
        this.hits.push('learned value');
        const text = marker('value of a redacted field');
        for (const key of Object.keys(object)) delete object[key];
        return Object.assign(object, { type: 'string', value: text, description: text });
      }
    }
    // A function's description is its source text: its secret literals go as they do in its script's source.
    if (object.type === 'function' && typeof object.description === 'string') object.description = this.functionSource(object.description);
    if (typeof object.value === 'string') object.value = this.scrub(object.value);
    else if (object.value !== undefined && typeof object.value === 'object') object.value = this.byValue(object.value);
    if (typeof object.description === 'string') object.description = this.scrub(object.description);
    if (typeof object.unserializableValue === 'string') object.unserializableValue = this.scrub(object.unserializableValue);
    if (isRecord(object.preview)) this.preview(object.preview);
    return object;
  }

  /** A value returned by value (returnByValue): keys with sensitive names are replaced, strings scrubbed. */
  byValue(value: unknown, depth = 0): unknown {
    if (typeof value === 'string') return this.scrub(value);
    if ((typeof value === 'number' || typeof value === 'bigint') && this.learned.size > 0 && this.learned.has(String(value))) {
      this.hits.push('learned value');
      return marker('value of a redacted field');
    }
    if (depth > 50 || value === null || typeof value !== 'object') return value;
    if (Array.isArray(value)) {
      const textAt = (index: number) => (typeof value[index] === 'string' ? (value[index] as string) : undefined);
      return value.map((item, index) => {
        const paired =
          index > 0
            ? pairedName(
                String(index),
                textAt,
                (n) => this.isSensitive(n) && !this.holdsLearned(n),
                (t) => this.isListedName(t),
              )
            : undefined;
        if (paired === undefined) return this.byValue(item, depth + 1);
        this.hits.push(paired);
        this.learn(item, paired);
        return marker(paired);
      });
    }
    const out: Record<string, unknown> = {};
    // Defined, not assigned: a "__proto__" key from the target stays a key and never becomes a prototype.
    const put = (key: string, item: unknown) => Object.defineProperty(out, key, { value: item, enumerable: true, writable: true, configurable: true });
    for (const [key, item] of Object.entries(value)) {
      if (this.isSensitive(key)) {
        this.hits.push(key);
        this.learn(item, key);
        put(key, marker(key));
      } else put(this.propertyName(key), this.byValue(item, depth + 1));
    }
    return out;
  }

  /** Runtime.ObjectPreview: fields by name, Map/Set entries by key, nested previews. */
  preview(preview: Record<string, unknown>, depth = 0): void {
    // V8 nests previews one level; a target that nests them deeper is cut off rather than recursed into.
    if (depth > 50) {
      for (const key of Object.keys(preview)) delete preview[key];
      preview.description = marker('preview nested too deep');
      return;
    }
    // A nested preview of an error (a Map's value, a Set's element): its description is `Error: <message>`.
    if (depth > 0 && preview.subtype === 'error' && typeof preview.description === 'string' && this.withholdsExceptionMessages) preview.description = this.exceptionText(preview.description, true);
    if (typeof preview.description === 'string') preview.description = this.scrub(preview.description);
    if (Array.isArray(preview.properties)) {
      const fields = preview.properties as Record<string, unknown>[];
      const list = preview.subtype === 'array';
      // The list's strings as V8 sent them (before any is replaced below), for `[name, value]` side by side.
      const texts = new Map<string, string>();
      if (list) for (const f of fields) if (isRecord(f) && typeof f.name === 'string' && f.type === 'string' && typeof f.value === 'string') texts.set(f.name, f.value);
      const textAt = (index: number) => texts.get(String(index));
      // A typed array holding a learned key, reached by another name: its bytes as the marker.
      if (this.learnedBytes.size > 0 && (preview.subtype === 'typedarray' || list)) {
        const { bytes, fields: byteFields } = indexedNumbers(fields.filter(isRecord), (f) => (f.type === 'number' ? f.value : undefined));
        const name = bytes.length > 0 ? this.bytesSecret(bytes, preview.overflow === true, typedArrayClass(preview.description)) : undefined;
        if (name !== undefined) {
          const label = this.label(name);
          this.hits.push(label);
          for (const f of byteFields) Object.assign(f, { type: 'string', value: marker(label) });
          return;
        }
      }
      // A learned value spelled out a character an element: each element as the marker.
      if (this.learned.size > 0) {
        const { text, fields: charFields } = indexedChars(fields.filter(isRecord), (f) => (f.type === 'string' ? f.value : undefined));
        if (this.charsSecret(text)) {
          this.hits.push(learnedLabel);
          for (const f of charFields) Object.assign(f, { type: 'string', value: marker(learnedLabel) });
          return;
        }
      }
      // A Map entry's preview (the [[Entries]] list read with previews): `{key, value}`, the value secret by its key.
      const keyField = fields.find((f) => isRecord(f) && f.name === 'key');
      const entryKey = keyField?.type === 'string' && typeof keyField.value === 'string' && fields.some((f) => isRecord(f) && f.name === 'value') ? keyField.value : undefined;
      const secretEntry = entryKey !== undefined && this.isSensitive(entryKey) ? entryKey : undefined;
      for (const field of fields) {
        if (!isRecord(field)) continue;
        const paired =
          secretEntry !== undefined && field.name === 'value'
            ? secretEntry
            : texts.size > 0 && typeof field.name === 'string'
              ? pairedName(
                  field.name,
                  textAt,
                  (n) => this.isSensitive(n) && !this.holdsLearned(n),
                  (t) => this.isListedName(t),
                )
              : undefined;
        if (typeof field.name === 'string' && (paired !== undefined || this.isSensitive(field.name))) {
          const name = paired ?? (field.name as string);
          this.learn(field.value, name);
          const label = this.label(name);
          this.hits.push(label);
          field.type = 'string';
          field.value = marker(label);
          field.name = this.propertyName(field.name as string);
          delete field.valuePreview;
          delete field.subtype;
          continue;
        }
        if (typeof field.name === 'string') field.name = this.propertyName(field.name);
        // An error held in a field shows as its description: `Error: <message>`.
        if (field.subtype === 'error' && typeof field.value === 'string' && this.withholdsExceptionMessages) field.value = this.exceptionText(field.value, true);
        if (typeof field.value === 'string') field.value = this.scrub(field.value);
        if (isRecord(field.valuePreview)) this.preview(field.valuePreview, depth + 1);
      }
    }
    if (Array.isArray(preview.entries)) {
      for (const entry of preview.entries as Record<string, unknown>[]) {
        if (!isRecord(entry)) continue;
        const keyName = isRecord(entry.key) ? previewPrimitive(entry.key) : undefined;
        if (keyName !== undefined && this.isSensitive(keyName)) {
          if (isRecord(entry.value)) this.learn(previewPrimitive(entry.value), keyName);
          const label = this.label(keyName);
          this.hits.push(label);
          const text = marker(label);
          entry.value = { type: 'string', description: text, overflow: false, properties: [] };
          if (isRecord(entry.key)) this.preview(entry.key, depth + 1);
          continue;
        }
        if (isRecord(entry.key)) this.preview(entry.key, depth + 1);
        if (isRecord(entry.value)) this.preview(entry.value, depth + 1);
      }
    }
  }

  /** Runtime.getProperties: every property by its name; a Map entry (`{key, value}`) by its key. */
  properties(result: Record<string, unknown>, ofError = false): void {
    const list = Array.isArray(result.result) ? (result.result as Record<string, unknown>[]) : [];
    // What the answer holds under sensitive names is learned before any of it is redacted: a copy listed before its
    // name (a closure's `hdr` before its `apiKey`) is then scrubbed too, not only in the next read.
    const privates = Array.isArray(result.privateProperties) ? (result.privateProperties as unknown[]) : [];
    for (const prop of [...list, ...privates]) {
      if (isRecord(prop) && typeof prop.name === 'string' && isRecord(prop.value) && (prop.value.type === 'string' || prop.value.type === 'number') && this.isSensitive(prop.name)) {
        this.learn(prop.value.value, prop.name);
      }
    }
    // An error's own message and stack, read through its id: withheld as where the error showed.
    if (ofError && this.withholdsExceptionMessages) {
      for (const prop of list) {
        if (!isRecord(prop) || !isRecord(prop.value) || typeof prop.value.value !== 'string') continue;
        if (prop.name === 'message') prop.value.value = prop.value.description = marker('exception message');
        else if (prop.name === 'stack') prop.value.value = prop.value.description = this.exceptionText(prop.value.value, true);
      }
    }
    // A typed array holding a learned key, read through an id of another name: each byte as the marker.
    if (this.learnedBytes.size > 0) {
      const { bytes, fields } = indexedNumbers(list.filter(isRecord), (p) => (isRecord(p.value) && p.value.type === 'number' ? p.value.value : undefined));
      const name = this.bytesSecret(bytes);
      if (name !== undefined) for (const f of fields) f.value = this.replaced(name, undefined);
    }
    // A learned value spelled out a character an element (`key.split('')`, `new String(key)`): each as the marker.
    if (this.learned.size > 0) {
      const { text, fields } = indexedChars(list.filter(isRecord), (p) => (isRecord(p.value) && p.value.type === 'string' ? p.value.value : undefined));
      if (this.charsSecret(text)) for (const f of fields) f.value = this.replaced(learnedLabel, undefined);
    }
    const keyProp = list.find((p) => isRecord(p) && p.name === 'key');
    const entryKey = keyProp && isRecord(keyProp.value) && list.some((p) => isRecord(p) && p.name === 'value') ? keyProp.value.value : undefined;
    // A function's scope with a redacted parameter: its `arguments` object holds the same value by index.
    const secretParameter = list.find((p) => isRecord(p) && typeof p.name === 'string' && this.isSensitive(p.name))?.name as string | undefined;
    // A list's strings by index, for `[name, value]` side by side (pairedName).
    const texts = new Map<string, string>();
    for (const p of list) if (isRecord(p) && typeof p.name === 'string' && isRecord(p.value) && typeof p.value.value === 'string') texts.set(p.name, p.value.value);
    const textAt = (index: number) => texts.get(String(index));
    for (const prop of list) {
      if (!isRecord(prop)) continue;
      const name = typeof prop.name === 'string' ? prop.name : undefined;
      const paired =
        name !== undefined && texts.size > 0
          ? pairedName(
              name,
              textAt,
              (n) => this.isSensitive(n) && !this.holdsLearned(n),
              (t) => this.isListedName(t),
            )
          : undefined;
      if (paired !== undefined && isRecord(prop.value)) {
        prop.value = this.replaced(paired, prop.value);
        continue;
      }
      if (name === 'arguments' && secretParameter !== undefined && isRecord(prop.value) && prop.value.type === 'object') {
        prop.value = this.replaced(secretParameter, prop.value);
        continue;
      }
      if (name === 'value' && typeof entryKey === 'string' && this.isSensitive(entryKey)) {
        prop.value = this.replaced(entryKey, isRecord(prop.value) ? prop.value : undefined);
        continue;
      }
      if (isRecord(prop.value)) prop.value = this.remoteObject(prop.value, name);
      if (name !== undefined) prop.name = this.propertyName(name);
      // An accessor's getter is never invoked, but its function description could still carry source text.
      if (isRecord(prop.get)) prop.get = this.remoteObject(prop.get);
      if (isRecord(prop.set)) prop.set = this.remoteObject(prop.set);
    }
    for (const key of ['internalProperties', 'privateProperties'] as const) {
      const extra = result[key];
      if (!Array.isArray(extra)) continue;
      for (const prop of extra as Record<string, unknown>[]) {
        if (!isRecord(prop)) continue;
        if (isRecord(prop.value)) prop.value = this.remoteObject(prop.value, typeof prop.name === 'string' ? prop.name : undefined);
        if (typeof prop.name === 'string') prop.name = this.propertyName(prop.name);
      }
    }
    if (isRecord(result.exceptionDetails)) this.exceptionDetails(result.exceptionDetails);
  }

  /** `evaluation`: what an evaluation threw (V8's refusal or Loupe's own error), shown scrubbed as before. */
  exceptionDetails(details: Record<string, unknown>, evaluation = false): void {
    if (typeof details.text === 'string') details.text = this.scrub(details.text);
    if (isRecord(details.exception)) this.remoteObject(details.exception, undefined, evaluation);
  }

  /** A CDP response's result, by method, in place; `ofError` when it reads an error shown with its message withheld (isWithheldError). */
  response(method: string, result: Record<string, unknown> | undefined, ofError = false): void {
    if (!result || !this.active) return;
    if (method === 'Runtime.getProperties') this.properties(result, ofError);
    else if (method === 'Runtime.getExceptionDetails' && isRecord(result.exceptionDetails)) {
      // The error's own text, as V8 renders it when it is thrown: withheld as where the error showed (the thrown
      // value of an exception pause shows it scrubbed).
      const details = result.exceptionDetails;
      if (ofError && typeof details.text === 'string') details.text = this.exceptionText(details.text, true);
      this.exceptionDetails(details, !ofError);
    } else {
      // An evaluation that threw answers with what it threw as its result too.
      const threw = isRecord(result.exceptionDetails);
      if (isRecord(result.result)) this.remoteObject(result.result, undefined, threw);
      if (threw) this.exceptionDetails(result.exceptionDetails as Record<string, unknown>, true);
    }
  }

  /** A CDP event from the target, in place. */
  event(method: string, params: Record<string, unknown> | undefined): void {
    if (!params || !this.active) return;
    if (method === 'Runtime.consoleAPICalled' && Array.isArray(params.args)) {
      // Strings first through exceptionText: Node writes an unhandled rejection's stack as one.
      params.args = (params.args as unknown[]).map((arg) => {
        if (isRecord(arg) && typeof arg.value === 'string') arg.value = this.exceptionText(arg.value);
        return this.remoteObject(arg);
      });
    } else if (method === 'Runtime.exceptionThrown' && isRecord(params.exceptionDetails)) {
      const details = params.exceptionDetails;
      if (typeof details.text === 'string') details.text = this.exceptionText(details.text, true);
      const thrown = isRecord(details.exception) ? details.exception : undefined;
      // A thrown string is a message too.
      if (thrown?.type === 'string' && this.policy.exceptionMessages !== false) thrown.value = thrown.description = marker('exception message');
      this.exceptionDetails(details);
    } else if (method === 'Debugger.paused') {
      // The thrown value of an exception pause: its frames were read first, so its message shows, scrubbed.
      if (isRecord(params.data)) this.remoteObject(params.data, undefined, params.reason === 'exception' || params.reason === 'promiseRejection');
      for (const frame of Array.isArray(params.callFrames) ? (params.callFrames as unknown[]) : []) {
        if (!isRecord(frame)) continue;
        if (isRecord(frame.this)) frame.this = this.remoteObject(frame.this);
        if (isRecord(frame.returnValue)) frame.returnValue = this.remoteObject(frame.returnValue);
      }
    } else if (method === 'Runtime.consoleAPICalled' || method === 'Log.entryAdded') {
      const entry = isRecord(params.entry) ? params.entry : undefined;
      if (entry && typeof entry.text === 'string') entry.text = this.exceptionText(entry.text);
    }
  }
}

/** Errors a session remembers as shown with their message withheld; past it the oldest are forgotten. */
const maxErrorIds = 50_000;

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** The text of a primitive preview (a Map key such as "password"); previews of strings carry it as description. */
function previewPrimitive(preview: Record<string, unknown>): string | undefined {
  if (preview.type === 'string' && typeof preview.description === 'string') return preview.description;
  if (preview.type === 'string' && typeof preview.value === 'string') return preview.value;
  return undefined;
}
