import type { LoupeConfig, SnapshotLimits, TargetConfig } from '../config/types';
import type { Grant } from '../grants/grantStore';
import { decideAccess } from './access';
import { compileRedaction, type RedactionPolicy } from './redact';

/**
 * Policy reload: new grants follow the new file; a live session keeps running under the stricter of the rules
 * it started with and the new ones, so an edit can only narrow what an attached debugger may do.
 */

/** Sections a reload applies; the rest (listener, state, identity, audit store, alert sinks) need a restart. */
export const reloadableSections = ['roles', 'admins', 'auditors', 'targets'] as const;
const restartSections = ['server', 'stateDir', 'limits', 'identity', 'audit', 'state', 'alerting'] as const;

const canonical = (value: unknown) => JSON.stringify(value, (_key, v: unknown) => (v instanceof RegExp ? `/${v.source}/${v.flags}` : v instanceof Set ? [...(v as Set<unknown>)].sort() : v));

/** What changed between two configs, as paths, and which of the changes wait for a restart. */
export function policyChanges(old: LoupeConfig, next: LoupeConfig): { changed: string[]; needRestart: string[] } {
  const changed: string[] = [];
  for (const section of ['roles', 'admins', 'auditors'] as const) if (canonical(old[section]) !== canonical(next[section])) changed.push(section);
  for (const name of new Set([...Object.keys(old.targets), ...Object.keys(next.targets)])) {
    const a = old.targets[name];
    const b = next.targets[name];
    if (!a) changed.push(`targets.${name} (added)`);
    else if (!b) changed.push(`targets.${name} (removed)`);
    else if (canonical(a) !== canonical(b)) changed.push(`targets.${name}`);
  }
  const needRestart = restartSections.filter((s) => canonical(old[s]) !== canonical(next[s]));
  return { changed, needRestart };
}

const minOf = <T extends Record<string, number>>(a: T, b: T): T => Object.fromEntries(Object.keys(a).map((k) => [k, Math.min(a[k]!, b[k]!)])) as T;

function stricterRedaction(a: RedactionPolicy, b: RedactionPolicy): RedactionPolicy {
  const patterns = [...a.patterns];
  for (const p of b.patterns) if (!patterns.some((q) => q.name === p.name && q.regex.source === p.regex.source)) patterns.push(p);
  // Sources and exception messages stay shown only if both policies say so.
  return {
    ...compileRedaction([...a.names, ...b.names], patterns),
    ...(a.source === false && b.source === false ? { source: false } : {}),
    ...(a.exceptionMessages === false && b.exceptionMessages === false ? { exceptionMessages: false } : {}),
  };
}

/** The rules a live session continues under: every limit at its lower value, every list of denials joined. */
export function stricterTarget(old: TargetConfig, next: TargetConfig): TargetConfig {
  return {
    ...next,
    inspector: old.inspector,
    maxPauseSeconds: Math.min(old.maxPauseSeconds, next.maxPauseSeconds),
    retentionDays: Math.max(old.retentionDays, next.retentionDays),
    snapshot: Object.freeze(minOf(old.snapshot as unknown as Record<string, number>, next.snapshot as unknown as Record<string, number>)) as unknown as SnapshotLimits,
    evaluation: Object.freeze({
      allow: old.evaluation.allow && next.evaluation.allow,
      denyIdentifiers: Object.freeze([...new Set([...old.evaluation.denyIdentifiers, ...next.evaluation.denyIdentifiers])]),
      maxResultBytes: Math.min(old.evaluation.maxResultBytes, next.evaluation.maxResultBytes),
    }),
    redaction: stricterRedaction(old.redaction, next.redaction),
  };
}

/**
 * What the policy in force allows of an issued grant at `nowMs`: nothing (and why), or a session until `expiresAtMs`,
 * which is the grant's expiry or sooner (the rule's maxDuration counted from the grant's issue, its hours from now).
 * The grant is judged as its holder was when it was issued (the groups it recorded).
 */
export function grantStanding(grant: Grant, config: LoupeConfig, nowMs: number): { allowed: false; rule: string; message: string } | { allowed: true; expiresAtMs: number } {
  if (!config.targets[grant.target]) return { allowed: false, rule: 'targets', message: `target ${grant.target} was removed from the policy` };
  const identity = { sub: grant.sub, name: grant.name, groups: grant.groups, issuer: grant.issuer ?? 'grant' };
  const requested = grant.expiresAt - grant.issuedAt;
  const decision = decideAccess(
    config,
    identity,
    {
      target: grant.target,
      mode: grant.mode,
      ...(grant.evaluation === 'v8' ? { evaluation: 'v8' as const } : {}),
      durationSeconds: requested,
      reason: grant.reason,
      ...(grant.ticket ? { ticket: grant.ticket } : {}),
    },
    new Date(nowMs),
  );
  if (!decision.allowed) return decision;
  const expiresAtMs = Math.min((grant.issuedAt + Math.min(requested, decision.maxDurationSeconds)) * 1000, decision.hoursEndMs ?? Infinity, grant.expiresAt * 1000);
  return { allowed: true, expiresAtMs };
}

/** A live session, as a reload sees it. */
export interface ReloadedSession {
  readonly grant: Grant;
  applyPolicy(target: TargetConfig, changes: { expiresAtMs?: number; why: string }): void;
  end(reason: 'policy'): Promise<unknown>;
}

/**
 * Puts each live session under the reloaded policy (`applied`, the old config with the reloadable sections of
 * the new one): it ends when the policy no longer allows its grant at all, and continues under the stricter of
 * its old and new target rules (and a shorter grant, when the new rule caps it) when either changed.
 */
export function reloadLiveSessions(
  sessions: Iterable<ReloadedSession>,
  old: LoupeConfig,
  applied: LoupeConfig,
  changed: readonly string[],
  source: string,
  clock: () => number,
): { sessionsEnded: number; sessionsNarrowed: number } {
  let sessionsEnded = 0;
  let sessionsNarrowed = 0;
  for (const session of sessions) {
    const grant = session.grant;
    const target = applied.targets[grant.target];
    const standing = grantStanding(grant, applied, clock());
    if (!standing.allowed) {
      sessionsEnded++;
      void session.end('policy');
      continue;
    }
    const oldTarget = old.targets[grant.target]!;
    const expiresAtMs = standing.expiresAtMs;
    const capped = expiresAtMs < grant.expiresAt * 1000;
    if (!changed.includes(`targets.${grant.target}`) && !capped) continue;
    sessionsNarrowed++;
    session.applyPolicy(stricterTarget(oldTarget, target!), {
      why: `policy reloaded from ${source}`,
      ...(capped ? { expiresAtMs } : {}),
    });
  }
  return { sessionsEnded, sessionsNarrowed };
}
