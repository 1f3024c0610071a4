/**
 * A client whose process is frozen keeps its TCP connection open, so only its silence shows it is gone: it is
 * pinged (the client, never the target: the inspector drops a connection on a ping) and judged unresponsive when
 * nothing (no pong, no frame) came back within limits.clientUnresponsiveMs of the injected clock.
 */
import type WebSocket from 'ws';

export interface HeartbeatOptions {
  readonly client: WebSocket;
  readonly intervalMs: number;
  readonly boundMs: number;
  now(): number;
  isEnding(): boolean;
  /** Silent for `silentMs`, over the bound: the session ends. */
  onUnresponsive(silentMs: number): void;
}

export class ClientHeartbeat {
  private lastHeardAt: number;
  private readonly ping: NodeJS.Timeout;
  private check: NodeJS.Timeout | undefined;
  private confirm: NodeJS.Immediate | undefined;

  constructor(private readonly options: HeartbeatOptions) {
    const { client, intervalMs, boundMs } = options;
    this.lastHeardAt = options.now();
    this.ping = setInterval(() => {
      if (client.readyState === client.OPEN) client.ping();
    }, intervalMs);
    this.check = setTimeout(() => this.judge(false), boundMs);
  }

  /** A pong or a frame from the client. */
  heard(): void {
    this.lastHeardAt = this.options.now();
  }

  private judge(confirm: boolean): void {
    const { boundMs } = this.options;
    if (this.options.isEnding()) return;
    const silentMs = this.options.now() - this.lastHeardAt;
    if (silentMs < boundMs) {
      this.check = setTimeout(() => this.judge(false), boundMs - silentMs);
      return;
    }
    // Timers run before sockets are read: after a stall of the broker's own loop, a pong may be waiting
    // unread. One turn of the loop reads it before the client is judged.
    if (!confirm) {
      this.confirm = setImmediate(() => this.judge(true));
      return;
    }
    this.options.onUnresponsive(silentMs);
  }

  stop(): void {
    clearInterval(this.ping);
    clearTimeout(this.check);
    clearImmediate(this.confirm);
  }
}
