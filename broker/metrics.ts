import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { AuditEvent } from './audit/events';

const maxMethodLabels = 200;

/** Prometheus metrics, derived from the audit events so they count exactly what was recorded. */
export class BrokerMetrics {
  readonly registry = new Registry();
  private readonly grants = new Counter({ name: 'loupe_grants_total', help: 'Grant requests by outcome', labelNames: ['outcome'], registers: [this.registry] });
  private readonly cdp = new Counter({ name: 'loupe_cdp_messages_total', help: 'Client CDP messages by method and gate decision', labelNames: ['method', 'decision'], registers: [this.registry] });
  private readonly captures = new Counter({ name: 'loupe_captures_total', help: 'Snapshot captures taken', registers: [this.registry] });
  private readonly watchdog = new Counter({ name: 'loupe_watchdog_resumes_total', help: 'Targets resumed by the pause watchdog', registers: [this.registry] });
  private readonly requests = new Counter({ name: 'loupe_access_requests_total', help: 'Access request steps (two-person rule) by event', labelNames: ['event'], registers: [this.registry] });
  private readonly alerts = new Counter({ name: 'loupe_alerts_total', help: 'Alerts fired by rule', labelNames: ['rule'], registers: [this.registry] });
  private readonly sessionsEnded = new Counter({ name: 'loupe_sessions_ended_total', help: 'Sessions ended by reason', labelNames: ['reason'], registers: [this.registry] });
  readonly uploadSeconds = new Histogram({
    name: 'loupe_audit_upload_seconds',
    help: 'Time to seal and upload one audit chunk',
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  });

  constructor(sources: { liveSessions: () => number; walDepth: () => number; auditState: () => string }) {
    new Gauge({
      name: 'loupe_live_sessions',
      help: 'Debug sessions now attached',
      registers: [this.registry],
      collect() {
        this.set(sources.liveSessions());
      },
    });
    new Gauge({
      name: 'loupe_audit_wal_depth',
      help: 'Audit records waiting for the write-ahead log',
      registers: [this.registry],
      collect() {
        this.set(sources.walDepth());
      },
    });
    new Gauge({
      name: 'loupe_audit_ready',
      help: '1 when the audit trail accepts records (0 when failed closed)',
      registers: [this.registry],
      collect() {
        this.set(sources.auditState() === 'failed' ? 0 : 1);
      },
    });
  }

  /** Method names seen as labels: a client can send any name, so past a bound they count as "(other)". */
  private readonly methodLabels = new Set<string>();

  private methodLabel(method: unknown): string {
    if (typeof method !== 'string') return '(invalid)';
    if (this.methodLabels.has(method)) return method;
    if (this.methodLabels.size >= maxMethodLabels || method.length > 80) return '(other)';
    this.methodLabels.add(method);
    return method;
  }

  onEvent(event: AuditEvent): void {
    const d = event.data as Record<string, any>;
    if (event.type === 'grant.issued') this.grants.inc({ outcome: 'issued' });
    else if (event.type === 'grant.refused') this.grants.inc({ outcome: 'refused' });
    else if (event.type === 'cdp.refused') this.cdp.inc({ method: this.methodLabel(d.method), decision: 'refused' });
    else if (typeof d.decision === 'string' && typeof d.method === 'string' && event.type.startsWith('cdp.')) this.cdp.inc({ method: this.methodLabel(d.method), decision: d.decision });
    else if (event.type === 'watchdog.resumed') this.watchdog.inc();
    else if (event.type === 'snapshot.captured') this.captures.inc();
    else if (event.type === 'session.ended') this.sessionsEnded.inc({ reason: String(d.endReason) });
    else if (event.type.startsWith('alert.')) this.alerts.inc({ rule: event.type.slice(6) });
    else if (event.type.startsWith('request.')) this.requests.inc({ event: event.type.slice(8) });
  }
}
