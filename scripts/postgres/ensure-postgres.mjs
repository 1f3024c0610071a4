// Makes sure the PostgreSQL server that the multi-replica tests need is running, and returns its DATABASE_URL for the
// tests' environment.
//
// If DATABASE_URL is already set, that server is used as is. Otherwise scripts/postgres/start-postgres.sh starts (or
// reuses) PostgreSQL 15 on 127.0.0.1 in $LOUPE_POSTGRES_DIR (default /tmp/loupe-postgres), installing Debian's
// postgresql-15 the first time. The server is left running afterwards: the next run reuses it in a fraction of a
// second. Stop it with: bash scripts/postgres/stop-postgres.sh /tmp/loupe-postgres [--purge]
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';

const startScript = join(import.meta.dirname, 'start-postgres.sh');

/** Returns the variables to add to the tests' environment; exits the process with a clear message when the server cannot be started. */
export function ensurePostgres({ env = process.env, out = process.stdout } = {}) {
  if (env.DATABASE_URL) {
    out.write(`\n== PostgreSQL: using DATABASE_URL from the environment\n`);
    return {};
  }
  const dir = env.LOUPE_POSTGRES_DIR || '/tmp/loupe-postgres';
  out.write(`\n== PostgreSQL (postgresql-15, ${dir})\n`);
  const started = Date.now();
  // Progress (stderr) goes straight to the terminal; stdout carries only the DATABASE_URL line.
  const result = spawnSync('bash', [startScript, dir], { stdio: ['ignore', 'pipe', 'inherit'], encoding: 'utf8', env });
  const url = /^DATABASE_URL=(postgres:\/\/\S+)$/m.exec(result.stdout ?? '')?.[1];
  const problem = result.error
    ? `could not run bash ${startScript}: ${result.error.message}`
    : result.status !== 0
      ? `bash ${startScript} ${dir} failed (exit ${result.status ?? result.signal})`
      : !url
        ? `bash ${startScript} ${dir} printed no DATABASE_URL line (stdout: ${JSON.stringify(result.stdout)})`
        : undefined;
  if (problem) {
    out.write(
      `\nPostgreSQL failed to start: ${problem}.\n` +
        `The multi-replica tests need a real PostgreSQL server, so the tests were not run.\n` +
        `Logs: ${dir}/log/ and ${dir}/apt.log. To use another PostgreSQL server instead, set DATABASE_URL\n` +
        `(a role that may create databases) before npm test.\n`,
    );
    process.exit(1);
  }
  out.write(`PostgreSQL ready at ${url.replace(/:[^:@/]*@/, ':***@')} (${((Date.now() - started) / 1000).toFixed(1)} s); left running for the next run\n`);
  return { DATABASE_URL: url };
}
