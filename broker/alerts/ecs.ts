import type { AuditEvent } from '../audit/events';

/** The ECS version the mapping follows. */
export const ecsVersion = '8.11.0';

const categories: Record<string, string[]> = {
  grant: ['iam'],
  request: ['iam'],
  session: ['session'],
  cdp: ['process'],
  broker: ['process'],
  watchdog: ['process'],
  alert: ['intrusion_detection'],
  audit: ['configuration'],
  stream: ['session'],
  client: ['network'],
  target: ['process'],
  attach: ['authentication', 'network'],
  identity: ['authentication'],
  security: ['configuration'],
};

/** Security-stream events: their ECS categories and types override the family's. */
const securityEvents: Record<string, { category: string[]; type: string[] }> = {
  'attach.refused': { category: ['authentication', 'network'], type: ['connection', 'denied'] },
  'identity.rejected': { category: ['authentication'], type: ['denied'] },
  'grant.malformed': { category: ['iam'], type: ['denied'] },
  'session.fault': { category: ['session'], type: ['end', 'error'] },
  'broker.fault': { category: ['process'], type: ['error'] },
  'security.events_dropped': { category: ['configuration'], type: ['info'] },
  'security.segment_opened': { category: ['configuration'], type: ['info'] },
};

function outcome(event: AuditEvent): 'success' | 'failure' | 'unknown' {
  const data = event.data as Record<string, any>;
  if (['request.denied', 'request.expired', 'request.decision_refused'].includes(event.type)) return 'failure';
  if (event.type.startsWith('request.')) return 'success';
  if (['attach.refused', 'identity.rejected', 'grant.malformed', 'session.fault', 'broker.fault'].includes(event.type)) return 'failure';
  if (event.type === 'grant.refused' || event.type === 'cdp.refused' || event.type === 'cdp.response.missing' || event.type === 'broker.response.missing') return 'failure';
  if (event.type === 'cdp.response') return data.error || data.result?.error ? 'failure' : 'success';
  if (event.type === 'session.ended') return ['client_closed', 'expired'].includes(data.endReason) ? 'success' : 'failure';
  if (event.type.startsWith('grant.') || event.type === 'session.started' || event.type.startsWith('cdp.')) return 'success';
  return 'unknown';
}

/** One audit event as an Elastic Common Schema document (field set documented in the README). */
export function toEcs(event: AuditEvent, roles: readonly string[]): Record<string, unknown> {
  const family = event.type.split('.')[0]!;
  const data = event.data as Record<string, any>;
  const users = [event.actor?.sub, data.actor?.sub, data.holder, data.requester?.sub, data.user, data.claimedSub].filter((u): u is string => typeof u === 'string');
  return {
    '@timestamp': event.time,
    message: `${event.type}${event.target ? ` on ${event.target}` : ''}${event.actor ? ` by ${event.actor.sub}` : data.actor?.sub ? ` by ${data.actor.sub}` : ''}${data.method ? `: ${data.method}` : ''}`,
    ecs: { version: ecsVersion },
    event: {
      action: event.type,
      code: event.code,
      kind: family === 'alert' ? 'alert' : 'event',
      category: securityEvents[event.type]?.category ?? categories[family] ?? ['process'],
      type: securityEvents[event.type]?.type ?? (family === 'session' ? [event.type === 'session.started' ? 'start' : 'end'] : family === 'grant' || family === 'request' ? ['access'] : ['info']),
      outcome: outcome(event),
      sequence: event.seq,
      dataset: 'loupe.audit',
      provider: 'loupe-broker',
      reason: event.reason ?? (event.kind === 'security' && typeof data.reason === 'string' ? data.reason : undefined),
    },
    source: typeof data.source === 'string' ? { ip: data.source.replace(/^::ffff:/, '') } : undefined,
    user_agent: typeof data.userAgent === 'string' ? { original: data.userAgent } : undefined,
    user: event.actor
      ? { name: event.actor.sub, full_name: event.actor.name, roles, group: { name: event.actor.groups } }
      : data.actor
        ? { name: data.actor.sub, full_name: data.actor.name, group: { name: data.actor.groups } }
        : undefined,
    related: { user: [...new Set(users)], hash: [event.hash] },
    labels: {
      stream: event.stream,
      session: event.kind === 'session' ? event.stream : typeof data.session === 'string' ? data.session : undefined,
      grant: event.grant ?? data.grantId,
      target: event.target ?? data.target,
      mode: event.mode ?? data.mode,
      ticket: event.ticket,
    },
    loupe: { stream_kind: event.kind, prev: event.prev, hash: event.hash, data },
  };
}
