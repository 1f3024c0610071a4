import { createPublicKey, KeyObject, randomUUID, verify as verifySignature } from 'node:crypto';
import { errors as joseErrors } from 'jose';
import type { Evaluation, Mode } from '../config/types';
import { LoupeError } from '../errors';
import { signCompact, type SigningKey } from '../identity/keys';
import { tokenError, type Identity } from '../identity/verifyIdentity';
import type { StateBackend } from '../state/stateBackend';
import type { Approver, Grant } from './grantTypes';

export type { Approver, Grant } from './grantTypes';

/** What a verified grant token says: whose grant, on which target (read before the grant's stored state). */
export interface GrantClaims {
  readonly grantId: string;
  readonly sub: string;
  readonly target: string | undefined;
}

export const grantIssuer = 'urn:loupe:broker';
export const grantAudience = 'urn:loupe:attach';

/**
 * Issues, verifies and revokes grants. Every grant and revocation is in the state backend (broker/state) before it
 * takes effect: the state directory for one broker, PostgreSQL for several replicas. Each replica signs with its own
 * grant key and publishes the public half there, so a grant issued by one replica verifies on every other.
 */
export class GrantStore {
  /** Grant keys of other replicas, by kid, once fetched (a key is never withdrawn while grants it signed live). */
  private readonly keys = new Map<string, KeyObject>();

  constructor(
    private readonly state: StateBackend,
    private readonly key: SigningKey,
    private readonly clock: () => number,
  ) {
    this.keys.set(key.kid, KeyObject.from(key.publicKey));
  }

  /** Publishes this replica's grant key, so other replicas verify the grants it issues. */
  async start(): Promise<void> {
    await this.state.publishGrantKey({ ...this.key.publicJwk, kid: this.key.kid });
  }

  async issue(
    identity: Identity,
    fields: {
      target: string;
      mode: Mode;
      evaluation?: Evaluation;
      reason: string;
      ticket?: string;
      durationSeconds: number;
      rule: string;
      approval?: { requestId: string; approvedBy: readonly Approver[] };
    },
  ): Promise<{ grant: Grant; token: string }> {
    const now = this.clock();
    const issuedAt = Math.floor(now / 1000);
    const grant: Grant = {
      grantId: randomUUID(),
      sub: identity.sub,
      issuer: identity.issuer,
      name: identity.name,
      groups: identity.groups,
      target: fields.target,
      mode: fields.mode,
      ...(fields.evaluation === 'v8' ? { evaluation: 'v8' as const } : {}),
      reason: fields.reason,
      ...(fields.ticket ? { ticket: fields.ticket } : {}),
      rule: fields.rule,
      ...(fields.approval ? { requestId: fields.approval.requestId, approvedBy: fields.approval.approvedBy } : {}),
      issuedAt,
      expiresAt: issuedAt + fields.durationSeconds,
    };
    const approval = grant.approvedBy ? { request: grant.requestId, approved_by: grant.approvedBy.map((a) => a.sub) } : {};
    // Claims in the order jose's SignJWT wrote them; signed on this thread (see signCompact).
    const token = signCompact(
      this.key,
      { typ: 'JWT' },
      JSON.stringify({
        target: grant.target,
        mode: grant.mode,
        ...(grant.evaluation === 'v8' ? { evaluation: 'v8' } : {}),
        reason: grant.reason,
        ...(grant.ticket ? { ticket: grant.ticket } : {}),
        name: grant.name,
        ...approval,
        iss: grantIssuer,
        aud: grantAudience,
        sub: grant.sub,
        jti: grant.grantId,
        iat: issuedAt,
        exp: grant.expiresAt,
      }),
    );
    await this.state.putGrant(grant);
    return { grant, token };
  }

  get(grantId: string): Promise<Grant | undefined> {
    return this.state.getGrant(grantId);
  }

  /** Revokes once (the first revocation stands, whichever replica took it). */
  async revoke(grantId: string, by: string): Promise<Grant> {
    const grant = await this.state.revokeGrant(grantId, by, Math.floor(this.clock() / 1000));
    if (!grant) throw new LoupeError('not_found', `no grant ${grantId}`);
    return grant;
  }

  /** Checks that a live, unrevoked grant stands behind the token; any mismatch is refused. */
  async verifyToken(token: string, grantId?: string): Promise<Grant> {
    const claims = await this.verifyTokenClaims(token, grantId);
    const grant = await this.state.getGrant(claims.grantId);
    return this.grantBehind(claims, grant);
  }

  /**
   * The token's signature and claims, checked without the grant's stored state (its revocation): what it says once
   * it is known to be a grant token this broker or another replica issued and still in date. A token that names
   * another grant than `grantId` is refused before any signature check; the signature is checked here on the main
   * thread (node:crypto, tens of microseconds), so a flood of forgeries neither waits in nor fills libuv's thread
   * pool, where the WAL's fdatasyncs run.
   */
  async verifyTokenClaims(token: string, grantId?: string): Promise<GrantClaims> {
    const named = claimedGrantId(token);
    if (named !== undefined && grantId !== undefined && named !== grantId) throw new LoupeError('token_invalid', 'grant token does not match this grant');
    const verifyKey = await this.keyOf(token);
    let payload: Record<string, unknown>;
    try {
      payload = this.verifiedPayload(token, verifyKey);
    } catch (err) {
      throw tokenError(err, 'grant token');
    }
    const jti = payload.jti as string;
    if (grantId !== undefined && jti !== grantId) throw new LoupeError('token_invalid', 'grant token does not match this grant');
    return { grantId: jti, sub: payload.sub as string, target: typeof payload.target === 'string' ? payload.target : undefined };
  }

  /** The stored grant behind verified claims, refused unless it is the token's and still usable. */
  grantBehind(claims: GrantClaims, grant: Grant | undefined): Grant {
    if (!grant || grant.grantId !== claims.grantId) throw new LoupeError('token_invalid', 'grant token does not match this grant');
    this.assertUsable(grant);
    return grant;
  }

  /**
   * The payload of a grant token whose EdDSA signature holds under `key`, with the checks jose's jwtVerify makes
   * for the options grants use (issuer, audience, EdDSA only, jti/exp/sub required, exp and nbf against the clock):
   * jose would verify the signature a second time, in the thread pool. Throws jose's errors (see tokenError).
   */
  private verifiedPayload(token: string, key: KeyObject): Record<string, unknown> {
    const parts = token.split('.');
    if (parts.length !== 3) throw new joseErrors.JWTInvalid('JWTs must have three components');
    const [headerPart, payloadPart, signaturePart] = parts as [string, string, string];
    const header = headerOf(token);
    if (!header || Array.isArray(header)) throw new joseErrors.JWSInvalid('JWS Protected Header is invalid');
    if (header.alg !== 'EdDSA') throw new joseErrors.JOSEAlgNotAllowed('"alg" (Algorithm) Header Parameter value not allowed');
    // Grant tokens carry no critical extensions; jose refuses ones it does not know, and so does this.
    if (Object.hasOwn(header, 'crit') || Object.hasOwn(header, 'b64')) throw new joseErrors.JOSENotSupported('critical or b64 header parameters are not supported in grant tokens');
    if (!/^[A-Za-z0-9_-]*$/.test(signaturePart) || !verifySignature(null, Buffer.from(`${headerPart}.${payloadPart}`), key, Buffer.from(signaturePart, 'base64url')))
      throw new joseErrors.JWSSignatureVerificationFailed();
    let payload: unknown;
    try {
      payload = JSON.parse(Buffer.from(payloadPart, 'base64url').toString('utf8'));
    } catch {
      throw new joseErrors.JWTInvalid('JWT Claims Set must be a top-level JSON object');
    }
    if (typeof payload !== 'object' || payload === null || Array.isArray(payload)) throw new joseErrors.JWTInvalid('JWT Claims Set must be a top-level JSON object');
    const claims = payload as Record<string, unknown>;
    const failed = (message: string, claim: string, reason: string) => new joseErrors.JWTClaimValidationFailed(message, claims, claim, reason);
    for (const claim of ['jti', 'exp', 'sub', 'iss', 'aud']) if (!Object.hasOwn(claims, claim)) throw failed(`missing required "${claim}" claim`, claim, 'missing');
    if (claims.iss !== grantIssuer) throw failed('unexpected "iss" claim value', 'iss', 'check_failed');
    if (!(claims.aud === grantAudience || (Array.isArray(claims.aud) && claims.aud.includes(grantAudience)))) throw failed('unexpected "aud" claim value', 'aud', 'check_failed');
    if (typeof claims.sub !== 'string') throw failed('"sub" claim must be a string', 'sub', 'invalid');
    if (typeof claims.jti !== 'string') throw failed('"jti" claim must be a string', 'jti', 'invalid');
    if (Object.hasOwn(claims, 'iat') && typeof claims.iat !== 'number') throw failed('"iat" claim must be a number', 'iat', 'invalid');
    const now = Math.floor(this.clock() / 1000);
    if (Object.hasOwn(claims, 'nbf')) {
      if (typeof claims.nbf !== 'number') throw failed('"nbf" claim must be a number', 'nbf', 'invalid');
      if (claims.nbf > now) throw failed('"nbf" claim timestamp check failed', 'nbf', 'check_failed');
    }
    if (typeof claims.exp !== 'number') throw failed('"exp" claim must be a number', 'exp', 'invalid');
    if (claims.exp <= now) throw new joseErrors.JWTExpired('"exp" claim timestamp check failed', claims, 'exp', 'check_failed');
    return claims;
  }

  /**
   * The grant key named by the token's kid: this replica's, or one another replica published. A kid no replica
   * published is refused; a token without a kid is checked against this replica's key (grants of older brokers).
   */
  private async keyOf(token: string): Promise<KeyObject> {
    const kid = headerOf(token)?.kid;
    if (kid === undefined) return this.keys.get(this.key.kid)!;
    if (typeof kid !== 'string' || kid.length > 200) throw new LoupeError('token_invalid', 'grant token names no usable key');
    const known = this.keys.get(kid);
    if (known) return known;
    const jwk = await this.state.grantKey(kid);
    if (!jwk || jwk.kty !== 'OKP' || jwk.crv !== 'Ed25519' || typeof jwk.x !== 'string' || 'd' in jwk)
      throw new LoupeError('token_invalid', `grant token is signed by a key (${kid}) that no broker published`);
    const key = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: jwk.x }, format: 'jwk' });
    if (this.keys.size < 1000) this.keys.set(kid, key);
    return key;
  }

  assertUsable(grant: Grant): void {
    if (grant.revokedAt !== undefined) throw new LoupeError('grant_revoked', `grant ${grant.grantId} was revoked by ${grant.revokedBy}`);
    if (grant.expiresAt * 1000 <= this.clock()) throw new LoupeError('grant_expired', `grant ${grant.grantId} has expired`);
  }
}

/** The token's protected header, read without verifying anything (undefined when it cannot be read). */
function headerOf(token: string): { alg?: unknown; kid?: unknown } | undefined {
  const header = token.split('.')[0] ?? '';
  if (header.length > 4096) return undefined;
  try {
    const value = JSON.parse(Buffer.from(header, 'base64url').toString('utf8')) as unknown;
    return typeof value === 'object' && value !== null ? (value as { alg?: unknown; kid?: unknown }) : undefined;
  } catch {
    return undefined;
  }
}

/** The grant id a token claims, read without verifying anything (undefined when it has none to read). */
function claimedGrantId(token: string): string | undefined {
  const parts = token.split('.');
  if (parts.length !== 3 || parts[1]!.length > 8192) return undefined;
  try {
    const payload = JSON.parse(Buffer.from(parts[1]!, 'base64url').toString('utf8')) as unknown;
    const jti = typeof payload === 'object' && payload !== null && Object.hasOwn(payload, 'jti') ? (payload as { jti: unknown }).jti : undefined;
    return typeof jti === 'string' ? jti : undefined;
  } catch {
    return undefined;
  }
}
