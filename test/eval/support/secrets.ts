import { randomInt } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fixtures } from '../../support/target';

export const secretsApp = join(fixtures, 'secrets-app.js');

const alnum = 'ABCDEFGHJKLMNPQRSTUVWXYZabcdefghjkmnpqrstuvwxyz23456789';
// Letters beyond hex and mixed case: a short secret cannot turn up by chance in ids, hashes or base64 seals.
const unlikely = 'GHJKLMNPQRSTUVWXYZghjkmnpqrstuvwxyz';
const pick = (alphabet: string, n: number) => Array.from({ length: n }, () => alphabet[randomInt(alphabet.length)]).join('');

/** A 16-digit card number that passes the Luhn check (the scrubber's pattern and any validator accept it). */
function luhnCard(): string {
  const digits = [4, ...Array.from({ length: 14 }, () => randomInt(10))];
  let sum = 0;
  for (let i = 0; i < digits.length; i++) {
    let d = digits[digits.length - 1 - i]!;
    if (i % 2 === 0) d = d * 2 > 9 ? d * 2 - 9 : d * 2;
    sum += d;
  }
  return digits.join('') + String((10 - (sum % 10)) % 10);
}

/** What the fixture is handed (LOUPE_FIXTURE_SECRETS), by the fixture's own names. */
export interface FixtureSecrets {
  paramPassword: string;
  clientSecretValue: string;
  pinCode: string;
  cardDigits: string;
  shortPassword: string;
  signingSecret: string;
  masterSecretValue: string;
  tokenKey: string;
  mapApiKey: string;
  vaultSecret: string;
  accountToken: string;
  fnApiKey: string;
  dbPassword: string;
  serviceToken: string;
  authorizationToken: string;
  cookieSecret: string;
  exceptionToken: string;
  rejectionToken: string;
  consoleToken: string;
}

export interface Secrets {
  readonly fixture: FixtureSecrets;
  /** Spawn environment of the target. */
  readonly env: { DB_PASSWORD: string; API_TOKEN: string; SESSION_SECRET: string };
  /** The string literals in secrets-app.js. */
  readonly source: { bearer: string; apiKey: string };
  /** Every secret by a label, for searching. */
  readonly all: ReadonlyMap<string, string>;
}

export function makeSecrets(): Secrets {
  const s = (kind: string) => `S3cr3t-${kind}-${pick(alnum, 10)}`;
  const fixture: FixtureSecrets = {
    paramPassword: s('param'),
    clientSecretValue: s('local'),
    pinCode: '4821',
    cardDigits: luhnCard(),
    shortPassword: pick(unlikely, 5),
    signingSecret: s('closure'),
    masterSecretValue: s('module'),
    tokenKey: s('mapkey'),
    mapApiKey: s('mapvalue'),
    vaultSecret: s('private'),
    accountToken: s('getter'),
    fnApiKey: s('appfn'),
    dbPassword: s('dbpass'),
    serviceToken: s('svctoken'),
    authorizationToken: s('authz'),
    cookieSecret: s('cookie'),
    exceptionToken: s('exception'),
    rejectionToken: s('rejection'),
    consoleToken: s('console'),
  };
  const env = { DB_PASSWORD: s('envdb'), API_TOKEN: s('envapi'), SESSION_SECRET: pick(unlikely, 6) };
  const text = readFileSync(secretsApp, 'utf8');
  const bearer = /const token = "Bearer (S3cr3t-srcbearer-\w+)"/.exec(text)![1]!;
  const apiKey = /apiKey: "(S3cr3t-srcapikey-\w+)"/.exec(text)![1]!;
  const all = new Map<string, string>();
  for (const [k, v] of Object.entries(fixture)) all.set(k, v);
  for (const [k, v] of Object.entries(env)) all.set(`env.${k}`, v);
  all.set('source.bearer', bearer);
  all.set('source.apiKey', apiKey);
  return { fixture, env, source: { bearer, apiKey }, all };
}
