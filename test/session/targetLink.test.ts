import { strict as assert } from 'node:assert';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createServer } from 'node:net';
import { after, describe, it } from 'node:test';
import { connectInspector } from '../../broker/session/targetLink';

/** A free loopback port (listened on once, then released). */
async function freePort(): Promise<number> {
  const server = createServer().listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** A Node process with its inspector on `port`; resolves with the WebSocket URL it prints. */
async function nodeOn(port: number): Promise<{ proc: ChildProcess; wsUrl: string }> {
  const proc = spawn(process.execPath, [`--inspect=127.0.0.1:${port}`, '-e', 'setInterval(() => {}, 1000)'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  const wsUrl = await new Promise<string>((resolve, reject) => {
    proc.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
      stderr += chunk;
      const match = /Debugger listening on (ws:\/\/\S+)/.exec(stderr);
      if (match) resolve(match[1]!);
    });
    proc.once('exit', (code) => reject(new Error(`exited (${code}): ${stderr}`)));
  });
  return { proc, wsUrl };
}

describe('the target link: the inspector URL resolved once per address', () => {
  const procs: ChildProcess[] = [];
  after(() => {
    for (const proc of procs) proc.kill('SIGKILL');
  });

  it('reuses the resolved URL, and resolves afresh when another process took the address (a restart)', async () => {
    const port = await freePort();
    const first = await nodeOn(port);
    procs.push(first.proc);
    const inspector = `127.0.0.1:${port}`;
    for (let i = 0; i < 2; i++) {
      const link = await connectInspector(inspector);
      assert.equal(new URL(link.socket.url).pathname, new URL(first.wsUrl).pathname);
      link.socket.close();
      await once(link.socket, 'close');
    }
    first.proc.kill('SIGKILL');
    await once(first.proc, 'exit');
    const second = await nodeOn(port);
    procs.push(second.proc);
    assert.notEqual(new URL(second.wsUrl).pathname, new URL(first.wsUrl).pathname, 'a new process names its inspector anew');
    const link = await connectInspector(inspector);
    assert.equal(new URL(link.socket.url).pathname, new URL(second.wsUrl).pathname, 'the stale URL was dropped and the address resolved again');
    link.socket.close();
    await once(link.socket, 'close');
  });

  it('names an unreachable inspector as such', async () => {
    const port = await freePort();
    await assert.rejects(connectInspector(`127.0.0.1:${port}`), (err: Error & { code?: string }) => err.code === 'target_unreachable' && /unreachable/.test(err.message));
  });
});

describe('a target link that fails before a session takes it', () => {
  it('an invalid frame from the target as its link opens is no uncaught error: the attach ends, the broker carries on', async () => {
    const { startHostileTarget } = await import('../support/hostileTarget');
    const { basePolicy, startTestBroker } = await import('../support/testBroker');
    const { CdpClient } = await import('../support/cdpClient');
    const hostile = await startHostileTarget();
    const broker = await startTestBroker(basePolicy(hostile.inspector));
    const uncaught: unknown[] = [];
    const record = (err: unknown) => uncaught.push(err);
    // The test runner's own handler would fail some other test at random: this one counts them, and fails itself.
    process.prependListener('uncaughtException', record);
    try {
      for (let i = 0; i < 5; i++) {
        const grant = await broker.grant('dev', ['devs'], {});
        // A frame with the reserved opcode 3, the moment the broker's link to the target opens.
        const sent = hostile.nextLink().then((link) => (link as unknown as { _socket: { write(b: Buffer): void } })._socket.write(Buffer.from([0x83, 0x00])));
        const outcome = await CdpClient.connect(grant.attachUrl, { authorization: `Bearer ${grant.token}` }).then(
          async (client) => `closed ${JSON.stringify(await client.closed)}`,
          (err: Error) => `refused ${err.message}`,
        );
        await sent;
        assert.match(outcome, /target|4004|502/, outcome);
      }
      await new Promise((resolve) => setTimeout(resolve, 200));
      assert.deepEqual(uncaught.map(String), []);
      // Still serving: a request that needs no target.
      assert.equal((await fetch(`${broker.url}/healthz`)).status, 200);
    } finally {
      process.off('uncaughtException', record);
      await broker.close();
      await hostile.close();
    }
  });
});
