/**
 * The WAL's commits, written by a thread of their own: the event loop waits for a commit (on a shared flag, not a
 * trip through libuv's thread pool and back) for at most `waitMs`, then goes on without it and is told when it lands.
 * A healthy disk costs the loop one write and no extra turn, so the records a turn collects share one commit; a
 * stalled disk holds the loop for `waitMs` at most, so watchdogs, heartbeats and critical commands still run.
 */
import { Worker } from 'node:worker_threads';

/**
 * Control words (Int32): the requests made, the requests done, and the request the loop stopped waiting for (0 for
 * none). The thread reports a request only if it is that one: a flag alone let the thread, still finishing a commit
 * the loop had waited for, take the next commit's flag and report the wrong request, and the next one then never.
 */
const REQUESTED = 0;
const DONE = 1;
const DETACHED = 2;
const FD = 3;
const LENGTH = 4;
const SYNC = 5;
/** The outcome: bytes written, or -1 with the error's text in the message area. */
const RESULT = 6;
const ERROR_LENGTH = 7;
/** The request the thread took last, and where it is in it (0 waiting, 1 writing, 2 syncing): what a stall names. */
const TAKEN = 8;
const PHASE = 9;
const controlWords = 10;
/** What DETACHED holds for a request: never 0, and distinct for consecutive requests across the counters' Int32 wrap. */
const detachedTag = (request: number) => (request & 0x3fffffff) + 1;
/** Float64 slot (after the Int32 words): the write's file position. */
const positionByte = controlWords * 4;
const errorBytes = 1024;

/** The thread: waits for a request, writes it at its position (then fdatasync unless the fd is O_DSYNC), reports. */
const threadSource = `
const { workerData, parentPort } = require('node:worker_threads');
const { writeSync, fdatasyncSync } = require('node:fs');
const ctl = new Int32Array(workerData.control, 0, ${controlWords});
const position = new Float64Array(workerData.control, ${positionByte}, 1);
const errorText = Buffer.from(workerData.control, ${positionByte + 8}, ${errorBytes});
const data = Buffer.from(workerData.data);
let seen = 0;
for (;;) {
  Atomics.wait(ctl, ${REQUESTED}, seen);
  seen = Atomics.load(ctl, ${REQUESTED});
  Atomics.store(ctl, ${TAKEN}, seen);
  Atomics.store(ctl, ${PHASE}, 1);
  const length = ctl[${LENGTH}];
  try {
    let written = writeSync(ctl[${FD}], data, 0, length, position[0]);
    Atomics.store(ctl, ${PHASE}, 2);
    if (written === length && ctl[${SYNC}] === 1) fdatasyncSync(ctl[${FD}]);
    ctl[${RESULT}] = written;
  } catch (err) {
    ctl[${RESULT}] = -1;
    ctl[${ERROR_LENGTH}] = errorText.write((err && err.code || '') + '\\n' + String(err && err.message || err), 0);
  }
  Atomics.store(ctl, ${PHASE}, 0);
  Atomics.add(ctl, ${DONE}, 1);
  Atomics.notify(ctl, ${DONE});
  const tag = (seen & 0x3fffffff) + 1;
  if (Atomics.compareExchange(ctl, ${DETACHED}, tag, 0) === tag) parentPort.postMessage(seen);
}
`;

export interface CommitOptions {
  /** The largest commit the shared buffer holds; a larger one is written through libuv's thread pool instead. */
  readonly capacity: number;
  /** How long the event loop waits for a commit before going on without it. */
  readonly waitMs: number;
}

export class WalWriter {
  private readonly control = new SharedArrayBuffer(positionByte + 8 + errorBytes);
  private readonly ctl = new Int32Array(this.control, 0, controlWords);
  private readonly position = new Float64Array(this.control, positionByte, 1);
  private readonly data: Buffer;
  private readonly worker: Worker;
  /** A commit the loop stopped waiting for: settled by the thread's message. */
  private detached: { request: number; resolve: (written: number) => void; reject: (err: Error) => void } | undefined;
  private failed: Error | undefined;

  constructor(private readonly options: CommitOptions) {
    const data = new SharedArrayBuffer(options.capacity);
    this.data = Buffer.from(data);
    this.worker = new Worker(threadSource, { eval: true, workerData: { control: this.control, data } });
    this.worker.on('message', (request: number) => this.landed(request));
    this.worker.on('error', (err) => this.stop(err));
    this.worker.on('exit', () => this.stop(new Error('the WAL writer thread stopped')));
    // After the listeners (a 'message' listener refs the worker again): the thread never keeps the process alive by
    // itself, only while a commit the loop went on without is in flight.
    this.worker.unref();
  }

  /** Whether this commit can go through the thread: it fits the shared buffer, and the thread runs (if it ever stops, commits go through libuv's thread pool instead). */
  fits(bytes: number): boolean {
    return !this.failed && bytes <= this.options.capacity;
  }

  /**
   * Writes `text` (of `bytes` UTF-8 bytes, at most the capacity) at `position` of `fd`, then syncs it unless
   * `dsync`; resolves with the bytes written. Synchronous when the disk answers within waitMs (the usual case).
   */
  write(fd: number, text: string, bytes: number, position: number, dsync: boolean): number | Promise<number> {
    if (this.failed) throw this.failed;
    this.data.write(text, 0, bytes, 'utf8');
    const { ctl } = this;
    ctl[FD] = fd;
    ctl[LENGTH] = bytes;
    ctl[SYNC] = dsync ? 0 : 1;
    this.position[0] = position;
    const done = Atomics.load(ctl, DONE);
    // As the thread sees it: the counter wraps as an Int32.
    const request = (Atomics.add(ctl, REQUESTED, 1) + 1) | 0;
    Atomics.notify(ctl, REQUESTED);
    if (Atomics.wait(ctl, DONE, done, this.options.waitMs) !== 'timed-out' || Atomics.load(ctl, DONE) !== done) return this.outcome();
    // The disk is slow: the loop goes on, and the thread says when this commit lands.
    Atomics.store(ctl, DETACHED, detachedTag(request));
    this.worker.ref();
    return new Promise<number>((resolve, reject) => {
      this.detached = { request, resolve, reject };
      // Landed between the wait's end and the flag: the thread may not have seen the flag.
      if (Atomics.load(ctl, DONE) !== done && Atomics.compareExchange(ctl, DETACHED, detachedTag(request), 0) === detachedTag(request)) this.landed(request);
    });
  }

  /**
   * Where the commit the loop went on without is, for a stall's message: in the write or the sync (the disk), not
   * taken by the thread (the thread itself is held), or done and its message not yet handled (the loop is held).
   */
  whereDetached(): string | undefined {
    const detached = this.detached;
    if (!detached) return undefined;
    const { ctl } = this;
    if (Atomics.load(ctl, TAKEN) !== detached.request) return 'the writer thread has not taken it';
    const phase = Atomics.load(ctl, PHASE);
    if (phase === 0) return 'the writer thread has finished it, and the event loop has not been told';
    return phase === 2 ? 'the writer thread is in its sync' : 'the writer thread is in its write';
  }

  private outcome(): number {
    const written = this.ctl[RESULT]!;
    if (written >= 0) return written;
    const text = Buffer.from(this.control, positionByte + 8, this.ctl[ERROR_LENGTH]!).toString('utf8');
    const newline = text.indexOf('\n');
    throw Object.assign(new Error(text.slice(newline + 1)), newline > 0 ? { code: text.slice(0, newline) } : {});
  }

  private landed(request: number): void {
    const detached = this.detached;
    if (!detached || detached.request !== request) return;
    this.detached = undefined;
    this.worker.unref();
    try {
      detached.resolve(this.outcome());
    } catch (err) {
      detached.reject(err as Error);
    }
  }

  private stop(err: Error): void {
    this.failed ??= err;
    this.detached?.reject(err);
    this.detached = undefined;
  }

  /** Stops the thread (a commit in flight was already awaited by the WAL's close). */
  async close(): Promise<void> {
    this.failed ??= new Error('the WAL writer is closed');
    await this.worker.terminate();
  }
}
