/** The shapes of the two-person rule (approvals.ts): access requests, their decisions and log lines, what callers see. */
import type { GrantAnswer } from '../../common/http';
import type { EventType } from '../audit/events';
import type { ApprovalRequirement, LoupeConfig, Mode } from '../config/types';
import type { Approver } from '../grants/grantTypes';
import type { Identity } from '../identity/verifyIdentity';
import type { AccessDecision, GrantRequest } from './access';

export type RequestStatus = 'pending' | 'approved' | 'denied' | 'expired' | 'collected' | 'withdrawn';

export interface RequestDecision {
  readonly sub: string;
  readonly name: string;
  readonly at: string;
  readonly comment?: string;
}

/** The alert that put the user on hold, when it (not the rule) is why approval is needed. */
export interface ApprovalCause {
  readonly alertId: string;
  readonly rule: string;
  readonly message: string;
  readonly at: string;
  readonly session?: string;
}

export interface AccessRequest {
  readonly requestId: string;
  /** `issuer`: the identity issuer that vouched for the requester (absent on requests of older brokers). */
  readonly requester: { readonly sub: string; readonly name: string; readonly groups: readonly string[]; readonly issuer?: string };
  readonly target: string;
  readonly mode: Mode;
  /** 'v8' when the request asks for the privilege of V8 evaluation. */
  readonly evaluation?: 'v8';
  /** Asked for; the grant is capped by the rule again at collection, and runs from then. */
  readonly durationSeconds: number;
  readonly reason: string;
  readonly ticket?: string;
  /** The access rule that allows it once approved. */
  readonly rule: string;
  readonly approvers: readonly string[];
  readonly minApprovals: number;
  readonly expiresAfterSeconds: number;
  readonly cause?: ApprovalCause;
  readonly createdAt: string;
  status: RequestStatus;
  /** Pending: decide by; approved: collect by. */
  expiresAt: string;
  approvals: RequestDecision[];
  approvedAt?: string;
  denial?: RequestDecision;
  grantId?: string;
  closedAt?: string;
}

export interface Hold {
  readonly user: string;
  readonly target: string;
  readonly cause: ApprovalCause;
}

export type RequestLogLine =
  | { type: 'created'; request: AccessRequest }
  | { type: 'approved'; requestId: string; by: RequestDecision; status: 'pending' | 'approved'; expiresAt: string }
  | { type: 'denied'; requestId: string; by: RequestDecision }
  | { type: 'expired' | 'withdrawn'; requestId: string; at: string }
  | { type: 'collected'; requestId: string; grantId: string; at: string }
  | { type: 'hold'; hold: Hold }
  | { type: 'hold_released'; user: string; target: string; alertId: string; requestId: string; at: string };

/** What the API shows of a request. */
export interface AccessRequestView {
  readonly requestId: string;
  readonly status: RequestStatus;
  readonly target: string;
  readonly mode: Mode;
  /** 'v8' when the request asks for V8 evaluation: app code may run, redaction is best-effort. */
  readonly evaluation?: 'v8';
  readonly durationSeconds: number;
  readonly reason: string;
  readonly ticket?: string;
  readonly requester: { readonly sub: string; readonly name: string };
  readonly rule: string;
  readonly approvers: readonly string[];
  readonly minApprovals: number;
  readonly approvals: readonly RequestDecision[];
  readonly denial?: RequestDecision;
  readonly cause?: ApprovalCause;
  readonly createdAt: string;
  readonly expiresAt: string;
  readonly grantId?: string;
  /** The state in words: why approval is needed, who has decided, what is left to do. */
  readonly message: string;
}

export interface ApprovalHooks {
  /** Records an event in the broker's grant stream; throws when the audit trail cannot take it. */
  record(type: EventType, data: Record<string, unknown>): Promise<void>;
  /** Issues and records a grant the policy allows, as POST /v1/grants does. */
  issueGrant(identity: Identity, request: GrantRequest, decision: Extract<AccessDecision, { allowed: true }>, approval: { requestId: string; approvedBy: readonly Approver[] }): Promise<GrantAnswer>;
  /** Revokes a grant just issued for a request another replica collected at the same moment. */
  discardGrant(grantId: string, why: string): Promise<void>;
  log(line: string): void;
}

/** An alert's require-approval asks the target's owners, once, within the default hour. */
