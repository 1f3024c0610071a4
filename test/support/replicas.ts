import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exportSPKI, generateKeyPair, SignJWT, type CryptoKey } from 'jose';
import { stringify } from 'yaml';
import { brokerUrl } from './brokerProcess';
import { CdpClient } from './cdpClient';
import { waitFor } from './wait';

/** The shipped broker entry; `npm test` builds it first (`node esbuild.mjs`). */
const cli = join(__dirname, '..', '..', 'dist', 'cli.js');

/** The identity provider every replica trusts: tokens are minted here, as a company's IdP would mint them. */
export const replicaIssuer = 'urn:loupe:replica-tests';

export interface ReplicaSetOptions {
  /** The config every replica shares (policy, identity added here, audit store, state); server.port and stateDir are each replica's own. */
  readonly config: Record<string, any>;
  /** Replica names, in start order (default a, b, c). */
  readonly names?: readonly string[];
  /** What one replica's config adds on top of the shared one (e.g. its replica id, under whatever key the state config names it). */
  readonly perReplica?: (name: string) => Record<string, any>;
  /** Extra environment of every replica process. */
  readonly env?: Record<string, string>;
  /** How long a replica may take to print LOUPE_BROKER_URL (default 30 s). */
  readonly startTimeoutMs?: number;
}

export interface Replica {
  readonly name: string;
  /** The replica's own directory: its config file and its stateDir (keys, WAL, local state). */
  readonly dir: string;
  readonly stateDir: string;
  readonly configFile: string;
  /** Its URL; the same across restarts (it listens on the port it had). */
  readonly url: string;
  readonly pid: number | undefined;
  readonly running: boolean;
  /** Everything the process wrote on stdout / stderr (the broker logs JSON lines on stderr), across restarts. */
  stdout(): string;
  stderr(): string;
  /** The broker's JSON log lines (stderr), parsed; other lines are skipped. */
  logLines(): Record<string, any>[];
  /** Waits for a log line matching `pattern` written after `since` characters of stderr (default: any). */
  waitForLog(pattern: RegExp, options?: { since?: number; timeoutMs?: number }): Promise<string>;
  api(method: string, path: string, token: string | undefined, body?: unknown): Promise<{ status: number; body: any }>;
  /** Attaches a CDP client through this replica with a grant's token (its URL rewritten to this replica). */
  attach(grant: { grantId: string; token: string }): Promise<CdpClient>;
  /** SIGKILL: no shutdown of any kind (sessions, WAL, state are left as a crash leaves them); resolves once it exited. */
  kill9(): Promise<void>;
  /** SIGTERM: the broker's clean shutdown (sessions ended, targets resumed); resolves once it exited. */
  stop(): Promise<void>;
  /** Starts the replica again with the same directory, config and port. */
  restart(): Promise<void>;
}

export interface ReplicaSet {
  readonly replicas: readonly Replica[];
  get(name: string): Replica;
  /** An identity token from the shared issuer. */
  token(user: string, groups: readonly string[]): Promise<string>;
  /** Stops every replica still running (SIGTERM, then SIGKILL after 15 s) and removes their directories. */
  close(): Promise<void>;
}

/** The identity section every replica gets: the shared issuer's public key, and no development issuer (its key would be per replica). */
async function sharedIdentity(): Promise<{ section: Record<string, any>; privateKey: CryptoKey }> {
  const { privateKey, publicKey } = await generateKeyPair('EdDSA', { crv: 'Ed25519', extractable: true });
  return {
    privateKey,
    section: { audience: 'loupe', devIssuer: { enabled: false }, issuers: [{ issuer: replicaIssuer, publicKey: await exportSPKI(publicKey), algorithms: ['EdDSA'] }] },
  };
}

/**
 * Starts N broker replicas as separate processes (`node dist/cli.js broker`), sharing one config except for the
 * port, the state directory (so each has its own WAL and its own audit and grant keys) and what `perReplica` adds.
 * They trust one identity issuer, whose tokens `token()` mints. Started one after another, so start-up races in
 * the shared state are the state backend's to settle, not the harness's to provoke.
 */
export async function startReplicas(options: ReplicaSetOptions): Promise<ReplicaSet> {
  if (!existsSync(cli)) throw new Error(`${cli} is missing: build the broker first (node esbuild.mjs; npm test does it)`);
  const root = mkdtempSync(join(tmpdir(), 'loupe-replicas-'));
  const identity = await sharedIdentity();
  const replicas: ReplicaHandle[] = [];
  try {
    for (const name of options.names ?? ['a', 'b', 'c']) {
      const handle = new ReplicaHandle(name, join(root, name), { ...options.config, identity: identity.section, ...options.perReplica?.(name) }, options);
      replicas.push(handle);
      await handle.start(0);
    }
  } catch (err) {
    await Promise.all(replicas.map((r) => r.kill9()));
    rmSync(root, { recursive: true, force: true });
    throw err;
  }
  return {
    replicas,
    get(name) {
      const replica = replicas.find((r) => r.name === name);
      if (!replica) throw new Error(`no replica ${name} (have ${replicas.map((r) => r.name).join(', ')})`);
      return replica;
    },
    token: (user, groups) =>
      new SignJWT({ groups: [...groups], name: user })
        .setProtectedHeader({ alg: 'EdDSA', typ: 'JWT' })
        .setIssuer(replicaIssuer)
        .setAudience('loupe')
        .setSubject(user)
        .setIssuedAt()
        .setExpirationTime('1h')
        .sign(identity.privateKey),
    async close() {
      await Promise.all(replicas.map((r) => r.stopWithin(15_000)));
      rmSync(root, { recursive: true, force: true });
    },
  };
}

class ReplicaHandle implements Replica {
  readonly stateDir: string;
  readonly configFile: string;
  private proc: ChildProcess | undefined;
  private exited: Promise<void> = Promise.resolve();
  private out = '';
  private err = '';
  private port = 0;
  url = '';

  constructor(
    readonly name: string,
    readonly dir: string,
    config: Record<string, any>,
    private readonly options: ReplicaSetOptions,
  ) {
    this.stateDir = join(dir, 'state');
    this.configFile = join(dir, 'loupe.yaml');
    mkdirSync(dir, { recursive: true });
    writeFileSync(this.configFile, stringify({ ...config, server: { ...config.server, host: '127.0.0.1', port: 0 }, stateDir: this.stateDir }));
  }

  get pid(): number | undefined {
    return this.proc?.pid;
  }

  get running(): boolean {
    return this.proc !== undefined && this.proc.exitCode === null && this.proc.signalCode === null;
  }

  async start(port: number): Promise<void> {
    const proc = spawn(process.execPath, [cli, 'broker', '--config', this.configFile, '--port', String(port)], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, ...this.options.env, LOUPE_REPLICA_ID: this.name },
    });
    this.proc = proc;
    this.exited = new Promise((resolve) => proc.once('exit', () => resolve()));
    proc.stderr!.setEncoding('utf8').on('data', (chunk: string) => (this.err += chunk));
    const url = brokerUrl(proc, () => this.err.slice(-4000), this.options.startTimeoutMs ?? 30_000);
    proc.stdout!.on('data', (chunk: Buffer | string) => (this.out += chunk.toString()));
    this.url = await url;
    this.port = Number(new URL(this.url).port);
  }

  stdout(): string {
    return this.out;
  }

  stderr(): string {
    return this.err;
  }

  logLines(): Record<string, any>[] {
    return this.err.split('\n').flatMap((line) => {
      if (!line.startsWith('{')) return [];
      try {
        return [JSON.parse(line) as Record<string, any>];
      } catch {
        return [];
      }
    });
  }

  async waitForLog(pattern: RegExp, { since = 0, timeoutMs = 10_000 }: { since?: number; timeoutMs?: number } = {}): Promise<string> {
    let found: string | undefined;
    await waitFor(
      () => {
        found = this.err
          .slice(since)
          .split('\n')
          .find((line) => pattern.test(line));
        return found !== undefined;
      },
      { what: `replica ${this.name} to log ${pattern}`, timeoutMs },
    );
    return found!;
  }

  async api(method: string, path: string, token: string | undefined, body?: unknown): Promise<{ status: number; body: any }> {
    const res = await fetch(`${this.url}${path}`, {
      method,
      headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
    });
    const text = await res.text();
    return { status: res.status, body: text ? JSON.parse(text) : undefined };
  }

  attach(grant: { grantId: string; token: string }): Promise<CdpClient> {
    return CdpClient.connect(`${this.url.replace(/^http/, 'ws')}/v1/attach/${grant.grantId}`, { authorization: `Bearer ${grant.token}` });
  }

  async kill9(): Promise<void> {
    if (!this.running) return;
    this.proc!.kill('SIGKILL');
    await this.exited;
  }

  async stop(): Promise<void> {
    if (!this.running) return;
    this.proc!.kill('SIGTERM');
    await this.exited;
  }

  /** SIGTERM, then SIGKILL if the clean shutdown takes longer than `ms`. */
  async stopWithin(ms: number): Promise<void> {
    if (!this.running) return;
    this.proc!.kill('SIGTERM');
    const timer = setTimeout(() => this.proc?.kill('SIGKILL'), ms);
    await this.exited;
    clearTimeout(timer);
  }

  async restart(): Promise<void> {
    if (this.running) throw new Error(`replica ${this.name} is still running (pid ${this.pid}): stop or kill it first`);
    await this.start(this.port);
  }
}
