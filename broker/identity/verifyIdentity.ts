import { constants, KeyObject, verify as verifySignature } from 'node:crypto';
import { decodeJwt, decodeProtectedHeader, errors as joseErrors, importSPKI, jwtVerify, type JWTPayload, type JWTVerifyGetKey, type CryptoKey } from 'jose';
import type { LoupeConfig } from '../config/types';
import { LoupeError } from '../errors';
import { devIssuerName, loadDevIssuerKey } from './devIssuer';
import { createIssuerKeys } from './issuerKeys';

export interface Identity {
  readonly sub: string;
  readonly name: string;
  readonly groups: readonly string[];
  readonly issuer: string;
}

interface TrustedIssuer {
  readonly issuer: string;
  readonly audience: string;
  readonly algorithms: readonly string[];
  readonly groupsClaim: string;
  readonly nameClaim: string;
  readonly key: CryptoKey | JWTVerifyGetKey;
}

/** Seconds of clock skew allowed on an identity token's exp and nbf. */
const clockToleranceSeconds = 5;

export type IdentityVerifier = (authorization: string | undefined) => Promise<Identity>;

/** Maps jose's failures to our codes; the message tells the caller what to fix without echoing the token. */
export function tokenError(err: unknown, what: string): LoupeError {
  if (err instanceof LoupeError) return err;
  if (err instanceof joseErrors.JWTExpired) return new LoupeError('token_expired', `${what} has expired; get a new one`);
  if (err instanceof joseErrors.JWTClaimValidationFailed) {
    const claim = err.claim;
    const reason =
      claim === 'nbf' && err.reason === 'check_failed'
        ? 'is not yet valid (nbf in the future)'
        : claim === 'aud'
          ? 'has the wrong audience'
          : claim === 'iss'
            ? 'has the wrong issuer'
            : `failed the "${claim}" check (${err.reason})`;
    return new LoupeError('token_invalid', `${what} ${reason}`);
  }
  if (err instanceof joseErrors.JOSEAlgNotAllowed) return new LoupeError('token_invalid', `${what} uses an algorithm this issuer does not allow`);
  if (err instanceof joseErrors.JWSSignatureVerificationFailed) return new LoupeError('token_invalid', `${what} has an invalid signature`);
  if (err instanceof joseErrors.JWKSNoMatchingKey) return new LoupeError('token_invalid', `${what} is signed with a key the issuer does not publish`);
  if (err instanceof joseErrors.JOSEError) return new LoupeError('token_invalid', `${what} is not a valid JWT (${err.code})`);
  // jose's decoders throw a plain TypeError for text that is not a JWT at all.
  if (err instanceof TypeError) return new LoupeError('token_invalid', `${what} is not a valid JWT (${err.message})`);
  return new LoupeError('token_invalid', `${what} could not be verified`);
}

export function bearer(authorization: string | undefined): string {
  if (!authorization) throw new LoupeError('unauthenticated', 'missing Authorization header: send "Authorization: Bearer <token>"');
  // The scheme's case does not matter (RFC 7235): "bearer" is sent by some clients.
  const match = /^Bearer ([A-Za-z0-9_\-.=]+)$/i.exec(authorization.trim());
  if (!match) throw new LoupeError('unauthenticated', 'malformed Authorization header: expected "Bearer <token>"');
  return match[1]!;
}

/**
 * A claim by name, or else by dotted path into nested objects (`realm_access.roles`); the exact name wins, since
 * namespaced claims like `https://example.com/groups` contain dots themselves.
 */
export function claimAt(payload: JWTPayload, name: string): unknown {
  if (Object.hasOwn(payload, name)) return payload[name];
  let value: unknown = payload;
  for (const part of name.split('.')) {
    if (typeof value !== 'object' || value === null || Array.isArray(value) || !Object.hasOwn(value, part)) return undefined;
    value = (value as Record<string, unknown>)[part];
  }
  return value;
}

/** Longest subject accepted (OpenID Connect's bound on `sub`). */
const maxSubjectLength = 255;

/** Control characters, line and paragraph separators and bidirectional overrides: they forge lines and reorder text where a name is shown. */
const unprintable = /[\p{Cc}\u2028\u2029\u202A-\u202E\u2066-\u2069]/u;

function isPrintableName(value: unknown): value is string {
  return typeof value === 'string' && value.trim() !== '' && value.length <= maxSubjectLength && !unprintable.test(value);
}

/** What a refused claim was, without echoing it. */
function describeClaim(value: unknown): string {
  if (typeof value !== 'string') return Array.isArray(value) ? 'a list' : value === null ? 'null' : typeof value === 'object' ? 'an object' : `a ${typeof value}`;
  if (value.trim() === '') return 'empty';
  if (value.length > maxSubjectLength) return `${value.length} characters long`;
  return 'a string with control or bidirectional-override characters';
}

/** Builds the verifier for every configured issuer; issuer, audience, expiry and algorithms are always checked. */
export async function createIdentityVerifier(config: LoupeConfig, clock: () => number = Date.now, log: (line: string) => void = () => undefined): Promise<IdentityVerifier> {
  const trusted = new Map<string, TrustedIssuer>();
  if (config.identity.devIssuer.enabled) {
    const key = await loadDevIssuerKey(config);
    trusted.set(devIssuerName, { issuer: devIssuerName, audience: config.identity.devIssuer.audience, algorithms: ['EdDSA'], groupsClaim: 'groups', nameClaim: 'name', key: key.publicKey });
  }
  for (const issuer of config.identity.issuers) {
    let key: CryptoKey | JWTVerifyGetKey;
    if (issuer.publicKey) key = await importSPKI(issuer.publicKey, issuer.algorithms[0]!);
    else {
      const remote = createIssuerKeys(issuer, { log });
      // In the background: the broker starts even while the IdP is down, and picks it up when it answers.
      void remote.warmUp();
      key = remote.getKey;
    }
    trusted.set(issuer.issuer, { ...issuer, key });
  }

  // Tokens of issuers whose keys are fixed for the process's life (the dev issuer, a configured publicKey) verified
  // once: a client sends the same token with every call until it expires, and each verification is two Ed25519 checks
  // (one here, one in WebCrypto's thread pool). The claims that change with time (exp, nbf) are checked on every use.
  // Issuers with a fetched key set are verified every time: a key the provider withdraws must stop working.
  const verified = new Map<string, { identity: Identity; exp: number; nbf: number | undefined; until: number }>();
  const remember = (token: string, identity: Identity, payload: JWTPayload) => {
    if (verified.size >= 1000) verified.delete(verified.keys().next().value!);
    verified.set(token, { identity, exp: payload.exp!, nbf: typeof payload.nbf === 'number' ? payload.nbf : undefined, until: clock() + 300_000 });
  };
  const recalled = (token: string): Identity | undefined => {
    const entry = verified.get(token);
    if (!entry) return undefined;
    const now = clock();
    const seconds = Math.floor(now / 1000);
    // Out of date (or not yet valid): verified afresh below, which refuses it with the reason.
    if (now >= entry.until || entry.exp <= seconds - clockToleranceSeconds || (entry.nbf !== undefined && entry.nbf > seconds + clockToleranceSeconds)) {
      verified.delete(token);
      return undefined;
    }
    return entry.identity;
  };

  return async (authorization) => {
    const token = bearer(authorization);
    const known = recalled(token);
    if (known) return known;
    let issuerName: unknown;
    try {
      const header = decodeProtectedHeader(token);
      if (typeof header.alg !== 'string' || header.alg.toLowerCase() === 'none') {
        throw new LoupeError('token_invalid', 'identity token is unsigned (alg "none" is never accepted)');
      }
      issuerName = decodeJwt(token).iss;
    } catch (err) {
      throw tokenError(err, 'identity token');
    }
    const issuer = typeof issuerName === 'string' ? trusted.get(issuerName) : undefined;
    if (!issuer) throw new LoupeError('token_invalid', 'identity token comes from an issuer this broker does not trust');
    let payload: JWTPayload;
    try {
      if (!(await signatureMayHold(token, issuer))) throw new joseErrors.JWSSignatureVerificationFailed();
      ({ payload } = await jwtVerify(token, issuer.key as CryptoKey, {
        issuer: issuer.issuer,
        audience: issuer.audience,
        algorithms: [...issuer.algorithms],
        currentDate: new Date(clock()),
        clockTolerance: clockToleranceSeconds,
        requiredClaims: ['exp', 'sub'],
      }));
    } catch (err) {
      throw tokenError(err, 'identity token');
    }
    // The subject names the user in grants, policies (roles' users), approvals and the audit trail: one plain string.
    if (!isPrintableName(payload.sub)) {
      throw new LoupeError('token_invalid', `identity token's "sub" claim must be a non-empty string of at most ${maxSubjectLength} printable characters (it was ${describeClaim(payload.sub)})`);
    }
    const groupsValue = claimAt(payload, issuer.groupsClaim);
    const groups = Array.isArray(groupsValue) ? groupsValue.filter((g): g is string => typeof g === 'string') : typeof groupsValue === 'string' ? [groupsValue] : [];
    const nameValue = claimAt(payload, issuer.nameClaim);
    const identity: Identity = Object.freeze({ sub: payload.sub, name: isPrintableName(nameValue) ? nameValue : payload.sub, groups: Object.freeze(groups), issuer: issuer.issuer });
    if (typeof issuer.key !== 'function') remember(token, identity, payload);
    return identity;
  };
}

/** node:crypto's digest and options for each JWS algorithm an issuer may allow. */
const signatureSchemes: Record<string, { digest: string | null; options: { padding?: number; saltLength?: number; dsaEncoding?: 'ieee-p1363' } }> = {
  RS256: { digest: 'sha256', options: {} },
  RS384: { digest: 'sha384', options: {} },
  RS512: { digest: 'sha512', options: {} },
  PS256: { digest: 'sha256', options: { padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: constants.RSA_PSS_SALTLEN_DIGEST } },
  PS384: { digest: 'sha384', options: { padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: constants.RSA_PSS_SALTLEN_DIGEST } },
  PS512: { digest: 'sha512', options: { padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: constants.RSA_PSS_SALTLEN_DIGEST } },
  ES256: { digest: 'sha256', options: { dsaEncoding: 'ieee-p1363' } },
  ES384: { digest: 'sha384', options: { dsaEncoding: 'ieee-p1363' } },
  ES512: { digest: 'sha512', options: { dsaEncoding: 'ieee-p1363' } },
  EdDSA: { digest: null, options: {} },
};

/**
 * The signature checked on the main thread before jose's WebCrypto check, whose jobs wait in libuv's thread pool
 * behind the WAL's fdatasyncs: a stalled disk would otherwise hold every forged token's answer. False only when
 * the signature is certainly wrong; anything this check cannot judge is left to jose, which stays the authority.
 */
async function signatureMayHold(token: string, issuer: TrustedIssuer): Promise<boolean> {
  try {
    const [header, payload, signature] = token.split('.') as [string, string, string];
    const protectedHeader = decodeProtectedHeader(token);
    const alg = protectedHeader.alg;
    const scheme = typeof alg === 'string' && issuer.algorithms.includes(alg) && Object.hasOwn(signatureSchemes, alg) ? signatureSchemes[alg]! : undefined;
    if (!scheme || signature === undefined) return true;
    const key = typeof issuer.key === 'function' ? await (issuer.key as JWTVerifyGetKey)({ ...protectedHeader, alg } as never, { payload, signature } as never) : issuer.key;
    const keyObject = key instanceof KeyObject ? key : KeyObject.from(key as CryptoKey);
    return verifySignature(scheme.digest, Buffer.from(`${header}.${payload}`), { key: keyObject, ...scheme.options }, Buffer.from(signature, 'base64url'));
  } catch {
    return true;
  }
}
