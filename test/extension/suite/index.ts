// Integration tests that run inside VS Code's extension host (extensionTestsPath; started by
// test/extension/integration.test.ts through @vscode/test-electron's runTests and the code-server shim).
// A tiny runner instead of mocha: run() resolves when every test passed and rejects otherwise.
import assert from 'node:assert/strict';
import * as vscode from 'vscode';
import { waitFor as poll } from '../../support/wait';

const env = (name: string) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set (extensionTestsEnv)`);
  return value;
};

const tests: [string, () => Promise<void>][] = [];
const test = (name: string, fn: () => Promise<void>) => tests.push([name, fn]);

/** The first value a VS Code event gives through `subscribe`, or a failure naming `what` after `ms`. */
function waitFor<T>(what: string, ms: number, subscribe: (done: (v: T) => void) => vscode.Disposable): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => (sub.dispose(), reject(new Error(`timed out waiting for ${what}`))), ms);
    const sub = subscribe((v) => (clearTimeout(timer), sub.dispose(), resolve(v)));
  });
}

test('contributes the Loupe commands and the loupe debug type', async () => {
  const ext = vscode.extensions.all.find((e) => e.packageJSON?.name === 'loupe');
  assert.ok(ext, 'the extension under development is loaded');
  await ext.activate();
  const commands = await vscode.commands.getCommands(true);
  for (const c of ['loupe.attach', 'loupe.signIn', 'loupe.endSession', 'loupe.downloadTranscript', 'loupe.refreshAlerts']) assert.ok(commands.includes(c), c);
  assert.ok(ext.packageJSON.contributes.debuggers.some((d: any) => d.type === 'loupe'));
});

test('a launch.json-style loupe configuration attaches, stops at a .ts breakpoint, refuses a side effect, counts down, and ends', async () => {
  const ext = vscode.extensions.all.find((e) => e.packageJSON?.name === 'loupe')!;
  const api = (await ext.activate()) as { liveGrants(): { target: string }[]; statusBarText(): string | undefined };
  const serviceTs = vscode.Uri.file(env('LOUPE_IT_SERVICE_TS'));
  const line = Number(env('LOUPE_IT_LINE'));
  const stopped: any[] = [];
  const tracker = vscode.debug.registerDebugAdapterTrackerFactory('loupe', {
    createDebugAdapterTracker: () => ({ onDidSendMessage: (m: any) => (m.type === 'event' && m.event === 'stopped' ? stopped.push(m) : undefined) }),
  });
  const bp = new vscode.SourceBreakpoint(new vscode.Location(serviceTs, new vscode.Position(line - 1, 0)));
  vscode.debug.addBreakpoints([bp]);
  try {
    const started = waitFor<vscode.DebugSession>('the session to start', 30_000, (done) => vscode.debug.onDidStartDebugSession(done));
    const ok = await vscode.debug.startDebugging(vscode.workspace.workspaceFolders?.[0], {
      type: 'loupe',
      request: 'attach',
      name: 'Loupe integration test',
      target: 'app',
      mode: 'pause',
      durationSeconds: 120,
      reason: 'integration test in code-server',
      brokerUrl: env('LOUPE_IT_BROKER_URL'),
      identityToken: env('LOUPE_IT_TOKEN'),
      localRoot: env('LOUPE_IT_LOCAL_ROOT'),
      remoteRoot: env('LOUPE_IT_REMOTE_ROOT'),
    });
    assert.equal(ok, true, 'startDebugging');
    const session = await started;
    await poll(() => stopped.length > 0, { what: 'a stop at the breakpoint', timeoutMs: 30_000, intervalMs: 100 }).catch(() => undefined);
    assert.ok(stopped.length > 0, 'stopped at the breakpoint');
    const st = await session.customRequest('stackTrace', { threadId: 1 });
    // VS Code hands DAP paths back as vscode-remote:// URIs in code-server: compare the file path.
    const framePath: string = st.stackFrames[0].source.path;
    assert.equal(framePath.startsWith('vscode-remote://') ? vscode.Uri.parse(framePath).path : framePath, serviceTs.fsPath);
    assert.equal(st.stackFrames[0].line, line);
    const refused = await session.customRequest('evaluate', { expression: 'processed = 0', frameId: st.stackFrames[0].id, context: 'repl' });
    assert.match(refused.result, /Refused by Loupe/);
    assert.equal(api.liveGrants()[0]?.target, 'app');
    assert.match(api.statusBarText() ?? '', /Loupe app \d+:\d\d/);
    const ended = waitFor<vscode.DebugSession>('the session to end', 15_000, (done) => vscode.debug.onDidTerminateDebugSession(done));
    await vscode.commands.executeCommand('loupe.endSession');
    await ended;
    assert.equal(api.statusBarText(), undefined, 'the countdown is gone');
  } finally {
    vscode.debug.removeBreakpoints([bp]);
    tracker.dispose();
  }
});

export async function run(): Promise<void> {
  let failed = 0;
  for (const [name, fn] of tests) {
    try {
      await fn();
      console.log(`  ✔ ${name}`);
    } catch (err) {
      failed++;
      console.log(`  ✖ ${name}\n    Error: ${(err as Error).stack ?? err}`);
    }
  }
  console.log(`${tests.length - failed} passed, ${failed} failed`);
  if (failed > 0) throw new Error(`${failed} integration test(s) failed`);
}
