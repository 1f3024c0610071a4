/**
 * The broker's HTTP answers as the VS Code extension and the debug adapter read them: one definition of the
 * wire contract instead of a copy on each side. Types only (no code), so the extension bundle takes nothing of
 * the broker with it.
 */

/**
 * The `code` of an error answer `{ error: { code, message, rule? } }` and the HTTP status it is answered with: one
 * table for the broker (LoupeError) and its clients. Data only, so the extension can import it.
 */
export const httpErrorStatus = {
  bad_request: 400,
  payload_too_large: 413,
  // A report the broker will not render in its own memory (the transcript itself can still be downloaded).
  report_too_large: 422,
  // The HTTP request itself: it did not arrive within the server's bounds, or its headers were over node's limit.
  request_timeout: 408,
  headers_too_large: 431,
  not_found: 404,
  method_not_allowed: 405,
  unauthenticated: 401,
  token_expired: 401,
  token_invalid: 401,
  forbidden: 403,
  policy_refused: 403,
  grant_revoked: 403,
  grant_expired: 403,
  session_busy: 409,
  self_approval: 403,
  not_approver: 403,
  request_not_pending: 409,
  request_not_approved: 409,
  target_unreachable: 502,
  // The token may be fine: the broker could not reach its identity provider to check it. Retry later.
  issuer_unavailable: 503,
  // The audit trail failed closed (store or disk): nothing new starts until it recovers. Retry later.
  audit_unavailable: 503,
  // The shared state database (PostgreSQL) cannot be reached: nothing is granted or attached that it did not record. Retry later.
  state_unavailable: 503,
  config_invalid: 500,
  internal: 500,
} as const;

export type HttpErrorCode = keyof typeof httpErrorStatus;

/** The body of every refused HTTP request. */
export interface HttpErrorBody {
  readonly error: { readonly code: HttpErrorCode; readonly message: string; readonly rule?: string } & Record<string, unknown>;
}

/** A target the caller may attach to (GET /v1/targets). */
export interface TargetInfo {
  readonly name: string;
  readonly modes: readonly string[];
  /** ['loupe'], or with 'v8' when a rule lets the caller ask for V8 evaluation. */
  readonly evaluation?: readonly string[];
  readonly maxDurationSeconds: number;
  readonly ticketRequired: boolean;
  readonly ticketPattern?: string;
}

/** The body of POST /v1/grants. */
export interface GrantRequest {
  readonly target: string;
  readonly mode: string;
  /** 'v8' asks for the privilege of V8 evaluation (app code may run; redaction best-effort); default 'loupe'. */
  readonly evaluation?: 'loupe' | 'v8';
  readonly durationSeconds: number;
  readonly reason: string;
  readonly ticket?: string;
}

/** The answer to a granted request (201), directly or collected after its approvals. */
export interface GrantAnswer {
  readonly grantId: string;
  readonly token: string;
  readonly expiresAt: string;
  readonly attachUrl: string;
  readonly durationSeconds: number;
  readonly capped: boolean;
  /** 'v8' when the grant may run expressions in V8 (app functions, getters; redaction best-effort); else Loupe expressions. */
  readonly evaluation: 'loupe' | 'v8';
  /** Who approved it, when it came through an access request. */
  readonly requestId?: string;
  readonly approvedBy?: readonly { sub: string; name: string; at: string }[];
}

export type AccessRequestStatus = 'pending' | 'approved' | 'denied' | 'expired' | 'collected' | 'withdrawn';

export interface AccessRequestDecision {
  readonly sub: string;
  readonly name: string;
  readonly at: string;
  readonly comment?: string;
}

/** An access request under the two-person rule (202 to POST /v1/grants, GET /v1/requests/:id). */
export interface AccessRequestInfo {
  readonly requestId: string;
  readonly status: AccessRequestStatus;
  readonly target: string;
  readonly mode: string;
  /** 'v8' when the request asks for V8 evaluation (the approver should weigh it). */
  readonly evaluation?: 'v8';
  readonly durationSeconds: number;
  readonly reason: string;
  readonly ticket?: string;
  readonly requester: { readonly sub: string; readonly name: string };
  /** The policy rule that asks for approval. */
  readonly rule?: string;
  readonly approvers: readonly string[];
  readonly minApprovals: number;
  readonly approvals: readonly AccessRequestDecision[];
  readonly denial?: AccessRequestDecision;
  /** The alert that made approval necessary, when it was not the policy rule. */
  readonly cause?: { readonly alertId: string; readonly rule: string; readonly message: string; readonly at: string; readonly session?: string };
  readonly createdAt: string;
  readonly expiresAt: string;
  readonly grantId?: string;
  /** The state in words, from the broker. */
  readonly message: string;
}

/** An alert as GET /v1/alerts lists it (the broker's alert rules, for the owners of its target and admins). */
export interface AlertInfo {
  readonly id: string;
  readonly rule: string;
  readonly at: string;
  readonly target: string;
  readonly session?: string;
  readonly user?: string;
  readonly message: string;
  /** none, end-session or require-approval. */
  readonly action: string;
  /** The records that made the rule fire. */
  readonly evidence: readonly { seq: number; type: string; summary: string }[];
}

/** A recorded session as GET /v1/sessions lists it (auditors). */
export interface RecordedSession {
  readonly sessionId: string;
  readonly target: string;
  readonly user: { readonly sub: string; readonly name: string };
  readonly mode: string;
  /** 'v8' when the session could run expressions in V8. */
  readonly evaluation?: 'v8';
  readonly reason: string;
  readonly ticket?: string;
  readonly grantId: string;
  readonly startedAt: string;
  readonly endedAt?: string;
  readonly endReason?: string;
  /** 'damaged': its stored objects cannot be read (see `problem`); its report says what fails verification. */
  readonly state: 'live' | 'ended' | 'incomplete' | 'damaged';
  readonly problem?: string;
}
