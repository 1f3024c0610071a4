// The extension's alerts for owners (extension/alerts.ts, what the "Loupe Alerts" view shows and notifies) against a
// real broker whose alert rules fire on a real session with a real target: the owner's list (newest first, rule,
// target, user, time, message, evidence), each new alert reported once (also across a restart of the watcher), and
// the broker's refusal for someone who owns nothing.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { BrokerApi } from '../../extension/adapter/brokerApi';
import { AlertWatcher, alertRow, alertTooltip, evidenceRow, notificationText, pollAlerts, type AlertInfo } from '../../extension/alerts';
import type { CdpClient } from '../support/cdpClient';
import { fixtures, markerLine, startTarget, type TargetProcess } from '../support/target';
import { alertRulesOff, basePolicy, startTestBroker, type TestBroker } from '../support/testBroker';
import { sleep, waitFor } from '../support/wait';

const appLine = markerLine(join(fixtures, 'app.js'), 'work');
describe('alerts for owners, as the extension fetches and shows them (real broker, real target)', () => {
  let target: TargetProcess;
  let broker: TestBroker;
  let owner: BrokerApi;
  let client: CdpClient;
  let frame: any;

  before(async () => {
    target = await startTarget();
    const base = basePolicy(target.inspector);
    broker = await startTestBroker({
      ...base,
      alerting: { rules: alertRulesOff },
      targets: { app: { ...base.targets.app, alerts: { refusals: { count: 2, withinSeconds: 60 }, sensitiveReads: { names: ['apiKey'] } } } },
    });
    owner = new BrokerApi(broker.url, await broker.token('olga', ['owners']));
    ({ client } = await broker.attach());
    await client.call('Debugger.enable');
    await client.call('Debugger.setBreakpointByUrl', { lineNumber: appLine, urlRegex: 'app\\.js$' });
    frame = (await client.waitEvent('Debugger.paused')).params.callFrames[0];
  });
  after(async () => {
    await client?.close();
    await broker?.close();
    await target?.stop();
  });

  /** Polls as the owner until the broker lists `n` alerts. */
  async function untilListed(watcher: AlertWatcher, n: number) {
    let poll: Awaited<ReturnType<typeof pollAlerts>> | undefined;
    await waitFor(
      async () => {
        poll = await pollAlerts(owner, watcher);
        return poll.kind !== 'alerts' || poll.alerts.length >= n;
      },
      { what: () => `${n} alerts listed (the broker lists ${poll?.kind === 'alerts' ? poll.alerts.length : '?'})`, intervalMs: 50 },
    );
    assert.equal(poll!.kind, 'alerts', JSON.stringify(poll));
    return poll!;
  }

  it('lists the owner’s alerts newest first and reports each new one once, across a restart of the watcher', async () => {
    const watcher = new AlertWatcher();
    // The first look learns what is there (nothing yet) and reports nothing.
    const first = await pollAlerts(owner, watcher);
    assert.deepEqual(first, { kind: 'alerts', alerts: [], fresh: [] });

    // Two side effects refused by V8 in one session: the refusals rule fires.
    for (const expression of ['globalThis.a = 1', 'globalThis.b = 2']) await client.call('Debugger.evaluateOnCallFrame', { callFrameId: frame.callFrameId, expression });
    const one = await untilListed(watcher, 1);
    assert.equal(one.kind, 'alerts');
    if (one.kind !== 'alerts') return;
    const refusals = one.alerts[0]!;
    assert.equal(refusals.rule, 'refusals');
    assert.equal(refusals.target, 'app');
    assert.equal(refusals.user, 'dev');
    assert.equal(refusals.message, '2 refusals within 60 s (threshold 2)');
    assert.equal(refusals.evidence.length, 2);
    assert.deepEqual(
      one.fresh.map((a) => a.id),
      [refusals.id],
      'reported as new',
    );
    const again = await pollAlerts(owner, watcher);
    assert.deepEqual(again.kind === 'alerts' ? again.fresh : again, [], 'and only once');

    // A read of a name the owner marks sensitive: a second alert, listed first.
    await sleep(5); // distinct timestamps
    await client.call('Debugger.evaluateOnCallFrame', { callFrameId: frame.callFrameId, expression: 'secrets.apiKey' });
    const two = await untilListed(watcher, 2);
    if (two.kind !== 'alerts') return;
    assert.deepEqual(
      two.alerts.map((a) => a.rule),
      ['sensitiveReads', 'refusals'],
      'newest first',
    );
    assert.ok(Date.parse(two.alerts[0]!.at) >= Date.parse(two.alerts[1]!.at));
    assert.deepEqual(
      two.fresh.map((a) => a.rule),
      ['sensitiveReads'],
      'only the new one is reported',
    );

    // A watcher that remembers the ids (VS Code restarted) reports nothing again; one that remembers nothing
    // starts from what is there.
    const restarted = new AlertWatcher({ seen: watcher.seenIds });
    const afterRestart = await pollAlerts(owner, restarted);
    assert.deepEqual(afterRestart.kind === 'alerts' ? afterRestart.fresh : afterRestart, []);
    const fresh = await pollAlerts(owner, new AlertWatcher());
    assert.equal(fresh.kind, 'alerts');
    assert.deepEqual(fresh.kind === 'alerts' && fresh.fresh, []);
    // …unless it is told to report everything it has not seen.
    const everything = await pollAlerts(owner, new AlertWatcher({ baselineFirst: false }));
    assert.deepEqual(everything.kind === 'alerts' && everything.fresh.map((a) => a.rule), ['sensitiveReads', 'refusals']);

    // Admins see every target's alerts too.
    const admin = await pollAlerts(new BrokerApi(broker.url, await broker.token('ada', ['admins'])), new AlertWatcher());
    assert.deepEqual(
      admin.kind === 'alerts' && admin.alerts.map((a) => a.id),
      two.alerts.map((a) => a.id),
    );
  });

  it('words a row, its tooltip (the evidence) and the notification from the broker’s alert', async () => {
    const poll = await pollAlerts(owner, new AlertWatcher());
    assert.equal(poll.kind, 'alerts');
    const alerts = poll.kind === 'alerts' ? poll.alerts : [];
    const refusals = alerts.find((a) => a.rule === 'refusals')!;
    const at = new Date(refusals.at);
    const row = alertRow(refusals, at);
    assert.equal(row.label, 'refusals · app');
    const hhmmss = [at.getHours(), at.getMinutes(), at.getSeconds()].map((n) => String(n).padStart(2, '0')).join(':');
    assert.equal(row.description, `dev · ${hhmmss} · 2 refusals within 60 s (threshold 2)`);
    // Another day: the date is shown too.
    assert.match(alertRow(refusals, new Date(at.getTime() + 3 * 86_400_000)).description, /^dev · \d{4}-\d\d-\d\d \d\d:\d\d:\d\d · /);
    const tooltip = alertTooltip(refusals);
    assert.match(tooltip, /\*\*refusals\*\* on \*\*app\*\*: 2 refusals within 60 s/);
    assert.match(tooltip, new RegExp(`session ${refusals.session}`));
    assert.match(tooltip, /Evidence \(2 records of the session's audit chain\)/);
    for (const e of refusals.evidence) {
      assert.match(e.summary, /side effect/);
      assert.ok(tooltip.includes(`- seq ${e.seq} \`${e.type}\`: `), `evidence seq ${e.seq} in the tooltip`);
      assert.deepEqual(evidenceRow(e), { label: `seq ${e.seq} ${e.type}`, description: e.summary });
    }
    // Values from the session cannot turn into Markdown.
    const crafted: AlertInfo = { ...refusals, message: 'x *y* [link](http://evil) <b>', evidence: [] };
    assert.match(alertTooltip(crafted), /x \\\*y\\\* \\\[link\\\]\(http:\/\/evil\) \\<b\\>/);
    const sensitive = alerts.find((a) => a.rule === 'sensitiveReads')!;
    assert.equal(notificationText([]), undefined);
    assert.equal(notificationText([sensitive]), `Loupe alert on app: sensitiveReads (dev): ${sensitive.message}`);
    assert.match(sensitive.message, /apiKey/);
    assert.match(notificationText(alerts)!, /^Loupe: 2 new alerts on app; newest: sensitiveReads \(dev\): /);
  });

  it('tells someone who owns no target why there is no list, and an unreachable broker as an error', async () => {
    const dev = await pollAlerts(new BrokerApi(broker.url, await broker.token('dev', ['devs'])), new AlertWatcher());
    assert.equal(dev.kind, 'not-owner');
    assert.match(dev.kind === 'not-owner' ? dev.message : '', /^Alerts are shown to the owners of a target and to admins; the broker says: alerts are for the owners of a target and admins$/);
    const down = await pollAlerts(new BrokerApi('http://127.0.0.1:9', 'x.y.z'), new AlertWatcher());
    assert.equal(down.kind, 'error');
    assert.match(down.kind === 'error' ? down.message : '', /^Cannot list alerts: cannot reach the Loupe broker at http:\/\/127\.0\.0\.1:9/);
    const badToken = await pollAlerts(new BrokerApi(broker.url, 'x.y.z'), new AlertWatcher());
    assert.equal(badToken.kind, 'error');
  });
});
