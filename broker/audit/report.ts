import { sessionHadV8Evaluation, v8EvaluationBanner } from '../../common/transcript';
import type { AuditEvent } from './events';
import type { VerifyResult } from './verify';

const escapeHtml = (value: unknown) => String(value ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);

const short = (value: unknown, max = 160) => {
  const text = typeof value === 'string' ? value : JSON.stringify(value);
  return text === undefined ? '' : text.length > max ? `${text.slice(0, max)}…` : text;
};

type Row = { seq: number; time: string; kind: string; what: string; detail: string; tone: 'normal' | 'refused' | 'alert' | 'end' };

/** An evaluation's outcome in words: V8's side-effect refusal, another error's first line, or the value. */
function outcomeOf(response: Record<string, any> | undefined): string {
  if (!response) return 'no answer recorded';
  if (response.error) return `error: ${short(response.error.message)}`;
  const error = response.result?.error as string | undefined;
  if (error) return /Possible side-effect/.test(error) ? 'refused by V8: possible side effect' : `threw: ${short(error.split('\n')[0])}`;
  return `→ ${short(response.result?.preview ?? '')}`;
}

/** "app.js:15" from a breakpoint request, whether it named a URL, a URL pattern or a script. */
function breakpointPlace(params: Record<string, any> | undefined): string {
  const where = params?.url ?? (params?.urlRegex ? String(params.urlRegex).replace(/\\(.)/g, '$1').replace(/[$^]/g, '') : params?.location ? `script ${params.location.scriptId}` : 'function');
  const line = params?.lineNumber ?? params?.location?.lineNumber;
  return `${String(where).split('/').pop()}${line !== undefined ? ` line ${line + 1}` : ''}`;
}

const endReasons: Record<string, string> = {
  client_closed: 'the developer disconnected',
  client_unresponsive: "the developer's client stopped answering (frozen or cut off)",
  policy: 'the policy changed and no longer allowed the session',
  expired: 'the grant expired',
  revoked: 'the grant was revoked',
  shutdown: 'the broker shut down',
  target_gone: 'the target process went away',
  target_unresponsive: 'the target stopped answering its inspector (the link was cut)',
  internal_error: 'the broker failed handling one of its messages (the fault and a digest of the frame are recorded)',
  audit_failure: 'the audit store was unavailable (failed closed)',
  broker_crashed: 'the broker stopped abruptly (recovered from its write-ahead log)',
};

const who = (actor: { sub?: string; name?: string } | undefined) => (actor ? (actor.name && actor.name !== actor.sub ? `${actor.name} (${actor.sub})` : String(actor.sub)) : '?');
const approverList = (list: { sub: string; name?: string }[] | undefined) => (list ?? []).map((a) => who(a)).join(', ');

/** " with V8 evaluation" for a grant or request that has or asks for the privilege. */
const v8 = (d: Record<string, any>) => (d.evaluation === 'v8' ? ' with V8 evaluation' : '');

/** Grant and access-request records (the broker's grant stream), one row each. */
function grantRow(e: AuditEvent): Omit<Row, 'seq' | 'time'> | undefined {
  const d = e.data as Record<string, any>;
  const request = d.requestId ? `request ${String(d.requestId).slice(0, 8)}` : '';
  switch (e.type) {
    case 'grant.requested':
      return {
        kind: 'grant',
        what: `${who(d.actor)} asks for ${d.mode}${v8(d)} on ${d.target} for ${d.durationSeconds} s`,
        detail: `${short(d.reason)}${d.ticket ? ` · ticket ${d.ticket}` : ''}`,
        tone: 'normal',
      };
    case 'grant.issued':
      return {
        kind: 'grant',
        what: `grant ${String(d.grantId).slice(0, 8)} issued to ${who(d.actor)} for ${d.mode}${v8(d)} on ${d.target}`,
        detail: `${d.evaluation === 'v8' ? 'app code could run; redaction best-effort · ' : ''}until ${d.expiresAt}${d.capped ? ' (capped by the rule)' : ''}${d.approvedBy ? ` · approved by ${approverList(d.approvedBy)} (${request})` : ''} · ${d.rule}`,
        tone: 'normal',
      };
    case 'grant.refused':
      return { kind: 'grant', what: `grant refused to ${who(d.actor)} on ${d.target}`, detail: `${d.message} [rule ${d.rule}]`, tone: 'refused' };
    case 'grant.revoked':
      return { kind: 'grant', what: `grant ${String(d.grantId).slice(0, 8)} of ${d.holder} revoked by ${who(d.actor)}`, detail: '', tone: 'end' };
    case 'request.created':
      return {
        kind: 'approval',
        what: `${request}: ${who(d.actor)} asks for ${d.mode}${v8(d)} on ${d.target}; needs ${d.minApprovals} approval(s) by ${(d.approvers ?? []).join(' or ')}`,
        detail: `${d.cause ? `because of alert ${d.cause.rule}: ${short(d.cause.message)} · ` : ''}${short(d.reason)}${d.ticket ? ` · ticket ${d.ticket}` : ''} · decide by ${d.expiresAt}`,
        tone: d.cause ? 'alert' : 'normal',
      };
    case 'request.approved':
      return {
        kind: 'approval',
        what: `${request} approved by ${who(d.actor)} (${d.approvals} of ${d.minApprovals})${d.status === 'approved' ? ': approved, the requester may collect the grant' : ''}`,
        detail: d.comment ? `“${short(d.comment)}”` : '',
        tone: 'normal',
      };
    case 'request.denied':
      return { kind: 'approval', what: `${request} of ${who(d.requester)} denied by ${who(d.actor)}`, detail: `“${short(d.comment)}”`, tone: 'refused' };
    case 'request.expired':
      return {
        kind: 'approval',
        what: `${request} of ${who(d.requester)} expired (${d.was === 'approved' ? 'approved, never collected' : `${d.approvals} of ${d.minApprovals} approvals`})`,
        detail: `at ${d.expiredAt}`,
        tone: 'end',
      };
    case 'request.collected':
      return {
        kind: 'approval',
        what: `${request} collected by ${who(d.actor)} as grant ${String(d.grantId).slice(0, 8)}`,
        detail: `approved by ${approverList(d.approvedBy)} · until ${d.expiresAt}`,
        tone: 'normal',
      };
    case 'request.withdrawn':
      return { kind: 'approval', what: `${request} withdrawn by ${who(d.actor)}`, detail: `it was ${d.was}`, tone: 'end' };
    case 'request.decision_refused':
      return { kind: 'approval', what: `${who(d.actor)} may not ${d.action} ${request}`, detail: `${d.message} [${d.code}]`, tone: 'refused' };
    case 'request.approval_required':
      return { kind: 'approval', what: `alert ${d.rule}: ${d.user}'s next grant on ${d.target} needs an owner's approval`, detail: short(d.message), tone: 'alert' };
    default:
      return undefined;
  }
}

/** Records read (or rows made) between two breaths of a report's making: see reportParts. */
const recordsPerBreath = 5000;

/**
 * One line of the timeline per thing an auditor cares about, into `rows`; request and response are joined. Yields an
 * empty part every recordsPerBreath records, where the broker lets its event loop turn.
 */
function* timeline(events: readonly AuditEvent[], rows: Row[]): Generator<string> {
  const v8 = sessionHadV8Evaluation(events);
  const responses = new Map<number, AuditEvent>();
  for (const [i, e] of events.entries()) {
    if (e.type === 'cdp.response' && typeof e.data.requestSeq === 'number') responses.set(e.data.requestSeq, e);
    if (i % recordsPerBreath === recordsPerBreath - 1) yield '';
  }
  for (const [i, e] of events.entries()) {
    if (i % recordsPerBreath === recordsPerBreath - 1) yield '';
    const time = e.time.slice(11, 23);
    const push = (row: Omit<Row, 'seq' | 'time'>) => rows.push({ seq: e.seq, time, ...row });
    try {
      row(e, push);
    } catch (err) {
      // Only a record that failed verification has a shape the rows do not expect: it gets a row saying so.
      push({ kind: e.type, what: `record ${e.seq}`, detail: `cannot be shown (${(err as Error).message}): ${short(e.data, 200)}`, tone: 'refused' });
    }
  }

  function row(e: AuditEvent, push: (row: Omit<Row, 'seq' | 'time'>) => void): void {
    const d = e.data as Record<string, any>;
    const response = responses.get(e.seq)?.data as Record<string, any> | undefined;
    const outcome = outcomeOf(response);
    switch (e.type) {
      case 'session.started':
        push({
          kind: 'session',
          what: `session started${d.evaluation === 'v8' ? ' with V8 evaluation (privileged)' : ''}`,
          detail: `inspector ${d.inspector}, grant expires ${d.expiresAt}`,
          tone: d.evaluation === 'v8' ? 'alert' : 'normal',
        });
        break;
      case 'session.ended':
        push({ kind: 'session', what: `session ended: ${endReasons[d.endReason] ?? d.endReason}`, detail: d.detail ?? '', tone: 'end' });
        break;
      case 'cdp.breakpoint.set':
        push({
          kind: 'breakpoint',
          what: `set at ${breakpointPlace(d.params)}`,
          detail: `${d.condition ? `condition ${short(d.condition)} (checked by the broker)` : ''}${response?.error ? ` ${outcome}` : ''}`,
          tone: response?.error ? 'refused' : 'normal',
        });
        break;
      case 'cdp.breakpoint.removed':
        push({ kind: 'breakpoint', what: `removed ${short(d.params?.breakpointId)}`, detail: '', tone: 'normal' });
        break;
      case 'cdp.breakpoint.hit':
      case 'cdp.paused':
        push({
          kind: 'pause',
          what: e.type === 'cdp.breakpoint.hit' ? `breakpoint hit at ${d.frame ?? '?'}` : `paused (${d.reason}) at ${d.frame ?? '?'}`,
          detail: (d.stack ?? []).slice(1, 4).join(' ← '),
          tone: 'normal',
        });
        break;
      case 'cdp.breakpoint.condition':
        push({ kind: 'condition', what: `condition ${short(d.condition, 80)} → ${d.value}`, detail: d.detail ?? '', tone: d.detail ? 'refused' : 'normal' });
        break;
      case 'cdp.evaluate':
        push({
          kind: v8 ? 'evaluate (V8)' : 'evaluate',
          what: short(d.params?.expression, 200),
          detail: `${d.frame ? `in ${d.frame} ` : ''}${outcome}`,
          tone: /^(refused|error|threw)/.test(outcome) ? 'refused' : 'normal',
        });
        break;
      case 'cdp.properties.read': {
        const names = (response?.result?.properties ?? []).map((p: { name: string; preview?: string }) => `${p.name}=${short(p.preview, 40)}`);
        push({ kind: 'read', what: `read ${d.object ?? d.params?.objectId}`, detail: names.slice(0, 20).join(', ') + (names.length > 20 ? ` … (${names.length})` : ''), tone: 'normal' });
        break;
      }
      case 'cdp.refused':
        push({ kind: 'refused', what: `${d.method ?? 'frame'} refused`, detail: `${d.message} [rule ${d.rule}]`, tone: 'refused' });
        break;
      case 'cdp.step':
      case 'cdp.resume':
        push({ kind: e.type === 'cdp.step' ? 'step' : 'resume', what: d.method, detail: '', tone: 'normal' });
        break;
      case 'snapshot.captured': {
        const top = (d.frames ?? [])[0];
        const names = (top?.scopes ?? []).flatMap((sc: any) => (sc.properties ?? []).map((p: any) => p.name));
        push({
          kind: 'snapshot',
          what: `captured at ${top ? `${top.functionName} (${String(top.url).split('/').pop()}:${top.lineNumber + 1})` : '?'}`,
          detail: `${names.slice(0, 20).join(', ')}${names.length > 20 ? ' …' : ''} · ${d.bytes} bytes, target held ${d.pauseMs} ms${d.truncated ? `, cut at ${d.truncated}` : ''}`,
          tone: 'normal',
        });
        break;
      }
      case 'cdp.logpoint':
        push({ kind: 'logpoint', what: short(d.message, 200), detail: `at ${d.frame}`, tone: 'normal' });
        break;
      case 'snapshot.throttled':
      case 'cdp.breakpoint.suspended':
        push({ kind: 'limit', what: `breakpoint ${short(d.breakpointId, 60)}`, detail: d.reason, tone: 'alert' });
        break;
      case 'watchdog.resumed':
        push({ kind: 'watchdog', what: `target resumed by the watchdog after ${d.maxPauseSeconds} s`, detail: '', tone: 'alert' });
        break;
      case 'client.absent':
        push({ kind: 'session', what: 'breakpoints off until the client is back', detail: `${(d.breakpoints ?? []).length} breakpoint(s) taken out of the target: ${d.why}`, tone: 'alert' });
        break;
      case 'client.returned':
        push({ kind: 'session', what: 'the client is back: breakpoints on again', detail: `${(d.breakpoints ?? []).length} breakpoint(s) set again`, tone: 'normal' });
        break;
      case 'client.unresponsive':
        push({ kind: 'session', what: `the client answered nothing for ${d.silentMs} ms`, detail: `bound ${d.boundMs} ms, pinged every ${d.pingIntervalMs} ms`, tone: 'alert' });
        break;
      default: {
        const row = e.kind === 'security' ? securityRow(e) : grantRow(e);
        if (row) push(row);
        else if (e.type.startsWith('alert.')) push({ kind: 'alert', what: e.type, detail: short(d), tone: 'alert' });
      }
    }
  }
}

/**
 * A record as the report reads it. One that failed verification may be any JSON object (a field missing, or of
 * another type); the report still renders, marks it, and shows what it holds.
 */
function readable(e: AuditEvent): AuditEvent {
  const object = (v: unknown) => (v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined);
  const actor = object(e.actor);
  return {
    ...e,
    seq: Number.isSafeInteger(e.seq) ? e.seq : -1,
    time: typeof e.time === 'string' ? e.time : '',
    type: (typeof e.type === 'string' ? e.type : '(no type)') as AuditEvent['type'],
    data: object(e.data) ?? {},
    ...(e.actor !== undefined ? { actor: { ...actor, groups: Array.isArray(actor?.groups) ? actor.groups : [] } as unknown as AuditEvent['actor'] } : {}),
  };
}

/** Rows of the security stream: refusals at the broker's edges, session faults, and what the queue had to count. */
function securityRow(e: AuditEvent): Omit<Row, 'seq' | 'time'> | undefined {
  const d = e.data as Record<string, any>;
  const from = d.source ? ` from ${d.source}` : '';
  switch (e.type) {
    case 'attach.refused':
      return {
        kind: 'attach',
        what: `attach refused (${d.reason})${d.grantId ? ` on grant ${String(d.grantId).slice(0, 8)}` : ''}${d.user ? ` of ${d.user}` : ''}${from}`,
        detail: `${d.message ?? ''}${d.credentialDigest ? ` · ${d.credential} ${d.credentialDigest}` : ''}`,
        tone: 'refused',
      };
    case 'identity.rejected':
      return {
        kind: 'identity',
        what: `identity token rejected (${d.reason})${d.issuer ? ` issued by ${d.issuer}` : ''}${from}`,
        detail: `${d.method ?? ''} ${d.path ?? ''} · ${d.message ?? ''}${d.tokenDigest ? ` · token ${d.tokenDigest}` : ''}`,
        tone: 'refused',
      };
    case 'grant.malformed':
      return { kind: 'grant', what: `malformed grant request by ${d.actor?.sub ?? '?'}${from}`, detail: String(d.message ?? ''), tone: 'refused' };
    case 'session.fault':
      return { kind: 'fault', what: `session ${String(d.session).slice(0, 8)} of ${d.user ?? '?'} on ${d.target ?? '?'} ended on a fault`, detail: short(d.fault, 200), tone: 'alert' };
    case 'broker.fault':
      return { kind: 'fault', what: `fault in the broker at ${d.where ?? '?'}`, detail: short(d.error ?? d, 200), tone: 'alert' };
    case 'security.events_dropped':
      return { kind: 'limit', what: `${d.count} security events counted, not recorded (queue full)`, detail: `${short(d.byType, 200)} · ${d.from} → ${d.to}`, tone: 'alert' };
    case 'security.segment_opened':
      return {
        kind: 'segment',
        what: 'segment opened',
        detail: d.previous ? `after ${d.previous} (head ${String(d.previousHead).slice(0, 12)}…)` : 'first segment of this broker run',
        tone: 'normal',
      };
    case 'stream.closed':
      return { kind: 'segment', what: `segment closed: ${d.endReason}`, detail: d.next ? `continues in ${d.next}` : (d.detail ?? ''), tone: 'end' };
  }
  return undefined;
}

function securityFacts(events: readonly AuditEvent[]): string {
  const count = (type: string) => events.filter((e) => e.type === type).length;
  const dropped = events.filter((e) => e.type === 'security.events_dropped').reduce((n, e) => n + Number((e.data as { count?: number }).count ?? 0), 0);
  return `<dl>
<dt>When</dt><dd>${escapeHtml(events[0]?.time)} → ${escapeHtml(events.at(-1)?.time)}</dd>
<dt>Recorded</dt><dd>refused attaches: ${count('attach.refused')}; rejected identity tokens: ${count('identity.rejected')}; malformed grant requests: ${count('grant.malformed')}; session faults: ${count('session.fault')}; alerts: ${events.filter((e) => e.type.startsWith('alert.')).length}${dropped ? `; <b>${dropped} more counted, not recorded one by one (queue full)</b>` : ''}</dd>
</dl>`;
}

/** The summary of a grant stream: what was asked, granted, refused, approved and denied. */
function grantFacts(events: readonly AuditEvent[]): string {
  const count = (type: string) => events.filter((e) => e.type === type).length;
  const figures: [string, string][] = [
    ['grants requested', 'grant.requested'],
    ['issued', 'grant.issued'],
    ['refused', 'grant.refused'],
    ['revoked', 'grant.revoked'],
    ['access requests', 'request.created'],
    ['approvals', 'request.approved'],
    ['denied', 'request.denied'],
    ['expired', 'request.expired'],
    ['collected', 'request.collected'],
    ['refused decisions', 'request.decision_refused'],
  ];
  return `<dl>
<dt>When</dt><dd>${escapeHtml(events[0]?.time)} → ${escapeHtml(events.at(-1)?.time)}</dd>
</dl>
<div class="counts">${figures.map(([label, type]) => `<span>${label}: ${count(type)}</span>`).join(' ')}</div>
`;
}

export interface ReportOptions {
  generatedAt?: Date;
  source?: string;
  approval?: { requestId?: string; approvedBy?: readonly { sub: string; name: string; at: string }[] };
}

/** Timeline rows a report part holds: the broker sends a report part by part, the event loop free between them. */
const rowsPerPart = 1000;

/** A self-contained HTML page an auditor can read and archive. */
export function renderReport(result: VerifyResult, options: ReportOptions = {}): string {
  return [...reportParts(result, options)].join('');
}

/**
 * The report in parts: the page's head and facts, its timeline rowsPerPart rows at a time, its end. Empty parts come
 * while the page's facts are made (every recordsPerBreath records), so a caller can let other work run between.
 */
export function* reportParts(result: VerifyResult, options: ReportOptions = {}): Generator<string> {
  const events: AuditEvent[] = [];
  for (const [i, e] of result.events.entries()) {
    events.push(readable(e));
    if (i % recordsPerBreath === recordsPerBreath - 1) yield '';
  }
  result = { ...result, events };
  const first = result.events[0];
  const last = result.events.at(-1);
  const ended = [...result.events].reverse().find((e) => e.type === 'session.ended');
  const rows: Row[] = [];
  yield* timeline(result.events, rows);
  const counts = (kind: string, what?: RegExp) => rows.filter((r) => r.kind.replace(/ \(V8\)$/, '') === kind && (!what || what.test(r.what))).length;
  const v8 = !(first?.kind === 'grants' || first?.kind === 'security') && sessionHadV8Evaluation(result.events);
  const badSeqs = new Set<number>();
  for (const [i, problem] of result.problems.entries()) {
    for (const m of problem.matchAll(/\(seq (\d+)\)/g)) badSeqs.add(Number(m[1]));
    if (i % recordsPerBreath === recordsPerBreath - 1) yield '';
  }
  // A failed record the timeline does not show (a response, say) still gets a row of its own. Looked up by seq, and
  // sorted once: a transcript changed throughout names a record in each of its problems.
  if (badSeqs.size > 0) {
    const bySeq = new Map<number, AuditEvent>();
    for (const [i, e] of result.events.entries()) {
      if (!bySeq.has(e.seq)) bySeq.set(e.seq, e);
      if (i % recordsPerBreath === recordsPerBreath - 1) yield '';
    }
    const shown = new Set(rows.map((r) => r.seq));
    const before = rows.length;
    for (const seq of badSeqs) {
      const event = bySeq.get(seq);
      if (!event || shown.has(seq)) continue;
      shown.add(seq);
      rows.push({ seq, time: event.time.slice(11, 23), kind: event.type, what: `record ${seq}`, detail: short(event.data, 200), tone: 'normal' });
    }
    if (rows.length > before) rows.sort((a, b) => a.seq - b.seq);
  }
  const grants = first?.kind === 'grants' || first?.kind === 'security';
  const security = first?.kind === 'security';
  const approval = options.approval?.approvedBy
    ? `approved by ${approverList([...options.approval.approvedBy])} (access request ${options.approval.requestId ?? '?'}, from the broker's grant records)`
    : undefined;
  const verdict = result.ok
    ? `<div class="ok">Verified: ${result.events.length} records, every hash link and seal checks out${result.manifest ? ', sealed by its manifest' : ''}.</div>`
    : `<div class="bad">Verification FAILED: ${escapeHtml(result.problems[0])}${result.problems.length > 1 ? ` (and ${result.problems.length - 1} more problem(s))` : ''}<br><span class="warn">Everything below comes from records that failed verification: do not rely on it. Rows of records named in the problems are marked.</span></div>
<h2>Problems</h2><ul>${result.problems.map((p) => `<li>${escapeHtml(p)}</li>`).join('')}</ul>`;
  const sessionFacts = `<dl>
<dt>Who</dt><dd>${escapeHtml(first?.actor?.name)} (<code>${escapeHtml(first?.actor?.sub)}</code>; groups ${escapeHtml(first?.actor?.groups?.join(', '))})</dd>
<dt>Target</dt><dd>${escapeHtml(first?.target)} in ${escapeHtml(first?.mode)} mode</dd>
${v8 ? "<dt>Evaluation</dt><dd><b>V8 (privileged)</b>: expressions ran in the target's V8</dd>" : ''}
<dt>Why</dt><dd>${escapeHtml(first?.reason)}</dd>
<dt>Ticket</dt><dd>${escapeHtml(first?.ticket ?? '(none)')}</dd>
<dt>Grant</dt><dd><code>${escapeHtml(first?.grant)}</code>${approval ? ` · ${escapeHtml(approval)}` : ''}</dd>
<dt>When</dt><dd>${escapeHtml(first?.time)} → ${escapeHtml(last?.time)}${first && last ? ` (${Math.round((Date.parse(last.time) - Date.parse(first.time)) / 1000)} s)` : ''}</dd>
<dt>How it ended</dt><dd>${escapeHtml(ended ? (endReasons[String((ended.data as { endReason?: string }).endReason)] ?? (ended.data as { endReason?: string }).endReason) : 'no end recorded')}</dd>
</dl>
<div class="counts"><span>breakpoints set: ${counts('breakpoint', /^set /)};</span> <span>pauses: ${counts('pause')};</span> <span>evaluations: ${counts('evaluate')};</span> <span>variable reads: ${counts('read')};</span> <span>snapshots: ${counts('snapshot')};</span> <span>logpoints: ${counts('logpoint')};</span> <span>refusals: ${counts('refused') + rows.filter((r) => r.kind.startsWith('evaluate') && r.tone === 'refused').length};</span> <span>alerts: ${counts('alert') + counts('watchdog')}</span></div>`;
  yield `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Loupe ${security ? 'security segment' : grants ? 'grant stream' : 'session'} ${escapeHtml(first?.stream)}</title>
<style>
body{font:14px/1.45 system-ui,sans-serif;margin:24px;color:#1d2430;background:#fff}
h1{font-size:20px;margin:0 0 4px}.sub{color:#5a6472;margin-bottom:16px}
dl{display:grid;grid-template-columns:max-content 1fr;gap:4px 16px;margin:16px 0}dt{color:#5a6472}dd{margin:0}
.ok,.bad,.v8{padding:10px 14px;border-radius:6px;margin:12px 0;font-weight:600}.ok{background:#e6f6ea;color:#17612c}.bad{background:#fde8e8;color:#9b1c1c}.v8{background:#fff1d6;color:#7a4b00}
table{border-collapse:collapse;width:100%;margin-top:12px}th,td{text-align:left;padding:5px 8px;border-bottom:1px solid #e4e7eb;vertical-align:top}
th{background:#f4f6f8;font-weight:600}td.k{white-space:nowrap;color:#5a6472}tr.refused td{background:#fff4f4}tr.alert td{background:#fff8e6}tr.end td{background:#f4f6f8}tr.tampered td{background:#fde8e8;color:#9b1c1c}.warn{font-weight:400}
code{font:12px ui-monospace,monospace}.counts span{margin-right:16px}
</style></head><body>
<h1>${security ? 'Security events' : grants ? 'Grants and access requests' : `Debugging session on ${escapeHtml(first?.target ?? '?')}`}</h1>
<div class="sub">${security ? "segment of the broker's security stream" : grants ? 'grant stream of one broker run' : 'session'} <code>${escapeHtml(first?.stream)}</code>${options.source ? ` · ${escapeHtml(options.source)}` : ''}</div>
${verdict}
${v8 ? `<div class="v8">${escapeHtml(v8EvaluationBanner)}. This session's grant allowed evaluating expressions in V8, which may call the app's functions and getters (side effects V8 did not detect); values were redacted after the fact.</div>` : ''}
${security ? securityFacts(result.events) : grants ? grantFacts(result.events) : sessionFacts}
<table><thead><tr><th>time (UTC)</th><th>kind</th><th>what</th><th>detail</th></tr></thead><tbody>
`;
  const rowHtml = (r: Row) =>
    `<tr class="${badSeqs.has(r.seq) ? 'tampered' : r.tone}"><td class="k">${escapeHtml(r.time)}</td><td class="k">${badSeqs.has(r.seq) ? '⚠ ' : ''}${escapeHtml(r.kind)}</td><td>${escapeHtml(r.what)}</td><td>${badSeqs.has(r.seq) ? '<b>this record failed verification</b> · ' : ''}${escapeHtml(r.detail)}</td></tr>\n`;
  for (let i = 0; i < rows.length; i += rowsPerPart)
    yield rows
      .slice(i, i + rowsPerPart)
      .map(rowHtml)
      .join('');
  yield `</tbody></table>
${result.notes.length > 0 ? `<h2>Notes</h2><ul>${result.notes.map((p) => `<li>${escapeHtml(p)}</li>`).join('')}</ul>` : ''}
<p class="sub">Generated ${escapeHtml((options.generatedAt ?? new Date()).toISOString())} by Loupe.</p>
</body></html>
`;
}
