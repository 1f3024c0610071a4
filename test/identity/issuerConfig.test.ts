// identity.issuers in the config: where the keys come from (discovery, jwksUrl, publicKey), the cache age, and
// every mistake reported with its path.
import { strict as assert } from 'node:assert';
import { tmpdir } from 'node:os';
import { describe, it } from 'node:test';
import { exportSPKI, generateKeyPair } from 'jose';
import { validateConfig } from '../../broker/config/load';
import { LoupeError } from '../../broker/errors';
import { claimAt } from '../../broker/identity/verifyIdentity';
import { basePolicy } from '../support/testBroker';

const withIssuers = (issuers: unknown[]) => basePolicy('127.0.0.1:9', { identity: { issuers } });

function problemsOf(issuers: unknown[]): string[] {
  try {
    validateConfig(withIssuers(issuers), tmpdir());
  } catch (err) {
    assert.ok(err instanceof LoupeError);
    assert.equal(err.code, 'config_invalid');
    return err.details!.problems as string[];
  }
  assert.fail('config was accepted');
}

describe('config: identity issuers', () => {
  it('an issuer with no key source uses discovery, with a 10 minute key cache by default', () => {
    const config = validateConfig(withIssuers([{ issuer: 'https://idp.example.com/realms/prod', groupsClaim: 'realm_access.roles' }]), tmpdir());
    const [issuer] = config.identity.issuers;
    assert.equal(issuer!.discovery, true);
    assert.equal(issuer!.jwksUrl, undefined);
    assert.equal(issuer!.publicKey, undefined);
    assert.equal(issuer!.jwksCacheMaxAgeSeconds, 600);
    assert.equal(issuer!.groupsClaim, 'realm_access.roles');
    assert.equal(issuer!.audience, 'loupe');
  });

  it('discovery: true, jwksUrl and publicKey each work alone', async () => {
    const pem = await exportSPKI((await generateKeyPair('RS256', { extractable: true })).publicKey);
    const config = validateConfig(
      withIssuers([
        { issuer: 'https://a.example', discovery: true, jwksCacheMaxAge: '30s' },
        { issuer: 'https://b.example', jwksUrl: 'https://b.example/keys' },
        { issuer: 'https://c.example', publicKey: pem, algorithms: ['RS256'] },
        { issuer: 'http://127.0.0.1:8080', discovery: true },
      ]),
      tmpdir(),
    );
    assert.deepEqual(
      config.identity.issuers.map((i) => [i.discovery, i.jwksUrl ?? null, !!i.publicKey, i.jwksCacheMaxAgeSeconds]),
      [
        [true, null, false, 30],
        [false, 'https://b.example/keys', false, 600],
        [false, null, true, 600],
        [true, null, false, 600],
      ],
    );
  });

  it('every mistake, with its path', async () => {
    const pem = await exportSPKI((await generateKeyPair('RS256', { extractable: true })).publicKey);
    assert.deepEqual(
      problemsOf([
        { issuer: 'https://a.example', discovery: true, jwksUrl: 'https://a.example/keys' },
        { issuer: 'https://b.example', discovery: false },
        { issuer: 'https://c.example', discovery: 'yes' },
        { issuer: 'http://idp.example.com' },
        { issuer: 'https://e.example', publicKey: pem, algorithms: ['RS256'], jwksCacheMaxAge: '5m' },
        { issuer: 'https://f.example', jwksCacheMaxAge: 'soon' },
        { issuer: 'https://g.example', jwksUrl: 'https://g.example/keys', publicKey: pem, algorithms: ['RS256'] },
      ]),
      [
        'identity.issuers[0]: set only one of discovery, jwksUrl, publicKey or publicKeyFile',
        'identity.issuers[1]: no key source: set discovery: true, jwksUrl, publicKey or publicKeyFile',
        'identity.issuers[2].discovery: expected true or false',
        'identity.issuers[3].issuer: discovery needs an https URL (http only on loopback), got "http://idp.example.com"; or set jwksUrl, publicKey or publicKeyFile',
        'identity.issuers[4].jwksCacheMaxAge: only used with discovery or jwksUrl',
        'identity.issuers[5].jwksCacheMaxAge: expected a duration like "30m"',
        'identity.issuers[6]: set only one of discovery, jwksUrl, publicKey or publicKeyFile',
      ],
    );
  });

  it('unknown keys in an issuer are errors', () => {
    assert.deepEqual(problemsOf([{ issuer: 'https://a.example', discoveryUrl: 'https://a.example/.well-known/openid-configuration' }]), [
      'identity.issuers[0].discoveryUrl: unknown key (expected one of: issuer, audience, discovery, jwksUrl, jwksCacheMaxAge, publicKey, publicKeyFile, algorithms, groupsClaim, nameClaim)',
    ]);
  });
});

describe('identity: the groups claim', () => {
  const payload = {
    sub: 'alice',
    groups: ['flat'],
    realm_access: { roles: ['nested'] },
    'https://example.com/groups': ['namespaced'],
    resource_access: { loupe: { roles: ['deeper'] } },
    list: [{ roles: ['in-a-list'] }],
  };

  it('reads a plain claim, a dotted path, and a claim whose name has dots', () => {
    assert.deepEqual(claimAt(payload, 'groups'), ['flat']);
    assert.deepEqual(claimAt(payload, 'realm_access.roles'), ['nested']);
    assert.deepEqual(claimAt(payload, 'resource_access.loupe.roles'), ['deeper']);
    assert.deepEqual(claimAt(payload, 'https://example.com/groups'), ['namespaced']);
  });

  it('a path that does not lead anywhere gives nothing (no role), never an error', () => {
    for (const path of ['realm_access.missing', 'groups.length', 'list.0.roles', 'sub.length', 'realm_access.roles.extra', 'toString', '__proto__.constructor']) {
      assert.equal(claimAt(payload, path), undefined, path);
    }
    assert.equal(claimAt(payload, 'realm_access.__proto__'), undefined);
  });
});
