import { randomUUID } from 'node:crypto';
import type WebSocket from 'ws';
import type { LoupeConfig, Mode } from './config/types';
import { parseGrantRequest } from './http/requests';
import { LoupeError } from './errors';
import { lockStateDir } from './stateLock';
import { join } from 'node:path';
import type { JSONWebKeySet } from 'jose';
import { AuditTrail, type AuditHealth, type AuditStream } from './audit/auditTrail';
import { AuditReader } from './audit/auditReader';
import { defaultSecurityStreamOptions, SecurityStream, type SecurityStreamOptions } from './audit/securityStream';
import { createAuditStore } from './audit/stores/createStore';
import type { AuditStore } from './audit/stores/auditStore';
import { WriteAheadLog } from './audit/wal';
import { PublishedAuditKeys, publishAuditKey } from './audit/publishedKeys';
import type { Alert } from './alerts/alertEngine';
import { AuditObservers } from './auditObservers';
import { BrokerMetrics } from './metrics';
import type { EventType } from './audit/events';
import { AccessRequests, type AccessRequestView } from './policy/approvals';
import { GrantStore, type Grant } from './grants/grantStore';
import { loadOrCreateSigningKey, type SigningKey } from './identity/keys';
import { createIdentityVerifier, type Identity, type IdentityVerifier } from './identity/verifyIdentity';
import { policyChanges, reloadLiveSessions } from './policy/reload';
import { decideAccess, visibleTargets, type AccessDecision, type GrantRequest, type TargetView } from './policy/access';
import type { DebugSession, EndReason } from './session/debugSession';
import { SessionRegistry } from './sessionRegistry';
import { attachRefused, describeFault, grantMalformed, identityRejected, sessionFault, type RequestOrigin } from './securityEvents';
import { createStateBackend, replicaName } from './state/createState';
import { ReplicaDuties } from './state/replicaDuties';
import { mayActOnGrant } from './grants/grantAccess';
import { stateRefusal, StateUnavailableError, type LiveSession, type StateBackend } from './state/stateBackend';
import type { GrantAnswer } from '../common/http';

export interface BrokerOptions {
  readonly clock?: () => number;
  readonly log?: (line: string) => void;
  /** Replaces the configured audit store (tests wrap a store to make it fail). */
  readonly auditStore?: AuditStore;
  /** Where a client should connect; filled in by the HTTP edge once it listens. */
  publicUrl?: string;
  /** Replaces the configured state backend (tests share one between brokers). */
  readonly state?: StateBackend;
  /** Another replica reloaded its policy: the CLI reloads this one's from its file. */
  readonly onPolicyReloadNotice?: (source: string) => void;
  /** Queue bound and segment rotation of the security stream (defaults in broker/audit/securityStream.ts). */
  readonly securityStream?: Partial<Pick<SecurityStreamOptions, 'maxQueued' | 'maxBacklog' | 'segmentMaxEvents' | 'segmentMaxSeconds'>>;
}

/** The broker's decisions, independent of HTTP: grants, attach, revocation, session lifecycle. */
/** How long a revocation waits for the grant's session on another replica to end (past noticePoll's default 2 s). */
const revocationWaitMs = 3000;
/** A session's end past the WAL's own bound: a pause asked for (1 s), the target's clean-up commands (3 s), and slack. */
const sessionEndBoundMs = 6000;

export class Broker {
  readonly clock: () => number;
  /** The live sessions, one per grant, and the attaches under way. */
  private readonly sessions: SessionRegistry;
  /** Stored transcripts and reports, for auditors (GET /v1/sessions, /v1/audit/…). */
  readonly auditReader: AuditReader;

  /** This run's chain of grant events. */
  private grantStream!: AuditStream;
  /** This broker's chain of security events, in segments. */
  security!: SecurityStream;
  private unlock: () => void = () => undefined;
  /** This replica's name in the registry of live sessions. */
  readonly replica: string;
  private duties!: ReplicaDuties;

  private constructor(
    /** Replaced as a whole on a policy reload (see reload()); readers take it fresh each time. */
    public config: LoupeConfig,
    readonly verifyIdentity: IdentityVerifier,
    readonly grants: GrantStore,
    readonly audit: AuditTrail,
    readonly auditKey: SigningKey,
    private readonly options: BrokerOptions,
    readonly state: StateBackend,
  ) {
    this.clock = options.clock ?? Date.now;
    this.replica = replicaName(config);
    this.sessions = new SessionRegistry({
      config: () => this.config,
      grants,
      state,
      replica: this.replica,
      // What the other replicas wait for before they take a session as dead. A replica cut off from the database (the
      // others still reach it) keeps its sessions for the outage grace, counted from its first failed renewal (at most
      // a third of a lease after the last one): so the others wait a lease and the grace, and a grant never has a
      // second session beside one that still runs.
      leaseMs: () => (this.config.state.sessionLeaseSeconds + this.config.state.outageGraceSeconds) * 1000,
      audit,
      clock: this.clock,
      assertAuditAccepting: (what) => this.assertAuditAccepting(what),
      reportFault: (where, err, detail) => this.reportFault(where, err, detail),
      log: (line) => this.options.log?.(line),
    });
    this.auditReader = new AuditReader({
      config: () => this.config,
      store: audit.store,
      liveSessions: () => this.sessions.ids(),
      openStreams: () => new Set([this.security.current?.id ?? '', this.grantStream.id]),
      keys: () => this.publishedAuditKeys(),
      grant: (grantId) => this.grants.get(grantId),
    });
  }

  /**
   * Builds the broker. Refuses to start when the audit store fails its check (e.g. an S3 bucket without
   * Object Lock); recovers what an earlier run left in the write-ahead log.
   */
  static async create(config: LoupeConfig, options: BrokerOptions = {}): Promise<Broker> {
    const clock = options.clock ?? Date.now;
    const unlock = lockStateDir(config.stateDir);
    const state = options.state ?? createStateBackend(config, options.log);
    try {
      return await Broker.build(config, options, clock, unlock, state);
    } catch (err) {
      if (!options.state) await state.close().catch(() => undefined);
      unlock();
      throw err;
    }
  }

  private static async build(config: LoupeConfig, options: BrokerOptions, clock: () => number, unlock: () => void, state: StateBackend): Promise<Broker> {
    const verifier = await createIdentityVerifier(config, clock, options.log);
    const grantKey = await loadOrCreateSigningKey(config.stateDir, 'grant-key');
    const auditKey = await loadOrCreateSigningKey(config.stateDir, 'audit-key');
    const store = options.auditStore ?? createAuditStore(config.audit.store);
    try {
      await store.check();
    } catch (err) {
      throw new LoupeError('config_invalid', `audit store ${store.description}: ${(err as Error).message}`, undefined, { cause: err });
    }
    // The public key goes next to the records, under the same retention, so offline verification needs only the store
    // and every replica sharing the store publishes every replica's key.
    await publishAuditKey(store, auditKey, new Date(clock() + config.audit.retentionDays * 86400_000)).catch((err: Error) => {
      throw new LoupeError('config_invalid', `audit store ${store.description}: cannot publish the audit key: ${err.message}`);
    });
    const { wal, recovered } = await WriteAheadLog.open(join(config.stateDir, 'audit-wal'), {
      maxBatch: 512,
      segmentBytes: 8 << 20,
      preallocateBytes: 1 << 20,
      // Under load a commit's write and sync cost about 175 µs of CPU on a VM's disk: 2 ms of gathering takes about a
      // third of them away (bench section 7) for 1 ms more latency, and only while several streams commit at once.
      gatherMs: 2,
      stallMs: config.audit.walStallAfterSeconds * 1000,
    });
    const trail = new AuditTrail(wal, store, auditKey, {
      chunkMaxEvents: config.audit.chunkMaxEvents,
      chunkMaxBytes: config.audit.chunkMaxBytes,
      uploadIntervalMs: config.audit.uploadIntervalSeconds * 1000,
      failClosedAfterMs: config.audit.failClosedAfterSeconds * 1000,
      clock,
      ...(options.log ? { log: options.log } : {}),
    });
    await state.start();
    const grants = new GrantStore(state, grantKey, clock);
    await grants.start();
    const broker = new Broker(config, verifier, grants, trail, auditKey, options, state);
    broker.unlock = unlock;
    broker.approvals = new AccessRequests(
      config,
      clock,
      {
        record: (type, data) => broker.recordGrantEvent(type, data),
        issueGrant: (identity, request, decision, approval) => broker.issueGrant(identity, request, decision, approval),
        discardGrant: async (grantId, why) => {
          await broker.grants.revoke(grantId, 'loupe');
          await broker.recordGrantEvent('grant.revoked', { actor: { sub: 'loupe', name: 'Loupe', groups: [] }, grantId, why });
        },
        log: options.log ?? (() => undefined),
      },
      state,
    );
    const summary = await trail.recover(recovered);
    if (summary.streams > 0) options.log?.(`audit: recovered ${summary.streams} chain(s) with ${summary.events} record(s) from the write-ahead log`);
    // The outage itself is on the record: both wait in the WAL and reach the store with everything else at its return.
    trail.on('fail-closed', (error: string) => {
      options.log?.(`audit: ending every session: ${error}`);
      broker.grantStream?.record('audit.degraded', { error: error.slice(0, 500), failClosedAfterSeconds: config.audit.failClosedAfterSeconds }).catch(() => undefined);
      void broker.endAll('audit_failure');
    });
    trail.on('recovered', () => broker.grantStream?.record('audit.recovered', {}).catch(() => undefined));
    broker.observers = new AuditObservers({
      config: () => broker.config,
      clock,
      log: options.log ?? (() => undefined),
      audit: trail,
      metrics: broker.metrics,
      sessions: broker.sessions,
      state,
      security: () => broker.security,
      grantStream: () => broker.grantStream,
      approvals: () => broker.approvals,
      reportFault: (where, err, detail) => broker.reportFault(where, err, detail),
    });
    trail.start();
    const startedAt = new Date(clock()).toISOString();
    const { stream, opened } = trail.openStream({
      stream: `grants-${startedAt.replace(/[:.]/g, '')}-${randomUUID().slice(0, 8)}`,
      kind: 'grants',
      startedAt,
      retentionDays: config.audit.retentionDays,
    });
    // A full disk does not stop the start: the broker reports not ready, and the stream's opening is restated once the WAL takes records.
    await opened.catch((err: Error) => options.log?.(`audit: starting not ready: ${err.message}`));
    broker.grantStream = stream;
    for (const repair of wal.repairs) {
      options.log?.(
        repair.kind === 'torn_tail'
          ? `audit: write-ahead log torn tail repaired: ${repair.segment} at byte ${repair.offset} (${repair.bytes} bytes, never acknowledged)`
          : `audit: write-ahead log unreadable record skipped: ${repair.segment} at byte ${repair.offset} (${repair.bytes} bytes): ${repair.why}`,
      );
      await stream.record('audit.wal_repaired', { ...repair }).catch(() => undefined);
    }
    for (const reconciled of trail.reconciled) await stream.record('audit.reconciled', { ...reconciled }).catch(() => undefined);
    broker.security = new SecurityStream(trail, {
      ...defaultSecurityStreamOptions,
      ...options.securityStream,
      retentionDays: config.audit.retentionDays,
      ...(options.log ? { log: options.log } : {}),
    });
    await broker.security.start();
    broker.approvals.start();
    broker.duties = ReplicaDuties.start(
      config,
      { state, replica: broker.replica, clock, sessions: broker.sessions, log: options.log ?? (() => undefined) },
      {
        policyReloaded: (source) => options.onPolicyReloadNotice?.(source),
        record: (type, data) => broker.recordGrantEvent(type, data),
      },
    );
    return broker;
  }

  readonly metrics = new BrokerMetrics({ liveSessions: () => this.sessions.size, walDepth: () => this.audit.wal.depth, auditState: () => this.audit.health.state });
  /** Alerts, metrics, the ECS export and session faults, fed by the durable audit stream. */
  private observers!: AuditObservers;

  /**
   * A fault the broker contained: a session ended on it (where, the error, the frame's digest), or something
   * that escaped to the process-level guard. Logged, and recorded in the security stream; never fatal.
   */
  reportFault(where: string, err: unknown, detail: Record<string, unknown> = {}): void {
    const { error, stack } = describeFault(err);
    this.faults++;
    try {
      this.options.log?.(`fault in ${where}: ${error.slice(0, 500)} ${JSON.stringify(detail)}`);
    } catch {
      /* logging is best effort */
    }
    try {
      this.security?.record('broker.fault', { where, error: error.slice(0, 500), ...stack, ...detail });
    } catch {
      /* the security stream is closed (shutdown): the log line stands */
    }
  }

  /** Faults reported since start (contained ones included). */
  faults = 0;

  /** Alerts of the targets the caller owns (all of them for admins). */
  listAlerts(identity: Identity): Alert[] {
    return this.observers.listAlerts(identity);
  }

  /** This broker's own audit public key, the one it seals with. */
  get auditKeys(): JSONWebKeySet {
    return { keys: [this.auditKey.publicJwk] };
  }

  private publishedKeys: PublishedAuditKeys | undefined;

  /** The audit public keys of every broker sharing the audit store (every replica's), as served at GET /v1/audit/keys. */
  publishedAuditKeys(): Promise<JSONWebKeySet> {
    this.publishedKeys ??= new PublishedAuditKeys(this.audit.store, this.auditKey, this.options.log, this.clock);
    return this.publishedKeys.keySet();
  }

  /** Ready when the audit trail takes records and its store answers, and the state backend answers. */
  get ready(): { ready: boolean; audit: AuditHealth } {
    const health = this.audit.health;
    return { ready: health.state === 'ok' && this.state.reachable, audit: health };
  }

  set publicUrl(url: string) {
    this.options.publicUrl = url;
  }

  get liveSessions(): readonly DebugSession[] {
    return this.sessions.live;
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
    // The request joins the commit of the record that answers it (grant.issued, grant.refused, the access request's):
    // the WAL writes in order, so that record durable means this one is, one fdatasync per grant instead of two.
    // Nothing reaches the caller before it is durable: every answer, an error too, waits for it below.
    const requested = this.recordGrantEvent('grant.requested', { actor, ...request }, true);
    requested.catch(() => undefined);
    let answer: GrantAnswer | AccessRequestView;
    try {
      answer = await this.decideGrant(identity, request, actor);
    } catch (err) {
      await requested;
      throw err;
    }
    await requested;
    return answer;
  }

  private async decideGrant(identity: Identity, request: GrantRequest, actor: { sub: string; name: string; groups: readonly string[] }): Promise<GrantAnswer | AccessRequestView> {
    const decision = decideAccess(this.config, identity, request, new Date(this.clock()));
    if (!decision.allowed) {
      await this.recordGrantEvent('grant.refused', {
        actor,
        target: request.target,
        mode: request.mode,
        ...(request.evaluation ? { evaluation: request.evaluation } : {}),
        rule: decision.rule,
        message: decision.message,
      });
      throw new LoupeError('policy_refused', `grant refused: ${decision.message}`, { rule: decision.rule });
    }
    const pending = await this.approvals.requestIfRequired(identity, request, decision);
    if (pending) return pending;
    return this.issueGrant(identity, request, decision);
  }

  /** Issues a grant the policy allowed (directly, or collected after its approvals) and records it. */
  private async issueGrant(
    identity: Identity,
    request: GrantRequest,
    decision: Extract<AccessDecision, { allowed: true }>,
    approval?: { requestId: string; approvedBy: GrantAnswer['approvedBy'] & {} },
  ): Promise<GrantAnswer> {
    this.assertAuditAccepting('grants are');
    const actor = { sub: identity.sub, name: identity.name, groups: identity.groups };
    const { grant, token } = await this.grants
      .issue(identity, { ...request, durationSeconds: decision.durationSeconds, rule: decision.rule, ...(approval ? { approval } : {}) })
      .catch((err: NodeJS.ErrnoException) => {
        if (err instanceof StateUnavailableError) throw stateRefusal(err, 'grants are');
        // The grant state shares the disk with the WAL: a full disk is a 503 to retry, not an internal error.
        if (err?.code && /^(ENOSPC|EDQUOT|EIO|EROFS)$/.test(err.code))
          throw new LoupeError('audit_unavailable', `the broker's state directory cannot be written (${err.code}): grants are refused until it can; retry later`);
        throw err;
      });
    await this.recordGrantEvent('grant.issued', {
      actor,
      grantId: grant.grantId,
      target: grant.target,
      mode: grant.mode,
      evaluation: grant.evaluation ?? 'loupe',
      reason: grant.reason,
      ticket: grant.ticket ?? null,
      rule: decision.rule,
      expiresAt: new Date(grant.expiresAt * 1000).toISOString(),
      capped: decision.capped,
      ...(approval ? { requestId: approval.requestId, approvedBy: approval.approvedBy } : {}),
    });
    return {
      grantId: grant.grantId,
      token,
      expiresAt: new Date(grant.expiresAt * 1000).toISOString(),
      attachUrl: this.attachUrl(grant.grantId),
      durationSeconds: decision.durationSeconds,
      capped: decision.capped,
      evaluation: grant.evaluation ?? 'loupe',
      ...(approval ? { requestId: approval.requestId, approvedBy: approval.approvedBy } : {}),
    };
  }

  /** While the trail has failed closed nothing new starts: 503 with code audit_unavailable, until it recovers. */
  private assertAuditAccepting(what: string): void {
    if (this.audit.accepting) return;
    throw new LoupeError(
      'audit_unavailable',
      `the audit trail is unavailable (${this.audit.health.state === 'failed' ? (this.audit.health as { error: string }).error : 'failed closed'}): ${what} refused until it recovers; retry later`,
    );
  }

  /** Grant events are recorded before the caller gets an answer; if they cannot be, the call fails. */
  private async recordGrantEvent(type: EventType, data: Record<string, unknown>, lazy = false): Promise<void> {
    try {
      await this.grantStream.record(type, data, lazy);
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
    this.security.record('grant.malformed', grantMalformed(identity, err, origin));
  }

  /** An API call whose identity token was missing, malformed, expired or not trusted. The token itself is never kept. */
  identityRejected(err: unknown, authorization: string | undefined, origin?: RequestOrigin): void {
    const data = identityRejected(err, authorization, origin);
    if (data) this.security.record('identity.rejected', data);
  }

  /** An attach that was refused, whatever refused it: the credential (as a digest), the grant, the reason. */
  attachRefused(err: unknown, grantId: string | undefined, credential: { ticket?: string | null; authorization?: string | undefined }, origin?: RequestOrigin): void {
    const lookup = grantId && !(err instanceof LoupeError && err.code === 'state_unavailable') ? this.grants.get(grantId).catch(() => undefined) : Promise.resolve(undefined);
    void lookup.then((grant) => this.security.record('attach.refused', attachRefused(err, grantId, grant, credential, origin))).catch(() => undefined);
  }

  private attachUrl(grantId: string): string {
    const base = (this.config.server.publicUrl ?? this.options.publicUrl ?? `http://${this.config.server.host}:${this.config.server.port}`).replace(/^http/, 'ws');
    return `${base}/v1/attach/${grantId}`;
  }

  private async grantFor(identity: Identity, grantId: string, action: string, allowOwnersAndAdmins: boolean): Promise<Grant> {
    const grant = await this.grants.get(grantId).catch((err: unknown) => {
      throw stateRefusal(err, `${action === 'revoke' ? 'revocations' : 'attach tickets'} are`);
    });
    if (!grant) throw new LoupeError('not_found', `no grant ${grantId}`);
    return this.mayAct(identity, grant, action, allowOwnersAndAdmins);
  }

  private mayAct(identity: Identity, grant: Grant, action: string, allowOwnersAndAdmins: boolean): Grant {
    return mayActOnGrant(this.config, identity, grant, action, allowOwnersAndAdmins);
  }

  /**
   * Revokes a grant and ends its live session: here within the call, on another replica through a notice (within a
   * second; the notice is polled for too, should the replica's channel have dropped). Retrying is safe. A session on
   * another replica is waited for: one cut off from the database hears no notice and ends its sessions only when its
   * outage grace runs out, so the answer says when the session has not ended, where it runs, and by when it will.
   */
  async revokeGrant(identity: Identity, grantId: string): Promise<{ grant: Grant; running?: LiveSession }> {
    // Without the database, a session of the grant here still ends (fail closed); the revocation is not recorded.
    const endHereAnyway = async (err: unknown): Promise<never> => {
      const session = this.sessions.ofGrant(grantId);
      if (!(err instanceof LoupeError && err.code === 'state_unavailable') || !session) throw err;
      this.mayAct(identity, session.grant, 'revoke', true);
      await session.end('revoked');
      throw new LoupeError('state_unavailable', `${err.message}. The session of grant ${grantId} on this replica has ended, but the revocation is not recorded: repeat it once the database is back`);
    };
    const grant = await this.grantFor(identity, grantId, 'revoke', true).catch(endHereAnyway);
    const revoked = await this.grants.revoke(grantId, identity.sub).catch((err: unknown) => endHereAnyway(stateRefusal(err, 'revocations are')));
    await this.recordGrantEvent('grant.revoked', { actor: { sub: identity.sub, name: identity.name, groups: identity.groups }, grantId, target: grant.target, holder: grant.sub });
    const local = this.sessions.ofGrant(grantId)?.end('revoked');
    await this.state.notify({ type: 'revoked', grantId, by: identity.sub }).catch((err: unknown) => {
      throw stateRefusal(err, 'revocations reaching other replicas are');
    });
    await local;
    return { grant: revoked, running: await this.sessionStillRunning(grantId) };
  }

  /** The grant's session on another replica if it has not ended within revocationWaitMs (or cannot be read). */
  private async sessionStillRunning(grantId: string): Promise<LiveSession | undefined> {
    const elsewhere = (await this.state.liveSessions().catch(() => [])).find((s) => s.grantId === grantId && s.endedAtMs === undefined && s.replica !== this.replica);
    if (!elsewhere) return undefined;
    const deadline = Date.now() + revocationWaitMs;
    while (Date.now() < deadline) {
      const now = await this.state.getSession(elsewhere.sessionId).catch(() => elsewhere);
      if (now?.endedAtMs !== undefined) return undefined;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    return elsewhere;
  }

  /** A single-use URL credential for clients that cannot set headers (Chrome DevTools). */
  async issueAttachTicket(identity: Identity, grantId: string): Promise<{ ticket: string; attachUrl: string; expiresAt: string }> {
    const grant = await this.grantFor(identity, grantId, 'open a ticket for', false);
    this.grants.assertUsable(grant);
    const { ticket, expiresAt } = await this.sessions.issueTicket(grantId);
    return { ticket, attachUrl: `${this.attachUrl(grantId)}?ticket=${ticket}`, expiresAt: new Date(expiresAt).toISOString() };
  }

  /** Authenticates an attach: the grant token in the Authorization header, or a single-use ticket (broker/sessionRegistry.ts). */
  authenticateAttach(grantId: string, authorization: string | undefined, ticket: string | null): Promise<Grant> {
    return this.sessions.authenticate(grantId, authorization, ticket);
  }

  /** Connects to the target, completes the client's upgrade, and relays (broker/sessionRegistry.ts). */
  attach(grant: Grant, upgrade: () => Promise<WebSocket>): Promise<DebugSession> {
    return this.sessions.attach(grant, upgrade);
  }

  /**
   * Applies a new policy file: new grants follow it at once; each live session continues under the stricter of
   * its old rules and the new ones, or ends when the new policy no longer allows it at all. Sections that need
   * a restart (listener, state, identity, audit store, alert sinks) keep their running values, and the event says so.
   */
  async reload(next: LoupeConfig, source: string, announce = true): Promise<{ changed: string[]; needRestart: string[]; sessionsEnded: number; sessionsNarrowed: number }> {
    const old = this.config;
    const { changed, needRestart } = policyChanges(old, next);
    const applied: LoupeConfig = { ...old, roles: next.roles, admins: next.admins, auditors: next.auditors, targets: next.targets };
    this.config = applied;
    this.observers.useConfig(applied);
    this.approvals.useConfig(applied);
    const { sessionsEnded, sessionsNarrowed } = reloadLiveSessions(this.sessions.live, old, applied, changed, source, this.clock);
    await this.recordGrantEvent('policy.reloaded', { source, changed, needRestart, sessionsEnded, sessionsNarrowed });
    // The other replicas reload their own policy files, so a session narrowed here is narrowed wherever it runs.
    if (announce)
      await this.state
        .notify({ type: 'policy-reload', source, replica: this.replica })
        .catch((err: Error) => this.options.log?.(`state: cannot tell the other replicas of the reload: ${err.message}`));
    return { changed, needRestart, sessionsEnded, sessionsNarrowed };
  }

  /** A new policy file that failed validation: the old policy stays in force, and the refusal is recorded. */
  async reloadRefused(source: string, problems: string): Promise<void> {
    await this.recordGrantEvent('policy.reload_refused', { source, problems: problems.slice(0, 4000) });
  }

  async endAll(reason: EndReason): Promise<void> {
    await this.sessions.endAll(reason);
  }

  /** Waits for one step of a shutdown for at most `ms`; a step that fails or is late is logged, never thrown. */
  private async shutdownStep(what: string, work: Promise<unknown>, ms: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((resolve) => (timer = setTimeout(() => resolve('late'), ms)));
    const outcome = await Promise.race([
      work.then(
        () => 'done' as const,
        () => 'done' as const,
      ),
      late,
    ]);
    clearTimeout(timer);
    if (outcome === 'late') this.options.log?.(`shutdown: ${what} had not finished after ${ms / 1000} s; stopping without it`);
  }

  /**
   * Shutdown: end sessions (targets resumed), close the grant chain, upload what is left (bounded), stop. Every step is
   * bounded: one that has not finished in time is logged and left behind, so a stop never hangs on a promise that a
   * fault left unsettled (the sessions' own steps, which resume the targets, come first and have their own bounds).
   */
  async shutdown(): Promise<void> {
    const stallMs = this.config.audit.walStallAfterSeconds * 1000;
    this.approvals.stop();
    await this.shutdownStep('the replica duties', this.duties.stop(), stallMs + 5000);
    await this.shutdownStep('ending the live sessions', this.endAll('shutdown'), stallMs + sessionEndBoundMs);
    await this.shutdownStep("the grant chain's last record", this.grantStream.record('stream.closed', { endReason: 'shutdown' }), stallMs + 5000);
    void this.grantStream.close('shutdown').catch(() => undefined);
    await this.shutdownStep('closing the security stream', this.security.close('shutdown'), stallMs + 5000);
    // A failed WAL takes no upload's progress, and a chain whose last records are inside a commit the disk never
    // finishes never closes: what is left goes up from the WAL at the next start.
    const settled = (await this.audit.wal.untilFailed(this.audit.settle(10_000))) ?? false;
    if (!settled) this.options.log?.('audit: some chains were not uploaded before shutdown; the next start uploads them from the write-ahead log');
    const walClosed = await this.audit.stop();
    await this.shutdownStep('the alert sinks', this.observers.close(), 5000);
    if (!this.options.state) await this.shutdownStep('the state backend', this.state.close(), 5000);
    if (walClosed) this.unlock();
    // The lock stays (the next start takes over a dead holder's): removing it would wait on the same disk.
    else this.options.log?.('audit: the disk under the state directory has not answered; stopping without it (nothing it had not taken was acknowledged; the next start repairs the write-ahead log)');
  }
}
