import type { Hours } from '../policy/hours';
import type { RedactionPolicy } from '../policy/redact';
import type { EvaluationPolicy } from '../gate/evaluationCheck';
import type { AlertingConfig, AlertRules } from './alertConfig';

export type Mode = 'pause' | 'snapshot';
export const modes: readonly Mode[] = ['pause', 'snapshot'];

export interface IssuerConfig {
  readonly issuer: string;
  readonly audience: string;
  /** Keys from `<issuer>/.well-known/openid-configuration` → jwks_uri; exactly one of discovery, jwksUrl and publicKey. */
  readonly discovery: boolean;
  /** Remote key set at a fixed URL. */
  readonly jwksUrl?: string;
  /** PEM (SPKI) public key. */
  readonly publicKey?: string;
  /** How long a fetched key set is trusted before it is fetched again: how soon a key the IdP removed stops verifying. */
  readonly jwksCacheMaxAgeSeconds: number;
  readonly algorithms: readonly string[];
  /** Claim holding the groups; a dotted path (`realm_access.roles`) reaches into nested objects. */
  readonly groupsClaim: string;
  readonly nameClaim: string;
}

export interface IdentityConfig {
  /** The built-in development issuer (`loupe token`): on by default so the demo runs without an IdP. */
  readonly devIssuer: { readonly enabled: boolean; readonly audience: string };
  readonly issuers: readonly IssuerConfig[];
}

export interface RoleConfig {
  readonly groups: readonly string[];
  readonly users: readonly string[];
}

export interface AccessRule {
  readonly role: string;
  readonly modes: readonly Mode[];
  readonly maxDurationSeconds: number;
  readonly requireTicket?: RegExp;
  /** When the rule applies (wall-clock hours in a time zone); outside them it does not allow. */
  readonly hours?: Hours;
  /** The two-person rule: a grant under this rule waits for approvals (see broker/policy/approvals.ts). */
  readonly requireApproval?: ApprovalRequirement;
}

/** Who must approve a grant before its requester can collect it. */
export interface ApprovalRequirement {
  /** Roles whose holders may approve; never the requester, even when they hold one. */
  readonly approvers: readonly string[];
  /** Approvals by distinct approvers needed (1..10). */
  readonly minApprovals: number;
  /** How long a request waits for its approvals, and an approved one for its collection. */
  readonly expiresAfterSeconds: number;
}

export interface TargetConfig {
  readonly name: string;
  /** `host:port` of the inspector (resolved through /json/list) or a full ws:// URL. */
  readonly inspector: string;
  readonly owners: readonly string[];
  readonly access: readonly AccessRule[];
  readonly maxPauseSeconds: number;
  /** How long this target's session records are kept (S3 Object Lock retain-until). */
  readonly retentionDays: number;
  /** The alert rules watching this target's sessions (defaults from alerting.rules). */
  readonly alerts: AlertRules;
  readonly snapshot: SnapshotLimits;
  /** What evaluations may do here: allowed at all, identifiers denied, result size. */
  readonly evaluation: EvaluationPolicy;
  /** Names and value patterns redacted in everything that leaves the broker and everything recorded. */
  readonly redaction: RedactionPolicy;
}

/** What a snapshot capture may take from the target, and how often. */
export interface SnapshotLimits {
  readonly frames: number;
  readonly expandFrames: number;
  readonly depth: number;
  readonly collectionItems: number;
  readonly fieldsPerObject: number;
  readonly stringLength: number;
  readonly timeBudgetMs: number;
  readonly maxBytes: number;
  /** At most one capture per breakpoint in this many ms; hits in between are resumed at once and counted. */
  readonly minIntervalMs: number;
  readonly maxCapturesPerBreakpoint: number;
  readonly maxCapturesPerMinute: number;
}

export interface BrokerLimits {
  readonly maxFrameBytes: number;
  readonly evaluateTimeoutMs: number;
  readonly conditionTimeoutMs: number;
  readonly clientBufferBytes: number;
  /** Pause time per second that one breakpoint's unseen pauses (conditions, logpoints) may cost the target. */
  readonly conditionBudgetMsPerSecond: number;
  /** How often the broker pings each client (WebSocket ping; never the target, whose inspector drops on a ping). */
  readonly clientPingIntervalMs: number;
  /** A client heard nothing from (no pong, no frame) for this long is gone: its session ends as client_unresponsive. */
  readonly clientUnresponsiveMs: number;
  /** A request to the target unanswered this long ends the session (target_unresponsive). */
  readonly targetResponseSeconds: number;
  /** A larger frame from the target is not parsed: a response becomes an error, an event is dropped (both recorded). */
  readonly maxTargetFrameBytes: number;
}

export interface AuditConfig {
  readonly store:
    | { readonly kind: 'local'; readonly dir: string }
    | { readonly kind: 's3'; readonly bucket: string; readonly prefix: string; readonly endpoint?: string; readonly region?: string; readonly forcePathStyle?: boolean };
  readonly retentionDays: number;
  readonly failClosedAfterSeconds: number;
  readonly uploadIntervalSeconds: number;
  readonly chunkMaxEvents: number;
}

export interface LoupeConfig {
  readonly server: { readonly host: string; readonly port: number; readonly publicUrl?: string };
  readonly stateDir: string;
  readonly limits: BrokerLimits;
  readonly identity: IdentityConfig;
  readonly roles: Readonly<Record<string, RoleConfig>>;
  readonly admins: readonly string[];
  readonly auditors: readonly string[];
  readonly audit: AuditConfig;
  readonly alerting: AlertingConfig;
  readonly targets: Readonly<Record<string, TargetConfig>>;
}
