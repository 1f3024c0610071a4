import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from 'pg';

/**
 * The PostgreSQL server the multi-replica tests run against (started by scripts/postgres/start-postgres.sh), from
 * DATABASE_URL. Throws when it is absent.
 */
export function databaseUrl(): string {
  const url = process.env.DATABASE_URL;
  if (!url) {
    throw new Error(
      'the multi-replica tests need a real PostgreSQL, but DATABASE_URL is not set: run them through `npm test`, which starts it ' +
        '(scripts/postgres/start-postgres.sh), or start it yourself: set -a; eval "$(bash scripts/postgres/start-postgres.sh)"; set +a',
    );
  }
  return url;
}

/** A database name unique across runs (lower case, digits, underscores; under PostgreSQL's 63 bytes). */
export function uniqueDatabaseName(label = 'loupe_test'): string {
  return `${label.replace(/[^a-z0-9_]/g, '_')}_${Date.now().toString(36)}_${randomBytes(4).toString('hex')}`.slice(0, 63);
}

/**
 * Creates an empty database on the server of `serverUrl` (default DATABASE_URL) and returns its URL, so each test
 * file starts from nothing while the server is shared. The databases are left behind: the server is disposable
 * (scripts/postgres/stop-postgres.sh --purge).
 */
export async function freshDatabase(label = 'loupe_test', serverUrl = databaseUrl()): Promise<string> {
  const name = uniqueDatabaseName(label);
  const client = new Client({ connectionString: serverUrl });
  await client.connect();
  try {
    await client.query(`CREATE DATABASE ${name}`);
  } finally {
    await client.end();
  }
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  return url.toString();
}

const scripts = join(__dirname, '..', '..', 'scripts', 'postgres');

export interface OwnPostgres {
  /** The server's data directory (its cluster, socket, logs). */
  readonly dir: string;
  /** The server's DATABASE_URL; the same across stop() and start(). */
  readonly url: string;
  /** Stops the server (pg_ctl stop -m fast: every connection is closed); its data stays. */
  stop(): void;
  /** Starts it again on the same port with its data. */
  start(): void;
  /** Stops the server and deletes its directory. */
  purge(): void;
}

function runScript(script: string, args: string[]): { stdout: string } {
  const result = spawnSync('bash', [join(scripts, script), ...args], { encoding: 'utf8', env: { ...process.env, PG_PORT: 'auto' }, timeout: 300_000 });
  if (result.status !== 0) throw new Error(`${script} ${args.join(' ')} failed (exit ${result.status ?? result.signal}):\n${result.stderr}`);
  return { stdout: result.stdout };
}

/**
 * A PostgreSQL server of the caller's own, for tests that stop and restart the database: a fresh directory and a
 * free port, so the shared server, another run, or a leftover of an earlier run never collides with it.
 */
export function startOwnPostgres(label: string): OwnPostgres {
  // start-postgres.sh hands the directory to the postgres user when the tests run as root.
  const dir = mkdtempSync(join(tmpdir(), `loupe-pg-${label}-`));
  let url: string;
  try {
    url = /^DATABASE_URL=(\S+)$/m.exec(runScript('start-postgres.sh', [dir]).stdout)?.[1] ?? '';
    if (!url) throw new Error(`start-postgres.sh ${dir} printed no DATABASE_URL`);
  } catch (err) {
    spawnSync('bash', [join(scripts, 'stop-postgres.sh'), dir, '--purge'], { encoding: 'utf8' });
    throw err;
  }
  return {
    dir,
    url,
    stop: () => void runScript('stop-postgres.sh', [dir]),
    start: () => void runScript('start-postgres.sh', [dir]),
    purge: () => void spawnSync('bash', [join(scripts, 'stop-postgres.sh'), dir, '--purge'], { encoding: 'utf8' }),
  };
}
