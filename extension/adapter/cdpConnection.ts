/**
 * A CDP client on one WebSocket to the broker's attach URL. Commands resolve with the result or reject with a
 * `CdpError` carrying the broker's refusal message as is ("Runtime.callFunctionOn refused by Loupe: …").
 */
import WebSocket from 'ws';

export class CdpError extends Error {
  constructor(
    readonly method: string,
    readonly code: number,
    message: string,
  ) {
    super(message);
  }
}

export interface CloseInfo {
  readonly code: number;
  readonly reason: string;
}

type EventHandler = (params: any) => void;

export class CdpConnection {
  private nextId = 1;
  private readonly pending = new Map<number, { method: string; resolve: (r: any) => void; reject: (e: Error) => void }>();
  private readonly handlers = new Map<string, EventHandler[]>();
  private closeInfo: CloseInfo | undefined;
  readonly closed: Promise<CloseInfo>;

  private constructor(private readonly socket: WebSocket) {
    socket.on('message', (data) => this.onMessage(data.toString()));
    this.closed = new Promise((resolve) =>
      socket.on('close', (code, reason) => {
        this.closeInfo = { code, reason: reason.toString() };
        for (const [, p] of this.pending) p.reject(new CdpError(p.method, -1, `${p.method}: the session has ended (${this.closeInfo.reason || `close ${code}`})`));
        this.pending.clear();
        resolve(this.closeInfo);
      }),
    );
    socket.on('error', () => undefined);
  }

  /** Opens the WebSocket with `Authorization: Bearer <grant token>`; rejects with the broker's HTTP answer when refused. */
  static connect(url: string, grantToken: string): Promise<CdpConnection> {
    return new Promise((resolve, reject) => {
      const socket = new WebSocket(url, { headers: { authorization: `Bearer ${grantToken}` }, perMessageDeflate: false });
      socket.once('open', () => resolve(new CdpConnection(socket)));
      socket.once('unexpected-response', (_req, res) => {
        let body = '';
        res.on('data', (c) => (body += c));
        res.on('end', () => {
          let message = body;
          try {
            message = JSON.parse(body).error?.message ?? body;
          } catch {
            /* not JSON */
          }
          reject(new Error(`the broker refused the attach (${res.statusCode}): ${message}`));
        });
      });
      socket.once('error', (err) => reject(new Error(`cannot reach the broker at ${url}: ${err.message}`)));
    });
  }

  get isOpen(): boolean {
    return this.socket.readyState === WebSocket.OPEN;
  }

  get closeState(): CloseInfo | undefined {
    return this.closeInfo;
  }

  send<T = any>(method: string, params: Record<string, unknown> = {}): Promise<T> {
    if (!this.isOpen) return Promise.reject(new CdpError(method, -1, `${method}: the session has ended${this.closeInfo ? ` (${this.closeInfo.reason || `close ${this.closeInfo.code}`})` : ''}`));
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { method, resolve, reject });
      this.socket.send(JSON.stringify({ id, method, params }));
    });
  }

  on(method: string, handler: EventHandler): void {
    const list = this.handlers.get(method) ?? [];
    list.push(handler);
    this.handlers.set(method, list);
  }

  close(code = 1000, reason = 'debugger disconnected'): void {
    if (this.socket.readyState === WebSocket.OPEN || this.socket.readyState === WebSocket.CONNECTING) this.socket.close(code, reason);
  }

  private onMessage(text: string): void {
    let message: any;
    try {
      message = JSON.parse(text);
    } catch {
      return;
    }
    if (typeof message.id === 'number') {
      const p = this.pending.get(message.id);
      if (!p) return;
      this.pending.delete(message.id);
      if (message.error) p.reject(new CdpError(p.method, message.error.code, message.error.message));
      else p.resolve(message.result ?? {});
    } else if (typeof message.method === 'string') {
      for (const handler of this.handlers.get(message.method) ?? []) {
        try {
          handler(message.params ?? {});
        } catch {
          /* a handler's failure must not stop the others */
        }
      }
    }
  }
}
