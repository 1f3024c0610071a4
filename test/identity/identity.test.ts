import { strict as assert } from 'node:assert';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { exportSPKI, generateKeyPair, importJWK, SignJWT, type CryptoKey, type JWK } from 'jose';
import { devIssuerName } from '../../broker/identity/devIssuer';
import { basePolicy, startTestBroker, type TestBroker } from '../support/testBroker';

// No attach happens here, so the target's inspector address is never dialled.
const dummyInspector = '127.0.0.1:9';
const externalIssuer = 'https://idp.example.test';

const b64url = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');
const nowSeconds = () => Math.floor(Date.now() / 1000);

/** The dev issuer's private key, read from the broker's state directory as the broker wrote it. */
async function devIssuerPrivateKey(stateDir: string): Promise<CryptoKey> {
  const jwk = JSON.parse(readFileSync(join(stateDir, 'dev-issuer.jwk.json'), 'utf8')) as JWK;
  return (await importJWK({ ...jwk, alg: 'EdDSA' }, 'EdDSA')) as CryptoKey;
}

function devClaims(overrides: Record<string, unknown> = {}) {
  const now = nowSeconds();
  return { iss: devIssuerName, aud: 'loupe', sub: 'mallory', groups: ['devs'], iat: now, nbf: now, exp: now + 600, ...overrides };
}

async function expectUnauthorized(broker: TestBroker, authorization: string | undefined, code: string, message: RegExp): Promise<void> {
  const res = await fetch(`${broker.url}/v1/targets`, { headers: authorization === undefined ? {} : { authorization } });
  assert.equal(res.status, 401, `expected 401 for ${code}, got ${res.status}`);
  assert.match(res.headers.get('content-type') ?? '', /^application\/json/);
  const body = (await res.json()) as { error: { code: string; message: string } };
  assert.equal(typeof body.error, 'object');
  assert.equal(body.error.code, code);
  assert.equal(typeof body.error.message, 'string');
  assert.match(body.error.message, message);
  // The refusal never echoes the credential back.
  const token = authorization?.replace(/^Bearer /, '');
  if (token && token.length > 20) assert.ok(!body.error.message.includes(token), 'message must not echo the token');
}

describe('identity: bad tokens are refused with 401 and a message that says what is wrong', () => {
  let broker: TestBroker;
  let devKey: CryptoKey;

  before(async () => {
    broker = await startTestBroker(basePolicy(dummyInspector));
    devKey = await devIssuerPrivateKey(broker.stateDir);
  });
  after(async () => {
    await broker.close();
  });

  it('accepts a good dev token (control for every refusal below)', async () => {
    const token = await new SignJWT(devClaims()).setProtectedHeader({ alg: 'EdDSA' }).sign(devKey);
    const res = await broker.api('GET', '/v1/targets', token);
    assert.equal(res.status, 200);
    assert.equal(res.body.targets.length, 1);
  });

  it('accepts the scheme in any case, as RFC 7235 has it ("bearer", "BEARER")', async () => {
    const token = await new SignJWT(devClaims()).setProtectedHeader({ alg: 'EdDSA' }).sign(devKey);
    for (const scheme of ['bearer', 'BEARER', 'BeArEr']) {
      const res = await fetch(`${broker.url}/v1/targets`, { headers: { authorization: `${scheme} ${token}` } });
      assert.equal(res.status, 200, scheme);
    }
  });

  it('missing Authorization header', async () => {
    await expectUnauthorized(broker, undefined, 'unauthenticated', /missing Authorization header/);
  });

  it('malformed Authorization header (Basic)', async () => {
    await expectUnauthorized(broker, 'Basic x', 'unauthenticated', /malformed Authorization header: expected "Bearer <token>"/);
  });

  it('garbage token', async () => {
    // "could not be verified" would not tell the caller that what they sent is not a JWT at all.
    await expectUnauthorized(broker, 'Bearer not-a-jwt-at-all', 'token_invalid', /identity token is not a valid JWT/);
    await expectUnauthorized(broker, 'Bearer abc.def.ghi', 'token_invalid', /identity token is not a valid JWT/);
  });

  it('token with a JSON header but a payload that is not JSON', async () => {
    await expectUnauthorized(broker, `Bearer ${b64url({ alg: 'EdDSA' })}.bm90IGpzb24.c2ln`, 'token_invalid', /identity token is not a valid JWT/);
  });

  it('alg "none" unsigned token with otherwise perfect claims', async () => {
    const unsigned = `${b64url({ alg: 'none', typ: 'JWT' })}.${b64url(devClaims())}.`;
    await expectUnauthorized(broker, `Bearer ${unsigned}`, 'token_invalid', /unsigned \(alg "none" is never accepted\)/);
    const shouting = `${b64url({ alg: 'NONE' })}.${b64url(devClaims())}.`;
    await expectUnauthorized(broker, `Bearer ${shouting}`, 'token_invalid', /unsigned/);
  });

  it('HS256 token keyed with the dev issuer public key (key confusion)', async () => {
    const publicJwk = JSON.parse(readFileSync(join(broker.stateDir, 'dev-issuer.jwk.json'), 'utf8')) as JWK;
    const { d: _d, ...publicPart } = publicJwk;
    const publicKey = await importJWK({ ...publicPart, alg: 'EdDSA' }, 'EdDSA');
    const pem = await exportSPKI(publicKey as CryptoKey);
    for (const secret of [new TextEncoder().encode(pem), Buffer.from(publicPart.x!, 'base64url')]) {
      const token = await new SignJWT(devClaims()).setProtectedHeader({ alg: 'HS256' }).sign(secret);
      await expectUnauthorized(broker, `Bearer ${token}`, 'token_invalid', /uses an algorithm this issuer does not allow/);
    }
  });

  it('token signed by a different Ed25519 key claiming the dev issuer', async () => {
    const other = await generateKeyPair('EdDSA', { crv: 'Ed25519' });
    const token = await new SignJWT(devClaims()).setProtectedHeader({ alg: 'EdDSA' }).sign(other.privateKey);
    await expectUnauthorized(broker, `Bearer ${token}`, 'token_invalid', /invalid signature/);
  });

  it('tampered payload of a genuine dev token', async () => {
    const genuine = await broker.token('mallory', ['nobody']);
    const [header, , signature] = genuine.split('.');
    const forged = `${header}.${b64url(devClaims({ groups: ['admins', 'owners'] }))}.${signature}`;
    await expectUnauthorized(broker, `Bearer ${forged}`, 'token_invalid', /invalid signature/);
  });

  it('expired token', async () => {
    const past = nowSeconds() - 3600;
    const token = await new SignJWT(devClaims({ iat: past, nbf: past, exp: past + 60 })).setProtectedHeader({ alg: 'EdDSA' }).sign(devKey);
    await expectUnauthorized(broker, `Bearer ${token}`, 'token_expired', /identity token has expired/);
  });

  it('a token accepted once is refused when the broker clock passes its exp, or before its nbf (no verification outlives them)', async () => {
    let skewMs = 0;
    const skewed = await startTestBroker(basePolicy(dummyInspector), { clock: () => Date.now() + skewMs });
    try {
      const key = await devIssuerPrivateKey(skewed.stateDir);
      const token = await new SignJWT(devClaims({ exp: nowSeconds() + 60 })).setProtectedHeader({ alg: 'EdDSA' }).sign(key);
      assert.equal((await skewed.api('GET', '/v1/targets', token)).status, 200);
      assert.equal((await skewed.api('GET', '/v1/targets', token)).status, 200, 'the same token again');
      skewMs = 70_000;
      await expectUnauthorized(skewed, `Bearer ${token}`, 'token_expired', /identity token has expired/);
      skewMs = 0;
      const later = await new SignJWT(devClaims({ nbf: nowSeconds() + 30 })).setProtectedHeader({ alg: 'EdDSA' }).sign(key);
      skewMs = 40_000;
      assert.equal((await skewed.api('GET', '/v1/targets', later)).status, 200);
      skewMs = 0;
      await expectUnauthorized(skewed, `Bearer ${later}`, 'token_invalid', /not yet valid/);
    } finally {
      await skewed.close();
    }
  });

  it('token without exp is refused', async () => {
    const { exp: _exp, ...claims } = devClaims();
    const token = await new SignJWT(claims).setProtectedHeader({ alg: 'EdDSA' }).sign(devKey);
    await expectUnauthorized(broker, `Bearer ${token}`, 'token_invalid', /"exp"/);
  });

  it('not yet valid (nbf in the future)', async () => {
    const later = nowSeconds() + 3600;
    const token = await new SignJWT(devClaims({ nbf: later, exp: later + 600 })).setProtectedHeader({ alg: 'EdDSA' }).sign(devKey);
    await expectUnauthorized(broker, `Bearer ${token}`, 'token_invalid', /not yet valid \(nbf in the future\)/);
  });

  it('an nbf that is not a number is reported as such, not as a time in the future', async () => {
    const token = await new SignJWT(devClaims({ nbf: 'tomorrow' })).setProtectedHeader({ alg: 'EdDSA' }).sign(devKey);
    await expectUnauthorized(broker, `Bearer ${token}`, 'token_invalid', /^identity token failed the "nbf" check \(invalid\)$/);
  });

  it('wrong audience', async () => {
    const token = await new SignJWT(devClaims({ aud: 'some-other-service' })).setProtectedHeader({ alg: 'EdDSA' }).sign(devKey);
    await expectUnauthorized(broker, `Bearer ${token}`, 'token_invalid', /wrong audience/);
  });

  it('unknown issuer, even when signed with the dev key', async () => {
    const token = await new SignJWT(devClaims({ iss: 'https://evil.example' })).setProtectedHeader({ alg: 'EdDSA' }).sign(devKey);
    await expectUnauthorized(broker, `Bearer ${token}`, 'token_invalid', /issuer this broker does not trust/);
    const noIssuer = await new SignJWT(devClaims({ iss: undefined })).setProtectedHeader({ alg: 'EdDSA' }).sign(devKey);
    await expectUnauthorized(broker, `Bearer ${noIssuer}`, 'token_invalid', /issuer this broker does not trust/);
  });
});

describe('identity: what a verified user sees on GET /v1/targets', () => {
  let broker: TestBroker;
  before(async () => {
    broker = await startTestBroker(basePolicy(dummyInspector));
  });
  after(async () => {
    await broker.close();
  });

  it('a developer sees target "app" with its modes and maximum duration', async () => {
    const res = await broker.api('GET', '/v1/targets', await broker.token('alice', ['devs']));
    assert.equal(res.status, 200);
    assert.deepEqual(res.body, { targets: [{ name: 'app', modes: ['pause', 'snapshot'], evaluation: ['loupe'], maxDurationSeconds: 600, ticketRequired: false }] });
  });

  it('a user with no role sees an empty list', async () => {
    const res = await broker.api('GET', '/v1/targets', await broker.token('bob', ['marketing']));
    assert.equal(res.status, 200);
    assert.deepEqual(res.body, { targets: [] });
  });

  it('an owner who holds no access rule sees nothing to attach to', async () => {
    const res = await broker.api('GET', '/v1/targets', await broker.token('olga', ['owners']));
    assert.equal(res.status, 200);
    assert.deepEqual(res.body, { targets: [] });
  });
});

describe('identity: a configured external issuer with a PEM public key', () => {
  let broker: TestBroker;
  let rsaPrivate: CryptoKey;
  let rsaPem: string;

  const externalClaims = (overrides: Record<string, unknown> = {}) => {
    const now = nowSeconds();
    return { iss: externalIssuer, aud: 'loupe-prod', sub: 'carol@example.com', team_groups: ['payments-dev'], iat: now, nbf: now, exp: now + 600, ...overrides };
  };

  before(async () => {
    const pair = await generateKeyPair('RS256', { modulusLength: 2048, extractable: true });
    rsaPrivate = pair.privateKey;
    rsaPem = await exportSPKI(pair.publicKey);
    broker = await startTestBroker(
      basePolicy(dummyInspector, {
        identity: {
          devIssuer: { enabled: true },
          issuers: [{ issuer: externalIssuer, audience: 'loupe-prod', publicKey: rsaPem, algorithms: ['RS256'], groupsClaim: 'team_groups' }],
        },
        roles: { dev: { groups: ['devs', 'payments-dev'] }, owner: { groups: ['owners'] }, admin: { groups: ['admins'] } },
      }),
    );
  });
  after(async () => {
    await broker.close();
  });

  it('accepts an RS256 token and maps its groups claim to roles', async () => {
    const token = await new SignJWT(externalClaims()).setProtectedHeader({ alg: 'RS256', typ: 'JWT' }).sign(rsaPrivate);
    const res = await broker.api('GET', '/v1/targets', token);
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.deepEqual(
      res.body.targets.map((t: { name: string }) => t.name),
      ['app'],
    );
    assert.deepEqual(res.body.targets[0].modes, ['pause', 'snapshot']);
  });

  it('reads groups only from the configured claim', async () => {
    const token = await new SignJWT(externalClaims({ team_groups: ['other'], groups: ['devs'] })).setProtectedHeader({ alg: 'RS256' }).sign(rsaPrivate);
    const res = await broker.api('GET', '/v1/targets', token);
    assert.equal(res.status, 200);
    assert.deepEqual(res.body, { targets: [] });
  });

  it('holds the external issuer to its own audience', async () => {
    const token = await new SignJWT(externalClaims({ aud: 'loupe' })).setProtectedHeader({ alg: 'RS256' }).sign(rsaPrivate);
    await expectUnauthorized(broker, `Bearer ${token}`, 'token_invalid', /wrong audience/);
  });

  it('refuses an ES256 token from the same issuer', async () => {
    const ec = await generateKeyPair('ES256');
    const token = await new SignJWT(externalClaims()).setProtectedHeader({ alg: 'ES256' }).sign(ec.privateKey);
    await expectUnauthorized(broker, `Bearer ${token}`, 'token_invalid', /algorithm this issuer does not allow/);
  });

  it('refuses an HS256 token keyed with the issuer public key PEM', async () => {
    const token = await new SignJWT(externalClaims()).setProtectedHeader({ alg: 'HS256' }).sign(new TextEncoder().encode(rsaPem));
    await expectUnauthorized(broker, `Bearer ${token}`, 'token_invalid', /algorithm this issuer does not allow/);
  });

  it('refuses an RS256 token from another RSA key', async () => {
    const other = await generateKeyPair('RS256', { modulusLength: 2048 });
    const token = await new SignJWT(externalClaims()).setProtectedHeader({ alg: 'RS256' }).sign(other.privateKey);
    await expectUnauthorized(broker, `Bearer ${token}`, 'token_invalid', /invalid signature/);
  });

  it('does not let the external key sign for the dev issuer', async () => {
    const token = await new SignJWT(externalClaims({ iss: devIssuerName, aud: 'loupe' })).setProtectedHeader({ alg: 'RS256' }).sign(rsaPrivate);
    await expectUnauthorized(broker, `Bearer ${token}`, 'token_invalid', /algorithm this issuer does not allow/);
  });

  it('refuses a subject that is not one plain string: a number, object, list, boolean, empty, control characters, bidi overrides, 256 characters', async () => {
    const cases: [unknown, RegExp][] = [
      [123, /was a number/],
      [{ id: 'carol' }, /was an object/],
      [['carol'], /was a list/],
      [true, /was a boolean/],
      ['', /was empty/],
      ['  ', /was empty/],
      ['carol\nmallory', /control or bidirectional-override/],
      ['carol\u001b[2K', /control or bidirectional-override/],
      ['carol\u202emoc.elpmaxe', /control or bidirectional-override/],
      ['c'.repeat(256), /256 characters long/],
    ];
    for (const [sub, reason] of cases) {
      const token = await new SignJWT(externalClaims({ sub })).setProtectedHeader({ alg: 'RS256' }).sign(rsaPrivate);
      await expectUnauthorized(broker, `Bearer ${token}`, 'token_invalid', new RegExp(`"sub" claim must be a non-empty string of at most 255 printable characters \\(it .*${reason.source}`));
      const grant = await broker.api('POST', '/v1/grants', token, { target: 'app', mode: 'pause', durationSeconds: 60, reason: 'checking' });
      assert.equal(grant.status, 401, `no grant for sub ${JSON.stringify(sub)}`);
    }
    // A unicode subject of 255 characters is a subject.
    const token = await new SignJWT(externalClaims({ sub: 'ç'.repeat(255) })).setProtectedHeader({ alg: 'RS256' }).sign(rsaPrivate);
    assert.equal((await broker.api('GET', '/v1/targets', token)).status, 200);
  });

  it('shows the subject in place of a display name that is not one plain string', async () => {
    for (const name of ['Carol\r\n2026-11-30 grant issued to admin', { first: 'Carol' }]) {
      const token = await new SignJWT(externalClaims({ sub: 'carol@example.com', name })).setProtectedHeader({ alg: 'RS256' }).sign(rsaPrivate);
      const grant = await broker.api('POST', '/v1/grants', token, { target: 'app', mode: 'pause', durationSeconds: 60, reason: 'checking' });
      assert.equal(grant.status, 201, JSON.stringify(grant.body));
      const issued = await broker.waitForRecord('grant.issued', (e) => e.data.grantId === grant.body.grantId);
      assert.deepEqual(issued.data.actor.name, 'carol@example.com');
    }
  });

  it("a subject names a user only within its issuer: another issuer's user of the same sub cannot open, revoke or attach through the grant", async () => {
    // carol@example.com of the dev issuer holds a grant; the external issuer's carol@example.com is someone else.
    const holder = await broker.token('carol@example.com', ['devs']);
    const grant = await broker.api('POST', '/v1/grants', holder, { target: 'app', mode: 'pause', durationSeconds: 60, reason: 'checking' });
    assert.equal(grant.status, 201, JSON.stringify(grant.body));
    const other = await new SignJWT(externalClaims({ sub: 'carol@example.com' })).setProtectedHeader({ alg: 'RS256' }).sign(rsaPrivate);
    const ticket = await broker.api('POST', `/v1/grants/${grant.body.grantId}/tickets`, other);
    assert.equal(ticket.status, 403, JSON.stringify(ticket.body));
    assert.equal(ticket.body.error.code, 'forbidden');
    assert.match(ticket.body.error.message, /only the grant's holder may open a ticket for grant/);
    const revoke = await broker.api('DELETE', `/v1/grants/${grant.body.grantId}`, other);
    assert.equal(revoke.status, 403, JSON.stringify(revoke.body));
    // The holder, of the issuer that vouched for them, still may.
    assert.equal((await broker.api('POST', `/v1/grants/${grant.body.grantId}/tickets`, holder)).status, 201);
    assert.equal((await broker.api('DELETE', `/v1/grants/${grant.body.grantId}`, holder)).status, 200);
  });

  it('still accepts the dev issuer alongside', async () => {
    const res = await broker.api('GET', '/v1/targets', await broker.token('alice', ['devs']));
    assert.equal(res.status, 200);
    assert.equal(res.body.targets.length, 1);
  });
});
