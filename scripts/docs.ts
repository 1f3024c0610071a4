// `npm run docs`: rewrites the generated tables in README.md, docs/ and CONTRIBUTING.md from the data in the code,
// so a reference table cannot say something the code does not. A region looks like
//   <!-- generated:allowlist -->
//   …
//   <!-- /generated:allowlist -->
// and everything between the markers is replaced. test/docs/docs.test.ts fails when the committed docs differ from
// what this script writes. The words next to each code (what an event records, when an error is answered) live
// here, keyed by the code's own types, so a new code without words fails the type check and the test.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { eventCodes, codeOf } from '../broker/audit/events';
import { LoupeError, type LoupeErrorCode } from '../broker/errors';
import { describeAllowlist, gateClientFrame } from '../broker/gate/cdpGate';
import { closeCodes, type EndReason } from '../common/session';
import { listConfigFields } from '../broker/config/schema';

export const root = join(__dirname, '..');

/** Every Markdown file of the documentation, relative to the repository root. */
export const docFiles = ['README.md', 'CONTRIBUTING.md', 'docs/developers.md', 'docs/owners.md', 'docs/auditors.md', 'docs/operators.md', 'docs/connect.md', 'docs/replicas.md'];

const table = (head: string[], rows: string[][]) => [`| ${head.join(' | ')} |`, `|${head.map(() => '---').join('|')}|`, ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n');

// ---- the CDP allowlist and the refused families (broker/gate/cdpGate.ts) ----

function allowlistTable(): string {
  const rows = describeAllowlist()
    .slice()
    .sort((a, b) => a.method.localeCompare(b.method))
    .map(({ method, modes }) => [`\`${method}\``, modes.join(', ')]);
  return table(['method', 'modes'], rows);
}

/** Families of refused methods; the reason in the table is the one the gate gives for each of them. */
const refusedFamilies: { label: string; methods: string[] }[] = [
  { label: '`Debugger.setScriptSource`, `Debugger.restartFrame`', methods: ['Debugger.setScriptSource', 'Debugger.restartFrame'] },
  { label: '`Debugger.setVariableValue`, `Debugger.setReturnValue`', methods: ['Debugger.setVariableValue', 'Debugger.setReturnValue'] },
  { label: '`Debugger.setInstrumentationBreakpoint`', methods: ['Debugger.setInstrumentationBreakpoint'] },
  { label: '`Runtime.compileScript`, `Runtime.runScript`', methods: ['Runtime.compileScript', 'Runtime.runScript'] },
  { label: '`Runtime.callFunctionOn`', methods: ['Runtime.callFunctionOn'] },
  { label: '`Runtime.addBinding`, `Runtime.removeBinding`', methods: ['Runtime.addBinding', 'Runtime.removeBinding'] },
  { label: '`Runtime.queryObjects`', methods: ['Runtime.queryObjects'] },
  { label: '`Runtime.terminateExecution`', methods: ['Runtime.terminateExecution'] },
  { label: '`Runtime.setCustomObjectFormatterEnabled`, `Runtime.setMaxCallStackSizeToCapture`', methods: ['Runtime.setCustomObjectFormatterEnabled', 'Runtime.setMaxCallStackSizeToCapture'] },
  { label: '`HeapProfiler.*`', methods: ['HeapProfiler.takeHeapSnapshot', 'HeapProfiler.startSampling'] },
  { label: '`Profiler.*`', methods: ['Profiler.start', 'Profiler.takePreciseCoverage'] },
  { label: '`NodeTracing.*`', methods: ['NodeTracing.start'] },
  { label: '`NodeWorker.*`', methods: ['NodeWorker.enable', 'NodeWorker.sendMessageToWorker'] },
  { label: '`NodeRuntime.*`', methods: ['NodeRuntime.notifyWhenWaitingForDisconnect'] },
  { label: '`Network.*`', methods: ['Network.enable'] },
  { label: 'anything else', methods: ['Storage.clearDataForOrigin', 'Page.navigate'] },
];

/** The gate's own answer to `method` in a pause session: the text after "refused by Loupe: ". */
function refusalReason(method: string): string {
  // With a parameter no client sends on its own: the bare request may be one a debugger makes at attach, which the
  // gate refuses in other words (broker/gate/clientRoutine.ts).
  const decision = gateClientFrame(JSON.stringify({ id: 1, method, params: { docs: true } }), false, 'pause', { maxFrameBytes: 1 << 20, evaluateTimeoutMs: 1000 });
  if (decision.action !== 'refuse') throw new Error(`docs: ${method} is listed as refused, but the gate forwards it`);
  const prefix = `${method} refused by Loupe: `;
  if (!decision.message.startsWith(prefix)) throw new Error(`docs: unexpected refusal of ${method}: ${decision.message}`);
  return decision.message.slice(prefix.length);
}

function refusedTable(): string {
  const rows = refusedFamilies.map(({ label, methods }) => {
    const reasons = new Set(methods.map(refusalReason));
    if (reasons.size !== 1) throw new Error(`docs: the gate gives ${label} different reasons: ${[...reasons].join(' / ')}`);
    return [label, [...reasons][0]!];
  });
  return table(['refused', "why (the gate's answer)"], rows);
}

// ---- audit event codes (broker/audit/events.ts) ----

const eventNotes: Record<keyof typeof eventCodes, string> = {
  'grant.requested': 'a grant request: target, mode, duration, reason, ticket',
  'grant.issued': 'a grant issued (for an access request: its approvers)',
  'grant.refused': 'a grant request refused by policy, with the rule',
  'grant.revoked': 'a grant revoked, and by whom',
  'request.created': 'an access request, and why approval is needed',
  'request.approved': 'one approval, with the count and whether the request is now approved',
  'request.denied': 'a denial, with the comment',
  'request.expired': 'an access request nobody decided (or collected) in time',
  'request.collected': 'the grant of an approved request collected, with its approvers',
  'request.withdrawn': 'its requester took the request back',
  'request.decision_refused': 'an approval or denial refused: self-approval, not an approver, not pending',
  'request.approval_required': 'an alert put a user on hold: their grant requests need approval',
  'policy.reloaded': 'the policy file reloaded, with what changed',
  'policy.reload_refused': 'an invalid new policy file refused; the old one stays in force',
  'session.started': 'a session attached',
  'session.ended': 'a session ended, with its `endReason`',
  'session.attach_refused': 'reserved for a refused attach in a session chain (refused attaches are recorded as `attach.refused`)',
  'session.ending': 'cleanup began: breakpoints removed, target resumed',
  'session.policy_applied': 'a live session narrowed to the stricter of its policy and a reloaded one',
  'session.lease_expired': "another replica's session ended by this one: its lease ran out (that replica died or lost the state database); grant stream",
  'cdp.request': 'a client request, before it is forwarded',
  'cdp.response': "the target's answer (`requestSeq`, result preview or error)",
  'cdp.response.missing': 'a forwarded request that got no answer',
  'cdp.refused': 'a request the gate refused: method (over 200 characters: its start, length and SHA-256), rule, message',
  'cdp.breakpoint.set': "a breakpoint set (its condition, if any, is the broker's)",
  'cdp.breakpoint.removed': 'a breakpoint removed',
  'cdp.breakpoint.hit': 'a breakpoint hit: frame and stack',
  'cdp.breakpoint.condition': "the broker's check of a condition on pause, and its result",
  'cdp.breakpoint.suspended': 'a breakpoint taken out over the pause budget, with the figures',
  'cdp.breakpoint.disabled': 'a breakpoint taken out because its condition depends on a redacted field (named)',
  'cdp.evaluate': 'an evaluation: expression and frame (the result is in its `cdp.response`)',
  'cdp.properties.read': 'a variable read: which object, e.g. `local scope of work (app.js:15)` (names and previews are in its `cdp.response`)',
  'cdp.step': 'a step',
  'cdp.resume': 'a resume',
  'cdp.paused': 'the target paused',
  'cdp.resumed': 'the target resumed',
  'snapshot.captured': 'a snapshot capture, whole, with the number of `reads`',
  'snapshot.throttled': 'a capture point throttled',
  'cdp.logpoint': 'a logpoint message, how long the hit held the target (`ms`) and parts skipped',
  'broker.request': "the broker's own command (condition check, cleanup, watchdog, throttling), with its `why`",
  'broker.response': "the answer to the broker's own command",
  'broker.response.missing': 'a request the target left unanswered past `limits.targetResponseSeconds`',
  'watchdog.resumed': 'the pause watchdog resumed the target',
  'client.events_dropped': 'target events shed toward a slow client (responses never are)',
  'target.invalid_frame': 'a target message that was malformed or over `limits.maxTargetFrameBytes`, not passed on',
  'client.unresponsive': 'a client that answered no ping for `limits.clientUnresponsiveMs`',
  'client.absent': "after a watchdog resume: the session's breakpoints taken out until its client acts",
  'client.returned': 'the client acted again: its breakpoints set back',
  'audit.degraded': 'the broker failed closed, with why and the bound (grant stream)',
  'audit.recovered': 'the audit trail takes records again (grant stream)',
  'stream.closed': 'a grant stream or security segment closed, with why (`shutdown`, `rotated`, …)',
  'audit.wal_repaired': 'a torn write-ahead-log tail cut back on start (grant stream)',
  'audit.reconciled': 'records taken back from the store on start instead of an overlapping upload (grant stream)',
  'state.unavailable': 'the shared state database (PostgreSQL) stopped answering: new grants and attaches refused, live sessions bounded by `state.outageGrace` (grant stream)',
  'state.recovered': 'the shared state database answers again, with how long it was away (grant stream)',
  'attach.refused': 'security stream: a refused attach, with a reason',
  'identity.rejected': 'security stream: a rejected identity token (issuer, claimed subject, reason, digest)',
  'grant.malformed': 'security stream: an unreadable or invalid grant request',
  'session.fault': 'security stream: a session ended on a fault, naming its `session.ended` hash',
  'broker.fault': 'security stream: a fault the process guard caught',
  'security.events_dropped': 'security stream: how many events a flood cost, of which types, when',
  'security.segment_opened': "security stream: a new segment, naming the previous one's id and head hash",
};

function eventsTable(): string {
  const rows: [string, string, string][] = Object.entries(eventCodes).map(([type, code]) => {
    const note = (eventNotes as Record<string, string>)[type];
    if (note === undefined) throw new Error(`docs: event ${type} (${code}) has no description in scripts/docs.ts`);
    return [`\`${type}\``, code, note];
  });
  for (const type of Object.keys(eventNotes)) if (!(type in eventCodes)) throw new Error(`docs: scripts/docs.ts describes ${type}, which is not an event`);
  rows.push(['`alert.<rule>`', codeOf('alert.rule'), "an alert, with its evidence (see the owners' guide)"]);
  rows.sort((a, b) => a[1].localeCompare(b[1]) || a[0].localeCompare(b[0]));
  return table(['event', 'code', 'what it records'], rows);
}

// ---- close codes of an attach socket ----

const closeNotes: Record<EndReason, string> = {
  client_closed: 'closed by the client',
  expired: 'the grant expired',
  revoked: 'the grant was revoked',
  shutdown: 'the broker is shutting down',
  target_gone: 'the target process went away',
  audit_failure: 'the audit trail cannot take records (Loupe fails closed)',
  alert: 'ended by an alert rule (`action: end-session`)',
  policy: 'a reloaded policy no longer allows the session',
  internal_error: 'a fault handling one frame of this session',
  client_unresponsive: 'the client answered no ping for `limits.clientUnresponsiveMs`',
  target_unresponsive: 'the target left a request unanswered for `limits.targetResponseSeconds`',
  state_unavailable: 'the shared state database (PostgreSQL) was unreachable for longer than `state.outageGrace`, or another replica ended the session on its expired lease',
};

function closeCodesTable(): string {
  const rows = (Object.entries(closeCodes) as [EndReason, number][])
    .sort((a, b) => a[1] - b[1])
    .map(([reason, code]) => {
      const note = closeNotes[reason];
      if (note === undefined) throw new Error(`docs: close reason ${reason} (${code}) has no description in scripts/docs.ts`);
      return [String(code), `\`${reason}\``, note];
    });
  return table(['code', 'reason', 'why the session ended'], rows);
}

// ---- error codes of the HTTP API (broker/errors.ts) ----

const errorNotes: Record<LoupeErrorCode, string> = {
  bad_request: 'the request is malformed; the message says which field',
  payload_too_large: 'the body is too large',
  report_too_large: 'the transcript is over `audit.maxReportBytes`: the broker does not render its report; download the transcript and render it with `loupe audit render`',
  request_timeout: 'the request did not arrive in time: headers within 10 s, the whole request within 30 s',
  headers_too_large: "the request's headers are over the server's limit",
  not_found: 'no such route, grant, request or session',
  method_not_allowed: 'the route exists, not with this method',
  unauthenticated: 'no bearer token',
  token_expired: 'the identity token has expired',
  token_invalid: 'the token does not verify (signature, issuer, audience, algorithm), or a ticket is unknown, used or expired',
  forbidden: 'the caller lacks the role the call needs',
  policy_refused: 'policy refuses the grant; `error.rule` names the rule',
  grant_revoked: 'the grant was revoked',
  grant_expired: 'the grant has expired',
  session_busy: 'the grant already has a live session',
  self_approval: 'the requester tried to decide their own access request',
  not_approver: 'the caller holds no approver role of the request',
  request_not_pending: 'the access request is decided, expired, or already approved by the caller',
  request_not_approved: 'the access request is not approved (the message says why)',
  target_unreachable: "the broker cannot reach the target's inspector, or its `/json/list` answer is bad",
  issuer_unavailable: "the broker cannot reach the token's identity provider to check it; retry",
  audit_unavailable: 'the audit trail failed closed (store or disk); retry once it recovers',
  state_unavailable: 'the shared state database (PostgreSQL) cannot be reached: new grants, tickets, approvals and attaches are refused; retry once it is back',
  config_invalid: "the broker's configuration or state directory is unusable",
  internal: 'a fault in the broker',
};

function errorCodesTable(): string {
  const rows = (Object.entries(errorNotes) as [LoupeErrorCode, string][])
    .map(([code, note]) => [`\`${code}\``, String(new LoupeError(code, note).status), note] as const)
    .sort((a, b) => a[1].localeCompare(b[1]) || a[0].localeCompare(b[0]))
    .map((r) => [...r]);
  return table(['code', 'HTTP status', 'when'], rows);
}

// ---- every configuration field (broker/config/schema.ts) ----

function configTable(): string {
  const cell = (text: string) => text.replace(/\|/g, '\\|').replace(/\n/g, ' ');
  const rows = listConfigFields().map((f) => [`\`${f.path}\``, cell(f.type), f.default === undefined ? (f.required ? 'required' : '') : `\`${cell(JSON.stringify(f.default))}\``, cell(f.description)]);
  return table(['field', 'type', 'default', 'what it does'], rows);
}

/** Region name → its content. `undefined`: the region is kept by hand. */
export const generators: Record<string, (() => string) | undefined> = {
  allowlist: allowlistTable,
  refused: refusedTable,
  events: eventsTable,
  'close-codes': closeCodesTable,
  'error-codes': errorCodesTable,
  config: configTable,
};

const regionPattern = /(<!-- generated:([a-z-]+) -->\n)([\s\S]*?)(<!-- \/generated:\2 -->)/g;

/** The text with every generated region rewritten; throws on an unknown region name. */
export function regenerate(text: string, file = 'text'): string {
  return text.replace(regionPattern, (_whole, open: string, name: string, body: string, close: string) => {
    if (!(name in generators)) throw new Error(`docs: ${file} has a region "${name}" that scripts/docs.ts does not know`);
    const generate = generators[name];
    return generate ? `${open}${generate()}\n${close}` : `${open}${body}${close}`;
  });
}

/** Regions named in a text. */
export const regionsOf = (text: string): string[] => [...text.matchAll(regionPattern)].map((m) => m[2]!);

if (require.main === module) {
  for (const file of docFiles) {
    const path = join(root, file);
    const before = readFileSync(path, 'utf8');
    const after = regenerate(before, file);
    if (after !== before) {
      writeFileSync(path, after);
      process.stdout.write(`docs: ${file} rewritten\n`);
    }
  }
}
