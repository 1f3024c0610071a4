#!/usr/bin/env node
// The bare WebSocket relay of `npm run bench`: the floor for any proxy in front of a Node inspector.
// No parsing, no policy, no recording: each client connection gets its own connection to the target
// (TCP_QUICKACK re-armed after every read, as broker/session/targetLink.ts does) and frames are piped
// both ways unchanged. Usage: node bench/relay.mjs <target ws:// URL>; prints "relay listening on ws://...".
import { createRequire } from 'node:module';
import { WebSocket, WebSocketServer } from 'ws';

const targetUrl = process.argv[2];
if (!targetUrl) {
  process.stderr.write('usage: node bench/relay.mjs <target ws:// URL>\n');
  process.exit(2);
}

let setsockopt = null;
try {
  if (process.platform === 'linux') setsockopt = createRequire(import.meta.url)('sockopt').setsockopt;
} catch {
  setsockopt = null;
}
/** Same 10 lines as armQuickAck in broker/session/targetLink.ts (IPPROTO_TCP=6, TCP_QUICKACK=12). */
function armQuickAck(socket) {
  if (!setsockopt) return false;
  const arm = () => {
    try {
      setsockopt(socket, 6, 12, 1);
    } catch {
      /* socket closing */
    }
  };
  arm();
  socket.on('data', arm);
  return true;
}

const server = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false, maxPayload: 512 << 20 });
server.on('connection', (client) => {
  const target = new WebSocket(targetUrl, { perMessageDeflate: false, maxPayload: 512 << 20 });
  const early = [];
  client.on('message', (data, isBinary) => (target.readyState === WebSocket.OPEN ? target.send(data, { binary: isBinary }) : early.push([data, isBinary])));
  target.on('open', () => {
    const raw = target._socket;
    raw.setNoDelay(true);
    if (!armQuickAck(raw)) process.stderr.write('relay: TCP_QUICKACK unavailable; round trips will pay the target Nagle delay\n');
    for (const [data, isBinary] of early.splice(0)) target.send(data, { binary: isBinary });
  });
  target.on('message', (data, isBinary) => client.readyState === WebSocket.OPEN && client.send(data, { binary: isBinary }));
  const closeBoth = () => {
    if (client.readyState === WebSocket.OPEN) client.close();
    if (target.readyState === WebSocket.OPEN || target.readyState === WebSocket.CONNECTING) target.terminate();
  };
  client.on('close', closeBoth);
  client.on('error', closeBoth);
  target.on('close', closeBoth);
  target.on('error', closeBoth);
});
server.on('listening', () => {
  const { port } = server.address();
  process.stdout.write(`relay listening on ws://127.0.0.1:${port}\n`);
});
const stop = () => {
  for (const c of server.clients) c.terminate();
  server.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 500).unref();
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
