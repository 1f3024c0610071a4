import type { Mode } from '../config/types';

/** A grant as the state backend keeps it (broker/grants/grantStore.ts issues and verifies them). */
export interface Grant {
  readonly grantId: string;
  readonly sub: string;
  /** The identity issuer that vouched for `sub` (absent on grants of older brokers): a subject names a user only within its issuer. */
  readonly issuer?: string;
  readonly name: string;
  readonly groups: readonly string[];
  readonly target: string;
  readonly mode: Mode;
  /** 'v8': this grant may run expressions in V8 (app functions, getters; redaction best-effort). Default: Loupe expressions. */
  readonly evaluation?: 'loupe' | 'v8';
  readonly reason: string;
  readonly ticket?: string;
  readonly rule: string;
  /** The access request this grant was collected from, and who approved it (the two-person rule). */
  readonly requestId?: string;
  readonly approvedBy?: readonly Approver[];
  readonly issuedAt: number;
  readonly expiresAt: number;
  revokedAt?: number;
  revokedBy?: string;
}

export interface Approver {
  readonly sub: string;
  readonly name: string;
  /** ISO time of the approval. */
  readonly at: string;
}
