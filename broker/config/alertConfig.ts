import { parseHours, type Hours } from '../policy/hours';
import picomatch from 'picomatch';

/** `require-approval`: the user's grant requests on the target wait for an owner's approval until one is collected. */
export type AlertAction = 'none' | 'end-session' | 'require-approval';
export const alertActions: readonly AlertAction[] = ['none', 'end-session', 'require-approval'];

/** Each rule with its thresholds; a rule set to `false` in the policy is off. */
export interface AlertRules {
  readonly offHours?: { readonly hours: Hours; readonly action: AlertAction };
  readonly evaluationRate?: { readonly perMinute: number; readonly action: AlertAction };
  readonly readRate?: { readonly perMinute: number; readonly action: AlertAction };
  readonly capturedBytes?: { readonly perSession: number; readonly action: AlertAction };
  readonly refusals?: { readonly count: number; readonly withinSeconds: number; readonly action: AlertAction };
  readonly sensitiveReads?: { readonly names: readonly string[]; readonly action: AlertAction };
  readonly firstAttach?: { readonly days: number; readonly action: AlertAction };
  readonly longPause?: { readonly seconds: number; readonly action: AlertAction };
  readonly watchdogResume?: { readonly action: AlertAction };
  readonly sensitiveFiles?: { readonly globs: readonly string[]; readonly action: AlertAction };
  readonly concurrentTargets?: { readonly max: number; readonly action: AlertAction };
  /** Broker-wide (read from `alerting.rules` only): refused attaches from one source address, or on one user's grants. */
  readonly failedAttaches?: { readonly count: number; readonly withinSeconds: number; readonly action: AlertAction };
  /** A session ended because its target stopped answering its inspector (limits.targetResponseSeconds). */
  readonly targetUnresponsive?: { readonly action: AlertAction };
}

/** Names whose reads are worth an alert, compared case- and separator-insensitively. */
export const defaultSensitiveNames = ['password', 'passwd', 'secret', 'token', 'authorization', 'cookie', 'apiKey', 'privateKey', 'ssn', 'creditCard', 'cardNumber', 'cvv'];

export const defaultAlertRules: AlertRules = {
  evaluationRate: { perMinute: 60, action: 'none' },
  readRate: { perMinute: 300, action: 'none' },
  capturedBytes: { perSession: 5 * 1024 * 1024, action: 'none' },
  refusals: { count: 5, withinSeconds: 60, action: 'none' },
  sensitiveReads: { names: defaultSensitiveNames, action: 'none' },
  firstAttach: { days: 30, action: 'none' },
  longPause: { seconds: 20, action: 'none' },
  watchdogResume: { action: 'none' },
  concurrentTargets: { max: 3, action: 'none' },
  failedAttaches: { count: 10, withinSeconds: 60, action: 'none' },
  targetUnresponsive: { action: 'none' },
};

/** Rules over the broker's security stream rather than a session: only in `alerting.rules`. */
const brokerWideRules: readonly string[] = ['failedAttaches'];

type Add = (path: string, message: string) => void;
type Raw = Record<string, unknown>;

const ruleFields: Record<keyof AlertRules, Record<string, 'int' | 'hours' | 'names' | 'globs' | 'bytes'>> = {
  offHours: { hours: 'hours' },
  evaluationRate: { perMinute: 'int' },
  readRate: { perMinute: 'int' },
  capturedBytes: { perSession: 'bytes' },
  refusals: { count: 'int', withinSeconds: 'int' },
  sensitiveReads: { names: 'names' },
  firstAttach: { days: 'int' },
  longPause: { seconds: 'int' },
  watchdogResume: {},
  sensitiveFiles: { globs: 'globs' },
  concurrentTargets: { max: 'int' },
  failedAttaches: { count: 'int', withinSeconds: 'int' },
  targetUnresponsive: {},
};

function parseBytes(value: unknown): number | undefined {
  if (typeof value === 'number' && Number.isInteger(value) && value > 0) return value;
  const match = typeof value === 'string' ? /^(\d+)\s*(B|KB|KiB|MB|MiB|GB|GiB)?$/i.exec(value.trim()) : null;
  if (!match) return undefined;
  const unit = (match[2] ?? 'B').toLowerCase();
  const factor = unit.startsWith('g') ? 1 << 30 : unit.startsWith('m') ? 1 << 20 : unit.startsWith('k') ? 1024 : 1;
  return Number(match[1]) * factor;
}

/** Validates an `alerts` block (per target, or `alerting.rules` for the defaults), merged over `base`. */
export function validateAlertRules(raw: unknown, path: string, base: AlertRules, add: Add): AlertRules {
  if (raw === undefined || raw === null) return base;
  if (typeof raw !== 'object' || Array.isArray(raw)) {
    add(path, 'expected a mapping of alert rules');
    return base;
  }
  const out: Record<string, unknown> = { ...base };
  const perTarget = path !== 'alerting.rules';
  for (const [name, value] of Object.entries(raw as Raw)) {
    const rulePath = `${path}.${name}`;
    const fields = ruleFields[name as keyof AlertRules];
    if (perTarget && brokerWideRules.includes(name)) {
      add(rulePath, 'a broker-wide rule: set it under alerting.rules');
      continue;
    }
    if (!fields) {
      add(rulePath, `unknown alert rule (expected one of: ${Object.keys(ruleFields).filter((r) => !perTarget || !brokerWideRules.includes(r)).join(', ')})`);
      continue;
    }
    if (value === false) {
      delete out[name];
      continue;
    }
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      add(rulePath, 'expected a mapping, or false to turn the rule off');
      continue;
    }
    const given = value as Raw;
    const previous = (base[name as keyof AlertRules] ?? {}) as Raw;
    const rule: Raw = { action: previous.action ?? 'none' };
    for (const key of Object.keys(given)) {
      if (key !== 'action' && !(key in fields)) add(`${rulePath}.${key}`, `unknown key (expected one of: ${[...Object.keys(fields), 'action'].join(', ')})`);
    }
    if (given.action !== undefined) {
      if (!alertActions.includes(given.action as AlertAction)) add(`${rulePath}.action`, `expected one of: ${alertActions.join(', ')}`);
      else rule.action = given.action;
    }
    for (const [key, kind] of Object.entries(fields)) {
      const v = given[key] ?? previous[key];
      if (v === undefined) {
        add(`${rulePath}.${key}`, 'required');
        continue;
      }
      if (kind === 'int') {
        if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) add(`${rulePath}.${key}`, 'expected a positive integer');
        else rule[key] = v;
      } else if (kind === 'bytes') {
        const bytes = parseBytes(v);
        if (bytes === undefined) add(`${rulePath}.${key}`, 'expected a size like "5MB" or a number of bytes');
        else rule[key] = bytes;
      } else if (kind === 'hours') {
        if (typeof v === 'object' && v !== null && 'days' in (v as object)) rule[key] = v; // inherited, already parsed
        else {
          try {
            rule[key] = parseHours(String(v));
          } catch (err) {
            add(`${rulePath}.${key}`, (err as Error).message);
          }
        }
      } else if (!Array.isArray(v) || v.some((item) => typeof item !== 'string' || item === '')) {
        add(`${rulePath}.${key}`, 'expected a list of non-empty strings');
      } else {
        if (kind === 'globs') {
          for (const [i, glob] of (v as string[]).entries()) {
            try {
              picomatch(glob);
            } catch (err) {
              add(`${rulePath}.${key}[${i}]`, `invalid glob: ${(err as Error).message}`);
            }
          }
        }
        rule[key] = v;
      }
    }
    out[name] = Object.freeze(rule);
  }
  return Object.freeze(out) as AlertRules;
}

export interface WebhookConfig {
  readonly url: string;
  readonly secret?: string;
  readonly format: 'json' | 'slack';
  readonly maxAttempts: number;
}

export interface AlertingConfig {
  readonly rules: AlertRules;
  readonly webhooks: readonly WebhookConfig[];
  readonly deadLetterFile: string;
  /** Audit events as Elastic Common Schema JSON lines: "stdout", a file path, or off. */
  readonly ecsOutput?: string;
}

export function validateAlerting(raw: unknown, stateDir: string, resolvePath: (p: string) => string, add: Add): AlertingConfig {
  const section = (raw ?? {}) as Raw;
  if (typeof section !== 'object' || Array.isArray(section)) add('alerting', 'expected a mapping');
  for (const key of Object.keys(section)) {
    if (!['rules', 'webhooks', 'deadLetterFile', 'ecs'].includes(key)) add(`alerting.${key}`, 'unknown key (expected one of: rules, webhooks, deadLetterFile, ecs)');
  }
  const rules = validateAlertRules(section.rules, 'alerting.rules', defaultAlertRules, add);
  const webhooks: WebhookConfig[] = [];
  const list = section.webhooks ?? [];
  if (!Array.isArray(list)) add('alerting.webhooks', 'expected a list');
  else
    list.forEach((item, i) => {
      const path = `alerting.webhooks[${i}]`;
      const hook = (item ?? {}) as Raw;
      for (const key of Object.keys(hook)) if (!['url', 'secret', 'format', 'maxAttempts'].includes(key)) add(`${path}.${key}`, 'unknown key (expected one of: url, secret, format, maxAttempts)');
      if (typeof hook.url !== 'string' || !/^https?:\/\/\S+$/.test(hook.url)) add(`${path}.url`, 'expected an http(s) URL');
      if (hook.secret !== undefined && (typeof hook.secret !== 'string' || hook.secret.length < 16)) add(`${path}.secret`, 'expected a string of at least 16 characters (used for the HMAC signature)');
      if (hook.format !== undefined && hook.format !== 'json' && hook.format !== 'slack') add(`${path}.format`, 'expected json or slack');
      const attempts = hook.maxAttempts ?? 5;
      if (typeof attempts !== 'number' || !Number.isInteger(attempts) || attempts < 1 || attempts > 20) add(`${path}.maxAttempts`, 'expected an integer from 1 to 20');
      webhooks.push({ url: String(hook.url), ...(typeof hook.secret === 'string' ? { secret: hook.secret } : {}), format: hook.format === 'slack' ? 'slack' : 'json', maxAttempts: Number(attempts) || 5 });
    });
  const deadLetterFile = typeof section.deadLetterFile === 'string' ? resolvePath(section.deadLetterFile) : `${stateDir}/alerts-dead-letter.ndjson`;
  let ecsOutput: string | undefined;
  if (section.ecs !== undefined) {
    if (typeof section.ecs !== 'string' || section.ecs === '') add('alerting.ecs', 'expected "stdout" or a file path');
    else ecsOutput = section.ecs === 'stdout' ? 'stdout' : resolvePath(section.ecs);
  }
  return Object.freeze({ rules, webhooks: Object.freeze(webhooks), deadLetterFile, ...(ecsOutput ? { ecsOutput } : {}) });
}
