// needs: chromium
// The auditor's HTML session report, opened in a real headless Chromium as an auditor would open it:
// what the page shows, that it loads nothing and runs nothing, and a full-page screenshot kept in
// test-artifacts/ (git-ignored) for a person to look at.
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { after, before, describe, it } from 'node:test';
import type { Browser, BrowserContext, Page, Response } from 'playwright-core';
import { launchChromium } from '../support/browser';
import { CdpClient } from '../support/cdpClient';
import { fixtures, markerLine, startTarget, type TargetProcess } from '../support/target';
import { basePolicy, startTestBroker, type TestBroker } from '../support/testBroker';
import { waitFor } from '../support/wait';
import { ensureBuilt } from '../support/built';

const root = join(__dirname, '..', '..');
const cli = join(root, 'dist', 'cli.js');
const artifacts = join(root, 'test-artifacts');
const appLine = markerLine(join(fixtures, 'app.js'), 'work');
const reason = 'checkout totals off by one for EU carts';
const ticket = 'https://tracker.example.com/browse/INC-4711';
const auditPolicy = (inspector: string) =>
  basePolicy(inspector, { roles: { ...basePolicy('').roles, auditor: { groups: ['auditors'] } }, auditors: ['auditor'], audit: { chunkMaxEvents: 6, uploadInterval: '1s' } });

/** A breakpoint hit, a variable read, an allowed and a side-effecting evaluation, and a refused method. */
async function scriptedSession(client: CdpClient): Promise<void> {
  await client.call('Debugger.enable');
  const { breakpointId } = await client.call('Debugger.setBreakpointByUrl', { lineNumber: appLine, urlRegex: 'app\\.js$' });
  const paused = await client.waitEvent('Debugger.paused');
  const frame = paused.params.callFrames[0];
  const local = frame.scopeChain.find((s: any) => s.type === 'local');
  await client.call('Runtime.getProperties', { objectId: local.object.objectId, ownProperties: true });
  await client.call('Debugger.evaluateOnCallFrame', { callFrameId: frame.callFrameId, expression: 'local.label' });
  await client.call('Debugger.evaluateOnCallFrame', { callFrameId: frame.callFrameId, expression: 'globalThis.leak = local' });
  const refused = await client.send('Debugger.setScriptSource', { scriptId: frame.location.scriptId, scriptSource: '' });
  assert.ok(refused.error, 'the gate refuses Debugger.setScriptSource');
  await client.call('Debugger.removeBreakpoint', { breakpointId });
  await client.call('Debugger.resume');
}

async function waitForEndedSession(broker: TestBroker, auditorToken: string): Promise<any> {
  return waitFor(async () => (await broker.api('GET', '/v1/sessions', auditorToken)).body.sessions?.find((s: any) => s.state === 'ended'), { what: 'an ended session listed', intervalMs: 100 });
}

/** What went wrong on a page as a user would notice it: console errors, script errors, failed or refused loads. */
function watchPage(page: Page, main: () => Response | null) {
  const problems: string[] = [];
  page.on('console', (m) => m.type() === 'error' && problems.push(`console error: ${m.text()}`));
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('requestfailed', (r) => problems.push(`failed load: ${r.url()} (${r.failure()?.errorText})`));
  page.on('response', (r) => r !== main() && r.status() >= 400 && problems.push(`HTTP ${r.status()} for ${r.url()}`));
  return problems;
}

/** Width and height from a PNG's IHDR, after checking the signature. */
function pngSize(file: string): { width: number; height: number; bytes: number } {
  const data = readFileSync(file);
  assert.deepEqual([...data.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], `${file} is not a PNG`);
  assert.equal(data.subarray(12, 16).toString('latin1'), 'IHDR');
  return { width: data.readUInt32BE(16), height: data.readUInt32BE(20), bytes: data.length };
}

/** The text of the <dd> after the <dt> labelled `label`, as rendered. */
const field = (page: Page, label: string) => page.locator(`dt:text-is("${label}") + dd`).innerText();

describe('the session report in a real Chromium', () => {
  let target: TargetProcess;
  let broker: TestBroker;
  let browser: Browser;
  let auditor: string;
  let session: any;
  let transcript: string;
  let keys: unknown;
  const contexts: BrowserContext[] = [];
  const newPage = async (headers: Record<string, string> = {}) => {
    const context = await browser.newContext({ extraHTTPHeaders: headers, viewport: { width: 1280, height: 800 } });
    contexts.push(context);
    return context.newPage();
  };

  before(async () => {
    mkdirSync(artifacts, { recursive: true });
    ensureBuilt();
    browser = await launchChromium();
    target = await startTarget();
    broker = await startTestBroker(auditPolicy(target.inspector));
    auditor = await broker.token('audrey', ['auditors']);
    const grant = await broker.grant('dev', ['devs'], { reason, ticket });
    const client = await CdpClient.connect(grant.attachUrl, { authorization: `Bearer ${grant.token}` });
    await scriptedSession(client);
    await client.close();
    session = await waitForEndedSession(broker, auditor);
    const res = await fetch(`${broker.url}/v1/sessions/${session.sessionId}/transcript`, { headers: { authorization: `Bearer ${auditor}` } });
    assert.equal(res.status, 200);
    transcript = await res.text();
    keys = (await broker.api('GET', '/v1/audit/keys', undefined)).body;
  });
  after(async () => {
    for (const context of contexts) await context.close().catch(() => undefined);
    await browser?.close();
    await broker?.close();
    await target?.stop();
  });

  it('shows an auditor the verified report: who, target, why, ticket, the timeline; loads and runs nothing', async () => {
    let main: Response | null = null;
    const page = await newPage({ authorization: `Bearer ${auditor}` });
    const problems = watchPage(page, () => main);
    main = await page.goto(`${broker.url}/v1/sessions/${session.sessionId}/report`, { waitUntil: 'load' });
    assert.ok(main);
    assert.equal(main.status(), 200, await main.text());
    assert.match(main.headers()['content-type']!, /^text\/html/);

    // The CSP forbids every script (default-src 'none' and no script-src) and allows only inline styles.
    const csp = Object.fromEntries(
      (main.headers()['content-security-policy'] ?? '')
        .split(';')
        .map((d) => d.trim().split(/\s+/))
        .filter((d) => d[0])
        .map(([name, ...values]) => [name!.toLowerCase(), values]),
    );
    assert.deepEqual(csp['default-src'], ["'none'"], `CSP: ${main.headers()['content-security-policy']}`);
    assert.equal(csp['script-src'], undefined, 'no script-src: scripts fall back to default-src none');
    assert.equal(csp['script-src-elem'], undefined);

    assert.equal(await page.title(), `Loupe session ${session.sessionId}`);
    assert.equal(await page.locator('h1').innerText(), 'Debugging session on app');

    // The verification banner, with the count of records in the transcript the auditor can download.
    const records = transcript.split('\n').filter((l) => l && !/"type":"(seal|manifest)"/.test(l)).length;
    const banner = page.locator('.ok');
    assert.ok(await banner.isVisible(), 'the verification banner is visible');
    assert.equal(await banner.innerText(), `Verified: ${records} records, every hash link and seal checks out, sealed by its manifest.`);
    assert.equal(await page.locator('.bad').count(), 0);

    assert.equal(await field(page, 'Who'), 'dev (dev; groups devs)');
    assert.equal(await field(page, 'Target'), 'app in pause mode');
    assert.equal(await field(page, 'Why'), reason);
    assert.equal(await field(page, 'Ticket'), ticket);
    assert.equal(await field(page, 'Grant'), session.grantId);
    assert.equal(await field(page, 'How it ended'), 'the developer disconnected');

    // The timeline as it reads: one row per breakpoint, pause, read, evaluation and refusal.
    const rows = await page
      .locator('tbody tr')
      .evaluateAll((trs) => trs.map((tr: any) => ({ tone: String(tr.className), cells: [...tr.querySelectorAll('td')].map((td: any) => String(td.innerText)) })));
    const row = (kind: string, what: RegExp) => {
      const found = rows.find((r) => r.cells[1] === kind && what.test(r.cells[2]!));
      assert.ok(found, `no ${kind} row matching ${what} in:\n${rows.map((r) => r.cells.join(' | ')).join('\n')}`);
      return { tone: found.tone, time: found.cells[0]!, what: found.cells[2]!, detail: found.cells[3]! };
    };
    assert.equal(row('session', /^session started$/).tone, 'normal');
    assert.equal(row('breakpoint', /^set at /).what, `set at app.js line ${appLine + 1}`);
    const hit = row('pause', /^breakpoint hit at /);
    assert.match(hit.what, /work .*app\.js:\d+/);
    assert.match(hit.time, /^\d\d:\d\d:\d\d\.\d{3}$/);
    assert.match(row('read', /^read /).detail, /^n=\d+, local=Object, doubled=undefined$/);
    const allowed = row('evaluate', /^local\.label$/);
    assert.equal(allowed.tone, 'normal');
    assert.match(allowed.detail, /item-\d+/);
    const sideEffect = row('evaluate', /^globalThis\.leak = local$/);
    assert.equal(sideEffect.tone, 'refused');
    assert.match(sideEffect.detail, /\(a side effect\)$/);
    const refusal = row('refused', /^Debugger\.setScriptSource refused$/);
    assert.equal(refusal.tone, 'refused');
    assert.match(refusal.detail, /\[rule .+\]/);
    assert.match(row('session', /^session ended: the developer disconnected$/).tone, /^end$/);
    // This user never attached to this target before: the first-attach rule fires, and the report shows it.
    assert.equal(row('alert', /^alert\.firstAttach$/).tone, 'alert');
    assert.deepEqual(await page.locator('.counts span').allInnerTexts(), [
      'breakpoints set: 1;',
      'pauses: 1;',
      'evaluations: 2;',
      'variable reads: 1;',
      'snapshots: 0;',
      'logpoints: 0;',
      'refusals: 2;',
      'alerts: 1',
    ]);

    // Refused rows stand out from the others.
    const background = (tr: string) =>
      page
        .locator(tr)
        .first()
        .locator('td')
        .first()
        .evaluate((td) => String((globalThis as any).getComputedStyle(td).backgroundColor));
    assert.notEqual(await background('tbody tr.refused'), await background('tbody tr.normal'));

    await page.screenshot({ path: join(artifacts, 'report.png'), fullPage: true });
    const png = pngSize(join(artifacts, 'report.png'));
    assert.ok(png.bytes > 10 * 1024, `report.png is only ${png.bytes} bytes`);
    assert.ok(png.width >= 1280 && png.height >= 600, `report.png is ${png.width}x${png.height}`);

    assert.deepEqual(problems, [], 'the page loads cleanly');

    // And the CSP really holds in the browser: an injected inline script does not run.
    await assert.rejects(page.addScriptTag({ content: 'document.title = "script ran"' }), /violates the following Content Security Policy directive/);
    assert.equal(await page.title(), `Loupe session ${session.sessionId}`);
  });

  it('answers a non-auditor with 403 JSON, and a request without a token with 401', async () => {
    const dev = await broker.token('dev', ['devs']);
    for (const [headers, status, message] of [
      [{ authorization: `Bearer ${dev}` }, 403, /auditors/],
      [{}, 401, /./],
    ] as const) {
      const page = await newPage(headers);
      const res = await page.goto(`${broker.url}/v1/sessions/${session.sessionId}/report`);
      assert.ok(res);
      assert.equal(res.status(), status);
      assert.match(res.headers()['content-type']!, /^application\/json/);
      const shown = JSON.parse(await page.locator('body').innerText());
      assert.match(shown.error.message, message);
      assert.doesNotMatch(await page.content(), /Debugging session on|investigating|checkout totals/);
    }
  });

  it('renders a tampered transcript with "Verification FAILED" and names the changed record', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'loupe-report-browser-'));
    const lines = transcript.trimEnd().split('\n');
    const index = lines.findIndex((l) => !/"type":"(seal|manifest)"/.test(l) && JSON.parse(l).seq === 4);
    assert.ok(index >= 0, 'record seq 4 is in the download');
    const changed = lines[index]!.replace(reason, reason.replace('off by one', 'fine'));
    assert.notEqual(changed, lines[index], 'the record carries the reason to change');
    lines[index] = changed;
    writeFileSync(join(dir, 'transcript.ndjson'), lines.join('\n') + '\n');
    writeFileSync(join(dir, 'keys.json'), JSON.stringify(keys));

    const output = join(dir, 'report.html');
    const render = spawnSync(process.execPath, [cli, 'audit', 'render', dir, '-o', output], { encoding: 'utf8' });
    assert.equal(render.status, 0, render.stderr);
    assert.match(render.stdout, /verification FAILED/);

    let main: Response | null = null;
    const page = await newPage();
    const problems = watchPage(page, () => main);
    main = await page.goto(pathToFileURL(output).href, { waitUntil: 'load' });
    const banner = page.locator('.bad');
    assert.ok(await banner.isVisible(), 'the failure banner is visible');
    assert.match(await banner.innerText(), /^Verification FAILED: chunk-\d+-\d+\.ndjson, line \d+ \(seq 4\): hash does not match the record \(the record was changed\)/);
    assert.equal(await page.locator('.ok').count(), 0, 'no "Verified" banner');
    const listed = await page.locator('h2:text-is("Problems") + ul li').allInnerTexts();
    assert.match(listed[0]!, /\(seq 4\): hash does not match the record/);
    assert.equal(await page.locator('text=Verified:').count(), 0);
    // The changed record's row is marked, and the reader is told not to rely on the rest.
    assert.match(await banner.innerText(), /do not rely on it/);
    const marked = await page.locator('tbody tr.tampered').allInnerTexts();
    assert.equal(marked.length, 1);
    assert.match(marked[0]!, /this record failed verification/);

    await page.screenshot({ path: join(artifacts, 'report-tampered.png'), fullPage: true });
    const png = pngSize(join(artifacts, 'report-tampered.png'));
    assert.ok(png.bytes > 10 * 1024, `report-tampered.png is only ${png.bytes} bytes`);
    assert.deepEqual(problems, [], 'the page loads cleanly');
  });
});
