// The shipped bundles (dist/), built by `npm test` before any test file runs. A file run on its own builds them once
// if they are missing; never rebuilds them, since other test files run their processes from dist/ at the same time.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

export const root = join(__dirname, '..', '..');
export const cli = join(root, 'dist', 'cli.js');

export function ensureBuilt(): string {
  if (!existsSync(cli)) {
    const build = spawnSync(process.execPath, [join(root, 'esbuild.mjs')], { cwd: root, encoding: 'utf8' });
    assert.equal(build.status, 0, `node esbuild.mjs failed: ${build.stderr}`);
  }
  return cli;
}
