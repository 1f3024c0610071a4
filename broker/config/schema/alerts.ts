import picomatch from 'picomatch';
import { z } from 'zod';
import { parseHours } from '../../policy/hours';
import { kind, mapping, oneOf, parsed, positiveInt, textList, unknownRule } from './fields';

/** `require-approval`: the user's grant requests on the target wait for an owner's approval until one is collected. */
export const alertActions = ['none', 'end-session', 'require-approval'] as const;
export type AlertAction = (typeof alertActions)[number];

const action = () =>
  oneOf(alertActions).optional().describe("What happens when the rule fires, besides the alert: none, end-session, or require-approval (the user's next grants on the target wait for an owner).");

const bytesPattern = /^(\d+)\s*(B|KB|KiB|MB|MiB|GB|GiB)?$/i;

function parseBytes(value: number | string): number {
  if (typeof value === 'number') return value;
  const match = bytesPattern.exec(value.trim())!;
  const unit = (match[2] ?? 'B').toLowerCase();
  const factor = unit.startsWith('g') ? 1 << 30 : unit.startsWith('m') ? 1 << 20 : unit.startsWith('k') ? 1024 : 1;
  return Number(match[1]) * factor;
}

function bytes() {
  const error = 'expected a size like "5MB" or a number of bytes';
  return kind(z.union([z.int({ error }).min(1, { error }), z.string({ error }).regex(bytesPattern, { error })], { error }), 'size ("5MB") or a number of bytes').transform(parseBytes);
}

function globs() {
  return textList().superRefine((list, ctx) => {
    for (const [i, glob] of list.entries()) {
      try {
        picomatch(glob);
      } catch (err) {
        ctx.issues.push({ code: 'custom', message: `invalid glob: ${(err as Error).message}`, input: glob, path: [i] });
      }
    }
  });
}

/** A rule's thresholds; any left out come from `alerting.rules` (or the built-in defaults). */
const rule = <Shape extends z.ZodRawShape>(shape: Shape, description: string) => mapping({ ...shape, action: action() }).describe(description);

export const ruleSchemas = {
  offHours: rule(
    {
      hours: parsed('hours like "Mon-Fri 08:00-19:00 Europe/Berlin"', parseHours, 'expected hours like "Mon-Fri 08:00-19:00 Europe/Berlin"')
        .optional()
        .describe('The working hours, like "Mon-Fri 08:00-19:00 Europe/Berlin"; activity outside them fires.'),
    },
    'Activity outside working hours.',
  ),
  evaluationRate: rule({ perMinute: positiveInt().optional().describe('Evaluations per minute in one session above which the rule fires.') }, 'Many evaluations in a short time.'),
  readRate: rule({ perMinute: positiveInt().optional().describe('Object reads per minute in one session above which the rule fires.') }, 'Many object reads in a short time.'),
  capturedBytes: rule(
    { perSession: bytes().optional().describe('Bytes one session may take from the target before the rule fires: "5MB" or a number of bytes.') },
    'Much data taken from the target in one session.',
  ),
  refusals: rule(
    {
      count: positiveInt().optional().describe('Refused messages that fire the rule.'),
      withinSeconds: positiveInt().optional().describe('The window the refusals are counted in.'),
    },
    'Several refused messages in a short time.',
  ),
  sensitiveReads: rule({ names: textList().optional().describe('Names whose reads fire the rule (case- and separator-insensitive).') }, 'Reads of sensitive-looking names.'),
  firstAttach: rule(
    { days: positiveInt().optional().describe('A user who has not attached to the target for this many days fires the rule.') },
    'A user attaching to a target for the first time (in a while).',
  ),
  longPause: rule({ seconds: positiveInt().optional().describe('A pause longer than this fires the rule.') }, 'A long pause of the target.'),
  watchdogResume: rule({}, 'The broker resumed a target paused past its limit.'),
  sensitiveFiles: rule({ globs: globs().optional().describe('Source files (globs) where a breakpoint fires the rule.') }, 'Breakpoints in sensitive source files.'),
  concurrentTargets: rule({ max: positiveInt().optional().describe('Sessions on more targets at once than this fire the rule.') }, 'One user on many targets at once.'),
  failedAttaches: rule(
    {
      count: positiveInt().optional().describe('Refused attaches that fire the rule.'),
      withinSeconds: positiveInt().optional().describe('The window the refusals are counted in.'),
    },
    "Broker-wide (alerting.rules only): refused attaches from one source address, or on one user's grants.",
  ),
  targetUnresponsive: rule({}, 'A session ended because its target stopped answering its inspector (limits.targetResponseSeconds).'),
  v8Evaluation: rule({}, 'A grant with V8 evaluation issued, and every evaluation in its sessions (app code may run; redaction is best-effort): user, target, grant and expression.'),
};

export type RuleName = keyof typeof ruleSchemas;

/** Each rule with its thresholds, merged over the defaults; a rule set to `false` in the policy is off. */
export type AlertRules = { readonly [K in RuleName]?: Readonly<Required<z.output<(typeof ruleSchemas)[K]>>> };

/** Rules over the broker's security stream rather than a session: only in `alerting.rules`. */
export const brokerWideRules: readonly RuleName[] = ['failedAttaches'];

const ruleOrOff = <S extends z.ZodType>(schema: S) =>
  z
    .union([z.literal(false), schema], { error: 'expected a mapping, or false to turn the rule off' })
    .optional()
    .describe(schema.description ?? '');

type RuleOrOff<K extends RuleName> = z.ZodOptional<z.ZodUnion<readonly [z.ZodLiteral<false>, (typeof ruleSchemas)[K]]>>;
const allRules = Object.fromEntries(Object.entries(ruleSchemas).map(([name, schema]) => [name, ruleOrOff(schema)])) as unknown as { [K in RuleName]: RuleOrOff<K> };

/** `alerting.rules`: the defaults every target's rules start from. */
export const alertRulesSchema = mapping(allRules, 'expected a mapping of alert rules', unknownRule)
  .optional()
  .describe("The alert rules every target starts from; a target's own `alerts` tighten, loosen or switch them off.");

const perTarget = Object.keys(ruleSchemas).filter((name) => !brokerWideRules.includes(name as RuleName));

/** A target's `alerts`: the broker-wide rules are refused with a pointer to where they go. */
export const targetAlertsSchema = mapping({ ...allRules, failedAttaches: z.never({ error: 'a broker-wide rule: set it under alerting.rules' }).optional() }, 'expected a mapping of alert rules', () =>
  unknownRule(perTarget),
)
  .optional()
  .describe("The alert rules watching this target's sessions, over `alerting.rules`; set a rule to false to switch it off here.");

const webhookSchema = mapping(
  {
    url: z
      .string({ error: 'expected an http(s) URL' })
      .regex(/^https?:\/\/\S+$/, { error: 'expected an http(s) URL' })
      .describe('Where alerts are POSTed.'),
    secret: z
      .string({ error: 'expected a string of at least 16 characters (used for the HMAC signature)' })
      .min(16, { error: 'expected a string of at least 16 characters (used for the HMAC signature)' })
      .optional()
      .describe('Signs each delivery (HMAC-SHA256); at least 16 characters.'),
    format: oneOf(['json', 'slack'], 'expected json or slack').prefault('json').describe('json (the alert as it is) or slack (an incoming-webhook message).'),
    maxAttempts: kind(
      z.int({ error: 'expected an integer from 1 to 20' }).min(1, { error: 'expected an integer from 1 to 20' }).max(20, { error: 'expected an integer from 1 to 20' }),
      'integer 1..20',
    )
      .prefault(5)
      .describe('Delivery attempts before an alert goes to the dead-letter file.'),
  },
  'expected a mapping { url, secret, format, maxAttempts }',
);

export type WebhookConfig = Readonly<z.output<typeof webhookSchema>>;

export const alertingSchema = mapping({
  rules: alertRulesSchema,
  webhooks: z.array(webhookSchema, { error: 'expected a list' }).prefault([]).describe('Webhooks every alert is delivered to.'),
  deadLetterFile: z.string({ error: 'expected a file path' }).optional().describe('Alerts no webhook took, one JSON line each (default: <stateDir>/alerts-dead-letter.ndjson).'),
  ecs: z
    .string({ error: 'expected "stdout" or a file path' })
    .min(1, { error: 'expected "stdout" or a file path' })
    .optional()
    .describe('Every audit event as an Elastic Common Schema JSON line: "stdout" or a file path.'),
}).describe('Where alerts go and the rules every target starts from.');
