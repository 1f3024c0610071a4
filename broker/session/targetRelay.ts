/**
 * Target → client: the target is not trusted either. A frame is bounded (gate/targetFrame.ts) before it is parsed,
 * checked for shape, then an answer goes to whoever waits for it (a client request: redacted, recorded, passed on;
 * a broker command: settled) and an event to the client, except pauses, which the session's pause handling or
 * snapshot mode decides.
 */
import type { Protocol } from 'devtools-protocol';
import {
  capResult,
  inLoupeWords,
  isRecord,
  maxTargetNesting,
  nestedDeeperThan,
  oversizedAnswerError,
  oversizedFrameIsRead,
  targetMessageProblem,
  unusableAnswerError,
  wellFormedFrames,
  type CdpMessage,
} from '../gate/targetFrame';
import { objectIdsOf } from '../gate/handedObjects';
import { denyProcessMembers, withholdProcessFacts } from '../gate/processFacts';
import { denyCheck } from './evaluation';
import type { SessionContext } from './context';
import { hasUnlearnedScopes, isExceptionPause, learnAtExceptionPause, learnAtPause, pauseLearningLimits } from './exceptionLearning';
import { summarizeResult } from './recordShapes';
import { boundMessage, finishCuts, frameWithinBounds, messageBounds, sniffEventMethod, sniffResponseId } from './resultBounds';
import type { SnapshotMode } from './snapshot';
import type { ClientPending, Pending } from './targetChannel';

/**
 * The learning at a pause shown to a client: a scope's whole bound of reads, more scopes (a function nested deep), and
 * time for them: the target is paused for the client anyway, and its first requests wait (a module of 5,000 objects
 * took 1.5 s and was cut, its secret answered in the clear; a loaded host reads ten times slower).
 */
const shownPauseLimits = { ...pauseLearningLimits, reads: pauseLearningLimits.scopeReads, scopes: 64, ms: 15_000 };

export class TargetRelay {
  /** Events received while an exception pause is learned from, in order. */
  private deferred: [CdpMessage, Buffer, string][] | undefined;

  constructor(
    private readonly context: SessionContext,
    /** Set in snapshot mode: pauses become captures. */
    private readonly snapshots: SnapshotMode | undefined,
  ) {}

  /** One frame from the target, in the order received; the target is always drained. */
  onFrame(data: Buffer): void {
    if (data.length > this.context.limits.maxTargetFrameBytes && this.refuseOversizedFrame(data)) return;
    if (nestedDeeperThan(data, maxTargetNesting)) {
      // Parsing it is fine, but every later step (redaction, the record, the copy to the client) recurses.
      const problem = `nested deeper than ${maxTargetNesting} levels`;
      this.context.record('target.invalid_frame', { bytes: data.length, problem }).catch(() => undefined);
      const id = sniffResponseId(data);
      const pending = id !== undefined ? this.context.channel.get(id) : undefined;
      if (pending) this.failPending(id!, pending, `the target answered with a malformed message (${problem}); it was not passed on`);
      return;
    }
    let message: CdpMessage;
    // The text goes on as received where nothing in it changes (most events): decoded once.
    const text = data.toString('utf8');
    try {
      message = JSON.parse(text) as CdpMessage;
    } catch {
      this.context.record('target.invalid_frame', { bytes: data.length }).catch(() => undefined);
      return;
    }
    // The target is not trusted either: a message of the wrong shape is recorded and goes no further.
    const problem = targetMessageProblem(message);
    if (problem) {
      this.context.record('target.invalid_frame', { bytes: data.length, problem }).catch(() => undefined);
      const pending = isRecord(message) && typeof message.id === 'number' ? this.context.channel.get(message.id) : undefined;
      if (pending) this.failPending(message.id!, pending, `the target answered with a malformed message (${problem}); it was not passed on`);
      return;
    }
    if (message.method === 'Debugger.paused') message.params!.callFrames = wellFormedFrames(message.params!.callFrames);
    if (typeof message.id === 'number') this.onTargetResponse(message, data);
    else if (typeof message.method === 'string') this.onTargetEvent(message, data, text);
  }

  /**
   * A frame over limits.maxTargetFrameBytes is not parsed (parsing alone would hold the event loop): the request
   * it answers gets an error saying so, an event is dropped; both are recorded. Returns false for the frames that
   * are parsed whatever their size (gate/targetFrame.ts).
   */
  private refuseOversizedFrame(data: Buffer): boolean {
    const limit = this.context.limits.maxTargetFrameBytes;
    const id = sniffResponseId(data);
    if (id !== undefined) this.context.channel.heard(id);
    const pending = id === undefined ? undefined : this.context.channel.get(id);
    if (oversizedFrameIsRead(id !== undefined ? pending?.method : undefined, id === undefined ? sniffEventMethod(data) : undefined)) return false;
    if (id === undefined || !pending) {
      this.context
        .record('target.invalid_frame', { bytes: data.length, method: sniffEventMethod(data) ?? null, reason: `over limits.maxTargetFrameBytes (${limit}): not read` })
        .catch(() => undefined);
      return true;
    }
    this.context.channel.take(id);
    const error = oversizedAnswerError(pending.method, data.length, limit);
    if (pending.origin === 'broker') this.context.channel.fail(id, pending, error, data.length);
    else this.answerClientError(id, pending, error, data.length);
    return true;
  }

  /** A request whose answer cannot be used: the client gets an error, a broker command fails. */
  private failPending(targetId: number, pending: Pending, why: string): void {
    this.context.channel.heard(targetId);
    this.context.channel.take(targetId);
    const error = unusableAnswerError(pending.method, why);
    if (pending.origin === 'broker') this.context.channel.fail(targetId, pending, error);
    else this.answerClientError(targetId, pending, error);
  }

  private answerClientError(targetId: number, pending: ClientPending, error: { code: number; message: string }, bytes?: number): void {
    const recorded = this.context.recordOrEnd(
      'cdp.response',
      {
        id: pending.clientId,
        targetId,
        requestSeq: pending.requestSeq ?? null,
        method: pending.method,
        ms: this.context.now() - pending.sentAt,
        ...(bytes !== undefined ? { bytes } : {}),
        error,
      },
      true,
    );
    void recorded;
    this.context.pauses.answered(pending.method, true);
    this.context.send(JSON.stringify({ id: pending.clientId, error }), false);
  }

  /**
   * Bounds a parsed message, redacts it, then cuts it to its bounds (see resultBounds.ts): redaction does bounded
   * work and sees whole whatever straddles a cut. Pauses keep all their frames: only their strings are cut.
   */
  private redactBounded(value: unknown, redact: () => void, keepLists = false, frame?: Buffer): void {
    const bounds = messageBounds(this.context.target().evaluation.maxResultBytes);
    if (frame && frameWithinBounds(frame, bounds)) return redact();
    const { cut } = boundMessage(value, keepLists ? { ...bounds, budget: Infinity } : bounds);
    redact();
    if (cut) finishCuts(value, bounds);
  }

  private onTargetResponse(message: CdpMessage, raw: Buffer): void {
    this.context.channel.heard(message.id!);
    const pending = this.context.channel.take(message.id!);
    if (!pending) return;
    // Bounded before anything reads it; a script's source is code and goes whole. A quiet command's answer is
    // read by the broker alone (the redaction probe): only its size is recorded.
    // A quiet command's answer (the interpreter's reads, the learning reads) is the broker's alone and is used whole:
    // cut to evaluation.maxResultBytes, a read of the global object would lose names. The frame bound still holds.
    const read = () => {
      if (pending.method === 'Debugger.getScriptSource' || (pending.origin === 'broker' && pending.quiet)) return;
      const redactor = this.context.redactor;
      this.redactBounded(message.result, () => redactor.response(pending.method, message.result, redactor.isWithheldError(pending.readsObject)), false, raw);
      withholdProcessFacts(pending.method, message.result);
      denyProcessMembers(pending.method, message.result, denyCheck(this.context.target().evaluation.denyIdentifiers));
    };
    if (pending.origin === 'broker') return this.context.channel.settle(message.id!, pending, message, raw.length, read);
    read();
    if (pending.method === 'Runtime.evaluate' || pending.method === 'Debugger.evaluateOnCallFrame') {
      inLoupeWords(message);
      if (message.result) capResult(message.result, this.context.target().evaluation.maxResultBytes);
    }
    this.context.breakpoints.answered(pending, message);
    this.context.pauses.answered(pending.method, message.error !== undefined);
    // The client has its answer first: the labels of the objects in it (read by later requests only), the record's
    // hashing and encoding follow, in the same turn (so its place in the chain is the same), and it becomes durable
    // with the next commit (lazy: the next request's, usually), so it never costs a sync of its own on the round
    // trip. What is write-ahead is the request.
    const answer = message.error ? { id: pending.clientId, error: message.error } : { id: pending.clientId, result: message.result ?? {} };
    this.context.send(JSON.stringify(answer), false, undefined, objectIdsOf(answer));
    if (pending.describes && message.result) this.context.labels.labelObjects(pending.method, pending.describes, message.result);
    void this.context.recordOrEnd(
      'cdp.response',
      {
        id: pending.clientId,
        targetId: message.id,
        requestSeq: pending.requestSeq ?? null,
        method: pending.method,
        ms: this.context.now() - pending.sentAt,
        bytes: raw.length,
        ...(message.error ? { error: message.error } : { result: summarizeResult(pending.method, message.result) }),
      },
      true,
    );
  }

  private onTargetEvent(message: CdpMessage, raw: Buffer, received: string): void {
    // Events wait while an exception pause is learned from, so the client sees them in the target's order.
    if (this.deferred) {
      this.deferred.push([message, raw, received]);
      return;
    }
    if (message.method === 'Debugger.paused') {
      this.onPaused(message).catch((err: unknown) => this.context.fault('target event Debugger.paused', err, raw));
      return;
    }
    if (message.method === 'Debugger.scriptParsed' && typeof message.params?.scriptId === 'string' && typeof message.params.url === 'string') {
      this.context.labels.scriptParsed(message.params.scriptId, message.params.url);
    }
    if (message.method === 'Debugger.resumed') this.context.evaluation.resumed();
    if (message.method === 'Debugger.resumed' && !this.context.pauses.onResumed()) return;
    let text = received;
    if (message.method === 'Runtime.consoleAPICalled' || message.method === 'Runtime.exceptionThrown' || message.method === 'Log.entryAdded') {
      this.redactBounded(message.params, () => this.context.redactor.event(message.method!, message.params), false, raw);
      withholdProcessFacts(message.method, message.params);
      text = JSON.stringify(message);
    }
    if (!this.context.pauses.hold(text)) this.context.send(text, true);
  }

  private async onPaused(message: CdpMessage): Promise<void> {
    // Whose pause it is, known before anything is awaited: a session ending from now on resumes it (cleanup).
    const ours = this.context.pauses.claim(message.params);
    if (this.context.isEnding()) {
      // The session's end began before the pause arrived (a hit racing the breakpoint's removal): resumed here.
      if (ours) this.context.pauses.resumeAfterEnd();
      return;
    }
    // The evaluator resolves names in the frames as the target sent them (redaction below changes the copy the
    // client gets); its scopes are read ahead only where a client may evaluate in them.
    // A pause to be captured starts its first reads now, ahead of the work below.
    this.snapshots?.prefetch(message.params);
    // When the resume went with them, the broker's own work on the pause waits for their answers: it holds nothing,
    // and done meanwhile it competes for the CPU with the target answering them. Events wait too, in order.
    const answered = this.snapshots?.prefetchAnswered();
    if (answered) {
      const held = (this.deferred ??= []);
      await answered;
      // Whatever the pause's own handling throws, the events held for it are let through.
      try {
        return await this.handlePaused(message, true);
      } catch (err) {
        if (this.deferred === held) this.replayDeferred();
        throw err;
      }
    }
    return this.handlePaused(message, false);
  }

  /** The broker's work on a pause; `holding`: events wait (held since the pause arrived) until it is shown. */
  private async handlePaused(message: CdpMessage, holding: boolean): Promise<void> {
    const frames = message.params!.callFrames as Protocol.Debugger.CallFrame[];
    // In snapshot mode only the top frame is ever evaluated in (conditions, logpoints): only it is copied.
    this.context.evaluation.paused(structuredClone(this.snapshots ? frames.slice(0, 1) : frames), !this.snapshots);
    // An exception's text can carry a value the redactor has not met yet: the frames' values are learned first
    // (the answers to the learning's reads are handled meanwhile; events wait).
    // So can a return value (a pause at a function's return: `return apiKey`), which the pause itself shows.
    const learning = (isExceptionPause(message.params) || (!this.snapshots && returnsValue(message.params))) && this.context.redactor.active;
    // A pause the broker decides alone (a condition, a logpoint): what the frames' long-lived scopes hold under
    // sensitive names is learned first (each scope once a session, so a hot line pays it once), or the object of a
    // redacted container reached as `this` would decide a condition, or show in a logpoint's message, in the clear.
    // In snapshot mode too, where such a pause is evaluated before anything is captured; and a capture in code whose
    // scopes the session has not read yet (else its reads go out with its resume: see snapshot.ts's prefetch).
    const hidden = !learning && this.context.redactor.active && (!this.shownToClient(message.params) || (this.snapshots !== undefined && hasUnlearnedScopes(this.context, message.params)));
    if (learning || hidden) {
      this.deferred ??= [];
      try {
        await (learning ? learnAtExceptionPause(this.context, message.params!) : learnAtPause(this.context, message.params!, undefined, false));
        // Such a pause the broker decides alone, or captures, reads the long-lived scopes' walks on too (pauses.ts
        // decides nothing, snapshot.ts captures nothing, in code whose scopes are not read yet).
        if (learning && (this.snapshots !== undefined || !this.shownToClient(message.params)) && hasUnlearnedScopes(this.context, message.params)) {
          await learnAtPause(this.context, message.params!, undefined, false);
        }
      } catch (err) {
        this.replayDeferred();
        throw err;
      }
    }
    this.redactBounded(message.params, () => this.context.redactor.event('Debugger.paused', message.params), true);
    const handled = this.snapshots ? this.snapshots.onPause(message) : this.context.pauses.onPaused(message);
    // The pause has been shown (or taken for a capture) by now; what came after it follows.
    if (learning || hidden || holding) this.replayDeferred();
    // The client waits for it (learningInFlight), the target is paused anyway: a large module is read whole now. Also
    // after an exception's or a return value's own learning (bounded per pause: its reads went to the frames' scopes).
    if (!hidden && !this.snapshots && this.shownToClient(message.params)) void learnAtPause(this.context, message.params!, shownPauseLimits).catch(() => undefined);
    return handled;
  }

  /** A pause the client sees: not one the broker decides alone (a condition, a logpoint), which may be hot. */
  private shownToClient(params: Record<string, unknown> | undefined): boolean {
    const hits = Array.isArray(params?.hitBreakpoints) ? (params.hitBreakpoints as unknown[]) : [];
    return !hits.some((id) => {
      const breakpoint = typeof id === 'string' ? this.context.breakpoints.get(id) : undefined;
      return breakpoint?.condition !== undefined || breakpoint?.logpoint !== undefined;
    });
  }

  private replayDeferred(): void {
    const deferred = this.deferred ?? [];
    this.deferred = undefined;
    for (const [message, raw, received] of deferred) this.onTargetEvent(message, raw, received);
  }
}

/** Whether a pause's frames carry a return value (a pause at a function's return position). */
function returnsValue(params: Record<string, unknown> | undefined): boolean {
  return Array.isArray(params?.callFrames) && (params.callFrames as { returnValue?: unknown }[]).some((frame) => frame.returnValue !== undefined);
}
