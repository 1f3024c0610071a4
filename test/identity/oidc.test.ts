// The broker against a real OpenID provider (oidc-provider in its own process on loopback): keys found through the
// discovery document, tokens from the client credentials grant, key rotation at the provider while the broker runs,
// and the provider going away.
import { strict as assert } from 'node:assert';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { decodeJwt, decodeProtectedHeader, exportSPKI, generateKeyPair, importJWK, SignJWT, type CryptoKey, type JWK } from 'jose';
import { discoveryUrl } from '../../broker/identity/issuerKeys';
import { rsaSigningKey, startOidcProvider, type OidcProvider, type OidcProviderOptions } from '../support/oidcProvider';
import { basePolicy, startTestBroker, type TestBroker } from '../support/testBroker';
import { waitFor } from '../support/wait';

// No attach happens here, so the target's inspector address is never dialled.
const dummyInspector = '127.0.0.1:9';
const audience = 'urn:loupe:broker';
const hmacSecret = 'a-shared-secret-of-the-resource-server-0123456789';

const clients = [
  { client_id: 'svc-dev', client_secret: 'svc-dev-secret', grant_types: ['client_credentials'], response_types: [], redirect_uris: [] },
  { client_id: 'svc-marketing', client_secret: 'svc-marketing-secret', grant_types: ['client_credentials'], response_types: [], redirect_uris: [] },
];

function providerOptions(keys: JWK[], extra: Partial<OidcProviderOptions> = {}): OidcProviderOptions {
  return {
    keys,
    clients,
    groups: { 'svc-dev': ['devs'], 'svc-marketing': ['marketing'] },
    resources: {
      [audience]: {},
      'urn:other-service': {},
      // A resource server that signs with a shared secret, under the broker's audience: a real HMAC token from the IdP.
      'urn:loupe:hmac': { audience, alg: 'HS256', secret: hmacSecret },
    },
    ...extra,
  };
}

function policyFor(issuer: string, issuerOverrides: Record<string, unknown> = {}) {
  return basePolicy(dummyInspector, {
    identity: {
      devIssuer: { enabled: true },
      // No jwksUrl and no publicKey: the broker reads the provider's discovery document.
      issuers: [{ issuer, audience, groupsClaim: 'realm_access.roles', algorithms: ['RS256'], ...issuerOverrides }],
    },
  });
}

async function expectRefused(broker: TestBroker, token: string, status: number, code: string, message: RegExp): Promise<{ code: string; message: string }> {
  const res = await fetch(`${broker.url}/v1/targets`, { headers: { authorization: `Bearer ${token}` } });
  const text = await res.text();
  assert.equal(res.status, status, `expected ${status} ${code}, got ${res.status} ${text}`);
  assert.match(res.headers.get('content-type') ?? '', /^application\/json/);
  const body = JSON.parse(text) as { error: { code: string; message: string } };
  assert.equal(body.error.code, code);
  assert.match(body.error.message, message);
  assert.ok(!body.error.message.includes(token), 'the refusal must not echo the token');
  return body.error;
}

async function targetNames(broker: TestBroker, token: string): Promise<string[]> {
  const res = await broker.api('GET', '/v1/targets', token);
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return res.body.targets.map((t: { name: string }) => t.name);
}

const b64url = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');
/** Polls GET /v1/targets with `token` until the broker answers `status` (caches and retries here follow the wall clock). */
async function statusBecomes(broker: TestBroker, token: string, status: number, what: string, timeoutMs = 10_000): Promise<void> {
  let last: unknown;
  await waitFor(
    async () => {
      const res = await broker.api('GET', '/v1/targets', token);
      last = `${res.status} ${JSON.stringify(res.body)}`;
      return res.status === status;
    },
    { what: () => `${what} (last answer: ${String(last)})`, timeoutMs, intervalMs: 100 },
  );
}

describe('identity: tokens from a real OIDC provider, its keys found through discovery', () => {
  let provider: OidcProvider;
  let otherProvider: OidcProvider;
  let broker: TestBroker;
  let skewMs = 0;
  const logs: string[] = [];

  before(async () => {
    provider = await startOidcProvider(providerOptions([await rsaSigningKey('main-1')]));
    otherProvider = await startOidcProvider(providerOptions([await rsaSigningKey('other-1')]));
    broker = await startTestBroker(policyFor(provider.issuer), { clock: () => Date.now() + skewMs, log: (line) => logs.push(line) });
  });
  after(async () => {
    await broker?.close();
    await provider?.stop();
    await otherProvider?.stop();
  });

  it('accepts a client credentials access token and takes the roles from its nested groups claim', async () => {
    const token = await provider.clientCredentials('svc-dev', 'svc-dev-secret', audience);
    const claims = decodeJwt(token);
    // What makes this test mean something: a real provider token, groups only under realm_access.roles.
    assert.equal(claims.iss, provider.issuer);
    assert.equal(claims.aud, audience);
    assert.equal(decodeProtectedHeader(token).kid, 'main-1');
    assert.deepEqual(claims.realm_access, { roles: ['devs'] });
    assert.equal(claims.groups, undefined);

    const res = await broker.api('GET', '/v1/targets', token);
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.deepEqual(res.body, { targets: [{ name: 'app', modes: ['pause', 'snapshot'], evaluation: ['loupe'], maxDurationSeconds: 600, ticketRequired: false }] });

    // The grant is issued to the token's subject, with its groups.
    const grant = await broker.api('POST', '/v1/grants', token, { target: 'app', mode: 'snapshot', durationSeconds: 60, reason: 'oidc test' });
    assert.equal(grant.status, 201, JSON.stringify(grant.body));
    assert.equal(decodeJwt(grant.body.token).sub, 'svc-dev');
  });

  it('a client whose groups map to no role sees no target', async () => {
    const token = await provider.clientCredentials('svc-marketing', 'svc-marketing-secret', audience);
    assert.deepEqual(await targetNames(broker, token), []);
  });

  it('refuses a token the provider issued for another audience', async () => {
    const token = await provider.clientCredentials('svc-dev', 'svc-dev-secret', 'urn:other-service');
    assert.equal(decodeJwt(token).aud, 'urn:other-service');
    await expectRefused(broker, token, 401, 'token_invalid', /identity token has the wrong audience/);
  });

  it('refuses an expired provider token (broker clock past its exp)', async () => {
    const token = await provider.clientCredentials('svc-dev', 'svc-dev-secret', audience);
    const exp = decodeJwt(token).exp!;
    assert.deepEqual(await targetNames(broker, token), ['app']);
    skewMs = (exp - Math.floor(Date.now() / 1000) + 10) * 1000;
    try {
      await expectRefused(broker, token, 401, 'token_expired', /identity token has expired; get a new one/);
    } finally {
      skewMs = 0;
    }
  });

  it('refuses a token from another (untrusted) provider, with the right audience and groups', async () => {
    const token = await otherProvider.clientCredentials('svc-dev', 'svc-dev-secret', audience);
    assert.equal(decodeJwt(token).iss, otherProvider.issuer);
    await expectRefused(broker, token, 401, 'token_invalid', /issuer this broker does not trust/);
  });

  it('refuses a provider token turned into alg "none"', async () => {
    const token = await provider.clientCredentials('svc-dev', 'svc-dev-secret', audience);
    const [, payload] = token.split('.');
    for (const alg of ['none', 'None']) {
      await expectRefused(broker, `${b64url({ alg, typ: 'at+jwt', kid: 'main-1' })}.${payload}.`, 401, 'token_invalid', /unsigned \(alg "none" is never accepted\)/);
    }
  });

  it('refuses an HMAC-signed token the provider itself issued for the broker audience', async () => {
    const token = await provider.clientCredentials('svc-dev', 'svc-dev-secret', 'urn:loupe:hmac');
    assert.equal(decodeProtectedHeader(token).alg, 'HS256');
    assert.equal(decodeJwt(token).aud, audience);
    assert.equal(decodeJwt(token).iss, provider.issuer);
    await expectRefused(broker, token, 401, 'token_invalid', /uses an algorithm this issuer does not allow/);
  });

  it("refuses HS256 keyed with the provider's published RSA key (key confusion)", async () => {
    const jwks = (await (await fetch(`${provider.issuer}/jwks`)).json()) as { keys: JWK[] };
    const pem = await exportSPKI((await importJWK(jwks.keys[0]!, 'RS256')) as CryptoKey);
    const genuine = decodeJwt(await provider.clientCredentials('svc-dev', 'svc-dev-secret', audience));
    for (const secret of [new TextEncoder().encode(pem), new TextEncoder().encode(JSON.stringify(jwks.keys[0]))]) {
      const forged = await new SignJWT(genuine).setProtectedHeader({ alg: 'HS256', kid: 'main-1' }).sign(secret);
      await expectRefused(broker, forged, 401, 'token_invalid', /uses an algorithm this issuer does not allow/);
    }
  });

  it('refuses a provider token whose groups were edited, and one signed by a key the provider does not publish', async () => {
    const token = await provider.clientCredentials('svc-marketing', 'svc-marketing-secret', audience);
    const [header, , signature] = token.split('.');
    const forged = `${header}.${b64url({ ...decodeJwt(token), realm_access: { roles: ['devs', 'admins'] } })}.${signature}`;
    await expectRefused(broker, forged, 401, 'token_invalid', /invalid signature/);

    const stranger = await generateKeyPair('RS256');
    const unknownKey = await new SignJWT(decodeJwt(token)).setProtectedHeader({ alg: 'RS256', kid: 'not-published' }).sign(stranger.privateKey);
    await expectRefused(broker, unknownKey, 401, 'token_invalid', /signed with a key the issuer does not publish/);
  });

  it('the dev issuer still works next to the provider', async () => {
    assert.deepEqual(await targetNames(broker, await broker.token('alice', ['devs'])), ['app']);
    assert.deepEqual(
      logs.filter((l) => l.startsWith('identity:')),
      [],
      'no identity trouble was logged',
    );
  });
});

describe('identity: key rotation at the provider while the broker runs', () => {
  let provider: OidcProvider;
  let broker: TestBroker;

  before(async () => {
    provider = await startOidcProvider(providerOptions([await rsaSigningKey('key-old')]));
    // A short cache age, so the removal of the old key shows within the test (the default is 10m).
    broker = await startTestBroker(policyFor(provider.issuer, { jwksCacheMaxAge: '2s' }));
  });
  after(async () => {
    await broker?.close();
    await provider?.stop();
  });

  it('accepts the new key as soon as it signs, and refuses the old one once the provider removed it', async () => {
    const oldKey = provider.options.keys[0]!;
    const newKey = await rsaSigningKey('key-new');
    const publishedKids = async () => ((await (await fetch(`${provider.issuer}/jwks`)).json()) as { keys: JWK[] }).keys.map((k) => k.kid);

    const oldToken = await provider.clientCredentials('svc-dev', 'svc-dev-secret', audience);
    assert.equal(decodeProtectedHeader(oldToken).kid, 'key-old');
    assert.deepEqual(await targetNames(broker, oldToken), ['app']);

    // Rotation, step 1: the provider restarts publishing both keys and signing with the new one. The broker has
    // the old key set cached (fetched a moment ago, so within jose's refetch cooldown) and must refetch on the new kid.
    provider = await provider.restart({ keys: [oldKey, newKey], signingKid: 'key-new' });
    assert.deepEqual(await publishedKids(), ['key-old', 'key-new']);
    const newToken = await provider.clientCredentials('svc-dev', 'svc-dev-secret', audience);
    assert.equal(decodeProtectedHeader(newToken).kid, 'key-new');
    assert.deepEqual(await targetNames(broker, newToken), ['app']);
    assert.deepEqual(await targetNames(broker, oldToken), ['app'], 'the old key is still published, so its tokens still verify');

    // Step 2: the old key is removed. Once the broker's cached key set is older than jwksCacheMaxAge, tokens
    // signed with the old key are refused; the new key keeps working.
    provider = await provider.restart({ keys: [newKey], signingKid: 'key-new' });
    assert.deepEqual(await publishedKids(), ['key-new']);
    await statusBecomes(broker, oldToken, 401, "the old key's token refused once the cached key set is stale (2 s)", 6000);
    await expectRefused(broker, oldToken, 401, 'token_invalid', /signed with a key the issuer does not publish/);
    assert.deepEqual(await targetNames(broker, newToken), ['app']);
    assert.deepEqual(await targetNames(broker, await provider.clientCredentials('svc-dev', 'svc-dev-secret', audience)), ['app']);
  });
});

describe('identity: the provider unavailable', () => {
  it('a broker started while the provider is down answers 503 naming the discovery URL, then works once it is up', async () => {
    const keys = [await rsaSigningKey('late-1')];
    // Learn a free port and the issuer it gives, then take the provider down before the broker starts.
    let provider = await startOidcProvider(providerOptions(keys));
    const token = await provider.clientCredentials('svc-dev', 'svc-dev-secret', audience);
    await provider.stop();
    const logs: string[] = [];
    const broker = await startTestBroker(policyFor(provider.issuer), { log: (line) => logs.push(line) });
    try {
      const error = await expectRefused(broker, token, 503, 'issuer_unavailable', /cannot verify tokens from http:\/\/127\.0\.0\.1:\d+: cannot fetch its discovery document/);
      assert.ok(error.message.includes(discoveryUrl(provider.issuer)), error.message);
      assert.match(error.message, /ECONNREFUSED/);
      assert.ok(
        logs.some((l) => l.startsWith('identity: cannot verify tokens from') && l.includes(discoveryUrl(provider.issuer))),
        logs.join('\n'),
      );

      provider = await provider.restart({});
      // Discovery is retried on demand (at most once a second), so the broker is not left broken.
      await statusBecomes(broker, token, 200, 'the broker to recover once the provider answered');
      assert.deepEqual(await targetNames(broker, token), ['app']);
    } finally {
      await broker.close();
      await provider.stop();
    }
  });

  it('once the provider goes away and the cached keys are stale, tokens are refused with 503, never accepted', async () => {
    let provider = await startOidcProvider(providerOptions([await rsaSigningKey('gone-1')]));
    const broker = await startTestBroker(policyFor(provider.issuer, { jwksCacheMaxAge: '1s' }));
    try {
      const token = await provider.clientCredentials('svc-dev', 'svc-dev-secret', audience);
      assert.deepEqual(await targetNames(broker, token), ['app']);
      await provider.stop();
      await statusBecomes(broker, token, 503, 'a refusal once the cached keys are stale (1 s) and the provider is gone', 6000);
      const error = await expectRefused(broker, token, 503, 'issuer_unavailable', /cannot fetch its key set http:\/\/127\.0\.0\.1:\d+\/jwks/);
      assert.match(error.message, /try again shortly/);
      // Back again: accepted again.
      provider = await provider.restart({});
      await statusBecomes(broker, token, 200, 'acceptance once the provider is back');
      assert.deepEqual(await targetNames(broker, token), ['app']);
    } finally {
      await broker.close();
      await provider.stop();
    }
  });

  it('an IdP that accepts connections but never answers: 503 within the fetch timeout', async () => {
    const silent: Server = createServer(() => undefined);
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const issuer = `http://127.0.0.1:${(silent.address() as AddressInfo).port}`;
    const broker = await startTestBroker(policyFor(issuer));
    try {
      const { privateKey } = await generateKeyPair('RS256');
      const now = Math.floor(Date.now() / 1000);
      const token = await new SignJWT({ sub: 'x', realm_access: { roles: ['devs'] } })
        .setProtectedHeader({ alg: 'RS256', kid: 'k' })
        .setIssuer(issuer)
        .setAudience(audience)
        .setIssuedAt(now)
        .setExpirationTime(now + 60)
        .sign(privateKey);
      const started = Date.now();
      await expectRefused(broker, token, 503, 'issuer_unavailable', /discovery document .* no answer within 5s/);
      assert.ok(Date.now() - started < 8_000, 'bounded by the fetch timeout');
    } finally {
      await broker.close();
      silent.closeAllConnections();
      silent.close();
    }
  });

  it('a discovery document that names another issuer is refused with a message saying so', async () => {
    const provider = await startOidcProvider(providerOptions([await rsaSigningKey('slash-1')]));
    // A common slip: the configured issuer has a trailing slash the provider's issuer does not.
    const configured = `${provider.issuer}/`;
    const broker = await startTestBroker(policyFor(configured));
    try {
      const { privateKey } = await generateKeyPair('RS256');
      const now = Math.floor(Date.now() / 1000);
      const token = await new SignJWT({ sub: 'x' })
        .setProtectedHeader({ alg: 'RS256', kid: 'slash-1' })
        .setIssuer(configured)
        .setAudience(audience)
        .setIssuedAt(now)
        .setExpirationTime(now + 60)
        .sign(privateKey);
      const error = await expectRefused(broker, token, 503, 'issuer_unavailable', /names issuer "http:\/\/127\.0\.0\.1:\d+"; the configured issuer must equal it exactly/);
      assert.ok(error.message.includes(discoveryUrl(configured)), error.message);
    } finally {
      await broker.close();
      await provider.stop();
    }
  });
});
