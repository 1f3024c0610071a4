// needs: chromium
// Chrome DevTools' own front end (the js_app that chrome://inspect opens for Node, served by headless Chromium's
// remote-debugging port) attached to the broker's single-use ticket URL: what it asks on its own at attach is
// refused quietly (recorded as routine, no refusals alert), it reaches Debugger.enable, and the target runs on.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { chromium, type BrowserContext } from 'playwright-core';
import { chromiumArgs, chromiumPath } from '../support/browser';
import { fixtures, startTarget, type TargetProcess } from '../support/target';
import { basePolicy, startTestBroker, type TestBroker } from '../support/testBroker';

const freePort = () =>
  new Promise<number>((resolve, reject) => {
    const server = createServer();
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
    server.on('error', reject);
  });

describe('Chrome DevTools front end through the broker', () => {
  let target: TargetProcess;
  let broker: TestBroker;
  let browser: BrowserContext;
  let profile: string;
  let port: number;

  before(async () => {
    target = await startTarget(join(fixtures, 'app.js'), { TICK_MS: '100' });
    const policy = basePolicy(target.inspector);
    policy.alerting = { rules: { firstAttach: false } };
    policy.targets.app.alerts = { refusals: { count: 2, withinSeconds: 60 } };
    broker = await startTestBroker(policy);
    port = await freePort();
    profile = mkdtempSync(join(tmpdir(), 'loupe-devtools-'));
    browser = await chromium.launchPersistentContext(profile, { executablePath: chromiumPath(), headless: true, args: ['--headless', ...chromiumArgs, `--remote-debugging-port=${port}`] });
  });
  after(async () => {
    await browser?.close().catch(() => undefined);
    if (profile) rmSync(profile, { recursive: true, force: true });
    await broker?.close();
    await target?.stop();
  });

  it('attaches by the ticket URL; its attach requests are routine refusals, no alert; the target runs on', { timeout: 120_000 }, async () => {
    const token = await broker.token('dev', ['devs']);
    const grant = await broker.grant('dev', ['devs'], { reason: 'DevTools: a look at the work loop' });
    const ticket = await broker.api('POST', `/v1/grants/${grant.grantId}/tickets`, token);
    assert.equal(ticket.status, 201);
    const ws = String(ticket.body.attachUrl).replace(/^ws:\/\//, '');
    const page = browser.pages()[0] ?? (await browser.newPage());
    // The front end chrome://inspect opens for a Node target ("Open dedicated DevTools for Node").
    const opened = await page.goto(`http://127.0.0.1:${port}/devtools/js_app.html?v8only=true&ws=${encodeURIComponent(ws)}`);
    assert.equal(opened?.status(), 200);
    const session = await broker.waitForRecord('session.started', undefined, 30_000);
    await broker.waitForRecord('cdp.response', (e) => e.stream === session.stream && e.data.method === 'Debugger.enable', 30_000);
    await broker.waitForRecord('cdp.request', (e) => e.stream === session.stream && e.data.method === 'Runtime.runIfWaitingForDebugger', 30_000);
    await target.ticksAdvance(3, 10_000);
    const refused = broker.records.filter((e) => e.stream === session.stream && e.type === 'cdp.refused').map((e) => e.data as { method: string; routine?: string });
    assert.ok(refused.length >= 5, `DevTools' requests at attach are refused (${refused.length})`);
    assert.deepEqual(
      refused.filter((r) => r.routine === undefined).map((r) => r.method),
      [],
      'every refusal at attach is routine',
    );
    assert.deepEqual(
      broker.records.filter((e) => e.type === 'alert.refusals'),
      [],
      'no refusals alert at attach',
    );
    await page.close();
  });
});
