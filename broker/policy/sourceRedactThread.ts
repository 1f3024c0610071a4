import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import type { Redactor } from './redact';
import type { SourceAnswer, SourceJob } from './sourceRedactWorker';

/**
 * Script sources are parsed to find their secret literals, which for a large bundle takes longer than the
 * broker may hold its event loop. One worker thread does it for every session, one job at a time; a job
 * that takes longer than the bound ends the thread (the next job starts a new one) and fails, so a source is
 * never sent unredacted and never stalls the broker.
 */

export const sourceRedactTimeoutMs = 10_000;

// Bundled, the worker is dist/sourceRedactWorker.js beside this code; run from source (tests), the .ts file
// through tsx's require hook (loader hooks are per thread, so the process's `--import tsx` does not reach it).
function newWorker(): Worker {
  const bundled = join(__dirname, 'sourceRedactWorker.js');
  if (existsSync(bundled)) return new Worker(bundled);
  return new Worker(`require('tsx/cjs'); require(${JSON.stringify(join(__dirname, 'sourceRedactWorker.ts'))});`, { eval: true });
}

interface Waiting {
  readonly job: SourceJob;
  readonly resolve: (answer: { source: string; replaced: number; hits: readonly string[] }) => void;
  readonly reject: (err: Error) => void;
}

class SourceRedactThread {
  private worker: Worker | undefined;
  private readonly queue: Waiting[] = [];
  private current: { waiting: Waiting; timer: NodeJS.Timeout } | undefined;
  private nextId = 1;

  redact(source: string, redactor: Redactor, timeoutMs = sourceRedactTimeoutMs): Promise<{ source: string; replaced: number }> {
    if (!redactor.active) return Promise.resolve({ source, replaced: 0 });
    const job: SourceJob = {
      id: this.nextId++,
      source,
      names: [...redactor.policy.names],
      patterns: redactor.policy.patterns.map((p) => ({ name: p.name, source: p.regex.source, flags: p.regex.flags })),
      learned: redactor.learnedValues,
    };
    return new Promise<{ source: string; replaced: number; hits: readonly string[] }>((resolve, reject) => {
      this.queue.push({ job, resolve, reject });
      this.next(timeoutMs);
    }).then(({ source: redacted, replaced, hits }) => {
      redactor.hits.push(...hits);
      return { source: redacted, replaced };
    });
  }

  private start(): Worker {
    const worker = newWorker();
    worker.on('message', (answer: SourceAnswer) => this.answered(answer));
    worker.on('error', (err) => this.lost(worker, `the source redaction thread failed: ${err.message}`));
    worker.on('exit', () => this.lost(worker, 'the source redaction thread stopped'));
    // Held only while a job is in flight (after the listeners: adding a 'message' listener refs it again).
    worker.unref();
    return worker;
  }

  private next(timeoutMs: number): void {
    if (this.current || this.queue.length === 0) return;
    const waiting = this.queue.shift()!;
    this.worker ??= this.start();
    const worker = this.worker;
    const timer = setTimeout(() => {
      this.current = undefined;
      this.worker = undefined;
      void worker.terminate();
      waiting.reject(new Error(`the source was not redacted within ${timeoutMs} ms, so it is not shown`));
      this.next(timeoutMs);
    }, timeoutMs);
    timer.unref();
    this.current = { waiting, timer };
    worker.ref();
    worker.postMessage(waiting.job);
  }

  private answered(answer: SourceAnswer): void {
    const current = this.current;
    if (!current || current.waiting.job.id !== answer.id) return;
    clearTimeout(current.timer);
    this.current = undefined;
    this.worker?.unref();
    if ('error' in answer) current.waiting.reject(new Error(`the source could not be redacted: ${answer.error}`));
    else current.waiting.resolve(answer);
    this.next(sourceRedactTimeoutMs);
  }

  private lost(worker: Worker, why: string): void {
    if (this.worker !== worker) return;
    this.worker = undefined;
    const current = this.current;
    this.current = undefined;
    if (current) {
      clearTimeout(current.timer);
      current.waiting.reject(new Error(why));
    }
    this.next(sourceRedactTimeoutMs);
  }
}

/** The broker's one source redaction thread. */
export const sourceRedaction = new SourceRedactThread();
