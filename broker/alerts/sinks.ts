import { createHmac } from 'node:crypto';
import { createWriteStream, mkdirSync, type WriteStream } from 'node:fs';
import { appendFile, mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
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

/**
 * Delivers alerts to webhooks: JSON (or a Slack-compatible payload), signed with HMAC, retried with
 * exponential backoff; after the last attempt the alert goes to the dead-letter file so nothing is lost.
 */
export class WebhookSink {
  constructor(
    private readonly hooks: readonly WebhookConfig[],
    private readonly deadLetterFile: string,
    private readonly log: (line: string) => void,
    private readonly retryBaseMs = 250,
  ) {}

  deliver(alert: Alert): Promise<DeliveryResult[]> {
    return Promise.all(this.hooks.map((hook) => this.deliverTo(hook, alert)));
  }

  private async deliverTo(hook: WebhookConfig, alert: Alert): Promise<DeliveryResult> {
    const body = JSON.stringify(hook.format === 'slack' ? slackPayload(alert) : alert);
    let lastError = '';
    for (let attempt = 1; attempt <= hook.maxAttempts; attempt++) {
      const timestamp = Math.floor(Date.now() / 1000);
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
          signal: AbortSignal.timeout(5000),
        });
        await res.arrayBuffer().catch(() => undefined);
        if (res.ok) return { url: hook.url, delivered: true, attempts: attempt };
        lastError = `HTTP ${res.status}`;
      } catch (err) {
        lastError = (err as Error).message;
      }
      if (attempt < hook.maxAttempts) await new Promise((r) => setTimeout(r, backoffDelay(attempt - 1, { baseMs: this.retryBaseMs, maxMs: 30_000 })));
    }
    this.log(`alert ${alert.id} (${alert.rule}) not delivered to ${hook.url} after ${hook.maxAttempts} attempts (${lastError}); written to ${this.deadLetterFile}`);
    // Through the thread pool: a disk that stopped answering holds this alert's letter, never the event loop.
    await mkdir(dirname(this.deadLetterFile), { recursive: true });
    await appendFile(this.deadLetterFile, JSON.stringify({ url: hook.url, attempts: hook.maxAttempts, lastError, failedAt: new Date().toISOString(), alert }) + '\n');
    return { url: hook.url, delivered: false, attempts: hook.maxAttempts, lastError };
  }
}

/** Writes lines to stdout or appends them to a file. */
export class LineWriter {
  private readonly stream: WriteStream | NodeJS.WriteStream;
  constructor(output: string) {
    if (output === 'stdout') this.stream = process.stdout;
    else {
      mkdirSync(dirname(output), { recursive: true });
      this.stream = createWriteStream(output, { flags: 'a' });
    }
  }
  write(value: unknown): void {
    this.stream.write(JSON.stringify(value) + '\n');
  }
  close(): Promise<void> {
    return this.stream === process.stdout ? Promise.resolve() : new Promise((resolve) => (this.stream as WriteStream).end(resolve));
  }
}
