import { z } from 'zod';
import { defaultDenyIdentifiers } from '../../gate/evaluationCheck';
import { parseHours } from '../../policy/hours';
import { compileRedaction, defaultPatterns, defaultSensitiveNames, normalizeName } from '../../policy/redact';
import { compileOwnerRegExp } from '../../policy/linearRegExp';
import { targetAlertsSchema } from './alerts';
import { bool, duration, int, kind, listProblem, mapping, oneOf, parsed, section, text, textList } from './fields';

export const modes = ['pause', 'snapshot'] as const;
export type Mode = (typeof modes)[number];

/** How a grant evaluates expressions: the broker's own interpreter (Loupe expressions) or V8 itself (privileged). */
export const evaluations = ['loupe', 'v8'] as const;
export type Evaluation = (typeof evaluations)[number];

const hoursSchema = () => parsed('hours like "Mon-Fri 08:00-19:00 Europe/Berlin"', parseHours);

export const approvalSchema = mapping(
  {
    approvers: kind(
      z.union(
        [
          z.string().min(1, { error: 'expected a role name (or a list of role names)' }),
          z.array(z.string({ error: listProblem }).min(1, { error: listProblem })).min(1, { error: 'expected a role name (or a list of role names)' }),
        ],
        {
          error: (iss) => (iss.input === undefined ? 'required: the role whose holders may approve' : 'expected a role name (or a list of role names)'),
        },
      ),
      'role name, or list of role names',
    )
      .transform((value) => (typeof value === 'string' ? [value] : value))
      .describe('The role (or roles) whose holders may approve; never the requester, even when they hold one.'),
    minApprovals: int(1, 10).prefault(1).describe('Approvals by distinct approvers needed.'),
    expiresAfter: duration().prefault('1h').describe('How long a request waits for its approvals, and an approved one for its collection.'),
  },
  'expected a mapping { approvers, minApprovals, expiresAfter }',
);

export type ApprovalRequirementInput = z.output<typeof approvalSchema>;

export const accessSchema = mapping({
  role: text().describe('The role this rule lets request grants.'),
  modes: z
    .array(oneOf(modes), { error: listProblem })
    .prefault(['snapshot'])
    .describe('What a grant under this rule may do: pause (breakpoints that stop the target) and/or snapshot (capture and resume).'),
  evaluation: z
    .array(oneOf(evaluations), { error: listProblem })
    .min(1, { error: 'expected at least one of loupe, v8' })
    .prefault(['loupe'])
    .describe(
      'How a grant under this rule may evaluate expressions: loupe (the broker interprets them; no app code runs) and/or v8 (privileged: V8 evaluates them, which runs app functions and getters; its redaction is best-effort, after the fact). A grant asks for one; every V8 evaluation raises the v8Evaluation alert.',
    ),
  maxDuration: duration().prefault('30m').describe('The longest grant this rule gives, like "30m" or "2h".'),
  requireTicket: parsed('regular expression', (source) => compileOwnerRegExp(source))
    .optional()
    .describe(
      "A regular expression the request's ticket must match; without it no ticket is needed. It runs in linear time whatever the ticket: lookaround, backreferences and counted repeats over 16 are refused.",
    ),
  hours: hoursSchema().optional().describe('When the rule applies (wall-clock hours in a time zone), like "Mon-Fri 08:00-19:00 Europe/Berlin"; outside them it does not allow.'),
  requireApproval: approvalSchema.optional().describe('The two-person rule: a grant under this rule waits for approvals before its requester can collect it.'),
});

const snapshotSchema = mapping({
  frames: int(1, 200).prefault(20).describe('Call frames captured.'),
  expandFrames: int(0, 50)
    .prefault(1)
    .describe(
      'Frames whose scopes are expanded; the others are listed (function, place). By default the top frame only: the target waits while V8 answers one read per scope, so each frame more lengthens every hit (5 frames hold it about twice as long as a bare pause, even for a client with no broker between).',
    ),
  expandInternalFrames: bool()
    .prefault(false)
    .describe(
      "Whether frames of Node's own code (node:internal/..., node:events) among them are expanded too; off, they are listed (function, place) without their scopes, which keeps the pause short.",
    ),
  closures: bool()
    .prefault(false)
    .describe(
      "Whether the top frame's closure scopes (what it uses from enclosing functions and its module) are read too. Each is one read more while the target waits, about as long as the locals' own (a bare pause held about 1.6 times as long with the locals, twice as long with the module's closure too); off, the capture lists them as not read.",
    ),
  depth: int(0, 10)
    .prefault(0)
    .describe(
      "How many levels of objects are read below each expanded scope. At 0 only the scopes are read, in one round trip, with the resume sent right behind the reads; the objects in them come from V8's preview (up to 5 fields or 100 items, a nested object by its description, a string of 100 characters or more left out) and say so. Each level more reads the objects one level deeper whose preview does not hold them whole, and adds a round trip of pause per hit; beyond the last level, objects again come from their previews.",
    ),
  collectionItems: int(1, 10000).prefault(100).describe('Items taken from one array, map or set.'),
  fieldsPerObject: int(1, 1000).prefault(20).describe('Properties taken from one object.'),
  stringLength: int(8, 1 << 20)
    .prefault(255)
    .describe('Characters kept of one string.'),
  timeBudgetMs: int(1, 1000).prefault(10).describe('How long one capture may keep the target paused.'),
  maxBytes: int(1024, 16 << 20)
    .prefault(64 * 1024)
    .describe('The largest capture.'),
  minIntervalMs: int(0, 3600_000).prefault(1000).describe('At most one capture per breakpoint in this many ms; hits in between are resumed at once and counted.'),
  maxCapturesPerBreakpoint: int(1, 100000).prefault(100).describe('Captures one breakpoint may take in a session.'),
  maxCapturesPerMinute: int(1, 100000).prefault(60).describe('Captures per minute in a session.'),
}).describe('What a snapshot capture may take from the target, and how often.');

export type SnapshotLimits = Readonly<z.output<typeof snapshotSchema>>;

const identifierPath = /^[A-Za-z_$][\w$]*(\.[A-Za-z_$][\w$]*)*$/;

const evaluationSchema = mapping({
  allow: bool().prefault(true).describe('Whether evaluations (the console, watches, hovers, conditions, logpoints) are allowed at all.'),
  denyIdentifiers: textList()
    .superRefine((list, ctx) => {
      list.forEach((entry, i) => {
        if (!identifierPath.test(entry)) ctx.issues.push({ code: 'custom', message: `expected an identifier or a dotted path like "process.env", got "${entry}"`, input: entry, path: [i] });
      });
    })
    .prefault([...defaultDenyIdentifiers])
    .describe('Identifiers and dotted paths an evaluation may not reach.'),
  maxResultBytes: int(256, 16 << 20)
    .prefault(64 * 1024)
    .describe('The largest evaluation result sent to the client.'),
}).describe('What evaluations may do here: allowed at all, identifiers denied, result size.');

const patternSchema = mapping(
  {
    name: text().describe('Shown in the marker that replaces a match: [redacted: <name>].'),
    regex: parsed('regular expression', (source) => {
      const regex = compileOwnerRegExp(source, 'g');
      if (regex.test('')) throw new Error('matches the empty string, which would redact everything');
      regex.lastIndex = 0;
      return regex;
    }).describe(
      'A regular expression for values to redact. It runs on text from production in linear time: lookaround, backreferences and counted repeats over 16 are refused (write \\d{20} as \\d{16}\\d{4}).',
    ),
  },
  'expected a mapping { name, regex }',
);

const redactSchema = mapping({
  names: textList()
    .superRefine((list, ctx) => {
      list.forEach((name, i) => {
        if (normalizeName(name) === '') ctx.issues.push({ code: 'custom', message: `"${name}" has no letters or digits`, input: name, path: [i] });
      });
    })
    .prefault([])
    .describe('Property and variable names whose values are redacted (case- and separator-insensitive).'),
  patterns: z.array(patternSchema, { error: 'expected a list of { name, regex }' }).prefault([]).describe('Value patterns redacted wherever they appear.'),
  defaults: bool().prefault(true).describe('Whether the built-in names and patterns (passwords, tokens, card numbers, ...) apply too.'),
  source: bool().prefault(true).describe('Whether script sources (Debugger.getScriptSource, searches) have their secret literals redacted; false shows sources as they are.'),
  exceptionMessages: bool()
    .prefault(true)
    .describe(
      'Whether exception messages outside an exception pause (console output, Runtime.exceptionThrown, Log.entryAdded, an error object read anywhere) are withheld; false shows them scrubbed of names, patterns and learned values.',
    ),
})
  .describe('Names and value patterns redacted in everything that leaves the broker and everything recorded.')
  .transform(({ names, patterns, defaults, source, exceptionMessages }) => ({
    ...compileRedaction([...(defaults ? defaultSensitiveNames : []), ...names], [...(defaults ? defaultPatterns : []), ...patterns]),
    ...(source ? {} : { source: false }),
    ...(exceptionMessages ? {} : { exceptionMessages: false }),
  }));

const inspectorPattern = /^wss?:\/\/[^\s]+$|^[A-Za-z0-9.-]+:\d{1,5}$|^\[[0-9A-Fa-f:]+\]:\d{1,5}$/;

export const targetSchema = mapping({
  inspector: text().regex(inspectorPattern, { error: 'expected "host:port" or a ws:// URL' }).describe('`host:port` of the inspector (resolved through /json/list) or a full ws:// URL.'),
  owners: textList().prefault([]).describe('Roles that own the target: they approve requests under the two-person rule and see its alerts.'),
  access: z.array(accessSchema, { error: 'expected a list of rules' }).prefault([]).describe('Who may request grants on this target, for what and how long.'),
  maxPauseSeconds: int(1, 3600).prefault(30).describe('The longest the target may stay paused; the broker resumes it after that.'),
  retentionDays: int(1, 36500).optional().describe("How long this target's session records are kept (S3 Object Lock retain-until); default audit.retentionDays."),
  alerts: targetAlertsSchema,
  snapshot: section(snapshotSchema),
  evaluation: section(evaluationSchema),
  redact: section(redactSchema),
});

export const targetNamePattern = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

export const targetsSchema = z
  .record(z.string().regex(targetNamePattern), targetSchema, {
    error: (iss) =>
      iss.code === 'invalid_key'
        ? 'target names use letters, digits, ".", "_" and "-" (at most 63)'
        : iss.input === undefined || iss.input === null
          ? 'at least one target is required'
          : 'expected a mapping',
  })
  .refine((targets) => Object.keys(targets).length > 0, { error: 'at least one target is required' })
  .meta({ minProperties: 1 })
  .describe('The services that can be debugged, by name.');
