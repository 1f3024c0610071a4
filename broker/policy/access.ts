import type { AccessRule, LoupeConfig, Mode, TargetConfig } from '../config/types';
import type { Identity } from '../identity/verifyIdentity';

/** The roles an identity holds: a role matches when one of its groups or users does. */
export function rolesOf(config: LoupeConfig, identity: Identity): Set<string> {
  const roles = new Set<string>();
  for (const [name, role] of Object.entries(config.roles)) {
    if (role.users.includes(identity.sub) || role.groups.some((g) => identity.groups.includes(g))) roles.add(name);
  }
  return roles;
}

export const isAdmin = (config: LoupeConfig, roles: Set<string>) => config.admins.some((r) => roles.has(r));
export const isOwner = (target: TargetConfig, roles: Set<string>) => target.owners.some((r) => roles.has(r));

export interface TargetView {
  readonly name: string;
  readonly modes: Mode[];
  readonly maxDurationSeconds: number;
  readonly ticketRequired: boolean;
  readonly ticketPattern?: string;
}

/** What the caller may do on each target, for `GET /v1/targets`. */
export function visibleTargets(config: LoupeConfig, identity: Identity): TargetView[] {
  const roles = rolesOf(config, identity);
  const views: TargetView[] = [];
  for (const target of Object.values(config.targets)) {
    const rules = target.access.filter((r) => roles.has(r.role));
    if (rules.length === 0) continue;
    const modes = [...new Set(rules.flatMap((r) => r.modes))].sort();
    const pattern = rules.find((r) => r.requireTicket)?.requireTicket;
    views.push({
      name: target.name,
      modes,
      maxDurationSeconds: Math.max(...rules.map((r) => r.maxDurationSeconds)),
      ticketRequired: rules.every((r) => r.requireTicket !== undefined),
      ...(pattern ? { ticketPattern: pattern.source } : {}),
    });
  }
  return views;
}

export interface GrantRequest {
  readonly target: string;
  readonly mode: Mode;
  readonly durationSeconds: number;
  readonly reason: string;
  readonly ticket?: string;
}

export type AccessDecision =
  | { readonly allowed: true; readonly rule: string; readonly durationSeconds: number; readonly capped: boolean }
  | { readonly allowed: false; readonly rule: string; readonly message: string };

const ruleName = (target: string, index: number, rule: AccessRule) => `targets.${target}.access[${index}] (role ${rule.role})`;

/** Decides a grant request against the target's access rules; the first rule that fully allows wins. */
export function decideAccess(config: LoupeConfig, identity: Identity, request: GrantRequest): AccessDecision {
  const target = config.targets[request.target];
  if (!target) return { allowed: false, rule: 'targets', message: `no target named "${request.target}"` };
  const roles = rolesOf(config, identity);
  const matching = target.access.map((rule, index) => ({ rule, index })).filter(({ rule }) => roles.has(rule.role));
  if (matching.length === 0) {
    return { allowed: false, rule: `targets.${target.name}.access`, message: `none of your roles (${[...roles].join(', ') || 'none'}) may attach to ${target.name}` };
  }
  let refusal: AccessDecision | undefined;
  for (const { rule, index } of matching) {
    const name = ruleName(target.name, index, rule);
    if (!rule.modes.includes(request.mode)) {
      refusal ??= { allowed: false, rule: name, message: `mode "${request.mode}" is not allowed (allowed: ${rule.modes.join(', ')})` };
      continue;
    }
    if (rule.requireTicket && !(request.ticket && rule.requireTicket.test(request.ticket))) {
      refusal = { allowed: false, rule: name, message: request.ticket ? `ticket "${request.ticket}" does not match ${rule.requireTicket.source}` : `a ticket matching ${rule.requireTicket.source} is required` };
      continue;
    }
    const durationSeconds = Math.min(request.durationSeconds, rule.maxDurationSeconds);
    return { allowed: true, rule: name, durationSeconds, capped: durationSeconds < request.durationSeconds };
  }
  return refusal!;
}
