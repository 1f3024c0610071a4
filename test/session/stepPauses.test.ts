// Two steps sent together, each taken by V8 from a pause: the second step's pause is the session's own too, so a
// session that ends in it resumes it (another Debugger-enabled client connected keeps V8 from doing so). Against the
// broker as its own process: only there do the two steps reach V8 one pause apart (in-process, V8 takes both in one).
import { strict as assert } from 'node:assert';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { stringify } from 'yaml';
import { parseConfigText } from '../../broker/config/load';
import { mintDevToken } from '../../broker/identity/devIssuer';
import { brokerUrl } from '../support/brokerProcess';
import { cli } from '../support/built';
import { CdpClient } from '../support/cdpClient';
import { fixtures, markerLine, startTarget } from '../support/target';
import { basePolicy } from '../support/testBroker';

const appLine = markerLine(join(fixtures, 'app.js'), 'work');

describe('a session ending in the pause of its second step (the broker as a process, a real target, a direct client connected)', () => {
  it('two steps sent together, two pauses shown, then close: the target runs on', async () => {
    const target = await startTarget();
    const dir = mkdtempSync(join(tmpdir(), 'loupe-steps-'));
    const base = basePolicy(target.inspector);
    const configFile = join(dir, 'loupe.yaml');
    writeFileSync(configFile, stringify({ ...base, targets: { app: { ...base.targets.app, maxPauseSeconds: 60 } }, stateDir: join(dir, 'state') }));
    const config = parseConfigText(readFileSync(configFile, 'utf8'), dir);
    const proc = spawn(process.execPath, [cli, 'broker', '--config', configFile], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    proc.stderr!.on('data', (c) => (stderr += String(c)));
    const observer = await CdpClient.connect(target.wsUrl);
    try {
      const url = await brokerUrl(proc, () => stderr);
      proc.stdout!.resume();
      await observer.call('Debugger.enable');
      const token = await mintDevToken(config, { user: 'dev', groups: ['devs'] });
      // V8 takes the second step from the first one's pause (two pauses) or, now and then, in the same step (one):
      // sessions are tried until the first happens.
      let twoPauses = false;
      for (let attempt = 1; attempt <= 10 && !twoPauses; attempt++) {
        const res = await fetch(`${url}/v1/grants`, {
          method: 'POST',
          headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
          body: JSON.stringify({ target: 'app', mode: 'pause', durationSeconds: 300, reason: 'two steps' }),
        });
        const grant = (await res.json()) as { attachUrl: string; token: string };
        const client = await CdpClient.connect(grant.attachUrl, { authorization: `Bearer ${grant.token}` });
        await client.call('Debugger.enable');
        const { breakpointId } = await client.call('Debugger.setBreakpointByUrl', { lineNumber: appLine, urlRegex: 'app\\.js$' });
        await client.waitEvent('Debugger.paused');
        await client.call('Debugger.removeBreakpoint', { breakpointId });
        let pauses = 0;
        client.socket.on('message', (data) => String(data).includes('"Debugger.paused"') && pauses++);
        for (const id of [100, 101]) client.socket.send(JSON.stringify({ id, method: 'Debugger.stepOver', params: {} }));
        await new Promise((resolve) => setTimeout(resolve, 500));
        twoPauses = pauses === 2;
        await client.close();
        // Well inside maxPauseSeconds, with the observer keeping V8 from resuming on the disconnect: only the ending
        // session's own resume can explain a target that runs.
        await target.ticksAdvance(3, 10_000);
      }
      assert.ok(twoPauses, 'two step pauses in 10 sessions');
    } finally {
      await observer.close().catch(() => undefined);
      proc.kill('SIGTERM');
      await new Promise((resolve) => proc.once('exit', resolve));
      await target.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
