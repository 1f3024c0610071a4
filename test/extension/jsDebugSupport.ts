// Support for driving VS Code's built-in JavaScript debugger (js-debug) in code-server against the broker: the
// attach address, a plain node attach configuration, starting it, and a probe extension for stopDebugging().
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { TestBroker } from '../support/testBroker';
import { startConnect, type ConnectProcess } from '../support/connectProcess';
import { root, type Workbench } from './codeServer';

/**
 * A test extension with one command that calls `vscode.debug.stopDebugging()`, the API call that made js-debug
 * SIGKILL the target; packaged with vsce like Loupe's own .vsix.
 */
export function buildStopProbe(dir: string): string {
  const ext = join(dir, 'stop-probe');
  mkdirSync(ext, { recursive: true });
  writeFileSync(
    join(ext, 'package.json'),
    JSON.stringify({
      name: 'stop-probe',
      displayName: 'Stop probe',
      publisher: 'loupe-test',
      version: '0.0.1',
      license: 'UNLICENSED',
      engines: { vscode: '^1.90.0' },
      main: './extension.js',
      activationEvents: ['onStartupFinished'],
      contributes: { commands: [{ command: 'stopProbe.stopDebugging', title: 'Stop Probe: vscode.debug.stopDebugging()' }] },
    }),
  );
  writeFileSync(
    join(ext, 'extension.js'),
    "const vscode = require('vscode');\nexports.activate = (context) => context.subscriptions.push(vscode.commands.registerCommand('stopProbe.stopDebugging', () => vscode.debug.stopDebugging()));\n",
  );
  writeFileSync(join(ext, 'README.md'), 'Calls vscode.debug.stopDebugging() for the js-debug test.\n');
  const vsix = join(dir, 'stop-probe.vsix');
  const r = spawnSync(process.execPath, [join(root, 'node_modules', '@vscode', 'vsce', 'vsce'), 'package', '--no-dependencies', '--allow-missing-repository', '--skip-license', '-o', vsix], {
    cwd: ext,
    encoding: 'utf8',
  });
  if (r.status !== 0) throw new Error(`vsce package (stop probe): ${r.stdout}${r.stderr}`);
  return vsix;
}

/** `loupe connect` for the policy's `app` target on a free local port: the endpoint js-debug attaches to by port. */
export async function startLoupeConnect(broker: TestBroker): Promise<{ port: number; connect: ConnectProcess }> {
  const token = await broker.token('dev', ['devs']);
  const connect = startConnect(['app', '--reason', 'js-debug: why do items total wrong?', '--port', '0', '--broker', broker.url], { LOUPE_TOKEN: token });
  const port = Number(new URL(await connect.url).port);
  assert.ok(port > 0, connect.stderr());
  return { port, connect };
}

/** Writes the workspace's launch.json: a plain node attach configuration by port, nothing Loupe-specific. */
export function writeLaunch(workspace: string, name: string, port: number): void {
  mkdirSync(join(workspace, '.vscode'), { recursive: true });
  const configuration = { type: 'node', request: 'attach', name, address: '127.0.0.1', port };
  writeFileSync(join(workspace, '.vscode', 'launch.json'), JSON.stringify({ version: '0.2.0', configurations: [configuration] }, null, 2));
}

/** Starts a launch configuration by name through quick open's "debug " picker, retrying until js-debug is up. */
export async function startDebugging(wb: Workbench, name: string, totalMs = 90_000): Promise<void> {
  const { page } = wb;
  const input = page.locator('.quick-input-widget input');
  const deadline = Date.now() + totalMs;
  for (;;) {
    await page.keyboard.press('Escape');
    await page.keyboard.press('F1');
    await input.waitFor({ state: 'visible', timeout: 10_000 });
    await input.fill('debug ' + name);
    const row = page.locator('.quick-input-list .monaco-list-row', { hasText: name }).first();
    try {
      await row.waitFor({ state: 'visible', timeout: 5000 });
      await row.click();
      wb.log(`started "${name}"`);
      return;
    } catch {
      if (Date.now() > deadline) throw new Error(`no launch configuration "${name}" in the picker`);
      await page.waitForTimeout(1000);
    }
  }
}
