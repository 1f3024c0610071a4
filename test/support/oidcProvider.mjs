// A real OpenID provider (panva's oidc-provider) on loopback, for the identity tests. Run as a child process:
//   node test/support/oidcProvider.mjs '<json options>'
// It prints `OIDC_ISSUER=<url>` once listening. Options (all optional but keys):
//   port         0 picks a free port; pass the previous port to restart "the same" provider (e.g. with new keys)
//   keys         private JWKs it signs with and publishes (the public parts) at its jwks_uri
//   signingKid   which of them signs JWT access tokens (default: the first RS256 key)
//   resources    resource indicator → { audience?, alg?: 'RS256' | 'HS256', secret?, ttl? }: JWT access tokens
//   clients      oidc-provider client metadata
//   groups       account id or client id → groups, put in tokens as realm_access.roles (Keycloak's shape)
//   ttl          seconds for ID tokens and tokens of no resource (default 600)
//   deviceFlow   true enables the device authorization grant (RFC 8628), the sign-in of terminals
import { createServer } from 'node:http';
import Provider, { errors } from 'oidc-provider';

const options = JSON.parse(process.argv[2] ?? '{}');
const groupsOf = (id) => options.groups?.[id] ?? [];
const ttl = options.ttl ?? 600;

const server = createServer();
await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(options.port ?? 0, '127.0.0.1', resolve);
});
const issuer = `http://127.0.0.1:${server.address().port}`;

const provider = new Provider(issuer, {
  clients: options.clients ?? [],
  jwks: { keys: options.keys },
  cookies: { keys: ['loupe-test-cookie-key'] },
  // Dev interactions: a login form that takes any user name, and a consent form; a test completes them in a browser.
  features: {
    devInteractions: { enabled: true },
    clientCredentials: { enabled: true },
    deviceFlow: { enabled: options.deviceFlow === true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => undefined,
      useGrantedResource: () => true,
      getResourceServerInfo(_ctx, indicator) {
        const resource = options.resources?.[indicator];
        if (!resource) throw new errors.InvalidTarget();
        const sign = resource.alg === 'HS256' ? { alg: 'HS256', key: resource.secret } : { alg: 'RS256', ...(options.signingKid ? { kid: options.signingKid } : {}) };
        return { scope: 'loupe', audience: resource.audience ?? indicator, accessTokenTTL: resource.ttl ?? ttl, accessTokenFormat: 'jwt', jwt: { sign } };
      },
    },
  },
  claims: { openid: ['sub'], profile: ['name'], groups: ['realm_access'] },
  // ID tokens carry the scopes' claims too (the extension may send the ID token to the broker).
  conformIdTokenClaims: false,
  async findAccount(_ctx, id) {
    return { accountId: id, claims: () => ({ sub: id, name: `${id} (test account)`, realm_access: { roles: groupsOf(id) } }) };
  },
  extraTokenClaims(_ctx, token) {
    const subject = token.accountId ?? token.clientId;
    return { realm_access: { roles: groupsOf(subject) } };
  },
  issueRefreshToken: (_ctx, client) => client.grantTypeAllowed('refresh_token'),
  ttl: { AccessToken: ttl, ClientCredentials: ttl, IdToken: ttl, Grant: 3600, Interaction: 600, Session: 3600, RefreshToken: 86400, AuthorizationCode: 60 },
});
provider.on('server_error', (_ctx, err) => process.stderr.write(`oidc-provider server_error: ${err.stack}\n`));

server.on('request', provider.callback());
process.stdout.write(`OIDC_ISSUER=${issuer}\n`);
process.on('SIGTERM', () => process.exit(0));
