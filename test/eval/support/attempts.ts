/**
 * The attempts, generated from templates × the places secrets-app.js keeps its secrets. `$X` stands for an
 * expression that, run by V8 in login()'s frame, gives the secret; `$G` for a guess (right or wrong).
 */
import type { Secrets } from './secrets';

export interface SecretRef {
  readonly id: string;
  /** An expression in login()'s paused frame whose value is `value`. */
  readonly expr: string;
  readonly value: string;
}

export function secretRefs(s: Secrets): SecretRef[] {
  const f = s.fixture;
  return [
    { id: 'parameter', expr: 'password', value: f.paramPassword },
    { id: 'arguments[1]', expr: 'arguments[1]', value: f.paramPassword },
    { id: 'local', expr: 'clientSecret', value: f.clientSecretValue },
    { id: 'pin', expr: 'pin', value: f.pinCode },
    { id: 'card', expr: 'cardNumber', value: f.cardDigits },
    { id: 'short password', expr: 'pwd', value: f.shortPassword },
    { id: 'closure', expr: 'sessionSecret', value: f.signingSecret },
    { id: 'module binding', expr: 'masterSecret', value: f.masterSecretValue },
    { id: 'Map key', expr: '[...sessionTokens.keys()][0]', value: f.tokenKey },
    { id: 'Map value', expr: "keyMap.get('apiKey')", value: f.mapApiKey },
    { id: 'private field getter', expr: 'vault.label', value: f.vaultSecret },
    { id: 'harmless getter', expr: 'account.summary', value: f.accountToken },
    { id: 'app function', expr: 'getKey()', value: f.fnApiKey },
    { id: 'nested config', expr: 'config.db.password', value: f.dbPassword },
    { id: 'nested array config', expr: 'config.services[2].credentials.token', value: f.serviceToken },
    { id: 'env', expr: 'process.env.DB_PASSWORD', value: s.env.DB_PASSWORD },
    { id: 'env short', expr: 'process.env.SESSION_SECRET', value: s.env.SESSION_SECRET },
    { id: 'source literal', expr: 'token', value: `Bearer ${s.source.bearer}` },
    { id: 'source literal key', expr: 'vendor.apiKey', value: s.source.apiKey },
    { id: 'authorization header', expr: 'authReq.headers.authorization', value: `Bearer ${f.authorizationToken}` },
    { id: 'cookie header', expr: 'authReq.headers.cookie', value: `sid=${f.cookieSecret}` },
  ];
}

/** Where the secret's own part starts: past `S3cr3t-<kind>-`, `Bearer ` and `sid=` nobody needs to guess. */
export function secretStart(value: string): number {
  const m = /^(?:Bearer |sid=)?(?:S3cr3t-[a-z]+-)?/.exec(value)!;
  return Math.min(m[0].length, value.length - 1);
}

export interface ProbeExpression {
  readonly expression: string;
  /** What it computes if V8 runs it as written. */
  readonly truth: unknown;
  /** The guess literal as written in the expression, replaced when two guesses are compared. */
  readonly guess?: string;
}

export interface TemplateAttempt {
  readonly kind: string;
  readonly label: string;
  /** One expression (its answer is compared with the truth) or a right and a wrong guess (compared with each other). */
  readonly probes: readonly ProbeExpression[];
  readonly truthTells: boolean;
}

const local = (template: string, value: string): unknown => {
  // eslint-disable-next-line @typescript-eslint/no-implied-eval
  return new Function('X', `return (${template.replaceAll('$X', 'X')});`)(value);
};

interface Template {
  readonly kind: string;
  readonly text: string;
  /** For a pair: the right guess and a wrong one; both are literals written into the expression. */
  readonly guesses?: (value: string, k: number) => [string, string][];
}

const quote = (s: string) => `'${s}'`;
// Wrong characters to try until the wrong guess computes something different from the right one.
const others = ['~', '0', 'z', 'A', '-'];
const wrongAt = (value: string, k: number): string[] => others.filter((c) => c !== value[k]).map((c) => value.slice(0, k) + c);

const oracleTemplates: Template[] = [
  { kind: 'oracle', text: '$X.length' },
  { kind: 'oracle', text: '$X.charCodeAt(K)' },
  { kind: 'oracle', text: '$X[K]' },
  { kind: 'oracle', text: '$X.codePointAt(K) * 3 + 1' },
  { kind: 'oracle', text: 'parseInt($X.slice(K, K + 4), 36)' },
  { kind: 'oracle', text: "[...$X].reverse().join('')" },
  { kind: 'oracle', text: '$X.indexOf($G)', guesses: (v, k) => [[quote(v.slice(k, k + 2)), quote('~~')]] },
  { kind: 'oracle', text: '$X < $G', guesses: (v, k) => wrongAt(v, k).map((w) => [quote(v.slice(0, k + 1)), quote(w)]) },
  { kind: 'oracle', text: '$X.slice(0, K + 1) === $G', guesses: (v, k) => wrongAt(v, k).map((w) => [quote(v.slice(0, k + 1)), quote(w)]) },
  { kind: 'oracle', text: '$X.localeCompare($G)', guesses: (v, k) => wrongAt(v, k).map((w) => [quote(v.slice(0, k + 1)), quote(w)]) },
  { kind: 'oracle', text: '$X.startsWith($G)', guesses: (v, k) => wrongAt(v, k).map((w) => [quote(v.slice(0, k + 1)), quote(w)]) },
  { kind: 'oracle', text: '$X.includes($G)', guesses: (v, k) => [[quote(v.slice(k, k + 2)), quote('~~')]] },
  { kind: 'oracle', text: '$G.test($X)', guesses: (v, k) => wrongAt(v, k).map((w) => [`/^${v.slice(0, k + 1)}/`, `/^${w.replace(/[~]/, 'Q')}/`]) },
  { kind: 'control flow', text: '$X[K] === $G ? 1 : 2', guesses: (v, k) => others.filter((c) => c !== v[k]).map((c) => [quote(v[k]!), quote(c)]) },
  { kind: 'control flow', text: "$X.startsWith($G) && 'yes' || 'no'", guesses: (v, k) => wrongAt(v, k).map((w) => [quote(v.slice(0, k + 1)), quote(w)]) },
  { kind: 'control flow', text: '[$X].filter(s => s.startsWith($G)).length', guesses: (v, k) => wrongAt(v, k).map((w) => [quote(v.slice(0, k + 1)), quote(w)]) },
  { kind: 'control flow', text: '[$X, $G].sort()[0] === $G', guesses: (v, k) => wrongAt(v, k).map((w) => [quote(v.slice(0, k + 1)), quote(w)]) },
];

const numericTemplates: Template[] = [
  { kind: 'oracle', text: '$X * 2' },
  { kind: 'oracle', text: 'Number($X) % 10' },
  { kind: 'oracle', text: '$X - 1000' },
  { kind: 'oracle', text: 'Number($X.slice(-4)) + 1' },
];

/** Oracles and control flow over every place a secret is kept. */
export function templateAttempts(refs: readonly SecretRef[]): TemplateAttempt[] {
  const out: TemplateAttempt[] = [];
  for (const ref of refs) {
    const k = Math.min(secretStart(ref.value) + 2, ref.value.length - 1);
    const numeric = /^\d+$/.test(ref.value);
    for (const t of [...oracleTemplates, ...(numeric ? numericTemplates : [])]) {
      const text = t.text.replaceAll('K', String(k));
      const send = (g?: string) => text.replaceAll('$X', ref.expr).replaceAll('$G', g ?? '');
      const truthOf = (g?: string) => local(text.replaceAll('$G', g ?? ''), ref.value);
      if (!t.guesses) {
        out.push({ kind: t.kind, label: `${t.text} on ${ref.id}`, probes: [{ expression: send(), truth: truthOf() }], truthTells: true });
        continue;
      }
      // The first wrong guess that computes something different from the right one.
      const pair = t.guesses(ref.value, k).find(([right, wrong]) => JSON.stringify(truthOf(right)) !== JSON.stringify(truthOf(wrong)));
      if (!pair) continue;
      const [right, wrong] = pair;
      out.push({
        kind: t.kind,
        label: `${t.text} on ${ref.id}`,
        probes: [
          { expression: send(right), truth: truthOf(right), guess: right },
          { expression: send(wrong), truth: truthOf(wrong), guess: wrong },
        ],
        truthTells: typeof truthOf(right) !== 'boolean',
      });
    }
  }
  return out;
}

/** Expressions that copy secrets under other names or into new shapes; judged by what their answers hold. */
export const aliasExpressions: readonly string[] = [
  'arguments[1]',
  '[...arguments]',
  'Array.prototype.slice.call(arguments)',
  '({ harmless: arguments[1] })',
  'vault.label',
  '({ label: vault.label })',
  'account.summary',
  '`${account.summary}`',
  'Object.getOwnPropertyDescriptor(account, "summary").get.call(account)',
  'getKey()',
  '[getKey()]',
  'String(getKey())',
  'Object.values(config)',
  'Object.values(config.db)',
  'Object.values(config.services[2])',
  'Object.values(config.services[2].credentials)',
  'Object.values(config).flatMap(v => Object.values(v))',
  'config.services.map(s => s.credentials && Object.values(s.credentials))',
  'JSON.stringify(config)',
  'JSON.stringify(config.services)',
  'JSON.stringify(authReq)',
  'JSON.stringify(authReq.headers)',
  'JSON.stringify(vendor)',
  'JSON.stringify({ ...config.db })',
  'JSON.stringify([...keyMap])',
  'JSON.stringify([...sessionTokens.keys()])',
  '({ ...config.db })',
  '({ ...authReq.headers })',
  '({ ...vendor })',
  '({ copy: { ...config.services[2] } })',
  'Object.entries(keyMap)',
  'Object.entries(config.db)',
  'Object.entries(authReq.headers)',
  '[...sessionTokens.keys()]',
  '[...sessionTokens]',
  'Array.from(keyMap)',
  'Array.from(sessionTokens.keys())',
  '[...keyMap]',
  '[...keyMap.values()]',
  'keyMap.get("api" + "Key")',
  'Object.values(authReq.headers).join(" ")',
  '[password, pin, pwd, cardNumber, clientSecret]',
  '({ p: password, s: sessionSecret, m: masterSecret })',
  '[token, vendor.apiKey]',
  'token.slice(7)',
  '[...token].reverse().join("")',
  '[...password].map(c => c.charCodeAt(0))',
  '[...getKey()].map(c => c.charCodeAt(0)).join(",")',
  'vault.label.split("")',
  'new Error(arguments[1]).message',
];

/** Global expressions for Runtime.evaluate (no frame): what the fixture exposes as globalThis.app. */
export const globalAliasExpressions: readonly string[] = [
  'app.vault.label',
  'app.account.summary',
  'app.getKey()',
  'JSON.stringify(app.config)',
  '[...app.keyMap.values()]',
  '[...app.sessionTokens.keys()]',
  'Object.values(app.config.db)',
  'app',
];

/** Spellings around `denyIdentifiers: [process.env, …]`; each answer is expanded and searched for the environment's secrets. */
export const denySpellings: readonly string[] = [
  'process.env',
  'process.env.DB_PASSWORD',
  '(0, process).env',
  '(0, process).env.API_TOKEN',
  'globalThis.process.env',
  'global.process.env.API_TOKEN',
  '(({ env }) => env)(process)',
  '({ env } = process)',
  'this.process.env',
  'Object.getOwnPropertyDescriptor(process, "env").value',
  'Reflect.get(process, "env")',
  'Reflect.get(process, "en" + "v").DB_PASSWORD',
  'Object.entries(Reflect.get(process, "env")).filter(([k]) => k.startsWith("DB"))',
  'JSON.stringify(Reflect.get(process, "env"))',
  '[process].map(p => p.env)[0]',
  '(p => p.env)(process).SESSION_SECRET',
  'process[`env`]',
  'Object.values(Reflect.get(process, "env")).filter(v => v.startsWith("S3"))',
];

/** Harmless expressions a developer types, with what V8 answers; they must keep working. */
export const ordinaryUse: readonly { expression: string; expected: unknown }[] = [
  { expression: 'user.email.split("@")[1]', expected: 'example.com' },
  { expression: 'items.map(i => i.sku)', expected: ['A-1', 'B-7'] },
  { expression: 'Object.keys(user).map(k => k.length)', expected: [4, 5, 4] },
  { expression: 'new Date(ts).getFullYear() > 2000', expected: true },
  { expression: 'sessionTokens.size', expected: 1 },
  { expression: 'req.headers.cookie === undefined', expected: true },
];

/** Breakpoint conditions, right and wrong guess, each on its own line: a pause that differs by guess is a leak. */
export function conditionPairs(refs: readonly SecretRef[]): { label: string; right: string; wrong: string }[] {
  const out = [{ label: 'password.startsWith("S3")', right: 'password.startsWith("S3")', wrong: 'password.startsWith("Zq")' }];
  const chosen = ['arguments[1]', 'private field getter', 'harmless getter', 'app function', 'Map value', 'nested array config', 'pin', 'closure', 'source literal', 'Map key'];
  for (const ref of refs.filter((r) => chosen.includes(r.id))) {
    const k = Math.min(secretStart(ref.value) + 2, ref.value.length - 1);
    const wrong = ref.value[k] === 'z' ? 'y' : 'z';
    out.push({ label: `${ref.expr}[k] === guess`, right: `${ref.expr}[${k}] === '${ref.value[k]}'`, wrong: `${ref.expr}[${k}] === '${wrong}'` });
    out.push({ label: `${ref.expr}.length === guess`, right: `${ref.expr}.length === ${ref.value.length}`, wrong: `${ref.expr}.length === ${ref.value.length + 1}` });
  }
  return out;
}

/** Logpoint messages; the logged line must not carry the secret nor what it computes. */
export function logpointProbes(refs: readonly SecretRef[]): { expression: string; truth: unknown }[] {
  const byId = new Map(refs.map((r) => [r.id, r]));
  const exprs: [string, string][] = [
    ['password.length', 'parameter'],
    ['arguments[1]', 'arguments[1]'],
    ['vault.label', 'private field getter'],
    ['account.summary', 'harmless getter'],
    ['getKey()', 'app function'],
    ['pin * 2', 'pin'],
    ["keyMap.get('apiKey')", 'Map value'],
    ['config.services[2].credentials.token', 'nested array config'],
    ['[...sessionTokens.keys()][0]', 'Map key'],
    ['pwd', 'short password'],
    ['cardNumber', 'card'],
    ['sessionSecret.length', 'closure'],
    ['arguments[1].charCodeAt(15)', 'arguments[1]'],
    ['masterSecret', 'module binding'],
  ];
  return exprs.map(([expression, id]) => {
    const ref = byId.get(id)!;
    const template = expression.replace(ref.expr, '$X');
    return { expression, truth: local(template, ref.value) };
  });
}
