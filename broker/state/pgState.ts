import { createHash } from 'node:crypto';
import type { JWK } from 'jose';
import pg from 'pg';
import type { Grant } from '../grants/grantStore';
import type { AccessRequest, Hold, RequestDecision, RequestStatus } from '../policy/approvalTypes';
import { migrate } from './pgMigrations';
import { parseNotice, StateUnavailableError, type ClaimAnswer, type LiveSession, type RequestClose, type SessionClaim, type SessionEnd, type StateBackend, type StateNotice } from './stateBackend';

export interface PostgresStateOptions {
  readonly url: string;
  /** The schema holding Loupe's tables (created when missing). */
  readonly schema?: string;
  /** How often notices are also polled for, in case the LISTEN channel dropped unnoticed. */
  readonly pollIntervalMs?: number;
  /** A query (or a connection) that takes longer fails: the caller gets state_unavailable. */
  readonly queryTimeoutMs?: number;
  readonly log?: (line: string) => void;
}

/**
 * The NOTIFY channel of a schema's notices. Channels are database-wide, so each schema (each deployment sharing the
 * database) has its own: another's revocations and reloads must not reach this one's sessions. Unquoted, the schema
 * name folds to lower case in search_path, and so does its channel; a long name is hashed into the 63-byte limit.
 */
export function noticeChannel(schema: string): string {
  const folded = schema.toLowerCase();
  return folded.length <= 50 ? `loupe_state_${folded}` : `loupe_state_${createHash('sha256').update(folded).digest('hex').slice(0, 32)}`;
}
/**
 * A lease has run out when neither its last renewal nor the database's own start (plus one lease) is recent: while the
 * database was down nobody could renew, so every replica gets one lease from its return before its sessions count as
 * dead; a replica that really died stays dead one lease later.
 */
const leaseRunOut = (now: string) => `GREATEST(lease_until_ms, (extract(epoch from pg_postmaster_start_time()) * 1000)::bigint + lease_ms) <= ${now}`;
/** Connection-level failures: the database is down or unreachable, not a query that was wrong. */
const unreachableCodes = /^(ECONNREFUSED|ECONNRESET|ETIMEDOUT|EPIPE|ENOTFOUND|EHOSTUNREACH|57P0[1-3]|08\w{3}|53\w{3})$/;

type Row = Record<string, any>;

/**
 * Statements are prepared once per connection and named by their text (each text is fixed, so a connection holds a
 * few dozen): the database plans them once rather than at every attach (a grant claim's plan was about a third of
 * its round trip). Not those returning `*`: a newer replica's migration may change that row under a cached plan,
 * which PostgreSQL refuses ("cached plan must not change result type").
 */
function preparedName(text: string): string | undefined {
  let name = preparedNames.get(text);
  if (name === undefined) {
    name = /(?:SELECT|RETURNING)\s+(?:\w+\.)?\*/i.test(text) ? '' : `loupe_${createHash('sha256').update(text).digest('hex').slice(0, 24)}`;
    preparedNames.set(text, name);
  }
  return name || undefined;
}
const preparedNames = new Map<string, string>();

/**
 * The state of several broker replicas in one PostgreSQL database. Races between replicas are settled by the
 * database: a ticket is consumed by one UPDATE … WHERE used_at_ms IS NULL, the session slot by a unique partial index,
 * approvals by a primary key (request, approver) and a row lock on the request. Notices go out as a row plus a
 * NOTIFY; every replica LISTENs, and polls the rows as well, so a dropped channel delays a notice by at most a poll.
 */
export class PostgresStateBackend implements StateBackend {
  readonly kind = 'postgres' as const;
  private readonly pool: pg.Pool;
  private readonly schema: string;
  private readonly channel: string;
  private readonly pollIntervalMs: number;
  private readonly handlers = new Set<(notice: StateNotice) => void>();
  /** Notices already handed to the handlers (id → when), so the NOTIFY and the poll deliver each once. */
  private readonly delivered = new Map<string, number>();
  private listener: pg.Client | undefined;
  private poller: NodeJS.Timeout | undefined;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private reconnectDelayMs = 250;
  private closed = false;
  private sinceIso = '';
  reachable = true;

  constructor(private readonly options: PostgresStateOptions) {
    this.schema = options.schema ?? 'loupe';
    if (!/^[A-Za-z_][A-Za-z0-9_]{0,62}$/.test(this.schema)) throw new Error(`state.postgres.schema: "${this.schema}" is not a plain SQL identifier`);
    this.channel = noticeChannel(this.schema);
    this.pollIntervalMs = options.pollIntervalMs ?? 2000;
    const timeout = options.queryTimeoutMs ?? 5000;
    this.pool = new pg.Pool({
      connectionString: options.url,
      // The server gives up at the same bound as this client: a statement the broker reported as failed (a lock held
      // elsewhere) is cancelled there too, rather than committing later; a transaction left open is ended by the server.
      options: `-c search_path=${this.schema} -c statement_timeout=${timeout} -c idle_in_transaction_session_timeout=${Math.max(timeout * 2, 1000)}`,
      max: 10,
      connectionTimeoutMillis: timeout,
      query_timeout: timeout,
      idleTimeoutMillis: 10_000,
    });
    // An idle client that loses its server emits here; the next query reports the outage.
    this.pool.on('error', (err) => this.options.log?.(`state: an idle database connection failed: ${err.message}`));
  }

  private get description(): string {
    try {
      const url = new URL(this.options.url);
      return `PostgreSQL at ${url.hostname}:${url.port || 5432}${url.pathname}`;
    } catch {
      return 'PostgreSQL';
    }
  }

  private async query<R extends Row = Row>(text: string, values: unknown[] = []): Promise<pg.QueryResult<R>> {
    try {
      const name = preparedName(text);
      const result = await this.pool.query<R>(name ? { name, text, values } : { text, values });
      this.reachable = true;
      return result;
    } catch (err) {
      throw this.unavailable(err);
    }
  }

  private unavailable(err: unknown): StateUnavailableError {
    const code = String((err as { code?: unknown }).code ?? '');
    const message = (err as Error).message ?? String(err);
    if (unreachableCodes.test(code) || /timeout|terminated|Connection|connect/i.test(message)) this.reachable = false;
    return new StateUnavailableError(`the state database (${this.description}) ${this.reachable ? 'refused a change' : 'cannot be reached'}: ${message}`, { cause: err });
  }

  /** Runs `fn` in one transaction on one connection. */
  private async transaction<T>(fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    let client: pg.PoolClient;
    try {
      client = await this.pool.connect();
    } catch (err) {
      throw this.unavailable(err);
    }
    try {
      await client.query('BEGIN');
      const result = await fn(client);
      await client.query('COMMIT');
      this.reachable = true;
      client.release();
      return result;
    } catch (err) {
      // A statement the server answered with an error leaves the connection usable once rolled back. Anything else (a
      // timeout, a lost connection) leaves a statement running in an open transaction: the connection is destroyed,
      // never handed back to the pool, where the next caller's statements would run (and stay uncommitted) inside it.
      const rolledBack =
        err instanceof pg.DatabaseError &&
        (await client.query('ROLLBACK').then(
          () => true,
          () => false,
        ));
      client.release(rolledBack ? undefined : err instanceof Error ? err : new Error(String(err)));
      throw err instanceof StateUnavailableError ? err : this.unavailable(err);
    }
  }

  async start(): Promise<void> {
    try {
      const applied = await migrate(this.pool, this.schema);
      if (applied.length > 0) this.options.log?.(`state: applied schema step(s) ${applied.join(', ')} to ${this.description}`);
    } catch (err) {
      throw this.unavailable(err);
    }
    this.sinceIso = (await this.query<{ now: Date }>('SELECT clock_timestamp() AS now')).rows[0]!.now.toISOString();
    await this.listen();
    this.poller = setInterval(() => void this.poll(), this.pollIntervalMs);
    this.poller.unref();
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.poller);
    clearTimeout(this.reconnectTimer);
    this.handlers.clear();
    await this.listener?.end().catch(() => undefined);
    await this.pool.end().catch(() => undefined);
  }

  /** A dedicated connection for LISTEN; when it drops, it is reopened with backoff while the poll stands in. */
  private async listen(): Promise<void> {
    const client = new pg.Client({ connectionString: this.options.url, connectionTimeoutMillis: this.options.queryTimeoutMs ?? 5000 });
    const dropped = (why: string) => {
      if (this.listener !== client) return;
      this.listener = undefined;
      client.removeAllListeners('notification');
      void client.end().catch(() => undefined);
      if (this.closed) return;
      this.options.log?.(`state: the notice channel dropped (${why}); polling every ${this.pollIntervalMs} ms until it is back`);
      this.scheduleReconnect();
    };
    client.on('error', (err) => dropped(err.message));
    client.on('end', () => dropped('connection ended'));
    client.on('notification', (message) => {
      if (message.channel !== this.channel || !message.payload) return;
      const separator = message.payload.indexOf(':');
      this.deliver(message.payload.slice(0, separator), message.payload.slice(separator + 1));
    });
    try {
      await client.connect();
      await client.query(`LISTEN "${this.channel}"`);
    } catch (err) {
      client.removeAllListeners();
      client.on('error', () => undefined);
      void client.end().catch(() => undefined);
      if (this.closed) return;
      this.scheduleReconnect();
      return;
    }
    this.listener = client;
    this.reconnectDelayMs = 250;
    void this.poll(); // what was sent while the channel was down
  }

  private scheduleReconnect(): void {
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = setTimeout(() => void this.listen(), this.reconnectDelayMs);
    this.reconnectTimer.unref();
    this.reconnectDelayMs = Math.min(this.reconnectDelayMs * 2, 5000);
  }

  /** Notices of the last minute not yet delivered (by id): the fallback when a NOTIFY was lost. */
  private async poll(): Promise<void> {
    if (this.closed || this.handlers.size === 0) return;
    try {
      const { rows } = await this.query<{ id: string; body: unknown }>(
        `SELECT id::text AS id, body FROM state_notices WHERE at >= GREATEST($1::timestamptz, clock_timestamp() - interval '60 seconds') ORDER BY id`,
        [this.sinceIso],
      );
      for (const row of rows) this.deliver(row.id, JSON.stringify(row.body));
    } catch (err) {
      this.options.log?.(`state: cannot poll for notices: ${(err as Error).message}`);
    }
  }

  private deliver(id: string, body: string): void {
    if (this.delivered.has(id)) return;
    const now = Date.now();
    this.delivered.set(id, now);
    for (const [key, at] of this.delivered) {
      if (at > now - 120_000) break;
      this.delivered.delete(key);
    }
    const notice = parseNotice(body);
    if (!notice) return this.options.log?.(`state: ignored a malformed notice ${id}`);
    for (const handler of this.handlers) handler(notice);
  }

  async notify(notice: StateNotice): Promise<void> {
    const body = JSON.stringify(notice);
    // One statement: the row and the NOTIFY commit together (a NOTIFY payload is bounded at 8000 bytes; notices are small).
    await this.query(`WITH n AS (INSERT INTO state_notices (body) VALUES ($1::jsonb) RETURNING id) SELECT pg_notify('${this.channel}', (SELECT id FROM n)::text || ':' || $2::text)`, [body, body]);
    if (Math.random() < 0.02) void this.query(`DELETE FROM state_notices WHERE at < clock_timestamp() - interval '10 minutes'`).catch(() => undefined);
  }

  onNotice(handler: (notice: StateNotice) => void): () => void {
    this.handlers.add(handler);
    return () => this.handlers.delete(handler);
  }

  async publishGrantKey(jwk: JWK & { kid: string }): Promise<void> {
    await this.query('INSERT INTO grant_keys (kid, jwk) VALUES ($1, $2) ON CONFLICT (kid) DO NOTHING', [jwk.kid, JSON.stringify(jwk)]);
  }
  async grantKey(kid: string): Promise<(JWK & { kid: string }) | undefined> {
    return (await this.query('SELECT jwk FROM grant_keys WHERE kid = $1', [kid])).rows[0]?.jwk;
  }

  async putGrant(grant: Grant): Promise<void> {
    const { revokedAt: _r, revokedBy: _b, ...body } = grant;
    await this.query('INSERT INTO grants (grant_id, body, expires_at, revoked_at, revoked_by) VALUES ($1, $2, $3, $4, $5)', [
      grant.grantId,
      JSON.stringify(body),
      grant.expiresAt,
      grant.revokedAt ?? null,
      grant.revokedBy ?? null,
    ]);
  }
  async getGrant(grantId: string): Promise<Grant | undefined> {
    const row = (await this.query('SELECT body, revoked_at, revoked_by FROM grants WHERE grant_id = $1', [grantId])).rows[0];
    return row && toGrant(row);
  }
  async revokeGrant(grantId: string, by: string, atSeconds: number): Promise<Grant | undefined> {
    const row = (
      await this.query('UPDATE grants SET revoked_at = COALESCE(revoked_at, $3), revoked_by = COALESCE(revoked_by, $2) WHERE grant_id = $1 RETURNING body, revoked_at, revoked_by', [
        grantId,
        by,
        atSeconds,
      ])
    ).rows[0];
    return row && toGrant(row);
  }

  async putTicket(ticket: string, grantId: string, expiresAtMs: number): Promise<void> {
    await this.query('INSERT INTO attach_tickets (ticket_sha256, grant_id, expires_at_ms) VALUES ($1, $2, $3)', [sha256(ticket), grantId, expiresAtMs]);
    if (Math.random() < 0.05) void this.query('DELETE FROM attach_tickets WHERE expires_at_ms < $1', [expiresAtMs - 3600_000]).catch(() => undefined);
  }
  async redeemTicket(ticket: string, nowMs: number): Promise<{ grantId: string; expiresAtMs: number } | undefined> {
    const row = (await this.query('UPDATE attach_tickets SET used_at_ms = $2 WHERE ticket_sha256 = $1 AND used_at_ms IS NULL RETURNING grant_id, expires_at_ms', [sha256(ticket), nowMs])).rows[0];
    return row && { grantId: row.grant_id, expiresAtMs: Number(row.expires_at_ms) };
  }

  /**
   * The slot's INSERT, committed like every other statement (durable before the attach goes on: a database crash
   * never forgets a live session's claim). The unique partial index settles a race.
   */
  private claimStatement(claim: SessionClaim, onlyWhile = ''): string {
    return `INSERT INTO live_sessions (session_id, grant_id, replica, user_sub, target, started_at_ms, lease_until_ms, lease_ms)
      SELECT $1::text, $2::text, $3::text, $4::text, $5::text, $6::bigint, $7::bigint, $8::bigint ${onlyWhile}
      ON CONFLICT (grant_id) WHERE ended_at_ms IS NULL DO NOTHING RETURNING session_id`;
  }
  private claimValues(claim: SessionClaim): unknown[] {
    return [claim.sessionId, claim.grantId, claim.replica, claim.user, claim.target, claim.nowMs, claim.nowMs + claim.leaseMs, claim.leaseMs];
  }

  async claimSession(claim: SessionClaim): Promise<ClaimAnswer> {
    // The slot is free in the common case: one statement. The unique partial index settles a race.
    if ((await this.query(this.claimStatement(claim), this.claimValues(claim))).rowCount === 1) return { claimed: true };
    return this.claimHeld(claim);
  }

  /** The slot was taken: a holder whose lease ran out is ended (its replica died or lost the database), and the slot taken again. */
  private async claimHeld(claim: SessionClaim): Promise<ClaimAnswer> {
    const expired = await this.query(`UPDATE live_sessions SET ended_at_ms = $2, ended_by = $3, end_reason = 'lease_expired' WHERE grant_id = $1 AND ended_at_ms IS NULL AND ${leaseRunOut('$2')}`, [
      claim.grantId,
      claim.nowMs,
      claim.replica,
    ]);
    if ((expired.rowCount ?? 0) > 0 && (await this.query(this.claimStatement(claim), this.claimValues(claim))).rowCount === 1) return { claimed: true };
    const holder = (await this.query('SELECT * FROM live_sessions WHERE grant_id = $1 AND ended_at_ms IS NULL', [claim.grantId])).rows[0];
    // The holder ended between the statements: claim again (bounded by how often that can happen).
    return holder ? { claimed: false, holder: toSession(holder) } : this.claimSession(claim);
  }

  async claimSessionOfGrant(claim: SessionClaim): Promise<{ grant: Grant | undefined; claim?: ClaimAnswer }> {
    // One statement: the grant as it stands, and the slot taken only while that grant exists unrevoked.
    const usable = 'WHERE EXISTS (SELECT 1 FROM grants WHERE grant_id = $2::text AND revoked_at IS NULL)';
    const row = (
      await this.query(
        `WITH claimed AS (${this.claimStatement(claim, usable)})
         SELECT (SELECT count(*) FROM claimed)::int AS claimed, g.body, g.revoked_at, g.revoked_by FROM (SELECT 1) AS one LEFT JOIN grants g ON g.grant_id = $2::text`,
        this.claimValues(claim),
      )
    ).rows[0]!;
    if (row.body === null) return { grant: undefined };
    const grant = toGrant(row);
    if (grant.revokedAt !== undefined) return { grant };
    return { grant, claim: row.claimed === 1 ? { claimed: true } : await this.claimHeld(claim) };
  }

  async renewLeases(replica: string, sessionIds: readonly string[], nowMs: number, leaseMs: number): Promise<string[]> {
    if (sessionIds.length === 0) return [];
    const { rows } = await this.query<{ session_id: string }>(
      'UPDATE live_sessions SET lease_until_ms = $3, lease_ms = $4 WHERE replica = $1 AND session_id = ANY($2) AND ended_at_ms IS NULL RETURNING session_id',
      [replica, sessionIds, nowMs + leaseMs, leaseMs],
    );
    const live = new Set(rows.map((r) => r.session_id));
    return sessionIds.filter((id) => !live.has(id));
  }
  async endSession(sessionId: string, end: SessionEnd): Promise<void> {
    await this.query('UPDATE live_sessions SET ended_at_ms = $2, ended_by = $3, end_reason = $4 WHERE session_id = $1 AND ended_at_ms IS NULL', [sessionId, end.atMs, end.by, end.reason]);
  }
  async expireLeases(nowMs: number, by: string): Promise<LiveSession[]> {
    const { rows } = await this.query(`UPDATE live_sessions SET ended_at_ms = $1, ended_by = $2, end_reason = 'lease_expired' WHERE ended_at_ms IS NULL AND ${leaseRunOut('$1')} RETURNING *`, [
      nowMs,
      by,
    ]);
    return rows.map(toSession);
  }
  async liveSessions(): Promise<LiveSession[]> {
    return (await this.query('SELECT * FROM live_sessions WHERE ended_at_ms IS NULL ORDER BY started_at_ms')).rows.map(toSession);
  }
  async getSession(sessionId: string): Promise<LiveSession | undefined> {
    const row = (await this.query('SELECT * FROM live_sessions WHERE session_id = $1', [sessionId])).rows[0];
    return row && toSession(row);
  }

  async createRequest(request: AccessRequest): Promise<void> {
    const { status, expiresAt, approvals: _a, approvedAt, denial, grantId, closedAt, ...body } = request;
    await this.query('INSERT INTO access_requests (request_id, body, status, expires_at, approved_at, denial, grant_id, closed_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)', [
      request.requestId,
      JSON.stringify(body),
      status,
      expiresAt,
      approvedAt ?? null,
      denial ? JSON.stringify(denial) : null,
      grantId ?? null,
      closedAt ?? null,
    ]);
  }
  private readonly requestColumns = `r.*, COALESCE((SELECT jsonb_agg(a.decision ORDER BY a.seq) FROM request_approvals a WHERE a.request_id = r.request_id), '[]'::jsonb) AS approvals`;
  async getRequest(requestId: string): Promise<AccessRequest | undefined> {
    const row = (await this.query(`SELECT ${this.requestColumns} FROM access_requests r WHERE r.request_id = $1`, [requestId])).rows[0];
    return row && toRequest(row);
  }
  async listRequests(statuses: readonly RequestStatus[]): Promise<AccessRequest[]> {
    return (await this.query(`SELECT ${this.requestColumns} FROM access_requests r WHERE r.status = ANY($1)`, [statuses])).rows.map(toRequest);
  }
  async addApproval(requestId: string, by: RequestDecision, approvedExpiresAt: string): Promise<{ added: boolean; request: AccessRequest | undefined }> {
    return this.transaction(async (client) => {
      // The row lock orders approvals of one request: the count each sees includes every earlier one.
      const locked = (await client.query('SELECT status, body FROM access_requests WHERE request_id = $1 FOR UPDATE', [requestId])).rows[0];
      let added = false;
      if (locked?.status === 'pending') {
        const inserted = await client.query('INSERT INTO request_approvals (request_id, approver, decision) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING', [requestId, by.sub, JSON.stringify(by)]);
        added = inserted.rowCount === 1;
        if (added) {
          const count = Number((await client.query('SELECT count(*) AS n FROM request_approvals WHERE request_id = $1', [requestId])).rows[0].n);
          if (count >= Number(locked.body.minApprovals))
            await client.query(`UPDATE access_requests SET status = 'approved', expires_at = $2, approved_at = $3 WHERE request_id = $1`, [requestId, approvedExpiresAt, by.at]);
        }
      }
      const row = (await client.query(`SELECT ${this.requestColumns} FROM access_requests r WHERE r.request_id = $1`, [requestId])).rows[0];
      return { added, request: row && toRequest(row) };
    });
  }
  async closeRequest(requestId: string, from: readonly RequestStatus[], change: RequestClose): Promise<AccessRequest | undefined> {
    const updated = await this.query('UPDATE access_requests SET status = $3, closed_at = $4, denial = $5, grant_id = $6 WHERE request_id = $1 AND status = ANY($2) RETURNING request_id', [
      requestId,
      from,
      change.status,
      change.status === 'denied' ? change.denial.at : change.at,
      change.status === 'denied' ? JSON.stringify(change.denial) : null,
      change.status === 'collected' ? change.grantId : null,
    ]);
    return updated.rowCount === 1 ? this.getRequest(requestId) : undefined;
  }

  async putHold(hold: Hold): Promise<void> {
    await this.query('INSERT INTO approval_holds (user_sub, target, hold) VALUES ($1, $2, $3) ON CONFLICT (user_sub, target) DO UPDATE SET hold = EXCLUDED.hold', [
      hold.user,
      hold.target,
      JSON.stringify(hold),
    ]);
  }
  async getHold(user: string, target: string): Promise<Hold | undefined> {
    return (await this.query('SELECT hold FROM approval_holds WHERE user_sub = $1 AND target = $2', [user, target])).rows[0]?.hold;
  }
  async releaseHold(user: string, target: string, alertId: string): Promise<void> {
    await this.query(`DELETE FROM approval_holds WHERE user_sub = $1 AND target = $2 AND hold->'cause'->>'alertId' = $3`, [user, target, alertId]);
  }

  async touchFirstAttach(user: string, target: string, at: string): Promise<string | undefined> {
    const { rows } = await this.query(
      `WITH prev AS (SELECT at FROM first_attach WHERE user_sub = $1 AND target = $2),
            up AS (INSERT INTO first_attach (user_sub, target, at) VALUES ($1, $2, $3) ON CONFLICT (user_sub, target) DO UPDATE SET at = EXCLUDED.at)
       SELECT at FROM prev`,
      [user, target, at],
    );
    return rows[0]?.at;
  }
  async countInWindow(key: string, atMs: number, windowMs: number): Promise<number> {
    const { rows } = await this.query(
      `WITH ins AS (INSERT INTO rate_events (key, at_ms) VALUES ($1, $2)), del AS (DELETE FROM rate_events WHERE key = $1 AND at_ms <= $2 - $3)
       SELECT count(*) + 1 AS n FROM rate_events WHERE key = $1 AND at_ms > $2 - $3`,
      [key, atMs, windowMs],
    );
    if (Math.random() < 0.01) void this.query('DELETE FROM rate_events WHERE at_ms < $1', [atMs - 86400_000]).catch(() => undefined);
    return Number(rows[0]!.n);
  }
}

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

function toGrant(row: Row): Grant {
  return { ...row.body, ...(row.revoked_at !== null ? { revokedAt: Number(row.revoked_at), revokedBy: row.revoked_by } : {}) };
}

function toSession(row: Row): LiveSession {
  return {
    sessionId: row.session_id,
    grantId: row.grant_id,
    replica: row.replica,
    user: row.user_sub,
    target: row.target,
    startedAtMs: Number(row.started_at_ms),
    leaseUntilMs: Number(row.lease_until_ms),
    ...(row.ended_at_ms !== null ? { endedAtMs: Number(row.ended_at_ms), endedBy: row.ended_by, endReason: row.end_reason } : {}),
  };
}

function toRequest(row: Row): AccessRequest {
  return {
    ...row.body,
    status: row.status,
    expiresAt: row.expires_at,
    approvals: row.approvals,
    ...(row.approved_at !== null ? { approvedAt: row.approved_at } : {}),
    ...(row.denial !== null ? { denial: row.denial } : {}),
    ...(row.grant_id !== null ? { grantId: row.grant_id } : {}),
    ...(row.closed_at !== null ? { closedAt: row.closed_at } : {}),
  };
}
