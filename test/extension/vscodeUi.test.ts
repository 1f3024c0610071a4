// needs: code-server, chromium
// End to end in a real VS Code: the packaged .vsix installed in code-server, driven through headless Chromium as a
// person would: sign in, "Loupe: Attach to Production…" from the command palette against a real broker and a real
// target running the compiled TypeScript service, a breakpoint in the .ts source, the Variables view (values previewed
// as js-debug writes them), a refused evaluation in the Debug Console, the status bar countdown, End Session.
// Screenshots go to test-artifacts/vscode/.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { basePolicy, startTestBroker, type TestBroker } from '../support/testBroker';
import { line, serviceRoot, serviceTs, startService, type DeployedService } from '../dap/tsService';
import { openBrowser, root, startCodeServer, vscodeSkipReason, Workbench, type CodeServer } from './codeServer';

const skip = vscodeSkipReason();
if (skip) process.stdout.write(`# SKIP VS Code UI test: ${skip}\n`);

describe('VS Code (code-server) end to end', { skip }, () => {
  let service: DeployedService;
  let broker: TestBroker;
  let codeServer: CodeServer;
  let workspace: string;
  let vsixDir: string;

  before(async () => {
    service = await startService({ TICK_MS: '200' });
    const policy = basePolicy(service.target.inspector);
    policy.targets.app.maxPauseSeconds = 120; // a UI run holds the pause longer than the default watchdog's 30 s
    // The developer also owns the target: the refused evaluation below fires the refusals alert, which the Loupe
    // Alerts view lists and notifies.
    policy.alerting = { rules: { firstAttach: false } };
    policy.targets.app.alerts = { refusals: { count: 1, withinSeconds: 60 } };
    broker = await startTestBroker(policy);
    // The .vsix exactly as `npm run package` builds it (dist/ is fresh: npm test builds first).
    vsixDir = mkdtempSync(join(tmpdir(), 'loupe-vsix-'));
    const vsce = spawnSync(
      process.execPath,
      [
        join(root, 'node_modules', '@vscode', 'vsce', 'vsce'),
        'package',
        '--no-dependencies',
        '--allow-missing-repository',
        '--skip-license',
        '--no-rewrite-relative-links',
        '-o',
        join(vsixDir, 'loupe.vsix'),
      ],
      { cwd: root, encoding: 'utf8' },
    );
    assert.equal(vsce.status, 0, `vsce package: ${vsce.stdout}${vsce.stderr}`);
    // The developer's checkout of the service: sources, compiled output and a launch.json mapping it onto the target.
    workspace = mkdtempSync(join(tmpdir(), 'loupe-ws-'));
    for (const part of ['src', 'dist', 'tsconfig.json']) cpSync(join(serviceRoot, part), join(workspace, part), { recursive: true });
    mkdirSync(join(workspace, '.vscode'));
    writeFileSync(
      join(workspace, '.vscode', 'launch.json'),
      JSON.stringify(
        {
          version: '0.2.0',
          configurations: [
            { type: 'loupe', request: 'attach', name: 'Loupe: app', target: 'app', localRoot: '${workspaceFolder}', remoteRoot: service.remoteRoot, outFiles: ['${workspaceFolder}/dist/**/*.js'] },
          ],
        },
        null,
        2,
      ),
    );
    codeServer = await startCodeServer({ vsix: [join(vsixDir, 'loupe.vsix')], settings: { 'loupe.brokerUrl': broker.url, 'loupe.alerts.refreshSeconds': 5 } });
  });

  after(async () => {
    codeServer?.stop();
    await broker?.close();
    await service?.stop();
    if (workspace) rmSync(workspace, { recursive: true, force: true });
    if (vsixDir) rmSync(vsixDir, { recursive: true, force: true });
  });

  it('attaches from the command palette, stops at a .ts breakpoint, shows variables, refuses a side effect, ends the session', { timeout: 300_000 }, async () => {
    const t0 = Date.now();
    const log = (...a: unknown[]) => process.stdout.write(`# [${((Date.now() - t0) / 1000).toFixed(1)}s] ${a.join(' ')}\n`);
    const { page, close } = await openBrowser();
    const wb = new Workbench(page, log);
    try {
      await page.goto(`${codeServer.url}/?folder=${encodeURIComponent(workspace)}`);
      await page.waitForSelector('.monaco-workbench .statusbar', { timeout: 60_000 });
      log('workbench loaded');
      await wb.run('Loupe: Sign In…');
      await wb.type(await broker.token('dev', ['devs', 'owners']), { title: 'Loupe: Sign In' });
      await wb.expectText(/signed in to/);
      const handleLine = line(serviceTs, 'handle');
      await wb.openFile('service.ts', handleLine);
      await wb.run('Debug: Toggle Breakpoint');
      await wb.shot('01-breakpoint-set');
      await wb.run('Loupe: Attach to Production…');
      await wb.pick('app');
      await wb.pick('pause');
      await wb.type('5', { title: 'duration' });
      await wb.type('E2E: why do gold orders total wrong?', { title: 'reason' });
      await wb.expectText(/Paused on breakpoint/i, 60_000);
      log('paused on the breakpoint');
      const localScope = page.locator('.debug-variables .monaco-list-row', { hasText: /^\s*Local\s*$/ }).first();
      await localScope.waitFor({ state: 'visible', timeout: 20_000 });
      if ((await localScope.getAttribute('aria-expanded')) !== 'true') await localScope.click();
      // Values as js-debug writes them: strings quoted, objects by their preview (not a bare "Object").
      await wb.expectRow(/label\s*[:=]?\s*'order-\d+'/);
      await wb.expectRow(/order\s*[:=]?\s*\{id: \d+, customer: \{…\}, items: Array\(2\)\}/);
      await wb.expectRow(new RegExp(`handle\\s*service\\.ts\\s*${handleLine}:\\d+`));
      await wb.expectText(/Loupe app \d+:\d\d/, 10_000);
      await wb.shot('02-paused-variables');
      // A side-effecting evaluation in the Debug Console: the broker's refusal is the result.
      const repl = page.locator('.repl-input-wrapper .monaco-editor');
      if (!(await repl.isVisible())) await wb.run('Debug Console: Focus on Debug Console View');
      await repl.click();
      await page.keyboard.type('processed = 0');
      await page.keyboard.press('Enter');
      await wb.expectRow(/Refused by Loupe: .*side effect/, 20_000);
      await page.keyboard.type('order.customer.name');
      await page.keyboard.press('Enter');
      await wb.expectRow(/'(Ada|Grace)'/, 20_000);
      await page.keyboard.type('order.customer');
      await page.keyboard.press('Enter');
      await wb.expectRow(/\{name: '(Ada|Grace)', tier: '(basic|gold)'\}/, 20_000);
      await wb.shot('03-debug-console-refusal');
      // The owner is told about the alert the refusal fired, and "Show Alerts" opens the Loupe Alerts view with it.
      await wb.expectText(/Loupe alert on app: refusals \(dev\): 1 refusals within 60 s/, 30_000);
      await wb.shot('03b-alert-notification');
      await page.locator('.notification-toast .monaco-button', { hasText: 'Show Alerts' }).first().click();
      await wb.expectRow(/refusals · app\s*dev · \d\d:\d\d:\d\d · 1 refusals within 60 s \(threshold 1\)/, 20_000);
      await wb.shot('03c-alerts-view');
      await wb.run('Loupe: End Session');
      await service.target.ticksAdvance(3, 15_000);
      log('session ended; the target runs on');
      await wb.shot('04-session-ended');
      assert.equal(service.target.proc.exitCode, null);
    } catch (err) {
      await wb.shot('error').catch(() => undefined);
      throw err;
    } finally {
      await close();
    }
  });
});
