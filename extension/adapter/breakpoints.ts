/**
 * The user's breakpoints and logpoints, by file, and the CDP breakpoints that carry them: bound in each generated
 * file that maps the line (source maps), or in the file itself; pending until their script loads.
 *
 * Conditions go to the broker, which checks them on pause. Logpoints go to the broker too (`Loupe.setLogpoint`),
 * except a pause-mode logpoint with a hit count, which the adapter counts and evaluates itself. Input the adapter
 * cannot use (a hit condition, a logpoint template) makes the breakpoint unverified with the reason.
 */
import { basename } from 'node:path';
import { Breakpoint, Source } from '@vscode/debugadapter';
import type { DebugProtocol } from '@vscode/debugprotocol';
import type { Protocol } from 'devtools-protocol';
import { parseLogTemplate, type LogTemplate } from '../../common/logpoint';
import { hitConditionPasses, hitConditionProblem, parseHitCondition, type HitCondition } from './hitConditions';
import type { BreakpointPlace, LoupeRuntime } from './runtime';
import type { ScriptInfo, ScriptRegistry } from './scripts';
import type { SourceMap } from './sourceMaps';
import { logValue, refusalOrError } from './valueFormat';

export interface BreakpointRecord {
  dapId: number;
  path: string;
  line: number;
  condition?: string;
  /** As the user wrote it, and parsed. */
  hitCondition?: string;
  hitCount?: HitCondition;
  logMessage?: string;
  /** The parsed message of a logpoint the adapter evaluates itself. */
  template?: LogTemplate;
  cdpIds: string[];
  verified: boolean;
  /** Input the adapter cannot use: never bound. */
  invalid?: boolean;
  boundLine?: number;
  message?: string;
  hits: number;
}

export class BreakpointTable {
  private readonly byPath = new Map<string, BreakpointRecord[]>();
  private readonly byCdp = new Map<string, BreakpointRecord>();
  /** Breakpoint changes still waiting for the broker's answer: a hit can arrive before the answer that names it. */
  private readonly inFlight = new Set<Promise<unknown>>();
  private nextId = 1;

  constructor(
    private readonly runtime: LoupeRuntime,
    private readonly scripts: ScriptRegistry,
    private readonly mode: 'pause' | 'snapshot',
    /** A record changed after its setBreakpoints answer (bound late, resolved, removed by the broker). */
    private readonly changed: (breakpoint: DebugProtocol.Breakpoint) => void,
  ) {}

  /** Replaces the breakpoints of one file; answers them in order. */
  set(path: string, requested: readonly DebugProtocol.SourceBreakpoint[]): Promise<DebugProtocol.Breakpoint[]> {
    return this.track(this.replace(path, requested));
  }

  /** Resolves once every breakpoint change started so far has its answer. */
  async settled(): Promise<void> {
    while (this.inFlight.size > 0) await Promise.allSettled([...this.inFlight]);
  }

  private track<T>(work: Promise<T>): Promise<T> {
    this.inFlight.add(work);
    const done = (): void => void this.inFlight.delete(work);
    work.then(done, done);
    return work;
  }

  private async replace(path: string, requested: readonly DebugProtocol.SourceBreakpoint[]): Promise<DebugProtocol.Breakpoint[]> {
    const old = this.byPath.get(path) ?? [];
    // Remove first: the target refuses a second breakpoint at the same location.
    await Promise.all(
      old.flatMap((r) =>
        r.cdpIds.map((id) => {
          this.byCdp.delete(id);
          return this.runtime.removeBreakpoint(id).catch(() => undefined);
        }),
      ),
    );
    const records: BreakpointRecord[] = requested.map((b) => ({
      dapId: this.nextId++,
      path,
      line: b.line,
      ...(b.condition?.trim() ? { condition: b.condition.trim() } : {}),
      ...(b.hitCondition?.trim() ? { hitCondition: b.hitCondition.trim() } : {}),
      ...(b.logMessage !== undefined && b.logMessage !== '' ? { logMessage: b.logMessage } : {}),
      cdpIds: [],
      verified: false,
      hits: 0,
    }));
    this.byPath.set(path, records);
    for (const record of records) {
      if (this.validate(record)) await this.bind(record, this.scripts.mapsContaining(path));
    }
    return records.map((r) => this.toDap(r));
  }

  /** Parses what the adapter itself must understand; false (with the reason on the record) when it cannot. */
  private validate(record: BreakpointRecord): boolean {
    if (record.hitCondition) {
      const problem = hitConditionProblem(record.hitCondition);
      if (problem) return this.refuse(record, problem);
      record.hitCount = parseHitCondition(record.hitCondition)!;
    }
    if (record.logMessage !== undefined && !this.byBroker(record)) {
      const parsed = parseLogTemplate(record.logMessage);
      if (!parsed.ok) return this.refuse(record, `Loupe: ${parsed.error}`);
      record.template = parsed.template;
    }
    return true;
  }

  private refuse(record: BreakpointRecord, message: string): false {
    record.invalid = true;
    record.message = message;
    return false;
  }

  /** A script loaded: the breakpoints waiting in its sources bind now, if the outFiles did not list its map. */
  scriptLoaded(script: ScriptInfo): void {
    const pending = [...this.all()].filter((r) => !r.invalid && !r.verified && r.cdpIds.length === 0 && !r.message?.includes('refused'));
    if (pending.length === 0) return;
    const map = this.scripts.mapFor(script);
    if (!map || !this.scripts.isNewMap(map)) return;
    for (const record of pending) if (map.has(record.path)) void this.track(this.bind(record, [map])).then(() => this.changed(this.toDap(record)));
  }

  private *all(): Iterable<BreakpointRecord> {
    for (const list of this.byPath.values()) yield* list;
  }

  /** Sets the CDP breakpoints of one record: in each generated file that maps it, or in the file itself. */
  private async bind(record: BreakpointRecord, maps: SourceMap[]): Promise<void> {
    const places: BreakpointPlace[] = [];
    const mapper = this.scripts.mapper;
    for (const map of maps) {
      const pos = map.toGenerated(record.path, record.line);
      if (pos) places.push({ url: mapper.toRemoteUrl(map.generatedPath), lineNumber: pos.line - 1, columnNumber: pos.column });
    }
    if (maps.length > 0 && places.length === 0) {
      record.message = `no code at line ${record.line} of ${basename(record.path)} in its source map`;
      return;
    }
    if (places.length === 0) places.push({ url: mapper.toRemoteUrl(record.path), lineNumber: record.line - 1 });
    const byBroker = this.byBroker(record);
    for (const place of places) {
      try {
        // A logpoint is the broker's (Loupe.setLogpoint): it refuses a side-effecting template part up front.
        const r = byBroker ? await this.runtime.setLogpoint(place, record.logMessage!, record.condition) : await this.runtime.setBreakpoint(place, record.condition);
        record.cdpIds.push(r.breakpointId);
        this.byCdp.set(r.breakpointId, record);
        const loc = r.locations?.[0];
        if (loc) {
          record.verified = true;
          record.boundLine = this.scripts.originalLine(loc) ?? record.line;
          delete record.message;
        } else if (!record.verified) {
          record.message = `pending: binds when ${mapper.toRemotePath(mapper.toLocal(place.url) ?? place.url)} is loaded`;
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
  private byBroker(record: BreakpointRecord): boolean {
    return record.logMessage !== undefined && (this.mode === 'snapshot' || !record.hitCondition);
  }

  toDap(record: BreakpointRecord): DebugProtocol.Breakpoint {
    const bp = new Breakpoint(record.verified, record.boundLine ?? record.line) as DebugProtocol.Breakpoint;
    bp.id = record.dapId;
    if (record.message) bp.message = record.message;
    return bp;
  }

  get(cdpId: string): BreakpointRecord | undefined {
    return this.byCdp.get(cdpId);
  }

  resolved(p: Protocol.Debugger.BreakpointResolvedEvent): void {
    const record = this.byCdp.get(p.breakpointId);
    if (!record || record.verified) return;
    record.verified = true;
    record.boundLine = this.scripts.originalLine(p.location) ?? record.line;
    delete record.message;
    this.changed(this.toDap(record));
  }

  /** Counts a hit; true when the record's hit condition (if any) lets this one through. */
  countHit(record: BreakpointRecord): boolean {
    record.hits++;
    return !record.hitCount || hitConditionPasses(record.hitCount, record.hits);
  }

  /** The broker took a breakpoint out for good: it shows unverified with the reason. */
  removedByBroker(record: BreakpointRecord, cdpId: string, message: string): void {
    this.byCdp.delete(cdpId);
    record.cdpIds = record.cdpIds.filter((id) => id !== cdpId);
    record.verified = false;
    record.message = message;
    this.changed(this.toDap(record));
  }

  /** A record's place for messages: `file.ts:12`. */
  where(record: BreakpointRecord | undefined, breakpointId: string): string {
    return record ? `${basename(record.path)}:${record.boundLine ?? record.line}` : `breakpoint ${breakpointId}`;
  }

  /** Where a record's output belongs in the Debug Console. */
  at(record: BreakpointRecord): { source: Source; line: number } {
    return { source: new Source(basename(record.path), record.path), line: record.boundLine ?? record.line };
  }

  /** A pause-mode logpoint with a hit count (see byBroker): its message evaluated here, side-effect free as the broker forces. */
  async logLine(record: BreakpointRecord, frame: Protocol.Debugger.CallFrame | undefined): Promise<string> {
    const { literals, expressions } = record.template!;
    let text = literals[0]!;
    for (let i = 0; i < expressions.length; i++) {
      if (!frame) text += '<no frame>';
      else {
        try {
          const r = await this.runtime.evaluate(expressions[i]!, { callFrameId: frame.callFrameId, objectGroup: 'loupe-logpoint', generatePreview: true });
          text += r.exceptionDetails ? `<${refusalOrError(r).text}>` : logValue(r.result);
        } catch (err) {
          text += `<${(err as Error).message}>`;
        }
      }
      text += literals[i + 1]!;
    }
    return text;
  }
}
