/**
 * Sign-in to an OpenID provider from the editor: authorization code with PKCE and a loopback redirect (RFC 8252),
 * and refresh. No `vscode` import (the extension passes in how to open the browser), so tests drive it against a
 * real provider. No token is verified here: the broker verifies what it is sent.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

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

interface ProviderMetadata {
  readonly issuer: string;
  readonly authorization_endpoint: string;
  readonly token_endpoint: string;
}

const base64url = (bytes: Buffer) => bytes.toString('base64url');

async function getJson(url: string, init: RequestInit, what: string): Promise<Record<string, any>> {
  let res: Response;
  try {
    res = await fetch(url, { ...init, signal: AbortSignal.timeout(15_000) });
  } catch (err) {
    throw new OidcSignInError(`cannot reach ${what} at ${url}: ${(err as Error).message}`);
  }
  const text = await res.text();
  let body: any;
  try {
    body = JSON.parse(text);
  } catch {
    throw new OidcSignInError(`${what} at ${url} answered HTTP ${res.status} without JSON: ${text.slice(0, 200)}`);
  }
  if (!res.ok) {
    const reason = body?.error ? `${body.error}${body.error_description ? `: ${body.error_description}` : ''}` : text.slice(0, 200);
    throw new OidcSignInError(`${what} refused (HTTP ${res.status}): ${reason}`);
  }
  return body;
}

/** The provider's endpoints from its discovery document, which must name the configured issuer. */
export async function discoverProvider(issuer: string): Promise<ProviderMetadata> {
  const url = `${issuer.replace(/\/$/, '')}/.well-known/openid-configuration`;
  const doc = await getJson(url, { headers: { accept: 'application/json' } }, 'the identity provider');
  if (doc.issuer !== issuer) throw new OidcSignInError(`${url} names issuer ${JSON.stringify(doc.issuer)}, not ${issuer}: check the loupe.oidc.issuer setting`);
  for (const key of ['authorization_endpoint', 'token_endpoint'] as const) {
    if (typeof doc[key] !== 'string') throw new OidcSignInError(`${url} has no ${key}`);
  }
  return doc as ProviderMetadata;
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

function tokensFrom(body: Record<string, any>, settings: OidcSettings, previousRefresh?: string): OidcTokens {
  const accessToken = body.access_token;
  const idToken = typeof body.id_token === 'string' ? body.id_token : undefined;
  if (typeof accessToken !== 'string') throw new OidcSignInError('the token response has no access_token');
  const brokerToken = settings.resource ? accessToken : idToken;
  if (!brokerToken) throw new OidcSignInError('the token response has no id_token: add "openid" to loupe.oidc.scopes, or set loupe.oidc.resource');
  if (brokerToken.split('.').length !== 3) {
    throw new OidcSignInError(`the ${settings.resource ? 'access token for the broker' : 'ID token'} is not a JWT, which the broker needs: ask your IdP administrator for JWT access tokens for ${settings.resource ?? 'this client'}`);
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

/**
 * Authorization code flow with PKCE: a one-shot HTTP server on 127.0.0.1 (a free port) receives the browser's
 * redirect; the code is exchanged with the verifier only this process knows. Checks state (and the `iss` response
 * parameter where the IdP sends it) so a redirect from elsewhere cannot complete the sign-in.
 */
export async function signInWithBrowser(settings: OidcSettings, options: BrowserSignInOptions): Promise<OidcTokens> {
  const provider = await discoverProvider(settings.issuer);
  const verifier = base64url(randomBytes(32));
  const challenge = base64url(createHash('sha256').update(verifier).digest());
  const state = base64url(randomBytes(16));
  const nonce = base64url(randomBytes(16));

  let settle!: { resolve: (code: string) => void; reject: (err: Error) => void };
  const codeArrived = new Promise<string>((resolve, reject) => (settle = { resolve, reject }));
  codeArrived.catch(() => undefined); // a timeout or cancel before it is awaited is not an unhandled rejection
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    if (url.pathname !== '/callback') return page(res, 404, 'Not found.');
    const params = url.searchParams;
    // Anything else hitting the port (a stale tab, another page) must not end this sign-in.
    if (params.get('state') !== state) return page(res, 400, 'This sign-in link is not the one Loupe is waiting for. Start again from VS Code.');
    const iss = params.get('iss');
    if (iss !== null && iss !== provider.issuer) {
      page(res, 400, 'The answer came from another identity provider.');
      return settle.reject(new OidcSignInError(`the authorization response came from ${iss}, not ${provider.issuer}`));
    }
    const error = params.get('error');
    if (error) {
      const description = params.get('error_description');
      page(res, 400, `Sign-in failed: ${error}${description ? `: ${description}` : ''}. You may close this tab.`);
      return settle.reject(new OidcSignInError(`the identity provider refused the sign-in: ${error}${description ? `: ${description}` : ''}`));
    }
    const code = params.get('code');
    if (!code) return page(res, 400, 'The answer has no authorization code.');
    page(res, 200, 'You are signed in to Loupe. You may close this tab and return to VS Code.');
    settle.resolve(code);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  try {
    const redirectUri = `http://127.0.0.1:${(server.address() as AddressInfo).port}/callback`;
    const authorize = new URL(provider.authorization_endpoint);
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
    let code: string;
    try {
      await options.openBrowser(authorize.href);
      code = await codeArrived;
    } finally {
      clearTimeout(timer);
      options.signal?.removeEventListener('abort', onAbort);
    }

    const body = await getJson(
      provider.token_endpoint,
      {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
        body: new URLSearchParams({ grant_type: 'authorization_code', code, redirect_uri: redirectUri, client_id: settings.clientId, code_verifier: verifier, ...(settings.resource ? { resource: settings.resource } : {}) }),
      },
      'the token endpoint',
    );
    const tokens = tokensFrom(body, settings);
    if (tokens.idToken && jwtPayload(tokens.idToken)?.nonce !== nonce) throw new OidcSignInError('the ID token does not carry this sign-in\'s nonce');
    return tokens;
  } finally {
    server.closeAllConnections();
    server.close();
  }
}

/** Exchanges a refresh token for fresh tokens (the IdP may rotate the refresh token; the old one is kept otherwise). */
export async function refreshTokens(settings: OidcSettings, refreshToken: string): Promise<OidcTokens> {
  const provider = await discoverProvider(settings.issuer);
  const body = await getJson(
    provider.token_endpoint,
    {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
      body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: refreshToken, client_id: settings.clientId, ...(settings.resource ? { resource: settings.resource } : {}) }),
    },
    'the token endpoint',
  );
  return tokensFrom(body, settings, refreshToken);
}
