import type { AuditEvent, StreamContext } from './events';
import { manifestName } from './events';
import { AuditStoreError, maxAuditObjectBytes, type AuditStore } from './stores/auditStore';
import type { RecordedSession } from '../../common/http';

/** A recorded session as listed (common/http.ts, the wire shape), and where its objects are in the store. */
export interface SessionSummary extends RecordedSession {
  readonly prefix: string;
}

export interface SessionFilter {
  readonly target?: string;
  readonly user?: string;
  readonly from?: Date;
  readonly to?: Date;
}

const sessionPrefix = /^(sessions\/\d{4}\/\d{2}\/\d{2}\/([0-9a-f-]{36})\/)/;

/** Finds sessions in the audit store. Manifests never change once written, so they are cached. */
export class SessionIndex {
  private readonly sealed = new Map<string, SessionSummary>();

  constructor(
    private readonly store: AuditStore,
    private readonly liveSessions: () => ReadonlySet<string>,
  ) {}

  async list(filter: SessionFilter = {}): Promise<SessionSummary[]> {
    const keys = await this.store.list('sessions/');
    const prefixes = new Map<string, { id: string; keys: string[] }>();
    for (const key of keys) {
      const match = sessionPrefix.exec(key);
      if (!match) continue;
      const entry = prefixes.get(match[1]!) ?? { id: match[2]!, keys: [] };
      entry.keys.push(key);
      prefixes.set(match[1]!, entry);
    }
    const live = this.liveSessions();
    const out: SessionSummary[] = [];
    for (const [prefix, { id, keys: sessionKeys }] of prefixes) {
      const summary = await this.summarize(prefix, id, sessionKeys, live.has(id));
      if (summary && matches(summary, filter)) out.push(summary);
    }
    return out.sort((a, b) => b.startedAt.localeCompare(a.startedAt));
  }

  async find(sessionId: string): Promise<SessionSummary | undefined> {
    return (await this.list()).find((s) => s.sessionId === sessionId);
  }

  /** A session whose objects cannot be read is still listed, as damaged and why: one bad object never hides the others. */
  private async summarize(prefix: string, id: string, keys: string[], live: boolean): Promise<SessionSummary | undefined> {
    try {
      return await this.read(prefix, id, keys, live);
    } catch (err) {
      if (err instanceof AuditStoreError && err.code === 'unavailable') throw err;
      return {
        sessionId: id,
        target: '',
        user: { sub: '', name: '' },
        mode: '',
        reason: '',
        grantId: '',
        startedAt: '',
        state: 'damaged',
        problem: `its stored objects cannot be read: ${(err as Error).message}`,
        prefix,
      };
    }
  }

  private async read(prefix: string, id: string, keys: string[], live: boolean): Promise<SessionSummary | undefined> {
    const cached = this.sealed.get(prefix);
    if (cached) return cached;
    let context: StreamContext | undefined;
    let ended: { closedAt?: string; endReason?: string } = {};
    const firstChunk = keys.filter((k) => k.includes('/chunk-')).sort()[0];
    const firstLines = firstChunk ? (await this.store.get(firstChunk, maxAuditObjectBytes)).toString('utf8').split('\n', 4) : [];
    const parse = <T>(name: string, text: string): T => {
      try {
        const value = JSON.parse(text) as unknown;
        if (value === null || typeof value !== 'object') throw new Error();
        return value as T;
      } catch {
        throw new Error(`${name.slice(prefix.length)} is not JSON`);
      }
    };
    if (keys.includes(prefix + manifestName)) {
      const manifest = parse<{ context: StreamContext; closedAt: string; endReason: string }>(
        prefix + manifestName,
        (await this.store.get(prefix + manifestName, maxAuditObjectBytes)).toString('utf8'),
      );
      if (manifest.context === null || typeof manifest.context !== 'object') throw new Error(`${manifestName} has no context`);
      context = manifest.context;
      ended = { closedAt: manifest.closedAt, endReason: manifest.endReason };
    } else {
      if (!firstChunk) return undefined;
      const event = parse<AuditEvent>(firstChunk, firstLines[0]!);
      context = {
        stream: id,
        kind: 'session',
        grant: event.grant,
        actor: event.actor,
        target: event.target,
        mode: event.mode,
        reason: event.reason,
        ticket: event.ticket,
        startedAt: event.time,
        retentionDays: 0,
      } as StreamContext;
    }
    const summary: SessionSummary = {
      sessionId: id,
      target: context.target ?? '',
      user: { sub: context.actor?.sub ?? '', name: context.actor?.name ?? '' },
      mode: context.mode ?? '',
      ...(startedWithV8(firstLines) ? { evaluation: 'v8' as const } : {}),
      reason: context.reason ?? '',
      ...(context.ticket ? { ticket: context.ticket } : {}),
      grantId: context.grant ?? '',
      startedAt: context.startedAt,
      ...(ended.closedAt ? { endedAt: ended.closedAt, endReason: ended.endReason } : {}),
      state: ended.closedAt ? 'ended' : live ? 'live' : 'incomplete',
      prefix,
    };
    if (summary.state === 'ended') this.sealed.set(prefix, summary);
    return summary;
  }
}

/** Whether the session's session.started record (among its first) says its grant had V8 evaluation. */
function startedWithV8(lines: readonly string[]): boolean {
  for (const line of lines) {
    if (!line.includes('"session.started"')) continue;
    try {
      const event = JSON.parse(line) as AuditEvent;
      if (event.type === 'session.started') return (event.data as { evaluation?: unknown }).evaluation === 'v8';
    } catch {
      return false;
    }
  }
  return false;
}

function matches(s: SessionSummary, filter: SessionFilter): boolean {
  if (filter.target && s.target !== filter.target) return false;
  if (filter.user && s.user.sub !== filter.user) return false;
  const started = Date.parse(s.startedAt);
  if (filter.from && started < filter.from.getTime()) return false;
  if (filter.to && started > filter.to.getTime()) return false;
  return true;
}
