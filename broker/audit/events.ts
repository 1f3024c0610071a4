import { canonicalJson } from '../../common/canonicalJson';
import { chunkName, genesisHash, hashRecord, manifestName, sha256 } from '../../common/transcript';

/** Audit event types with stable codes: codes never change meaning, new types get new codes. */
export const eventCodes = {
  'grant.requested': 'L1000',
  'grant.issued': 'L1001',
  'grant.refused': 'L1002',
  'grant.revoked': 'L1003',
  // Access requests under the two-person rule (broker/policy/approvals.ts), in the grant stream.
  'request.created': 'L1010',
  'request.approved': 'L1011',
  'request.denied': 'L1012',
  'request.expired': 'L1013',
  'request.collected': 'L1014',
  'request.withdrawn': 'L1015',
  'request.decision_refused': 'L1016',
  'request.approval_required': 'L1017',
  // Policy reloads (SIGHUP or file change), in the grant stream.
  'policy.reloaded': 'L1020',
  'policy.reload_refused': 'L1021',
  'session.started': 'L2000',
  'session.ended': 'L2001',
  'session.attach_refused': 'L2002',
  'session.ending': 'L2003',
  'session.policy_applied': 'L2004',
  // A replica ended the session of another replica whose lease ran out (it died or lost the state database).
  'session.lease_expired': 'L2005',
  'cdp.request': 'L3000',
  'cdp.response': 'L3001',
  'cdp.response.missing': 'L3002',
  'cdp.refused': 'L3003',
  'cdp.breakpoint.set': 'L3010',
  'cdp.breakpoint.removed': 'L3011',
  'cdp.breakpoint.hit': 'L3012',
  'cdp.breakpoint.condition': 'L3013',
  'cdp.evaluate': 'L3020',
  'cdp.properties.read': 'L3021',
  'cdp.step': 'L3030',
  'cdp.resume': 'L3031',
  'cdp.paused': 'L3032',
  'cdp.resumed': 'L3033',
  'snapshot.captured': 'L3040',
  'snapshot.throttled': 'L3041',
  'cdp.logpoint': 'L3042',
  'cdp.breakpoint.suspended': 'L3014',
  // A breakpoint whose condition depends on a redacted value: removed, never deciding a pause.
  'cdp.breakpoint.disabled': 'L3015',
  'broker.request': 'L4000',
  'broker.response': 'L4001',
  'broker.response.missing': 'L4002',
  'watchdog.resumed': 'L4010',
  // A client that is gone (heartbeat) or absent (after a watchdog resume, until its next frame).
  'client.unresponsive': 'L4030',
  'client.absent': 'L4031',
  'client.returned': 'L4032',
  'client.events_dropped': 'L4020',
  'target.invalid_frame': 'L4021',
  'audit.degraded': 'L5000',
  'audit.recovered': 'L5001',
  'stream.closed': 'L5002',
  // Recovery on start: a WAL segment's torn tail cut back, and records taken back from the store.
  'audit.wal_repaired': 'L5003',
  'audit.reconciled': 'L5004',
  // The shared state database (PostgreSQL) became unreachable, and came back.
  'state.unavailable': 'L5010',
  'state.recovered': 'L5011',
  // The broker's security stream (broker/audit/securityStream.ts): refusals at the edges and session faults.
  'attach.refused': 'L7000',
  'identity.rejected': 'L7001',
  'grant.malformed': 'L7002',
  'session.fault': 'L7003',
  // A fault the broker contained (a session ended on it, or the process-level guard caught it): Broker.reportFault.
  'broker.fault': 'L7004',
  'security.events_dropped': 'L7010',
  'security.segment_opened': 'L7011',
} as const;

export type EventType = keyof typeof eventCodes | `alert.${string}`;

export const codeOf = (type: EventType): string => (type.startsWith('alert.') ? 'L6000' : eventCodes[type as keyof typeof eventCodes]);

export interface Actor {
  readonly sub: string;
  readonly name: string;
  readonly groups: readonly string[];
}

/** What every event of a stream repeats: who, on what, under which grant and why. */
export interface StreamContext {
  /** The chain this event belongs to: a session id, a broker run's grant stream, or a segment of its security stream. */
  readonly stream: string;
  readonly kind: 'session' | 'grants' | 'security';
  readonly grant?: string;
  readonly actor?: Actor;
  readonly target?: string;
  readonly mode?: string;
  readonly reason?: string;
  readonly ticket?: string;
  /** When the stream started: it fixes the stream's place in the store (sessions/YYYY/MM/DD/<id>/). */
  readonly startedAt: string;
  /** How long the store must keep this stream. */
  readonly retentionDays: number;
}

export interface AuditEvent {
  readonly seq: number;
  readonly time: string;
  readonly type: EventType;
  readonly code: string;
  readonly stream: string;
  readonly kind: StreamContext['kind'];
  readonly grant?: string;
  readonly actor?: Actor;
  readonly target?: string;
  readonly mode?: string;
  readonly reason?: string;
  readonly ticket?: string;
  readonly data: Record<string, unknown>;
  readonly prev: string;
  readonly hash: string;
}

/** SHA-256 over the RFC 8785 canonical JSON of the event without its own hash (prev is inside). */
export const hashEvent = (event: Omit<AuditEvent, 'hash'>): string => hashRecord(event);

/** Builds the next event of a chain. */
export function chainEvent(context: StreamContext, seq: number, prev: string, time: string, type: EventType, data: Record<string, unknown>): AuditEvent {
  return chainEventLine(context, seq, prev, time, type, data).event;
}

/** The canonical text of what every event of a stream repeats from its context, made once per stream. */
interface ContextParts {
  readonly actor: string;
  readonly grant: string;
  readonly kindMode: string;
  readonly reason: string;
  readonly streamTargetTicket: string;
}
const partsOf = new WeakMap<StreamContext, ContextParts>();

function contextParts(context: StreamContext): ContextParts {
  let parts = partsOf.get(context);
  if (parts) return parts;
  const field = (key: string, value: unknown, lead = ',') => (value === undefined ? '' : `${lead}"${key}":${canonicalJson(value)}`);
  parts = {
    actor: `{${field('actor', context.actor, '')}${context.actor === undefined ? '' : ','}`,
    grant: field('grant', context.grant),
    kindMode: `${field('kind', context.kind, '')}${field('mode', context.mode)}`,
    reason: field('reason', context.reason),
    streamTargetTicket: `${field('stream', context.stream)}${field('target', context.target)}${field('ticket', context.ticket)}`,
  };
  // A context is fixed once its stream opens (its WAL record and every event repeat it), so it is made once.
  partsOf.set(context, parts);
  return parts;
}

/**
 * Builds the next event of a chain and its line: the RFC 8785 canonical JSON of the whole event, hash included. One
 * serialization serves the hash (the same text without the hash, which sorts between `grant` and `kind`), the WAL
 * and the chunk.
 */
export function chainEventLine(context: StreamContext, seq: number, prev: string, time: string, type: EventType, data: Record<string, unknown>): { event: AuditEvent; json: string } {
  const code = codeOf(type);
  const parts = contextParts(context);
  // The keys in canonical (sorted) order, in two parts around where the hash goes.
  // code (a table's), prev (hex), seq (an integer) and time (ISO 8601) are written as they are: nothing in them to escape.
  const before = `${parts.actor}"code":"${code}","data":${canonicalJson(data)}${parts.grant}`;
  const after = `${parts.kindMode},"prev":"${prev}"${parts.reason},"seq":${seq}${parts.streamTargetTicket},"time":"${time}","type":${JSON.stringify(type)}}`;
  const hash = sha256(`${before},${after}`);
  // Field by field, in the order events always had (no object made per optional field).
  const event: { -readonly [K in keyof AuditEvent]: AuditEvent[K] } = { seq, time, type, code, stream: context.stream, kind: context.kind } as AuditEvent;
  if (context.grant !== undefined) event.grant = context.grant;
  if (context.actor !== undefined) event.actor = context.actor;
  if (context.target !== undefined) event.target = context.target;
  if (context.mode !== undefined) event.mode = context.mode;
  if (context.reason !== undefined) event.reason = context.reason;
  if (context.ticket !== undefined) event.ticket = context.ticket;
  event.data = data;
  event.prev = prev;
  event.hash = hash;
  // Joined, not concatenated: a flat string. A concatenation keeps every piece of the canonical writer's text alive
  // as a rope while the line waits for its chunk (seconds), which the young-generation GC copies and promotes.
  return { event, json: [before, ',"hash":"', hash, '",', after].join('') };
}

/** Object keys of a stream in the store. */
export function streamPrefix(context: Pick<StreamContext, 'stream' | 'kind' | 'startedAt'>): string {
  const day = context.startedAt.slice(0, 10).split('-').join('/');
  return `${context.kind === 'session' ? 'sessions' : context.kind === 'security' ? 'security' : 'grants'}/${day}/${context.stream}/`;
}

export { chunkName, genesisHash, manifestName, sha256 };
