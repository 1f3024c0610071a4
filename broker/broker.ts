import { randomBytes, randomUUID } from 'node:crypto';
import type WebSocket from 'ws';
import type { LoupeConfig, Mode } from './config/types';
import { modes } from './config/types';
import { LoupeError } from './errors';
import { openSessionRecorder } from './audit/sessionRecorder';
import { GrantStore, type Grant } from './grants/grantStore';
import { loadOrCreateSigningKey } from './identity/keys';
import { createIdentityVerifier, type Identity, type IdentityVerifier } from './identity/verifyIdentity';
import { decideAccess, isAdmin, isOwner, rolesOf, visibleTargets, type TargetView } from './policy/access';
import { DebugSession, type EndReason } from './session/debugSession';
import { connectTarget, resolveInspectorUrl } from './session/targetLink';

export interface BrokerOptions {
  readonly clock?: () => number;
  /** Where a client should connect; filled in by the HTTP edge once it listens. */
  publicUrl?: string;
}

const attachTicketSeconds = 60;
const maxReasonLength = 2000;

/** The broker's decisions, independent of HTTP: grants, attach, revocation, session lifecycle. */
export class Broker {
  readonly clock: () => number;
  private readonly sessions = new Map<string, DebugSession>();
  /** Grants whose session is still connecting to the target: they hold the one-session-per-grant slot. */
  private readonly attaching = new Set<string>();
  private readonly attachTickets = new Map<string, { grantId: string; expiresAt: number }>();

  private constructor(
    readonly config: LoupeConfig,
    readonly verifyIdentity: IdentityVerifier,
    readonly grants: GrantStore,
    private readonly options: BrokerOptions,
  ) {
    this.clock = options.clock ?? Date.now;
  }

  static async create(config: LoupeConfig, options: BrokerOptions = {}): Promise<Broker> {
    const clock = options.clock ?? Date.now;
    const verifier = await createIdentityVerifier(config, clock);
    const grantKey = await loadOrCreateSigningKey(config.stateDir, 'grant-key');
    return new Broker(config, verifier, new GrantStore(config.stateDir, grantKey, clock), options);
  }

  set publicUrl(url: string) {
    this.options.publicUrl = url;
  }

  get liveSessions(): readonly DebugSession[] {
    return [...this.sessions.values()];
  }

  listTargets(identity: Identity): TargetView[] {
    return visibleTargets(this.config, identity);
  }

  async requestGrant(identity: Identity, body: unknown): Promise<{ grantId: string; token: string; expiresAt: string; attachUrl: string; durationSeconds: number; capped: boolean }> {
    const request = parseGrantRequest(body);
    const decision = decideAccess(this.config, identity, request);
    if (!decision.allowed) throw new LoupeError('policy_refused', `grant refused: ${decision.message}`, { rule: decision.rule });
    const { grant, token } = await this.grants.issue(identity, { ...request, durationSeconds: decision.durationSeconds, rule: decision.rule });
    return {
      grantId: grant.grantId,
      token,
      expiresAt: new Date(grant.expiresAt * 1000).toISOString(),
      attachUrl: this.attachUrl(grant.grantId),
      durationSeconds: decision.durationSeconds,
      capped: decision.capped,
    };
  }

  private attachUrl(grantId: string): string {
    const base = (this.config.server.publicUrl ?? this.options.publicUrl ?? `http://${this.config.server.host}:${this.config.server.port}`).replace(/^http/, 'ws');
    return `${base}/v1/attach/${grantId}`;
  }

  private grantFor(identity: Identity, grantId: string, action: string, allowOwnersAndAdmins: boolean): Grant {
    const grant = this.grants.get(grantId);
    if (!grant) throw new LoupeError('not_found', `no grant ${grantId}`);
    if (grant.sub === identity.sub) return grant;
    const roles = rolesOf(this.config, identity);
    const target = this.config.targets[grant.target];
    if (allowOwnersAndAdmins && (isAdmin(this.config, roles) || (target && isOwner(target, roles)))) return grant;
    throw new LoupeError('forbidden', `only the grant's holder${allowOwnersAndAdmins ? ', an owner of the target or an admin' : ''} may ${action} grant ${grantId}`);
  }

  /** Revokes a grant and ends its live session within the call. */
  async revokeGrant(identity: Identity, grantId: string): Promise<Grant> {
    const grant = this.grantFor(identity, grantId, 'revoke', true);
    this.grants.revoke(grantId, identity.sub);
    const session = [...this.sessions.values()].find((s) => s.grant.grantId === grantId);
    if (session) await session.end('revoked');
    return grant;
  }

  /** A single-use URL credential for clients that cannot set headers (Chrome DevTools). */
  issueAttachTicket(identity: Identity, grantId: string): { ticket: string; attachUrl: string; expiresAt: string } {
    const grant = this.grantFor(identity, grantId, 'open a ticket for', false);
    this.grants.assertUsable(grant);
    const ticket = randomBytes(24).toString('base64url');
    const expiresAt = this.clock() + attachTicketSeconds * 1000;
    this.attachTickets.set(ticket, { grantId, expiresAt });
    for (const [key, value] of this.attachTickets) if (value.expiresAt <= this.clock()) this.attachTickets.delete(key);
    return { ticket, attachUrl: `${this.attachUrl(grantId)}?ticket=${ticket}`, expiresAt: new Date(expiresAt).toISOString() };
  }

  /** Authenticates an attach: the grant token in the Authorization header, or a single-use ticket. */
  async authenticateAttach(grantId: string, authorization: string | undefined, ticket: string | null): Promise<Grant> {
    let grant: Grant;
    if (ticket !== null) {
      const entry = this.attachTickets.get(ticket);
      this.attachTickets.delete(ticket); // single use, even when it fails below
      if (!entry || entry.grantId !== grantId || entry.expiresAt <= this.clock()) throw new LoupeError('token_invalid', 'attach ticket is unknown, used or expired; open a new one');
      grant = this.grants.get(grantId)!;
      this.grants.assertUsable(grant);
    } else {
      const match = /^Bearer (\S+)$/.exec(authorization ?? '');
      if (!match) throw new LoupeError('unauthenticated', 'attach needs "Authorization: Bearer <grant token>" or a ?ticket= from POST /v1/grants/:id/tickets');
      grant = await this.grants.verifyToken(match[1]!, grantId);
    }
    if (this.attaching.has(grantId) || [...this.sessions.values()].some((s) => s.grant.grantId === grantId)) {
      throw new LoupeError('session_busy', `grant ${grantId} already has a live session; end it first`);
    }
    this.attaching.add(grantId);
    return grant;
  }

  /**
   * Connects to the target, then completes the client's upgrade, then relays. Connecting first means an
   * unreachable target is an HTTP error on the upgrade, not a socket that opens and dies.
   * Releases the slot that authenticateAttach reserved, whatever happens.
   */
  async attach(grant: Grant, upgrade: () => Promise<WebSocket>): Promise<DebugSession> {
    try {
      const target = this.config.targets[grant.target];
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
        this.grants.assertUsable(grant); // revoked or expired while we were connecting
      } catch (err) {
        link.socket.close();
        client.close(4002, (err as Error).message.slice(0, 120));
        throw err;
      }
      const recorder = openSessionRecorder(
        this.config.stateDir,
        { sessionId, grantId: grant.grantId, actor: { sub: grant.sub, name: grant.name, groups: grant.groups }, target: grant.target, mode: grant.mode, reason: grant.reason, ...(grant.ticket ? { ticket: grant.ticket } : {}) },
        this.clock,
      );
      const session = new DebugSession({
        sessionId,
        grant,
        target,
        client,
        targetSocket: link.socket,
        recorder,
        limits: this.config.limits,
        clock: this.clock,
        onEnded: (s) => this.sessions.delete(s.sessionId),
      });
      this.sessions.set(sessionId, session);
      session.start();
      return session;
    } finally {
      this.attaching.delete(grant.grantId);
    }
  }

  async endAll(reason: EndReason): Promise<void> {
    await Promise.all([...this.sessions.values()].map((s) => s.end(reason)));
  }
}

function parseGrantRequest(body: unknown): { target: string; mode: Mode; durationSeconds: number; reason: string; ticket?: string } {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new LoupeError('bad_request', 'expected a JSON object {target, mode, durationSeconds, reason, ticket?}');
  const { target, mode, durationSeconds, reason, ticket, ...extra } = body as Record<string, unknown>;
  const problems: string[] = [];
  if (Object.keys(extra).length > 0) problems.push(`unknown field(s): ${Object.keys(extra).join(', ')}`);
  if (typeof target !== 'string' || target === '') problems.push('target: expected a target name');
  if (!modes.includes(mode as Mode)) problems.push(`mode: expected one of ${modes.join(', ')}`);
  if (!Number.isSafeInteger(durationSeconds) || (durationSeconds as number) < 1) problems.push('durationSeconds: expected a positive integer');
  if (typeof reason !== 'string' || reason.trim() === '') problems.push('reason: required, say why you need to debug production');
  else if (reason.length > maxReasonLength) problems.push(`reason: at most ${maxReasonLength} characters`);
  if (ticket !== undefined && (typeof ticket !== 'string' || ticket.length > 500)) problems.push('ticket: expected a string (a ticket link or id)');
  if (problems.length > 0) throw new LoupeError('bad_request', `invalid grant request: ${problems.join('; ')}`, { problems });
  return { target: target as string, mode: mode as Mode, durationSeconds: durationSeconds as number, reason: (reason as string).trim(), ...(ticket ? { ticket: ticket as string } : {}) };
}
