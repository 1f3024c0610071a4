import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';

const root = join(__dirname, '..', '..');

export interface ConnectProcess {
  readonly proc: ChildProcess;
  /** Everything it printed on stderr so far (what a person reads). */
  stderr(): string;
  stdout(): string;
  /** Resolves with the URL of LOUPE_CONNECT_URL=…; rejects if it exits first. */
  readonly url: Promise<string>;
  /** Resolves when stderr matches. */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<RegExpExecArray>;
  /** Its exit status (or the signal that killed it). */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  kill(signal?: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Runs `loupe connect …` as a real child process, from the CLI's source through tsx. */
export function startConnect(args: string[], env: Record<string, string | undefined> = {}): ConnectProcess {
  const proc = spawn(process.execPath, ['--import', 'tsx', join(root, 'broker', 'cli.ts'), 'connect', ...args], {
    cwd: root,
    env: { ...process.env, LOUPE_BROKER_URL: '', LOUPE_TOKEN: '', LOUPE_OIDC_ISSUER: '', LOUPE_OIDC_CLIENT_ID: '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  const listeners = new Set<() => void>();
  proc.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    out += chunk;
    for (const l of [...listeners]) l();
  });
  proc.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
    err += chunk;
    for (const l of [...listeners]) l();
  });
  const exited = once(proc, 'exit').then(([code, signal]) => ({ code: code as number | null, signal: signal as NodeJS.Signals | null }));
  const waitOn = <T>(read: () => T | undefined, what: string, timeoutMs: number): Promise<T> =>
    new Promise((resolve, reject) => {
      const check = () => {
        const value = read();
        if (value === undefined) return;
        done();
        resolve(value);
      };
      const timer = setTimeout(() => (done(), reject(new Error(`loupe connect: no ${what} within ${timeoutMs} ms\nstdout: ${out}\nstderr: ${err}`))), timeoutMs);
      const done = () => {
        clearTimeout(timer);
        listeners.delete(check);
      };
      listeners.add(check);
      void exited.then(({ code, signal }) => {
        if (!listeners.has(check)) return;
        check();
        if (!listeners.has(check)) return;
        done();
        reject(new Error(`loupe connect exited (${code ?? signal}) before ${what}\nstdout: ${out}\nstderr: ${err}`));
      });
      check();
    });
  const url = waitOn(() => /^LOUPE_CONNECT_URL=(\S+)$/m.exec(out)?.[1], 'LOUPE_CONNECT_URL', 30_000);
  url.catch(() => undefined);
  return {
    proc,
    stderr: () => err,
    stdout: () => out,
    url,
    waitFor: (pattern, timeoutMs = 15_000) => waitOn(() => pattern.exec(err) ?? undefined, `stderr matching ${pattern}`, timeoutMs),
    exited,
    async kill(signal = 'SIGINT') {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      return exited;
    },
  };
}
