import { strict as assert } from 'node:assert';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { parseTranscriptText, verifyTranscript } from '../../broker/audit/verify';
import { once } from 'node:events';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { stringify } from 'yaml';
import { parseConfigText } from '../../broker/config/load';
import { mintDevToken } from '../../broker/identity/devIssuer';
import { CdpClient } from '../support/cdpClient';
import { brokerUrl, verifyEndedSessions } from '../support/brokerProcess';
import { fixtures, markerLine, startTarget, type TargetProcess } from '../support/target';
import { basePolicy } from '../support/testBroker';
import { waitFor, within } from '../support/wait';

const appLine = markerLine(join(fixtures, 'app.js'), 'work');
const cli = join(__dirname, '..', '..', 'dist', 'cli.js');

/** Fills the filesystem at `dir` to the last byte. */
function fill(dir: string): void {
  spawnSync('sh', ['-c', `cat /dev/zero > ${join(dir, 'filler')}`]);
  assert.notEqual(spawnSync('sh', ['-c', `echo x >> ${join(dir, 'filler-check')}`]).status, 0, 'the filesystem is full');
}

async function startBroker(configFile: string, log: string[]): Promise<{ proc: ChildProcess; url: string }> {
  const child = spawn(process.execPath, [cli, 'broker', '--config', configFile], { stdio: ['ignore', 'pipe', 'pipe'] });
  child.stderr!.on('data', (c) => log.push(String(c)));
  const url = await brokerUrl(child, () => log.join(''));
  return { proc: child, url };
}

describe('a full disk under the state directory (a real 2 MB tmpfs)', () => {
  let dir: string;
  let state: string;
  let target: TargetProcess;
  let proc: ChildProcess | undefined;
  const log: string[] = [];
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'loupe-full-'));
    state = join(dir, 'state');
    mkdirSync(state);
    const mounted = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', state], { encoding: 'utf8' });
    assert.equal(mounted.status, 0, mounted.stderr);
    target = await startTarget();
  });
  after(async () => {
    proc?.kill('SIGKILL');
    await target?.stop();
    spawnSync('umount', ['-l', state]);
    rmSync(dir, { recursive: true, force: true });
  });

  it('refuses what it cannot record, answers 503, exits 0 on SIGTERM, starts not ready, and recovers when space returns: every session verifies', async () => {
    const configFile = join(dir, 'loupe.yaml');
    const policy = basePolicy(target.inspector, {
      roles: { ...basePolicy('').roles, auditor: { groups: ['auditors'] } },
      auditors: ['auditor'],
      // The store is elsewhere (not full): only the state directory, and so the WAL, is on the full disk.
      audit: { store: 'local', dir: join(dir, 'store'), uploadInterval: '1s', failClosedAfter: '1h', chunkMaxEvents: 50 },
    });
    writeFileSync(configFile, stringify({ ...policy, stateDir: state }));
    const config = parseConfigText(readFileSync(configFile, 'utf8'), dir);
    let broker = await startBroker(configFile, log);
    proc = broker.proc;
    const dev = await mintDevToken(config, { user: 'dev', groups: ['devs'] });
    const api = async (url: string, method: string, path: string, token: string | undefined, body?: unknown) => {
      const res = await fetch(`${url}${path}`, {
        method,
        headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(body ? { 'content-type': 'application/json' } : {}) },
        body: body ? JSON.stringify(body) : undefined,
      });
      const text = await res.text();
      return { status: res.status, body: text ? JSON.parse(text) : undefined };
    };
    const grantBody = { target: 'app', mode: 'pause', durationSeconds: 300, reason: 'full disk test' };
    const grant = (await api(broker.url, 'POST', '/v1/grants', dev, grantBody)).body;
    const client = await CdpClient.connect(grant.attachUrl, { authorization: `Bearer ${grant.token}` });
    await client.call('Debugger.enable');
    // The judge: a debugger of our own on the target sees any pause the broker's session causes.
    const observer = await CdpClient.connect(target.wsUrl);
    await observer.call('Debugger.enable');
    const pauses = () => observer.events.filter((e) => e.method === 'Debugger.paused').length;

    fill(state);
    // Records that still fit in the WAL's last page are durable and go on; the first that does not must end it all.
    const padding = 'x'.repeat(900);
    let refusedOrEnded = false;
    for (let i = 0; i < 40 && !refusedOrEnded; i++) {
      // A call the session's close cut short (the client fails it as the socket closes) counts as ended too.
      const reply = await Promise.race([client.send('Runtime.evaluate', { expression: `"${padding}${i}"`, returnByValue: true }).catch(() => undefined), client.closed.then(() => undefined)]);
      if (!reply || reply.error) refusedOrEnded = true;
    }
    assert.ok(refusedOrEnded, 'a request the WAL could not take was refused or ended the session');
    // Nothing unrecorded reaches the target: a breakpoint asked for now is never set.
    await Promise.race([client.send('Debugger.setBreakpointByUrl', { lineNumber: appLine, urlRegex: 'app\\.js$' }).catch(() => undefined), client.closed]);
    await target.ticksAdvance(3);
    assert.equal(pauses(), 0, 'the target never paused');
    const closed = await within(client.closed, 10_000, undefined);
    assert.equal(closed?.code, 4005, 'the session ended on the audit failure');

    const refused = await api(broker.url, 'POST', '/v1/grants', dev, grantBody);
    assert.equal(refused.status, 503);
    assert.equal(refused.body.error.code, 'audit_unavailable');
    assert.equal((await fetch(`${broker.url}/readyz`)).status, 503);

    proc.kill('SIGTERM');
    const [code] = await once(proc, 'exit');
    assert.equal(code, 0, log.join(''));

    // Starts with the disk still full, and says it is not ready.
    broker = await startBroker(configFile, log);
    proc = broker.proc;
    const ready = await fetch(`${broker.url}/readyz`);
    assert.equal(ready.status, 503);
    assert.equal(((await ready.json()) as any).audit.state, 'failed');
    assert.equal((await api(broker.url, 'POST', '/v1/grants', dev, grantBody)).status, 503);

    // Space returns: ready within seconds, attaching works, and every session verifies.
    rmSync(join(state, 'filler'));
    rmSync(join(state, 'filler-check'), { force: true });
    await waitFor(async () => ((await fetch(`${broker.url}/readyz`)).status === 200 ? true : undefined), { what: 'ready after space returned', timeoutMs: 15_000, intervalMs: 200 });
    const again = (await api(broker.url, 'POST', '/v1/grants', dev, grantBody)).body;
    const second = await CdpClient.connect(again.attachUrl, { authorization: `Bearer ${again.token}` });
    assert.equal((await second.call('Runtime.evaluate', { expression: '6 * 7', returnByValue: true })).result.value, 42);
    await second.close();
    const auditor = await mintDevToken(config, { user: 'audrey', groups: ['auditors'] });
    await verifyEndedSessions(broker.url, auditor, 2);
    await observer.close();
    proc.kill('SIGTERM');
    assert.equal((await once(proc, 'exit'))[0], 0);
    proc = undefined;
  });
});

describe('the WAL on a filesystem that takes only part of a write', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'loupe-short-'));
    const mounted = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', dir], { encoding: 'utf8' });
    assert.equal(mounted.status, 0, mounted.stderr);
  });
  after(() => {
    spawnSync('umount', ['-l', dir]); // lazily: a WAL handle left open by a failed assertion must not keep it mounted
    rmSync(dir, { recursive: true, force: true });
  });

  it('a short write is a failure, not a durable record, and the segment keeps only whole records', async () => {
    const { WriteAheadLog } = await import('../../broker/audit/wal');
    const walDir = join(dir, 'wal');
    const { wal } = await WriteAheadLog.open(walDir, { maxBatch: 64, segmentBytes: 1 << 20 });
    const context = { stream: 's1', kind: 'session' as const, startedAt: new Date().toISOString(), retentionDays: 1 };
    await wal.append({ t: 'open', context });
    fill(dir);
    // The segment's last page has room for part of this record only: the kernel takes a part and says how much.
    const event = {
      seq: 0,
      time: new Date().toISOString(),
      type: 'cdp.request' as const,
      code: 'L3000',
      stream: 's1',
      kind: 'session' as const,
      data: { padding: 'x'.repeat(6000) },
      prev: 'p',
      hash: 'h',
    };
    await assert.rejects(wal.append({ t: 'event', event }), /short write|ENOSPC/);
    assert.ok(wal.failed, 'the WAL fails closed');
    await wal.close();
    rmSync(join(dir, 'filler'));
    // What is on disk: only whole records (the open), nothing of the refused event.
    const reopened = await WriteAheadLog.open(walDir, { maxBatch: 64, segmentBytes: 1 << 20 });
    assert.deepEqual(reopened.wal.repairs, []);
    assert.deepEqual(reopened.recovered.get('s1')?.events, []);
    await reopened.wal.close();
  });

  it("a busy WAL's commit through its writer thread that the disk refuses: every record in it is refused with the disk's code, and the segment keeps only whole records", async () => {
    rmSync(join(dir, 'filler'), { force: true });
    rmSync(join(dir, 'filler-check'), { force: true });
    const { WriteAheadLog } = await import('../../broker/audit/wal');
    const walDir = join(dir, 'wal-busy');
    const { wal } = await WriteAheadLog.open(walDir, { maxBatch: 64, segmentBytes: 1 << 20 });
    // Two streams in one commit: the WAL counts as busy, so its next commits go through the writer thread.
    const contexts = ['b1', 'b2'].map((stream) => ({ stream, kind: 'session' as const, startedAt: new Date().toISOString(), retentionDays: 1 }));
    await Promise.all(contexts.map((context) => wal.append({ t: 'open', context })));
    fill(dir);
    const event = (stream: string) => ({
      seq: 0,
      time: new Date().toISOString(),
      type: 'cdp.request' as const,
      code: 'L3000',
      stream,
      kind: 'session' as const,
      data: { padding: 'x'.repeat(6000) },
      prev: 'p',
      hash: 'h',
    });
    const results = await Promise.allSettled(contexts.map((c) => wal.append({ t: 'event', event: event(c.stream) })));
    for (const result of results) {
      assert.equal(result.status, 'rejected');
      assert.match(String((result as PromiseRejectedResult).reason.message), /short write|ENOSPC/);
    }
    assert.ok(wal.failed, 'the WAL fails closed');
    await wal.close();
    rmSync(join(dir, 'filler'));
    const reopened = await WriteAheadLog.open(walDir, { maxBatch: 64, segmentBytes: 1 << 20 });
    assert.deepEqual(reopened.wal.repairs, []);
    for (const c of contexts) assert.deepEqual(reopened.recovered.get(c.stream)?.events, []);
    await reopened.wal.close();
  });
});
