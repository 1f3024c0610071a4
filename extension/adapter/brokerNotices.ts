/**
 * What the broker says about a breakpoint on its own initiative, as Debug Console lines: a broker logpoint's
 * message, hits skipped inside its rate limits, a breakpoint removed at its capture limit or suspended for
 * costing the target more than the pause budget, or disabled because its condition depends on a redacted value
 * (then it shows unverified with the reason).
 */
import type { DebugProtocol } from '@vscode/debugprotocol';
import type { BreakpointTable } from './breakpoints';
import type { DisabledEvent, LogpointEvent, SuspendedEvent, ThrottledEvent } from './runtime';

/** A throttle notice repeats (with the count of skipped hits) at most this often per breakpoint and reason. */
const throttleNoticeIntervalMs = 30_000;

export interface Notice {
  readonly text: string;
  readonly category: 'console' | 'important';
  readonly at?: Partial<DebugProtocol.OutputEvent['body']>;
  /** To do once the line is out (the breakpoint shown unverified after the line that says why). */
  readonly then?: () => void;
}

export class BrokerNotices {
  private readonly lastThrottleNotice = new Map<string, number>();

  constructor(private readonly breakpoints: BreakpointTable) {}

  /** A broker logpoint's message at the logpoint's line; undefined when its hit count is not met. */
  logpoint(p: LogpointEvent): Notice | undefined {
    const record = this.breakpoints.get(p.breakpointId);
    if (record?.hitCount && !this.breakpoints.countHit(record)) return undefined;
    return { text: `${p.message}${record ? '' : ` (${p.frame ?? p.breakpointId})`}\n`, category: 'console', at: record ? this.breakpoints.at(record) : {} };
  }

  /** The broker skips hits inside its rate limits, or has removed a breakpoint at its capture limit. */
  throttled(p: ThrottledEvent): Notice | undefined {
    const record = this.breakpoints.get(p.breakpointId);
    const kind = record?.logMessage !== undefined ? 'logpoint' : 'snapshot breakpoint';
    const where = this.breakpoints.where(record, p.breakpointId);
    if (p.removed) {
      const then = record ? () => this.breakpoints.removedByBroker(record, p.breakpointId, `Removed by Loupe: ${p.reason}`) : undefined;
      return { text: `Loupe: the ${kind} at ${where} ${p.reason}.\n`, category: 'important', ...(then ? { then } : {}) };
    }
    // The broker repeats the notice every second while hits are skipped: the user hears of it now and then.
    const key = `${p.breakpointId}\n${p.reason}`;
    const last = this.lastThrottleNotice.get(key);
    if (last !== undefined && Date.now() - last < throttleNoticeIntervalMs) return undefined;
    this.lastThrottleNotice.set(key, Date.now());
    const skipped = p.skipped ? `; ${p.skipped} hit${p.skipped === 1 ? '' : 's'} skipped so far` : '';
    const next = p.until ? `; next capture from ${new Date(p.until).toLocaleTimeString()}` : '';
    return { text: `Loupe: the ${kind} at ${where} is throttled by the broker: ${p.reason}${skipped}${next}. Skipped hits resume the target at once.\n`, category: 'console' };
  }

  /** A conditional breakpoint or logpoint whose hits cost the target more than the pause budget: removed by the broker. */
  suspended(p: SuspendedEvent): Notice {
    const record = this.breakpoints.get(p.breakpointId);
    const kind = record?.logMessage !== undefined ? 'logpoint' : 'breakpoint';
    const why = p.reason.replace(/^suspended:\s*/, '');
    const text = `Loupe: the ${kind} at ${this.breakpoints.where(record, p.breakpointId)} was suspended by the broker: ${why}. It no longer fires; make its condition rarer or remove it.\n`;
    const then = record ? () => this.breakpoints.removedByBroker(record, p.breakpointId, `Suspended by Loupe: ${why}`) : undefined;
    return { text, category: 'important', ...(then ? { then } : {}) };
  }

  /** A breakpoint whose condition depends on a redacted field: removed by the broker, since a pause on it would tell the secret. */
  disabled(p: DisabledEvent): Notice {
    const record = this.breakpoints.get(p.breakpointId);
    const kind = record?.logMessage !== undefined ? 'logpoint' : 'breakpoint';
    const why = `its condition depends on the redacted field "${p.field}", and a pause must never depend on a redacted value`;
    const text = `Loupe: the ${kind} at ${this.breakpoints.where(record, p.breakpointId)} was disabled by the broker: ${why}. It no longer fires; write a condition on values that are not redacted.\n`;
    const then = record ? () => this.breakpoints.removedByBroker(record, p.breakpointId, `Disabled by Loupe: ${why}`) : undefined;
    return { text, category: 'important', ...(then ? { then } : {}) };
  }
}
