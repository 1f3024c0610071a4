#!/usr/bin/env node
// `npm run demo`: a broker, a demo "production" service, and a real audited debugging session through the gate.
// Leaves the broker and service running for another client; `--once` (or CI=true) ends after the session.
import { spawn, spawnSync } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import WebSocket from 'ws';

const root = join(import.meta.dirname, '..');
const once = process.argv.includes('--once') || process.env.CI === 'true';
const configFile = join(root, 'examples', 'demo', 'loupe.yaml');
const serviceFile = join(root, 'examples', 'demo', 'service.js');
const cli = join(root, 'dist', 'cli.js');
const children = [];

const bold = (s) => (process.stdout.isTTY ? `\x1b[1m${s}\x1b[0m` : s);
const step = (s) => console.log(`\n${bold(`▸ ${s}`)}`);
const show = (s) => console.log(`  ${s}`);

function freePort(preferred) {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => (preferred ? freePort(0).then(resolve) : resolve(0)));
    server.listen(preferred, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

function startChild(name, args, env, readyPattern) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { cwd: root, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(child);
    let output = '';
    const onData = (chunk) => {
      output += chunk;
      const match = readyPattern.exec(output);
      if (match) resolve({ child, match });
    };
    child.stdout.setEncoding('utf8').on('data', onData);
    child.stderr.setEncoding('utf8').on('data', (chunk) => {
      output += chunk;
      if (process.env.LOUPE_DEMO_VERBOSE) process.stderr.write(`[${name}] ${chunk}`);
    });
    child.once('exit', (code) => reject(new Error(`${name} exited (${code}):\n${output}`)));
  });
}

async function api(brokerUrl, method, path, token, body) {
  const res = await fetch(`${brokerUrl}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  return { status: res.status, body: await res.json() };
}

function cdpSession(url, token) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers: { authorization: `Bearer ${token}` }, perMessageDeflate: false });
    let nextId = 1;
    const waiting = new Map();
    const eventWaiters = [];
    const events = [];
    ws.on('message', (data) => {
      const msg = JSON.parse(data.toString());
      if (msg.id !== undefined && waiting.has(msg.id)) {
        waiting.get(msg.id)(msg);
        waiting.delete(msg.id);
      } else if (msg.method) {
        const waiter = eventWaiters.find((w) => w.method === msg.method);
        if (waiter) {
          eventWaiters.splice(eventWaiters.indexOf(waiter), 1);
          waiter.resolve(msg);
        } else events.push(msg);
      }
    });
    ws.once('open', () =>
      resolve({
        send: (method, params = {}) =>
          new Promise((done) => {
            const id = nextId++;
            waiting.set(id, done);
            ws.send(JSON.stringify({ id, method, params }));
          }),
        event: (method) => {
          const index = events.findIndex((e) => e.method === method);
          if (index >= 0) return Promise.resolve(events.splice(index, 1)[0]);
          return new Promise((done) => eventWaiters.push({ method, resolve: done }));
        },
        events,
        close: () => new Promise((done) => (ws.once('close', (code, reason) => done({ code, reason: String(reason) })), ws.close(1000, 'done'))),
      }),
    );
    ws.once('unexpected-response', (_req, res) => reject(new Error(`attach refused: HTTP ${res.statusCode}`)));
    ws.once('error', reject);
  });
}

/** Prints the broker's decision as the client sees it. */
function verdict(method, reply) {
  if (reply.error) return show(`${method} → REFUSED: ${reply.error.message}`);
  if (reply.result?.exceptionDetails) {
    const description = reply.result.result.description.split('\n')[0];
    // The broker's own interpreter refuses an expression that is no Loupe expression; V8's side-effect check the rest.
    const by = description.startsWith('EvalError: Refused by Loupe') ? 'REFUSED by the broker (never sent to V8)' : 'ran under the side-effect check and was REFUSED by V8';
    return show(`${method} → ${by}: ${description}`);
  }
  return show(`${method} → allowed`);
}

const alertSecret = 'demo-webhook-secret-change-me';

/** A stand-in for the owners' alert endpoint (Slack, PagerDuty, a SIEM): it only collects what it receives. */
async function startAlertReceiver() {
  const { createServer } = await import('node:http');
  const requests = [];
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      requests.push({ headers: req.headers, body });
      res.end('ok');
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  server.unref();
  return {
    url: `http://127.0.0.1:${server.address().port}/loupe-alerts`,
    requests,
    async waitFor(predicate) {
      for (let i = 0; i < 200; i++) {
        const found = requests.find(predicate);
        if (found) return found;
        await new Promise((r) => setTimeout(r, 25));
      }
      throw new Error('the expected alert did not reach the webhook');
    },
  };
}

function verifySignature(delivery) {
  const match = /^t=(\d+),v1=([0-9a-f]{64})$/.exec(String(delivery.headers['x-loupe-signature']));
  return !!match && createHmac('sha256', alertSecret).update(`${match[1]}.${delivery.body}`).digest('hex') === match[2];
}

function mintToken(env, user, groups, name) {
  const run = spawnSync(process.execPath, [cli, 'token', '--config', configFile, '--user', user, '--groups', groups, '--name', name], { cwd: root, env: { ...process.env, ...env }, encoding: 'utf8' });
  if (run.status !== 0) throw new Error(run.stderr);
  return run.stdout.trim();
}

const stateDir = (env) => env.LOUPE_STATE_DIR ?? join(root, 'examples', 'demo', '.loupe');

async function main() {
  step('Build');
  const build = spawnSync(process.execPath, ['esbuild.mjs'], { cwd: root, stdio: 'inherit' });
  if (build.status !== 0) throw new Error('build failed');
  show('dist/cli.js and dist/broker.js built');

  const inspectorPort = await freePort(0);
  const brokerPort = await freePort(Number(process.env.LOUPE_PORT ?? 7070));
  const receiver = await startAlertReceiver();
  const env = {
    LOUPE_PORT: String(brokerPort),
    LOUPE_DEMO_INSPECTOR: `127.0.0.1:${inspectorPort}`,
    LOUPE_ALERT_WEBHOOK: receiver.url,
    LOUPE_ALERT_SECRET: alertSecret,
    ...(process.env.LOUPE_STATE_DIR ? { LOUPE_STATE_DIR: process.env.LOUPE_STATE_DIR } : {}),
  };
  env.LOUPE_ECS_OUTPUT = join(stateDir(env), 'audit.ecs.ndjson');

  step('Start the demo service (production stand-in) with its inspector on loopback');
  const service = await startChild('service', [`--inspect=127.0.0.1:${inspectorPort}`, serviceFile], {}, /SERVICE_URL=(\S+)/);
  const serviceUrl = service.match[1];
  show(`service ${serviceUrl}, inspector 127.0.0.1:${inspectorPort} (reachable only through the broker's policy)`);

  step(`Start the broker with ${join('examples', 'demo', 'loupe.yaml')}`);
  const broker = await startChild('broker', [cli, 'broker', '--config', configFile], env, /LOUPE_BROKER_URL=(\S+)/);
  const brokerUrl = broker.match[1];
  show(`broker ${brokerUrl}`);

  step('Mint a development identity token for alice (group payments-dev)');
  const token = mintToken(env, 'alice', 'payments-dev', 'Alice Example');
  show(`loupe token --user alice --groups payments-dev → ${token.slice(0, 24)}…`);

  step('GET /v1/targets');
  const targets = await api(brokerUrl, 'GET', '/v1/targets', token);
  for (const t of targets.body.targets) show(`${t.name}: modes ${t.modes.join(', ')}, at most ${t.maxDurationSeconds / 60} min${t.ticketRequired ? `, ticket matching ${t.ticketPattern}` : ''}`);

  step('POST /v1/grants without a ticket (policy requires one)');
  const refused = await api(brokerUrl, 'POST', '/v1/grants', token, { target: 'checkout', mode: 'pause', durationSeconds: 600, reason: 'gold customers charged the wrong amount' });
  show(`${refused.status}: ${refused.body.error.message} (rule ${refused.body.error.rule})`);

  step('POST /v1/grants with a reason and ticket');
  const grant = await api(brokerUrl, 'POST', '/v1/grants', token, { target: 'checkout', mode: 'pause', durationSeconds: 600, reason: 'gold customers charged the wrong amount', ticket: 'PAY-1234' });
  if (grant.status !== 201) throw new Error(`grant refused: ${JSON.stringify(grant.body)}`);
  show(`201: grant ${grant.body.grantId}, expires ${grant.body.expiresAt}`);
  show(`attach at ${grant.body.attachUrl}`);

  step('Attach through the broker (WebSocket, grant token in the Authorization header)');
  const session = await cdpSession(grant.body.attachUrl, grant.body.token);
  verdict('Debugger.enable', await session.send('Debugger.enable'));
  verdict('Runtime.enable', await session.send('Runtime.enable'));

  const serviceLines = readFileSync(serviceFile, 'utf8').split('\n');
  const line = serviceLines.findIndex((l) => l.includes('const charged ='));

  step('Set breakpoints: one with a side-effecting condition, one with an allowed condition');
  verdict(
    'Debugger.setBreakpointByUrl (condition "(prices.book = 0)")',
    await session.send('Debugger.setBreakpointByUrl', { lineNumber: line, urlRegex: 'service\\.js$', condition: '(prices.book = 0)' }),
  );
  const bp = await session.send('Debugger.setBreakpointByUrl', { lineNumber: line, urlRegex: 'service\\.js$', condition: 'user.tier === "gold"' });
  verdict(`Debugger.setBreakpointByUrl (line ${line + 1}, condition 'user.tier === "gold"')`, bp);
  show('the broker sets the breakpoint without the condition and checks the condition itself on each pause');

  step('Requests to the service: bob (condition false, never held) then alice (condition true, pauses)');
  const bob = await (await fetch(`${serviceUrl}/checkout?user=bob&items=mug`)).json();
  show(`bob's request served while the breakpoint is armed: charged ${bob.charged}`);
  const aliceResponse = fetch(`${serviceUrl}/checkout?user=alice&items=book,lamp`).then((r) => r.json());
  const paused = await session.event('Debugger.paused');
  const frame = paused.params.callFrames[0];
  show(`paused in ${frame.functionName}() at line ${frame.location.lineNumber + 1}, hit ${paused.params.hitBreakpoints.join(', ')}`);

  step('Read the locals at the pause');
  const local = frame.scopeChain.find((s) => s.type === 'local');
  const props = await session.send('Runtime.getProperties', { objectId: local.object.objectId, ownProperties: true });
  verdict('Runtime.getProperties', props);
  for (const p of props.result.result) show(`  ${p.name} = ${p.value?.description ?? JSON.stringify(p.value?.value)}`);

  step('Evaluate: an allowed expression, then side-effecting ones');
  const allowed = await session.send('Debugger.evaluateOnCallFrame', { callFrameId: frame.callFrameId, expression: 'total * (1 - discount)', returnByValue: true });
  verdict('evaluate "total * (1 - discount)"', allowed);
  show(`  = ${allowed.result.result.value}`);
  verdict('evaluate "user.tier = \\"basic\\""', await session.send('Debugger.evaluateOnCallFrame', { callFrameId: frame.callFrameId, expression: 'user.tier = "basic"' }));
  verdict('evaluate "process.exit(1)"', await session.send('Debugger.evaluateOnCallFrame', { callFrameId: frame.callFrameId, expression: 'process.exit(1)' }));

  step('Redaction: the password field and the routes around it');
  const userProp = props.result.result.find((p) => p.name === 'user');
  if (userProp?.value?.objectId) {
    const fields = await session.send('Runtime.getProperties', { objectId: userProp.value.objectId, ownProperties: true });
    show(`user.password read as a variable = ${JSON.stringify(fields.result?.result.find((p) => p.name === 'password')?.value?.value ?? fields.error?.message)}`);
  }
  for (const expression of ['user.password', 'JSON.stringify(user)', 'Object.values(user).join(" ")']) {
    const reply = await session.send('Debugger.evaluateOnCallFrame', { callFrameId: frame.callFrameId, expression, returnByValue: true });
    show(`evaluate ${JSON.stringify(expression)} = ${JSON.stringify(reply.result?.result?.value ?? reply.error?.message)}`);
  }

  step('Try to change production code');
  verdict('Debugger.setScriptSource', await session.send('Debugger.setScriptSource', { scriptId: frame.location.scriptId, scriptSource: '/* patched */' }));
  verdict('Runtime.callFunctionOn', await session.send('Runtime.callFunctionOn', { functionDeclaration: 'function () { while (true) {} }', objectId: local.object.objectId }));

  step('Resume');
  verdict('Debugger.removeBreakpoint', await session.send('Debugger.removeBreakpoint', { breakpointId: bp.result.breakpointId }));
  verdict('Debugger.resume', await session.send('Debugger.resume'));
  const alice = await aliceResponse;
  show(`alice's request completed after the resume: charged ${alice.charged} (total ${alice.total}, discount ${alice.discount})`);
  const burst = await Promise.all(Array.from({ length: 20 }, () => fetch(`${serviceUrl}/health`).then((r) => r.json())));
  show(`the service kept serving: 20/20 health checks answered, ${burst.at(-1).served} orders served in all`);

  step('Alert: the burst of refusals fired the "refusals" rule (3 within 60 s)');
  const delivery = await receiver.waitFor((d) => JSON.parse(d.body).rule === 'refusals');
  const alert = JSON.parse(delivery.body);
  for (const other of receiver.requests.filter((d) => d !== delivery)) show(`(also delivered: alert.${JSON.parse(other.body).rule}: ${JSON.parse(other.body).message})`);
  show(`webhook POST ${receiver.url} (signature ${verifySignature(delivery) ? 'verified' : 'INVALID'}): alert.${alert.rule} on ${alert.target}: ${alert.message}`);
  show(`evidence: ${alert.evidence.map((e) => `#${e.seq} ${e.type}`).join(', ')}`);
  const ownerToken = mintToken(env, 'olga', 'payments-owners', 'Olga Owner');
  const ownerView = await api(brokerUrl, 'GET', '/v1/alerts', ownerToken);
  show(`GET /v1/alerts as the service owner: ${ownerView.body.alerts.length} alert(s), newest: ${ownerView.body.alerts[0]?.rule}`);
  show(`also recorded in the session's audit chain as alert.${alert.rule}, and written as ECS to ${env.LOUPE_ECS_OUTPUT}`);

  step('End the session');
  const closed = await session.close();
  show(`closed (${closed.code}); the broker removed the session's breakpoints, resumed and detached`);

  step('Audit: the session as an auditor sees it (sealed chunks in the audit store, verified, rendered)');
  const auditorToken = mintToken(env, 'audrey', 'auditors', 'Audrey Auditor');
  let sessions = [];
  for (let i = 0; i < 100 && !sessions.some((x) => x.state === 'ended'); i++) {
    await new Promise((r) => setTimeout(r, 100));
    sessions = (await api(brokerUrl, 'GET', '/v1/sessions?target=checkout', auditorToken)).body.sessions;
  }
  const recorded = sessions.find((x) => x.state === 'ended');
  if (!recorded) throw new Error('the session did not reach the audit store');
  show(`GET /v1/sessions → ${recorded.sessionId}: ${recorded.user.sub} on ${recorded.target}, "${recorded.reason}" (${recorded.ticket}), ended: ${recorded.endReason}`);
  const outDir = join(stateDir(env), 'audit-downloads', recorded.sessionId);
  const cliEnv = { ...process.env, ...env, LOUPE_BROKER_URL: brokerUrl, LOUPE_TOKEN: auditorToken };
  const download = spawnSync(process.execPath, [cli, 'audit', 'download', recorded.sessionId, '-o', outDir], { cwd: root, env: cliEnv, encoding: 'utf8' });
  if (download.status !== 0) throw new Error(download.stderr);
  show(`loupe audit download → ${outDir}`);
  const verify = spawnSync(process.execPath, [cli, 'audit', 'verify', outDir], { cwd: root, env: cliEnv, encoding: 'utf8' });
  for (const line of verify.stdout.trim().split('\n')) show(`loupe audit verify → ${line.trim()}`);
  if (verify.status !== 0) throw new Error('the demo session did not verify');
  const transcript = readFileSync(join(outDir, 'transcript.ndjson'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
  const events = transcript.filter((r) => r.seq !== undefined);
  const count = (type) => events.filter((r) => r.type === type).length;
  show(
    `${events.length} records in ${transcript.filter((r) => r.type === 'seal').length} sealed chunk(s): ${count('cdp.evaluate')} evaluations, ${count('cdp.properties.read')} variable reads, ${count('cdp.refused')} refusals by the gate, ${count('cdp.breakpoint.condition')} condition checks; every request written before it was forwarded`,
  );
  const reportFile = join(outDir, 'report.html');
  const render = spawnSync(process.execPath, [cli, 'audit', 'render', outDir, '-o', reportFile], { cwd: root, env: cliEnv, encoding: 'utf8' });
  if (render.status !== 0) throw new Error(render.stderr);
  show(`report: ${reportFile}`);
  show(`(also served to auditors at ${brokerUrl}/v1/sessions/${recorded.sessionId}/report)`);

  const attachLine = [
    `TOKEN=$(node dist/cli.js token --config examples/demo/loupe.yaml --user alice --groups payments-dev)`,
    `curl -s -X POST ${brokerUrl}/v1/grants -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' \\`,
    `  -d '{"target":"checkout","mode":"pause","durationSeconds":900,"reason":"why you need it","ticket":"PAY-1234"}'`,
  ];
  if (once) {
    step('Done (--once): stopping the broker and the service');
    return;
  }
  step('The broker and the service keep running. To attach another client, copy:');
  for (const l of attachLine) console.log(`  ${l}`);
  console.log('  then connect a CDP client to the attachUrl with "Authorization: Bearer <token>",');
  console.log(`  or POST ${brokerUrl}/v1/grants/<grantId>/tickets for a single-use URL (Chrome DevTools).`);
  console.log(`  Service: ${serviceUrl}/checkout?user=alice&items=book,lamp   Press Ctrl-C to stop.`);
  await new Promise((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
}

function stopAll() {
  for (const child of children) if (child.exitCode === null) child.kill('SIGTERM');
}

main()
  .then(() => {
    stopAll();
  })
  .catch((err) => {
    console.error(`\ndemo failed: ${err.stack ?? err}`);
    stopAll();
    process.exitCode = 1;
  });
