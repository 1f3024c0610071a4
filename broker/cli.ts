import { parseArgs, type ParseArgsConfig } from 'node:util';
import { watch } from 'node:fs';
import { basename, dirname, resolve as resolvePath } from 'node:path';
import { loadConfig, parseConfigText, readPolicyFile } from './config/load';
import { LoupeError } from './errors';
import { mintDevToken } from './identity/devIssuer';
import { parseDuration } from './config/duration';
import { Broker } from './broker';
import { explainAccess } from './policy/access';
import { evaluations, modes, type Evaluation, type Mode } from './config/types';
import { listen } from './http/server';
import { describeVerification, downloadSession, listSecurity, listSessions, renderLocation, verifyLocation } from './audit/auditCli';
import { connectOptions, connectSettings, connectUsage, ConnectUsageError } from './connect/options';
import { runConnect } from './connect/run';

const usage = `usage:
  loupe broker --config <file.yaml>            start the broker
  loupe token --config <file.yaml> --user <id> [--groups g1,g2] [--name "Display Name"] [--ttl 8h]
                                               print an identity token from the development issuer
  loupe policy check <file.yaml>               validate a config/policy file, listing every problem
  loupe policy explain --config <file.yaml> --user <id> [--groups g1,g2] --target <name> [--mode pause|snapshot]
                       [--evaluation loupe|v8] [--at <ISO time>] [--ticket T] [--duration 30m]
                                               print the access decision and the rule that made it (exit 3 when refused)
  loupe connect <target> --reason TEXT [--mode pause|snapshot] [--duration 15m] [--port 9229] [--ticket T]
                                               a local inspector endpoint for any debugger, through the broker
  loupe audit list [--target T] [--user U] [--from ISO] [--to ISO]      sessions (auditors)
  loupe audit list --security | --grants       segments of the broker's security stream, or its grant streams (auditors)
  loupe audit download <sessionId | security-… | grants-…> [-o dir]    save a transcript and the broker's audit keys
  loupe audit verify <dir | s3://bucket/[prefix/]sessions/YYYY/MM/DD/<id>> [--keys file|url]
                                               check hash chain, seals, sequence, manifest (and S3 retention)
  loupe audit render <dir | s3://…> -o report.html [--keys file|url]
  audit list/download take --broker <url> (or LOUPE_BROKER_URL) and --token <identity token> (or LOUPE_TOKEN)
  connect takes --broker too, and LOUPE_TOKEN, --token-file or a sign-in at your identity provider
  loupe <command> --help                       that command's usage and options`;

const brokerOptions = `  --broker <url>          the broker's URL (default: $LOUPE_BROKER_URL)
  --token <token>         an identity token of an auditor (default: $LOUPE_TOKEN)`;
const keysOption = `  --keys <file | url>     the audit public keys (JWKS) to verify the seals with (default: keys.json in the
                          folder; for s3://, the keys the broker published in the bucket)`;
const helpOption = `  -h, --help              print this help`;

/** Each command's usage: `loupe <command> --help` prints it, and a mistake in its arguments points to it. */
const commandUsage = {
  broker: `usage: loupe broker --config <file.yaml> [--port <n>]

Starts the broker: the HTTP API and the attach endpoint, under the policy, identity and audit store of the
config file. Prints LOUPE_BROKER_URL=<url> on stdout once it listens, and logs JSON lines on stderr.
SIGHUP or an edit of the file reloads the policy; SIGTERM or SIGINT ends every session (targets resumed) and stops.

options:
  --config <file.yaml>    the config and policy file (required)
  --port <n>              listen on this port instead of server.port (0: a free one)
${helpOption}`,
  token: `usage: loupe token --config <file.yaml> --user <id> [--groups g1,g2] [--name "Display Name"] [--ttl 8h]

Prints an identity token from the broker's development issuer (identity.devIssuer.enabled in the config).

options:
  --config <file.yaml>    the broker's config file (required)
  --user <id>             the token's subject (required)
  --groups g1,g2          its groups (roles are given by group)
  --name "Display Name"   its display name (default: the user id)
  --ttl <duration>        how long it is valid, e.g. 30m or 8h (default: 8h)
${helpOption}`,
  policy: `usage: loupe policy check <file.yaml>
       loupe policy explain --config <file.yaml> --user <id> --target <name> [options]

  check     validate a config/policy file, listing every problem
  explain   print the access decision for a request and the rule that made it

loupe policy <check | explain> --help prints the options of each.`,
  'policy check': `usage: loupe policy check <file.yaml>

Validates a config/policy file and lists every problem with its path; exits 1 when there is one.

options:
${helpOption}`,
  'policy explain': `usage: loupe policy explain --config <file.yaml> --user <id> [--groups g1,g2] --target <name> [--mode pause|snapshot]
                            [--evaluation loupe|v8] [--at <ISO time>] [--ticket T] [--duration 30m]

Prints the access decision the policy makes for a grant request, the rule that made it and each rule's outcome;
exits 3 when the request is refused.

options:
  --config <file.yaml>    the config and policy file (required; or as the first argument)
  --user <id>             who asks (required)
  --groups g1,g2          their groups (roles are given by group)
  --target <name>         the target asked for (required)
  --mode <pause|snapshot> the mode asked for (default: snapshot)
  --evaluation <loupe|v8> the evaluation asked for: v8 is the privilege of running expressions in V8 (default: loupe)
  --at <ISO time>         when (default: now), e.g. 2026-11-28T09:30:00+01:00
  --ticket <T>            the ticket given with the request
  --duration <duration>   the grant length asked for (default: 30m)
${helpOption}`,
  audit: `usage: loupe audit list [--target T] [--user U] [--from ISO] [--to ISO] | --security | --grants
       loupe audit download <sessionId | security-… | grants-…> [-o dir]
       loupe audit verify <dir | s3://…> [--keys file|url]
       loupe audit render <dir | s3://…> -o report.html [--keys file|url]

  list       recorded sessions, security segments or grant streams (auditors)
  download   save a transcript and the broker's audit keys into a folder
  verify     check a transcript: hash chain, seals, sequence, manifest (and S3 retention)
  render     write a transcript's readable HTML report

loupe audit <command> --help prints the options of each.`,
  'audit list': `usage: loupe audit list [--target T] [--user U] [--from ISO] [--to ISO]
       loupe audit list --security | --grants

Lists the recorded sessions (for auditors), newest first; with --security the segments of the broker's
security stream, with --grants its grant streams.

options:
  --target <T>            sessions on this target
  --user <U>              sessions of this user
  --from, --to <ISO>      sessions started in this window
  --security              the security stream's segments instead of sessions
  --grants                the grant streams instead of sessions
${brokerOptions}
${helpOption}`,
  'audit download': `usage: loupe audit download <sessionId | security-… | grants-…> [-o dir]

Saves a session's transcript (or a security segment's, or a grant stream's) and the broker's audit public keys
into a folder, ready for loupe audit verify.

options:
  -o, --output <dir>      the folder (default: loupe-session-<id>, or loupe-<id>)
${brokerOptions}
${helpOption}`,
  'audit verify': `usage: loupe audit verify <dir | s3://bucket/[prefix/]sessions/YYYY/MM/DD/<id>> [--keys file|url]

Checks a transcript offline: every record's hash and link, the chunk seals, the sequence and the sealed
manifest; in S3 also that every object is under COMPLIANCE retention. Exits 1 when a check fails.

options:
${keysOption}
${helpOption}`,
  'audit render': `usage: loupe audit render <dir | s3://…> -o report.html [--keys file|url]

Verifies a transcript as loupe audit verify does and writes its readable HTML report, the result included.

options:
  -o, --output <file>     the report to write (required)
${keysOption}
${helpOption}`,
  connect: connectUsage,
} as const;
type Command = keyof typeof commandUsage;
/** How long a SIGTERM or SIGINT waits for the audit trail after the targets are resumed. */
const shutdownBoundMs = 30_000;

const auditCommands = ['list', 'download', 'verify', 'render'] as const;
const help = { help: { type: 'boolean', short: 'h' } } as const;

function fail(message: string, code = 2): never {
  process.stderr.write(`${message}\n`);
  process.exit(code);
}

/** Help asked for: on stdout, exit 0. */
function printHelp(text: string): never {
  process.stdout.write(`${text}\n`);
  process.exit(0);
}

/** Parses a command's arguments: --help prints its usage; an unknown option or a bad value exits 2, pointing to --help. */
function parseCommand<T extends ParseArgsConfig>(command: Command, config: T): ReturnType<typeof parseArgs<T>> {
  let parsed: ReturnType<typeof parseArgs<T>>;
  try {
    parsed = parseArgs(config);
  } catch (err) {
    if (!(err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS_')) throw err;
    const unknown = /^Unknown option '([^']+)'/.exec((err as Error).message);
    fail(`loupe ${command}: ${unknown ? `unknown option '${unknown[1]}'` : (err as Error).message}\nsee: loupe ${command} --help`);
  }
  if ((parsed.values as { help?: boolean }).help) printHelp(commandUsage[command]);
  return parsed;
}

function configOption(command: Command, values: { config?: string }): string {
  if (!values.config) fail(`missing --config <file.yaml>\n\n${commandUsage[command]}`);
  return values.config;
}

function loadOrExit(file: string) {
  try {
    return loadConfig(file);
  } catch (err) {
    if (err instanceof LoupeError) fail(err.message, 1);
    throw err;
  }
}

/**
 * Standard streams whose reader is gone (a log collector that died, a closed pipe): what the broker would write there
 * is dropped. Their write errors are handled here, so they never reach the process-level guard, which would report
 * each as a fault, log it (another write that fails) and record it, without end.
 */
const lostOutput = new Set<NodeJS.WriteStream>();
function dropOutputOnError(): void {
  for (const stream of [process.stdout, process.stderr]) stream.on('error', () => lostOutput.add(stream));
}

/** The broker's own log (not the audit trail): one JSON object per line on stderr. */
const log = (line: string, level: 'info' | 'warn' | 'error' = /fail|error|refused|cannot|not delivered/i.test(line) ? 'warn' : 'info'): void => {
  if (lostOutput.has(process.stderr)) return;
  process.stderr.write(JSON.stringify({ time: new Date().toISOString(), level, logger: 'loupe-broker', pid: process.pid, msg: line }) + '\n');
};

async function runBroker(args: string[]): Promise<void> {
  const { values } = parseCommand('broker', { args, options: { config: { type: 'string' }, port: { type: 'string' }, ...help }, strict: true });
  const config = loadOrExit(configOption('broker', values));
  dropOutputOnError();
  let reloadOnNotice: (source: string) => void = () => undefined;
  const broker = await Broker.create(config, { log, onPolicyReloadNotice: (source) => reloadOnNotice(source) });
  // Whatever still escapes the per-session containment is logged and recorded; the broker keeps serving.
  process.on('uncaughtException', (err) => broker.reportFault('process: uncaught exception', err));
  process.on('unhandledRejection', (reason) => broker.reportFault('process: unhandled rejection', reason));
  const port = values.port !== undefined ? Number(values.port) : config.server.port;
  const server = await listen(broker, config.server.host, port, log);
  log(`broker listening on ${server.url} (state in ${config.stateDir}; targets: ${Object.keys(config.targets).join(', ')})`);
  // One line for scripts to wait on.
  if (!lostOutput.has(process.stdout)) process.stdout.write(`LOUPE_BROKER_URL=${server.url}\n`);
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) {
      // Asked twice: the inspector resumes a target and drops its breakpoints when its connections close.
      log(`${signal} again: exiting now`);
      process.exit(1);
    }
    stopping = true;
    log(`${signal}: ending ${broker.liveSessions.length} live session(s), resuming their targets`);
    // Targets are resumed first; what still waits after the bound (a store or a disk that stopped answering) is not waited for.
    setTimeout(() => {
      log(`shutdown did not finish in ${shutdownBoundMs / 1000} s: exiting (the next start uploads what is left from the write-ahead log)`);
      process.exit(1);
    }, shutdownBoundMs).unref();
    server.close().then(
      () => process.exit(0),
      (err) => {
        log(`shutdown error: ${(err as Error).message}`);
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  reloadOnNotice = watchPolicy(broker, resolvePath(configOption('broker', values)));
}

/**
 * Reloads the policy on SIGHUP and when the file changes. An invalid file is refused: the old policy stays in
 * force, the problems are logged and recorded. Reloads run one at a time. Answers the reload another replica's
 * notice triggers (this replica reads its own file, and does not announce it again).
 */
function watchPolicy(broker: Broker, file: string): (source: string) => void {
  let chain: Promise<void> = Promise.resolve();
  let lastText: string | undefined = readPolicyFile(file);
  const reload = (why: string, announce = true) => {
    chain = chain.then(async () => {
      let text: string;
      try {
        text = readPolicyFile(file);
      } catch (err) {
        const message = (err as Error).message;
        if (/^cannot read config /.test(message)) {
          log(`policy reload (${why}): ${message}; the old policy stays in force`, 'error');
          return;
        }
        // Refused unread (too large): a refused policy, on the record like an invalid one.
        log(`policy reload refused (${why}): the old policy stays in force. ${message}`, 'error');
        await broker.reloadRefused(`${file} (${why})`, message).catch(() => undefined);
        return;
      }
      if (why === 'file changed' && text === lastText) return;
      lastText = text;
      try {
        const next = parseConfigText(text, dirname(resolvePath(file)), file);
        const result = await broker.reload(next, `${file} (${why})`, announce);
        log(
          `policy reloaded from ${file} (${why}): ${result.changed.join(', ') || 'no policy changes'}; ${result.sessionsNarrowed} live session(s) narrowed, ${result.sessionsEnded} ended${result.needRestart.length ? `; changes to ${result.needRestart.join(', ')} take effect after a restart` : ''}`,
        );
      } catch (err) {
        const message = err instanceof LoupeError ? err.message : (err as Error).message;
        log(`policy reload refused (${why}): the old policy stays in force. ${message}`, 'error');
        await broker.reloadRefused(`${file} (${why})`, message).catch(() => undefined);
      }
    });
  };
  process.on('SIGHUP', () => reload('SIGHUP'));
  // Editors often replace the file, so the directory is watched; a burst of events becomes one reload.
  let timer: NodeJS.Timeout | undefined;
  try {
    watch(dirname(file), (_event, name) => {
      if (name !== basename(file)) return;
      clearTimeout(timer);
      timer = setTimeout(() => reload('file changed'), 200);
    }).unref();
  } catch (err) {
    log(`cannot watch ${file} for changes (${(err as Error).message}); reload with SIGHUP`, 'warn');
  }
  return (source) => reload(`another replica reloaded ${source}`.slice(0, 300), false);
}

async function runToken(args: string[]): Promise<void> {
  const { values } = parseCommand('token', {
    args,
    options: { config: { type: 'string' }, user: { type: 'string' }, groups: { type: 'string' }, name: { type: 'string' }, ttl: { type: 'string' }, ...help },
    strict: true,
  });
  const config = loadOrExit(configOption('token', values));
  if (!values.user) fail('missing --user <id>');
  if (!config.identity.devIssuer.enabled) fail('the development issuer is disabled in this config (identity.devIssuer.enabled: false)', 1);
  const ttlSeconds = values.ttl ? parseDuration(values.ttl) : undefined;
  if (values.ttl && ttlSeconds === undefined) fail(`--ttl: expected a duration like "8h", got "${values.ttl}"`);
  const groups = (values.groups ?? '')
    .split(',')
    .map((g) => g.trim())
    .filter(Boolean);
  process.stdout.write(`${await mintDevToken(config, { user: values.user, groups, ...(values.name ? { name: values.name } : {}), ...(ttlSeconds ? { ttlSeconds } : {}) })}\n`);
}

function runPolicy(args: string[]): void {
  const [sub, ...rest] = args;
  if (sub === undefined) fail(`loupe policy: missing command (check or explain)\n\n${commandUsage.policy}`);
  if (sub === '--help' || sub === '-h' || sub === 'help') printHelp(commandUsage.policy);
  if (sub === 'check') {
    const { positionals } = parseCommand('policy check', { args: rest, allowPositionals: true, options: { ...help }, strict: true });
    const file = positionals[0] ?? fail(`missing <file.yaml>\n\n${commandUsage['policy check']}`);
    const config = loadOrExit(file);
    process.stdout.write(`${file}: valid (${Object.keys(config.targets).length} target(s), ${Object.keys(config.roles).length} role(s))\n`);
    return;
  }
  if (sub !== 'explain') fail(`${commandUsage.policy}\n\nloupe policy: unknown command '${sub}'`);
  const { values, positionals } = parseCommand('policy explain', {
    args: rest,
    allowPositionals: true,
    options: {
      config: { type: 'string' },
      user: { type: 'string' },
      groups: { type: 'string' },
      target: { type: 'string' },
      mode: { type: 'string' },
      evaluation: { type: 'string' },
      at: { type: 'string' },
      ticket: { type: 'string' },
      duration: { type: 'string' },
      ...help,
    },
    strict: true,
  });
  const config = loadOrExit(values.config ?? positionals[0] ?? fail(`missing --config <file.yaml>\n\n${commandUsage['policy explain']}`));
  const user = values.user ?? fail('missing --user <id>');
  const target = values.target ?? fail('missing --target <name>');
  const mode = values.mode ?? 'snapshot';
  if (!modes.includes(mode as Mode)) fail(`--mode: expected one of ${modes.join(', ')}, got "${mode}"`);
  const evaluation = values.evaluation ?? 'loupe';
  if (!evaluations.includes(evaluation as Evaluation)) fail(`--evaluation: expected one of ${evaluations.join(', ')}, got "${evaluation}"`);
  const at = values.at ? new Date(values.at) : new Date();
  if (Number.isNaN(at.getTime())) fail(`--at: expected a time like 2026-11-28T09:30:00+01:00, got "${values.at}"`);
  const durationSeconds = values.duration ? (parseDuration(values.duration) ?? fail(`--duration: expected a duration like "30m", got "${values.duration}"`)) : 1800;
  const groups = (values.groups ?? '')
    .split(',')
    .map((g) => g.trim())
    .filter(Boolean);
  const { decision, roles, trace } = explainAccess(
    config,
    { sub: user, name: user, groups, issuer: 'explain' },
    { target, mode: mode as Mode, ...(evaluation === 'v8' ? { evaluation: 'v8' as const } : {}), durationSeconds, reason: 'explain', ...(values.ticket ? { ticket: values.ticket } : {}) },
    at,
  );
  const lines = [
    `${user} (groups: ${groups.join(', ') || 'none'}; roles: ${roles.join(', ') || 'none'}) asking for ${mode}${evaluation === 'v8' ? ' with V8 evaluation' : ''} on ${target} at ${at.toISOString()}`,
    decision.allowed ? `ALLOWED by ${decision.rule}: up to ${decision.durationSeconds} s${decision.capped ? ' (capped)' : ''}` : `REFUSED by ${decision.rule}: ${decision.message}`,
    ...trace.map((t) => `  ${t.rule}: ${t.outcome}${t.message ? ` (${t.message})` : ''}`),
  ];
  process.stdout.write(lines.join('\n') + '\n');
  if (!decision.allowed) process.exit(3);
}

async function runAudit(args: string[]): Promise<void> {
  const [sub, ...rest] = args;
  if (sub === undefined) fail(`loupe audit: missing command (${auditCommands.join(', ')})\n\n${commandUsage.audit}`);
  if (sub === '--help' || sub === '-h' || sub === 'help') printHelp(commandUsage.audit);
  if (!(auditCommands as readonly string[]).includes(sub)) fail(`${commandUsage.audit}\n\nloupe audit: unknown command '${sub}'`);
  const command = `audit ${sub}` as `audit ${(typeof auditCommands)[number]}`;
  const { values, positionals } = parseCommand(command, {
    args: rest,
    allowPositionals: true,
    options: {
      broker: { type: 'string' },
      token: { type: 'string' },
      target: { type: 'string' },
      user: { type: 'string' },
      from: { type: 'string' },
      to: { type: 'string' },
      security: { type: 'boolean' },
      grants: { type: 'boolean' },
      output: { type: 'string', short: 'o' },
      keys: { type: 'string' },
      ...help,
    },
    strict: true,
  });
  const client = () => {
    const broker = values.broker ?? process.env.LOUPE_BROKER_URL;
    const token = values.token ?? process.env.LOUPE_TOKEN;
    if (!broker) fail('missing --broker <url> (or LOUPE_BROKER_URL)');
    if (!token) fail('missing --token <identity token> (or LOUPE_TOKEN)');
    return { broker, token };
  };
  try {
    if (sub === 'list' && (values.security || values.grants)) process.stdout.write(await listSecurity(client(), values.grants ? 'grants' : 'security'));
    else if (sub === 'list') process.stdout.write(await listSessions(client(), { target: values.target, user: values.user, from: values.from, to: values.to }));
    else if (sub === 'download') {
      const id = positionals[0] ?? fail(`missing <sessionId>\n\n${commandUsage[command]}`);
      const saved = await downloadSession(client(), id, values.output ?? `${/^(security|grants)-/.test(id) ? 'loupe-' : 'loupe-session-'}${id}`);
      process.stdout.write(`saved ${saved.transcript}\nsaved ${saved.keys}\nverify with: loupe audit verify ${saved.dir}\n`);
    } else if (sub === 'verify') {
      const location = positionals[0] ?? fail(`missing <dir | s3://…>\n\n${commandUsage[command]}`);
      const { result, target } = await verifyLocation(location, values.keys);
      process.stdout.write(describeVerification(result, target));
      if (!result.ok) process.exit(1);
    } else if (sub === 'render') {
      const location = positionals[0] ?? fail(`missing <dir | s3://…>\n\n${commandUsage[command]}`);
      const rendered = await renderLocation(location, values.output ?? fail(`missing -o report.html\n\n${commandUsage[command]}`), values.keys);
      process.stdout.write(`wrote ${rendered.output}${rendered.ok ? '' : ' (verification FAILED: see the report)'}\n`);
    }
  } catch (err) {
    fail(`loupe audit ${sub}: ${(err as Error).message}`, 1);
  }
}

async function runConnectCommand(args: string[]): Promise<void> {
  const { values, positionals } = parseCommand('connect', { args, allowPositionals: true, options: { ...connectOptions, ...help }, strict: true });
  let settings;
  try {
    settings = connectSettings(values, positionals, process.env);
  } catch (err) {
    if (err instanceof ConnectUsageError) fail(`loupe connect: ${err.message}\nsee: loupe connect --help`);
    throw err;
  }
  const stop = new AbortController();
  const onSignal = () => stop.abort();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const status = await runConnect(settings, { stdout: (line) => process.stdout.write(`${line}\n`), stderr: (line) => process.stderr.write(`${line}\n`), stopSignal: stop.signal });
  process.exit(status);
}

/** `loupe help [command…]`: the usage of a command, or the overview. */
function runHelp(words: string[]): never {
  if (words.length === 0) printHelp(usage);
  const command = words.join(' ');
  if (Object.hasOwn(commandUsage, command)) printHelp(commandUsage[command as Command]);
  fail(`${usage}\n\nloupe help: unknown command '${command}'`);
}

async function main(): Promise<void> {
  const [command, ...rest] = process.argv.slice(2);
  try {
    if (command === 'broker') await runBroker(rest);
    else if (command === 'token') await runToken(rest);
    else if (command === 'policy') runPolicy(rest);
    else if (command === 'audit') await runAudit(rest);
    else if (command === 'connect') await runConnectCommand(rest);
    else if (command === undefined || command === '--help' || command === '-h') printHelp(usage);
    else if (command === 'help') runHelp(rest);
    else fail(`${usage}\n\nloupe: unknown command '${command}'`); // usage first, as it always was
  } catch (err) {
    if (err instanceof LoupeError) fail(err.message, 1);
    throw err;
  }
}

void main().catch((err: unknown) => fail(`loupe: ${(err as Error)?.stack ?? String(err)}`, 1));
