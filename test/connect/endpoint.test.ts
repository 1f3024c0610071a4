// The local endpoint's gate, on real sockets: which requests reach the broker. Raw HTTP upgrades (so Host and Origin
// are exactly what a hostile page or process sends), fuzzed with fast-check. The broker side is not needed to decide
// admission: openBroker answers 503 with a marker, so an upgrade that passed every check of the endpoint says so.
import { strict as assert } from 'node:assert';
import { spawn } from 'node:child_process';
import { connect as tcpConnect } from 'node:net';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import WebSocket from 'ws';
import { AttachRefusal, LocalEndpoint, type SessionClosed } from '../../broker/connect/endpoint';
import { fuzzFrames, fuzzSeed } from '../support/fuzz';
import { startTarget, type TargetProcess } from '../support/target';
import { basePolicy, startTestBroker, type TestBroker } from '../support/testBroker';

const passed = 'the upgrade passed every check of the endpoint';

/** Sends one raw request and returns the status line and body of the answer. */
function raw(port: number, request: string): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const socket = tcpConnect(port, '127.0.0.1');
    let text = '';
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => (text += chunk));
    socket.on('end', () => resolve({ status: Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0), text }));
    socket.on('error', reject);
    socket.setTimeout(5000, () => (socket.destroy(), reject(new Error(`no answer to ${JSON.stringify(request.slice(0, 200))}`))));
    socket.write(request);
  });
}

const upgrade = (path: string, host: string | undefined, origin: string | undefined) =>
  `GET ${path} HTTP/1.1\r\n${host === undefined ? '' : `Host: ${host}\r\n`}${origin === undefined ? '' : `Origin: ${origin}\r\n`}Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`;

describe('loupe connect: the local endpoint admits only loopback debuggers, at its one path', () => {
  let endpoint: LocalEndpoint;
  before(async () => {
    endpoint = await LocalEndpoint.listen({ port: 0, target: 'app', mode: 'pause', openBroker: () => Promise.reject(new AttachRefusal(503, passed)) });
  });
  after(() => endpoint.close('test over'));

  it('before the grant: discovery and attach answer 503, saying why', async () => {
    const list = await raw(endpoint.port, `GET /json/list HTTP/1.1\r\nHost: 127.0.0.1:${endpoint.port}\r\nConnection: close\r\n\r\n`);
    assert.equal(list.status, 503);
    assert.match(list.text, /no grant yet/);
    const attach = await raw(endpoint.port, upgrade(`/${endpoint.id}`, `127.0.0.1:${endpoint.port}`, undefined));
    assert.equal(attach.status, 503);
    assert.match(attach.text, /attach refused by loupe connect: no grant yet/);
    endpoint.open();
  });

  it('answers what node --inspect answers, and refuses other methods and paths in words', async () => {
    const get = (path: string, method = 'GET') => raw(endpoint.port, `${method} ${path} HTTP/1.1\r\nHost: localhost:${endpoint.port}\r\nConnection: close\r\n\r\n`);
    const protocol = await get('/json/protocol');
    assert.equal(protocol.status, 200);
    assert.ok(JSON.parse(protocol.text.slice(protocol.text.indexOf('\r\n\r\n') + 4)).domains.some((d: { domain: string }) => d.domain === 'Debugger'));
    assert.equal((await get('/json/list/')).status, 200);
    const post = await get('/json/list', 'POST');
    assert.equal(post.status, 405);
    assert.match(post.text, /POST is not supported/);
    const other = await get('/json/new?about:blank');
    assert.equal(other.status, 404);
    assert.match(other.text, /no such endpoint \/json\/new/);
  });

  // Another user's process on the same machine: run as uid 65534 (nobody), which only root may do.
  it(
    'refuses discovery and attach from another local user',
    { skip: process.getuid?.() === 0 && process.platform === 'linux' ? false : 'needs root on Linux to run a client as another user' },
    async () => {
      const script = `
      const net = require('node:net');
      const ask = (request) => new Promise((resolve) => {
        const socket = net.connect(${endpoint.port}, '127.0.0.1');
        let text = '';
        socket.setEncoding('utf8').on('data', (c) => (text += c)).on('end', () => resolve(text)).on('error', (e) => resolve('error ' + e.message));
        socket.write(request);
      });
      (async () => {
        const list = await ask('GET /json/list HTTP/1.1\\r\\nHost: 127.0.0.1\\r\\nConnection: close\\r\\n\\r\\n');
        const attach = await ask(${JSON.stringify(upgrade(`/${endpoint.id}`, '127.0.0.1', undefined))});
        process.stdout.write(JSON.stringify({ list, attach }));
      })();`;
      const child = spawn(process.execPath, ['-e', script], { uid: 65534, gid: 65534, cwd: '/', stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      let err = '';
      child.stdout!.setEncoding('utf8').on('data', (c: string) => (out += c));
      child.stderr!.setEncoding('utf8').on('data', (c: string) => (err += c));
      await new Promise((resolve) => child.once('exit', resolve));
      const { list, attach } = JSON.parse(out || `{"list":${JSON.stringify(err)},"attach":""}`) as { list: string; attach: string };
      assert.match(list, /^HTTP\/1\.1 403 /, list);
      assert.match(list, /refused by loupe connect: the connection comes from another local user \(uid 65534\); only the user who ran loupe connect \(uid 0\) may use its grant/);
      assert.match(attach, /^HTTP\/1\.1 403 /, attach);
      assert.match(attach, /attach refused by loupe connect: the connection comes from another local user \(uid 65534\)/);
      assert.ok(!attach.includes(passed), 'never reached the broker');
      // The same requests from this user are answered.
      assert.equal((await raw(endpoint.port, 'GET /json/list HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n')).status, 200);
    },
  );

  it('fuzz: an upgrade reaches the broker only with a loopback Host, no web origin, and the exact path', async () => {
    const port = endpoint.port;
    const id = endpoint.id;
    const alnum = fc.stringMatching(/^[a-z0-9.-]{1,20}$/);
    const hosts = fc.oneof(
      fc.constantFrom(`127.0.0.1:${port}`, '127.0.0.1', `localhost:${port}`, 'LocalHost', `[::1]:${port}`).map((h) => ({ h: h as string | undefined, ok: true })),
      fc
        .constantFrom('localhost.evil.example', '127.0.0.1.nip.io', `evil.example:${port}`, '127.0.0.2', '0.0.0.0', `127.0.0.1:${port}.evil`, '[::ffff:127.0.0.1]', 'localhost:', '')
        .map((h) => ({ h: h as string | undefined, ok: false })),
      alnum.filter((h) => !/^(127\.0\.0\.1|localhost)$/i.test(h)).map((h) => ({ h: h as string | undefined, ok: false })),
      fc.constant({ h: undefined as string | undefined, ok: false }),
    );
    const origins = fc.oneof(
      fc.constantFrom(undefined, 'devtools://devtools', 'chrome-devtools://devtools', 'http://127.0.0.1:8080', 'http://localhost', 'https://localhost:8443').map((o) => ({ o, ok: true })),
      fc
        .constantFrom('https://evil.example', 'null', 'http://127.0.0.1.evil.example', 'devtools://devtools.evil', 'file://', 'chrome-extension://abcdef', 'http://[::ffff:7f00:1]', 'ws://localhost')
        .map((o) => ({ o: o as string | undefined, ok: false })),
      alnum.map((o) => ({ o: o as string | undefined, ok: false })),
    );
    const paths = fc.oneof(
      fc.constantFrom(`/${id}`, `/${id}?ticket=x`).map((p) => ({ p, ok: true })),
      fc.constantFrom(`/${id}/`, `/${id}x`, `/${id.toUpperCase()}`, '/', '/json', `/json/${id}`, `/${id.slice(0, -1)}`, `//${id}`, `///${id}`, '///', `/ws/${id}`).map((p) => ({ p, ok: false })),
      alnum.map((p) => ({ p: `/${p}`, ok: false })),
    );
    await fc.assert(
      fc.asyncProperty(hosts, origins, paths, async (host, origin, path) => {
        const answer = await raw(port, upgrade(path.p, host.h, origin.o));
        const admitted = answer.text.includes(passed);
        assert.equal(admitted, host.ok && origin.ok && path.ok, `${JSON.stringify({ host, origin, path })}: ${answer.text.slice(0, 300)}`);
        if (!admitted) assert.ok([400, 403, 404].includes(answer.status), answer.text.slice(0, 300));
        if (!admitted && answer.status !== 400) assert.match(answer.text, /refused by loupe connect: /);
      }),
      { numRuns: fuzzFrames(300), seed: fuzzSeed() },
    );
  });
});

describe('loupe connect: a local debugger that stops answering pings', () => {
  let target: TargetProcess;
  let broker: TestBroker;
  before(async () => {
    target = await startTarget();
    broker = await startTestBroker(basePolicy(target.inspector));
  });
  after(async () => {
    await broker?.close();
    await target?.stop();
  });

  it('is given up after two missed pongs, and its broker session ends (recorded)', async () => {
    const grant = await broker.grant('dev', ['devs']);
    const closed: SessionClosed[] = [];
    const endpoint = await LocalEndpoint.listen({
      port: 0,
      target: 'app',
      mode: 'pause',
      heartbeatMs: 150,
      onSessionClosed: (c) => closed.push(c),
      openBroker: () =>
        new Promise((resolve, reject) => {
          const socket = new WebSocket(grant.attachUrl, { headers: { authorization: `Bearer ${grant.token}` } });
          socket.once('open', () => resolve(socket));
          socket.once('error', reject);
        }),
    });
    endpoint.open();
    try {
      // A debugger whose process hangs: it never answers a ping.
      const hung = new WebSocket(endpoint.webSocketUrl, { autoPong: false });
      await new Promise((resolve, reject) => (hung.once('open', resolve), hung.once('error', reject)));
      const code = await new Promise<number>((resolve) => hung.once('close', resolve));
      assert.equal(code, 1006, 'terminated, not closed politely');
      const ended = await broker.waitForRecord('session.ended');
      assert.equal(ended.data.endReason, 'client_closed');
      assert.equal(closed.length, 1);
      assert.deepEqual({ by: closed[0]!.by, note: closed[0]!.note }, { by: 'local-client', note: 'the local debugger stopped answering pings' });
      assert.equal(endpoint.attached, false, 'free for the next debugger');
    } finally {
      await endpoint.close('test over');
    }
  });

  it('a debugger that stops reading pauses the broker socket instead of piling answers up here; all arrive once it reads', async () => {
    const grant = await broker.grant('dev', ['devs']);
    let brokerSocket: WebSocket | undefined;
    const endpoint = await LocalEndpoint.listen({
      port: 0,
      target: 'app',
      mode: 'pause',
      openBroker: () =>
        new Promise((resolve, reject) => {
          const socket = new WebSocket(grant.attachUrl, { headers: { authorization: `Bearer ${grant.token}` } });
          socket.once('open', () => resolve((brokerSocket = socket)));
          socket.once('error', reject);
        }),
    });
    endpoint.open();
    try {
      const client = new WebSocket(endpoint.webSocketUrl);
      await new Promise((resolve, reject) => (client.once('open', resolve), client.once('error', reject)));
      const answers: number[] = [];
      client.on('message', (data) => answers.push(JSON.parse(data.toString()).id));
      client.pause();
      // 400 answers of ~32 KB: about 13 MB, over the relay's 8 MB high-water mark.
      const count = 400;
      for (let id = 1; id <= count; id++) client.send(JSON.stringify({ id, method: 'Runtime.evaluate', params: { expression: "'x'.repeat(60000)", returnByValue: true } }));
      let sawPause = false;
      const deadline = Date.now() + 20_000;
      while (!sawPause && Date.now() < deadline) {
        sawPause = brokerSocket?.isPaused === true;
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      assert.ok(sawPause, 'the relay paused reading from the broker');
      client.resume();
      const until = Date.now() + 30_000;
      while (answers.length < count && Date.now() < until) await new Promise((resolve) => setTimeout(resolve, 50));
      assert.deepEqual(
        answers,
        Array.from({ length: count }, (_, i) => i + 1),
        'every answer, in order',
      );
      assert.equal(brokerSocket!.isPaused, false, 'reading again');
      client.close();
    } finally {
      await endpoint.close('test over');
    }
  });
});
