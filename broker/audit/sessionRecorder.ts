import { closeSync, mkdirSync, openSync, writeSync } from 'node:fs';
import { join } from 'node:path';

/** Fields every record of a session carries: who, on what, under which grant and why. */
export interface SessionContext {
  readonly sessionId: string;
  readonly grantId: string;
  readonly actor: { readonly sub: string; readonly name: string; readonly groups: readonly string[] };
  readonly target: string;
  readonly mode: string;
  readonly reason: string;
  readonly ticket?: string;
}

export interface SessionRecorder {
  /** Appends one record; it is on disk when this returns, so callers record before they forward. */
  record(type: string, fields?: Record<string, unknown>): void;
  close(): void;
}

/** One JSON line per record in `<stateDir>/sessions/<sessionId>.ndjson`. */
export function openSessionRecorder(stateDir: string, context: SessionContext, clock: () => number): SessionRecorder {
  const dir = join(stateDir, 'sessions');
  mkdirSync(dir, { recursive: true });
  const fd = openSync(join(dir, `${context.sessionId}.ndjson`), 'a', 0o600);
  let seq = 0;
  let closed = false;
  return {
    record(type, fields = {}) {
      if (closed) return;
      const line = JSON.stringify({ seq: seq++, time: new Date(clock()).toISOString(), type, ...fields, session: context.sessionId, grant: context.grantId, actor: context.actor, target: context.target, mode: context.mode, reason: context.reason, ...(context.ticket ? { ticket: context.ticket } : {}) });
      writeSync(fd, line + '\n');
    },
    close() {
      if (closed) return;
      closed = true;
      closeSync(fd);
    },
  };
}
