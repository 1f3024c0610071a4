/**
 * How an attempt is judged. A leak is any occurrence of a secret, in any of several encodings, in what the
 * client, the audit trail or an alert received, or any observable that differs between a right and a wrong
 * guess (an answer, a refusal, a pause, a notice).
 */
import type { CdpMessage } from '../../support/cdpClient';

export type Outcome = 'refused' | 'redacted' | 'clean' | 'leak';

export interface Verdict {
  readonly outcome: Outcome;
  /** For a leak: what was seen where; for the others a short reason. */
  readonly evidence?: string;
}

export interface Needle {
  readonly label: string;
  readonly encoding: string;
  readonly text: string;
  /** Short needles only count standing alone, so ids and digests cannot match by chance. */
  readonly bounded: boolean;
}

const escapeRegex = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** Every form of every secret searched for: plain, JSON-escaped, reversed, upper case, base64, hex, char codes, slices. */
export function needlesFor(secrets: ReadonlyMap<string, string>): Needle[] {
  const out: Needle[] = [];
  for (const [label, secret] of secrets) {
    const bounded = secret.length < 8;
    const forms: [string, string][] = [
      ['plain', secret],
      ['json-escaped', JSON.stringify(JSON.stringify(secret)).slice(3, -3)],
      ['reversed', [...secret].reverse().join('')],
      ['upper', secret.toUpperCase()],
      ['base64', Buffer.from(secret).toString('base64').replace(/=+$/, '')],
      ['base64url', Buffer.from(secret).toString('base64url')],
      ['hex', Buffer.from(secret).toString('hex')],
      ['unicode-escaped', [...secret].map((c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`).join('')],
      ['char codes', [...secret].map((c) => c.charCodeAt(0)).join(',')],
      ['char codes spaced', [...secret].map((c) => c.charCodeAt(0)).join(', ')],
    ];
    // Any six characters of a secret's random part: a slice of it is a leak too (no request carries more than three).
    const random = /^S3cr3t-[a-z]+-([A-Za-z0-9]{10,})$/.exec(secret)?.[1];
    if (random) for (let i = 0; i + 6 <= random.length; i++) forms.push([`substring ${i}`, random.slice(i, i + 6)]);
    const seen = new Set<string>();
    for (const [encoding, text] of forms) {
      if (seen.has(text)) continue;
      seen.add(text);
      out.push({ label, encoding, text, bounded: bounded && !/[^A-Za-z0-9]/.test(text) && text.length < 12 });
    }
  }
  return out;
}

export interface Finding {
  readonly label: string;
  readonly encoding: string;
  readonly context: string;
}

/** The ids the broker makes (sessions, grants, captures, requests): a short secret (the PIN) turns up in them by chance. */
const brokerIds = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/gi;

/** The secrets found in `text`: per secret its first matching form (plain before encodings before slices), with context. */
export function findSecrets(input: string, needles: readonly Needle[]): Finding[] {
  // No secret of the fixture is shaped like one of these ids (secrets.ts), so taking them out hides no leak.
  const text = input.replace(brokerIds, '<id>');
  const found: Finding[] = [];
  for (const needle of needles) {
    if (found.some((f) => f.label === needle.label)) continue;
    let at = -1;
    if (needle.bounded) {
      const match = new RegExp(`(?<![A-Za-z0-9.])${escapeRegex(needle.text)}(?![A-Za-z0-9])`).exec(text);
      at = match ? match.index : -1;
    } else at = text.indexOf(needle.text);
    if (at >= 0) found.push({ label: needle.label, encoding: needle.encoding, context: text.slice(Math.max(0, at - 80), at + needle.text.length + 40) });
  }
  return found;
}

// Fields that are ids, sequence numbers, digests, sizes or times: never data from the target, and where short
// numbers (the PIN) turn up by chance.
const noise = /^(id|seq|sequence|prev|hash|time|timestamp|ms|bytes|count|sig|signature|lineNumber|columnNumber)$|(Id|Seq|Size|At|Ms|Hash)$/;

/** A frame's JSON without ids and times, for searching and comparing. */
export function withoutNoise(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(withoutNoise);
  if (value && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) if (!noise.test(k)) out[k] = withoutNoise(v);
    return out;
  }
  return value;
}

export const markerPattern = /\[redacted: /;

export const isRefusal = (reply: CdpMessage) => reply.error !== undefined;

/** The primitive an evaluation answered, if any: its value, else a primitive's description. */
export function answered(reply: CdpMessage): unknown {
  const r = reply.result?.result;
  if (!r || reply.result?.exceptionDetails) return undefined;
  if ('value' in r) return r.value;
  if (r.type === 'number' || r.type === 'boolean' || r.type === 'bigint') return r.description;
  return undefined;
}

const equalTruth = (value: unknown, truth: unknown) =>
  value !== undefined && (value === truth || (typeof truth !== 'string' && String(value) === String(truth)) || (typeof truth === 'object' && JSON.stringify(value) === JSON.stringify(truth)));

export interface Observation {
  /** The replies and events one expression or probe produced, as text, already expanded (object reads). */
  readonly text: string;
  /** What comparing two guesses looks at: the same text with ids removed and the guess itself replaced. */
  readonly comparable: string;
  readonly refused: boolean;
  readonly value?: unknown;
  /** The value this probe would compute from the secret if it ran as written. */
  readonly truth?: unknown;
  /** Whether `truth` alone reveals something (booleans need a pair to tell). */
  readonly truthTells?: boolean;
}

/** One attempt: one observation, or a right and a wrong guess. */
export function judge(observations: readonly Observation[], needles: readonly Needle[]): Verdict {
  const evidence: string[] = [];
  for (const o of observations) {
    for (const f of findSecrets(o.text, needles)) evidence.push(`${f.label} (${f.encoding}) in: …${f.context}…`);
    if (o.truthTells && o.truth !== undefined && equalTruth(o.value, o.truth)) evidence.push(`answered ${JSON.stringify(o.value)}, what the secret gives (${JSON.stringify(o.truth)})`);
  }
  if (observations.length > 1 && new Set(observations.map((o) => o.comparable)).size > 1) {
    evidence.push(`differs by guess: ${observations.map((o) => o.comparable.slice(0, 300)).join('  ≠  ')}`);
  }
  if (evidence.length > 0) return { outcome: 'leak', evidence: evidence.join('\n      ') };
  if (observations.every((o) => o.refused)) return { outcome: 'refused', evidence: observations[0]!.text.slice(0, 200) };
  if (observations.some((o) => markerPattern.test(o.text))) return { outcome: 'redacted' };
  return { outcome: 'clean', evidence: observations[0]!.text.slice(0, 200) };
}

/** A comparable form of replies: ids gone, the expression echoed and the guess replaced by placeholders. */
export function comparableText(values: readonly unknown[], replace: readonly string[]): string {
  let text = JSON.stringify(values.map(withoutNoise));
  // The expression and the guess as written, as JSON escapes them, and the guess without its quotes (only when
  // long enough not to stand for other text: a one-character guess replaced bare would change unrelated words).
  const forms = replace.filter(Boolean).flatMap((r) => {
    const bare = r.replace(/^['"`/]\^?|['"`/]$/g, '');
    return [r, JSON.stringify(r).slice(1, -1), JSON.stringify(JSON.stringify(r).slice(1, -1)).slice(1, -1), ...(bare.length >= 3 && bare !== r ? [bare] : [])];
  });
  for (const r of [...new Set(forms)].sort((a, b) => b.length - a.length)) text = text.split(r).join('<G>');
  return text;
}
