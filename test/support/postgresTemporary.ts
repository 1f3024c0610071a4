import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * TEMPORARY, until scripts/postgres/start-postgres.sh lands: the PostgreSQL the state tests run against.
 * DATABASE_URL from the environment when set (what the project's script prints); otherwise a PostgreSQL 15 of
 * this module's own, in /tmp/loupe-pg-state, started once on a free loopback port and reused by later runs.
 */
export async function databaseUrl(): Promise<string> {
  if (process.env.DATABASE_URL) return process.env.DATABASE_URL;
  const dir = '/tmp/loupe-pg-state';
  const data = join(dir, 'data');
  const portFile = join(dir, 'port');
  const bin = '/usr/lib/postgresql/15/bin';
  const asPostgres = (cmd: string, args: string[]) => {
    const root = process.getuid?.() === 0;
    const result = spawnSync(root ? 'runuser' : cmd, root ? ['-u', 'postgres', '--', cmd, ...args] : args, { encoding: 'utf8', timeout: 60_000 });
    if (result.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${result.stderr || result.stdout}`);
    return result.stdout;
  };
  if (existsSync(portFile)) {
    const port = readFileSync(portFile, 'utf8').trim();
    const ready = spawnSync(join(bin, 'pg_isready'), ['-h', '127.0.0.1', '-p', port], { encoding: 'utf8' });
    if (ready.status === 0) return `postgres://postgres@127.0.0.1:${port}/postgres`;
  }
  mkdirSync(dir, { recursive: true });
  if (process.getuid?.() === 0) execFileSync('chown', ['postgres:postgres', dir]);
  if (!existsSync(join(data, 'PG_VERSION'))) asPostgres(join(bin, 'initdb'), ['-D', data, '-A', 'trust', '-U', 'postgres', '--no-sync']);
  const port = String(await freePort());
  asPostgres(join(bin, 'pg_ctl'), ['-D', data, '-l', join(dir, 'log'), '-w', '-o', `-h 127.0.0.1 -p ${port} -k ${dir} -c fsync=off`, 'start']);
  writeFileSync(portFile, port);
  return `postgres://postgres@127.0.0.1:${port}/postgres`;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

export interface OwnPostgres {
  readonly url: string;
  /** Stops the server at once (as a crash or a network cut looks to its clients). */
  stop(): void;
  /** Starts it again on the same port and data. */
  start(): void;
  /** Stops it and deletes its directory. */
  purge(): void;
}

/** TEMPORARY (see databaseUrl): a PostgreSQL of the caller's own, for tests that stop and restart their database. */
export async function startOwnPostgres(label: string): Promise<OwnPostgres> {
  const bin = '/usr/lib/postgresql/15/bin';
  const dir = mkdtempSync(join(tmpdir(), `loupe-pg-${label}-`));
  const data = join(dir, 'data');
  const run = (cmd: string, args: string[]) => {
    const root = process.getuid?.() === 0;
    const result = spawnSync(root ? 'runuser' : cmd, root ? ['-u', 'postgres', '--', cmd, ...args] : args, { encoding: 'utf8', timeout: 60_000 });
    if (result.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${result.stderr || result.stdout}`);
  };
  if (process.getuid?.() === 0) execFileSync('chown', ['postgres:postgres', dir]);
  run(join(bin, 'initdb'), ['-D', data, '-A', 'trust', '-U', 'postgres', '--no-sync']);
  const port = await freePort();
  const start = () => run(join(bin, 'pg_ctl'), ['-D', data, '-l', join(dir, 'log'), '-w', '-o', `-h 127.0.0.1 -p ${port} -k ${dir} -c fsync=off`, 'start']);
  const stop = () => run(join(bin, 'pg_ctl'), ['-D', data, '-m', 'immediate', '-w', 'stop']);
  start();
  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    stop,
    start,
    purge() {
      try {
        stop();
      } catch {
        /* already stopped */
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
