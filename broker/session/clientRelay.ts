/**
 * Client → target: every client frame is decided by the gate (gate/targetScreen.ts), then refused, answered with
 * the redaction marker, answered by the broker itself, or recorded durably (write-ahead) and only then forwarded
 * with an id of the session's own sequence toward the target.
 */
import { cdpErrorCodes, truncate } from '../gate/cdpGate';
import type { Forward, Refusal, ScreenedFrame, TargetScreen } from '../gate/targetScreen';
import type { SessionContext } from './context';
import { requestEventType } from './recordShapes';
import { ScriptSources, searchSource } from './sourceSearch';
import type { ClientPending } from './targetChannel';

type CdpReply = { result: Record<string, unknown> } | { error: { code: number; message: string } };

export class ClientRelay {
  private readonly sources: ScriptSources;

  constructor(
    private readonly context: SessionContext,
    private readonly screen: TargetScreen,
  ) {
    this.sources = new ScriptSources(async (scriptId) => {
      const result = await context.channel.command('Debugger.getScriptSource', { scriptId }, { why: 'Debugger.searchInContent: Loupe searches the source itself' });
      return typeof result.scriptSource === 'string' ? result.scriptSource : '';
    });
  }

  /** One frame from the client, in the order received. */
  onFrame(data: Buffer, isBinary: boolean): void {
    this.context.pauses.onClientFrame();
    const screened = this.screen.decide(data, isBinary, { ending: this.context.isEnding(), auditAccepting: this.context.auditAccepting() });
    if (screened.action === 'refuse') this.refuse(screened.refusal);
    else if (screened.action === 'redact') {
      // Recorded, never run, answered with the marker.
      const recorded = this.context.recordOrEnd('cdp.evaluate', screened.record);
      this.context.send(JSON.stringify(screened.reply), false, recorded.catch(() => undefined));
    } else this.forward(screened, data);
  }

  private refuse(decision: Refusal): void {
    const recorded = this.context.record('cdp.refused', { id: decision.id, method: decision.method ?? null, rule: decision.rule, message: decision.message });
    const reply = decision.id === null ? { error: { code: decision.code, message: decision.message } } : { id: decision.id, error: { code: decision.code, message: decision.message } };
    // A refusal carries no target data: it reaches the client even if recording it failed.
    this.context.send(JSON.stringify(reply), false, recorded.catch(() => undefined));
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
    const recorded = this.context.recordOrEnd('cdp.response', { id, method, ms: this.context.now() - started, ...('error' in reply ? { error: reply.error } : { result: summary(reply.result) }) });
    void recorded;
    this.context.send(JSON.stringify({ id, ...reply }), false);
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
    const { decision } = screened;
    // Requests the broker answers itself go through answerInBroker (a broker-side evaluator would answer
    // handling === 'evaluate' the same way); everything else is forwarded to V8.
    if (decision.handling === 'search') {
      void this.answerInBroker(decision, () => this.searchReply(decision), (result) => ({ matches: (result.result as unknown[]).length }));
      return;
    }
    const { channel, labels, breakpoints, pauses } = this.context;
    const targetId = channel.nextId();
    const params = decision.params;
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
      ...(decision.handling === 'evaluate' ? { describes: `(${truncate(String(params.expression), 80)})` } : {}),
    };
    channel.expect(targetId, pending);
    pauses.onRequest(decision);
    // Write-ahead: the request is durable before the target sees it.
    this.context.recordOrEnd(requestEventType(decision.method), {
      id: decision.id,
      targetId,
      method: decision.method,
      params,
      decision: decision.rewrites.length > 0 || decision.condition !== undefined ? 'rewrite' : 'allow',
      ...(decision.rewrites.length > 0 ? { rewrites: decision.rewrites } : {}),
      ...(decision.condition !== undefined ? { condition: decision.condition } : {}),
      ...(decision.logpoint ? { logMessage: decision.logpoint } : {}),
      ...(frame ? { frame } : {}),
      ...(object ? { object } : {}),
    }).then(
      async (event) => {
        pending.requestSeq = (event as { seq: number }).seq;
        if (decision.handling === 'evaluate') {
          const refused = this.screen.transformRefusal(decision, await this.learnReachable(decision, screened.roots), screened.transforms);
          if (refused) {
            channel.forget(targetId);
            this.refuse(refused);
            return;
          }
        }
        channel.send(targetId, decision.method, params);
      },
      () => {
        channel.forget(targetId);
        this.context.send(JSON.stringify({ id: decision.id, error: { code: cdpErrorCodes.refused, message: `${decision.method} not forwarded: the audit trail could not record it` } }), false);
      },
    ).catch((err: unknown) => this.context.fault(`client frame ${truncate(decision.method, 80)} (after recording)`, err, raw));
  }
}
