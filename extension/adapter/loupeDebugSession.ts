/**
 * The Loupe debug adapter: DAP toward VS Code (or any DAP client), CDP toward the broker. No `vscode` import:
 * it runs inline in the extension host and standalone (dist/debugAdapter.js) for the DAP tests.
 *
 * The broker is the enforcement point; this adapter only speaks its dialect well:
 * - variables come from Runtime.getProperties (getters are never invoked; Runtime.callFunctionOn is refused);
 * - evaluation is side-effect free (forced by the broker); a refusal is shown as the evaluation's result;
 * - breakpoint conditions go to the broker, which checks them on pause; logpoints go to the broker too
 *   (`Loupe.setLogpoint`: it evaluates the message side-effect free on each hit, resumes at once, and sends
 *   `Loupe.logpoint`), except a pause-mode logpoint with a hit count, which the adapter counts and evaluates itself;
 * - snapshot mode: the broker captures instead of pausing (`Loupe.snapshotCaptured`); the adapter shows each
 *   capture as a read-only stopped state answered from the capture alone, and `continue` moves to the next one;
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
import type { GrantEventBody, LoupeAttachArguments, SessionEndedEventBody, SnapshotEventBody, SnapshotShownEventBody } from './config';
import { capturedType, formatCaptured, hasChildren, lookupCaptured, truncationText, type CapturedFrame, type CapturedProperty, type CapturedValue, type SnapshotCapture } from './snapshots';
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

/** What a variables reference expands: a live object (pause mode) or captured properties (snapshot mode). */
type VariableContainer = { objectId: string } | { captured: readonly CapturedProperty[]; truncated?: string };

/** A capture as the adapter keeps it: numbered in arrival order. */
interface CaptureEntry extends SnapshotCapture {
  seq: number;
  /** Why it is listed but was not shown as a stop on its own (hit count). */
  notShown?: string;
}

/** Captures kept for the Snapshots view and `loupe.showSnapshot`; older ones are dropped (the broker recorded them all). */
const maxCapturesKept = 200;
/** A throttle notice repeats (with the count of skipped hits) at most this often per breakpoint and reason. */
const throttleNoticeIntervalMs = 30_000;

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
  private mode: 'pause' | 'snapshot' = 'pause';
  private readonly scriptsByUrl = new Map<string, ScriptInfo>();
  /** Snapshot mode: every capture kept, the ones waiting to be shown (in order), and the one shown. */
  private readonly captures: CaptureEntry[] = [];
  private readonly captureQueue: CaptureEntry[] = [];
  private shownCapture: CaptureEntry | undefined;
  private captureSeq = 0;
  private readonly throttleNotices = new Map<string, number>();
  private explainedSnapshots = false;

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
      this.mode = (grant?.mode ?? a.mode) === 'snapshot' ? 'snapshot' : 'pause';
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
    cdp.on('Loupe.snapshotCaptured', (p) => this.onCapture(p as SnapshotCapture));
    cdp.on('Loupe.logpoint', (p) => this.onBrokerLogpoint(p));
    cdp.on('Loupe.snapshotThrottled', (p) => this.onThrottled(p));
    cdp.on('Loupe.breakpointSuspended', (p) => this.onSuspended(p));
    // Until the user acts again, the broker holds no pause for this session: say so, or a user waiting for the next hit waits forever.
    cdp.on('Loupe.breakpointsParked', (p) => this.output(`Loupe: ${(p as { reason: string }).reason}. Any action here (an evaluation, a breakpoint change, a pause) turns them back on.\n`, 'important'));
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
    if (info.url) this.scriptsByUrl.set(info.url, info);
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
    const byBroker = this.brokerLogpoint(record);
    for (const place of places) {
      try {
        // A logpoint is the broker's (Loupe.setLogpoint): it refuses a side-effecting template part up front.
        const r = byBroker
          ? await this.cdp!.send('Loupe.setLogpoint', { ...place, ...(record.condition ? { condition: record.condition } : {}), logMessage: record.logMessage! })
          : await this.cdp!.send('Debugger.setBreakpointByUrl', { ...place, ...(record.condition ? { condition: record.condition } : {}) });
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

  /**
   * Logpoints are the broker's in both modes, except in pause mode with a hit count: the broker's logpoint never
   * reaches the adapter, so only a pausing breakpoint lets the adapter count every hit (and then it evaluates the
   * message itself, side-effect free as the broker forces). In snapshot mode a hit count counts the broker's messages.
   */
  private brokerLogpoint(record: BreakpointRecord): boolean {
    return record.logMessage !== undefined && (this.mode === 'snapshot' || !record.hitCondition);
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
    if (this.mode === 'snapshot' && state !== 'none') {
      // The broker refuses setPauseOnExceptions in snapshot mode: nothing may hold the target. Said once, not as an error.
      const message = 'exception breakpoints are not available in snapshot mode: the target never pauses';
      response.body = { breakpoints: filters.map(() => ({ verified: false, message: `Loupe: ${message}` })) };
      this.output(`Loupe: ${message}.\n`, 'console');
      return this.sendResponse(response);
    }
    if (!this.cdp || (state === 'none' && this.mode === 'snapshot')) return this.sendResponse(response);
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

  /** A pause-mode logpoint with a hit count (see brokerLogpoint): its message evaluated here, side-effect free as the broker forces. */
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
    this.output(`${text}\n`, 'console', { source: new Source(basename(record.path), record.path), line: record.boundLine ?? record.line });
  }

  protected override threadsRequest(response: DebugProtocol.ThreadsResponse): void {
    const name = this.args ? `${this.args.target} (${this.args.mode ?? 'pause'} mode, through Loupe)` : 'main';
    response.body = { threads: [new Thread(THREAD_ID, name)] };
    this.sendResponse(response);
  }

  protected override stackTraceRequest(response: DebugProtocol.StackTraceResponse, args: DebugProtocol.StackTraceArguments): void {
    // A live pause, or in snapshot mode the capture shown: the same mapping to the user's sources.
    const frames: { name: string; script: ScriptInfo; lineNumber: number; columnNumber: number }[] =
      this.mode === 'snapshot'
        ? (this.shownCapture?.frames ?? []).map((f) => ({ name: f.functionName, script: this.scriptForUrl(f.url), lineNumber: f.lineNumber, columnNumber: f.columnNumber }))
        : (this.pausedFrames ?? []).map((f) => ({ name: f.functionName, script: this.scripts.get(f.location.scriptId) ?? { scriptId: f.location.scriptId, url: f.url ?? '' }, lineNumber: f.location.lineNumber, columnNumber: f.location.columnNumber ?? 0 }));
    const start = args.startFrame ?? 0;
    const count = args.levels && args.levels > 0 ? args.levels : frames.length;
    const out: StackFrame[] = [];
    for (let i = start; i < Math.min(frames.length, start + count); i++) {
      const f = frames[i]!;
      const place = this.placeOf(f.script, f.lineNumber, f.columnNumber);
      const frame = new StackFrame(this.pauseSeq * 10_000 + i, f.name || '(anonymous)', place.source, place.line, place.column) as DebugProtocol.StackFrame;
      if (place.internal) frame.presentationHint = 'subtle';
      out.push(frame);
    }
    response.body = { stackFrames: out, totalFrames: frames.length };
    this.sendResponse(response);
  }

  /** Where a generated position is for the user: the original source (source map), the local file, or the remote script. */
  private placeOf(script: ScriptInfo, lineNumber: number, columnNumber: number): { source: Source; line: number; column: number; internal: boolean } {
    const orig = this.mapFor(script)?.toOriginal({ line: lineNumber + 1, column: columnNumber });
    if (orig) return { source: new Source(basename(orig.source), orig.source), line: orig.line, column: orig.column + 1, internal: false };
    if (script.localPath && existsSync(script.localPath)) return { source: new Source(basename(script.localPath), script.localPath), line: lineNumber + 1, column: columnNumber + 1, internal: false };
    return { source: this.remoteSource(script), line: lineNumber + 1, column: columnNumber + 1, internal: script.url.startsWith('node:') };
  }

  /** The script a captured frame ran in (captures name URLs, not script ids). */
  private scriptForUrl(url: string): ScriptInfo {
    let script = this.scriptsByUrl.get(url);
    if (!script) {
      script = { scriptId: '', url };
      const local = url ? this.mapper.toLocal(url) : undefined;
      if (local) script.localPath = local;
      this.scriptsByUrl.set(url, script);
    }
    return script;
  }

  private frameFor(frameId: number | undefined): CallFrame | undefined {
    if (frameId === undefined || !this.pausedFrames) return undefined;
    if (Math.floor(frameId / 10_000) !== this.pauseSeq) return undefined;
    return this.pausedFrames[frameId % 10_000];
  }

  private capturedFrameFor(frameId: number | undefined): CapturedFrame | undefined {
    if (frameId === undefined || !this.shownCapture) return undefined;
    if (Math.floor(frameId / 10_000) !== this.pauseSeq) return undefined;
    return this.shownCapture.frames[frameId % 10_000];
  }

  protected override scopesRequest(response: DebugProtocol.ScopesResponse, args: DebugProtocol.ScopesArguments): void {
    if (this.mode === 'snapshot') {
      response.body = { scopes: this.capturedScopes(this.capturedFrameFor(args.frameId)) };
      return this.sendResponse(response);
    }
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

  /** A captured frame's scopes; `this` is shown among the locals. */
  private capturedScopes(frame: CapturedFrame | undefined): DebugProtocol.Scope[] {
    if (!frame) return [];
    if (!frame.scopes) return [new Scope('Not captured: the broker reads the variables of the top frames only', 0, false)];
    const scopes: DebugProtocol.Scope[] = [];
    const self = frame.this ? [{ name: 'this', value: frame.this }] : [];
    for (const s of frame.scopes) {
      const label = s.type === 'local' ? 'Local' : s.type[0]!.toUpperCase() + s.type.slice(1);
      const properties = s.type === 'local' ? [...self, ...(s.properties ?? [])] : (s.properties ?? []);
      const scope = new Scope(label, this.variableHandles.create({ captured: properties, ...(s.truncated ? { truncated: s.truncated } : {}) }), false) as DebugProtocol.Scope;
      if (s.type === 'local') scope.presentationHint = 'locals';
      scopes.push(scope);
    }
    if (self.length > 0 && !frame.scopes.some((s) => s.type === 'local')) scopes.unshift(new Scope('This', this.variableHandles.create({ captured: self }), false));
    return scopes;
  }

  private capturedVariable(name: string, value: CapturedValue): DebugProtocol.Variable {
    const type = capturedType(value);
    return {
      name,
      value: formatCaptured(value),
      ...(type ? { type } : {}),
      variablesReference: hasChildren(value) ? this.variableHandles.create({ captured: value.properties!, ...(value.truncated ? { truncated: value.truncated } : {}) }) : 0,
      presentationHint: { kind: value.type === 'accessor' ? 'property' : 'data', attributes: ['readOnly'] },
    };
  }

  protected override async variablesRequest(response: DebugProtocol.VariablesResponse, args: DebugProtocol.VariablesArguments): Promise<void> {
    const container = this.variableHandles.get(args.variablesReference);
    if (container && 'captured' in container) {
      // Snapshot mode: from the capture alone; the target has run on since.
      const variables = container.captured.map((p) => this.capturedVariable(p.name, p.value));
      if (container.truncated) variables.push({ name: '…', value: `(${truncationText(container.truncated)})`, variablesReference: 0, presentationHint: { kind: 'virtual', attributes: ['readOnly'] } });
      response.body = { variables };
      return this.sendResponse(response);
    }
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
    if (this.mode === 'snapshot' && args.frameId !== undefined) return this.evaluateInCapture(response, args);
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

  /** Snapshot mode: hover, watch and console read captured names and paths; nothing runs in the target. */
  private evaluateInCapture(response: DebugProtocol.EvaluateResponse, args: DebugProtocol.EvaluateArguments): void {
    const frame = this.capturedFrameFor(args.frameId);
    const found = frame ? lookupCaptured(frame, args.expression) : { notCaptured: 'not captured in this snapshot: that capture is no longer shown' };
    if ('notCaptured' in found) {
      response.body = { result: found.notCaptured, variablesReference: 0, presentationHint: { attributes: ['readOnly'] } };
      return this.sendResponse(response);
    }
    const v = this.capturedVariable(args.expression, found.value);
    response.body = { result: v.value, variablesReference: v.variablesReference, presentationHint: { attributes: ['readOnly'] }, ...(v.type ? { type: v.type } : {}) };
    this.sendResponse(response);
  }

  protected override setVariableRequest(response: DebugProtocol.SetVariableResponse): void {
    const why = this.mode === 'snapshot' ? 'a snapshot shows values as captured, and the target has run on since' : 'the broker refuses changes to program state in production';
    this.sendErrorResponse(response, { id: 2005, format: `Loupe: variables are read-only: ${why}`, showUser: true });
  }

  // ---- snapshots ----

  /** A capture from the broker: listed for the Snapshots view, shown at once or queued behind the one shown. */
  private onCapture(capture: SnapshotCapture): void {
    if (!capture || typeof capture.captureId !== 'string' || !Array.isArray(capture.frames)) return;
    const entry: CaptureEntry = { ...capture, seq: ++this.captureSeq };
    const record = this.byCdpId.get(capture.breakpointId);
    if (record) {
      // Hits inside the broker's rate limit never reach the adapter: in snapshot mode a hit count counts captures.
      record.hits++;
      if (record.hitCondition && !hitConditionPasses(record.hitCondition, record.hits)) entry.notShown = `hit count ${record.hitCondition} not met (capture ${record.hits} of this breakpoint)`;
    }
    this.captures.push(entry);
    if (this.captures.length > maxCapturesKept) {
      const dropped = this.captures.shift()!;
      const queued = this.captureQueue.indexOf(dropped);
      if (queued >= 0) this.captureQueue.splice(queued, 1);
    }
    this.sendEvent(new Event('loupe.snapshot', this.snapshotBody(entry)));
    if (entry.notShown) return;
    if (this.shownCapture) this.captureQueue.push(entry);
    else this.showCapture(entry);
  }

  private snapshotBody(entry: CaptureEntry): SnapshotEventBody {
    const top = entry.frames[0];
    const place = top ? this.placeOf(this.scriptForUrl(top.url), top.lineNumber, top.columnNumber) : undefined;
    const record = this.byCdpId.get(entry.breakpointId);
    return {
      captureId: entry.captureId,
      seq: entry.seq,
      capturedAt: entry.capturedAt,
      functionName: top?.functionName || '(anonymous)',
      location: place ? `${place.source.name}:${place.line}` : '(no frame)',
      ...(place?.source.path ? { path: place.source.path, line: place.line } : {}),
      ...(record ? { breakpointId: record.dapId } : {}),
      ...(entry.truncated ? { truncated: entry.truncated } : {}),
      ...(entry.notShown ? { notShown: entry.notShown } : {}),
    };
  }

  /** Presents a capture as the stopped state; the target is running all along. */
  private showCapture(entry: CaptureEntry): void {
    if (!this.explainedSnapshots) {
      this.explainedSnapshots = true;
      this.output('Loupe: snapshot mode: a stop shows a capture the broker took while the target ran on (values as captured, read-only). Continue shows the next capture; stepping is not available.\n', 'console');
    }
    this.shownCapture = entry;
    this.pauseSeq++;
    this.variableHandles = new Handles<VariableContainer>();
    const record = this.byCdpId.get(entry.breakpointId);
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
      const entry = this.captures.find((c) => c.captureId === args?.captureId);
      if (!entry) return this.sendErrorResponse(response, { id: 2006, format: `Loupe: capture ${String(args?.captureId)} is not kept (the adapter keeps the last ${maxCapturesKept}; the session's transcript has every capture)`, showUser: true });
      const queued = this.captureQueue.indexOf(entry);
      if (queued >= 0) this.captureQueue.splice(queued, 1);
      response.body = { captureId: entry.captureId, seq: entry.seq };
      this.sendResponse(response);
      this.showCapture(entry);
      return;
    }
    if (command === 'loupe.snapshots') {
      response.body = { captures: this.captures.map((c) => this.snapshotBody(c)), shown: this.shownCapture?.captureId, queued: this.captureQueue.map((c) => c.captureId) };
      return this.sendResponse(response);
    }
    super.customRequest(command, response, args);
  }

  private where(record: BreakpointRecord | undefined, breakpointId: string): string {
    return record ? `${basename(record.path)}:${record.boundLine ?? record.line}` : `breakpoint ${breakpointId}`;
  }

  /** A broker logpoint's message: Debug Console output at the logpoint's line. */
  private onBrokerLogpoint(p: { breakpointId: string; message: string; frame?: string }): void {
    const record = this.byCdpId.get(p.breakpointId);
    if (record?.hitCondition) {
      record.hits++;
      if (!hitConditionPasses(record.hitCondition, record.hits)) return;
    }
    const at = record ? { source: new Source(basename(record.path), record.path), line: record.boundLine ?? record.line } : {};
    this.output(`${p.message}${record ? '' : ` (${p.frame ?? p.breakpointId})`}\n`, 'console', at);
  }

  /** The broker skips hits inside its rate limits, or has removed a breakpoint at its capture limit. */
  private onThrottled(p: { breakpointId: string; reason: string; skipped?: number; until?: string; removed?: boolean }): void {
    const record = this.byCdpId.get(p.breakpointId);
    const kind = record?.logMessage !== undefined ? 'logpoint' : 'snapshot breakpoint';
    const where = this.where(record, p.breakpointId);
    if (p.removed) {
      this.output(`Loupe: the ${kind} at ${where} ${p.reason}.\n`, 'important');
      if (record) this.markRemoved(record, p.breakpointId, `Removed by Loupe: ${p.reason}`);
      return;
    }
    // The broker repeats the notice every second while hits are skipped: the user hears of it now and then.
    const key = `${p.breakpointId}\n${p.reason}`;
    const last = this.throttleNotices.get(key);
    if (last !== undefined && Date.now() - last < throttleNoticeIntervalMs) return;
    this.throttleNotices.set(key, Date.now());
    const skipped = p.skipped ? `; ${p.skipped} hit${p.skipped === 1 ? '' : 's'} skipped so far` : '';
    const next = p.until ? `; next capture from ${new Date(p.until).toLocaleTimeString()}` : '';
    this.output(`Loupe: the ${kind} at ${where} is throttled by the broker: ${p.reason}${skipped}${next}. Skipped hits resume the target at once.\n`, 'console');
  }

  /** A conditional breakpoint or logpoint whose hits cost the target more than the pause budget: removed by the broker. */
  private onSuspended(p: { breakpointId: string; reason: string; pauseMsPerSecond?: number; hitsPerSecond?: number; budgetMsPerSecond?: number }): void {
    const record = this.byCdpId.get(p.breakpointId);
    const kind = record?.logMessage !== undefined ? 'logpoint' : 'breakpoint';
    const why = p.reason.replace(/^suspended:\s*/, '');
    this.output(`Loupe: the ${kind} at ${this.where(record, p.breakpointId)} was suspended by the broker: ${why}. It no longer fires; make its condition rarer or remove it.\n`, 'important');
    if (record) this.markRemoved(record, p.breakpointId, `Suspended by Loupe: ${why}`);
  }

  /** The broker took a breakpoint out for good: it shows unverified with the reason. */
  private markRemoved(record: BreakpointRecord, cdpId: string, message: string): void {
    this.byCdpId.delete(cdpId);
    record.cdpIds = record.cdpIds.filter((id) => id !== cdpId);
    record.verified = false;
    record.message = message;
    this.sendEvent(new BreakpointEvent('changed', this.toDap(record)));
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
    if (this.mode === 'snapshot') {
      // The target never stopped: continue moves to the next capture, or waits for one.
      this.sendResponse(response);
      this.shownCapture = undefined;
      const next = this.captureQueue.shift();
      if (next) this.showCapture(next);
      else this.sendEvent(new ContinuedEvent(THREAD_ID, true));
      return Promise.resolve();
    }
    return this.control(response, 'Debugger.resume');
  }

  /** Snapshot mode has no live pause to step in or to make. */
  private refuseInSnapshot(response: DebugProtocol.Response, what: 'step' | 'pause'): boolean {
    if (this.mode !== 'snapshot') return false;
    const format =
      what === 'step'
        ? 'Loupe: stepping is not available in snapshot mode: this stop is a capture, and the target was never paused. Continue shows the next capture.'
        : 'Loupe: snapshot mode never pauses the target: set a breakpoint, and its hits are captured and shown here.';
    this.sendErrorResponse(response, { id: 2003, format, showUser: true });
    return true;
  }

  protected override nextRequest(response: DebugProtocol.NextResponse): Promise<void> {
    if (this.refuseInSnapshot(response, 'step')) return Promise.resolve();
    this.stoppedReported = false;
    this.resumeRequested = true;
    return this.control(response, 'Debugger.stepOver', 'step');
  }
  protected override stepInRequest(response: DebugProtocol.StepInResponse): Promise<void> {
    if (this.refuseInSnapshot(response, 'step')) return Promise.resolve();
    this.stoppedReported = false;
    this.resumeRequested = true;
    return this.control(response, 'Debugger.stepInto', 'step');
  }
  protected override stepOutRequest(response: DebugProtocol.StepOutResponse): Promise<void> {
    if (this.refuseInSnapshot(response, 'step')) return Promise.resolve();
    this.stoppedReported = false;
    this.resumeRequested = true;
    return this.control(response, 'Debugger.stepOut', 'step');
  }
  protected override pauseRequest(response: DebugProtocol.PauseResponse): Promise<void> {
    if (this.refuseInSnapshot(response, 'pause')) return Promise.resolve();
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
