// needs: chromium
// The extension's sign-in (extension/oidcSignIn.ts, what `Loupe: Sign In…` runs) against a real OIDC provider
// process: authorization code with PKCE and a loopback redirect, completed in a real headless Chromium through the
// provider's login and consent pages; the broker then accepts the token it yields, and a refresh gives a new one.
import { strict as assert } from 'node:assert';
import { after, before, describe, it } from 'node:test';
import { decodeJwt } from 'jose';
import type { Browser, BrowserContext } from 'playwright-core';
import { OidcSignInError, refreshTokens, signInWithBrowser, type OidcSettings } from '../../extension/oidcSignIn';
import { launchChromium } from '../support/browser';
import { rsaSigningKey, startOidcProvider, type OidcProvider } from '../support/oidcProvider';
import { basePolicy, startTestBroker, type TestBroker } from '../support/testBroker';

const dummyInspector = '127.0.0.1:9';
const resource = 'urn:loupe:broker';
const clientId = 'loupe-vscode';

/** The provider's pages link a web font; nothing here may leave the machine. */
const offline = (context: BrowserContext) =>
  context.route(
    (url) => url.hostname !== '127.0.0.1',
    (route) => route.abort(),
  );

describe('extension sign-in: authorization code + PKCE through a real provider and browser', () => {
  let provider: OidcProvider;
  let accessTokenBroker: TestBroker;
  let idTokenBroker: TestBroker;
  let browser: Browser;
  let context: BrowserContext;

  before(async () => {
    provider = await startOidcProvider({
      keys: [await rsaSigningKey('signin-1')],
      // A public native client, as an editor is: no secret, PKCE, any port on the loopback redirect (RFC 8252).
      clients: [
        {
          client_id: clientId,
          application_type: 'native',
          token_endpoint_auth_method: 'none',
          grant_types: ['authorization_code', 'refresh_token'],
          response_types: ['code'],
          redirect_uris: ['http://127.0.0.1/callback'],
        },
      ],
      resources: { [resource]: {} },
      groups: { alice: ['devs'], bob: ['marketing'] },
    });
    const issuerEntry = { issuer: provider.issuer, groupsClaim: 'realm_access.roles', algorithms: ['RS256'] };
    // One broker takes the access token issued for its resource; another, configured with the client id as
    // audience, takes the ID token (what the extension sends when loupe.oidc.resource is empty).
    accessTokenBroker = await startTestBroker(basePolicy(dummyInspector, { identity: { devIssuer: { enabled: false }, issuers: [{ ...issuerEntry, audience: resource }] } }));
    idTokenBroker = await startTestBroker(basePolicy(dummyInspector, { identity: { devIssuer: { enabled: false }, issuers: [{ ...issuerEntry, audience: clientId }] } }));
    browser = await launchChromium();
    context = await browser.newContext();
    await offline(context);
  });
  after(async () => {
    await browser?.close();
    await accessTokenBroker?.close();
    await idTokenBroker?.close();
    await provider?.stop();
  });

  /**
   * What `vscode.env.openExternal` does for the user, plus the user: open the URL in a browser (a fresh profile,
   * so no earlier session at the provider), sign in as `user` on the provider's login page and press Continue on
   * its consent page. `done` resolves with the text of the page the loopback server finally shows.
   */
  function userInBrowser(user: string): { openBrowser: (url: string) => Promise<void>; done: Promise<string> } {
    let settle!: { resolve: (text: string) => void; reject: (err: unknown) => void };
    const done = new Promise<string>((resolve, reject) => (settle = { resolve, reject }));
    return {
      done,
      openBrowser: async (url) => {
        void (async () => {
          const profile = await browser.newContext();
          await offline(profile);
          const page = await profile.newPage();
          await page.goto(url);
          await page.fill('input[name=login]', user);
          await page.fill('input[name=password]', "any password: the provider's dev login takes any");
          await page.click('button[type=submit]');
          await page.click('button:has-text("Continue")');
          await page.waitForURL(/^http:\/\/127\.0\.0\.1:\d+\/callback\?/);
          const text = (await page.textContent('body')) ?? '';
          await profile.close();
          return text;
        })().then(settle.resolve, settle.reject);
      },
    };
  }

  it('signs alice in; the broker accepts the access token for its resource and maps her groups', async () => {
    const settings: OidcSettings = { issuer: provider.issuer, clientId, scopes: 'openid profile groups offline_access loupe', resource };
    const user = userInBrowser('alice');
    const [tokens, shown] = await Promise.all([signInWithBrowser(settings, { openBrowser: user.openBrowser, timeoutMs: 30_000 }), user.done]);
    assert.match(shown, /You are signed in to Loupe/);

    const claims = decodeJwt(tokens.brokerToken);
    assert.equal(tokens.brokerToken, tokens.accessToken);
    assert.equal(claims.iss, provider.issuer);
    assert.equal(claims.sub, 'alice');
    assert.equal(claims.aud, resource);
    assert.equal(tokens.expiresAt, claims.exp! * 1000);
    assert.ok(tokens.refreshToken, 'a refresh token to keep in SecretStorage');
    assert.ok(tokens.idToken);

    const res = await accessTokenBroker.api('GET', '/v1/targets', tokens.brokerToken);
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.deepEqual(
      res.body.targets.map((t: { name: string }) => t.name),
      ['app'],
    );

    // Refresh: new tokens without the browser, still accepted; the old refresh token was rotated away.
    const refreshed = await refreshTokens(settings, tokens.refreshToken!);
    assert.notEqual(refreshed.brokerToken, tokens.brokerToken);
    assert.equal(decodeJwt(refreshed.brokerToken).sub, 'alice');
    assert.equal(decodeJwt(refreshed.brokerToken).aud, resource);
    assert.deepEqual(
      (await accessTokenBroker.api('GET', '/v1/targets', refreshed.brokerToken)).body.targets.map((t: { name: string }) => t.name),
      ['app'],
    );
    assert.ok(refreshed.refreshToken);
    assert.notEqual(refreshed.refreshToken, tokens.refreshToken);
    await assert.rejects(refreshTokens(settings, 'not-a-refresh-token'), (err: Error) => err instanceof OidcSignInError && /invalid_grant/.test(err.message));
  });

  it('without a resource the ID token is what the broker gets (its audience is the client id)', async () => {
    const settings: OidcSettings = { issuer: provider.issuer, clientId, scopes: 'openid profile groups' };
    const user = userInBrowser('bob');
    const [tokens] = await Promise.all([signInWithBrowser(settings, { openBrowser: user.openBrowser, timeoutMs: 30_000 }), user.done]);
    assert.equal(tokens.brokerToken, tokens.idToken);
    const claims = decodeJwt(tokens.brokerToken);
    assert.equal(claims.aud, clientId);
    assert.equal(claims.sub, 'bob');
    // bob's groups map to no role: accepted, and nothing to attach to.
    const res = await idTokenBroker.api('GET', '/v1/targets', tokens.brokerToken);
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.deepEqual(res.body, { targets: [] });
    // The broker that wants access tokens for its resource refuses the ID token.
    const refused = await accessTokenBroker.api('GET', '/v1/targets', tokens.brokerToken);
    assert.equal(refused.status, 401);
    assert.match(refused.body.error.message, /wrong audience/);
  });

  it("a redirect that does not carry this sign-in's state is turned away and does not end it", async () => {
    const settings: OidcSettings = { issuer: provider.issuer, clientId, scopes: 'openid loupe', resource };
    const user = userInBrowser('alice');
    let forged: Response | undefined;
    const [tokens] = await Promise.all([
      signInWithBrowser(settings, {
        timeoutMs: 30_000,
        openBrowser: async (url) => {
          const redirect = new URL(url).searchParams.get('redirect_uri')!;
          forged = await fetch(`${redirect}?code=stolen-or-made-up&state=guessed`);
          await user.openBrowser(url);
        },
      }),
      user.done,
    ]);
    assert.equal(forged!.status, 400);
    assert.match(await forged!.text(), /not the one Loupe is waiting for/);
    assert.equal(decodeJwt(tokens.brokerToken).sub, 'alice');
  });

  it('no answer from the browser, a wrong issuer setting and a cancelled sign-in end with a clear error', async () => {
    // The user closed the tab: the wait ends at the timeout.
    await assert.rejects(
      signInWithBrowser({ issuer: provider.issuer, clientId, scopes: 'openid' }, { openBrowser: async () => undefined, timeoutMs: 1000 }),
      (err: Error) => err instanceof OidcSignInError && /no answer from the browser within 1s; sign in again/.test(err.message),
    );
    await assert.rejects(
      signInWithBrowser({ issuer: `${provider.issuer}/`, clientId, scopes: 'openid' }, { openBrowser: async () => assert.fail('no browser for a wrong issuer') }),
      (err: Error) => err instanceof OidcSignInError && /names issuer "http:\/\/127\.0\.0\.1:\d+", not http:\/\/127\.0\.0\.1:\d+\/: check the loupe\.oidc\.issuer setting/.test(err.message),
    );
    // An unknown client: the provider shows its error page and never redirects; the user cancels in VS Code.
    const cancel = new AbortController();
    await assert.rejects(
      signInWithBrowser(
        { issuer: provider.issuer, clientId: 'no-such-client', scopes: 'openid' },
        {
          signal: cancel.signal,
          openBrowser: async (url) => {
            const page = await context.newPage();
            await page.goto(url);
            assert.match((await page.textContent('body')) ?? '', /invalid_client/);
            cancel.abort();
          },
        },
      ),
      (err: Error) => err instanceof OidcSignInError && err.message === 'sign-in cancelled',
    );
  });
});
