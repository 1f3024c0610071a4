/**
 * The Loupe debug adapter: DAP toward VS Code (or any DAP client), CDP toward the broker. No `vscode` import:
 * it runs inline in the extension host and standalone (dist/debugAdapter.js) for the DAP tests.
 *
 * The broker is the enforcement point; this adapter only speaks its dialect well:
 * - variables come from Runtime.getProperties (getters are never invoked; Runtime.callFunctionOn is refused);
 * - evaluation is side-effect free (forced by the broker); a refusal is shown as the evaluation's result;
 * - breakpoint conditions go to the broker, which checks them on pause; hit counts and logpoints are done
 *   here: a logpoint is a breakpoint whose message the adapter evaluates (side-effect free) on pause and then
 *   resumes, so the target is held only for those evaluations;
 * - disconnect closes the socket: the broker removes the breakpoints and resumes the target. The target is never ended.
 */
import { basename } from 'node:path';
import { existsSync } from 'node:fs';
import {
  Breakpoint,
  BreakpointEvent,
  ContinuedEvent,
  Handles,
  InitializedEvent,
  LoadedSourceEvent,
  Logger,
  logger,
  LoggingDebugSession,
  OutputEvent,
  Scope,
  Source,
  StackFrame,
  StoppedEvent,
  TerminatedEvent,
  Thread,
  Event,
} from '@vscode/debugadapter';
import type { DebugProtocol } from '@vscode/debugprotocol';
import { BrokerApi, describeBrokerError } from './brokerApi';
import { CdpConnection, CdpError, type CloseInfo } from './cdpConnection';
import type { GrantEventBody, LoupeAttachArguments, SessionEndedEventBody } from './config';
import { PathMapper, SourceMap, findOutFiles, loadSourceMap } from './sourceMaps';

const THREAD_ID = 1;

interface ScriptInfo {
  scriptId: string;
  url: string;
  sourceMapURL?: string;
  localPath?: string;
  /** undefined: not looked up yet; null: none. */
  map?: SourceMap | null;
}

interface BreakpointRecord {
  dapId: number;
  path: string;
  line: number;
  condition?: string;
  hitCondition?: string;
  logMessage?: string;
  cdpIds: string[];
  verified: boolean;
  boundLine?: number;
  message?: string;
  hits: number;
}

interface RemoteObject {
  type: string;
  subtype?: string;
  className?: string;
  value?: unknown;
  unserializableValue?: string;
  description?: string;
  objectId?: string;
}

interface CallFrame {
  callFrameId: string;
  functionName: string;
  location: { scriptId: string; lineNumber: number; columnNumber?: number };
  url?: string;
  scopeChain: { type: string; name?: string; object: RemoteObject }[];
  this?: RemoteObject;
}

type VariableContainer = { objectId: string };

const closeMessages: Record<number, string> = {
  4001: 'the grant expired',
  4002: 'the grant was revoked',
  4003: 'the broker is shutting down',
  4004: 'the target process went away',
  4005: 'the audit trail is unavailable (Loupe fails closed)',
};

export class LoupeDebugSession extends LoggingDebugSession {
  private cdp: CdpConnection | undefined;
  private args: LoupeAttachArguments | undefined;
  private mapper = new PathMapper();
  private useSourceMaps = true;
  private readonly scripts = new Map<string, ScriptInfo>();
  /** Source maps of the outFiles, loaded up front so breakpoints bind before their script loads. */
  private outFileMaps: SourceMap[] = [];
  private readonly breakpointsByPath = new Map<string, BreakpointRecord[]>();
  private readonly byCdpId = new Map<string, BreakpointRecord>();
  private nextBreakpointId = 1;
  private pausedFrames: CallFrame[] | undefined;
  private pauseSeq = 0;
  private stoppedReported = false;
  private expectingStop: 'step' | 'pause' | undefined;
  private resumeRequested = false;
  private variableHandles = new Handles<VariableContainer>();
  private readonly sourceHandles = new Handles<string>();
  private disconnecting = false;
  private ended = false;
  private grant: GrantEventBody | undefined;

  constructor() {
    super();
    this.setDebuggerLinesStartAt1(true);
    this.setDebuggerColumnsStartAt1(true);
  }

  // ---- lifecycle ----

  protected override initializeRequest(response: DebugProtocol.InitializeResponse): void {
    response.body = {
      supportsConfigurationDoneRequest: true,
      supportsConditionalBreakpoints: true,
      supportsHitConditionalBreakpoints: true,
      supportsLogPoints: true,
      supportsEvaluateForHovers: true,
      supportsLoadedSourcesRequest: true,
      supportsTerminateRequest: false,
      supportTerminateDebuggee: false,
      supportsSetVariable: false,
      supportsSetExpression: false,
      supportsRestartFrame: false,
      supportsRestartRequest: false,
      supportsStepBack: false,
      supportsCompletionsRequest: false,
      supportsExceptionInfoRequest: false,
      supportsFunctionBreakpoints: false,
      supportsDataBreakpoints: false,
      supportsReadMemoryRequest: false,
      supportsValueFormattingOptions: false,
      exceptionBreakpointFilters: [
        { filter: 'uncaught', label: 'Uncaught Exceptions', default: false },
        { filter: 'all', label: 'All Exceptions', default: false },
      ],
    };
    this.sendResponse(response);
  }

  protected override async attachRequest(response: DebugProtocol.AttachResponse, args: DebugProtocol.AttachRequestArguments): Promise<void> {
    const a = args as LoupeAttachArguments;
    this.args = a;
    logger.setup(a.trace ? Logger.LogLevel.Verbose : Logger.LogLevel.Stop, false);
    this.mapper = new PathMapper(a.localRoot, a.remoteRoot ?? a.localRoot);
    this.useSourceMaps = a.sourceMaps !== false;
    try {
      if (!a.target) throw new Error('the configuration names no "target"');
      let grantToken = a.grantToken;
      let attachUrl = a.attachUrl;
      let grant: GrantEventBody | undefined = grantToken && attachUrl ? { grantId: a.grantId ?? '', target: a.target, mode: a.mode ?? 'pause', expiresAt: a.expiresAt ?? '' } : undefined;
      if (!grantToken || !attachUrl) {
        if (!a.brokerUrl) throw new Error('no broker URL: set "brokerUrl" in the configuration or the loupe.brokerUrl setting');
        if (!a.identityToken) throw new Error('not signed in: run "Loupe: Sign In…" first (no identity token)');
        if (!a.reason?.trim()) throw new Error('a reason is required to attach to production ("reason" in the configuration)');
        const api = new BrokerApi(a.brokerUrl, a.identityToken);
        let answer;
        try {
          answer = await api.requestGrant({ target: a.target, mode: a.mode ?? 'pause', durationSeconds: a.durationSeconds ?? 900, reason: a.reason, ...(a.ticket ? { ticket: a.ticket } : {}) });
        } catch (err) {
          throw new Error(`grant refused: ${describeBrokerError(err)}`);
        }
        grantToken = answer.token;
        attachUrl = answer.attachUrl;
        grant = { grantId: answer.grantId, target: a.target, mode: a.mode ?? 'pause', expiresAt: answer.expiresAt };
        if (answer.capped) this.output(`Loupe: the grant was capped by policy to ${answer.durationSeconds} s.\n`, 'console');
      }
      this.grant = grant;
      if (this.useSourceMaps) this.outFileMaps = this.loadOutFiles(a);
      const cdp = await CdpConnection.connect(attachUrl!, grantToken!);
      this.cdp = cdp;
      this.listen(cdp);
      await cdp.send('Runtime.enable');
      await cdp.send('Debugger.enable', {});
      if (grant) this.sendEvent(new Event('loupe.grant', grant));
      const until = grant?.expiresAt ? ` until ${new Date(grant.expiresAt).toLocaleTimeString()}` : '';
      this.output(`Loupe: attached to ${a.target} (${a.mode ?? 'pause'} mode) through the broker${until}. Every request is recorded.\n`, 'console');
      this.sendResponse(response);
      this.sendEvent(new InitializedEvent());
    } catch (err) {
      this.sendErrorResponse(response, { id: 1001, format: `Loupe: ${(err as Error).message}`, showUser: true });
    }
  }

  private loadOutFiles(a: LoupeAttachArguments): SourceMap[] {
    const patterns = a.outFiles ?? (a.localRoot ? [`${a.localRoot}/**/*.js`] : []);
    const maps: SourceMap[] = [];
    for (const file of findOutFiles(patterns)) {
      const map = loadSourceMap(file, this.mapper);
      if (map) maps.push(map);
    }
    return maps;
  }

  protected override configurationDoneRequest(response: DebugProtocol.ConfigurationDoneResponse): void {
    this.sendResponse(response);
  }

  protected override disconnectRequest(response: DebugProtocol.DisconnectResponse, args: DebugProtocol.DisconnectArguments): void {
    this.disconnecting = true;
    if (args?.terminateDebuggee) this.output('Loupe never ends the target: detaching only.\n', 'console');
    // The broker removes this session's breakpoints and resumes the target when the socket closes.
    const cdp = this.cdp;
    if (cdp?.isOpen) {
      cdp.close(1000, 'debugger disconnected');
      void Promise.race([cdp.closed, new Promise((r) => setTimeout(r, 2000))]).then(() => this.sendResponse(response));
    } else this.sendResponse(response);
  }

  private listen(cdp: CdpConnection): void {
    cdp.on('Debugger.scriptParsed', (p) => this.onScriptParsed(p));
    cdp.on('Debugger.breakpointResolved', (p) => this.onBreakpointResolved(p));
    cdp.on('Debugger.paused', (p) => void this.onPaused(p));
    cdp.on('Debugger.resumed', () => this.onResumed());
    cdp.on('Runtime.consoleAPICalled', (p) => this.onConsole(p));
    cdp.on('Runtime.exceptionThrown', (p) => {
      const d = p.exceptionDetails;
      this.output(`Uncaught ${d?.exception?.description ?? d?.text ?? 'exception'}\n`, 'stderr');
    });
    void cdp.closed.then((info) => this.onClosed(info));
  }

  private onClosed(info: CloseInfo): void {
    if (this.ended) return;
    this.ended = true;
    if (!this.disconnecting) {
      const why = closeMessages[info.code] ?? (info.reason || `the connection to the broker closed (code ${info.code})`);
      const message = `Loupe: the session has ended: ${why}. The broker removed your breakpoints and resumed the target.`;
      this.output(`${message}\n`, 'console');
      const body: SessionEndedEventBody = { code: info.code, reason: info.reason, message };
      this.sendEvent(new Event('loupe.sessionEnded', body));
    }
    this.sendEvent(new TerminatedEvent());
  }

  private output(text: string, category: 'console' | 'stdout' | 'stderr' | 'important', extra?: Partial<DebugProtocol.OutputEvent['body']>): void {
    const e = new OutputEvent(text, category) as DebugProtocol.OutputEvent;
    if (extra) Object.assign(e.body, extra);
    this.sendEvent(e);
  }

  private fail(response: DebugProtocol.Response, err: unknown, showUser = false): void {
    const message = err instanceof CdpError ? err.message : ((err as Error)?.message ?? String(err));
    this.sendErrorResponse(response, { id: 2001, format: message.replace(/\{/g, '{{').replace(/\}/g, '}}'), showUser });
  }

  // ---- scripts and sources ----

  private onScriptParsed(p: any): void {
    const info: ScriptInfo = { scriptId: p.scriptId, url: p.url ?? '', ...(p.sourceMapURL ? { sourceMapURL: p.sourceMapURL } : {}) };
    const local = info.url ? this.mapper.toLocal(info.url) : undefined;
    if (local) info.localPath = local;
    this.scripts.set(info.scriptId, info);
    if (!local || !info.url.startsWith('file://')) return;
    const pending = [...this.byPath()].filter((r) => !r.verified && r.cdpIds.length === 0 && !r.message?.includes('refused'));
    if (pending.length > 0 && this.useSourceMaps) {
      const map = this.mapFor(info);
      // A generated file the outFiles did not list: bind the breakpoints waiting in its sources now.
      if (map && !this.outFileMaps.some((m) => m.generatedPath === map.generatedPath)) {
        for (const record of pending) if (map.has(record.path)) void this.bind(record, [map]).then(() => this.sendEvent(new BreakpointEvent('changed', this.toDap(record))));
      }
    }
    if (info.url.startsWith('file://') && !local.includes('/node_modules/')) {
      for (const source of this.sourcesOf(info)) this.sendEvent(new LoadedSourceEvent('new', source));
    }
  }

  private *byPath(): Iterable<BreakpointRecord> {
    for (const list of this.breakpointsByPath.values()) yield* list;
  }

  private mapFor(script: ScriptInfo): SourceMap | undefined {
    if (!this.useSourceMaps || !script.localPath) return undefined;
    if (script.map === undefined) {
      script.map =
        this.outFileMaps.find((m) => m.generatedPath === script.localPath) ??
        (script.sourceMapURL || existsSync(script.localPath) ? loadSourceMap(script.localPath, this.mapper, script.sourceMapURL) : undefined) ??
        null;
    }
    return script.map ?? undefined;
  }

  private sourcesOf(script: ScriptInfo): Source[] {
    const map = this.mapFor(script);
    if (map) return map.sources.map((s) => new Source(basename(s), s));
    if (script.localPath && existsSync(script.localPath)) return [new Source(basename(script.localPath), script.localPath)];
    return [this.remoteSource(script)];
  }

  private remoteSource(script: ScriptInfo): Source {
    const name = script.url ? script.url.split('/').pop() || script.url : `script ${script.scriptId}`;
    const source = new Source(name, undefined, this.sourceHandles.create(script.scriptId), script.url.startsWith('node:') ? 'Node.js internal' : 'remote (read-only)', 'loupe');
    if (script.url.startsWith('node:')) (source as DebugProtocol.Source).presentationHint = 'deemphasize';
    return source;
  }

  protected override async sourceRequest(response: DebugProtocol.SourceResponse, args: DebugProtocol.SourceArguments): Promise<void> {
    const scriptId = this.sourceHandles.get(args.sourceReference);
    if (!scriptId || !this.cdp) return this.fail(response, new Error('unknown source'));
    try {
      const r = await this.cdp.send('Debugger.getScriptSource', { scriptId });
      response.body = { content: r.scriptSource ?? '', mimeType: 'text/javascript' };
      this.sendResponse(response);
    } catch (err) {
      this.fail(response, err);
    }
  }

  protected override loadedSourcesRequest(response: DebugProtocol.LoadedSourcesResponse): void {
    const seen = new Set<string>();
    const sources: Source[] = [];
    for (const script of this.scripts.values()) {
      if (!script.url.startsWith('file://')) continue;
      for (const s of this.sourcesOf(script)) {
        const key = s.path ?? `${s.name}#${s.sourceReference}`;
        if (seen.has(key)) continue;
        seen.add(key);
        sources.push(s);
      }
    }
    response.body = { sources };
    this.sendResponse(response);
  }

  // ---- breakpoints ----

  protected override async setBreakPointsRequest(response: DebugProtocol.SetBreakpointsResponse, args: DebugProtocol.SetBreakpointsArguments): Promise<void> {
    const path = args.source.path;
    if (!path || !this.cdp) {
      response.body = { breakpoints: (args.breakpoints ?? []).map((b) => ({ verified: false, line: b.line, message: 'Loupe sets breakpoints in local files only' })) };
      return this.sendResponse(response);
    }
    const old = this.breakpointsByPath.get(path) ?? [];
    // Remove first: the target refuses a second breakpoint at the same location.
    await Promise.all(
      old.flatMap((r) =>
        r.cdpIds.map((id) => {
          this.byCdpId.delete(id);
          return this.cdp!.send('Debugger.removeBreakpoint', { breakpointId: id }).catch(() => undefined);
        }),
      ),
    );
    const records: BreakpointRecord[] = (args.breakpoints ?? []).map((b) => ({
      dapId: this.nextBreakpointId++,
      path,
      line: b.line,
      ...(b.condition?.trim() ? { condition: b.condition.trim() } : {}),
      ...(b.hitCondition?.trim() ? { hitCondition: b.hitCondition.trim() } : {}),
      ...(b.logMessage !== undefined && b.logMessage !== '' ? { logMessage: b.logMessage } : {}),
      cdpIds: [],
      verified: false,
      hits: 0,
    }));
    this.breakpointsByPath.set(path, records);
    for (const record of records) {
      if (record.hitCondition && !parseHitCondition(record.hitCondition)) {
        record.message = `hit count "${record.hitCondition}" not understood: use N, >N, >=N, <N, <=N, ==N or %N`;
        continue;
      }
      const maps = this.useSourceMaps ? this.mapsContaining(path) : [];
      await this.bind(record, maps);
    }
    response.body = { breakpoints: records.map((r) => this.toDap(r)) };
    this.sendResponse(response);
  }

  /** Source maps (outFiles and loaded scripts) in which `path` is an original source. */
  private mapsContaining(path: string): SourceMap[] {
    const maps = new Map<string, SourceMap>();
    for (const m of this.outFileMaps) if (m.has(path)) maps.set(m.generatedPath, m);
    for (const script of this.scripts.values()) {
      if (!script.url.startsWith('file://')) continue;
      const m = this.mapFor(script);
      if (m?.has(path)) maps.set(m.generatedPath, m);
    }
    return [...maps.values()];
  }

  /** Sets the CDP breakpoints of one record: in each generated file that maps it, or in the file itself. */
  private async bind(record: BreakpointRecord, maps: SourceMap[]): Promise<void> {
    const places: { url: string; lineNumber: number; columnNumber?: number }[] = [];
    for (const map of maps) {
      const pos = map.toGenerated(record.path, record.line);
      if (pos) places.push({ url: this.mapper.toRemoteUrl(map.generatedPath), lineNumber: pos.line - 1, columnNumber: pos.column });
    }
    if (maps.length > 0 && places.length === 0) {
      record.message = `no code at line ${record.line} of ${basename(record.path)} in its source map`;
      return;
    }
    if (places.length === 0) places.push({ url: this.mapper.toRemoteUrl(record.path), lineNumber: record.line - 1 });
    for (const place of places) {
      try {
        const r = await this.cdp!.send('Debugger.setBreakpointByUrl', { ...place, ...(record.condition ? { condition: record.condition } : {}) });
        record.cdpIds.push(r.breakpointId);
        this.byCdpId.set(r.breakpointId, record);
        const loc = r.locations?.[0];
        if (loc) {
          record.verified = true;
          record.boundLine = this.originalLine(loc) ?? record.line;
          delete record.message;
        } else if (!record.verified) {
          record.message = `pending: binds when ${this.mapper.toRemotePath(this.mapper.toLocal(place.url) ?? place.url)} is loaded`;
        }
      } catch (err) {
        // The broker's refusal, word for word (e.g. a condition with a side effect).
        record.message = (err as Error).message;
      }
    }
  }

  private toDap(record: BreakpointRecord): DebugProtocol.Breakpoint {
    const bp = new Breakpoint(record.verified, record.boundLine ?? record.line) as DebugProtocol.Breakpoint;
    bp.id = record.dapId;
    if (record.message) bp.message = record.message;
    return bp;
  }

  private originalLine(loc: { scriptId: string; lineNumber: number; columnNumber?: number }): number | undefined {
    const script = this.scripts.get(loc.scriptId);
    if (!script) return undefined;
    const map = this.mapFor(script);
    if (map) return map.toOriginal({ line: loc.lineNumber + 1, column: loc.columnNumber ?? 0 })?.line;
    return loc.lineNumber + 1;
  }

  private onBreakpointResolved(p: any): void {
    const record = this.byCdpId.get(p.breakpointId);
    if (!record || record.verified) return;
    record.verified = true;
    record.boundLine = this.originalLine(p.location) ?? record.line;
    delete record.message;
    this.sendEvent(new BreakpointEvent('changed', this.toDap(record)));
  }

  protected override async setExceptionBreakPointsRequest(response: DebugProtocol.SetExceptionBreakpointsResponse, args: DebugProtocol.SetExceptionBreakpointsArguments): Promise<void> {
    const filters = args.filters ?? [];
    const state = filters.includes('all') ? 'all' : filters.includes('uncaught') ? 'uncaught' : 'none';
    if (!this.cdp || (state === 'none' && this.args?.mode === 'snapshot')) return this.sendResponse(response);
    try {
      await this.cdp.send('Debugger.setPauseOnExceptions', { state });
      this.sendResponse(response);
    } catch (err) {
      this.fail(response, err, state !== 'none');
    }
  }

  // ---- pauses ----

  private async onPaused(p: any): Promise<void> {
    const frames = (p.callFrames ?? []) as CallFrame[];
    const hits = ((p.hitBreakpoints ?? []) as string[]).map((id) => this.byCdpId.get(id)).filter((r): r is BreakpointRecord => r !== undefined);
    const expected = this.expectingStop;
    this.expectingStop = undefined;
    this.pausedFrames = frames;
    this.pauseSeq++;
    this.variableHandles = new Handles<VariableContainer>();
    if (!expected && hits.length > 0) {
      const unique = [...new Set(hits)];
      let stop = false;
      for (const record of unique) {
        record.hits++;
        if (record.hitCondition && !hitConditionPasses(record.hitCondition, record.hits)) continue;
        if (record.logMessage !== undefined) await this.logpoint(record, frames[0]);
        else stop = true;
      }
      if (!stop) {
        // Logpoints and unmet hit counts: the target goes on at once.
        this.pausedFrames = undefined;
        this.resumeRequested = true;
        await this.cdp?.send('Debugger.resume').catch(() => undefined);
        return;
      }
    }
    const reason = hits.length > 0 && !expected ? 'breakpoint' : expected === 'step' ? 'step' : expected === 'pause' ? 'pause' : p.reason === 'exception' || p.reason === 'promiseRejection' ? 'exception' : 'pause';
    const stopped = new StoppedEvent(reason, THREAD_ID) as DebugProtocol.StoppedEvent;
    if (reason === 'breakpoint') stopped.body.hitBreakpointIds = [...new Set(hits.map((h) => h.dapId))];
    if (reason === 'exception') stopped.body.text = p.data?.description;
    this.stoppedReported = true;
    this.sendEvent(stopped);
  }

  private onResumed(): void {
    this.pausedFrames = undefined;
    const requested = this.resumeRequested;
    this.resumeRequested = false;
    if (this.stoppedReported && !requested) {
      // Resumed by someone else: the broker's pause watchdog, or another session.
      this.output('Loupe: the target was resumed by the broker (pause watchdog or session cleanup).\n', 'console');
      this.sendEvent(new ContinuedEvent(THREAD_ID, true));
    }
    this.stoppedReported = false;
  }

  private async logpoint(record: BreakpointRecord, frame: CallFrame | undefined): Promise<void> {
    const parts = splitLogMessage(record.logMessage!);
    let text = '';
    for (const part of parts) {
      if (part.kind === 'text') text += part.text;
      else if (!frame) text += '<no frame>';
      else {
        try {
          const r = await this.cdp!.send('Debugger.evaluateOnCallFrame', { callFrameId: frame.callFrameId, expression: part.text, silent: true, generatePreview: true, objectGroup: 'loupe-logpoint' });
          if (r.exceptionDetails) text += `<${refusalOrError(r).text}>`;
          else text += logValue(r.result);
        } catch (err) {
          text += `<${(err as Error).message}>`;
        }
      }
    }
    this.output(`${text}\n`, 'stdout', { source: new Source(basename(record.path), record.path), line: record.boundLine ?? record.line });
  }

  protected override threadsRequest(response: DebugProtocol.ThreadsResponse): void {
    const name = this.args ? `${this.args.target} (${this.args.mode ?? 'pause'} mode, through Loupe)` : 'main';
    response.body = { threads: [new Thread(THREAD_ID, name)] };
    this.sendResponse(response);
  }

  protected override stackTraceRequest(response: DebugProtocol.StackTraceResponse, args: DebugProtocol.StackTraceArguments): void {
    const frames = this.pausedFrames ?? [];
    const start = args.startFrame ?? 0;
    const count = args.levels && args.levels > 0 ? args.levels : frames.length;
    const out: StackFrame[] = [];
    for (let i = start; i < Math.min(frames.length, start + count); i++) {
      const f = frames[i]!;
      const id = this.pauseSeq * 10_000 + i;
      const name = f.functionName || '(anonymous)';
      const script = this.scripts.get(f.location.scriptId) ?? { scriptId: f.location.scriptId, url: f.url ?? '' };
      const map = this.mapFor(script);
      const orig = map?.toOriginal({ line: f.location.lineNumber + 1, column: f.location.columnNumber ?? 0 });
      if (orig) out.push(new StackFrame(id, name, new Source(basename(orig.source), orig.source), orig.line, orig.column + 1));
      else if (script.localPath && existsSync(script.localPath)) out.push(new StackFrame(id, name, new Source(basename(script.localPath), script.localPath), f.location.lineNumber + 1, (f.location.columnNumber ?? 0) + 1));
      else {
        const frame = new StackFrame(id, name, this.remoteSource(script), f.location.lineNumber + 1, (f.location.columnNumber ?? 0) + 1) as DebugProtocol.StackFrame;
        if (script.url.startsWith('node:')) frame.presentationHint = 'subtle';
        out.push(frame);
      }
    }
    response.body = { stackFrames: out, totalFrames: frames.length };
    this.sendResponse(response);
  }

  private frameFor(frameId: number | undefined): CallFrame | undefined {
    if (frameId === undefined || !this.pausedFrames) return undefined;
    if (Math.floor(frameId / 10_000) !== this.pauseSeq) return undefined;
    return this.pausedFrames[frameId % 10_000];
  }

  protected override scopesRequest(response: DebugProtocol.ScopesResponse, args: DebugProtocol.ScopesArguments): void {
    const frame = this.frameFor(args.frameId);
    const scopes: DebugProtocol.Scope[] = [];
    for (const s of frame?.scopeChain ?? []) {
      if (!s.object.objectId) continue;
      const label = s.type === 'local' ? 'Local' : s.type === 'global' ? 'Global' : s.type[0]!.toUpperCase() + s.type.slice(1);
      const scope = new Scope(s.name && s.type !== 'local' ? `${label}: ${s.name}` : label, this.variableHandles.create({ objectId: s.object.objectId }), s.type === 'global') as DebugProtocol.Scope;
      if (s.type === 'local') scope.presentationHint = 'locals';
      scopes.push(scope);
    }
    response.body = { scopes };
    this.sendResponse(response);
  }

  protected override async variablesRequest(response: DebugProtocol.VariablesResponse, args: DebugProtocol.VariablesArguments): Promise<void> {
    const container = this.variableHandles.get(args.variablesReference);
    if (!container || !this.cdp) {
      response.body = { variables: [] };
      return this.sendResponse(response);
    }
    try {
      // Runtime.getProperties never runs user code: getters, Proxy traps and toString are not invoked.
      const r = await this.cdp.send('Runtime.getProperties', { objectId: container.objectId, ownProperties: true, generatePreview: false });
      const variables: DebugProtocol.Variable[] = [];
      for (const p of r.result ?? []) {
        if (p.value) variables.push(this.variable(p.name, p.value));
        else if (p.get || p.set) {
          variables.push({ name: p.name, value: p.get && p.get.type !== 'undefined' ? '(getter: not invoked by Loupe)' : '(setter only)', variablesReference: 0, presentationHint: { kind: 'property', attributes: ['readOnly'] } });
        }
      }
      for (const p of r.internalProperties ?? []) {
        if (p.value && p.name !== '[[Scopes]]' && p.name !== '[[FunctionLocation]]') variables.push(this.variable(p.name, p.value));
      }
      response.body = { variables };
      this.sendResponse(response);
    } catch (err) {
      this.fail(response, err);
    }
  }

  private variable(name: string, value: RemoteObject): DebugProtocol.Variable {
    const v: DebugProtocol.Variable = { name, value: formatValue(value), variablesReference: value.objectId && value.type !== 'function' ? this.variableHandles.create({ objectId: value.objectId }) : 0 };
    if (value.type) v.type = value.subtype ?? value.className ?? value.type;
    return v;
  }

  // ---- evaluation ----

  protected override async evaluateRequest(response: DebugProtocol.EvaluateResponse, args: DebugProtocol.EvaluateArguments): Promise<void> {
    if (!this.cdp) return this.fail(response, new Error('not attached'));
    const frame = this.frameFor(args.frameId);
    try {
      const common = { expression: args.expression, objectGroup: 'loupe-eval', silent: true, generatePreview: false };
      // The broker forces throwOnSideEffect and a timeout on both.
      const r = frame ? await this.cdp.send('Debugger.evaluateOnCallFrame', { ...common, callFrameId: frame.callFrameId }) : await this.cdp.send('Runtime.evaluate', common);
      if (r.exceptionDetails) {
        const { text, refused } = refusalOrError(r);
        if (refused) {
          response.body = { result: text, variablesReference: 0, presentationHint: { attributes: ['readOnly'] } };
          return this.sendResponse(response);
        }
        return this.sendErrorResponse(response, { id: 2002, format: text.replace(/\{/g, '{{').replace(/\}/g, '}}'), showUser: false });
      }
      const value = r.result as RemoteObject;
      response.body = { result: formatValue(value), variablesReference: value.objectId && value.type !== 'function' ? this.variableHandles.create({ objectId: value.objectId }) : 0, ...(value.type ? { type: value.subtype ?? value.type } : {}) };
      this.sendResponse(response);
    } catch (err) {
      // A refusal by the broker's gate (or V8's termination at the forced timeout): shown as the result.
      const message = (err as Error).message;
      const text = /Execution was terminated/.test(message) ? `Refused by Loupe: the evaluation ran past the broker's time limit and was stopped` : message.includes('refused') ? `Refused by Loupe: ${message}` : message;
      response.body = { result: text, variablesReference: 0, presentationHint: { attributes: ['readOnly'] } };
      this.sendResponse(response);
    }
  }

  // ---- execution control ----

  private async control(response: DebugProtocol.Response, method: string, expecting?: 'step' | 'pause'): Promise<void> {
    if (!this.cdp) return this.fail(response, new Error('not attached'));
    if (expecting) this.expectingStop = expecting;
    if (method === 'Debugger.resume') this.resumeRequested = true;
    try {
      await this.cdp.send(method);
      this.sendResponse(response);
    } catch (err) {
      this.expectingStop = undefined;
      if (method === 'Debugger.resume') this.resumeRequested = false;
      this.fail(response, err, true);
    }
  }

  protected override continueRequest(response: DebugProtocol.ContinueResponse): Promise<void> {
    response.body = { allThreadsContinued: true };
    this.stoppedReported = false;
    return this.control(response, 'Debugger.resume');
  }
  protected override nextRequest(response: DebugProtocol.NextResponse): Promise<void> {
    this.stoppedReported = false;
    this.resumeRequested = true;
    return this.control(response, 'Debugger.stepOver', 'step');
  }
  protected override stepInRequest(response: DebugProtocol.StepInResponse): Promise<void> {
    this.stoppedReported = false;
    this.resumeRequested = true;
    return this.control(response, 'Debugger.stepInto', 'step');
  }
  protected override stepOutRequest(response: DebugProtocol.StepOutResponse): Promise<void> {
    this.stoppedReported = false;
    this.resumeRequested = true;
    return this.control(response, 'Debugger.stepOut', 'step');
  }
  protected override pauseRequest(response: DebugProtocol.PauseResponse): Promise<void> {
    return this.control(response, 'Debugger.pause', 'pause');
  }

  // ---- console ----

  private onConsole(p: any): void {
    const text = ((p.args ?? []) as RemoteObject[]).map((a) => (a.type === 'string' ? String(a.value) : formatValue(a))).join(' ');
    this.output(`${text}\n`, p.type === 'error' || p.type === 'warning' ? 'stderr' : 'stdout');
  }
}

// ---- helpers (exported for unit tests) ----

export function formatValue(v: RemoteObject): string {
  if (v.unserializableValue !== undefined) return v.unserializableValue;
  switch (v.type) {
    case 'undefined':
      return 'undefined';
    case 'string': {
      const s = JSON.stringify(v.value ?? v.description ?? '');
      return s.length > 1000 ? `${s.slice(0, 1000)}…"` : s;
    }
    case 'number':
    case 'boolean':
      return String(v.value ?? v.description);
    case 'bigint':
      return v.description ?? `${String(v.value)}n`;
    case 'object':
      if (v.subtype === 'null') return 'null';
      return v.description ?? v.className ?? 'Object';
    case 'function':
      return v.description ? v.description.split('\n')[0]!.slice(0, 200) : 'ƒ';
    default:
      return v.description ?? String(v.value);
  }
}

function logValue(v: RemoteObject & { preview?: { properties?: { name: string; value?: string }[]; overflow?: boolean; subtype?: string } }): string {
  if (v.type === 'string') return String(v.value);
  if (v.type === 'object' && v.preview?.properties && v.subtype !== 'null') {
    const isArray = v.subtype === 'array';
    const items = v.preview.properties.map((p) => (isArray ? String(p.value) : `${p.name}: ${p.value}`));
    const body = items.join(', ') + (v.preview.overflow ? ', …' : '');
    return isArray ? `[${body}]` : `{${body}}`;
  }
  return formatValue(v);
}

/** Turns an evaluation's exception into text; `refused` when the side-effect check (forced by the broker) stopped it. */
export function refusalOrError(r: any): { text: string; refused: boolean } {
  const description: string = r.result?.description ?? r.exceptionDetails?.exception?.description ?? r.exceptionDetails?.text ?? 'exception';
  const first = description.split('\n')[0]!;
  if (/Possible side-effect in debug-evaluate/.test(description)) {
    return { text: `Refused by Loupe: the expression may have side effects, and production evaluation is side-effect free (${first})`, refused: true };
  }
  return { text: first, refused: false };
}

export function splitLogMessage(message: string): { kind: 'text' | 'expr'; text: string }[] {
  const parts: { kind: 'text' | 'expr'; text: string }[] = [];
  let i = 0;
  let text = '';
  while (i < message.length) {
    const c = message[i]!;
    if (c === '{') {
      let depth = 1;
      let j = i + 1;
      while (j < message.length && depth > 0) {
        if (message[j] === '{') depth++;
        else if (message[j] === '}') depth--;
        j++;
      }
      if (depth === 0) {
        if (text) parts.push({ kind: 'text', text });
        text = '';
        parts.push({ kind: 'expr', text: message.slice(i + 1, j - 1) });
        i = j;
        continue;
      }
    }
    text += c;
    i++;
  }
  if (text) parts.push({ kind: 'text', text });
  return parts;
}

export function parseHitCondition(condition: string): { op: string; n: number } | undefined {
  const m = /^\s*(>=|<=|==|=|>|<|%)?\s*(\d+)\s*$/.exec(condition);
  if (!m) return undefined;
  return { op: m[1] ?? '>=', n: Number(m[2]) };
}

export function hitConditionPasses(condition: string, hits: number): boolean {
  const parsed = parseHitCondition(condition);
  if (!parsed) return false;
  const { op, n } = parsed;
  switch (op) {
    case '>':
      return hits > n;
    case '>=':
      return hits >= n;
    case '<':
      return hits < n;
    case '<=':
      return hits <= n;
    case '=':
    case '==':
      return hits === n;
    case '%':
      return n > 0 && hits % n === 0;
    default:
      return false;
  }
}
