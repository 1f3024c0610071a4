// needs: code-server, chromium
// VS Code's own JavaScript debugger (js-debug, built into code-server) attached by port to `loupe connect`, which
// relays to the broker, with a plain `node` attach configuration: a breakpoint, variables, the Debug Console, a refusal that reads
// as Loupe's, no `refusals` alert from what js-debug asks at attach, and the target alive and serving after
// `vscode.debug.stopDebugging()` and after the toolbar's Disconnect (js-debug kills a pid it learns on stop).
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { basePolicy, startTestBroker, type TestBroker } from '../support/testBroker';
import { fixtures, markerLine, startTarget, type TargetProcess } from '../support/target';
import { waitFor } from '../support/wait';
import { openBrowser, startCodeServer, vscodeSkipReason, Workbench, type CodeServer } from './codeServer';
import { buildStopProbe, startDebugging, startLoupeConnect, writeLaunch } from './jsDebugSupport';

const skip = vscodeSkipReason();
if (skip) process.stdout.write(`# SKIP js-debug test: ${skip}\n`);

async function served(portFile: string): Promise<{ counter: number; served: number }> {
  const port = Number(readFileSync(portFile, 'utf8'));
  const res = await fetch(`http://127.0.0.1:${port}/`, { signal: AbortSignal.timeout(5000) });
  return (await res.json()) as { counter: number; served: number };
}

describe('js-debug (VS Code built-in JavaScript debugger) through the broker', { skip }, () => {
  let target: TargetProcess;
  let broker: TestBroker;
  let codeServer: CodeServer;
  let workspace: string;
  let vsixDir: string;
  let portFile: string;
  const file = 'http-app.js';

  before(async () => {
    // The developer's checkout is the folder the target runs from, so js-debug maps paths one to one.
    workspace = mkdtempSync(join(tmpdir(), 'loupe-jsd-'));
    cpSync(join(fixtures, file), join(workspace, file));
    portFile = join(workspace, 'port');
    target = await startTarget(join(workspace, file), { TICK_MS: '200', PORT_FILE: portFile });
    await waitFor(
      () => {
        try {
          return Number(readFileSync(portFile, 'utf8')) > 0;
        } catch {
          return false;
        }
      },
      { what: 'the target to listen', timeoutMs: 10_000 },
    );
    const policy = basePolicy(target.inspector);
    policy.targets.app.maxPauseSeconds = 120;
    policy.alerting = { rules: { firstAttach: false } };
    // Strict on purpose: three refusals within a minute fire. What js-debug asks at attach must not count.
    policy.targets.app.alerts = { refusals: { count: 3, withinSeconds: 60 } };
    broker = await startTestBroker(policy);
    vsixDir = mkdtempSync(join(tmpdir(), 'loupe-vsix-'));
    codeServer = await startCodeServer({ vsix: [buildStopProbe(vsixDir)] });
  });

  after(async () => {
    codeServer?.stop();
    await broker?.close();
    await target?.stop();
    if (workspace) rmSync(workspace, { recursive: true, force: true });
    if (vsixDir) rmSync(vsixDir, { recursive: true, force: true });
  });

  it('breaks, shows variables and evaluates; refusals read as Loupe; no alert at attach; stopping never kills the target', { timeout: 400_000 }, async () => {
    const t0 = Date.now();
    const log = (...a: unknown[]) => process.stdout.write(`# [${((Date.now() - t0) / 1000).toFixed(1)}s] ${a.join(' ')}\n`);
    const { page, close } = await openBrowser();
    const wb = new Workbench(page, log);
    const name = 'Attach through Loupe';
    const { port, connect } = await startLoupeConnect(broker);
    try {
      writeLaunch(workspace, name, port);
      await page.goto(`${codeServer.url}/?folder=${encodeURIComponent(workspace)}`);
      await page.waitForSelector('.monaco-workbench .statusbar', { timeout: 60_000 });
      log('workbench loaded');
      const breakLine = markerLine(join(workspace, file), 'work') + 1;
      await wb.openFile(file, breakLine);
      await wb.run('Debug: Toggle Breakpoint');
      await startDebugging(wb, name);
      await wb.expectText(/Paused on breakpoint/i, 60_000);
      log('paused on the breakpoint');
      const session = await broker.waitForRecord('session.started');
      const localScope = page.locator('.debug-variables .monaco-list-row', { hasText: /^\s*Local/ }).first();
      await localScope.waitFor({ state: 'visible', timeout: 20_000 });
      if ((await localScope.getAttribute('aria-expanded')) !== 'true') await localScope.click();
      await wb.expectRow(/^\s*n\s*[:=]?\s*\d+/m);
      await wb.shot('jsdebug-01-paused-variables');
      // Attached, paused, variables shown: js-debug's own requests were all refused, quietly.
      const atAttach = broker.records.filter((e) => e.stream === session.stream && e.type === 'cdp.refused');
      assert.ok(atAttach.length >= 8, `js-debug's requests at attach are refused (${atAttach.length})`);
      assert.deepEqual(
        atAttach.filter((e) => (e.data as { routine?: string }).routine === undefined).map((e) => (e.data as { method: string }).method),
        [],
        'every refusal at attach is routine',
      );
      assert.deepEqual(
        broker.records.filter((e) => e.type === 'alert.refusals'),
        [],
        'no refusals alert at attach',
      );
      const repl = page.locator('.repl-input-wrapper .monaco-editor');
      if (!(await repl.isVisible())) await wb.run('Debug Console: Focus on Debug Console View');
      await repl.click();
      await page.keyboard.type('local.label');
      await page.keyboard.press('Enter');
      await wb.expectRow(/'item-\d+'/, 20_000);
      await page.keyboard.type('counter = 0');
      await page.keyboard.press('Enter');
      await wb.expectRow(/Refused by Loupe: /, 20_000);
      await page.keyboard.type('process.env.HOME');
      await page.keyboard.press('Enter');
      await wb.expectRow(/Refused by Loupe: the expression: "process\.env" is denied/, 20_000);
      await page.keyboard.type('process.pid');
      await page.keyboard.press('Enter');
      await wb.expectRow(/Refused by Loupe: .*process id/, 20_000);
      await wb.shot('jsdebug-02-debug-console');
      // The three refusals the person caused are the ones the alert counts (threshold 3), and only they.
      const alert = await broker.waitForRecord('alert.refusals', (e) => e.stream === session.stream, 20_000);
      assert.deepEqual(
        (alert.data.evidence as { summary: string }[]).map((e) => /counter = 0|"process\.env" is denied|process id \(process\.pid\)/.exec(e.summary)?.[0]),
        ['counter = 0', '"process.env" is denied', 'process id (process.pid)'],
      );

      await wb.run('Stop Probe: vscode.debug.stopDebugging()');
      await broker.waitForRecord('session.ended', (e) => e.stream === session.stream, 30_000);
      await target.ticksAdvance(3, 15_000);
      const afterStop = await served(portFile);
      log(`after stopDebugging(): target alive, served ${afterStop.served}`);
      assert.equal(target.proc.exitCode, null);
      assert.equal(target.proc.signalCode, null);

      // Again, through the same `loupe connect` (a new broker session under the same grant), ended by the toolbar's Disconnect button.
      await startDebugging(wb, name);
      const second = await broker.waitForRecord('session.started', (e) => e.stream !== session.stream, 30_000);
      await wb.expectText(/Paused on breakpoint/i, 60_000);
      await page.locator('.debug-toolbar .action-label[aria-label^="Disconnect"]').first().click();
      log('clicked Disconnect');
      await broker.waitForRecord('session.ended', (e) => e.stream === second.stream, 30_000);
      await target.ticksAdvance(3, 15_000);
      const afterDisconnect = await served(portFile);
      assert.ok(afterDisconnect.served > afterStop.served);
      assert.equal(target.proc.exitCode, null);
      assert.equal(target.proc.signalCode, null);
      await wb.shot('jsdebug-03-after-disconnect');
    } catch (err) {
      // LOUPE_JSDEBUG_DUMP=file keeps the audit records of a failed run (what js-debug sent, what was refused).
      if (process.env.LOUPE_JSDEBUG_DUMP) writeFileSync(process.env.LOUPE_JSDEBUG_DUMP, JSON.stringify(broker.records, null, 1));
      await wb.shot('jsdebug-error').catch(() => undefined);
      throw err;
    } finally {
      await close();
      const ended = await connect.kill('SIGINT');
      assert.equal(ended.code, 0, connect.stderr());
    }
  });
});
