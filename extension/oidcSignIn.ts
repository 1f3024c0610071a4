/**
 * Sign-in to an OpenID provider from the editor: authorization code with PKCE and a loopback redirect (RFC 8252),
 * and refresh, through oauth4webapi (discovery, PKCE, state and nonce, the authorization response's `iss`, the code
 * exchange and the ID token's claims). No `vscode` import (the extension passes in how to open the browser), so
 * tests drive it against a real provider. No token signature is verified here: the broker verifies what it is sent.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import * as oauth from 'oauth4webapi';

export interface OidcSettings {
  readonly issuer: string;
  readonly clientId: string;
  /** Space-separated; `openid` gives an ID token, `offline_access` a refresh token (where the IdP allows it). */
  readonly scopes: string;
  /**
   * Resource indicator (RFC 8707) of the broker. When set, the access token issued for it is what the broker gets;
   * when empty, the ID token is (the broker's audience for this issuer is then the client id).
   */
  readonly resource?: string;
}

export interface OidcTokens {
  /** The token to send to the broker as `Authorization: Bearer`. */
  readonly brokerToken: string;
  /** When brokerToken expires (ms since the epoch). */
  readonly expiresAt: number;
  readonly refreshToken?: string;
  readonly idToken?: string;
  readonly accessToken: string;
}

export interface BrowserSignInOptions {
  /** Opens the URL in the user's browser (`vscode.env.openExternal` in the extension). */
  readonly openBrowser: (url: string) => PromiseLike<unknown>;
  /** How long to wait for the browser to come back. Default 5 minutes. */
  readonly timeoutMs?: number;
  readonly signal?: AbortSignal;
}

export class OidcSignInError extends Error {
  override readonly name = 'OidcSignInError';
}

/** The provider's own words for a refusal, or what went wrong on the way, as one OidcSignInError. */
export function signInError(err: unknown, what: string, url: string): OidcSignInError {
  if (err instanceof OidcSignInError) return err;
  if (err instanceof oauth.ResponseBodyError)
    return new OidcSignInError(`${what} refused (HTTP ${err.status}): ${err.error}${err.error_description ? `: ${err.error_description}` : ''}`, { cause: err });
  if (err instanceof oauth.OperationProcessingError || err instanceof oauth.UnsupportedOperationError) return new OidcSignInError(`${what} at ${url}: ${err.message}`, { cause: err });
  return new OidcSignInError(`cannot reach ${what} at ${url}: ${(err as Error)?.message ?? String(err)}`, { cause: err });
}

/** Every request: bounded in time; plain http only when the configured issuer is itself http (a local provider). */
function requestOptions(issuer: string) {
  return { signal: () => AbortSignal.timeout(15_000), ...(issuer.startsWith('http:') ? { [oauth.allowInsecureRequests]: true } : {}) };
}

/** The provider's metadata from its discovery document, which must name the configured issuer exactly. */
export async function discoverProvider(issuer: string): Promise<oauth.AuthorizationServer> {
  const url = `${issuer.replace(/\/$/, '')}/.well-known/openid-configuration`;
  const wrongIssuer = (named: unknown) => new OidcSignInError(`${url} names issuer ${JSON.stringify(named)}, not ${issuer}: check the loupe.oidc.issuer setting`);
  let metadata: oauth.AuthorizationServer;
  try {
    metadata = await oauth.processDiscoveryResponse(new URL(issuer), await oauth.discoveryRequest(new URL(issuer), requestOptions(issuer)));
  } catch (err) {
    const cause = (err as { cause?: { attribute?: string; body?: { issuer?: unknown } } }).cause;
    if (err instanceof oauth.OperationProcessingError && cause?.attribute === 'issuer') throw wrongIssuer(cause.body?.issuer);
    throw signInError(err, 'the identity provider', url);
  }
  // oauth4webapi compares URLs (a trailing slash is the same issuer to it); the broker compares the `iss` string.
  if (metadata.issuer !== issuer) throw wrongIssuer(metadata.issuer);
  for (const key of ['authorization_endpoint', 'token_endpoint'] as const) {
    if (typeof metadata[key] !== 'string') throw new OidcSignInError(`${url} has no ${key}`);
  }
  return metadata;
}

/** A JWT's payload, read without verifying it (only for exp and nonce; the broker verifies). */
function jwtPayload(token: string | undefined): Record<string, unknown> | undefined {
  const part = token?.split('.')[1];
  if (!part) return undefined;
  try {
    return JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));
  } catch {
    return undefined;
  }
}

/** When a JWT expires (ms), or undefined when it is not a JWT with an exp. */
export function tokenExpiry(token: string): number | undefined {
  const exp = jwtPayload(token)?.exp;
  return typeof exp === 'number' ? exp * 1000 : undefined;
}

export function tokensFrom(body: oauth.TokenEndpointResponse, settings: OidcSettings, previousRefresh?: string): OidcTokens {
  const accessToken = body.access_token;
  const idToken = typeof body.id_token === 'string' ? body.id_token : undefined;
  if (typeof accessToken !== 'string') throw new OidcSignInError('the token response has no access_token');
  const brokerToken = settings.resource ? accessToken : idToken;
  if (!brokerToken) throw new OidcSignInError('the token response has no id_token: add "openid" to loupe.oidc.scopes, or set loupe.oidc.resource');
  if (brokerToken.split('.').length !== 3) {
    throw new OidcSignInError(
      `the ${settings.resource ? 'access token for the broker' : 'ID token'} is not a JWT, which the broker needs: ask your IdP administrator for JWT access tokens for ${settings.resource ?? 'this client'}`,
    );
  }
  const expiresAt = tokenExpiry(brokerToken) ?? Date.now() + (typeof body.expires_in === 'number' ? body.expires_in : 300) * 1000;
  const refreshToken = typeof body.refresh_token === 'string' ? body.refresh_token : previousRefresh;
  return { brokerToken, expiresAt, accessToken, ...(idToken ? { idToken } : {}), ...(refreshToken ? { refreshToken } : {}) };
}

function page(res: ServerResponse, status: number, message: string): void {
  const html = `<!doctype html><meta charset="utf-8"><title>Loupe</title><body style="font-family:sans-serif;margin:3em"><h1>Loupe</h1><p>${message.replace(/[<>&"]/g, (c) => `&#${c.charCodeAt(0)};`)}</p></body>`;
  res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
  res.end(html);
}

/** A public client (no secret), as an editor is: PKCE protects the code. */
const publicClient = (settings: OidcSettings): oauth.Client => ({ client_id: settings.clientId });

export function tokenRequestOptions(settings: OidcSettings): oauth.TokenEndpointRequestOptions {
  return { ...requestOptions(settings.issuer), ...(settings.resource ? { additionalParameters: { resource: settings.resource } } : {}) };
}

/**
 * Authorization code flow with PKCE: a one-shot HTTP server on 127.0.0.1 (a free port) receives the browser's
 * redirect; the code is exchanged with the verifier only this process knows. Checks state (and the `iss` response
 * parameter where the IdP sends it) so a redirect from elsewhere cannot complete the sign-in, and the ID token's
 * nonce, issuer and audience.
 */
export async function signInWithBrowser(settings: OidcSettings, options: BrowserSignInOptions): Promise<OidcTokens> {
  const provider = await discoverProvider(settings.issuer);
  const client = publicClient(settings);
  const verifier = oauth.generateRandomCodeVerifier();
  const challenge = await oauth.calculatePKCECodeChallenge(verifier);
  const state = oauth.generateRandomState();
  const nonce = oauth.generateRandomNonce();

  let settle!: { resolve: (callback: URLSearchParams) => void; reject: (err: Error) => void };
  const callbackArrived = new Promise<URLSearchParams>((resolve, reject) => (settle = { resolve, reject }));
  callbackArrived.catch(() => undefined); // a timeout or cancel before it is awaited is not an unhandled rejection
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    if (url.pathname !== '/callback') return page(res, 404, 'Not found.');
    // Anything else hitting the port (a stale tab, another page) must not end this sign-in.
    if (url.searchParams.get('state') !== state) return page(res, 400, 'This sign-in link is not the one Loupe is waiting for. Start again from VS Code.');
    let params: URLSearchParams;
    try {
      params = oauth.validateAuthResponse(provider, client, url.searchParams, state);
    } catch (err) {
      if (err instanceof oauth.AuthorizationResponseError) {
        const refusal = `${err.error}${err.error_description ? `: ${err.error_description}` : ''}`;
        page(res, 400, `Sign-in failed: ${refusal}. You may close this tab.`);
        return settle.reject(new OidcSignInError(`the identity provider refused the sign-in: ${refusal}`, { cause: err }));
      }
      const iss = url.searchParams.get('iss');
      page(res, 400, iss !== null && iss !== provider.issuer ? 'The answer came from another identity provider.' : 'The answer could not be used. Start again from VS Code.');
      const why = iss !== null && iss !== provider.issuer ? `came from ${iss}, not ${provider.issuer}` : `was not usable: ${(err as Error).message}`;
      return settle.reject(new OidcSignInError(`the authorization response ${why}`, { cause: err }));
    }
    if (!params.get('code')) return page(res, 400, 'The answer has no authorization code.');
    page(res, 200, 'You are signed in to Loupe. You may close this tab and return to VS Code.');
    settle.resolve(params);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  try {
    const redirectUri = `http://127.0.0.1:${(server.address() as AddressInfo).port}/callback`;
    const authorize = new URL(provider.authorization_endpoint!);
    const query: Record<string, string> = {
      response_type: 'code',
      client_id: settings.clientId,
      redirect_uri: redirectUri,
      scope: settings.scopes,
      state,
      nonce,
      code_challenge: challenge,
      code_challenge_method: 'S256',
      ...(settings.resource ? { resource: settings.resource } : {}),
    };
    for (const [key, value] of Object.entries(query)) authorize.searchParams.set(key, value);

    const timeoutMs = options.timeoutMs ?? 5 * 60_000;
    const timer = setTimeout(() => settle.reject(new OidcSignInError(`no answer from the browser within ${Math.round(timeoutMs / 1000)}s; sign in again`)), timeoutMs);
    const onAbort = () => settle.reject(new OidcSignInError('sign-in cancelled'));
    options.signal?.addEventListener('abort', onAbort, { once: true });
    let callback: URLSearchParams;
    try {
      await options.openBrowser(authorize.href);
      callback = await callbackArrived;
    } finally {
      clearTimeout(timer);
      options.signal?.removeEventListener('abort', onAbort);
    }

    let body: oauth.TokenEndpointResponse;
    try {
      const response = await oauth.authorizationCodeGrantRequest(provider, client, oauth.None(), callback, redirectUri, verifier, tokenRequestOptions(settings));
      body = await oauth.processAuthorizationCodeResponse(provider, client, response, { expectedNonce: nonce });
    } catch (err) {
      throw signInError(err, 'the token endpoint', provider.token_endpoint!);
    }
    return tokensFrom(body, settings);
  } finally {
    server.closeAllConnections();
    server.close();
  }
}

/** Exchanges a refresh token for fresh tokens (the IdP may rotate the refresh token; the old one is kept otherwise). */
export async function refreshTokens(settings: OidcSettings, refreshToken: string): Promise<OidcTokens> {
  const provider = await discoverProvider(settings.issuer);
  const client = publicClient(settings);
  let body: oauth.TokenEndpointResponse;
  try {
    const response = await oauth.refreshTokenGrantRequest(provider, client, oauth.None(), refreshToken, tokenRequestOptions(settings));
    body = await oauth.processRefreshTokenResponse(provider, client, response);
  } catch (err) {
    throw signInError(err, 'the token endpoint', provider.token_endpoint!);
  }
  return tokensFrom(body, settings, refreshToken);
}
