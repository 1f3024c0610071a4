import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import type { GrantAnswer } from '../../common/http';
import type { EventType } from '../audit/events';
import type { ApprovalRequirement, LoupeConfig, Mode } from '../config/types';
import { formatDuration } from '../config/duration';
import { LoupeError } from '../errors';
import { parseDecisionComment } from '../http/requests';
import type { Approver } from '../grants/grantStore';
import type { Identity } from '../identity/verifyIdentity';
import { NdjsonLog } from '../ndjsonLog';
import { decideAccess, isAdmin, isOwner, rolesOf, type AccessDecision, type GrantRequest } from './access';

/**
 * The two-person rule. A grant request under a rule with `requireApproval` (or for a user an alert with
 * `action: require-approval` put on hold) becomes an access request: approvers holding the rule's role,
 * never the requester, approve or deny it; once `minApprovals` distinct approvers said yes, the requester
 * collects the grant. Every step is recorded in the grant stream before it takes effect, and appended to
 * `stateDir/requests.ndjson` so requests and holds survive a restart. Time comes from the broker's clock.
 */

export type { AccessRequest, AccessRequestView, ApprovalCause, ApprovalHooks, RequestDecision, RequestStatus } from './approvalTypes';
import type { AccessRequest, AccessRequestView, ApprovalCause, ApprovalHooks, Hold, RequestDecision, RequestLogLine, RequestStatus } from './approvalTypes';

const holdRequirement = (owners: readonly string[]): ApprovalRequirement => ({ approvers: owners, minApprovals: 1, expiresAfterSeconds: 3600 });
const sweepIntervalMs = 15_000;

const actorOf = (identity: Identity) => ({ sub: identity.sub, name: identity.name, groups: identity.groups });

export class AccessRequests {
  private readonly requests = new Map<string, AccessRequest>();
  /** user \0 target → the alert that put that user on hold there. */
  private readonly holds = new Map<string, Hold>();
  private readonly stateLog: NdjsonLog<RequestLogLine>;
  /** Every change runs alone: check, record, apply, so two approvals cannot race past a check. */
  private queue: Promise<unknown> = Promise.resolve();
  private sweeper: NodeJS.Timeout | undefined;

  constructor(
    private config: LoupeConfig,
    private readonly clock: () => number,
    private readonly hooks: ApprovalHooks,
  ) {
    this.stateLog = new NdjsonLog(join(config.stateDir, 'requests.ndjson'));
    this.stateLog.replay((entry) => this.apply(entry));
  }

  /** A policy reload: approvers and requirements come from the new policy from now on. */
  useConfig(config: LoupeConfig): void {
    this.config = config;
  }

  /** Expires requests on time even when nobody asks about them (the expiry is an audit event). */
  start(): void {
    this.sweeper = setInterval(() => void this.exclusive(() => this.expireDue()).catch((err: Error) => this.hooks.log(`access requests: cannot record an expiry: ${err.message}`)), sweepIntervalMs);
    this.sweeper.unref();
  }

  stop(): void {
    clearInterval(this.sweeper);
  }

  private apply(entry: RequestLogLine): void {
    if (entry.type === 'created') this.requests.set(entry.request.requestId, { ...entry.request, approvals: [...entry.request.approvals] });
    else if (entry.type === 'hold') this.holds.set(holdKey(entry.hold.user, entry.hold.target), entry.hold);
    else if (entry.type === 'hold_released') {
      const key = holdKey(entry.user, entry.target);
      if (this.holds.get(key)?.cause.alertId === entry.alertId) this.holds.delete(key);
    } else {
      const request = this.requests.get(entry.requestId);
      if (!request) return;
      if (entry.type === 'approved') {
        request.approvals.push(entry.by);
        request.status = entry.status;
        request.expiresAt = entry.expiresAt;
        if (entry.status === 'approved') request.approvedAt = entry.by.at;
      } else if (entry.type === 'denied') {
        request.status = 'denied';
        request.denial = entry.by;
        request.closedAt = entry.by.at;
      } else if (entry.type === 'collected') {
        request.status = 'collected';
        request.grantId = entry.grantId;
        request.closedAt = entry.at;
      } else {
        request.status = entry.type;
        request.closedAt = entry.at;
      }
    }
  }

  private commit(entry: RequestLogLine): void {
    this.stateLog.append(entry);
    this.apply(entry);
  }

  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => undefined);
    return run;
  }

  private now(): string {
    return new Date(this.clock()).toISOString();
  }

  /** Pending requests past their decide-by time and approved ones past their collect-by time expire. */
  private async expireDue(): Promise<void> {
    const now = this.clock();
    for (const request of this.requests.values()) {
      if ((request.status !== 'pending' && request.status !== 'approved') || Date.parse(request.expiresAt) > now) continue;
      const at = this.now();
      await this.hooks.record('request.expired', { ...this.describe(request), was: request.status, approvals: request.approvals.length, expiredAt: request.expiresAt });
      this.commit({ type: 'expired', requestId: request.requestId, at });
    }
  }

  /** The fields every request event carries, so each record reads on its own. */
  private describe(request: AccessRequest): Record<string, unknown> {
    return {
      requestId: request.requestId,
      target: request.target,
      mode: request.mode,
      ...(request.evaluation ? { evaluation: request.evaluation } : {}),
      requester: { sub: request.requester.sub, name: request.requester.name },
      rule: request.rule,
      approvers: request.approvers,
      minApprovals: request.minApprovals,
    };
  }

  /** An alert with action require-approval: the user's grant requests on the target wait for an owner until one is collected. */
  async hold(user: string, target: string, cause: ApprovalCause): Promise<void> {
    await this.exclusive(async () => {
      await this.hooks.record('request.approval_required', {
        user,
        target,
        alertId: cause.alertId,
        rule: cause.rule,
        message: cause.message,
        session: cause.session ?? null,
        approvers: this.config.targets[target]?.owners ?? [],
      });
      this.commit({ type: 'hold', hold: { user, target, cause } });
    });
  }

  /**
   * After the policy allowed a grant request: when its rule requires approval or an alert holds the user
   * on this target, creates the access request and returns it (202); otherwise undefined (grant directly).
   */
  async requestIfRequired(identity: Identity, request: GrantRequest, decision: Extract<AccessDecision, { allowed: true }>): Promise<AccessRequestView | undefined> {
    // Inside the queue: a hold an alert placed just before this request is seen by it.
    return this.exclusive(async () => {
      const hold = this.holds.get(holdKey(identity.sub, request.target));
      const requirement = decision.requireApproval ?? (hold ? holdRequirement(this.config.targets[request.target]!.owners) : undefined);
      if (!requirement) return undefined;
      await this.expireDue();
      const now = this.clock();
      const created: AccessRequest = {
        requestId: randomUUID(),
        requester: actorOf(identity),
        target: request.target,
        mode: request.mode,
        ...(request.evaluation === 'v8' ? { evaluation: 'v8' as const } : {}),
        durationSeconds: request.durationSeconds,
        reason: request.reason,
        ...(request.ticket ? { ticket: request.ticket } : {}),
        rule: decision.rule,
        approvers: requirement.approvers,
        minApprovals: requirement.minApprovals,
        expiresAfterSeconds: requirement.expiresAfterSeconds,
        ...(hold ? { cause: hold.cause } : {}),
        createdAt: new Date(now).toISOString(),
        status: 'pending',
        expiresAt: new Date(now + requirement.expiresAfterSeconds * 1000).toISOString(),
        approvals: [],
      };
      await this.hooks.record('request.created', {
        actor: actorOf(identity),
        ...this.describe(created),
        durationSeconds: created.durationSeconds,
        reason: created.reason,
        ticket: created.ticket ?? null,
        expiresAt: created.expiresAt,
        cause: created.cause ?? null,
      });
      this.commit({ type: 'created', request: created });
      this.hooks.log(`access request ${created.requestId} by ${identity.sub} on ${created.target} waits for ${created.minApprovals} approval(s) by ${created.approvers.join(', ')}`);
      return this.view(created);
    });
  }

  /** Pending requests the caller may decide: they hold an approver role and did not ask for it themselves. */
  async list(identity: Identity): Promise<AccessRequestView[]> {
    return this.exclusive(async () => {
      await this.expireDue();
      const roles = rolesOf(this.config, identity);
      return [...this.requests.values()]
        .filter((r) => r.status === 'pending' && r.requester.sub !== identity.sub && r.approvers.some((role) => roles.has(role)))
        .sort((a, b) => a.createdAt.localeCompare(b.createdAt))
        .map((r) => this.view(r));
    });
  }

  /** One request, for its requester, its approvers, the target's owners and admins. */
  async get(identity: Identity, requestId: string): Promise<AccessRequestView> {
    return this.exclusive(async () => {
      await this.expireDue();
      const request = this.find(requestId);
      const roles = rolesOf(this.config, identity);
      const target = this.config.targets[request.target];
      const allowed = request.requester.sub === identity.sub || request.approvers.some((r) => roles.has(r)) || isAdmin(this.config, roles) || (target !== undefined && isOwner(target, roles));
      if (!allowed) throw new LoupeError('forbidden', `request ${requestId} is visible to its requester, its approvers (${request.approvers.join(', ')}), the target's owners and admins`);
      return this.view(request);
    });
  }

  async approve(identity: Identity, requestId: string, body: unknown): Promise<AccessRequestView> {
    const comment = parseDecisionComment(body, 'approve');
    return this.decide(identity, requestId, 'approve', comment);
  }

  async deny(identity: Identity, requestId: string, body: unknown): Promise<AccessRequestView> {
    const comment = parseDecisionComment(body, 'deny');
    return this.decide(identity, requestId, 'deny', comment);
  }

  private decide(identity: Identity, requestId: string, action: 'approve' | 'deny', comment: string | undefined): Promise<AccessRequestView> {
    return this.exclusive(async () => {
      await this.expireDue();
      const request = this.find(requestId);
      try {
        this.checkDecider(identity, request, action);
      } catch (err) {
        const error = err as LoupeError;
        await this.hooks.record('request.decision_refused', { actor: actorOf(identity), ...this.describe(request), action, code: error.code, message: error.message });
        throw err;
      }
      const by: RequestDecision = { sub: identity.sub, name: identity.name, at: this.now(), ...(comment ? { comment } : {}) };
      if (action === 'deny') {
        await this.hooks.record('request.denied', { actor: actorOf(identity), ...this.describe(request), comment: comment! });
        this.commit({ type: 'denied', requestId, by });
      } else {
        const count = request.approvals.length + 1;
        const approved = count >= request.minApprovals;
        // Once approved, the requester has another expiresAfter to collect it.
        const expiresAt = approved ? new Date(this.clock() + request.expiresAfterSeconds * 1000).toISOString() : request.expiresAt;
        await this.hooks.record('request.approved', {
          actor: actorOf(identity),
          ...this.describe(request),
          comment: comment ?? null,
          approvals: count,
          status: approved ? 'approved' : 'pending',
          expiresAt,
        });
        this.commit({ type: 'approved', requestId, by, status: approved ? 'approved' : 'pending', expiresAt });
      }
      return this.view(request);
    });
  }

  /** Who may decide: a holder of an approver role who is not the requester, once, while the request is pending. */
  private checkDecider(identity: Identity, request: AccessRequest, action: 'approve' | 'deny'): void {
    if (request.requester.sub === identity.sub) {
      throw new LoupeError('self_approval', `you requested access ${request.requestId} yourself: someone else holding ${request.approvers.join(' or ')} must ${action} it (two-person rule)`);
    }
    const roles = rolesOf(this.config, identity);
    if (!request.approvers.some((r) => roles.has(r))) {
      throw new LoupeError('not_approver', `deciding request ${request.requestId} needs the role ${request.approvers.join(' or ')} (yours: ${[...roles].sort().join(', ') || 'none'})`);
    }
    if (request.status !== 'pending')
      throw new LoupeError('request_not_pending', `request ${request.requestId} is ${request.status}, not pending: ${this.statusText(request)}`, { status: request.status });
    if (action === 'approve' && request.approvals.some((a) => a.sub === identity.sub)) {
      throw new LoupeError(
        'request_not_pending',
        `you already approved request ${request.requestId}; it needs ${request.minApprovals - request.approvals.length} more approval(s) from other approvers`,
        { status: request.status },
      );
    }
  }

  /** The requester collects an approved request: the policy is asked again now, and the grant runs from now. */
  async collect(identity: Identity, requestId: string): Promise<GrantAnswer> {
    return this.exclusive(async () => {
      await this.expireDue();
      const request = this.find(requestId);
      if (request.requester.sub !== identity.sub) throw new LoupeError('forbidden', `only ${request.requester.sub}, who requested access ${requestId}, may collect its grant`);
      if (request.status !== 'approved') throw new LoupeError('request_not_approved', `request ${requestId} cannot be collected: ${this.statusText(request)}`, { status: request.status });
      const grantRequest: GrantRequest = {
        target: request.target,
        mode: request.mode,
        ...(request.evaluation ? { evaluation: request.evaluation } : {}),
        durationSeconds: request.durationSeconds,
        reason: request.reason,
        ...(request.ticket ? { ticket: request.ticket } : {}),
      };
      // Roles, hours or the rule may have changed since the request: the grant is what the policy allows now.
      const decision = decideAccess(this.config, identity, grantRequest, new Date(this.clock()));
      if (!decision.allowed) {
        await this.hooks.record('grant.refused', { actor: actorOf(identity), target: request.target, mode: request.mode, rule: decision.rule, message: decision.message, requestId });
        throw new LoupeError('policy_refused', `grant refused: ${decision.message}`, { rule: decision.rule });
      }
      const approvedBy: Approver[] = request.approvals.map((a) => ({ sub: a.sub, name: a.name, at: a.at }));
      const grant = await this.hooks.issueGrant(identity, grantRequest, decision, { requestId, approvedBy });
      const at = this.now();
      await this.hooks.record('request.collected', {
        actor: actorOf(identity),
        ...this.describe(request),
        grantId: grant.grantId,
        approvedBy,
        expiresAt: grant.expiresAt,
        releasesHold: request.cause?.alertId ?? null,
      });
      this.commit({ type: 'collected', requestId, grantId: grant.grantId, at });
      if (request.cause) this.commit({ type: 'hold_released', user: request.requester.sub, target: request.target, alertId: request.cause.alertId, requestId, at });
      return grant;
    });
  }

  /** The requester takes a request back (e.g. cancelled the wait in VS Code): approvers no longer see it. */
  async withdraw(identity: Identity, requestId: string): Promise<AccessRequestView> {
    return this.exclusive(async () => {
      await this.expireDue();
      const request = this.find(requestId);
      if (request.requester.sub !== identity.sub) throw new LoupeError('forbidden', `only ${request.requester.sub}, who requested access ${requestId}, may withdraw it`);
      if (request.status !== 'pending' && request.status !== 'approved')
        throw new LoupeError('request_not_pending', `request ${requestId} is ${request.status}: ${this.statusText(request)}`, { status: request.status });
      await this.hooks.record('request.withdrawn', { actor: actorOf(identity), ...this.describe(request), was: request.status });
      this.commit({ type: 'withdrawn', requestId, at: this.now() });
      return this.view(request);
    });
  }

  private find(requestId: string): AccessRequest {
    const request = this.requests.get(requestId);
    if (!request) throw new LoupeError('not_found', `no access request ${requestId}`);
    return request;
  }

  private statusText(request: AccessRequest): string {
    const who = (list: readonly RequestDecision[]) => list.map((d) => d.name || d.sub).join(', ');
    switch (request.status) {
      case 'pending': {
        const left = request.minApprovals - request.approvals.length;
        return `waiting for ${left} more approval${left === 1 ? '' : 's'} by ${request.approvers.join(' or ')}${request.approvals.length ? ` (approved so far by ${who(request.approvals)})` : ''}, until ${request.expiresAt}`;
      }
      case 'approved':
        return `approved by ${who(request.approvals)}; collect the grant before ${request.expiresAt}`;
      case 'denied':
        return `denied by ${request.denial!.name || request.denial!.sub}: ${request.denial!.comment}`;
      case 'expired':
        return `expired at ${request.expiresAt}${request.approvals.length ? ` with ${request.approvals.length} of ${request.minApprovals} approvals` : ' without a decision'}`;
      case 'collected':
        return `already collected as grant ${request.grantId}`;
      case 'withdrawn':
        return `withdrawn by its requester at ${request.closedAt}`;
    }
  }

  private view(request: AccessRequest): AccessRequestView {
    const why = request.cause
      ? `an alert (${request.cause.rule}: ${request.cause.message}) requires approval of your next grant on ${request.target}`
      : `${request.rule} requires ${request.minApprovals} approval${request.minApprovals === 1 ? '' : 's'} by ${request.approvers.join(' or ')} (within ${formatDuration(request.expiresAfterSeconds)})`;
    const privilege = request.evaluation === 'v8' ? '. It asks for V8 evaluation: app code could run in the target, and redaction is best-effort' : '';
    return {
      requestId: request.requestId,
      status: request.status,
      target: request.target,
      mode: request.mode,
      ...(request.evaluation ? { evaluation: request.evaluation } : {}),
      durationSeconds: request.durationSeconds,
      reason: request.reason,
      ...(request.ticket ? { ticket: request.ticket } : {}),
      requester: { sub: request.requester.sub, name: request.requester.name },
      rule: request.rule,
      approvers: request.approvers,
      minApprovals: request.minApprovals,
      approvals: [...request.approvals],
      ...(request.denial ? { denial: request.denial } : {}),
      ...(request.cause ? { cause: request.cause } : {}),
      createdAt: request.createdAt,
      expiresAt: request.expiresAt,
      ...(request.grantId ? { grantId: request.grantId } : {}),
      message: `${why}; ${this.statusText(request)}${privilege}`,
    };
  }
}

const holdKey = (user: string, target: string) => `${user}\u0000${target}`;
