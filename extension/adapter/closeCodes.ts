import { closeCodes, type EndReason } from '../../common/session';

/** Why the broker closed the session's socket, in words the Debug Console and the notification show. */
type SessionCloseReason = Exclude<EndReason, 'client_closed'>;

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
  state_unavailable: 'the broker lost its shared state database for longer than its bound (Loupe fails closed)',
};

const byCode = new Map<number, string>(Object.entries(closeWords).map(([reason, words]) => [closeCodes[reason as SessionCloseReason], words]));

/** Why the session ended: the words for a known code, else the broker's close reason, else the bare code. */
export function closeMessage(code: number, reason: string): string {
  return byCode.get(code) ?? (reason || `the connection to the broker closed (code ${code})`);
}
