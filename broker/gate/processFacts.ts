/**
 * Facts about the target's process that a client could act on outside the broker are withheld: its process id
 * (js-debug read `process.pid` and, on stopDebugging, sent SIGKILL to that pid on the developer's own machine), its
 * parent's, and the inspector port. Loupe expressions are refused them (eval/remote.ts); answers and events that
 * show the process object (property lists, previews) carry a withheld marker in their place; V8 evaluations (a
 * grant's privilege) are refused expressions that name them (gate/evaluationCheck.ts). Those are the names; their
 * values are withheld from every message a client receives, whatever route brought them (WithheldFacts, below).
 */
/** Fields of `process` that are withheld, and what each is. */
export const withheldProcessFields: Readonly<Record<string, string>> = Object.freeze({
  pid: "the target's process id",
  ppid: "the target's parent process id",
  debugPort: "the target's inspector port",
});

/** The same, as the expressions that read them (always denied, whatever the policy says). */
export const withheldProcessPaths: readonly string[] = Object.keys(withheldProcessFields).map((field) => `process.${field}`);

const why = 'a debugger could act on the process outside Loupe';

/** The refusal's reason for one field. */
export const withheldReason = (field: string) => `${withheldProcessFields[field] ?? field} (process.${field}) is withheld: ${why}`;

/** What a client sees in place of the value. */
export const withheldMarker = (field: string) => `[withheld by Loupe: ${withheldProcessFields[field] ?? field}]`;

export const isWithheldField = (name: string) => Object.hasOwn(withheldProcessFields, name);

/** Node's `process` object as V8 describes it. */
export const isProcessObject = (object: { readonly type?: unknown; readonly className?: unknown } | undefined) => object?.type === 'object' && object.className === 'process';

// A property list is the process object's when it has these own fields (V8 does not say whose list it is).
const processSignature = ['pid', 'ppid', 'execPath', 'versions', 'release', 'platform'];

type Descriptor = { name?: unknown; value?: unknown; isOwn?: unknown; get?: unknown; set?: unknown };
const isRecord = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);

function markValue(descriptor: Record<string, unknown>, field: string): void {
  const text = withheldMarker(field);
  descriptor.value = { type: 'string', value: text, description: text };
}

/** Replaces withheld fields in a preview of the process object. Returns how many it replaced. */
function withholdInPreview(object: Record<string, unknown>): number {
  const preview = object.preview;
  if (!isRecord(preview) || !Array.isArray(preview.properties)) return 0;
  let count = 0;
  for (const property of preview.properties as unknown[]) {
    if (!isRecord(property) || typeof property.name !== 'string' || !isWithheldField(property.name)) continue;
    property.type = 'string';
    property.value = withheldMarker(property.name);
    delete property.subtype;
    delete property.valuePreview;
    count++;
  }
  return count;
}

/** A RemoteObject anywhere in an answer: the process object's preview is scrubbed, and its value when sent by value. */
function withholdInObject(value: unknown): number {
  if (!isRecord(value)) return 0;
  let count = 0;
  const byValue = value.value;
  if (isRecord(byValue) && processSignature.every((name) => Object.hasOwn(byValue, name))) {
    for (const field of Object.keys(withheldProcessFields)) {
      if (!Object.hasOwn(byValue, field)) continue;
      byValue[field] = withheldMarker(field);
      count++;
    }
  }
  if (isProcessObject(value)) count += withholdInPreview(value);
  return count;
}

/** What a property list of the process object shows in place of a member the target's policy denies. */
export const deniedMarker = (path: string) => `[denied by this target's policy: ${path}]`;

/**
 * A property list of the process object (Runtime.getProperties, the Variables view) with each member whose path the
 * target's evaluation.denyIdentifiers denies (`process.env`, `process.mainModule`) replaced by a marker: its object is
 * not handed out, so it cannot be listed next (two reads would otherwise show the whole environment). Returns how many.
 */
export function denyProcessMembers(method: string, payload: Record<string, unknown> | undefined, denied: (path: string) => string | undefined): number {
  if (method !== 'Runtime.getProperties' || !payload || !Array.isArray(payload.result)) return 0;
  const list = payload.result as Descriptor[];
  const names = new Set(list.map((d) => (isRecord(d) ? d.name : undefined)));
  if (!processSignature.every((name) => names.has(name))) return 0;
  let count = 0;
  for (const d of list) {
    if (!isRecord(d) || typeof d.name !== 'string') continue;
    const hit = denied(`process.${d.name}`);
    if (!hit) continue;
    const text = deniedMarker(hit);
    d.value = { type: 'string', value: text, description: text };
    delete d.get;
    delete d.set;
    count++;
  }
  return count;
}

/**
 * Withholds the process facts in an answer or event a client is about to receive (modified in place): a property
 * list of the process object, and previews of it in property lists, evaluation results and console arguments.
 * Returns how many values it replaced.
 */
export function withholdProcessFacts(method: string, payload: Record<string, unknown> | undefined): number {
  if (!payload) return 0;
  let count = 0;
  if (method === 'Runtime.getProperties' && Array.isArray(payload.result)) {
    const list = payload.result as Descriptor[];
    const names = new Set(list.map((d) => (isRecord(d) ? d.name : undefined)));
    const isProcess = processSignature.every((name) => names.has(name));
    for (const d of list) {
      if (!isRecord(d)) continue;
      if (isProcess && typeof d.name === 'string' && isWithheldField(d.name) && 'value' in d) {
        markValue(d, d.name);
        count++;
      } else count += withholdInObject(d.value);
    }
  } else if (isRecord(payload.result)) count += withholdInObject(payload.result);
  if (method === 'Runtime.consoleAPICalled' && Array.isArray(payload.args)) for (const arg of payload.args as unknown[]) count += withholdInObject(arg);
  if (isRecord(payload.exceptionDetails)) count += withholdInObject(payload.exceptionDetails.exception);
  return count;
}

/**
 * The facts themselves, read once per target process before its first client sees anything (processFactsRead), so
 * that a copy of them is withheld wherever it shows: a V8 evaluation can compute one without naming it
 * (`Object.values(process)`, `[process.pid]`, `` `${...}` ``), an app keeps copies (a logger's bindings, a worker's
 * parent id), and Node names its context after its pid (`/usr/bin/node[4321]`). Every message bound for the client is
 * checked against them once, as text (scrub); a message that shows one is rewritten with the marker in its place.
 *
 * What counts as showing a fact of 4 digits or more (as for learned values in policy/redact.ts); one of 3 digits (a
 * machine whose pids wrapped) is looked for the same ways but only as a whole number, not inside a longer one (else
 * it would be withheld from every line number and count that contains it); one of 1 or 2 digits (a container's pid
 * 1 or 7) is not looked for, being no fact about another machine's process:
 * - its decimal digits anywhere in a string, as String, toLocaleString, toFixed and toExponential write them: also
 *   grouped by thousands (or the Indian way) with any locale's separator (`4,321`, `4 321`, `43,21,987`), with a point
 *   after the first digit (`4.321e+3`), and in any script's digits (`toLocaleString('ar-EG')`);
 * - its hexadecimal spelling as a word of its own, any case, with or without `0x` and leading zeros (as a substring
 *   it would hit hashes and ids too often); one of letters alone only after `0x` or zeros, since it is also a word
 *   (`0xadd`, `0add`, not every "add"). Other radixes (2, 8, 36) are no more obvious than `pid * 2`, and each would
 *   cost another pass over every message;
 * - a number whose decimal form shows it (`4321`, `4321.5`, `14321`), where a value is (a RemoteObject's or a
 *   preview's value, anything returned by value), and an object key or property name that shows it.
 * Fields that are protocol identifiers (object, script and frame ids, hashes, urls) or the app's source text are
 * not values and are left alone. Arithmetic over a fact (`pid * 2`, one digit at a time) is not recognized: no
 * check of answers can be; V8 evaluation is a grant's privilege for that reason (see DESIGN.md).
 */
export type ProcessFactValues = Partial<Record<'pid' | 'ppid' | 'debugPort', number>>;

/**
 * The broker's own read of the facts, run once before the client sees anything. `ppid` and `debugPort` are native
 * data properties that V8's side-effect check refuses (they only read), so this runs without it; a field the app
 * redefined as an accessor is not read (no app function runs).
 */
export const processFactsRead = {
  expression:
    "(() => { const read = (name) => { const d = typeof process === 'object' && process !== null ? Object.getOwnPropertyDescriptor(process, name) : undefined; return d && 'value' in d && typeof d.value === 'number' ? d.value : null; }; return { pid: read('pid'), ppid: read('ppid'), debugPort: read('debugPort') }; })()",
  returnByValue: true,
  silent: true,
  disableBreaks: true,
  timeout: 200,
};

/** The facts in an answer to processFactsRead (a value the target gave: only plausible ones are kept). */
export function processFactsFrom(result: Record<string, unknown> | undefined): ProcessFactValues {
  const remote = isRecord(result) && isRecord(result.result) ? result.result : undefined;
  const value = remote && isRecord(remote.value) ? remote.value : {};
  const facts: ProcessFactValues = {};
  for (const field of ['pid', 'ppid', 'debugPort'] as const) {
    const n = value[field];
    if (typeof n === 'number' && Number.isSafeInteger(n) && n > 0 && n < 2 ** 32) facts[field] = n;
  }
  return facts;
}

/** What a client sees where a message showed a fact. */
export const scrubbedMarker = (field: string) => `[withheld by Loupe: ${withheldProcessFields[field] ?? field}, which a debugger could act on outside Loupe]`;

/** Smallest fact value checked for; below `anywhereFact` only as a whole number (not inside a longer one). */
const smallestFact = 100;
/** Facts from here on are looked for anywhere in a string: the learned-values rule of policy/redact.ts (4 digits). */
const anywhereFact = 1000;
/** A grouping separator of any locale (toLocaleString), or a point: a space of any width, `,`, `.`, `'`, `’`, `٬`, `٫`. */
const groupSeparator = "[,.'_\\s\\u066b\\u066c\\u2019]";

/** The decimal spellings of a value, as pattern sources: plain, grouped by thousands, grouped the Indian way, exponents. */
function decimalSpellings(value: number): string[] {
  const digits = String(value);
  const grouped = (size: (index: number) => number) => {
    const groups: string[] = [];
    for (let end = digits.length, index = 0; end > 0; end -= size(index++)) groups.unshift(digits.slice(Math.max(0, end - size(index)), end));
    // The last separator is what makes it grouped; the others may be left out (`4194,304` is found like `4,194,304`).
    return `${groups.slice(0, -1).join(`${groupSeparator}?`)}${groupSeparator}${groups.at(-1)}`;
  };
  // toExponential drops trailing zeros (`3.19e+4`): then its own spelling too.
  const exponent = digits.endsWith('0') ? [value.toExponential().replace(/[.+]/g, '\\$&')] : [];
  return [...new Set([digits, grouped(() => 3), grouped((index) => (index === 0 ? 3 : 2)), `${digits[0]}\\.${digits.slice(1)}`, ...exponent])];
}
/** Fields that are protocol identifiers or the app's source text, not values (outside a value returned by value). */
const notValues = new Set(['objectId', 'scriptId', 'callFrameId', 'breakpointId', 'hitBreakpoints', 'hash', 'url', 'sourceMapURL', 'uniqueId', 'debuggerId', 'scriptSource', 'lineContent', 'method']);
/** A decimal digit of a script other than ASCII's. */
const notAsciiDigit = /(?![0-9])\p{Nd}/u;
let nonAsciiDigitClass: RegExp | undefined;
/** A decimal digit outside ASCII, or a surrogate (digits beyond the BMP); built when facts are learned (10 ms). */
const nonAsciiDigits = () => (nonAsciiDigitClass ??= new RegExp(`[${nonAsciiDigitRanges()}\\ud800-\\udfff]`));
/** Text with a character outside Latin-1 (only such text can hold another script's digits). */
const twoByte = /[^\x00-\xff]/;
/** A JSON escape of a character outside ASCII (V8 escapes all of them in what it sends; its events go out as sent). */
const escapedNonAscii = /\\u(?!00[0-7])/;

/** The runs of decimal digits outside ASCII in the BMP, as a character class's ranges (built once). */
function nonAsciiDigitRanges(): string {
  const hex = (code: number) => `\\u${code.toString(16).padStart(4, '0')}`;
  const ranges: string[] = [];
  for (let code = 0x80; code < 0xd800; code++) {
    if (!notAsciiDigit.test(String.fromCharCode(code))) continue;
    const first = code;
    while (notAsciiDigit.test(String.fromCharCode(code + 1))) code++;
    ranges.push(`${hex(first)}-${hex(code)}`);
  }
  for (let code = 0xe000; code <= 0xffff; code++) {
    if (!notAsciiDigit.test(String.fromCharCode(code))) continue;
    const first = code;
    while (code < 0xffff && notAsciiDigit.test(String.fromCharCode(code + 1))) code++;
    ranges.push(`${hex(first)}-${hex(code)}`);
  }
  return ranges.join('');
}

/** The digit value of a decimal digit of any script (Unicode keeps each script's digits 0-9 in a run). */
function digitValue(digit: string): string {
  const code = digit.codePointAt(0)!;
  let zero = code;
  while (zero > 0 && notAsciiDigit.test(String.fromCodePoint(zero - 1))) zero--;
  return String((code - zero) % 10);
}

const asciiDigits = (text: string) => text.replace(/(?![0-9])\p{Nd}/gu, digitValue);

interface Fact {
  readonly field: string;
  readonly marker: string;
  readonly pattern: RegExp;
}

/** The learned facts, checked for in every message a client receives (see above). */
export class WithheldFacts {
  private readonly facts: Fact[] = [];
  /** Every spelling of every fact, as a substring, in one pattern: what a message is checked for first. */
  private readonly spellings: RegExp | undefined;
  /** How many values it has withheld. */
  withheld = 0;

  constructor(values: ProcessFactValues = {}) {
    const spellings: string[] = [];
    for (const [field, value] of Object.entries(values)) {
      if (value === undefined || value < smallestFact) continue;
      const spelled = decimalSpellings(value);
      const decimal = value < anywhereFact ? spelled.map((spelling) => `(?<![0-9])(?:${spelling})(?![0-9])`) : spelled;
      const hex = value.toString(16);
      // Letters alone (`add`) only after `0x` or zeros: they are a word too.
      // A 3-digit fact's hex (`2b5`, `100`) is a common word or number: only after `0x`.
      const hexWord = value < anywhereFact ? `(?<![0-9a-z])0x0*${hex}(?![0-9a-z])` : /[0-9]/.test(hex) ? `(?<![0-9a-z])(?:0x)?0*${hex}(?![0-9a-z])` : `(?<![0-9a-z])(?:0x0*|0+)${hex}(?![0-9a-z])`;
      this.facts.push({ field, marker: scrubbedMarker(field), pattern: new RegExp([...decimal, hexWord].join('|'), 'gi') });
      spellings.push(...decimal, hex);
    }
    if (spellings.length > 0) {
      this.spellings = new RegExp(spellings.join('|'), 'i');
      nonAsciiDigits();
    }
  }

  /**
   * Whether a message may show a fact: one pass of one pattern over its text, and another script's digits only in
   * text that can hold them (on the 2-core bench machine under load: 0.2 µs for an evaluation's answer, 17 µs for 100
   * properties, about a tenth of parsing and serializing the same answer). False for nearly every message.
   */
  private mayShow(text: string): boolean {
    if (!this.spellings) return false;
    return this.spellings.test(text) || (twoByte.test(text) && nonAsciiDigits().test(text)) || escapedNonAscii.test(text);
  }

  get active(): boolean {
    return this.spellings !== undefined;
  }

  /** A client-bound message (JSON text), with every value that shows a fact replaced by the marker; null: not to be sent. */
  scrub(text: string): string | null {
    if (!this.mayShow(text)) return text;
    let message: unknown;
    try {
      message = JSON.parse(text);
    } catch {
      // Every message the broker sends is JSON; one that is not is not sent with a fact in it.
      return this.scrubString(text) ?? text;
    }
    const before = this.withheld;
    try {
      const out = this.node(message, undefined, false);
      return this.withheld === before ? text : JSON.stringify(out);
    } catch {
      // Fail closed: a message that could not be checked is not sent; a request still gets its answer, as an error.
      const id = isRecord(message) && typeof message.id === 'number' ? message.id : undefined;
      return id === undefined ? null : JSON.stringify({ id, error: { code: -32000, message: "not answered: Loupe could not check the answer for the target's process facts" } });
    }
  }

  /** The string with the facts it shows replaced, or undefined if it shows none. */
  private scrubString(text: string): string | undefined {
    let out = notAsciiDigit.test(text) ? asciiDigits(text) : text;
    let hit = false;
    for (const fact of this.facts) {
      fact.pattern.lastIndex = 0;
      if (!fact.pattern.test(out)) continue;
      fact.pattern.lastIndex = 0;
      out = out.replace(fact.pattern, fact.marker);
      hit = true;
    }
    if (!hit) return undefined;
    this.withheld++;
    return out;
  }

  /**
   * Which fact a text shows (its field's words: "the target's process id"), by the spellings the messages are checked
   * for; undefined when none. The interpreter taints a value of the target that shows one, so a copy the app keeps
   * (`const mine = process.pid`) is not turned into other digits (`mine + 1`, its digits joined with dashes).
   */
  factIn(text: string): string | undefined {
    if (!this.spellings || !this.mayShow(text)) return undefined;
    const plain = notAsciiDigit.test(text) ? asciiDigits(text) : text;
    for (const fact of this.facts) {
      fact.pattern.lastIndex = 0;
      if (fact.pattern.test(plain)) return withheldProcessFields[fact.field] ?? fact.field;
    }
    return undefined;
  }

  private markerFor(text: string): string {
    for (const fact of this.facts) {
      fact.pattern.lastIndex = 0;
      if (fact.pattern.test(text)) return fact.marker;
    }
    return this.facts[0]!.marker;
  }

  /** One node of the message; `byValue`: inside a value returned by value, where everything is a value. */
  private node(value: unknown, key: string | undefined, byValue: boolean): unknown {
    if (typeof value === 'string') return !byValue && key !== undefined && notValues.has(key) ? value : (this.scrubString(value) ?? value);
    if (typeof value === 'number') {
      if (!byValue && key !== 'value') return value;
      const text = String(value);
      if (this.scrubString(text) === undefined) return value;
      return this.markerFor(text);
    }
    if (Array.isArray(value)) {
      for (let i = 0; i < value.length; i++) value[i] = this.node(value[i], key, byValue);
      return value;
    }
    if (!isRecord(value)) return value;
    const before = this.withheld;
    const keys = Object.keys(value);
    for (const name of keys) {
      const item = value[name];
      value[name] = this.node(item, name, byValue || (name === 'value' && typeof item === 'object' && item !== null));
    }
    // Keys are values too: `{[process.pid]: 1}`, an array's index.
    for (const name of keys) {
      const renamed = this.scrubString(name);
      if (renamed === undefined) continue;
      let unique = renamed;
      for (let n = 2; Object.hasOwn(value, unique); n++) unique = `${renamed} (${n})`;
      Object.defineProperty(value, unique, { value: value[name], enumerable: true, writable: true, configurable: true });
      delete value[name];
    }
    // A number (or bigint) shown as the marker is a string now.
    if (this.withheld !== before && (value.type === 'number' || value.type === 'bigint')) {
      const shown = [value.value, value.description, value.unserializableValue].find((v): v is string => typeof v === 'string' && v.includes('[withheld by Loupe: '));
      if (shown !== undefined) {
        const marker = this.facts.find((fact) => shown.includes(fact.marker))?.marker ?? this.facts[0]!.marker;
        value.type = 'string';
        delete value.unserializableValue;
        value.value = marker;
        if ('description' in value) value.description = marker;
      }
    }
    return value;
  }
}
