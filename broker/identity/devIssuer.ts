import { SignJWT } from 'jose';
import type { LoupeConfig } from '../config/types';
import { loadOrCreateSigningKey, type SigningKey } from './keys';

/** The issuer string of the built-in development issuer. */
export const devIssuerName = 'urn:loupe:dev-issuer';

export function loadDevIssuerKey(config: LoupeConfig): Promise<SigningKey> {
  return loadOrCreateSigningKey(config.stateDir, 'dev-issuer');
}

export interface DevTokenRequest {
  readonly user: string;
  readonly groups: readonly string[];
  readonly name?: string;
  readonly ttlSeconds?: number;
  readonly now?: number;
}

/** Mints an identity token for the development issuer (what `loupe token` prints). */
export async function mintDevToken(config: LoupeConfig, request: DevTokenRequest): Promise<string> {
  const key = await loadDevIssuerKey(config);
  const now = Math.floor((request.now ?? Date.now()) / 1000);
  return new SignJWT({ groups: [...request.groups], name: request.name ?? request.user })
    .setProtectedHeader({ alg: 'EdDSA', kid: key.kid, typ: 'JWT' })
    .setIssuer(devIssuerName)
    .setAudience(config.identity.devIssuer.audience)
    .setSubject(request.user)
    .setIssuedAt(now)
    .setNotBefore(now)
    .setExpirationTime(now + (request.ttlSeconds ?? 8 * 3600))
    .sign(key.privateKey);
}
