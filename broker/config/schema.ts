import { z } from 'zod';
import { alertingSchema } from './schema/alerts';
import { bool, duration, fieldKinds, int, mapping, oneOf, section, text, textList, unwrap } from './schema/fields';
import { targetsSchema } from './schema/target';

/**
 * The policy file, defined once: the loader validates with it, the TypeScript types derive from it, and
 * `loupe.schema.json` (editor completion and validation) is generated from it by `npm run schema`.
 * Checks that relate fields to each other (role references, one bound longer than another) are the loader's
 * second pass (./crossCheck.ts).
 */

const serverSchema = mapping({
  host: text().prefault('127.0.0.1').describe('The address the broker listens on.'),
  port: int(0, 65535).prefault(7070).describe('The port the broker listens on (0: any free port).'),
  publicUrl: text()
    .regex(/^https?:\/\/[^/]+\/?$/, { error: 'expected an http(s) origin like "https://loupe.example.com"' })
    .transform((url) => url.replace(/\/$/, ''))
    .optional()
    .describe('The origin clients reach the broker at, when it is behind a proxy, like "https://loupe.example.com".'),
}).describe('Where the broker listens.');

export const limitsSchema = mapping({
  maxFrameBytes: int(1024, 64 << 20)
    .prefault(1 << 20)
    .describe('The largest frame a client may send.'),
  evaluateTimeoutMs: int(10, 30000).prefault(1000).describe('How long an evaluation may run in the target.'),
  conditionTimeoutMs: int(5, 1000).prefault(50).describe('How long a breakpoint condition may run in the target.'),
  clientBufferBytes: int(1 << 20, 1 << 30)
    .prefault(16 << 20)
    .describe('What may wait unsent to a slow client: past it, events are shed and its frames are not read until it drains.'),
  conditionBudgetMsPerSecond: int(1, 1000).prefault(100).describe("Pause time per second that one breakpoint's unseen pauses (conditions, logpoints) may cost the target."),
  clientPingIntervalMs: int(50, 60000).prefault(5000).describe('How often the broker pings each client (WebSocket ping; never the target, whose inspector drops on a ping).'),
  clientUnresponsiveMs: int(100, 600000).prefault(10000).describe('A client heard nothing from (no pong, no frame) for this long is gone: its session ends as client_unresponsive.'),
  targetResponseSeconds: int(1, 600).prefault(10).describe('A request to the target unanswered this long ends the session (target_unresponsive).'),
  maxTargetFrameBytes: int(64 << 10, 256 << 20)
    .prefault(2 << 20)
    .describe('A larger frame from the target is not parsed: a response becomes an error, an event is dropped (both recorded).'),
}).describe('Bounds on sessions: frame sizes, timeouts, heartbeats.');

export const asymmetricAlgorithm = /^(RS|PS|ES)(256|384|512)$|^EdDSA$|^Ed25519$/;

export const issuerSchema = mapping({
  issuer: text().describe('The issuer (`iss`) of the identity tokens, as the IdP names itself.'),
  audience: text().optional().describe('The audience (`aud`) the tokens must carry; default identity.audience.'),
  discovery: bool()
    .optional()
    .describe('Keys from `<issuer>/.well-known/openid-configuration` → jwks_uri (the default when no other key source is set); exactly one of discovery, jwksUrl and publicKey(File).'),
  jwksUrl: text()
    .regex(/^https?:\/\//, { error: 'expected an http(s) URL' })
    .optional()
    .describe('Remote key set at a fixed URL.'),
  jwksCacheMaxAge: duration()
    .optional()
    .describe('How long a fetched key set is trusted before it is fetched again: how soon a key the IdP removed stops verifying (default 10m; discovery or jwksUrl only).'),
  publicKey: text().optional().describe('PEM (SPKI) public key.'),
  publicKeyFile: text().optional().describe('A file holding the PEM (SPKI) public key, relative to the working directory.'),
  algorithms: textList()
    .superRefine((list, ctx) => {
      // Pinning asymmetric algorithms is what stops `alg: none` and HMAC key confusion.
      list.forEach((alg, i) => {
        if (!asymmetricAlgorithm.test(alg)) ctx.issues.push({ code: 'custom', message: `"${alg}" is not an asymmetric JWS algorithm (allowed: RS*, PS*, ES*, EdDSA)`, input: alg, path: [i] });
      });
    })
    .prefault(['RS256', 'ES256', 'EdDSA'])
    .describe('The JWS algorithms accepted (asymmetric only).'),
  groupsClaim: text().prefault('groups').describe('Claim holding the groups; a dotted path (`realm_access.roles`) reaches into nested objects.'),
  nameClaim: text().prefault('name').describe('Claim holding the display name.'),
});

export const devIssuerSchema = mapping({
  enabled: bool().prefault(true).describe('Whether `loupe token` tokens are accepted.'),
}).describe('The built-in development issuer (`loupe token`): on by default so the demo runs without an IdP.');

const identitySchema = mapping({
  audience: text().prefault('loupe').describe('The audience identity tokens must carry (an issuer may set its own).'),
  devIssuer: section(devIssuerSchema),
  issuers: z.array(issuerSchema, { error: 'expected a list' }).prefault([]).describe('OpenID Connect issuers whose identity tokens the broker accepts.'),
}).describe('Who signs the identity tokens the broker accepts.');

export const roleSchema = mapping(
  {
    groups: textList().prefault([]).describe('IdP groups whose members hold the role.'),
    users: textList().prefault([]).describe("Users (the token's `sub`) who hold the role."),
  },
  'expected a mapping with groups and/or users',
);

const s3Schema = mapping({
  bucket: text().describe('The bucket, with Object Lock enabled.'),
  prefix: z
    .string({ error: 'expected a non-empty string' })
    .regex(/^$|\/$/, { error: 'expected a prefix ending in "/"' })
    .prefault('')
    .describe('A key prefix ending in "/".'),
  endpoint: text()
    .regex(/^https?:\/\//, { error: 'expected an http(s) URL' })
    .optional()
    .describe('An S3-compatible endpoint (MinIO, Ceph RGW); default AWS.'),
  region: text().optional().describe("The bucket's region."),
  forcePathStyle: bool().optional().describe('Path-style URLs (most S3-compatible stores need them).'),
}).describe('The S3 bucket (store: s3).');

export const auditSchema = mapping({
  store: oneOf(['local', 's3'], 'expected "local" or "s3"').prefault('local').describe('Where session records go: local (a directory; development) or s3 (with Object Lock; production).'),
  dir: text().optional().describe("The local store's directory (default <stateDir>/audit-store)."),
  s3: s3Schema.optional(),
  retentionDays: int(1, 36500).prefault(30).describe('How long session records are kept (S3 Object Lock retain-until); a target may set its own.'),
  failClosedAfter: duration().prefault('30s').describe('Records that cannot be stored for this long stop new sessions (the broker fails closed).'),
  walStallAfter: duration().prefault('5s').describe('A write-ahead log commit not done in this long (a disk that stopped answering) fails the broker closed until the disk answers again.'),
  uploadInterval: duration().prefault('1s').describe('How often records are uploaded: a session costs one upload per interval, plus one per chunk filled meanwhile.'),
  chunkMaxEvents: int(1, 100000).prefault(5000).describe('At most this many events per uploaded chunk; a full chunk is uploaded at once.'),
  chunkMaxBytes: int(1024, 64 << 20)
    .prefault(1 << 20)
    .describe('At most this many bytes of events per uploaded chunk (a single larger event goes alone); a full chunk is uploaded at once.'),
  maxReportBytes: int(1 << 20, 1 << 30)
    .prefault(128 << 20)
    .describe(
      "The largest transcript whose report the broker renders (GET …/report): it holds a transcript whole in memory to verify and render it, about 3 bytes of heap per byte. A larger one is refused (report_too_large); its transcript still downloads, and `loupe audit render` renders it on the auditor's machine.",
    ),
}).describe('Where the audit trail goes and how long it is kept.');

const postgresStateSchema = mapping({
  url: text()
    .regex(/^postgres(ql)?:\/\//, { error: 'expected a PostgreSQL URL like "postgres://loupe@db:5432/loupe" (usually ${DATABASE_URL})' })
    .describe('The database every replica shares, as a connection URL (`${DATABASE_URL}`); its password, if any, belongs in the environment, not the file.'),
  schema: text()
    .regex(/^[A-Za-z_][A-Za-z0-9_]{0,62}$/, { error: 'expected a plain SQL identifier like "loupe"' })
    .prefault('loupe')
    .describe("The schema holding Loupe's tables (created, and migrated, at start)."),
}).describe('Shared state on PostgreSQL, for several broker replicas behind one load balancer.');

export const stateSchema = mapping({
  postgres: postgresStateSchema.optional(),
  replica: text()
    .regex(/^[\w.:-]{1,100}$/, { error: 'expected a name of letters, digits, ".", ":", "_" or "-"' })
    .optional()
    .describe("This replica's name in the registry of live sessions (default: the host name and process id)."),
  sessionLease: duration()
    .prefault('15s')
    .describe(
      "How long a replica's hold on a live session lasts unrenewed (renewed every third of it): a replica that dies frees its sessions' grants after this long plus outageGrace (a replica cut off from the database may run its sessions that long).",
    ),
  outageGrace: duration()
    .prefault('60s')
    .describe('How long live sessions continue while the state database cannot be reached; then they end (target resumed, breakpoints removed). New grants and attaches are refused at once.'),
  noticePoll: duration().prefault('2s').describe('How often a replica also polls for revocations and other notices, in case its PostgreSQL notification channel dropped.'),
}).describe('Where grants, tickets, access requests, alert state and the registry of live sessions are kept: the state directory (one broker; the default) or PostgreSQL (several replicas).');

export const configShape = {
  server: section(serverSchema),
  stateDir: text().prefault('.loupe').describe("The broker's own state (keys, grants, write-ahead log), relative to the policy file."),
  limits: section(limitsSchema),
  identity: section(identitySchema),
  roles: z.record(z.string(), roleSchema, { error: 'expected a mapping' }).nullish().describe('Roles by name: who holds each (IdP groups and/or users).'),
  admins: textList().prefault([]).describe('Roles that administer the broker (revoke any grant, see everything).'),
  auditors: textList().prefault([]).describe('Roles that read the audit trail.'),
  audit: section(auditSchema),
  state: section(stateSchema),
  alerting: section(alertingSchema),
  targets: targetsSchema,
};

export const configSchema = mapping(configShape).describe('Loupe broker policy: who may debug which production service, how, and what is recorded.');

/** The policy file as validated, before the second pass and before paths are resolved. */
export type ConfigInput = z.output<typeof configSchema>;

/** An environment reference `${VAR}` or `${VAR:-default}`: allowed for any value in the file, replaced at load. */
const envPattern = '\\$\\{[A-Za-z_][A-Za-z0-9_]*(:-[^}]*)?\\}';

type JsonNode = Record<string, unknown>;

const isScalar = (node: JsonNode) =>
  'const' in node || 'enum' in node || (typeof node.type === 'string' && !['object', 'array', 'null'].includes(node.type) && (node.type !== 'string' || 'pattern' in node));
const envRef = { $ref: '#/definitions/env' };

/**
 * Lets every scalar also be a `${VAR}` reference, which the loader substitutes before it validates (plain strings
 * already are); hoists a section's description out of its `anyOf` so editors show it on the key.
 */
function allowEnv(node: JsonNode): JsonNode {
  const out: JsonNode = { ...node };
  if (out.properties) out.properties = Object.fromEntries(Object.entries(out.properties as Record<string, JsonNode>).map(([k, v]) => [k, allowEnv(v)]));
  for (const key of ['additionalProperties', 'items'] as const) if (out[key] && typeof out[key] === 'object') out[key] = allowEnv(out[key] as JsonNode);
  if (Array.isArray(out.anyOf)) {
    const options = out.anyOf as JsonNode[];
    const scalar = options.some(isScalar);
    out.anyOf = [...options.map((o) => (isScalar(o) ? o : allowEnv(o))), ...(scalar ? [envRef] : [])];
    const described = options.find((o) => typeof o.description === 'string');
    if (out.description === undefined && described) out.description = described.description;
    return out;
  }
  if (!isScalar(out)) return out;
  const { title, description, default: fallback, ...rest } = out;
  return { ...(title ? { title } : {}), ...(description ? { description } : {}), ...(fallback !== undefined ? { default: fallback } : {}), anyOf: [rest, envRef] };
}

/** The JSON Schema of the policy file, for editors (`# yaml-language-server: $schema=...`). */
export function configJsonSchema(): JsonNode {
  const generated = z.toJSONSchema(configSchema, { io: 'input', target: 'draft-7', unrepresentable: 'any' }) as JsonNode;
  const { $schema, ...body } = generated;
  return {
    $schema,
    title: 'Loupe policy',
    ...allowEnv(body),
    definitions: { env: { type: 'string', pattern: envPattern, description: 'A value from the environment: ${VAR}, or ${VAR:-default} when it is unset.' } },
  };
}

/** `loupe.schema.json` as committed: `npm run schema` writes it, a test checks it is current. */
export const configJsonSchemaText = (): string => `${JSON.stringify(configJsonSchema(), null, 2)}\n`;

export interface ConfigField {
  /** Dotted path; `<name>` for a key of your choosing, `[]` for a list item. */
  readonly path: string;
  readonly type: string;
  /** The default as it would be written in the file, or undefined when there is none. */
  readonly default: unknown;
  /** Must be given (no default, not optional). */
  readonly required: boolean;
  readonly description: string;
}

/** Every field of the policy file, in file order: the config reference in the docs is generated from this. */
export function listConfigFields(): ConfigField[] {
  const fields: ConfigField[] = [];
  const walk = (schema: z.ZodType, path: string, description: string | undefined, fallback: unknown) => {
    const inner = unwrap(schema);
    const def = inner.def as unknown as Record<string, unknown> & { type: string };
    const about = description ?? inner.description ?? '';
    const required = fallback === undefined && !schema.safeParse(undefined).success && (schema as { _zod: { optin?: string } })._zod.optin === undefined;
    if (def.type === 'object') {
      if (path) fields.push({ path, type: 'mapping', default: undefined, required, description: about });
      for (const [key, child] of Object.entries(def.shape as Record<string, z.ZodType>)) {
        if (child.def.type === 'never' || (child.def.type === 'optional' && (child.def as unknown as { innerType: z.ZodType }).innerType.def.type === 'never')) continue;
        walk(child, path ? `${path}.${key}` : key, child.description, defaultOf(child));
      }
    } else if (def.type === 'record') {
      fields.push({ path, type: 'mapping', default: undefined, required, description: about });
      walk(def.valueType as z.ZodType, `${path}.<name>`, undefined, undefined);
    } else if (def.type === 'array' && unwrap(def.element as z.ZodType).def.type === 'object') {
      fields.push({ path, type: 'list', default: fallback, required, description: about });
      walk(def.element as z.ZodType, `${path}[]`, undefined, undefined);
    } else {
      fields.push({ path, type: kindOf(schema) ?? def.type, default: fallback, required, description: about });
    }
  };
  walk(configSchema, '', undefined, undefined);
  return fields;
}

/** The prefault (the default as written in the file) under optional wrappers, if any. */
function defaultOf(schema: z.ZodType): unknown {
  let current = schema as z.ZodType & { def: Record<string, unknown> };
  while (current) {
    if (current.def.type === 'prefault' || current.def.type === 'default') return current.def.defaultValue;
    current = current.def.innerType as typeof current;
  }
  return undefined;
}

function kindOf(schema: z.ZodType): string | undefined {
  let current = schema as z.ZodType & { def: Record<string, unknown> };
  while (current) {
    const found = fieldKinds.get(current);
    if (found) return found.kind;
    if (current.def.type === 'pipe') current = current.def.in as typeof current;
    else if (current.def.type === 'array') return `list of ${kindOf(current.def.element as z.ZodType)}`;
    else if (current.def.type === 'union') return (current.def.options as z.ZodType[]).map((o) => kindOf(o) ?? o.def.type).join(' or ');
    else current = current.def.innerType as typeof current;
  }
  return undefined;
}
