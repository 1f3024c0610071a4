/** The broker's HTTP answers, shared by the broker and its clients (types only: no code, no broker imports). */

/** The answer to a granted request (201), directly or collected after its approvals. */
export interface GrantAnswer {
  readonly grantId: string;
  readonly token: string;
  readonly expiresAt: string;
  readonly attachUrl: string;
  readonly durationSeconds: number;
  readonly capped: boolean;
  /** Who approved it, when it came through an access request. */
  readonly requestId?: string;
  readonly approvedBy?: readonly { sub: string; name: string; at: string }[];
}
