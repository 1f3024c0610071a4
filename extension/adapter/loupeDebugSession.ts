/**
 * The Loupe debug adapter: DAP toward VS Code (or any DAP client), the broker's CDP through `LoupeRuntime`. No
 * `vscode` import: it runs inline in the extension host and standalone (dist/debugAdapter.js) for the DAP tests.
 * This class translates; the rest has a file each: dapSession.ts, scripts.ts, breakpoints.ts, hitConditions.ts, brokerNotices.ts,
 * captures.ts, stoppedState.ts, variables.ts, valueFormat.ts, objectPreview.ts, errors.ts.
 *
 * The broker is the enforcement point; this adapter only speaks its dialect well: evaluation is side-effect free
 * (forced by the broker) and a refusal is shown as the evaluation's result; in snapshot mode the broker captures
 * instead of pausing, each capture is shown as a read-only stopped state and `continue` moves to the next one;
 * disconnect closes the socket, and the broker removes the breakpoints and resumes the target (never ends it).
 */
import { BreakpointEvent, ContinuedEvent, Event, InitializedEvent, LoadedSourceEvent, Logger, logger, StoppedEvent, TerminatedEvent, Thread } from '@vscode/debugadapter';
import type { DebugProtocol } from '@vscode/debugprotocol';
import type { Protocol } from 'devtools-protocol';
import { BreakpointTable, type BreakpointRecord } from './breakpoints';
import { BrokerNotices, type Notice } from './brokerNotices';
import { capabilities } from './capabilities';
import { CaptureList, maxCapturesKept, snapshotBody, type CaptureEntry } from './captures';
import type { CloseInfo } from './cdpConnection';
import { closeMessage } from './closeCodes';
import { DapSession } from './dapSession';
import { v8SessionNotice, type LoupeAttachArguments, type SessionEndedEventBody, type SnapshotEventBody, type SnapshotShownEventBody } from './config';
import { dapFormat, DapErrorId } from './errors';
import { evaluateCaptured, evaluateLive } from './evaluation';
import { obtainGrant } from './grant';
import { LoupeRuntime, type ExecutionCommand } from './runtime';
import { ScriptRegistry } from './scripts';
import { StoppedState } from './stoppedState';
import type { CapturedFrame, SnapshotCapture } from './snapshots';
import { PathMapper } from './sourceMaps';
import { logValue } from './valueFormat';
import { VariableStore } from './variables';

const THREAD_ID = 1;

export class LoupeDebugSession extends DapSession {
  private runtime: LoupeRuntime | undefined;
  private args: LoupeAttachArguments | undefined;
  private scripts = new ScriptRegistry();
  private breakpoints: BreakpointTable | undefined;
  private notices: BrokerNotices | undefined;
  private readonly stopped = new StoppedState();
  private readonly variables = new VariableStore();
  private readonly captures = new CaptureList();
  private mode: 'pause' | 'snapshot' = 'pause';
  private stoppedReported = false;
  private expectingStop: 'step' | 'pause' | undefined;
  private pauseEvents: Promise<void> = Promise.resolve();
  private resumeRequested = false;
  private disconnecting = false;
  private ended = false;
  private explainedSnapshots = false;

  constructor() {
    super();
    this.setDebuggerLinesStartAt1(true);
    this.setDebuggerColumnsStartAt1(true);
  }

  // ---- lifecycle ----

  protected override initializeRequest(response: DebugProtocol.InitializeResponse): void {
    response.body = capabilities;
    this.sendResponse(response);
  }

  protected override async attachRequest(response: DebugProtocol.AttachResponse, args: DebugProtocol.AttachRequestArguments): Promise<void> {
    const a = args as LoupeAttachArguments;
    this.args = a;
    this.tracing = a.trace === true;
    logger.setup(a.trace ? Logger.LogLevel.Verbose : Logger.LogLevel.Stop, false);
    this.scripts = new ScriptRegistry(new PathMapper(a.localRoot, a.remoteRoot ?? a.localRoot), a.sourceMaps !== false);
    try {
      const { grantToken, attachUrl, grant, cappedToSeconds } = await obtainGrant(a);
      if (cappedToSeconds !== undefined) this.output(`Loupe: the grant was capped by policy to ${cappedToSeconds} s.\n`, 'console');
      this.mode = grant.mode === 'snapshot' ? 'snapshot' : 'pause';
      this.scripts.loadOutFiles(a.outFiles ?? (a.localRoot ? [`${a.localRoot}/**/*.js`] : []));
      const runtime = await LoupeRuntime.connect(attachUrl, grantToken);
      this.runtime = runtime;
      this.breakpoints = new BreakpointTable(runtime, this.scripts, this.mode, (bp) => this.sendEvent(new BreakpointEvent('changed', bp)));
      this.notices = new BrokerNotices(this.breakpoints);
      this.listen(runtime);
      await runtime.enable();
      this.sendEvent(new Event('loupe.grant', grant));
      const until = grant.expiresAt ? ` until ${new Date(grant.expiresAt).toLocaleTimeString()}` : '';
      this.output(`Loupe: attached to ${a.target} (${a.mode ?? 'pause'} mode) through the broker${until}. Every request is recorded.\n`, 'console');
      if (grant.evaluation === 'v8') this.output(`${v8SessionNotice}\n`, 'console');
      this.sendResponse(response);
      this.sendEvent(new InitializedEvent());
    } catch (err) {
      this.sendErrorResponse(response, { id: DapErrorId.AttachFailed, format: `Loupe: ${(err as Error).message}`, showUser: true });
    }
  }

  protected override configurationDoneRequest(response: DebugProtocol.ConfigurationDoneResponse): void {
    this.sendResponse(response);
  }

  protected override disconnectRequest(response: DebugProtocol.DisconnectResponse, args: DebugProtocol.DisconnectArguments): void {
    this.disconnecting = true;
    if (args?.terminateDebuggee) this.output('Loupe never ends the target: detaching only.\n', 'console');
    // The broker removes this session's breakpoints and resumes the target when the socket closes.
    if (this.runtime?.isOpen) void this.runtime.close().then(() => this.sendResponse(response));
    else this.sendResponse(response);
  }

  private listen(runtime: LoupeRuntime): void {
    runtime.on('scriptParsed', (p) => this.onScriptParsed(p));
    runtime.on('breakpointResolved', (p) => this.breakpoints?.resolved(p));
    // In arrival order: a pause may wait for breakpoint answers, and its resume must not overtake it.
    runtime.on('paused', (p) => {
      const expected = this.expectingStop;
      this.expectingStop = undefined;
      this.inOrder(() => this.onPaused(p, expected));
    });
    runtime.on('resumed', () => this.inOrder(() => this.onResumed()));
    runtime.on('console', (p) => this.onConsole(p));
    runtime.on('capture', (p) => this.onCapture(p));
    runtime.on('logpoint', (p) => this.notice(this.notices?.logpoint(p)));
    runtime.on('throttled', (p) => this.notice(this.notices?.throttled(p)));
    runtime.on('suspended', (p) => this.notice(this.notices?.suspended(p)));
    runtime.on('disabled', (p) => this.notice(this.notices?.disabled(p)));
    // Until the user acts again, the broker holds no pause for this session: say so, or a user waiting for the next hit waits forever.
    runtime.on('parked', (p) => this.output(`Loupe: ${p.reason}. Any action here (an evaluation, a breakpoint change, a pause) turns them back on.\n`, 'important'));
    runtime.on('exception', ({ exceptionDetails: d }) => this.output(`Uncaught ${d?.exception?.description ?? d?.text ?? 'exception'}\n`, 'stderr'));
    runtime.on('closed', (info) => this.onClosed(info));
  }

  private inOrder(handle: () => void | Promise<void>): void {
    this.pauseEvents = this.pauseEvents.then(handle).catch((err: unknown) => this.output(`Loupe: ${(err as Error).message}\n`, 'stderr'));
  }

  private onClosed(info: CloseInfo): void {
    if (this.ended) return;
    this.ended = true;
    if (!this.disconnecting) {
      const message = `Loupe: the session has ended: ${closeMessage(info.code, info.reason)}. The broker removed your breakpoints and resumed the target.`;
      this.output(`${message}\n`, 'console');
      const body: SessionEndedEventBody = { code: info.code, reason: info.reason, message };
      this.sendEvent(new Event('loupe.sessionEnded', body));
    }
    this.sendEvent(new TerminatedEvent());
  }

  // ---- scripts and sources ----

  private onScriptParsed(p: Protocol.Debugger.ScriptParsedEvent): void {
    const info = this.scripts.add(p);
    if (!info.localPath || !info.url.startsWith('file://')) return;
    this.breakpoints?.scriptLoaded(info);
    if (!info.localPath.includes('/node_modules/')) {
      for (const source of this.scripts.sourcesOf(info)) this.sendEvent(new LoadedSourceEvent('new', source));
    }
  }

  protected override async sourceRequest(response: DebugProtocol.SourceResponse, args: DebugProtocol.SourceArguments): Promise<void> {
    const scriptId = this.scripts.scriptIdOf(args.sourceReference);
    if (!scriptId || !this.runtime) return this.fail(response, new Error('unknown source'));
    try {
      response.body = { content: await this.runtime.scriptSource(scriptId), mimeType: 'text/javascript' };
      this.sendResponse(response);
    } catch (err) {
      this.fail(response, err);
    }
  }

  protected override loadedSourcesRequest(response: DebugProtocol.LoadedSourcesResponse): void {
    response.body = { sources: this.scripts.loadedSources() };
    this.sendResponse(response);
  }

  // ---- breakpoints ----

  protected override async setBreakPointsRequest(response: DebugProtocol.SetBreakpointsResponse, args: DebugProtocol.SetBreakpointsArguments): Promise<void> {
    const path = args.source.path;
    if (!path || !this.breakpoints) {
      response.body = { breakpoints: (args.breakpoints ?? []).map((b) => ({ verified: false, line: b.line, message: 'Loupe sets breakpoints in local files only' })) };
      return this.sendResponse(response);
    }
    response.body = { breakpoints: await this.breakpoints.set(path, args.breakpoints ?? []) };
    this.sendResponse(response);
  }

  protected override async setExceptionBreakPointsRequest(response: DebugProtocol.SetExceptionBreakpointsResponse, args: DebugProtocol.SetExceptionBreakpointsArguments): Promise<void> {
    const filters = args.filters ?? [];
    const state = filters.includes('all') ? 'all' : filters.includes('uncaught') ? 'uncaught' : 'none';
    if (this.mode === 'snapshot' && state !== 'none') {
      // The broker refuses setPauseOnExceptions in snapshot mode: nothing may hold the target. Said once, not as an error.
      const message = 'exception breakpoints are not available in snapshot mode: the target never pauses';
      response.body = { breakpoints: filters.map(() => ({ verified: false, message: `Loupe: ${message}` })) };
      this.output(`Loupe: ${message}.\n`, 'console');
      return this.sendResponse(response);
    }
    if (!this.runtime || (state === 'none' && this.mode === 'snapshot')) return this.sendResponse(response);
    try {
      await this.runtime.setPauseOnExceptions(state);
      this.sendResponse(response);
    } catch (err) {
      this.fail(response, err, state !== 'none');
    }
  }

  private notice(notice: Notice | undefined): void {
    if (!notice) return;
    this.output(notice.text, notice.category, notice.at);
    notice.then?.();
  }

  // ---- pauses ----

  private async onPaused(p: Protocol.Debugger.PausedEvent, expected: 'step' | 'pause' | undefined): Promise<void> {
    const frames = p.callFrames ?? [];
    const ids = p.hitBreakpoints ?? [];
    // The stop can come before the answer that registers its breakpoint: wait for the changes in flight.
    if (ids.some((id) => !this.breakpoints?.get(id))) await this.breakpoints?.settled();
    if (this.ended) return;
    const hits = ids.map((id) => this.breakpoints?.get(id)).filter((r): r is BreakpointRecord => r !== undefined);
    this.newStop();
    this.stopped.paused = frames;
    if (!expected && ids.length > 0 && hits.length === 0) {
      // Only breakpoints the user has removed since: their hit was on its way, nobody asked for this stop.
      this.stopped.paused = undefined;
      this.resumeRequested = true;
      await this.runtime?.execute('Debugger.resume').catch(() => undefined);
      return;
    }
    if (!expected && hits.length > 0) {
      let stop = false;
      for (const record of new Set(hits)) {
        if (!this.breakpoints!.countHit(record)) continue;
        if (record.logMessage !== undefined) this.output(`${await this.breakpoints!.logLine(record, frames[0])}\n`, 'console', this.breakpoints!.at(record));
        else stop = true;
      }
      if (!stop) {
        // Logpoints and unmet hit counts: the target goes on at once.
        this.stopped.paused = undefined;
        this.resumeRequested = true;
        await this.runtime?.execute('Debugger.resume').catch(() => undefined);
        return;
      }
    }
    const reason =
      hits.length > 0 && !expected ? 'breakpoint' : expected === 'step' ? 'step' : expected === 'pause' ? 'pause' : p.reason === 'exception' || p.reason === 'promiseRejection' ? 'exception' : 'pause';
    const stopped = new StoppedEvent(reason, THREAD_ID) as DebugProtocol.StoppedEvent;
    if (reason === 'breakpoint') stopped.body.hitBreakpointIds = [...new Set(hits.map((h) => h.dapId))];
    if (reason === 'exception') stopped.body.text = (p.data as { description?: string } | undefined)?.description;
    this.stoppedReported = true;
    this.sendEvent(stopped);
  }

  private onResumed(): void {
    this.stopped.paused = undefined;
    const requested = this.resumeRequested;
    this.resumeRequested = false;
    if (this.stoppedReported && !requested) {
      // Resumed by someone else: the broker's pause watchdog, or another session.
      this.output('Loupe: the target was resumed by the broker (pause watchdog or session cleanup).\n', 'console');
      this.sendEvent(new ContinuedEvent(THREAD_ID, true));
    }
    this.stoppedReported = false;
  }

  /** A new stopped state: frame ids and variable references of the last one no longer answer. */
  private newStop(): void {
    this.stopped.next();
    this.variables.reset();
  }

  protected override threadsRequest(response: DebugProtocol.ThreadsResponse): void {
    const name = this.args ? `${this.args.target} (${this.args.mode ?? 'pause'} mode, through Loupe)` : 'main';
    response.body = { threads: [new Thread(THREAD_ID, name)] };
    this.sendResponse(response);
  }

  protected override stackTraceRequest(response: DebugProtocol.StackTraceResponse, args: DebugProtocol.StackTraceArguments): void {
    // A live pause, or in snapshot mode the capture shown: the same mapping to the user's sources.
    response.body = this.stopped.stackTrace(this.scripts, this.mode === 'snapshot' ? { shown: this.captures.shown?.frames } : undefined, args);
    this.sendResponse(response);
  }

  private capturedFrameFor(frameId: number | undefined): CapturedFrame | undefined {
    return this.stopped.capturedFrame(frameId, this.captures.shown?.frames);
  }

  protected override scopesRequest(response: DebugProtocol.ScopesResponse, args: DebugProtocol.ScopesArguments): void {
    const scopes = this.mode === 'snapshot' ? this.variables.capturedScopes(this.capturedFrameFor(args.frameId)) : this.variables.liveScopes(this.stopped.liveFrame(args.frameId));
    response.body = { scopes };
    this.sendResponse(response);
  }

  protected override async variablesRequest(response: DebugProtocol.VariablesResponse, args: DebugProtocol.VariablesArguments): Promise<void> {
    try {
      response.body = { variables: await this.variables.variables(args.variablesReference, this.runtime) };
      this.sendResponse(response);
    } catch (err) {
      this.fail(response, err);
    }
  }

  // ---- evaluation ----

  protected override async evaluateRequest(response: DebugProtocol.EvaluateResponse, args: DebugProtocol.EvaluateArguments): Promise<void> {
    if (!this.runtime) return this.fail(response, new Error('not attached'));
    if (this.mode === 'snapshot' && args.frameId !== undefined) {
      response.body = evaluateCaptured(this.variables, this.capturedFrameFor(args.frameId), args.expression);
      return this.sendResponse(response);
    }
    const answer = await evaluateLive(this.runtime, this.variables, args, this.stopped.liveFrame(args.frameId)?.callFrameId);
    if ('error' in answer) return this.sendErrorResponse(response, { id: DapErrorId.EvaluationFailed, format: dapFormat(answer.error), showUser: false });
    response.body = answer;
    this.sendResponse(response);
  }

  protected override setVariableRequest(response: DebugProtocol.SetVariableResponse): void {
    const why = this.mode === 'snapshot' ? 'a snapshot shows values as captured, and the target has run on since' : 'the broker refuses changes to program state in production';
    this.sendErrorResponse(response, { id: DapErrorId.ReadOnly, format: `Loupe: variables are read-only: ${why}`, showUser: true });
  }

  // ---- snapshots ----

  /** A capture from the broker: listed for the Snapshots view, shown at once or queued behind the one shown. */
  private onCapture(capture: SnapshotCapture): void {
    const entry = this.captures.add(capture);
    if (!entry) return;
    const record = this.breakpoints?.get(capture.breakpointId);
    // Hits inside the broker's rate limit never reach the adapter: in snapshot mode a hit count counts captures.
    if (record && !this.breakpoints!.countHit(record)) entry.notShown = `hit count ${record.hitCondition} not met (capture ${record.hits} of this breakpoint)`;
    this.sendEvent(new Event('loupe.snapshot', this.snapshotBody(entry)));
    if (this.captures.arrive(entry)) this.showCapture(entry);
  }

  private snapshotBody(entry: CaptureEntry): SnapshotEventBody {
    return snapshotBody(entry, this.scripts, this.breakpoints?.get(entry.breakpointId)?.dapId);
  }

  /** Presents a capture as the stopped state; the target is running all along. */
  private showCapture(entry: CaptureEntry): void {
    if (!this.explainedSnapshots) {
      this.explainedSnapshots = true;
      this.output(
        'Loupe: snapshot mode: a stop shows a capture the broker took while the target ran on (values as captured, read-only). Continue shows the next capture; stepping is not available.\n',
        'console',
      );
    }
    this.captures.shown = entry;
    this.newStop();
    const record = this.breakpoints?.get(entry.breakpointId);
    const stopped = new StoppedEvent('breakpoint', THREAD_ID) as DebugProtocol.StoppedEvent;
    stopped.body.description = 'Snapshot';
    stopped.body.text = `Snapshot ${entry.seq} taken at ${entry.capturedAt}${entry.pauseMs !== undefined ? ` (the target was held ${entry.pauseMs} ms for it)` : ''}${entry.truncated ? `; incomplete: ${entry.truncated}` : ''}`;
    if (record) stopped.body.hitBreakpointIds = [record.dapId];
    this.stoppedReported = true;
    this.sendEvent(new Event('loupe.snapshotShown', { captureId: entry.captureId } satisfies SnapshotShownEventBody));
    this.sendEvent(stopped);
  }

  protected override customRequest(command: string, response: DebugProtocol.Response, args: any): void {
    if (command === 'loupe.showSnapshot') {
      const entry = this.captures.take(args?.captureId);
      if (!entry)
        return this.sendErrorResponse(response, {
          id: DapErrorId.CaptureNotKept,
          format: `Loupe: capture ${String(args?.captureId)} is not kept (the adapter keeps the last ${maxCapturesKept}; the session's transcript has every capture)`,
          showUser: true,
        });
      response.body = { captureId: entry.captureId, seq: entry.seq };
      this.sendResponse(response);
      this.showCapture(entry);
      return;
    }
    if (command === 'loupe.snapshots') {
      response.body = { captures: this.captures.all.map((c) => this.snapshotBody(c)), shown: this.captures.shown?.captureId, queued: this.captures.queued.map((c) => c.captureId) };
      return this.sendResponse(response);
    }
    super.customRequest(command, response, args);
  }

  // ---- execution control ----

  private async execute(response: DebugProtocol.Response, command: ExecutionCommand, expecting?: 'step' | 'pause'): Promise<void> {
    if (!this.runtime) return this.fail(response, new Error('not attached'));
    if (expecting) this.expectingStop = expecting;
    if (command === 'Debugger.resume') this.resumeRequested = true;
    try {
      await this.runtime.execute(command);
      this.sendResponse(response);
    } catch (err) {
      this.expectingStop = undefined;
      if (command === 'Debugger.resume') this.resumeRequested = false;
      this.fail(response, err, true);
    }
  }

  protected override continueRequest(response: DebugProtocol.ContinueResponse): Promise<void> {
    response.body = { allThreadsContinued: true };
    this.stoppedReported = false;
    if (this.mode === 'snapshot') {
      // The target never stopped: continue moves to the next capture, or waits for one.
      this.sendResponse(response);
      const next = this.captures.next();
      if (next) this.showCapture(next);
      else this.sendEvent(new ContinuedEvent(THREAD_ID, true));
      return Promise.resolve();
    }
    return this.execute(response, 'Debugger.resume');
  }

  /** Snapshot mode has no live pause to step in or to make. */
  private refuseInSnapshot(response: DebugProtocol.Response, what: 'step' | 'pause'): boolean {
    if (this.mode !== 'snapshot') return false;
    const format =
      what === 'step'
        ? 'Loupe: stepping is not available in snapshot mode: this stop is a capture, and the target was never paused. Continue shows the next capture.'
        : 'Loupe: snapshot mode never pauses the target: set a breakpoint, and its hits are captured and shown here.';
    this.sendErrorResponse(response, { id: DapErrorId.NotInSnapshotMode, format, showUser: true });
    return true;
  }

  private step(response: DebugProtocol.Response, command: ExecutionCommand): Promise<void> {
    if (this.refuseInSnapshot(response, 'step')) return Promise.resolve();
    this.stoppedReported = false;
    this.resumeRequested = true;
    return this.execute(response, command, 'step');
  }

  protected override nextRequest(response: DebugProtocol.NextResponse): Promise<void> {
    return this.step(response, 'Debugger.stepOver');
  }
  protected override stepInRequest(response: DebugProtocol.StepInResponse): Promise<void> {
    return this.step(response, 'Debugger.stepInto');
  }
  protected override stepOutRequest(response: DebugProtocol.StepOutResponse): Promise<void> {
    return this.step(response, 'Debugger.stepOut');
  }
  protected override pauseRequest(response: DebugProtocol.PauseResponse): Promise<void> {
    if (this.refuseInSnapshot(response, 'pause')) return Promise.resolve();
    return this.execute(response, 'Debugger.pause', 'pause');
  }

  // ---- console ----

  private onConsole(p: Protocol.Runtime.ConsoleAPICalledEvent): void {
    const text = (p.args ?? []).map(logValue).join(' ');
    this.output(`${text}\n`, p.type === 'error' || p.type === 'warning' ? 'stderr' : 'stdout');
  }
}
