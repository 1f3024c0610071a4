/** One error base for the broker: a stable code, the HTTP status it maps to, and a message a user can act on. */
export type LoupeErrorCode =
  | 'bad_request'
  | 'payload_too_large'
  | 'not_found'
  | 'method_not_allowed'
  | 'unauthenticated'
  | 'token_expired'
  | 'token_invalid'
  | 'forbidden'
  | 'policy_refused'
  | 'grant_revoked'
  | 'grant_expired'
  | 'session_busy'
  | 'self_approval'
  | 'not_approver'
  | 'request_not_pending'
  | 'request_not_approved'
  | 'target_unreachable'
  | 'issuer_unavailable'
  | 'audit_unavailable'
  | 'config_invalid'
  | 'internal';

const httpStatus: Record<LoupeErrorCode, number> = {
  bad_request: 400,
  payload_too_large: 413,
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
  config_invalid: 500,
  internal: 500,
};

export class LoupeError extends Error {
  override readonly name = 'LoupeError';
  constructor(
    readonly code: LoupeErrorCode,
    message: string,
    readonly details?: Record<string, unknown>,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }

  get status(): number {
    return httpStatus[this.code];
  }

  toJSON(): { error: { code: LoupeErrorCode; message: string } & Record<string, unknown> } {
    return { error: { code: this.code, message: this.message, ...this.details } };
  }
}
