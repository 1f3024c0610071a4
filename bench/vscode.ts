// `npm run bench:vscode`: Debug Console evaluation in a real VS Code (code-server, headless Chromium), from the
// Enter key to the answer on screen, through three paths to one paused target:
//   - Loupe's adapter (the `loupe` debug type of this extension) → broker → target;
//   - js-debug (VS Code's built-in JavaScript debugger, a plain node attach by port) → `loupe connect` → broker → target;
//   - js-debug attached directly to the target's inspector (the baseline).
// Each back to back and paced 150 ms apart, in one run. Then the adapter alone, without the UI: a DAP client's
// evaluate through the adapter against a CDP client's evaluate through the broker (the broker's round trip) on the
// same pause. Prints p50/p90/p99, ratios to direct, and the goal lines.
//
//   npm run bench:vscode                      100 samples per path and pacing (BENCH_VSCODE_SAMPLES to change)
// Needs code-server and Chromium (scripts/vscode/install.sh); builds dist/ and the .vsix first.
import { spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { DebugClient } from '@vscode/debugadapter-testsupport';
import type { Page } from 'playwright-core';
import { CdpClient } from '../test/support/cdpClient';
import { fixtures, markerLine, startTarget } from '../test/support/target';
import { basePolicy, startTestBroker, type TestBroker } from '../test/support/testBroker';
import { openBrowser, root, startCodeServer, Workbench } from '../test/extension/codeServer';
import { startDebugging, startLoupeConnect } from '../test/extension/jsDebugSupport';
import { nowMs, percentile } from './lib/stats';

const samples = Number(process.env.BENCH_VSCODE_SAMPLES ?? 100);
const paceMs = 150;
const file = 'http-app.js';
const log = (line: string) => process.stdout.write(`${line}\n`);

interface Figures {
  p50: number;
  p90: number;
  p99: number;
}
const figures = (xs: number[]): Figures => {
  const sorted = [...xs].sort((a, b) => a - b);
  return { p50: percentile(sorted, 50), p90: percentile(sorted, 90), p99: percentile(sorted, 99) };
};
const ms = (x: number) => `${x.toFixed(1)} ms`;

/** Times Enter → the answer row in the Debug Console, in the page's own clock. */
async function installProbe(page: Page): Promise<void> {
  await page.evaluate(() => {
    const w = window as unknown as { __bench: { expect: string; t0: number; t1: number } };
    w.__bench = { expect: '', t0: 0, t1: 0 };
    document.addEventListener(
      'keydown',
      (e) => {
        if (e.key === 'Enter' && w.__bench.expect && !w.__bench.t0) w.__bench.t0 = performance.now();
      },
      true,
    );
    new MutationObserver(() => {
      const b = w.__bench;
      if (!b.expect || !b.t0 || b.t1) return;
      for (const row of document.querySelectorAll('.repl .monaco-list-row')) {
        if ((row.textContent ?? '').trim() === b.expect) {
          b.t1 = performance.now();
          return;
        }
      }
    }).observe(document.body, { subtree: true, childList: true, characterData: true });
  });
}

async function evaluateOnce(page: Page, expression: string, expect: string): Promise<number> {
  await page.evaluate((x) => Object.assign((window as unknown as { __bench: object }).__bench, { expect: x, t0: 0, t1: 0 }), expect);
  await page.keyboard.type(expression);
  await page.keyboard.press('Enter');
  await page.waitForFunction(() => (window as unknown as { __bench: { t1: number } }).__bench.t1 > 0, undefined, { timeout: 20_000, polling: 'raf' });
  return page.evaluate(() => {
    const b = (window as unknown as { __bench: { t0: number; t1: number } }).__bench;
    return b.t1 - b.t0;
  });
}

/** Back to back and paced evaluations of `local.n + k` in the paused frame (n read first). */
async function measureConsole(wb: Workbench, label: string, offset: number): Promise<{ backToBack: number[]; paced: number[] }> {
  const { page } = wb;
  const repl = page.locator('.repl-input-wrapper .monaco-editor');
  if (!(await repl.isVisible())) await wb.run('Debug Console: Focus on Debug Console View');
  await repl.click();
  // n, read under a tag of this path (earlier paths' rows are still in the console).
  const tag = `n${offset}:`;
  await page.keyboard.type('`' + tag + '${local.n}`');
  await page.keyboard.press('Enter');
  const nRow = page
    .locator('.repl .monaco-list-row')
    .filter({ hasText: new RegExp(`${tag}\\d+`) })
    .last();
  await nRow.waitFor({ state: 'visible', timeout: 30_000 });
  const n = Number(new RegExp(`${tag}(\\d+)`).exec(await nRow.innerText())![1]);
  const backToBack: number[] = [];
  const paced: number[] = [];
  for (let i = 0; i < 5; i++) await evaluateOnce(page, `local.n + ${offset + 900_000 + i}`, String(n + offset + 900_000 + i)); // warm-up
  for (let i = 0; i < samples; i++) backToBack.push(await evaluateOnce(page, `local.n + ${offset + 100_000 + i}`, String(n + offset + 100_000 + i)));
  for (let i = 0; i < samples; i++) {
    await sleep(paceMs);
    paced.push(await evaluateOnce(page, `local.n + ${offset + 200_000 + i}`, String(n + offset + 200_000 + i)));
  }
  log(`  ${label}: back to back p50 ${ms(figures(backToBack).p50)}, paced p50 ${ms(figures(paced).p50)}`);
  return { backToBack, paced };
}

async function waitPaused(wb: Workbench): Promise<void> {
  await wb.expectText(/Paused on breakpoint/i, 60_000);
}

async function main(): Promise<void> {
  log(`bench:vscode — ${samples} samples per path, back to back and paced ${paceMs} ms`);
  const built = spawnSync(process.execPath, [join(root, 'esbuild.mjs')], { cwd: root, encoding: 'utf8' });
  if (built.status !== 0) throw new Error(`build: ${built.stdout}${built.stderr}`);
  const scratch = mkdtempSync(join(tmpdir(), 'loupe-benchvs-'));
  const vsix = join(scratch, 'loupe.vsix');
  const packed = spawnSync(
    process.execPath,
    [join(root, 'node_modules', '@vscode', 'vsce', 'vsce'), 'package', '--no-dependencies', '--allow-missing-repository', '--skip-license', '--no-rewrite-relative-links', '-o', vsix],
    { cwd: root, encoding: 'utf8' },
  );
  if (packed.status !== 0) throw new Error(`vsce package: ${packed.stdout}${packed.stderr}`);
  const workspace = join(scratch, 'ws');
  mkdirSync(join(workspace, '.vscode'), { recursive: true });
  cpSync(join(fixtures, file), join(workspace, file));
  const target = await startTarget(join(workspace, file), { TICK_MS: '200' });
  const policy = basePolicy(target.inspector);
  policy.targets.app.maxPauseSeconds = 600;
  policy.alerting = { rules: { firstAttach: false } };
  const broker = await startTestBroker(policy);
  const token = await broker.token('dev', ['devs']);
  const codeServer = await startCodeServer({ vsix: [vsix], settings: { 'loupe.brokerUrl': broker.url } });
  const { page, close } = await openBrowser();
  const wb = new Workbench(page);
  const results: Record<string, { backToBack: number[]; paced: number[] }> = {};
  const { port: connectPort, connect } = await startLoupeConnect(broker);
  try {
    const configurations = [
      {
        type: 'loupe',
        request: 'attach',
        name: 'Loupe adapter',
        target: 'app',
        mode: 'pause',
        durationSeconds: 900,
        reason: 'bench: Debug Console latency',
        localRoot: workspace,
        remoteRoot: workspace,
      },
      { type: 'node', request: 'attach', name: 'js-debug via Loupe', address: '127.0.0.1', port: connectPort },
      { type: 'node', request: 'attach', name: 'js-debug direct', websocketAddress: target.wsUrl },
    ];
    writeFileSync(join(workspace, '.vscode', 'launch.json'), JSON.stringify({ version: '0.2.0', configurations }, null, 2));
    await page.goto(`${codeServer.url}/?folder=${encodeURIComponent(workspace)}`);
    await page.waitForSelector('.monaco-workbench .statusbar', { timeout: 60_000 });
    await installProbe(page);
    await wb.run('Loupe: Sign In…');
    await wb.type(token, { title: 'Loupe: Sign In' });
    await wb.expectText(/signed in to/);
    await wb.openFile(file, markerLine(join(workspace, file), 'work') + 1);
    await wb.run('Debug: Toggle Breakpoint');
    for (const name of ['Loupe adapter', 'js-debug via Loupe', 'js-debug direct']) {
      log(`${name}: attaching`);
      await startDebugging(wb, name);
      await waitPaused(wb);
      results[name] = await measureConsole(wb, name, 1_000_000 * (1 + Object.keys(results).length)); // distinct answers per path
      await page.locator('.debug-toolbar .action-label[aria-label^="Disconnect"], .debug-toolbar .action-label[aria-label^="Stop"]').first().click();
      await page.locator('.debug-toolbar').waitFor({ state: 'hidden', timeout: 30_000 });
      await target.ticksAdvance(2, 15_000);
    }
  } finally {
    await close();
    codeServer.stop();
    await connect.kill('SIGINT');
  }

  // The adapter alone: DAP evaluate through the adapter vs CDP evaluate through the broker, on one pause.
  const share = await measureAdapterShare(broker, workspace, token);
  await broker.close();
  await target.stop();
  rmSync(scratch, { recursive: true, force: true });

  log('');
  log('Debug Console evaluation, Enter → answer on screen (code-server, headless Chromium)');
  log('| path | back to back p50 / p90 / p99 | × direct (p50) | paced 150 ms p50 / p90 / p99 | × direct (p50) |');
  log('|---|---|---|---|---|');
  const direct = results['js-debug direct']!;
  for (const [name, r] of Object.entries(results)) {
    const b = figures(r.backToBack);
    const p = figures(r.paced);
    log(
      `| ${name} | ${ms(b.p50)} / ${ms(b.p90)} / ${ms(b.p99)} | ${(b.p50 / figures(direct.backToBack).p50).toFixed(2)} | ${ms(p.p50)} / ${ms(p.p90)} / ${ms(p.p99)} | ${(p.p50 / figures(direct.paced).p50).toFixed(2)} |`,
    );
  }
  log('');
  log('The adapter alone (DAP evaluate, no UI) and the broker round trip (CDP evaluateOnCallFrame through the broker), same pause');
  for (const pacing of ['backToBack', 'paced'] as const) {
    const a = figures(share.adapter[pacing]);
    const b = figures(share.broker[pacing]);
    log(
      `  ${pacing === 'backToBack' ? 'back to back' : 'paced 150 ms'}: adapter ${ms(a.p50)} / ${ms(a.p90)} / ${ms(a.p99)}; broker ${ms(b.p50)} / ${ms(b.p90)} / ${ms(b.p99)}; adapter share ${ms(a.p50 - b.p50)}`,
    );
  }
  log('');
  for (const pacing of ['backToBack', 'paced'] as const) {
    const loupe = figures(results['Loupe adapter']![pacing]).p50;
    const d = figures(direct[pacing]).p50;
    log(`goal Loupe <= direct (${pacing === 'backToBack' ? 'back to back' : 'paced'}, p50): ${ms(loupe)} vs ${ms(d)}: ${loupe <= d ? 'MET' : 'NOT MET'}`);
  }
  for (const pacing of ['backToBack', 'paced'] as const) {
    const a = figures(share.adapter[pacing]).p50;
    const b = figures(share.broker[pacing]).p50;
    log(`goal adapter share <= broker round trip + 1 ms (${pacing === 'backToBack' ? 'back to back' : 'paced'}, p50): ${ms(a)} vs ${ms(b)} + 1 ms: ${a <= b + 1 ? 'MET' : 'NOT MET'}`);
  }
}

async function measureAdapterShare(
  broker: TestBroker,
  workspace: string,
  token: string,
): Promise<{ adapter: { backToBack: number[]; paced: number[] }; broker: { backToBack: number[]; paced: number[] } }> {
  const dc = new DebugClient(process.execPath, join(root, 'dist', 'debugAdapter.js'), 'loupe', undefined, true);
  dc.defaultTimeout = 20_000;
  await dc.start();
  const breakLine = markerLine(join(workspace, file), 'work') + 1;
  const stopped = dc.waitForEvent('stopped', 30_000);
  await Promise.all([
    dc.configurationSequence(),
    dc.initializeRequest({ adapterID: 'loupe', linesStartAt1: true, columnsStartAt1: true, pathFormat: 'path' }).then(() =>
      dc.attachRequest({
        target: 'app',
        mode: 'pause',
        durationSeconds: 600,
        reason: 'bench: adapter share',
        brokerUrl: broker.url,
        identityToken: token,
        localRoot: workspace,
        remoteRoot: workspace,
      } as never),
    ),
  ]);
  await dc.setBreakpointsRequest({ source: { path: join(workspace, file) }, breakpoints: [{ line: breakLine }] });
  await stopped;
  const frameId = (await dc.stackTraceRequest({ threadId: 1 })).body.stackFrames[0]!.id;
  const adapter = { backToBack: [] as number[], paced: [] as number[] };
  const dap = async () => {
    const t = nowMs();
    await dc.evaluateRequest({ expression: 'local.n + 1', frameId, context: 'repl' });
    return nowMs() - t;
  };
  for (let i = 0; i < 10; i++) await dap();
  for (let i = 0; i < samples; i++) adapter.backToBack.push(await dap());
  for (let i = 0; i < samples; i++) {
    await sleep(paceMs);
    adapter.paced.push(await dap());
  }
  await dc.disconnectRequest({}).catch(() => undefined);
  await dc.stop();

  // The broker's round trip: a plain CDP client through the broker, evaluating on a paused frame.
  const { client } = await broker.attach();
  await client.call('Debugger.enable');
  await client.call('Debugger.setBreakpointByUrl', { lineNumber: breakLine - 1, urlRegex: 'http-app\\.js$' });
  const paused = await client.waitEvent('Debugger.paused', () => true, 30_000);
  const callFrameId = paused.params.callFrames[0].callFrameId;
  const brokerTimes = { backToBack: [] as number[], paced: [] as number[] };
  const cdp = async () => {
    const t = nowMs();
    await client.call('Debugger.evaluateOnCallFrame', { callFrameId, expression: 'local.n + 1', objectGroup: 'console', generatePreview: true });
    return nowMs() - t;
  };
  for (let i = 0; i < 10; i++) await cdp();
  for (let i = 0; i < samples; i++) brokerTimes.backToBack.push(await cdp());
  for (let i = 0; i < samples; i++) {
    await sleep(paceMs);
    brokerTimes.paced.push(await cdp());
  }
  await client.call('Debugger.resume').catch(() => undefined);
  await client.close();
  return { adapter, broker: brokerTimes };
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`bench:vscode failed: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  },
);
