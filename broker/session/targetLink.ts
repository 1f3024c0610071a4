import { request } from 'node:http';
import type { Socket } from 'node:net';
import WebSocket from 'ws';
import { LoupeError } from '../errors';

const IPPROTO_TCP = 6;
const TCP_QUICKACK = 12;

type SetSockOpt = (socket: Socket, level: number, option: number, value: number) => void;
let setsockopt: SetSockOpt | null | undefined;

function loadSetsockopt(): SetSockOpt | null {
  if (setsockopt !== undefined) return setsockopt;
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    setsockopt = process.platform === 'linux' ? (require('sockopt') as { setsockopt: SetSockOpt }).setsockopt : null;
  } catch {
    setsockopt = null; // without the native module round trips pay the target's Nagle delay, nothing breaks
  }
  return setsockopt;
}

/**
 * Node's inspector keeps Nagle on, so its replies wait for our delayed ACK (~40 ms). Quick ACK mode is
 * cleared by the kernel after use, hence re-armed after every read.
 */
export function armQuickAck(socket: Socket): boolean {
  const set = loadSetsockopt();
  if (!set) return false;
  const arm = () => {
    try {
      set(socket, IPPROTO_TCP, TCP_QUICKACK, 1);
    } catch {
      /* socket closing */
    }
  };
  arm();
  socket.on('data', arm);
  return true;
}

function getJson(url: string, timeoutMs: number): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const req = request(url, { timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > 1 << 20) req.destroy(new Error('inspector list larger than 1 MiB'));
        else chunks.push(chunk);
      });
      res.on('end', () => {
        try {
          resolve(JSON.parse(Buffer.concat(chunks).toString('utf8')));
        } catch (err) {
          reject(err);
        }
      });
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end();
  });
}

/** Finds the inspector's WebSocket URL from the policy's address; users never supply it. */
export async function resolveInspectorUrl(inspector: string, timeoutMs = 3000): Promise<string> {
  if (/^wss?:\/\//.test(inspector)) return inspector;
  let list: unknown;
  try {
    list = await getJson(`http://${inspector}/json/list`, timeoutMs);
  } catch (err) {
    throw new LoupeError('target_unreachable', `target inspector at ${inspector} is unreachable: ${(err as Error).message}`);
  }
  const entry = Array.isArray(list) ? (list as { webSocketDebuggerUrl?: unknown }[]).find((e) => typeof e?.webSocketDebuggerUrl === 'string') : undefined;
  if (!entry) throw new LoupeError('target_unreachable', `target inspector at ${inspector} lists no debuggable process`);
  let url: URL;
  try {
    url = new URL(entry.webSocketDebuggerUrl as string);
  } catch {
    throw new LoupeError('target_unreachable', `target inspector at ${inspector} lists an invalid webSocketDebuggerUrl`);
  }
  // The inspector reports its own idea of its host; keep the address the policy named.
  return `ws://${inspector}${url.pathname}`;
}

/**
 * The WebSocket URL each inspector address last resolved to. Node names its inspector by a UUID fixed for the
 * process's life, so an attach reuses it instead of asking /json/list again; a URL that no longer connects (the
 * process restarted, or another one took the port) is dropped and the address resolved afresh.
 */
const resolvedUrls = new Map<string, string>();

/** Connects to the inspector at the policy's address, through the URL it resolved to before when that still connects. */
export async function connectInspector(inspector: string): Promise<TargetLink> {
  const known = resolvedUrls.get(inspector);
  if (known !== undefined) {
    try {
      return await connectTarget(known);
    } catch {
      resolvedUrls.delete(inspector);
    }
  }
  const url = await resolveInspectorUrl(inspector);
  const link = await connectTarget(url);
  if (url !== inspector) {
    if (resolvedUrls.size >= 1000) resolvedUrls.clear(); // bounded by the policy's targets in practice
    resolvedUrls.set(inspector, url);
  }
  return link;
}

export interface TargetLink {
  readonly socket: WebSocket;
  readonly quickAck: boolean;
  /** The inspector's WebSocket URL: its path is the target process's own id, so it names that process. */
  readonly url: string;
}

/** Opens the broker's own connection to the target inspector: no pings (Node drops the link on one), no compression. */
export function connectTarget(url: string, timeoutMs = 5000): Promise<TargetLink> {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(url, { perMessageDeflate: false, handshakeTimeout: timeoutMs, maxPayload: 512 << 20, followRedirects: false });
    const fail = (err: Error) => reject(new LoupeError('target_unreachable', `cannot connect to the target inspector: ${err.message}`));
    socket.once('error', fail);
    socket.once('open', () => {
      socket.off('error', fail);
      // Until a session takes the link (and for one it never takes), a frame ws refuses (an invalid opcode from a
      // hostile target) must not be an uncaught 'error': ws closes the socket after it, which the session then finds.
      socket.on('error', () => undefined);
      const raw = (socket as unknown as { _socket: Socket })._socket;
      raw.setNoDelay(true);
      resolve({ socket, quickAck: armQuickAck(raw), url });
    });
  });
}
