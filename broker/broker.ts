import { randomBytes, randomUUID } from 'node:crypto';
import type WebSocket from 'ws';
import type { LoupeConfig, Mode } from './config/types';
import { parseGrantRequest } from './http/requests';
import { LoupeError } from './errors';
import { lockStateDir } from './stateLock';
import { join } from 'node:path';
import { decodeJwt, type JSONWebKeySet } from 'jose';
import { AuditTrail, type AuditHealth, type AuditStream } from './audit/auditTrail';
import { bounded, credentialDigest, defaultSecurityStreamOptions, listSecuritySegments, SecurityStream, type SecuritySegmentSummary, type SecurityStreamOptions } from './audit/securityStream';
import type { StreamContext } from './audit/events';
import { createAuditStore } from './audit/stores/createStore';
import type { AuditStore } from './audit/stores/auditStore';
import { WriteAheadLog } from './audit/wal';
import { SessionIndex, type SessionFilter, type SessionSummary } from './audit/sessionIndex';
import { readTranscriptFromStore, transcriptToText, verifyTranscript } from './audit/verify';
import { renderReport } from './audit/report';
import { AlertEngine, type Alert } from './alerts/alertEngine';
import { toEcs } from './alerts/ecs';
import { LineWriter, WebhookSink } from './alerts/sinks';
import { BrokerMetrics } from './metrics';
import type { AuditEvent, EventType } from './audit/events';
import { AccessRequests, type AccessRequestView } from './policy/approvals';
import { GrantStore, type Grant } from './grants/grantStore';
import { loadOrCreateSigningKey, type SigningKey } from './identity/keys';
import { createIdentityVerifier, type Identity, type IdentityVerifier } from './identity/verifyIdentity';
import { policyChanges, stricterTarget } from './policy/reload';
import { decideAccess, isAdmin, isOwner, rolesOf, visibleTargets, type AccessDecision, type GrantRequest, type TargetView } from './policy/access';
import { DebugSession, type EndReason } from './session/debugSession';
import { safeText } from './gate/cdpGate';
import { connectTarget, resolveInspectorUrl } from './session/targetLink';

export interface BrokerOptions {
  readonly clock?: () => number;
  readonly log?: (line: string) => void;
  /** Replaces the configured audit store (tests wrap a store to make it fail). */
  readonly auditStore?: AuditStore;
  /** Where a client should connect; filled in by the HTTP edge once it listens. */
  publicUrl?: string;
  /** Queue bound and segment rotation of the security stream (defaults in broker/audit/securityStream.ts). */
  readonly securityStream?: Partial<Pick<SecurityStreamOptions, 'maxQueued' | 'maxBacklog' | 'segmentMaxEvents' | 'segmentMaxSeconds'>>;
}

/** Where a refused or rejected request came from, as the edge saw it. */
export interface RequestOrigin {
  readonly source: string | undefined;
  readonly method?: string;
  readonly path?: string;
  readonly userAgent?: string | undefined;
}

const attachTicketSeconds = 60;

/** The answer to a granted request (201), directly or collected after its approvals. */
export interface GrantAnswer {
  readonly grantId: string;
  readonly token: string;
  readonly expiresAt: string;
  readonly attachUrl: string;
  readonly durationSeconds: number;
  readonly capped: boolean;
  /** Who approved it, when it came through an access request. */
  readonly requestId?: string;
  readonly approvedBy?: readonly { sub: string; name: string; at: string }[];
}

/** The broker's decisions, independent of HTTP: grants, attach, revocation, session lifecycle. */
export class Broker {
  readonly clock: () => number;
  private readonly sessions = new Map<string, DebugSession>();
  /** Grants whose session is still connecting to the target: they hold the one-session-per-grant slot. */
  private readonly attaching = new Set<string>();
  private readonly attachTickets = new Map<string, { grantId: string; expiresAt: number }>();

  /** This run's chain of grant events. */
  private grantStream!: AuditStream;
  /** This broker's chain of security events, in segments. */
  security!: SecurityStream;
  private unlock: () => void = () => undefined;

  private constructor(
    /** Replaced as a whole on a policy reload (see reload()); readers take it fresh each time. */
    public config: LoupeConfig,
    readonly verifyIdentity: IdentityVerifier,
    readonly grants: GrantStore,
    readonly audit: AuditTrail,
    readonly auditKey: SigningKey,
    private readonly options: BrokerOptions,
  ) {
    this.clock = options.clock ?? Date.now;
  }

  /**
   * Builds the broker. Refuses to start when the audit store fails its check (e.g. an S3 bucket without
   * Object Lock); recovers what an earlier run left in the write-ahead log.
   */
  static async create(config: LoupeConfig, options: BrokerOptions = {}): Promise<Broker> {
    const clock = options.clock ?? Date.now;
    const unlock = lockStateDir(config.stateDir);
    try {
      return await Broker.build(config, options, clock, unlock);
    } catch (err) {
      unlock();
      throw err;
    }
  }

  private static async build(config: LoupeConfig, options: BrokerOptions, clock: () => number, unlock: () => void): Promise<Broker> {
    const verifier = await createIdentityVerifier(config, clock, options.log);
    const grantKey = await loadOrCreateSigningKey(config.stateDir, 'grant-key');
    const auditKey = await loadOrCreateSigningKey(config.stateDir, 'audit-key');
    const store = options.auditStore ?? createAuditStore(config.audit.store);
    try {
      await store.check();
    } catch (err) {
      throw new LoupeError('config_invalid', `audit store ${store.description}: ${(err as Error).message}`, undefined, { cause: err });
    }
    // The public key goes next to the records, under the same retention, so offline verification needs only the store.
    const keyBody = Buffer.from(JSON.stringify({ keys: [auditKey.publicJwk] }) + '\n');
    await store.put(`keys/${auditKey.kid}.jwks.json`, keyBody, new Date(clock() + config.audit.retentionDays * 86400_000)).catch((err: Error) => {
      if ((err as { code?: string }).code !== 'conflict') throw new LoupeError('config_invalid', `audit store ${store.description}: cannot publish the audit key: ${err.message}`);
    });
    const { wal, recovered } = await WriteAheadLog.open(join(config.stateDir, 'audit-wal'), { maxBatch: 512, segmentBytes: 8 << 20 });
    const trail = new AuditTrail(wal, store, auditKey, {
      chunkMaxEvents: config.audit.chunkMaxEvents,
      uploadIntervalMs: config.audit.uploadIntervalSeconds * 1000,
      failClosedAfterMs: config.audit.failClosedAfterSeconds * 1000,
      clock,
      ...(options.log ? { log: options.log } : {}),
    });
    const broker = new Broker(config, verifier, new GrantStore(config.stateDir, grantKey, clock), trail, auditKey, options);
    broker.unlock = unlock;
    broker.approvals = new AccessRequests(config, clock, {
      record: (type, data) => broker.recordGrantEvent(type, data),
      issueGrant: (identity, request, decision, approval) => broker.issueGrant(identity, request, decision, approval),
      log: options.log ?? (() => undefined),
    });
    const summary = await trail.recover(recovered);
    if (summary.streams > 0) options.log?.(`audit: recovered ${summary.streams} chain(s) with ${summary.events} record(s) from the write-ahead log`);
    // The outage itself is on the record: both wait in the WAL and reach the store with everything else at its return.
    trail.on('fail-closed', (error: string) => {
      options.log?.(`audit: ending every session: ${error}`);
      broker.grantStream?.record('audit.degraded', { error: error.slice(0, 500), failClosedAfterSeconds: config.audit.failClosedAfterSeconds }).catch(() => undefined);
      void broker.endAll('audit_failure');
    });
    trail.on('recovered', () => broker.grantStream?.record('audit.recovered', {}).catch(() => undefined));
    broker.wireObservers();
    trail.start();
    const startedAt = new Date(clock()).toISOString();
    const { stream, opened } = trail.openStream({ stream: `grants-${startedAt.replace(/[:.]/g, '')}-${randomUUID().slice(0, 8)}`, kind: 'grants', startedAt, retentionDays: config.audit.retentionDays });
    // A full disk does not stop the start: the broker reports not ready, and the stream's opening is restated once the WAL takes records.
    await opened.catch((err: Error) => options.log?.(`audit: starting not ready: ${err.message}`));
    broker.grantStream = stream;
    for (const repair of wal.repairs) {
      options.log?.(`audit: write-ahead log ${repair.kind === 'torn_tail' ? 'torn tail repaired' : 'unreadable record skipped'}: ${repair.segment} at byte ${repair.offset} (${repair.bytes} bytes, never acknowledged)`);
      await stream.record('audit.wal_repaired', { ...repair }).catch(() => undefined);
    }
    for (const reconciled of trail.reconciled) await stream.record('audit.reconciled', { ...reconciled }).catch(() => undefined);
    broker.security = new SecurityStream(trail, { ...defaultSecurityStreamOptions, ...options.securityStream, retentionDays: config.audit.retentionDays, ...(options.log ? { log: options.log } : {}) });
    await broker.security.start();
    broker.approvals.start();
    return broker;
  }

  private get sessionIndex(): SessionIndex {
    this.index ??= new SessionIndex(this.audit.store, () => new Set(this.sessions.keys()));
    return this.index;
  }
  private index: SessionIndex | undefined;

  private requireAuditor(identity: Identity): void {
    const roles = rolesOf(this.config, identity);
    if (!this.config.auditors.some((r) => roles.has(r))) {
      throw new LoupeError('forbidden', `session transcripts are for auditors (roles: ${this.config.auditors.join(', ') || 'none configured'})`);
    }
  }

  async listSessions(identity: Identity, filter: SessionFilter): Promise<SessionSummary[]> {
    this.requireAuditor(identity);
    return this.sessionIndex.list(filter);
  }

  private async sessionTranscript(identity: Identity, sessionId: string) {
    this.requireAuditor(identity);
    const summary = await this.sessionIndex.find(sessionId);
    if (!summary) throw new LoupeError('not_found', `no recorded session ${sessionId}`);
    return { summary, transcript: await readTranscriptFromStore(this.audit.store, summary.prefix, false) };
  }

  /** The security stream's segments, or the grant streams, in the store (auditors), newest first. */
  async listSecuritySegments(identity: Identity, kind: 'security' | 'grants' = 'security'): Promise<SecuritySegmentSummary[]> {
    this.requireAuditor(identity);
    return listSecuritySegments(this.audit.store, new Set([this.security.current?.id ?? '', this.grantStream.id]), kind);
  }

  private async securityTranscript(identity: Identity, segmentId: string) {
    const kind = segmentId.startsWith('grants-') ? 'grants' : 'security';
    const segment = (await this.listSecuritySegments(identity, kind)).find((s) => s.stream === segmentId);
    if (!segment) throw new LoupeError('not_found', `no stored ${kind === 'grants' ? 'grant stream' : 'security segment'} ${segmentId}`);
    return { segment, transcript: await readTranscriptFromStore(this.audit.store, segment.prefix, false) };
  }

  /** A security segment (or grant stream) as NDJSON, like a session transcript. */
  async securitySegmentText(identity: Identity, segmentId: string): Promise<string> {
    return transcriptToText((await this.securityTranscript(identity, segmentId)).transcript);
  }

  /** A security segment's (or grant stream's) readable report, verified against this broker's keys. */
  async securitySegmentReport(identity: Identity, segmentId: string): Promise<string> {
    const { segment, transcript } = await this.securityTranscript(identity, segmentId);
    return renderReport(await verifyTranscript(transcript, this.auditKeys), { source: `${segment.stream.startsWith('grants-') ? 'grant stream' : 'security segment'} recorded by the broker's ${this.audit.store.description.startsWith('s3:') ? 'S3 (Object Lock) store' : 'local audit store'}${segment.state === 'ended' ? '' : `, ${segment.state}`}` });
  }

  /** The stored transcript as NDJSON: events, a seal line after each chunk, the manifest last. */
  async transcript(identity: Identity, sessionId: string): Promise<string> {
    return transcriptToText((await this.sessionTranscript(identity, sessionId)).transcript);
  }

  /** The readable report, with the result of verifying the stored transcript against this broker's keys. */
  async report(identity: Identity, sessionId: string): Promise<string> {
    const { summary, transcript } = await this.sessionTranscript(identity, sessionId);
    const result = await verifyTranscript(transcript, this.auditKeys);
    const grant = this.grants.get(summary.grantId);
    return renderReport(result, { ...(grant?.approvedBy ? { approval: { requestId: grant.requestId, approvedBy: grant.approvedBy } } : {}), source: `recorded by the broker's ${this.audit.store.description.startsWith('s3:') ? 'S3 (Object Lock) store' : 'local audit store'}${summary.state === 'ended' ? '' : `, session ${summary.state}`}` });
  }

  readonly metrics = new BrokerMetrics({ liveSessions: () => this.sessions.size, walDepth: () => this.audit.wal.depth, auditState: () => this.audit.health.state });
  private alerts!: AlertEngine;
  private ecs: LineWriter | undefined;
  private webhooks!: WebhookSink;

  private readonly observers: [string, (event: AuditEvent) => void][] = [
    ['metrics', (event) => this.metrics.onEvent(event)],
    ['alerts', (event) => this.alerts.onEvent(event)],
    ['ecs', (event) => this.ecs?.write(toEcs(event, event.actor ? [...rolesOf(this.config, { sub: event.actor.sub, name: event.actor.name, groups: event.actor.groups, issuer: '' })] : []))],
    // A session that ended on a fault in the broker is a security event too, with the session's record as evidence.
    [
      'security',
      (event) => {
        if (event.kind !== 'session' || event.type !== 'session.ended' || (event.data as { endReason?: string }).endReason !== 'internal_error') return;
        const d = event.data as { fault?: unknown };
        this.security.record('session.fault', { session: event.stream, grantId: event.grant ?? null, user: event.actor?.sub ?? null, target: event.target ?? null, endedSeq: event.seq, endedHash: event.hash, fault: d.fault === undefined ? null : boundedJson(d.fault) });
      },
    ],
  ];

  /**
   * A fault the broker contained: a session ended on it (where, the error, the frame's digest), or something
   * that escaped to the process-level guard. Logged, and recorded in the security stream; never fatal.
   */
  reportFault(where: string, err: unknown, detail: Record<string, unknown> = {}): void {
    const error = err instanceof Error ? `${err.name}: ${err.message}` : `thrown: ${safeText(err).slice(0, 200)}`;
    this.faults++;
    try {
      this.options.log?.(`fault in ${where}: ${error.slice(0, 500)} ${JSON.stringify(detail)}`);
    } catch {
      /* logging is best effort */
    }
    const stack = err instanceof Error && err.stack ? { stack: err.stack.split('\n').slice(0, 8).join('\n') } : {};
    try {
      this.security?.record('broker.fault', { where, error: error.slice(0, 500), ...stack, ...detail });
    } catch {
      /* the security stream is closed (shutdown): the log line stands */
    }
  }

  /** Faults reported since start (contained ones included). */
  faults = 0;

  /** Alerts, metrics and the ECS export all read the durable audit stream. */
  private wireObservers(): void {
    const log = this.options.log ?? (() => undefined);
    this.webhooks = new WebhookSink(this.config.alerting.webhooks, this.config.alerting.deadLetterFile, log);
    if (this.config.alerting.ecsOutput) this.ecs = new LineWriter(this.config.alerting.ecsOutput);
    this.alerts = new AlertEngine(
      this.config,
      {
        record: async (alert) => {
          const data = { alertId: alert.id, rule: alert.rule, message: alert.message, action: alert.action, evidence: alert.evidence };
          const session = alert.session ? this.sessions.get(alert.session) : undefined;
          if (session) await session.recordAlert(`alert.${alert.rule}`, data);
          else if (alert.rule === 'failedAttaches') this.security.record(`alert.${alert.rule}`, { ...data, target: alert.target || null, user: alert.user ?? null });
          else await this.grantStream.record(`alert.${alert.rule}`, { ...data, session: alert.session ?? null, target: alert.target, user: alert.user ?? null });
        },
        endSession: (sessionId) => void this.sessions.get(sessionId)?.end('alert'),
        requireApproval: (alert) => {
          if (!alert.user) return;
          const cause = { alertId: alert.id, rule: alert.rule, message: alert.message, at: alert.at, ...(alert.session ? { session: alert.session } : {}) };
          void this.approvals.hold(alert.user, alert.target, cause).catch((err: Error) => log(`alert ${alert.id}: cannot put ${alert.user} on hold for ${alert.target}: ${err.message}`));
        },
        deliver: (alert) => void this.webhooks.deliver(alert),
      },
      join(this.config.stateDir, 'alerts', 'first-attach.json'),
      this.clock,
    );
    this.audit.on('event', (event: AuditEvent) => {
      // An observer's fault must not fail the record that is already durable, nor the other observers.
      for (const [name, observe] of this.observers) {
        try {
          observe(event);
        } catch (err) {
          this.reportFault(`audit observer ${name}`, err, { stream: event.stream, seq: event.seq, type: event.type });
        }
      }
    });
    this.audit.on('uploaded', (seconds: number) => this.metrics.uploadSeconds.observe(seconds));
  }

  /** Alerts of the targets the caller owns (all of them for admins). */
  listAlerts(identity: Identity): Alert[] {
    const roles = rolesOf(this.config, identity);
    const admin = isAdmin(this.config, roles);
    const owned = new Set(Object.values(this.config.targets).filter((t) => isOwner(t, roles)).map((t) => t.name));
    if (!admin && owned.size === 0) throw new LoupeError('forbidden', 'alerts are for the owners of a target and admins');
    return this.alerts.list((alert) => admin || owned.has(alert.target));
  }

  /** The audit public keys, as published at GET /v1/audit/keys. */
  get auditKeys(): JSONWebKeySet {
    return { keys: [this.auditKey.publicJwk] };
  }

  /** Ready when the audit trail takes records and its store answers. */
  get ready(): { ready: boolean; audit: AuditHealth } {
    const health = this.audit.health;
    return { ready: health.state === 'ok', audit: health };
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

  /** Access requests under the two-person rule: list, decide, collect (broker/policy/approvals.ts). */
  approvals!: AccessRequests;

  /** A grant (201), or an access request waiting for approvals (202) when the rule or an alert requires them. */
  async requestGrant(identity: Identity, body: unknown, origin?: RequestOrigin): Promise<GrantAnswer | AccessRequestView> {
    this.assertAuditAccepting('grant requests are');
    let request: ReturnType<typeof parseGrantRequest>;
    try {
      request = parseGrantRequest(body);
    } catch (err) {
      this.grantRequestMalformed(identity, err, origin);
      throw err;
    }
    const actor = { sub: identity.sub, name: identity.name, groups: identity.groups };
    await this.recordGrantEvent('grant.requested', { actor, ...request });
    const decision = decideAccess(this.config, identity, request, new Date(this.clock()));
    if (!decision.allowed) {
      await this.recordGrantEvent('grant.refused', { actor, target: request.target, mode: request.mode, rule: decision.rule, message: decision.message });
      throw new LoupeError('policy_refused', `grant refused: ${decision.message}`, { rule: decision.rule });
    }
    const pending = await this.approvals.requestIfRequired(identity, request, decision);
    if (pending) return pending;
    return this.issueGrant(identity, request, decision);
  }

  /** Issues a grant the policy allowed (directly, or collected after its approvals) and records it. */
  private async issueGrant(identity: Identity, request: GrantRequest, decision: Extract<AccessDecision, { allowed: true }>, approval?: { requestId: string; approvedBy: GrantAnswer['approvedBy'] & {} }): Promise<GrantAnswer> {
    this.assertAuditAccepting('grants are');
    const actor = { sub: identity.sub, name: identity.name, groups: identity.groups };
    const { grant, token } = await this.grants.issue(identity, { ...request, durationSeconds: decision.durationSeconds, rule: decision.rule, ...(approval ? { approval } : {}) }).catch((err: NodeJS.ErrnoException) => {
      // The grant state shares the disk with the WAL: a full disk is a 503 to retry, not an internal error.
      if (err?.code && /^(ENOSPC|EDQUOT|EIO|EROFS)$/.test(err.code)) throw new LoupeError('audit_unavailable', `the broker's state directory cannot be written (${err.code}): grants are refused until it can; retry later`);
      throw err;
    });
    await this.recordGrantEvent('grant.issued', { actor, grantId: grant.grantId, target: grant.target, mode: grant.mode, reason: grant.reason, ticket: grant.ticket ?? null, rule: decision.rule, expiresAt: new Date(grant.expiresAt * 1000).toISOString(), capped: decision.capped, ...(approval ? { requestId: approval.requestId, approvedBy: approval.approvedBy } : {}) });
    return {
      grantId: grant.grantId,
      token,
      expiresAt: new Date(grant.expiresAt * 1000).toISOString(),
      attachUrl: this.attachUrl(grant.grantId),
      durationSeconds: decision.durationSeconds,
      capped: decision.capped,
      ...(approval ? { requestId: approval.requestId, approvedBy: approval.approvedBy } : {}),
    };
  }

  /** While the trail has failed closed nothing new starts: 503 with code audit_unavailable, until it recovers. */
  private assertAuditAccepting(what: string): void {
    if (this.audit.accepting) return;
    throw new LoupeError('audit_unavailable', `the audit trail is unavailable (${this.audit.health.state === 'failed' ? (this.audit.health as { error: string }).error : 'failed closed'}): ${what} refused until it recovers; retry later`);
  }

  /** Grant events are recorded before the caller gets an answer; if they cannot be, the call fails. */
  private async recordGrantEvent(type: EventType, data: Record<string, unknown>): Promise<void> {
    try {
      await this.grantStream.record(type, data);
    } catch (err) {
      throw new LoupeError('audit_unavailable', `the audit trail is unavailable: cannot record ${type} (${(err as Error).message}); retry later`);
    }
  }

  /** Records a security event in the broker's security stream; never waits, never throws (see SecurityStream). */
  recordSecurityEvent(type: EventType, data: Record<string, unknown>): void {
    this.security.record(type, data);
  }

  /** A grant request whose body could not be read or parsed: who sent it, from where, and what was wrong. */
  grantRequestMalformed(identity: Identity, err: unknown, origin?: RequestOrigin): void {
    const error = err instanceof LoupeError ? err : undefined;
    const problems = (error?.details as { problems?: unknown } | undefined)?.problems;
    this.security.record('grant.malformed', {
      actor: { sub: bounded(identity.sub), name: bounded(identity.name), issuer: bounded(identity.issuer) },
      code: error?.code ?? 'internal',
      message: bounded(error?.message ?? String(err), 500),
      problems: Array.isArray(problems) ? problems.slice(0, 10).map((p) => bounded(p)) : null,
      ...originData(origin),
    });
  }

  /** An API call whose identity token was missing, malformed, expired or not trusted. The token itself is never kept. */
  identityRejected(err: unknown, authorization: string | undefined, origin?: RequestOrigin): void {
    if (!(err instanceof LoupeError) || !['unauthenticated', 'token_expired', 'token_invalid'].includes(err.code)) return;
    const token = /^Bearer\s+(\S+)$/.exec(authorization?.trim() ?? '')?.[1];
    let claims: { iss?: unknown; sub?: unknown } = {};
    try {
      if (token && token.length <= 16_384) claims = decodeJwt(token);
    } catch {
      // not a JWT at all: the digest is all there is
    }
    this.security.record('identity.rejected', {
      code: err.code,
      reason: identityRejection(err),
      message: bounded(err.message, 300),
      issuer: bounded(claims.iss),
      claimedSub: bounded(claims.sub),
      tokenDigest: credentialDigest(token ?? authorization),
      ...originData(origin),
    });
  }

  /** An attach that was refused, whatever refused it: the credential (as a digest), the grant, the reason. */
  attachRefused(err: unknown, grantId: string | undefined, credential: { ticket?: string | null; authorization?: string | undefined }, origin?: RequestOrigin): void {
    const error = err instanceof LoupeError ? err : new LoupeError('internal', `attach failed: ${(err as Error)?.message}`);
    const grant = grantId ? this.grants.get(grantId) : undefined;
    const token = /^Bearer\s+(\S+)$/.exec(credential.authorization?.trim() ?? '')?.[1];
    this.security.record('attach.refused', {
      reason: attachRefusal(error),
      code: error.code,
      status: error.status,
      message: bounded(error.message, 300),
      grantId: grantId ?? null,
      // The grant's holder and target, when the grant exists: whose access someone tried to use.
      user: grant?.sub ?? null,
      target: grant?.target ?? null,
      credential: credential.ticket != null ? 'ticket' : token ? 'grant token' : credential.authorization ? 'malformed header' : 'none',
      credentialDigest: credentialDigest(credential.ticket ?? token ?? credential.authorization),
      ...originData(origin),
    });
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
    await this.recordGrantEvent('grant.revoked', { actor: { sub: identity.sub, name: identity.name, groups: identity.groups }, grantId, target: grant.target, holder: grant.sub });
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
    this.assertAuditAccepting('attaching');
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
      const context: StreamContext = {
        stream: sessionId,
        kind: 'session',
        grant: grant.grantId,
        actor: { sub: grant.sub, name: grant.name, groups: grant.groups },
        target: grant.target,
        mode: grant.mode,
        reason: grant.reason,
        ...(grant.ticket ? { ticket: grant.ticket } : {}),
        startedAt: new Date(this.clock()).toISOString(),
        retentionDays: target.retentionDays,
      };
      const { stream, opened } = this.audit.openStream(context);
      const session = new DebugSession({
        sessionId,
        grant,
        target,
        client,
        targetSocket: link.socket,
        audit: stream,
        auditAccepting: () => this.audit.accepting,
        limits: this.config.limits,
        clock: this.clock,
        onEnded: (s) => this.sessions.delete(s.sessionId),
        onFault: (s, fault, err) => this.reportFault(fault.where, err, { session: s.sessionId, target: grant.target, user: grant.sub, frameSha256: fault.frameSha256, bytes: fault.bytes }),
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

  /**
   * Applies a new policy file: new grants follow it at once; each live session continues under the stricter of
   * its old rules and the new ones, or ends when the new policy no longer allows it at all. Sections that need
   * a restart (listener, state, identity, audit store, alert sinks) keep their running values, and the event says so.
   */
  async reload(next: LoupeConfig, source: string): Promise<{ changed: string[]; needRestart: string[]; sessionsEnded: number; sessionsNarrowed: number }> {
    const old = this.config;
    const { changed, needRestart } = policyChanges(old, next);
    const applied: LoupeConfig = { ...old, roles: next.roles, admins: next.admins, auditors: next.auditors, targets: next.targets };
    this.config = applied;
    this.alerts.useConfig(applied);
    this.approvals.useConfig(applied);
    let sessionsEnded = 0;
    let sessionsNarrowed = 0;
    for (const session of this.sessions.values()) {
      const grant = session.grant;
      const target = next.targets[grant.target];
      const identity = { sub: grant.sub, name: grant.name, groups: grant.groups, issuer: 'grant' };
      const requested = grant.expiresAt - grant.issuedAt;
      const decision = target
        ? decideAccess(applied, identity, { target: grant.target, mode: grant.mode, durationSeconds: requested, reason: grant.reason, ...(grant.ticket ? { ticket: grant.ticket } : {}) }, new Date(this.clock()))
        : { allowed: false as const, rule: 'targets', message: `target ${grant.target} was removed from the policy` };
      if (!decision.allowed) {
        sessionsEnded++;
        void session.end('policy');
        continue;
      }
      const oldTarget = old.targets[grant.target]!;
      if (!changed.includes(`targets.${grant.target}`) && !decision.capped) continue;
      sessionsNarrowed++;
      session.applyPolicy(stricterTarget(oldTarget, target!), {
        why: `policy reloaded from ${source}`,
        ...(decision.capped ? { expiresAtMs: (grant.issuedAt + decision.durationSeconds) * 1000 } : {}),
      });
    }
    await this.recordGrantEvent('policy.reloaded', { source, changed, needRestart, sessionsEnded, sessionsNarrowed });
    return { changed, needRestart, sessionsEnded, sessionsNarrowed };
  }

  /** A new policy file that failed validation: the old policy stays in force, and the refusal is recorded. */
  async reloadRefused(source: string, problems: string): Promise<void> {
    await this.recordGrantEvent('policy.reload_refused', { source, problems: problems.slice(0, 4000) });
  }

  async endAll(reason: EndReason): Promise<void> {
    await Promise.all([...this.sessions.values()].map((s) => s.end(reason)));
  }

  /** Shutdown: end sessions (targets resumed), close the grant chain, upload what is left (bounded), stop. */
  async shutdown(): Promise<void> {
    this.approvals.stop();
    await this.endAll('shutdown');
    await this.grantStream.record('stream.closed', { endReason: 'shutdown' }).catch(() => undefined);
    void this.grantStream.close('shutdown').catch(() => undefined);
    await this.security.close('shutdown');
    const settled = await this.audit.settle(10_000);
    if (!settled) this.options.log?.('audit: some chains were not uploaded before shutdown; the next start uploads them from the write-ahead log');
    await this.audit.stop();
    await this.ecs?.close();
    this.unlock();
  }
}

function originData(origin: RequestOrigin | undefined): Record<string, unknown> {
  if (!origin) return {};
  return { source: bounded(origin.source, 64), ...(origin.method ? { method: bounded(origin.method, 16) } : {}), ...(origin.path ? { path: bounded(origin.path) } : {}), ...(origin.userAgent ? { userAgent: bounded(origin.userAgent) } : {}) };
}

/** A fault's detail as recorded in the session's chain, cut to a bounded size for the security stream. */
function boundedJson(value: unknown): unknown {
  const text = JSON.stringify(value) ?? 'null';
  return text.length <= 2000 ? value : { truncated: text.slice(0, 2000), bytes: text.length };
}

/** Why an identity token was rejected, as a stable word (the message says it in full). */
function identityRejection(err: LoupeError): string {
  if (err.code === 'unauthenticated') return /malformed/.test(err.message) ? 'malformed_header' : 'no_token';
  if (err.code === 'token_expired') return 'expired';
  if (/signature|does not publish|algorithm/.test(err.message)) return 'bad_signature';
  if (/issuer/.test(err.message)) return 'unknown_issuer';
  if (/audience/.test(err.message)) return 'wrong_audience';
  if (/not a valid JWT/.test(err.message)) return 'malformed_token';
  return 'invalid';
}

/** Why an attach was refused, as a stable word (the message says it in full). */
function attachRefusal(err: LoupeError): string {
  if (err.code === 'unauthenticated') return 'no_credentials';
  if (/ticket/.test(err.message) && err.code === 'token_invalid') return 'ticket_unknown_used_or_expired';
  if (err.code === 'token_expired' || err.code === 'grant_expired') return 'expired';
  if (err.code === 'grant_revoked') return 'revoked';
  if (/signature|does not publish|algorithm/.test(err.message)) return 'bad_signature';
  if (/does not match this grant/.test(err.message)) return 'wrong_grant';
  if (/not a valid JWT/.test(err.message)) return 'malformed_token';
  if (err.code === 'token_invalid') return 'invalid_token';
  if (/already has a live session/.test(err.message)) return 'second_attach';
  if (/audit trail/.test(err.message)) return 'audit_unavailable';
  if (/no WebSocket endpoint/.test(err.message)) return 'no_endpoint';
  if (err.code === 'not_found') return 'unknown_grant';
  return err.code;
}
