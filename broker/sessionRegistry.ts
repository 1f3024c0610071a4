import { randomBytes, randomUUID } from 'node:crypto';
import type WebSocket from 'ws';
import type { AuditTrail } from './audit/auditTrail';
import type { StreamContext } from './audit/events';
import type { LoupeConfig } from './config/types';
import { LoupeError } from './errors';
import type { Grant, GrantClaims, GrantStore } from './grants/grantStore';
import { DebugSession, type EndReason } from './session/debugSession';
import { connectInspector, type TargetLink } from './session/targetLink';
import { stateRefusal, type ClaimAnswer, type StateBackend } from './state/stateBackend';
import { grantStanding } from './policy/reload';

const attachTicketSeconds = 60;

export interface SessionRegistryOptions {
  /** The policy in force, taken fresh each time (a reload replaces it). */
  config(): LoupeConfig;
  readonly grants: GrantStore;
  /** Where tickets and the one-live-session-per-grant slot are kept (shared by every replica on PostgreSQL). */
  readonly state: StateBackend;
  /** This replica's name in the registry of live sessions. */
  readonly replica: string;
  /** How long a claim on a live session lasts unrenewed. */
  leaseMs(): number;
  readonly audit: AuditTrail;
  readonly clock: () => number;
  /** Throws audit_unavailable while the audit trail has failed closed. */
  assertAuditAccepting(what: string): void;
  reportFault(where: string, err: unknown, detail: Record<string, unknown>): void;
  /** The broker's log: why a session ended on its audit trail. */
  log?(line: string): void;
}

/** The live debug sessions, at most one per grant, and the way in: attach tickets, authentication, the relay's start. */
export class SessionRegistry {
  private readonly sessions = new Map<string, DebugSession>();
  /** Grants whose session is still connecting to the target, with the session id their claim holds the slot for. */
  private readonly attaching = new Map<string, string>();
  /**
   * Connections to a target opened while the attach's claim is read (the shared registry is a database round trip
   * away), by grant: attach takes it, or it is closed unused. Nothing is sent on one before its claim holds.
   */
  private readonly linking = new Map<string, { inspector: string; link: Promise<TargetLink> }>();

  constructor(private readonly options: SessionRegistryOptions) {}

  get size(): number {
    return this.sessions.size;
  }

  get(sessionId: string): DebugSession | undefined {
    return this.sessions.get(sessionId);
  }

  get live(): DebugSession[] {
    return [...this.sessions.values()];
  }

  ids(): Set<string> {
    return new Set(this.sessions.keys());
  }

  ofGrant(grantId: string): DebugSession | undefined {
    for (const session of this.sessions.values()) if (session.grant.grantId === grantId) return session;
    return undefined;
  }

  /** A single-use credential for a grant the caller may use (checked by the broker), valid for a minute. */
  async issueTicket(grantId: string): Promise<{ ticket: string; expiresAt: number }> {
    const ticket = randomBytes(24).toString('base64url');
    const expiresAt = this.options.clock() + attachTicketSeconds * 1000;
    await this.options.state.putTicket(ticket, grantId, expiresAt).catch((err: unknown) => {
      throw stateRefusal(err, 'attach tickets are');
    });
    return { ticket, expiresAt };
  }

  /** Authenticates an attach: the grant token in the Authorization header, or a single-use ticket. */
  async authenticate(grantId: string, authorization: string | undefined, ticket: string | null): Promise<Grant> {
    const { grants, clock, state } = this.options;
    let grant: Grant | undefined;
    let claims: GrantClaims | undefined;
    try {
      if (ticket !== null) {
        // Single use, even when it fails below, and even when two replicas race for it: the backend hands it out once.
        const entry = ticket.length <= 200 ? await state.redeemTicket(ticket, clock()) : undefined;
        if (!entry || entry.grantId !== grantId || entry.expiresAtMs <= clock()) throw new LoupeError('token_invalid', 'attach ticket is unknown, used or expired; open a new one');
        const found = await grants.get(grantId);
        if (!found) throw new LoupeError('token_invalid', 'attach ticket is unknown, used or expired; open a new one');
        grant = found;
        grants.assertUsable(grant);
      } else {
        const match = /^Bearer (\S+)$/i.exec(authorization ?? '');
        if (!match) throw new LoupeError('unauthenticated', 'attach needs "Authorization: Bearer <grant token>" or a ?ticket= from POST /v1/grants/:id/tickets');
        // The signature and claims first (on this thread); the grant's stored state is read below, with the claim.
        claims = await grants.verifyTokenClaims(match[1]!, grantId);
      }
    } catch (err) {
      throw stateRefusal(err, 'attaches are');
    }
    this.options.assertAuditAccepting('attaching');
    if (this.attaching.has(grantId) || this.ofGrant(grantId)) {
      throw new LoupeError('session_busy', `grant ${grantId} already has a live session; end it first`);
    }
    const sessionId = randomUUID();
    this.attaching.set(grantId, sessionId);
    // The token already names a target this grant is for: its connection opens while the claim is decided.
    this.openLink(grantId, grant?.target ?? claims?.target);
    try {
      // The slot is taken in the shared registry before anything is sent to the target: a second attach through
      // another replica is refused while this session lives (or until its lease runs out).
      const slot = {
        sessionId,
        grantId,
        replica: this.options.replica,
        user: grant?.sub ?? claims!.sub,
        target: grant?.target ?? claims!.target ?? '',
        nowMs: clock(),
        leaseMs: this.options.leaseMs(),
      };
      let claim: ClaimAnswer;
      if (grant) claim = await state.claimSession(slot);
      else {
        // The grant's revocation is read in the same step as the claim (one round trip to a database, not two).
        const answer = await state.claimSessionOfGrant(slot);
        try {
          grant = grants.grantBehind(claims!, answer.grant);
        } catch (err) {
          // A slot taken for a grant that is no longer usable (expired just now) is released before the refusal.
          if (answer.claim?.claimed) await state.endSession(sessionId, { by: this.options.replica, reason: 'attach_refused', atMs: clock() }).catch(() => undefined);
          throw err;
        }
        claim = answer.claim!;
      }
      if (!claim.claimed) {
        const where = claim.holder.replica === this.options.replica ? '' : ` through broker replica ${claim.holder.replica}`;
        throw new LoupeError('session_busy', `grant ${grantId} already has a live session${where} (since ${new Date(claim.holder.startedAtMs).toISOString()}); end it first`);
      }
    } catch (err) {
      this.attaching.delete(grantId);
      this.closeLink(grantId);
      throw stateRefusal(err, 'attaches are');
    }
    return grant;
  }

  private openLink(grantId: string, targetName: string | undefined): void {
    const target = targetName === undefined ? undefined : this.options.config().targets[targetName];
    if (!target) return;
    const link = connectInspector(target.inspector);
    link.catch(() => undefined); // an unreachable target is reported by attach, which awaits it
    this.linking.set(grantId, { inspector: target.inspector, link });
  }

  /** Closes a connection opened ahead of a claim that was refused (or of an attach that never came). */
  private closeLink(grantId: string): void {
    const early = this.linking.get(grantId);
    this.linking.delete(grantId);
    early?.link.then(
      (l) => l.socket.close(),
      () => undefined,
    );
  }

  /** The connection opened during authentication if it goes where the policy now says, else a new one. */
  private takeLink(grantId: string, inspector: string): Promise<TargetLink> {
    const early = this.linking.get(grantId);
    if (early?.inspector === inspector) {
      this.linking.delete(grantId);
      return early.link;
    }
    this.closeLink(grantId);
    return connectInspector(inspector);
  }

  /** Frees a claim whose session never started (or has ended) in the shared registry; a failure leaves it to the lease. */
  private release(sessionId: string, reason: string): void {
    void this.options.state.endSession(sessionId, { by: this.options.replica, reason, atMs: this.options.clock() }).catch(() => undefined);
  }

  /**
   * Connects to the target, then completes the client's upgrade, then relays. Connecting first means an
   * unreachable target is an HTTP error on the upgrade, not a socket that opens and dies.
   * Releases the slot that authenticate reserved, whatever happens.
   */
  async attach(grant: Grant, upgrade: () => Promise<WebSocket>): Promise<DebugSession> {
    const { audit, clock } = this.options;
    const sessionId = this.attaching.get(grant.grantId);
    if (sessionId === undefined) {
      this.closeLink(grant.grantId);
      throw new LoupeError('internal', `attach of grant ${grant.grantId} without authentication`);
    }
    let started = false;
    try {
      const config = this.options.config();
      const target = config.targets[grant.target];
      if (!target) throw new LoupeError('target_unreachable', `target ${grant.target} is no longer in the policy`);
      // A grant issued before a policy reload starts its session only as the policy now allows, as a live one continues.
      const standing = grantStanding(grant, config, clock());
      if (!standing.allowed) throw new LoupeError('policy_refused', `grant ${grant.grantId} is no longer allowed by the policy: ${standing.message}`, { rule: standing.rule });
      if (standing.expiresAtMs < grant.expiresAt * 1000) grant = { ...grant, expiresAt: Math.floor(standing.expiresAtMs / 1000) };
      const link = await this.takeLink(grant.grantId, target.inspector);
      let client: WebSocket;
      try {
        client = await upgrade();
      } catch (err) {
        link.socket.close();
        throw err;
      }
      try {
        this.options.grants.assertUsable(grant); // revoked or expired while we were connecting
      } catch (err) {
        link.socket.close();
        client.close(4002, (err as Error).message.slice(0, 120));
        throw err;
      }
      const context: StreamContext = {
        stream: sessionId,
        kind: 'session',
        grant: grant.grantId,
        actor: { sub: grant.sub, name: grant.name, groups: grant.groups },
        target: grant.target,
        mode: grant.mode,
        reason: grant.reason,
        ...(grant.ticket ? { ticket: grant.ticket } : {}),
        startedAt: new Date(clock()).toISOString(),
        retentionDays: target.retentionDays,
      };
      const { stream, opened } = audit.openStream(context);
      const session = new DebugSession({
        sessionId,
        grant,
        target,
        client,
        targetSocket: link.socket,
        targetUrl: link.url,
        audit: stream,
        auditAccepting: () => audit.accepting,
        limits: this.options.config().limits,
        clock,
        onEnded: (s) => {
          this.sessions.delete(s.sessionId);
          this.release(s.sessionId, s.endReason ?? 'ended');
          // Every session ends on a failed-closed trail together (logged there); one that ended alone on a refused record says which.
          if (s.endReason === 'audit_failure' && s.endCause !== undefined) this.options.log?.(`audit: session ${s.sessionId} ended: the audit trail did not take its record: ${s.endCause}`);
        },
        onFault: (s, fault, err) => this.options.reportFault(fault.where, err, { session: s.sessionId, target: grant.target, user: grant.sub, frameSha256: fault.frameSha256, bytes: fault.bytes }),
      });
      this.sessions.set(sessionId, session);
      started = true;
      const starting = session.start();
      try {
        await opened;
        await starting;
      } catch (err) {
        this.sessions.delete(sessionId);
        void session.end('audit_failure');
        link.socket.close();
        client.close(4005, 'audit trail unavailable: the session was not started');
        throw new LoupeError('audit_unavailable', `the audit trail is unavailable: cannot record the session (${(err as Error).message}); retry later`);
      }
      // A revocation through another replica while this one connected found no session to end: read the grant
      // again now that the session is registered (a later revocation's notice finds it).
      const now = await this.options.grants.get(grant.grantId).catch(() => undefined);
      if (now?.revokedAt !== undefined) void session.end('revoked');
      return session;
    } finally {
      this.attaching.delete(grant.grantId);
      this.closeLink(grant.grantId);
      if (!started) this.release(sessionId, 'attach_failed');
    }
  }

  /**
   * Keeps this replica's claims alive and learns of sessions ended elsewhere; ends locally those it no longer holds.
   * Throws (state_unavailable) when the backend cannot be reached: the caller bounds how long sessions go on.
   */
  async renewLeases(): Promise<void> {
    const ids = [...this.sessions.keys()];
    const gone = await this.options.state.renewLeases(this.options.replica, ids, this.options.clock(), this.options.leaseMs());
    // Another replica ended these on lease expiry while this one could not renew: they are not ours to run.
    for (const id of gone) void this.sessions.get(id)?.end('state_unavailable');
  }

  async endAll(reason: EndReason): Promise<void> {
    await Promise.all([...this.sessions.values()].map((s) => s.end(reason)));
  }
}
