import { readFileSync } from 'node:fs';
import { mkdir, rename, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { JWK } from 'jose';
import type { Grant } from '../grants/grantStore';
import { NdjsonLog } from '../ndjsonLog';
import type { AccessRequest, Hold, RequestDecision, RequestLogLine, RequestStatus } from '../policy/approvalTypes';
import { StateUnavailableError, type ClaimAnswer, type LiveSession, type RequestClose, type SessionClaim, type SessionEnd, type StateBackend, type StateNotice } from './stateBackend';

type GrantLogLine = { type: 'issued'; grant: Grant } | { type: 'revoked'; grantId: string; by: string; at: number };

/**
 * The state of one broker in its state directory, as before there were replicas: grants in `grants.ndjson`,
 * access requests and holds in `requests.ndjson`, first attaches in `alerts/first-attach.json`, each change appended
 * before it takes effect. Tickets, the live sessions and rate counters live in memory: they do not outlive the process
 * (a restart ends every session, and a ticket lives a minute). Notices go to this process only.
 */
export class FileStateBackend implements StateBackend {
  readonly kind = 'files' as const;
  readonly reachable = true;
  private readonly grants = new Map<string, Grant>();
  private readonly grantLog: NdjsonLog<GrantLogLine>;
  private readonly requests = new Map<string, AccessRequest>();
  private readonly holds = new Map<string, Hold>();
  private readonly requestLog: NdjsonLog<RequestLogLine>;
  private readonly firstAttachFile: string;
  private firstAttach: Record<string, string>;
  private readonly tickets = new Map<string, { grantId: string; expiresAtMs: number }>();
  /** This process's live sessions by id, the id of each grant's (one per grant), and the ended ones in the order they ended. */
  private readonly live = new Map<string, LiveSession>();
  private readonly liveOfGrant = new Map<string, string>();
  private readonly ended = new Map<string, LiveSession>();
  private readonly counters = new Map<string, number[]>();
  private readonly keys = new Map<string, JWK & { kid: string }>();
  private readonly handlers = new Set<(notice: StateNotice) => void>();

  constructor(stateDir: string) {
    this.grantLog = new NdjsonLog(join(stateDir, 'grants.ndjson'));
    this.grantLog.replay((entry) => {
      if (entry.type === 'issued') this.grants.set(entry.grant.grantId, entry.grant);
      else {
        const grant = this.grants.get(entry.grantId);
        if (grant && grant.revokedAt === undefined) Object.assign(grant, { revokedAt: entry.at, revokedBy: entry.by });
      }
    });
    this.requestLog = new NdjsonLog(join(stateDir, 'requests.ndjson'));
    this.requestLog.replay((entry) => this.apply(entry));
    this.firstAttachFile = join(stateDir, 'alerts', 'first-attach.json');
    try {
      this.firstAttach = JSON.parse(readFileSync(this.firstAttachFile, 'utf8')) as Record<string, string>;
    } catch {
      this.firstAttach = {};
    }
  }

  async start(): Promise<void> {}
  async close(): Promise<void> {
    this.handlers.clear();
    while (this.persisting) await this.persisting;
    await Promise.all([this.grantLog.close(), this.requestLog.close()]);
  }

  async publishGrantKey(jwk: JWK & { kid: string }): Promise<void> {
    this.keys.set(jwk.kid, jwk);
  }
  async grantKey(kid: string): Promise<(JWK & { kid: string }) | undefined> {
    return this.keys.get(kid);
  }

  async putGrant(grant: Grant): Promise<void> {
    this.grants.set(grant.grantId, { ...grant });
    await persisted(this.grantLog.append({ type: 'issued', grant }), () => this.grants.delete(grant.grantId));
  }
  async getGrant(grantId: string): Promise<Grant | undefined> {
    const grant = this.grants.get(grantId);
    return grant && { ...grant };
  }
  async revokeGrant(grantId: string, by: string, atSeconds: number): Promise<Grant | undefined> {
    const grant = this.grants.get(grantId);
    if (!grant) return undefined;
    if (grant.revokedAt === undefined) {
      // In effect at once (a revocation only takes away), answered once on disk.
      Object.assign(grant, { revokedAt: atSeconds, revokedBy: by });
      await persisted(this.grantLog.append({ type: 'revoked', grantId, by, at: atSeconds }));
    }
    return { ...grant };
  }

  async putTicket(ticket: string, grantId: string, expiresAtMs: number): Promise<void> {
    this.tickets.set(ticket, { grantId, expiresAtMs });
    for (const [key, value] of this.tickets) if (value.expiresAtMs <= expiresAtMs - 3600_000) this.tickets.delete(key);
  }
  async redeemTicket(ticket: string, nowMs: number): Promise<{ grantId: string; expiresAtMs: number } | undefined> {
    const entry = this.tickets.get(ticket);
    this.tickets.delete(ticket);
    for (const [key, value] of this.tickets) if (value.expiresAtMs <= nowMs) this.tickets.delete(key);
    return entry;
  }

  async claimSession(claim: SessionClaim): Promise<{ claimed: true } | { claimed: false; holder: LiveSession }> {
    // One process holds every session here: a live entry is a live session (its end releases it), whatever its lease says.
    const holder = this.live.get(this.liveOfGrant.get(claim.grantId) ?? '');
    if (holder) return { claimed: false, holder };
    const session = {
      sessionId: claim.sessionId,
      grantId: claim.grantId,
      replica: claim.replica,
      user: claim.user,
      target: claim.target,
      startedAtMs: claim.nowMs,
      leaseUntilMs: claim.nowMs + claim.leaseMs,
    };
    this.live.set(session.sessionId, session);
    this.liveOfGrant.set(session.grantId, session.sessionId);
    return { claimed: true };
  }
  async claimSessionOfGrant(claim: SessionClaim): Promise<{ grant: Grant | undefined; claim?: ClaimAnswer }> {
    const grant = await this.getGrant(claim.grantId);
    if (!grant || grant.revokedAt !== undefined) return { grant };
    return { grant, claim: await this.claimSession(claim) };
  }
  async renewLeases(replica: string, sessionIds: readonly string[], nowMs: number, leaseMs: number): Promise<string[]> {
    const gone: string[] = [];
    for (const id of sessionIds) {
      const held = this.live.get(id);
      if (!held || held.replica !== replica) gone.push(id);
      else this.live.set(id, { ...held, leaseUntilMs: nowMs + leaseMs });
    }
    return gone;
  }
  async endSession(sessionId: string, end: SessionEnd): Promise<void> {
    const held = this.live.get(sessionId);
    if (!held) return;
    this.live.delete(sessionId);
    this.liveOfGrant.delete(held.grantId);
    this.ended.set(sessionId, { ...held, endedAtMs: end.atMs, endedBy: end.by, endReason: end.reason });
    // The ended ones are kept a while for getSession, then dropped: the oldest first, in the order they ended.
    for (const [id, s] of this.ended) {
      if (s.endedAtMs! >= end.atMs - 3600_000) break;
      this.ended.delete(id);
    }
  }
  /** No other replica exists to die: a session of this process ends when the process ends it (a stalled event loop is not a death). */
  async expireLeases(): Promise<LiveSession[]> {
    return [];
  }
  async liveSessions(): Promise<LiveSession[]> {
    return [...this.live.values()];
  }
  async getSession(sessionId: string): Promise<LiveSession | undefined> {
    return this.live.get(sessionId) ?? this.ended.get(sessionId);
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
  /**
   * Applies a change in the same step as the checks before it (two callers never both pass them), and answers once it
   * is on disk; a request whose creation the disk did not take is forgotten again.
   */
  private commit(entry: RequestLogLine): Promise<void> {
    this.apply(entry);
    return persisted(this.requestLog.append(entry), entry.type === 'created' ? () => this.requests.delete(entry.request.requestId) : undefined);
  }

  async createRequest(request: AccessRequest): Promise<void> {
    await this.commit({ type: 'created', request });
  }
  async getRequest(requestId: string): Promise<AccessRequest | undefined> {
    const request = this.requests.get(requestId);
    return request && copyRequest(request);
  }
  async listRequests(statuses: readonly RequestStatus[]): Promise<AccessRequest[]> {
    return [...this.requests.values()].filter((r) => statuses.includes(r.status)).map(copyRequest);
  }
  async addApproval(requestId: string, by: RequestDecision, approvedExpiresAt: string): Promise<{ added: boolean; request: AccessRequest | undefined }> {
    const request = this.requests.get(requestId);
    if (!request || request.status !== 'pending' || request.approvals.some((a) => a.sub === by.sub)) return { added: false, request: request && copyRequest(request) };
    const approved = request.approvals.length + 1 >= request.minApprovals;
    await this.commit({ type: 'approved', requestId, by, status: approved ? 'approved' : 'pending', expiresAt: approved ? approvedExpiresAt : request.expiresAt });
    return { added: true, request: copyRequest(request) };
  }
  async closeRequest(requestId: string, from: readonly RequestStatus[], change: RequestClose): Promise<AccessRequest | undefined> {
    const request = this.requests.get(requestId);
    if (!request || !from.includes(request.status)) return undefined;
    if (change.status === 'denied') await this.commit({ type: 'denied', requestId, by: change.denial });
    else if (change.status === 'collected') await this.commit({ type: 'collected', requestId, grantId: change.grantId, at: change.at });
    else await this.commit({ type: change.status, requestId, at: change.at });
    return copyRequest(request);
  }

  async putHold(hold: Hold): Promise<void> {
    await this.commit({ type: 'hold', hold });
  }
  async getHold(user: string, target: string): Promise<Hold | undefined> {
    return this.holds.get(holdKey(user, target));
  }
  async releaseHold(user: string, target: string, alertId: string): Promise<void> {
    if (this.holds.get(holdKey(user, target))?.cause.alertId !== alertId) return;
    await this.commit({ type: 'hold_released', user, target, alertId, requestId: '', at: new Date().toISOString() });
  }

  async touchFirstAttach(user: string, target: string, at: string): Promise<string | undefined> {
    const key = holdKey(user, target);
    const last = this.firstAttach[key];
    this.firstAttach[key] = at;
    this.persistFirstAttach();
    return last;
  }

  private persisting: Promise<void> | undefined;
  private persistAgain = false;

  /**
   * Saves the first-attach times off the event loop, one write at a time; starts that come during a write are
   * saved together by the next, so a burst of sessions costs a few writes, not a synchronous write and rename
   * each. A write lost to a crash only means a first-attach alert fires once more. close() waits for it.
   */
  private persistFirstAttach(): void {
    if (this.persisting) {
      this.persistAgain = true;
      return;
    }
    this.persisting = (async () => {
      do {
        this.persistAgain = false;
        const text = JSON.stringify(this.firstAttach);
        await mkdir(dirname(this.firstAttachFile), { recursive: true });
        await writeFile(`${this.firstAttachFile}.tmp`, text);
        await rename(`${this.firstAttachFile}.tmp`, this.firstAttachFile);
      } while (this.persistAgain);
    })()
      .catch(() => undefined)
      .finally(() => (this.persisting = undefined));
  }
  async countInWindow(key: string, atMs: number, windowMs: number): Promise<number> {
    const recent = [...(this.counters.get(key) ?? []).filter((t) => t > atMs - windowMs), atMs];
    this.counters.delete(key);
    this.counters.set(key, recent);
    if (this.counters.size > 10_000) this.counters.delete(this.counters.keys().next().value!);
    return recent.length;
  }

  async notify(notice: StateNotice): Promise<void> {
    for (const handler of this.handlers) queueMicrotask(() => handler(notice));
  }
  onNotice(handler: (notice: StateNotice) => void): () => void {
    this.handlers.add(handler);
    return () => this.handlers.delete(handler);
  }
}

const holdKey = (user: string, target: string) => `${user}\u0000${target}`;
const copyRequest = (r: AccessRequest): AccessRequest => ({ ...r, approvals: [...r.approvals] });

/** A state file the disk did not take: a 503 the caller may retry, like an unreachable database (`undo` first). */
async function persisted(append: Promise<void>, undo?: () => void): Promise<void> {
  try {
    await append;
  } catch (err) {
    undo?.();
    throw new StateUnavailableError(`the state directory cannot be written: ${(err as Error).message}`, { cause: err });
  }
}
