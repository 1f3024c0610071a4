// The shipped adapter in server mode: `node dist/debugAdapter.js --server=PORT` on a free port, a DAP client over TCP
// (DebugClient.start(port)) attaching through a real broker to a real target running the compiled TypeScript service:
// a breakpoint in the .ts source stops, a variable is read, disconnect lets the target run on; the same server takes a
// second client, and one that vanishes without a disconnect still ends its session (breakpoints removed, target
// resumed). A --server value it cannot use is an error with a non-zero exit, never a silent fall back to stdin/stdout.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createServer, type AddressInfo, type Server } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { DebugClient } from '@vscode/debugadapter-testsupport';
import type { DebugProtocol } from '@vscode/debugprotocol';
import { basePolicy, startTestBroker, type TestBroker } from '../support/testBroker';
import { line, serviceRoot, serviceTs, startService, type DeployedService } from './tsService';
import { waitFor, withTimeout } from '../support/wait';

const adapter = join(__dirname, '..', '..', 'dist', 'debugAdapter.js');

/** A port nobody listens on right now (the kernel's pick, released). */
async function freePort(): Promise<number> {
  const server = createServer().listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  server.close();
  await once(server, 'close');
  return port;
}

/** DebugClient disables its own timeouts when connected to a port: every wait here has one. */
const within = <T>(what: string, promise: Promise<T>, ms = 15_000): Promise<T> => withTimeout(promise, ms, what);

/** Runs the adapter with `args` to its exit: code and stderr. */
async function runToExit(args: string[]): Promise<{ code: number | null; stderr: string; stdout: string }> {
  const proc = spawn(process.execPath, [adapter, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  let stdout = '';
  proc.stderr!.setEncoding('utf8').on('data', (c: string) => (stderr += c));
  proc.stdout!.setEncoding('utf8').on('data', (c: string) => (stdout += c));
  const timer = setTimeout(() => proc.kill('SIGKILL'), 10_000);
  const [code] = (await once(proc, 'exit')) as [number | null];
  clearTimeout(timer);
  return { code, stderr, stdout };
}

describe('dist/debugAdapter.js --server=PORT (DAP over TCP) through a real broker', () => {
  let service: DeployedService;
  let broker: TestBroker;
  let identityToken: string;
  let server: ChildProcess;
  let port: number;
  let serverLog = '';

  before(async () => {
    service = await startService();
    broker = await startTestBroker(basePolicy(service.target.inspector));
    identityToken = await broker.token('dev', ['devs']);
    port = await freePort();
    server = spawn(process.execPath, [adapter, `--server=${port}`], { stdio: ['ignore', 'pipe', 'pipe'] });
    server.stdout!.resume();
    await within(
      'the adapter listening',
      new Promise<void>((resolve, reject) => {
        server.stderr!.setEncoding('utf8').on('data', (c: string) => {
          serverLog += c;
          if (serverLog.includes(`listening for DAP on 127.0.0.1:${port}`)) resolve();
        });
        server.once('exit', (code) => reject(new Error(`the adapter exited (${code}): ${serverLog}`)));
      }),
    );
  });
  after(async () => {
    if (server && server.exitCode === null) {
      server.kill('SIGKILL');
      await once(server, 'exit');
    }
    await broker?.close();
    await service?.stop();
  });

  /** Connects a DAP client to the server and attaches; collects events. */
  async function connect(): Promise<{ dc: DebugClient; events: DebugProtocol.Event[] }> {
    const dc = new DebugClient(process.execPath, adapter, 'loupe');
    const events: DebugProtocol.Event[] = [];
    for (const name of ['loupe.grant', 'loupe.sessionEnded', 'stopped', 'terminated']) dc.on(name, (e: DebugProtocol.Event) => events.push(e));
    await within('connecting', dc.start(port));
    await within(
      'initialize and attach',
      Promise.all([
        dc.configurationSequence(),
        dc.initializeRequest({ adapterID: 'loupe', linesStartAt1: true, columnsStartAt1: true, pathFormat: 'path' }).then(() =>
          dc.attachRequest({
            target: 'app',
            mode: 'pause',
            durationSeconds: 120,
            reason: 'DAP server-mode test',
            brokerUrl: broker.url,
            identityToken,
            localRoot: serviceRoot,
            remoteRoot: service.remoteRoot,
            outFiles: [join(serviceRoot, 'dist', '**', '*.js')],
          } as DebugProtocol.AttachRequestArguments),
        ),
      ]),
    );
    return { dc, events };
  }

  async function untilNoLiveSession(): Promise<void> {
    await waitFor(() => broker.broker.liveSessions.length === 0, { what: () => `no live session at the broker (${broker.broker.liveSessions.length} still live)`, intervalMs: 50 });
  }

  it('attaches over TCP, stops at a .ts breakpoint, reads a variable, disconnects; the target runs on', async () => {
    const { dc, events } = await connect();
    const handleLine = line(serviceTs, 'handle');
    // Waiting starts before the request: the stop can arrive in the same read as the answer.
    const stopping = dc.waitForEvent('stopped');
    const set = await within('setBreakpoints', dc.setBreakpointsRequest({ source: { path: serviceTs }, breakpoints: [{ line: handleLine }] }));
    assert.equal(set.body.breakpoints[0]!.verified, true, JSON.stringify(set.body));
    const stopped = (await within('the stop', stopping)) as DebugProtocol.StoppedEvent;
    assert.equal(stopped.body.reason, 'breakpoint');
    assert.equal(events.find((e) => e.event === 'loupe.grant')?.body.target, 'app');
    const st = await within('stackTrace', dc.stackTraceRequest({ threadId: 1 }));
    const top = st.body.stackFrames[0]!;
    assert.equal(top.name, 'handle');
    assert.equal(top.source?.path, serviceTs);
    assert.equal(top.line, handleLine);
    const scopes = await within('scopes', dc.scopesRequest({ frameId: top.id }));
    const local = scopes.body.scopes.find((s) => s.name === 'Local')!;
    const vars = new Map((await within('variables', dc.variablesRequest({ variablesReference: local.variablesReference }))).body.variables.map((v) => [v.name, v]));
    assert.match(vars.get('label')?.value ?? '', /^'order-\d+'$/);
    const evaluated = await within('evaluate', dc.evaluateRequest({ expression: 'order.customer.name', frameId: top.id, context: 'watch' }));
    assert.match(evaluated.body.result, /^'(Ada|Grace)'$/);
    assert.equal(broker.broker.liveSessions.length, 1);
    await within('disconnect', dc.disconnectRequest({}));
    await dc.stop();
    // The broker removed the breakpoint and resumed the target when the adapter closed its socket.
    await untilNoLiveSession();
    await service.target.ticksAdvance(3);
    assert.equal(service.target.proc.exitCode, null);
    assert.equal(server.exitCode, null, 'the server outlives its sessions');
  });

  it('serves the next client too; one that vanishes without a disconnect ends its session and the target runs on', async () => {
    const { dc } = await connect();
    const stopping = dc.waitForEvent('stopped');
    await within('setBreakpoints', dc.setBreakpointsRequest({ source: { path: serviceTs }, breakpoints: [{ line: line(serviceTs, 'handle') }] }));
    await within('the stop', stopping);
    assert.equal(broker.broker.liveSessions.length, 1);
    // The client goes away mid-pause: no disconnect request, the TCP connection just drops.
    (dc as unknown as { _socket: import('node:net').Socket })._socket.destroy();
    await untilNoLiveSession();
    await service.target.ticksAdvance(3);
    const ended = (await broker.sessionEvents()).filter((e) => e.type === 'session.ended');
    assert.equal(ended.length, 2, 'both sessions recorded as ended');
    assert.ok(
      ended.every((e) => e.data.endReason === 'client_closed'),
      JSON.stringify(ended.map((e) => e.data)),
    );
    assert.equal(server.exitCode, null);
  });

  it('refuses a --server value it cannot use, saying why, with a non-zero exit', async () => {
    for (const [arg, why] of [
      ['--server=abc', /--server=abc: not a TCP port \(a whole number from 1 to 65535, or 0 for a free one\)/],
      ['--server=70000', /--server=70000: not a TCP port/],
      ['--server=-1', /--server=-1: not a TCP port/],
      ['--server=', /--server needs a port: --server=PORT/],
      ['--server', /--server needs a port: --server=PORT/],
      ['--port=4711', /unknown argument "--port=4711"/],
    ] as const) {
      const run = await runToExit([arg]);
      assert.equal(run.code, 2, `${arg}: exit code (stderr: ${run.stderr})`);
      assert.match(run.stderr, why, arg);
      assert.match(run.stderr, /usage: node debugAdapter\.js \[--server=PORT\]/, `${arg}: usage`);
      assert.equal(run.stdout, '', `${arg}: no DAP on stdout`);
    }
    // A port already taken: the listen error, not a stack trace.
    const taken: Server = createServer().listen(0, '127.0.0.1');
    await once(taken, 'listening');
    try {
      const busy = (taken.address() as AddressInfo).port;
      const run = await runToExit([`--server=${busy}`]);
      assert.equal(run.code, 1, run.stderr);
      assert.equal(run.stderr.trim(), `loupe debug adapter: cannot listen on 127.0.0.1:${busy}: the port is in use`);
    } finally {
      taken.close();
    }
  });
});
