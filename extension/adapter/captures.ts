/**
 * Snapshot mode's captures as the session keeps them: numbered in arrival order, the last ones kept for the
 * Snapshots view and `loupe.showSnapshot`, the ones waiting to be shown in order, and the one shown as the
 * stopped state. The target runs on all along; a capture is plain data.
 */
import type { SnapshotEventBody } from './config';
import type { ScriptRegistry } from './scripts';
import type { SnapshotCapture } from './snapshots';

/** A capture as the adapter keeps it: numbered in arrival order. */
export interface CaptureEntry extends SnapshotCapture {
  seq: number;
  /** Why it is listed but was not shown as a stop on its own (hit count). */
  notShown?: string;
}

/** Captures kept for the Snapshots view and `loupe.showSnapshot`; older ones are dropped (the broker recorded them all). */
export const maxCapturesKept = 200;

export class CaptureList {
  private readonly kept: CaptureEntry[] = [];
  private readonly queue: CaptureEntry[] = [];
  private seq = 0;
  /** The capture presented as the stopped state. */
  shown: CaptureEntry | undefined;

  /** Numbers and keeps a capture from the broker; undefined when it is not one. */
  add(capture: SnapshotCapture): CaptureEntry | undefined {
    if (!capture || typeof capture.captureId !== 'string' || !Array.isArray(capture.frames)) return undefined;
    const entry: CaptureEntry = { ...capture, seq: ++this.seq };
    this.kept.push(entry);
    if (this.kept.length > maxCapturesKept) this.unqueue(this.kept.shift()!);
    return entry;
  }

  /** True when the entry should be shown now; otherwise it waits behind the one shown. */
  arrive(entry: CaptureEntry): boolean {
    if (entry.notShown) return false;
    if (!this.shown) return true;
    this.queue.push(entry);
    return false;
  }

  /** The next capture to show after continue, if one waits. */
  next(): CaptureEntry | undefined {
    this.shown = undefined;
    return this.queue.shift();
  }

  /** A kept capture by id, out of the queue (it is about to be shown). */
  take(captureId: unknown): CaptureEntry | undefined {
    const entry = this.kept.find((c) => c.captureId === captureId);
    if (entry) this.unqueue(entry);
    return entry;
  }

  get all(): readonly CaptureEntry[] {
    return this.kept;
  }

  get queued(): readonly CaptureEntry[] {
    return this.queue;
  }

  private unqueue(entry: CaptureEntry): void {
    const index = this.queue.indexOf(entry);
    if (index >= 0) this.queue.splice(index, 1);
  }
}

/** The `loupe.snapshot` event body of a capture: where it was taken, in the user's sources. */
export function snapshotBody(entry: CaptureEntry, scripts: ScriptRegistry, breakpointDapId: number | undefined): SnapshotEventBody {
  const top = entry.frames[0];
  const place = top ? scripts.placeOf(scripts.forUrl(top.url), top.lineNumber, top.columnNumber) : undefined;
  return {
    captureId: entry.captureId,
    seq: entry.seq,
    capturedAt: entry.capturedAt,
    functionName: top?.functionName || '(anonymous)',
    location: place ? `${place.source.name}:${place.line}` : '(no frame)',
    ...(place?.source.path ? { path: place.source.path, line: place.line } : {}),
    ...(breakpointDapId !== undefined ? { breakpointId: breakpointDapId } : {}),
    ...(entry.truncated ? { truncated: entry.truncated } : {}),
    ...(entry.notShown ? { notShown: entry.notShown } : {}),
  };
}
