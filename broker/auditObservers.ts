import type { AuditStream, AuditTrail } from './audit/auditTrail';
import type { AuditEvent } from './audit/events';
import type { SecurityStream } from './audit/securityStream';
import { AlertEngine, type Alert } from './alerts/alertEngine';
import { toEcs } from './alerts/ecs';
import { LineWriter, WebhookSink } from './alerts/sinks';
import type { LoupeConfig } from './config/types';
import { LoupeError } from './errors';
import type { Identity } from './identity/verifyIdentity';
import type { BrokerMetrics } from './metrics';
import { isAdmin, isOwner, rolesOf } from './policy/access';
import type { AccessRequests } from './policy/approvals';
import { sessionFault } from './securityEvents';
import type { SessionRegistry } from './sessionRegistry';
import type { StateBackend } from './state/stateBackend';

/** What the observers need of the broker; the streams are taken when used (they open after the observers are wired). */
export interface ObserverHost {
  /** The policy in force, taken fresh each time (a reload replaces it). */
  config(): LoupeConfig;
  readonly clock: () => number;
  readonly log: (line: string) => void;
  readonly audit: AuditTrail;
  readonly metrics: BrokerMetrics;
  readonly sessions: SessionRegistry;
  readonly state: StateBackend;
  security(): SecurityStream;
  grantStream(): AuditStream;
  approvals(): AccessRequests;
  reportFault(where: string, err: unknown, detail: Record<string, unknown>): void;
}

/** Alerts (with their webhooks), metrics, the ECS export and session faults: all read the durable audit stream. */
export class AuditObservers {
  private readonly alerts: AlertEngine;
  private readonly ecs: LineWriter | undefined;
  private readonly webhooks: WebhookSink;

  private readonly observers: [string, (event: AuditEvent) => void][] = [
    ['metrics', (event) => this.host.metrics.onEvent(event)],
    ['alerts', (event) => this.alerts.onEvent(event)],
    ['ecs', (event) => this.ecs?.write(toEcs(event, event.actor ? [...rolesOf(this.host.config(), { sub: event.actor.sub, name: event.actor.name, groups: event.actor.groups, issuer: '' })] : []))],
    // A session that ended on a fault in the broker is a security event too, with the session's record as evidence.
    [
      'security',
      (event) => {
        const fault = sessionFault(event);
        if (fault) this.host.security().record('session.fault', fault);
      },
    ],
  ];

  /**
   * Durable records the observers have yet to see, in order. They see them after the turn that made them durable:
   * a request is forwarded the moment its record is durable, and its alerts, metrics and ECS line (and those of the
   * answer that joined the same commit) are worked out while the target answers, not before it is asked.
   */
  private queued: AuditEvent[] = [];
  private draining: NodeJS.Immediate | undefined;

  private drain(): void {
    clearImmediate(this.draining);
    this.draining = undefined;
    const events = this.queued;
    this.queued = [];
    for (const event of events) {
      // An observer's fault must not fail the record that is already durable, nor the other observers.
      for (const [name, observe] of this.observers) {
        try {
          observe(event);
        } catch (err) {
          this.host.reportFault(`audit observer ${name}`, err, { stream: event.stream, seq: event.seq, type: event.type });
        }
      }
    }
  }

  constructor(private readonly host: ObserverHost) {
    const { log, sessions } = host;
    const config = host.config();
    this.webhooks = new WebhookSink(config.alerting.webhooks, config.alerting.deadLetterFile, log);
    if (config.alerting.ecsOutput) this.ecs = new LineWriter(config.alerting.ecsOutput);
    this.alerts = new AlertEngine(
      config,
      {
        record: async (alert) => {
          const data = { alertId: alert.id, rule: alert.rule, message: alert.message, action: alert.action, evidence: alert.evidence };
          const session = alert.session ? sessions.get(alert.session) : undefined;
          if (session) await session.recordAlert(`alert.${alert.rule}`, data);
          else if (alert.rule === 'failedAttaches') host.security().record(`alert.${alert.rule}`, { ...data, target: alert.target || null, user: alert.user ?? null });
          else await host.grantStream().record(`alert.${alert.rule}`, { ...data, session: alert.session ?? null, target: alert.target, user: alert.user ?? null });
        },
        // Alerts watch this replica's own sessions; one held elsewhere is reached through a notice.
        endSession: (sessionId) => {
          const session = sessions.get(sessionId);
          if (session) void session.end('alert');
          else void host.state.notify({ type: 'end-session', sessionId, reason: 'alert' }).catch((err: Error) => log(`alert: cannot reach the replica holding session ${sessionId}: ${err.message}`));
        },
        requireApproval: (alert) => {
          if (!alert.user) return;
          const cause = { alertId: alert.id, rule: alert.rule, message: alert.message, at: alert.at, ...(alert.session ? { session: alert.session } : {}) };
          void host
            .approvals()
            .hold(alert.user, alert.target, cause)
            .catch((err: Error) => log(`alert ${alert.id}: cannot put ${alert.user} on hold for ${alert.target}: ${err.message}`));
        },
        deliver: (alert) => void this.webhooks.deliver(alert),
      },
      host.state,
      host.clock,
      log,
    );
    host.audit.on('event', (event: AuditEvent) => {
      this.queued.push(event);
      this.draining ??= setImmediate(() => this.drain());
    });
    host.audit.on('uploaded', (seconds: number) => host.metrics.uploadSeconds.observe(seconds));
  }

  /** A policy reload: alert rules and owners come from the new policy from now on. */
  useConfig(config: LoupeConfig): void {
    this.alerts.useConfig(config);
  }

  /** Alerts of the targets the caller owns (all of them for admins). */
  listAlerts(identity: Identity): Alert[] {
    const config = this.host.config();
    const roles = rolesOf(config, identity);
    const admin = isAdmin(config, roles);
    const owned = new Set(
      Object.values(config.targets)
        .filter((t) => isOwner(t, roles))
        .map((t) => t.name),
    );
    if (!admin && owned.size === 0) throw new LoupeError('forbidden', 'alerts are for the owners of a target and admins');
    return this.alerts.list((alert) => admin || owned.has(alert.target));
  }

  /** Closes the ECS export's file, saves the alert engine's state, and writes the alerts still waiting for a webhook as dead letters. */
  async close(): Promise<void> {
    this.drain();
    await Promise.all([this.ecs?.close(), this.alerts.flush()]);
    await this.webhooks.close();
  }
}
