// needs: chromium
// Chrome DevTools' own front end, in a real headless Chromium, attached to `loupe connect` (a real child process) in
// front of a real broker and a real `node --inspect=127.0.0.1:0` target: the Console evaluates through the broker (and
// the evaluation is on the audit record), a refusal reads as Loupe's, and a breakpoint set in Sources pauses the target.
//
// How the front end is loaded: /json/list gives `devtools://devtools/bundled/js_app.html?…&ws=127.0.0.1:<port>/<id>`,
// as node --inspect does. Headless Chromium will not navigate a page to devtools:// (net::ERR_INVALID_URL), but a
// Chromium started with --remote-debugging-port serves the same bundled front end over HTTP at /devtools/js_app.html;
// that is the page used here, with the same query. Its origin is http://127.0.0.1:<that port>, which loupe connect
// accepts (a page on loopback is already local); chrome://inspect uses devtools://devtools, also accepted.
import { strict as assert } from 'node:assert';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { chromium, type Browser, type Page } from 'playwright-core';
import { chromiumArgs, chromiumPath } from '../support/browser';
import { startConnect, type ConnectProcess } from '../support/connectProcess';
import { fixtures, markerLine, startTarget, type TargetProcess } from '../support/target';
import { basePolicy, startTestBroker, type TestBroker } from '../support/testBroker';

const appLine = markerLine(join(fixtures, 'app.js'), 'work');

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

describe('loupe connect: Chrome DevTools front end, headless', () => {
  let target: TargetProcess;
  let broker: TestBroker;
  let child: ConnectProcess;
  let browser: Browser;
  let page: Page;

  before(async () => {
    target = await startTarget();
    broker = await startTestBroker(basePolicy(target.inspector));
    child = startConnect(['app', '--reason', 'INC-12 via DevTools', '--port', '0', '--broker', broker.url], { LOUPE_TOKEN: await broker.token('dev', ['devs']) });
    const url = await child.url;
    const [listed] = (await (await fetch(`${url}/json/list`)).json()) as { devtoolsFrontendUrl: string }[];
    const rdp = await freePort();
    browser = await chromium.launch({ executablePath: chromiumPath(), headless: true, args: [...chromiumArgs, `--remote-debugging-port=${rdp}`] });
    page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    // Nothing may leave the machine.
    await page.route(
      (u) => u.hostname !== '127.0.0.1',
      (route) => route.abort(),
    );
    assert.match(listed!.devtoolsFrontendUrl, /^devtools:\/\/devtools\/bundled\/js_app\.html\?/);
    await page.goto(listed!.devtoolsFrontendUrl.replace('devtools://devtools/bundled/', `http://127.0.0.1:${rdp}/devtools/`));
    await child.waitFor(/debugger attached: session started on app/);
  });
  after(async () => {
    await browser?.close();
    await child?.kill('SIGKILL');
    await broker?.close();
    await target?.stop();
  });

  /** Types an expression at the Console prompt and returns the text of the answer line it adds. */
  async function consoleEval(expression: string): Promise<string> {
    await page.getByText('Console', { exact: true }).first().click();
    const answers = page.locator('.console-user-command-result, .console-error-level');
    const before = await answers.count();
    await page.locator('.console-prompt-editor-container .cm-content').click();
    await page.keyboard.type(expression);
    await page.keyboard.press('Enter');
    await answers.nth(before).waitFor({ timeout: 10_000 });
    return (await answers.nth(before).textContent()) ?? '';
  }

  it('the Console evaluates through the broker (recorded), and a refusal reads as Loupe’s', async () => {
    assert.match(await consoleEval('6 * 7 + 1'), /43/);
    const evaluated = await broker.waitForRecord('cdp.evaluate', (e) => e.data.params?.expression === '6 * 7 + 1');
    assert.equal(evaluated.actor?.sub, 'dev');
    assert.match(await consoleEval('process.exit(3)'), /Refused by Loupe/);
    assert.equal(target.proc.exitCode, null, 'the target is alive');
  });

  it('a breakpoint set in Sources pauses the target; resuming lets it run', async () => {
    await page.getByText('Sources', { exact: true }).first().click();
    // Quick open (Ctrl+P) the fixture, then click the line number of the marker.
    // The quick-open list fills once DevTools has the scripts; on a loaded machine the first Ctrl+P can come before its
    // widget takes keys: opened again (twice at most) until the fixture is listed.
    const item = page.locator('.filtered-list-widget-item', { hasText: 'test/fixtures' }).first();
    for (let attempt = 0; ; attempt++) {
      await page.keyboard.press('Control+P');
      await page.locator('.filtered-list-widget input, .filtered-list-widget [contenteditable]').first().waitFor({ timeout: 10_000 });
      await page.keyboard.type('app.js');
      const listed = await item.waitFor({ timeout: 10_000 }).then(
        () => true,
        () => false,
      );
      if (listed || attempt >= 2) break;
      await page.keyboard.press('Escape');
    }
    await item.click({ timeout: 10_000 });
    const gutter = page.locator('.cm-lineNumbers .cm-gutterElement', { hasText: new RegExp(`^${appLine + 1}$`) });
    await gutter.click({ timeout: 10_000 });
    await page.getByText(/Paused on breakpoint/).waitFor({ timeout: 10_000 });
    await broker.waitForRecord('cdp.breakpoint.hit');
    // The locals, read through the broker; the source as the broker redacted it.
    await page
      .getByText(/label: 'item-\d+'/)
      .first()
      .waitFor({ timeout: 10_000 });
    const source = (await page.locator('.cm-content').first().textContent()) ?? '';
    assert.match(source, /apiKey: '\[redacted: apiKey\]'/);
    assert.doesNotMatch(source, /k-123/);
    const held = target.lastTick();
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.equal(target.lastTick(), held, 'held at the breakpoint');
    // Remove it (click again) and resume (F8).
    await gutter.click();
    await page.keyboard.press('F8');
    await target.ticksAdvance(3);

    assert.equal((await child.kill('SIGINT')).code, 0, child.stderr());
    const ended = await broker.waitForRecord('session.ended');
    assert.equal(ended.data.endReason, 'client_closed');
    await target.ticksAdvance(2);
  });
});
