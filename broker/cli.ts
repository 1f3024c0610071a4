import { parseArgs } from 'node:util';
import { loadConfig } from './config/load';
import { LoupeError } from './errors';
import { mintDevToken } from './identity/devIssuer';
import { parseDuration } from './config/duration';
import { Broker } from './broker';
import { listen } from './http/server';

const usage = `usage:
  loupe broker --config <file.yaml>            start the broker
  loupe token --config <file.yaml> --user <id> [--groups g1,g2] [--name "Display Name"] [--ttl 8h]
                                               print an identity token from the development issuer
  loupe policy check <file.yaml>               validate a config/policy file, listing every problem`;

function fail(message: string, code = 2): never {
  process.stderr.write(`${message}\n`);
  process.exit(code);
}

function configOption(values: { config?: string }): string {
  if (!values.config) fail(`missing --config <file.yaml>\n\n${usage}`);
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

const log = (line: string) => process.stderr.write(`${new Date().toISOString()} loupe: ${line}\n`);

async function runBroker(args: string[]): Promise<void> {
  const { values } = parseArgs({ args, options: { config: { type: 'string' }, port: { type: 'string' } }, strict: true });
  const config = loadOrExit(configOption(values));
  const broker = await Broker.create(config);
  const port = values.port !== undefined ? Number(values.port) : config.server.port;
  const server = await listen(broker, config.server.host, port, log);
  log(`broker listening on ${server.url} (state in ${config.stateDir}; targets: ${Object.keys(config.targets).join(', ')})`);
  // One line for scripts to wait on.
  process.stdout.write(`LOUPE_BROKER_URL=${server.url}\n`);
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log(`${signal}: ending ${broker.liveSessions.length} live session(s), resuming their targets`);
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
}

async function runToken(args: string[]): Promise<void> {
  const { values } = parseArgs({ args, options: { config: { type: 'string' }, user: { type: 'string' }, groups: { type: 'string' }, name: { type: 'string' }, ttl: { type: 'string' } }, strict: true });
  const config = loadOrExit(configOption(values));
  if (!values.user) fail('missing --user <id>');
  if (!config.identity.devIssuer.enabled) fail('the development issuer is disabled in this config (identity.devIssuer.enabled: false)', 1);
  const ttlSeconds = values.ttl ? parseDuration(values.ttl) : undefined;
  if (values.ttl && ttlSeconds === undefined) fail(`--ttl: expected a duration like "8h", got "${values.ttl}"`);
  const groups = (values.groups ?? '').split(',').map((g) => g.trim()).filter(Boolean);
  process.stdout.write(`${await mintDevToken(config, { user: values.user, groups, ...(values.name ? { name: values.name } : {}), ...(ttlSeconds ? { ttlSeconds } : {}) })}\n`);
}

function runPolicy(args: string[]): void {
  const [sub, file] = args;
  if (sub !== 'check' || !file) fail(usage);
  const config = loadOrExit(file);
  process.stdout.write(`${file}: valid (${Object.keys(config.targets).length} target(s), ${Object.keys(config.roles).length} role(s))\n`);
}

async function main(): Promise<void> {
  const [command, ...rest] = process.argv.slice(2);
  try {
    if (command === 'broker') await runBroker(rest);
    else if (command === 'token') await runToken(rest);
    else if (command === 'policy') runPolicy(rest);
    else fail(usage, command === undefined || command === 'help' || command === '--help' ? 0 : 2);
  } catch (err) {
    if (err instanceof LoupeError) fail(err.message, 1);
    if ((err as { code?: string }).code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' || (err as { code?: string }).code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE') fail(`${(err as Error).message}\n\n${usage}`);
    throw err;
  }
}

void main().catch((err: unknown) => fail(`loupe: ${(err as Error)?.stack ?? String(err)}`, 1));
