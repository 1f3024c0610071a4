// needs: code-server, chromium
// Runs the extension's integration tests (test/extension/suite) inside a real VS Code through the standard
// @vscode/test-electron runTests(), with vscodeExecutablePath pointing at scripts/vscode/code-server-as-vscode.sh
// (code-server stands in for an Electron VS Code, which cannot be downloaded here). A real broker and target
// run in this process; their addresses reach the extension host through extensionTestsEnv.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { runTests } from '@vscode/test-electron';
import { build } from 'esbuild';
import { basePolicy, startTestBroker, type TestBroker } from '../support/testBroker';
import { line, serviceRoot, serviceTs, startService, type DeployedService } from '../dap/tsService';
import { root, scripts, vscodeSkipReason } from './codeServer';

const skip = vscodeSkipReason();
if (skip) process.stdout.write(`# SKIP VS Code integration tests: ${skip}\n`);

describe('extension integration tests in VS Code (runTests + code-server shim)', { skip }, () => {
  let service: DeployedService;
  let broker: TestBroker;
  let outDir: string;

  before(async () => {
    service = await startService({ TICK_MS: '200' });
    broker = await startTestBroker(basePolicy(service.target.inspector));
    outDir = mkdtempSync(join(tmpdir(), 'loupe-it-'));
    await build({
      entryPoints: [join(__dirname, 'suite', 'index.ts')],
      bundle: true,
      platform: 'node',
      format: 'cjs',
      target: 'node20',
      external: ['vscode'],
      outfile: join(outDir, 'index.js'),
      logLevel: 'warning',
    });
  });
  after(async () => {
    await broker?.close();
    await service?.stop();
    if (outDir) rmSync(outDir, { recursive: true, force: true });
  });

  it('runs the suite and every test passes', { timeout: 300_000 }, async () => {
    const code = await runTests({
      vscodeExecutablePath: join(scripts, 'code-server-as-vscode.sh'),
      extensionDevelopmentPath: root,
      extensionTestsPath: join(outDir, 'index.js'),
      launchArgs: [serviceRoot],
      extensionTestsEnv: {
        LOUPE_IT_BROKER_URL: broker.url,
        LOUPE_IT_TOKEN: await broker.token('dev', ['devs']),
        LOUPE_IT_SERVICE_TS: serviceTs,
        LOUPE_IT_LINE: String(line(serviceTs, 'handle')),
        LOUPE_IT_LOCAL_ROOT: serviceRoot,
        LOUPE_IT_REMOTE_ROOT: service.remoteRoot,
      },
    });
    assert.equal(code, 0);
    await service.target.ticksAdvance(3, 15_000);
  });
});
