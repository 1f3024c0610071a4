import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { once } from 'node:events';
import { strict as assert } from 'node:assert';
import type { CdpClient } from './cdpClient';
import { waitFor } from './wait';

export const fixtures = join(__dirname, '..', 'fixtures');

/** The 0-based line of a `// BREAK:<name>` marker in a fixture file, as CDP counts lines. */
export function markerLine(file: string, name: string): number {
  const index = readFileSync(file, 'utf8')
    .split('\n')
    .findIndex((line) => line.includes(`// BREAK:${name}`));
  if (index < 0) throw new Error(`no BREAK:${name} in ${file}`);
  return index;
}

export interface TargetProcess {
  readonly proc: ChildProcess;
  /** `127.0.0.1:PORT` of the inspector, as a policy names it. */
  readonly inspector: string;
  readonly wsUrl: string;
  /** The last tick counter printed by the fixture. */
  lastTick(): number;
  /** Resolves when the fixture prints a tick greater than the current one + n: proof it is running. */
  ticksAdvance(n?: number, timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}

/** Starts a real Node process with its inspector on a free loopback port. */
export async function startTarget(file = join(fixtures, 'app.js'), env: Record<string, string> = {}): Promise<TargetProcess> {
  const proc = spawn(process.execPath, ['--inspect=127.0.0.1:0', file], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let tick = 0;
  const waiters: { above: number; resolve: () => void }[] = [];
  let stdoutBuffer = '';
  proc.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    stdoutBuffer += chunk;
    const lines = stdoutBuffer.split('\n');
    stdoutBuffer = lines.pop()!;
    for (const line of lines) {
      const match = /^tick (\d+)$/.exec(line);
      if (!match) continue;
      tick = Number(match[1]);
      for (const w of [...waiters]) if (tick > w.above) (waiters.splice(waiters.indexOf(w), 1), w.resolve());
    }
  });
  const wsUrl = await new Promise<string>((resolve, reject) => {
    let stderr = '';
    const onData = (chunk: string) => {
      stderr += chunk;
      const match = /Debugger listening on (ws:\/\/\S+)/.exec(stderr);
      if (match) {
        proc.stderr!.off('data', onData);
        resolve(match[1]!);
      }
    };
    proc.stderr!.setEncoding('utf8').on('data', onData);
    proc.once('exit', (code) => reject(new Error(`target exited (${code}) before its inspector listened: ${stderr}`)));
  });
  proc.stderr!.resume();
  const inspector = new URL(wsUrl).host;
  return {
    proc,
    inspector,
    wsUrl,
    lastTick: () => tick,
    ticksAdvance(n = 2, timeoutMs = 5000) {
      const above = tick + n;
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`target did not advance past tick ${above} within ${timeoutMs} ms (it is held paused or dead; last tick ${tick})`)), timeoutMs);
        waiters.push({ above, resolve: () => (clearTimeout(timer), resolve()) });
      });
    },
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) {
        proc.kill('SIGKILL');
        await once(proc, 'exit');
      }
    },
  };
}

/**
 * Proof that the target is held at a pause now, asked through `observer`, a direct Debugger-enabled client (it sees
 * every pause, whoever caused it): only a paused frame answers an evaluation. The tick count must not have moved.
 */
export async function assertHeld(observer: CdpClient, target: TargetProcess, message = 'the target is held at the breakpoint'): Promise<void> {
  const held = target.lastTick();
  const paused = await waitFor(
    () => {
      const last = observer.events.filter((e) => e.method === 'Debugger.paused' || e.method === 'Debugger.resumed').at(-1);
      return last?.method === 'Debugger.paused' && last;
    },
    { what: `${message}: the observer to see the pause` },
  );
  const reply = await observer.send('Debugger.evaluateOnCallFrame', { callFrameId: paused.params.callFrames[0].callFrameId, expression: '1 + 1', returnByValue: true });
  assert.equal(reply.result?.result?.value, 2, `${message} (an evaluation in the paused frame: ${JSON.stringify(reply)})`);
  assert.equal(target.lastTick(), held, message);
}
