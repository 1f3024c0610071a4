import { createRemoteJWKSet, customFetch, errors as joseErrors, type JWTVerifyGetKey } from 'jose';
import type { IssuerConfig } from '../config/types';
import { LoupeError } from '../errors';

type RemoteKeySet = ReturnType<typeof createRemoteJWKSet>;

export interface IssuerKeysOptions {
  /** Bound on each discovery and key-set request. */
  readonly fetchTimeoutMs?: number;
  /** After a failed discovery, requests within this long get the same error instead of another attempt. */
  readonly retryAfterMs?: number;
  /** Least time between two key-set fetches caused by unknown `kid`s (protects the IdP from forged tokens). */
  readonly cooldownMs?: number;
  readonly log?: (line: string) => void;
}

export interface IssuerKeys {
  /** For jwtVerify: the key the token's header names, fetching (or refetching, on rotation) the key set as needed. */
  readonly getKey: JWTVerifyGetKey;
  /** Discovers the key set now (at start-up), so the first user does not wait for it; failures are logged and retried later. */
  warmUp(): Promise<void>;
}

/** `<issuer>/.well-known/openid-configuration`, as OpenID Connect Discovery builds it (a trailing slash is dropped). */
export function discoveryUrl(issuer: string): string {
  return `${issuer.replace(/\/$/, '')}/.well-known/openid-configuration`;
}

function unavailable(issuer: string, what: string): LoupeError {
  return new LoupeError('issuer_unavailable', `cannot verify tokens from ${issuer}: ${what}; try again shortly, or ask the broker's operator to check the identity provider`);
}

function fetchFailure(err: unknown, timeoutMs: number): string {
  const e = err as { name?: string; message?: string; cause?: { code?: string; message?: string } };
  if (e?.name === 'TimeoutError' || e?.name === 'AbortError') return `no answer within ${timeoutMs / 1000}s`;
  const cause = e?.cause?.code ?? e?.cause?.message;
  return cause ? `${e?.message ?? 'fetch failed'} (${cause})` : (e?.message ?? String(err));
}

async function fetchJson(issuer: string, url: string, what: string, timeoutMs: number): Promise<Record<string, unknown>> {
  let res: Response;
  try {
    // No redirects: the document's location is part of what the operator configured.
    res = await fetch(url, { headers: { accept: 'application/json' }, redirect: 'manual', signal: AbortSignal.timeout(timeoutMs) });
  } catch (err) {
    throw unavailable(issuer, `cannot fetch its ${what} ${url}: ${fetchFailure(err, timeoutMs)}`);
  }
  if (res.status !== 200) {
    await res.body?.cancel();
    throw unavailable(issuer, `its ${what} ${url} answered HTTP ${res.status}`);
  }
  let body: unknown;
  try {
    body = await res.json();
  } catch (err) {
    throw unavailable(issuer, `its ${what} ${url} is not JSON (${fetchFailure(err, timeoutMs)})`);
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw unavailable(issuer, `its ${what} ${url} is not a JSON object`);
  return body as Record<string, unknown>;
}

/** Reads jwks_uri from the issuer's discovery document, which must name exactly the configured issuer. */
async function discoverJwksUri(issuer: string, timeoutMs: number): Promise<string> {
  const url = discoveryUrl(issuer);
  const doc = await fetchJson(issuer, url, 'discovery document', timeoutMs);
  if (doc.issuer !== issuer) {
    throw unavailable(issuer, `its discovery document ${url} names issuer ${JSON.stringify(doc.issuer)}; the configured issuer must equal it exactly`);
  }
  const jwksUri = doc.jwks_uri;
  if (typeof jwksUri !== 'string' || !/^https?:\/\//.test(jwksUri)) throw unavailable(issuer, `its discovery document ${url} has no http(s) jwks_uri`);
  return jwksUri;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * The verification keys of one remote issuer: found through its discovery document (or a configured jwksUrl),
 * cached by jose for jwksCacheMaxAge, refetched when a token names a key the cached set lacks (rotation).
 * Every failure to reach the IdP is an `issuer_unavailable` error (503) naming the URL; nothing is ever accepted
 * without a key the IdP published.
 */
export function createIssuerKeys(config: IssuerConfig, options: IssuerKeysOptions = {}): IssuerKeys {
  const timeoutMs = options.fetchTimeoutMs ?? 5_000;
  const retryAfterMs = options.retryAfterMs ?? 1_000;
  const cooldownMs = options.cooldownMs ?? 1_000;
  const log = options.log ?? (() => undefined);

  const keySetAt = (jwksUri: string): RemoteKeySet =>
    createRemoteJWKSet(new URL(jwksUri), {
      cooldownDuration: cooldownMs,
      cacheMaxAge: config.jwksCacheMaxAgeSeconds * 1000,
      timeoutDuration: timeoutMs,
      // Our own fetch, so that an unreachable or broken key set reads as the IdP's failure, not the token's.
      [customFetch]: async (url: string) => {
        const body = await fetchJson(config.issuer, url, 'key set', timeoutMs);
        if (!Array.isArray(body.keys)) throw unavailable(config.issuer, `its key set ${url} has no "keys" list`);
        return new Response(JSON.stringify(body), { status: 200, headers: { 'content-type': 'application/json' } });
      },
    });

  let keySet: RemoteKeySet | undefined = config.jwksUrl ? keySetAt(config.jwksUrl) : undefined;
  let pending: Promise<RemoteKeySet> | undefined;
  let failure: { error: LoupeError; at: number } | undefined;

  // Discovery is retried on demand (at most once per retryAfterMs), so an IdP that was down at start-up is picked up when it returns.
  function resolveKeySet(): Promise<RemoteKeySet> {
    if (keySet) return Promise.resolve(keySet);
    if (pending) return pending;
    if (failure && Date.now() - failure.at < retryAfterMs) return Promise.reject(failure.error);
    pending = discoverJwksUri(config.issuer, timeoutMs)
      .then(
        (jwksUri) => {
          keySet = keySetAt(jwksUri);
          if (failure) log(`identity: ${config.issuer} reachable again; keys from ${jwksUri}`);
          failure = undefined;
          return keySet;
        },
        (err: LoupeError) => {
          failure = { error: err, at: Date.now() };
          log(`identity: ${err.message}`);
          throw err;
        },
      )
      .finally(() => {
        pending = undefined;
      });
    return pending;
  }

  const getKey: JWTVerifyGetKey = async (header, token) => {
    const keys = await resolveKeySet();
    try {
      return await keys(header, token);
    } catch (err) {
      // jose refetches for an unknown kid only outside its cooldown; a key rotated in just after a fetch would
      // otherwise be refused until then. Wait the cooldown out once and ask again.
      if (err instanceof joseErrors.JWKSNoMatchingKey && keys.coolingDown) {
        await sleep(cooldownMs + 50);
        return keys(header, token);
      }
      throw err;
    }
  };

  return {
    getKey,
    async warmUp() {
      let keys: RemoteKeySet;
      try {
        keys = await resolveKeySet();
      } catch {
        return; // logged by resolveKeySet; verification retries
      }
      await keys.reload().catch((err: Error) => log(`identity: ${err.message}`));
    },
  };
}
