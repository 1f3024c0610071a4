/**
 * What each remote object and call frame of a session is, for the record: "local scope of work (app.js:14)",
 * "local scope of work (app.js:14) › order". Also the URL of each script, which pauses and captures name frames by.
 */
import { safeText } from '../gate/cdpGate';
import { isRecord, type PausedFrameInput } from '../gate/targetFrame';

const maxObjectLabels = 10_000;

/**
 * One copy of each script id and URL for every session: the processes of one service (replicas, restarts) list the
 * same scripts, and each parsed copy would stay in their tables.
 * The target is not trusted: a text longer than a URL needs is not shared, and the table is emptied once it holds a
 * million characters (what the sessions hold stays theirs), so it never keeps more than that past their end.
 */
const sharedTexts = new Map<string, string>();
const maxSharedText = 2048;
const maxSharedChars = 1_000_000;
let sharedChars = 0;
function shared(text: string): string {
  if (text.length > maxSharedText) return text;
  const known = sharedTexts.get(text);
  if (known !== undefined) return known;
  if (sharedChars + text.length > maxSharedChars) {
    sharedTexts.clear();
    sharedChars = 0;
  }
  sharedTexts.set(text, text);
  sharedChars += text.length;
  return text;
}
/** Elements of an array a Runtime.getProperties may list; past it, only its other properties are read. */
export const maxIndexedRead = 10_000;

/**
 * Scripts a table keeps; past it (or past maxScriptChars) a new script is not labelled (frames in it are named by
 * script id). A hostile target could otherwise grow it with Debugger.scriptParsed events without end.
 */
export const maxScripts = 200_000;
/** Characters a table keeps in all, and of one URL (the rest cut); a script id longer than V8's is not kept. */
export const maxScriptChars = 16_000_000;
export const maxScriptUrl = 4096;
const maxScriptId = 64;

/**
 * Script URLs by script id, one table per target process, shared by its sessions while one lives: script ids are
 * the isolate's, and each Debugger-enabled session of a process hears the same scripts (Debugger.enable lists them
 * all), so a table per session was the same hundreds or thousands of entries held once more per session. Keyed by
 * the inspector's WebSocket URL, whose id is the process's own: a restarted process starts a table of its own.
 */
interface ScriptTable {
  readonly urls: Map<string, string>;
  sessions: number;
  /** Characters of the ids and URLs it holds. */
  chars: number;
}
const scriptTables = new Map<string, ScriptTable>();

/** Target processes with a live session's script table (for tests). */
export const scriptTableCount = (): number => scriptTables.size;

export class RecordLabels {
  /**
   * Object labels in two generations of up to maxObjectLabels / 2 each: when the young one is full it becomes the old
   * one and the old one is dropped. (Dropping the oldest key one at a time costs a Map a scan past every key deleted
   * before it, on each read of a 100-field object once the bound is reached.)
   */
  private objects = new Map<string, string>();
  private olderObjects = new Map<string, string>();
  private readonly frames = new Map<string, string>();
  /** Script URLs by script id, from Debugger.scriptParsed: the target process's table (shared), or this session's own. */
  readonly scriptUrls: Map<string, string>;
  private readonly scripts: ScriptTable;
  /** The shared table's key while this session holds its share. */
  private key: string | undefined;

  /** `targetUrl`: the target's inspector WebSocket URL, naming its process; without it the session keeps its own table. */
  constructor(targetUrl?: string) {
    let entry = targetUrl === undefined ? undefined : scriptTables.get(targetUrl);
    if (!entry) {
      entry = { urls: new Map(), sessions: 0, chars: 0 };
      if (targetUrl !== undefined) scriptTables.set(targetUrl, entry);
    }
    entry.sessions++;
    this.key = targetUrl;
    this.scripts = entry;
    this.scriptUrls = entry.urls;
  }

  scriptParsed(scriptId: string, url: string): void {
    if (scriptId.length > maxScriptId) return;
    const table = this.scripts;
    const kept = url.length > maxScriptUrl ? url.slice(0, maxScriptUrl) : url;
    const known = table.urls.get(scriptId);
    const grows = known === undefined ? scriptId.length + kept.length : kept.length - known.length;
    if (known === undefined && (table.urls.size >= maxScripts || table.chars + grows > maxScriptChars)) return;
    table.chars += grows;
    table.urls.set(shared(scriptId), shared(kept));
  }

  /** The session ended: the process's table goes with the last of its sessions. Idempotent. */
  release(): void {
    const key = this.key;
    this.key = undefined;
    if (key === undefined || --this.scripts.sessions > 0) return;
    if (scriptTables.get(key) === this.scripts) scriptTables.delete(key);
  }

  object(objectId: unknown): string | undefined {
    return typeof objectId === 'string' ? (this.objects.get(objectId) ?? this.olderObjects.get(objectId)) : undefined;
  }

  frame(callFrameId: unknown): string | undefined {
    return typeof callFrameId === 'string' ? this.frames.get(callFrameId) : undefined;
  }

  /** A frame's URL, from the frame or its script. */
  urlOf(frame: Pick<PausedFrameInput, 'url' | 'location'>): string | undefined {
    return frame.url || this.scriptUrls.get(frame.location.scriptId) || undefined;
  }

  /** Labels the frames of a pause and their scopes; the labels of the previous pause's frames are dropped. */
  labelFrames(frames: readonly PausedFrameInput[]): void {
    this.frames.clear();
    for (const f of frames) {
      const url = this.urlOf(f) ?? '';
      const where = `${f.functionName || '(anonymous)'} (${url.split('/').pop() || `script ${f.location.scriptId}`}:${f.location.lineNumber + 1})`;
      this.frames.set(f.callFrameId, where);
      for (const scope of f.scopeChain ?? []) if (scope.object?.objectId) this.set(scope.object.objectId, `${scope.type} scope of ${where}`);
      if (f.this?.objectId) this.set(f.this.objectId, `this of ${where}`);
    }
  }

  /** Labels the objects an answer holds, after what was read (`parent`). */
  labelObjects(method: string, parent: string, result: Record<string, unknown>): void {
    if (method === 'Runtime.getProperties') {
      for (const p of Array.isArray(result.result) ? (result.result as unknown[]) : []) {
        if (isRecord(p) && isRecord(p.value) && typeof p.value.objectId === 'string') {
          this.set(p.value.objectId, `${parent} › ${safeText(p.name)}`);
          this.noteLength(p.value);
        }
      }
      for (const p of Array.isArray(result.internalProperties) ? (result.internalProperties as unknown[]) : []) if (isRecord(p) && isRecord(p.value)) this.noteLength(p.value);
    } else {
      const value = result.result;
      if (isRecord(value) && typeof value.objectId === 'string') {
        this.set(value.objectId, parent);
        this.noteLength(value);
      }
    }
  }

  /**
   * Arrays and typed arrays over maxIndexedRead elements the client was handed, by object id, with their length: a
   * Runtime.getProperties of all their elements holds the target's main thread while V8 builds the answer (measured:
   * 1,000,000 elements held it 11 s and took its memory from 80 MB to 880 MB; 5,000,000 bytes of a Uint8Array 29 s).
   */
  private readonly lengths = new Map<string, number>();

  private noteLength(object: Record<string, unknown>): void {
    if (typeof object.objectId !== 'string' || (object.subtype !== 'array' && object.subtype !== 'typedarray')) return;
    const length = /\((\d+)\)$/.exec(safeText(object.description ?? ''));
    if (!length || Number(length[1]) <= maxIndexedRead) return;
    if (this.lengths.size >= maxObjectLabels) this.lengths.clear();
    this.lengths.set(object.objectId, Number(length[1]));
  }

  /** The length of an array or typed array over maxIndexedRead elements the client was handed, if `objectId` is one. */
  largeLength(objectId: unknown): number | undefined {
    return typeof objectId === 'string' ? this.lengths.get(objectId) : undefined;
  }

  private set(objectId: string, label: string): void {
    if (this.objects.size >= maxObjectLabels / 2 && !this.objects.has(objectId)) {
      this.olderObjects = this.objects;
      this.objects = new Map();
    }
    this.objects.set(objectId, label);
  }
}
