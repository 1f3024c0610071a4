import { join } from 'node:path';
import { KeyObject, randomUUID, verify as verifySignature } from 'node:crypto';
import { jwtVerify, SignJWT } from 'jose';
import type { Evaluation, Mode } from '../config/types';
import { LoupeError } from '../errors';
import type { SigningKey } from '../identity/keys';
import { tokenError, type Identity } from '../identity/verifyIdentity';
import { NdjsonLog } from '../ndjsonLog';

export const grantIssuer = 'urn:loupe:broker';
export const grantAudience = 'urn:loupe:attach';

export interface Grant {
  readonly grantId: string;
  readonly sub: string;
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

type GrantLogLine = { type: 'issued'; grant: Grant } | { type: 'revoked'; grantId: string; by: string; at: number };

/**
 * Issues, verifies and revokes grants. Every change is appended to `grants.ndjson` before it takes effect,
 * so a revocation survives a broker restart.
 */
export class GrantStore {
  private readonly grants = new Map<string, Grant>();
  private readonly stateLog: NdjsonLog<GrantLogLine>;

  constructor(
    stateDir: string,
    private readonly key: SigningKey,
    private readonly clock: () => number,
  ) {
    this.stateLog = new NdjsonLog(join(stateDir, 'grants.ndjson'));
    this.stateLog.replay((entry) => {
      if (entry.type === 'issued') this.grants.set(entry.grant.grantId, entry.grant);
      else {
        const grant = this.grants.get(entry.grantId);
        if (grant) Object.assign(grant, { revokedAt: entry.at, revokedBy: entry.by });
      }
    });
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
    this.stateLog.append({ type: 'issued', grant });
    this.grants.set(grant.grantId, grant);
    return { grant, token };
  }

  get(grantId: string): Grant | undefined {
    return this.grants.get(grantId);
  }

  revoke(grantId: string, by: string): Grant {
    const grant = this.grants.get(grantId);
    if (!grant) throw new LoupeError('not_found', `no grant ${grantId}`);
    if (grant.revokedAt === undefined) {
      const at = Math.floor(this.clock() / 1000);
      this.stateLog.append({ type: 'revoked', grantId, by, at });
      grant.revokedAt = at;
      grant.revokedBy = by;
    }
    return grant;
  }

  /** Checks that a live, unrevoked grant stands behind the token; any mismatch is refused. */
  async verifyToken(token: string, grantId?: string): Promise<Grant> {
    // A token that names another grant, or none this broker issued, is refused before any signature check:
    // a flood of such tokens costs no crypto (whose jobs share the thread pool with the WAL's syncs).
    const named = claimedGrantId(token);
    if (named !== undefined && ((grantId !== undefined && named !== grantId) || !this.grants.has(named))) throw new LoupeError('token_invalid', 'grant token does not match this grant');
    // A forged signature is refused here, on this thread: jose verifies with WebCrypto, whose jobs wait in the
    // thread pool behind the WAL's fdatasyncs, so on a busy disk a flood of forgeries would wait seconds.
    if (named !== undefined && !this.signatureHolds(token)) throw new LoupeError('token_invalid', 'grant token has an invalid signature');
    let jti: string | undefined;
    try {
      const { payload } = await jwtVerify(token, this.key.publicKey, {
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
    const grant = jti ? this.grants.get(jti) : undefined;
    if (!grant || (grantId !== undefined && grant.grantId !== grantId)) throw new LoupeError('token_invalid', 'grant token does not match this grant');
    this.assertUsable(grant);
    return grant;
  }

  private verifyKey: KeyObject | undefined;

  /** The token's EdDSA signature under the grant key (other algorithms are left to jose, which refuses them). */
  private signatureHolds(token: string): boolean {
    const [header, payload, signature] = token.split('.') as [string, string, string];
    try {
      if ((JSON.parse(Buffer.from(header, 'base64url').toString('utf8')) as { alg?: unknown }).alg !== 'EdDSA') return true;
    } catch {
      return true;
    }
    this.verifyKey ??= KeyObject.from(this.key.publicKey);
    return verifySignature(null, Buffer.from(`${header}.${payload}`), this.verifyKey, Buffer.from(signature, 'base64url'));
  }

  assertUsable(grant: Grant): void {
    if (grant.revokedAt !== undefined) throw new LoupeError('grant_revoked', `grant ${grant.grantId} was revoked by ${grant.revokedBy}`);
    if (grant.expiresAt * 1000 <= this.clock()) throw new LoupeError('grant_expired', `grant ${grant.grantId} has expired`);
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
