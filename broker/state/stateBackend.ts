import type { JWK } from 'jose';
import { LoupeError } from '../errors';
import type { Grant } from '../grants/grantTypes';
import type { AccessRequest, Hold, RequestDecision, RequestStatus } from '../policy/approvalTypes';

/**
 * Everything a broker replica decides with, behind one interface: grants and their revocation, single-use attach
 * tickets, the one-live-session-per-grant rule (a registry of live sessions with leases), access requests and their
 * approvals, alert state, and notices to the replica that holds a session. Two implementations: the local files
 * (one broker; the embedded default) and PostgreSQL (several replicas on one database).
 *
 * Every method either records its change or throws; a PostgreSQL backend that cannot reach its database throws
 * StateUnavailableError, which the broker answers with 503 state_unavailable: nothing is granted that was not recorded.
 */
export interface StateBackend {
  /** 'files' or 'postgres', for logs and /v1/health. */
  readonly kind: 'files' | 'postgres';
  /** Whether the last call to the database succeeded (always true for files). */
  readonly reachable: boolean;

  /** Applies migrations, starts listening for notices. */
  start(): Promise<void>;
  close(): Promise<void>;

  /** Publishes a grant-signing public key, so grants this replica signs verify on every replica. */
  publishGrantKey(jwk: JWK & { kid: string }): Promise<void>;
  grantKey(kid: string): Promise<(JWK & { kid: string }) | undefined>;

  putGrant(grant: Grant): Promise<void>;
  getGrant(grantId: string): Promise<Grant | undefined>;
  /** Revokes once: the first revocation (who, when) stands; undefined when there is no such grant. */
  revokeGrant(grantId: string, by: string, atSeconds: number): Promise<Grant | undefined>;

  putTicket(ticket: string, grantId: string, expiresAtMs: number): Promise<void>;
  /** Consumes a ticket: exactly one caller ever gets it back, expired or not (the caller checks expiry and grant). */
  redeemTicket(ticket: string, nowMs: number): Promise<{ grantId: string; expiresAtMs: number } | undefined>;

  /**
   * Takes the grant's one live-session slot for this replica. Refused while another live session of the grant holds
   * an unexpired lease; a holder whose lease ran out is marked ended (lease_expired, by this replica) and replaced.
   */
  claimSession(claim: SessionClaim): Promise<ClaimAnswer>;
  /**
   * claimSession for an attach by grant token, with the grant read in the same step (one round trip to a database):
   * the slot is taken only while the grant exists unrevoked. `claim` is absent when it was not attempted for that reason.
   */
  claimSessionOfGrant(claim: SessionClaim): Promise<{ grant: Grant | undefined; claim?: ClaimAnswer }>;
  /** Extends the leases of this replica's sessions; answers the ids that are no longer live (ended elsewhere). */
  renewLeases(replica: string, sessionIds: readonly string[], nowMs: number, leaseMs: number): Promise<string[]>;
  /** Marks a session ended (idempotent: the first end stands). */
  endSession(sessionId: string, end: SessionEnd): Promise<void>;
  /** Marks ended every live session whose lease has run out, by `by`; answers them. */
  expireLeases(nowMs: number, by: string): Promise<LiveSession[]>;
  liveSessions(): Promise<LiveSession[]>;
  /** A session's row, live or ended (who ended it and why). */
  getSession(sessionId: string): Promise<LiveSession | undefined>;

  createRequest(request: AccessRequest): Promise<void>;
  getRequest(requestId: string): Promise<AccessRequest | undefined>;
  listRequests(statuses: readonly RequestStatus[]): Promise<AccessRequest[]>;
  /**
   * Adds one approval, at most once per approver, while the request is pending; the request becomes approved
   * (with `approvedExpiresAt`) in the same step that brings it to minApprovals. `added: false` when this approver
   * had already approved or the request was not pending.
   */
  addApproval(requestId: string, by: RequestDecision, approvedExpiresAt: string): Promise<{ added: boolean; request: AccessRequest | undefined }>;
  /** Moves a request from one of `from` to a closed status; undefined when it was not in one of them (someone else moved it). */
  closeRequest(requestId: string, from: readonly RequestStatus[], change: RequestClose): Promise<AccessRequest | undefined>;

  putHold(hold: Hold): Promise<void>;
  getHold(user: string, target: string): Promise<Hold | undefined>;
  /** Releases the hold when it is still the one `alertId` placed. */
  releaseHold(user: string, target: string, alertId: string): Promise<void>;

  /** Records `user` attaching to `target` at `at` (ISO); answers the time of the previous attach, if any. */
  touchFirstAttach(user: string, target: string, at: string): Promise<string | undefined>;
  /** Adds an occurrence of `key` at `atMs` and answers how many fall within the last `windowMs` (shared counters for rates). */
  countInWindow(key: string, atMs: number, windowMs: number): Promise<number>;

  /** Sends a notice to every replica (this one included), within a second when the channel works. */
  notify(notice: StateNotice): Promise<void>;
  /** Receives notices; answers a function that stops. */
  onNotice(handler: (notice: StateNotice) => void): () => void;
}

export type ClaimAnswer = { claimed: true } | { claimed: false; holder: LiveSession };

export interface SessionClaim {
  readonly sessionId: string;
  readonly grantId: string;
  readonly replica: string;
  readonly user: string;
  readonly target: string;
  readonly nowMs: number;
  readonly leaseMs: number;
}

export interface SessionEnd {
  readonly by: string;
  readonly reason: string;
  readonly atMs: number;
}

export interface LiveSession {
  readonly sessionId: string;
  readonly grantId: string;
  readonly replica: string;
  readonly user: string;
  readonly target: string;
  readonly startedAtMs: number;
  readonly leaseUntilMs: number;
  readonly endedAtMs?: number;
  readonly endedBy?: string;
  readonly endReason?: string;
}

export type RequestClose =
  | { readonly status: 'denied'; readonly denial: RequestDecision; readonly at: string }
  | { readonly status: 'expired' | 'withdrawn'; readonly at: string }
  | { readonly status: 'collected'; readonly grantId: string; readonly at: string };

/** What one replica tells the others: act on the session you hold, or reload. */
export type StateNotice =
  | { readonly type: 'revoked'; readonly grantId: string; readonly by: string }
  | { readonly type: 'end-session'; readonly sessionId: string; readonly reason: string; readonly alertId?: string }
  | { readonly type: 'policy-reload'; readonly source: string; readonly replica: string };

/** The state database cannot be reached (or answered with an error): new grants and attaches are refused with 503. */
export class StateUnavailableError extends Error {
  override readonly name = 'StateUnavailableError';
  readonly code = 'state_unavailable';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** A state backend that cannot be reached is a 503 the caller may retry (state_unavailable); anything else passes unchanged. */
export function stateRefusal(err: unknown, what: string): unknown {
  if (!(err instanceof StateUnavailableError)) return err;
  return new LoupeError('state_unavailable', `${err.message}: ${what} refused until it is back; retry later`, undefined, { cause: err });
}

/** Parses a notice from the wire; anything malformed is dropped (undefined), never acted on. */
export function parseNotice(text: string): StateNotice | undefined {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof value !== 'object' || value === null) return undefined;
  const v = value as Record<string, unknown>;
  const str = (key: string) => typeof v[key] === 'string' && (v[key] as string).length > 0 && (v[key] as string).length <= 1000;
  if (v.type === 'revoked' && str('grantId') && str('by')) return { type: 'revoked', grantId: v.grantId as string, by: v.by as string };
  if (v.type === 'end-session' && str('sessionId') && str('reason'))
    return { type: 'end-session', sessionId: v.sessionId as string, reason: v.reason as string, ...(str('alertId') ? { alertId: v.alertId as string } : {}) };
  if (v.type === 'policy-reload' && str('source') && str('replica')) return { type: 'policy-reload', source: v.source as string, replica: v.replica as string };
  return undefined;
}
