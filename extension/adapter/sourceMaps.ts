/**
 * Where code lives: local files (what the developer edits) versus remote script URLs (what the target runs),
 * through localRoot/remoteRoot and through source maps (@jridgewell/trace-mapping). No `vscode` import.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, isAbsolute, join, normalize, relative, resolve, sep } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import picomatch from 'picomatch';
import { GREATEST_LOWER_BOUND, LEAST_UPPER_BOUND, TraceMap, generatedPositionFor, originalPositionFor } from '@jridgewell/trace-mapping';

/** 1-based lines and 0-based columns, as trace-mapping counts them. */
export interface Position {
  readonly line: number;
  readonly column: number;
}

export class PathMapper {
  private readonly localRoot: string | undefined;
  private readonly remoteRoot: string | undefined;

  constructor(localRoot?: string, remoteRoot?: string) {
    this.localRoot = localRoot ? resolve(localRoot) : undefined;
    this.remoteRoot = remoteRoot ? normalize(remoteRoot).replace(/[\\/]+$/, '') : undefined;
  }

  /** The local path of a remote script URL (file:// or a bare path), or undefined for node: internals and the like. */
  toLocal(url: string): string | undefined {
    let remotePath: string;
    if (url.startsWith('file://')) remotePath = fileURLToPath(url);
    else if (isAbsolute(url)) remotePath = url;
    else return undefined;
    if (this.localRoot && this.remoteRoot) {
      const rel = relative(this.remoteRoot, remotePath);
      if (!rel.startsWith('..') && !isAbsolute(rel)) return join(this.localRoot, rel);
    }
    return remotePath;
  }

  /** The remote path of a local file. */
  toRemotePath(localPath: string): string {
    const abs = resolve(localPath);
    if (this.localRoot && this.remoteRoot) {
      const rel = relative(this.localRoot, abs);
      if (!rel.startsWith('..') && !isAbsolute(rel)) return this.remoteRoot + (rel ? '/' + rel.split(sep).join('/') : '');
    }
    return abs;
  }

  /** The URL the target's inspector reports for a local file (CommonJS and ESM alike use file:// URLs). */
  toRemoteUrl(localPath: string): string {
    return pathToFileURL(this.toRemotePath(localPath)).href;
  }
}

/** A loaded source map of one generated (local) file. */
export class SourceMap {
  private readonly map: TraceMap;
  /** Absolute local paths of the original sources, in the map's order. */
  readonly sources: string[];

  constructor(
    readonly generatedPath: string,
    raw: string,
    mapPath: string,
    mapper: PathMapper,
  ) {
    this.map = new TraceMap(raw, pathToFileURL(mapPath).href);
    this.sources = this.map.resolvedSources.map((s) => {
      const path = s.startsWith('file://') ? fileURLToPath(s) : resolve(dirname(mapPath), s);
      // A map built on the production machine names remote paths: bring them home.
      return existsSync(path) ? path : (mapper.toLocal(pathToFileURL(path).href) ?? path);
    });
  }

  has(source: string): boolean {
    return this.sources.includes(resolve(source));
  }

  /** Original position of a generated one (1-based line), or undefined where the code has no mapping. */
  toOriginal(pos: Position): { source: string; line: number; column: number } | undefined {
    let r = originalPositionFor(this.map, { line: pos.line, column: pos.column, bias: GREATEST_LOWER_BOUND });
    if (r.line === null) r = originalPositionFor(this.map, { line: pos.line, column: pos.column, bias: LEAST_UPPER_BOUND });
    if (r.line === null || r.source === null) return undefined;
    const index = this.map.resolvedSources.indexOf(r.source);
    return { source: index >= 0 ? this.sources[index]! : r.source, line: r.line, column: r.column };
  }

  /**
   * The generated position of an original line: the first mapping on that line, or on the next line that has
   * one (within a few lines), as debuggers move a breakpoint on a blank line to the next statement.
   */
  toGenerated(source: string, line: number): Position | undefined {
    const index = this.sources.indexOf(resolve(source));
    if (index < 0) return undefined;
    const name = this.map.sources[index]!;
    for (let l = line; l < line + 20; l++) {
      const r = generatedPositionFor(this.map, { source: name, line: l, column: 0, bias: LEAST_UPPER_BOUND });
      if (r.line !== null) {
        // LEAST_UPPER_BOUND may jump to a later original line's mapping: accept only this line's.
        const back = this.toOriginal({ line: r.line, column: r.column });
        if (back && back.line === l) return { line: r.line, column: r.column };
      }
    }
    return undefined;
  }
}

const sourceMapComment = /\/\/[#@]\s*sourceMappingURL=([^\s'"]+)\s*$/m;

/** Loads the source map of a local generated file (external .map or inline data: URL), or undefined. */
export function loadSourceMap(generatedPath: string, mapper: PathMapper, sourceMapUrl?: string): SourceMap | undefined {
  try {
    let url = sourceMapUrl;
    if (!url) {
      if (!existsSync(generatedPath)) return undefined;
      const text = readFileSync(generatedPath, 'utf8');
      const matches = [...text.matchAll(new RegExp(sourceMapComment, 'gm'))];
      url = matches.at(-1)?.[1];
    }
    if (!url) return undefined;
    if (url.startsWith('data:')) {
      const comma = url.indexOf(',');
      const meta = url.slice(5, comma);
      const payload = url.slice(comma + 1);
      const raw = meta.endsWith(';base64') ? Buffer.from(payload, 'base64').toString('utf8') : decodeURIComponent(payload);
      return new SourceMap(generatedPath, raw, generatedPath + '.map', mapper);
    }
    const mapPath = url.startsWith('file://') ? (mapper.toLocal(url) ?? fileURLToPath(url)) : resolve(dirname(generatedPath), decodeURIComponent(url));
    if (!existsSync(mapPath)) return undefined;
    return new SourceMap(generatedPath, readFileSync(mapPath, 'utf8'), mapPath, mapper);
  } catch {
    return undefined;
  }
}

/** An outFiles pattern as an absolute POSIX path (`**`, `*`, `?`, `{a,b}`), matched by picomatch. */
function globMatcher(pattern: string): (path: string) => boolean {
  return picomatch(resolve(pattern).split(sep).join('/'), { dot: true });
}

/** The .js files matching the outFiles patterns (node_modules skipped unless a pattern names it), capped. */
export function findOutFiles(patterns: readonly string[], cap = 5000): string[] {
  const include = patterns.filter((p) => !p.startsWith('!')).map((p) => ({ base: globBase(p), matches: globMatcher(p), namesNodeModules: p.includes('node_modules') }));
  const exclude = patterns.filter((p) => p.startsWith('!')).map((p) => globMatcher(p.slice(1)));
  const found = new Set<string>();
  for (const { base, matches, namesNodeModules } of include) {
    const walk = (dir: string, depth: number) => {
      if (found.size >= cap || depth > 20) return;
      let names: string[];
      try {
        names = readdirSync(dir);
      } catch {
        return;
      }
      for (const name of names) {
        const path = join(dir, name);
        let isDir = false;
        try {
          isDir = statSync(path).isDirectory();
        } catch {
          continue;
        }
        if (isDir) {
          if ((name === 'node_modules' && !namesNodeModules) || name.startsWith('.')) continue;
          walk(path, depth + 1);
        } else if (/\.[cm]?js$/.test(name)) {
          const posix = path.split(sep).join('/');
          if (matches(posix) && !exclude.some((excluded) => excluded(posix))) found.add(path);
        }
      }
    };
    walk(base, 0);
  }
  return [...found];
}

function globBase(pattern: string): string {
  const parts = resolve(pattern).split(sep);
  const index = parts.findIndex((part) => /[*?{]/.test(part));
  return index < 0 ? dirname(resolve(pattern)) : parts.slice(0, index).join(sep) || sep;
}
