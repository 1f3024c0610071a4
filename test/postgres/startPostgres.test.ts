// needs: postgres
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { Client } from 'pg';
import { startOwnPostgres, type OwnPostgres } from '../support/postgres';

// scripts/postgres/start-postgres.sh: a loopback PostgreSQL of its own per directory, idempotent, restartable with its data.

const script = join(__dirname, '..', '..', 'scripts', 'postgres', 'start-postgres.sh');

async function query(url: string, sql: string): Promise<any[]> {
  const client = new Client({ connectionString: url, connectionTimeoutMillis: 5000 });
  await client.connect();
  try {
    return (await client.query(sql)).rows;
  } finally {
    await client.end();
  }
}

describe('start-postgres.sh', () => {
  let pg: OwnPostgres | undefined;
  after(() => pg?.purge());

  it('starts a server on 127.0.0.1 in an empty directory, prints the same URL again while it runs, and keeps the data across a stop and a start', async () => {
    pg = startOwnPostgres('script');
    const url = new URL(pg.url);
    assert.equal(url.protocol, 'postgres:');
    assert.equal(url.hostname, '127.0.0.1');
    assert.equal(url.pathname, '/loupe');
    assert.ok(url.password.length >= 20, 'a generated password');
    assert.deepEqual(await query(pg.url, 'SELECT current_user AS who'), [{ who: 'loupe' }]);
    // Only loopback: the server's own setting says so.
    assert.deepEqual(await query(pg.url, 'SHOW listen_addresses'), [{ listen_addresses: '127.0.0.1' }]);
    await query(pg.url, 'CREATE TABLE kept (n int); INSERT INTO kept VALUES (42)');

    const again = spawnSync('bash', [script, pg.dir], { encoding: 'utf8' });
    assert.equal(again.status, 0, again.stderr);
    assert.equal(again.stdout, `DATABASE_URL=${pg.url}\n`, 'a second call prints exactly the same line and nothing else');
    assert.match(again.stderr, /already running/);

    pg.stop();
    await assert.rejects(query(pg.url, 'SELECT 1'), /ECONNREFUSED/);
    pg.start();
    assert.deepEqual(await query(pg.url, 'SELECT n FROM kept'), [{ n: 42 }]);
  });

  it('refuses a non-empty directory it did not make, saying why, and starts nothing', () => {
    const dir = mkdtempSync(join(tmpdir(), 'loupe-pg-foreign-'));
    writeFileSync(join(dir, 'precious.txt'), 'not a cluster');
    const result = spawnSync('bash', [script, dir], { encoding: 'utf8' });
    assert.equal(result.status, 1);
    assert.equal(result.stdout, '');
    assert.match(result.stderr, /is not empty and was not made by start-postgres\.sh; pick another dir/);
    assert.ok(existsSync(join(dir, 'precious.txt')));
    assert.ok(!existsSync(join(dir, 'pgdata')));
    rmSync(dir, { recursive: true });
  });

  it('refuses a role or database name that is not a plain identifier (no SQL reaches the server)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'loupe-pg-bad-'));
    const result = spawnSync('bash', [script, dir], { encoding: 'utf8', env: { ...process.env, PG_USER: "x'; DROP ROLE postgres; --" } });
    assert.equal(result.status, 1);
    assert.match(result.stderr, /PG_USER must be a plain lower-case identifier/);
    assert.ok(!existsSync(join(dir, '.start-postgres-cluster')), 'refused before the directory was claimed');
    rmSync(dir, { recursive: true });
  });
});
