/**
 * The broker's alerts for the owners of a target (GET /v1/alerts), as the "Loupe Alerts" view shows them. No `vscode`
 * here: the view (extension/alertsView.ts) draws what this module fetches and words, and tests drive the same code
 * against a real broker.
 */
import { BrokerApiError, describeBrokerError, type AlertInfo, type BrokerApi } from './adapter/brokerApi';

export type { AlertInfo };

/** What one look at the broker found. */
export type AlertsPoll =
  | {
      readonly kind: 'alerts';
      /** Every alert the broker lists for the caller, newest first. */
      readonly alerts: readonly AlertInfo[];
      /** The alerts not seen before, newest first: each is reported once (notify these). */
      readonly fresh: readonly AlertInfo[];
    }
  /** The caller owns no target and is no admin: the broker refuses (403); the view says so instead of a list. */
  | { readonly kind: 'not-owner'; readonly message: string }
  /** The broker could not be asked (unreachable, token rejected, …); the last list stays. */
  | { readonly kind: 'error'; readonly message: string };

export interface AlertWatcherOptions {
  /** Alert ids already reported (kept across restarts by the caller), so an alert is notified once. */
  readonly seen?: Iterable<string>;
  /**
   * With no remembered ids, the first look only learns what is there (no notification for alerts older than the
   * watcher); later looks report what is new. Default true.
   */
  readonly baselineFirst?: boolean;
  /** How many ids to remember; the oldest are dropped first. Default 1000. */
  readonly remember?: number;
}

/** Remembers which alerts were reported, so each new one is reported once. */
export class AlertWatcher {
  private readonly seen: string[];
  private readonly seenSet: Set<string>;
  private baseline: boolean;
  private readonly remember: number;

  constructor(options: AlertWatcherOptions = {}) {
    this.seen = [...(options.seen ?? [])];
    this.seenSet = new Set(this.seen);
    this.baseline = (options.baselineFirst ?? true) && this.seen.length === 0;
    this.remember = options.remember ?? 1000;
  }

  /** The ids reported so far, oldest first (to remember across restarts). */
  get seenIds(): readonly string[] {
    return this.seen;
  }

  /** Learns a list from the broker; returns its alerts not seen before, newest first (none on a baseline look). */
  observe(alerts: readonly AlertInfo[]): AlertInfo[] {
    const unseen = sortNewestFirst(alerts).filter((a) => !this.seenSet.has(a.id));
    // Oldest first into the memory, so the oldest are the first forgotten.
    for (const a of [...unseen].reverse()) {
      this.seen.push(a.id);
      this.seenSet.add(a.id);
    }
    while (this.seen.length > this.remember) this.seenSet.delete(this.seen.shift()!);
    const fresh = this.baseline ? [] : unseen;
    this.baseline = false;
    return fresh;
  }
}

/** Asks the broker for the caller's alerts (GET /v1/alerts) and lets the watcher tell which are new. */
export async function pollAlerts(api: BrokerApi, watcher: AlertWatcher): Promise<AlertsPoll> {
  let alerts: AlertInfo[];
  try {
    alerts = sortNewestFirst(await api.alerts());
  } catch (err) {
    if (err instanceof BrokerApiError && err.status === 403) {
      return { kind: 'not-owner', message: `Alerts are shown to the owners of a target and to admins; the broker says: ${err.message}` };
    }
    return { kind: 'error', message: `Cannot list alerts: ${describeBrokerError(err)}` };
  }
  return { kind: 'alerts', alerts, fresh: watcher.observe(alerts) };
}

export function sortNewestFirst(alerts: readonly AlertInfo[]): AlertInfo[] {
  return [...alerts].sort((a, b) => Date.parse(b.at) - Date.parse(a.at));
}

/** "12:03:07" today, else "2026-11-28 12:03:07", in local time. */
export function alertTime(at: string, now = new Date()): string {
  const d = new Date(at);
  if (Number.isNaN(d.getTime())) return at;
  const pad = (n: number) => String(n).padStart(2, '0');
  const time = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  const sameDay = d.getFullYear() === now.getFullYear() && d.getMonth() === now.getMonth() && d.getDate() === now.getDate();
  return sameDay ? time : `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${time}`;
}

/** What a row of the view shows: the rule and target as its label; user, time and message after it. */
export function alertRow(alert: AlertInfo, now = new Date()): { label: string; description: string } {
  return {
    label: `${alert.rule} · ${alert.target}`,
    description: `${alert.user ?? 'no user'} · ${alertTime(alert.at, now)} · ${alert.message}`,
  };
}

const actionText: Record<string, string> = {
  'end-session': 'the session was ended',
  'require-approval': "the user's next grant on this target needs an owner's approval",
};

/** The tooltip of a row, as Markdown: the message, who, when, the action taken, and the evidence records. */
export function alertTooltip(alert: AlertInfo): string {
  // Values come from the audited session (expressions, names): inert as Markdown.
  const esc = (s: string) => s.replace(/[\\`*_[\]<>|]/g, (c) => `\\${c}`);
  const lines = [
    `**${esc(alert.rule)}** on **${esc(alert.target)}**: ${esc(alert.message)}`,
    '',
    `User: ${esc(alert.user ?? '(none)')} · ${esc(new Date(alert.at).toISOString())}${alert.session ? ` · session ${esc(alert.session)}` : ''}`,
  ];
  if (actionText[alert.action]) lines.push('', `Action: ${esc(actionText[alert.action]!)}`);
  lines.push('', `Evidence (${alert.evidence.length} record${alert.evidence.length === 1 ? '' : 's'} of the session's audit chain):`, '');
  for (const e of alert.evidence) lines.push(`- seq ${e.seq} \`${e.type}\`: ${esc(e.summary)}`);
  return lines.join('\n');
}

/** One evidence record as a child row of its alert. */
export function evidenceRow(e: AlertInfo['evidence'][number]): { label: string; description: string } {
  return { label: `seq ${e.seq} ${e.type}`, description: e.summary };
}

/** The notification for newly arrived alerts: one line per alert, or a count when many arrive together. */
export function notificationText(fresh: readonly AlertInfo[]): string | undefined {
  if (fresh.length === 0) return undefined;
  if (fresh.length === 1) {
    const a = fresh[0]!;
    return `Loupe alert on ${a.target}: ${a.rule}${a.user ? ` (${a.user})` : ''}: ${a.message}`;
  }
  const targets = [...new Set(fresh.map((a) => a.target))].join(', ');
  return `Loupe: ${fresh.length} new alerts on ${targets}; newest: ${fresh[0]!.rule}${fresh[0]!.user ? ` (${fresh[0]!.user})` : ''}: ${fresh[0]!.message}`;
}
