import type { AccessRule, ApprovalRequirement, Evaluation, LoupeConfig, Mode, TargetConfig } from '../config/types';
import type { Identity } from '../identity/verifyIdentity';
import { msLeftWithin, withinHours } from './hours';

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
  /** The evaluations some rule allows the caller: ['loupe'], or with 'v8' when one grants the privilege. */
  readonly evaluation: Evaluation[];
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
    const evaluation = [...new Set(rules.flatMap((r) => r.evaluation))].sort();
    const pattern = rules.find((r) => r.requireTicket)?.requireTicket;
    views.push({
      name: target.name,
      modes,
      evaluation,
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
  /** 'v8' asks for the privilege of V8 evaluation; absent means Loupe expressions. */
  readonly evaluation?: Evaluation;
  readonly durationSeconds: number;
  readonly reason: string;
  readonly ticket?: string;
}

export type AccessDecision =
  | {
      readonly allowed: true;
      readonly rule: string;
      /** From the decision's instant: the request's duration, capped by the rule's maxDuration and by the end of its hours. */
      readonly durationSeconds: number;
      readonly capped: boolean;
      /** The rule's maxDuration, counted from when a grant was issued. */
      readonly maxDurationSeconds: number;
      /** When the rule's hours stop allowing, if that comes before the request's duration runs out. */
      readonly hoursEndMs?: number;
      readonly requireApproval?: ApprovalRequirement;
    }
  | { readonly allowed: false; readonly rule: string; readonly message: string };

const ruleName = (target: string, index: number, rule: AccessRule) => `targets.${target}.access[${index}] (role ${rule.role})`;

type RuleCheck = { readonly allows: true } | { readonly allows: false; readonly message: string; readonly weight: number };

/** Whether one rule allows the request; a refusal's weight ranks how close the rule came (for the message shown). */
function checkRule(rule: AccessRule, request: GrantRequest, at: Date): RuleCheck {
  if (!rule.modes.includes(request.mode)) return { allows: false, weight: 0, message: `mode "${request.mode}" is not allowed (allowed: ${rule.modes.join(', ')})` };
  const evaluation = request.evaluation ?? 'loupe';
  if (!rule.evaluation.includes(evaluation)) {
    return {
      allows: false,
      weight: 0.5,
      message:
        evaluation === 'v8'
          ? 'the rule does not allow V8 evaluation (evaluation: v8); it allows Loupe expressions only'
          : `evaluation "${evaluation}" is not allowed (allowed: ${rule.evaluation.join(', ')})`,
    };
  }
  // Less than a second of the hours left is none: the grant would end as it is issued.
  if (rule.hours && (!withinHours(rule.hours, at) || msLeftWithin(rule.hours, at, 1000) < 1000))
    return { allows: false, weight: 1, message: `outside the rule's hours (${rule.hours.text}; it is ${wallTime(at, rule.hours.timeZone)} there)` };
  if (rule.requireTicket && !(request.ticket && rule.requireTicket.test(request.ticket))) {
    return {
      allows: false,
      weight: 2,
      message: request.ticket ? `ticket "${request.ticket}" does not match ${rule.requireTicket.source}` : `a ticket matching ${rule.requireTicket.source} is required`,
    };
  }
  return { allows: true };
}

export interface RuleTrace {
  readonly rule: string;
  readonly applies: boolean;
  readonly outcome: 'allows' | 'refuses' | 'not your role';
  readonly message?: string;
}

/** Decides a grant request against the target's access rules; the first rule that fully allows wins. */
export function decideAccess(config: LoupeConfig, identity: Identity, request: GrantRequest, at: Date = new Date()): AccessDecision {
  return explainAccess(config, identity, request, at).decision;
}

/** The decision with every rule of the target and what it said, for `loupe policy explain`. */
export function explainAccess(config: LoupeConfig, identity: Identity, request: GrantRequest, at: Date = new Date()): { decision: AccessDecision; roles: string[]; trace: RuleTrace[] } {
  const roles = rolesOf(config, identity);
  const target = config.targets[request.target];
  if (!target) return { decision: { allowed: false, rule: 'targets', message: `no target named "${request.target}"` }, roles: [...roles], trace: [] };
  const trace: RuleTrace[] = [];
  let decision: AccessDecision | undefined;
  let refusal: { decision: AccessDecision; weight: number } | undefined;
  target.access.forEach((rule, index) => {
    const name = ruleName(target.name, index, rule);
    if (!roles.has(rule.role)) {
      trace.push({ rule: name, applies: false, outcome: 'not your role' });
      return;
    }
    const check = checkRule(rule, request, at);
    if (check.allows) {
      const ruleSeconds = Math.min(request.durationSeconds, rule.maxDurationSeconds);
      // A grant never outlives the hours that allowed it: it ends where they do.
      const hoursLeftSeconds = rule.hours ? Math.floor(msLeftWithin(rule.hours, at, ruleSeconds * 1000) / 1000) : ruleSeconds;
      const durationSeconds = Math.min(ruleSeconds, hoursLeftSeconds);
      const hoursEnd = hoursLeftSeconds < ruleSeconds ? ` (until the rule's hours end, ${hoursLeftSeconds} s from now)` : '';
      trace.push({ rule: name, applies: true, outcome: 'allows', message: `up to ${rule.maxDurationSeconds} s${hoursEnd}` });
      decision ??= {
        allowed: true,
        rule: name,
        durationSeconds,
        capped: durationSeconds < request.durationSeconds,
        maxDurationSeconds: rule.maxDurationSeconds,
        ...(hoursEnd ? { hoursEndMs: at.getTime() + hoursLeftSeconds * 1000 } : {}),
        ...(rule.requireApproval ? { requireApproval: rule.requireApproval } : {}),
      };
    } else {
      trace.push({ rule: name, applies: true, outcome: 'refuses', message: check.message });
      if (!refusal || check.weight >= refusal.weight) refusal = { decision: { allowed: false, rule: name, message: check.message }, weight: check.weight };
    }
  });
  decision ??= refusal?.decision ?? { allowed: false, rule: `targets.${target.name}.access`, message: `none of your roles (${[...roles].join(', ') || 'none'}) may attach to ${target.name}` };
  return { decision, roles: [...roles].sort(), trace };
}

/** "Sat 21:04" in a time zone, for refusals that say why the hours did not match. */
function wallTime(at: Date, timeZone: string): string {
  return new Intl.DateTimeFormat('en-GB', { timeZone, weekday: 'short', hour: '2-digit', minute: '2-digit', hourCycle: 'h23' }).format(at).replace(',', '');
}
