import { randomUUID } from 'node:crypto';
import { SignJWT, generateKeyPair } from 'jose';
import WebSocket from 'ws';
import type { CdpClient } from './cdpClient';
import { sleep, waitFor } from './wait';

/** One attach on a raw WebSocket: the HTTP status of the answer and how long it took (status 0 and Infinity after 10 s). */
export function rawAttach(url: string, headers: Record<string, string> = {}): Promise<{ status: number; ms: number; body: string }> {
  const started = performance.now();
  return new Promise((resolve) => {
    const socket = new WebSocket(url, { headers, perMessageDeflate: false });
    const timer = setTimeout(() => (socket.terminate(), resolve({ status: 0, ms: Infinity, body: '' })), 10_000);
    socket.once('unexpected-response', (_req, res) => {
      const ms = performance.now() - started;
      let body = '';
      res.setEncoding('utf8').on('data', (c: string) => (body += c));
      res.on('end', () => (clearTimeout(timer), socket.terminate(), resolve({ status: res.statusCode ?? 0, ms, body })));
    });
    socket.once('open', () => (clearTimeout(timer), socket.close(), resolve({ status: 101, ms: performance.now() - started, body: '' })));
    socket.once('error', () => undefined);
  });
}

/** A grant token of the right shape for `grantId`, signed with a key the broker never issued. */
export async function forgedGrantToken(grantId: string, sub: string): Promise<string> {
  const { privateKey } = await generateKeyPair('EdDSA', { crv: 'Ed25519' });
  return new SignJWT({}).setProtectedHeader({ alg: 'EdDSA' }).setIssuer('loupe-broker').setSubject(sub).setJti(grantId).setExpirationTime('5m').sign(privateKey);
}

/**
 * `n` bad attaches on one real grant, four kinds in turn: a forged signature, text that is no JWT, the real token on
 * an unknown grant id, and the real token with its signature changed.
 */
export async function badAttaches(grant: { grantId: string; token: string; attachUrl: string }, sub: string, n: number): Promise<{ url: string; token: string }[]> {
  const forged = await forgedGrantToken(grant.grantId, sub);
  return Array.from({ length: n }, (_, i) => {
    const kind = i % 4;
    if (kind === 0) return { url: grant.attachUrl, token: forged };
    if (kind === 1) return { url: grant.attachUrl, token: `garbage-${i}` };
    if (kind === 2) return { url: grant.attachUrl.replace(grant.grantId, randomUUID()), token: grant.token };
    return { url: grant.attachUrl, token: `${grant.token.slice(0, -6)}${i % 2 ? 'AAAAAA' : 'BBBBBB'}` };
  });
}

/**
 * Runs attaches from a separate process, as an attacker would (its sockets and handshakes cost the broker's
 * process nothing but the broker's own work): starts it, waits until it is ready, and returns `fire`, which
 * sends every attach at once and resolves with each answer's status and time.
 */
export async function floodFromChild(attempts: readonly { url: string; token: string }[]): Promise<{ fire(): Promise<{ status: number; ms: number }[]>; stop(): void }> {
  const { spawn } = await import('node:child_process');
  const child = spawn(process.execPath, ['--import', 'tsx', __filename, 'child'], { stdio: ['pipe', 'pipe', 'inherit'] });
  let out = '';
  child.stdout!.setEncoding('utf8').on('data', (c: string) => (out += c));
  const exited = new Promise<never>((_, reject) => child.once('exit', (code) => reject(new Error(`flood process exited (${code})`))));
  exited.catch(() => undefined);
  const line = async (prefix: string) => {
    const printed = waitFor(() => out.split('\n').find((l) => l.startsWith(prefix)), { what: `the flood process to print "${prefix}"`, timeoutMs: 300_000, intervalMs: 10 });
    return (await Promise.race([printed, exited])).slice(prefix.length);
  };
  child.stdin!.write(JSON.stringify(attempts) + '\n');
  await line('ready');
  return {
    async fire() {
      child.stdin!.write('go\n');
      return JSON.parse(await line('results ')) as { status: number; ms: number }[];
    },
    stop: () => void child.kill('SIGKILL'),
  };
}

if (require.main === module && process.argv[2] === 'child') {
  let input = '';
  let attempts: { url: string; token: string }[] | undefined;
  process.stdin.setEncoding('utf8').on('data', (chunk: string) => {
    input += chunk;
    const lines = input.split('\n');
    input = lines.pop()!;
    for (const l of lines) {
      if (!attempts) {
        attempts = JSON.parse(l) as { url: string; token: string }[];
        process.stdout.write('ready\n');
      } else if (l === 'go') {
        void Promise.all(attempts.map((a) => rawAttach(a.url, { authorization: `Bearer ${a.token}` }))).then((results) => {
          process.stdout.write(`results ${JSON.stringify(results.map(({ status, ms }) => ({ status, ms: Number.isFinite(ms) ? ms : 1e9 })))}\n`);
        });
      }
    }
  });
}

/**
 * Each client evaluates `1 + 2` for `ms`, once per `paceMs` (0: back to back); returns every round trip in ms.
 * Paced, the sessions are busy debugging rather than a benchmark loop that saturates the broker.
 */
export async function evaluateFor(clients: readonly CdpClient[], ms: number, paceMs: number): Promise<number[]> {
  const until = performance.now() + ms;
  const latencies: number[] = [];
  await Promise.all(
    clients.map(async (client) => {
      while (performance.now() < until) {
        const t = performance.now();
        await client.call('Runtime.evaluate', { expression: '1 + 2', returnByValue: true });
        latencies.push(performance.now() - t);
        if (paceMs > 0) await sleep(Math.max(0, t + paceMs - performance.now())); // pacing a load
      }
    }),
  );
  return latencies;
}
