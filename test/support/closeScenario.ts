// One scenario against a real target and a broker hosted in this process (as a library user hosts it), then the
// broker is closed and the target stopped, and the process is left to exit by itself. test/closeLeavesNothing.test.ts
// runs it: anything the broker started that outlives close() (a timer, a socket, a retry) keeps it alive.
import { createServer, type Server, type ServerResponse } from 'node:http';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CdpClient } from './cdpClient';
import { fixtures, markerLine, startTarget } from './target';
import { alertRulesOff, basePolicy, startTestBroker } from './testBroker';
import { waitFor } from './wait';

type Receiver = (res: ServerResponse) => void;

async function receiver(answer: Receiver): Promise<{ server: Server; url: string; requests: () => number }> {
  let requests = 0;
  const server = createServer((req, res) => {
    req.resume();
    requests++;
    answer(res);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`, requests: () => requests };
}

async function main(scenario: string): Promise<void> {
  const appFile = join(fixtures, 'app.js');
  const target = await startTarget(appFile);
  const base = basePolicy(target.inspector);
  const servers: Server[] = [];
  // Outside the state directory, which the test broker deletes when it closes.
  const deadLetterFile = join(mkdtempSync(join(tmpdir(), 'loupe-close-')), 'dead-letters.ndjson');
  const webhookPolicy = (url: string, maxAttempts: number) => ({
    ...base,
    alerting: { rules: alertRulesOff, webhooks: [{ url, maxAttempts }], deadLetterFile },
    targets: { app: { ...base.targets.app, alerts: { refusals: { count: 1, withinSeconds: 60 } } } },
  });
  let broker;
  switch (scenario) {
    case 'pause-outstanding': {
      // The client asks for a pause and vanishes; V8 takes it while the session ends (another client keeps V8's
      // debugger on), so the pause reaches a session that is already stopping.
      broker = await startTestBroker(base);
      const observer = await CdpClient.connect(target.wsUrl);
      await observer.call('Debugger.enable');
      const { client, grant } = await broker.attach();
      await client.call('Debugger.enable');
      client.socket.send(JSON.stringify({ id: 100, method: 'Debugger.pause', params: {} }));
      client.socket.terminate();
      await broker.waitForRecord('session.ended', (e) => e.grant === grant.grantId);
      await target.ticksAdvance(3);
      await observer.close();
      break;
    }
    case 'paused-at-close': {
      broker = await startTestBroker(base);
      const { client } = await broker.attach();
      await client.call('Debugger.enable');
      await client.call('Debugger.setBreakpointByUrl', { lineNumber: markerLine(appFile, 'work'), urlRegex: 'app\\.js$' });
      await client.waitEvent('Debugger.paused');
      break; // closed below while the target is paused
    }
    case 'snapshot-capturing': {
      broker = await startTestBroker({ ...base, targets: { app: { ...base.targets.app, snapshot: { minIntervalMs: 200 } } } });
      const { client } = await broker.attach({ mode: 'snapshot' });
      await client.call('Debugger.enable');
      await client.call('Debugger.setBreakpointByUrl', { lineNumber: markerLine(appFile, 'work'), urlRegex: 'app\\.js$' });
      await client.waitEvent('Loupe.snapshotCaptured');
      break;
    }
    case 'webhook-retrying':
    case 'webhook-unanswered': {
      // A receiver that refuses (the delivery waits to retry) or never answers (the delivery is under way).
      const hook = await receiver(scenario === 'webhook-retrying' ? (res) => ((res.statusCode = 503), res.end()) : () => undefined);
      servers.push(hook.server);
      // Ten attempts: retried as the old sink did, they would take minutes.
      broker = await startTestBroker(webhookPolicy(hook.url, 10));
      const { client } = await broker.attach();
      await client.send('Profiler.start'); // refused: one refusals alert
      await waitFor(() => hook.requests() > 0, { what: 'the first delivery to reach the receiver' });
      await client.close();
      break;
    }
    default:
      throw new Error(`no scenario ${scenario}`);
  }
  const closing = Date.now();
  await broker.close();
  process.stdout.write(`broker closed in ${Date.now() - closing} ms\n`);
  await target.stop();
  for (const server of servers) {
    server.closeAllConnections();
    server.close();
  }
  process.stdout.write(`dead letters: ${deadLetterFile}\n`);
  // What still holds the process, by kind, for the test's message.
  setTimeout(() => process.stdout.write(`still open 3 s after close: ${process.getActiveResourcesInfo().join(', ')}\n`), 3000).unref();
}

main(process.argv[2] ?? '').catch((err: Error) => {
  process.stderr.write(`${err.stack}\n`);
  process.exit(2);
});
