/**
 * The gate as one session applies it: the allowlist and rewrites of cdpGate.ts, then what the session's state
 * refuses (it is ending, the audit trail failed closed), then the target policy's evaluation rules (refused,
 * answered with the redaction marker without running, or allowed with the roots whose sensitive values are learned
 * first), and after that probe the refusal of a reshaping call. Every allow, rewrite or refusal of a client message
 * is decided here or in cdpGate.ts; the session carries the decision out and records it.
 */
import type { BrokerLimits, TargetConfig } from '../config/types';
import type { Grant } from '../grants/grantStore';
import { marker, type Redactor } from '../policy/redact';
import { cdpErrorCodes, gateClientFrame, truncate, type GateDecision } from './cdpGate';
import { defaultEvalBudget, parseLoupeExpression } from '../eval';
import { reachableValuesProbe, screenEvaluation } from './evaluationCheck';
import { completionProbe, RoutineAllowance, type ClientRoutine } from './clientRoutine';
import { reservedGroup, unknownObject, type HandedObjects } from './handedObjects';

export type Forward = Extract<GateDecision, { action: 'forward' }>;
export type Refusal = Extract<GateDecision, { action: 'refuse' }>;

/** What the screen decides for one client frame. */
export type ScreenedFrame =
  | { readonly action: 'refuse'; readonly refusal: Refusal }
  /** Names a redacted field: recorded as `record`, never run, answered with `reply` (the marker). */
  | { readonly action: 'redact'; readonly decision: Forward; readonly record: Record<string, unknown>; readonly reply: Record<string, unknown> }
  /** `roots`: what the reachable-values probe reads first; `transforms`: a reshaping call refused if the roots reach secrets. */
  | { readonly action: 'forward'; readonly decision: Forward; readonly roots: readonly string[]; readonly transforms?: string };

/** The session state the screen refuses on. */
export interface SessionState {
  readonly ending: boolean;
  readonly auditAccepting: boolean;
  /** Bytes of answers waiting for a client that does not read them, past limits.clientBufferBytes; else 0. */
  readonly clientBacklog?: number;
}

export interface TargetScreenContext {
  readonly grant: Grant;
  /** The target's policy now (a policy reload can make it stricter during the session). */
  target(): TargetConfig;
  readonly redactor: Redactor;
  readonly limits: BrokerLimits;
  /**
   * 'loupe' (the default): the broker interprets expressions and taints what it reads, so the screen keeps the
   * policy's refusals (evaluation.allow, denyIdentifiers, syntax) and checks conditions and logpoint parts are Loupe
   * expressions; 'v8' (a grant's privilege): V8 runs them, and the screen also refuses what could be an oracle.
   */
  readonly evaluation?: 'loupe' | 'v8';
  /** The object ids the client has been given: a request naming another is refused (see handedObjects.ts). */
  readonly handed?: HandedObjects;
}

const refusal = (decision: { id: number | null; method?: string }, rule: string, message: string): Refusal => ({
  action: 'refuse',
  id: decision.id,
  method: decision.method,
  code: cdpErrorCodes.refused,
  rule,
  message,
});

export class TargetScreen {
  private readonly routines = new RoutineAllowance();

  constructor(private readonly context: TargetScreenContext) {}

  /** Decides one client frame. Runs synchronously, so a fault in it is a fault of the frame. */
  decide(data: Buffer, isBinary: boolean, state: SessionState): ScreenedFrame {
    const decision = gateClientFrame(data, isBinary, this.context.grant.mode, this.context.limits);
    if (state.ending || !state.auditAccepting) {
      const why = state.ending ? 'the session is ending' : 'the audit trail cannot record it (Loupe fails closed)';
      return { action: 'refuse', refusal: refusal(decision, state.ending ? 'session.ending' : 'audit.unavailable', `${decision.method ?? 'message'} refused: ${why}`) };
    }
    if (state.clientBacklog) {
      // A small request can ask for a large answer: none is asked while the client leaves its answers unread.
      const message = `${decision.method ?? 'message'} refused: ${state.clientBacklog} bytes of answers wait for this client to read them (limits.clientBufferBytes ${this.context.limits.clientBufferBytes})`;
      return { action: 'refuse', refusal: refusal(decision, 'limits.clientBufferBytes', message) };
    }
    if (decision.action === 'refuse' && decision.routine && !this.routines.take(decision.routine)) {
      // Sent more often than a client does at attach: a refusal like any other, counted by the alert.
      const { routine, ...counted } = decision;
      return {
        action: 'refuse',
        refusal: { ...counted, rule: `refused:${routine.method}`, message: `${routine.method} refused by Loupe: ${routine.why} (sent ${routine.perSession}+ times in this session)` },
      };
    }
    if (decision.action === 'refuse') return { action: 'refuse', refusal: decision };
    const unknown = this.context.handed ? unknownObject(decision.params, this.context.handed) : undefined;
    if (unknown) {
      const message = `${decision.method} refused: ${unknown.param} ${JSON.stringify(truncate(unknown.id, 80))} is not an object this session was given (a request may name only objects the broker has sent to this client)`;
      return { action: 'refuse', refusal: refusal(decision, 'objectId.unknown', message) };
    }
    const group = reservedGroup(decision.method, decision.params);
    if (group !== undefined) {
      const message = `${decision.method} refused: the object group ${JSON.stringify(truncate(group, 80))} holds objects the broker reads to redact what this session is shown (V8 releases a pause's own group when it resumes)`;
      return { action: 'refuse', refusal: refusal(decision, 'objectGroup.reserved', message) };
    }
    const screened = this.screen(decision);
    if (screened.refuse) {
      const quiet = this.quietCompletion(decision);
      return { action: 'refuse', refusal: { ...refusal(decision, screened.rule!, screened.refuse), ...(quiet ? { routine: quiet } : {}) } };
    }
    if (screened.redact !== undefined) return { action: 'redact', decision, ...this.redactedAnswer(decision, screened.redact) };
    return { action: 'forward', decision, roots: screened.roots, ...(screened.transforms ? { transforms: screened.transforms } : {}) };
  }

  /** A refused evaluation that is a client's name completion (clientRoutine.ts), within the session's allowance. */
  quietCompletion(decision: Forward): ClientRoutine | undefined {
    if (decision.handling !== 'evaluate' || !completionProbe.matches(decision.params)) return undefined;
    return this.routines.take(completionProbe) ? completionProbe : undefined;
  }

  /**
   * The target policy's evaluation rules for an evaluation, condition or logpoint: refused, answered with the
   * redaction marker without running, or allowed (with the roots whose reachable sensitive values are learned first).
   */
  private screen(decision: Forward): { refuse?: string; rule?: string; redact?: string; roots: readonly string[]; transforms?: string } {
    const policy = this.context.target().evaluation;
    const redactor = this.context.redactor;
    const sensitive = (name: string) => redactor.isSensitive(name);
    const checks: [string, 'evaluate' | 'condition' | 'logpoint'][] = [];
    if (decision.handling === 'evaluate') checks.push([String(decision.params.expression), 'evaluate']);
    if (decision.condition !== undefined) checks.push([decision.condition, 'condition']);
    for (const expression of decision.logpoint?.expressions ?? []) checks.push([expression, 'logpoint']);
    let roots: readonly string[] = [];
    let transforms: string | undefined;
    const loupe = this.context.evaluation !== 'v8';
    for (const [source, use] of checks) {
      const what = use === 'evaluate' ? 'the expression' : use === 'condition' ? 'the condition' : `logpoint expression "${truncate(source)}"`;
      const verdict = screenEvaluation(source, use, policy, sensitive, redactor.active, { taints: loupe });
      if (verdict.kind === 'refuse') return { refuse: `${decision.method} refused: ${what}: ${verdict.reason}`, rule: verdict.rule, roots };
      if (verdict.kind === 'redact') return { redact: verdict.name, roots };
      if (loupe && use !== 'evaluate') {
        // Checked when the breakpoint is set, so it is refused where it is typed and not on every hit.
        const parsed = parseLoupeExpression(source, defaultEvalBudget);
        if (!parsed.ok) return { refuse: `${decision.method} refused: ${what} is not a Loupe expression: ${parsed.refusal.message}`, rule: 'evaluation.loupe', roots };
      }
      if (loupe) continue;
      roots = verdict.roots;
      transforms = verdict.transforms;
    }
    return { roots, ...(transforms ? { transforms } : {}) };
  }

  /** An evaluation that names a redacted field: recorded, never run, answered with the marker. */
  private redactedAnswer(decision: Forward, name: string): { record: Record<string, unknown>; reply: Record<string, unknown> } {
    const text = marker(name);
    return {
      record: { id: decision.id, method: decision.method, params: decision.params, decision: 'redact', redacted: name },
      reply: { id: decision.id, result: { result: { type: 'string', value: text, description: text } } },
    };
  }

  /**
   * The probe that learns the sensitive values an evaluation's roots reach, run where the evaluation runs (side-effect
   * free, bounded); undefined when there is nothing to learn.
   */
  reachableProbe(decision: Forward, roots: readonly string[]): { method: 'Debugger.evaluateOnCallFrame' | 'Runtime.evaluate'; params: Record<string, unknown> } | undefined {
    if (roots.length === 0 || !this.context.redactor.active) return undefined;
    const common = { expression: reachableValuesProbe(roots), returnByValue: true, silent: true, throwOnSideEffect: true, timeout: this.context.limits.evaluateTimeoutMs };
    if (decision.method === 'Debugger.evaluateOnCallFrame') return { method: 'Debugger.evaluateOnCallFrame', params: { ...common, callFrameId: decision.params.callFrameId } };
    return { method: 'Runtime.evaluate', params: { ...common, ...(decision.params.contextId !== undefined ? { contextId: decision.params.contextId } : {}) } };
  }

  /** Reshaping a value past matching (reversed, sliced, encoded) is refused once the roots reach secrets. */
  transformRefusal(decision: Forward, secrets: number, transforms: string | undefined): Refusal | undefined {
    if (secrets === 0 || !transforms) return undefined;
    return refusal(
      decision,
      'redact.transform',
      `${decision.method} refused: the expression reaches ${secrets} redacted field(s) and calls ${transforms}(), which could reshape a redacted value past redaction`,
    );
  }
}
