import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';

export interface Child {
  readonly proc: ChildProcess;
  /** The first capture group of `ready` in the child's output. */
  readonly ready: string;
  /** Everything the child wrote so far (for error messages). */
  output(): string;
  /** SIGTERM, then SIGKILL after graceMs; resolves with the exit code or signal. */
  stop(graceMs?: number): Promise<string>;
}

/** Spawns a node child and waits until its stdout or stderr matches `ready`. */
export async function spawnNode(args: string[], ready: RegExp, options: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number; label: string }): Promise<Child> {
  const proc = spawn(process.execPath, args, { cwd: options.cwd, env: options.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const found = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${options.label} not ready within ${options.timeoutMs ?? 15000} ms:\n${output}`)), options.timeoutMs ?? 15000);
    const onData = (chunk: Buffer) => {
      output += chunk.toString('utf8');
      const match = ready.exec(output);
      if (match) {
        clearTimeout(timer);
        resolve(match[1] ?? match[0]);
      }
    };
    proc.stdout!.on('data', onData);
    proc.stderr!.on('data', onData);
    proc.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`${options.label} exited (${code ?? signal}) before it was ready:\n${output}`));
    });
  });
  return {
    proc,
    ready: found,
    output: () => output,
    async stop(graceMs = 5000) {
      if (proc.exitCode !== null || proc.signalCode !== null) return String(proc.exitCode ?? proc.signalCode);
      const exited = once(proc, 'exit');
      proc.kill('SIGTERM');
      const timer = setTimeout(() => proc.kill('SIGKILL'), graceMs);
      const [code, signal] = (await exited) as [number | null, string | null];
      clearTimeout(timer);
      return String(code ?? signal);
    },
  };
}
