/**
 * The stopped state the client sees: a live pause's call frames, or (snapshot mode) the frames of the capture
 * shown. Frame ids are `stop * 10_000 + index`, so an id from an earlier stop finds nothing.
 */
import { StackFrame } from '@vscode/debugadapter';
import type { DebugProtocol } from '@vscode/debugprotocol';
import type { Protocol } from 'devtools-protocol';
import type { ScriptInfo, ScriptRegistry } from './scripts';
import type { CapturedFrame } from './snapshots';

const framesPerStop = 10_000;

export class StoppedState {
  private seq = 0;
  /** The frames of a live pause; undefined while running. */
  paused: Protocol.Debugger.CallFrame[] | undefined;

  /** A new stop: ids of the last one no longer answer. */
  next(): void {
    this.seq++;
  }

  private index(frameId: number | undefined): number | undefined {
    if (frameId === undefined || Math.floor(frameId / framesPerStop) !== this.seq) return undefined;
    return frameId % framesPerStop;
  }

  liveFrame(frameId: number | undefined): Protocol.Debugger.CallFrame | undefined {
    const index = this.index(frameId);
    return index === undefined ? undefined : this.paused?.[index];
  }

  /** A frame of the capture shown (snapshot mode). */
  capturedFrame(frameId: number | undefined, shown: readonly CapturedFrame[] | undefined): CapturedFrame | undefined {
    const index = this.index(frameId);
    return index === undefined ? undefined : shown?.[index];
  }

  /** The stack as DAP frames, mapped to the user's sources: of the capture shown in snapshot mode, else of the live pause. */
  stackTrace(
    scripts: ScriptRegistry,
    snapshot: { shown: readonly CapturedFrame[] | undefined } | undefined,
    args: DebugProtocol.StackTraceArguments,
  ): { stackFrames: DebugProtocol.StackFrame[]; totalFrames: number } {
    const frames: { name: string; script: ScriptInfo; lineNumber: number; columnNumber: number }[] = snapshot
      ? (snapshot.shown ?? []).map((f) => ({ name: f.functionName, script: scripts.forUrl(f.url), lineNumber: f.lineNumber, columnNumber: f.columnNumber }))
      : (this.paused ?? []).map((f) => ({
          name: f.functionName,
          script: scripts.get(f.location.scriptId) ?? { scriptId: f.location.scriptId, url: f.url ?? '' },
          lineNumber: f.location.lineNumber,
          columnNumber: f.location.columnNumber ?? 0,
        }));
    const start = args.startFrame ?? 0;
    const count = args.levels && args.levels > 0 ? args.levels : frames.length;
    const out: DebugProtocol.StackFrame[] = [];
    for (let i = start; i < Math.min(frames.length, start + count); i++) {
      const f = frames[i]!;
      const place = scripts.placeOf(f.script, f.lineNumber, f.columnNumber);
      const frame = new StackFrame(this.seq * framesPerStop + i, f.name || '(anonymous)', place.source, place.line, place.column) as DebugProtocol.StackFrame;
      if (place.internal) frame.presentationHint = 'subtle';
      out.push(frame);
    }
    return { stackFrames: out, totalFrames: frames.length };
  }
}
