import type { Pool } from 'pg';

/**
 * The state schema, as numbered steps. A step is never edited once released: a change is a new step. Each runs in
 * its own transaction and is recorded in schema_migrations; an advisory lock makes replicas starting together apply
 * each step once (the others wait, then find it applied).
 */
export const migrations: readonly { readonly version: number; readonly name: string; readonly sql: string }[] = [
  {
    version: 1,
    name: 'shared state of broker replicas',
    sql: `
      CREATE TABLE grant_keys (kid text PRIMARY KEY, jwk jsonb NOT NULL, published_at timestamptz NOT NULL DEFAULT now());
      CREATE TABLE grants (
        grant_id text PRIMARY KEY,
        body jsonb NOT NULL,
        expires_at bigint NOT NULL,
        revoked_at bigint,
        revoked_by text
      );
      -- Tickets are kept as their SHA-256: the database never holds a credential that would attach.
      CREATE TABLE attach_tickets (
        ticket_sha256 text PRIMARY KEY,
        grant_id text NOT NULL,
        expires_at_ms bigint NOT NULL,
        used_at_ms bigint
      );
      CREATE INDEX attach_tickets_expiry ON attach_tickets (expires_at_ms);
      CREATE TABLE live_sessions (
        session_id text PRIMARY KEY,
        grant_id text NOT NULL,
        replica text NOT NULL,
        user_sub text NOT NULL,
        target text NOT NULL,
        started_at_ms bigint NOT NULL,
        lease_until_ms bigint NOT NULL,
        lease_ms bigint NOT NULL,
        ended_at_ms bigint,
        ended_by text,
        end_reason text
      );
      -- The one-live-session-per-grant rule, kept by the database whichever replica asks.
      CREATE UNIQUE INDEX live_sessions_one_per_grant ON live_sessions (grant_id) WHERE ended_at_ms IS NULL;
      CREATE TABLE access_requests (
        request_id text PRIMARY KEY,
        body jsonb NOT NULL,
        status text NOT NULL,
        expires_at text NOT NULL,
        approved_at text,
        denial jsonb,
        grant_id text,
        closed_at text
      );
      CREATE INDEX access_requests_status ON access_requests (status);
      -- One approval per approver per request, whichever replica it arrives at.
      CREATE TABLE request_approvals (
        request_id text NOT NULL REFERENCES access_requests (request_id),
        approver text NOT NULL,
        decision jsonb NOT NULL,
        seq bigserial,
        PRIMARY KEY (request_id, approver)
      );
      CREATE TABLE approval_holds (user_sub text NOT NULL, target text NOT NULL, hold jsonb NOT NULL, PRIMARY KEY (user_sub, target));
      CREATE TABLE first_attach (user_sub text NOT NULL, target text NOT NULL, at text NOT NULL, PRIMARY KEY (user_sub, target));
      CREATE TABLE rate_events (key text NOT NULL, at_ms bigint NOT NULL);
      CREATE INDEX rate_events_key ON rate_events (key, at_ms);
      -- Notices are rows as well as NOTIFYs: a replica whose channel dropped finds them by polling.
      CREATE TABLE state_notices (id bigserial PRIMARY KEY, body jsonb NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp());
      CREATE INDEX state_notices_at ON state_notices (at);
    `,
  },
];

/** Applies the steps not yet applied, under an advisory lock held for the whole run; answers the versions applied. */
export async function migrate(pool: Pool, schema: string): Promise<number[]> {
  const client = await pool.connect();
  const applied: number[] = [];
  try {
    await client.query(`CREATE SCHEMA IF NOT EXISTS ${quoteIdent(schema)}`).catch((err: { code?: string }) => {
      if (err.code !== '23505' && err.code !== '42P06') throw err; // created by a replica starting at the same moment
    });
    await client.query('SELECT pg_advisory_lock(hashtext($1))', [`loupe-migrate:${schema}`]);
    try {
      await client.query('CREATE TABLE IF NOT EXISTS schema_migrations (version int PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())');
      const done = new Set((await client.query<{ version: number }>('SELECT version FROM schema_migrations')).rows.map((r) => r.version));
      const known = Math.max(...migrations.map((m) => m.version));
      const newer = [...done].filter((v) => v > known);
      if (newer.length > 0) throw new Error(`the state database has schema version ${Math.max(...newer)}, newer than this broker knows (${known}): upgrade this broker`);
      for (const step of migrations) {
        if (done.has(step.version)) continue;
        await client.query('BEGIN');
        try {
          await client.query(step.sql);
          await client.query('INSERT INTO schema_migrations (version, name) VALUES ($1, $2)', [step.version, step.name]);
          await client.query('COMMIT');
        } catch (err) {
          await client.query('ROLLBACK').catch(() => undefined);
          throw err;
        }
        applied.push(step.version);
      }
    } finally {
      await client.query('SELECT pg_advisory_unlock(hashtext($1))', [`loupe-migrate:${schema}`]).catch(() => undefined);
    }
  } finally {
    client.release();
  }
  return applied;
}

export const quoteIdent = (name: string): string => `"${name.replace(/"/g, '""')}"`;
