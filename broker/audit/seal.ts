import canonicalize from 'canonicalize';
import { compactVerify, createLocalJWKSet, type JSONWebKeySet } from 'jose';
import { signCompact, type SigningKey } from '../identity/keys';
import type { StreamContext } from './events';
import type { ChunkInfo } from './wal';

export interface ChunkSealPayload {
  readonly session: string;
  readonly firstSeq: number;
  readonly lastSeq: number;
  readonly chunkSha256: string;
  readonly headHash: string;
}

export interface ManifestPayload {
  readonly session: string;
  readonly kind: string;
  readonly chunks: readonly ChunkInfo[];
  readonly lastSeq: number;
  readonly headHash: string;
  readonly closedAt: string;
  readonly endReason: string;
  /** Who, where and why (what the auditor API lists), signed with the rest. */
  readonly context?: StreamContext;
}

/** A JWS (EdDSA, audit key's kid in the header) over the canonical JSON of the payload. */
export function seal(key: SigningKey, payload: ChunkSealPayload | ManifestPayload, typ: 'loupe-chunk+jws' | 'loupe-manifest+jws'): Promise<string> {
  return Promise.resolve(signCompact(key, { typ }, canonicalize(payload)!));
}

/** Verifies a seal against a published key set; returns the signed payload, or throws. */
export async function openSeal(jws: string, keys: JSONWebKeySet, typ: string): Promise<Record<string, unknown>> {
  // A seal made with a key that no broker published is the first thing an auditor must learn, in those words.
  let kid: unknown;
  try {
    kid = (JSON.parse(Buffer.from(jws.split('.')[0] ?? '', 'base64url').toString('utf8')) as { kid?: unknown }).kid;
  } catch {
    throw new Error('the seal is not a JWS (its header does not parse)');
  }
  if (typeof kid !== 'string') throw new Error('the seal names no audit key (no kid in its header)');
  if (!keys.keys.some((k) => k.kid === kid)) throw new Error(`sealed with audit key ${kid}, which no broker published (published: ${keys.keys.map((k) => k.kid).join(', ') || 'none'})`);
  const { payload, protectedHeader } = await compactVerify(jws, createLocalJWKSet(keys), { algorithms: ['EdDSA'] });
  if (protectedHeader.typ !== typ) throw new Error(`seal has type ${protectedHeader.typ}, expected ${typ}`);
  return JSON.parse(new TextDecoder().decode(payload)) as Record<string, unknown>;
}
