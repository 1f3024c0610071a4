#!/usr/bin/env node
// `npm run fuzz`: the two fuzz suites at full count (100,000 frames each unless LOUPE_FUZZ_FRAMES says
// otherwise), one after the other, with node's test summary. LOUPE_FUZZ_SEED replays a run.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';

const root = join(import.meta.dirname, '..');
const env = { ...process.env, LOUPE_FUZZ_FRAMES: process.env.LOUPE_FUZZ_FRAMES || '100000' };
process.stdout.write(`fuzz: ${env.LOUPE_FUZZ_FRAMES} frames per suite${env.LOUPE_FUZZ_SEED ? `, seed ${env.LOUPE_FUZZ_SEED}` : ''}\n`);
const result = spawnSync(process.execPath, ['--import', 'tsx', '--test', '--test-concurrency=1', '--test-reporter=spec', 'test/fuzz/clientFrames.test.ts', 'test/fuzz/hostileTarget.test.ts'], {
  cwd: root,
  stdio: 'inherit',
  env,
});
process.exit(result.status ?? 1);
