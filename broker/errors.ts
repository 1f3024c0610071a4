import { httpErrorStatus, type HttpErrorCode } from '../common/http';

/** One error base for the broker: a stable code (common/http.ts, shared with its clients), its HTTP status, and a message a user can act on. */
export type LoupeErrorCode = HttpErrorCode;

const httpStatus: Record<LoupeErrorCode, number> = httpErrorStatus;

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
