import type { Socket } from 'node:net';
import WebSocket from 'ws';
import { armQuickAck } from '../../broker/session/targetLink';
import { nowMs } from './stats';

interface Reply {
  id: number;
  result?: any;
  error?: { code: number; message: string };
}

/**
 * The one CDP client every round-trip variant uses, so that the client's own cost is identical across
 * them: a plain `ws` client (no compression) that routes replies by id and drops events unread.
 * With `quickAck`, TCP_QUICKACK is set on its socket and re-armed after every read (armQuickAck).
 */
export class RttClient {
  private nextId = 1;
  private readonly waiting = new Map<number, (reply: Reply) => void>();
  events = 0;
  quickAck = false;
  /** Optional: sees every event's text (replies never reach it). Unset in section 1, so its cost is unchanged. */
  onEvent: ((text: string) => void) | undefined;

  private constructor(readonly socket: WebSocket) {
    socket.on('message', (data) => {
      const text = data.toString();
      // Replies start with {"id":; events with {"method":. Parse only replies, as cheaply as possible.
      const match = /^\{"id":(\d+)/.exec(text);
      if (!match) {
        this.events++;
        this.onEvent?.(text);
        return;
      }
      const resolve = this.waiting.get(Number(match[1]));
      if (!resolve) return;
      this.waiting.delete(Number(match[1]));
      resolve(JSON.parse(text) as Reply);
    });
  }

  static connect(url: string, options: { headers?: Record<string, string>; quickAck?: boolean } = {}): Promise<RttClient> {
    return new Promise((resolve, reject) => {
      const socket = new WebSocket(url, { headers: options.headers ?? {}, perMessageDeflate: false, maxPayload: 512 << 20 });
      socket.once('open', () => {
        const client = new RttClient(socket);
        if (options.quickAck) {
          client.quickAck = armQuickAck((socket as unknown as { _socket: Socket })._socket);
          if (!client.quickAck) reject(new Error('TCP_QUICKACK is not available here (sockopt did not load)'));
        }
        resolve(client);
      });
      socket.once('unexpected-response', (_req, res) => {
        let body = '';
        res.on('data', (c) => (body += c));
        res.on('end', () => reject(new Error(`connect to ${url} refused: ${res.statusCode} ${body}`)));
      });
      socket.once('error', reject);
    });
  }

  /** Sends one command; resolves with the reply (throws on a CDP error or after timeoutMs). */
  async call(method: string, params: Record<string, unknown> = {}, timeoutMs = 15000): Promise<any> {
    const reply = await this.send(method, params, timeoutMs);
    if (reply.error) throw new Error(`${method}: ${reply.error.message}`);
    return reply.result;
  }

  send(method: string, params: Record<string, unknown>, timeoutMs = 15000): Promise<Reply> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(id);
        reject(new Error(`no reply to ${method} (id ${id}) within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiting.set(id, (reply) => (clearTimeout(timer), resolve(reply)));
      this.socket.send(JSON.stringify({ id, method, params }));
    });
  }

  /** One timed round trip in milliseconds; throws if the reply is an error. */
  async timed(method: string, params: Record<string, unknown>): Promise<number> {
    const start = nowMs();
    const reply = await this.send(method, params);
    const ms = nowMs() - start;
    if (reply.error) throw new Error(`${method}: ${reply.error.message}`);
    return ms;
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      if (this.socket.readyState === WebSocket.CLOSED) return resolve();
      this.socket.once('close', () => resolve());
      this.socket.close();
      setTimeout(() => (this.socket.terminate(), resolve()), 2000).unref();
    });
  }
}
