import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { Broker, type BrokerOptions } from '../../broker/broker';
import { parseConfigText } from '../../broker/config/load';
import type { LoupeConfig } from '../../broker/config/types';
import { listen, type BrokerServer } from '../../broker/http/server';
import { mintDevToken } from '../../broker/identity/devIssuer';
import type { AuditEvent } from '../../broker/audit/events';
import { CdpClient } from './cdpClient';
import { waitFor } from './wait';

export interface TestBroker {
  readonly broker: Broker;
  readonly server: BrokerServer;
  readonly url: string;
  readonly config: LoupeConfig;
  readonly stateDir: string;
  token(user: string, groups: string[]): Promise<string>;
  api(method: string, path: string, token: string | undefined, body?: unknown): Promise<{ status: number; body: any }>;
  /** Requests a grant as `user` and returns the broker's answer (throws unless 201). */
  grant(
    user: string,
    groups: string[],
    request?: Partial<{ target: string; mode: string; durationSeconds: number; reason: string; ticket: string }>,
  ): Promise<{ grantId: string; token: string; attachUrl: string; expiresAt: string }>;
  /** Grant and attach in one step, as user "dev" of group "devs". */
  attach(request?: Partial<{ target: string; mode: string; durationSeconds: number }>): Promise<{ client: CdpClient; grant: { grantId: string; token: string; attachUrl: string; expiresAt: string } }>;
  /** Every audit record made durable since the broker started (all streams), in order, as the broker's observers saw them. */
  readonly records: readonly AuditEvent[];
  /**
   * The first audit record of `type` that passes `predicate`, already recorded or yet to come, as the broker's
   * audit observers (metrics, alerts) see it once durable; fails after `timeoutMs` naming the type.
   */
  waitForRecord(type: string, predicate?: (event: AuditEvent & { data: any }) => boolean, timeoutMs?: number): Promise<AuditEvent & { data: any }>;
  /** Every session event the broker has put in its audit store, once closing chains have settled. */
  sessionEvents(): Promise<any[]>;
  close(): Promise<void>;
}

/** A policy with one target "app" that group "devs" may debug in pause mode and group "owners" owns. */
/** Every default alert rule off, so an alert test turns on exactly the one it checks. */
export const alertRulesOff = {
  evaluationRate: false,
  readRate: false,
  capturedBytes: false,
  refusals: false,
  sensitiveReads: false,
  firstAttach: false,
  longPause: false,
  watchdogResume: false,
  concurrentTargets: false,
};

export function basePolicy(inspector: string, overrides: Record<string, any> = {}): Record<string, any> {
  return {
    server: { host: '127.0.0.1', port: 0 },
    identity: { devIssuer: { enabled: true } },
    roles: { dev: { groups: ['devs'] }, owner: { groups: ['owners'] }, admin: { groups: ['admins'] } },
    admins: ['admin'],
    targets: {
      app: {
        inspector,
        owners: ['owner'],
        maxPauseSeconds: 30,
        access: [{ role: 'dev', modes: ['pause', 'snapshot'], maxDuration: '10m' }],
      },
    },
    ...overrides,
  };
}

/** Starts a real broker in this process on a free loopback port, with its own state directory. */
export async function startTestBroker(
  policy: Record<string, any>,
  options: {
    stateDir?: string;
    clock?: () => number;
    log?: (line: string) => void;
    securityStream?: BrokerOptions['securityStream'];
    onPolicyReloadNotice?: BrokerOptions['onPolicyReloadNotice'];
    /** false: `records` stays empty (waitForRecord still sees records to come). A benchmark hosting the broker sets it, so the harness does not hold every record the broker has long let go. */
    keepRecords?: boolean;
  } = {},
): Promise<TestBroker> {
  const stateDir = options.stateDir ?? mkdtempSync(join(tmpdir(), 'loupe-test-'));
  // The suite's test files share one disk, all at once: a commit slowed seconds by the others' writes and syncs is
  // contention, not a disk that stopped answering. Tests of a stalled disk set their own bound.
  const audit = { walStallAfter: '30s', ...policy.audit };
  const config = parseConfigText(stringify({ ...policy, audit, stateDir }), stateDir);
  const broker = await Broker.create(config, {
    ...(options.clock ? { clock: options.clock } : {}),
    // Without a log of the test's own, a broker that fails closed says why on stderr: a session a test did not
    // expect to end (close 4005) is then explained in the run's output.
    log:
      options.log ??
      ((line: string) =>
        /^audit: (failing closed|ending every session|session \S+ ended|the write-ahead log)/.test(line) && process.stderr.write(`[test broker] ${new Date().toISOString()} ${line}\n`)),
    ...(options.securityStream ? { securityStream: options.securityStream } : {}),
    ...(options.onPolicyReloadNotice ? { onPolicyReloadNotice: options.onPolicyReloadNotice } : {}),
  });
  // Records made inside Broker.create (before this line) are not seen; every later one is.
  const records: AuditEvent[] = [];
  const recordWaiters = new Set<(event: AuditEvent) => void>();
  broker.audit.on('event', (event: AuditEvent) => {
    if (options.keepRecords !== false) records.push(event);
    for (const waiter of [...recordWaiters]) waiter(event);
  });
  const waitForRecord: TestBroker['waitForRecord'] = (type, predicate, timeoutMs = 10_000) => {
    const matches = (event: AuditEvent): event is AuditEvent & { data: any } => event.type === type && (!predicate || predicate(event as AuditEvent & { data: any }));
    const earlier = records.find(matches);
    if (earlier) return Promise.resolve(earlier);
    return new Promise((resolve, reject) => {
      const waiter = (event: AuditEvent) => {
        if (!matches(event)) return;
        recordWaiters.delete(waiter);
        clearTimeout(timer);
        resolve(event);
      };
      const timer = setTimeout(() => {
        recordWaiters.delete(waiter);
        const ofType = records.filter((e) => e.type === type);
        reject(
          new Error(`no ${type} audit record${predicate ? ' matching the predicate' : ''} within ${timeoutMs} ms (${ofType.length} of that type seen; last record: ${records.at(-1)?.type ?? 'none'})`),
        );
      }, timeoutMs);
      recordWaiters.add(waiter);
    });
  };
  const server = await listen(broker, '127.0.0.1', 0);
  const api: TestBroker['api'] = async (method, path, token, body) => {
    const res = await fetch(`${server.url}${path}`, {
      method,
      headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
    });
    const text = await res.text();
    return { status: res.status, body: text ? JSON.parse(text) : undefined };
  };
  const token = (user: string, groups: string[]) => mintDevToken(config, { user, groups });
  const grant: TestBroker['grant'] = async (user, groups, request = {}) => {
    const res = await api('POST', '/v1/grants', await token(user, groups), { target: 'app', mode: 'pause', durationSeconds: 300, reason: 'investigating a test', ...request });
    if (res.status !== 201) throw new Error(`grant refused: ${res.status} ${JSON.stringify(res.body)}`);
    return res.body;
  };
  return {
    broker,
    server,
    url: server.url,
    config,
    stateDir,
    token,
    api,
    grant,
    records,
    waitForRecord,
    async attach(request = {}) {
      const g = await grant('dev', ['devs'], request);
      const client = await CdpClient.connect(g.attachUrl, { authorization: `Bearer ${g.token}` });
      return { client, grant: g };
    },
    async sessionEvents() {
      // A session's chain begins to close just after its session.ended record is durable; settle() waits only for
      // chains already closing, so first wait until every ended session's chain has left the open ones (read only).
      const ended = records.filter((e) => e.type === 'session.ended').map((e) => e.stream);
      const open = (broker.audit as unknown as { streams: Map<string, unknown> }).streams;
      await waitFor(() => ended.every((id) => !open.has(id)), { what: 'the chains of ended sessions to begin closing', timeoutMs: 5000, intervalMs: 5 });
      await broker.audit.settle();
      const store = broker.audit.store;
      const events: any[] = [];
      for (const key of await store.list('sessions/')) {
        if (!key.includes('/chunk-')) continue;
        for (const line of (await store.get(key)).toString('utf8').split('\n')) {
          if (!line) continue;
          const record = JSON.parse(line);
          if (record.type !== 'seal') events.push(record);
        }
      }
      return events;
    },
    async close() {
      await server.close();
      if (!options.stateDir) rmSync(stateDir, { recursive: true, force: true });
    },
  };
}
