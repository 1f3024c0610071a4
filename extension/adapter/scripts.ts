/**
 * The target's scripts and where their code is for the user: the original source (through a source map), the
 * local file (through localRoot/remoteRoot), or the remote script, shown read-only from Debugger.getScriptSource.
 */
import { existsSync } from 'node:fs';
import { basename } from 'node:path';
import { Handles, Source } from '@vscode/debugadapter';
import type { DebugProtocol } from '@vscode/debugprotocol';
import type { Protocol } from 'devtools-protocol';
import { PathMapper, SourceMap, findOutFiles, loadSourceMap } from './sourceMaps';

export interface ScriptInfo {
  scriptId: string;
  url: string;
  sourceMapURL?: string;
  localPath?: string;
  /** undefined: not looked up yet; null: none. */
  map?: SourceMap | null;
}

/** A generated position as the user should see it: 1-based line and column. */
export interface Place {
  readonly source: Source;
  readonly line: number;
  readonly column: number;
  readonly internal: boolean;
}

export class ScriptRegistry {
  private readonly byId = new Map<string, ScriptInfo>();
  private readonly byUrl = new Map<string, ScriptInfo>();
  private readonly sourceHandles = new Handles<string>();
  /** Source maps of the outFiles, loaded up front so breakpoints bind before their script loads. */
  private outFileMaps: SourceMap[] = [];

  constructor(
    readonly mapper: PathMapper = new PathMapper(),
    readonly useSourceMaps = true,
  ) {}

  /** Loads the source maps of the outFiles patterns (default: every .js under localRoot). */
  loadOutFiles(patterns: readonly string[]): void {
    if (!this.useSourceMaps) return;
    const maps: SourceMap[] = [];
    for (const file of findOutFiles(patterns)) {
      const map = loadSourceMap(file, this.mapper);
      if (map) maps.push(map);
    }
    this.outFileMaps = maps;
  }

  /** Records a parsed script. */
  add(p: Protocol.Debugger.ScriptParsedEvent): ScriptInfo {
    const info: ScriptInfo = { scriptId: p.scriptId, url: p.url ?? '', ...(p.sourceMapURL ? { sourceMapURL: p.sourceMapURL } : {}) };
    const local = info.url ? this.mapper.toLocal(info.url) : undefined;
    if (local) info.localPath = local;
    this.byId.set(info.scriptId, info);
    if (info.url) this.byUrl.set(info.url, info);
    return info;
  }

  get(scriptId: string): ScriptInfo | undefined {
    return this.byId.get(scriptId);
  }

  /** The script a captured frame ran in (captures name URLs, not script ids). */
  forUrl(url: string): ScriptInfo {
    let script = this.byUrl.get(url);
    if (!script) {
      script = { scriptId: '', url };
      const local = url ? this.mapper.toLocal(url) : undefined;
      if (local) script.localPath = local;
      this.byUrl.set(url, script);
    }
    return script;
  }

  mapFor(script: ScriptInfo): SourceMap | undefined {
    if (!this.useSourceMaps || !script.localPath) return undefined;
    if (script.map === undefined) {
      script.map =
        this.outFileMaps.find((m) => m.generatedPath === script.localPath) ??
        (script.sourceMapURL || existsSync(script.localPath) ? loadSourceMap(script.localPath, this.mapper, script.sourceMapURL) : undefined) ??
        null;
    }
    return script.map ?? undefined;
  }

  /** A map of a loaded script that the outFiles did not list (its breakpoints could not bind up front). */
  isNewMap(map: SourceMap): boolean {
    return !this.outFileMaps.some((m) => m.generatedPath === map.generatedPath);
  }

  /** Source maps (outFiles and loaded scripts) in which `path` is an original source. */
  mapsContaining(path: string): SourceMap[] {
    if (!this.useSourceMaps) return [];
    const maps = new Map<string, SourceMap>();
    for (const m of this.outFileMaps) if (m.has(path)) maps.set(m.generatedPath, m);
    for (const script of this.byId.values()) {
      if (!script.url.startsWith('file://')) continue;
      const m = this.mapFor(script);
      if (m?.has(path)) maps.set(m.generatedPath, m);
    }
    return [...maps.values()];
  }

  /** The original line (1-based) of a bound CDP location. */
  originalLine(loc: Protocol.Debugger.Location): number | undefined {
    const script = this.byId.get(loc.scriptId);
    if (!script) return undefined;
    const map = this.mapFor(script);
    if (map) return map.toOriginal({ line: loc.lineNumber + 1, column: loc.columnNumber ?? 0 })?.line;
    return loc.lineNumber + 1;
  }

  /** The user's sources of a script: the original sources of its map, the local file, or the remote script. */
  sourcesOf(script: ScriptInfo): Source[] {
    const map = this.mapFor(script);
    if (map) return map.sources.map((s) => new Source(basename(s), s));
    if (script.localPath && existsSync(script.localPath)) return [new Source(basename(script.localPath), script.localPath)];
    return [this.remoteSource(script)];
  }

  /** Every source of the loaded file:// scripts, once each (for the Loaded Scripts view). */
  loadedSources(): Source[] {
    const seen = new Set<string>();
    const sources: Source[] = [];
    for (const script of this.byId.values()) {
      if (!script.url.startsWith('file://')) continue;
      for (const s of this.sourcesOf(script)) {
        const key = s.path ?? `${s.name}#${s.sourceReference}`;
        if (seen.has(key)) continue;
        seen.add(key);
        sources.push(s);
      }
    }
    return sources;
  }

  /** The script behind a DAP sourceReference. */
  scriptIdOf(sourceReference: number): string | undefined {
    return this.sourceHandles.get(sourceReference);
  }

  /** Where a generated position is for the user: the original source (source map), the local file, or the remote script. */
  placeOf(script: ScriptInfo, lineNumber: number, columnNumber: number): Place {
    const orig = this.mapFor(script)?.toOriginal({ line: lineNumber + 1, column: columnNumber });
    if (orig) return { source: new Source(basename(orig.source), orig.source), line: orig.line, column: orig.column + 1, internal: false };
    if (script.localPath && existsSync(script.localPath)) return { source: new Source(basename(script.localPath), script.localPath), line: lineNumber + 1, column: columnNumber + 1, internal: false };
    return { source: this.remoteSource(script), line: lineNumber + 1, column: columnNumber + 1, internal: script.url.startsWith('node:') };
  }

  private remoteSource(script: ScriptInfo): Source {
    const name = script.url ? script.url.split('/').pop() || script.url : `script ${script.scriptId}`;
    const source = new Source(name, undefined, this.sourceHandles.create(script.scriptId), script.url.startsWith('node:') ? 'Node.js internal' : 'remote (read-only)', 'loupe');
    if (script.url.startsWith('node:')) (source as DebugProtocol.Source).presentationHint = 'deemphasize';
    return source;
  }
}
