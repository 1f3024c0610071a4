import WebSocket from 'ws';

/**
 * How long a reply or an awaited event may take before the wait fails. It detects one that never comes, not a slow
 * one (tests that assert latency time it themselves): on CI's 2 cores, with two test files running, a setup call once
 * took over 10 s to be answered while a code-server test shut down beside it.
 */
export const replyTimeoutMs = 30_000;

export interface CdpMessage {
  id?: number;
  method?: string;
  params?: any;
  result?: any;
  error?: { code: number; message: string };
}

/** A plain CDP client on a real WebSocket, for driving the broker (or a target directly) in tests. */
export class CdpClient {
  private nextId = 1;
  private readonly waiting = new Map<number, (m: CdpMessage) => void>();
  /** Calls still waiting for a reply, failed at once when the socket closes (no reply can come then). */
  private readonly orphaned = new Map<number, (err: Error) => void>();
  readonly events: CdpMessage[] = [];
  /** Events already handed to a waiter; each event satisfies one waiter at most. */
  private readonly consumed = new WeakSet<CdpMessage>();
  readonly unrouted: CdpMessage[] = [];
  private readonly eventWaiters: { method: string; predicate: (m: CdpMessage) => boolean; resolve: (m: CdpMessage) => void }[] = [];
  readonly closed: Promise<{ code: number; reason: string }>;

  private constructor(readonly socket: WebSocket) {
    socket.on('message', (data) => {
      const message = JSON.parse(data.toString()) as CdpMessage;
      if (typeof message.id === 'number' && this.waiting.has(message.id)) {
        const resolve = this.waiting.get(message.id)!;
        this.waiting.delete(message.id);
        this.orphaned.delete(message.id);
        resolve(message);
      } else if (message.method) {
        this.events.push(message);
        for (const w of [...this.eventWaiters]) {
          if (!this.consumed.has(message) && w.method === message.method && w.predicate(message)) {
            this.eventWaiters.splice(this.eventWaiters.indexOf(w), 1);
            this.consumed.add(message);
            w.resolve(message);
          }
        }
      } else this.unrouted.push(message);
    });
    this.closed = new Promise((resolve) =>
      socket.on('close', (code, reason) => {
        for (const [id, fail] of this.orphaned) fail(new Error(`the socket closed (${code} ${reason.toString()}) before a reply to id ${id}`));
        resolve({ code, reason: reason.toString() });
      }),
    );
  }

  static connect(url: string, headers: Record<string, string> = {}): Promise<CdpClient> {
    return new Promise((resolve, reject) => {
      const socket = new WebSocket(url, { headers, perMessageDeflate: false });
      socket.once('open', () => resolve(new CdpClient(socket)));
      socket.once('unexpected-response', (_req, res) => {
        let body = '';
        res.on('data', (c) => (body += c));
        res.on('end', () => reject(Object.assign(new Error(`attach refused: ${res.statusCode} ${body}`), { status: res.statusCode, body })));
      });
      socket.once('error', reject);
    });
  }

  /** Sends a command and resolves with the whole reply (result or error). */
  send(method: string, params: Record<string, unknown> = {}, id = this.nextId++): Promise<CdpMessage> {
    return this.sendRaw(JSON.stringify({ id, method, params }), id);
  }

  sendRaw(text: string | Buffer, id: number, timeoutMs = replyTimeoutMs): Promise<CdpMessage> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(id);
        this.orphaned.delete(id);
        // What did arrive meanwhile tells a target that never answered from a broker that held the request.
        const last = this.events.at(-1)?.method ?? 'none';
        const state = ['connecting', 'open', 'closing', 'closed'][this.socket.readyState];
        reject(
          new Error(`no reply to id ${id} within ${timeoutMs} ms: ${String(text).slice(0, 100)}; ${this.events.length} events received (last: ${last}), socket ${state}${this.loupeEventsSeen()}`),
        );
      }, timeoutMs);
      this.waiting.set(id, (m) => (clearTimeout(timer), resolve(m)));
      this.orphaned.set(id, (err) => {
        clearTimeout(timer);
        this.waiting.delete(id);
        this.orphaned.delete(id);
        reject(err);
      });
      if (this.socket.readyState === WebSocket.CLOSED) return this.orphaned.get(id)!(new Error(`the socket is closed: no reply can come to id ${id}`));
      this.socket.send(text);
    });
  }

  /** Sends and expects a result; throws with the CDP error otherwise. */
  async call(method: string, params: Record<string, unknown> = {}): Promise<any> {
    const reply = await this.send(method, params);
    if (reply.error) throw new Error(`${method}: ${reply.error.message}`);
    return reply.result;
  }

  /** The first matching event not yet taken by another wait, including ones that arrived before this call. */
  waitEvent(method: string, predicate: (m: CdpMessage) => boolean = () => true, timeoutMs = replyTimeoutMs): Promise<CdpMessage> {
    const earlier = this.events.find((e) => !this.consumed.has(e) && e.method === method && predicate(e));
    if (earlier) {
      this.consumed.add(earlier);
      return Promise.resolve(earlier);
    }
    return new Promise((resolve, reject) => {
      // Unref'd: a wait left behind (an event that never came, its test over) does not hold the file's process.
      const timer = setTimeout(() => reject(new Error(`no ${method} within ${timeoutMs} ms${this.loupeEventsSeen()}`)), timeoutMs).unref();
      this.eventWaiters.push({ method, predicate, resolve: (m) => (clearTimeout(timer), resolve(m)) });
    });
  }

  /** The broker's own events seen so far, counted, with the last reason of each: what a timed-out wait saw instead. */
  private loupeEventsSeen(): string {
    const seen = new Map<string, { count: number; reason?: string }>();
    for (const e of this.events) {
      if (!e.method?.startsWith('Loupe.')) continue;
      const entry = seen.get(e.method) ?? { count: 0 };
      entry.count++;
      if (typeof e.params?.reason === 'string') entry.reason = e.params.reason;
      seen.set(e.method, entry);
    }
    if (seen.size === 0) return '; no Loupe.* events seen';
    return `; Loupe.* events seen: ${[...seen].map(([m, { count, reason }]) => `${m} ×${count}${reason ? ` (last: ${reason.slice(0, 200)})` : ''}`).join(', ')}`;
  }

  close(): Promise<{ code: number; reason: string }> {
    if (this.socket.readyState === WebSocket.OPEN) this.socket.close();
    return this.closed;
  }
}
