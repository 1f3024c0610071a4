import { randomBytes, randomUUID } from 'node:crypto';
import type WebSocket from 'ws';
import type { AuditTrail } from './audit/auditTrail';
import type { StreamContext } from './audit/events';
import type { LoupeConfig } from './config/types';
import { LoupeError } from './errors';
import type { Grant, GrantStore } from './grants/grantStore';
import { DebugSession, type EndReason } from './session/debugSession';
import { connectTarget, resolveInspectorUrl } from './session/targetLink';

const attachTicketSeconds = 60;

export interface SessionRegistryOptions {
  /** The policy in force, taken fresh each time (a reload replaces it). */
  config(): LoupeConfig;
  readonly grants: GrantStore;
  readonly audit: AuditTrail;
  readonly clock: () => number;
  /** Throws audit_unavailable while the audit trail has failed closed. */
  assertAuditAccepting(what: string): void;
  reportFault(where: string, err: unknown, detail: Record<string, unknown>): void;
}

/** The live debug sessions, at most one per grant, and the way in: attach tickets, authentication, the relay's start. */
export class SessionRegistry {
  private readonly sessions = new Map<string, DebugSession>();
  /** Grants whose session is still connecting to the target: they hold the one-session-per-grant slot. */
  private readonly attaching = new Set<string>();
  private readonly attachTickets = new Map<string, { grantId: string; expiresAt: number }>();

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
    return [...this.sessions.values()].find((s) => s.grant.grantId === grantId);
  }

  /** A single-use credential for a grant the caller may use (checked by the broker), valid for a minute. */
  issueTicket(grantId: string): { ticket: string; expiresAt: number } {
    const ticket = randomBytes(24).toString('base64url');
    const expiresAt = this.options.clock() + attachTicketSeconds * 1000;
    this.attachTickets.set(ticket, { grantId, expiresAt });
    for (const [key, value] of this.attachTickets) if (value.expiresAt <= this.options.clock()) this.attachTickets.delete(key);
    return { ticket, expiresAt };
  }

  /** Authenticates an attach: the grant token in the Authorization header, or a single-use ticket. */
  async authenticate(grantId: string, authorization: string | undefined, ticket: string | null): Promise<Grant> {
    const { grants, clock } = this.options;
    let grant: Grant;
    if (ticket !== null) {
      const entry = this.attachTickets.get(ticket);
      this.attachTickets.delete(ticket); // single use, even when it fails below
      if (!entry || entry.grantId !== grantId || entry.expiresAt <= clock()) throw new LoupeError('token_invalid', 'attach ticket is unknown, used or expired; open a new one');
      grant = grants.get(grantId)!;
      grants.assertUsable(grant);
    } else {
      const match = /^Bearer (\S+)$/.exec(authorization ?? '');
      if (!match) throw new LoupeError('unauthenticated', 'attach needs "Authorization: Bearer <grant token>" or a ?ticket= from POST /v1/grants/:id/tickets');
      grant = await grants.verifyToken(match[1]!, grantId);
    }
    this.options.assertAuditAccepting('attaching');
    if (this.attaching.has(grantId) || this.ofGrant(grantId)) {
      throw new LoupeError('session_busy', `grant ${grantId} already has a live session; end it first`);
    }
    this.attaching.add(grantId);
    return grant;
  }

  /**
   * Connects to the target, then completes the client's upgrade, then relays. Connecting first means an
   * unreachable target is an HTTP error on the upgrade, not a socket that opens and dies.
   * Releases the slot that authenticate reserved, whatever happens.
   */
  async attach(grant: Grant, upgrade: () => Promise<WebSocket>): Promise<DebugSession> {
    const { audit, clock } = this.options;
    try {
      const target = this.options.config().targets[grant.target];
      if (!target) throw new LoupeError('target_unreachable', `target ${grant.target} is no longer in the policy`);
      const sessionId = randomUUID();
      const url = await resolveInspectorUrl(target.inspector);
      const link = await connectTarget(url);
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
        audit: stream,
        auditAccepting: () => audit.accepting,
        limits: this.options.config().limits,
        clock,
        onEnded: (s) => this.sessions.delete(s.sessionId),
        onFault: (s, fault, err) => this.options.reportFault(fault.where, err, { session: s.sessionId, target: grant.target, user: grant.sub, frameSha256: fault.frameSha256, bytes: fault.bytes }),
      });
      this.sessions.set(sessionId, session);
      const started = session.start();
      try {
        await opened;
        await started;
      } catch (err) {
        this.sessions.delete(sessionId);
        void session.end('audit_failure');
        link.socket.close();
        client.close(4005, 'audit trail unavailable: the session was not started');
        throw new LoupeError('audit_unavailable', `the audit trail is unavailable: cannot record the session (${(err as Error).message}); retry later`);
      }
      return session;
    } finally {
      this.attaching.delete(grant.grantId);
    }
  }

  async endAll(reason: EndReason): Promise<void> {
    await Promise.all([...this.sessions.values()].map((s) => s.end(reason)));
  }
}
