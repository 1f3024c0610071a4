import type { EventEmitter } from 'node:events';
import type { CdpClient, CdpMessage } from './cdpClient';

// The tests' one set of waits. A test waits for the event, record or message that proves a thing happened,
// never for a fixed time; each wait fails naming what it waited for, after how long, and the last value seen.

export interface WaitOptions {
  /** How long to wait before failing (default 10 s). */
  readonly timeoutMs?: number;
  /** What is awaited, for the failure message (a function is asked at the failure, so it can tell the state then). */
  readonly what?: string | (() => string);
  /** Poll interval for waitFor (default 25 ms). */
  readonly intervalMs?: number;
}

const describe = (value: unknown): string => {
  if (value instanceof Error) return `threw ${value.message}`;
  try {
    const text = typeof value === 'string' ? JSON.stringify(value) : (JSON.stringify(value) ?? String(value));
    return text.length > 300 ? `${text.slice(0, 300)}…` : text;
  } catch {
    return String(value);
  }
};

/**
 * Polls `probe` until it gives a truthy value (a throw counts as none), and resolves with that value; fails
 * after `timeoutMs` naming `what` and the last value (or error) the probe gave.
 */
export async function waitFor<T>(probe: () => T | Promise<T>, options: WaitOptions = {}): Promise<Exclude<T, undefined | null | false | 0 | ''>> {
  const { timeoutMs = 10_000, what = `${String(probe).replace(/\s+/g, ' ').slice(0, 200)}`, intervalMs = 25 } = options;
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      last = await probe();
      if (last) return last as Exclude<T, undefined | null | false | 0 | ''>;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`waited ${timeoutMs} ms for ${typeof what === 'function' ? what() : what}; last seen: ${describe(last)}`);
    await sleep(intervalMs);
  }
}

/** Resolves with `promise`, or fails naming `what` once `timeoutMs` has passed. */
export function withTimeout<T>(promise: Promise<T>, timeoutMs: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`waited ${timeoutMs} ms for ${what}`)), timeoutMs)));
  return Promise.race([promise, expired]).finally(() => clearTimeout(timer));
}

/**
 * `promise`'s value, or `fallback` once `timeoutMs` has passed: for a bounded wait on something that must
 * not happen (or may not), where the test then asserts on which of the two it got.
 */
export function within<T, F>(promise: Promise<T>, timeoutMs: number, fallback: F): Promise<T | F> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<F>((resolve) => (timer = setTimeout(() => resolve(fallback), timeoutMs)));
  return Promise.race([promise, expired]).finally(() => clearTimeout(timer));
}

/** The next `name` event of `emitter` whose arguments pass `filter`, as the array of those arguments. */
export function waitForEvent(emitter: EventEmitter, name: string, filter: (...args: any[]) => boolean = () => true, options: WaitOptions = {}): Promise<any[]> {
  const { timeoutMs = 10_000, what = `a ${name} event` } = options;
  let last: unknown[] | undefined;
  return new Promise((resolve, reject) => {
    const listener = (...args: unknown[]) => {
      last = args;
      if (!filter(...args)) return;
      emitter.off(name, listener);
      clearTimeout(timer);
      resolve(args);
    };
    const timer = setTimeout(() => (emitter.off(name, listener), reject(new Error(`waited ${timeoutMs} ms for ${what}; last ${name}: ${last ? describe(last) : 'none'}`))), timeoutMs);
    emitter.on(name, listener);
  });
}

/** The first CDP event `method` on `client` that passes `filter` and no other wait took, earlier ones included. */
export function waitForMessage(client: CdpClient, method: string, filter: (m: CdpMessage) => boolean = () => true, options: WaitOptions = {}): Promise<CdpMessage> {
  const { timeoutMs = 10_000, what } = options;
  return client.waitEvent(method, filter, timeoutMs).catch((err: Error) => {
    const seen = client.events.filter((e) => e.method === method);
    throw new Error(`${what ? `waited ${timeoutMs} ms for ${what}: ` : ''}${err.message}; last ${method}: ${seen.length ? describe(seen[seen.length - 1]) : 'none'}`);
  });
}

/**
 * A fixed pause. Only for what no event can show: a bounded window in which something must NOT happen when
 * there is no later positive marker to wait for, pacing a load, or timestamps that must differ.
 */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
