/**
 * What a policy redacts: sensitive names (compared without case or separators, and by words) and value patterns,
 * compiled once per policy; and the linear scan for `name: value` pairs. The per-session Redactor (redact.ts)
 * applies them.
 */

export interface RedactPattern {
  readonly name: string;
  readonly regex: RegExp;
}

export interface RedactionPolicy {
  /** Normalized sensitive names (lower case, no separators). */
  readonly names: ReadonlySet<string>;
  readonly patterns: readonly RedactPattern[];
  /** false: script sources are shown as they are (a policy's opt-out); otherwise their secret literals are redacted. */
  readonly source?: boolean;
  /**
   * false: the messages of exceptions outside an exception pause (console output, Runtime.exceptionThrown) are
   * shown, scrubbed like any text; otherwise they are withheld (see Redactor.exceptionText).
   */
  readonly exceptionMessages?: boolean;
}

export const defaultSensitiveNames: readonly string[] = [
  'password',
  'passwd',
  'passphrase',
  'pwd',
  'secret',
  'token',
  'authorization',
  'auth',
  'cookie',
  'set-cookie',
  'apiKey',
  'api_key',
  'accessKey',
  'privateKey',
  'clientSecret',
  'credentials',
  'credential',
  'ssn',
  'socialSecurityNumber',
  'creditCard',
  'cardNumber',
  'cvv',
  'cvc',
  'pin',
  'iban',
  'sessionId',
  'sid',
  'otp',
  'mfa',
  'signature',
  'salt',
  // The same words in other languages an app's names are written in.
  'passwort',
  'kennwort',
  'geheimnis',
  'contrasena',
  'secreto',
  'motdepasse',
  'senha',
  'segredo',
  'wachtwoord',
  'пароль',
  'секрет',
  '密码',
  'パスワード',
  '비밀번호',
];

export const defaultPatterns: readonly RedactPattern[] = [
  { name: 'bearer token', regex: /\b(?:Bearer|Basic)\s+[A-Za-z0-9\-._~+/]{8,}=*/gi },
  // The second alternative skips the rest of a dot-free run once its first `eyJ` failed: every later `eyJ` in
  // that run ends at the same dot with a shorter first segment, so it would fail too (retrying was quadratic).
  // What it matches is handed back unchanged (see scrub).
  { name: 'JWT', regex: /(\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*)|\beyJ[A-Za-z0-9_-]*/g },
  { name: 'private key', regex: /-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(?:-----END [A-Z ]*PRIVATE KEY-----|$)/g },
  { name: 'AWS access key', regex: /\b(?:AKIA|ASIA)[0-9A-Z]{16}\b/g },
  { name: 'card number', regex: /\b\d(?:[ -]?\d){12,18}\b/g },
  // A connection string's user info (`postgres://app:pw@db/orders`): only the password is replaced (see scrub).
  // Bounded runs: each start costs a few hundred steps at most, whatever follows.
  { name: 'password in a URL', regex: /\b([a-z][a-z0-9+.-]{0,30}:\/\/[^\s:/?#@"'<>]{0,64}:)[^\s/?#@"'<>]{1,128}@/gi },
];

export const jwtPattern = defaultPatterns.find((p) => p.name === 'JWT')!.regex;
export const urlPasswordPattern = defaultPatterns.find((p) => p.name === 'password in a URL')!.regex;
/** Accents taken apart and dropped: `contraseña` is `contrasena`. */
const withoutMarks = (name: string) => (/[^\x00-\x7f]/.test(name) ? name.normalize('NFKD').replace(/\p{M}/gu, '') : name);

/** Lower case without separators or accents: `API-Key`, `api_key` and `apiKey` are one name; letters of any script count. */
export const normalizeName = (name: string) =>
  withoutMarks(name)
    .toLowerCase()
    .replace(/[^\p{L}\p{N}]/gu, '');

/** The words of an identifier: `dbPassword` → db, password; `X-API-Key` → x, api, key. */
function words(name: string): string[] {
  return withoutMarks(name)
    .replace(/([a-z0-9])([A-Z])/g, '$1 $2')
    .replace(/([A-Z]+)([A-Z][a-z])/g, '$1 $2')
    .split(/[^\p{L}\p{N}]+/u)
    .filter(Boolean)
    .map((w) => w.toLowerCase());
}

export function compileRedaction(names: readonly string[], patterns: readonly RedactPattern[]): RedactionPolicy {
  return { names: new Set(names.map(normalizeName).filter(Boolean)), patterns };
}

export const defaultRedaction = compileRedaction(defaultSensitiveNames, defaultPatterns);

/**
 * Whether a name is sensitive: the whole name, or a run of its words, is on the list (plurals too), so
 * `dbPassword`, `x-api-key` and `refreshTokens` match while `className` does not match `ssn`.
 */
export function sensitiveName(policy: RedactionPolicy, name: string): boolean {
  if (policy.names.size === 0 || name.length > 200) return false;
  const whole = normalizeName(name);
  if (policy.names.has(whole) || (whole.endsWith('s') && policy.names.has(whole.slice(0, -1)))) return true;
  const parts = words(name);
  for (let i = 0; i < parts.length; i++) {
    let run = '';
    for (let j = i; j < parts.length; j++) {
      run += parts[j];
      if (policy.names.has(run) || (run.endsWith('s') && policy.names.has(run.slice(0, -1)))) return true;
    }
  }
  return false;
}

export const marker = (what: string) => `[redacted: ${what}]`;

/** The Luhn checksum of a card number's digits. */
export function luhn(digits: string): boolean {
  let sum = 0;
  for (let i = 0; i < digits.length; i++) {
    let d = digits.charCodeAt(digits.length - 1 - i) - 48;
    if (i % 2 === 1) d = d * 2 > 9 ? d * 2 - 9 : d * 2;
    sum += d;
  }
  return sum % 10 === 0;
}

// `"password":"x"`, `password=x`, `password: x`, `'password' => 'x'`: a sensitive name followed by its value.
// Tried only where it can start (see pairMatches); sticky, so each try is anchored.
const pairPattern = /(["']?)([A-Za-z_$][\w$.-]{0,60})\1(\s*(?:=>|[:=])\s*)("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|[^\s,;&}\]]+)/y;
// The same match without captures: where a pair whose key is not sensitive ends, found without allocating.
const pairExtent = /(?:"[A-Za-z_$][\w$.-]{0,60}"|'[A-Za-z_$][\w$.-]{0,60}'|[A-Za-z_$][\w$.-]{0,60})\s*(?:=>|[:=])\s*(?:"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|[^\s,;&}\]]+)/y;
const keyRun = /[\w$.-]+/g;
const keyStart = /[A-Za-z_$]/;

/**
 * The matches of pairPattern, left to right, as a global search would find them, in linear time. A key runs to
 * the end of its run of key characters (what follows a key, a quote, space, `:` or `=`, is none), so in each
 * run only two starts can match: a quote just before it, or the first key start at most 61 characters from
 * its end; a global RegExp tried every offset of the run, 61 characters each.
 */
export function pairMatches(text: string, sensitive: (name: string) => boolean): RegExpExecArray[] {
  const found: RegExpExecArray[] = [];
  let cursor = 0;
  keyRun.lastIndex = 0;
  for (let run = keyRun.exec(text); run !== null; run = keyRun.exec(text)) {
    const start = run.index;
    const end = start + run[0].length;
    const candidates: number[] = [];
    if (start - 1 >= cursor && (text[start - 1] === '"' || text[start - 1] === "'")) candidates.push(start - 1);
    for (let i = Math.max(start, end - 61); i < end; i++) {
      if (keyStart.test(text[i]!)) {
        candidates.push(i);
        break;
      }
    }
    for (const at of candidates) {
      // Only a pair whose key is sensitive is replaced; any other is only skipped, as a global search would.
      const key = text.slice(at === start - 1 ? start : at, end);
      if (sensitive(key.slice(key.lastIndexOf('.') + 1))) {
        pairPattern.lastIndex = at;
        const match = pairPattern.exec(text);
        if (!match) continue;
        found.push(match);
        cursor = pairPattern.lastIndex;
      } else {
        pairExtent.lastIndex = at;
        if (!pairExtent.test(text)) continue;
        cursor = pairExtent.lastIndex;
      }
      keyRun.lastIndex = cursor;
      break;
    }
  }
  return found;
}

const listIndex = /^(?:0|[1-9]\d*)$/;
const nameShaped = /^[\p{L}_$][\p{L}_$.-]{0,59}$/u;

/**
 * The sensitive name a list's element is the value of, when the element before it is that name (`['authorization',
 * v]`, a Map's entries as pairs, Node's flat `req.rawHeaders`); `textAt(i)` is element i when it is a string. Not when
 * the element is itself one of the names (`isListed`: a list of field names, `['password', 'token']`, holds no secret).
 */
export function pairedName(name: string, textAt: (index: number) => string | undefined, isSensitive: (name: string) => boolean, isListed: (text: string) => boolean): string | undefined {
  if (name === '0' || !listIndex.test(name)) return undefined;
  const index = Number(name);
  const before = textAt(index - 1);
  // A name as apps write them (letters and separators, no digits): a value that only holds a sensitive word
  // (`hunter2-SECRET`) names nothing, and the marker would show it.
  if (before === undefined || !nameShaped.test(before) || !isSensitive(before)) return undefined;
  const own = textAt(index);
  return own !== undefined && isListed(own) ? undefined : before;
}

/** Whether a text is, whole, one of the policy's names (`token`, `X-Api-Key`): a name, not a value that contains one. */
export function listedName(policy: RedactionPolicy, text: string): boolean {
  if (text.length > 200) return false;
  const whole = normalizeName(text);
  return policy.names.has(whole) || (whole.endsWith('s') && policy.names.has(whole.slice(0, -1)));
}
