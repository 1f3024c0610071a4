/**
 * Client → target: every client frame is decided by the gate (gate/targetScreen.ts), then refused, answered with
 * the redaction marker, answered by the broker itself, or recorded durably (write-ahead) and only then forwarded
 * with an id of the session's own sequence toward the target.
 */
import { createHash } from 'node:crypto';
import { cdpErrorCodes, truncate } from '../gate/cdpGate';
import { capResult } from '../gate/targetFrame';
import { withholdProcessFacts } from '../gate/processFacts';
import { loupeRefusalText } from '../eval';
import type { Forward, Refusal, ScreenedFrame, TargetScreen } from '../gate/targetScreen';
import type { SessionContext } from './context';
import { requestEventType, summarizeResult } from './recordShapes';
import { boundMessage, finishCuts, messageBounds } from './resultBounds';
import { Redactor } from '../policy/redact';
import { sourceRedaction } from '../policy/sourceRedactThread';
import { ScriptSources, searchSource } from './sourceSearch';
import { readsObject, type ClientPending } from './targetChannel';
import { learningInFlight } from './exceptionLearning';
import { maxIndexedRead } from './labels';

/**
 * Breakpoints and logpoints one session may have at once. Each costs V8 a match on every script it loads and the
 * broker a removal at the end, and those at one location are all decided in the same pause: thousands of them (set
 * under distinct urlRegex spellings) made one pause cost the target seconds (measured: 5,000 conditions, 2.9 s).
 */
export const maxSessionBreakpoints = 256;

const evaluationMethods = new Set(['Runtime.evaluate', 'Debugger.evaluateOnCallFrame']);

/**
 * A person's evaluation refused by the gate is answered as an evaluation that threw Loupe's refusal: clients show
 * an evaluation's exception where it was typed (js-debug shows nothing at all for a CDP error there). What a client
 * sends on its own stays a CDP error: js-debug retries an evaluation that threw, up to 200 times.
 */
const shownAsEvaluation = (decision: Refusal) => decision.routine === undefined && decision.code === cdpErrorCodes.refused && evaluationMethods.has(decision.method ?? '');

function refusedEvaluation(decision: Refusal): Record<string, unknown> {
  const reason = decision.message.startsWith(`${decision.method} refused: `) ? decision.message.slice(`${decision.method} refused: `.length) : decision.message;
  const description = `EvalError: ${loupeRefusalText}: ${reason}`;
  const exception = { type: 'object', subtype: 'error', className: 'EvalError', description };
  return { result: exception, exceptionDetails: { exceptionId: 1, text: loupeRefusalText, lineNumber: 0, columnNumber: 0, exception } };
}

type CdpReply = { result: Record<string, unknown> } | { error: { code: number; message: string } };

export class ClientRelay {
  private readonly sources: ScriptSources;
  /** The scrubber of the interpreter's answers, kept while it has learned nothing (see answerEvaluation). */
  private answerScrubber: Redactor | undefined;
  /** Requests the broker is answering itself (sources, searches, Loupe evaluations), not yet answered. */
  answering = 0;

  constructor(
    private readonly context: SessionContext,
    private readonly screen: TargetScreen,
  ) {
    // Kept redacted: the client reads and searches the source only as the redactor leaves it.
    this.sources = new ScriptSources(
      async (scriptId) => {
        const result = await context.channel.command('Debugger.getScriptSource', { scriptId }, { why: 'Loupe reads the source to redact it (and search it) itself' });
        return typeof result.scriptSource === 'string' ? result.scriptSource : '';
      },
      async (source) => (context.target().redaction.source === false ? source : (await sourceRedaction.redact(source, context.redactor)).source),
      () => context.redactor.learnedCount,
    );
  }

  /** One frame from the client, in the order received. */
  onFrame(data: Buffer, isBinary: boolean): void {
    this.context.pauses.onClientFrame();
    const screened = this.screen.decide(data, isBinary, { ending: this.context.isEnding(), auditAccepting: this.context.auditAccepting(), clientBacklog: this.context.clientBacklog() });
    if (screened.action === 'refuse') this.refuse(screened.refusal);
    else if (screened.action === 'redact') {
      // Recorded, never run, answered with the marker.
      const recorded = this.context.recordOrEnd('cdp.evaluate', screened.record);
      this.context.send(
        JSON.stringify(screened.reply),
        false,
        recorded.catch(() => undefined),
      );
    } else this.forward(screened, data);
  }

  private refuse(decision: Refusal): void {
    const recorded = this.context.record('cdp.refused', {
      id: decision.id,
      // The client's text, cut: a megabyte method name would otherwise make a megabyte record, frame after frame.
      method: decision.method === undefined ? null : cutUntrusted(decision.method),
      rule: decision.rule,
      message: decision.message,
      // Sent by the client on its own at attach (gate/clientRoutine.ts): recorded, not counted by the refusals alert.
      ...(decision.routine ? { routine: decision.routine.name, client: decision.routine.client, ...(decision.routine.answerEmpty ? { answered: 'empty' } : {}) } : {}),
    });
    const reply =
      decision.id === null
        ? { error: { code: decision.code, message: decision.message } }
        : decision.routine?.answerEmpty
          ? { id: decision.id, result: {} }
          : shownAsEvaluation(decision)
            ? { id: decision.id, result: refusedEvaluation(decision) }
            : { id: decision.id, error: { code: decision.code, message: decision.message } };
    // A refusal carries no target data: it reaches the client even if recording it failed.
    this.context.send(
      JSON.stringify(reply),
      false,
      recorded.catch(() => undefined),
    );
  }

  private counted(answer: Promise<void>): Promise<void> {
    this.answering++;
    return answer.finally(() => this.answering--);
  }

  /**
   * A request the broker answers itself, never run by V8 (today Debugger.searchInContent): recorded first like any
   * request, then `answer` gives the reply and `summary` what the record keeps of its result.
   */
  private async answerInBroker(decision: Forward, answer: () => Promise<CdpReply>, summary: (result: Record<string, unknown>) => unknown): Promise<void> {
    const { id, method, params } = decision;
    const started = this.context.now();
    try {
      await this.context.recordOrEnd(requestEventType(method), { id, method, params, decision: 'rewrite', rewrites: decision.rewrites });
    } catch {
      this.context.send(JSON.stringify({ id, error: { code: cdpErrorCodes.refused, message: `${method} not answered: the audit trail could not record it` } }), false);
      return;
    }
    const reply = await answer();
    // Answered first, then recorded in the same turn (lazy: it joins the next commit).
    this.context.send(JSON.stringify({ id, ...reply }), false);
    void this.context.recordOrEnd('cdp.response', { id, method, ms: this.context.now() - started, ...('error' in reply ? { error: reply.error } : { result: summary(reply.result) }) }, true);
  }

  /** Debugger.searchInContent: answered from the script's source (read once), searched in the broker. */
  private async searchReply({ method, params }: Forward): Promise<CdpReply> {
    try {
      const source = await this.sources.get(String(params.scriptId));
      return { result: { result: searchSource(source, String(params.query), { caseSensitive: params.caseSensitive === true, isRegex: params.isRegex === true }) } };
    } catch (err) {
      return { error: { code: cdpErrorCodes.refused, message: `${method}: the script's source could not be read: ${(err as Error).message}` } };
    }
  }

  /** Debugger.getScriptSource: the script's source as the redactor leaves it (string literals of secrets replaced). */
  private async sourceReply({ method, params }: Forward): Promise<CdpReply> {
    try {
      return { result: { scriptSource: await this.sources.get(String(params.scriptId)) } };
    } catch (err) {
      return { error: { code: cdpErrorCodes.refused, message: `${method}: the script's source could not be read: ${(err as Error).message}` } };
    }
  }

  /**
   * Console, watch and hover as Loupe expressions: recorded first (write-ahead, with the expression), interpreted in
   * the broker against the paused frame, then answered like V8 would (a refusal as an EvalError) with the result
   * bounded and redacted as V8's answers are; the record keeps the outcome's kind and cost, never a value.
   */
  private async answerEvaluation(decision: Forward): Promise<void> {
    const { id, method, params } = decision;
    const { context } = this;
    const started = context.now();
    const frame = context.labels.frame(params.callFrameId);
    let requestSeq: number | null = null;
    try {
      // Keys in canonical (sorted) order, here and in the answer's record: serialized by JSON.stringify alone.
      const event = await context.recordOrEnd('cdp.evaluate', {
        decision: decision.rewrites.length > 0 ? 'rewrite' : 'allow',
        evaluator: 'loupe',
        ...(frame ? { frame } : {}),
        id,
        method,
        params,
        ...(decision.rewrites.length > 0 ? { rewrites: decision.rewrites } : {}),
      });
      requestSeq = (event as { seq?: number } | undefined)?.seq ?? null;
    } catch {
      context.send(JSON.stringify({ id, error: { code: cdpErrorCodes.refused, message: `${method} not answered: the audit trail could not record it` } }), false);
      return;
    }
    const learning = learningInFlight(context);
    if (learning) await learning;
    const { response, outcome } = await context.evaluation.evaluate!(String(params.expression), {
      ...(typeof params.callFrameId === 'string' ? { callFrameId: params.callFrameId } : {}),
      ...(params.returnByValue === true ? { returnByValue: true } : {}),
      ...(typeof params.objectGroup === 'string' ? { objectGroup: params.objectGroup } : {}),
    });
    const result = response as unknown as Record<string, unknown>;
    // Defence in depth: what the interpreter built from the user's own literals is scrubbed of patterns and pairs like
    // any answer, then cut. Not of the values the session learned: the user's literals scrubbed of them would say
    // which literal equals a secret (taint already marks what was read from one).
    const bounds = messageBounds(context.target().evaluation.maxResultBytes);
    const { cut } = boundMessage(result, bounds);
    let scrubber = this.answerScrubber;
    if (scrubber?.policy !== context.redactor.policy) scrubber = this.answerScrubber = new Redactor(context.redactor.policy);
    scrubber.response(method, result);
    context.redactor.adoptErrors(scrubber);
    withholdProcessFacts(method, result);
    const redacted = [...new Set(scrubber.hits)];
    scrubber.hits.length = 0;
    // Kept for the next answer (with its verdicts by name) only while it has learned nothing: a value it learned would
    // be scrubbed from the user's own literals in a later answer, saying which literal equals it.
    if (scrubber.learnedCount > 0) this.answerScrubber = undefined;
    if (cut) finishCuts(result, bounds);
    capResult(result, context.target().evaluation.maxResultBytes);
    context.labels.labelObjects(method, `(${truncate(String(params.expression), 80)})`, result);
    // What V8's answers record too: the redacted preview, or the error (a refusal's reason).
    const shown = summarizeResult(method, result) as { error?: string; preview?: string };
    const summary = {
      ...(shown.error !== undefined ? { error: shown.error } : {}),
      evalMs: outcome.ms,
      kind: outcome.kind,
      ...(shown.preview !== undefined ? { preview: shown.preview } : {}),
      reads: outcome.reads,
      ...(redacted.length > 0 ? { redacted } : {}),
      ...(outcome.kind === 'refused' ? { refusal: outcome.refusal } : {}),
      steps: outcome.steps,
      ...(response.result.subtype ? { subtype: response.result.subtype } : {}),
      ...(outcome.kind === 'value' && outcome.tainted.length > 0 ? { tainted: outcome.tainted } : {}),
      type: response.result.type,
    };
    // A refused name completion the client made on its own is recorded as such; the refusals alert skips it.
    const routine = outcome.kind === 'refused' ? this.screen.quietCompletion(decision) : undefined;
    const text = JSON.stringify({ id, result });
    // Answered first, then recorded in the same turn (lazy: it joins the next commit).
    context.send(text, false);
    void context.recordOrEnd(
      'cdp.response',
      { bytes: Buffer.byteLength(text), evaluator: 'loupe', id, method, ms: context.now() - started, requestSeq, result: summary, ...(routine ? { routine: routine.name } : {}) },
      true,
    );
  }

  /** Learns the sensitive values an evaluation's roots reach, so they are scrubbed from its result. */
  private async learnReachable(decision: Forward, roots: readonly string[]): Promise<number> {
    const probe = this.screen.reachableProbe(decision, roots);
    if (!probe) return 0;
    const pairs = await this.context.evaluation.reachableValues(probe);
    try {
      return pairs ? this.context.redactor.learnPairs(pairs) : 0;
    } catch {
      return 0;
    }
  }

  private forward(screened: Extract<ScreenedFrame, { action: 'forward' }>, raw: Buffer): void {
    let { decision } = screened;
    // Requests the broker answers itself go through answerInBroker (a broker-side evaluator would answer
    // handling === 'evaluate' the same way); everything else is forwarded to V8.
    if (decision.handling === 'search') {
      void this.counted(
        this.answerInBroker(
          decision,
          () => this.searchReply(decision),
          (result) => ({ matches: (result.result as unknown[]).length }),
        ),
      );
      return;
    }
    if (decision.handling === 'source') {
      void this.counted(
        this.answerInBroker(
          decision,
          () => this.sourceReply(decision),
          (result) => ({ bytes: String(result.scriptSource).length }),
        ),
      );
      return;
    }
    if (decision.handling === 'evaluate' && this.context.evaluation.evaluate) {
      void this.counted(this.answerEvaluation(decision)).catch((err: unknown) => this.context.fault(`client frame ${truncate(decision.method, 80)} (Loupe evaluation)`, err, raw));
      return;
    }
    const { channel, labels, breakpoints, pauses } = this.context;
    if (decision.handling === 'breakpoint') {
      const held = breakpoints.ids().length + channel.clientPendings().filter(([, p]) => p.setAs !== undefined).length;
      if (held >= maxSessionBreakpoints) {
        this.refuse({
          action: 'refuse',
          id: decision.id,
          method: decision.logpoint ? 'Loupe.setLogpoint' : decision.method,
          code: cdpErrorCodes.refused,
          rule: 'breakpoints.max',
          message: `${decision.logpoint ? 'Loupe.setLogpoint' : decision.method} refused: this session has ${held} breakpoints and logpoints (set or being set), the most one session may have is ${maxSessionBreakpoints}; remove one first`,
        });
        return;
      }
    }
    const targetId = channel.nextId();
    const params = decision.params;
    const large = decision.method === 'Runtime.getProperties' && params.nonIndexedPropertiesOnly !== true ? labels.largeLength(params.objectId) : undefined;
    if (large !== undefined) {
      params.nonIndexedPropertiesOnly = true;
      decision = {
        ...decision,
        rewrites: [
          ...decision.rewrites,
          `nonIndexedPropertiesOnly forced: the object has ${large} elements, over ${maxIndexedRead}, and listing them all would hold the target; read a range with an expression (such as .slice(0, 100))`,
        ],
      };
    }
    if (decision.handling === 'evaluate' && params.returnByValue === true) {
      // V8 copies a result by value through its getters, after the side-effect check has ended: app code would run.
      delete params.returnByValue;
      decision = {
        ...decision,
        rewrites: [
          ...decision.rewrites,
          'returnByValue dropped: V8 would copy the result through its getters, outside the side-effect check; an object comes as a reference (read it with Runtime.getProperties)',
        ],
      };
    }
    if (decision.method === 'Debugger.removeBreakpoint') breakpoints.clientRemoves(params);
    const frame = labels.frame(params.callFrameId);
    const object = labels.object(params.objectId);
    const pending: ClientPending = {
      origin: 'client',
      clientId: decision.id,
      method: decision.method,
      sentAt: this.context.now(),
      ...(decision.condition !== undefined ? { condition: decision.condition } : {}),
      ...(decision.logpoint ? { logpoint: decision.logpoint } : {}),
      ...(decision.method === 'Debugger.removeBreakpoint' ? { removes: params.breakpointId as string } : {}),
      ...(decision.handling === 'breakpoint' ? { setAs: { method: decision.method, params } } : {}),
      ...(decision.method === 'Runtime.getProperties' ? { describes: object ?? `object ${String(params.objectId)}` } : {}),
      ...readsObject(decision.method, params),
      ...(decision.handling === 'evaluate' ? { describes: `(${truncate(String(params.expression), 80)})` } : {}),
    };
    channel.expect(targetId, pending);
    pauses.onRequest(decision);
    // Write-ahead: the request is durable before the target sees it.
    this.context
      // Keys in canonical (sorted) order: serialized by JSON.stringify alone.
      .recordOrEnd(requestEventType(decision.method), {
        ...(decision.condition !== undefined ? { condition: decision.condition } : {}),
        decision: decision.rewrites.length > 0 || decision.condition !== undefined ? 'rewrite' : 'allow',
        ...(frame ? { frame } : {}),
        id: decision.id,
        ...(decision.logpoint ? { logMessage: decision.logpoint } : {}),
        method: decision.method,
        ...(object ? { object } : {}),
        params,
        ...(decision.rewrites.length > 0 ? { rewrites: decision.rewrites } : {}),
        targetId,
      })
      .then(
        async (event) => {
          pending.requestSeq = (event as { seq: number }).seq;
          const learning = learningInFlight(this.context);
          if (learning) await learning;
          if (decision.handling === 'evaluate') {
            const refused = this.screen.transformRefusal(decision, await this.learnReachable(decision, screened.roots), screened.transforms);
            if (refused) {
              channel.forget(targetId);
              this.refuse(refused);
              return;
            }
          }
          // The session began to end while this was recorded or waited: its cleanup has decided what the target
          // still needs (resume, removals, disable), and nothing the client asked may follow it there.
          if (this.context.isEnding()) {
            channel.forget(targetId);
            this.refuse({
              action: 'refuse',
              id: decision.id,
              method: decision.method,
              code: cdpErrorCodes.refused,
              rule: 'session.ending',
              message: `${decision.method} not forwarded: the session ended while it was being recorded`,
            });
            return;
          }
          channel.send(targetId, decision.method, params);
        },
        () => {
          channel.forget(targetId);
          this.context.send(JSON.stringify({ id: decision.id, error: { code: cdpErrorCodes.refused, message: `${decision.method} not forwarded: the audit trail could not record it` } }), false);
        },
      )
      .catch((err: unknown) => this.context.fault(`client frame ${truncate(decision.method, 80)} (after recording)`, err, raw));
  }
}

/** A client's text kept in a record: whole up to 200 characters, else its start, length and SHA-256 (which still identify it). */
function cutUntrusted(text: string): string {
  if (text.length <= 200) return text;
  return `${truncate(text, 200)} (${text.length} characters, sha256 ${createHash('sha256').update(text).digest('hex')})`;
}
