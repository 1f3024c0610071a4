// A client that closes its connection right after asking to attach (a FIN, or a reset, before the WebSocket upgrade
// completes): the broker has already connected to the target for it. That connection is closed and the grant can
// attach again; before, ws dropped the socket without a word, the attach waited forever, holding both.
import { strict as assert } from 'node:assert';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { startTarget, type TargetProcess } from '../support/target';
import { basePolicy, startTestBroker, type TestBroker } from '../support/testBroker';
import { CdpClient } from '../support/cdpClient';
import { waitFor } from '../support/wait';

/** Established TCP connections to `port` on this machine (/proc/net/tcp: the remote port, state 01). */
function connectionsTo(port: number): number {
  const hex = port.toString(16).toUpperCase().padStart(4, '0');
  return readFileSync('/proc/net/tcp', 'utf8')
    .split('\n')
    .slice(1)
    .filter((line) => {
      const fields = line.trim().split(/\s+/);
      return fields[2]?.endsWith(`:${hex}`) && fields[3] === '01';
    }).length;
}

function abortedUpgrade(attachUrl: string, token: string, how: 'fin' | 'reset'): Promise<void> {
  const url = new URL(attachUrl);
  return new Promise((resolve) => {
    const socket = net.connect(Number(url.port), url.hostname, () => {
      socket.write(
        `GET ${url.pathname} HTTP/1.1\r\nHost: ${url.host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
          `Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nAuthorization: Bearer ${token}\r\n\r\n`,
      );
      if (how === 'fin') socket.end();
      else setImmediate(() => socket.destroy());
    });
    socket.on('data', () => undefined);
    socket.on('error', () => undefined);
    socket.on('close', () => resolve());
  });
}

describe('an attach whose client leaves before the upgrade completes (real broker, real target)', () => {
  let target: TargetProcess;
  let broker: TestBroker;
  before(async () => {
    target = await startTarget();
    broker = await startTestBroker(basePolicy(target.inspector));
  });
  after(async () => {
    await broker.close();
    await target.stop();
  });

  it('closes the target connection it opened and lets the grant attach again, for a FIN and for a reset', async () => {
    const grants = [];
    for (let i = 0; i < 10; i++) {
      const grant = await broker.grant('dev', ['devs'], {});
      grants.push(grant);
      await abortedUpgrade(grant.attachUrl, grant.token, i % 2 === 0 ? 'fin' : 'reset');
    }
    // Each grant attaches (before: 409 "already has a live session" for every one, for good).
    for (const grant of grants) {
      const client = await CdpClient.connect(grant.attachUrl, { authorization: `Bearer ${grant.token}` });
      assert.equal((await client.call('Runtime.evaluate', { expression: '1 + 1', returnByValue: true })).result.value, 2);
      await client.close();
    }
    // And no connection to the target's inspector is left open (each attach above closed its own).
    await waitFor(() => connectionsTo(Number(new URL(`http://${target.inspector}`).port)) === 0, { what: 'the target connections of the aborted attaches to close', timeoutMs: 5000 });
  });
});
