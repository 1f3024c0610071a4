import { createPublicKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { z } from 'zod';
import { defaultAlertRules } from './alertConfig';
import type { Path, Problem } from './problems';
import { auditSchema, asymmetricAlgorithm, devIssuerSchema, issuerSchema, limitsSchema, roleSchema } from './schema';
import { brokerWideRules, ruleSchemas, type AlertRules, type RuleName } from './schema/alerts';
import { bool } from './schema/fields';
import { accessSchema, approvalSchema, targetSchema } from './schema/target';

/**
 * The second pass: what relates one field to another (a role named where roles are defined, one bound longer than
 * another, a target's alert rules over the defaults). It runs on the file as given, after the schema pass and
 * whatever that found, so one run reports every problem; each check uses only values that passed the schema (the
 * schema pass has reported the others).
 */

const isMapping = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const at = (value: unknown, key: string): unknown => (isMapping(value) ? value[key] : undefined);

/** The value if it passes the schema, else undefined. */
function valid<S extends z.ZodType>(schema: S, value: unknown): z.output<S> | undefined {
  const result = schema.safeParse(value);
  return result.success ? result.data : undefined;
}

/** What the second pass works out besides problems, for building the runtime config. */
export interface Derived {
  /** Each issuer's PEM key, read from publicKeyFile where that is how it is given. */
  readonly publicKeys: readonly (string | undefined)[];
  readonly alertDefaults: AlertRules;
  readonly targetAlerts: Readonly<Record<string, AlertRules>>;
}

export function crossCheck(raw: Record<string, unknown>): { problems: Problem[]; derived: Derived } {
  const problems: Problem[] = [];
  const add = (path: Path, message: string) => problems.push({ path, message });

  checkLimits(at(raw, 'limits'), add);
  const publicKeys = checkIdentity(at(raw, 'identity'), add);

  const rolesRaw = at(raw, 'roles');
  const roles = isMapping(rolesRaw) ? Object.keys(rolesRaw) : [];
  for (const name of roles) {
    const role = valid(roleSchema, at(rolesRaw, name));
    if (role && role.groups.length + role.users.length === 0) add(['roles', name], 'a role needs at least one group or user');
  }
  const known = roles.join(', ') || 'none';
  /** A list of role names; approvers may also be one name. */
  const roleRefs = (value: unknown, path: Path, one = false) => {
    const single = one && typeof value === 'string';
    const list = single ? [value] : valid(targetSchema.shape.owners, value ?? []);
    list?.forEach((role, i) => {
      if (!roles.includes(role)) add(single ? path : [...path, i], `unknown role "${role}" (defined roles: ${known})`);
    });
    return list ?? [];
  };
  roleRefs(at(raw, 'admins'), ['admins']);
  roleRefs(at(raw, 'auditors'), ['auditors']);

  checkAudit(at(raw, 'audit'), add);

  const alertDefaults = mergeRules(defaultAlertRules, givenRules(at(at(raw, 'alerting'), 'rules'), false), ['alerting', 'rules'], add);
  const targetAlerts: Record<string, AlertRules> = {};
  const targets = at(raw, 'targets');
  for (const [name, target] of Object.entries(isMapping(targets) ? targets : {})) {
    const path = ['targets', name];
    const owners = roleRefs(at(target, 'owners'), [...path, 'owners']);
    const access = at(target, 'access');
    (Array.isArray(access) ? access : []).forEach((rule, i) => {
      const rulePath = [...path, 'access', i];
      const role = valid(accessSchema.shape.role, at(rule, 'role'));
      if (role !== undefined && !roles.includes(role)) add([...rulePath, 'role'], `unknown role "${role}" (defined roles: ${known})`);
      const approvers = at(at(rule, 'requireApproval'), 'approvers');
      if (valid(approvalSchema.shape.approvers, approvers)) roleRefs(approvers, [...rulePath, 'requireApproval', 'approvers'], true);
    });
    const alerts = mergeRules(alertDefaults, givenRules(at(target, 'alerts'), true), [...path, 'alerts'], add);
    targetAlerts[name] = alerts;
    // An alert's require-approval asks the target's owners; with none, the user could never attach again.
    const approvalAlerts = Object.entries(alerts)
      .filter(([, rule]) => rule?.action === 'require-approval')
      .map(([rule]) => rule);
    if (approvalAlerts.length > 0 && owners.length === 0)
      add([...path, 'owners'], `required: alert rule(s) ${approvalAlerts.join(', ')} use action require-approval, and the target's owners are its approvers`);
  }
  return { problems, derived: { publicKeys, alertDefaults, targetAlerts } };
}

function checkLimits(limits: unknown, add: (path: Path, message: string) => void): void {
  const value = (key: keyof typeof limitsSchema.shape) => valid(limitsSchema.shape[key], at(limits, key));
  const ping = value('clientPingIntervalMs');
  const unresponsive = value('clientUnresponsiveMs');
  // A bound no longer than the interval would end a client that answers every ping.
  if (ping !== undefined && unresponsive !== undefined && unresponsive <= ping) {
    add(['limits', 'clientUnresponsiveMs'], `must be longer than limits.clientPingIntervalMs (${ping} ms): a client gets at least one ping to answer`);
  }
  // An evaluation may run its whole timeout before the target answers; only silence past that is unresponsive.
  const evaluate = value('evaluateTimeoutMs');
  const response = value('targetResponseSeconds');
  if (evaluate !== undefined && response !== undefined && response * 1000 <= evaluate) {
    add(['limits', 'targetResponseSeconds'], `must be longer than limits.evaluateTimeoutMs (${evaluate} ms): an evaluation may take that long to answer`);
  }
}

function checkAudit(audit: unknown, add: (path: Path, message: string) => void): void {
  const store = valid(auditSchema.shape.store, at(audit, 'store'));
  if (store === 's3' && at(audit, 's3') === undefined) add(['audit', 's3', 'bucket'], 'required');
  if (store === 'local' && at(audit, 's3') !== undefined) add(['audit', 's3'], 'only used with store: s3');
  const failClosed = valid(auditSchema.shape.failClosedAfter, at(audit, 'failClosedAfter'));
  const upload = valid(auditSchema.shape.uploadInterval, at(audit, 'uploadInterval'));
  if (failClosed !== undefined && upload !== undefined && upload >= failClosed) {
    add(['audit', 'uploadInterval'], `must be shorter than audit.failClosedAfter (${failClosed}s): records waiting that long fail the broker closed`);
  }
}

/** Key sources, key types and algorithms of each issuer; returns the keys read from publicKeyFile. */
function checkIdentity(identity: unknown, add: (path: Path, message: string) => void): (string | undefined)[] {
  const issuers = at(identity, 'issuers');
  const list = Array.isArray(issuers) ? issuers : [];
  const enabled = valid(devIssuerSchema.shape.enabled, at(at(identity, 'devIssuer'), 'enabled'));
  if (enabled === false && list.filter(isMapping).length === 0) add(['identity'], 'no issuer: enable devIssuer or configure identity.issuers');
  return list.map((entry, i) => {
    if (!isMapping(entry)) return undefined;
    const path = ['identity', 'issuers', i];
    const { shape } = issuerSchema;
    const issuer = valid(shape.issuer, entry.issuer);
    const jwksUrl = valid(shape.jwksUrl, entry.jwksUrl);
    const discoveryGiven = valid(bool().optional(), entry.discovery);
    let publicKey = valid(shape.publicKey, entry.publicKey);
    const file = valid(shape.publicKeyFile, entry.publicKeyFile);
    if (file !== undefined) {
      try {
        publicKey = readFileSync(file, 'utf8');
      } catch (err) {
        add([...path, 'publicKeyFile'], `cannot read ${file}: ${(err as Error).message}`);
      }
    }
    const keySources = [entry.discovery === true, jwksUrl !== undefined, entry.publicKey !== undefined || entry.publicKeyFile !== undefined].filter(Boolean).length;
    if (keySources > 1) add(path, 'set only one of discovery, jwksUrl, publicKey or publicKeyFile');
    else if (keySources === 0 && discoveryGiven === false) add(path, 'no key source: set discovery: true, jwksUrl, publicKey or publicKeyFile');
    // With no key source given, the issuer's discovery document names its key set.
    const discovery = discoveryGiven === true || (keySources === 0 && entry.discovery === undefined);
    // Plain http would let anyone on the path hand the broker keys of their own; loopback is for tests and local IdPs.
    if (discovery && issuer && !/^https:\/\/[^\s]+$|^http:\/\/(127\.0\.0\.1|localhost|\[::1\])(:\d+)?(\/[^\s]*)?$/.test(issuer)) {
      add([...path, 'issuer'], `discovery needs an https URL (http only on loopback), got "${issuer}"; or set jwksUrl, publicKey or publicKeyFile`);
    }
    if (entry.jwksCacheMaxAge !== undefined && !discovery && jwksUrl === undefined) add([...path, 'jwksCacheMaxAge'], 'only used with discovery or jwksUrl');
    const algorithms = valid(issuerSchema.shape.algorithms, entry.algorithms) ?? [];
    if (publicKey !== undefined) {
      const keyPath = [...path, entry.publicKeyFile === undefined ? 'publicKey' : 'publicKeyFile'];
      let keyType: string | undefined;
      try {
        if (!publicKey.includes('BEGIN PUBLIC KEY')) throw new Error('not a PEM public key');
        keyType = createPublicKey(publicKey).asymmetricKeyType;
      } catch (err) {
        add(keyPath, `expected a PEM public key (-----BEGIN PUBLIC KEY-----): ${(err as Error).message}`);
      }
      // One key verifies one family of algorithms; anything else could never verify and hides a mistake.
      const family: Record<string, RegExp> = { rsa: /^(RS|PS)\d+$/, ec: /^ES\d+$/, ed25519: /^(EdDSA|Ed25519)$/ };
      const mismatched = algorithms.filter((alg) => asymmetricAlgorithm.test(alg) && keyType && family[keyType] && !family[keyType]!.test(alg));
      if (mismatched.length > 0) add([...path, 'algorithms'], `an ${keyType} key cannot verify ${mismatched.join(', ')}`);
      else if (keyType && !family[keyType]) add(keyPath, `unsupported key type ${keyType}`);
    }
    return publicKey;
  });
}

const invalid = Symbol('invalid');

/**
 * The rules of a set field by field, each value parsed if it passes the schema or marked invalid (the schema pass
 * reported it): one bad field does not hide another that is missing.
 */
function givenRules(value: unknown, perTarget: boolean): GivenRules | undefined {
  if (!isMapping(value)) return undefined;
  const rules: Record<string, false | Record<string, unknown>> = {};
  for (const [name, rule] of Object.entries(value)) {
    if (!Object.hasOwn(ruleSchemas, name) || (perTarget && brokerWideRules.includes(name as RuleName))) continue;
    if (rule === false) rules[name] = false;
    else if (isMapping(rule)) {
      const shape = ruleSchemas[name as RuleName].shape as Record<string, z.ZodType>;
      rules[name] = Object.fromEntries(
        Object.keys(shape)
          .filter((key) => rule[key] !== undefined)
          .map((key) => [key, shape[key]!.safeParse(rule[key]).data ?? invalid]),
      );
    }
  }
  return rules as GivenRules;
}

type GivenRules = { readonly [K in RuleName]?: false | Record<string, unknown> };

/** A set of alert rules over `base`: a rule given is merged field by field, `false` switches it off. */
function mergeRules(base: AlertRules, given: GivenRules | undefined, path: Path, add: (path: Path, message: string) => void): AlertRules {
  const out: Record<string, unknown> = { ...base };
  for (const [name, value] of Object.entries(given ?? {}) as [RuleName, false | Record<string, unknown> | undefined][]) {
    if (value === undefined) continue;
    if (value === false) {
      delete out[name];
      continue;
    }
    const previous = (base[name] ?? {}) as Record<string, unknown>;
    const rule: Record<string, unknown> = { action: (value.action !== invalid && value.action) || previous.action || 'none' };
    let complete = !Object.values(value).includes(invalid);
    for (const key of Object.keys(ruleSchemas[name].shape)) {
      if (key === 'action' || value[key] === invalid) continue;
      const v = value[key] ?? previous[key];
      if (v === undefined) {
        add([...path, name, key], 'required');
        complete = false;
      } else rule[key] = v;
    }
    if (complete) out[name] = Object.freeze(rule);
  }
  return Object.freeze(out) as AlertRules;
}
