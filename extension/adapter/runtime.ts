/**
 * The target as the adapter sees it through the broker: one CDP connection, its events re-emitted with their
 * protocol types, and the commands the adapter sends. No DAP here (the session translates), no `vscode`.
 *
 * Everything goes through the broker, which is the enforcement point: a refused command rejects with the
 * broker's message as is (a `CdpError`).
 */
import { EventEmitter } from 'node:events';
import type { Protocol } from 'devtools-protocol';
import { CdpConnection, type CloseInfo } from './cdpConnection';
import type { SnapshotCapture } from './snapshots';
import type { BreakpointDisabledParams, BreakpointSuspendedParams, BreakpointsParkedParams, LogpointParams, SnapshotThrottledParams } from '../../common/session';

// ---- the broker's own events (Loupe.*): their params as the broker defines them ----

export type LogpointEvent = LogpointParams;
export type ThrottledEvent = SnapshotThrottledParams;
export type SuspendedEvent = BreakpointSuspendedParams;
export type DisabledEvent = BreakpointDisabledParams;
export type ParkedEvent = BreakpointsParkedParams;

export interface RuntimeEvents {
  scriptParsed: [Protocol.Debugger.ScriptParsedEvent];
  breakpointResolved: [Protocol.Debugger.BreakpointResolvedEvent];
  paused: [Protocol.Debugger.PausedEvent];
  resumed: [];
  console: [Protocol.Runtime.ConsoleAPICalledEvent];
  exception: [Protocol.Runtime.ExceptionThrownEvent];
  capture: [SnapshotCapture];
  logpoint: [LogpointEvent];
  throttled: [ThrottledEvent];
  suspended: [SuspendedEvent];
  disabled: [DisabledEvent];
  parked: [ParkedEvent];
  closed: [CloseInfo];
}

/** Where a breakpoint goes: a script URL and a 0-based position in the generated (running) file. */
export interface BreakpointPlace {
  readonly url: string;
  readonly lineNumber: number;
  readonly columnNumber?: number;
}

export type ExecutionCommand = 'Debugger.resume' | 'Debugger.stepOver' | 'Debugger.stepInto' | 'Debugger.stepOut' | 'Debugger.pause';

export class LoupeRuntime extends EventEmitter<RuntimeEvents> {
  private constructor(private readonly cdp: CdpConnection) {
    super();
    cdp.on('Debugger.scriptParsed', (p) => this.emit('scriptParsed', p));
    cdp.on('Debugger.breakpointResolved', (p) => this.emit('breakpointResolved', p));
    cdp.on('Debugger.paused', (p) => this.emit('paused', p));
    cdp.on('Debugger.resumed', () => this.emit('resumed'));
    cdp.on('Runtime.consoleAPICalled', (p) => this.emit('console', p));
    cdp.on('Runtime.exceptionThrown', (p) => this.emit('exception', p));
    cdp.on('Loupe.snapshotCaptured', (p) => this.emit('capture', p));
    cdp.on('Loupe.logpoint', (p) => this.emit('logpoint', p));
    cdp.on('Loupe.snapshotThrottled', (p) => this.emit('throttled', p));
    cdp.on('Loupe.breakpointSuspended', (p) => this.emit('suspended', p));
    cdp.on('Loupe.breakpointDisabled', (p) => this.emit('disabled', p));
    cdp.on('Loupe.breakpointsParked', (p) => this.emit('parked', p));
    void cdp.closed.then((info) => this.emit('closed', info));
  }

  /** Connects to the broker's attach URL with the grant token; listen, then `enable()`. */
  static async connect(attachUrl: string, grantToken: string): Promise<LoupeRuntime> {
    return new LoupeRuntime(await CdpConnection.connect(attachUrl, grantToken));
  }

  /** Enables the domains the adapter uses; the target reports its loaded scripts before Debugger.enable answers. */
  async enable(): Promise<void> {
    await this.cdp.send('Runtime.enable');
    await this.cdp.send('Debugger.enable', {});
  }

  get isOpen(): boolean {
    return this.cdp.isOpen;
  }

  /** Closes the socket: the broker removes this session's breakpoints and resumes the target. Resolves once closed, or after `waitMs`. */
  async close(waitMs = 2000): Promise<void> {
    if (!this.cdp.isOpen) return;
    this.cdp.close(1000, 'debugger disconnected');
    await Promise.race([this.cdp.closed, new Promise((r) => setTimeout(r, waitMs))]);
  }

  setBreakpoint(place: BreakpointPlace, condition?: string): Promise<Protocol.Debugger.SetBreakpointByUrlResponse> {
    const params: Protocol.Debugger.SetBreakpointByUrlRequest = { ...place, ...(condition ? { condition } : {}) };
    return this.cdp.send('Debugger.setBreakpointByUrl', { ...params });
  }

  /** A logpoint kept by the broker: it screens the message's expressions, evaluates them on each hit and resumes at once. */
  setLogpoint(place: BreakpointPlace, logMessage: string, condition?: string): Promise<Protocol.Debugger.SetBreakpointByUrlResponse> {
    return this.cdp.send('Loupe.setLogpoint', { ...place, ...(condition ? { condition } : {}), logMessage });
  }

  async removeBreakpoint(breakpointId: string): Promise<void> {
    const params: Protocol.Debugger.RemoveBreakpointRequest = { breakpointId };
    await this.cdp.send('Debugger.removeBreakpoint', { ...params });
  }

  async setPauseOnExceptions(state: Protocol.Debugger.SetPauseOnExceptionsRequest['state']): Promise<void> {
    await this.cdp.send('Debugger.setPauseOnExceptions', { state });
  }

  async execute(command: ExecutionCommand): Promise<void> {
    await this.cdp.send(command);
  }

  async scriptSource(scriptId: string): Promise<string> {
    const r = await this.cdp.send<Protocol.Debugger.GetScriptSourceResponse>('Debugger.getScriptSource', { scriptId });
    return r.scriptSource ?? '';
  }

  /**
   * Evaluates on a paused frame, or globally without one. The broker forces throwOnSideEffect and a timeout on both;
   * the answer's exceptionDetails carries a refusal by V8's side-effect check.
   */
  evaluate(expression: string, options: { callFrameId?: string; objectGroup: string; generatePreview?: boolean }): Promise<Protocol.Runtime.EvaluateResponse> {
    const common = { expression, objectGroup: options.objectGroup, silent: true, generatePreview: options.generatePreview ?? false };
    return options.callFrameId !== undefined
      ? this.cdp.send<Protocol.Debugger.EvaluateOnCallFrameResponse>('Debugger.evaluateOnCallFrame', { ...common, callFrameId: options.callFrameId })
      : this.cdp.send<Protocol.Runtime.EvaluateResponse>('Runtime.evaluate', common);
  }

  /**
   * Own properties, each object among them with V8's preview (the Variables view shows `{a: 1, …}` without a read per
   * row); never runs user code (getters, Proxy traps and toString are not invoked, previews included).
   */
  properties(objectId: string): Promise<Protocol.Runtime.GetPropertiesResponse> {
    return this.cdp.send<Protocol.Runtime.GetPropertiesResponse>('Runtime.getProperties', { objectId, ownProperties: true, generatePreview: true });
  }
}
