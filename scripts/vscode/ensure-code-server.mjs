// Makes sure code-server (a real VS Code 1.139 server + workbench on Node 24) is installed for the VS Code tests, and
// returns the variables for the tests' environment. Idempotent: scripts/vscode/install.sh skips what is there, so
// a second run takes well under a second; the first takes about 3-4 minutes (npm registry + native builds).
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';

export function ensureCodeServer({ env = process.env, out = process.stdout } = {}) {
  if (env.LOUPE_SKIP_VSCODE === '1') {
    out.write('\n== code-server: not installed, LOUPE_SKIP_VSCODE=1 asks for a fast run (the VS Code tests will be skipped)\n');
    return {};
  }
  const script = join(import.meta.dirname, 'install.sh');
  out.write(`\n== code-server (VS Code 1.139 on Node 24, ${env.LOUPE_VSCODE_HOME || '/tmp/loupe-vscode'})\n`);
  const started = Date.now();
  const result = spawnSync('bash', [script], { stdio: ['ignore', 'pipe', 'inherit'], encoding: 'utf8', env });
  const settings = {};
  for (const line of (result.stdout ?? '').split('\n')) {
    const m = /^([A-Z][A-Z0-9_]*)=(.*)$/.exec(line.trim());
    if (m) settings[m[1]] = m[2];
  }
  if (result.status !== 0 || !settings.CODE_SERVER) {
    out.write(
      `\ncode-server could not be installed (bash ${script}: exit ${result.status ?? result.signal}). The VS Code tests need it, so the tests were not run.\nSet LOUPE_SKIP_VSCODE=1 to run everything else.\n`,
    );
    process.exit(1);
  }
  out.write(`code-server ready (${((Date.now() - started) / 1000).toFixed(1)} s)\n`);
  return { LOUPE_CODE_SERVER: settings.CODE_SERVER, LOUPE_NODE24: settings.NODE24 };
}
