import { createHmac } from 'node:crypto';
import { createWriteStream, mkdirSync, type WriteStream } from 'node:fs';
import { appendFile, mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { WebhookConfig } from '../config/alertConfig';
import type { Alert } from './alertEngine';
import { backoffDelay } from '../retry';

/** `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`: the receiver recomputes it with the shared secret. */
export function signWebhook(secret: string, timestamp: number, body: string): string {
  return `t=${timestamp},v1=${createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex')}`;
}

/**
 * Slack's escaping of text: alert messages quote what users typed (an expression, a file path), and in Slack
 * `<!channel>` pages a channel and `<https://…|text>` disguises a link.
 */
const slackText = (value: unknown) => String(value).replace(/[&<>]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;' })[c]!);

function slackPayload(alert: Alert): Record<string, unknown> {
  const [rule, target, message] = [slackText(alert.rule), slackText(alert.target), slackText(alert.message)];
  return {
    text: `:rotating_light: Loupe alert *${rule}* on *${target}*: ${message}`,
    blocks: [
      { type: 'section', text: { type: 'mrkdwn', text: `:rotating_light: *${rule}* on *${target}*\n${message}` } },
      {
        type: 'context',
        elements: [{ type: 'mrkdwn', text: `user ${slackText(alert.user ?? '-')} · session ${slackText(alert.session ?? '-')} · action ${slackText(alert.action)} · ${slackText(alert.at)}` }],
      },
    ],
  };
}

export interface DeliveryResult {
  readonly url: string;
  readonly delivered: boolean;
  readonly attempts: number;
  readonly lastError?: string;
}

/** Deliveries to one webhook under way at once: a burst of alerts opens at most this many connections to it. */
export const webhookConcurrency = 4;
/**
 * Alerts waiting for one webhook beyond those under way: past it an alert goes straight to the dead-letter file, so a
 * burst (a client can fire an alert per evaluation) or a receiver that never answers grows neither memory nor sockets.
 */
export const webhookQueueLimit = 1000;

interface HookQueue {
  inFlight: number;
  /** Alerts written to the dead-letter file unsent because the queue was full (logged at the first and every 1000th). */
  overflowed: number;
  readonly waiting: { readonly alert: Alert; readonly done: (result: DeliveryResult) => void }[];
}

/**
 * Delivers alerts to webhooks: JSON (or a Slack-compatible payload), signed with HMAC, retried with
 * exponential backoff; after the last attempt the alert goes to the dead-letter file so nothing is lost.
 */
export class WebhookSink {
  private readonly queues = new Map<WebhookConfig, HookQueue>();
  /** Dead letters are appended one at a time, in order (a burst of them is not a burst of open files). */
  private letters: Promise<void> = Promise.resolve();
  private closed = false;
  /** Ends the waits for a retry when the broker stops. */
  private readonly closing = new AbortController();
  /** The requests under way, cut when the broker stops once they have had shutdownGraceMs. */
  private readonly requests = new Set<AbortController>();
  private readonly underWay = new Set<Promise<unknown>>();

  constructor(
    private readonly hooks: readonly WebhookConfig[],
    private readonly deadLetterFile: string,
    private readonly log: (line: string) => void,
    private readonly retryBaseMs = 250,
    private readonly shutdownGraceMs = 2000,
  ) {}

  deliver(alert: Alert): Promise<DeliveryResult[]> {
    return Promise.all(this.hooks.map((hook) => this.enqueue(hook, alert)));
  }

  /**
   * Shutdown: the alerts still waiting for a webhook are written to the dead-letter file rather than lost with the
   * process. Deliveries under way have shutdownGraceMs to finish, are not retried, and are then cut; an alert not
   * delivered goes to the dead-letter file too. Nothing of the sink outlives this (no retry timer, no socket).
   */
  async close(): Promise<void> {
    this.closed = true;
    this.closing.abort();
    const why = 'not sent: the broker shut down while the alert waited for this webhook';
    const letters: Promise<DeliveryResult>[] = [];
    for (const [hook, queue] of this.queues) for (const { alert, done } of queue.waiting.splice(0)) letters.push(this.deadLetter(hook, alert, 0, why).then((result) => (done(result), result)));
    if (letters.length > 0) this.log(`${letters.length} alert(s) ${why}; written to ${this.deadLetterFile}`);
    const underWay = [...this.underWay];
    if (underWay.length > 0) {
      let grace: NodeJS.Timeout | undefined;
      await Promise.race([Promise.allSettled(underWay), new Promise((resolve) => (grace = setTimeout(resolve, this.shutdownGraceMs)))]);
      clearTimeout(grace);
      for (const request of this.requests) request.abort(new Error('the broker shut down during the delivery'));
      await Promise.allSettled(underWay);
    }
    await Promise.all(letters);
  }

  private enqueue(hook: WebhookConfig, alert: Alert): Promise<DeliveryResult> {
    if (this.closed) return this.deadLetter(hook, alert, 0, 'not sent: the broker is shutting down');
    let queue = this.queues.get(hook);
    if (!queue) this.queues.set(hook, (queue = { inFlight: 0, overflowed: 0, waiting: [] }));
    if (queue.waiting.length >= webhookQueueLimit) {
      const why = `not sent: ${webhookQueueLimit} alerts already wait for this webhook (it answers slower than alerts fire)`;
      if (++queue.overflowed === 1 || queue.overflowed % 1000 === 0)
        this.log(`alert ${alert.id} (${alert.rule}) ${why}; written to ${this.deadLetterFile} (${queue.overflowed} so far for ${hook.url})`);
      return this.deadLetter(hook, alert, 0, why);
    }
    return new Promise<DeliveryResult>((done) => {
      queue.waiting.push({ alert, done });
      this.pump(hook, queue);
    });
  }

  private pump(hook: WebhookConfig, queue: HookQueue): void {
    while (queue.inFlight < webhookConcurrency && queue.waiting.length > 0) {
      const next = queue.waiting.shift()!;
      queue.inFlight++;
      const delivery = this.deliverTo(hook, next.alert)
        .then(next.done, (err: Error) => next.done({ url: hook.url, delivered: false, attempts: 0, lastError: err.message }))
        .finally(() => {
          this.underWay.delete(delivery);
          queue.inFlight--;
          this.pump(hook, queue);
        });
      this.underWay.add(delivery);
    }
  }

  private async deliverTo(hook: WebhookConfig, alert: Alert): Promise<DeliveryResult> {
    const body = JSON.stringify(hook.format === 'slack' ? slackPayload(alert) : alert);
    let lastError = '';
    for (let attempt = 1; attempt <= hook.maxAttempts; attempt++) {
      const timestamp = Math.floor(Date.now() / 1000);
      const request = new AbortController();
      const timer = setTimeout(() => request.abort(new Error('no answer within 5 s')), 5000);
      this.requests.add(request);
      try {
        const res = await fetch(hook.url, {
          method: 'POST',
          headers: {
            'content-type': 'application/json',
            'user-agent': 'loupe-broker',
            'x-loupe-event': `alert.${alert.rule}`,
            'x-loupe-delivery': alert.id,
            ...(hook.secret ? { 'x-loupe-signature': signWebhook(hook.secret, timestamp, body) } : {}),
          },
          body,
          // A redirect would carry the alert and its signature to wherever the receiver points (another host).
          redirect: 'manual',
          signal: request.signal,
        });
        // The answer's body is never read: a receiver that answers with gigabytes must not fill the broker's memory.
        await res.body?.cancel().catch(() => undefined);
        if (res.ok) return { url: hook.url, delivered: true, attempts: attempt };
        lastError =
          res.status >= 300 && res.status < 400
            ? `HTTP ${res.status}: redirects are not followed (the alert goes only to the configured URL${res.headers.get('location') ? `, not to ${res.headers.get('location')!.slice(0, 200)}` : ''})`
            : `HTTP ${res.status}`;
      } catch (err) {
        lastError = request.signal.aborted ? (request.signal.reason as Error).message : (err as Error).message;
      } finally {
        clearTimeout(timer);
        this.requests.delete(request);
      }
      if (attempt === hook.maxAttempts) break;
      // A shutdown ends the wait for a retry at once, and there is no retry.
      if (!this.closed) await sleep(backoffDelay(attempt - 1, { baseMs: this.retryBaseMs, maxMs: 30_000 }), undefined, { signal: this.closing.signal }).catch(() => undefined);
      if (this.closed) {
        lastError += '; not retried: the broker shut down';
        this.log(`alert ${alert.id} (${alert.rule}) not delivered to ${hook.url} in ${attempt} attempt(s) before shutdown (${lastError}); written to ${this.deadLetterFile}`);
        return this.deadLetter(hook, alert, attempt, lastError);
      }
    }
    this.log(`alert ${alert.id} (${alert.rule}) not delivered to ${hook.url} after ${hook.maxAttempts} attempts (${lastError}); written to ${this.deadLetterFile}`);
    return this.deadLetter(hook, alert, hook.maxAttempts, lastError);
  }

  private deadLetter(hook: WebhookConfig, alert: Alert, attempts: number, lastError: string): Promise<DeliveryResult> {
    const line = JSON.stringify({ url: hook.url, attempts, lastError, failedAt: new Date().toISOString(), alert }) + '\n';
    // Through the thread pool: a disk that stopped answering holds this alert's letter, never the event loop.
    const written = this.letters.then(async () => {
      await mkdir(dirname(this.deadLetterFile), { recursive: true, mode: 0o700 });
      // Readable by the broker's user alone, as its write-ahead log is: alerts name users and quote what they typed.
      await appendFile(this.deadLetterFile, line, { mode: 0o600 });
    });
    this.letters = written.catch((err: Error) => this.log(`alert ${alert.id} (${alert.rule}): cannot write the dead-letter file ${this.deadLetterFile}: ${err.message}`));
    return this.letters.then(() => ({ url: hook.url, delivered: false, attempts, lastError }));
  }
}

/** Writes lines to stdout or appends them to a file. */
export class LineWriter {
  private readonly stream: WriteStream | NodeJS.WriteStream;
  constructor(output: string) {
    if (output === 'stdout') this.stream = process.stdout;
    else {
      mkdirSync(dirname(output), { recursive: true, mode: 0o700 });
      // A copy of the audit trail: readable by the broker's user alone (a log shipper runs as that user or as root).
      this.stream = createWriteStream(output, { flags: 'a', mode: 0o600 });
    }
  }
  write(value: unknown): void {
    this.stream.write(JSON.stringify(value) + '\n');
  }
  close(): Promise<void> {
    return this.stream === process.stdout ? Promise.resolve() : new Promise((resolve) => (this.stream as WriteStream).end(resolve));
  }
}
