import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { fixtures, startTarget, type TargetProcess } from './target';
import type { TestBroker } from './testBroker';
import type { CdpClient } from './cdpClient';
import { waitFor } from './wait';

/** Frames per suite: LOUPE_FUZZ_FRAMES, or a count small enough for the default CI run. `npm run fuzz` sets 100000. */
export function fuzzFrames(ciDefault: number): number {
  const raw = process.env.LOUPE_FUZZ_FRAMES;
  const n = raw === undefined || raw === '' ? ciDefault : Number(raw);
  if (!Number.isSafeInteger(n) || n < 1) throw new Error(`LOUPE_FUZZ_FRAMES must be a positive integer, not ${raw}`);
  return n;
}

/** A seed to replay a run: LOUPE_FUZZ_SEED, or a fresh one (printed by the suite). */
export const fuzzSeed = (): number => (process.env.LOUPE_FUZZ_SEED ? Number(process.env.LOUPE_FUZZ_SEED) : (Date.now() ^ (process.pid << 8)) >>> 0);

export const prototypeNames = Object.getOwnPropertyNames(Object.prototype);

/** Keys a hostile sender likes: Object.prototype's names, CDP's own names, anything. */
export const keyArb = (known: readonly string[]): fc.Arbitrary<string> =>
  fc.oneof(fc.constantFrom(...prototypeNames), fc.constantFrom(...prototypeNames, ...known), fc.string({ maxLength: 12 }), fc.string({ unit: 'binary', maxLength: 8 }));

/** Any JSON value, with prototype-named and CDP-named keys at any depth. */
export const jsonArb = (known: readonly string[]): fc.Arbitrary<unknown> =>
  fc.letrec<{ value: unknown }>((tie) => ({
    value: fc.oneof(
      { depthSize: 'small', maxDepth: 6 },
      fc.constant(null),
      fc.boolean(),
      fc.integer(),
      fc.double(),
      fc.constantFrom(0, -1, 2 ** 53, -(2 ** 53), 1e308, 0.5),
      fc.string({ maxLength: 40 }),
      fc.string({ unit: 'binary', maxLength: 20 }),
      fc.array(tie('value'), { maxLength: 5 }),
      fc.dictionary(keyArb(known), tie('value'), { maxKeys: 6 }),
    ),
  })).value;

/** JSON text nested `depth` deep, as arrays or as objects under `key`. */
export const deepJson = (depth: number, key?: string): string => (key === undefined ? `${'['.repeat(depth)}${']'.repeat(depth)}` : `${`{${JSON.stringify(key)}:`.repeat(depth)}1${'}'.repeat(depth)}`);

/** The fuzz suites' real target: a Node process with an HTTP server and a tick. */
export interface HttpTarget extends TargetProcess {
  /** One HTTP request to the target, within a bound: proof it serves. */
  serves(timeoutMs?: number): Promise<void>;
}

export async function startHttpTarget(): Promise<HttpTarget> {
  const dir = mkdtempSync(join(tmpdir(), 'loupe-fuzz-target-'));
  const portFile = join(dir, 'port');
  const target = await startTarget(join(fixtures, 'http-app.js'), { PORT_FILE: portFile });
  const port = await waitFor(() => Number(readFileSync(portFile, 'utf8')), { what: 'the HTTP target to report its port', timeoutMs: 5000 }).finally(() =>
    rmSync(dir, { recursive: true, force: true }),
  );
  return {
    ...target,
    async serves(timeoutMs = 5000) {
      const res = await fetch(`http://127.0.0.1:${port}/`, { signal: AbortSignal.timeout(timeoutMs) });
      if (res.status !== 200) throw new Error(`target answered HTTP ${res.status}`);
      await res.text();
    },
  };
}

/** After each batch: the broker answers /healthz, the victim session evaluates, the target serves HTTP. */
export async function assertAllWell(broker: TestBroker, victim: CdpClient, target: HttpTarget, round: number, logged: readonly string[] = []): Promise<void> {
  // What the broker said of its audit trail: why a record was refused, when a failure says only that it was.
  const auditLines = () => {
    const lines = logged.filter((line) => /^audit:/.test(line)).slice(-10);
    return lines.length > 0 ? `; the broker logged: ${lines.join(' | ')}` : '';
  };
  const health = await fetch(`${broker.url}/healthz`, { signal: AbortSignal.timeout(5000) });
  if (health.status !== 200) throw new Error(`/healthz answered ${health.status} after round ${round}`);
  if (victim.socket.readyState !== victim.socket.OPEN) {
    const { code, reason } = await victim.closed;
    throw new Error(`the victim session was closed after round ${round} (${code} ${reason})${auditLines()}`);
  }
  const reply = await victim.send('Runtime.evaluate', { expression: `${round} + 1`, returnByValue: true });
  if (reply.result?.result?.value !== round + 1) throw new Error(`the victim session's evaluation failed after round ${round}: ${JSON.stringify(reply).slice(0, 300)}${auditLines()}`);
  await target.serves();
  await target.ticksAdvance(1, 5000);
}

/**
 * fc.check with a short failure report: the error, the seed and path to replay it, and the failing batch with
 * each frame cut to 300 characters (a counterexample of megabyte frames is unreadable).
 */
export async function checkProperty<T>(property: fc.IAsyncProperty<T>, params: fc.Parameters<T>): Promise<void> {
  const result = await fc.check(property, params);
  if (!result.failed) return;
  const shown = JSON.stringify(result.counterexample, (_key, value) => (typeof value === 'string' && value.length > 300 ? `${value.slice(0, 300)}… (${value.length} chars)` : value));
  const error = result.errorInstance instanceof Error ? (result.errorInstance.stack ?? result.errorInstance.message) : String(result.errorInstance);
  throw new Error(`property failed after ${result.numRuns} run(s) (seed ${result.seed}, path ${result.counterexamplePath}): ${error}\ncounterexample: ${shown.slice(0, 20_000)}`);
}
