import type { LoupeConfig, SnapshotLimits, TargetConfig } from '../config/types';
import { compileRedaction, type RedactionPolicy } from './redact';

/**
 * Policy reload: new grants follow the new file; a live session keeps running under the stricter of the rules
 * it started with and the new ones, so an edit can only narrow what an attached debugger may do.
 */

/** Sections a reload applies; the rest (listener, state, identity, audit store, alert sinks) need a restart. */
export const reloadableSections = ['roles', 'admins', 'auditors', 'targets'] as const;
const restartSections = ['server', 'stateDir', 'limits', 'identity', 'audit', 'alerting'] as const;

const canonical = (value: unknown) =>
  JSON.stringify(value, (_key, v: unknown) => (v instanceof RegExp ? `/${v.source}/${v.flags}` : v instanceof Set ? [...(v as Set<unknown>)].sort() : v));

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
  return compileRedaction([...a.names, ...b.names], patterns);
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
