import { KeyObject, sign } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { calculateJwkThumbprint, exportJWK, generateKeyPair, importJWK, type JWK, type CryptoKey } from 'jose';

export interface SigningKey {
  readonly kid: string;
  readonly privateKey: CryptoKey;
  readonly publicKey: CryptoKey;
  readonly publicJwk: JWK;
}

/**
 * Loads an Ed25519 key from the state directory, creating it on first use.
 * The file is created exclusively, so a `loupe token` racing a starting broker ends with one key.
 */
export async function loadOrCreateSigningKey(stateDir: string, name: string): Promise<SigningKey> {
  mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  const file = join(stateDir, `${name}.jwk.json`);
  let jwk: JWK;
  try {
    jwk = JSON.parse(readFileSync(file, 'utf8')) as JWK;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    const pair = await generateKeyPair('EdDSA', { crv: 'Ed25519', extractable: true });
    jwk = await exportJWK(pair.privateKey);
    try {
      writeFileSync(file, JSON.stringify(jwk), { flag: 'wx', mode: 0o600 });
    } catch (writeErr) {
      if ((writeErr as NodeJS.ErrnoException).code !== 'EEXIST') throw writeErr;
      jwk = JSON.parse(readFileSync(file, 'utf8')) as JWK;
    }
  }
  const { d: _private, ...publicPart } = jwk;
  const kid = await calculateJwkThumbprint(publicPart);
  const publicJwk: JWK = { ...publicPart, kid, alg: 'EdDSA', use: 'sig' };
  return {
    kid,
    privateKey: (await importJWK({ ...jwk, alg: 'EdDSA' }, 'EdDSA')) as CryptoKey,
    publicKey: (await importJWK(publicJwk, 'EdDSA')) as CryptoKey,
    publicJwk,
  };
}

/** The node:crypto form of each private key, made once: signing with it runs on this thread. */
const keyObjects = new WeakMap<CryptoKey, KeyObject>();

/**
 * A compact JWS (EdDSA) over `payload`, signed here on the main thread. WebCrypto (jose's sign) queues each
 * signature in libuv's thread pool behind the WAL's fdatasyncs, so a busy disk would delay every grant and seal;
 * an Ed25519 signature costs tens of microseconds, and is the same bytes either way (Ed25519 is deterministic).
 */
export function signCompact(key: SigningKey, header: { readonly typ: string } & Record<string, unknown>, payload: string | Uint8Array): string {
  let keyObject = keyObjects.get(key.privateKey);
  if (!keyObject) {
    keyObject = KeyObject.from(key.privateKey);
    keyObjects.set(key.privateKey, keyObject);
  }
  const signingInput = `${Buffer.from(JSON.stringify({ alg: 'EdDSA', kid: key.kid, ...header })).toString('base64url')}.${Buffer.from(payload).toString('base64url')}`;
  return `${signingInput}.${sign(null, Buffer.from(signingInput), keyObject).toString('base64url')}`;
}
