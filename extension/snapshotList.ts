/**
 * What the Snapshots view lists: the captures of each live Loupe session, as the adapter reports them in its
 * `loupe.snapshot` events, and which one is shown as the stopped state (`loupe.snapshotShown`). How a row is worded
 * lives here too; the view (./snapshotsView) only draws it. No `vscode` import.
 */
import type { SnapshotEventBody } from './adapter/config';

/** Rows kept per session, as many as the adapter keeps captures (older ones cannot be shown any more). */
export const maxSnapshotsListed = 200;

export interface SessionSnapshots {
  readonly sessionId: string;
  readonly name: string;
  /** Newest first. */
  readonly captures: readonly SnapshotEventBody[];
  readonly shown: string | undefined;
}

export class SnapshotList {
  private readonly sessions = new Map<string, { name: string; captures: SnapshotEventBody[]; shown: string | undefined }>();

  add(sessionId: string, name: string, capture: SnapshotEventBody): void {
    const entry = this.sessions.get(sessionId) ?? { name, captures: [], shown: undefined };
    this.sessions.set(sessionId, entry);
    entry.captures.unshift(capture);
    if (entry.captures.length > maxSnapshotsListed) entry.captures.length = maxSnapshotsListed;
  }

  markShown(sessionId: string, captureId: string): void {
    const entry = this.sessions.get(sessionId);
    if (entry) entry.shown = captureId;
  }

  /** The session ended: its captures can no longer be shown (the transcript keeps them). */
  endSession(sessionId: string): boolean {
    return this.sessions.delete(sessionId);
  }

  list(): SessionSnapshots[] {
    return [...this.sessions].map(([sessionId, s]) => ({ sessionId, name: s.name, captures: s.captures, shown: s.shown }));
  }

  find(sessionId: string, captureId: string): SnapshotEventBody | undefined {
    return this.sessions.get(sessionId)?.captures.find((c) => c.captureId === captureId);
  }
}

const clock = (iso: string) => {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : `${d.toLocaleTimeString()}.${String(d.getMilliseconds()).padStart(3, '0')}`;
};

/** One capture as a row: `#3 handle`, `service.ts:15 · 12:00:01.123 · truncated`, and a tooltip with the details. */
export function snapshotRow(capture: SnapshotEventBody, shown: boolean): { label: string; description: string; tooltip: string } {
  const notes = [capture.truncated ? 'truncated' : '', capture.notShown ? 'skipped by hit count' : '', shown ? 'shown' : ''].filter(Boolean);
  return {
    label: `#${capture.seq} ${capture.functionName}`,
    description: [capture.location, clock(capture.capturedAt), ...notes].join(' · '),
    tooltip: [
      `Snapshot ${capture.seq} (${capture.captureId})`,
      `captured ${capture.capturedAt} in ${capture.functionName} at ${capture.path ? `${capture.path}:${capture.line}` : capture.location}`,
      capture.breakpointId !== undefined ? `by breakpoint ${capture.breakpointId}` : '',
      capture.truncated ? `incomplete: ${capture.truncated}` : '',
      capture.notShown ? `not shown on its own: ${capture.notShown}` : '',
      'The target was not paused: select to see the capture as a read-only stop.',
    ]
      .filter(Boolean)
      .join('\n'),
  };
}
