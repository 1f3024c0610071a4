import type { EventType } from '../audit/events';
import type { LoupeConfig } from '../config/types';
import type { SessionRegistry } from '../sessionRegistry';
import type { StateBackend, StateNotice } from './stateBackend';

export interface ReplicaDutiesOptions {
  readonly state: StateBackend;
  readonly replica: string;
  readonly clock: () => number;
  readonly leaseMs: number;
  /** How long live sessions go on while the state backend cannot be reached. */
  readonly outageGraceMs: number;
  /** This replica's live sessions: their leases are renewed here, and notices end them. */
  readonly sessions: Pick<SessionRegistry, 'renewLeases' | 'ofGrant' | 'get' | 'endAll'>;
  /** Another replica reloaded its policy: reload this one's from its file. */
  policyReloaded(source: string): void;
  /** Records in the broker's grant stream; a failure is logged, never thrown. */
  record(type: EventType, data: Record<string, unknown>): Promise<void>;
  log(line: string): void;
}

/**
 * What a replica owes the others, on a timer of a third of the lease: renew the leases of its sessions, end the
 * sessions of replicas whose leases ran out (recording who ended them and why), and act on notices (a revocation
 * or an end-session for a session it holds, another replica's policy reload). While the state backend cannot be
 * reached, live sessions go on for the outage grace, then end cleanly; nothing new starts meanwhile (the calls fail).
 */
export class ReplicaDuties {
  private timer: NodeJS.Timeout | undefined;
  private stopNotices: (() => void) | undefined;
  private unreachableSince: number | undefined;
  private running: Promise<void> | undefined;
  private endedForOutage = false;

  constructor(private readonly options: ReplicaDutiesOptions) {}

  /** The duties of a replica configured by `config.state`, started. */
  static start(
    config: LoupeConfig,
    base: Pick<ReplicaDutiesOptions, 'state' | 'replica' | 'clock' | 'sessions' | 'log'>,
    hooks: { policyReloaded(source: string): void; record(type: EventType, data: Record<string, unknown>): Promise<void> },
  ): ReplicaDuties {
    const duties = new ReplicaDuties({
      ...base,
      leaseMs: config.state.sessionLeaseSeconds * 1000,
      outageGraceMs: config.state.outageGraceSeconds * 1000,
      policyReloaded: hooks.policyReloaded,
      record: (type, data) => hooks.record(type, data).catch((err: Error) => base.log(`state: cannot record ${type}: ${err.message}`)),
    });
    duties.start();
    return duties;
  }

  start(): void {
    this.stopNotices = this.options.state.onNotice((notice) => this.onNotice(notice));
    const interval = Math.max(50, Math.floor(this.options.leaseMs / 3));
    this.timer = setInterval(() => {
      this.running ??= this.tick().finally(() => (this.running = undefined));
    }, interval);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.stopNotices?.();
    await this.running;
  }

  private onNotice(notice: StateNotice): void {
    if (notice.type === 'revoked') void this.options.sessions.ofGrant(notice.grantId)?.end('revoked');
    else if (notice.type === 'end-session') void this.options.sessions.get(notice.sessionId)?.end('alert');
    else if (notice.replica !== this.options.replica) this.options.policyReloaded(notice.source);
  }

  private async tick(): Promise<void> {
    const { state, clock, replica } = this.options;
    try {
      await this.options.sessions.renewLeases();
      const expired = await state.expireLeases(clock(), replica);
      this.reachable();
      for (const session of expired) {
        this.options.log(`state: session ${session.sessionId} of replica ${session.replica} ended: its lease ran out (the replica died or lost the database)`);
        await this.options.record('session.lease_expired', {
          session: session.sessionId,
          grantId: session.grantId,
          replica: session.replica,
          user: session.user,
          target: session.target,
          leaseUntil: new Date(session.leaseUntilMs).toISOString(),
          endedBy: replica,
        });
      }
    } catch (err) {
      this.unreachable(err as Error);
    }
  }

  private reachable(): void {
    if (this.unreachableSince === undefined) return;
    const outageSeconds = Math.round((this.options.clock() - this.unreachableSince) / 1000);
    this.unreachableSince = undefined;
    this.endedForOutage = false;
    this.options.log(`state: the state database is back after ${outageSeconds} s`);
    void this.options.record('state.recovered', { outageSeconds });
  }

  private unreachable(err: Error): void {
    const now = this.options.clock();
    if (this.unreachableSince === undefined) {
      this.unreachableSince = now;
      this.options.log(`state: ${err.message}; new grants and attaches are refused, live sessions end in ${this.options.outageGraceMs / 1000} s unless it returns`);
      void this.options.record('state.unavailable', { error: err.message.slice(0, 500), outageGraceSeconds: this.options.outageGraceMs / 1000 });
    }
    if (!this.endedForOutage && now - this.unreachableSince >= this.options.outageGraceMs) {
      this.endedForOutage = true;
      this.options.log(`state: the state database has been unreachable for ${Math.round((now - this.unreachableSince) / 1000)} s: ending every live session`);
      void this.options.sessions.endAll('state_unavailable');
    }
  }
}
