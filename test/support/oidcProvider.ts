import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { exportJWK, generateKeyPair, type JWK } from 'jose';

const script = join(__dirname, 'oidcProvider.mjs');

/** Options of test/support/oidcProvider.mjs (see there). */
export interface OidcProviderOptions {
  port?: number;
  keys: JWK[];
  signingKid?: string;
  resources?: Record<string, { audience?: string; alg?: 'RS256' | 'HS256'; secret?: string; ttl?: number }>;
  clients?: Record<string, unknown>[];
  groups?: Record<string, string[]>;
  ttl?: number;
  deviceFlow?: boolean;
}

export interface OidcProvider {
  readonly issuer: string;
  readonly port: number;
  readonly options: OidcProviderOptions;
  /** Client credentials grant: a JWT access token for `resource`. Throws with the provider's error otherwise. */
  clientCredentials(clientId: string, clientSecret: string, resource: string, scope?: string): Promise<string>;
  /** Stops the process (the port is free again when this resolves). */
  stop(): Promise<void>;
  /** The same provider (same port, so the same issuer) restarted with other options, e.g. rotated keys. */
  restart(changes: Partial<OidcProviderOptions>): Promise<OidcProvider>;
}

/** An RS256 private JWK with a kid, as the provider signs with and publishes. */
export async function rsaSigningKey(kid: string): Promise<JWK> {
  const { privateKey } = await generateKeyPair('RS256', { modulusLength: 2048, extractable: true });
  return { ...(await exportJWK(privateKey)), kid, alg: 'RS256', use: 'sig' };
}

/** Starts oidc-provider in its own process on loopback and waits until it listens. */
export async function startOidcProvider(options: OidcProviderOptions): Promise<OidcProvider> {
  const proc: ChildProcess = spawn(process.execPath, [script, JSON.stringify(options)], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NODE_ENV: 'test' } });
  let output = '';
  const issuer = await new Promise<string>((resolve, reject) => {
    const onData = (chunk: string) => {
      output += chunk;
      const match = /^OIDC_ISSUER=(\S+)$/m.exec(output);
      if (match) resolve(match[1]!);
    };
    proc.stdout!.setEncoding('utf8').on('data', onData);
    proc.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
      output += chunk;
      // Its own warnings (dev interactions, no adapter) are expected; anything else helps when a test fails.
      if (/server_error|Error/.test(chunk)) process.stderr.write(`[oidc-provider] ${chunk}`);
    });
    proc.once('exit', (code) => reject(new Error(`oidc-provider exited (${code}) before listening:\n${output}`)));
  });
  const port = Number(new URL(issuer).port);
  const exited = once(proc, 'exit');

  const provider: OidcProvider = {
    issuer,
    port,
    options,
    async clientCredentials(clientId, clientSecret, resource, scope = 'loupe') {
      const res = await fetch(`${issuer}/token`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Basic ${Buffer.from(`${clientId}:${clientSecret}`).toString('base64')}` },
        body: new URLSearchParams({ grant_type: 'client_credentials', resource, scope }),
      });
      const body = (await res.json()) as { access_token?: string; error?: string; error_description?: string };
      if (res.status !== 200 || !body.access_token) throw new Error(`client_credentials refused: ${res.status} ${JSON.stringify(body)}`);
      return body.access_token;
    },
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
      await exited;
    },
    async restart(changes) {
      await provider.stop();
      return startOidcProvider({ ...options, ...changes, port });
    },
  };
  return provider;
}
