// `loupe connect` as a real child process between chrome-remote-interface (attached by host and port, as to
// `node --inspect`) and a real broker in front of a real `node --inspect=127.0.0.1:0` target.
import { strict as assert } from 'node:assert';
import { spawn } from 'node:child_process';
import { createServer, get as httpGet } from 'node:http';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import CDP from 'chrome-remote-interface';
import WebSocket from 'ws';
import { startConnect, type ConnectProcess } from '../support/connectProcess';
import { fixtures, markerLine, startTarget, type TargetProcess } from '../support/target';
import { basePolicy, startTestBroker, type TestBroker } from '../support/testBroker';
import { waitFor } from '../support/wait';

const appLine = markerLine(join(fixtures, 'app.js'), 'work');

/** The HTTP answer to a refused upgrade: status and body text. */
function upgradeRefusal(url: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(url, { headers });
    socket.once('open', () => (socket.close(), reject(new Error(`${url} was accepted`))));
    socket.once('unexpected-response', (_req, res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    socket.once('error', () => undefined);
  });
}

/** A loopback port nothing listens on (it was free a moment ago). */
function closedPort(): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

const port = (url: string) => Number(new URL(url).port);

/** A GET with a Host header of our choosing (fetch does not let one set it), as a DNS-rebinding page's request arrives. */
function getWithHost(url: string, host: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpGet(url, { headers: { host } }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
  });
}

describe('loupe connect: any inspector client through the broker', () => {
  let target: TargetProcess;
  let broker: TestBroker;
  let devToken: string;
  const running: ConnectProcess[] = [];
  const connect = async (args: string[] = [], env: Record<string, string> = {}) => {
    const child = startConnect(['app', '--reason', 'INC-7 checkout latency', '--port', '0', '--broker', broker.url, ...args], { LOUPE_TOKEN: devToken, ...env });
    running.push(child);
    return child;
  };

  before(async () => {
    target = await startTarget();
    const base = basePolicy(target.inspector);
    broker = await startTestBroker({
      ...base,
      roles: { ...base.roles, sre: { groups: ['sres'] } },
      targets: {
        app: base.targets.app,
        gated: { ...base.targets.app, access: [{ role: 'dev', modes: ['pause'], maxDuration: '10m', requireApproval: { approvers: 'sre' } }] },
      },
    });
    devToken = await broker.token('dev', ['devs']);
  });
  after(async () => {
    await Promise.all(running.map((c) => c.kill('SIGKILL')));
    await broker?.close();
    await target?.stop();
  });

  it('serves the discovery as node --inspect does; chrome-remote-interface debugs by host and port; Ctrl-C ends cleanly', async () => {
    const child = await connect();
    const url = await child.url;
    assert.match(url, /^http:\/\/127\.0\.0\.1:\d+$/);
    assert.match(child.stderr(), /grant [0-9a-f-]{36}: pause on app until .* \(10 min, shortened by the policy\)/);

    const list = (await (await fetch(`${url}/json/list`)).json()) as any[];
    assert.equal(list.length, 1);
    assert.equal(list[0].type, 'node');
    assert.equal(list[0].webSocketDebuggerUrl, `ws://127.0.0.1:${port(url)}/${list[0].id}`);
    assert.equal(list[0].devtoolsFrontendUrl, `devtools://devtools/bundled/js_app.html?experiments=true&v8only=true&ws=127.0.0.1:${port(url)}/${list[0].id}`);
    assert.deepEqual(await (await fetch(`${url}/json`)).json(), list);
    assert.deepEqual(await (await fetch(`${url}/json/version`)).json(), { Browser: 'node.js (through Loupe)', 'Protocol-Version': '1.1' });

    // What a client asks at attach, unchanged: chrome-remote-interface reads /json/list and /json/protocol.
    const client = await CDP({ host: '127.0.0.1', port: port(url) });
    try {
      await client.send('Debugger.enable');
      const paused = new Promise<any>((resolve) => client.on('Debugger.paused', resolve));
      const bp = await client.send('Debugger.setBreakpointByUrl', { lineNumber: appLine, urlRegex: 'app\\.js$' });
      const hit = await paused;
      assert.deepEqual(hit.hitBreakpoints, [bp.breakpointId]);
      const frame = hit.callFrames[0];
      assert.equal(frame.functionName, 'work');
      const local = frame.scopeChain.find((s: any) => s.type === 'local');
      const props = await client.send('Runtime.getProperties', { objectId: local.object.objectId, ownProperties: true });
      const n = props.result.find((p: any) => p.name === 'n')!;
      assert.equal(n.value!.type, 'number');
      const evaluated = await client.send('Debugger.evaluateOnCallFrame', { callFrameId: frame.callFrameId, expression: 'local.label + "/" + n * 2', returnByValue: true });
      assert.equal(evaluated.result.value, `item-${n.value!.value}/${(n.value!.value as number) * 2}`);
      // A refusal, in the broker's words, through the relay.
      await assert.rejects(client.send('Debugger.setScriptSource', { scriptId: frame.location.scriptId, scriptSource: 'process.exit(1)' }), (err: any) => {
        assert.match(JSON.stringify(err.response ?? err.message), /refused by Loupe/i);
        return true;
      });

      // A second client while this one is live: refused at the upgrade, in words.
      const second = await upgradeRefusal(list[0].webSocketDebuggerUrl);
      assert.equal(second.status, 409);
      assert.match(second.body, /another debugger is attached through this endpoint \(one at a time/);
      await child.waitFor(/another debugger is attached/);

      // Ctrl-C while the target is held at the breakpoint.
      const held = target.lastTick();
      const status = await child.kill('SIGINT');
      assert.equal(status.code, 0, child.stderr());
      assert.match(child.stderr(), /stopped \(Ctrl-C\); the broker ended the session \(target resumed, breakpoints removed\)/);
      await target.ticksAdvance(3);
      assert.ok(target.lastTick() > held + 2, 'the target runs again, past the line of the breakpoint');
      const ended = await broker.waitForRecord('session.ended');
      assert.equal(ended.data.endReason, 'client_closed', JSON.stringify(ended.data));
      const events = await broker.sessionEvents();
      assert.ok(
        events.some((e) => e.type === 'cdp.refused' && e.data.method === 'Debugger.setScriptSource'),
        'the refusal is on the record',
      );
      assert.ok(
        events.some((e) => e.type === 'cdp.evaluate' && e.data.method === 'Debugger.evaluateOnCallFrame'),
        'the evaluation is on the record',
      );
    } finally {
      await client.close().catch(() => undefined);
    }
  });

  it('refuses DNS-rebinding hosts, web pages and wrong paths; after a debugger leaves, another attaches in a new session', async () => {
    const child = await connect();
    const url = await child.url;
    const rebinding = await getWithHost(`${url}/json/list`, 'evil.example:80');
    assert.equal(rebinding.status, 403);
    assert.match(rebinding.body, /Host "evil\.example:80" is not a loopback address/);
    const rebindingUpgrade = await upgradeRefusal(`ws://127.0.0.1:${port(url)}/x`, { host: 'evil.example' });
    assert.equal(rebindingUpgrade.status, 403);
    const [{ webSocketDebuggerUrl }] = (await (await fetch(`${url}/json/list`)).json()) as any[];
    const page = await upgradeRefusal(webSocketDebuggerUrl, { origin: 'https://evil.example' });
    assert.equal(page.status, 403);
    assert.match(page.body, /a web page \(origin https:\/\/evil\.example\) may not attach/);
    const wrong = await upgradeRefusal(`ws://127.0.0.1:${port(url)}/00000000-0000-0000-0000-000000000000`);
    assert.equal(wrong.status, 404);
    assert.match(wrong.body, /no target at \/00000000/);

    const sessionsBefore = broker.records.filter((r) => r.type === 'session.started').length;
    for (let i = 0; i < 2; i++) {
      const client = await CDP({ host: '127.0.0.1', port: port(url) });
      const answer = await client.send('Runtime.evaluate', { expression: '6 * 7', returnByValue: true });
      assert.equal(answer.result.value, 42);
      await client.close();
      await child.waitFor(new RegExp(`(debugger disconnected[^]*){${i + 1}}`));
    }
    assert.equal(broker.records.filter((r) => r.type === 'session.started').length - sessionsBefore, 2, 'one broker session per local client');
    assert.equal((await child.kill('SIGTERM')).code, 0);
  });

  // node inspect starts with Promise.all([Profiler.enable(), Profiler.setSamplingInterval(…), Debugger.enable(), …]) and
  // exits on any error there: the broker answers those two routine requests with an empty result, never forwarded.
  it('node inspect attaches by host and port and evaluates; its profiler switches are answered, not forwarded', async () => {
    const child = await connect();
    const url = new URL(await child.url);
    const inspect = spawn(process.execPath, ['inspect', `127.0.0.1:${url.port}`], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    inspect.stdout.setEncoding('utf8').on('data', (c: string) => (out += c));
    inspect.stderr.setEncoding('utf8').on('data', (c: string) => (out += c));
    try {
      await waitFor(() => out.includes('debug>') || inspect.exitCode !== null, { what: 'the debug> prompt of node inspect', timeoutMs: 10_000 });
      assert.equal(inspect.exitCode, null, out);
      inspect.stdin.write('exec 6 * 7\n');
      await waitFor(() => /^(?:debug> )?42$/m.test(out) || inspect.exitCode !== null, { what: 'node inspect to print 42', timeoutMs: 10_000 });
      assert.match(out, /^(?:debug> )?42$/m);
      const routine = broker.records.filter((r) => r.type === 'cdp.refused' && (r.data as { routine?: string }).routine?.startsWith('profiler'));
      assert.deepEqual(
        routine.map((r) => [(r.data as { method: string }).method, (r.data as { answered?: string }).answered]),
        [
          ['Profiler.enable', 'empty'],
          ['Profiler.setSamplingInterval', 'empty'],
        ],
      );
      inspect.stdin.write('exec process.pid\n');
      await waitFor(() => /Refused by Loupe/.test(out) || inspect.exitCode !== null, { what: 'node inspect to show the refusal', timeoutMs: 10_000 });
      assert.doesNotMatch(out, new RegExp(`^(?:debug> )?${target.proc.pid}$`, 'm'));
    } finally {
      inspect.kill();
      await child.kill('SIGINT');
    }
  });

  it('a revoked grant ends it with the reason printed (exit 1)', async () => {
    const child = await connect();
    const url = await child.url;
    const grantId = /grant ([0-9a-f-]{36}):/.exec(child.stderr())![1]!;
    const client = await CDP({ host: '127.0.0.1', port: port(url) });
    const closed = new Promise<void>((resolve) => client.on('disconnect', () => resolve()));
    const revoke = await broker.api('DELETE', `/v1/grants/${grantId}`, await broker.token('boss', ['admins']));
    assert.equal(revoke.status, 200, JSON.stringify(revoke.body));
    await closed;
    const status = await child.exited;
    assert.equal(status.code, 1, child.stderr());
    assert.match(child.stderr(), /the session has ended: the grant was revoked \(close 4002\)/);
  });

  it("a grant revoked while no debugger is attached: the next attach is refused in the broker's words, and it ends (exit 1)", async () => {
    const child = await connect();
    const url = await child.url;
    const grantId = /grant ([0-9a-f-]{36}):/.exec(child.stderr())![1]!;
    assert.equal((await broker.api('DELETE', `/v1/grants/${grantId}`, await broker.token('boss', ['admins']))).status, 200);
    const [{ webSocketDebuggerUrl }] = (await (await fetch(`${url}/json/list`)).json()) as any[];
    const refused = await upgradeRefusal(webSocketDebuggerUrl);
    assert.equal(refused.status, 403);
    assert.match(refused.body, /the broker refused the attach \(403 grant_revoked\): /);
    assert.equal((await child.exited).code, 1, child.stderr());
    assert.match(child.stderr(), /the broker refused the attach \(403 grant_revoked\)/);
    // The broker's security record names the relay and the local client.
    const record = await broker.waitForRecord('attach.refused', (e) => e.data.grantId === grantId || JSON.stringify(e.data).includes(grantId));
    assert.match(JSON.stringify(record.data), /loupe-connect \(local client: no user agent\)/);
  });

  it('an expiring grant counts down and ends with the reason printed (exit 0)', async () => {
    const child = await connect(['--duration', '14s']);
    const url = await child.url;
    assert.match(child.stderr(), /until .* \(14 s\)/);
    const client = await CDP({ host: '127.0.0.1', port: port(url) });
    client.on('error', () => undefined);
    await child.waitFor(/10 s left on the grant/, 10_000);
    const status = await child.exited;
    assert.equal(status.code, 0, child.stderr());
    assert.match(child.stderr(), /the grant expired/);
    await client.close().catch(() => undefined);
  });

  it('follows an access request until approved, printing its state, then relays', async () => {
    const gated = startConnect(['gated', '--reason', 'INC-8', '--port', '0', '--broker', broker.url], { LOUPE_TOKEN: devToken });
    running.push(gated);
    const [, requestId] = await gated.waitFor(/access request ([0-9a-f-]{36}): /);
    await gated.waitFor(/waiting for approval by sre: 0 of 1/);
    const approve = await broker.api('POST', `/v1/requests/${requestId}/approve`, await broker.token('sam', ['sres']), { comment: 'go' });
    assert.equal(approve.status, 200, JSON.stringify(approve.body));
    const url = await gated.url;
    assert.match(gated.stderr(), /access to gated approved by sam/);
    const client = await CDP({ host: '127.0.0.1', port: port(url) });
    assert.equal((await client.send('Runtime.evaluate', { expression: '1 + 1', returnByValue: true })).result.value, 2);
    await client.close();
    assert.equal((await gated.kill('SIGINT')).code, 0);
  });

  it('Ctrl-C while waiting for approvers withdraws the request (identity from --token-file)', async () => {
    const tokenFile = join(mkdtempSync(join(tmpdir(), 'loupe-connect-')), 'token');
    writeFileSync(tokenFile, `${devToken}\n`, { mode: 0o600 });
    const gated = startConnect(['gated', '--reason', 'INC-9', '--port', '0', '--broker', broker.url, '--token-file', tokenFile], { LOUPE_TOKEN: 'ignored: --token-file wins' });
    running.push(gated);
    const [, requestId] = await gated.waitFor(/access request ([0-9a-f-]{36}): /);
    await gated.waitFor(/waiting for approval/);
    assert.equal((await gated.kill('SIGINT')).code, 0);
    assert.match(gated.stderr(), new RegExp(`stopped waiting; access request ${requestId} withdrawn`));
    const request = await broker.api('GET', `/v1/requests/${requestId}`, devToken);
    assert.equal(request.body.status, 'withdrawn');
  });

  it('clear errors: bad flags, unreachable broker, bad token, refused target, port in use', async () => {
    const run = async (args: string[], env: Record<string, string> = {}) => {
      const child = startConnect(args, env);
      running.push(child);
      return { ...(await child.exited), stderr: child.stderr(), stdout: child.stdout() };
    };
    const noReason = await run(['app', '--broker', broker.url], { LOUPE_TOKEN: devToken });
    assert.equal(noReason.code, 2);
    assert.match(noReason.stderr, /missing --reason <text>: a reason is required/);
    const badMode = await run(['app', '--reason', 'r', '--mode', 'stop', '--broker', broker.url], { LOUPE_TOKEN: devToken });
    assert.equal(badMode.code, 2);
    assert.match(badMode.stderr, /--mode: expected one of pause, snapshot, got "stop"/);
    const unknown = await run(['app', '--reason', 'r', '--prot', '1'], { LOUPE_TOKEN: devToken });
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /unknown option '--prot'/);
    const noIdentity = await run(['app', '--reason', 'r', '--broker', broker.url]);
    assert.equal(noIdentity.code, 2);
    assert.match(noIdentity.stderr, /no identity: set LOUPE_TOKEN, pass --token-file <file>, or sign in with --issuer/);

    const closed = await closedPort();
    const unreachable = await run(['app', '--reason', 'r', '--port', '0', '--broker', `http://127.0.0.1:${closed}`], { LOUPE_TOKEN: devToken });
    assert.equal(unreachable.code, 1);
    assert.match(unreachable.stderr, new RegExp(`cannot reach the Loupe broker at http://127\\.0\\.0\\.1:${closed}: fetch failed \\(ECONNREFUSED\\) \\(is --broker right and the broker running\\?`));
    assert.equal(unreachable.stdout, '', 'no LOUPE_CONNECT_URL without a grant');

    const badToken = await run(['app', '--reason', 'r', '--port', '0', '--broker', broker.url], { LOUPE_TOKEN: 'not.a.token' });
    assert.equal(badToken.code, 1);
    assert.match(badToken.stderr, /the broker refused your identity token \(401 token_invalid\)/);

    const refused = await run(['app', '--reason', 'r', '--port', '0', '--broker', broker.url], { LOUPE_TOKEN: await broker.token('mallory', ['marketing']) });
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /the broker refused pause on app \(403 [a-z_]+\): /);

    const taken = await connect();
    const takenPort = String(port(await taken.url));
    const inUse = await run(['app', '--reason', 'r', '--port', takenPort, '--broker', broker.url], { LOUPE_TOKEN: devToken });
    assert.equal(inUse.code, 1);
    assert.match(inUse.stderr, new RegExp(`port ${takenPort} on 127\\.0\\.0\\.1 is in use .*--port`));
    await taken.kill('SIGINT');
  });
});
