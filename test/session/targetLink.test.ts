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
