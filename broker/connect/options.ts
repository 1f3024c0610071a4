/** `loupe connect`'s usage, options and their checks: every mistake is named before anything is asked of the broker. */
import { readFileSync } from 'node:fs';
import { parseDuration } from '../config/duration';
import { modes, evaluations, type Evaluation, type Mode } from '../config/types';
import type { OidcSettings } from '../../extension/oidcSignIn';

export const connectUsage = `usage: loupe connect <target> --reason TEXT [--ticket T] [--mode pause|snapshot] [--duration 15m] [--port 9229]
                     [--broker URL] [--token-file F] [--issuer URL --client-id ID]

Gets a grant for <target> and opens a local inspector endpoint on 127.0.0.1:<port> that any debugger able to
attach to node --inspect uses unchanged (VS Code, Chrome DevTools, WebStorm, node inspect); the broker holds it
to the target's policy and records everything. Prints LOUPE_CONNECT_URL=http://127.0.0.1:<port> on stdout once
it listens, a countdown and why it ended on stderr. One debugger at a time; after it disconnects another may
attach until the grant ends. Ctrl-C ends the session (target resumed, breakpoints removed) and exits 0.

options:
  --reason <text>         why you attach to production (required; recorded and shown to approvers)
  --ticket <T>            the ticket the policy asks for (e.g. INC-1234)
  --mode <pause|snapshot> pause the target at breakpoints, or capture and resume at once (default: pause)
  --evaluation <loupe|v8> v8 asks for the privilege of V8 evaluation where the policy grants it (default: loupe)
  --duration <duration>   the grant length asked for, e.g. 15m or 1h (default: 15m; the policy may shorten it)
  --port <n>              the local port (default: 9229; 0: any free one)
  --broker <url>          the broker's URL (default: $LOUPE_BROKER_URL)
  --token-file <file>     a file holding your identity token (default: $LOUPE_TOKEN, else sign in)
  --issuer <url>          sign in at this OpenID provider with a code shown here (device authorization);
                          default: $LOUPE_OIDC_ISSUER
  --client-id <id>        the client id for that sign-in (default: $LOUPE_OIDC_CLIENT_ID)
  --scopes <s>            its scopes (default: $LOUPE_OIDC_SCOPES or "openid profile")
  --resource <uri>        the broker's resource indicator, when the provider issues access tokens for it
                          (default: $LOUPE_OIDC_RESOURCE; without one the ID token is sent)
  -h, --help              print this help

exit status: 0 when you stopped it or the grant ran out; 1 when it could not start or the broker ended it
(revoked, alert, policy, target gone); 2 for a mistake in the arguments.`;

export const connectOptions = {
  reason: { type: 'string' },
  ticket: { type: 'string' },
  mode: { type: 'string' },
  evaluation: { type: 'string' },
  duration: { type: 'string' },
  port: { type: 'string' },
  broker: { type: 'string' },
  'token-file': { type: 'string' },
  issuer: { type: 'string' },
  'client-id': { type: 'string' },
  scopes: { type: 'string' },
  resource: { type: 'string' },
} as const;

export type ConnectValues = { [K in keyof typeof connectOptions]?: string };

/** Where the identity token comes from. */
export type IdentitySource = { readonly kind: 'token'; readonly token: string; readonly from: string } | { readonly kind: 'device'; readonly oidc: OidcSettings };

export interface ConnectSettings {
  readonly target: string;
  readonly reason: string;
  readonly ticket?: string;
  readonly mode: Mode;
  readonly evaluation: Evaluation;
  readonly durationSeconds: number;
  readonly port: number;
  readonly broker: string;
  readonly identity: IdentitySource;
}

/** A mistake in the arguments (exit 2). */
export class ConnectUsageError extends Error {}

/** Checks the arguments against the environment; throws ConnectUsageError naming the first mistake. */
export function connectSettings(values: ConnectValues, positionals: readonly string[], env: NodeJS.ProcessEnv): ConnectSettings {
  const wrong = (message: string): never => {
    throw new ConnectUsageError(message);
  };
  if (positionals.length === 0) wrong('missing <target>: the name of the target to debug (loupe connect <target> --reason TEXT)');
  if (positionals.length > 1) wrong(`one target at a time: got ${positionals.map((p) => JSON.stringify(p)).join(', ')}`);
  const target = positionals[0]!;
  const reason = values.reason?.trim() || wrong('missing --reason <text>: a reason is required to attach to production (it is recorded and shown to approvers)');
  const mode = (values.mode ?? 'pause') as Mode;
  if (!modes.includes(mode)) wrong(`--mode: expected one of ${modes.join(', ')}, got "${values.mode}"`);
  const evaluation = (values.evaluation ?? 'loupe') as Evaluation;
  if (!evaluations.includes(evaluation)) wrong(`--evaluation: expected one of ${evaluations.join(', ')}, got "${values.evaluation}"`);
  const durationSeconds = values.duration === undefined ? 900 : (parseDuration(values.duration) ?? wrong(`--duration: expected a duration like "15m" or "1h", got "${values.duration}"`));
  const port =
    values.port === undefined ? 9229 : /^\d{1,5}$/.test(values.port) && Number(values.port) <= 65535 ? Number(values.port) : wrong(`--port: expected a port number 0-65535, got "${values.port}"`);
  const brokerText = values.broker ?? env.LOUPE_BROKER_URL ?? wrong('missing --broker <url> (or LOUPE_BROKER_URL)');
  let broker: URL;
  try {
    broker = new URL(brokerText);
  } catch {
    return wrong(`--broker: "${brokerText}" is not a URL (expected e.g. https://loupe.example.com)`);
  }
  if (broker.protocol !== 'http:' && broker.protocol !== 'https:') wrong(`--broker: expected an http(s) URL, got "${brokerText}"`);
  return {
    target,
    reason,
    ...(values.ticket ? { ticket: values.ticket } : {}),
    mode,
    evaluation,
    durationSeconds,
    port,
    broker: broker.href.replace(/\/$/, ''),
    identity: identitySource(values, env, wrong),
  };
}

/** --token-file, else LOUPE_TOKEN, else a device sign-in at the configured provider. */
function identitySource(values: ConnectValues, env: NodeJS.ProcessEnv, wrong: (message: string) => never): IdentitySource {
  const file = values['token-file'];
  if (file !== undefined) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      return wrong(`--token-file: cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
    const token = text.trim();
    if (!token) wrong(`--token-file: ${file} is empty`);
    if (/\s/.test(token)) wrong(`--token-file: ${file} must hold one token (it has several words or lines)`);
    return { kind: 'token', token, from: file };
  }
  if (env.LOUPE_TOKEN?.trim()) return { kind: 'token', token: env.LOUPE_TOKEN.trim(), from: 'LOUPE_TOKEN' };
  const issuer = values.issuer ?? env.LOUPE_OIDC_ISSUER;
  const clientId = values['client-id'] ?? env.LOUPE_OIDC_CLIENT_ID;
  if (!issuer) return wrong('no identity: set LOUPE_TOKEN, pass --token-file <file>, or sign in with --issuer <url> --client-id <id> (or LOUPE_OIDC_ISSUER and LOUPE_OIDC_CLIENT_ID)');
  if (!clientId) return wrong(`--issuer ${issuer} needs --client-id <id> (or LOUPE_OIDC_CLIENT_ID) to sign in`);
  try {
    new URL(issuer);
  } catch {
    return wrong(`--issuer: "${issuer}" is not a URL`);
  }
  const resource = values.resource ?? env.LOUPE_OIDC_RESOURCE;
  return { kind: 'device', oidc: { issuer, clientId, scopes: values.scopes ?? env.LOUPE_OIDC_SCOPES ?? 'openid profile', ...(resource ? { resource } : {}) } };
}
