/**
 * Why the broker closed the session's socket, in words the Debug Console and the notification show.
 *
 * LOCAL COPY of the broker's close codes (broker/session/debugSession.ts `closeCodes`): to be replaced by an
 * import of common/session.ts once that shared definition exists.
 */
export const sessionCloseCodes = {
  expired: 4001,
  revoked: 4002,
  shutdown: 4003,
  target_gone: 4004,
  audit_failure: 4005,
  alert: 4006,
  policy: 4007,
  internal_error: 4008,
  client_unresponsive: 4009,
  target_unresponsive: 4010,
} as const;

type SessionCloseReason = keyof typeof sessionCloseCodes;

/** Completes "the session has ended: …". */
const closeWords: Record<SessionCloseReason, string> = {
  expired: 'the grant expired',
  revoked: 'the grant was revoked',
  shutdown: 'the broker is shutting down',
  target_gone: 'the target process went away',
  audit_failure: 'the audit trail is unavailable (Loupe fails closed)',
  alert: "an alert rule of the target's owners ended it",
  policy: "the target's policy changed and no longer allows this session",
  internal_error: 'the broker failed handling a message of this session (recorded in the audit trail)',
  client_unresponsive: 'this debugger stopped answering the broker’s pings',
  target_unresponsive: 'the target stopped answering its inspector',
};

const byCode = new Map<number, string>(Object.entries(sessionCloseCodes).map(([reason, code]) => [code, closeWords[reason as SessionCloseReason]]));

/** Why the session ended: the words for a known code, else the broker's close reason, else the bare code. */
export function closeMessage(code: number, reason: string): string {
  return byCode.get(code) ?? (reason || `the connection to the broker closed (code ${code})`);
}
