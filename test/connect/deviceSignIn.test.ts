// needs: chromium
// `loupe connect` signing in from a terminal: the device authorization grant (RFC 8628) against a real OIDC provider
// process; the user's part (open the URL, confirm the code, log in, consent) is done in a real headless Chromium.
// The broker then accepts the token and the relay works under that identity.
import { strict as assert } from 'node:assert';
import { after, before, describe, it } from 'node:test';
import CDP from 'chrome-remote-interface';
import type { Browser, BrowserContext } from 'playwright-core';
import { launchChromium } from '../support/browser';
import { startConnect, type ConnectProcess } from '../support/connectProcess';
import { rsaSigningKey, startOidcProvider, type OidcProvider } from '../support/oidcProvider';
import { startTarget, type TargetProcess } from '../support/target';
import { basePolicy, startTestBroker, type TestBroker } from '../support/testBroker';

const resource = 'urn:loupe:broker';
const clientId = 'loupe-cli';

/** The provider's pages link a web font; nothing here may leave the machine. */
const offline = (context: BrowserContext) =>
  context.route(
    (url) => url.hostname !== '127.0.0.1',
    (route) => route.abort(),
  );

describe('loupe connect: device authorization sign-in through a real provider and browser', () => {
  let provider: OidcProvider;
  let broker: TestBroker;
  let target: TargetProcess;
  let browser: Browser;
  const running: ConnectProcess[] = [];
  const connect = () => {
    const child = startConnect([
      'app',
      '--reason',
      'INC-11',
      '--port',
      '0',
      '--broker',
      broker.url,
      '--issuer',
      provider.issuer,
      '--client-id',
      clientId,
      '--resource',
      resource,
      '--scopes',
      'openid loupe',
    ]);
    running.push(child);
    return child;
  };

  before(async () => {
    provider = await startOidcProvider({
      keys: [await rsaSigningKey('device-1')],
      deviceFlow: true,
      // A public client of a terminal: no secret, no redirect; the device code grant only.
      clients: [
        {
          client_id: clientId,
          application_type: 'native',
          token_endpoint_auth_method: 'none',
          grant_types: ['urn:ietf:params:oauth:grant-type:device_code'],
          response_types: [],
          redirect_uris: [],
        },
      ],
      resources: { [resource]: {} },
      groups: { alice: ['devs'] },
    });
    target = await startTarget();
    broker = await startTestBroker(
      basePolicy(target.inspector, {
        identity: { devIssuer: { enabled: false }, issuers: [{ issuer: provider.issuer, audience: resource, groupsClaim: 'realm_access.roles', algorithms: ['RS256'] }] },
      }),
    );
    browser = await launchChromium();
  });
  after(async () => {
    await Promise.all(running.map((c) => c.kill('SIGKILL')));
    await browser?.close();
    await broker?.close();
    await target?.stop();
    await provider?.stop();
  });

  /** The user: opens the printed URL (the code in it), confirms or aborts, and logs in as `user`. */
  async function userInBrowser(url: string, user: string, confirm: boolean): Promise<string> {
    const profile = await browser.newContext();
    await offline(profile);
    const page = await profile.newPage();
    try {
      await page.goto(url);
      if (!confirm) {
        await page.click('button:has-text("Abort")');
        return (await page.textContent('body')) ?? '';
      }
      await page.click('button:has-text("Continue")');
      await page.fill('input[name=login]', user);
      await page.fill('input[name=password]', "any password: the provider's dev login takes any");
      await page.click('button[type=submit]');
      await page.click('button:has-text("Continue")');
      await page.waitForLoadState();
      return (await page.textContent('body')) ?? '';
    } finally {
      await profile.close();
    }
  }

  it('prints the verification URL and code, signs alice in, and attaches as alice', async () => {
    const child = connect();
    const [, verificationUri, userCode] = await child.waitFor(/open (http:\S+\/device) and enter the code (\S+) \(valid/);
    assert.equal(new URL(verificationUri!).origin, provider.issuer);
    const [, complete] = await child.waitFor(/or open (\S+)/);
    assert.equal(new URL(complete!).searchParams.get('user_code'), userCode);
    const shown = await userInBrowser(complete!, 'alice', true);
    assert.match(shown, /Sign-in Success|success/i);
    const url = await child.url;
    assert.match(child.stderr(), /signed in/);

    const client = await CDP({ host: '127.0.0.1', port: Number(new URL(url).port) });
    assert.equal((await client.send('Runtime.evaluate', { expression: '20 + 22', returnByValue: true })).result.value, 42);
    await client.close();
    const started = await broker.waitForRecord('session.started');
    assert.equal(started.actor?.sub, 'alice');
    assert.equal((await child.kill('SIGINT')).code, 0);
  });

  it('a declined sign-in ends it with the reason (exit 1) and no endpoint', async () => {
    const child = connect();
    const [, complete] = await child.waitFor(/or open (\S+)/);
    await userInBrowser(complete!, 'alice', false);
    const status = await child.exited;
    assert.equal(status.code, 1, child.stderr());
    assert.match(child.stderr(), /sign-in failed: the sign-in was declined in the browser/);
    assert.equal(child.stdout(), '');
  });
});
