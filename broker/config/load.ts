import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { dirname, join as joinPath, resolve } from 'node:path';
import { isScalar, LineCounter, parseDocument, visit, type Document } from 'yaml';
import { LoupeError } from '../errors';
import { crossCheck, type Derived } from './crossCheck';
import { fromIssues, orderProblems, type Path, type Problem } from './problems';
import { configSchema, type ConfigInput } from './schema';
import type { LoupeConfig, TargetConfig } from './types';

type Raw = Record<string, unknown>;

const isObject = (v: unknown): v is Raw => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Problems listed in one refusal; a file with more is told how many more (the first ones usually explain the rest). */
const maxProblemsListed = 500;

const invalid = (all: string[]) => {
  const problems = all.length > maxProblemsListed ? [...all.slice(0, maxProblemsListed), `… and ${all.length - maxProblemsListed} more problem(s)`] : all;
  return new LoupeError('config_invalid', `invalid config:\n  ${problems.join('\n  ')}`, { problems });
};

/**
 * Validates a parsed config: the schema (./schema.ts), then the second pass (./crossCheck.ts); throws config_invalid
 * listing every problem of both by path, or returns the config frozen.
 */
export function validateConfig(raw: unknown, baseDir: string): LoupeConfig {
  if (!isObject(raw)) {
    throw new LoupeError('config_invalid', 'config: expected a YAML mapping at the top level', { problems: ['(root): expected a mapping'] });
  }
  const parsed = configSchema.safeParse(raw);
  const second = crossCheck(raw);
  const problems = orderProblems([...(parsed.success ? [] : fromIssues(parsed.error.issues)), ...second.problems], configSchema, raw);
  if (problems.length > 0 || !parsed.success) throw invalid(problems);
  return build(parsed.data, second.derived, baseDir);
}

const freezeList = <T>(list: readonly T[]): readonly T[] => Object.freeze([...list]);

/** The runtime form: paths resolved against the policy file's folder, defaults from elsewhere in the file, frozen. */
function build(input: ConfigInput, derived: Derived, baseDir: string): LoupeConfig {
  const stateDir = resolve(baseDir, input.stateDir);
  const { identity, audit, alerting } = input;
  const s3 = audit.s3;
  const store =
    audit.store === 's3' && s3
      ? {
          kind: 's3' as const,
          bucket: s3.bucket,
          prefix: s3.prefix,
          ...(s3.endpoint ? { endpoint: s3.endpoint } : {}),
          ...(s3.region ? { region: s3.region } : {}),
          ...(s3.forcePathStyle !== undefined ? { forcePathStyle: s3.forcePathStyle } : {}),
        }
      : { kind: 'local' as const, dir: resolve(baseDir, audit.dir ?? joinPath(stateDir, 'audit-store')) };
  const issuers = identity.issuers.map((issuer, i) => {
    const publicKey = derived.publicKeys[i];
    const jwksUrl = issuer.jwksUrl;
    const discovery = issuer.discovery === true || (issuer.discovery === undefined && jwksUrl === undefined && publicKey === undefined);
    return Object.freeze({
      issuer: issuer.issuer,
      audience: issuer.audience ?? identity.audience,
      discovery,
      jwksUrl,
      publicKey,
      jwksCacheMaxAgeSeconds: issuer.jwksCacheMaxAge ?? 600,
      algorithms: freezeList(issuer.algorithms),
      groupsClaim: issuer.groupsClaim,
      nameClaim: issuer.nameClaim,
    });
  });
  // No prototype: a target asked for by name ("constructor", "__proto__") is one of the file's or none.
  const targets: Record<string, TargetConfig> = Object.create(null) as Record<string, TargetConfig>;
  for (const [name, target] of Object.entries(input.targets)) {
    const access = target.access.map((rule) =>
      Object.freeze({
        role: rule.role,
        modes: freezeList(rule.modes),
        evaluation: freezeList([...new Set(rule.evaluation)]),
        maxDurationSeconds: rule.maxDuration,
        requireTicket: rule.requireTicket,
        ...(rule.hours ? { hours: rule.hours } : {}),
        ...(rule.requireApproval
          ? {
              requireApproval: Object.freeze({
                approvers: freezeList(rule.requireApproval.approvers),
                minApprovals: rule.requireApproval.minApprovals,
                expiresAfterSeconds: rule.requireApproval.expiresAfter,
              }),
            }
          : {}),
      }),
    );
    targets[name] = Object.freeze({
      name,
      inspector: target.inspector,
      owners: freezeList(target.owners),
      access: freezeList(access),
      maxPauseSeconds: target.maxPauseSeconds,
      retentionDays: target.retentionDays ?? audit.retentionDays,
      alerts: derived.targetAlerts[name]!,
      snapshot: Object.freeze({ ...target.snapshot }),
      evaluation: Object.freeze({ ...target.evaluation, denyIdentifiers: freezeList(target.evaluation.denyIdentifiers) }),
      redaction: target.redact,
    });
  }
  const roles = Object.fromEntries(Object.entries(input.roles ?? {}).map(([name, role]) => [name, Object.freeze({ groups: freezeList(role.groups), users: freezeList(role.users) })]));
  return Object.freeze({
    server: Object.freeze({ host: input.server.host, port: input.server.port, publicUrl: input.server.publicUrl }),
    stateDir,
    limits: Object.freeze({ ...input.limits }),
    identity: Object.freeze({ devIssuer: { enabled: identity.devIssuer.enabled, audience: identity.audience }, issuers: freezeList(issuers) }),
    roles: Object.freeze(roles),
    admins: freezeList(input.admins),
    auditors: freezeList(input.auditors),
    audit: Object.freeze({
      store,
      retentionDays: audit.retentionDays,
      failClosedAfterSeconds: audit.failClosedAfter,
      walStallAfterSeconds: audit.walStallAfter,
      uploadIntervalSeconds: audit.uploadInterval,
      chunkMaxEvents: audit.chunkMaxEvents,
      chunkMaxBytes: audit.chunkMaxBytes,
      maxReportBytes: audit.maxReportBytes,
    }),
    state: Object.freeze({
      ...(input.state.postgres ? { postgres: Object.freeze({ url: input.state.postgres.url, schema: input.state.postgres.schema }) } : {}),
      ...(input.state.replica ? { replica: input.state.replica } : {}),
      sessionLeaseSeconds: input.state.sessionLease,
      outageGraceSeconds: input.state.outageGrace,
      noticePollSeconds: input.state.noticePoll,
    }),
    alerting: Object.freeze({
      rules: derived.alertDefaults,
      webhooks: freezeList(alerting.webhooks.map((hook) => Object.freeze({ ...hook }))),
      deadLetterFile: alerting.deadLetterFile !== undefined ? resolve(baseDir, alerting.deadLetterFile) : `${stateDir}/alerts-dead-letter.ndjson`,
      ...(alerting.ecs !== undefined ? { ecsOutput: alerting.ecs === 'stdout' ? 'stdout' : resolve(baseDir, alerting.ecs) } : {}),
    }),
    targets: Object.freeze(targets),
  });
}

/** Replaces `${VAR}` and `${VAR:-default}` in string values, so one file serves several environments. */
function substituteEnv(value: unknown, env: NodeJS.ProcessEnv, path: Path, problems: Problem[]): unknown {
  if (typeof value === 'string') {
    return value.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g, (_m, name: string, fallback: string | undefined) => {
      const found = env[name];
      if (found !== undefined && found !== '') return found;
      if (fallback !== undefined) return fallback;
      problems.push({ path, message: `environment variable ${name} is not set` });
      return '';
    });
  }
  if (Array.isArray(value)) return value.map((item, i) => substituteEnv(item, env, [...path, i], problems));
  if (isObject(value)) return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, substituteEnv(v, env, [...path, k], problems)]));
  return value;
}

/**
 * The largest policy file read. A policy is written by people: a thousand targets fit in half of it. Parsing
 * and validation run on the broker's thread, so a file without bound would hold every session while it is read.
 */
export const maxPolicyBytes = 512 * 1024;

const tooLarge = (source: string, bytes: number) =>
  invalid([`${source}: the policy file is ${bytes} bytes; at most ${maxPolicyBytes} bytes (512 KiB) are read (split rarely used targets out, or shorten it)`]);

/**
 * Keys repeated in a mapping (yaml's own check compares each key with every earlier one: minutes for a long mapping),
 * and `__proto__` keys, which become no property when the document turns into objects: dropped without a word.
 */
function keyProblems(doc: Document, lines: LineCounter, source: string): string[] {
  const found: string[] = [];
  visit(doc, {
    Map(_key, map) {
      const seen = new Set<string>();
      for (const pair of map.items) {
        // Keys that become the same property (1 and "1") override each other as surely as equal ones.
        const name = isScalar(pair.key) ? String(pair.key.value) : String(pair.key);
        if (name === '__proto__') {
          const at = isScalar(pair.key) && pair.key.range ? lines.linePos(pair.key.range[0]) : undefined;
          found.push(`${source}: "__proto__" is not a key Loupe reads${at ? ` (line ${at.line}, column ${at.col})` : ''}: it would be dropped without effect; remove it`);
          continue;
        }
        if (!seen.has(name)) {
          seen.add(name);
          continue;
        }
        const at = isScalar(pair.key) && pair.key.range ? lines.linePos(pair.key.range[0]) : undefined;
        found.push(`${source}: Map keys must be unique; ${JSON.stringify(name.slice(0, 100))} is repeated${at ? ` at line ${at.line}, column ${at.col}` : ''}`);
      }
    },
  });
  return found;
}

export function parseConfigText(text: string, baseDir: string, source = 'config', env: NodeJS.ProcessEnv = process.env): LoupeConfig {
  const bytes = Buffer.byteLength(text);
  if (bytes > maxPolicyBytes) throw tooLarge(source, bytes);
  const lines = new LineCounter();
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: false, lineCounter: lines });
  const syntax = [...doc.errors.map((e) => `${source}: ${e.message.split('\n')[0]}`), ...(doc.errors.length === 0 ? keyProblems(doc, lines, source) : [])];
  if (syntax.length > 0) throw invalid(syntax);
  let parsed: unknown;
  try {
    parsed = doc.toJS({ maxAliasCount: 100 });
  } catch (err) {
    // An alias to no anchor, or aliases expanding past the bound: the document has no value to validate.
    throw invalid([`${source}: ${(err as Error).message.split('\n')[0]}`]);
  }
  const problems: Problem[] = [];
  const raw = substituteEnv(parsed, env, [], problems);
  if (problems.length > 0) throw invalid(orderProblems(problems, configSchema, raw));
  return validateConfig(raw, baseDir);
}

/** A policy file's text, refused (config_invalid) when it cannot be read or is over maxPolicyBytes; never more is read. */
export function readPolicyFile(file: string): string {
  let fd: number | undefined;
  try {
    fd = openSync(file, 'r');
    const size = fstatSync(fd).size;
    if (size > maxPolicyBytes) throw tooLarge(file, size);
    // One byte more than the bound: a file that grew since the stat is refused too.
    const buffer = Buffer.alloc(maxPolicyBytes + 1);
    let length = 0;
    for (let n; length < buffer.length && (n = readSync(fd, buffer, length, buffer.length - length, null)) > 0;) length += n;
    if (length > maxPolicyBytes) throw tooLarge(file, length);
    return buffer.subarray(0, length).toString('utf8');
  } catch (err) {
    if (err instanceof LoupeError) throw err;
    throw new LoupeError('config_invalid', `cannot read config ${file}: ${(err as Error).message}`, { problems: [`${file}: cannot read`] });
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/** Reads and validates a config file; relative paths in it resolve against the file's folder. */
export function loadConfig(file: string): LoupeConfig {
  return parseConfigText(readPolicyFile(file), dirname(resolve(file)), file);
}
