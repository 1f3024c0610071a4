// The broker as a separate process (node dist/cli.js broker), as in production: its own event loop, its own
// RSS. Identity tokens come from `node dist/cli.js token` (the development issuer), minted once per broker.
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { spawnNode, type Child } from './procs';
import { RttClient } from './rttClient';
import { nowMs } from './stats';

const root = join(__dirname, '..', '..');
const cli = join(root, 'dist', 'cli.js');

export interface BrokerProcess {
  readonly child: Child;
  readonly url: string;
  readonly configFile: string;
}

/** Starts `node dist/cli.js broker --config <stateDir>/bench-broker.yaml` with `policy` (its stateDir set here). */
export async function startBrokerProcess(policy: Record<string, unknown>, stateDir: string, label = 'broker (dist/cli.js)', nodeArgs: readonly string[] = []): Promise<BrokerProcess> {
  mkdirSync(stateDir, { recursive: true });
  const configFile = join(stateDir, 'bench-broker.yaml');
  writeFileSync(configFile, stringify({ ...policy, stateDir: join(stateDir, 'state') }));
  const child = await spawnNode([...nodeArgs, cli, 'broker', '--config', configFile], /LOUPE_BROKER_URL=(\S+)/, { cwd: root, label });
  return { child, url: child.ready, configFile };
}

/** An identity token of user "dev", group "devs" (the access rule of basePolicy), from the development issuer. */
export function mintIdentity(configFile: string): string {
  return execFileSync(process.execPath, [cli, 'token', '--config', configFile, '--user', 'dev', '--groups', 'devs'], { encoding: 'utf8' }).trim();
}

export interface GrantRequest {
  target?: string;
  mode?: 'pause' | 'snapshot';
  durationSeconds?: number;
  reason?: string;
}

/** POST /v1/grants; throws unless 201. */
export async function requestGrant(url: string, identity: string, request: GrantRequest = {}): Promise<{ grantId: string; token: string; attachUrl: string }> {
  const res = await fetch(`${url}/v1/grants`, {
    method: 'POST',
    headers: { authorization: `Bearer ${identity}`, 'content-type': 'application/json' },
    body: JSON.stringify({ target: 'app', mode: 'pause', durationSeconds: 600, reason: 'benchmark', ...request }),
  });
  const body = (await res.json()) as { grantId?: string; attachUrl?: string; token?: string };
  if (res.status !== 201 || !body.attachUrl || !body.token || !body.grantId) throw new Error(`grant refused: ${res.status} ${JSON.stringify(body)}`);
  return body as { grantId: string; token: string; attachUrl: string };
}

/** Grant, then attach: one session per grant. Returns the client and how long each step took (ms). */
export async function grantAndAttach(url: string, identity: string, request: GrantRequest = {}): Promise<{ client: RttClient; grantMs: number; attachMs: number }> {
  const t0 = nowMs();
  const grant = await requestGrant(url, identity, request);
  const t1 = nowMs();
  const client = await RttClient.connect(grant.attachUrl, { headers: { authorization: `Bearer ${grant.token}` } });
  return { client, grantMs: t1 - t0, attachMs: nowMs() - t1 };
}

/** Resident set size of a process in bytes (VmRSS of /proc/<pid>/status); NaN where /proc is missing. */
export function rssBytes(pid: number): number {
  try {
    const match = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match ? Number(match[1]) * 1024 : NaN;
  } catch {
    return NaN;
  }
}
