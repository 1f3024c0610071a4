import { calculateJwkThumbprint, type JSONWebKeySet, type JWK } from 'jose';
import type { SigningKey } from '../identity/keys';
import type { AuditStore } from './stores/auditStore';

/** A published key object is a few hundred bytes; a larger one is not a key Loupe wrote, and is not read. */
const maxKeyObjectBytes = 64 << 10;

/** Where each broker's audit public key lives in the audit store: `keys/<kid>.jwks.json`, one key per object. */
export const keyPrefix = 'keys/';
const keyObjectName = /^keys\/([A-Za-z0-9_-]{43})\.jwks\.json$/;

/** A listing is reused this long, so a burst of auditor requests costs one LIST. */
const listingFreshMs = 1000;

/**
 * Writes this broker's audit public key into the audit store, under the store's retention, before any record is
 * sealed with it. The store is shared by every replica, so the set of published keys is every replica's: offline
 * verification needs only the store, and any replica can publish all of them. A key already there is kept.
 */
export async function publishAuditKey(store: AuditStore, key: SigningKey, retainUntil: Date): Promise<void> {
  const body = Buffer.from(JSON.stringify({ keys: [key.publicJwk] }) + '\n');
  await store.put(`${keyPrefix}${key.kid}.jwks.json`, body, retainUntil).catch((err: Error) => {
    if ((err as { code?: string }).code !== 'conflict') throw err;
  });
}

/**
 * Checks one key object of the store: its name, one Ed25519 public key (never a private part), and a kid that is
 * the key's own thumbprint and the object's name. Returns the key as published, or the reason it is not one.
 */
export async function readKeyObject(name: string, body: Buffer): Promise<{ key: JWK } | { problem: string }> {
  const kidOfName = keyObjectName.exec(name)?.[1];
  if (!kidOfName) return { problem: `${name}: not named keys/<thumbprint>.jwks.json` };
  let set: unknown;
  try {
    set = JSON.parse(body.toString('utf8'));
  } catch {
    return { problem: `${name}: not JSON` };
  }
  const keys = (set as { keys?: unknown })?.keys;
  if (!Array.isArray(keys) || keys.length !== 1) return { problem: `${name}: expected {"keys": [one key]}` };
  const jwk = keys[0] as Record<string, unknown>;
  if (typeof jwk !== 'object' || jwk === null) return { problem: `${name}: the key is not an object` };
  if ('d' in jwk) return { problem: `${name}: holds a private key; refused` };
  if (jwk.kty !== 'OKP' || jwk.crv !== 'Ed25519' || typeof jwk.x !== 'string' || !/^[A-Za-z0-9_-]{43}$/.test(jwk.x)) return { problem: `${name}: not an Ed25519 public key (kty OKP, crv Ed25519, x)` };
  if (jwk.alg !== undefined && jwk.alg !== 'EdDSA') return { problem: `${name}: alg ${String(jwk.alg)}, expected EdDSA` };
  const thumbprint = await calculateJwkThumbprint({ kty: 'OKP', crv: 'Ed25519', x: jwk.x });
  if (jwk.kid !== thumbprint || kidOfName !== thumbprint) return { problem: `${name}: kid ${String(jwk.kid)} is not the key's thumbprint ${thumbprint}` };
  return { key: { kty: 'OKP', crv: 'Ed25519', x: jwk.x, kid: thumbprint, alg: 'EdDSA', use: 'sig' } };
}

/**
 * The audit keys of every broker that shares this store: this broker's own, and every valid key object under
 * `keys/`. Key objects are write-once, so each is read once; the listing is refreshed when older than a second.
 * When the store cannot be listed, the keys known so far are served (this broker's own among them).
 */
export class PublishedAuditKeys {
  private readonly known = new Map<string, JWK>();
  private readonly refused = new Set<string>();
  private listedAt = -Infinity;
  private refreshing: Promise<void> | undefined;

  constructor(
    private readonly store: AuditStore,
    private readonly own: SigningKey,
    private readonly log: (line: string) => void = () => undefined,
    private readonly clock: () => number = Date.now,
  ) {
    this.known.set(own.kid, own.publicJwk);
  }

  async keySet(): Promise<JSONWebKeySet> {
    if (this.clock() - this.listedAt >= listingFreshMs) {
      this.refreshing ??= this.refresh().finally(() => (this.refreshing = undefined));
      await this.refreshing;
    }
    return { keys: [...this.known.values()] };
  }

  private async refresh(): Promise<void> {
    let names: string[];
    try {
      names = await this.store.list(keyPrefix);
    } catch (err) {
      this.log(`audit: cannot list the published audit keys in ${this.store.description} (${(err as Error).message}); serving the ${this.known.size} known`);
      return;
    }
    for (const name of names) {
      const kid = keyObjectName.exec(name)?.[1];
      if ((kid && this.known.has(kid)) || this.refused.has(name)) continue;
      let body: Buffer;
      try {
        body = await this.store.get(name, maxKeyObjectBytes);
      } catch (err) {
        this.log(`audit: cannot read the published audit key ${name} (${(err as Error).message}); trying again on the next request`);
        continue;
      }
      const read = await readKeyObject(name, body);
      if ('problem' in read) {
        this.refused.add(name);
        this.log(`audit: a key object in the store is not published: ${read.problem}`);
        continue;
      }
      this.known.set(read.key.kid!, read.key);
    }
    this.listedAt = this.clock();
  }
}
