import type { ChildProcess } from 'node:child_process';

/**
 * The URL a `loupe broker` child process prints once it listens (`LOUPE_BROKER_URL=…` on stdout, read across
 * chunks); rejects, with its stderr, if it exits first or says nothing within `timeoutMs`.
 */
export function brokerUrl(proc: ChildProcess, stderr: () => string, timeoutMs = 20_000): Promise<string> {
  return new Promise((resolve, reject) => {
    let out: string | undefined = '';
    const timer = setTimeout(() => reject(new Error(`no LOUPE_BROKER_URL within ${timeoutMs} ms: ${stderr()}`)), timeoutMs);
    proc.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
      if (out === undefined) return;
      out += chunk;
      const match = /^LOUPE_BROKER_URL=(\S+)$/m.exec(out);
      if (!match) return;
      out = undefined;
      clearTimeout(timer);
      resolve(match[1]!);
    });
    proc.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`broker exited ${code} before listening: ${stderr()}`));
    });
  });
}
