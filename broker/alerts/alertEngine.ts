import { randomUUID } from 'node:crypto';
import picomatch from 'picomatch';
import type { AuditEvent } from '../audit/events';
import type { AlertAction, AlertRules } from '../config/alertConfig';
import type { LoupeConfig } from '../config/types';
import { luhn } from '../policy/redact';
import { withinHours } from '../policy/hours';
import type { StateBackend } from '../state/stateBackend';

export interface Alert {
  readonly id: string;
  readonly rule: keyof AlertRules;
  readonly at: string;
  readonly target: string;
  readonly session?: string;
  readonly user?: string;
  readonly message: string;
  readonly action: AlertAction;
  /** The records that made the rule fire: seq, type and a short summary each. */
  readonly evidence: readonly { seq: number; type: string; summary: string }[];
}

export interface AlertEngineHooks {
  /** Records the alert in the session's chain (or the broker's grant chain when there is no session). */
  record(alert: Alert): Promise<void>;
  endSession(sessionId: string, alert: Alert): void;
  /** action require-approval: the user's next grant on the target waits for an owner's approval. */
  requireApproval(alert: Alert): void;
  deliver(alert: Alert): void;
}

/** The most evidence an alert carries: the last records of its window. */
const evidenceRecords = 20;

/**
 * A session's recent events of one kind: the time of each event in the window (so it can be counted), and the last
 * few events themselves (an alert's evidence). Adding one drops the times that left the window from the front, so a
 * busy session (thousands of events a minute) costs the same per event as a quiet one and holds a minute of numbers,
 * not a minute of records.
 */
export class EventWindow {
  private times: number[] = [];
  private head = 0;
  /** The last `evidenceRecords` events added, oldest first. */
  private recent: AuditEvent[] = [];

  get length(): number {
    return this.times.length - this.head;
  }

  /** Adds `event` and keeps the times of those of the last `seconds` before it (a session's records come in time order). */
  add(event: AuditEvent, seconds: number): void {
    const time = Date.parse(event.time);
    const since = time - seconds * 1000;
    while (this.head < this.times.length && !(this.times[this.head]! > since)) this.head++;
    if (this.head > 1024 && this.head * 2 > this.times.length) {
      this.times = this.times.slice(this.head);
      this.head = 0;
    }
    this.times.push(time);
    if (this.recent.length === evidenceRecords) this.recent.shift();
    this.recent.push(event);
  }

  /** The last `n` (at most 20) events in the window, oldest first. */
  last(n: number): AuditEvent[] {
    const count = Math.min(n, this.length, this.recent.length);
    return count === 0 ? [] : this.recent.slice(-count);
  }
}

interface SessionState {
  readonly target: string;
  readonly user: string;
  readonly grant?: string;
  /** The session's grant allows V8 evaluation (its session.started says evaluation: v8). */
  readonly v8: boolean;
  readonly rules: AlertRules;
  readonly evaluations: EventWindow;
  readonly reads: EventWindow;
  readonly refusals: EventWindow;
  bytes: number;
  bytesFired: boolean;
  readonly lastFired: Map<string, number>;
  pauseTimer?: NodeJS.Timeout;
  ending: boolean;
}

/** Source addresses and users the failedAttaches rule keeps counts for at once (a flood from many addresses stays bounded). */
const maxWatched = 10_000;

const normalize = (name: string) => name.toLowerCase().replace(/[^a-z0-9]/g, '');
/** The normalized names of a sensitiveReads rule, made once per rule (every evaluation and read is checked against them). */
const watchedNames = new WeakMap<readonly string[], Set<string>>();

/** Alert keys a session remembers (to hold repeats back): distinct sensitive-read alerts are one each. */
const rememberedAlertKeys = 1000;

/** Values that look like secrets whatever their name: card numbers, bearer tokens, JWTs, private keys. */
export function sensitiveValue(text: string): string | undefined {
  // Nothing shorter matches: a card number is 13 digits at least, the other patterns and the marker longer still.
  // Most previews are (a read of 100 fields is 100 previews, a number or a short word each).
  if (text.length < 13) return undefined;
  for (const match of text.matchAll(/\b(?:\d[ -]?){13,19}\b/g)) {
    const digits = match[0].replace(/\D/g, '');
    if (digits.length >= 13 && digits.length <= 19 && luhn(digits)) return 'a card number';
  }
  if (/\bBearer\s+[A-Za-z0-9._~+/-]{12,}/i.test(text)) return 'a bearer token';
  if (/\beyJ[\w-]{8,}\.[\w-]{8,}\.[\w-]{8,}/.test(text)) return 'a JWT';
  if (/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(text)) return 'a private key';
  // The broker redacted it before recording: the marker says what it was.
  const redacted = /\[redacted: ([^\]]{1,60})\]/.exec(text);
  if (redacted) return `a ${redacted[1]} (redacted)`;
  return undefined;
}

const summarize = (event: AuditEvent): string => {
  const d = event.data as Record<string, any>;
  if (event.type === 'cdp.evaluate') return String(d.params?.expression ?? '').slice(0, 120);
  if (event.type === 'cdp.properties.read') return String(d.object ?? d.params?.objectId ?? '');
  if (event.type === 'cdp.refused') return `${d.method}: ${String(d.message).slice(0, 120)}`;
  if (event.type === 'cdp.response') {
    const why = d.result?.error ?? d.result?.refusal?.message;
    return `${d.method}${d.bytes ? ` (${d.bytes} bytes)` : ''}${why ? `: ${String(why).split('\n')[0]}` : ''}`;
  }
  if (event.type === 'cdp.breakpoint.condition') return `${d.condition}: ${d.detail ?? d.value}`;
  if (event.type === 'attach.refused') return `${d.reason} (grant ${d.grantId ?? 'none'}, from ${d.source ?? '?'})`;
  return event.type;
};

/**
 * Watches the live audit stream for debugging that looks wrong. Rules read durable audit events only,
 * so an alert always points at records that exist; an alert is itself recorded as `alert.<rule>`.
 */
export class AlertEngine {
  private readonly sessions = new Map<string, SessionState>();
  private readonly recent: Alert[] = [];

  constructor(
    private config: LoupeConfig,
    private readonly hooks: AlertEngineHooks,
    /** First attaches and refused-attach counts are kept there, shared by every replica on PostgreSQL. */
    private readonly state: Pick<StateBackend, 'touchFirstAttach' | 'countInWindow'>,
    private readonly clock: () => number,
    private readonly log: (line: string) => void = () => undefined,
  ) {}

  /** A policy reload: rules of sessions that start from now on come from the new targets. */
  useConfig(config: LoupeConfig): void {
    this.config = config;
  }

  /** First-attach checks under way: flush() waits for them (at shutdown). */
  private readonly touching = new Set<Promise<unknown>>();

  /** Waits for the first-attach checks under way (at shutdown). */
  async flush(): Promise<void> {
    await Promise.all(this.touching);
  }

  /** Alerts kept in memory for the API, newest first (every alert is also in the audit trail). */
  list(filter: (alert: Alert) => boolean = () => true): Alert[] {
    return this.recent.filter(filter).reverse();
  }

  onEvent(event: AuditEvent): void {
    if (event.type.startsWith('alert.')) return;
    if (event.kind === 'security') return this.onSecurityEvent(event);
    if (event.kind === 'grants') return this.onGrantEvent(event);
    if (event.kind !== 'session') return;
    if (event.type === 'session.started') return this.onStart(event);
    const state = this.sessions.get(event.stream);
    if (!state) return;
    const d = event.data as Record<string, any>;
    switch (event.type) {
      case 'cdp.evaluate': {
        state.evaluations.add(event, 60);
        const rule = state.rules.evaluationRate;
        if (rule && state.evaluations.length > rule.perMinute)
          this.fire(state, event.stream, 'evaluationRate', `${state.evaluations.length} evaluations in the last minute (threshold ${rule.perMinute})`, state.evaluations.last(evidenceRecords), 60);
        const names = this.sensitiveNames(state, String(d.params?.expression ?? '').match(/[A-Za-z_$][\w$]*/g) ?? []);
        if (names.length > 0) this.fire(state, event.stream, 'sensitiveReads', `evaluation of ${names.join(', ')}: ${String(d.params?.expression).slice(0, 80)}`, [event], 0);
        // Every evaluation V8 runs under the privilege, each its own alert (a repeat fires too: nothing is kept per evaluation).
        if (state.v8 && state.rules.v8Evaluation) {
          const expression = String(d.params?.expression ?? '').slice(0, 200);
          this.fire(state, event.stream, 'v8Evaluation', `V8 evaluation by ${state.user} on ${state.target} (grant ${state.grant ?? 'unknown'}; app code may run): ${expression}`, [event], 0, null);
        }
        break;
      }
      case 'cdp.properties.read': {
        state.reads.add(event, 60);
        const rule = state.rules.readRate;
        if (rule && state.reads.length > rule.perMinute)
          this.fire(state, event.stream, 'readRate', `${state.reads.length} variable reads in the last minute (threshold ${rule.perMinute})`, state.reads.last(evidenceRecords), 60);
        break;
      }
      case 'cdp.response': {
        if (/^(Runtime\.getProperties|Runtime\.evaluate|Debugger\.evaluateOnCallFrame)$/.test(d.method) && typeof d.bytes === 'number') {
          state.bytes += d.bytes;
          const rule = state.rules.capturedBytes;
          if (rule && !state.bytesFired && state.bytes > rule.perSession) {
            state.bytesFired = true;
            this.fire(state, event.stream, 'capturedBytes', `${state.bytes} bytes of values read in this session (threshold ${rule.perSession})`, [event], 0);
          }
        }
        if (d.method === 'Runtime.getProperties') {
          const props = (d.result?.properties ?? []) as { name: string; preview?: string }[];
          const names = this.sensitiveNames(
            state,
            props.map((p) => p.name),
          );
          const valueHit = props.map((p) => (p.preview ? sensitiveValue(p.preview) : undefined)).find(Boolean);
          if (names.length > 0 || valueHit) this.fire(state, event.stream, 'sensitiveReads', names.length > 0 ? `read of ${names.join(', ')}` : `a value read looks like ${valueHit}`, [event], 0);
        }
        // Loupe expressions: a refusal counts like V8's side-effect refusal; an answer the redactor scrubbed is a sensitive read.
        if (d.evaluator === 'loupe') {
          if (d.result?.kind === 'refused' && d.routine === undefined) this.refusal(state, event);
          // Names an expression reads are alerted on from its text (cdp.evaluate); here, values the redactor caught.
          const tainted = Array.isArray(d.result?.redacted) ? (d.result.redacted as unknown[]).map(String) : [];
          if (tainted.length > 0) this.fire(state, event.stream, 'sensitiveReads', `an evaluation result looks like a ${tainted[0]} (redacted)`, [event], 0);
        } else if (typeof d.result?.error === 'string' && /Possible side-effect/.test(d.result.error)) this.refusal(state, event);
        else if (typeof d.result?.preview === 'string') {
          const hit = sensitiveValue(d.result.preview);
          if (hit) this.fire(state, event.stream, 'sensitiveReads', `an evaluation result looks like ${hit}`, [event], 0);
        }
        break;
      }
      case 'cdp.refused':
        // A client's own request at attach (gate/clientRoutine.ts) is refused and recorded, but nobody typed it.
        if (d.routine === undefined) this.refusal(state, event);
        break;
      case 'cdp.breakpoint.condition':
        if (typeof d.detail === 'string' && /^refused/.test(d.detail)) this.refusal(state, event);
        break;
      case 'cdp.breakpoint.set':
        this.sensitiveFile(state, event, String(d.params?.url ?? d.params?.urlRegex ?? ''));
        break;
      case 'cdp.breakpoint.hit':
      case 'cdp.paused': {
        if (typeof d.url === 'string') this.sensitiveFile(state, event, d.url);
        const rule = state.rules.longPause;
        clearTimeout(state.pauseTimer);
        if (rule) {
          state.pauseTimer = setTimeout(
            () => this.fire(state, event.stream, 'longPause', `the target has been paused for ${rule.seconds} s at ${d.frame ?? 'an unknown frame'}`, [event], 0),
            rule.seconds * 1000,
          );
          state.pauseTimer.unref();
        }
        break;
      }
      case 'cdp.resumed':
      case 'cdp.resume':
      case 'cdp.step':
        clearTimeout(state.pauseTimer);
        break;
      case 'watchdog.resumed':
        if (state.rules.watchdogResume) this.fire(state, event.stream, 'watchdogResume', `the watchdog resumed the target after ${d.maxPauseSeconds} s paused`, [event], 0);
        break;
      case 'session.ending':
        if (d.endReason === 'target_unresponsive' && state.rules.targetUnresponsive)
          this.fire(state, event.stream, 'targetUnresponsive', `the target stopped answering its inspector for longer than its bound; the session was ended`, [event], 0);
        break;
      case 'session.ended':
        clearTimeout(state.pauseTimer);
        this.sessions.delete(event.stream);
        break;
    }
  }

  /** Recent refused attaches per source address and per grant holder: at most `count` each, at most maxWatched keys. */
  private readonly refusedAttaches = new Map<string, AuditEvent[]>();
  private readonly brokerFired = new Map<string, number>();

  /** The broker-wide failedAttaches rule over the security stream. */
  private onSecurityEvent(event: AuditEvent): void {
    const rule = this.config.alerting.rules.failedAttaches;
    if (event.type !== 'attach.refused' || !rule) return;
    const d = event.data as Record<string, unknown>;
    // Not the caller's doing: the broker could not serve an attach it would have allowed.
    if (d.reason === 'target_unreachable' || d.reason === 'audit_unavailable' || d.reason === 'state_unavailable') return;
    const since = Date.parse(event.time) - rule.withinSeconds * 1000;
    const keys: [string, string][] = [];
    if (typeof d.source === 'string') keys.push([`source ${d.source}`, `from ${d.source}`]);
    if (typeof d.user === 'string') keys.push([`user ${d.user}`, `on grants of ${d.user}`]);
    for (const [key, where] of keys) {
      const recent = [...(this.refusedAttaches.get(key) ?? []).filter((e) => Date.parse(e.time) > since), event].slice(-rule.count);
      this.refusedAttaches.delete(key); // re-inserted last: the map's first key is the least recently seen
      this.refusedAttaches.set(key, recent);
      if (this.refusedAttaches.size > maxWatched) this.refusedAttaches.delete(this.refusedAttaches.keys().next().value!);
      // Counted across replicas: attempts spread over several brokers behind one load balancer add up.
      this.state.countInWindow(`failedAttaches ${key}`, Date.parse(event.time), rule.withinSeconds * 1000).then(
        (count) => this.failedAttaches(key, where, Math.max(count, recent.length), recent, d),
        (err: Error) => {
          this.log(`alerts: cannot count refused attaches ${where} across replicas (${err.message}); counting this replica's alone`);
          this.failedAttaches(key, where, recent.length, recent, d);
        },
      );
    }
  }

  private failedAttaches(key: string, where: string, count: number, recent: readonly AuditEvent[], d: Record<string, unknown>): void {
    const rule = this.config.alerting.rules.failedAttaches;
    if (!rule || count < rule.count) return;
    const now = this.clock();
    const last = this.brokerFired.get(key);
    if (last !== undefined && now - last < rule.withinSeconds * 1000) return;
    this.brokerFired.set(key, now);
    if (this.brokerFired.size > maxWatched) this.brokerFired.delete(this.brokerFired.keys().next().value!);
    const alert: Alert = {
      id: randomUUID(),
      rule: 'failedAttaches',
      at: new Date(now).toISOString(),
      target: typeof d.target === 'string' ? d.target : '',
      ...(typeof d.user === 'string' ? { user: d.user } : {}),
      message: `${count} refused attaches within ${rule.withinSeconds} s ${where} (threshold ${rule.count}); last: ${String(d.reason)}`,
      action: rule.action,
      evidence: recent.slice(-20).map((e) => ({ seq: e.seq, type: e.type, summary: summarize(e) })),
    };
    this.recent.push(alert);
    if (this.recent.length > 1000) this.recent.shift();
    void this.hooks.record(alert).catch(() => undefined);
    this.hooks.deliver(alert);
    if (rule.action === 'require-approval' && alert.user && alert.target) this.hooks.requireApproval(alert);
  }

  /** Grants already alerted on: a V8 grant fires once, however its record reaches the engine. */
  private readonly v8GrantsSeen = new Set<string>();

  /** The broker's grant stream: a grant issued with V8 evaluation is worth an alert on its own. */
  private onGrantEvent(event: AuditEvent): void {
    if (event.type !== 'grant.issued') return;
    const d = event.data as Record<string, any>;
    if (d.evaluation !== 'v8' || typeof d.grantId !== 'string' || this.v8GrantsSeen.has(d.grantId)) return;
    const target = this.config.targets[String(d.target ?? '')];
    const rule = target?.alerts.v8Evaluation;
    if (!target || !rule) return;
    this.v8GrantsSeen.add(d.grantId);
    if (this.v8GrantsSeen.size > maxWatched) this.v8GrantsSeen.delete(this.v8GrantsSeen.values().next().value!);
    const user = String(d.actor?.sub ?? event.actor?.sub ?? '');
    const approvedBy = Array.isArray(d.approvedBy) && d.approvedBy.length > 0 ? `, approved by ${d.approvedBy.map((a: { sub?: string }) => a.sub).join(', ')}` : '';
    const alert: Alert = {
      id: randomUUID(),
      rule: 'v8Evaluation',
      at: new Date(this.clock()).toISOString(),
      target: target.name,
      ...(user ? { user } : {}),
      message: `grant ${d.grantId} with V8 evaluation issued to ${user || 'unknown'} on ${target.name} (${d.mode}, until ${d.expiresAt}${approvedBy}): app code may run; redaction is best-effort`,
      action: rule.action,
      evidence: [{ seq: event.seq, type: event.type, summary: `grant ${d.grantId} (${d.rule})` }],
    };
    this.recent.push(alert);
    if (this.recent.length > 1000) this.recent.shift();
    void this.hooks.record(alert).catch(() => undefined);
    this.hooks.deliver(alert);
    // end-session has no session yet; require-approval holds the user's next grant on the target.
    if (rule.action === 'require-approval' && alert.user) this.hooks.requireApproval(alert);
  }

  private onStart(event: AuditEvent): void {
    const target = this.config.targets[event.target ?? ''];
    if (!target || !event.actor) return;
    const v8 = (event.data as Record<string, unknown>).evaluation === 'v8';
    const state: SessionState = {
      target: target.name,
      user: event.actor.sub,
      ...(event.grant ? { grant: event.grant } : {}),
      v8,
      rules: target.alerts,
      evaluations: new EventWindow(),
      reads: new EventWindow(),
      refusals: new EventWindow(),
      bytes: 0,
      bytesFired: false,
      lastFired: new Map(),
      ending: false,
    };
    this.sessions.set(event.stream, state);
    const at = new Date(Date.parse(event.time));
    const offHours = state.rules.offHours;
    if (offHours && !withinHours(offHours.hours, at)) this.fire(state, event.stream, 'offHours', `attach at ${event.time} is outside ${offHours.hours.text}`, [event], 0);
    const first = state.rules.firstAttach;
    if (first) {
      const touched = this.state.touchFirstAttach(state.user, state.target, event.time).then(
        (last) => {
          if (!last || at.getTime() - Date.parse(last) > first.days * 86400_000) {
            this.fire(state, event.stream, 'firstAttach', last ? `${state.user} had not attached to ${state.target} since ${last}` : `first attach of ${state.user} to ${state.target}`, [event], 0);
          }
        },
        // Without the memory the rule cannot tell; it says so rather than fire on every attach.
        (err: Error) => this.log(`alerts: cannot check the firstAttach rule for session ${event.stream}: ${err.message}`),
      );
      this.touching.add(touched);
      void touched.finally(() => this.touching.delete(touched));
    }
    const many = state.rules.concurrentTargets;
    if (many) {
      const targets = new Set([...this.sessions.values()].filter((s) => s.user === state.user).map((s) => s.target));
      if (targets.size >= many.max) this.fire(state, event.stream, 'concurrentTargets', `${state.user} holds sessions on ${targets.size} targets at once: ${[...targets].join(', ')}`, [event], 0);
    }
  }

  private refusal(state: SessionState, event: AuditEvent): void {
    const rule = state.rules.refusals;
    if (!rule) return;
    state.refusals.add(event, rule.withinSeconds);
    if (state.refusals.length >= rule.count) {
      this.fire(
        state,
        event.stream,
        'refusals',
        `${state.refusals.length} refusals within ${rule.withinSeconds} s (threshold ${rule.count})`,
        state.refusals.last(evidenceRecords),
        rule.withinSeconds,
      );
    }
  }

  private sensitiveNames(state: SessionState, names: readonly string[]): string[] {
    const rule = state.rules.sensitiveReads;
    if (!rule || names.length === 0) return [];
    let watched = watchedNames.get(rule.names);
    if (!watched) watchedNames.set(rule.names, (watched = new Set(rule.names.map(normalize))));
    return [...new Set(names.filter((n) => watched.has(normalize(n))))];
  }

  private sensitiveFile(state: SessionState, event: AuditEvent, url: string): void {
    const rule = state.rules.sensitiveFiles;
    if (!rule || !url) return;
    const path = url
      .replace(/^file:\/\//, '')
      .replace(/\\(.)/g, '$1')
      .replace(/[$^]/g, '');
    const hit = rule.globs.find((glob) => picomatch.isMatch(path, glob.startsWith('/') || glob.startsWith('**') ? glob : `**/${glob}`, { dot: true }));
    if (hit) this.fire(state, event.stream, 'sensitiveFiles', `${event.type === 'cdp.breakpoint.set' ? 'breakpoint set' : 'paused'} in ${path}, which the owner marks sensitive (${hit})`, [event], 0);
  }

  /** Fires once per rule per cooldown window (0: every time the evidence differs). */
  private fire(
    state: SessionState,
    session: string,
    rule: keyof AlertRules,
    message: string,
    evidence: AuditEvent[],
    cooldownSeconds: number,
    /** What a repeat is known by (null: none, every one fires and nothing is kept). */
    key: string | null = cooldownSeconds > 0 ? rule : `${rule}:${message}`,
  ): void {
    const now = this.clock();
    if (key !== null) {
      const last = state.lastFired.get(key);
      if (last !== undefined && (cooldownSeconds === 0 || now - last < cooldownSeconds * 1000)) return;
      // Kept newest last and bounded: a long session of distinct alerts forgets the oldest (which may then fire again).
      state.lastFired.delete(key);
      state.lastFired.set(key, now);
      if (state.lastFired.size > rememberedAlertKeys) state.lastFired.delete(state.lastFired.keys().next().value!);
    }
    const action = ((state.rules[rule] as { action?: AlertAction } | undefined)?.action ?? 'none') as AlertAction;
    const alert: Alert = {
      id: randomUUID(),
      rule,
      at: new Date(now).toISOString(),
      target: state.target,
      session,
      user: state.user,
      message,
      action,
      evidence: evidence.map((e) => ({ seq: e.seq, type: e.type, summary: summarize(e) })),
    };
    this.recent.push(alert);
    if (this.recent.length > 1000) this.recent.shift();
    void this.hooks.record(alert).catch(() => undefined);
    this.hooks.deliver(alert);
    if (action === 'end-session' && !state.ending) {
      state.ending = true;
      this.hooks.endSession(session, alert);
    }
    if (action === 'require-approval') this.hooks.requireApproval(alert);
  }
}
