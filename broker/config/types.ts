import type { z } from 'zod';
import type { Hours } from '../policy/hours';
import type { RedactionPolicy } from '../policy/redact';
import type { EvaluationPolicy } from '../gate/evaluationCheck';
import type { AlertingConfig, AlertRules } from './alertConfig';
import type { auditSchema, issuerSchema, limitsSchema, roleSchema } from './schema';
import type { ApprovalRequirementInput, Evaluation, Mode, SnapshotLimits } from './schema/target';

// The policy file is defined once, in ./schema.ts; the types here derive from it. What is declared by hand is the
// compiled, frozen form the broker runs on where it differs from the file: durations in seconds under names that
// say so, regular expressions compiled, paths resolved, defaults that come from elsewhere in the file filled in.

export { evaluations, modes, type Evaluation, type Mode, type SnapshotLimits } from './schema/target';
export type { ConfigField } from './schema';

type Frozen<T> = { readonly [K in keyof T]: T[K] extends readonly (infer I)[] ? readonly I[] : T[K] };

type IssuerInput = z.output<typeof issuerSchema>;

export interface IssuerConfig extends Frozen<Pick<IssuerInput, 'issuer' | 'jwksUrl' | 'publicKey' | 'algorithms' | 'groupsClaim' | 'nameClaim'>> {
  readonly audience: string;
  /** Keys from `<issuer>/.well-known/openid-configuration` → jwks_uri; exactly one of discovery, jwksUrl and publicKey. */
  readonly discovery: boolean;
  /** How long a fetched key set is trusted before it is fetched again: how soon a key the IdP removed stops verifying. */
  readonly jwksCacheMaxAgeSeconds: number;
}

export interface IdentityConfig {
  /** The built-in development issuer (`loupe token`): on by default so the demo runs without an IdP. */
  readonly devIssuer: { readonly enabled: boolean; readonly audience: string };
  readonly issuers: readonly IssuerConfig[];
}

export type RoleConfig = Frozen<z.output<typeof roleSchema>>;

export interface AccessRule {
  readonly role: string;
  readonly modes: readonly Mode[];
  /** How a grant under this rule may evaluate expressions; 'v8' is the privilege of running them in V8. */
  readonly evaluation: readonly Evaluation[];
  readonly maxDurationSeconds: number;
  readonly requireTicket?: RegExp;
  /** When the rule applies (wall-clock hours in a time zone); outside them it does not allow. */
  readonly hours?: Hours;
  /** The two-person rule: a grant under this rule waits for approvals (see broker/policy/approvals.ts). */
  readonly requireApproval?: ApprovalRequirement;
}

/** Who must approve a grant before its requester can collect it. */
export interface ApprovalRequirement extends Frozen<Pick<ApprovalRequirementInput, 'approvers' | 'minApprovals'>> {
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

export type BrokerLimits = Frozen<z.output<typeof limitsSchema>>;

type AuditInput = z.output<typeof auditSchema>;
type S3Input = NonNullable<AuditInput['s3']>;

export interface AuditConfig extends Frozen<Pick<AuditInput, 'retentionDays' | 'chunkMaxEvents' | 'chunkMaxBytes' | 'maxReportBytes'>> {
  readonly store:
    | { readonly kind: 'local'; readonly dir: string }
    | ({ readonly kind: 's3' } & Frozen<Pick<S3Input, 'bucket' | 'prefix'>> & Partial<Frozen<Pick<S3Input, 'endpoint' | 'region' | 'forcePathStyle'>>>);
  readonly failClosedAfterSeconds: number;
  readonly walStallAfterSeconds: number;
  readonly uploadIntervalSeconds: number;
}

export interface StateConfig {
  /** Shared state for several replicas; absent: the state directory (one broker). */
  readonly postgres?: { readonly url: string; readonly schema: string };
  readonly replica?: string;
  readonly sessionLeaseSeconds: number;
  readonly outageGraceSeconds: number;
  readonly noticePollSeconds: number;
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
  readonly state: StateConfig;
  readonly alerting: AlertingConfig;
  readonly targets: Readonly<Record<string, TargetConfig>>;
}
