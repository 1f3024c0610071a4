import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before } from 'node:test';
import { startTarget, type TargetProcess } from './target';
import { basePolicy, startTestBroker, type TestBroker } from './testBroker';

/**
 * A target running a script the test writes (a module too large to keep as a fixture), and a broker on it, for the
 * enclosing describe: started before its tests, stopped and removed after them.
 */
export function useGeneratedApp(fileName: string, lines: readonly string[]): { readonly app: string; readonly target: TargetProcess; readonly broker: TestBroker } {
  let dir: string | undefined;
  const state = {} as { app: string; target: TargetProcess; broker: TestBroker };
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'loupe-generated-'));
    state.app = join(dir, fileName);
    writeFileSync(state.app, lines.join('\n'));
    state.target = await startTarget(state.app);
    state.broker = await startTestBroker(basePolicy(state.target.inspector));
  });
  after(async () => {
    await state.broker?.close();
    await state.target?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });
  return state;
}

/** A logpoint message with every part evaluated: on a loaded host a part can run out of the hit's budget (`<refused: …>`). */
export const whole = (message: string): boolean => !/<(refused|skipped)/.test(message);

/** Which of `secrets` reached the client (the frames it received) or the audit trail, once session `grant` has ended. */
export async function secretsShown(broker: TestBroker, frames: readonly string[], grant: string, secrets: readonly string[]): Promise<string[]> {
  await broker.waitForRecord('session.ended', (e) => e.grant === grant);
  const trail = JSON.stringify(await broker.sessionEvents());
  return secrets.filter((secret) => frames.some((f) => f.includes(secret)) || trail.includes(secret));
}
