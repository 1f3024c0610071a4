import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import WebSocket, { WebSocketServer } from 'ws';

/**
 * A scripted stand-in for a compromised target process: it speaks the inspector's discovery (/json/list) and
 * WebSocket protocol, and answers whatever its script says. Not a fake of the broker: the thing under test
 * is the broker's handling of what a hostile target sends.
 */
export interface HostileTarget {
  /** `127.0.0.1:PORT`, as a policy's `inspector` names it. */
  readonly inspector: string;
  /** Connections the broker opened, newest last. */
  readonly links: WebSocket[];
  /** Requests the broker sent, as parsed. */
  readonly requests: { id?: unknown; method?: unknown; params?: unknown }[];
  /** How a request is answered: frames to send back (strings or buffers), by default `{id, result: {}}`. */
  answer: (request: { id?: unknown; method?: unknown; params?: unknown }, link: WebSocket) => (string | Buffer)[];
  /** What /json/list returns (a body, sent as is). */
  discovery: () => string;
  /** Resolves with the next link the broker opens. */
  nextLink(): Promise<WebSocket>;
  close(): Promise<void>;
}

export const defaultAnswer = (request: { id?: unknown }): string[] => [JSON.stringify({ id: request.id, result: {} })];

export async function startHostileTarget(): Promise<HostileTarget> {
  const http: Server = createServer((req, res) => {
    if (req.url === '/json/list' || req.url === '/json') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(target.discovery());
    } else res.writeHead(404).end();
  });
  const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false, maxPayload: 256 << 20 });
  const waiters: ((link: WebSocket) => void)[] = [];
  http.on('upgrade', (req, socket, head) => wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req)));
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
  const port = (http.address() as AddressInfo).port;
  const target: HostileTarget = {
    inspector: `127.0.0.1:${port}`,
    links: [],
    requests: [],
    answer: defaultAnswer,
    discovery: () => JSON.stringify([{ id: 'hostile', type: 'node', webSocketDebuggerUrl: `ws://127.0.0.1:${port}/hostile` }]),
    nextLink: () => new Promise((resolve) => waiters.push(resolve)),
    async close() {
      for (const link of target.links) link.terminate();
      wss.close();
      http.closeAllConnections();
      await new Promise((resolve) => http.close(resolve));
    },
  };
  wss.on('connection', (ws) => {
    target.links.push(ws);
    ws.on('error', () => undefined);
    ws.on('message', (data) => {
      let request: { id?: unknown; method?: unknown; params?: unknown };
      try {
        request = JSON.parse(data.toString());
      } catch {
        return;
      }
      target.requests.push(request);
      for (const frame of target.answer(request, ws)) if (ws.readyState === ws.OPEN) ws.send(frame);
    });
    waiters.splice(0).forEach((resolve) => resolve(ws));
  });
  return target;
}
