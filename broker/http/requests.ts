import { z } from 'zod';
import { evaluations, modes } from '../config/types';
import { LoupeError } from '../errors';

/**
 * The JSON bodies the HTTP API accepts, as schemas: each parser refuses with `bad_request` saying what is wrong with
 * which field, and unknown fields are refused rather than ignored (a client that sends `approvedBy` learns it has
 * no such power).
 */

const maxReasonLength = 2000;
const maxCommentLength = 2000;

const ticketProblem = 'expected a string (a ticket link or id)';

/**
 * Text the broker keeps (in files or PostgreSQL, in the audit trail) must be storable everywhere: PostgreSQL refuses a
 * NUL character and an unpaired surrogate in text and JSON, which made a grant request answer 503 "retry later" as if
 * the database were down.
 */
const unstorable = /\u0000|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
const storableText = { error: 'contains a NUL character or an unpaired UTF-16 surrogate, which cannot be stored; remove it' };
const reasonRequired = 'required, say why you need to debug production';

/**
 * Control characters (line breaks and tabs included), line separators, bidirectional overrides and marks, and
 * invisible characters (zero-width space, soft hyphen, byte order mark, word joiner and the invisible operators):
 * in these one-line fields they only serve to forge lines, rewrite an auditor's terminal, reorder what a reader sees
 * or hide text in it. The zero-width joiners stay: Persian, Indic scripts and emoji need them.
 */
const unprintable = /[\p{Cc}\u2028\u2029\u202A-\u202E\u2066-\u2069\u200B\u200E\u200F\u061C\u00AD\uFEFF\u2060-\u2064\u180E]/u;
const printableProblem =
  'contains control characters (line breaks, tabs, escapes), bidirectional overrides or marks, or invisible characters (zero-width space, soft hyphen, byte order mark); write it on one line of plain text';
const printable = (text: string) => !unprintable.test(text);
/** A decision's comment may run over several lines. */
const printableText = (text: string) => printable(text.replace(/\r?\n/g, ' '));

export const grantRequestSchema = z.strictObject({
  target: z
    .string({ error: 'expected a target name' })
    .min(1, { error: 'expected a target name' })
    .max(200, { error: 'expected a target name (at most 200 characters)' })
    .refine(printable, { error: printableProblem }),
  mode: z.enum(modes, { error: `expected one of ${modes.join(', ')}` }),
  evaluation: z.enum(evaluations, { error: `expected one of ${evaluations.join(', ')} (v8 is the privilege of running expressions in V8)` }).optional(),
  durationSeconds: z.int({ error: 'expected a positive integer' }).min(1, { error: 'expected a positive integer' }),
  reason: z
    .string({
      error: (issue) =>
        issue.input === undefined || issue.input === null ? reasonRequired : `expected a string (${reasonRequired.slice(10)}), not ${Array.isArray(issue.input) ? 'an array' : typeof issue.input}`,
    })
    .refine((reason) => reason.trim() !== '', { error: reasonRequired, abort: true })
    .refine((reason) => reason.length <= maxReasonLength, { error: `at most ${maxReasonLength} characters`, abort: true })
    .refine((reason) => printable(reason.trim()), { error: printableProblem })
    .refine((reason) => !unstorable.test(reason), storableText)
    .transform((reason) => reason.trim()),
  ticket: z
    .string({ error: ticketProblem })
    .max(500, { error: ticketProblem })
    .refine(printable, { error: printableProblem })
    .refine((ticket) => !unstorable.test(ticket), storableText)
    .optional(),
});

export type GrantRequestBody = Omit<z.output<typeof grantRequestSchema>, 'ticket' | 'evaluation'> & { ticket?: string; evaluation?: 'v8' };

/** What is wrong with a body, field by field; unknown fields first, in one line. */
function problemsOf(issues: readonly z.core.$ZodIssue[], expected?: string): string[] {
  const unknown = issues.flatMap((issue) => (issue.code === 'unrecognized_keys' ? issue.keys : []));
  return [
    ...(unknown.length > 0 ? [`unknown field(s): ${unknown.join(', ')}${expected ? ` (expected ${expected})` : ''}`] : []),
    ...issues.filter((issue) => issue.code !== 'unrecognized_keys').map((issue) => `${issue.path.map(String).join('.')}: ${issue.message}`),
  ];
}

const isObject = (body: unknown): body is Record<string, unknown> => typeof body === 'object' && body !== null && !Array.isArray(body);

/** POST /v1/grants: every problem of a bad request together. */
export function parseGrantRequest(body: unknown): GrantRequestBody {
  if (!isObject(body)) throw new LoupeError('bad_request', 'expected a JSON object {target, mode, durationSeconds, reason, ticket?, evaluation?}');
  const parsed = grantRequestSchema.safeParse(body);
  if (!parsed.success) {
    const problems = problemsOf(parsed.error.issues);
    throw new LoupeError('bad_request', `invalid grant request: ${problems.join('; ')}`, { problems });
  }
  // Loupe expressions are the default and leave no trace in the request; only the privilege is named.
  const { ticket, evaluation, ...request } = parsed.data;
  return { ...request, ...(ticket ? { ticket } : {}), ...(evaluation === 'v8' ? { evaluation } : {}) };
}

const comment = z
  .string({ error: 'expected a string' })
  .transform((text) => text.trim())
  .pipe(
    z
      .string()
      .max(maxCommentLength, { error: `at most ${maxCommentLength} characters` })
      .refine(printableText, { error: 'contains control characters (other than line breaks) or bidirectional overrides; write plain text' })
      .refine((text) => !unstorable.test(text), storableText),
  );

/** POST /v1/requests/:id/approve (a comment is optional) and /deny (the requester is owed a reason). */
export const decisionSchemas = {
  approve: z.strictObject({ comment: comment.optional() }),
  deny: z.strictObject({ comment: comment.optional() }).superRefine((body, ctx) => {
    if (!body.comment) ctx.issues.push({ code: 'custom', path: ['comment'], message: 'required when denying, say why (the requester sees it)', input: body.comment });
  }),
};

/** The decision's comment, trimmed; an empty body is no comment. One problem at a time, the first found. */
export function parseDecisionComment(body: unknown, decision: keyof typeof decisionSchemas): string | undefined {
  const object = body === undefined ? {} : body;
  if (!isObject(object)) throw new LoupeError('bad_request', 'expected a JSON object {comment}');
  const parsed = decisionSchemas[decision].safeParse(object);
  if (!parsed.success) throw new LoupeError('bad_request', problemsOf(parsed.error.issues, '{comment}')[0]!);
  return parsed.data.comment || undefined;
}
