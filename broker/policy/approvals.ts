import { randomUUID } from 'node:crypto';
import type { GrantAnswer } from '../../common/http';
import type { EventType } from '../audit/events';
import type { ApprovalRequirement, LoupeConfig, Mode } from '../config/types';
import { formatDuration } from '../config/duration';
import { LoupeError } from '../errors';
import { parseDecisionComment } from '../http/requests';
import type { Approver } from '../grants/grantStore';
import type { Identity } from '../identity/verifyIdentity';
import { decideAccess, isAdmin, isOwner, rolesOf, type AccessDecision, type GrantRequest } from './access';
import { sameUser } from '../grants/grantAccess';

/**
 * The two-person rule. A grant request under a rule with `requireApproval` (or for a user an alert with
 * `action: require-approval` put on hold) becomes an access request: approvers holding the rule's role,
 * never the requester, approve or deny it; once `minApprovals` distinct approvers said yes, the requester
 * collects the grant. Requests, approvals and holds are kept by the state backend (the state directory, or
 * PostgreSQL shared by every replica), which settles races: an approver counts once, a request closes once, two
 * approvals arriving on two replicas at once count exactly twice. A creation or hold is recorded in the grant stream
 * before it is stored; a decision is recorded once the backend took it (so the record says what counted), and the
 * grant a collection issues is recorded before the requester gets it. Time comes from the broker's clock.
 */

export type { AccessRequest, AccessRequestView, ApprovalCause, ApprovalHooks, RequestDecision, RequestStatus } from './approvalTypes';
import type { AccessRequest, AccessRequestView, ApprovalCause, ApprovalHooks, RequestDecision } from './approvalTypes';
import { stateRefusal, type StateBackend } from '../state/stateBackend';

const holdRequirement = (owners: readonly string[]): ApprovalRequirement => ({ approvers: owners, minApprovals: 1, expiresAfterSeconds: 3600 });
const sweepIntervalMs = 15_000;

const actorOf = (identity: Identity) => ({ sub: identity.sub, name: identity.name, groups: identity.groups });

export class AccessRequests {
  /** Every change of this replica runs alone (other replicas are kept in line by the backend). */
  private queue: Promise<unknown> = Promise.resolve();
  private sweeper: NodeJS.Timeout | undefined;

  constructor(
    private config: LoupeConfig,
    private readonly clock: () => number,
    private readonly hooks: ApprovalHooks,
    private readonly state: StateBackend,
  ) {}

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

  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const guarded = () =>
      fn().catch((err: unknown) => {
        throw stateRefusal(err, 'access requests are');
      });
    const run = this.queue.then(guarded, guarded);
    this.queue = run.catch(() => undefined);
    return run;
  }

  private now(): string {
    return new Date(this.clock()).toISOString();
  }

  /** Pending requests past their decide-by time and approved ones past their collect-by time expire. */
  private async expireDue(): Promise<void> {
    const now = this.clock();
    for (const request of await this.state.listRequests(['pending', 'approved'])) {
      if (Date.parse(request.expiresAt) > now) continue;
      // Whichever replica closes it records it, once.
      if (!(await this.state.closeRequest(request.requestId, [request.status], { status: 'expired', at: this.now() }))) continue;
      await this.hooks.record('request.expired', { ...this.describe(request), was: request.status, approvals: request.approvals.length, expiredAt: request.expiresAt });
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
      await this.state.putHold({ user, target, cause });
    });
  }

  /**
   * After the policy allowed a grant request: when its rule requires approval or an alert holds the user
   * on this target, creates the access request and returns it (202); otherwise undefined (grant directly).
   */
  async requestIfRequired(identity: Identity, request: GrantRequest, decision: Extract<AccessDecision, { allowed: true }>): Promise<AccessRequestView | undefined> {
    // Inside the queue: a hold an alert placed just before this request is seen by it.
    return this.exclusive(async () => {
      const hold = await this.state.getHold(identity.sub, request.target);
      const requirement = decision.requireApproval ?? (hold ? holdRequirement(this.config.targets[request.target]!.owners) : undefined);
      if (!requirement) return undefined;
      await this.expireDue();
      const now = this.clock();
      const created: AccessRequest = {
        requestId: randomUUID(),
        requester: { ...actorOf(identity), issuer: identity.issuer },
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
      await this.state.createRequest(created);
      this.hooks.log(`access request ${created.requestId} by ${identity.sub} on ${created.target} waits for ${created.minApprovals} approval(s) by ${created.approvers.join(', ')}`);
      return this.view(created);
    });
  }

  /** Pending requests the caller may decide: they hold an approver role and did not ask for it themselves. */
  async list(identity: Identity): Promise<AccessRequestView[]> {
    return this.exclusive(async () => {
      await this.expireDue();
      const roles = rolesOf(this.config, identity);
      return (await this.state.listRequests(['pending']))
        .filter((r) => r.requester.sub !== identity.sub && r.approvers.some((role) => roles.has(role)))
        .sort((a, b) => a.createdAt.localeCompare(b.createdAt))
        .map((r) => this.view(r));
    });
  }

  /** One request, for its requester, its approvers, the target's owners and admins. */
  async get(identity: Identity, requestId: string): Promise<AccessRequestView> {
    return this.exclusive(async () => {
      await this.expireDue();
      const request = await this.find(requestId);
      const roles = rolesOf(this.config, identity);
      const target = this.config.targets[request.target];
      const allowed = sameUser(request.requester, identity) || request.approvers.some((r) => roles.has(r)) || isAdmin(this.config, roles) || (target !== undefined && isOwner(target, roles));
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
      const refused = async (request: AccessRequest, err: unknown) => {
        const error = err as LoupeError;
        await this.hooks.record('request.decision_refused', { actor: actorOf(identity), ...this.describe(request), action, code: error.code, message: error.message });
        return err;
      };
      const request = await this.find(requestId);
      try {
        this.checkDecider(identity, request, action);
      } catch (err) {
        throw await refused(request, err);
      }
      const by: RequestDecision = { sub: identity.sub, name: identity.name, at: this.now(), ...(comment ? { comment } : {}) };
      // Another replica may have decided it since it was read: the backend's answer is what counts.
      const lostRace = async () => {
        const now = await this.find(requestId);
        try {
          this.checkDecider(identity, now, action);
        } catch (err) {
          throw await refused(now, err);
        }
        return new LoupeError('request_not_pending', `request ${requestId} changed while you decided it: ${this.statusText(now)}`, { status: now.status });
      };
      if (action === 'deny') {
        const denied = await this.state.closeRequest(requestId, ['pending'], { status: 'denied', denial: by, at: by.at });
        if (!denied) throw await lostRace();
        await this.hooks.record('request.denied', { actor: actorOf(identity), ...this.describe(denied), comment: comment! });
        return this.view(denied);
      }
      // Once approved, the requester has another expiresAfter to collect it.
      const collectBy = new Date(this.clock() + request.expiresAfterSeconds * 1000).toISOString();
      const { added, request: after } = await this.state.addApproval(requestId, by, collectBy);
      if (!added || !after) throw await lostRace();
      const count = after.approvals.findIndex((a) => a.sub === identity.sub) + 1;
      const approved = count >= after.minApprovals;
      await this.hooks.record('request.approved', {
        actor: actorOf(identity),
        ...this.describe(after),
        comment: comment ?? null,
        approvals: count,
        status: approved ? 'approved' : 'pending',
        expiresAt: approved ? collectBy : request.expiresAt,
      });
      return this.view(after);
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
      const request = await this.find(requestId);
      if (!sameUser(request.requester, identity)) throw new LoupeError('forbidden', `only ${request.requester.sub}, who requested access ${requestId}, may collect its grant`);
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
      // The approvals too must satisfy the policy as it is now: a requirement made stricter since (more approvals, other
      // approvers) is not met by the ones gathered under the old one.
      const required = decision.requireApproval;
      if (required && (request.approvals.length < required.minApprovals || !required.approvers.some((role) => request.approvers.includes(role)))) {
        const message = `${decision.rule} now requires ${required.minApprovals} approval${required.minApprovals === 1 ? '' : 's'} by ${required.approvers.join(' or ')}, and it has ${request.approvals.length} by ${request.approvers.join(' or ')}; ask for access again`;
        await this.hooks.record('grant.refused', { actor: actorOf(identity), target: request.target, mode: request.mode, rule: decision.rule, message, requestId });
        throw new LoupeError('request_not_approved', `request ${requestId} cannot be collected: ${message}`, { status: request.status });
      }
      const approvedBy: Approver[] = request.approvals.map((a) => ({ sub: a.sub, name: a.name, at: a.at }));
      const grant = await this.hooks.issueGrant(identity, grantRequest, decision, { requestId, approvedBy });
      const at = this.now();
      // Collected once: a collection that lost the race to another replica takes its grant back.
      if (!(await this.state.closeRequest(requestId, ['approved'], { status: 'collected', grantId: grant.grantId, at }))) {
        await this.hooks.discardGrant(grant.grantId, `request ${requestId} was collected through another broker replica at the same moment`);
        const now = await this.find(requestId);
        throw new LoupeError('request_not_approved', `request ${requestId} cannot be collected: ${this.statusText(now)}`, { status: now.status });
      }
      await this.hooks.record('request.collected', {
        actor: actorOf(identity),
        ...this.describe(request),
        grantId: grant.grantId,
        approvedBy,
        expiresAt: grant.expiresAt,
        releasesHold: request.cause?.alertId ?? null,
      });
      if (request.cause) await this.state.releaseHold(request.requester.sub, request.target, request.cause.alertId);
      return grant;
    });
  }

  /** The requester takes a request back (e.g. cancelled the wait in VS Code): approvers no longer see it. */
  async withdraw(identity: Identity, requestId: string): Promise<AccessRequestView> {
    return this.exclusive(async () => {
      await this.expireDue();
      const request = await this.find(requestId);
      if (!sameUser(request.requester, identity)) throw new LoupeError('forbidden', `only ${request.requester.sub}, who requested access ${requestId}, may withdraw it`);
      const notOpen = (r: AccessRequest) => new LoupeError('request_not_pending', `request ${requestId} is ${r.status}: ${this.statusText(r)}`, { status: r.status });
      if (request.status !== 'pending' && request.status !== 'approved') throw notOpen(request);
      const withdrawn = await this.state.closeRequest(requestId, ['pending', 'approved'], { status: 'withdrawn', at: this.now() });
      if (!withdrawn) throw notOpen(await this.find(requestId));
      await this.hooks.record('request.withdrawn', { actor: actorOf(identity), ...this.describe(request), was: request.status });
      return this.view(withdrawn);
    });
  }

  private async find(requestId: string): Promise<AccessRequest> {
    const request = await this.state.getRequest(requestId);
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
