import { createPublicKey, KeyObject, randomUUID, verify as verifySignature } from 'node:crypto';
import { jwtVerify, SignJWT } from 'jose';
import type { Evaluation, Mode } from '../config/types';
import { LoupeError } from '../errors';
import type { SigningKey } from '../identity/keys';
import { tokenError, type Identity } from '../identity/verifyIdentity';
import type { StateBackend } from '../state/stateBackend';
import type { Approver, Grant } from './grantTypes';

export type { Approver, Grant } from './grantTypes';

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
    const token = await new SignJWT({
      target: grant.target,
      mode: grant.mode,
      ...(grant.evaluation === 'v8' ? { evaluation: 'v8' } : {}),
      reason: grant.reason,
      ...(grant.ticket ? { ticket: grant.ticket } : {}),
      name: grant.name,
      ...approval,
    })
      .setProtectedHeader({ alg: 'EdDSA', kid: this.key.kid, typ: 'JWT' })
      .setIssuer(grantIssuer)
      .setAudience(grantAudience)
      .setSubject(grant.sub)
      .setJti(grant.grantId)
      .setIssuedAt(issuedAt)
      .setExpirationTime(grant.expiresAt)
      .sign(this.key.privateKey);
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
    // A token that names another grant, or none this broker issued, is refused before any signature check:
    // a flood of such tokens costs no crypto (whose jobs share the thread pool with the WAL's syncs).
    const named = claimedGrantId(token);
    if (named !== undefined && grantId !== undefined && named !== grantId) throw new LoupeError('token_invalid', 'grant token does not match this grant');
    const stored = named !== undefined ? await this.state.getGrant(named) : undefined;
    if (named !== undefined && !stored) throw new LoupeError('token_invalid', 'grant token does not match this grant');
    const verifyKey = await this.keyOf(token);
    // A forged signature is refused here, on this thread: jose verifies with WebCrypto, whose jobs wait in the
    // thread pool behind the WAL's fdatasyncs, so on a busy disk a flood of forgeries would wait seconds.
    if (named !== undefined && !this.signatureHolds(token, verifyKey)) throw new LoupeError('token_invalid', 'grant token has an invalid signature');
    let jti: string | undefined;
    try {
      const { payload } = await jwtVerify(token, verifyKey, {
        issuer: grantIssuer,
        audience: grantAudience,
        algorithms: ['EdDSA'],
        currentDate: new Date(this.clock()),
        requiredClaims: ['jti', 'exp', 'sub'],
      });
      jti = payload.jti;
    } catch (err) {
      throw tokenError(err, 'grant token');
    }
    const grant = jti === undefined ? undefined : jti === stored?.grantId ? stored : await this.state.getGrant(jti);
    if (!grant || (grantId !== undefined && grant.grantId !== grantId)) throw new LoupeError('token_invalid', 'grant token does not match this grant');
    this.assertUsable(grant);
    return grant;
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

  /** The token's EdDSA signature under the grant key (other algorithms are left to jose, which refuses them). */
  private signatureHolds(token: string, key: KeyObject): boolean {
    const [header, payload, signature] = token.split('.') as [string, string, string];
    if (headerOf(token)?.alg !== 'EdDSA') return true;
    return verifySignature(null, Buffer.from(`${header}.${payload}`), key, Buffer.from(signature, 'base64url'));
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
