// One session floods the broker with cheap requests (reading its answers): the broker, as its own process, keeps
// answering /healthz and a session on another target. A session with many requests unanswered by its target has
// its frames read no faster than they are answered (a fair share), and everything it sent is still answered.
import { strict as assert } from 'node:assert';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { stringify } from 'yaml';
import { parseConfigText } from '../../broker/config/load';
import { mintDevToken } from '../../broker/identity/devIssuer';
import { brokerUrl } from '../support/brokerProcess';
import { CdpClient } from '../support/cdpClient';
import { startTarget, type TargetProcess } from '../support/target';
import { basePolicy } from '../support/testBroker';
import { sleep } from '../support/wait';

const cli = join(__dirname, '..', '..', 'dist', 'cli.js');

describe('a request flood from one session (broker as its own process, two real targets)', () => {
  const cleanup: (() => Promise<void> | void)[] = [];
  after(async () => {
    for (const undo of cleanup.reverse()) await undo();
  });

  it('leaves /healthz and a session on another target answered, and answers every request of the flood', async () => {
    const targets: TargetProcess[] = [await startTarget(), await startTarget()];
    cleanup.push(() => Promise.all(targets.map((t) => t.stop())).then(() => undefined));
    const dir = mkdtempSync(join(tmpdir(), 'loupe-flood-'));
    cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
    const policy = basePolicy(targets[0]!.inspector);
    policy.targets.other = { ...policy.targets.app, inspector: targets[1]!.inspector };
    const configFile = join(dir, 'loupe.yaml');
    writeFileSync(configFile, stringify({ ...policy, stateDir: join(dir, 'state') }));
    const proc: ChildProcess = spawn(process.execPath, [cli, 'broker', '--config', configFile], { stdio: ['ignore', 'pipe', 'pipe'] });
    cleanup.push(() => void proc.kill('SIGKILL'));
    let stderr = '';
    proc.stderr!.on('data', (c) => (stderr += c));
    const url = await brokerUrl(proc, () => stderr);
    const token = await mintDevToken(parseConfigText(readFileSync(configFile, 'utf8'), dir), { user: 'dev', groups: ['devs'] });
    const connect = async (target: string) => {
      const res = await fetch(`${url}/v1/grants`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ target, mode: 'pause', durationSeconds: 300, reason: 'flood test' }),
      });
      const grant = (await res.json()) as { attachUrl: string; token: string };
      const client = await CdpClient.connect(grant.attachUrl, { authorization: `Bearer ${grant.token}` });
      cleanup.push(() =>
        client.close().then(
          () => undefined,
          () => undefined,
        ),
      );
      return client;
    };
    const victim = await connect('other');
    await victim.call('Runtime.enable');
    const flooder = await connect('app');
    let answers = 0;
    flooder.socket.on('message', () => answers++);
    const count = 50_000;
    for (let i = 0; i < count; i++) flooder.socket.send(`{"id":${10_000 + i},"method":"Runtime.getHeapUsage","params":{}}`);
    const health: number[] = [];
    const victimMs: number[] = [];
    const started = Date.now();
    while (answers < count && Date.now() - started < 60_000) {
      let t = performance.now();
      assert.equal((await fetch(`${url}/healthz`)).status, 200);
      health.push(performance.now() - t);
      t = performance.now();
      const id = 1_000_000 + victimMs.length;
      await victim.sendRaw(JSON.stringify({ id, method: 'Runtime.getIsolateId', params: {} }), id, 30_000);
      victimMs.push(performance.now() - t);
      await sleep(200);
    }
    assert.equal(answers, count, 'every request of the flood was answered');
    // Before: the other session waited 9–11 s for one answer, /healthz up to 1.7 s.
    assert.ok(Math.max(...victimMs) < 2000, `the other session's slowest answer took ${Math.max(...victimMs).toFixed(0)} ms`);
    assert.ok(Math.max(...health) < 1500, `the slowest /healthz took ${Math.max(...health).toFixed(0)} ms`);
  });
});
