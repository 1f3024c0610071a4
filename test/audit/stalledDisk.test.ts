import { strict as assert } from 'node:assert';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { stringify } from 'yaml';
import { parseTranscriptText, verifyTranscript } from '../../broker/audit/verify';
import { parseConfigText } from '../../broker/config/load';
import { mintDevToken } from '../../broker/identity/devIssuer';
import { brokerUrl, verifyEndedSessions } from '../support/brokerProcess';
import { CdpClient } from '../support/cdpClient';
import { FreezableDisk, frozenDiskUnavailable } from '../support/frozenDisk';
import { fixtures, markerLine, startTarget, type TargetProcess } from '../support/target';
import { basePolicy } from '../support/testBroker';
import { waitFor, within } from '../support/wait';

const appLine = markerLine(join(fixtures, 'app.js'), 'work');
const cli = join(__dirname, '..', '..', 'dist', 'cli.js');

describe('a disk under the state directory that stops answering (a real ext4 on a loop device, frozen)', { skip: frozenDiskUnavailable }, () => {
  let dir: string;
  let disk: FreezableDisk;
  let state: string;
  let target: TargetProcess;
  let proc: ChildProcess | undefined;
  const log: string[] = [];
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'loupe-stall-'));
    disk = new FreezableDisk(join(dir, 'disk'));
    state = disk.path;
    target = await startTarget();
  });
  after(async () => {
    proc?.kill('SIGKILL');
    await target?.stop();
    disk?.remove();
    rmSync(dir, { recursive: true, force: true });
  });

  async function startBroker(name: string): Promise<{ child: ChildProcess; url: string; config: ReturnType<typeof parseConfigText> }> {
    const configFile = join(dir, `${name}.yaml`);
    const policy = basePolicy(target.inspector, {
      roles: { ...basePolicy('').roles, auditor: { groups: ['auditors'] } },
      auditors: ['auditor'],
      // The store is elsewhere (it keeps answering): only the state directory, with the WAL, stops.
      audit: { store: 'local', dir: join(dir, `${name}-store`), uploadInterval: '1s', failClosedAfter: '1h', walStallAfter: '2s' },
    });
    writeFileSync(configFile, stringify({ ...policy, stateDir: join(state, name) }));
    const config = parseConfigText(readFileSync(configFile, 'utf8'), dir);
    log.length = 0;
    const child = spawn(process.execPath, [cli, 'broker', '--config', configFile], { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stderr!.on('data', (c) => log.push(String(c)));
    proc = child;
    return { child, url: await brokerUrl(child, () => log.join('')), config };
  }

  it('keeps answering, resumes the paused target, refuses what it cannot record, and recovers when the disk answers: every session verifies', async () => {
    const { child, url, config } = await startBroker('first');
    const dev = await mintDevToken(config, { user: 'dev', groups: ['devs'] });
    const grantBody = { target: 'app', mode: 'pause', durationSeconds: 300, reason: 'stalled disk test' };
    const postGrant = () => fetch(`${url}/v1/grants`, { method: 'POST', headers: { authorization: `Bearer ${dev}`, 'content-type': 'application/json' }, body: JSON.stringify(grantBody) });
    const grant = (await (await postGrant()).json()) as any;
    const client = await CdpClient.connect(grant.attachUrl, { authorization: `Bearer ${grant.token}` });
    await client.call('Debugger.enable');
    const observer = await CdpClient.connect(target.wsUrl);
    await observer.call('Debugger.enable');
    await client.call('Debugger.pause');
    await observer.waitEvent('Debugger.paused');
    await assert.rejects(target.ticksAdvance(2, 300), /held paused/);

    disk.freeze();
    // The event loop never waits on the frozen disk: the broker answers throughout, and a grant asked for now is refused.
    const slowest = { ms: 0 };
    const unanswered: string[] = [];
    let probing = true;
    const probes = (async () => {
      while (probing) {
        const started = performance.now();
        const status = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(5000) }).then(
          (res) => res.status,
          (err: Error) => `${err.name}: ${err.message}`,
        );
        slowest.ms = Math.max(slowest.ms, performance.now() - started);
        if (status !== 200) unanswered.push(String(status));
        await new Promise((r) => setTimeout(r, 100));
      }
    })();
    const sentAt = performance.now();
    const breakpoint = client.send('Debugger.setBreakpointByUrl', { lineNumber: appLine, urlRegex: 'app\\.js$' }).catch((err: Error) => ({ error: { code: 0, message: err.message } }));
    const grantRefused = await within(postGrant(), 15_000, undefined);
    assert.ok(grantRefused, 'a grant asked for on the frozen disk is answered');
    assert.equal(grantRefused.status, 503, await grantRefused.clone().text());
    assert.match(((await grantRefused.json()) as any).error.code, /^(audit|state)_unavailable$/);
    const ended = await within(client.closed, 15_000, undefined);
    assert.equal(ended?.code, 4005, 'the session ended on the audit failure');
    const answer = await within(breakpoint, 1000, undefined);
    if (answer && 'error' in answer && answer.error) assert.match(answer.error.message, /stalled|audit|closed|no reply/);
    assert.ok(performance.now() - sentAt < 12_000, 'refused within the stall bound and a few seconds');

    // Production is not left paused, and nothing the disk did not take reached it: the breakpoint was never set.
    await target.ticksAdvance(5, 10_000);
    const pausesBefore = observer.events.filter((e) => e.method === 'Debugger.paused').length;
    await target.ticksAdvance(10, 10_000);
    assert.equal(observer.events.filter((e) => e.method === 'Debugger.paused').length, pausesBefore, 'the target did not pause again');
    const ready = await fetch(`${url}/readyz`);
    assert.equal(ready.status, 503);
    assert.match(JSON.stringify(await ready.json()), /stalled/);
    probing = false;
    await probes;
    assert.deepEqual(unanswered, [], '/healthz answered every time');
    assert.ok(slowest.ms < 1000, `the broker answered within 1 s throughout (slowest ${slowest.ms.toFixed(0)} ms)`);

    disk.thaw();
    await waitFor(async () => ((await fetch(`${url}/readyz`)).status === 200 ? true : undefined), { what: 'ready after the disk answered', timeoutMs: 20_000, intervalMs: 200 });
    const again = (await (await postGrant()).json()) as any;
    const second = await CdpClient.connect(again.attachUrl, { authorization: `Bearer ${again.token}` });
    assert.equal((await second.call('Runtime.evaluate', { expression: '6 * 7', returnByValue: true })).result.value, 42);
    await second.close();

    const auditor = await mintDevToken(config, { user: 'audrey', groups: ['auditors'] });
    // Whatever reached the target is in the transcript before it: the breakpoint asked for on the frozen disk never was.
    for (const { events } of await verifyEndedSessions(url, auditor, 2)) {
      assert.equal(events.filter((e) => e.type === 'cdp.response' && (e.data as any).method === 'Debugger.setBreakpointByUrl').length, 0, 'no breakpoint was set');
    }
    await observer.close();
    child.kill('SIGTERM');
    assert.equal((await once(child, 'exit'))[0], 0, log.join(''));
    proc = undefined;
  });
  it('stops on SIGTERM while the disk is frozen: the paused target is resumed and its breakpoints removed, the broker stops answering within a bound, and the process ends once the disk answers', async () => {
    const { child, url, config } = await startBroker('stopping');
    const dev = await mintDevToken(config, { user: 'dev', groups: ['devs'] });
    const res = await fetch(`${url}/v1/grants`, {
      method: 'POST',
      headers: { authorization: `Bearer ${dev}`, 'content-type': 'application/json' },
      body: JSON.stringify({ target: 'app', mode: 'pause', durationSeconds: 300, reason: 'frozen disk shutdown test' }),
    });
    const grant = (await res.json()) as any;
    const client = await CdpClient.connect(grant.attachUrl, { authorization: `Bearer ${grant.token}` });
    await client.call('Debugger.enable');
    await client.call('Debugger.setBreakpointByUrl', { lineNumber: appLine, urlRegex: 'app\\.js$' });
    await client.waitEvent('Debugger.paused');
    await assert.rejects(target.ticksAdvance(2, 300), /held paused/);

    disk.freeze();
    const stoppedAt = performance.now();
    child.kill('SIGTERM');
    // Production first: resumed, and the breakpoint gone (it would pause the target again within a tick).
    await target.ticksAdvance(5, 10_000);
    await waitFor(() => (/stopping without it/.test(log.join('')) ? true : undefined), { what: 'the shutdown to finish without the disk', timeoutMs: 30_000, intervalMs: 100 });
    const tookMs = performance.now() - stoppedAt;
    assert.ok(tookMs < 20_000, `shut down ${(tookMs / 1000).toFixed(1)} s after SIGTERM`);
    // Nothing answers any more: the port is closed although the process cannot end while one of its threads waits on the disk.
    await assert.rejects(fetch(`${url}/healthz`, { signal: AbortSignal.timeout(3000) }));
    const exited = once(child, 'exit');
    disk.thaw();
    const exit = await within(exited, 15_000, undefined);
    assert.ok(exit, `the process ended once the disk answered:\n${log.join('')}`);
    proc = undefined;
    await client.close();
  });
});
