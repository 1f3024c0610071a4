// Builds the TypeScript fixture service (test/fixtures/ts-service) with source maps, "deploys" the compiled
// files into another folder (as a container would hold them under /app), and starts it as a real target.
import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fixtures, markerLine, startTarget, type TargetProcess } from '../support/target';

export const serviceRoot = join(fixtures, 'ts-service');
export const serviceTs = join(serviceRoot, 'src', 'service.ts');
export const pricingTs = join(serviceRoot, 'src', 'pricing.ts');

/** 1-based line of a `// BREAK:<name>` marker, as DAP counts lines. */
export const line = (file: string, name: string) => markerLine(file, name) + 1;

let built = false;
export function buildService(): void {
  if (built) return;
  const tsc = join(serviceRoot, '..', '..', '..', 'node_modules', 'typescript', 'bin', 'tsc');
  const r = spawnSync(process.execPath, [tsc, '-p', serviceRoot], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`tsc -p ${serviceRoot} failed: ${r.stdout}${r.stderr}`);
  built = true;
}

export interface DeployedService {
  readonly target: TargetProcess;
  /** The folder the target runs from (remoteRoot); the fixture folder is localRoot. */
  readonly remoteRoot: string;
  stop(): Promise<void>;
}

export async function startService(env: Record<string, string> = {}): Promise<DeployedService> {
  buildService();
  const remoteRoot = mkdtempSync(join(tmpdir(), 'loupe-srv-'));
  cpSync(join(serviceRoot, 'dist'), join(remoteRoot, 'dist'), { recursive: true });
  const target = await startTarget(join(remoteRoot, 'dist', 'service.js'), env);
  return {
    target,
    remoteRoot,
    async stop() {
      await target.stop();
      rmSync(remoteRoot, { recursive: true, force: true });
    },
  };
}
