import { createServer, type IncomingMessage, type OutgoingHttpHeaders, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { WebSocketServer } from 'ws';
import type { Broker } from '../broker';
import type { RequestOrigin } from '../securityEvents';
import { LoupeError } from '../errors';
import type { Identity } from '../identity/verifyIdentity';
import { requestTarget, sentPath } from './requestTarget';

const maxBodyBytes = 64 * 1024;

/**
 * Bounds on a request's arrival: its headers within 10 s, all of it (a body of at most 64 KB) within 30 s, checked
 * every second. Node's defaults (60 s and 300 s, checked every 30 s) let a client that sends one byte a second hold
 * a connection for 90 s without a token, and for 5 minutes with one.
 */
export const requestArrival = { headersMs: 10_000, requestMs: 30_000, checkEveryMs: 1_000 } as const;

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' });
  res.end(text);
}

const ndjsonHeaders: OutgoingHttpHeaders = { 'content-type': 'application/x-ndjson; charset=utf-8', 'cache-control': 'no-store' };
/** A report: a page that loads nothing and runs nothing. */
const reportHeaders: OutgoingHttpHeaders = {
  'content-type': 'text/html; charset=utf-8',
  'cache-control': 'no-store',
  'content-security-policy': "default-src 'none'; style-src 'unsafe-inline'",
};

/**
 * NDJSON (or a report) sent as it is read (chunked): a refusal or an unknown id is found before the first part and answered as an
 * error; a store failing after the headers went out cuts the response, so no client takes a short transcript for whole.
 */
async function sendParts(res: ServerResponse, parts: AsyncGenerator<string>, log: (line: string) => void, headers: OutgoingHttpHeaders = ndjsonHeaders): Promise<void> {
  const first = await parts.next();
  res.writeHead(200, headers);
  const all = async function* () {
    if (!first.done) yield first.value;
    yield* parts;
  };
  await pipeline(Readable.from(all()), res).catch((err: Error) => log(`${headers === reportHeaders ? 'report' : 'transcript'} download cut: ${err.message}`));
}

/** A JSON body; with `optional`, a body that turns out empty (chunked, or whitespace) is none, whatever its type. */
function readJson(req: IncomingMessage, optional = false): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const type = req.headers['content-type'] ?? '';
    const isJson = /^application\/json\b/.test(type);
    if (!isJson && !optional) {
      reject(new LoupeError('bad_request', 'expected Content-Type: application/json'));
      req.resume();
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > maxBodyBytes) {
        reject(new LoupeError('payload_too_large', `request body over ${maxBodyBytes} bytes`));
        // The rest is not read: the 413 goes out, then the connection closes (destroying it now would lose the answer).
        req.removeAllListeners('data');
        req.pause();
      } else chunks.push(chunk);
    });
    req.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      if (optional && text.trim() === '') return resolve(undefined);
      if (!isJson) return reject(new LoupeError('bad_request', 'expected Content-Type: application/json'));
      try {
        resolve(JSON.parse(text));
      } catch (err) {
        reject(new LoupeError('bad_request', `malformed JSON body: ${(err as Error).message}`));
      }
    });
    req.on('error', reject);
  });
}

/** A JSON body where one is optional (approve may carry a comment or nothing). */
function readOptionalJson(req: IncomingMessage): Promise<unknown> {
  if (req.headers['content-length'] === '0' || (req.headers['content-length'] === undefined && req.headers['transfer-encoding'] === undefined)) {
    req.resume();
    return Promise.resolve(undefined);
  }
  return readJson(req, true);
}

/** Where a request came from: the peer address as the socket has it (no forwarding header is trusted). */
function originOf(req: IncomingMessage): RequestOrigin {
  return { source: req.socket.remoteAddress, method: req.method ?? '', path: sentPath(req.url), userAgent: req.headers['user-agent'] };
}

type Route = (req: IncomingMessage, res: ServerResponse, identity: Identity, match: RegExpExecArray) => Promise<void>;

export interface BrokerServer {
  readonly server: Server;
  readonly url: string;
  close(): Promise<void>;
}

/**
 * Answers on a socket node's server no longer answers on (a refused upgrade, a CONNECT, a request its parser refused)
 * and closes it. Lingering: what the client still sends is read and dropped for a moment, so it reads the answer
 * rather than a reset; then the socket goes, whatever the client does, so no refused connection stays open.
 */
function answerAndClose(socket: Socket, error: LoupeError, reason: string, withBody = true): void {
  const body = JSON.stringify(error.toJSON());
  socket.on('error', () => undefined);
  const linger = setTimeout(() => socket.destroy(), 500);
  linger.unref();
  socket.once('close', () => clearTimeout(linger));
  socket.once('end', () => socket.destroy());
  socket.resume();
  socket.end(`HTTP/1.1 ${error.status} ${reason}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${withBody ? body : ''}`);
}

/** The HTTP and WebSocket edges: authentication happens here, decisions in the Broker. */
export async function listen(broker: Broker, host = broker.config.server.host, port = broker.config.server.port, log: (line: string) => void = () => undefined): Promise<BrokerServer> {
  const routes: [string, RegExp, Route][] = [
    ['GET', /^\/v1\/targets$/, async (_req, res, identity) => sendJson(res, 200, { targets: broker.listTargets(identity) })],
    [
      'POST',
      /^\/v1\/grants$/,
      async (req, res, identity) => {
        const origin = originOf(req);
        const body = await readJson(req).catch((err: unknown) => {
          broker.grantRequestMalformed(identity, err, origin);
          throw err;
        });
        const answer = await broker.requestGrant(identity, body, origin);
        if ('status' in answer) return sendJson(res, 202, answer); // pending: an access request, not a grant
        log(`grant ${answer.grantId} issued to ${identity.sub}`);
        sendJson(res, 201, answer);
      },
    ],
    // Access requests under the two-person rule (broker/policy/approvals.ts).
    ['GET', /^\/v1\/requests$/, async (_req, res, identity) => sendJson(res, 200, { requests: await broker.approvals.list(identity) })],
    ['GET', /^\/v1\/requests\/([0-9a-f-]{36})$/, async (_req, res, identity, match) => sendJson(res, 200, await broker.approvals.get(identity, match[1]!))],
    ['POST', /^\/v1\/requests\/([0-9a-f-]{36})\/approve$/, async (req, res, identity, match) => sendJson(res, 200, await broker.approvals.approve(identity, match[1]!, await readOptionalJson(req)))],
    ['POST', /^\/v1\/requests\/([0-9a-f-]{36})\/deny$/, async (req, res, identity, match) => sendJson(res, 200, await broker.approvals.deny(identity, match[1]!, await readOptionalJson(req)))],
    ['POST', /^\/v1\/requests\/([0-9a-f-]{36})\/withdraw$/, async (_req, res, identity, match) => sendJson(res, 200, await broker.approvals.withdraw(identity, match[1]!))],
    [
      'POST',
      /^\/v1\/requests\/([0-9a-f-]{36})\/grant$/,
      async (_req, res, identity, match) => {
        const grant = await broker.approvals.collect(identity, match[1]!);
        log(`grant ${grant.grantId} issued to ${identity.sub} after the approval of request ${match[1]}`);
        sendJson(res, 201, grant);
      },
    ],
    [
      'DELETE',
      /^\/v1\/grants\/([0-9a-f-]{36})$/,
      async (_req, res, identity, match) => {
        const { grant, running } = await broker.revokeGrant(identity, match[1]!);
        log(`grant ${grant.grantId} revoked by ${identity.sub}${running ? `; its session still runs on replica ${running.replica}` : ''}`);
        const revoked = { grantId: grant.grantId, revokedAt: new Date(grant.revokedAt! * 1000).toISOString(), revokedBy: grant.revokedBy };
        if (!running) return sendJson(res, 200, revoked);
        // Accepted, not done: the replica holding the session has not ended it (it may be cut off from the database).
        const endsBy = new Date(running.leaseUntilMs).toISOString();
        sendJson(res, 202, {
          ...revoked,
          session: { sessionId: running.sessionId, replica: running.replica, endsBy },
          message: `grant ${grant.grantId} is revoked, but its live session on broker replica ${running.replica} has not ended yet: that replica has not answered (it may be cut off from the state database) and ends the session by ${endsBy} at the latest`,
        });
      },
    ],
    ['POST', /^\/v1\/grants\/([0-9a-f-]{36})\/tickets$/, async (_req, res, identity, match) => sendJson(res, 201, await broker.issueAttachTicket(identity, match[1]!))],
    ['GET', /^\/v1\/alerts$/, async (_req, res, identity) => sendJson(res, 200, { alerts: broker.listAlerts(identity) })],
    // The broker's own chains, for auditors: its security stream (broker/audit/securityStream.ts) and grant streams.
    [
      'GET',
      /^\/v1\/audit\/(security|grants)$/,
      async (_req, res, identity, match) => sendJson(res, 200, { segments: await broker.auditReader.listSecuritySegments(identity, match[1] as 'security' | 'grants') }),
    ],
    [
      'GET',
      /^\/v1\/audit\/(?:security|grants)\/((?:security|grants)-[0-9TZ-]+-[0-9a-f]{8})\/transcript$/,
      async (_req, res, identity, match) => {
        await sendParts(res, broker.auditReader.securitySegmentText(identity, match[1]!), log);
      },
    ],
    [
      'GET',
      /^\/v1\/audit\/(?:security|grants)\/((?:security|grants)-[0-9TZ-]+-[0-9a-f]{8})\/report$/,
      async (_req, res, identity, match) => {
        await sendParts(res, broker.auditReader.securitySegmentReport(identity, match[1]!), log, reportHeaders);
      },
    ],
    [
      'GET',
      /^\/v1\/sessions$/,
      async (req, res, identity) => {
        const query = requestTarget(req.url)!.query;
        const date = (name: string) => {
          const value = query.get(name);
          if (value === null) return undefined;
          const parsed = new Date(value);
          if (Number.isNaN(parsed.getTime())) throw new LoupeError('bad_request', `${name}: expected an ISO 8601 time, got "${value}"`);
          return parsed;
        };
        const filter = {
          ...(query.get('target') ? { target: query.get('target')! } : {}),
          ...(query.get('user') ? { user: query.get('user')! } : {}),
          ...(date('from') ? { from: date('from')! } : {}),
          ...(date('to') ? { to: date('to')! } : {}),
        };
        sendJson(res, 200, { sessions: await broker.auditReader.listSessions(identity, filter) });
      },
    ],
    [
      'GET',
      /^\/v1\/sessions\/([0-9a-f-]{36})\/transcript$/,
      async (_req, res, identity, match) => {
        await sendParts(res, broker.auditReader.transcript(identity, match[1]!), log);
      },
    ],
    [
      'GET',
      /^\/v1\/sessions\/([0-9a-f-]{36})\/report$/,
      async (_req, res, identity, match) => {
        await sendParts(res, broker.auditReader.report(identity, match[1]!), log, reportHeaders);
      },
    ],
  ];

  const server = createServer({ connectionsCheckingInterval: requestArrival.checkEveryMs, headersTimeout: requestArrival.headersMs, requestTimeout: requestArrival.requestMs }, (req, res) => {
    void (async () => {
      const target = requestTarget(req.url);
      if (!target) throw new LoupeError('bad_request', 'the request target must be a path (/v1/...)');
      const { path } = target;
      if (path === '/healthz') return sendJson(res, 200, { status: 'ok' });
      if (path === '/readyz') {
        const { ready, audit } = broker.ready;
        return sendJson(res, ready ? 200 : 503, { ready, audit });
      }
      if (path === '/v1/audit/keys') return sendJson(res, 200, await broker.publishedAuditKeys());
      if (path === '/metrics' && req.method === 'GET') {
        const text = await broker.metrics.registry.metrics();
        res.writeHead(200, { 'content-type': broker.metrics.registry.contentType });
        return res.end(text);
      }
      const candidates = routes.map(([method, pattern, handler]) => ({ method, match: pattern.exec(path), handler })).filter((r) => r.match);
      if (candidates.length === 0) throw new LoupeError('not_found', `no route ${req.method} ${path}`);
      const route = candidates.find((r) => r.method === req.method);
      if (!route) throw new LoupeError('method_not_allowed', `${req.method} is not supported on ${path} (use ${candidates.map((r) => r.method).join(', ')})`);
      const identity = await broker.verifyIdentity(req.headers.authorization).catch((err: unknown) => {
        broker.identityRejected(err, req.headers.authorization, originOf(req));
        throw err;
      });
      await route.handler(req, res, identity, route.match!);
    })().catch((err: unknown) => {
      const error = err instanceof LoupeError ? err : new LoupeError('internal', 'internal error', undefined, { cause: err });
      if (error.code === 'internal') log(`internal error on ${req.method} ${req.url}: ${(err as Error)?.stack ?? String(err)}`);
      if (!res.headersSent) {
        if (error.code === 'payload_too_large') {
          res.shouldKeepAlive = false;
          res.once('finish', () => req.destroy());
        }
        sendJson(res, error.status, error.toJSON());
      } else res.destroy();
    });
  });

  // Frames over the gate's limit are still read, so the gate can refuse them and keep the session; only
  // frames far beyond it close the socket (1009).
  const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false, maxPayload: Math.min(broker.config.limits.maxFrameBytes * 8, 128 << 20) });

  // A request node's parser refused, or that did not arrive in time, is answered like every other refusal (node's
  // own answer has no body), unless an answer to it has begun.
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
    const answering = (socket as { _httpMessage?: { headersSent?: boolean } })._httpMessage?.headersSent === true;
    if (err.code === 'ECONNRESET' || !socket.writable || answering) return void socket.destroy();
    const [error, reason] =
      err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? [
            new LoupeError('request_timeout', `the request did not arrive in time (headers within ${requestArrival.headersMs} ms, the whole request within ${requestArrival.requestMs} ms)`),
            'Request Timeout',
          ]
        : err.code === 'HPE_HEADER_OVERFLOW'
          ? [new LoupeError('headers_too_large', 'request headers over the server limit'), 'Request Header Fields Too Large']
          : [new LoupeError('bad_request', `malformed HTTP request (${err.code ?? 'unparsable'})`), 'Bad Request'];
    // The answer to a HEAD has no body (its head says how long one would be).
    const packet = (err as { rawPacket?: unknown }).rawPacket;
    answerAndClose(socket, error, reason, !(Buffer.isBuffer(packet) && packet.subarray(0, 5).toString('latin1') === 'HEAD '));
  });

  // CONNECT is for proxies: node closes such a connection unanswered unless told otherwise; it is refused in words.
  server.on('connect', (req: IncomingMessage, socket: Socket) => {
    answerAndClose(socket, new LoupeError('method_not_allowed', `${req.method} is not supported: the broker is not a proxy`), 'Method Not Allowed');
  });

  server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => {
    const reject = (error: LoupeError) => answerAndClose(socket, error, error.code);
    const url = requestTarget(req.url) ?? { path: sentPath(req.url), query: new URLSearchParams() };
    const match = /^\/v1\/attach\/([0-9a-f-]{36})$/.exec(url.path);
    const refused = (err: unknown) => broker.attachRefused(err, match?.[1], { ticket: url.query.get('ticket'), authorization: req.headers.authorization }, originOf(req));
    if (!match) {
      const error = new LoupeError('not_found', `no WebSocket endpoint at ${url.path}`);
      refused(error);
      return reject(error);
    }
    if (shuttingDown) return reject(new LoupeError('session_busy', 'broker is shutting down'));
    let upgraded = false;
    void (async () => {
      const grant = await broker.authenticateAttach(match[1]!, req.headers.authorization, url.query.get('ticket'));
      const session = await broker.attach(grant, () => {
        upgraded = true;
        // ws drops a connection that closed before its upgrade without a word: the attach is told, so the target
        // connection it opened is closed and the grant can attach again.
        return new Promise((resolve, reject) => {
          const gone = () => reject(new LoupeError('bad_request', 'the client closed its connection before the WebSocket upgrade completed'));
          if (socket.destroyed || !socket.readable || !socket.writable) {
            socket.destroy();
            return gone();
          }
          socket.once('close', gone);
          wss.handleUpgrade(req, socket, head, (client) => {
            socket.off('close', gone);
            resolve(client);
          });
        });
      });
      log(`session ${session.sessionId} started: ${grant.sub} on ${grant.target} (${grant.mode})`);
    })().catch((err: unknown) => {
      const error = err instanceof LoupeError ? err : new LoupeError('internal', `attach failed: ${(err as Error)?.message}`);
      log(`attach refused: ${error.message}`);
      refused(error);
      if (!upgraded && socket.writable) reject(error);
    });
  });

  let shuttingDown = false;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  const address = server.address() as AddressInfo;
  const url = `http://${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}`;
  broker.publicUrl = url;

  return {
    server,
    url,
    async close() {
      shuttingDown = true;
      await broker.shutdown();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
}
