import { decodeJwt } from 'jose';
import type { AuditEvent } from './audit/events';
import { bounded, credentialDigest } from './audit/securityStream';
import { LoupeError } from './errors';
import { safeText } from './gate/cdpGate';
import type { Grant } from './grants/grantStore';
import type { Identity } from './identity/verifyIdentity';

/**
 * The records of the broker's security stream about requests it refused and faults it contained: what was
 * refused, why (as a stable word and in full), and where the request came from. Credentials only as digests.
 */

/** Where a refused or rejected request came from, as the edge saw it. */
export interface RequestOrigin {
  readonly source: string | undefined;
  readonly method?: string;
  readonly path?: string;
  readonly userAgent?: string | undefined;
}

/** grant.malformed: a grant request whose body could not be read or parsed: who sent it, from where, and what was wrong. */
export function grantMalformed(identity: Identity, err: unknown, origin?: RequestOrigin): Record<string, unknown> {
  const error = err instanceof LoupeError ? err : undefined;
  const problems = (error?.details as { problems?: unknown } | undefined)?.problems;
  return {
    actor: { sub: bounded(identity.sub), name: bounded(identity.name), issuer: bounded(identity.issuer) },
    code: error?.code ?? 'internal',
    message: bounded(error?.message ?? String(err), 500),
    problems: Array.isArray(problems) ? problems.slice(0, 10).map((p) => bounded(p)) : null,
    ...originData(origin),
  };
}

/** identity.rejected: an identity token missing, malformed, expired or not trusted (undefined for other errors). The token itself is never kept. */
export function identityRejected(err: unknown, authorization: string | undefined, origin?: RequestOrigin): Record<string, unknown> | undefined {
  if (!(err instanceof LoupeError) || !['unauthenticated', 'token_expired', 'token_invalid'].includes(err.code)) return undefined;
  const token = /^Bearer\s+(\S+)$/i.exec(authorization?.trim() ?? '')?.[1];
  let claims: { iss?: unknown; sub?: unknown } = {};
  try {
    if (token && token.length <= 16_384) claims = decodeJwt(token);
  } catch {
    // not a JWT at all: the digest is all there is
  }
  return {
    code: err.code,
    reason: identityRejection(err),
    message: bounded(err.message, 300),
    issuer: bounded(claims.iss),
    claimedSub: bounded(claims.sub),
    tokenDigest: credentialDigest(token ?? authorization),
    ...originData(origin),
  };
}

/** attach.refused: whatever refused it: the credential (as a digest), the grant, the reason. */
export function attachRefused(
  err: unknown,
  grantId: string | undefined,
  grant: Grant | undefined,
  credential: { ticket?: string | null; authorization?: string | undefined },
  origin?: RequestOrigin,
): Record<string, unknown> {
  const error = err instanceof LoupeError ? err : new LoupeError('internal', `attach failed: ${(err as Error)?.message}`);
  const token = /^Bearer\s+(\S+)$/i.exec(credential.authorization?.trim() ?? '')?.[1];
  return {
    reason: attachRefusal(error),
    code: error.code,
    status: error.status,
    message: bounded(error.message, 300),
    grantId: grantId ?? null,
    // The grant's holder and target, when the grant exists: whose access someone tried to use.
    user: grant?.sub ?? null,
    target: grant?.target ?? null,
    credential: credential.ticket != null ? 'ticket' : token ? 'grant token' : credential.authorization ? 'malformed header' : 'none',
    credentialDigest: credentialDigest(credential.ticket ?? token ?? credential.authorization),
    ...originData(origin),
  };
}

/** A contained fault's error in one line, and the top of its stack when it has one (broker.fault). */
export function describeFault(err: unknown): { error: string; stack: { stack?: string } } {
  const error = err instanceof Error ? `${err.name}: ${err.message}` : `thrown: ${safeText(err).slice(0, 200)}`;
  const stack = err instanceof Error && err.stack ? { stack: err.stack.split('\n').slice(0, 8).join('\n') } : {};
  return { error, stack };
}

/** session.fault: a session that ended on a fault in the broker, with the session's record as evidence (undefined for any other record). */
export function sessionFault(event: AuditEvent): Record<string, unknown> | undefined {
  if (event.kind !== 'session' || event.type !== 'session.ended' || (event.data as { endReason?: string }).endReason !== 'internal_error') return undefined;
  const d = event.data as { fault?: unknown };
  return {
    session: event.stream,
    grantId: event.grant ?? null,
    user: event.actor?.sub ?? null,
    target: event.target ?? null,
    endedSeq: event.seq,
    endedHash: event.hash,
    fault: d.fault === undefined ? null : boundedJson(d.fault),
  };
}

function originData(origin: RequestOrigin | undefined): Record<string, unknown> {
  if (!origin) return {};
  return {
    source: bounded(origin.source, 64),
    ...(origin.method ? { method: bounded(origin.method, 16) } : {}),
    ...(origin.path ? { path: bounded(origin.path) } : {}),
    ...(origin.userAgent ? { userAgent: bounded(origin.userAgent) } : {}),
  };
}

/** A fault's detail as recorded in the session's chain, cut to a bounded size for the security stream. */
function boundedJson(value: unknown): unknown {
  const text = JSON.stringify(value) ?? 'null';
  return text.length <= 2000 ? value : { truncated: text.slice(0, 2000), bytes: text.length };
}

/** Why an identity token was rejected, as a stable word (the message says it in full). */
function identityRejection(err: LoupeError): string {
  if (err.code === 'unauthenticated') return /malformed/.test(err.message) ? 'malformed_header' : 'no_token';
  if (err.code === 'token_expired') return 'expired';
  if (/signature|does not publish|algorithm/.test(err.message)) return 'bad_signature';
  if (/issuer/.test(err.message)) return 'unknown_issuer';
  if (/audience/.test(err.message)) return 'wrong_audience';
  if (/not a valid JWT/.test(err.message)) return 'malformed_token';
  return 'invalid';
}

/** Why an attach was refused, as a stable word (the message says it in full). */
function attachRefusal(err: LoupeError): string {
  if (err.code === 'unauthenticated') return 'no_credentials';
  if (/ticket/.test(err.message) && err.code === 'token_invalid') return 'ticket_unknown_used_or_expired';
  if (err.code === 'token_expired' || err.code === 'grant_expired') return 'expired';
  if (err.code === 'grant_revoked') return 'revoked';
  if (/signature|does not publish|algorithm/.test(err.message)) return 'bad_signature';
  if (/does not match this grant/.test(err.message)) return 'wrong_grant';
  if (/not a valid JWT/.test(err.message)) return 'malformed_token';
  if (err.code === 'token_invalid') return 'invalid_token';
  if (/already has a live session/.test(err.message)) return 'second_attach';
  if (/audit trail/.test(err.message)) return 'audit_unavailable';
  if (err.code === 'state_unavailable') return 'state_unavailable';
  if (/no WebSocket endpoint/.test(err.message)) return 'no_endpoint';
  if (err.code === 'not_found') return 'unknown_grant';
  return err.code;
}
