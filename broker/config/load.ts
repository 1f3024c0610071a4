import { createPublicKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { dirname, join as joinPath, resolve } from 'node:path';
import { parseDocument } from 'yaml';
import { LoupeError } from '../errors';
import { parseDuration } from './duration';
import { validateAlertRules, validateAlerting, type AlertRules } from './alertConfig';
import { parseHours, type Hours } from '../policy/hours';
import { compileRedaction, defaultPatterns, defaultSensitiveNames, normalizeName, type RedactionPolicy, type RedactPattern } from '../policy/redact';
import { defaultDenyIdentifiers, type EvaluationPolicy } from '../gate/evaluationCheck';
import { modes, type AccessRule, type ApprovalRequirement, type AuditConfig, type IssuerConfig, type LoupeConfig, type Mode, type RoleConfig, type TargetConfig } from './types';

type Raw = Record<string, unknown>;

/** Collects every problem with its path, so one run of `loupe broker` or `policy check` shows them all. */
class Problems {
  readonly list: string[] = [];
  add(path: string, message: string): void {
    this.list.push(`${path}: ${message}`);
  }
}

const isObject = (v: unknown): v is Raw => typeof v === 'object' && v !== null && !Array.isArray(v);

function checkKeys(raw: Raw, path: string, allowed: readonly string[], problems: Problems): void {
  for (const key of Object.keys(raw)) {
    if (!allowed.includes(key)) problems.add(join(path, key), `unknown key (expected one of: ${allowed.join(', ')})`);
  }
}

const join = (path: string, key: string | number) =>
  typeof key === 'number' ? `${path}[${key}]` : path ? `${path}.${key}` : key;

function str(raw: Raw, key: string, path: string, problems: Problems, fallback?: string): string | undefined {
  const value = raw[key];
  if (value === undefined) {
    if (fallback === undefined) problems.add(join(path, key), 'required');
    return fallback;
  }
  if (typeof value !== 'string' || value.trim() === '') {
    problems.add(join(path, key), 'expected a non-empty string');
    return fallback;
  }
  return value;
}

function strList(raw: Raw, key: string, path: string, problems: Problems, fallback: string[] = []): string[] {
  const value = raw[key];
  if (value === undefined) return fallback;
  if (!Array.isArray(value) || value.some((v) => typeof v !== 'string' || v === '')) {
    problems.add(join(path, key), 'expected a list of non-empty strings');
    return fallback;
  }
  return value as string[];
}

function int(raw: Raw, key: string, path: string, problems: Problems, fallback: number, min: number, max: number): number {
  const given = raw[key];
  // Numbers that came through ${VAR} substitution arrive as digit strings.
  const value = typeof given === 'string' && /^\d+$/.test(given) ? Number(given) : given;
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    problems.add(join(path, key), `expected an integer from ${min} to ${max}`);
    return fallback;
  }
  return value;
}

function duration(raw: Raw, key: string, path: string, problems: Problems, fallback?: number): number | undefined {
  const value = raw[key];
  if (value === undefined) {
    if (fallback === undefined) problems.add(join(path, key), 'required: a duration like "30m"');
    return fallback;
  }
  const seconds = typeof value === 'string' ? parseDuration(value) : undefined;
  if (seconds === undefined) problems.add(join(path, key), 'expected a duration like "30m"');
  return seconds ?? fallback;
}

function section(raw: Raw, key: string, path: string, problems: Problems): Raw {
  const value = raw[key];
  if (value === undefined || value === null) return {};
  if (!isObject(value)) {
    problems.add(join(path, key), 'expected a mapping');
    return {};
  }
  return value;
}

function validateServer(raw: Raw, problems: Problems): LoupeConfig['server'] {
  checkKeys(raw, 'server', ['host', 'port', 'publicUrl'], problems);
  const host = str(raw, 'host', 'server', problems, '127.0.0.1')!;
  const port = int(raw, 'port', 'server', problems, 7070, 0, 65535);
  const publicUrl = raw.publicUrl === undefined ? undefined : str(raw, 'publicUrl', 'server', problems);
  if (publicUrl !== undefined && !/^https?:\/\/[^/]+\/?$/.test(publicUrl)) {
    problems.add('server.publicUrl', 'expected an http(s) origin like "https://loupe.example.com"');
  }
  return { host, port, publicUrl: publicUrl?.replace(/\/$/, '') };
}

const asymmetric = /^(RS|PS|ES)(256|384|512)$|^EdDSA$|^Ed25519$/;

function validateIssuer(raw: unknown, path: string, defaultAudience: string, problems: Problems): IssuerConfig | undefined {
  if (!isObject(raw)) {
    problems.add(path, 'expected a mapping');
    return undefined;
  }
  checkKeys(raw, path, ['issuer', 'audience', 'discovery', 'jwksUrl', 'jwksCacheMaxAge', 'publicKey', 'publicKeyFile', 'algorithms', 'groupsClaim', 'nameClaim'], problems);
  const issuer = str(raw, 'issuer', path, problems) ?? '';
  const audience = str(raw, 'audience', path, problems, defaultAudience)!;
  const jwksUrl = raw.jwksUrl === undefined ? undefined : str(raw, 'jwksUrl', path, problems);
  let publicKey = raw.publicKey === undefined ? undefined : str(raw, 'publicKey', path, problems);
  if (raw.publicKeyFile !== undefined) {
    const file = str(raw, 'publicKeyFile', path, problems);
    if (file) {
      try {
        publicKey = readFileSync(file, 'utf8');
      } catch (err) {
        problems.add(join(path, 'publicKeyFile'), `cannot read ${file}: ${(err as Error).message}`);
      }
    }
  }
  if (raw.discovery !== undefined && typeof raw.discovery !== 'boolean') problems.add(join(path, 'discovery'), 'expected true or false');
  const keySources = [raw.discovery === true, jwksUrl !== undefined, raw.publicKey !== undefined || raw.publicKeyFile !== undefined].filter(Boolean).length;
  if (keySources > 1) problems.add(path, 'set only one of discovery, jwksUrl, publicKey or publicKeyFile');
  else if (keySources === 0 && raw.discovery === false) problems.add(path, 'no key source: set discovery: true, jwksUrl, publicKey or publicKeyFile');
  // With no key source given, the issuer's discovery document names its key set.
  const discovery = raw.discovery === true || (keySources === 0 && raw.discovery === undefined);
  if (discovery && issuer) {
    // Plain http would let anyone on the path hand the broker keys of their own; loopback is for tests and local IdPs.
    if (!/^https:\/\/[^\s]+$|^http:\/\/(127\.0\.0\.1|localhost|\[::1\])(:\d+)?(\/[^\s]*)?$/.test(issuer)) {
      problems.add(join(path, 'issuer'), `discovery needs an https URL (http only on loopback), got "${issuer}"; or set jwksUrl, publicKey or publicKeyFile`);
    }
  }
  if (jwksUrl !== undefined && !/^https?:\/\//.test(jwksUrl)) problems.add(join(path, 'jwksUrl'), 'expected an http(s) URL');
  const jwksCacheMaxAgeSeconds = duration(raw, 'jwksCacheMaxAge', path, problems, 600)!;
  if (raw.jwksCacheMaxAge !== undefined && !discovery && jwksUrl === undefined) problems.add(join(path, 'jwksCacheMaxAge'), 'only used with discovery or jwksUrl');
  const algorithms = strList(raw, 'algorithms', path, problems, ['RS256', 'ES256', 'EdDSA']);
  if (publicKey !== undefined) {
    const keyPath = join(path, publicKey === raw.publicKey ? 'publicKey' : 'publicKeyFile');
    let keyType: string | undefined;
    try {
      if (!publicKey.includes('BEGIN PUBLIC KEY')) throw new Error('not a PEM public key');
      keyType = createPublicKey(publicKey).asymmetricKeyType;
    } catch (err) {
      problems.add(keyPath, `expected a PEM public key (-----BEGIN PUBLIC KEY-----): ${(err as Error).message}`);
    }
    // One key verifies one family of algorithms; anything else could never verify and hides a mistake.
    const family: Record<string, RegExp> = { rsa: /^(RS|PS)\d+$/, ec: /^ES\d+$/, ed25519: /^(EdDSA|Ed25519)$/ };
    const mismatched = algorithms.filter((alg) => asymmetric.test(alg) && keyType && family[keyType] && !family[keyType]!.test(alg));
    if (mismatched.length > 0) {
      problems.add(join(path, 'algorithms'), `an ${keyType} key cannot verify ${mismatched.join(', ')}`);
    } else if (keyType && !family[keyType]) problems.add(keyPath, `unsupported key type ${keyType}`);
  }
  for (const [i, alg] of algorithms.entries()) {
    // Pinning asymmetric algorithms is what stops `alg: none` and HMAC key confusion.
    if (!asymmetric.test(alg)) {
      problems.add(join(join(path, 'algorithms'), i), `"${alg}" is not an asymmetric JWS algorithm (allowed: RS*, PS*, ES*, EdDSA)`);
    }
  }
  return {
    issuer,
    audience,
    discovery,
    jwksUrl,
    publicKey,
    jwksCacheMaxAgeSeconds,
    algorithms,
    groupsClaim: str(raw, 'groupsClaim', path, problems, 'groups')!,
    nameClaim: str(raw, 'nameClaim', path, problems, 'name')!,
  };
}

function validateIdentity(raw: Raw, problems: Problems): LoupeConfig['identity'] {
  checkKeys(raw, 'identity', ['audience', 'devIssuer', 'issuers'], problems);
  const audience = str(raw, 'audience', 'identity', problems, 'loupe')!;
  const dev = section(raw, 'devIssuer', 'identity', problems);
  checkKeys(dev, 'identity.devIssuer', ['enabled'], problems);
  if (dev.enabled !== undefined && typeof dev.enabled !== 'boolean') problems.add('identity.devIssuer.enabled', 'expected true or false');
  const issuersRaw = raw.issuers ?? [];
  const issuers: IssuerConfig[] = [];
  if (!Array.isArray(issuersRaw)) problems.add('identity.issuers', 'expected a list');
  else
    issuersRaw.forEach((entry, i) => {
      const issuer = validateIssuer(entry, `identity.issuers[${i}]`, audience, problems);
      if (issuer) issuers.push(issuer);
    });
  const enabled = dev.enabled === undefined ? true : dev.enabled === true;
  if (!enabled && issuers.length === 0) problems.add('identity', 'no issuer: enable devIssuer or configure identity.issuers');
  return { devIssuer: { enabled, audience }, issuers };
}

function validateRoles(raw: Raw, problems: Problems): Record<string, RoleConfig> {
  const roles: Record<string, RoleConfig> = {};
  for (const [name, value] of Object.entries(raw)) {
    const path = `roles.${name}`;
    if (!isObject(value)) {
      problems.add(path, 'expected a mapping with groups and/or users');
      continue;
    }
    checkKeys(value, path, ['groups', 'users'], problems);
    const groups = strList(value, 'groups', path, problems);
    const users = strList(value, 'users', path, problems);
    if (groups.length + users.length === 0) problems.add(path, 'a role needs at least one group or user');
    roles[name] = Object.freeze({ groups: Object.freeze(groups), users: Object.freeze(users) });
  }
  return roles;
}

function roleRefs(raw: Raw, key: string, path: string, roles: Record<string, RoleConfig>, problems: Problems): string[] {
  const list = strList(raw, key, path, problems);
  list.forEach((role, i) => {
    if (!(role in roles)) problems.add(`${join(path, key)}[${i}]`, `unknown role "${role}" (defined roles: ${Object.keys(roles).join(', ') || 'none'})`);
  });
  return list;
}

function validateAccess(raw: unknown, path: string, roles: Record<string, RoleConfig>, problems: Problems): AccessRule | undefined {
  if (!isObject(raw)) {
    problems.add(path, 'expected a mapping');
    return undefined;
  }
  checkKeys(raw, path, ['role', 'modes', 'maxDuration', 'requireTicket', 'hours', 'requireApproval'], problems);
  const role = str(raw, 'role', path, problems) ?? '';
  if (role && !(role in roles)) problems.add(join(path, 'role'), `unknown role "${role}" (defined roles: ${Object.keys(roles).join(', ') || 'none'})`);
  const modeList = strList(raw, 'modes', path, problems, ['snapshot']);
  modeList.forEach((mode, i) => {
    if (!modes.includes(mode as Mode)) problems.add(`${join(path, 'modes')}[${i}]`, `expected one of: ${modes.join(', ')}`);
  });
  const maxDurationSeconds = duration(raw, 'maxDuration', path, problems, 1800)!;
  let requireTicket: RegExp | undefined;
  if (raw.requireTicket !== undefined) {
    const pattern = str(raw, 'requireTicket', path, problems);
    if (pattern !== undefined) {
      try {
        requireTicket = new RegExp(pattern);
      } catch (err) {
        problems.add(join(path, 'requireTicket'), `invalid regular expression: ${(err as Error).message}`);
      }
    }
  }
  let hours: Hours | undefined;
  if (raw.hours !== undefined) {
    const text = str(raw, 'hours', path, problems);
    if (text !== undefined) {
      try {
        hours = parseHours(text);
      } catch (err) {
        problems.add(join(path, 'hours'), (err as Error).message);
      }
    }
  }
  const requireApproval = raw.requireApproval === undefined ? undefined : validateApproval(raw.requireApproval, join(path, 'requireApproval'), roles, problems);
  return { role, modes: Object.freeze(modeList as Mode[]), maxDurationSeconds, requireTicket, ...(hours ? { hours } : {}), ...(requireApproval ? { requireApproval } : {}) };
}

/** `requireApproval: { approvers: <role or roles>, minApprovals: 1..10 (default 1), expiresAfter: <duration> (default 1h) }`. */
function validateApproval(raw: unknown, path: string, roles: Record<string, RoleConfig>, problems: Problems): ApprovalRequirement | undefined {
  if (!isObject(raw)) {
    problems.add(path, 'expected a mapping { approvers, minApprovals, expiresAfter }');
    return undefined;
  }
  checkKeys(raw, path, ['approvers', 'minApprovals', 'expiresAfter'], problems);
  let approvers: string[] = [];
  if (raw.approvers === undefined) problems.add(join(path, 'approvers'), 'required: the role whose holders may approve');
  else if (typeof raw.approvers === 'string') approvers = [raw.approvers];
  else approvers = strList(raw, 'approvers', path, problems);
  if (approvers.length === 0 && raw.approvers !== undefined) problems.add(join(path, 'approvers'), 'expected a role name (or a list of role names)');
  const defined = Object.keys(roles).join(', ') || 'none';
  approvers.forEach((role, i) => {
    if (!(role in roles)) problems.add(typeof raw.approvers === 'string' ? join(path, 'approvers') : `${join(path, 'approvers')}[${i}]`, `unknown role "${role}" (defined roles: ${defined})`);
  });
  const minApprovals = int(raw, 'minApprovals', path, problems, 1, 1, 10);
  const expiresAfterSeconds = duration(raw, 'expiresAfter', path, problems, 3600)!;
  return Object.freeze({ approvers: Object.freeze(approvers), minApprovals, expiresAfterSeconds });
}

function validateTarget(name: string, raw: unknown, roles: Record<string, RoleConfig>, defaultRetentionDays: number, defaultAlerts: AlertRules, problems: Problems): TargetConfig | undefined {
  const path = `targets.${name}`;
  if (!/^[a-z0-9][a-z0-9._-]{0,62}$/i.test(name)) problems.add(path, 'target names use letters, digits, ".", "_" and "-" (at most 63)');
  if (!isObject(raw)) {
    problems.add(path, 'expected a mapping');
    return undefined;
  }
  checkKeys(raw, path, ['inspector', 'owners', 'access', 'maxPauseSeconds', 'retentionDays', 'alerts', 'snapshot', 'evaluation', 'redact'], problems);
  const inspector = str(raw, 'inspector', path, problems) ?? '';
  if (inspector && !/^wss?:\/\/[^\s]+$/.test(inspector) && !/^[a-z0-9.-]+:\d{1,5}$|^\[[0-9a-f:]+\]:\d{1,5}$/i.test(inspector)) {
    problems.add(join(path, 'inspector'), 'expected "host:port" or a ws:// URL');
  }
  const owners = roleRefs(raw, 'owners', path, roles, problems);
  const access: AccessRule[] = [];
  if (raw.access !== undefined && !Array.isArray(raw.access)) problems.add(join(path, 'access'), 'expected a list of rules');
  else
    ((raw.access as unknown[]) ?? []).forEach((rule, i) => {
      const checked = validateAccess(rule, `${path}.access[${i}]`, roles, problems);
      if (checked) access.push(Object.freeze(checked));
    });
  const maxPauseSeconds = int(raw, 'maxPauseSeconds', path, problems, 30, 1, 3600);
  const retentionDays = int(raw, 'retentionDays', path, problems, defaultRetentionDays, 1, 36500);
  const alerts = validateAlertRules(raw.alerts, `${path}.alerts`, defaultAlerts, (p, m) => problems.add(p, m));
  // An alert's require-approval asks the target's owners; with none, the user could never attach again.
  const approvalAlerts = Object.entries(alerts).filter(([, rule]) => (rule as { action?: string } | undefined)?.action === 'require-approval').map(([rule]) => rule);
  if (approvalAlerts.length > 0 && owners.length === 0) problems.add(join(path, 'owners'), `required: alert rule(s) ${approvalAlerts.join(', ')} use action require-approval, and the target's owners are its approvers`);
  const snapshotRaw = section(raw, 'snapshot', path, problems);
  const snapPath = `${path}.snapshot`;
  checkKeys(snapshotRaw, snapPath, ['frames', 'expandFrames', 'depth', 'collectionItems', 'fieldsPerObject', 'stringLength', 'timeBudgetMs', 'maxBytes', 'minIntervalMs', 'maxCapturesPerBreakpoint', 'maxCapturesPerMinute'], problems);
  const snapshot = Object.freeze({
    frames: int(snapshotRaw, 'frames', snapPath, problems, 20, 1, 200),
    expandFrames: int(snapshotRaw, 'expandFrames', snapPath, problems, 5, 0, 50),
    depth: int(snapshotRaw, 'depth', snapPath, problems, 3, 0, 10),
    collectionItems: int(snapshotRaw, 'collectionItems', snapPath, problems, 100, 1, 10000),
    fieldsPerObject: int(snapshotRaw, 'fieldsPerObject', snapPath, problems, 20, 1, 1000),
    stringLength: int(snapshotRaw, 'stringLength', snapPath, problems, 255, 8, 1 << 20),
    timeBudgetMs: int(snapshotRaw, 'timeBudgetMs', snapPath, problems, 10, 1, 1000),
    maxBytes: int(snapshotRaw, 'maxBytes', snapPath, problems, 64 * 1024, 1024, 16 << 20),
    minIntervalMs: int(snapshotRaw, 'minIntervalMs', snapPath, problems, 1000, 0, 3600_000),
    maxCapturesPerBreakpoint: int(snapshotRaw, 'maxCapturesPerBreakpoint', snapPath, problems, 100, 1, 100000),
    maxCapturesPerMinute: int(snapshotRaw, 'maxCapturesPerMinute', snapPath, problems, 60, 1, 100000),
  });
  const evaluation = validateEvaluation(section(raw, 'evaluation', path, problems), `${path}.evaluation`, problems);
  const redaction = validateRedaction(section(raw, 'redact', path, problems), `${path}.redact`, problems);
  return { name, inspector, owners: Object.freeze(owners), access: Object.freeze(access), maxPauseSeconds, retentionDays, alerts, snapshot, evaluation, redaction };
}

function validateEvaluation(raw: Raw, path: string, problems: Problems): EvaluationPolicy {
  checkKeys(raw, path, ['allow', 'denyIdentifiers', 'maxResultBytes'], problems);
  let allow = true;
  if (raw.allow !== undefined) {
    if (typeof raw.allow === 'boolean') allow = raw.allow;
    else problems.add(join(path, 'allow'), 'expected true or false');
  }
  const denyIdentifiers = strList(raw, 'denyIdentifiers', path, problems, [...defaultDenyIdentifiers]);
  denyIdentifiers.forEach((entry, i) => {
    if (!/^[A-Za-z_$][\w$]*(\.[A-Za-z_$][\w$]*)*$/.test(entry)) problems.add(`${join(path, 'denyIdentifiers')}[${i}]`, `expected an identifier or a dotted path like "process.env", got "${entry}"`);
  });
  const maxResultBytes = int(raw, 'maxResultBytes', path, problems, 64 * 1024, 256, 16 << 20);
  return Object.freeze({ allow, denyIdentifiers: Object.freeze(denyIdentifiers), maxResultBytes });
}

function validateRedaction(raw: Raw, path: string, problems: Problems): RedactionPolicy {
  checkKeys(raw, path, ['names', 'patterns', 'defaults'], problems);
  let defaults = true;
  if (raw.defaults !== undefined) {
    if (typeof raw.defaults === 'boolean') defaults = raw.defaults;
    else problems.add(join(path, 'defaults'), 'expected true or false');
  }
  const names = strList(raw, 'names', path, problems);
  names.forEach((name, i) => {
    if (normalizeName(name) === '') problems.add(`${join(path, 'names')}[${i}]`, `"${name}" has no letters or digits`);
  });
  const patterns: RedactPattern[] = [];
  if (raw.patterns !== undefined && !Array.isArray(raw.patterns)) problems.add(join(path, 'patterns'), 'expected a list of { name, regex }');
  else
    ((raw.patterns as unknown[]) ?? []).forEach((item, i) => {
      const itemPath = `${join(path, 'patterns')}[${i}]`;
      if (!isObject(item)) {
        problems.add(itemPath, 'expected a mapping { name, regex }');
        return;
      }
      checkKeys(item, itemPath, ['name', 'regex'], problems);
      const name = str(item, 'name', itemPath, problems);
      const source = str(item, 'regex', itemPath, problems);
      if (name === undefined || source === undefined) return;
      try {
        const regex = new RegExp(source, 'g');
        if (regex.test('')) problems.add(join(itemPath, 'regex'), 'matches the empty string, which would redact everything');
        else patterns.push({ name, regex });
      } catch (err) {
        problems.add(join(itemPath, 'regex'), `invalid regular expression: ${(err as Error).message}`);
      }
    });
  return compileRedaction([...(defaults ? defaultSensitiveNames : []), ...names], [...(defaults ? defaultPatterns : []), ...patterns]);
}

function validateAudit(raw: Raw, stateDir: string, baseDir: string, problems: Problems): AuditConfig {
  checkKeys(raw, 'audit', ['store', 'dir', 's3', 'retentionDays', 'failClosedAfter', 'uploadInterval', 'chunkMaxEvents'], problems);
  const kind = str(raw, 'store', 'audit', problems, 'local');
  if (kind !== 'local' && kind !== 's3') problems.add('audit.store', 'expected "local" or "s3"');
  let store: AuditConfig['store'] = { kind: 'local', dir: resolve(baseDir, typeof raw.dir === 'string' ? raw.dir : joinPath(stateDir, 'audit-store')) };
  const s3 = section(raw, 's3', 'audit', problems);
  if (kind === 's3') {
    checkKeys(s3, 'audit.s3', ['bucket', 'prefix', 'endpoint', 'region', 'forcePathStyle'], problems);
    const bucket = str(s3, 'bucket', 'audit.s3', problems) ?? '';
    const prefix = str(s3, 'prefix', 'audit.s3', problems, '')!;
    if (prefix && !prefix.endsWith('/')) problems.add('audit.s3.prefix', 'expected a prefix ending in "/"');
    const endpoint = s3.endpoint === undefined ? undefined : str(s3, 'endpoint', 'audit.s3', problems);
    if (endpoint !== undefined && !/^https?:\/\//.test(endpoint)) problems.add('audit.s3.endpoint', 'expected an http(s) URL');
    const region = s3.region === undefined ? undefined : str(s3, 'region', 'audit.s3', problems);
    if (s3.forcePathStyle !== undefined && typeof s3.forcePathStyle !== 'boolean') problems.add('audit.s3.forcePathStyle', 'expected true or false');
    store = { kind: 's3', bucket, prefix, ...(endpoint ? { endpoint } : {}), ...(region ? { region } : {}), ...(typeof s3.forcePathStyle === 'boolean' ? { forcePathStyle: s3.forcePathStyle } : {}) };
  } else if (raw.s3 !== undefined) problems.add('audit.s3', 'only used with store: s3');
  const failClosedAfterSeconds = duration(raw, 'failClosedAfter', 'audit', problems, 30)!;
  const uploadIntervalSeconds = duration(raw, 'uploadInterval', 'audit', problems, 1)!;
  if (uploadIntervalSeconds >= failClosedAfterSeconds) {
    problems.add('audit.uploadInterval', `must be shorter than audit.failClosedAfter (${failClosedAfterSeconds}s): records waiting that long fail the broker closed`);
  }
  return {
    store,
    retentionDays: int(raw, 'retentionDays', 'audit', problems, 30, 1, 36500),
    failClosedAfterSeconds,
    uploadIntervalSeconds,
    chunkMaxEvents: int(raw, 'chunkMaxEvents', 'audit', problems, 500, 1, 100000),
  };
}

/** Validates a parsed config; throws config_invalid listing every problem by path. */
export function validateConfig(raw: unknown, baseDir: string): LoupeConfig {
  const problems = new Problems();
  if (!isObject(raw)) {
    throw new LoupeError('config_invalid', 'config: expected a YAML mapping at the top level', { problems: ['(root): expected a mapping'] });
  }
  checkKeys(raw, '', ['server', 'stateDir', 'limits', 'identity', 'roles', 'admins', 'auditors', 'audit', 'alerting', 'targets'], problems);
  const server = validateServer(section(raw, 'server', '', problems), problems);
  const stateDir = resolve(baseDir, str(raw, 'stateDir', '', problems, '.loupe')!);
  const limitsRaw = section(raw, 'limits', '', problems);
  checkKeys(limitsRaw, 'limits', ['maxFrameBytes', 'evaluateTimeoutMs', 'conditionTimeoutMs', 'clientBufferBytes', 'conditionBudgetMsPerSecond', 'clientPingIntervalMs', 'clientUnresponsiveMs', 'targetResponseSeconds', 'maxTargetFrameBytes'], problems);
  const limits = {
    maxFrameBytes: int(limitsRaw, 'maxFrameBytes', 'limits', problems, 1 << 20, 1024, 64 << 20),
    evaluateTimeoutMs: int(limitsRaw, 'evaluateTimeoutMs', 'limits', problems, 1000, 10, 30000),
    conditionTimeoutMs: int(limitsRaw, 'conditionTimeoutMs', 'limits', problems, 50, 5, 1000),
    clientBufferBytes: int(limitsRaw, 'clientBufferBytes', 'limits', problems, 16 << 20, 1 << 20, 1 << 30),
    conditionBudgetMsPerSecond: int(limitsRaw, 'conditionBudgetMsPerSecond', 'limits', problems, 100, 1, 1000),
    clientPingIntervalMs: int(limitsRaw, 'clientPingIntervalMs', 'limits', problems, 5000, 50, 60000),
    clientUnresponsiveMs: int(limitsRaw, 'clientUnresponsiveMs', 'limits', problems, 10000, 100, 600000),
    targetResponseSeconds: int(limitsRaw, 'targetResponseSeconds', 'limits', problems, 10, 1, 600),
    maxTargetFrameBytes: int(limitsRaw, 'maxTargetFrameBytes', 'limits', problems, 2 << 20, 64 << 10, 256 << 20),
  };
  // A bound no longer than the interval would end a client that answers every ping.
  if (limits.clientUnresponsiveMs <= limits.clientPingIntervalMs) {
    problems.add('limits.clientUnresponsiveMs', `must be longer than limits.clientPingIntervalMs (${limits.clientPingIntervalMs} ms): a client gets at least one ping to answer`);
  }
  // An evaluation may run its whole timeout before the target answers; only silence past that is unresponsive.
  if (limits.targetResponseSeconds * 1000 <= limits.evaluateTimeoutMs) {
    problems.add('limits.targetResponseSeconds', `must be longer than limits.evaluateTimeoutMs (${limits.evaluateTimeoutMs} ms): an evaluation may take that long to answer`);
  }
  const identity = validateIdentity(section(raw, 'identity', '', problems), problems);
  const roles = validateRoles(section(raw, 'roles', '', problems), problems);
  const admins = roleRefs(raw, 'admins', '', roles, problems);
  const auditors = roleRefs(raw, 'auditors', '', roles, problems);
  const audit = validateAudit(section(raw, 'audit', '', problems), stateDir, baseDir, problems);
  const alerting = validateAlerting(raw.alerting, stateDir, (p) => resolve(baseDir, p), (p, m) => problems.add(p, m));
  const targets: Record<string, TargetConfig> = {};
  const targetsRaw = section(raw, 'targets', '', problems);
  if (Object.keys(targetsRaw).length === 0) problems.add('targets', 'at least one target is required');
  for (const [name, value] of Object.entries(targetsRaw)) {
    const target = validateTarget(name, value, roles, audit.retentionDays, alerting.rules, problems);
    if (target) targets[name] = Object.freeze(target);
  }
  if (problems.list.length > 0) {
    throw new LoupeError('config_invalid', `invalid config:\n  ${problems.list.join('\n  ')}`, { problems: problems.list });
  }
  return Object.freeze({
    server: Object.freeze(server),
    stateDir,
    limits: Object.freeze(limits),
    identity: Object.freeze(identity),
    roles: Object.freeze(roles),
    admins: Object.freeze(admins),
    auditors: Object.freeze(auditors),
    audit: Object.freeze(audit),
    alerting,
    targets: Object.freeze(targets),
  });
}

/** Replaces `${VAR}` and `${VAR:-default}` in string values, so one file serves several environments. */
function substituteEnv(value: unknown, env: NodeJS.ProcessEnv, path: string, problems: Problems): unknown {
  if (typeof value === 'string') {
    return value.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g, (_m, name: string, fallback: string | undefined) => {
      const found = env[name];
      if (found !== undefined && found !== '') return found;
      if (fallback !== undefined) return fallback;
      problems.add(path || '(root)', `environment variable ${name} is not set`);
      return '';
    });
  }
  if (Array.isArray(value)) return value.map((item, i) => substituteEnv(item, env, join(path, i), problems));
  if (isObject(value)) return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, substituteEnv(v, env, join(path, k), problems)]));
  return value;
}

export function parseConfigText(text: string, baseDir: string, source = 'config', env: NodeJS.ProcessEnv = process.env): LoupeConfig {
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    const problems = doc.errors.map((e) => `${source}: ${e.message.split('\n')[0]}`);
    throw new LoupeError('config_invalid', `invalid config:\n  ${problems.join('\n  ')}`, { problems });
  }
  const problems = new Problems();
  const raw = substituteEnv(doc.toJS(), env, '', problems);
  if (problems.list.length > 0) throw new LoupeError('config_invalid', `invalid config:\n  ${problems.list.join('\n  ')}`, { problems: problems.list });
  return validateConfig(raw, baseDir);
}

/** Reads and validates a config file; relative paths in it resolve against the file's folder. */
export function loadConfig(file: string): LoupeConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new LoupeError('config_invalid', `cannot read config ${file}: ${(err as Error).message}`, { problems: [`${file}: cannot read`] });
  }
  return parseConfigText(text, dirname(resolve(file)), file);
}
