/**
 * Debugger.searchInContent, answered by the broker: V8 runs a searchInContent regex with no timeout (a
 * backtracking pattern held a target 15.9 s), so a user's pattern never reaches the target. The broker reads the
 * script's source once and searches it here, with RE2 (linear time) for regexes.
 */
import type { RE2 } from 're2-wasm';

export interface SearchMatch {
  readonly lineNumber: number;
  readonly lineContent: string;
}

/** A line longer than this is answered cut (minified bundles have lines of megabytes). */
export const maxLineContent = 1024;
/** Lines tested together first: one call into RE2 per chunk, then per line only where the chunk matched. */
const chunkLines = 512;

/** The RE2 form of a searchInContent pattern; throws with RE2's reason when it has no linear-time form. */
export function compileSearch(query: string, caseSensitive: boolean): RE2 {
  // Loaded on the first regex search: it compiles a WebAssembly module, which nothing else needs.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { RE2: Engine } = require('re2-wasm') as typeof import('re2-wasm');
  // `m`: ^ and $ at line ends, so a chunk of lines matches wherever one of its lines would.
  return new Engine(query, `um${caseSensitive ? '' : 'i'}`);
}

/** Lines of `source` that match, as V8 answers them: 0-based line numbers, the line without its line break. */
export function searchSource(source: string, query: string, options: { caseSensitive: boolean; isRegex: boolean }): SearchMatch[] {
  const lines = source.split('\n').map((line) => (line.endsWith('\r') ? line.slice(0, -1) : line));
  let matches: (line: string) => boolean;
  let chunkMatches: (text: string) => boolean;
  if (options.isRegex) {
    const regex = compileSearch(query, options.caseSensitive);
    matches = chunkMatches = (text) => regex.test(text);
  } else if (options.caseSensitive) {
    matches = chunkMatches = (text) => text.includes(query);
  } else {
    const lower = query.toLowerCase();
    matches = chunkMatches = (text) => text.toLowerCase().includes(lower);
  }
  const found: SearchMatch[] = [];
  for (let start = 0; start < lines.length; start += chunkLines) {
    const chunk = lines.slice(start, start + chunkLines);
    if (!chunkMatches(chunk.join('\n'))) continue;
    chunk.forEach((line, i) => {
      if (matches(line)) found.push({ lineNumber: start + i, lineContent: line.length > maxLineContent ? `${line.slice(0, maxLineContent)}…` : line });
    });
  }
  return found;
}

/** Script source kept per session for searches (characters). */
const maxSourceCacheChars = 32 << 20;

/**
 * Script sources read for searches, by script id (sources never change: setScriptSource is refused), each as read
 * and as shown: redacted again whenever the redactor has learned more since (`version`), or a value learned after the
 * first read would stay in the clear in the source the client reads and searches.
 */
export class ScriptSources {
  private readonly sources = new Map<string, { raw: string; shown: Promise<string>; version: number }>();
  private chars = 0;

  constructor(
    private readonly read: (scriptId: string) => Promise<string>,
    private readonly redact: (source: string) => Promise<string>,
    private readonly version: () => number,
  ) {}

  /** A script's source as shown, read from the target once and kept within a bound (oldest dropped first). */
  async get(scriptId: string): Promise<string> {
    let entry = this.sources.get(scriptId);
    if (entry === undefined) {
      const raw = await this.read(scriptId);
      entry = this.sources.get(scriptId);
      if (entry === undefined) {
        entry = { raw, shown: this.redact(raw), version: this.version() };
        this.sources.set(scriptId, entry);
        // The text as read and as shown.
        this.chars += 2 * raw.length;
        for (const [id, text] of this.sources) {
          if (this.chars <= maxSourceCacheChars || id === scriptId) break;
          this.sources.delete(id);
          this.chars -= 2 * text.raw.length;
        }
      }
    }
    const version = this.version();
    if (entry.version !== version) {
      entry.version = version;
      entry.shown = this.redact(entry.raw);
    }
    // A failed redaction is not kept: the next read tries again.
    return entry.shown.catch((err: unknown) => {
      if (this.sources.get(scriptId) === entry) entry.version = -1;
      throw err;
    });
  }
}
