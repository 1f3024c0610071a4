/**
 * The local end of `loupe connect`: a loopback HTTP server that answers the inspector's discovery as `node --inspect`
 * does (`/json/list`, `/json`, `/json/version`, `/json/protocol`) and a WebSocket whose frames are relayed both ways
 * to the broker's attach socket. Any client that attaches to `node --inspect` attaches here unchanged; the broker
 * holds it to the grant's policy.
 *
 * One local client at a time (the broker allows one live session per grant). When it disconnects, its broker
 * session ends (the broker resumes the target and removes its breakpoints) and a new local client may attach,
 * which opens a new broker session under the same grant until the grant ends.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { randomUUID } from 'node:crypto';
import WebSocket, { WebSocketServer, type RawData } from 'ws';
import protocol from 'devtools-protocol/json/js_protocol.json';
import { peerUid } from './peerUser';
import { requestTarget, sentPath } from '../http/requestTarget';

/** A refusal of the local upgrade: the HTTP status and the words the local client (and the terminal) see. */
export class AttachRefusal extends Error {
  constructor(
    readonly status: number,
    message: string,
    /** The broker's error code, when the broker refused. */
    readonly code?: string,
  ) {
    super(message);
  }
}

export interface SessionClosed {
  /** The broker's close code (1006 when the connection was lost without one). */
  readonly code: number;
  readonly reason: string;
  /** Who ended it: the local client (disconnect), this process (stop), or the broker. */
  readonly by: 'local-client' | 'connect' | 'broker';
  /** Why this process gave up a side (it stopped answering pings). */
  readonly note?: string;
}

export interface EndpointOptions {
  /** 0 picks a free port. */
  readonly port: number;
  readonly target: string;
  readonly mode: string;
  /** Opens the broker's attach socket for a new local client (its User-Agent, if any); rejects with an AttachRefusal. */
  readonly openBroker: (client: { readonly userAgent?: string }) => Promise<WebSocket>;
  readonly onSessionStart?: () => void;
  readonly onSessionClosed?: (closed: SessionClosed) => void;
  /** An attach the endpoint refused, with why (shown in the terminal too). */
  readonly onRefused?: (refusal: AttachRefusal) => void;
  /** How often both sockets are pinged; a side that misses two pongs is given up (default 15 s). */
  readonly heartbeatMs?: number;
}

const loopbackHost = /^(?:127\.0\.0\.1|localhost|\[::1\])(?::(\d+))?$/i;

/**
 * Browsers always send Origin with a WebSocket; a web page must not reach this socket (it holds a production grant).
 * Clients outside a browser send none; Chrome DevTools sends its own scheme; a page on loopback is already local.
 */
function originAllowed(origin: string | undefined): boolean {
  if (origin === undefined) return true;
  if (/^(?:devtools|chrome-devtools):\/\/devtools$/.test(origin)) return true;
  try {
    const url = new URL(origin);
    return (url.protocol === 'http:' || url.protocol === 'https:') && ['127.0.0.1', 'localhost', '[::1]'].includes(url.hostname);
  } catch {
    return false;
  }
}

/** A WebSocket close code the relay may send on (1005, 1006 and 1015 are reserved for "none received"). */
function sendableCode(code: number): number {
  return code === 1000 || (code >= 3000 && code <= 4999) ? code : 1011;
}

/** A close reason cut to the 123 bytes a close frame carries. */
function closeReason(reason: string): string {
  let cut = reason;
  while (Buffer.byteLength(cut) > 123) cut = cut.slice(0, -1);
  return cut;
}

/** Why a connection from another local user is refused, or undefined when it is this user's (or the OS cannot tell). */
function otherUser(socket: Socket, port: number): string | undefined {
  const uid = peerUid(port, socket.remotePort ?? 0);
  const own = process.getuid?.();
  if (uid === 'unsupported' || own === undefined) return undefined;
  if (uid === undefined) return 'the connection is not listed by the kernel, so its user is unknown';
  return uid === own ? undefined : `the connection comes from another local user (uid ${uid}); only the user who ran loupe connect (uid ${own}) may use its grant`;
}

export class LocalEndpoint {
  /** The id in the WebSocket path, as `node --inspect` has one per process. */
  readonly id = randomUUID();
  private ready = false;
  /** The local client and its broker socket, while one is attached or attaching. */
  private live: { local?: WebSocket; broker?: WebSocket; closed: Promise<void>; stopping?: boolean } | undefined;
  private readonly wss = new WebSocketServer({ noServer: true, perMessageDeflate: false, maxPayload: 128 << 20 });

  private constructor(
    private readonly server: Server,
    readonly port: number,
    private readonly options: EndpointOptions,
  ) {
    server.on('request', (req: IncomingMessage, res: ServerResponse) => this.onRequest(req, res));
    server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => this.onUpgrade(req, socket, head));
  }

  /** Binds 127.0.0.1:<port>; rejects with a message that names the port when it is taken. */
  static async listen(options: EndpointOptions): Promise<LocalEndpoint> {
    const server = createServer();
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err: NodeJS.ErrnoException) => {
        if (err.code === 'EADDRINUSE')
          reject(new Error(`port ${options.port} on 127.0.0.1 is in use (another debugger target, node --inspect or loupe connect?): choose another with --port, or --port 0 for any free one`));
        else if (err.code === 'EACCES') reject(new Error(`cannot listen on 127.0.0.1:${options.port}: permission denied; choose a port above 1023 with --port`));
        else reject(new Error(`cannot listen on 127.0.0.1:${options.port}: ${err.message}`));
      });
      server.listen(options.port, '127.0.0.1', () => resolve());
    });
    return new LocalEndpoint(server, (server.address() as AddressInfo).port, options);
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  get webSocketUrl(): string {
    return `ws://127.0.0.1:${this.port}/${this.id}`;
  }

  get attached(): boolean {
    return this.live !== undefined;
  }

  /** The grant is in hand: discovery answers and attaches are relayed from now on. */
  open(): void {
    this.ready = true;
  }

  /** What `/json/list` answers: one target, shaped as `node --inspect` shapes it. */
  private targets(): Record<string, string>[] {
    const address = `127.0.0.1:${this.port}/${this.id}`;
    return [
      {
        description: `node.js instance through Loupe (${this.options.target}, ${this.options.mode} mode)`,
        devtoolsFrontendUrl: `devtools://devtools/bundled/js_app.html?experiments=true&v8only=true&ws=${address}`,
        devtoolsFrontendUrlCompat: `devtools://devtools/bundled/inspector.html?experiments=true&v8only=true&ws=${address}`,
        faviconUrl: 'https://nodejs.org/static/images/favicons/favicon.ico',
        id: this.id,
        title: `loupe: ${this.options.target} (${this.options.mode})`,
        type: 'node',
        url: `loupe://${this.options.target}`,
        webSocketDebuggerUrl: `ws://${address}`,
      },
    ];
  }

  private onRequest(req: IncomingMessage, res: ServerResponse): void {
    const send = (status: number, body: unknown) => {
      const text = typeof body === 'string' ? `${body}\n` : JSON.stringify(body, null, 2);
      res.writeHead(status, {
        'content-type': typeof body === 'string' ? 'text/plain; charset=utf-8' : 'application/json; charset=UTF-8',
        'content-length': Buffer.byteLength(text),
        'cache-control': 'no-store',
      });
      res.end(text);
    };
    // As node --inspect does: a name that is not loopback may be a DNS rebinding page reading the target list.
    const stranger = otherUser(req.socket, this.port);
    if (stranger) return send(403, `refused by loupe connect: ${stranger}`);
    if (!loopbackHost.test(req.headers.host ?? '')) return send(403, `refused by loupe connect: Host "${req.headers.host ?? ''}" is not a loopback address (DNS rebinding protection)`);
    if (req.method !== 'GET') return send(405, `refused by loupe connect: ${req.method} is not supported; the endpoint answers GET /json/list, /json/version, /json/protocol`);
    const target = requestTarget(req.url);
    if (!target) return send(400, 'refused by loupe connect: the request target must be a path like /json/list');
    const path = target.path.replace(/\/$/, '');
    if (!this.ready) return send(503, 'loupe connect has no grant yet (waiting for the broker or for approvals); try again once it prints LOUPE_CONNECT_URL');
    if (path === '/json' || path === '/json/list') return send(200, this.targets());
    if (path === '/json/version') return send(200, { Browser: 'node.js (through Loupe)', 'Protocol-Version': '1.1' });
    if (path === '/json/protocol') return send(200, protocol);
    send(404, `no such endpoint ${path || '/'}: loupe connect answers /json/list, /json/version, /json/protocol and the WebSocket at ${this.webSocketUrl}`);
  }

  private onUpgrade(req: IncomingMessage, socket: Socket, head: Buffer): void {
    const refuse = (refusal: AttachRefusal) => {
      this.options.onRefused?.(refusal);
      const body = `${refusal.message}\n`;
      const statusText = { 403: 'Forbidden', 404: 'Not Found', 409: 'Conflict', 503: 'Service Unavailable' }[refusal.status] ?? 'Refused';
      if (socket.writable)
        socket.end(`HTTP/1.1 ${refusal.status} ${statusText}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
    };
    socket.on('error', () => undefined);
    const stranger = otherUser(socket, this.port);
    if (stranger) return refuse(new AttachRefusal(403, `attach refused by loupe connect: ${stranger}`));
    if (!loopbackHost.test(req.headers.host ?? ''))
      return refuse(new AttachRefusal(403, `attach refused by loupe connect: Host "${req.headers.host ?? ''}" is not a loopback address (DNS rebinding protection)`));
    const origin = req.headers.origin;
    if (!originAllowed(origin)) return refuse(new AttachRefusal(403, `attach refused by loupe connect: a web page (origin ${origin}) may not attach; use a debugger or Chrome DevTools`));
    const path = sentPath(req.url);
    if (path !== `/${this.id}`) return refuse(new AttachRefusal(404, `attach refused by loupe connect: no target at ${path}; the WebSocket is ${this.webSocketUrl} (see /json/list)`));
    if (!this.ready) return refuse(new AttachRefusal(503, 'attach refused by loupe connect: no grant yet (waiting for the broker or for approvals)'));
    if (this.live)
      return refuse(
        new AttachRefusal(409, 'attach refused by loupe connect: another debugger is attached through this endpoint (one at a time, as the grant allows one session); disconnect it first'),
      );
    let settle!: () => void;
    const live: NonNullable<LocalEndpoint['live']> = { closed: new Promise<void>((resolve) => (settle = resolve)) };
    this.live = live;
    const release = () => {
      if (this.live === live) this.live = undefined;
      settle();
    };
    socket.once('close', () => {
      if (!live.local) release(); // gone before the broker answered
    });
    void this.options.openBroker(req.headers['user-agent'] ? { userAgent: req.headers['user-agent'] } : {}).then(
      (broker) => {
        live.broker = broker;
        if (socket.destroyed) {
          broker.close(1000, 'local debugger disconnected');
          broker.once('close', release);
          return;
        }
        this.wss.handleUpgrade(req, socket, head, (local) => {
          live.local = local;
          this.relay(live, local, broker, release);
        });
      },
      (err: unknown) => {
        release();
        refuse(err instanceof AttachRefusal ? err : new AttachRefusal(502, `attach failed: ${(err as Error)?.message ?? String(err)}`));
      },
    );
  }

  private relay(live: NonNullable<LocalEndpoint['live']>, local: WebSocket, broker: WebSocket, release: () => void): void {
    let closedBy: SessionClosed['by'] | undefined;
    // Flow control: a side that cannot keep up pauses reading from the other, so nothing piles up in this process.
    const forward = (from: WebSocket, to: WebSocket) => (data: RawData, isBinary: boolean) => {
      if (to.readyState !== WebSocket.OPEN) return;
      to.send(data, { binary: isBinary }, () => {
        if (from.isPaused && to.bufferedAmount < 1 << 20) from.resume();
      });
      if (to.bufferedAmount > 8 << 20) from.pause();
    };
    local.on('message', forward(local, broker));
    broker.on('message', forward(broker, local));
    local.on('error', () => undefined);
    broker.on('error', () => undefined);
    // The broker pings this process, not the debugger behind it: so the debugger is pinged here, and a broker that
    // went silent (a dropped network) is noticed here, each ending the session as the broker would.
    const heartbeat = setInterval(() => {
      for (const [socket, words] of [
        [local, 'the local debugger stopped answering pings'],
        [broker, 'the broker stopped answering pings'],
      ] as const) {
        const missed = (pongsMissed.get(socket) ?? 0) + 1;
        pongsMissed.set(socket, missed);
        if (missed > 2) {
          clearInterval(heartbeat);
          giveUp = words;
          if (socket === local) {
            local.terminate();
          } else {
            broker.terminate();
          }
          return;
        }
        if (socket.readyState === WebSocket.OPEN) socket.ping();
      }
    }, this.options.heartbeatMs ?? 15_000);
    heartbeat.unref();
    const pongsMissed = new Map<WebSocket, number>();
    let giveUp: string | undefined;
    local.on('pong', () => pongsMissed.set(local, 0));
    broker.on('pong', () => pongsMissed.set(broker, 0));
    local.once('close', () => {
      clearInterval(heartbeat);
      closedBy ??= live.stopping ? 'connect' : 'local-client';
      // The broker ends the session on this close: it removes the session's breakpoints and resumes the target.
      if (broker.readyState === WebSocket.OPEN || broker.readyState === WebSocket.CONNECTING) broker.close(1000, giveUp ?? 'local debugger disconnected');
    });
    broker.once('close', (code: number, reason: Buffer) => {
      clearInterval(heartbeat);
      closedBy ??= live.stopping ? 'connect' : 'broker';
      const text = reason.toString() || (giveUp ?? '');
      const note = giveUp ? { note: giveUp } : {};
      if (local.readyState === WebSocket.OPEN) local.close(sendableCode(code), closeReason(text || 'the connection to the broker closed'));
      // A local client that does not finish the close handshake must not keep the endpoint busy.
      const kill = setTimeout(() => local.terminate(), 2000);
      kill.unref();
      release();
      this.options.onSessionClosed?.({ code, reason: text, by: closedBy, ...note });
    });
    this.options.onSessionStart?.();
  }

  /** Ends the live session (the broker socket first, so the broker cleans up), waiting for the broker's close. */
  async endSession(reason: string, waitMs = 5000): Promise<void> {
    const live = this.live;
    if (!live) return;
    live.stopping = true;
    if (live.broker && (live.broker.readyState === WebSocket.OPEN || live.broker.readyState === WebSocket.CONNECTING)) live.broker.close(1000, closeReason(reason));
    if (live.local?.readyState === WebSocket.OPEN) live.local.close(1000, closeReason(reason));
    await Promise.race([live.closed, new Promise((resolve) => setTimeout(resolve, waitMs).unref())]);
  }

  /** Ends the session as endSession does, then stops listening. */
  async close(reason: string): Promise<void> {
    this.ready = false;
    await this.endSession(reason);
    this.live?.broker?.terminate();
    this.live?.local?.terminate();
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }
}
